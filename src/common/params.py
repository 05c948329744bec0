"""Parameters as validated data: layered YAML files, then `key=value` overrides.

Each entry point declares its parameters as a pydantic model. Files are merged in
order (a later file overrides an earlier one), then `--set key=value` overrides (the
value read as YAML), then explicit flags. An unknown key fails at once with a message
that names it, the closest valid key and every valid key.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

P = TypeVar("P", bound=BaseModel)


class ParamsError(ValueError):
    pass


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"no parameter file at {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ParamsError(f"{path} must hold a mapping of parameter: value, not {type(data).__name__}")
    return data


def parse_overrides(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        if "=" not in item:
            raise ParamsError(f"override {item!r} is not key=value (e.g. --set batch_size=4)")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value) if value else None
    return out


def check_keys(cls: type[BaseModel], data: dict[str, Any], where: str) -> None:
    valid = list(cls.model_fields)
    for key in data:
        if key not in cls.model_fields:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ParamsError(f"unknown parameter {key!r} in {where}{hint}; valid parameters: {', '.join(valid)}")


def load_params(cls: type[P], files: list[str | Path] = (), overrides: dict[str, Any] | None = None) -> P:
    merged: dict[str, Any] = {}
    for f in files:
        data = read_yaml(f)
        check_keys(cls, data, str(f))
        merged.update(data)
    overrides = {k: v for k, v in (overrides or {}).items()}
    check_keys(cls, overrides, "the overrides")
    merged.update(overrides)
    try:
        return cls.model_validate(merged)
    except ValidationError as err:
        raise ParamsError(f"invalid parameters:\n{err}") from None
