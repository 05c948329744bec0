"""Tool schemas made valid JSON Schema, and checked with `jsonschema`.

Sources write parameter schemas in dialects: BFCL uses the Python names `dict`,
`float`, `tuple` and `any`, and hides enums in descriptions ("[Enum]: [...]");
xLAM writes `List[int]` or `str, optional`. `normalize_function` turns one function
into an OpenAI function whose `parameters` is a JSON Schema object, and says what
it changed; `schema_problem` says why a schema is still invalid (the catalog drops
such tools and counts the reasons).
"""

from __future__ import annotations

import copy
import json
import re
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator, SchemaError

# Python and BFCL type names -> JSON Schema. `any` means "no type restriction".
TYPE_NAMES = {
    "dict": "object", "object": "object", "float": "number", "number": "number",
    "double": "number", "int": "integer", "integer": "integer", "long": "integer",
    "str": "string", "string": "string", "bool": "boolean", "boolean": "boolean",
    "list": "array", "array": "array", "tuple": "array", "null": "null", "any": None,
}
ENUM_HINT = re.compile(r"\s*\[Enum\]:\s*(\[[^\]]*\])")
VALIDATOR = Draft202012Validator


class SchemaProblem(ValueError):
    """A schema that cannot be made valid; `reason` is a short, countable label."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def normalize_schema(schema: Any, fixes: list[str], where: str = "parameters") -> dict[str, Any]:
    """A copy of `schema` in standard JSON Schema; each change is appended to `fixes`."""
    if not isinstance(schema, dict):
        raise SchemaProblem("schema_not_object", f"{where} is {type(schema).__name__}, not a mapping")
    out = {k: copy.deepcopy(v) for k, v in schema.items() if k not in ("properties", "items", "type")}
    if "type" in schema:
        out.update(_normalize_type(schema["type"], fixes, where))
    description = out.get("description")
    if isinstance(description, str) and "enum" not in out:
        hint = ENUM_HINT.search(description)
        if hint:
            try:
                values = json.loads(hint.group(1))
            except json.JSONDecodeError:
                values = None
            if isinstance(values, list) and values:
                out["description"] = ENUM_HINT.sub("", description).strip()
                fixes.append("enum_from_description")
                if out.get("type") == "array":  # the hint lists the allowed items
                    items = dict(schema.get("items") or {})
                    items.setdefault("enum", values)
                    schema = {**schema, "items": items}
                else:
                    out["enum"] = values
    if "properties" in schema:
        props = schema["properties"]
        if not isinstance(props, dict):
            raise SchemaProblem("properties_not_object", f"{where}.properties is {type(props).__name__}")
        out["properties"] = {k: normalize_schema(v, fixes, f"{where}.{k}") for k, v in props.items()}
    if "items" in schema:
        items = schema["items"]
        if isinstance(items, list):  # the old tuple form; 2020-12 calls it prefixItems
            out["prefixItems"] = [normalize_schema(i, fixes, f"{where}[]") for i in items]
            fixes.append("tuple_items")
        else:
            out["items"] = normalize_schema(items, fixes, f"{where}[]")
    if "required" in out:
        required = out["required"]
        if not isinstance(required, list):
            raise SchemaProblem("required_not_list", f"{where}.required is {type(required).__name__}")
        known = set(out.get("properties", {}))
        kept = [r for r in dict.fromkeys(required) if r in known]
        if len(kept) != len(required):
            fixes.append("required_not_in_properties")
        out["required"] = kept
    return out


def _normalize_type(value: Any, fixes: list[str], where: str) -> dict[str, Any]:
    names = value if isinstance(value, list) else [value]
    mapped = []
    for name in names:
        if not isinstance(name, str) or name.lower() not in TYPE_NAMES:
            raise SchemaProblem("unknown_type", f"{where} has type {name!r}")
        json_name = TYPE_NAMES[name.lower()]
        if json_name != name:
            fixes.append(f"type_{name}")
        if json_name is None:  # `any` admits every value
            return {}
        mapped.append(json_name)
    return {"type": mapped if isinstance(value, list) else mapped[0]}


def normalize_types(schema: Any, where: str = "parameters") -> Any:
    """A copy of `schema` with Python and BFCL type names (`str`, `dict`, `float`, `any`) made
    JSON Schema's, at every depth; nothing else changes. An unknown type name raises."""
    if isinstance(schema, list):
        return [normalize_types(s, f"{where}[{i}]") for i, s in enumerate(schema)]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "type":
            out.update(_normalize_type(value, [], where))
        elif key in ("properties", "$defs", "definitions", "patternProperties") and isinstance(value, dict):
            out[key] = {k: normalize_types(v, f"{where}.{k}") for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not", "prefixItems", "anyOf", "oneOf", "allOf"):
            out[key] = normalize_types(value, f"{where}.{key}")
        else:
            out[key] = value
    return out


def parameters_problems(schema: Any, where: str = "parameters") -> list[str]:
    """Why a tool's `parameters` is not a usable JSON Schema object: not an object schema,
    invalid against the meta-schema, or a `required` that is not a list of declared
    properties (at any depth). Empty when it is usable."""
    if not isinstance(schema, dict):
        return [f"{where} is {type(schema).__name__}, not a JSON Schema object"]
    problems = []
    meta = meta_schema_error(json.dumps(schema, sort_keys=True))
    if meta:
        problems.append(f"{where}{meta} (not valid JSON Schema)")

    def walk(node: Any, at: str) -> None:
        if not isinstance(node, dict):
            return
        props = node.get("properties")
        required = node.get("required")
        if required is not None:
            if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
                problems.append(f"{at}.required must be a list of property names, not {required!r}")
            else:
                undeclared = [r for r in required if not isinstance(props, dict) or r not in props]
                if undeclared:
                    problems.append(f"{at}.required names {undeclared}, which {at}.properties does not declare")
        if isinstance(props, dict):
            for k, v in props.items():
                walk(v, f"{at}.{k}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{at}[]")
    walk(schema, where)
    if schema.get("type") != "object":
        problems.append(f"{where} must have type \"object\" (a tool's arguments are named), not {schema.get('type')!r}")
    return problems


@lru_cache(maxsize=16384)
def meta_schema_error(text: str) -> str | None:
    """"/path: message" of the first way the schema (as JSON text) breaks the JSON Schema
    meta-schema, or None. Cached: checking takes milliseconds, and tools repeat."""
    try:
        VALIDATOR.check_schema(json.loads(text))
    except SchemaError as err:
        at = "/".join(str(p) for p in err.absolute_path)
        return f"{'/' + at if at else ''}: {err.message}"
    return None


def schema_problem(schema: dict[str, Any]) -> str | None:
    """Why `schema` is not a usable parameters schema, or None when it is."""
    meta = meta_schema_error(json.dumps(schema, sort_keys=True))
    if meta:
        return f"invalid_json_schema: {meta.split(': ', 1)[1]}"
    if schema.get("type") != "object":
        return "parameters_not_object"
    return None


def invalid_defaults(schema: dict[str, Any]) -> list[str]:
    """Properties whose `default` fails their own schema (BFCL has `unit` enums whose
    default is not in the enum, and `""` defaults on integers). Kept, but counted:
    the checker accepts an omitted optional argument whatever its default says."""
    bad = []
    for name, prop in schema.get("properties", {}).items():
        if "default" in prop and prop["default"] is not None:
            sub = {k: v for k, v in prop.items() if k != "default"}
            if not VALIDATOR(sub).is_valid(prop["default"]):
                bad.append(name)
    return bad


def normalize_function(function: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """An OpenAI function (name, description, JSON Schema parameters) and the fixes made.

    Raises `SchemaProblem` when the result is still not valid JSON Schema.
    """
    if not isinstance(function.get("name"), str) or not function["name"].strip():
        raise SchemaProblem("no_name", json.dumps(function)[:120])
    fixes: list[str] = []
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    parameters = normalize_schema(parameters, fixes)
    if "type" not in parameters and "properties" in parameters:
        parameters["type"] = "object"
        fixes.append("type_missing")
    parameters.setdefault("properties", {})
    problem = schema_problem(parameters)
    if problem:
        raise SchemaProblem(problem.split(":")[0], f"{function['name']}: {problem}")
    if invalid_defaults(parameters):
        fixes.append("default_fails_own_schema")
    out = {"name": function["name"], "description": str(function.get("description") or "").strip(),
           "parameters": parameters}
    return out, fixes


def validate_arguments(function: dict[str, Any], arguments: dict[str, Any]) -> str | None:
    """The first way `arguments` break the function's schema, or None when they fit."""
    errors = sorted(VALIDATOR(function.get("parameters", {})).iter_errors(arguments), key=str)
    if not errors:
        return None
    err = errors[0]
    path = ".".join(str(p) for p in err.absolute_path) or "arguments"
    return f"{path}: {err.message}"


def trim_description(text: str, max_chars: int | None) -> str:
    """The first sentences of `text` that fit in `max_chars` (at least the first, cut)."""
    if not max_chars or len(text) <= max_chars:
        return text
    sentences = re.split(r"(?<=[.!?])\s+", text)
    out = ""
    for sentence in sentences:
        if len(out) + len(sentence) + 1 > max_chars:
            break
        out = f"{out} {sentence}".strip()
    return out or text[: max_chars - 1].rstrip() + "…"


def trim_function(function: dict[str, Any], max_chars: int | None) -> dict[str, Any]:
    """A copy with the function's and every parameter's description trimmed."""
    if not max_chars:
        return function
    out = copy.deepcopy(function)
    out["description"] = trim_description(out.get("description", ""), max_chars)

    def walk(schema: dict[str, Any]) -> None:
        if isinstance(schema.get("description"), str):
            schema["description"] = trim_description(schema["description"], max_chars)
        for sub in schema.get("properties", {}).values():
            walk(sub)
        if isinstance(schema.get("items"), dict):
            walk(schema["items"])

    for prop in out["parameters"].get("properties", {}).values():
        walk(prop)
    return out
