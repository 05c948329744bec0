"""Benchmarks that print figures: training speed and memory on this machine (`train`), and
generation speed per backend (`generate`, in `common.evaluation.bench`).

    python -m common.bench generate --adapter runs/quickstart/lora-sft/adapter
    python -m common.training.bench train                      # SmolLM2-135M, 24 steps per configuration
    python -m common.training.bench train --steps 48 --configs before eager compiled
    python -m common.training.bench train --model gemma-3-270m --format functiongemma

`train` runs LoRA SFT of the model on the same training sequences (same seed, same
order, batch 1, no accumulation, so a step is a sequence) once per configuration,
each in its own process (a clean peak memory), and prints tokens/s and its ratio to the
first configuration's (machines of one kind differ 2x, so only a ratio measured in one
invocation compares configurations), peak memory, the train loss over the last steps and
the eval loss on the same held-out samples after the same steps (a speed-up that hurts
learning shows there). Configurations:

- `before`: issue 4's starting point: fp32, LoRA dropout 0.05, TRL's own loss;
- `eager`: the default CPU configuration of issues 4-16 (bf16 autocast where the CPU is
  fast at it, logits of the completion only, LoRA dropout 0), layers not compiled;
- `compiled`: `eager` with each decoder layer compiled, what a run of ≥ 100k tokens does
  now (`compile: auto`);
- `compiled_dropout`: `compiled` with LoRA dropout 0.05 (what dropout costs);
- `compiled_trl_loss`: `compiled` with TRL's fused LM-head loss (what the loss costs).

tokens/s is the steady pace, after the first step; the first step's seconds (the
compile, the allocator's warm-up) are printed beside it, and the wall time holds both.

Padding-free packing is not among them: with the CPU's attention kernels (sdpa,
eager) packed sequences attend to each other, so it is only offered with
flash-attention on a GPU (see `train.py`).

Figures are timings: run them with the cores to themselves.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from common.errors import ArgumentParser, cli
from common.evaluation.bench import main as generate_bench

CONFIGS: dict[str, dict[str, Any]] = {
    "before": {"precision": "fp32", "lora_dropout": 0.05, "loss_impl": "trl_fused", "compile": "off"},
    "eager": {"compile": "off"},
    "compiled": {"compile": "on"},
    "compiled_dropout": {"compile": "on", "lora_dropout": 0.05},
    "compiled_trl_loss": {"compile": "on", "loss_impl": "trl_fused"},
}


def train_config(name: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    steps = args.steps
    overrides = {"model": args.model, "data": args.data, "eval_data": args.eval_data, "limit": steps,
                 "max_steps": steps, "gradient_accumulation_steps": 1, "batch_size": 1,
                 "eval_limit": args.eval_samples, "eval_steps": steps, "logging_steps": 1,
                 "save_steps": 10 * steps, "wandb": "disabled", "lr_scheduler": "constant",
                 "warmup_ratio": 0.0, "seed": args.seed, **CONFIGS[name]}
    if args.format:
        overrides["format"] = args.format
    cmd = [sys.executable, "-m", "common.train", "sft", "--out", str(out / name), "--restart",
           "--set", *(f"{k}={json.dumps(v)}" for k, v in overrides.items())]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"configuration {name} failed:\n{proc.stderr[-3000:]}")
    results = json.loads((out / name / "results.json").read_text())
    history = results_history(out / name)
    losses = [r["loss"] for r in history if "loss" in r]
    evals = [r["eval_loss"] for r in history if "eval_loss" in r]
    t = results["throughput"]
    return {"config": name, "tokens_per_s": t.get("tokens_per_s_after_first_step") or t["tokens_per_s"],
            "tokens_per_s_with_first_step": t["tokens_per_s"], "first_step_s": t.get("first_step_seconds"),
            "tokens": t["tokens"], "steps": t["steps"], "seconds": t["seconds"], "peak_rss_mb": t["peak_rss_mb"],
            "train_loss_last5": sum(losses[-5:]) / len(losses[-5:]),
            "eval_loss": evals[-1] if evals else None, "precision": results["precision"],
            "cpu_autocast": results["cpu_autocast"], "compiled": results.get("compile", {}).get("compile", False)}


def results_history(folder: Path) -> list[dict[str, Any]]:
    return json.loads((folder / "history.json").read_text())


def table(rows: list[dict[str, Any]]) -> str:
    lines = [f"| config | tokens/s | x {rows[0]['config']} | first step s | tokens | steps | wall s | peak RSS MB | "
             "train loss (last 5) | eval loss | precision |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        precision = (r["precision"] + (" autocast" if r["cpu_autocast"] else "")
                     + (", compiled" if r.get("compiled") else ""))
        lines.append(f"| {r['config']} | {r['tokens_per_s']:.0f} | {r['tokens_per_s'] / rows[0]['tokens_per_s']:.2f} "
                     f"| {r['first_step_s']} | {r['tokens']:,} | {r['steps']} | {r['seconds']:.0f} | "
                     f"{r['peak_rss_mb']:,} | {r['train_loss_last5']:.3f} | "
                     f"{'n/a' if r['eval_loss'] is None else format(r['eval_loss'], '.3f')} | {precision} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["train", "generate"],
                        help="what to benchmark (generate: common.evaluation.bench, its own options)")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="model to train")
    parser.add_argument("--format", default=None, help="tool-call format (default: the model's own)")
    parser.add_argument("--data", default="data/offline-default:train", help="training samples")
    parser.add_argument("--eval-data", default="data/offline-default", help="held-out samples for the eval loss")
    parser.add_argument("--eval-samples", type=int, default=16, help="held-out samples in the eval loss")
    parser.add_argument("--steps", type=int, default=24, help="optimizer steps (= sequences) per configuration")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--configs", nargs="*", default=["eager", "compiled"], choices=sorted(CONFIGS),
                        help="configurations to run, in order; ratios are to the first")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (else one line)")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["generate"]:
        return generate_bench(argv[1:])
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="toolcall-bench-") as tmp:
        for name in args.configs:
            print(f"[bench] {name}: {CONFIGS[name] or 'the default CPU configuration'}", flush=True)
            rows.append(train_config(name, args, Path(tmp)))
            print(f"[bench] {name}: {rows[-1]['tokens_per_s']:.0f} tokens/s", flush=True)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    cli(main)
