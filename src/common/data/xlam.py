"""The xLAM function-calling dataset (Salesforce/xlam-function-calling-60k) as samples.

An optional source of the data builder: 60k single and parallel calls over 3,673
APIs. Each row holds JSON strings: `query`, `answers` (a list of `{name, arguments}`)
and `tools` (a list of `{name, description, parameters}`). Its `parameters` are NOT
a JSON Schema: they map each parameter name to `{"type": "str, optional" |
"List[int]" | "Dict[str, Any]" | ..., "description", "default"?}`. Rendering that
as-is into a chat template gives prompts no model was trained on (it broke another
project's prompts), so `convert_tool` turns it into a JSON Schema object first.

    from common.data.xlam import load_xlam
    samples, dropped = load_xlam(max_samples=2000, seed=0)

Loading is offline by default: the dataset is read from the local `datasets` cache.
It is gated on the Hub, so a first download needs its terms accepted and a login,
and TOOLCALL_LAB_ALLOW_DOWNLOAD=1.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import jsonschema
from pydantic import ValidationError

from common.models import downloads_allowed
from common.samples import ExpectedCall, Sample

DATASET = "Salesforce/xlam-function-calling-60k"

_SCALARS = {"str": "string", "string": "string", "int": "integer", "integer": "integer",
            "float": "number", "number": "number", "double": "number", "bool": "boolean",
            "boolean": "boolean", "none": "null", "nonetype": "null"}
_ARRAYS = {"list", "sequence", "iterable", "set", "tuple", "array"}
_OBJECTS = {"dict", "mapping", "object"}
# "int, optional" and "str, default='x'" both mark a parameter the call may leave out
_OPTIONAL_SUFFIX = re.compile(r",\s*(optional\b.*|default\s*[=:].*)$", re.IGNORECASE | re.DOTALL)


class XlamRowError(ValueError):
    """A row that cannot become a sample; `reason` is the key it is counted under."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason


def _split_args(text: str) -> list[str]:
    """`int, List[str]` -> ["int", "List[str]"]: commas at bracket depth 0 only."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def python_type_schema(text: str) -> tuple[dict[str, Any], bool]:
    """(JSON Schema, optional) for an xLAM type string such as `Optional[List[int]]`.

    A type we cannot read (`Callable`, `Any`, a typo) gives `{}`: no restriction is
    better than a wrong one, and the row is kept.
    """
    text = text.strip()
    optional = False
    if _OPTIONAL_SUFFIX.search(text):
        text, optional = _OPTIONAL_SUFFIX.sub("", text).strip(), True
    match = re.fullmatch(r"([A-Za-z_][\w.]*)\s*(?:\[(.*)\])?", text, re.DOTALL)
    if match is None:
        return {}, optional
    name, inner = match.group(1).split(".")[-1].lower(), match.group(2)
    args = _split_args(inner) if inner else []
    if name == "optional" and len(args) == 1:
        return python_type_schema(args[0])[0], True
    if name == "union" and args:
        members = [python_type_schema(a)[0] for a in args]
        optional = optional or {"type": "null"} in members
        members = [m for m in members if m != {"type": "null"}]
        if not members or {} in members:
            return {}, optional
        if len(members) == 1:
            return members[0], optional
        if all(set(m) == {"type"} for m in members):
            return {"type": sorted({m["type"] for m in members})}, optional
        return {"anyOf": members}, optional
    if name in _SCALARS:
        return {"type": _SCALARS[name]}, optional
    if name in _ARRAYS:
        schema: dict[str, Any] = {"type": "array"}
        item_schemas = [python_type_schema(a)[0] for a in args if a != "..."]
        if item_schemas and all(s == item_schemas[0] for s in item_schemas) and item_schemas[0]:
            schema["items"] = item_schemas[0]
        return schema, optional
    if name in _OBJECTS:
        return {"type": "object"}, optional
    return {}, optional


def convert_parameters(parameters: Any) -> dict[str, Any]:
    """xLAM's `{param: {type, description, default?}}` as a JSON Schema object."""
    if parameters in (None, {}, []):
        return {"type": "object", "properties": {}, "required": []}
    if not isinstance(parameters, dict):
        raise XlamRowError("bad_tool", f"parameters must be an object, got {type(parameters).__name__}")
    if parameters.get("type") == "object" and isinstance(parameters.get("properties"), dict):
        return parameters  # already a JSON Schema (a param spec's `type` is never the string "object")
    properties, required = {}, []
    for name, spec in parameters.items():
        if not isinstance(spec, dict):
            raise XlamRowError("bad_tool", f"parameter {name!r} is not an object: {spec!r}")
        schema, optional = python_type_schema(str(spec.get("type", "")))
        if spec.get("description"):
            schema["description"] = spec["description"]
        if "default" in spec:
            schema["default"] = spec["default"]
        properties[name] = schema
        if not optional and "default" not in spec:
            required.append(name)
    return {"type": "object", "properties": properties, "required": required}


def convert_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """An xLAM tool as a valid OpenAI function tool whose parameters are JSON Schema."""
    if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or not tool["name"]:
        raise XlamRowError("bad_tool", f"a tool needs a name: {json.dumps(tool)[:200]}")
    parameters = convert_parameters(tool.get("parameters"))
    try:
        jsonschema.Draft202012Validator.check_schema(parameters)
    except jsonschema.SchemaError as err:
        raise XlamRowError("bad_tool", f"{tool['name']}: not a valid JSON Schema ({err.message})") from None
    return {"type": "function", "function": {
        "name": tool["name"], "description": tool.get("description") or "", "parameters": parameters}}


def _json_field(row: dict[str, Any], key: str) -> Any:
    value = row.get(key)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as err:
            raise XlamRowError("bad_json", f"`{key}` is not JSON ({err})") from None
    if value is None:
        raise XlamRowError("bad_json", f"`{key}` is missing")
    return value


def convert_row(row: dict[str, Any], index: int) -> Sample:
    """One xLAM row as a sample; raises XlamRowError (with a reason) for a row we cannot use."""
    query = row.get("query")
    if not isinstance(query, str) or not query.strip():
        raise XlamRowError("empty_query", "the row has no query")
    answers, tools = _json_field(row, "answers"), _json_field(row, "tools")
    if not isinstance(answers, list) or not isinstance(tools, list):
        raise XlamRowError("bad_json", "`answers` and `tools` must be JSON lists")
    converted = [convert_tool(t) for t in tools]
    names = {t["function"]["name"] for t in converted}
    calls = []
    for answer in answers:
        if not isinstance(answer, dict) or not isinstance(answer.get("arguments", {}), dict):
            raise XlamRowError("bad_answer", f"not a call with object arguments: {json.dumps(answer)[:200]}")
        if answer.get("name") not in names:
            raise XlamRowError("unknown_function", f"the answer calls {answer.get('name')!r}, not offered")
        calls.append(ExpectedCall.exact(answer["name"], answer.get("arguments", {})))
    if not calls:
        raise XlamRowError("no_call", "the row expects no call")
    try:
        return Sample(id=f"xlam-{row.get('id', index)}", tools=converted,
                      messages=[{"role": "user", "content": query}], expected_calls=calls,
                      scenario="parallel" if len(calls) > 1 else "single", toolkit=None, source="xlam")
    except ValidationError as err:  # e.g. an answer with an argument its tool does not declare
        raise XlamRowError("invalid_sample", err.errors()[0]["msg"].removeprefix("Value error, ")) from None


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """Make `datasets` read only its local cache for the duration.

    HF_HUB_OFFLINE is read once, when `datasets` is imported, into `datasets.config`
    (there is no offline `download_mode`), so setting the environment variable now
    would change nothing; the module attributes are what its loader checks.
    """
    # `datasets` takes seconds to import; only the xLAM source needs it
    import datasets.config
    import huggingface_hub.constants as hub_constants  # (as above)
    saved = datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved


def _not_available(cause: Exception) -> RuntimeError:
    return RuntimeError(
        f"the xLAM dataset ({DATASET}) is not in the local datasets cache and downloads are off "
        f"({type(cause).__name__}: {str(cause)[:200]}). It is gated on the Hugging Face Hub: accept its "
        f"terms at https://huggingface.co/datasets/{DATASET}, log in with `hf auth login` (or set HF_TOKEN), "
        "then run once with TOOLCALL_LAB_ALLOW_DOWNLOAD=1 to download and cache it.")


def load_rows() -> Any:
    """The train split, from the cache; from the Hub only if downloads are allowed."""
    import datasets  # seconds to import; only the xLAM source needs it
    try:
        with hub_offline():
            return datasets.load_dataset(DATASET, split="train")
    except (ConnectionError, FileNotFoundError, ValueError) as err:  # DatasetNotFoundError is a FileNotFoundError
        if not downloads_allowed():
            raise _not_available(err) from None
    try:
        return datasets.load_dataset(DATASET, split="train")
    except datasets.exceptions.DatasetNotFoundError as err:
        raise _not_available(err) from None


def load_xlam(max_samples: int | None = None, seed: int = 0) -> tuple[list[Sample], dict[str, int]]:
    """(samples, dropped): up to `max_samples` converted rows and the count of skipped rows per reason.

    Rows are visited in an order shuffled by `seed` until `max_samples` convert, so a
    subsample is deterministic and a smaller one is a prefix of a larger one with the
    same seed; `dropped` counts the rows visited that could not be converted.
    """
    rows = load_rows()
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    samples: list[Sample] = []
    dropped: Counter[str] = Counter()
    for index in order:
        if max_samples is not None and len(samples) >= max_samples:
            break
        try:
            samples.append(convert_row(rows[index], index))
        except XlamRowError as err:
            dropped[err.reason] += 1
        except ValueError:  # the Sample model refused it (pydantic's ValidationError)
            dropped["invalid_sample"] += 1
    return samples, dict(dropped)
