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

Each invocation also measures the machine's fp32 matmul GFLOP/s and prints the bound it sets:
LoRA costs at least 4 FLOPs per frozen decoder weight per token (the forward, and the
backward's input gradient; the frozen weights' own gradients are not computed), before
attention, LoRA's own products and the head. Results: `<out>/train.json` and
`<out>/README.md` (default reports/bench/train).

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

from transformers import AutoConfig

from common.errors import ArgumentParser, cli
from common.evaluation.bench import machine_bounds, save_bench
from common.evaluation.bench import main as generate_bench
from common.models import from_pretrained
from common.provenance import reports_root

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
    if not t.get("tokens_per_s_after_first_step"):
        raise RuntimeError(f"configuration {name} has no steady pace (one step, or no tokens counted); "
                           "run --steps 2 or more")
    return {"config": name, "tokens_per_s": t["tokens_per_s_after_first_step"],
            "tokens_per_s_with_first_step": t["tokens_per_s"], "first_step_s": t.get("first_step_seconds"),
            "tokens": t["tokens"], "steps": t["steps"], "seconds": t["seconds"], "peak_rss_mb": t["peak_rss_mb"],
            "train_loss_last5": sum(losses[-5:]) / len(losses[-5:]),
            "eval_loss": evals[-1] if evals else None, "precision": results["precision"],
            "cpu_autocast": results["cpu_autocast"], "compiled": results.get("compile", {}).get("compile", False)}


def decoder_weights(model: str) -> int:
    """The decoder layers' projection weights (q, k, v, o and the MLP's three) of `model`."""
    c = from_pretrained(AutoConfig, model)
    c = getattr(c, "text_config", c)
    heads, kv = c.num_attention_heads, getattr(c, "num_key_value_heads", None) or c.num_attention_heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
    attention = c.hidden_size * head_dim * (2 * heads + 2 * kv)
    return c.num_hidden_layers * (attention + 3 * c.hidden_size * c.intermediate_size)


def results_history(folder: Path) -> list[dict[str, Any]]:
    return json.loads((folder / "history.json").read_text())


def table(rows: list[dict[str, Any]]) -> str:
    lines = [(f"| config | tokens/s | x {rows[0]['config']} | first step s | tokens | steps | wall s | peak RSS MB | "
              "train loss (last 5) | eval loss | precision |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        precision = (r["precision"] + (" autocast" if r["cpu_autocast"] else "")
                     + (", compiled" if r.get("compiled") else ""))
        lines.append(f"| {r['config']} | {r['tokens_per_s']:.0f} | {r['tokens_per_s'] / rows[0]['tokens_per_s']:.2f} "
                     f"| {r['first_step_s']:.1f} | {r['tokens']:,} | {r['steps']} | {r['seconds']:.0f} | "
                     f"{r['peak_rss_mb']:,} | {r['train_loss_last5']:.3f} | "
                     f"{'n/a' if r['eval_loss'] is None else format(r['eval_loss'], '.3f')} | {precision} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["train", "generate"],
                        help="what to benchmark (generate: common.evaluation.bench, its own options)")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="model to train")
    parser.add_argument("--format", default=None, help="tool-call format (default: the model's own)")
    parser.add_argument("--data", default="data/offline-default:train", help="training samples")
    parser.add_argument("--eval-data", default="data/offline-default", help="held-out samples for the eval loss")
    parser.add_argument("--eval-samples", type=int, default=16, help="held-out samples in the eval loss")
    parser.add_argument("--steps", type=int, default=24, help="optimizer steps (= sequences) per configuration")
    parser.add_argument("--seed", type=int, default=42, help="seed of each configuration's run")
    parser.add_argument("--configs", nargs="+", default=["eager", "compiled"], choices=sorted(CONFIGS),
                        help="configurations to run, in order; ratios are to the first")
    parser.add_argument("--out", default=str(reports_root() / "bench" / "train"),
                        help="where train.json and README.md go")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (else one line)")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["generate"]:
        return generate_bench(argv[1:])
    args = parser.parse_args(argv)
    print("[bench] measuring the machine's bounds", flush=True)
    bounds = machine_bounds()
    weights = decoder_weights(args.model)
    bound = bounds["matmul_gflops"] * 1e9 / (4 * weights)
    rows = []
    with tempfile.TemporaryDirectory(prefix="toolcall-bench-") as tmp:
        for name in args.configs:
            print(f"[bench] {name}: {CONFIGS[name] or 'the default CPU configuration'}", flush=True)
            rows.append(train_config(name, args, Path(tmp)))
            print(f"[bench] {name}: {rows[-1]['tokens_per_s']:.0f} tokens/s", flush=True)
    text = (f"# Training benchmark\n\nLoRA SFT of {args.model} ({args.format or 'its own format'}), {args.steps} "
            f"sequences of {args.data}, batch 1, one per step; eval loss on {args.eval_samples} samples of "
            f"{args.eval_data} after the last step. Machine: {bounds['matmul_gflops']} GFLOP/s fp32 matmul, so "
            f"at most **{bound:.0f} tokens/s** in fp32 (4 FLOPs x {weights / 1e6:.1f}M frozen decoder weights per "
            f"token, before attention, LoRA and the head).\n\n{table(rows)}\n\n"
            f"tokens/s: the steady pace after the first step; x {rows[0]['config']}: the ratio to the first "
            f"configuration, measured in this one invocation.\n")
    save_bench(args, "train", text, {"bounds": {**bounds, "decoder_weights": weights,
                                                 "fp32_tokens_per_s": round(bound)}, "rows": rows})
    return rows


if __name__ == "__main__":
    cli(main)
