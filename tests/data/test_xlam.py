"""xLAM rows as samples: type strings to JSON Schema, parallel answers, bad rows, offline loading.

The rows are hand-written in the dataset's real shape (JSON strings for `answers`
and `tools`; parameters as `{name: {type, description, default?}}`). Loading runs the
real `datasets.load_dataset` in offline mode against a datasets cache built here
from those rows; nothing touches the network.
"""

import json
import shutil

import datasets.config
import httpx
import httpx2
import jsonschema
import pytest

from common.data.xlam import (
    DATASET,
    XlamRowError,
    convert_row,
    convert_tool,
    load_xlam,
    python_type_schema,
)

SEARCH = {"name": "search_books", "description": "Search a library catalogue.", "parameters": {
    "title": {"description": "Words of the title.", "type": "str"},
    "author": {"description": "The author's name.", "type": "str, optional", "default": ""},
    "max_results": {"description": "How many to return.", "type": "int, optional", "default": 10},
    "languages": {"description": "ISO codes.", "type": "List[str]"},
    "min_rating": {"description": "Lowest rating.", "type": "Optional[float]"},
    "filters": {"description": "Extra filters.", "type": "Dict[str, Any]"},
    "in_print": {"description": "Only books in print.", "type": "bool", "default": True},
}}
WEATHER = {"name": "get_weather", "description": "Current weather in a city.",
           "parameters": {"city": {"description": "The city.", "type": "str"}}}


def row(id, query, answers, tools):
    return {"id": id, "query": query, "answers": json.dumps(answers), "tools": json.dumps(tools)}


ROWS = [
    row(0, "Find up to 3 books titled Dune in English or French.",
        [{"name": "search_books", "arguments": {"title": "Dune", "max_results": 3, "languages": ["en", "fr"]}}],
        [SEARCH, WEATHER]),
    row(1, "Weather in Oslo and in Lima?",
        [{"name": "get_weather", "arguments": {"city": "Oslo"}}, {"name": "get_weather", "arguments": {"city": "Lima"}}],
        [WEATHER]),
    {"id": 2, "query": "Broken row", "answers": '[{"name": "get_weather", "arguments": {"city": "Rome"}',
     "tools": json.dumps([WEATHER])},
    row(3, "Book a table", [{"name": "book_table", "arguments": {"people": 2}}], [WEATHER]),
    row(4, "Weather in Kyoto", [{"name": "get_weather", "arguments": {"city": "Kyoto"}}], [WEATHER]),
]


def test_xlam_parameters_become_json_schema_with_types_and_required():
    tool = convert_tool(SEARCH)
    params = tool["function"]["parameters"]
    jsonschema.Draft202012Validator.check_schema(params)
    assert tool["type"] == "function" and tool["function"]["description"] == "Search a library catalogue."
    props = params["properties"]
    assert params["type"] == "object"
    assert {k: v.get("type") for k, v in props.items()} == {
        "title": "string", "author": "string", "max_results": "integer", "languages": "array",
        "min_rating": "number", "filters": "object", "in_print": "boolean"}
    assert props["languages"]["items"] == {"type": "string"}
    assert props["max_results"] == {"type": "integer", "description": "How many to return.", "default": 10}
    # ", optional", Optional[...] and a default each mark a parameter the call may leave out
    assert params["required"] == ["title", "languages", "filters"]
    # a schema the converted tool accepts: a real call validates, a wrong type does not
    validator = jsonschema.Draft202012Validator(params)
    assert validator.is_valid({"title": "Dune", "languages": ["en"], "filters": {}})
    assert not validator.is_valid({"title": 3, "languages": ["en"], "filters": {}})


@pytest.mark.parametrize("text, schema, optional", [
    ("str", {"type": "string"}, False),
    ("List[int]", {"type": "array", "items": {"type": "integer"}}, False),
    ("List[Dict[str, Any]]", {"type": "array", "items": {"type": "object"}}, False),
    ("list", {"type": "array"}, False),
    ("Tuple[int, int]", {"type": "array", "items": {"type": "integer"}}, False),
    ("Tuple[int, str]", {"type": "array"}, False),
    ("dict", {"type": "object"}, False),
    ("Optional[int]", {"type": "integer"}, True),
    ("List[str], optional", {"type": "array", "items": {"type": "string"}}, True),
    ("float, default=0.5", {"type": "number"}, True),
    ("Union[int, float]", {"type": ["integer", "number"]}, False),
    ("Union[str, None]", {"type": "string"}, True),
    ("Any", {}, False),
    ("Callable[[int], int]", {}, False),
    ("a list of names", {}, False),
])
def test_type_strings(text, schema, optional):
    assert python_type_schema(text) == (schema, optional)
    jsonschema.Draft202012Validator.check_schema(schema)


def test_rows_become_samples_single_and_parallel():
    single = convert_row(ROWS[0], 0)
    assert (single.id, single.source, single.scenario, single.toolkit) == ("xlam-0", "xlam", "single", None)
    assert single.messages == [{"role": "user", "content": "Find up to 3 books titled Dune in English or French."}]
    assert [t["function"]["name"] for t in single.tools] == ["search_books", "get_weather"]
    assert single.expected_calls[0].model_dump() == {
        "name": "search_books", "arguments": {"title": ["Dune"], "max_results": [3], "languages": [["en", "fr"]]},
        "optional": []}
    parallel = convert_row(ROWS[1], 1)
    assert parallel.scenario == "parallel"
    assert [c.arguments for c in parallel.expected_calls] == [{"city": ["Oslo"]}, {"city": ["Lima"]}]


def test_bad_rows_raise_with_a_reason():
    with pytest.raises(XlamRowError) as bad_json:
        convert_row(ROWS[2], 2)
    with pytest.raises(XlamRowError) as unknown:
        convert_row(ROWS[3], 3)
    with pytest.raises(XlamRowError) as bad_tool:
        convert_tool({"name": "f", "parameters": {"x": "int"}})
    assert (bad_json.value.reason, unknown.value.reason, bad_tool.value.reason) == (
        "bad_json", "unknown_function", "bad_tool")


@pytest.fixture
def cached_xlam(tmp_path, monkeypatch):
    """A datasets cache holding ROWS where `load_dataset(DATASET)` looks for it offline.

    The Json builder writes the Arrow files; they are moved into the layout that
    datasets 5.2 gives a hub dataset (`<namespace>___<name>/<config>/<version>/<hash>`).
    """
    from datasets.packaged_modules.json.json import Json
    source = tmp_path / "xlam.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    builder = Json(cache_dir=str(tmp_path / "build"), dataset_name=DATASET.split("/")[1], hash="0" * 16,
                   data_files={"train": str(source)})
    builder.download_and_prepare()
    cache = tmp_path / "datasets"
    shutil.copytree(builder.cache_dir, cache / DATASET.replace("/", "___") / "default" / "0.0.0" / ("0" * 16))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.delenv("TOOLCALL_LAB_ALLOW_DOWNLOAD", raising=False)
    return cache


def test_load_reads_the_cache_offline_and_counts_dropped_rows(cached_xlam):
    offline_before = datasets.config.HF_HUB_OFFLINE
    samples, dropped = load_xlam()
    assert sorted(s.id for s in samples) == ["xlam-0", "xlam-1", "xlam-4"]
    assert dropped == {"bad_json": 1, "unknown_function": 1}
    assert datasets.config.HF_HUB_OFFLINE == offline_before  # the offline switch is put back
    again, _ = load_xlam(seed=0)
    assert [s.id for s in again] == [s.id for s in samples]


def test_subsample_is_seeded_and_a_prefix_of_a_larger_one(cached_xlam):
    two, _ = load_xlam(max_samples=2, seed=1)
    three, _ = load_xlam(max_samples=3, seed=1)
    assert len(two) == 2 and [s.id for s in three[:2]] == [s.id for s in two]
    orders = {tuple(s.id for s in load_xlam(seed=seed)[0]) for seed in range(6)}
    assert len(orders) > 1


def test_not_cached_and_downloads_off_says_how_to_get_it(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("load_xlam tried to reach the network")

    # huggingface_hub 2.x sends through httpx2; plain httpx too, in case a version goes back to it
    for client in (httpx.Client, httpx2.Client):
        monkeypatch.setattr(client, "send", no_network)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "empty")
    monkeypatch.delenv("TOOLCALL_LAB_ALLOW_DOWNLOAD", raising=False)
    offline_before = datasets.config.HF_HUB_OFFLINE
    with pytest.raises(RuntimeError, match="gated") as err:
        load_xlam()
    message = str(err.value)
    assert "TOOLCALL_LAB_ALLOW_DOWNLOAD=1" in message and "hf auth login" in message
    assert f"huggingface.co/datasets/{DATASET}" in message
    assert datasets.config.HF_HUB_OFFLINE == offline_before
