"""Choose the call gate's threshold on training samples the model never trained on.

    python -m common.evaluation.calibrate runs/train/<run> [--samples 160] [--no-call-accuracy 0.8]

A fine-tuned small model learns *how* to call long before it learns *when*: after a
few hundred CPU steps it gives a call more probability where one is needed (the
held-out ROC AUC of P(call) rises), but greedy decoding still calls on nearly every
request (LOG.md, 2026-11-23). The call gate (`decoding.CallDecision`) turns P(call) at
the first token into the decision; this module picks its threshold without looking at
the held-out set: on samples of the training split that the run did not draw (the
complement of `sources.load_samples(data, limit, seed)`), it reads P(call) with one
forward pass per prompt and keeps the threshold that calls on as many call-needing
samples as it can while answering at least `no_call_accuracy` of the others without a
call (the Neyman-Pearson choice: the operator fixes the false-call rate it accepts).

Writes `<run>/call_gate.json`: the threshold, what it gives on the calibration samples,
their ids and P(call) values; and, without the samples, `<run>/adapter/call_gate.json`, which
`python -m common.evaluate --adapter <run>/adapter` applies by default (`call_gate: auto`;
`--set call_gate=none` decodes plainly, a number sets another threshold).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from common import adapter_card
from common.backends import GenerationSettings
from common.decoding import CallDecision, call_start_token
from common.engines import (
    BACKENDS,
    load_generator,
    resolve_backend,
    resolve_backend_dtype,
)
from common.errors import ArgumentParser, UserError, cli
from common.formats import get_format
from common.jsonio import write_json
from common.provenance import local_path
from common.samples import Sample
from common.sources import load_samples


def used_ids(train_results: dict[str, Any]) -> set[str]:
    """The ids a run trained on: its SFT draw (`limit`) or its DPO prompts (`pair_prompts`),
    and, for DPO, those of the SFT run it started from."""
    p = train_results["params"]
    n = p.get("pair_prompts") if train_results.get("stage") == "dpo" else p.get("limit")
    used = {s.id for s in load_samples(p["data"], n, p["seed"])}
    if p.get("sft"):
        used |= used_ids(json.loads((local_path(p["sft"]) / "results.json").read_text()))
    return used


def held_back(train_results: dict[str, Any], n: int, seed: int = 0) -> list[Sample]:
    """Up to `n` samples of the run's training data that the run did not train on."""
    p = train_results["params"]
    used = used_ids(train_results)
    rest = [s for s in load_samples(p["data"]) if s.id not in used]
    if not rest:
        raise ValueError(f"run {train_results['run']} trained on every sample of {p['data']}, so none is left to "
                         "calibrate on; train with a `limit` below the split's size, or pass --data with samples "
                         "it did not see")
    return random.Random(seed).sample(rest, min(n, len(rest)))


def p_call_values(model: Any, tokenizer: Any, fmt: Any, samples: list[Sample], batch_size: int = 16,
                  backend: str = "transformers") -> list[float]:
    """P(call) at the first token of each sample's answer, read by the same backend and
    processor the evaluation uses, so the numbers are the ones the gate will compare."""
    token = call_start_token(fmt, tokenizer)
    if token is None:
        raise ValueError(f"format {fmt.name!r} calls do not start with one shared token under this tokenizer, "
                         "so there is no P(call) to calibrate")
    probe = CallDecision(token)
    generator = BACKENDS[backend](model, tokenizer, GenerationSettings(max_new_tokens=1), logits_processors=[probe])
    prompts = [fmt.render_prompt(s.tools, s.messages, tokenizer) for s in samples]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    values: dict[int, float] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        for i, g in zip(idx, generator.generate([prompts[i] for i in idx])):
            values[i] = g.p_call
    return [values[i] for i in range(len(prompts))]


def choose_threshold(p_call: list[float], expects_call: list[bool], no_call_accuracy: float) -> dict[str, Any]:
    """The threshold t ("call iff P(call) >= t") with the highest call rate among those
    that keep the no-call accuracy on these samples at or above `no_call_accuracy`."""
    p, y = np.asarray(p_call, dtype=float), np.asarray(expects_call, dtype=bool)
    if y.all() or not y.any():
        raise ValueError("calibration needs samples that expect a call and samples that expect none; "
                         f"these {len(y)} are all of one kind")
    # Candidates: every observed value (calling at and above it) and "never call".
    # (kept strictly inside (0, 1), as the gate requires, before choosing, so the choice holds)
    # ("never call" is the next float32 above the largest P(call): the gate compares float32 values)
    never = float(np.nextafter(np.float32(p.max()), np.float32(1.0)))
    candidates = np.unique(np.clip(np.concatenate([p, [never]]), 1e-6, 1 - 1e-6))
    best = None
    for t in candidates:
        call = p >= t
        specificity = float(np.mean(~call[~y]))
        recall = float(np.mean(call[y]))
        if specificity >= no_call_accuracy and (best is None or recall > best["call_recall"]):
            best = {"threshold": float(t), "call_recall": recall, "no_call_accuracy": specificity}
    threshold = best["threshold"]
    call = p >= threshold
    return {"threshold": threshold, "target_no_call_accuracy": no_call_accuracy,
            "call_recall": float(np.mean(call[y])), "no_call_accuracy": float(np.mean(~call[~y])),
            "decision_accuracy": float(np.mean(call == y)), "auc": float(roc_auc_score(y, p)),
            "n": len(y), "n_expect_call": int(y.sum()),
            "at_half": {"call_recall": float(np.mean(p[y] >= 0.5)), "no_call_accuracy": float(np.mean(p[~y] < 0.5))}}


def calibrate(run_dir: str | Path, samples: int = 160, no_call_accuracy: float = 0.8, batch_size: int = 16,
              seed: int = 0, dtype: str = "auto", device: str = "cpu", backend: str = "transformers"
              ) -> dict[str, Any]:
    """Calibrate the gate of a finished training run; returns (and saves) call_gate.json."""
    run_dir = local_path(run_dir)
    results_path = run_dir / "results.json"
    if not results_path.exists():
        raise UserError(f"{results_path} does not exist: calibrate a finished training run "
                                "(python -m common.training ... writes it at the end)")
    train = json.loads(results_path.read_text())
    weights = train["outputs"].get("adapter") or train["outputs"].get("model")
    cal = held_back(train, samples, seed)
    # the backend and precision the evaluation will use, so the gate compares the numbers it was chosen on
    name = train["model"] if "adapter" in train["outputs"] else weights
    backend = resolve_backend(backend, name, device)
    dtype = resolve_backend_dtype(backend, dtype)
    model, tokenizer = load_generator(backend, name, adapter=train["outputs"].get("adapter"), dtype=dtype,
                                      device=device, seed=seed, n_seq=batch_size)
    fmt = get_format(train["format"])
    values = p_call_values(model, tokenizer, fmt, cal, batch_size, backend=backend)
    chosen = choose_threshold(values, [bool(s.expected_calls) for s in cal], no_call_accuracy)
    out = {**chosen, "requested_samples": samples, "backend": backend, "dtype": dtype, "run": train["run"], "weights": weights, "data": train["params"]["data"], "seed": seed,
           "samples": [{"id": s.id, "scenario": s.scenario, "expects_call": bool(s.expected_calls), "p_call": v}
                       for s, v in zip(cal, values)]}
    write_json(run_dir / "call_gate.json", out)
    if "adapter" in train["outputs"]:  # the adapter carries its gate, which `--adapter` applies (call_gate: auto)
        adapter_card.keep_gate(weights, out)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a finished training run folder (runs/<experiment>/<run>)")
    parser.add_argument("--samples", type=int, default=160, help="unused training samples to calibrate on")
    parser.add_argument("--no-call-accuracy", type=float, default=0.8,
                        help="the share of no-call samples the gate must answer without a call (0-1)")
    parser.add_argument("--batch-size", type=int, default=16, help="prompts per forward pass")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw of calibration samples")
    parser.add_argument("--dtype", default="auto", help="auto, bfloat16, float16, float32 (q8_0: llama.cpp)")
    parser.add_argument("--backend", default="auto", help="auto, transformers or llama.cpp: the evaluation's")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (else one line)")
    args = parser.parse_args(argv)
    if not 0 < args.no_call_accuracy < 1:
        parser.error("--no-call-accuracy is a share strictly between 0 and 1, e.g. 0.8")
    out = calibrate(args.run, args.samples, args.no_call_accuracy, args.batch_size, args.seed, args.dtype, args.device,
                    args.backend)
    print(f"call gate {out['threshold']:.4f} on {out['n']} unused training samples: calls on "
          f"{out['call_recall']:.1%} of those that need a call, none on {out['no_call_accuracy']:.1%} of the "
          f"others (AUC {out['auc']:.3f}); saved {Path(args.run) / 'call_gate.json'}")
    return out


if __name__ == "__main__":
    cli(main)
