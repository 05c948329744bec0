"""Parameters as validated data: layered YAML files, then `--set` overrides, the same in every command.

Each entry point declares its parameters as a pydantic model (runs that name a model
extend `ModelSpec`). The grammar, in evaluate, train, data, bfcl, sweep and quickstart alike:
1. YAML files, merged in order: a later file's top-level key replaces an earlier one's
   (so a GPU layer can reset a CPU layer's override dicts);
2. `--set KEY=VALUE ...` (each value read as YAML). A dotted key reaches into a nested
   dict (`--set sft_set.lora_r=8 eval_set.limit=20`), and a dict value merges into the
   dict it lands on key by key (`--set "eval_set={batch_size: 4}"` keeps `data` and `limit`);
3. `--replace KEY=VALUE ...`: the same, but the value replaces what is there, dict or not;
4. explicit flags (`--model`, `--out`, ...).
An unknown key fails at once with a message that names it, the closest valid key and
every valid key.
"""

from __future__ import annotations

import argparse
import difflib
import textwrap
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from common.errors import UserError
from common.formats import FORMATS
from common.provenance import command_line
from common.secrets import redact, refuse_keys
from common.tracking import WandbMode

P = TypeVar("P", bound=BaseModel)


# The model every run uses unless told otherwise (evaluation, training, BFCL, the quickstart).
DEFAULT_MODEL = "smollm2-135m-instruct"


class ParamsError(UserError):
    pass


class ModelSpec(BaseModel):
    """What every run names: the model, its tool-call format, the device, and where it logs.

    Evaluation and BFCL (`evaluation.params.GenerationSpec`, which adds the adapter, dtype
    and decoding) and training (`training.params.TrainParams`) extend it, so the default
    model is written once (`DEFAULT_MODEL`, here).
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    model: str = Field(DEFAULT_MODEL, description="registry name, hub id or local path")
    format: str | None = Field(None, description="tool-call format; default: the model's own")
    device: str = Field("cpu", description="cpu, cuda, cuda:1, ...")
    wandb: WandbMode = Field("auto", description="online, offline, disabled, or auto (WANDB_MODE, else offline)")
    wandb_project: str = Field("toolcall-lab", description="W&B project")
    wandb_group: str | None = Field(None, description="W&B group; default: the experiment")

    @field_validator("format")
    @classmethod
    def _format(cls, v: str | None) -> str | None:
        if v is not None and v not in FORMATS:
            raise ValueError(f"unknown format {v!r}; choose one of {sorted(FORMATS)}")
        return v


def add_set_argument(parser: argparse.ArgumentParser,
                     params: type[BaseModel] | dict[str, type[BaseModel]] | None = None, dest: str = "set") -> None:
    """`--set KEY=VALUE ...` and `--replace KEY=VALUE ...`, repeatable, the same in every command
    (read them back with `overrides_of(args, dest)`); `params`, the command's parameter class (or a
    class per stage), is listed after the options, each key with its default and meaning."""
    parser.add_argument("--set", dest=dest, nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override parameters (each value read as YAML; a dotted key such as eval_set.limit=20 "
                        "reaches into a dict, and a dict value merges key by key)"
                        + ("; the keys are listed below" if params else ""))
    parser.add_argument("--replace", dest=f"{dest}_replace", nargs="+", action="extend", default=[],
                        metavar="KEY=VALUE", help="as --set, but the value replaces a dict instead of merging into it")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (else one line)")
    if params:
        parser.epilog = parameters_help(params)


def parameters_help(params: type[BaseModel] | dict[str, type[BaseModel]]) -> str:
    """Each parameter of a command (`add_set_argument`): name and default, then its meaning. With a
    class per stage, what every stage shares alike comes first, then what each adds or changes."""
    groups = params if isinstance(params, dict) else {"": params}
    classes = list(groups.values())
    first = classes[0]
    shared = [n for n in first.model_fields if len(classes) > 1
              and all(n in c.model_fields and _entry(c, n) == _entry(first, n) for c in classes[1:])]
    sections = [("parameters of every stage", first, shared)] if shared else []
    sections += [(f"parameters{f' of {label}' if label else ''}", c, [n for n in c.model_fields if n not in shared])
                 for label, c in groups.items()]
    lines = []
    for title, cls, names in sections:
        lines += ["", f"{title} (keys of the YAML files and of --set KEY=VALUE; default after =):"]
        for name in names:
            lines += _entry(cls, name)
    return "\n".join(lines).strip("\n")


def _entry(cls: type[BaseModel], name: str) -> list[str]:
    field = cls.model_fields[name]
    if field.is_required():
        default = "(required)"
    else:
        value = field.get_default(call_default_factory=True)
        value = value.model_dump() if isinstance(value, BaseModel) else value
        try:
            default = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6)
            default = default.strip().removesuffix("...").strip()  # a scalar's document end marker
        except yaml.YAMLError:  # a value YAML cannot write (none so far): as Python shows it
            default = repr(value)
    meaning = textwrap.wrap(field.description or "(no description)", width=96, break_on_hyphens=False,
                            break_long_words=False, initial_indent="      ", subsequent_indent="      ")
    return [f"  {name} = {default}", *meaning]


class Replace:
    """An override value that replaces what it lands on (`--replace`), instead of merging into it."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Replace) and other.value == self.value

    def __repr__(self) -> str:
        return f"Replace({self.value!r})"


def overrides_of(args: argparse.Namespace, dest: str = "set") -> dict[str, Any]:
    """The overrides of `--set` and `--replace` (`add_set_argument`), nested, ready for `merge`."""
    return merge(parse_overrides(getattr(args, dest)),
                 parse_overrides(getattr(args, f"{dest}_replace", []), replace=True), settle=False)


def invocation(prog: str, files: list[str], args: argparse.Namespace, dest: str = "set") -> str:
    """The command a run records: `prog`, its parameter files and its `--set`/`--replace`
    overrides as given, paths portable and secrets redacted (`provenance.command_line`)."""
    sets, replaces = getattr(args, dest), getattr(args, f"{dest}_replace", [])
    return " ".join(command_line([prog, *files, *(["--set", *sets] if sets else []),
                                  *(["--replace", *replaces] if replaces else [])]))


def merge(base: dict[str, Any], over: dict[str, Any], settle: bool = True) -> dict[str, Any]:
    """`over` on top of `base`, key by key into nested dicts; a `Replace` value replaces. Neither is changed.
    With `settle=False` (two sets of overrides made one) the `Replace` marks are kept for a later merge."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Replace):
            out[key] = value.value if settle else value
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value, settle)
        else:
            out[key] = settled(value) if settle else value
    return out


def settled(value: Any) -> Any:
    """`value` with every `Replace` marker inside it taken off (nothing to merge into)."""
    if isinstance(value, Replace):
        return settled(value.value)
    if isinstance(value, dict):
        return {k: settled(v) for k, v in value.items()}
    return value


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


def parse_overrides(items: list[str], replace: bool = False) -> dict[str, Any]:
    """`["eval_set.limit=20", "seed=1"]` -> {"eval_set": {"limit": 20}, "seed": 1}: each value
    read as YAML, a dotted key nested. With `replace`, each value is marked to replace (`Replace`)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ParamsError(f"override {item!r} is not key=value (e.g. --set batch_size=4)")
        key, value = item.split("=", 1)
        try:
            parsed = yaml.safe_load(value) if value else None
        except yaml.YAMLError as err:
            raise ParamsError(f"override {item!r}: the value is not valid YAML ({getattr(err, 'problem', err)}); "
                              "quote it, e.g. --set 'key=\"a: b\"'") from None
        *path, last = [k.strip() for k in key.split(".")]
        if not last or not all(path):
            raise ParamsError(f"override {item!r}: {key!r} is not a key or a dotted path (e.g. eval_set.limit=20)")
        nested = {last: Replace(parsed) if replace else parsed}
        for k in reversed(path):
            nested = {k: nested}
        out = merge(out, nested, settle=False)
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
    for key, value in overrides.items():
        if isinstance(value, dict) and key in merged and not isinstance(merged[key], dict):
            raise ParamsError(f"{key} is {merged[key]!r}, not a mapping: a dotted key cannot reach into it; "
                              f"give the whole value (--set {key}=...)")
    merged = merge(merged, overrides)
    where = ", ".join([*map(str, files), *(["the overrides"] if overrides else [])]) or "the defaults"
    refuse_keys(merged, where)
    try:
        return cls.model_validate(merged)
    except ValidationError as err:
        raise ParamsError(validation_message(err, where)) from None
