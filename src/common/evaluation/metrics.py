"""Aggregate metrics over verdicts, under the names each reference experiment uses.

Each metric is a registered function of the list of verdicts with a declared group
(kinetic, slm, smol_tools) and direction, as lm-evaluation-harness registers its
metrics. Definitions, with the reference each follows:

kinetic (Kinetic-4B blog post)
  accuracy            correct tool and arguments (the whole sample right)
  tool_name_accuracy  the output parsed and its multiset of called names equals
                      the expected one
  failure_rate        among samples that expect a call: no valid call came out
                      (no call, or text that could not be parsed in the format)
  latency_*           mean/p50/p95 of per-request latency, from `latency_summary`
slm (SLM paper, section III-F)
  exact_match         function names and all arguments right
  argument_precision/recall/f1
                      pooled over samples; an argument is correct when its call
                      matched the expected function and its value is acceptable
  tool_select_f1      pooled F1 over the multisets of called names
  hallucination_free_rate
                      outputs that name no unoffered function, no argument outside the
                      function's schema and no value of the wrong type (the paper's
                      metric, computed against each tool's real schema)
smol_tools (smol-tools-4b model card)
  tool_selection_precision/recall/f1
                      per-sample precision/recall/F1 over the multisets of called names,
                      averaged over samples (a sample expecting and making no call
                      scores 1)
  json_validity       among outputs that attempt a call, those that parse in the
                      format (a plain-text answer, or one cut off while thinking,
                      is neither valid nor invalid)
  argument_correctness
                      calls to the right function whose arguments are all right
  no_tool_accuracy    samples that expect no call and got none
  per_scenario        count, accuracy and tool-selection F1 per scenario
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import binomtest, bootstrap
from sklearn.metrics import roc_auc_score

from common.evaluation.checker import ERROR_KINDS, Verdict


@dataclass(frozen=True)
class Metric:
    name: str
    group: str
    higher_is_better: bool
    fn: Callable[[list[Verdict]], float | None]


METRICS: dict[str, Metric] = {}


def metric(group: str, higher_is_better: bool = True):
    def register(fn: Callable[[list[Verdict]], float | None]):
        METRICS[f"{group}.{fn.__name__}"] = Metric(fn.__name__, group, higher_is_better, fn)
        return fn
    return register


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _f1(p: float | None, r: float | None) -> float | None:
    if p is None or r is None:
        return None
    return 2 * p * r / (p + r) if p + r else 0.0


def name_counts(v: Verdict) -> tuple[int, int, int]:
    """(true positives, predicted, expected) over the multisets of function names."""
    tp = sum((Counter(v.output_names) & Counter(v.expected_names)).values())
    return tp, len(v.output_names), len(v.expected_names)


def sample_name_prf(v: Verdict) -> tuple[float, float, float]:
    tp, pred, exp = name_counts(v)
    if pred == 0 and exp == 0:
        return 1.0, 1.0, 1.0
    p, r = (tp / pred if pred else 0.0), (tp / exp if exp else 0.0)
    return p, r, _f1(p, r) or 0.0


# -- Kinetic-4B ---------------------------------------------------------------------
@metric("kinetic")
def accuracy(vs: list[Verdict]) -> float | None:
    return _ratio(sum(v.correct for v in vs), len(vs))


@metric("kinetic")
def tool_name_accuracy(vs: list[Verdict]) -> float | None:
    return _ratio(sum(Counter(v.output_names) == Counter(v.expected_names) and v.parse_error is None
                      for v in vs), len(vs))


@metric("kinetic", higher_is_better=False)
def failure_rate(vs: list[Verdict]) -> float | None:
    expecting = [v for v in vs if v.expected_names]
    return _ratio(sum(not v.output_names or v.parse_error is not None for v in expecting), len(expecting))


# -- SLM paper ------------------------------------------------------------------------
@metric("slm")
def exact_match(vs: list[Verdict]) -> float | None:
    return accuracy(vs)


@metric("slm")
def argument_precision(vs: list[Verdict]) -> float | None:
    return _ratio(sum(v.args_correct for v in vs), sum(v.args_predicted for v in vs))


@metric("slm")
def argument_recall(vs: list[Verdict]) -> float | None:
    return _ratio(sum(v.args_correct for v in vs), sum(v.args_true for v in vs))


@metric("slm")
def argument_f1(vs: list[Verdict]) -> float | None:
    return _f1(argument_precision(vs), argument_recall(vs))


@metric("slm")
def tool_select_f1(vs: list[Verdict]) -> float | None:
    if not vs:
        return None
    tp, pred, exp = np.sum([name_counts(v) for v in vs], axis=0)
    if not pred and not exp:  # nothing expected and nothing called: perfect selection
        return 1.0
    return float(_f1(tp / pred if pred else 0.0, tp / exp if exp else 0.0))


@metric("slm")
def hallucination_free_rate(vs: list[Verdict]) -> float | None:
    return _ratio(sum(not v.hallucinations for v in vs), len(vs))


# -- smol-tools ----------------------------------------------------------------------------
@metric("smol_tools")
def tool_selection_precision(vs: list[Verdict]) -> float | None:
    return float(np.mean([sample_name_prf(v)[0] for v in vs])) if vs else None


@metric("smol_tools")
def tool_selection_recall(vs: list[Verdict]) -> float | None:
    return float(np.mean([sample_name_prf(v)[1] for v in vs])) if vs else None


@metric("smol_tools")
def tool_selection_f1(vs: list[Verdict]) -> float | None:
    return float(np.mean([sample_name_prf(v)[2] for v in vs])) if vs else None


@metric("smol_tools")
def json_validity(vs: list[Verdict]) -> float | None:
    # an answer cut off inside <think> never reached a call: not an attempt
    attempts = [v for v in vs if v.output_names or (v.parse_error and v.parse_error["kind"] != "truncated_think")]
    return _ratio(sum(v.parse_error is None for v in attempts), len(attempts))


@metric("smol_tools")
def argument_correctness(vs: list[Verdict]) -> float | None:
    named = [m for v in vs for m in v.matches if m.name_ok]
    return _ratio(sum(m.correct for m in named), len(named))


@metric("smol_tools")
def no_tool_accuracy(vs: list[Verdict]) -> float | None:
    none_expected = [v for v in vs if not v.expected_names]
    return _ratio(sum(not v.output_names and v.parse_error is None for v in none_expected),
                  len(none_expected))


# -- aggregates ------------------------------------------------------------------------------
def proportion_ci(successes: int, n: int, level: float = 0.95) -> list[float] | None:
    """Wilson score interval (scipy) for a proportion such as accuracy."""
    if n == 0:
        return None
    ci = binomtest(successes, n).proportion_ci(confidence_level=level, method="wilson")
    return [float(ci.low), float(ci.high)]  # a list, as it reads back from JSON


def latency_summary(latencies: list[float]) -> dict[str, float | int | None]:
    if not latencies:
        return {"n": 0, "mean_s": None, "p50_s": None, "p95_s": None, "max_s": None}
    a = np.asarray(latencies, dtype=float)
    return {"n": int(a.size), "mean_s": float(a.mean()), "p50_s": float(np.percentile(a, 50)),
            "p95_s": float(np.percentile(a, 95)), "max_s": float(a.max())}


def error_kinds(vs: list[Verdict]) -> dict[str, int]:
    counts = Counter(v.error_kind for v in vs if v.error_kind)
    return {k: counts[k] for k in ERROR_KINDS if counts[k]}


def per_scenario(vs: list[Verdict]) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[Verdict]] = {}
    for v in vs:
        groups.setdefault(v.scenario, []).append(v)
    return {s: {"count": len(g), "accuracy": accuracy(g), "tool_selection_f1": tool_selection_f1(g)}
            for s, g in sorted(groups.items())}


def compute_metrics(vs: list[Verdict]) -> dict[str, Any]:
    """Every registered metric by group, plus the error-kind and per-scenario breakdowns."""
    out: dict[str, Any] = {"n": len(vs)}
    for key, m in METRICS.items():
        out.setdefault(m.group, {})[m.name] = m.fn(vs)
    out["kinetic"]["accuracy_ci95"] = proportion_ci(sum(v.correct for v in vs), len(vs))
    out["smol_tools"]["per_scenario"] = per_scenario(vs)
    out["error_kinds"] = error_kinds(vs)
    out["higher_is_better"] = {key: m.higher_is_better for key, m in METRICS.items()}
    return out


def call_decision(p_call: list[float | None], expects_call: list[bool]) -> dict[str, Any]:
    """How well P(call) at the first token (decoding.CallDecision) separates the samples
    that need a call from those that need none, apart from what decoding then did.

    `auc` is the ROC AUC (0.5: the model does not know when to call; 1: it always gives
    the call more probability where one is needed); `accuracy_at_half` is the decision
    "call iff P(call) >= 0.5" against the samples' needs. None where P(call) was not
    recorded (older predictions, a format without a shared first token) or one class is absent.
    """
    pairs = [(p, y) for p, y in zip(p_call, expects_call) if p is not None]
    out: dict[str, Any] = {"n": len(pairs), "auc": None, "accuracy_at_half": None,
                           "mean_p_call_when_call_expected": None, "mean_p_call_when_none_expected": None}
    if not pairs:
        return out
    p = np.array([x for x, _ in pairs])
    y = np.array([t for _, t in pairs])
    out["accuracy_at_half"] = float(np.mean((p >= 0.5) == y))
    if y.any():
        out["mean_p_call_when_call_expected"] = float(p[y].mean())
    if (~y).any():
        out["mean_p_call_when_none_expected"] = float(p[~y].mean())
    if y.any() and (~y).any():
        out["auc"] = float(roc_auc_score(y, p))
    return out


def head_to_head(a: list[Verdict], b: list[Verdict]) -> dict[str, Any]:
    """Kinetic's sample breakdown of two models on the same samples, with McNemar's
    exact test (a two-sided binomial test on the discordant pairs)."""
    bv = {v.id: v for v in b}
    missing = [v.id for v in a if v.id not in bv]
    if missing or len(a) != len(b):
        raise ValueError(f"head-to-head needs the same samples; {len(missing)} of A's ids are not in B "
                         f"(first: {missing[:3]}), sizes {len(a)} and {len(b)}")
    pairs = [(v.correct, bv[v.id].correct) for v in a]
    both = sum(x and y for x, y in pairs)
    only_a = sum(x and not y for x, y in pairs)
    only_b = sum(y and not x for x, y in pairs)
    neither = len(pairs) - both - only_a - only_b
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"both": both, "only_a": only_a, "only_b": only_b, "neither": neither,
            "net": only_a - only_b, "mcnemar_exact_p": float(p)}


def bootstrap_ci(correct: list[bool], level: float = 0.95, resamples: int = 2000, seed: int = 0
                 ) -> list[float] | None:
    """Percentile bootstrap interval (scipy.stats.bootstrap) of an accuracy, the interval
    the 07 figures draw; `proportion_ci` (Wilson) is the one results files record."""
    if not correct:
        return None
    x = np.asarray(correct, dtype=float)
    if x.min() == x.max():  # every resample is the same: the interval is the point
        return [float(x[0]), float(x[0])]
    res = bootstrap((x,), np.mean, confidence_level=level, n_resamples=resamples, method="percentile",
                    random_state=np.random.default_rng(seed))
    return [float(res.confidence_interval.low), float(res.confidence_interval.high)]


def paired_difference(a: list[Verdict], b: list[Verdict], level: float = 0.95, resamples: int = 4000,
                      seed: int = 0) -> dict[str, Any]:
    """Accuracy of A minus accuracy of B on the same samples, with a paired percentile
    bootstrap interval (samples resampled together, so the pairing is kept). The
    difference is "significant" here when the interval excludes zero."""
    bv = {v.id: v for v in b}
    if len(a) != len(b) or any(v.id not in bv for v in a):
        raise ValueError("a paired difference needs both runs on the same samples")
    x = np.asarray([v.correct for v in a], dtype=float)
    y = np.asarray([bv[v.id].correct for v in a], dtype=float)
    diff = float(x.mean() - y.mean()) if len(x) else None
    ci = None
    if len(x) > 1 and np.any(x != y):
        res = bootstrap((x, y), lambda p, q, axis=-1: p.mean(axis=axis) - q.mean(axis=axis), paired=True,
                        vectorized=True, confidence_level=level, n_resamples=resamples, method="percentile",
                        random_state=np.random.default_rng(seed))
        ci = [float(res.confidence_interval.low), float(res.confidence_interval.high)]
    elif len(x) and not np.any(x != y):
        ci = [0.0, 0.0]
    return {"difference": diff, "ci": ci, "level": level, "n": int(len(x)),
            "excludes_zero": bool(ci is not None and (ci[0] > 0 or ci[1] < 0))}
