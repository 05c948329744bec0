"""The data builder: schemas, catalog, distractors, scenarios, filter, leakage, splits."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from common import bfcl_data
from common.data import build as data
from common.data import catalog, quality
from common.data.catalog import Catalog, Toolkit
from common.data.scenarios import SCENARIOS, SampleWriter, essential_tools, lookalike
from common.data.values import sample_value
from common.params import ParamsError, load_params
from common.samples import ExpectedCall, Sample
from common.schemas import SchemaProblem, normalize_function, validate_arguments
from common.sources import load_data, load_split, split_sha256


# -- schemas --------------------------------------------------------------------------
def test_bfcl_odd_types_become_valid_json_schema():
    raw = {"name": "f", "description": "d", "parameters": {"type": "dict", "required": ["a", "ghost"], "properties": {
        "a": {"type": "float"}, "b": {"type": "tuple", "items": {"type": "integer"}},
        "c": {"type": "any"}, "d": {"type": "dict", "properties": {"e": {"type": "float"}}},
        "m": {"type": "string", "description": "The mode. [Enum]: [\"on\", \"off\"]"}}}}
    function, fixes = normalize_function(raw)
    p = function["parameters"]
    assert p["type"] == "object" and p["required"] == ["a"]
    assert p["properties"]["a"] == {"type": "number"}
    assert p["properties"]["b"] == {"type": "array", "items": {"type": "integer"}}
    assert p["properties"]["c"] == {}
    assert p["properties"]["d"]["properties"]["e"] == {"type": "number"}
    assert p["properties"]["m"]["enum"] == ["on", "off"] and "[Enum]" not in p["properties"]["m"]["description"]
    assert {"type_dict", "type_float", "type_tuple", "type_any", "required_not_in_properties",
            "enum_from_description"} <= set(fixes)
    assert validate_arguments(function, {"a": 1.5, "b": [1, 2], "c": None, "m": "on"}) is None
    assert "a" in validate_arguments(function, {"a": "x"})


@pytest.mark.parametrize("parameters, reason", [
    ({"type": "dict", "properties": {"a": {"type": "text"}}}, "unknown_type"),
    ({"type": "object", "properties": ["a"]}, "properties_not_object"),
    ({"type": "object", "properties": {"a": {"type": "string", "minLength": "three"}}}, "invalid_json_schema"),
    ({"type": "string"}, "parameters_not_object"),
])
def test_invalid_schemas_are_rejected_with_a_reason(parameters, reason):
    with pytest.raises(SchemaProblem) as err:
        normalize_function({"name": "f", "parameters": parameters})
    assert err.value.reason == reason


def test_jsonl_catalog_counts_invalid_tools_and_names_bad_lines(tmp_path):
    path = tmp_path / "kit.jsonl"
    good = {"type": "function", "function": {"name": "a", "parameters": {"type": "dict", "properties": {}}}}
    bad = {"name": "b", "parameters": {"type": "object", "properties": {"x": {"type": "Strng"}}}}
    other = {"toolkit": "other", "name": "c", "parameters": {"type": "object", "properties": {}}}
    path.write_text("\n".join(json.dumps(x) for x in (good, bad, other)) + "\n")
    cat = catalog.from_jsonl([path])
    assert {k: t.names() for k, t in cat.toolkits.items()} == {"kit": ["a"], "other": ["c"]}
    assert cat.report["invalid"] == {"unknown_type": 1}
    assert "Strng" in cat.report["invalid_examples"]["unknown_type"]
    path.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"kit.jsonl:2: not JSON"):
        catalog.from_jsonl([path])


def test_bfcl_catalog_groups_toolkits_and_leaves_the_benchmark_out():
    cat = catalog.from_bfcl()
    _, bench = bfcl_data.benchmark_fingerprint()
    names = {f["name"] for t in cat.toolkits.values() for f in t.functions}
    assert not names & bench
    assert "get_current_weather" in cat.report["benchmark_excluded"]
    assert cat.report["fixes"]["type_dict"] > 1000 and not cat.report["invalid"]
    assert cat.toolkit_of("EventSettingsApi.get_alerting_channel") == "EventSettingsApi"
    assert cat.toolkit_of("ChaDri.change_drink") == cat.toolkit_of("ChaFod")  # appear together
    assert "cd" in cat.toolkits["gorilla_file_system"].names()
    assert "Tool description" not in cat.toolkits["gorilla_file_system"].functions[0]["description"]
    top = cat.select(top=20)
    assert len(top.toolkits) == 20 and min(len(t.functions) for t in top.toolkits.values()) >= 8
    with pytest.raises(ValueError, match="unknown toolkits"):
        cat.select(names=["no_such_kit"])


def test_bfcl_answers_become_expected_calls():
    calls = bfcl_data.expected_calls([{"f": {"a": [1, 2], "b": ["", "x"], "c": [""],
                                             "d": [{"k": ["v", "w"], "z": [""]}]}}])
    # a nested dict's alternatives become every concrete dict they allow ("z" may only be left out)
    assert calls[0].arguments == {"a": [1, 2], "b": ["x"], "d": [{"k": "v"}, {"k": "w"}]}
    assert calls[0].optional == ["b"]  # "c" may only be left out: neither pinned nor optional


# -- samples --------------------------------------------------------------------------
def _fn(name, props=None, required=None, description="Gets a thing."):
    return {"name": name, "description": description,
            "parameters": {"type": "object", "properties": props or {}, "required": required or []}}


def _catalog():
    weather = [_fn("get_weather", {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
                   ["city"], "Retrieves the current weather for a city."),
               _fn("get_forecast", {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
                   ["city", "days"], "Returns the forecast."),
               _fn("get_air_quality", {"city": {"type": "string"}}, ["city"], "Gets the air quality index."),
               _fn("get_weather_now", {"city": {"type": "string"}, "unit": {"type": "string"}}, ["city"], "Lookalike.")]
    mail = [_fn(f"mail_{v}", {"to": {"type": "string"}, "subject": {"type": "string"}}, ["to"], f"{v.title()}s a mail.")
            for v in ("send", "draft", "archive", "flag", "move", "label", "forward", "print", "star", "snooze", "pin", "mute")]
    return Catalog({"weather": Toolkit("weather", weather, "test", "Weather service"),
                    "mail": Toolkit("mail", mail, "test", "Email client")})


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_distractors_come_from_the_toolkit_without_duplicates(scenario):
    cat = _catalog()
    writer = SampleWriter(cat, tools_per_prompt=6)
    made = 0
    for i in range(60):
        s = writer.make(scenario, "mail", f"mail/{scenario}/{i}", seed=1)
        if s is None:
            continue
        made += 1
        names = [t["function"]["name"] for t in s.tools]
        assert len(names) == len(set(names)) == 6
        assert all(cat.toolkit_of(n) == "mail" for n in names)  # mail has 12 tools: no top-up
        for call in s.expected_calls:
            assert names.count(call.name) == 1
        assert essential_tools(s) <= set(names)
        assert (s.reply is None) == bool(s.expected_calls)
    assert made > 30


def test_small_toolkits_are_topped_up_and_lookalikes_kept_out():
    cat = _catalog()
    writer = SampleWriter(cat, tools_per_prompt=6)
    for i in range(40):
        s = writer.make("single", "weather", f"w/{i}", seed=3)
        names = [t["function"]["name"] for t in s.tools]
        target = s.expected_calls[0].name
        assert len(names) == 6 and names.count(target) == 1
        kits = Counter(cat.toolkit_of(n) for n in names)
        assert kits["mail"] >= 2  # weather has at most 3 usable tools
        if target in ("get_weather", "get_weather_now"):
            assert not {"get_weather", "get_weather_now"} <= set(names)
    assert lookalike(cat.function("get_weather"), cat.function("get_weather_now"))
    assert not lookalike(cat.function("get_weather"), cat.function("get_air_quality"))
    assert lookalike(_fn("segment"), _fn("segment_all_objects"))  # one name inside the other


def test_no_tool_near_miss_withholds_its_own_tool():
    writer = SampleWriter(_catalog(), tools_per_prompt=5)
    near = [s for i in range(40) if (s := writer.make("no_tool", "weather", f"n/{i}", 0)) and s.notes != "small_talk"]
    assert near
    for s in near:
        withheld = s.notes.removeprefix("withheld=")
        assert withheld not in {t["function"]["name"] for t in s.tools} and not s.expected_calls and s.reply


def test_written_requests_say_every_value_and_pass_the_filter():
    writer = SampleWriter(_catalog(), tools_per_prompt=4)
    samples = [writer.make(sc, kit, f"{kit}/{sc}/{i}", 7) for sc in SCENARIOS for kit in ("weather", "mail")
               for i in range(25)]
    samples = [s for s in samples if s is not None]
    kept, report = quality.quality_filter(samples)
    assert set(report["dropped"]) <= {"duplicate_request"}, report
    assert len(kept) > 0.7 * len(samples)


def test_quality_filter_drops_with_reasons():
    tools = [_fn("f", {"n": {"type": "integer"}}, ["n"])]

    def sample(i, text, args, name="f", source="offline"):
        return Sample(id=str(i), tools=tools, messages=[{"role": "user", "content": text}],
                      expected_calls=[ExpectedCall.exact(name, args)], source=source)

    kept, report = quality.quality_filter([
        sample(0, "call f with n 3", {"n": 3}),
        sample(1, "Call f with n 3!", {"n": 3}),  # the same request
        sample(2, "call f with n x", {"n": "x"}),  # fails the schema
        sample(4, "call f with n 5", {"n": 6}),  # the value is not in the request
        sample(5, "call f please", {"n": 6}, source="bfcl_live"),  # real requests paraphrase
    ])
    assert [s.id for s in kept] == ["0", "5"]
    assert report["dropped"] == {"duplicate_request": 1, "args_fail_schema": 1, "value_not_in_request": 1}
    with pytest.raises(ValueError, match=r"names 'g', which is not among the offered tools \['f'\]"):
        sample(3, "call g with n 4", {"n": 4}, name="g")  # refused where samples are made


def test_an_answer_naming_an_undeclared_argument_never_enters_a_build():
    """BFCL-live answers may name an argument their function lacks: the benchmark's own entry is let
    through (validated as the benchmark's), but a build's filter drops it, since reading the build
    back validates it as an ordinary sample (notebook 03's generic build stored one, session 26)."""
    tools = [_fn("f", {"n": {"type": "integer"}}, ["n"])]
    row = {"id": "live_1", "tools": tools, "messages": [{"role": "user", "content": "call f, n 3, at noon"}],
           "expected_calls": [ExpectedCall.exact("f", {"n": 3, "at": "noon"}).model_dump()], "source": "bfcl_live"}
    real = Sample.model_validate(row, context={"benchmark": True})
    assert quality.problem(real) == ("args_fail_schema", "live_1: f.at: not a declared parameter")
    with pytest.raises(ValueError, match=r"gives arguments \['at'\] that the tool's parameters do not declare"):
        Sample.model_validate(row)


def test_sampled_values_fit_their_schemas():
    rng = random.Random(0)
    for t in catalog.from_bfcl().select(top=24).toolkits.values():
        for f in t.functions:
            for name, schema in f["parameters"]["properties"].items():
                if "pattern" not in json.dumps(schema) and "format" not in schema:
                    value = sample_value(name, schema, rng)
                    assert validate_arguments({"parameters": {"type": "object", "properties": {name: schema}}},
                                              {name: value}) is None, (f["name"], name, value)


# -- the build ------------------------------------------------------------------------
def _params(tmp_path, **kw):
    base = dict(name="t", out=str(tmp_path / "t"), top_toolkits=4, samples_per_toolkit=30, eval_size=12,
                tools_per_prompt=4, max_description_chars=100, max_prompt_tokens=700, tokenizer="tiny-random-llama")
    return data.DataParams(**{**base, **kw})


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("build")
    return tmp, data.build(_params(tmp))


def test_build_writes_balanced_splits_and_a_card(built):
    tmp, card = built
    out = tmp / "t"
    train, evals = load_split(out, "train"), load_split(out, "eval")
    assert len(evals) == 12 and len(train) >= 100
    assert not {s.id for s in train} & {s.id for s in evals}
    requests = lambda xs: {bfcl_data.normalize_request(quality.request_text(s)) for s in xs}
    assert not requests(train) & requests(evals)
    per_kit = Counter(s.toolkit for s in train + evals)
    assert len(per_kit) == 4 and max(per_kit.values()) - min(per_kit.values()) <= 6
    assert set(Counter(s.scenario for s in train)) == set(SCENARIOS)
    assert card["splits"]["train"]["prompt_tokens"]["max"] <= 700
    for s in train + evals:  # the cap never drops a needed tool, nor one a reply offers
        assert essential_tools(s) <= set(s.functions()), s.id
    assert any("said=" in (s.notes or "") for s in train)
    assert card["leakage"]["same_request"] == 0 and (out / "data_card.png").stat().st_size > 10_000
    assert json.loads((out / "data_card.json").read_text())["splits"]["eval"]["samples"] == 12
    assert [s.id for s in load_data(str(out))] == [s.id for s in evals]
    assert len(load_data(f"{out}:train")) == len(train)
    # what a training run records of its data: the card's hash of the split it read
    assert split_sha256(f"{out}:train") == card["splits"]["train"]["content_sha256"]
    assert split_sha256(str(out)) == card["splits"]["eval"]["content_sha256"]
    assert split_sha256("suite:everyday_tools") is None
    # and of its samples alone, which names evaluation folders: a card from before that field gets it
    # computed from the stored rows, and token counts of another renderer do not change it
    from common.sources import content_hash, samples_hash, samples_sha256, split_samples_sha256, stored_rows
    rows = stored_rows(out, "train")
    assert content_hash(rows) == card["splits"]["train"]["content_sha256"]  # the rows come back as hashed
    assert split_samples_sha256(f"{out}:train") == card["splits"]["train"]["samples_sha256"]
    assert samples_sha256(out, "train", {"splits": {}}) == card["splits"]["train"]["samples_sha256"]
    recounted = [{**r, "prompt_tokens": r["prompt_tokens"] + 1, "n_tools": 0} for r in rows]
    assert samples_hash(recounted) == card["splits"]["train"]["samples_sha256"] != content_hash(recounted)
    assert samples_hash([{**rows[0], "expected_calls": "[]"}, *rows[1:]]) != samples_hash(rows)


def test_same_parameters_give_identical_datasets(built, tmp_path):
    _, card = built
    again = data.build(_params(tmp_path))
    assert again["splits"]["train"]["content_sha256"] == card["splits"]["train"]["content_sha256"]
    assert again["splits"]["eval"]["content_sha256"] == card["splits"]["eval"]["content_sha256"]
    assert again["splits"]["train"]["samples_sha256"] == card["splits"]["train"]["samples_sha256"]
    other = data.build(_params(tmp_path / "o", seed=1))
    assert other["splits"]["train"]["content_sha256"] != card["splits"]["train"]["content_sha256"]


def test_a_rebuild_is_skipped_and_other_parameters_need_force(built, capsys):
    tmp, card = built
    assert data.build(_params(tmp)) == card
    assert "already built" in capsys.readouterr().out
    with pytest.raises(FileExistsError, match="--force"):
        data.build(_params(tmp, seed=5))


def test_a_build_from_before_a_new_field_counts_as_built_with_its_default(tmp_path):
    config = _params(tmp_path).model_dump()
    older = {k: v for k, v in config.items() if k != "type_flip"}  # a card written before the field existed
    assert data.same_build(older, config) and data.same_build(config, config)
    assert not data.same_build(older, {**config, "type_flip": 0.5})  # ... but not when the new field is set
    assert not data.same_build({**config, "seed": 9}, config) and not data.same_build({**config, "gone": 1}, config)


def test_generic_mix_is_dominated_by_few_toolkits_and_reuses_the_eval_split(built, tmp_path):
    tmp, _ = built
    card = data.build(_params(tmp_path, mix="generic", generic_zipf=1.5, eval_from=str(tmp / "t")))
    counts = sorted(card["splits"]["train"]["toolkits"].values(), reverse=True)
    assert counts[0] > 2.5 * counts[-1]
    evals = load_split(tmp / "t", "eval")
    assert [s.id for s in load_split(tmp_path / "t", "eval")] == [s.id for s in evals]
    train_requests = {bfcl_data.normalize_request(quality.request_text(s)) for s in load_split(tmp_path / "t", "train")}
    assert not train_requests & {bfcl_data.normalize_request(quality.request_text(s)) for s in evals}


def test_unseen_tools_never_appear_in_training(tmp_path):
    card = data.build(_params(tmp_path, unseen_tools_fraction=0.25, samples_per_toolkit=20))
    held = set(card["unseen_tools"])
    train, evals = load_split(tmp_path / "t", "train"), load_split(tmp_path / "t", "eval")
    assert held and len(evals) == 12
    assert not held & {n for s in train for n in s.functions()}
    assert all({c.name for c in s.expected_calls} <= held for s in evals)
    # a build that reuses this eval split keeps its unseen tools out of training too
    data.build(_params(tmp_path / "reuse", eval_from=str(tmp_path / "t"), samples_per_toolkit=10))
    assert not held & {n for s in load_split(tmp_path / "reuse" / "t", "train") for n in s.functions()}


def test_leakage_of_the_benchmark_fails_the_build(tmp_path):
    entry = bfcl_data.read_category("simple_python")[0]
    path = tmp_path / "tools.jsonl"
    path.write_text("\n".join(json.dumps({"toolkit": "leaky", **f}) for f in entry["function"]) + "\n")
    params = _params(tmp_path, catalog_sources=["bfcl", "jsonl"], tool_files=[str(path)],
                     toolkits=["leaky", "gorilla_file_system"], request_sources=["offline"])
    with pytest.raises(quality.LeakageError, match="benchmark functions"):
        data.build(params)
    assert not (tmp_path / "t").exists()  # nothing half-built is left where a build goes
    sample = Sample(id="x", tools=[], messages=[{"role": "user", "content": bfcl_data.user_text(entry).upper()}])
    found = quality.leakage([sample], *bfcl_data.benchmark_fingerprint())
    assert found["same_request"] == ["x"]


def test_bad_parameters_fail_with_a_clear_message(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tools_per_promt: 4\n")
    with pytest.raises(ParamsError, match="did you mean 'tools_per_prompt'"):
        load_params(data.DataParams, [bad])
    with pytest.raises(ValueError, match="unknown scenarios"):
        data.DataParams(scenario_mix={"singel": 1.0})
    with pytest.raises(ValueError, match="needs `tool_files`"):
        data.DataParams(catalog_sources=["jsonl"])
    with pytest.raises(ValueError, match="needs `teacher`"):
        data.DataParams(request_sources=["teacher"])


def test_shipped_parameter_files_validate():
    from common.provenance import ROOT

    for path in sorted((ROOT / "params").glob("data*.yaml")):
        load_params(data.DataParams, [path])


def test_a_teacher_writes_the_requests_and_the_filter_checks_them():
    from common.data.teacher import Teacher

    class EchoTeacher(Teacher):
        """Says each call's values, or leaves one out when told to (a careless teacher)."""

        def __init__(self, careless: bool = False):
            self.careless, self.prompts = careless, []

        def identity(self):
            return {"model": "echo"}

        def complete(self, prompt, seed):
            self.prompts.append(prompt)
            said = prompt.split("calls:\n")[-1].split("\n\nRules")[0]
            return "Hey, " + (said[: len(said) // 2] if self.careless else said)

    teacher = EchoTeacher()
    writer = SampleWriter(_catalog(), tools_per_prompt=4, teacher=teacher)
    samples = [writer.make(sc, "mail", f"t/{sc}/{i}", 0) for sc in ("single", "parallel", "no_tool") for i in range(8)]
    samples = [s for s in samples if s is not None and s.notes != "small_talk"]
    assert samples and all(s.source == "teacher:echo" and s.messages[0]["content"].startswith("Hey") for s in samples)
    kept, report = quality.quality_filter(samples)
    assert len(kept) == len(samples), report
    careless = SampleWriter(_catalog(), tools_per_prompt=4, teacher=EchoTeacher(careless=True))
    bad = [careless.make("parallel", "mail", f"c/{i}", 0) for i in range(8)]
    _, report = quality.quality_filter([s for s in bad if s is not None])
    assert report["dropped"].get("value_not_in_request", 0) > 0


def test_unfiltered_build_keeps_dirty_samples_but_never_a_held_out_request(built, tmp_path):
    from common.sources import load_split
    tmp, _ = built
    card = data.build(_params(tmp_path, quality_filter=False, eval_from=str(tmp / "t")))
    assert card["params"]["quality_filter"] is False
    key = lambda s: quality.normalize_request(quality.request_text(s))
    train = [key(s) for s in load_split(tmp_path / "t", "train")]
    held_out = {key(s) for s in load_split(tmp / "t", "eval")}
    assert not held_out & set(train) and len(train) == len(set(train))
