"""Hermes / Qwen JSON tool calls: `<tool_call>{"name": …, "arguments": {…}}</tool_call>`.

The format of Qwen2.5, Qwen3-Instruct and Hermes models; several calls per answer,
each in its own tag. The JSON is read with a JSON decoder from the opening tag, not
with a regex, so a `</tool_call>` inside a string value cannot cut a call short.
"""

from __future__ import annotations

import json
from typing import Any

from common.formats.base import (
    MalformedCall,
    ParsedOutput,
    ToolCallFormat,
    collect_calls,
    find_tag,
    skip_space,
    split_reasoning,
    tools_as_json,
)
from common.samples import ToolCall, decode_arguments

OPEN, CLOSE = "<tool_call>", "</tool_call>"


class HermesFormat(ToolCallFormat):
    name = "hermes"
    answer_tokens = 192
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
        collect_calls(rest, out, find_tag(OPEN), _read_call)
        return out


def _read_call(text: str, start: int, body: int) -> tuple[list[ToolCall], int]:
    body = skip_space(text, body)
    try:
        obj, end = json.JSONDecoder().raw_decode(text, body)
    except json.JSONDecodeError as err:
        raise MalformedCall("invalid_json", f"tool call is not valid JSON: {err.msg}", err.pos) from None
    tail = text[end:].lstrip()
    if tail.startswith(CLOSE):
        end = len(text) - len(tail) + len(CLOSE)
    elif tail:  # a missing close at the very end is accepted (the model stopped), as vLLM does
        raise MalformedCall("unclosed_tag", f"text after the JSON before {CLOSE}", end)
    else:
        end = len(text)
    return [_to_call(obj, body)], end


def _to_call(obj: Any, pos: int) -> ToolCall:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        raise MalformedCall("missing_field", 'a tool call needs a string "name"', pos)
    # "parameters" is what Llama-style prompts ask for; accepted as a synonym.
    args = obj.get("arguments", obj.get("parameters", {}))
    try:
        return ToolCall(name=obj["name"], arguments=decode_arguments(args))
    except ValueError as err:
        raise MalformedCall("invalid_json", str(err), pos) from None
