"""The two-hop router's derived samples and its stage arithmetic, on hand-made cases."""

from __future__ import annotations

import pytest

from common.data.catalog import Catalog, Toolkit
from common.experiments.router import (
    routed_samples,
    routing_samples,
    summary,
    toolkit_tool,
)
from common.samples import ExpectedCall, Sample


def _fn(name):
    return {"name": name, "description": name, "parameters": {"type": "object", "properties": {}}}


CAT = Catalog({"Weather": Toolkit("Weather", [_fn("get_forecast"), _fn("get_alerts")], "test"),
               "Mail": Toolkit("Mail", [_fn("send_mail"), _fn("list_mail"), _fn("delete_mail")], "test")})


def _sample(i, kit, call):
    return Sample(id=f"s{i}", tools=[{"type": "function", "function": _fn(call)}],
                  messages=[{"role": "user", "content": "do it"}], scenario="single", toolkit=kit, source="test",
                  expected_calls=[ExpectedCall(name=call, arguments={})])


def test_routing_and_routed_samples():
    samples = [_sample(1, "Weather", "get_forecast"), _sample(2, "Mail", "send_mail"),
               _sample(3, "Mail", "list_mail").model_copy(update={"expected_calls": []})]
    routing = routing_samples(samples, list(CAT.toolkits.values()))
    assert [s.id for s in routing] == ["s1", "s2"]  # a no-call sample has no toolkit to route to
    assert [t["function"]["name"] for t in routing[0].tools] == ["Weather", "Mail"]
    assert routing[1].expected_calls[0].name == "Mail" and "send mail" in toolkit_tool(CAT.toolkits["Mail"])[
        "function"]["description"]
    hop2 = routed_samples(samples[:2], {"s1": "Mail", "s2": "Mail"})
    assert [s.id for s in hop2] == ["s2"] and hop2[0].tools == samples[1].tools  # s1 failed at hop 1
    assert routed_samples(samples[:2], {"s1": None, "s2": "Nowhere"}) == []


def test_stage_arithmetic():
    s = summary(n=10, hop1_correct=8, hop2_correct_given_right=6, hop2_right_n=8, end_to_end_correct=6,
                single_correct=7)
    assert s["router_accuracy"] == 0.8 and s["caller_accuracy_given_right_toolkit"] == 0.75
    assert s["product_of_stages"] == pytest.approx(0.6) and s["end_to_end_accuracy"] == 0.6
    assert s["single_model_accuracy"] == 0.7
    none_right = summary(n=4, hop1_correct=0, hop2_correct_given_right=0, hop2_right_n=0, end_to_end_correct=0,
                         single_correct=1)
    assert none_right["caller_accuracy_given_right_toolkit"] is None and none_right["product_of_stages"] is None
