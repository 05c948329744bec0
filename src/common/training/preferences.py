"""DPO preference pairs for tool calling, from two sources.

- `sampled`: k answers per prompt from the SFT model at a temperature above zero,
  each parsed and checked by the project's checker; a correct answer is chosen over
  the worst incorrect one (ranked as the SLM paper ranks: exact match, then valid
  syntax, then the right function names, then arguments right). When none of the k
  is correct the sample's reference answer can stand in as the chosen one
  (`gold_when_none_correct`); such pairs are counted apart.
- `corrupted`: the reference answer against a scripted corruption of it, the four
  kinds of the SLM paper: a renamed argument, a dropped argument, a value of the
  wrong type, an extra invented argument. A corruption is kept only when the checker
  rejects it, so no pair prefers one correct answer over another.

Pairs are text; `train.dpo_trainer` tokenizes them as the SFT rows are tokenized.
"""

from __future__ import annotations

import copy
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from common.evaluation.checker import Verdict, check_sample
from common.formats.base import ToolCallFormat
from common.samples import Sample, ToolCall
from common.training.training_data import completion_text, target_calls

CORRUPTIONS = ("rename_argument", "drop_argument", "wrong_type", "extra_argument")
# invented argument names that read plausibly (the SLM paper saw `domain`, `language` added)
INVENTED = ("language", "domain", "format", "verbose", "timeout", "region", "limit_results", "units")


@dataclass
class Pair:
    sample_id: str
    prompt: str
    chosen: str
    rejected: str
    source: str   # sampled | sampled_gold | corrupted:<kind>


# -- scripted corruptions ----------------------------------------------------------------
def _rename(key: str, rng: random.Random) -> str:
    parts = key.split("_")
    options = ["".join(p.capitalize() if i else p for i, p in enumerate(parts)) if len(parts) > 1 else key + "_name",
               key + "_value", f"{key}s" if not key.endswith("s") else key[:-1], "input_" + key]
    return rng.choice([o for o in options if o != key])


def _wrong_type(value: Any, rng: random.Random) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return [value] if rng.random() < 0.5 or not value.strip() else len(value)
    if isinstance(value, list):
        return ", ".join(map(str, value)) if value else "none"
    if isinstance(value, dict):
        return str(value)
    return str(value)


def corrupt(calls: list[ToolCall], kind: str, rng: random.Random,
            functions: dict[str, dict[str, Any]]) -> list[ToolCall] | None:
    """The calls with one corruption of `kind` applied to one call, or None when the
    calls offer nothing to corrupt that way (no argument to rename or drop)."""
    calls = [ToolCall(name=c.name, arguments=copy.deepcopy(c.arguments)) for c in calls]
    with_args = [c for c in calls if c.arguments]
    if kind == "extra_argument":
        call = rng.choice(calls)
        known = set(((functions.get(call.name) or {}).get("parameters") or {}).get("properties") or {})
        names = [n for n in INVENTED if n not in known and n not in call.arguments]
        if not names:
            return None
        call.arguments[rng.choice(names)] = rng.choice(["en", "default", True, 10, "auto"])
        return calls
    if not with_args:
        return None
    call = rng.choice(with_args)
    key = rng.choice(sorted(call.arguments))
    if kind == "rename_argument":
        call.arguments = {(_rename(k, rng) if k == key else k): v for k, v in call.arguments.items()}
    elif kind == "drop_argument":
        del call.arguments[key]
    elif kind == "wrong_type":
        call.arguments[key] = _wrong_type(call.arguments[key], rng)
    else:
        raise ValueError(f"unknown corruption {kind!r}; choose from {CORRUPTIONS}")
    return calls


def corrupted_pairs(samples: list[Sample], fmt: ToolCallFormat, tokenizer: Any, seed: int,
                    per_sample: int = 1, stats: Counter | None = None) -> list[Pair]:
    """Reference answer vs. `per_sample` corruptions of it (of different kinds), for
    every sample that expects calls. Corruptions the checker still accepts are dropped
    and counted in `stats`."""
    stats = stats if stats is not None else Counter()
    end = fmt.end_of_turn(tokenizer)
    pairs = []
    for s in samples:
        if not s.expected_calls:
            continue
        rng = random.Random(f"{seed}:{s.id}")
        prompt = fmt.render_prompt(s.tools, s.messages, tokenizer)
        chosen = completion_text(s, fmt, tokenizer)
        made = 0
        for kind in rng.sample(CORRUPTIONS, len(CORRUPTIONS)):
            if made == per_sample:
                break
            bad = corrupt(target_calls(s), kind, rng, s.functions())
            if bad is None:
                stats[f"corrupted:{kind}:not_applicable"] += 1
                continue
            rejected = fmt.render_completion(bad) + end
            if check_sample(s, fmt.parse(rejected.removesuffix(end), s.tools)).correct:
                stats[f"corrupted:{kind}:still_correct"] += 1
                continue
            pairs.append(Pair(s.id, prompt, chosen, rejected, f"corrupted:{kind}"))
            stats[f"corrupted:{kind}"] += 1
            made += 1
    return pairs


# -- sampled from the SFT model ------------------------------------------------------------
def rank(v: Verdict) -> tuple[int, int, int, float]:
    """Higher is better: correct, parseable, right names, share of arguments right."""
    names_ok = sorted(v.expected_names) == sorted(v.output_names)
    args = v.args_correct / v.args_true if v.args_true else float(names_ok)
    return (int(v.correct), int(v.parse_error is None), int(names_ok), args)


def sampled_pairs(samples: list[Sample], fmt: ToolCallFormat, tokenizer: Any, backend: Any, k: int,
                  gold_when_none_correct: bool = True) -> Iterator[tuple[str, list[Pair], str]]:
    """(sample id, its pairs, outcome) per sample, from k answers sampled by `backend`
    (a sampling backend over the SFT model). Yields as it goes so a caller can save
    each sample's outcome and resume."""
    end = fmt.end_of_turn(tokenizer)
    for s in samples:
        prompt = fmt.render_prompt(s.tools, s.messages, tokenizer)
        # an answer cut off by max_new_tokens gets no end marker: it never ended
        texts = [g.text.strip() + (end if g.finish_reason == "stop" else "")
                 for g in backend.generate([prompt] * k)]
        judged = sorted(((rank(check_sample(s, fmt.parse(t.removesuffix(end), s.tools))), i, t)
                         for i, t in enumerate(texts)), reverse=True)
        wrong = [j for j in judged if not j[0][0]]
        right = [j for j in judged if j[0][0]]
        if not wrong:
            yield s.id, [], "sampled:all_correct"
        elif right:
            yield s.id, [Pair(s.id, prompt, right[0][2], wrong[-1][2], "sampled")], "sampled"
        elif gold_when_none_correct:
            yield s.id, [Pair(s.id, prompt, completion_text(s, fmt, tokenizer), wrong[-1][2], "sampled_gold")], \
                "sampled_gold"
        else:
            yield s.id, [], "sampled:none_correct"
