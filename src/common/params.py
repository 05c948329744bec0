"""Parameters as validated data: layered YAML files, then `key=value` overrides.

Each entry point declares its parameters as a pydantic model. Files are merged in
order (a later file overrides an earlier one), then `--set key=value` overrides (the
value read as YAML), then explicit flags. An unknown key fails at once with a message
that names it, the closest valid key and every valid key.
"""

from __future__ import annotations

import argparse
import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from common.errors import UserError
from common.secrets import redact, refuse_keys

P = TypeVar("P", bound=BaseModel)


class ParamsError(UserError):
    pass


def add_set_argument(parser: argparse.ArgumentParser, names: list[str] | None = None, dest: str = "set") -> None:
    """`--set KEY=VALUE [KEY=VALUE ...]`, repeatable, the same in every command."""
    parser.add_argument("--set", dest=dest, nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override parameters (each value read as YAML)"
                        + (f": {', '.join(names)}" if names else ""))
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (else one line)")


def validation_message(err: ValidationError, where: str = "") -> str:
    """Pydantic's errors, one line each: which parameter, what is wrong, the value given."""
    lines = []
    for e in err.errors():
        key = ".".join(str(x) for x in e["loc"]) or "(all)"
        msg = e["msg"].removeprefix("Value error, ")
        given = "" if e["type"] in {"missing", "extra_forbidden"} or isinstance(e.get("input"), dict) else \
            f" (given {redact(repr(e.get('input')))[:80]})"
        lines.append(f"{key}: {msg}{given}")
    return f"invalid parameters{' in ' + where if where else ''}: " + "; ".join(lines)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"no parameter file at {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f":{mark.line + 1}" if mark else ""
        raise ParamsError(f"{path}{at} is not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path} must hold a mapping of parameter: value, not {type(data).__name__}")
    return data


def parse_overrides(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        if "=" not in item:
            raise ParamsError(f"override {item!r} is not key=value (e.g. --set batch_size=4)")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(value) if value else None
        except yaml.YAMLError as err:
            raise ParamsError(f"override {item!r}: the value is not valid YAML ({getattr(err, 'problem', err)}); "
                              "quote it, e.g. --set 'key=\"a: b\"'") from None
    return out


def check_keys(cls: type[BaseModel], data: dict[str, Any], where: str) -> None:
    valid = list(cls.model_fields)
    for key in data:
        if key not in cls.model_fields:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ParamsError(f"unknown parameter {key!r} in {where}{hint}; valid parameters: {', '.join(valid)}")


def load_params(cls: type[P], files: list[str | Path] = (), overrides: dict[str, Any] | None = None) -> P:
    if isinstance(files, (str, Path)):
        files = [files]
    merged: dict[str, Any] = {}
    for f in files:
        data = read_yaml(f)
        check_keys(cls, data, str(f))
        merged.update(data)
    overrides = dict(overrides or {})
    check_keys(cls, overrides, "the overrides")
    merged.update(overrides)
    where = ", ".join([*map(str, files), *(["the overrides"] if overrides else [])]) or "the defaults"
    refuse_keys(merged, where)
    try:
        return cls.model_validate(merged)
    except ValidationError as err:
        raise ParamsError(validation_message(err, where)) from None
