"""The generation benchmark: every backend and precision on the same held-out prompts.

    python -m common.bench generate                                  # base SmolLM2-135M, 20 prompts
    python -m common.bench generate --adapter runs/quickstart/lora-sft/adapter --out reports/bench/generate
    python -m common.bench generate --configs transformers llama-f16 --prompts 10

Each configuration (CONFIGS) loads the model (and adapter) its way and runs, on the
first `--prompts` held-out prompts of `--data` in the model's format, greedy, with the
evaluation's stop rules and `--max-new-tokens`:
1. single requests, one at a time: latency p50/p95, prefill tok/s (prompt tokens over the
   time to the first token) and decode tok/s (the later tokens over the time after it);
2. the same prompts in batches of `--batch`: new tokens/s over the wall time.
The first configuration is the reference: every other one reports how many texts, verdicts
(the project's checker) and call/no-call decisions equal its, and lists the verdicts
that differ. The machine's own bounds are measured in the same run (a large fp32 matmul's
GFLOP/s, a large copy's GB/s) and every figure is printed beside its ratio to the bound:
prefill is compute-bound (2 x parameters FLOPs a token), single-stream decode memory-bound
(the weights are read once a step). Machines of one kind differ by up to 2x, so read the
ratios between configurations of one run, not absolute figures across runs.

Figures are timings: run it with the cores to itself. Results: `<out>/generate.json`
and `<out>/README.md` (default reports/bench/generate).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.backends import GenerationSettings
from common.decoding import CallDecision, call_start_token
from common.engines import BACKENDS, load_generator, why_not_llamacpp
from common.errors import ArgumentParser, UserError, cli
from common.evaluation.checker import check_sample
from common.evaluation.params import resolve_format
from common.formats import get_format
from common.jsonio import write_json
from common.markdown import pct
from common.provenance import provenance, reports_root
from common.sources import load_data

# name -> (backend, dtype, merge the adapter)
CONFIGS: dict[str, tuple[str, str, bool]] = {
    "transformers": ("transformers", "auto", False),      # the path before this benchmark: adapter unmerged
    "transformers-merged": ("transformers", "auto", True),
    "llama-f32": ("llama.cpp", "float32", True),
    "llama-f16": ("llama.cpp", "float16", True),
    "llama-q8_0": ("llama.cpp", "q8_0", True),
}
DEFAULT_CONFIGS = ["transformers", "transformers-merged", "llama-f32", "llama-f16", "llama-q8_0"]


class FirstToken:
    """A logits processor that notes when the first step's scores arrive: the end of prefill."""

    def __init__(self) -> None:
        self.at: float | None = None

    def reset(self) -> None:
        self.at = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.at is None:
            self.at = time.perf_counter()
        return scores


def machine_bounds(seconds: float = 2.0) -> dict[str, float]:
    """What this machine does at best: fp32 matmul GFLOP/s (torch, all threads) and copy GB/s."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    torch.mm(a, b)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b)
        n += 1
    gflops = 2 * 1024 ** 3 * n / (time.perf_counter() - start) / 1e9
    src, dst = np.ones(1 << 27, dtype=np.float32), np.empty(1 << 27, dtype=np.float32)  # 512 MiB each
    np.copyto(dst, src)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        np.copyto(dst, src)
        n += 1
    gbps = 2 * src.nbytes * n / (time.perf_counter() - start) / 1e9  # read + write
    return {"matmul_gflops": round(gflops, 1), "copy_gbps": round(gbps, 1)}


def run_config(name: str, args: argparse.Namespace, samples: list[Any], fmt: Any) -> dict[str, Any]:
    backend_name, dtype, merge = CONFIGS[name]
    if backend_name == "llama.cpp":
        why = why_not_llamacpp(args.model, args.device, explicit=True)
        if why:
            return {"config": name, "skipped": why}
    if dtype == "auto":
        dtype = "float32" if args.device == "cpu" else "bfloat16"
    t = time.perf_counter()
    model, tokenizer = load_generator(backend_name, args.model, adapter=args.adapter, merge=merge, dtype=dtype,
                                      device=args.device, n_seq=args.batch)
    load_s = time.perf_counter() - t
    timer = FirstToken()
    token = call_start_token(fmt, tokenizer)
    probe = [] if token is None else [CallDecision(token)]
    backend = BACKENDS[backend_name](model, tokenizer, GenerationSettings(max_new_tokens=args.max_new_tokens),
                                     stop_texts=(fmt.end_of_turn(tokenizer), *fmt.stop_texts),
                                     logits_processors=[*probe, timer])
    prompts = [fmt.render_prompt(s.tools, s.messages, tokenizer) for s in samples]
    backend.generate(prompts[:1])  # warm-up
    single = []
    for p in prompts:
        timer.reset()
        start = time.perf_counter()
        g = backend.generate([p])[0]
        first = (timer.at or start) - start
        single.append({"seconds": time.perf_counter() - start, "first_token_s": first, "prompt_tokens": g.prompt_tokens,
                       "new_tokens": g.new_tokens, "text": g.text, "p_call": g.p_call,
                       "finish_reason": g.finish_reason})
    start, new = time.perf_counter(), 0
    for i in range(0, len(prompts), args.batch):
        new += sum(g.new_tokens for g in backend.generate(prompts[i:i + args.batch]))
    batched_s = time.perf_counter() - start
    seconds = [r["seconds"] for r in single]
    decode_s = sum(r["seconds"] - r["first_token_s"] for r in single)
    verdicts = [check_sample(s, fmt.parse(r["text"], s.tools)) for s, r in zip(samples, single)]
    info = backend.describe()
    params = info.get("parameters")
    return {
        "config": name, "backend": backend_name, "dtype": info.get("dtype"), "merged": merge and bool(args.adapter),
        "load_s": round(load_s, 2), "parameters": params,
        "single_p50_s": statistics.median(seconds), "single_p95_s": float(np.percentile(seconds, 95)),
        "prefill_tok_s": sum(r["prompt_tokens"] for r in single) / sum(r["first_token_s"] for r in single),
        "decode_tok_s": sum(r["new_tokens"] - 1 for r in single) / decode_s if decode_s > 0 else None,
        "batched_tok_s": new / batched_s, "batch": args.batch,
        "mean_prompt_tokens": statistics.mean(r["prompt_tokens"] for r in single),
        "mean_new_tokens": statistics.mean(r["new_tokens"] for r in single),
        "truncated": sum(r["finish_reason"] == "length" for r in single),
        "accuracy": sum(v.correct for v in verdicts) / len(verdicts),
        "texts": [r["text"] for r in single], "verdicts": [v.correct for v in verdicts],
        "error_kinds": [v.error_kind for v in verdicts], "p_call": [r["p_call"] for r in single],
        "calls": [bool(v.output_names) for v in verdicts],
        "engine": {k: v for k, v in info.items() if k in ("llama_cpp_python", "system_info", "n_threads", "gguf", "extra_buffers")},
    }


def compare(rows: list[dict[str, Any]], ids: list[str], bounds: dict[str, float]) -> None:
    """Agreement with the first configuration, and the ratios to the machine's bounds (in place)."""
    ref = next((r for r in rows if "texts" in r), None)
    for r in rows:
        if "texts" not in r:
            continue
        if r["parameters"]:
            flop_bound = bounds["matmul_gflops"] * 1e9 / (2 * r["parameters"])
            bytes_per = {"float32": 4, "float16": 2, "bfloat16": 2, "q8_0": 34 / 32}.get(r["dtype"] or "", 4)
            r["prefill_bound_tok_s"] = flop_bound
            r["decode_bound_tok_s"] = bounds["copy_gbps"] * 1e9 / 2 / (r["parameters"] * bytes_per)
        if ref is not None:
            n = len(ids)
            r["same_text"] = sum(a == b for a, b in zip(r["texts"], ref["texts"]))
            r["same_verdict"] = sum(a == b for a, b in zip(r["verdicts"], ref["verdicts"]))
            r["same_decision"] = sum(a == b for a, b in zip(r["calls"], ref["calls"]))
            r["verdict_agreement"] = r["same_verdict"] / n
            r["disagreements"] = [{"id": i, ref["config"]: (rv, rk), r["config"]: (v, k)}
                                  for i, v, k, rv, rk in zip(ids, r["verdicts"], r["error_kinds"], ref["verdicts"],
                                                             ref["error_kinds"]) if v != rv]
            r["max_abs_p_call_diff"] = max((abs(a - b) for a, b in zip(r["p_call"], ref["p_call"])
                                            if a is not None and b is not None), default=None)


def _f(x: Any, spec: str = ".0f") -> str:
    return "n/a" if x is None else format(x, spec)


def table(rows: list[dict[str, Any]]) -> str:
    ref = next((r["config"] for r in rows if "texts" in r), "the reference")
    head = ("| config | dtype | prefill tok/s (of bound) | decode tok/s (of bound) | single p50 / p95 s | "
            f"batched tok/s | accuracy | same text / verdict as {ref} |")
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['config']} | skipped: {r['skipped']} | | | | | | |")
            continue
        pre = f"{_f(r['prefill_tok_s'])} ({pct(r['prefill_tok_s'] / r['prefill_bound_tok_s'], 0)})"
        dec = f"{_f(r['decode_tok_s'])} ({pct((r['decode_tok_s'] or 0) / r['decode_bound_tok_s'], 0)})"
        n = len(r["texts"])
        lines.append(f"| {r['config']} | {r['dtype']} | {pre} | {dec} | {r['single_p50_s']:.2f} / "
                     f"{r['single_p95_s']:.2f} | {_f(r['batched_tok_s'])} | {pct(r['accuracy'], 1)} | "
                     f"{r['same_text']}/{n} / {r['same_verdict']}/{n} |")
    return "\n".join(lines)


def ratios(rows: list[dict[str, Any]]) -> str:
    ref = next((r for r in rows if "texts" in r), None)
    if ref is None:
        return ""
    lines = [f"Against {ref['config']} in the same run:"]
    for r in rows:
        if "texts" in r and r is not ref:
            lines.append(f"- {r['config']}: single p50 {ref['single_p50_s'] / r['single_p50_s']:.2f}x faster, "
                         f"batched {r['batched_tok_s'] / ref['batched_tok_s']:.2f}x the tokens/s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = ArgumentParser(prog="python -m common.bench generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="registry name, hub id or local path")
    parser.add_argument("--adapter", default=None, help="a PEFT adapter folder (a fine-tuned model)")
    parser.add_argument("--format", default=None, help=(
        "tool-call format (default: the one the adapter's training run recorded, else the model's own)"))
    parser.add_argument("--data", default="data/offline-default", help="held-out prompts")
    parser.add_argument("--prompts", type=int, default=20, help="prompts timed per configuration")
    parser.add_argument("--batch", type=int, default=16, help="prompts per generate call in the batched phase")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="token cap of each answer")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, choices=list(CONFIGS),
                        help="configurations, the first the reference")
    parser.add_argument("--out", default=str(reports_root() / "bench" / "generate"),
                        help="where generate.json and README.md go")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (else one line)")
    args = parser.parse_args(argv)
    fmt = get_format(resolve_format(args.format, args.model, args.adapter))
    samples = load_data(args.data, args.prompts)
    if not samples:
        raise UserError(f"{args.data} has no samples")
    print("[bench] measuring the machine's bounds", flush=True)
    bounds = machine_bounds()
    rows = []
    for name in args.configs:
        print(f"[bench] {name}", flush=True)
        rows.append(run_config(name, args, samples, fmt))
    compare(rows, [s.id for s in samples], bounds)
    text = (f"# Generation benchmark\n\n{args.model}{' + ' + args.adapter if args.adapter else ''}, "
            f"{len(samples)} prompts of {args.data} ({fmt.name}), greedy, at most {args.max_new_tokens} new "
            f"tokens, batch {args.batch}. Machine bounds: {bounds['matmul_gflops']} GFLOP/s fp32 matmul, "
            f"{bounds['copy_gbps']} GB/s copy.\n\n{table(rows)}\n\n{ratios(rows)}\n")
    save_bench(args, "generate", text, {"bounds": bounds, "rows": rows})
    return rows


def save_bench(args: argparse.Namespace, name: str, text: str, results: dict[str, Any]) -> None:
    """Print a benchmark's report `text` and keep it: `<args.out>/<name>.json` (its arguments,
    `results` and provenance) and `<args.out>/README.md`."""
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{name}.json", {"args": {k: v for k, v in vars(args).items() if k != "debug"},
                                      **results, "provenance": provenance()})
    (out / "README.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    cli(main)
