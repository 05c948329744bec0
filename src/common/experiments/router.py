"""The two-hop router (Kinetic-4B's failed attempt): pick the toolkit, then call its tool.

Hop 1: a small model sees one pseudo-tool per toolkit (its name and a description made
from its tools' names; no arguments) among `n_toolkits` of the catalog, and "calls" the
toolkit the request belongs to. Hop 2: a bigger model sees the tools of the toolkit hop 1
chose and makes the call. When hop 1 chose another toolkit, the tool the request needs is
not among those hop 2 would see, so the sample has failed whatever hop 2 says: it is counted
wrong without being generated (and would not be a valid sample). Both hops are ordinary
evaluations with the runner, on samples derived here, so every verdict and prediction is on disk.

The end-to-end accuracy is measured (hop 2's correct samples over all samples), and
compared with the product of the hop accuracies and with the single model that sees
the tools directly: routing errors compound, which is why Kinetic dropped the design.
Only samples that expect a call are routed (a request that needs no call has no right
toolkit to route to).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from common.data import catalog as catalog_mod
from common.data.catalog import Catalog, Toolkit, split_name
from common.experiments.compare import verdicts
from common.experiments.steps import evaluate_model, stage
from common.samples import ExpectedCall, Sample, write_samples
from common.sources import load_data

DESCRIPTION_TOOLS = 6


def toolkit_tool(kit: Toolkit) -> dict[str, Any]:
    """A toolkit as a tool without arguments: its name, and what it does in its tools' names."""
    names = [split_name(n) for n in kit.names()[:DESCRIPTION_TOOLS]]
    more = len(kit.functions) - len(names)
    text = (kit.description.strip() + " " if kit.description else "") + "Tools: " + "; ".join(names) \
        + (f"; and {more} more." if more > 0 else ".")
    return {"type": "function", "function": {"name": kit.name, "description": text,
                                             "parameters": {"type": "object", "properties": {}}}}


def router_toolkits(catalog: Catalog, needed: set[str], n: int, seed: int = 0) -> list[Toolkit]:
    """`n` toolkits (at least those the samples need, then the largest others), in a seeded order."""
    missing = sorted(needed - set(catalog.toolkits))
    if missing:
        raise ValueError(f"toolkits {missing[:5]} of the samples are not in the catalog; route samples built "
                         "from the same catalog (BFCL's)")
    ranked = sorted(catalog.toolkits.values(), key=lambda t: (-len(t.functions), t.name))
    chosen = [catalog.toolkits[k] for k in sorted(needed)]
    chosen += [t for t in ranked if t.name not in needed][:max(0, n - len(chosen))]
    random.Random(seed).shuffle(chosen)
    return chosen


def routing_samples(samples: list[Sample], kits: list[Toolkit]) -> list[Sample]:
    """Hop 1's samples: the same conversation, the toolkits as tools, the right toolkit expected."""
    tools = [toolkit_tool(k) for k in kits]
    return [Sample(id=s.id, tools=tools, messages=s.messages, scenario=s.scenario, toolkit=s.toolkit,
                   source=s.source, expected_calls=[ExpectedCall(name=s.toolkit, arguments={})])
            for s in samples if s.expected_calls]


def routed_samples(samples: list[Sample], choice: dict[str, str | None]) -> list[Sample]:
    """Hop 2's samples: those hop 1 sent to their own toolkit, with its tools. A sample sent
    elsewhere (or nowhere) has already failed: the tool it needs is not among those hop 2
    would see, so no answer of hop 2 could be right, and such a sample is not a valid sample
    (samples.Sample). It counts as wrong end to end without a second generation."""
    return [s for s in samples if choice.get(s.id) is not None and choice[s.id] == s.toolkit]


def summary(n: int, hop1_correct: int, hop2_correct_given_right: int, hop2_right_n: int,
            end_to_end_correct: int, single_correct: int) -> dict[str, Any]:
    """The stage accuracies, their product, the measured end-to-end and the single model."""
    hop1 = hop1_correct / n if n else None
    hop2 = hop2_correct_given_right / hop2_right_n if hop2_right_n else None
    return {"n": n, "router_accuracy": hop1, "caller_accuracy_given_right_toolkit": hop2,
            "product_of_stages": hop1 * hop2 if hop1 is not None and hop2 is not None else None,
            "end_to_end_accuracy": end_to_end_correct / n if n else None,
            "single_model_accuracy": single_correct / n if n else None}


def two_hop(out: Any, data: str, limit: int | None, n_toolkits: int, eval_params: list[str],
            router_eval_set: dict[str, Any], caller_eval_set: dict[str, Any], seed: int = 0,
            timings: dict[str, float] | None = None) -> dict[str, Any]:
    """Both hops and the single-model baseline, evaluated into `out`/{router,caller,single}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings = {} if timings is None else timings
    samples = [s for s in load_data(data) if s.expected_calls][:limit]
    if not samples:
        raise ValueError(f"{data} has no sample that expects a call to route")
    cat = catalog_mod.from_bfcl()
    kits = router_toolkits(cat, {s.toolkit for s in samples}, n_toolkits, seed)
    write_samples(routing_samples(samples, kits), out / "router_samples.jsonl")
    write_samples(samples, out / "single_samples.jsonl")
    with stage(f"hop 1: route among {len(kits)} toolkits", timings):
        evaluate_model(eval_params, {**router_eval_set, "data": str(out / "router_samples.jsonl"),
                                        "out": str(out / "router"), "limit": None})
    hop1 = {v.id: v for v in verdicts(out / "router")}
    choice = {i: (v.output_names[0] if v.output_names else None) for i, v in hop1.items()}
    routed = routed_samples(samples, choice)
    hop2: dict[str, Any] = {}
    if routed:
        write_samples(routed, out / "caller_samples.jsonl")
        with stage(f"hop 2: call among the chosen toolkit's tools ({len(routed)} routed)", timings):
            evaluate_model(eval_params, {**caller_eval_set, "data": str(out / "caller_samples.jsonl"),
                                            "out": str(out / "caller"), "limit": None})
        hop2 = {v.id: v for v in verdicts(out / "caller")}
    with stage("single model: the tools directly", timings):
        evaluate_model(eval_params, {**caller_eval_set, "data": str(out / "single_samples.jsonl"),
                                        "out": str(out / "single"), "limit": None})
    single = verdicts(out / "single")
    right = [s.id for s in samples if choice.get(s.id) == s.toolkit]
    result = summary(len(samples), len(right), sum(hop2[i].correct for i in right if i in hop2), len(right),
                     sum(v.correct for v in hop2.values()), sum(v.correct for v in single))
    result["toolkits_shown"] = len(kits)
    result["routed_to_a_known_toolkit"] = sum(choice.get(s.id) in cat.toolkits for s in samples)
    result["routed_to_the_right_toolkit"] = len(routed)
    return result
