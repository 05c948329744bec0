"""Qwen3-Coder XML tool calls: one `<function=NAME>` block of `<parameter=KEY>` values per call.

```
<tool_call>
<function=get_weather>
<parameter=city>
Paris
</parameter>
</function>
</tool_call>
```

Values carry no type: a string is written as it is, anything else as JSON, and the
parser converts each value by the argument's schema type (`parse(text, tools)`), as
vLLM's qwen3_coder parser does. A value ends at the first `</parameter>`, so a string
that contains that tag cannot be written in this format.
"""

from __future__ import annotations

import json
import re
from typing import Any

from common.formats.base import (
    MalformedCall,
    ParsedOutput,
    ToolCallFormat,
    collect_calls,
    property_types,
    skip_space,
    split_reasoning,
    tools_as_json,
)
from common.samples import ToolCall

OPEN, CLOSE = "<tool_call>", "</tool_call>"
FUNCTION, FUNCTION_END = "<function=", "</function>"
PARAMETER, PARAMETER_END = "<parameter=", "</parameter>"
# vLLM also reads a <function=…> block the model wrote without its <tool_call> wrapper.
CALL_START = re.compile(f"{re.escape(OPEN)}|{re.escape(FUNCTION)}")


class QwenXmlFormat(ToolCallFormat):
    name = "qwen_xml"
    answer_tokens = 224
    native_marker = FUNCTION
    stop_texts = ("<tool_response>",)

    def render_calls(self, calls: list[ToolCall]) -> str:
        return "\n".join(f"{OPEN}\n{_render_function(c)}\n{CLOSE}" for c in calls)

    def system_prompt(self, tools: list[dict[str, Any]]) -> str:
        # Qwen3-Coder's own instructions, with the tools as JSON lines (the template's
        # XML listing drops nested schemas).
        return (
            "# Tools\n\nYou have access to the following functions:\n\n"
            f"<tools>\n{tools_as_json(tools)}\n</tools>\n\n"
            "If you choose to call a function ONLY reply in the following format with NO suffix:\n\n"
            f"{OPEN}\n{FUNCTION}example_function_name>\n{PARAMETER}example_parameter_1>\nvalue_1\n"
            f"{PARAMETER_END}\n{PARAMETER}example_parameter_2>\nThis is the value for the second "
            f"parameter\nthat can span\nmultiple lines\n{PARAMETER_END}\n{FUNCTION_END}\n{CLOSE}\n\n"
            "<IMPORTANT>\nReminder:\n"
            f"- Function calls MUST follow the specified format: an inner {FUNCTION}...>"
            f"{FUNCTION_END} block must be nested within {OPEN}{CLOSE} XML tags\n"
            f"- To call several functions, write one {OPEN} block per call\n"
            "- Write string values as they are and any other value as JSON\n"
            "- Required parameters MUST be specified\n"
            "- You may provide optional reasoning for your function call in natural language "
            "BEFORE the function call, but NOT after\n"
            "- If no function fits the request, answer in plain text without a call\n"
            "</IMPORTANT>")

    def parse(self, text: str, tools: list[dict[str, Any]] | None = None) -> ParsedOutput:
        reasoning, rest, error = split_reasoning(text)
        out = ParsedOutput(reasoning=reasoning, error=error)
        schemas = property_types(tools)

        def find(t: str, pos: int) -> tuple[int, int] | None:
            match = CALL_START.search(t, pos)
            # a bare <function=…> block (no <tool_call> around it) is read from its own start
            return None if match is None else (match.start(), match.end() if match.group() == OPEN else -1)

        def read(t: str, start: int, body: int) -> tuple[list[ToolCall], int]:
            if body == -1:
                return _read_functions(t, start, schemas)
            calls, end = _read_functions(t, body, schemas)
            end = skip_space(t, end)
            if t.startswith(CLOSE, end):
                return calls, end + len(CLOSE)
            if end < len(t):  # a missing close at the very end is accepted, as in hermes
                raise MalformedCall("unclosed_tag", f"text after {FUNCTION_END} before {CLOSE}", end)
            return calls, end
        collect_calls(rest, out, find, read)
        return out


def _render_function(call: ToolCall) -> str:
    params = "".join(f"{PARAMETER}{key}>\n{_render_value(value)}\n{PARAMETER_END}\n"
                     for key, value in call.arguments.items())
    return f"{FUNCTION}{call.name}>\n{params}{FUNCTION_END}"


def _render_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _read_functions(text: str, pos: int, schemas: dict[str, dict[str, Any]]
                    ) -> tuple[list[ToolCall], int]:
    """The `<function=…>` blocks from `pos` on (vLLM accepts several in one `<tool_call>`)."""
    calls = []
    while text.startswith(FUNCTION, pos := skip_space(text, pos)):
        call, pos = _read_function(text, pos, schemas)
        calls.append(call)
    if not calls:
        if pos == len(text):
            raise MalformedCall("unclosed_tag", f"{OPEN} with nothing after it", pos)
        raise MalformedCall("syntax_error", f"expected {FUNCTION}NAME> after {OPEN}", pos)
    return calls, pos


def _read_function(text: str, pos: int, schemas: dict[str, dict[str, Any]]) -> tuple[ToolCall, int]:
    name, pos = _read_tag_name(text, pos + len(FUNCTION), "function")
    schema = schemas.get(name, {})
    arguments: dict[str, Any] = {}
    while True:
        pos = skip_space(text, pos)
        if text.startswith(FUNCTION_END, pos):
            return ToolCall(name=name, arguments=arguments), pos + len(FUNCTION_END)
        if pos == len(text):
            raise MalformedCall("unclosed_tag", f"{FUNCTION}{name}> is never closed", pos)
        if not text.startswith(PARAMETER, pos):
            raise MalformedCall("syntax_error", f"expected {PARAMETER}KEY> or {FUNCTION_END} "
                             f"inside {FUNCTION}{name}>", pos)
        key, pos = _read_tag_name(text, pos + len(PARAMETER), "parameter")
        end = text.find(PARAMETER_END, pos)
        if end == -1:
            raise MalformedCall("unclosed_tag", f"{PARAMETER}{key}> is never closed", pos)
        if key in arguments:
            raise MalformedCall("syntax_error", f"parameter {key!r} given twice", pos)
        raw = text[pos:end]
        # Exactly one newline each side belongs to the layout; more belongs to the value.
        raw = raw.removeprefix("\n")
        raw = raw.removesuffix("\n")
        arguments[key] = _convert(raw, schema.get(key))
        pos = end + len(PARAMETER_END)


def _read_tag_name(text: str, pos: int, tag: str) -> tuple[str, int]:
    """The NAME of `<function=NAME>` / `<parameter=NAME>`, `pos` just after the `=`."""
    end = text.find(">", pos)
    newline = text.find("\n", pos)
    if end == -1 or (newline != -1 and newline < end):
        raise MalformedCall("unclosed_tag", f"<{tag}= is not closed by '>' on its line", pos)
    name = text[pos:end].strip()
    if not name:
        raise MalformedCall("missing_field", f"<{tag}=…> has an empty name", pos)
    return name, end + 1


def _convert(raw: str, schema: dict[str, Any] | None) -> Any:
    """A value by its schema type: strings stay raw, the rest is read as JSON when it can be.

    A value that is not JSON stays a string, so the metrics see the type mismatch
    instead of the parse failing. Without a schema, JSON is tried first.
    """
    kind = (schema or {}).get("type")
    types = {kind} if isinstance(kind, str) else set(kind or ())
    if "string" in types:
        # An optional string ("string" or "null") writes its null as the bare word.
        return None if raw == "null" and "null" in types else raw
    if "boolean" in types and raw.lower() in ("true", "false"):
        # Qwen3-Coder's template writes Python's True/False in its history; vLLM reads both.
        return raw.lower() == "true"
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw
