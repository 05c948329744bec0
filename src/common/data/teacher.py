"""A teacher model that writes the user's request for a target call.

The data builder picks the calls a sample must lead to (from a tool catalogue) and
asks a teacher for the user message, instead of filling the offline templates:
requests read more like people, which is what Kinetic-4B and xLAM got from their
teacher models. Two teachers, one interface:

    teacher = CachedTeacher(OpenAITeacher("http://localhost:8000/v1", "Qwen/Qwen3-4B-Instruct-2507"),
                            Path("data/teacher_cache.jsonl"))
    text = teacher.write_request(tools, [{"name": "get_weather", "arguments": {"city": "Oslo"}}],
                                 scenario="single", seed=7)

`OpenAITeacher` talks to any OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp
server); `LocalTeacher` samples from a model of `common.models` on this machine.
`CachedTeacher` keeps every answer in a JSONL file keyed by (teacher, prompt, seed),
appended as answers come, so an interrupted build resumes without paying twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from abc import ABC, abstractmethod
from dataclasses import replace
from pathlib import Path
from typing import Any

from common.backends import GenerationSettings, TransformersBackend
from common.errors import UserError
from common.jsonio import append_jsonl, repair
from common.models import load_model
from common.secrets import check_env_name

# A style per seed, so requests for the same call do not all read alike.
STYLES = ("short and direct", "polite and a little chatty", "casual, as typed on a phone",
          "busy and to the point", "detailed, with a word of context about why they need it",
          "phrased as a question")
_PREAMBLE = re.compile(r"^\s*(?:(?:sure|okay|ok|certainly)[!,.]?\s*)?(?:here(?:'s| is) (?:the |a |my )?"
                       r"(?:user(?:'s)? )?(?:request|message|query)[^:\n]*:|(?:user(?:'s)? )?"
                       r"(?:request|message|query|user)\s*:)\s*", re.IGNORECASE)
_QUOTES = [('"', '"'), ("'", "'"), ("“", "”"), ("‘", "’"), ("`", "`")]


class TeacherError(UserError, RuntimeError):
    """The teacher gave nothing usable; the message names the prompt's calls."""


def _describe(function: dict[str, Any]) -> str:
    params = function.get("parameters", {}).get("properties", {})
    lines = [f"- {function['name']}: {function.get('description', '')}"]
    lines += [f"    {name}: {spec.get('description', '')}" for name, spec in params.items()]
    return "\n".join(lines)


def teacher_prompt(tools: list[dict[str, Any]], calls: list[dict[str, Any]], scenario: str, seed: int) -> str:
    """The instruction that asks for one user request leading to exactly `calls`.

    Each call is `{"name", "arguments"}`; with scenario "missing_info" a call's
    `missing` key names the required argument the request must leave out (so the
    assistant has to ask for it). No calls: a request none of the tools can serve.
    """
    functions = {t.get("function", t)["name"]: t.get("function", t) for t in tools}
    style = random.Random(seed).choice(STYLES)
    rules = [f"Write it as the user, in the first person, naturally; make it {style}.",
             "Do not name any function or tool, and do not mention APIs, tools or parameters.",
             "Reply with the request only: no preamble, no quotes, no explanation."]
    if not calls:
        listing = "\n".join(_describe(f) for f in functions.values())
        return ("An assistant can use these tools:\n" + listing + "\n\nWrite one message a user might send "
                "this assistant that none of these tools can help with (a question, a chat, or a task "
                "outside them).\n" + "\n".join(f"- {r}" for r in rules))
    wanted, lines = [], []
    for call in calls:
        function = functions.get(call["name"])
        if function is None:
            raise ValueError(f"the call {call['name']!r} is not among the offered tools {sorted(functions)}")
        if function not in wanted:
            wanted.append(function)
        missing = call.get("missing") if scenario == "missing_info" else None
        shown = {k: v for k, v in call.get("arguments", {}).items() if k != missing}
        line = f"- {call['name']} with " + (json.dumps(shown, ensure_ascii=False) if shown else "no arguments")
        if missing:
            line += f"; the request must NOT give any value for `{missing}`, which it needs"
        lines.append(line)
    rules.insert(1, "Mention every argument value above literally, exactly as written (the same numbers, "
                    "names, dates and spelling), and ask for nothing beyond these calls.")
    if scenario == "sequential":  # only the first call can be made now; the rest needs its result
        rules.insert(2, "The steps happen in order and each later step needs the result of the one "
                        "before it: say so (\"then use what you find to ...\").")
    elif len(calls) > 1:
        rules.insert(2, "One message must ask for all of these at once.")
    if scenario == "missing_info":
        rules.insert(2, "Leave out the value marked as missing entirely, so the assistant would have "
                        "to ask for it; do not hint at it.")
    return ("An assistant has these functions:\n" + "\n".join(_describe(f) for f in wanted)
            + "\n\nWrite the message a user sends that should lead the assistant to make exactly these "
              "calls:\n" + "\n".join(lines) + "\n\nRules:\n" + "\n".join(f"- {r}" for r in rules))


def clean_request(text: str) -> str:
    """The request without a preamble ("Request:", "Here is the request:") or wrapping quotes."""
    text = text.strip()
    for _ in range(3):  # a preamble may sit inside quotes, or quotes inside a preamble
        before = text
        text = _PREAMBLE.sub("", text, count=1).strip()
        for left, right in _QUOTES:
            inner = text[len(left):-len(right)]
            # `"Dune" by "Herbert"` is quoted inside, not wrapped: keep it
            if len(text) >= 2 and text[0] == left and text[-1] == right and left not in inner \
                    and right not in inner:
                text = inner.strip()
        if text == before:
            break
    return text


class Teacher(ABC):
    """Writes the user request; subclasses only say how to complete a prompt."""

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """What makes two teachers' answers interchangeable (the cache key uses it)."""

    @abstractmethod
    def complete(self, prompt: str, seed: int) -> str:
        """The raw text the model answers to `prompt`."""

    def write_request(self, tools: list[dict[str, Any]], calls: list[dict[str, Any]], scenario: str,
                      seed: int) -> str:
        text = clean_request(self.complete(teacher_prompt(tools, calls, scenario, seed), seed))
        if not text:
            names = [c["name"] for c in calls] or ["(no call)"]
            raise TeacherError(f"the teacher {self.identity()} returned an empty request for "
                               f"{names} (scenario {scenario!r}, seed {seed})")
        return text


class OpenAITeacher(Teacher):
    """A chat-completions endpoint: OpenAI, or any compatible server such as vLLM."""

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY",
                 temperature: float = 0.8, client: Any = None, max_tokens: int | None = None):
        self.base_url, self.model = base_url, model
        self.api_key_env = check_env_name(api_key_env, "teacher_api_key_env")
        self.temperature, self.max_tokens = temperature, max_tokens
        self._client = client  # made on first use: a fully cached build needs no key

    def identity(self) -> dict[str, Any]:
        return {"teacher": "openai", "base_url": self.base_url, "model": self.model,
                "temperature": self.temperature, "max_tokens": self.max_tokens}

    @property
    def client(self) -> Any:
        if self._client is None:
            # optional: only the OpenAI-compatible teacher needs the package
            from openai import OpenAI
            key = os.environ.get(self.api_key_env)
            if not key:
                raise TeacherError(f"set {self.api_key_env} to the key of {self.base_url} "
                                   "(a local vLLM server accepts any value, such as EMPTY)")
            self._client = OpenAI(base_url=self.base_url, api_key=key)
        return self._client

    def complete(self, prompt: str, seed: int) -> str:
        extra = {} if self.max_tokens is None else {"max_tokens": self.max_tokens}
        response = self.client.chat.completions.create(
            model=self.model, messages=[{"role": "user", "content": prompt}],
            temperature=self.temperature, seed=seed, **extra)
        if not response.choices:
            return ""
        return response.choices[0].message.content or ""


class LocalTeacher(Teacher):
    """A model of `common.models` sampled on this machine (loaded on first use)."""

    def __init__(self, model: str, temperature: float = 0.8, top_p: float = 0.95, max_new_tokens: int = 96,
                 device: str = "cpu", dtype: str = "auto"):
        self.model_name, self.device, self.dtype = model, device, dtype
        self.settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
        self._loaded: tuple[Any, Any] | None = None

    def identity(self) -> dict[str, Any]:
        s = self.settings
        return {"teacher": "local", "model": self.model_name, "temperature": s.temperature, "top_p": s.top_p,
                "max_new_tokens": s.max_new_tokens, "dtype": self.dtype}

    def complete(self, prompt: str, seed: int) -> str:
        if self._loaded is None:
            self._loaded = load_model(self.model_name, dtype=self.dtype, device=self.device)
        model, tokenizer = self._loaded
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        backend = TransformersBackend(model, tokenizer, replace(self.settings, seed=seed))
        out = backend.generate([text])[0].text
        # the backend keeps special tokens (tool-call markers); a request has none
        for token in tokenizer.all_special_tokens:
            out = out.replace(token, "")
        return out


class CachedTeacher(Teacher):
    """Answers of `teacher` kept in a JSONL file, one line appended per new answer."""

    def __init__(self, teacher: Teacher, path: Path):
        self.teacher, self.path = teacher, Path(path)
        self.hits = self.misses = 0
        self._cache = self._read()

    def _read(self) -> dict[str, str]:
        # a line cut off by a kill, or damaged, goes to the quarantine file; the rest is kept
        return {r["key"]: r["text"] for r in repair(self.path).rows
                if isinstance(r.get("key"), str) and isinstance(r.get("text"), str)}

    def identity(self) -> dict[str, Any]:
        return self.teacher.identity()

    def key(self, prompt: str, seed: int) -> str:
        payload = json.dumps([self.identity(), prompt, seed], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def complete(self, prompt: str, seed: int) -> str:
        key = self.key(prompt, seed)
        if key in self._cache:
            self.hits += 1
            return self._cache[key]
        self.misses += 1
        text = self.teacher.complete(prompt, seed)
        if clean_request(text):  # an empty answer is not kept: a rerun asks again
            append_jsonl(self.path, [{"key": key, "seed": seed, "text": text, "prompt": prompt}])
            self._cache[key] = text
        return text
