"""The `live` mix: BFCL-live's real requests as the backbone of the training set (issue 18).

BFCL's live categories hold ~2,200 requests written by real users against real
functions. Rendered exactly as BFCL renders its prompts (each function's description
ending in BFCL's Python note), they teach how people ask, which the offline writer
cannot. Whole toolkit groups (toolkits ever offered in one entry together) are held back
twice: a `dev` split (the build's `eval`) to choose recipes and thresholds on, and a
`transfer` split to test once on functions the model never saw. Both stay as BFCL renders
them (no augmentation, no cap).

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
- a no-call share: the no-call samples (live_irrelevance + near misses) drawn down to
  `no_call_share` of the kept training set (a shortfall is counted, never repeated up);
- types as declared: a whole number for a `float` argument is written 5.0; with probability
  `type_flip` a whole-number argument swaps its declared type (integer <-> float) and its
  answer with it (15 <-> 15.0), so the schema, not the topic, decides how it is written.
Entries that offer a function of BFCL's non-live categories, or repeat one of its
requests, are left out (counted): the leakage check must pass on every sample.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from common import bfcl_data
from common.data import catalog as catalog_mod
from common.data.augment import (
    Distractors,
    compose,
    flip_types,
    mask,
    near_miss,
    swap_value,
    typed,
    value_pool,
    with_reply,
)
from common.data.catalog import Catalog, DisjointSets
from common.data.quality import problem, request_text
from common.samples import Sample

LIVE_SCENARIO = {"live_simple": "single", "live_multiple": "single", "live_parallel": "parallel",
                 "live_parallel_multiple": "parallel", "live_irrelevance": "no_tool"}


def live_pool(cat: Catalog, bench_requests: frozenset[str], bench_functions: frozenset[str],
              dropped: Counter, exclude_requests: frozenset[str] = frozenset()) -> list[Sample]:
    """Every single-turn BFCL-live entry usable for training, as BFCL prompts it. Its `toolkit`
    is the group of catalog toolkits that share entries: an entry may offer functions of
    several toolkits (the catalog groups by namespace first), and holding back a toolkit must
    hold back every function that was ever offered beside it."""
    kept: list[tuple[Sample, list[str]]] = []
    for category, scenario in LIVE_SCENARIO.items():
        for entry in bfcl_data.read_category(category):
            names = [f["name"] for f in entry["function"]]
            request = bfcl_data.normalize_request(bfcl_data.user_text(entry))
            if not names:
                dropped["live_no_functions"] += 1
                continue
            if any(n in bench_functions for n in names):
                dropped["live_offers_benchmark_function"] += 1
                continue
            if request in bench_requests:
                dropped["live_repeats_benchmark_request"] += 1
                continue
            if request in exclude_requests:
                dropped["live_in_another_held_out_set"] += 1
                continue
            kits = [cat.toolkit_of(n) for n in names]
            try:  # validated as training data: BFCL's own unusable schemas are not kept here
                if None in kits:
                    raise ValueError("a function the catalog left out")
                s = bfcl_data.entry_to_sample(entry, category, hint=bfcl_data.PYTHON_HINT)
                s = Sample.model_validate({**s.model_dump(), "scenario": scenario, "source": "bfcl_live",
                                           "notes": category})
            except (ValidationError, ValueError):
                dropped["live_schema_unusable"] += 1
                continue
            kept.append((s, sorted(set(kits))))
    sets = DisjointSets()
    for _, kits in kept:
        for k in kits:
            sets.union(k, kits[0])
    members: dict[str, set[str]] = {}
    for _, kits in kept:
        for k in kits:
            members.setdefault(sets.find(k), set()).add(k)
    label = {root: "+".join(sorted(m)) for root, m in members.items()}  # the same whatever the root
    return [s.model_copy(update={"toolkit": label[sets.find(kits[0])]}) for s, kits in kept]


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


# -- the training part ---------------------------------------------------------------
def training_samples(train: list[Sample], p: Any, seed: int, counts: Counter,
                     fit: Callable[[Sample], tuple[Sample | None, int]],
                     reserved: frozenset[str] = frozenset()) -> list[tuple[Sample, int]]:
    """The augmented training set from the training toolkits' real requests (`p`: DataParams),
    each sample through the quality filter and `fit` (the prompt cap: (sample or None, tokens))
    before the no-call share is drawn, so that the share and the counts are of what is kept.
    Masking never draws a `reserved` function name (the benchmark's)."""
    distractors = Distractors(train)
    pool = value_pool(train)
    one_call = [s for s in train if len(s.expected_calls) == 1]
    calls: list[tuple[Sample, int]] = []
    no_calls: list[tuple[Sample, int]] = []

    def keep(s: Sample, rng: random.Random, kind: str, avoid: list[dict[str, Any]] = ()) -> None:
        s = distractors.pad(typed(s), p.tools_per_prompt, rng, avoid)
        if p.type_flip and rng.random() < p.type_flip:  # (no draw at 0: older builds stay as they were)
            s = flip_types(s, rng)
        if p.masking and rng.random() < p.masking:
            s = mask(s, rng, reserved)
        found = problem(s)
        if found:
            counts[f"dropped_{found[0]}"] += 1
            return
        fitted, tokens = fit(s)
        if fitted is None:
            counts["prompt_too_long"] += 1
            return
        (calls if fitted.expected_calls else no_calls).append((fitted, tokens))
        counts[kind] += 1

    for r in range(p.live_repeats):
        for s in train:
            rng = random.Random(f"{seed}:{s.id}:{r}")
            keep(with_reply(s.model_copy(update={"id": f"{s.id}#{r}"}), seed), rng, "real")
    rng = random.Random(f"{seed}:composed")
    for i in range(p.composed_parallel if len(one_call) >= 2 else 0):
        first = rng.choice(one_call)
        if rng.random() < 0.5:  # one function, called again with another value
            second = swap_value(first, pool, rng)
            if second is None:
                counts["composed_no_swap"] += 1
                continue
            parts = [first, second]
            if rng.random() < 0.3 and (third := swap_value(first, pool, rng)) is not None \
                    and request_text(third) not in {request_text(x) for x in parts}:
                parts.append(third)
        else:  # functions of different toolkits
            others = [x for x in rng.sample(one_call, min(8, len(one_call))) if x.toolkit != first.toolkit]
            parts = [first, *others[: rng.choice([1, 1, 2])]]
            if len(parts) < 2:
                continue
        sid = f"composed/{i:05d}"
        made = compose([typed(x) for x in parts], sid, random.Random(f"{seed}:{sid}"))
        if made is None:
            counts["composed_name_clash"] += 1
            continue
        keep(made, random.Random(f"{seed}:{sid}:finish"), "composed_parallel")
    for i in range(p.near_miss if one_call else 0):
        sid = f"near_miss/{i:05d}"
        srng = random.Random(f"{seed}:{sid}")
        base = distractors.pad(srng.choice(one_call), max(p.tools_per_prompt, 2), srng)
        made = near_miss(base, sid, srng)
        if made is not None:
            keep(made, srng, "near_miss", avoid=[base.functions()[base.expected_calls[0].name]])
    if p.no_call_share is not None and calls:
        want = round(p.no_call_share / (1 - p.no_call_share) * len(calls))
        if want <= len(no_calls):
            no_calls = random.Random(f"{seed}:no-call-share").sample(no_calls, want)
        else:
            counts["no_call_short"] = want - len(no_calls)
    out = calls + no_calls
    random.Random(f"{seed}:order").shuffle(out)
    return out


def no_call_share(samples: list[Sample]) -> float:
    return sum(not s.expected_calls for s in samples) / max(1, len(samples))


def describe(samples: list[Sample]) -> dict[str, Any]:
    """Counts per BFCL category and per augmentation, for the data card."""
    return {"samples": len(samples), "no_call_share": round(no_call_share(samples), 3),
            "by_source": dict(Counter(s.source for s in samples).most_common()),
            "by_category": dict(Counter((s.notes or "").split(";")[0] if s.source == "bfcl_live" else s.source
                                        for s in samples).most_common()),
            "masked": sum("masked" in (s.notes or "") for s in samples),
            "types_flipped": sum("types flipped" in (s.notes or "") for s in samples),
            "calls_per_sample": dict(sorted(Counter(len(s.expected_calls) for s in samples).items())),
            "toolkits": len({s.toolkit for s in samples})}


def build(p: Any, meter: Any, exclude_requests: frozenset[str]) -> tuple:
    """The live mix of `p` (DataParams; `meter`: its build.PromptMeter): (catalog, train, dev,
    {"transfer": …}, drops, the live ids the training part draws on: every real request of the
    training groups, composed or not)."""
    cat = catalog_mod.from_bfcl()
    bench_requests, bench_functions = bfcl_data.benchmark_fingerprint()
    counts: Counter = Counter()
    pool = live_pool(cat, bench_requests, bench_functions, counts, exclude_requests)
    where = split_toolkits(pool, p.live_dev_fraction, p.live_transfer_fraction, p.seed)
    part = defaultdict(list)
    for s in pool:
        part[where[s.toolkit]].append(s)
    held_requests = {bfcl_data.normalize_request(request_text(s)) for k in ("dev", "transfer") for s in part[k]}
    base = []
    for s in part["train"]:
        if bfcl_data.normalize_request(request_text(s)) in held_requests:
            counts["live_request_also_held_back"] += 1
        else:
            base.append(s)
    train = training_samples(base, p, p.seed, counts, meter.fit, reserved=bench_functions)
    # a seeded random order, not BFCL's category order: the first N (a run's `limit`) are a random draw
    held_back = {k: [(with_reply(s, p.seed), meter.tokens(s)) for s in part[k]] for k in ("dev", "transfer")}
    for k, rows in held_back.items():
        random.Random(f"{p.seed}:{k}-order").shuffle(rows)
    dropped = ("live_", "dropped_", "prompt")
    drops = {"dropped": Counter({k: v for k, v in counts.items() if k.startswith(dropped)}),
             "examples": {}, "short": {}, "kept": {k: v for k, v in counts.items() if not k.startswith(dropped)}}
    return cat, train, held_back["dev"], {"transfer": held_back["transfer"]}, drops, sorted(s.id for s in base)
