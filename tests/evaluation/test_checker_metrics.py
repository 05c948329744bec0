"""The checker's verdicts and every metric on hand-made cases with known answers."""

import math

import pytest

from common.evaluation.checker import check_sample, values_equal
from common.evaluation.metrics import (
    METRICS,
    compute_metrics,
    head_to_head,
    latency_summary,
    proportion_ci,
)
from common.formats.base import ParsedOutput, ParseError
from common.samples import ExpectedCall, Sample, ToolCall

TOOLS = [
    {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {
        "location": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"}},
        "required": ["location"]}},
    {"name": "convert_currency", "description": "FX", "parameters": {"type": "object", "properties": {
        "amount": {"type": "number"}, "from_currency": {"type": "string"}, "to_currency": {"type": "string"}},
        "required": ["amount", "from_currency", "to_currency"]}},
    {"name": "set_timer", "description": "Timer", "parameters": {"type": "object", "properties": {
        "minutes": {"type": "integer"}, "loud": {"type": "boolean"}}, "required": ["minutes"]}},
]


def sample(expected, scenario="single", id="s"):
    calls = [e if isinstance(e, ExpectedCall) else ExpectedCall.exact(*e) for e in expected]
    return Sample(id=id, tools=TOOLS, messages=[{"role": "user", "content": "q"}],
                  expected_calls=calls, scenario=scenario)


def out(*calls, error=None):
    return ParsedOutput(calls=[ToolCall(name=n, arguments=a) for n, a in calls], error=error)


def verdict(expected, output, **kw):
    return check_sample(sample(expected), output, **kw)


def issue_kinds(v):
    return [(i.argument, i.kind) for m in v.matches for i in m.issues]


# -- verdicts ---------------------------------------------------------------------
def test_exact_call_is_correct():
    v = verdict([("get_weather", {"location": "Paris"})], out(("get_weather", {"location": "Paris"})))
    assert v.correct and v.error_kind is None and v.hallucinations == []
    assert (v.args_predicted, v.args_true, v.args_correct) == (1, 1, 1)


def test_wrong_function():
    v = verdict([("get_weather", {"location": "Paris"})], out(("set_timer", {"minutes": 5})))
    assert not v.correct and v.error_kind == "wrong_function"
    assert v.matches[0].name_ok is False and v.args_correct == 0


def test_int_for_string_is_a_type_mismatch_and_a_hallucination():
    s = [("set_timer", {"minutes": 7})]
    v = verdict(s, out(("set_timer", {"minutes": "7"})))
    assert v.error_kind == "type_mismatch"
    assert issue_kinds(v) == [("minutes", "type_mismatch")]
    assert v.hallucinations == [{"call": "0", "kind": "wrong_type", "name": "set_timer.minutes"}]


def test_bool_is_not_an_integer():
    v = verdict([("set_timer", {"minutes": 1})], out(("set_timer", {"minutes": True})))
    assert v.error_kind == "type_mismatch"


def test_int_is_an_acceptable_number():
    v = verdict([("convert_currency", {"amount": 100.0, "from_currency": "USD", "to_currency": "EUR"})],
                out(("convert_currency", {"amount": 100, "from_currency": "USD", "to_currency": "EUR"})))
    assert v.correct


def test_wrong_value_of_right_type():
    v = verdict([("get_weather", {"location": "Paris"})], out(("get_weather", {"location": "Rome"})))
    assert v.error_kind == "wrong_value" and v.hallucinations == []


def test_optional_left_out_or_given_its_default_is_correct():
    exp = [("get_weather", {"location": "Paris"})]
    assert verdict(exp, out(("get_weather", {"location": "Paris"}))).correct
    v = verdict(exp, out(("get_weather", {"location": "Paris", "unit": "celsius"})))
    assert v.correct and (v.args_predicted, v.args_true, v.args_correct) == (2, 2, 2)


def test_optional_with_default_expected_may_be_left_out():
    v = verdict([("get_weather", {"location": "Paris", "unit": "celsius"})],
                out(("get_weather", {"location": "Paris"})))
    assert v.correct and (v.args_predicted, v.args_true, v.args_correct) == (1, 1, 1)


def test_optional_not_asked_for_and_not_default_is_extra():
    v = verdict([("get_weather", {"location": "Paris"})],
                out(("get_weather", {"location": "Paris", "unit": "fahrenheit"})))
    assert v.error_kind == "extra_argument"


def test_requested_optional_left_out_means_the_default_is_a_wrong_value():
    v = verdict([("get_weather", {"location": "Paris", "unit": "fahrenheit"})],
                out(("get_weather", {"location": "Paris"})))
    assert v.error_kind == "wrong_value"
    assert "default 'celsius'" in v.matches[0].issues[0].detail


def test_key_listed_optional_may_be_left_out_but_must_match_if_given():
    exp = [ExpectedCall(name="get_weather", arguments={"location": ["Paris"], "unit": ["fahrenheit"]},
                        optional=["unit"])]
    v = check_sample(sample(exp), out(("get_weather", {"location": "Paris"})))
    assert v.correct and (v.args_predicted, v.args_true, v.args_correct) == (1, 1, 1)
    v = check_sample(sample(exp), out(("get_weather", {"location": "Paris", "unit": "celsius"})))
    assert v.error_kind == "wrong_value" and (v.args_predicted, v.args_true, v.args_correct) == (2, 2, 1)


def test_invented_argument_beside_a_rightly_omitted_optional_is_extra_not_renamed():
    exp = [ExpectedCall(name="get_weather", arguments={"location": ["Paris"], "unit": ["celsius"]},
                        optional=["unit"])]
    v = check_sample(sample(exp), out(("get_weather", {"location": "Paris", "days": 2})))
    assert issue_kinds(v) == [("days", "extra_argument")]


def test_missing_required_argument():
    v = verdict([("convert_currency", {"amount": 5, "from_currency": "USD", "to_currency": "EUR"})],
                out(("convert_currency", {"amount": 5, "from_currency": "USD"})))
    assert v.error_kind == "missing_required_argument"
    assert (v.args_predicted, v.args_true, v.args_correct) == (2, 3, 2)


def test_renamed_argument_is_a_wrong_name_and_a_hallucination():
    v = verdict([("get_weather", {"location": "Paris"})], out(("get_weather", {"city": "Paris"})))
    assert v.error_kind == "wrong_argument_name"
    assert issue_kinds(v) == [("city", "wrong_argument_name"), ("location", "missing_required_argument")]
    assert (v.args_predicted, v.args_true, v.args_correct) == (1, 1, 0)
    assert v.hallucinations == [{"call": "0", "kind": "unknown_argument", "name": "get_weather.city"}]


def test_invented_extra_argument():
    v = verdict([("get_weather", {"location": "Paris"})],
                out(("get_weather", {"location": "Paris", "days": 3})))
    assert v.error_kind == "extra_argument" and v.hallucinations[0]["kind"] == "unknown_argument"


def test_unoffered_function_is_wrong_and_hallucinated():
    v = verdict([("get_weather", {"location": "Paris"})], out(("get_forecast", {"location": "Paris"})))
    assert v.error_kind == "wrong_function"
    assert v.hallucinations == [{"call": "0", "kind": "unknown_function", "name": "get_forecast"}]


def test_parallel_calls_match_in_any_order():
    exp = [("get_weather", {"location": "Paris"}), ("get_weather", {"location": "Rome"})]
    v = verdict(exp, out(("get_weather", {"location": "Rome"}), ("get_weather", {"location": "Paris"})))
    assert v.correct and sorted((m.expected, m.output) for m in v.matches) == [(0, 1), (1, 0)]


def test_parallel_missing_and_extra_calls():
    exp = [("get_weather", {"location": "Paris"}), ("get_weather", {"location": "Rome"})]
    v = verdict(exp, out(("get_weather", {"location": "Rome"})))
    assert v.error_kind == "missing_call" and v.missing_calls == [0]
    v = verdict(exp[:1], out(("get_weather", {"location": "Paris"}), ("set_timer", {"minutes": 2})))
    assert v.error_kind == "extra_call" and v.extra_calls == [1]


def test_no_tool_cases():
    assert check_sample(sample([], "no_tool"), out()).correct
    v = check_sample(sample([], "no_tool"), out(("set_timer", {"minutes": 1})))
    assert v.error_kind == "call_not_needed"
    v = verdict([("get_weather", {"location": "Paris"})], out())
    assert v.error_kind == "no_call"


def test_malformed_output_wins_over_everything():
    v = verdict([("get_weather", {"location": "Paris"})],
                out(("get_weather", {"location": "Paris"}), error=ParseError("invalid_json", "bad")))
    assert v.error_kind == "malformed_output" and not v.correct


def test_several_acceptable_values_and_string_normalisation():
    exp = [ExpectedCall(name="get_weather", arguments={"location": ["Paris", "Paris, France"]})]
    assert check_sample(sample(exp), out(("get_weather", {"location": "paris, france"}))).correct
    strict = check_sample(sample(exp), out(("get_weather", {"location": "paris"})), strict_strings=True)
    assert strict.error_kind == "wrong_value"


def test_values_equal_rules():
    assert values_equal([1, {"a": "X"}], [1.0, {"a": "x"}])
    assert not values_equal([1, 2], [2, 1])          # lists keep their order, as in BFCL
    assert not values_equal(1, True) and not values_equal(None, "")
    assert values_equal({"a": [1]}, {"a": [1]}) and not values_equal({"a": 1}, {"a": 1, "b": 2})


# -- aggregates ---------------------------------------------------------------------
@pytest.fixture
def four():
    """A right, B wrong function, C no-tool right, D one of two parallel calls."""
    a = check_sample(sample([("get_weather", {"location": "Paris"})], id="A"),
                     out(("get_weather", {"location": "Paris"})))
    b = check_sample(sample([("get_weather", {"location": "Paris"})], id="B"),
                     out(("convert_currency", {"amount": 1, "from_currency": "USD", "to_currency": "EUR"})))
    c = check_sample(sample([], "no_tool", id="C"), out())
    d = check_sample(sample([("get_weather", {"location": "Paris"}), ("get_weather", {"location": "Rome"})],
                            "parallel", id="D"), out(("get_weather", {"location": "Rome"})))
    return [a, b, c, d]


def test_every_metric_on_four_samples(four):
    m = compute_metrics(four)
    assert m["kinetic"]["accuracy"] == 0.5
    assert m["kinetic"]["tool_name_accuracy"] == 0.5
    assert m["kinetic"]["failure_rate"] == 0.0
    assert m["slm"]["exact_match"] == 0.5
    # arguments: predicted 1+3+0+1=5, true 1+1+0+2=4, correct 1+0+0+1=2
    assert m["slm"]["argument_precision"] == pytest.approx(0.4)
    assert m["slm"]["argument_recall"] == pytest.approx(0.5)
    assert m["slm"]["argument_f1"] == pytest.approx(2 * 0.4 * 0.5 / 0.9)
    # names pooled: tp 2, predicted 3, expected 4 -> P 2/3, R 1/2, F1 4/7
    assert m["slm"]["tool_select_f1"] == pytest.approx(4 / 7)
    assert m["slm"]["hallucination_free_rate"] == 1.0
    # per sample (P, R, F1): A 1,1,1  B 0,0,0  C 1,1,1  D 1,.5,2/3
    assert m["smol_tools"]["tool_selection_precision"] == pytest.approx(0.75)
    assert m["smol_tools"]["tool_selection_recall"] == pytest.approx(0.625)
    assert m["smol_tools"]["tool_selection_f1"] == pytest.approx((1 + 0 + 1 + 2 / 3) / 4)
    assert m["smol_tools"]["json_validity"] == 1.0
    assert m["smol_tools"]["argument_correctness"] == 1.0  # A's call and D's matched call
    assert m["smol_tools"]["no_tool_accuracy"] == 1.0
    assert m["smol_tools"]["per_scenario"]["parallel"] == {"count": 1, "accuracy": 0.0,
                                                           "tool_selection_f1": pytest.approx(2 / 3)}
    assert m["error_kinds"] == {"wrong_function": 1, "missing_call": 1}
    low, high = m["kinetic"]["accuracy_ci95"]
    assert low < 0.5 < high


def test_failure_rate_counts_unparseable_and_silent_outputs():
    exp = [("get_weather", {"location": "Paris"})]
    vs = [verdict(exp, out(error=ParseError("invalid_json", "x"))), verdict(exp, out()),
          verdict(exp, out(("get_weather", {"location": "Rome"}))),
          verdict(exp, out(("get_weather", {"location": "Paris"}), error=ParseError("invalid_json", "x"))),
          check_sample(sample([], "no_tool"), out())]
    m = compute_metrics(vs)
    assert m["kinetic"]["failure_rate"] == pytest.approx(3 / 4)  # all but the valid wrong call
    # JSON validity counts only outputs that attempt a call: 3, of which 1 parsed
    assert m["smol_tools"]["json_validity"] == pytest.approx(1 / 3)
    assert m["slm"]["hallucination_free_rate"] == 1.0


def test_hallucination_free_rate_counts_outputs_not_calls():
    exp = [("get_weather", {"location": "Paris"})]
    vs = [verdict(exp, out(("get_weather", {"location": "Paris", "days": 2}), ("nope", {}))),
          verdict(exp, out(("get_weather", {"location": "Paris"})))]
    assert compute_metrics(vs)["slm"]["hallucination_free_rate"] == 0.5


def test_metric_registry_declares_direction():
    assert METRICS["kinetic.failure_rate"].higher_is_better is False
    assert METRICS["slm.exact_match"].higher_is_better is True
    assert {m.group for m in METRICS.values()} == {"kinetic", "slm", "smol_tools"}


def test_metrics_of_nothing_are_none_not_errors():
    m = compute_metrics([])
    assert all(value is None for key, value in m["kinetic"].items() if key != "accuracy_ci95")
    assert all(m[group][name] is None for group, name in (k.split(".") for k in METRICS))


def test_latency_summary():
    s = latency_summary([1.0, 2.0, 3.0, 4.0])
    assert s["p50_s"] == 2.5 and s["p95_s"] == pytest.approx(3.85) and s["mean_s"] == 2.5
    assert latency_summary([])["p95_s"] is None


def test_head_to_head_with_mcnemar(four):
    flipped = [check_sample(sample([("get_weather", {"location": "Paris"})], id=v.id), out()) for v in four]
    h = head_to_head(four, flipped)
    assert (h["both"], h["only_a"], h["only_b"], h["neither"]) == (0, 2, 0, 2)
    assert h["mcnemar_exact_p"] == pytest.approx(0.5)  # two discordant pairs: 2 * 0.5**2
    with pytest.raises(ValueError, match="same samples"):
        head_to_head(four, flipped[:3])


def test_wilson_interval():
    low, high = proportion_ci(8, 10)
    assert math.isclose(low, 0.4902, abs_tol=1e-3) and math.isclose(high, 0.9433, abs_tol=1e-3)


def test_verdicts_and_parsed_outputs_round_trip_through_json(four):
    import json

    from common.evaluation.checker import Verdict
    for v in four:
        assert Verdict.from_dict(json.loads(json.dumps(v.to_dict()))) == v
    parsed = out(("get_weather", {"location": "Zürich"}), error=ParseError("invalid_json", "bad", "{"))
    assert ParsedOutput.from_dict(json.loads(json.dumps(parsed.to_dict()))) == parsed


def test_samples_write_and_read_back(tmp_path):
    from common.samples import read_samples, write_samples
    samples = [sample([("get_weather", {"location": "Paris"})], id="a"), sample([], "no_tool", id="b")]
    write_samples(samples, tmp_path / "s.jsonl")
    assert read_samples(tmp_path / "s.jsonl") == samples
    first = (tmp_path / "s.jsonl").read_text().splitlines()[0]
    (tmp_path / "dup.jsonl").write_text(f"{first}\n{first}\n")
    with pytest.raises(ValueError, match="duplicated sample ids"):
        read_samples(tmp_path / "dup.jsonl")
