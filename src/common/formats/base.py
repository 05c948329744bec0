"""The interface every tool-call format implements, and the prompt rendering they share.

A format turns a sample (tools + messages) into a prompt and a target completion, and
turns generated text back into calls, "no call", or a structured parse error.

Prompts use the tokenizer's own chat template with `tools=` when that template really
renders the tools in this format (detected by rendering a probe tool and looking for
the format's own marker). Otherwise the format writes its own system prompt, folds
tool calls and results into plain text turns, and renders those through the
tokenizer's template, or through a fallback template when the tokenizer has none
(Gemma base).
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from common.samples import ToolCall, message_calls, normalize_message, normalize_tool

THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)


@dataclass
class ParseError:
    """Why generated text could not be read as calls. `kind` is machine-readable."""

    kind: str  # invalid_json | missing_field | unclosed_tag | syntax_error | unsupported | truncated_think
    message: str
    snippet: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "message": self.message, "snippet": self.snippet}


class MalformedCall(Exception):
    """Raised inside a parser where the text stops following the format; `parse` turns
    it into a ParseError so that callers never see an exception."""

    def __init__(self, kind: str, message: str, pos: int = 0):
        super().__init__(message)
        self.kind, self.message, self.pos = kind, message, pos


@dataclass
class ParsedOutput:
    """What a model said: its calls (possibly none), remaining text, reasoning, parse error."""

    calls: list[ToolCall] = field(default_factory=list)
    content: str = ""
    reasoning: str | None = None
    error: ParseError | None = None

    @property
    def valid(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {"calls": [c.model_dump() for c in self.calls], "content": self.content,
                "reasoning": self.reasoning, "error": self.error.to_dict() if self.error else None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ParsedOutput:
        error = ParseError(**d["error"]) if d.get("error") else None
        return cls([ToolCall(**c) for c in d["calls"]], d["content"], d.get("reasoning"), error)


def skip_space(text: str, pos: int) -> int:
    """The first position at or after `pos` that is not whitespace (or the end)."""
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def find_tag(tag: str) -> Callable[[str, int], tuple[int, int] | None]:
    """A `find` for `collect_calls` where every call opens with the literal `tag`."""
    def find(text: str, pos: int) -> tuple[int, int] | None:
        start = text.find(tag, pos)
        return None if start == -1 else (start, start + len(tag))
    return find


def collect_calls(text: str, out: ParsedOutput,
                  find: Callable[[str, int], tuple[int, int] | None],
                  read: Callable[[str, int, int], tuple[list[ToolCall], int]]) -> None:
    """Walk `text` call by call, filling `out.calls`, `out.content` and `out.error`.

    `find(text, pos)` gives (start, body) of the next call at or after `pos`, or None;
    `read(text, start, body)` returns the calls there and where they end, or raises
    MalformedCall. Text between calls is content; the first malformed call ends the walk.
    """
    content, pos = [], 0
    while (found := find(text, pos)) is not None:
        start, body = found
        content.append(text[pos:start])
        try:
            calls, pos = read(text, start, body)
        except MalformedCall as err:
            out.error = ParseError(err.kind, err.message, text[max(start, err.pos - 80):max(err.pos, start) + 40])
            pos = len(text)
            break
        out.calls.extend(calls)
    content.append(text[pos:])
    out.content = "".join(content).strip()


def split_reasoning(text: str) -> tuple[str | None, str, ParseError | None]:
    """(reasoning, rest, error): `<think>…</think>` blocks are taken out before parsing.

    A `<think>` that never closes means the model ran out of tokens while thinking.
    Qwen3 templates open the think block in the prompt, so a lone `</think>` also ends it.
    """
    parts = THINK.findall(text)
    rest = THINK.sub("", text)
    if "</think>" in rest:
        head, rest = rest.split("</think>", 1)
        parts.append(head)
    if "<think>" in rest:
        head, tail = rest.split("<think>", 1)
        return ("\n".join(parts + [tail]).strip() or None, head.strip(),
                ParseError("truncated_think", "a <think> block was never closed", tail[-80:]))
    return ("\n".join(p.strip() for p in parts) or None), rest.strip(), None


def _probe_tool() -> dict[str, Any]:
    return normalize_tool({"name": "zz_probe_tool_7f3", "description": "probe",
                           "parameters": {"type": "object", "properties": {
                               "zz_arg": {"type": "string", "description": "probe"}},
                               "required": ["zz_arg"]}})


class ToolCallFormat(ABC):
    """One way of writing tool calls. Subclasses define the syntax; rendering is shared."""

    name: str
    #: text that appears in a chat template's rendering of tools only when the template
    #: itself asks for this format (so `tools=` can be trusted)
    native_marker: str
    #: text that never belongs in an answer: a model that writes it has started to invent
    #: the tool's response, so generation stops there
    stop_texts: tuple[str, ...] = ()
    #: new tokens a correct answer needs: `max_new_tokens: auto` caps generation here. The 99th
    #: percentile of the calls in the default build's training split (not the held-out one),
    #: SmolLM2's tokenizer, rounded up to 32 (LOG.md, session 10); longer answers are cut and
    #: counted as truncated, as at any cap
    answer_tokens: int = 256

    # -- syntax, per format -------------------------------------------------------
    @abstractmethod
    def render_calls(self, calls: list[ToolCall]) -> str:
        """The calls as the model should write them."""

    @abstractmethod
    def parse(self, text: str, tools: list[dict[str, Any]] | None = None) -> ParsedOutput:
        """Calls, content and parse error from generated text. `tools` lets a format
        whose syntax carries no types (Qwen3-Coder XML) convert values by schema."""

    @abstractmethod
    def system_prompt(self, tools: list[dict[str, Any]]) -> str:
        """Instructions and tool descriptions, for templates that do not render tools."""

    def render_tool_result(self, name: str, content: str) -> str:
        """A tool's result, as a plain user turn, for templates without a tool role."""
        return f"<tool_response>\n{content}\n</tool_response>"

    # -- shared rendering -----------------------------------------------------------
    def render_completion(self, calls: list[ToolCall], content: str = "") -> str:
        """The assistant's turn without its end marker: optional text, then the calls."""
        body = self.render_calls(calls) if calls else ""
        return "\n".join(p for p in (content.strip(), body) if p)

    def uses_native_template(self, tokenizer: Any) -> bool:
        """Whether the tokenizer's chat template renders tools in this very format."""
        cached = getattr(tokenizer, "_toolcall_native", {})
        if self.name not in cached:
            ok = False
            if getattr(tokenizer, "chat_template", None):
                try:
                    probe = tokenizer.apply_chat_template(
                        [{"role": "user", "content": "hi"}], tools=[_probe_tool()],
                        tokenize=False, add_generation_prompt=True)
                    ok = "zz_probe_tool_7f3" in probe and self.native_marker in probe
                except Exception:  # a template that rejects tools= does not render them
                    ok = False
            cached[self.name] = ok
            try:
                tokenizer._toolcall_native = cached
            except AttributeError:
                pass
        return cached[self.name]

    def plain_messages(self, tools: list[dict[str, Any]], messages: list[dict[str, Any]]
                       ) -> list[dict[str, str]]:
        """Messages with only system/user/assistant roles and string content.

        The format's system prompt comes first (a sample's own system message is added
        under it); assistant tool calls are written in this format; tool results become
        user turns.
        """
        messages = [normalize_message(m) for m in messages]
        system = self.system_prompt([normalize_tool(t) for t in tools])
        rest = messages
        if messages and messages[0]["role"] == "system":
            system = f"{system}\n\n{messages[0]['content']}".strip()
            rest = messages[1:]
        out = [{"role": "system", "content": system}]
        for m in rest:
            if m["role"] == "assistant":
                out.append({"role": "assistant",
                            "content": self.render_completion(message_calls(m), m["content"])})
            elif m["role"] == "tool":
                text = self.render_tool_result(m.get("name", ""), m["content"])
                if out[-1]["role"] == "user":  # several results answer one turn
                    out[-1] = {"role": "user", "content": out[-1]["content"] + "\n" + text}
                else:
                    out.append({"role": "user", "content": text})
            else:
                out.append({"role": m["role"], "content": m["content"]})
        return out

    def render_prompt(self, tools: list[dict[str, Any]], messages: list[dict[str, Any]],
                      tokenizer: Any = None) -> str:
        """The prompt text, ending where the assistant's answer begins."""
        if tokenizer is not None and self.uses_native_template(tokenizer):
            return tokenizer.apply_chat_template(
                [normalize_message(m) for m in messages], tools=[canonical_tool(t) for t in tools],
                tokenize=False, add_generation_prompt=True)
        plain = self.plain_messages(tools, messages)
        if tokenizer is not None and getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(plain, tokenize=False, add_generation_prompt=True)
        return fallback_template(plain, tokenizer)

    def end_of_turn(self, tokenizer: Any = None) -> str:
        """The text that closes an assistant turn in the template the prompt used."""
        if tokenizer is not None and getattr(tokenizer, "chat_template", None):
            marker = "ZZ_ANSWER_7f3"
            msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": marker}]
            kwargs = {"tools": [_probe_tool()]} if self.uses_native_template(tokenizer) else {}
            try:
                text = tokenizer.apply_chat_template(msgs, tokenize=False, **kwargs)
                tail = text.split(marker, 1)[1]
                return tail.rstrip("\n") or (tokenizer.eos_token or "")
            except Exception:
                return tokenizer.eos_token or ""
        return _fallback_style(tokenizer)[2]

    def render_example(self, tools: list[dict[str, Any]], messages: list[dict[str, Any]],
                       calls: list[ToolCall], content: str = "", tokenizer: Any = None
                       ) -> tuple[str, str]:
        """(prompt, completion) for training: the completion ends with the turn's end marker."""
        prompt = self.render_prompt(tools, messages, tokenizer)
        return prompt, self.render_completion(calls, content) + self.end_of_turn(tokenizer)


def has_token(tokenizer: Any, token: str) -> bool:
    """Whether `token` is one token of the tokenizer's vocabulary. Looks up that one token:
    `get_vocab()` builds the whole vocabulary as a dict (0.17 s for Gemma's 262k), which, once per
    rendered prompt, cost minutes per training set."""
    if tokenizer is None:
        return False
    if hasattr(tokenizer, "convert_tokens_to_ids"):
        tid = tokenizer.convert_tokens_to_ids(token)
        unk = getattr(tokenizer, "unk_token", None)
        return tid is not None and (tid != getattr(tokenizer, "unk_token_id", None) or token == unk)
    return token in tokenizer.get_vocab()


def _fallback_style(tokenizer: Any) -> tuple[str, str, str]:
    """(turn start, role for system, turn end) for a tokenizer without a chat template."""
    if has_token(tokenizer, "<start_of_turn>"):  # Gemma family: no system role, 'model' answers
        return "<start_of_turn>", "developer", "<end_of_turn>"
    return "<|im_start|>", "system", "<|im_end|>"


def fallback_template(messages: list[dict[str, str]], tokenizer: Any = None) -> str:
    """Gemma turns when the vocabulary has them, else ChatML; ends with the answer's start."""
    start, system_role, end = _fallback_style(tokenizer)
    gemma = start == "<start_of_turn>"
    roles = {"system": system_role, "user": "user", "assistant": "model" if gemma else "assistant"}
    bos = (tokenizer.bos_token or "") if (gemma and tokenizer is not None) else ""
    turns = "".join(f"{start}{roles[m['role']]}\n{m['content']}{end}\n" for m in messages)
    return f"{bos}{turns}{start}{roles['assistant']}\n"


#: How prompts are rendered; every prediction records the version its prompt had
#: (`prompt_version`; a record without one is version 1). 1: a tool's keys in its source's order;
#: 2 (session 21): the keys inside a tool's function sorted (`canonical_tool`).
PROMPT_VERSION = 2


def prompt_unchanged(version: int, tools: list[dict[str, Any]]) -> bool:
    """Whether a prompt rendered at `version` for these tools is the one rendered now. From 1 to 2
    only the key order changed, so a sample whose tools were already sorted (every data build's)
    has the same prompt; one whose tools came in another order (BFCL entries, the suites) has not.
    Conservative for formats whose declarations were sorted before (functiongemma): such a record
    is generated again rather than trusted."""
    if version >= PROMPT_VERSION:
        return True
    return all(json.dumps(normalize_tool(t)) == json.dumps(canonical_tool(t)) for t in tools)


def canonical_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """The tool as `normalize_tool` gives it, every object's keys inside the function sorted.

    A prompt depends on a tool's content, never on the key order its source happened to use.
    The data builds store every tool with sorted keys (datacard.to_row), so every training, dev
    and held-out prompt lists them sorted; a schema normalised in memory (a BFCL entry puts
    `required` before `type` and `properties`) would otherwise reach the model in an order it
    never saw in training, and a small model copies the first keys it meets as argument names
    (LOG.md, 2026-12-01, session 21). Chat templates keep a dict's order (`tojson`), so the
    native-template path gets these sorted dicts too. The wrapper stays `{"type", "function"}`,
    in `normalize_tool`'s order, as every prompt has always had it."""
    return {"type": "function", "function": _sorted_keys(normalize_tool(tool)["function"])}


def _sorted_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted_keys(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_keys(v) for v in value]
    return value


def tools_as_json(tools: list[dict[str, Any]]) -> str:
    """One JSON tool per line, as Hermes-style system prompts list them (keys sorted: `canonical_tool`)."""
    return "\n".join(json.dumps(canonical_tool(t), ensure_ascii=False) for t in tools)


def property_types(tools: list[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """{function name: {argument: its JSON schema}} for schema-directed parsing."""
    out: dict[str, dict[str, Any]] = {}
    for t in tools or []:
        f = normalize_tool(t)["function"]
        out[f["name"]] = (f.get("parameters") or {}).get("properties") or {}
    return out
