"""Python-call tool calls: `[get_weather(city='Paris'), get_time(zone='CET')]`.

The syntax BFCL asks of prompt-mode models and Llama 3.2's pythonic template uses.
Calls are rendered as one list with Python literals and parsed with `ast`, which also
accepts what models write around it: a single bare call, calls on separate lines,
calls inside a ```python (or ```tool_code) fence or `<|tool_code|>…<|end|>` block,
arguments passed as `f(**{"key": value})`, and dotted names (`math.factorial`).
Calls come at the start of a line and only whitespace separates them; text before
and after them is content. Function names must be (dotted) Python identifiers.
"""

from __future__ import annotations

import ast
import io
import keyword
import re
import tokenize
from typing import Any

from common.formats.base import (
    MalformedCall,
    ParsedOutput,
    ParseError,
    ToolCallFormat,
    skip_space,
    split_reasoning,
    tools_as_json,
)
from common.samples import ToolCall

CALL_HEAD = re.compile(r"(?:\[\s*)?[A-Za-z_][\w.]*\(")
# A line that begins like a call; text that has none is a plain answer.
CALL_LINE = re.compile(r"^[ \t]*(" + CALL_HEAD.pattern + ")", re.MULTILINE)
FENCE = re.compile(r"```(?:python|py|tool_code)?[ \t]*\n(.*?)```", re.DOTALL)
TOOL_CODE = re.compile(r"<\|tool_code\|>(.*?)(?:<\|end\|>|$)", re.DOTALL)
# JSON spellings that models trained on JSON formats carry into Python calls.
JSON_WORDS = {"true": True, "false": False, "null": None}


class PythonicFormat(ToolCallFormat):
    name = "pythonic"
    answer_tokens = 128
    native_marker = "[func_name1("

    def render_calls(self, calls: list[ToolCall]) -> str:
        return "[" + ", ".join(_render_call(c) for c in calls) + "]"

    def system_prompt(self, tools: list[dict[str, Any]]) -> str:
        return (
            "You are an expert in composing functions. You are given a question and a set of "
            "possible functions. Based on the question, you will need to make one or more "
            "function/tool calls to achieve the purpose. If no function fits the request, "
            "answer in plain text without a call.\n"
            f"Here is a list of functions in JSON format that you can invoke:\n{tools_as_json(tools)}\n"
            "If you decide to invoke any of the function(s), you MUST put it in the format of "
            "[func_name1(params_name1=params_value1, params_name2=params_value2...), "
            "func_name2(params)], with every argument given by name and every value written "
            "as a Python literal.")

    def parse(self, text: str, tools: list[dict[str, Any]] | None = None) -> ParsedOutput:
        reasoning, rest, error = split_reasoning(text)
        out = ParsedOutput(reasoning=reasoning, error=error)
        rest = _unwrap(rest)
        first = _first_call_line(rest)
        if first is None:
            out.content = rest
            return out
        content, pos = [rest[:first]], first
        while CALL_HEAD.match(rest, pos):
            try:
                end = _expression_end(rest, pos)
                out.calls.extend(_to_calls(rest[pos:end]))
            except MalformedCall as err:
                out.error = ParseError(err.kind, err.message, rest[pos:pos + 120])
                pos = len(rest)
                break
            pos = skip_space(rest, end)
        content.append(rest[pos:])
        out.content = "".join(content).strip()
        return out


def _render_call(call: ToolCall) -> str:
    # Keys that cannot be keyword arguments (`from`, `max-results`) go through
    # `**{...}`, which the parser reads back.
    named = {k: v for k, v in call.arguments.items() if k.isidentifier() and not keyword.iskeyword(k)}
    other = {k: v for k, v in call.arguments.items() if k not in named}
    parts = [f"{k}={v!r}" for k, v in named.items()] + ([f"**{other!r}"] if other else [])
    return f"{call.name}({', '.join(parts)})"


def _unwrap(text: str) -> str:
    """The text with `<|tool_code|>` blocks, and fences around calls, replaced by their body."""
    text = TOOL_CODE.sub(lambda m: f"\n{m.group(1)}\n", text)
    return FENCE.sub(lambda m: f"\n{m.group(1)}\n" if CALL_HEAD.match(m.group(1).strip()) else m.group(0),
                     text).strip()


def _first_call_line(text: str) -> int | None:
    """Where the first call begins, skipping fenced code that is not calls (a code answer)."""
    code = [m.span() for m in FENCE.finditer(text)]
    for match in CALL_LINE.finditer(text):
        if not any(a <= match.start() < b for a, b in code):
            return match.start(1)
    return None


def _expression_end(text: str, pos: int) -> int:
    """Where the bracketed expression starting at `pos` closes.

    Python's tokenizer finds it, so brackets inside strings do not count and text after
    the call (even text that is not Python) is never read.
    """
    starts = [pos]
    for line in io.StringIO(text[pos:]).readlines():  # the lines the tokenizer counts
        starts.append(starts[-1] + len(line))
    depth = 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text[pos:]).readline):
            if tok.type == tokenize.OP and tok.string in ("(", "[", "{"):
                depth += 1
            elif tok.type == tokenize.OP and tok.string in (")", "]", "}"):
                depth -= 1
                if depth == 0:
                    return starts[tok.end[0] - 1] + tok.end[1]
    except (tokenize.TokenError, SyntaxError) as err:
        raise MalformedCall("syntax_error", f"the call does not close: {err}") from None
    raise MalformedCall("syntax_error", "the call does not close")


def _to_calls(source: str) -> list[ToolCall]:
    try:
        node = ast.parse(source, mode="eval").body
    except SyntaxError as err:
        raise MalformedCall("syntax_error", f"not a Python call: {err.msg}") from None
    entries = node.elts if isinstance(node, ast.List) else [node]
    if not all(isinstance(e, ast.Call) for e in entries):
        raise MalformedCall("syntax_error", "expected a call or a list of calls")
    return [_to_call(e) for e in entries]


def _to_call(node: ast.Call) -> ToolCall:
    name = _dotted_name(node.func)
    if node.args:
        raise MalformedCall("unsupported", f"{name} is given positional arguments; "
                         "only keyword arguments say which parameter a value is for")
    arguments: dict[str, Any] = {}
    for kw in node.keywords:
        value = _literal(kw.value, name)
        if kw.arg is None and not isinstance(value, dict):
            raise MalformedCall("unsupported", f"{name} is given ** of a {type(value).__name__}, not a dict")
        for key, item in (value.items() if kw.arg is None else [(kw.arg, value)]):
            if key in arguments:
                raise MalformedCall("syntax_error", f"{name} is given {key!r} twice")
            arguments[key] = item
    return ToolCall(name=name, arguments=arguments)


def _dotted_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted_name(node.value)}.{node.attr}"
    raise MalformedCall("syntax_error", "a call's function is not a name")


class _JsonWords(ast.NodeTransformer):
    def visit_Name(self, node: ast.Name) -> ast.expr:
        if node.id in JSON_WORDS:
            return ast.copy_location(ast.Constant(JSON_WORDS[node.id]), node)
        return node


def _literal(node: ast.expr, name: str) -> Any:
    try:
        return _jsonable(ast.literal_eval(_JsonWords().visit(node)), name)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise MalformedCall("syntax_error", f"an argument of {name} is not a literal: "
                         f"{ast.unparse(node)[:60]}") from None


def _jsonable(value: Any, name: str) -> Any:
    """A Python literal as JSON data: tuples become lists; sets, bytes, complex are refused."""
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, name) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise MalformedCall("unsupported", f"an argument of {name} has a dict key that is not a string")
        return {k: _jsonable(v, name) for k, v in value.items()}
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise MalformedCall("unsupported", f"an argument of {name} is a {type(value).__name__}, not JSON data")
