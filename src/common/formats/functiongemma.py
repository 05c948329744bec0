"""FunctionGemma tool calls: `<start_function_call>call:NAME{key:value,…}<end_function_call>`.

The format of google/functiongemma-270m-it. Values use a JSON-like syntax of its own:
strings between `<escape>` marks, numbers, `true`, `false` and `null` bare, lists in
`[…]`, objects in `{…}` with bare keys. Tools are declared in the same syntax
(`<start_function_declaration>declaration:NAME{…}<end_function_declaration>`) and tool
results come back as `<start_function_response>response:NAME{…}<end_function_response>`.
A string that contains `<escape>` cannot be written in this format.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from common.formats.base import (
    MalformedCall,
    ParsedOutput,
    ToolCallFormat,
    collect_calls,
    find_tag,
    skip_space,
    split_reasoning,
)
from common.samples import ToolCall, normalize_tool

START, END = "<start_function_call>", "<end_function_call>"
DECLARATION, DECLARATION_END = "<start_function_declaration>", "<end_function_declaration>"
RESPONSE, RESPONSE_END = "<start_function_response>", "<end_function_response>"
ESCAPE = "<escape>"
# The sentence FunctionGemma was trained to read as "tools follow" (its model card).
PREAMBLE = "You are a model that can do function calling with the following functions"

NAME = re.compile(r"[\w.\-]+")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
BARE_END = set(",:{}[]<")


class FunctionGemmaFormat(ToolCallFormat):
    name = "functiongemma"
    answer_tokens = 192
    native_marker = DECLARATION
    stop_texts = ("<start_function_response>",)

    def render_calls(self, calls: list[ToolCall]) -> str:
        return "".join(f"{START}call:{c.name}{render_value(c.arguments)}{END}" for c in calls)

    def system_prompt(self, tools: list[dict[str, Any]]) -> str:
        declarations = "".join(
            f"{DECLARATION}declaration:{f['name']}"
            f"{render_value({'description': f['description'], 'parameters': _upper_types(f['parameters'])})}"
            f"{DECLARATION_END}"
            for f in (normalize_tool(t)["function"] for t in tools))
        return (
            f"{PREAMBLE}{declarations}\n"
            f"To call a function, answer with {START}call:NAME{{key:value,...}}{END}, one block "
            f"per call. Strings go between {ESCAPE} marks; numbers, true, false and null are "
            "written bare; lists as [...] and objects as {key:value,...}. "
            "If no function fits the request, answer in plain text without a call.")

    def render_tool_result(self, name: str, content: str) -> str:
        try:
            value = json.loads(content)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            value = {"result": content}
        return f"{RESPONSE}response:{name}{render_value(value)}{RESPONSE_END}"

    def parse(self, text: str, tools: list[dict[str, Any]] | None = None) -> ParsedOutput:
        reasoning, rest, error = split_reasoning(text)
        out = ParsedOutput(reasoning=reasoning, error=error)
        # The model hands over to the tool by opening the response block; that stop
        # sequence may be left in the decoded text.
        rest = rest.removesuffix(RESPONSE).rstrip()

        def read(t: str, start: int, body: int) -> tuple[list[ToolCall], int]:
            call, end = _read_call(t, body)
            return [call], end
        collect_calls(rest, out, find_tag(START), read)
        return out


def render_value(value: Any) -> str:
    """A JSON value in FunctionGemma's syntax; object keys sorted, as its template does."""
    if isinstance(value, str):
        return f"{ESCAPE}{value}{ESCAPE}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{_render_key(k)}:{render_value(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(render_value(v) for v in value) + "]"
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def _render_key(key: str) -> str:
    # The template writes keys bare; one that would break the syntax is escaped,
    # which the parser (like FunctionGemma's own declarations) also reads.
    return key if key.isidentifier() else f"{ESCAPE}{key}{ESCAPE}"


def _upper_types(schema: Any) -> Any:
    """A JSON schema with its type names upper-cased (STRING, OBJECT), as declarations use."""
    if isinstance(schema, dict):
        return {k: (v.upper() if k == "type" and isinstance(v, str)
                    else [t.upper() for t in v] if k == "type" and isinstance(v, list)
                    else _upper_types(v))
                for k, v in schema.items()}
    if isinstance(schema, list):
        return [_upper_types(v) for v in schema]
    return schema


def _read_call(text: str, pos: int) -> tuple[ToolCall, int]:
    """One call from just after `<start_function_call>`; returns it and where it ends."""
    if not text.startswith("call:", pos):
        raise MalformedCall("syntax_error", f"expected call:NAME{{…}} after {START}", pos)
    name = NAME.match(text, pos + len("call:"))
    if name is None:
        raise MalformedCall("missing_field", "a call needs a function name", pos)
    pos = name.end()
    if pos == len(text):
        raise MalformedCall("unclosed_tag", f"the call to {name.group()} stops before its arguments", pos)
    if text[pos] != "{":
        raise MalformedCall("syntax_error", f"expected {{ after call:{name.group()}", pos)
    reader = _Reader(text, pos)
    arguments = reader.value()
    pos = reader.skip()
    if text.startswith(END, pos):
        pos += len(END)
    elif pos < len(text):  # a missing close at the very end is accepted, as in hermes
        raise MalformedCall("unclosed_tag", f"text after the arguments before {END}", pos)
    return ToolCall(name=name.group(), arguments=arguments), pos


class _Reader:
    """Recursive descent over FunctionGemma values, from `pos` in `text`."""

    def __init__(self, text: str, pos: int):
        self.text, self.pos = text, pos

    def skip(self) -> int:
        self.pos = skip_space(self.text, self.pos)
        return self.pos

    def fail(self, expected: str) -> MalformedCall:
        if self.pos >= len(self.text):
            return MalformedCall("unclosed_tag", f"the call ends where {expected} was expected", self.pos)
        return MalformedCall("syntax_error", f"expected {expected}, found {self.text[self.pos]!r}", self.pos)

    def value(self) -> Any:
        self.skip()
        if self.text.startswith(ESCAPE, self.pos):
            return self.string()
        if self.text.startswith("{", self.pos):
            return self.container("}", self.member, {})
        if self.text.startswith("[", self.pos):
            return self.container("]", self.item, [])
        return self.bare()

    def container(self, close: str, read_entry: Callable[[Any], None], out: Any) -> Any:
        self.pos += 1
        if self.skip() < len(self.text) and self.text[self.pos] == close:
            self.pos += 1
            return out
        while True:
            read_entry(out)
            self.skip()
            if self.text.startswith(",", self.pos):
                self.pos += 1
            elif self.text.startswith(close, self.pos):
                self.pos += 1
                return out
            else:
                raise self.fail(f"',' or '{close}'")

    def member(self, out: dict[str, Any]) -> None:
        self.skip()
        key = self.string() if self.text.startswith(ESCAPE, self.pos) else self.token()
        if not key:
            raise self.fail("a key")
        if key in out:
            raise MalformedCall("syntax_error", f"key {key!r} given twice", self.pos)
        self.skip()
        if not self.text.startswith(":", self.pos):
            raise self.fail("':'")
        self.pos += 1
        out[key] = self.value()

    def item(self, out: list[Any]) -> None:
        out.append(self.value())

    def string(self) -> str:
        start = self.pos + len(ESCAPE)
        end = self.text.find(ESCAPE, start)
        if end == -1:
            self.pos = len(self.text)
            raise self.fail(f"the {ESCAPE} that closes a string")
        self.pos = end + len(ESCAPE)
        return self.text[start:end]

    def token(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in BARE_END:
            self.pos += 1
        return self.text[start:self.pos].strip()

    def bare(self) -> Any:
        token = self.token()
        if not token:
            raise self.fail("a value")
        if NUMBER.fullmatch(token):
            return int(token) if token.lstrip("-").isdigit() else float(token)
        if token in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[token]
        # A bare word is read as the string it spells: models drop the <escape> marks
        # around simple strings (`unit:celsius`), and the schema check still sees the value.
        return token
