"""The written mixes (balanced, generic) of the data build: quotas per toolkit and scenario,
real requests by toolkit, filling the quotas, and the stratified eval split (common.data.build)."""

from __future__ import annotations

import itertools
import math
import random
from collections import defaultdict
from typing import Any

from common import bfcl_data
from common.bfcl_data import normalize_request
from common.data import catalog as catalog_mod
from common.data import quality
from common.data.live import LIVE_SCENARIO
from common.samples import Sample


# -- quotas --------------------------------------------------------------------------
def quotas(p: Any, toolkits: list[str], total_per_toolkit: int) -> dict[str, dict[str, int]]:
    """Samples to make per toolkit and scenario: equal per toolkit (balanced) or
    Zipf-weighted so that a few toolkits dominate (the "generic" v1 mix)."""
    if p.mix == "balanced":
        sizes = {t: total_per_toolkit for t in toolkits}
    else:
        weights = [1 / (k + 1) ** p.generic_zipf for k in range(len(toolkits))]
        total = total_per_toolkit * len(toolkits)
        sizes = {t: max(1, round(total * w / sum(weights))) for t, w in zip(toolkits, weights)}
    return {t: {s: math.ceil(n * share) for s, share in p.scenario_mix.items()} for t, n in sizes.items()}


def live_samples(cat: catalog_mod.Catalog, requests: frozenset[str]) -> dict[tuple[str, str], list[Sample]]:
    """BFCL-live requests whose tools are in the catalog, by (toolkit, scenario)."""
    out: dict[tuple[str, str], list[Sample]] = defaultdict(list)
    for category, scenario in LIVE_SCENARIO.items():
        for entry in bfcl_data.read_category(category):
            names = [f["name"] for f in entry["function"]]
            if not names or any(cat.toolkit_of(n) is None for n in names):
                continue  # a tool left out (benchmark, invalid, other toolkit)
            if normalize_request(bfcl_data.user_text(entry)) in requests:
                continue
            sample = bfcl_data.entry_to_sample(entry, category)
            kit = cat.toolkit_of(sample.expected_calls[0].name if sample.expected_calls else names[0])
            out[(kit, scenario)].append(sample.model_copy(update={"scenario": scenario, "source": "bfcl_live"}))
    return out


def generate(p: Any, writer: Any, plan: dict[str, dict[str, int]], live: dict, meter: Any,
             seen: set[str], prefix: str, drops: dict[str, Any], bar: Any) -> list[tuple[Sample, int]]:
    """Fill each (toolkit, scenario) quota: real requests first (up to `real_fraction`),
    then written ones, each through the quality filter and the token cap."""
    out = []
    for kit in sorted(plan):
        for scenario, quota in plan[kit].items():
            made = 0
            real = list(live.get((kit, scenario), []))
            random.Random(f"{p.seed}:{prefix}:{kit}:{scenario}").shuffle(real)
            real = real[: int(quota * p.real_fraction)]  # `live` is empty unless bfcl_live is a source
            candidates = itertools.chain(
                (writer.complete_real(r, kit, p.seed) for r in real),
                (writer.make(scenario, kit, f"{prefix}/{kit}/{scenario}/{i:05d}", p.seed) for i in range(quota * 6)))
            for s in candidates:
                if made >= quota:
                    break
                if s is None:
                    continue
                kept, report = quality.quality_filter([s], seen)
                for reason, example in report["examples"].items():
                    drops["examples"].setdefault(reason, example)
                if (not kept and not p.quality_filter
                        and (key := quality.normalize_request(quality.request_text(s))) not in seen):
                    # a dirty sample stays; a repeat never does (it could repeat a held-out request)
                    seen.add(key)
                    drops["dropped"]["kept_unfiltered"] += 1
                elif not kept:
                    drops["dropped"].update(report["dropped"])
                    continue
                fitted, tokens = meter.fit(s)
                if fitted is None:
                    drops["dropped"]["prompt_too_long"] += 1
                    continue
                out.append((fitted, tokens))
                made += 1
                bar.update(1)
            if made < quota:
                drops["short"][f"{kit}/{scenario}"] = quota - made
    return out


def stratified_eval(pool: list[tuple[Sample, int]], size: int, seed: int) -> tuple[list, list]:
    """(eval, train): `size` samples drawn per scenario in proportion, with `seed`."""
    rng = random.Random(seed)
    by_scenario: dict[str, list[int]] = defaultdict(list)
    for i, (s, _) in enumerate(pool):
        by_scenario[s.scenario].append(i)
    chosen: set[int] = set()
    for scenario in sorted(by_scenario):
        idx = by_scenario[scenario]
        take = round(size * len(idx) / len(pool))
        chosen.update(rng.sample(idx, min(take, len(idx))))
    rest = [i for i in range(len(pool)) if i not in chosen]
    while len(chosen) < min(size, len(pool)):  # rounding
        chosen.add(rest.pop(rng.randrange(len(rest))))
    while len(chosen) > size:
        chosen.remove(max(chosen))
    return [pool[i] for i in sorted(chosen)], [pool[i] for i in range(len(pool)) if i not in chosen]
