"""The `live` mix: BFCL-live's real requests as the backbone of the training set (issue 18).

BFCL's live categories hold ~2,200 requests written by real users against real
functions. Rendered exactly as BFCL renders its prompts (each function's description
ending in BFCL's Python note), they teach how people ask, which the offline writer
cannot. Whole toolkits are held back twice: a `dev` split (the build's `eval`) to
choose recipes and thresholds on, and a `transfer` split to test once on toolkits the
model never saw. Both stay as BFCL renders them (no augmentation, no cap).

The training part adds what the live data lacks, each draw seeded by the build seed
and the sample's id (Hammer, arXiv 2410.04587; FunctionGemma; xLAM):
- function masking: with probability `masking`, function and parameter names become
  random strings and unset defaults random values, so the model reads descriptions;
  every prompt is padded with distractors from other training toolkits and shuffled;
- composed parallel requests: two or three real requests joined ("…. Also, …"), of one
  function (the second a copy of the first with a value said verbatim swapped for
  another, in request and answer alike) or of different toolkits, since the live
  categories hold only ~40 parallel requests;
- near misses: a real request with its fitting tool withheld, answered without a call;
- a no-call share: the no-call samples (live_irrelevance + near misses) drawn down, or
  repeated up, to `no_call_share` of the training set;
- types as declared: a whole number for a `float` argument is written 5.0.
Entries that offer a function of BFCL's non-live categories, or repeat one of its
requests, are left out (counted): the leakage check must pass on every sample.
"""

from __future__ import annotations

import copy
import random
import re
import string
from collections import Counter, defaultdict
from typing import Any

from pydantic import ValidationError

from common import bfcl_data
from common.data import phrasing
from common.data.catalog import Catalog
from common.data.quality import problem, request_text
from common.data.scenarios import lookalike
from common.samples import ExpectedCall, Sample
from common.schemas import validate_arguments

LIVE_SCENARIO = {"live_simple": "single", "live_multiple": "single", "live_parallel": "parallel",
                 "live_parallel_multiple": "parallel", "live_irrelevance": "no_tool"}
CONNECTORS = (" Also, ", " And then ", "\n", " Additionally, ", " After that, ")
NAME_CHARS = string.ascii_lowercase + string.digits


def live_pool(cat: Catalog, bench_requests: frozenset[str], bench_functions: frozenset[str],
              dropped: Counter) -> list[Sample]:
    """Every single-turn BFCL-live entry usable for training, as BFCL prompts it, with its toolkit."""
    out = []
    for category, scenario in LIVE_SCENARIO.items():
        for entry in bfcl_data.read_category(category):
            names = [f["name"] for f in entry["function"]]
            if not names:
                dropped["live_no_functions"] += 1
                continue
            if any(n in bench_functions for n in names):
                dropped["live_offers_benchmark_function"] += 1
                continue
            if bfcl_data.normalize_request(bfcl_data.user_text(entry)) in bench_requests:
                dropped["live_repeats_benchmark_request"] += 1
                continue
            kit = cat.toolkit_of(names[0])
            try:  # validated as training data: BFCL's own unusable schemas are not kept here
                s = bfcl_data.entry_to_sample(entry, category, hint=bfcl_data.PYTHON_HINT)
                s = Sample.model_validate({**s.model_dump(), "scenario": scenario, "source": "bfcl_live",
                                           "toolkit": kit, "notes": category})
            except (ValidationError, ValueError):
                dropped["live_schema_unusable"] += 1
                continue
            if kit is None:
                dropped["live_schema_unusable"] += 1
                continue
            out.append(s)
    return out


def split_toolkits(samples: list[Sample], dev_fraction: float, transfer_fraction: float,
                   seed: int) -> dict[str, str]:
    """Toolkit -> train | dev | transfer. Whole toolkits go to dev, then transfer, in a seeded
    order, until each holds its share of the entries; a toolkit larger than a tenth of a
    share's size is never held back (one big toolkit would be the whole split)."""
    sizes = Counter(s.toolkit for s in samples)
    order = sorted(sizes)
    random.Random(f"{seed}:live-split").shuffle(order)
    where = {k: "train" for k in order}
    for split, fraction in (("dev", dev_fraction), ("transfer", transfer_fraction)):
        want = round(fraction * len(samples))
        have = 0
        for kit in order:
            if have >= want:
                break
            if where[kit] == "train" and sizes[kit] <= max(3, want // 10):
                where[kit] = split
                have += sizes[kit]
    return where


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


def mask(sample: Sample, rng: random.Random) -> Sample:
    """Function names, parameter names and unset defaults replaced by random ones, in the
    tools and the expected calls alike (Hammer's function masking)."""
    taken: set[str] = set()
    renamed, tools = {}, []
    used = {c.name: set(c.arguments) | set(c.optional) for c in sample.expected_calls}
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
    text = request_text(sample)
    keys = list(call.arguments)
    rng.shuffle(keys)
    for k in keys:
        old = call.arguments[k][0]
        where = _said_once(old, text)
        if where is None:
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
        if str(new) == str(old):
            continue
        new_text = text[:where.start()] + str(new) + text[where.end():]
        messages = [{**m, "content": new_text} if m["role"] == "user" else m for m in sample.messages]
        if sum(m["role"] == "user" for m in sample.messages) != 1:
            return None
        args = {**call.arguments, k: [new]}
        return sample.model_copy(update={"messages": messages,
                                         "expected_calls": [call.model_copy(update={"arguments": args})]})
    return None


def compose(parts: list[Sample], sample_id: str, rng: random.Random) -> Sample:
    """One parallel request from several one-call requests: their texts joined, their tools
    merged (each function once), their calls in order."""
    texts = [request_text(p).strip() for p in parts]
    text = texts[0]
    for t in texts[1:]:
        joint = rng.choice(CONNECTORS)
        lower = joint != "\n" and not re.match(r"I\b", t)  # "…. Also, can you …"
        text += joint + (t[:1].lower() + t[1:] if lower else t)
    tools, names = [], set()
    for p in parts:
        for t in p.tools:
            if t["function"]["name"] not in names:
                tools.append(t)
                names.add(t["function"]["name"])
    rng.shuffle(tools)
    same = len({p.expected_calls[0].name for p in parts}) == 1
    return Sample(id=sample_id, tools=tools, messages=[{"role": "user", "content": text}],
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


# -- the training part ---------------------------------------------------------------
def training_samples(train: list[Sample], p: Any, seed: int, counts: Counter) -> list[Sample]:
    """The augmented training set from the training toolkits' real requests (`p`: DataParams)."""
    distractors = Distractors(train)
    pool = value_pool(train)
    one_call = [s for s in train if len(s.expected_calls) == 1]
    out: list[Sample] = []
    calls: list[Sample] = []
    no_calls: list[Sample] = []

    def finish(s: Sample, rng: random.Random, avoid: list[dict[str, Any]] = ()) -> Sample:
        s = distractors.pad(typed(s), p.tools_per_prompt, rng, avoid)
        if p.masking and rng.random() < p.masking:
            s = mask(s, rng)
            counts["masked"] += 1
        return s

    for r in range(p.live_repeats):
        for s in train:
            rng = random.Random(f"{seed}:{s.id}:{r}")
            s = s.model_copy(update={"id": f"{s.id}#{r}"})
            if not s.expected_calls:
                no_calls.append(finish(with_reply(s, seed), rng))
            else:
                calls.append(finish(s, rng))
    rng = random.Random(f"{seed}:composed")
    for i in range(p.composed_parallel):
        first = rng.choice(one_call)
        if rng.random() < 0.5:  # one function, called again with another value
            second = swap_value(first, pool, rng)
            parts = [first, second] if second is not None else None
            if parts and rng.random() < 0.3 and (third := swap_value(first, pool, rng)) is not None \
                    and request_text(third) not in {request_text(x) for x in parts}:
                parts.append(third)
            if parts is None:
                counts["composed_no_swap"] += 1
                continue
        else:  # functions of different toolkits
            others = [x for x in rng.sample(one_call, 8) if x.toolkit != first.toolkit]
            parts = [first, *others[: rng.choice([1, 1, 2])]]
            if len(parts) < 2:
                continue
        sid = f"composed/{i:05d}"
        calls.append(finish(compose([typed(x) for x in parts], sid, random.Random(f"{seed}:{sid}")),
                            random.Random(f"{seed}:{sid}:finish")))
        counts["composed_parallel"] += 1
    for i in range(p.near_miss):
        sid = f"near_miss/{i:05d}"
        srng = random.Random(f"{seed}:{sid}")
        base = srng.choice(one_call)
        base = distractors.pad(base, max(p.tools_per_prompt, 2), srng)
        made = near_miss(base, sid, srng)
        if made is None:
            continue
        fitting = base.functions()[base.expected_calls[0].name]
        no_calls.append(finish(made, srng, avoid=[fitting]))
        counts["near_miss"] += 1
    if p.no_call_share is not None and calls:
        want = round(p.no_call_share / (1 - p.no_call_share) * len(calls)) if p.no_call_share < 1 else len(no_calls)
        rng = random.Random(f"{seed}:no-call-share")
        if want <= len(no_calls):
            no_calls = rng.sample(no_calls, want)
        else:
            counts["no_call_short"] = want - len(no_calls)
    out = calls + no_calls
    random.Random(f"{seed}:order").shuffle(out)
    kept = []
    for s in out:
        found = problem(s)
        if found:
            counts[f"dropped_{found[0]}"] += 1
            continue
        kept.append(s)
    return kept


def no_call_share(samples: list[Sample]) -> float:
    return sum(not s.expected_calls for s in samples) / max(1, len(samples))


def describe(samples: list[Sample]) -> dict[str, Any]:
    """Counts per BFCL category and per augmentation, for the data card."""
    return {"samples": len(samples), "no_call_share": round(no_call_share(samples), 3),
            "by_source": dict(Counter(s.source for s in samples).most_common()),
            "by_category": dict(Counter((s.notes or "").split(";")[0] if s.source == "bfcl_live" else s.source
                                        for s in samples).most_common()),
            "masked": sum("masked" in (s.notes or "") for s in samples),
            "calls_per_sample": dict(sorted(Counter(len(s.expected_calls) for s in samples).items())),
            "toolkits": len({s.toolkit for s in samples})}
