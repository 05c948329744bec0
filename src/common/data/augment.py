"""The augmentations of the live mix (common.data.live), each a pure function of a sample and a seeded rng.

Answers as declared (`typed`); whole-number types swapped, answer and all (`flip_types`); function masking (`mask`, Hammer arXiv 2410.04587); distractors
from other toolkit groups (`Distractors`); value swaps said verbatim in request and answer
(`value_pool`, `swap_value`); parallel requests composed of real ones (`compose`); near misses
(`near_miss`); the words of a no-call answer (`with_reply`).
"""

from __future__ import annotations

import copy
import json
import random
import re
import string
from collections import defaultdict
from typing import Any

from common.data import phrasing
from common.data.quality import request_text
from common.data.scenarios import lookalike
from common.samples import ExpectedCall, Sample
from common.schemas import validate_arguments

CONNECTORS = (" Also, ", " And then ", "\n", " Additionally, ", " After that, ")
NAME_CHARS = string.ascii_lowercase + string.digits


# -- types ---------------------------------------------------------------------------
def _declared(function: dict[str, Any], key: str) -> dict[str, Any]:
    return ((function.get("parameters") or {}).get("properties") or {}).get(key) or {}


def as_declared(value: Any, schema: dict[str, Any]) -> Any:
    """A whole number for a `number` (BFCL's float) written as a float, in lists too."""
    kind = schema.get("type")
    if kind == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind == "array" and isinstance(value, list):
        return [as_declared(v, schema.get("items") or {}) for v in value]
    return value


def typed(sample: Sample) -> Sample:
    """The sample with each call's training target (the first acceptable value) as declared:
    the first value that fits the schema goes first, a whole number for a float is written
    as one, and an optional argument with no fitting value (BFCL lists `None` for "left at
    its default") is left out of the answer."""
    functions = sample.functions()
    calls = []
    for c in sample.expected_calls:
        function = functions[c.name]
        schema = {**(function.get("parameters") or {}), "required": []}
        args = {}
        for k, values in c.arguments.items():
            values = [as_declared(v, _declared(function, k)) for v in values]
            fitting = [v for v in values if validate_arguments({"parameters": schema}, {k: v}) is None]
            if fitting:
                args[k] = fitting + [v for v in values if v not in fitting]
            elif k not in c.optional:
                args[k] = values  # the quality filter drops it: BFCL's answer breaks its own schema
        calls.append(c.model_copy(update={"arguments": args}))
    return sample.model_copy(update={"expected_calls": calls})


def _whole_numbers(values: list[Any]) -> bool:
    """Whole numbers only, each below 1e15 (written the same as int and as float; larger ones
    lose digits as floats and print as 1e+16)."""
    return bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) < 1e15
                                and float(v).is_integer() for v in values)


def flip_types(sample: Sample, rng: random.Random) -> Sample:
    """Each argument answered with whole numbers only, declared `integer` or `number` (BFCL's
    float) without an enum, swaps its declared type with probability 1/2, and the answer
    follows (15 <-> 15.0); so the type, not the meaning of the value ("a price"), decides
    how it is written. BFCL marks 15.0 for an integer wrong; the live data alone teaches
    floats by topic (v0 wrote 150.0 cm, 5000.0 dollars for integers)."""
    functions = sample.functions()
    values: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for c in sample.expected_calls:
        for k, vs in c.arguments.items():
            values[(c.name, k)].extend(vs)
    flipped: dict[tuple[str, str], str] = {}
    for (name, key), vs in values.items():
        schema = _declared(functions[name], key)
        if schema.get("type") in ("integer", "number") and "enum" not in schema and _whole_numbers(vs) \
                and (schema.get("default") is None or _whole_numbers([schema["default"]])) and rng.random() < 0.5:
            flipped[(name, key)] = "number" if schema["type"] == "integer" else "integer"
    if not flipped:
        return sample
    cast = {"integer": int, "number": float}
    tools = []
    for tool in sample.tools:
        f = copy.deepcopy(tool["function"])
        for k, schema in ((f.get("parameters") or {}).get("properties") or {}).items():
            kind = flipped.get((f["name"], k))
            if kind:
                schema["type"] = kind
                if _whole_numbers([schema.get("default")]):
                    schema["default"] = cast[kind](schema["default"])
        tools.append({**tool, "function": f})
    calls = [c.model_copy(update={"arguments": {
        k: [cast[flipped[(c.name, k)]](v) for v in vs] if (c.name, k) in flipped else vs
        for k, vs in c.arguments.items()}}) for c in sample.expected_calls]
    notes = "; ".join(filter(None, [sample.notes, "types flipped"]))
    return sample.model_copy(update={"tools": tools, "expected_calls": calls, "notes": notes})


# -- masking -------------------------------------------------------------------------
def random_name(rng: random.Random, taken: set[str]) -> str:
    """A fresh identifier: one to three random lowercase chunks joined by `_`."""
    while True:
        chunks = [rng.choice(string.ascii_lowercase) + "".join(rng.choices(NAME_CHARS, k=rng.randint(2, 6)))
                  for _ in range(rng.randint(1, 3))]
        name = "_".join(chunks)
        if name not in taken:
            taken.add(name)
            return name


def random_like(value: Any, schema: dict[str, Any], rng: random.Random) -> Any:
    """Another value of the same type (an enum's other member where there is one)."""
    enum = [v for v in schema.get("enum") or [] if v != value]
    if enum:
        return rng.choice(enum)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return rng.randint(0, max(10, 2 * abs(value) + 10))
    if isinstance(value, float):
        return round(rng.uniform(0, max(10.0, 2 * abs(value) + 10)), 2)
    if isinstance(value, str):
        return random_name(rng, {value})
    return value


def mask(sample: Sample, rng: random.Random, reserved: frozenset[str] = frozenset()) -> Sample:
    """Function names, parameter names and unset defaults replaced by random ones, in the
    tools and the expected calls alike (Hammer's function masking). No function is given a
    `reserved` name (BFCL's non-live functions: a random "lcm" would offer a benchmark one)."""
    taken: set[str] = set(reserved)
    renamed, tools = {}, []
    used: dict[str, set[str]] = {}
    for c in sample.expected_calls:
        used.setdefault(c.name, set()).update(c.arguments, c.optional)
    keys_of: dict[str, dict[str, str]] = {}
    for tool in sample.tools:
        f = copy.deepcopy(tool["function"])
        new = random_name(rng, taken)
        renamed[f["name"]] = new
        params = f.get("parameters") or {}
        props = params.get("properties") or {}
        local: set[str] = set()
        keys = {k: random_name(rng, local) for k in props}
        for k, schema in props.items():
            if "default" in schema and k not in used.get(f["name"], set()):
                schema["default"] = random_like(schema["default"], schema, rng)
        params["properties"] = {keys[k]: v for k, v in props.items()}
        if "required" in params:
            params["required"] = [keys.get(k, k) for k in params["required"]]
        keys_of[f["name"]] = keys
        f["name"] = new
        tools.append({"type": "function", "function": f})
    calls = [ExpectedCall(name=renamed[c.name],
                          arguments={keys_of[c.name].get(k, k): v for k, v in c.arguments.items()},
                          optional=[keys_of[c.name].get(k, k) for k in c.optional])
             for c in sample.expected_calls]
    notes = "; ".join(filter(None, [sample.notes, "masked"]))
    return sample.model_copy(update={"tools": tools, "expected_calls": calls, "notes": notes})


# -- distractors ---------------------------------------------------------------------
class Distractors:
    """Functions of the training toolkits, to pad a prompt with tools from other toolkits."""

    def __init__(self, samples: list[Sample]):
        by_name: dict[str, tuple[str, dict[str, Any]]] = {}
        for s in samples:
            for t in s.tools:
                by_name.setdefault(t["function"]["name"], (s.toolkit or "", t))
        self.pool = [by_name[n] for n in sorted(by_name)]

    def pad(self, sample: Sample, size: int, rng: random.Random, avoid: list[dict[str, Any]] = ()) -> Sample:
        """The sample's tools plus distractors of other toolkits up to `size`, shuffled."""
        tools = list(sample.tools)
        unlike = [t["function"] for t in tools] + list(avoid)
        names = {f["name"] for f in unlike}
        tries = 0
        while len(tools) < size and tries < 20 * size:
            tries += 1
            kit, t = rng.choice(self.pool)
            f = t["function"]
            if kit == sample.toolkit or f["name"] in names or any(lookalike(f, u) for u in unlike):
                continue
            tools.append(t)
            names.add(f["name"])
        rng.shuffle(tools)
        return sample.model_copy(update={"tools": tools})


# -- composition ---------------------------------------------------------------------
def _said_once(value: Any, text: str) -> re.Match | None:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    said = str(value)
    if isinstance(value, str) and len(said) < 3:
        return None
    found = list(re.finditer(r"(?<![\w.])" + re.escape(said) + r"(?![\w]|\.\d)", text))
    return found[0] if len(found) == 1 else None


def value_pool(samples: list[Sample]) -> dict[str, list[str]]:
    """String values said verbatim in real requests, by parameter name: what a swap draws from."""
    pool: dict[str, set[str]] = defaultdict(set)
    for s in samples:
        text = request_text(s)
        for c in s.expected_calls:
            for k, v in c.arguments.items():
                if isinstance(v[0], str) and _said_once(v[0], text):
                    pool[k].add(v[0])
    return {k: sorted(v) for k, v in pool.items() if len(v) > 1}


def swap_value(sample: Sample, pool: dict[str, list[str]], rng: random.Random) -> Sample | None:
    """A copy of a one-call sample with one value said verbatim in the request replaced by
    another of its kind, in request and answer alike; None when no value can be swapped."""
    (call,) = sample.expected_calls
    if sum(m["role"] == "user" for m in sample.messages) != 1:
        return None
    text = request_text(sample)
    function = sample.functions()[call.name]
    keys = list(call.arguments)
    rng.shuffle(keys)
    for k in keys:
        old = call.arguments[k][0]
        where = _said_once(old, text)
        elsewhere = json.dumps({j: v[0] for j, v in call.arguments.items() if j != k}, ensure_ascii=False)
        if where is None or str(old) in elsewhere:  # said for another argument too: a swap would split them
            continue
        if isinstance(old, str):
            options = [v for v in pool.get(k, []) if v.lower() != old.lower()]
            if not options:
                continue
            new: Any = rng.choice(options)
        elif isinstance(old, int):
            new = old + rng.choice([-1, 1]) * rng.randint(1, max(2, abs(old)))
        else:
            decimals = len(str(old).split(".")[1]) if "." in str(old) else 1
            new = round(old * rng.uniform(0.5, 1.5) + 10 ** -decimals, decimals)
        if str(new) == str(old) or validate_arguments(
                function, {j: v[0] for j, v in {**call.arguments, k: [new]}.items()}) is not None:
            continue
        new_text = text[:where.start()] + str(new) + text[where.end():]
        messages = [{**m, "content": new_text} if m["role"] == "user" else m for m in sample.messages]
        args = {**call.arguments, k: [new]}
        return sample.model_copy(update={"messages": messages,
                                         "expected_calls": [call.model_copy(update={"arguments": args})]})
    return None


def compose(parts: list[Sample], sample_id: str, rng: random.Random) -> Sample | None:
    """One parallel request from several one-call requests: their texts joined, their tools
    merged (each function once), their calls in order; None when two parts offer one name
    with different definitions."""
    texts = [request_text(p).strip() for p in parts]
    text = texts[0]
    for p, t in zip(parts[1:], texts[1:]):
        joint = rng.choice(CONNECTORS)
        first = re.match(r"[A-Z][a-z]+\b", t)
        said = json.dumps([c.arguments for c in p.expected_calls], ensure_ascii=False)
        # "…. Also, can you …": a capitalised opener is lowered, never a name or a value said
        lower = joint != "\n" and first is not None and first.group(0) != "I" and first.group(0) not in said
        text += joint + (t[:1].lower() + t[1:] if lower else t)
    tools, names = [], {}
    for p in parts:
        for t in p.tools:
            name = t["function"]["name"]
            if name not in names:
                tools.append(t)
                names[name] = t["function"]
            elif names[name] != t["function"]:
                return None  # BFCL has same-named functions with other parameters: no one prompt holds both
    rng.shuffle(tools)
    same = len({p.expected_calls[0].name for p in parts}) == 1
    system = [m for m in parts[0].messages if m["role"] == "system"]
    return Sample(id=sample_id, tools=tools, messages=[*system, {"role": "user", "content": text}],
                  expected_calls=[c for p in parts for c in p.expected_calls], scenario="parallel",
                  toolkit=parts[0].toolkit, source="bfcl_live_composed",
                  notes=f"composed {'parallel' if same else 'parallel_multiple'} from "
                        + " + ".join(p.id for p in parts))


def near_miss(sample: Sample, sample_id: str, rng: random.Random) -> Sample | None:
    """A one-call request with its fitting tool (and the tool's lookalikes) withheld,
    answered in words; None when no other tool is left to offer."""
    (call,) = sample.expected_calls
    fitting = sample.functions()[call.name]
    tools = [t for t in sample.tools if t["function"]["name"] != call.name
             and not lookalike(t["function"], fitting)]
    if not tools:
        return None
    # the plain reply: the writer's "None of my tools can <action>" reads the withheld tool's
    # description, and real descriptions make clumsy actions
    reply, _ = phrasing.no_tool_reply(None, [], rng)
    return sample.model_copy(update={"id": sample_id, "tools": tools, "expected_calls": [], "scenario": "no_tool",
                                     "source": "bfcl_live_near_miss", "reply": reply,
                                     "notes": f"near miss: withheld {call.name}"})


def with_reply(sample: Sample, seed: int) -> Sample:
    """A no-call sample with the assistant's words to train on (and for an eval loss)."""
    if sample.expected_calls or sample.reply:
        return sample
    reply, _ = phrasing.no_tool_reply(None, [], random.Random(f"{seed}:{sample.id}:reply"))
    return sample.model_copy(update={"reply": reply})
