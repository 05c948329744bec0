"""What a tool-calling sample is, and how samples are read and written.

A sample holds the tools offered (OpenAI function format), the conversation so far,
the calls expected next (none, one or several, each argument with a list of
acceptable values, as BFCL does), its scenario, toolkit and source. Every dataset,
suite and benchmark in the project is a JSONL file of these.

Run `python -m common.samples FILE` to validate a file and print its counts.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


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
    def _tools(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [normalize_tool(t) for t in value]

    @field_validator("messages")
    @classmethod
    def _messages(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not value:
            raise ValueError("a sample needs at least one message")
        return [normalize_message(m) for m in value]

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


def normalize_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """`{"type": "function", "function": {...}}`, given either that or a bare function."""
    function = tool.get("function", tool) if tool.get("type", "function") == "function" else None
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


def read_samples(path: str | Path) -> list[Sample]:
    """Samples from a JSONL file (or a JSON list), each line validated; errors name the line."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no sample file at {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        rows = [(i + 1, row) for i, row in enumerate(json.loads(text))]
    else:
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append((i, json.loads(line)))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{i}: not JSON ({err})") from None
    samples = []
    for where, row in rows:
        try:
            samples.append(Sample.model_validate(row))
        except ValidationError as err:
            raise ValueError(f"{path}:{where}: not a valid sample:\n{err}") from None
    duplicated = [k for k, n in Counter(s.id for s in samples).items() if n > 1]
    if duplicated:
        raise ValueError(f"{path}: duplicated sample ids {duplicated[:5]}; ids must be unique")
    return samples


def write_samples(samples: list[Sample], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for s in samples:
            f.write(s.model_dump_json(exclude_none=True) + "\n")


def main(argv: list[str] | None = None) -> None:
    for path in argv if argv is not None else sys.argv[1:]:
        samples = read_samples(path)
        print(f"{path}: {len(samples)} samples")
        for key in ("scenario", "toolkit", "source"):
            print(f"  {key}: {dict(Counter(getattr(s, key) for s in samples))}")


if __name__ == "__main__":
    main()
