"""Kinetic-style samples: the right tool(s) among same-toolkit distractors, per scenario.

Each prompt offers `tools_per_prompt` tools: the tools the scenario needs, then
distractors drawn from the same toolkit (topped up from the nearest toolkits when
it is too small), shuffled with the sample's own seed. A distractor never looks
like a target (`lookalike`: BFCL has `user_authenticate` beside
`user_authentication`), so a request always has one right answer.

Scenarios (smol-tools' list, with what the model must do):
- single: one call; parallel: several independent calls in one turn;
- sequential: two dependent steps, and only the first may be called now;
- no_tool: a request none of the offered tools serves (the near miss: its own tool
  is withheld while the rest of its toolkit is offered), or small talk;
- missing_info: a required value is missing or unusable, so the model asks.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from common.data import phrasing
from common.data.catalog import Catalog, split_name
from common.data.values import sample_value
from common.samples import ExpectedCall, Sample
from common.schemas import trim_function

SCENARIOS = ("single", "parallel", "sequential", "no_tool", "missing_info")
BAD_WORDS = ["purple", "whatever", "the usual", "extra-large", "maybe", "sometime"]
VAGUE_NUMBERS = ["a few", "several", "lots", "a bunch", "some"]


def essential_tools(sample: Sample) -> set[str]:
    """Tools a sample cannot lose when a prompt is trimmed: the expected calls', the
    later step of a sequential request, the tool a missing-information request is for,
    the tools a no-tool reply offers instead."""
    names = {c.name for c in sample.expected_calls}
    names.update(re.findall(r"(?:^|; )(?:tool|then|said)=([^;]+)", sample.notes or ""))
    return names


def lookalike(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two functions could both serve one request: their names share most
    words, compared by their first six letters so that `user_authenticate` and
    `user_authentication`, or `get_weather` and `get_weather_now`, match."""
    ta = {w[:6] for w in split_name(a["name"]).split()}
    tb = {w[:6] for w in split_name(b["name"]).split()}
    # one name inside the other (`segment` / `segment_all_objects`) is a lookalike too
    return bool(ta and tb) and (ta <= tb or tb <= ta or len(ta & tb) / len(ta | tb) >= 0.6)


def small_talk() -> list[dict[str, str]]:
    """Requests that need no tool at all, with short replies (shipped with the package)."""
    return json.loads((resources.files("common") / "resources" / "small_talk.json").read_text())


@dataclass
class SampleWriter:
    catalog: Catalog
    tools_per_prompt: int = 10
    max_description_chars: int | None = None
    optional_rate: float = 0.3
    teacher: Any = None  # a common.data.teacher.Teacher, or None for the offline writer
    targets: set[str] | None = None  # only these functions may be targets (unseen-tools split)
    nearest: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.nearest:
            self.nearest = self.catalog.nearest()

    # -- tools --------------------------------------------------------------------
    def offered(self, needed: list[dict[str, Any]], toolkit: str, rng: random.Random,
                avoid: list[dict[str, Any]] = ()) -> list[dict[str, Any]]:
        """`needed` plus same-toolkit distractors (then nearest toolkits), shuffled."""
        taken = {f["name"] for f in needed} | {f["name"] for f in avoid}
        unlike = list(needed) + list(avoid)
        chosen = list(needed)
        for kit in [toolkit] + self.nearest.get(toolkit, []):
            if len(chosen) >= self.tools_per_prompt:
                break
            pool = [f for f in self.catalog.toolkits[kit].functions
                    if f["name"] not in taken and not any(lookalike(f, u) for u in unlike)]
            picked = rng.sample(pool, min(len(pool), self.tools_per_prompt - len(chosen)))
            chosen += picked
            taken.update(f["name"] for f in picked)
        rng.shuffle(chosen)
        return [trim_function(f, self.max_description_chars) for f in chosen]

    def _arguments(self, function: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        props = function["parameters"].get("properties", {})
        required = [k for k in function["parameters"].get("required", []) if k in props]
        keys = required + [k for k in props if k not in required and rng.random() < self.optional_rate]
        return {k: sample_value(k, props[k], rng) for k in keys}

    def _targets(self, toolkit: str) -> list[dict[str, Any]]:
        functions = self.catalog.toolkits[toolkit].functions
        return [f for f in functions if self.targets is None or f["name"] in self.targets]

    def _request(self, scenario: str, tools: list[dict[str, Any]], calls: list[dict[str, Any]],
                 seed: int, offline: str) -> str:
        if self.teacher is None:
            return offline
        return self.teacher.write_request(tools, calls, scenario, seed)

    # -- scenarios ----------------------------------------------------------------
    def make(self, scenario: str, toolkit: str, sample_id: str, seed: int) -> Sample | None:
        """One sample, or None when the toolkit cannot make this scenario."""
        rng = random.Random(f"{seed}:{sample_id}")
        targets = self._targets(toolkit)
        if not targets:
            return None
        made = getattr(self, f"_{scenario}")(toolkit, targets, rng)
        if made is None:
            return None
        tools, calls, request, reply, notes = made
        return Sample(id=sample_id, tools=tools, messages=[{"role": "user", "content": request}],
                      expected_calls=[ExpectedCall.exact(c["name"], c["arguments"]) for c in calls],
                      scenario=scenario, toolkit=toolkit,
                      source="offline" if self.teacher is None else
                      f"teacher:{self.teacher.identity().get('model', 'teacher')}",
                      notes=notes, reply=reply)

    def _single(self, toolkit, targets, rng):
        f = rng.choice(targets)
        args = self._arguments(f, rng)
        tools = self.offered([f], toolkit, rng)
        calls = [{"name": f["name"], "arguments": args}]
        request = self._request("single", tools, calls, rng.randrange(2**31), phrasing.single_request(f, args, rng))
        return tools, calls, request, None, None

    def _parallel(self, toolkit, targets, rng):
        with_args = [f for f in targets if f["parameters"].get("properties")]
        if with_args and rng.random() < 0.5:  # the same function with other values
            f = rng.choice(with_args)
            pairs = [(f, self._arguments(f, rng)) for _ in range(rng.choice([2, 2, 3]))]
            if len({json.dumps(a, sort_keys=True) for _, a in pairs}) < len(pairs):
                return None
        else:
            if len(targets) < 2:
                return None
            picked: list[dict[str, Any]] = []
            for f in rng.sample(targets, len(targets)):
                if not any(lookalike(f, p) for p in picked):
                    picked.append(f)
                if len(picked) == 2:
                    break
            if len(picked) < 2:
                return None
            pairs = [(f, self._arguments(f, rng)) for f in picked]
        tools = self.offered(list({f["name"]: f for f, _ in pairs}.values()), toolkit, rng)
        calls = [{"name": f["name"], "arguments": a} for f, a in pairs]
        request = self._request("parallel", tools, calls, rng.randrange(2**31), phrasing.parallel_request(pairs, rng))
        return tools, calls, request, None, None

    def _sequential(self, toolkit, targets, rng):
        if len(targets) < 2:
            return None
        first = rng.choice(targets)
        rest = [f for f in self.catalog.toolkits[toolkit].functions if f["name"] != first["name"] and not lookalike(f, first)]
        if not rest:
            return None
        then = rng.choice(rest)
        args = self._arguments(first, rng)
        tools = self.offered([first, then], toolkit, rng)
        calls = [{"name": first["name"], "arguments": args}]
        offline = phrasing.sequential_request((first, args), then, rng)
        request = self._request("sequential", tools, calls + [{"name": then["name"], "arguments": {}}],
                                rng.randrange(2**31), offline)
        return tools, calls, request, None, f"then={then['name']}"

    def _no_tool(self, toolkit, targets, rng):
        if rng.random() < 0.25:
            talk = rng.choice(small_talk())
            tools = self.offered([], toolkit, rng)
            return tools, [], talk["request"], talk["reply"], "small_talk"
        f = rng.choice(targets)
        args = self._arguments(f, rng)
        tools = self.offered([], toolkit, rng, avoid=[f])
        if not tools:
            return None
        offline = phrasing.single_request(f, args, rng)
        # the teacher writes the request for the withheld tool, which the prompt then lacks
        request = self._request("no_tool", tools + [f], [{"name": f["name"], "arguments": args}],
                                rng.randrange(2**31), offline)
        reply, said = phrasing.no_tool_reply(f, tools, rng)
        return tools, [], request, reply, "; ".join([f"withheld={f['name']}"] + [f"said={n}" for n in said])

    def _missing_info(self, toolkit, targets, rng):
        candidates = [f for f in targets if f["parameters"].get("required")]
        if not candidates:
            return None
        f = rng.choice(candidates)
        args = self._arguments(f, rng)
        props = f["parameters"]["properties"]
        usable = [k for k in f["parameters"]["required"]
                  if props[k].get("enum") or props[k].get("type") in ("integer", "number")]
        tools = self.offered([f], toolkit, rng)
        if usable and rng.random() < 0.4:
            key = rng.choice(usable)
            if props[key].get("enum"):
                bad = rng.choice([w for w in BAD_WORDS if w not in props[key]["enum"]])
                allowed = "one of " + ", ".join(str(v) for v in props[key]["enum"][:6])
            else:
                bad = rng.choice(VAGUE_NUMBERS)
                allowed = "a whole number" if props[key]["type"] == "integer" else "a number"
            offline, reply = phrasing.malformed_request(f, args, key, bad, allowed, rng)
            note = f"tool={f['name']}; malformed={key}"
            call = {"name": f["name"], "arguments": {**args, key: bad}, "malformed": key}
        else:
            key = rng.choice(f["parameters"]["required"])
            offline, reply = phrasing.missing_request(f, args, key, rng)
            note = f"tool={f['name']}; missing={key}"
            call = {"name": f["name"], "arguments": {k: v for k, v in args.items() if k != key}, "missing": key}
        request = self._request("missing_info", tools, [call], rng.randrange(2**31), offline)
        return tools, [], request, reply, note

    # -- real requests ------------------------------------------------------------
    def complete_real(self, sample: Sample, toolkit: str, seed: int) -> Sample:
        """A real request (BFCL live) with its own tools topped up to the prompt size."""
        rng = random.Random(f"{seed}:{sample.id}")
        own = [t["function"] for t in sample.tools]
        tools = self.offered(own, toolkit, rng) if len(own) < self.tools_per_prompt else \
            [trim_function(f, self.max_description_chars) for f in own]
        reply, said = phrasing.no_tool_reply(None, tools, rng) if not sample.expected_calls else (None, [])
        return sample.model_copy(update={"tools": [{"type": "function", "function": f} for f in tools],
                                         "toolkit": toolkit, "reply": reply,
                                         "notes": "; ".join(f"said={n}" for n in said) or None})
