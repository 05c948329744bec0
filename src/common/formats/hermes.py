"""Hermes / Qwen JSON tool calls: `<tool_call>{"name": …, "arguments": {…}}</tool_call>`.

The format of Qwen2.5, Qwen3-Instruct and Hermes models; several calls per answer,
each in its own tag. The JSON is read with a JSON decoder from the opening tag, not
with a regex, so a `</tool_call>` inside a string value cannot cut a call short.
"""

from __future__ import annotations

import json
from typing import Any

from common.formats.base import ParsedOutput, ParseError, ToolCallFormat, split_reasoning, tools_as_json
from common.samples import ToolCall, decode_arguments

OPEN, CLOSE = "<tool_call>", "</tool_call>"


class HermesFormat(ToolCallFormat):
    name = "hermes"
    native_marker = OPEN
    stop_texts = ("<tool_response>",)

    def render_calls(self, calls: list[ToolCall]) -> str:
        return "\n".join(
            f"{OPEN}\n{json.dumps({'name': c.name, 'arguments': c.arguments}, ensure_ascii=False)}\n{CLOSE}"
            for c in calls)

    def system_prompt(self, tools: list[dict[str, Any]]) -> str:
        return (
            "You are a function calling AI model. You are provided with function signatures "
            "within <tools></tools> XML tags. You may call one or more functions to assist with "
            "the user query. Don't make assumptions about what values to plug into functions. "
            "If no function fits the request, answer in plain text without a call.\n"
            f"<tools>\n{tools_as_json(tools)}\n</tools>\n"
            "For each function call, return a JSON object with the function name and arguments "
            f"within {OPEN}{CLOSE} XML tags:\n"
            f'{OPEN}\n{{"name": <function-name>, "arguments": <args-json-object>}}\n{CLOSE}')

    def parse(self, text: str, tools: list[dict[str, Any]] | None = None) -> ParsedOutput:
        reasoning, rest, error = split_reasoning(text)
        out = ParsedOutput(reasoning=reasoning, error=error)
        decoder = json.JSONDecoder()
        content, pos = [], 0
        while (start := rest.find(OPEN, pos)) != -1:
            content.append(rest[pos:start])
            body = start + len(OPEN)
            while body < len(rest) and rest[body].isspace():
                body += 1
            try:
                obj, end = decoder.raw_decode(rest, body)
            except json.JSONDecodeError as err:
                out.error = ParseError("invalid_json", f"tool call is not valid JSON: {err.msg}",
                                       rest[start:start + 120])
                pos = len(rest)
                break
            tail = rest[end:].lstrip()
            if tail.startswith(CLOSE):
                pos = len(rest) - len(tail) + len(CLOSE)
            elif not tail:  # the model stopped before closing the last tag: accepted, as vLLM does
                pos = len(rest)
            else:
                out.error = ParseError("unclosed_tag", f"text after the JSON before {CLOSE}",
                                       rest[start:start + 120])
                pos = len(rest)
                break
            call = _to_call(obj)
            if isinstance(call, ParseError):
                out.error = call
                break
            out.calls.append(call)
        content.append(rest[pos:])
        out.content = "".join(content).strip()
        return out


def _to_call(obj: Any) -> ToolCall | ParseError:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return ParseError("missing_field", 'a tool call needs a string "name"',
                          json.dumps(obj, ensure_ascii=False)[:120])
    # "parameters" is what Llama-style prompts ask for; accepted as a synonym.
    args = obj.get("arguments", obj.get("parameters", {}))
    try:
        return ToolCall(name=obj["name"], arguments=decode_arguments(args))
    except ValueError as err:
        return ParseError("invalid_json", str(err), json.dumps(obj, ensure_ascii=False)[:120])
