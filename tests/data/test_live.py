"""The live mix (common.data.live): BFCL-live as training data, its held-back splits and augmentation."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from common import bfcl_data
from common.data import build as data
from common.data import live, quality
from common.samples import ExpectedCall, Sample
from common.schemas import validate_arguments
from common.training.training_data import target_calls


def _tool(name, props, required=(), description="Does a thing."):
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": props, "required": list(required)}}}


WEATHER = _tool("get_weather", {"city": {"type": "string", "description": "City"},
                                "unit": {"type": "string", "enum": ["c", "f"], "default": "c"},
                                "days": {"type": "integer", "default": 1}}, ["city"], "Gets the weather.")
AREA = _tool("circle_area", {"radius": {"type": "number"}, "sides": {"type": "array", "items": {"type": "number"}},
                             "label": {"type": "string", "default": None}}, ["radius"], "Area of a circle.")
BOOK = _tool("book_hotel", {"city": {"type": "string"}, "nights": {"type": "integer"}}, ["city"], "Books a hotel.")


def _sample(sid, tools, text, calls, toolkit="kit"):
    return Sample(id=sid, tools=tools, messages=[{"role": "user", "content": text}], expected_calls=calls,
                  toolkit=toolkit, source="bfcl_live", scenario="single" if calls else "no_tool")


def test_masking_renames_tools_and_answers_alike_and_moves_only_unset_defaults():
    s = _sample("a", [WEATHER, BOOK], "Weather in Paris for 3 days, please",
                [ExpectedCall(name="get_weather", arguments={"city": ["Paris"], "days": [3]})])
    m = live.mask(s, random.Random(0))
    (call,) = m.expected_calls
    f = m.functions()[call.name]
    assert call.name not in {"get_weather", "book_hotel"} and "masked" in m.notes
    props = f["parameters"]["properties"]
    assert set(call.arguments) <= set(props) and not {"city", "unit", "days"} & set(props)
    assert f["parameters"]["required"] == [k for k in props if props[k].get("description") == "City"]
    days = next(v for v in props.values() if v["type"] == "integer")
    unit = next(v for v in props.values() if v.get("enum"))
    assert days["default"] == 1 and unit["default"] == "f"  # the set argument keeps its default; unset moves
    assert [f["description"] for f in m.functions().values()] == [t["function"]["description"] for t in s.tools]
    assert quality.problem(m) is None and validate_arguments(f, target_calls(m)[0].arguments) is None
    assert live.mask(s, random.Random(0)) == m and live.mask(s, random.Random(1)) != m
    drawn = frozenset(m.functions())  # reserved names (BFCL's non-live functions) are never drawn
    assert not drawn & set(live.mask(s, random.Random(0), reserved=drawn).functions())


def test_typed_writes_declared_floats_and_leaves_unfillable_optionals_out():
    s = _sample("t", [AREA], "area of radius 5 with sides 1 and 2",
                [ExpectedCall(name="circle_area", arguments={"radius": [5, 5.0], "sides": [[1, 2]], "label": [None]},
                              optional=["label"])])
    (call,) = live.typed(s).expected_calls
    assert call.arguments["radius"][0] == 5.0 and isinstance(call.arguments["radius"][0], float)
    assert call.arguments["sides"][0] == [1.0, 2.0] and all(isinstance(x, float) for x in call.arguments["sides"][0])
    assert "label" not in call.arguments and call.optional == ["label"]
    bad = _sample("b", [AREA], "area", [ExpectedCall(name="circle_area", arguments={"radius": ["big"]})])
    assert quality.problem(live.typed(bad))[0] == "args_fail_schema"  # a required value that cannot fit stays, and is dropped


def test_flipped_types_change_schema_and_answer_alike_and_only_for_whole_numbers():
    s = _sample("f", [WEATHER, AREA], "Weather in Paris for 3 days, and the area of radius 5 or 2.5",
                [ExpectedCall(name="get_weather", arguments={"city": ["Paris"], "days": [3]}),
                 ExpectedCall(name="circle_area", arguments={"radius": [5.0]}),
                 ExpectedCall(name="circle_area", arguments={"radius": [2.5]})])
    seen = set()
    for seed in range(40):
        f = live.flip_types(s, random.Random(seed))
        days = f.functions()["get_weather"]["parameters"]["properties"]["days"]
        radius = f.functions()["circle_area"]["parameters"]["properties"]["radius"]
        assert radius["type"] == "number" and f.expected_calls[1:] == s.expected_calls[1:]  # 2.5 is no whole number
        assert f.expected_calls[0].arguments["city"] == ["Paris"] and f.functions()["get_weather"]["parameters"][
            "properties"]["unit"] == WEATHER["function"]["parameters"]["properties"]["unit"]
        (value,) = f.expected_calls[0].arguments["days"]
        if days["type"] == "number":  # flipped: the answer and the default are floats now
            assert isinstance(value, float) and value == 3 and isinstance(days["default"], float)
            assert "types flipped" in f.notes
            assert quality.problem(f) is None and validate_arguments(f.functions()["get_weather"], {"city": "Paris", "days": 3.0}) is None
        else:
            assert f == s and isinstance(value, int)
        seen.add(days["type"])
    assert seen == {"integer", "number"}  # about half of the draws flip
    whole = _sample("w", [AREA], "area of radius 5", [ExpectedCall(name="circle_area", arguments={"radius": [5.0]})])
    flipped = next(x for x in (live.flip_types(whole, random.Random(i)) for i in range(20)) if x != whole)
    assert flipped.functions()["circle_area"]["parameters"]["properties"]["radius"]["type"] == "integer"
    assert flipped.expected_calls[0].arguments["radius"] == [5] and isinstance(target_calls(flipped)[0].arguments[
        "radius"], int)
    assert WEATHER["function"]["parameters"]["properties"]["days"]["type"] == "integer"  # the input is not touched
    # never flipped: a value too large to write alike as int and float, or to integer past a fractional default
    big = _sample("g", [AREA], "area of radius 1e16", [ExpectedCall(name="circle_area", arguments={"radius": [1e16]})])
    half = _tool("circle_area", {"radius": {"type": "number", "default": 0.5}}, [], "Area of a circle.")
    frac = _sample("h", [half], "area of radius 5", [ExpectedCall(name="circle_area", arguments={"radius": [5.0]})])
    assert all(live.flip_types(x, random.Random(i)) == x for x in (big, frac) for i in range(20))


def test_a_swapped_value_changes_request_and_answer_alike():
    s = _sample("w", [WEATHER], "What's the weather in Paris for 3 days?",
                [ExpectedCall(name="get_weather", arguments={"city": ["Paris"], "days": [3]})])
    other = _sample("o", [WEATHER], "Weather in Lagos", [ExpectedCall(name="get_weather", arguments={"city": ["Lagos"]})])
    pool = live.value_pool([s, other])
    assert pool == {"city": ["Lagos", "Paris"]}
    for seed in range(6):
        swapped = live.swap_value(s, pool, random.Random(seed))
        text = quality.request_text(swapped)
        args = swapped.expected_calls[0].arguments
        assert text != quality.request_text(s)
        assert str(args["city"][0]) in text and f" {args['days'][0]} days" in text
    lone = _sample("l", [WEATHER], "Weather here", [ExpectedCall(name="get_weather", arguments={"city": ["Oslo"]})])
    assert live.swap_value(lone, pool, random.Random(0)) is None  # nothing said verbatim


def test_composed_parallel_joins_requests_tools_and_calls_in_order():
    a = _sample("a", [WEATHER], "Weather in Paris?", [ExpectedCall(name="get_weather", arguments={"city": ["Paris"]})])
    b = _sample("b", [BOOK, WEATHER], "Book a hotel in Rome for 2 nights.",
                [ExpectedCall(name="book_hotel", arguments={"city": ["Rome"], "nights": [2]})])
    c = live.compose([a, b], "composed/1", random.Random(3))
    assert [x.name for x in c.expected_calls] == ["get_weather", "book_hotel"]
    assert sorted(c.functions()) == ["book_hotel", "get_weather"] and c.scenario == "parallel"
    text = quality.request_text(c)
    assert text.startswith("Weather in Paris?") and "otel in Rome for 2 nights." in text
    assert "parallel_multiple from a + b" in c.notes and quality.problem(c) is None
    other = _tool("get_weather", {"town": {"type": "string"}}, ["town"])  # BFCL reuses names with other parameters
    d = _sample("d", [other], "Weather in Oslo?", [ExpectedCall(name="get_weather", arguments={"town": ["Oslo"]})])
    assert live.compose([a, d], "composed/2", random.Random(3)) is None


def test_a_near_miss_withholds_the_fitting_tool_and_its_lookalikes():
    now = _tool("get_weather_now", {"city": {"type": "string"}}, ["city"])
    s = _sample("n", [WEATHER, now, BOOK], "Weather in Paris?",
                [ExpectedCall(name="get_weather", arguments={"city": ["Paris"]})])
    m = live.near_miss(s, "near/1", random.Random(0))
    assert sorted(m.functions()) == ["book_hotel"] and not m.expected_calls and m.reply
    assert m.scenario == "no_tool" and quality.problem(m) is None
    alone = _sample("x", [WEATHER, now], "Weather?", [ExpectedCall(name="get_weather", arguments={"city": ["P"]})])
    assert live.near_miss(alone, "near/2", random.Random(0)) is None


def test_whole_toolkits_are_held_back_and_big_ones_never():
    samples = [_sample(f"{k}-{i}", [WEATHER], "q", [], toolkit=k)
               for k, n in [("big", 60)] + [(f"k{j}", 2) for j in range(40)] for i in range(n)]
    where = live.split_toolkits(samples, 0.1, 0.1, seed=0)
    assert where["big"] == "train"
    sizes = Counter(where[s.toolkit] for s in samples)
    assert 14 <= sizes["dev"] <= 16 and 14 <= sizes["transfer"] <= 16
    assert live.split_toolkits(samples, 0.1, 0.1, seed=0) == where != live.split_toolkits(samples, 0.1, 0.1, seed=1)


def test_toolkits_offered_together_are_held_back_together_and_excluded_requests_stay_out():
    from common.data import catalog
    cat = catalog.from_bfcl()
    bench_requests, bench_functions = bfcl_data.benchmark_fingerprint()
    pool = live.live_pool(cat, bench_requests, bench_functions, Counter())
    group = {}
    for s in pool:
        for name in s.functions():
            assert group.setdefault(name, s.toolkit) == s.toolkit, name  # a function lives in one group
    assert any("+" in s.toolkit for s in pool)  # some entries join toolkits of several namespaces
    one = next(s for s in pool if s.expected_calls)
    dropped = Counter()
    fewer = live.live_pool(cat, bench_requests, bench_functions, dropped,
                           frozenset({bfcl_data.normalize_request(quality.request_text(one))}))
    assert one.id not in {s.id for s in fewer} and dropped["live_in_another_held_out_set"] >= 1


def _live_params(tmp_path, **kw):
    base = {"name": "l", "out": str(tmp_path / "l"), "mix": "live", "catalog_sources": ["bfcl"],
            "request_sources": ["bfcl_live"], "masking": 0.5, "composed_parallel": 60, "near_miss": 40,
            "no_call_share": 0.2, "tools_per_prompt": 3, "max_prompt_tokens": 768, "tokenizer": "tiny-random-llama"}
    return data.DataParams(**{**base, **kw})


@pytest.mark.slow
def test_the_live_build_holds_toolkits_back_and_never_leaks(tmp_path):
    card = data.build(_live_params(tmp_path))
    out = tmp_path / "l"
    from common.sources import load_split
    train, dev, transfer = (load_split(out, k) for k in ("train", "eval", "transfer"))
    # no function offered in one split is offered in another (masked names aside, which are random)
    names = {k: {n for s in xs if "masked" not in (s.notes or "") for n in s.functions()}
             for k, xs in (("train", train), ("dev", dev), ("transfer", transfer))}
    assert not names["train"] & names["dev"] and not names["train"] & names["transfer"]
    assert not names["dev"] & names["transfer"] and len(names["dev"]) > 50 and len(names["transfer"]) > 50
    norm = lambda xs: {bfcl_data.normalize_request(quality.request_text(s)) for s in xs}
    assert not norm(train) & norm(dev + transfer)
    bench_requests, bench_functions = bfcl_data.benchmark_fingerprint()
    assert not norm(train + dev + transfer) & bench_requests
    assert not {n for s in train + dev + transfer for n in s.functions()} & bench_functions
    sources = Counter(s.source for s in train)
    assert sources["bfcl_live"] > 1000 and sources["bfcl_live_composed"] > 30 and sources["bfcl_live_near_miss"] > 0
    assert abs(card["live"]["train"]["no_call_share"] - 0.2) < 0.01 and card["live"]["train"]["masked"] > 300
    kept = card["filter"]["kept"]  # counts of what the build kept, after the filter and the cap
    assert sources["bfcl_live_composed"] == kept["composed_parallel"]
    assert all(s.source == "bfcl_live" and "masked" not in (s.notes or "") for s in dev + transfer)
    assert all(quality.problem(s) is None for s in train)
    assert card["splits"]["train"]["prompt_tokens"]["max"] <= 768
    used = set(card["bfcl_live_ids_in_train"])  # every real request the training part draws on, composed or not
    assert {s.id.split("#")[0] for s in train if s.source == "bfcl_live"} <= used
    assert not used & {s.id for s in dev + transfer}
    # held-back splits in a seeded order, not BFCL's category order: the first few hold both kinds
    for xs in (dev, transfer):
        assert len({bool(s.expected_calls) for s in xs[:10]}) == 2
    # exported for TRL: the dev split validates, the unseen toolkits test; BFCL's licence, live ids named
    from datasets import load_from_disk
    hf = load_from_disk(str(out / "hf"))
    assert [len(hf[k]) for k in ("train", "validation", "test")] == [len(train), len(dev), len(transfer)]
    assert [r["id"] for r in hf["test"]] == [s.id for s in transfer]
    readme = (out / "hf" / "README.md").read_text()
    assert "license: apache-2.0" in readme and "BFCL *live* entries are used for training" in readme


def test_the_live_mix_refuses_other_sources(tmp_path):
    with pytest.raises(ValueError, match="mix: live builds from BFCL-live alone"):
        _live_params(tmp_path, request_sources=["offline", "bfcl_live"])
