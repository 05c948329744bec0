"""The offline request writer: natural user requests from a tool's schema, no model.

It turns the function's description into an imperative action ("Retrieves the
current weather for a location." -> "retrieve the current weather for a location"),
says each argument value in one of several ways ("for Berlin", "with the unit set
to celsius", "unit: celsius"), and wraps it in varied openers and closers. Every
value of the expected call is said literally, so a request always determines its
call; the quality filter checks that. Scenario texts (parallel, sequential,
missing information, no tool) and the assistant's replies for no-call scenarios
are written here too. A teacher model (`common.data.teacher`) can replace the requests.
"""

from __future__ import annotations

import random
import re
from typing import Any

from common.data.catalog import split_name
from common.data.values import say_value

OPENERS = [("Can you ", "?"), ("Could you please ", "?"), ("Please ", "."), ("I need you to ", "."),
           ("Hey, can you ", "?"), ("Would you ", "?"), ("", "."), ("I'd like you to ", "."),
           ("Quick one: ", "."), ("Go ahead and ", ".")]
CLOSERS = ["", "", "", " Thanks!", " Thank you.", " Thanks in advance."]
LEADS = re.compile(r"^(?:this|the|a|an)\s+(?:function|tool|api|endpoint|method|service)\s+(?:that\s+|which\s+|to\s+|will\s+|is used to\s+|can\s+)?", re.IGNORECASE)
FUNCTION_TO = re.compile(r"^(?:function|tool|api|method|endpoint|used|use this)\s+(?:to|that|for)\s+", re.IGNORECASE)
BASE_VERBS = {"get", "set", "list", "create", "add", "update", "delete", "remove", "search", "find", "send",
              "generate", "fetch", "retrieve", "calculate", "compute", "book", "check", "convert", "make",
              "start", "stop", "open", "close", "post", "play", "reserve", "schedule", "show", "move", "copy",
              "read", "write", "translate", "buy", "sell", "cancel", "place", "register", "log", "view"}


def to_base_verb(word: str) -> str | None:
    """`retrieves` -> `retrieve`, `searches` -> `search`, `gets` -> `get`; None if not a verb form."""
    w = word.lower()
    if w in BASE_VERBS:
        return w
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if re.search(r"(ss|sh|ch|x|z)es$", w):
        return w[:-2]
    if w.endswith("s") and not w.endswith(("ss", "us", "is")) and len(w) > 3:
        return w[:-1]
    return None


def action_phrase(function: dict[str, Any]) -> str:
    """What calling the function does, as an imperative phrase without a final period."""
    text = (function.get("description") or "").strip()
    text = re.split(r"(?<=[a-z0-9)])\.\s|\n", text + " ")[0].strip().rstrip(".")
    text = re.sub(r"\s*\([^)]*\)", "", text)
    text = FUNCTION_TO.sub("", LEADS.sub("", text))
    words = text.split()
    if words:
        verb = to_base_verb(words[0])
        if verb:
            phrase = " ".join([verb] + words[1:])
            # keep the gist: cut long descriptions at a clause boundary
            cut = re.split(r",\s|;\s|\s(?:based on|according to|including|which|that allows|so that)\s", phrase)[0]
            return " ".join(cut.split()[:14])
    name = split_name(function["name"]).split()
    if name and name[0] in BASE_VERBS:
        return " ".join(name)
    return f"use {function['name']}"


def _param_words(name: str) -> str:
    return split_name(name) or name


def argument_clause(name: str, value: Any, rng: random.Random) -> str:
    words, said = _param_words(name), say_value(value)
    if isinstance(value, bool):
        return rng.choice([f"with {words} {'enabled' if value else 'disabled'}",
                           f"{words} set to {said}", f"{words}: {said}"])
    return rng.choice([f"{words} {said}", f"with the {words} set to {said}", f"using {said} as the {words}",
                       f"where the {words} is {said}", f"{words}: {said}", f"with {words} {said}"])


def _join(clauses: list[str]) -> str:
    if not clauses:
        return ""
    if len(clauses) == 1:
        return clauses[0]
    return ", ".join(clauses[:-1]) + " and " + clauses[-1]


def describe_call(function: dict[str, Any], arguments: dict[str, Any], rng: random.Random) -> str:
    """The action with its arguments, e.g. "get the weather, with the city set to Oslo"."""
    keys = list(arguments)
    rng.shuffle(keys)
    clauses = _join([argument_clause(k, arguments[k], rng) for k in keys])
    return f"{action_phrase(function)}{', ' + clauses if clauses else ''}"


def _wrap(body: str, rng: random.Random) -> str:
    opener, end = rng.choice(OPENERS)
    text = f"{opener}{body}{end}{rng.choice(CLOSERS)}"
    return text[0].upper() + text[1:]


def single_request(function: dict[str, Any], arguments: dict[str, Any], rng: random.Random) -> str:
    if rng.random() < 0.25:  # a statement of need, then the details as sentences
        keys = list(arguments)
        details = " ".join(f"The {_param_words(k)} is {say_value(arguments[k])}." for k in keys)
        return f"I want to {action_phrase(function)}. {details}".strip() + rng.choice(CLOSERS)
    return _wrap(describe_call(function, arguments, rng), rng)


def parallel_request(calls: list[tuple[dict[str, Any], dict[str, Any]]], rng: random.Random) -> str:
    """Several independent calls in one request (the same function repeated or not)."""
    parts = [describe_call(calls[0][0], calls[0][1], rng)]
    for function, arguments in calls[1:]:
        if function["name"] == calls[0][0]["name"] and arguments and rng.random() < 0.5:
            keys = list(arguments)
            rng.shuffle(keys)
            parts.append("do the same " + _join([argument_clause(k, arguments[k], rng) for k in keys]))
        else:
            parts.append(describe_call(function, arguments, rng))
    glue = rng.choice(["; also ", ", and also ", ". At the same time, ", "; and "])
    return _wrap(glue.join(parts), rng)


def sequential_request(first: tuple[dict[str, Any], dict[str, Any]], then: dict[str, Any], rng: random.Random) -> str:
    """Two steps where the second needs the first's result: only the first can be called now."""
    step1 = describe_call(first[0], first[1], rng)
    step2 = action_phrase(then)
    return rng.choice([f"First {step1}. Then, using what you get back, {step2}.",
                       f"I need two things done in order: {step1}, and after that {step2} based on the result.",
                       f"Start by asking to {step1}; once that's back, {step2} with it."])


def missing_request(function: dict[str, Any], arguments: dict[str, Any], missing: str, rng: random.Random) -> tuple[str, str]:
    """A request that leaves out a required argument, and the reply that asks for it."""
    given = {k: v for k, v in arguments.items() if k != missing}
    request = _wrap(describe_call(function, given, rng), rng)
    words = _param_words(missing)
    reply = rng.choice([f"I can {action_phrase(function)}, but I need the {words} first. What {words} should I use?",
                        f"To do that I need one more detail: the {words}. Could you tell me?",
                        f"Which {words} do you mean? I need it before I can go ahead."])
    return request, reply


def malformed_request(function: dict[str, Any], arguments: dict[str, Any], key: str, bad: str,
                      allowed: str, rng: random.Random) -> tuple[str, str]:
    """A request whose value for `key` cannot be used as given, and the clarifying reply."""
    request = _wrap(describe_call(function, {**arguments, key: bad}, rng), rng)
    words = _param_words(key)
    reply = rng.choice([f"\"{bad}\" is not a valid {words}: it must be {allowed}. Which one do you want?",
                        f"I can't use \"{bad}\" as the {words}; it has to be {allowed}. What should I use instead?"])
    return request, reply


def no_tool_reply(function: dict[str, Any] | None, offered: list[dict[str, Any]], rng: random.Random
                  ) -> tuple[str, list[str]]:
    """The reply to a request that none of the offered tools can serve, and the names of
    the offered tools it suggests instead (they must stay in the prompt)."""
    suggested = offered[:2] if offered and rng.random() < 0.7 else []
    can = f" I can {_join([action_phrase(f) for f in suggested])}, if that helps." if suggested else ""
    names = [f["name"] for f in suggested]
    if function is not None:
        return f"None of my tools can {action_phrase(function)}.{can}", names
    return f"I don't have a tool for that request.{can}", names
