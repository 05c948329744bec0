"""The hand-written `everyday` regression suite is well formed and self-consistent."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import jsonschema
import pytest

import common
from common.samples import read_samples

SUITE = Path(common.__file__).parent / "suites" / "everyday_tools.json"

TOOL_NAMES = ["get_weather", "convert_currency", "create_reminder", "send_email",
              "create_calendar_event", "search_web", "get_stock_price", "translate_text"]
SCENARIO_COUNTS = {"tool_selection": 8, "argument_accuracy": 8, "parallel": 6, "no_tool": 6,
                   "edge_case": 7, "sequential": 5}
SYSTEM_PROMPT = "Today is Monday, 2 June 2025, 09:00 in Europe/Berlin."


@pytest.fixture(scope="module")
def samples():
    return read_samples(SUITE)


def test_loads_forty_samples_with_unique_ordered_ids(samples):
    assert len(samples) == 40
    ids = [s.id for s in samples]
    assert len(set(ids)) == len(ids)
    assert ids == [f"everyday-{i:02d}" for i in range(1, 41)]


def test_file_is_a_json_list():
    assert isinstance(json.loads(SUITE.read_text(encoding="utf-8")), list)


def test_scenario_counts(samples):
    assert dict(Counter(s.scenario for s in samples)) == SCENARIO_COUNTS


def test_metadata(samples):
    for s in samples:
        assert s.toolkit == "everyday", s.id
        assert s.source == "hand-written", s.id
        assert s.notes and s.notes.strip(), s.id


def test_exactly_eight_tools_offered_identically(samples):
    distinct = {json.dumps(t, sort_keys=True) for s in samples for t in s.tools}
    assert len(distinct) == 8
    first = samples[0].tools
    assert [t["function"]["name"] for t in first] == TOOL_NAMES
    for s in samples:
        assert s.tools == first, f"{s.id} offers a different tool list"


def test_tool_schemas_are_valid(samples):
    for tool in samples[0].tools:
        fn = tool["function"]
        assert tool["type"] == "function"
        assert fn["description"].strip()
        params = fn["parameters"]
        jsonschema.Draft202012Validator.check_schema(params)
        assert params["type"] == "object"
        assert set(params["required"]) <= set(params["properties"]), fn["name"]
        for name, prop in params["properties"].items():
            if "default" in prop:
                assert name not in params["required"], (fn["name"], name)
                jsonschema.validate(prop["default"], prop)


def test_messages_start_with_the_fixed_system_prompt(samples):
    for s in samples:
        assert s.messages[0] == {"role": "system", "content": SYSTEM_PROMPT}, s.id
        assert s.messages[-1]["role"] == "user", s.id
        assert s.messages[1]["role"] == "user", s.id


def test_history_calls_use_offered_tools(samples):
    for s in samples:
        functions = s.functions()
        for m in s.messages:
            for c in m.get("tool_calls", []):
                fn = functions[c["function"]["name"]]
                jsonschema.validate(c["function"]["arguments"], fn["parameters"])


def test_expected_call_counts(samples):
    for s in samples:
        if s.scenario == "no_tool":
            assert s.expected_calls == [], s.id
        else:
            assert len(s.expected_calls) >= 1, s.id
        if s.scenario == "parallel":
            assert len(s.expected_calls) >= 2, s.id
        if s.scenario == "sequential":
            assert len(s.expected_calls) == 1, s.id


def test_expected_calls_match_the_schemas(samples):
    for s in samples:
        functions = s.functions()
        for call in s.expected_calls:
            assert call.name in functions, f"{s.id}: {call.name} is not offered"
            params = functions[call.name]["parameters"]
            properties, required = params["properties"], set(params["required"])
            for key, values in call.arguments.items():
                assert key in properties, f"{s.id}: {call.name} has no parameter {key}"
                assert values, f"{s.id}: {key} lists no acceptable value"
                for value in values:
                    jsonschema.validate(value, properties[key])
                    if properties[key].get("type") == "number":
                        assert not isinstance(value, (str, bool)), (s.id, key, value)
            for key in call.optional:
                assert key in properties, f"{s.id}: optional {key} is not a parameter"
                assert key not in required, f"{s.id}: required {key} listed as optional"
            missing = required - set(call.arguments)
            assert not missing, f"{s.id}: {call.name} lacks required {sorted(missing)}"


def test_datetimes_are_iso(samples):
    iso = re.compile(r"^2025-\d\d-\d\dT\d\d:\d\d(:\d\d)?(\+02:00)?$")
    for s in samples:
        for call in s.expected_calls:
            for key in ("due", "start"):
                for value in call.arguments.get(key, []):
                    assert iso.match(value), (s.id, key, value)
