"""What a tool-calling sample is, and how samples are read and written.

A sample holds the tools offered (OpenAI function format), the conversation so far,
the calls expected next (none, one or several, each argument with a list of
acceptable values, as BFCL does), its scenario, toolkit and source. Every dataset,
suite and benchmark in the project is a JSONL file of these.

Run `python -m common.samples FILE` to validate a file and print its counts.
"""

from __future__ import annotations

import json
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from common.errors import ArgumentParser, UserError, cli
from common.jsonio import json_lines
from common.schemas import SchemaProblem, normalize_types, parameters_problems


class ToolCall(BaseModel):
    """One call as made by a model: a function name and its decoded arguments."""

    model_config = ConfigDict(extra="forbid")
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)

    @field_validator("arguments", mode="before")
    @classmethod
    def _decode(cls, value: Any) -> Any:
        return decode_arguments(value)


class ExpectedCall(BaseModel):
    """A call the sample expects. `arguments` maps each key to its acceptable values.

    A key missing from `arguments` must not be given a non-default value. A key in
    `optional` may be left out (an optional argument the request does not pin down).
    """

    model_config = ConfigDict(extra="forbid")
    name: str
    arguments: dict[str, list[Any]] = Field(default_factory=dict)
    optional: list[str] = Field(default_factory=list)

    @field_validator("arguments")
    @classmethod
    def _non_empty(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        empty = [k for k, v in value.items() if not v]
        if empty:
            raise ValueError(f"arguments {empty} list no acceptable value; give at least one "
                             "or move the key to `optional`")
        return value

    def target_arguments(self) -> dict[str, Any]:
        """The arguments a model is trained to write: the first acceptable value of each one the
        call pins down (optional arguments the request leaves open are left out)."""
        return {k: v[0] for k, v in self.arguments.items()}

    @classmethod
    def exact(cls, name: str, arguments: dict[str, Any]) -> ExpectedCall:
        """The expected call whose only acceptable values are the given ones."""
        return cls(name=name, arguments={k: [v] for k, v in arguments.items()})


class Sample(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    tools: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    expected_calls: list[ExpectedCall] = Field(default_factory=list)
    scenario: str = "single"
    toolkit: str | None = None
    source: str = "unknown"
    notes: str | None = None
    # What the assistant should say when no call is expected (a clarifying question,
    # a refusal, an answer): the training target of a no-call sample.
    reply: str | None = None

    @field_validator("tools")
    @classmethod
    def _tools(cls, value: list[dict[str, Any]], info: ValidationInfo) -> list[dict[str, Any]]:
        return [checked_tool(normalize_tool(t), benchmark=_benchmark(info)) for t in value]

    @field_validator("messages")
    @classmethod
    def _messages(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not value:
            raise ValueError("a sample needs at least one message")
        return [normalize_message(m) for m in value]

    @model_validator(mode="after")
    def _expected_calls_fit_the_tools(self, info: ValidationInfo) -> Sample:
        """Every expected call names an offered tool, with arguments its schema declares
        (a sample that breaks this could never be answered right)."""
        functions = self.functions()
        for i, call in enumerate(self.expected_calls):
            if call.name not in functions:
                raise ValueError(f"expected_calls[{i}] names {call.name!r}, which is not among the offered "
                                 f"tools {sorted(functions)}")
            undeclared = undeclared_arguments(call, functions[call.name])
            # BFCL's answer key is taken as BFCL gives it: a few answers name an argument the
            # function lacks, which BFCL's own checker, like this project's, never accepts.
            if undeclared and not _benchmark(info):
                props = (functions[call.name].get("parameters") or {}).get("properties") or {}
                raise ValueError(f"expected_calls[{i}] ({call.name}) gives arguments {undeclared} that the "
                                 f"tool's parameters do not declare (declared: {sorted(props)})")
        return self

    def functions(self) -> dict[str, dict[str, Any]]:
        """The offered functions by name (the `function` part of each tool)."""
        return {t["function"]["name"]: t["function"] for t in self.tools}

    @property
    def expects_call(self) -> bool:
        return bool(self.expected_calls)


def decode_arguments(value: Any) -> dict[str, Any]:
    """Arguments as a dict, whether given as a dict or as a JSON string (OpenAI's wire form).

    A string is decoded once; a string that decodes to another JSON string (double
    encoding, a known bug of some servers) is decoded a second time and no more.
    """
    if value is None:
        return {}
    for _ in range(2):
        if not isinstance(value, str):
            break
        try:
            value = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError as err:
            raise ValueError(f"arguments are not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise ValueError(f"arguments must be a JSON object, got {type(value).__name__}")
    return value


def undeclared_arguments(call: ExpectedCall, function: dict[str, Any]) -> list[str]:
    """The arguments (given or optional) an expected call names that its function does not declare."""
    props = (function.get("parameters") or {}).get("properties") or {}
    return [k for k in [*call.arguments, *call.optional] if k not in props]


def _benchmark(info: ValidationInfo) -> bool:
    """Validated with context {"benchmark": True}: a benchmark's own entries (bfcl_data)."""
    return bool(info.context and info.context.get("benchmark"))


@lru_cache(maxsize=8192)
def _parameters_problems(text: str) -> tuple[str, ...]:
    """Why parameters (as sorted JSON text) are unusable, cached: a dataset repeats its tools."""
    try:
        return tuple(parameters_problems(normalize_types(json.loads(text))))
    except SchemaProblem as err:
        return (f"parameters: {err}",)


def checked_tool(tool: dict[str, Any], benchmark: bool = False) -> dict[str, Any]:
    """The tool with its parameters' type names made JSON Schema's (`str` -> `string`, as the
    data build does; nothing else changes, key order included, so prompts stay as they were),
    refused when the parameters are still not a usable JSON Schema object. A benchmark keeps
    a function it gives in its own unusable form (bfcl_data)."""
    function = tool["function"]
    problems = _parameters_problems(json.dumps(function["parameters"], sort_keys=True))
    if problems:
        if benchmark:
            return tool
        raise ValueError(f"tool {function['name']!r}: " + "; ".join(problems))
    return {"type": "function", "function": {**function, "parameters": normalize_types(function["parameters"])}}


def normalize_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """`{"type": "function", "function": {...}}`, given either that or a bare function."""
    function = (tool.get("function", tool) if tool.get("type", "function") == "function" else None) \
        if isinstance(tool, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise ValueError(f"not an OpenAI function tool (needs a `name`): {json.dumps(tool)[:200]}")
    function = dict(function)
    function.setdefault("description", "")
    function.setdefault("parameters", {"type": "object", "properties": {}})
    return {"type": "function", "function": function}


def normalize_message(message: dict[str, Any]) -> dict[str, Any]:
    """A chat message with `content` always a string and tool calls in one shape.

    `content: None` (what OpenAI sends beside tool calls) becomes "", and each tool
    call becomes `{"type": "function", "function": {"name", "arguments": dict}}`.
    """
    if message.get("role") not in {"system", "user", "assistant", "tool"}:
        raise ValueError(f"unknown message role {message.get('role')!r}; "
                         "use system, user, assistant or tool")
    out = dict(message)
    out["content"] = "" if message.get("content") is None else message["content"]
    if message.get("tool_calls"):
        calls = []
        for call in message["tool_calls"]:
            function = call.get("function", call)
            calls.append({"type": "function", "function": {
                "name": function["name"], "arguments": decode_arguments(function.get("arguments"))}})
        out["tool_calls"] = calls
    else:
        out.pop("tool_calls", None)
    return out


def message_calls(message: dict[str, Any]) -> list[ToolCall]:
    """The calls an (already normalised) assistant message made."""
    return [ToolCall(**c["function"]) for c in message.get("tool_calls", [])]


def sample_error(err: ValidationError, where: str, row: Any) -> UserError:
    """One line: the file and line, the sample's id, and each field that is wrong."""
    sid = row.get("id") if isinstance(row, dict) else None
    fields = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'sample'}: {e['msg'].removeprefix('Value error, ')}"
                       for e in err.errors())
    # one line, whatever the file holds (a key may itself contain a newline)
    return UserError(f"{where}: sample {sid!r} is not valid: {fields}".replace("\n", "\\n"))


def validate_rows(rows: list[tuple[str, Any]], source: str) -> list[Sample]:
    """Samples from (where, row) pairs, each validated; ids must be unique."""
    samples = []
    for where, row in rows:
        try:
            samples.append(Sample.model_validate(row))
        except ValidationError as err:
            raise sample_error(err, where, row) from None
    duplicated = [k for k, n in Counter(s.id for s in samples).items() if n > 1]
    if duplicated:
        raise UserError(f"{source}: duplicated sample ids {duplicated[:5]}; ids must be unique")
    return samples


def read_samples(path: str | Path) -> list[Sample]:
    """Samples from a JSONL file (or a JSON list), each line validated; errors name the
    file, the line, the sample's id and the field. An empty file is an error."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no sample file at {path}" + (" (a folder, but not a data build: it has no data_card.json)"
                                                        if path.is_dir() else ""))
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as err:
            raise UserError(f"{path} is not UTF-8 text ({err})") from None
        except json.JSONDecodeError as err:
            raise UserError(f"{path}:{err.lineno}: not JSON ({err.msg})") from None
        if not isinstance(data, list):
            raise UserError(f"{path} must hold a JSON list of samples, not {type(data).__name__}")
        rows = [(f"{path}[{i}]", row) for i, row in enumerate(data)]
    else:
        rows = [(f"{path}:{i}", row) for i, row in json_lines(path, "one sample (a JSON object)")]
    if not rows:
        raise UserError(f"{path} holds no samples; a samples file has one JSON sample per line")
    return validate_rows(rows, str(path))


def write_samples(samples: list[Sample], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for s in samples:
            f.write(s.model_dump_json(exclude_none=True) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="python -m common.samples", description="Validate sample files (JSONL or JSON) "
                            "and print their counts per scenario, toolkit and source.")
    parser.add_argument("paths", nargs="+", metavar="FILE", help="sample files")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (else one line)")
    for path in parser.parse_args(argv).paths:
        samples = read_samples(path)
        print(f"{path}: {len(samples)} samples")
        for key in ("scenario", "toolkit", "source"):
            print(f"  {key}: {dict(Counter(getattr(s, key) for s in samples))}")


if __name__ == "__main__":
    cli(main)
