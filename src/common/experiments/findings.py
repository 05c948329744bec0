"""Each notebook's finding from the reference write-ups, as numbers beside the run's own.

The references (Kinetic-4B, smol-tools-4b, the SLM paper, BFCL's small-model rows) are quoted as
their write-ups give them; a notebook's last cell (`show.beside_finding`) puts the quantities its
results file holds beside them, with the run's sample count, so that a CPU run on a 135M model
is read against a 4B model's GPU run for what it is: the same question at another scale.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.experiments.compare import rows_by_model
from common.jsonio import read_json
from common.markdown import interval, pct, seconds

Row = tuple[str, str, str]  # (quantity, the reference's value, this run's)


def _share(row: dict[str, Any] | None, key: str = "accuracy") -> str:
    """A row's share; the accuracy with its 95% interval and n."""
    if not row or row.get(key) is None:
        return "n/a"
    if key != "accuracy":
        return pct(row[key])
    return f"{pct(row[key])}{interval(row.get('accuracy_ci95'))} (n={row.get('n')})"


def _kinetic(row: dict[str, Any] | None, ref: tuple[float, float, float, float]) -> list[Row]:
    return [("accuracy (tool and arguments right)", f"{ref[0]:.2f}%", _share(row)),
            ("tool name right", f"{ref[1]:.2f}%", _share(row, "tool_name_accuracy")),
            ("failure rate (no valid call)", f"{ref[2]:.2f}%", _share(row, "failure_rate")),
            ("p95 latency", f"{ref[3]:.2f} s", seconds((row or {}).get("p95_latency_s")))]


def data(r: dict[str, Any]) -> list[Row]:
    train = r["metrics"].get("train", {})
    return [("training samples", "13,694", f"{train.get('samples', 0):,}"),
            ("toolkits", "20 (Composio)", str(len(train.get("toolkits", {})))),
            ("tools per prompt", "10 (1 right, 9 from its toolkit)",
             f"{(train.get('tools_per_prompt') or {}).get('p50', 0):.0f} (median)")]


def functiongemma(r: dict[str, Any]) -> list[Row]:
    return _kinetic(rows_by_model(r["metrics"]).get("fine-tuned"), (49.67, 80.33, 19.67, 0.84))


def router(r: dict[str, Any]) -> list[Row]:
    m = r["metrics"]
    return [("router picks the right toolkit", "about 80%", pct(m.get("router_accuracy"))),
            ("two hops (router x caller)", "bounded by the product of the stages",
             f"{pct(m.get('product_of_stages'))} (product), {pct(m.get('end_to_end_accuracy'))} (measured)"),
            ("one model, all the tools", "better than two hops", pct(m.get("single_model_accuracy")))]


def full_ft_v1(r: dict[str, Any]) -> list[Row]:
    h = r["metrics"].get("head_to_head") or {}
    d = (h.get("difference") or {})
    rows = rows_by_model(r["metrics"])
    return [("LoRA on balanced data", "the second, shipped recipe", _share(rows.get("lora-balanced"))),
            ("full fine-tune v1 on generic data", "about 11 points lower", _share(rows.get("full-v1-generic"))),
            ("difference (LoRA - full v1)", "+11 points",
             "n/a" if d.get("difference") is None else f"{100 * d['difference']:+.1f} points{interval(d.get('ci'))}")]


def lora_ablation(r: dict[str, Any]) -> list[Row]:
    p = (r.get("train") or {}).get("params") or {}
    return [(f"accuracy at rank {p.get('lora_r')} ({p.get('target_modules')})",
             "rank 64 no better than 32 (smol-tools-4b); Kinetic-4B: r64/a128, all projections",
             _share(r["metrics"]))]


def dpo(r: dict[str, Any]) -> list[Row]:
    rows = rows_by_model(r["metrics"])
    out = [("exact match after SFT", "30% (SmolLM-360M)", _share(rows.get("sft")))]
    out += [(f"exact match after {name}", "8% (DPO, the paper's set-up)", _share(row))
            for name, row in rows.items() if name != "sft"]
    return out


def data_scale(r: dict[str, Any]) -> list[Row]:
    p = (r.get("train") or {}).get("params") or {}
    return [(f"accuracy, {p.get('limit')} samples of {p.get('data')}, {p.get('epochs')} epoch(s)",
             "5k unfiltered < 4.6k filtered; 13.6k over-fitted (smol-tools-4b)", _share(r["metrics"]))]


def benchmark(r: dict[str, Any]) -> list[Row]:
    h = r["metrics"].get("head_to_head") or {}
    rows = rows_by_model(r["metrics"])
    a, b = rows.get(h.get("a")), rows.get(h.get("b"))
    return [*_kinetic(a, (82.33, 95.33, 4.67, 1.61)),
            (f"accuracy of the model it is compared with ({h.get('b')})", "78.67% (untrained Qwen3-4B)", _share(b))]


ANCHOR = {"simple_python": 61.6, "multiple": 63.5, "parallel": 39, "parallel_multiple": 29.5, "irrelevance": 73.7}


def bfcl(r: dict[str, Any]) -> list[Row]:
    out = []
    for row in r["metrics"].get("bfcl") or []:
        cats = row.get("categories") or {}
        out += [(f"{row['model']}: {c}", f"{ref}% (FunctionGemma-270M)", pct((cats.get(c) or {}).get("accuracy")))
                for c, ref in ANCHOR.items() if c in cats]
    return out


FINDINGS: dict[str, tuple[str, Callable[[dict[str, Any]], list[Row]]]] = {
    "00_data": ("Kinetic-4B's training data", data),
    "01_functiongemma": ("Kinetic-4B: the FunctionGemma-270M baseline", functiongemma),
    "02_router": ("Kinetic-4B: the two-hop router", router),
    "03_full_ft_v1": ("Kinetic-4B: full fine-tune v1 on generic data", full_ft_v1),
    "04_lora_ablation": ("smol-tools-4b and Kinetic-4B: LoRA rank", lora_ablation),
    "05_dpo": ("the SLM paper: DPO after SFT", dpo),
    "06_data_scale": ("smol-tools-4b: data quality against size", data_scale),
    "07_benchmark": ("Kinetic-4B's head-to-head", benchmark),
    "08_bfcl": ("BFCL's small-model anchor, FunctionGemma-270M", bfcl),
}


def beside_finding(out: str | Path) -> str:
    """A markdown table: the reference's numbers beside those of the run saved in `out`."""
    r = read_json(Path(out) / "results.json", "notebook results")
    title, rows = FINDINGS[r["notebook"]]
    lines = [f"**Beside the finding** ({title}):", "", "| | reference | this run |", "|---|---|---|",
             *[f"| {q} | {ref} | {mine} |" for q, ref, mine in rows(r)]]
    return "\n".join(lines) + "\n"
