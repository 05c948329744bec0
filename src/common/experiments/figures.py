"""Every figure, made only from results files on disk (no model, no W&B server).

    python -m common.experiments.figures            # regenerate every figure under reports/ (make figures)
    python -m common.experiments.figures reports/quickstart

Two kinds of saved results make figures:
- `comparison.json` (written by notebooks 07 and 08 and the quickstart): the Kinetic table
  with bootstrap intervals, the head-to-head breakdown, per-model latencies, error kinds,
  training histories and BFCL beside the held-out set -> accuracy and p95 bars,
  head-to-head, latency distributions, size against F1, training dashboards, error
  kinds, BFCL per category;
- `sweep.json` (written by `common.experiments.sweep`) beside the runs' `results.json` files -> the
  swept metric against the swept parameter.
Each writes PNG files next to the JSON it was made from and returns their paths.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from common.errors import ArgumentParser, cli
from common.markdown import pct
from common.provenance import ROOT, reports_root

sns.set_theme(style="whitegrid", context="notebook")
ERROR_PALETTE = "tab10"


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _ci_err(rows: list[dict[str, Any]], key: str, ci_key: str) -> list[list[float]]:
    lo = [100 * (r[key] - r[ci_key][0]) if r.get(ci_key) else 0 for r in rows]
    hi = [100 * (r[ci_key][1] - r[key]) if r.get(ci_key) else 0 for r in rows]
    return [lo, hi]


def accuracy_bars(comp: dict[str, Any], path: Path) -> Path:
    """Accuracy (tool + args) per model with its 95% bootstrap interval, and no-tool accuracy."""
    rows = [r for r in comp["table"] if r["accuracy"] is not None]
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.6 * len(rows) + 2.2), sharey=True)
    names = [r["model"] for r in rows]
    axes[0].barh(names, [100 * r["accuracy"] for r in rows], xerr=_ci_err(rows, "accuracy", "accuracy_bootstrap_ci95"),
                 color=sns.color_palette()[0], capsize=4)
    axes[0].set(xlabel="accuracy, tool + args (%) with 95% bootstrap CI", xlim=(0, 100))
    axes[1].barh(names, [100 * (r["no_tool_accuracy"] or 0) for r in rows], color=sns.color_palette()[2])
    axes[1].axvline(70, ls="--", c="gray", lw=1)
    axes[1].set(xlabel="no-tool accuracy (%)", xlim=(0, 100))
    for ax in axes:
        for bar in ax.patches:
            ax.text(bar.get_width() + 1, bar.get_y() + bar.get_height() / 2, f"{bar.get_width():.1f}",
                    va="center", fontsize=9)
    axes[0].invert_yaxis()
    fig.suptitle(f"{comp.get('title', 'comparison')} (n={rows[0]['n'] if rows else 0})")
    return _save(fig, path)


def latency_bars(comp: dict[str, Any], path: Path) -> Path:
    """p95 latency of one request at a time, per model."""
    rows = [r for r in comp["table"] if r["p95_latency_s"] is not None]
    fig, ax = plt.subplots(figsize=(7, 0.5 * max(len(rows), 1) + 1.8))
    ax.barh([r["model"] for r in rows], [r["p95_latency_s"] for r in rows], color=sns.color_palette()[1])
    ax.invert_yaxis()
    ax.set(xlabel="p95 latency, 1 request at a time (s)", title="latency")
    return _save(fig, path)


def latency_distributions(comp: dict[str, Any], path: Path) -> Path:
    """Each model's single-request latencies, with its p95 marked."""
    lat = {k: v for k, v in comp.get("latencies", {}).items() if v}
    fig, ax = plt.subplots(figsize=(7, 0.6 * max(len(lat), 1) + 1.8))
    for i, (name, secs) in enumerate(lat.items()):
        ax.scatter(secs, [i] * len(secs), alpha=0.5, s=18)
        p95 = float(np.percentile(secs, 95))
        ax.plot([p95, p95], [i - 0.3, i + 0.3], c="k", lw=2)
        ax.text(p95, i + 0.35, f"p95 {p95:.2f} s", fontsize=8, ha="center")
    ax.set_yticks(range(len(lat)), list(lat))
    ax.invert_yaxis()
    ax.set(xlabel="seconds per request", title="latency distribution (black: p95)")
    return _save(fig, path)


def head_to_head(comp: dict[str, Any], path: Path) -> Path:
    """Kinetic's sample breakdown of two models, with McNemar's p and the paired difference."""
    h = comp["head_to_head"]
    labels = ["both correct", f"only {h['a']}", f"only {h['b']}", "neither"]
    counts = [h["both"], h["only_a"], h["only_b"], h["neither"]]
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.barh(labels, counts, color=sns.color_palette("muted", 4))
    for bar, n in zip(ax.patches, counts):
        ax.text(bar.get_width() + 0.5, bar.get_y() + bar.get_height() / 2, str(n), va="center")
    ax.invert_yaxis()
    d = h["difference"]
    ci = d["ci"] or [float("nan")] * 2
    ax.set(xlabel="samples", title=f"{h['a']} vs {h['b']}: difference {100 * d['difference']:+.1f} pts "
           f"(95% CI {100 * ci[0]:+.1f} to {100 * ci[1]:+.1f}); McNemar p={h['mcnemar_exact_p']:.3g}")
    ax.title.set_fontsize(9)
    return _save(fig, path)


def size_vs_f1(comp: dict[str, Any], path: Path) -> Path:
    """Model size (parameters) against tool-selection F1."""
    rows = [r for r in comp["table"] if r.get("parameters") and r.get("tool_selection_f1") is not None]
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        ax.scatter(r["parameters"] / 1e6, 100 * r["tool_selection_f1"], s=40)
        ax.annotate(r["model"], (r["parameters"] / 1e6, 100 * r["tool_selection_f1"]), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xscale("log")
    ax.set(xlabel="parameters (millions, log scale)", ylabel="tool-selection F1 (%)", title="size against F1")
    return _save(fig, path)


def error_kinds(comp: dict[str, Any], path: Path) -> Path:
    """What went wrong, per model: counts of each error kind."""
    data = [{"model": r["model"], "error kind": k, "samples": n}
            for r in comp["table"] for k, n in (r.get("error_kinds") or {}).items()]
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(comp["table"]) + 2))
    if data:
        df = pd.DataFrame(data).pivot_table(index="model", columns="error kind", values="samples", fill_value=0)
        df = df.reindex([r["model"] for r in comp["table"]])
        df.plot.barh(stacked=True, ax=ax, colormap=ERROR_PALETTE, width=0.7)
        ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
        ax.invert_yaxis()
    ax.set(xlabel="samples", title="error kinds per model")
    return _save(fig, path)


def training_dashboard(histories: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    """Train loss, eval loss and learning rate against the step, one line per run."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for name, hist in histories.items():
        for ax, key in zip(axes, ("loss", "eval_loss", "learning_rate")):
            pts = [(r["step"], float(r[key])) for r in hist if key in r and "step" in r]
            if pts:
                ax.plot(*zip(*pts), marker="o" if key == "eval_loss" else None, ms=3, label=name)
    for ax, title in zip(axes, ("train loss (completion tokens)", "eval loss", "learning rate")):
        ax.set(xlabel="optimizer step", title=title)
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def bfcl_beside_heldout(comp: dict[str, Any], path: Path) -> Path:
    """Per model, the held-out accuracy beside BFCL's accuracy per category (BFCL's own
    checker), each with its Wilson 95% interval."""
    rows = comp["bfcl"]
    cats = ["held-out"] + list(dict.fromkeys(c for r in rows for c in r["categories"]))
    fig, ax = plt.subplots(figsize=(1.3 * len(cats) + 3, 4.2))
    width = 0.8 / max(len(rows), 1)
    palette = sns.color_palette(n_colors=max(len(rows), 1))
    for i, r in enumerate(rows):
        cells = [r["held_out"]] + [r["categories"].get(c) for c in cats[1:]]
        xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(cats))]
        acc = [100 * c["accuracy"] if c and c["accuracy"] is not None else 0 for c in cells]
        err = [[100 * (c["accuracy"] - c["ci95"][0]) if c and c.get("ci95") else 0 for c in cells],
               [100 * (c["ci95"][1] - c["accuracy"]) if c and c.get("ci95") else 0 for c in cells]]
        ax.bar(xs, acc, width, yerr=err, capsize=3, color=palette[i], label=r["model"])
        for x, a, hi, c in zip(xs, acc, err[1], cells):
            ax.text(x, a + hi + 1.5, "n/a" if not c else f"{a:.1f}", ha="center", fontsize=8)
    ax.axvline(0.5, c="gray", lw=1, ls="--")
    ax.set_xticks(range(len(cats)), ["held-out\n(project's checker)", *cats[1:]], rotation=20)
    ax.set(ylim=(0, 110), ylabel="accuracy (%) with Wilson 95% CI",
           title=f"{comp.get('title', 'comparison')}: held-out set beside BFCL (BFCL's checker)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def comparison_figures(path: str | Path) -> list[Path]:
    """Every figure of a `comparison.json`, next to it."""
    path = Path(path)
    comp = json.loads(path.read_text())
    out = path.parent / "figures"
    out.mkdir(exist_ok=True)
    made = [accuracy_bars(comp, out / "accuracy.png"), error_kinds(comp, out / "error_kinds.png")]
    if any(comp.get("latencies", {}).values()):  # BFCL runs time no single requests
        made += [latency_bars(comp, out / "latency_p95.png"),
                 latency_distributions(comp, out / "latency_distribution.png")]
    if comp.get("bfcl"):
        made.append(bfcl_beside_heldout(comp, out / "bfcl.png"))
    if comp.get("head_to_head"):
        made.append(head_to_head(comp, out / "head_to_head.png"))
    if any(r.get("parameters") for r in comp["table"]):
        made.append(size_vs_f1(comp, out / "size_vs_f1.png"))
    if comp.get("histories"):
        made.append(training_dashboard(comp["histories"], out / "training.png"))
    return made


def router_stages(path: str | Path, out: Path) -> Path:
    """Notebook 02: each hop's accuracy, their product, the measured end-to-end, the single model."""
    m = json.loads(Path(path).read_text())["metrics"]
    bars = {"hop 1: router picks the toolkit": m["router_accuracy"],
            "hop 2: caller, given the right toolkit": m["caller_accuracy_given_right_toolkit"],
            "product of the hops": m["product_of_stages"], "two-hop, measured end to end": m["end_to_end_accuracy"],
            "single model, tools shown directly": m["single_model_accuracy"]}
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.barh(list(bars), [100 * (v or 0) for v in bars.values()], color=sns.color_palette("muted", len(bars)))
    for bar, v in zip(ax.patches, bars.values()):
        ax.text(bar.get_width() + 1, bar.get_y() + bar.get_height() / 2, pct(v),
                va="center", fontsize=9)
    ax.invert_yaxis()
    ax.set(xlim=(0, 105), xlabel="accuracy (%)", title=f"two-hop router against one model (n={m['n']})")
    return _save(fig, out)


def _get(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def sweep_figures(path: str | Path) -> list[Path]:
    """The swept parameter against each metric the sweep names, from the runs' results."""
    path = Path(path)
    sweep = json.loads(path.read_text())
    points = []
    for run in sweep["runs"]:
        res_path = path.parent / run["run"] / "results.json"
        if run.get("status") != "complete" or not res_path.exists():
            continue
        res = json.loads(res_path.read_text())
        x = _get(res, sweep["x"])
        if x is None:
            continue
        points.append({"run": run["run"], "x": x, "series": _get(res, sweep["series"]) if sweep.get("series") else None,
                       **{m: _get(res, m) for m in sweep["metrics"]},
                       **{m + "#ci": _get(res, sweep["ci"][m]) for m in sweep.get("ci", {})}})
    metrics = sweep["metrics"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.6), squeeze=False)
    groups: dict[Any, list[dict[str, Any]]] = {}
    for p in points:
        groups.setdefault(p["series"], []).append(p)
    for ax, m in zip(axes[0], metrics):
        for series, pts in groups.items():
            pts = sorted((p for p in pts if p[m] is not None), key=lambda p: p["x"])
            if not pts:
                continue
            xs, ys = [p["x"] for p in pts], [100 * p[m] for p in pts]
            label = None if series is None else f"{sweep['series'].split('.')[-1]}={series}"
            ax.plot(xs, ys, marker="o", label=label)
            if any(p.get(m + "#ci") for p in pts):
                ax.fill_between(xs, [100 * (p[m + "#ci"] or [p[m]] * 2)[0] for p in pts],
                                [100 * (p[m + "#ci"] or [p[m]] * 2)[1] for p in pts], alpha=0.2)
        if sweep.get("log_x"):
            ax.set_xscale("log", base=2)
        ax.set(xlabel=sweep.get("x_label") or sweep["x"], ylabel="%", title=m.split(".")[-1].replace("_", " "))
        ax.set_ylim(-2, 102)  # the full scale: on a few held-out samples, a zoomed axis makes noise look like an effect
        if any(s is not None for s in groups):
            ax.legend(fontsize=8)
    fig.suptitle(f"sweep {sweep['name']}: {len(points)} runs" + (f" ({sweep['note']})" if sweep.get("note") else ""),
                 fontsize=10)
    out = path.parent / f"sweep_{sweep['name']}.png"
    return [_save(fig, out)]


def regenerate(root: str | Path | None = None) -> list[Path]:
    """Every figure under `root` (default reports/), from the comparison, sweep, results
    and history files found there. (The data card's figure is drawn by the build, from the
    data itself, which is not committed.)"""
    root = Path(root) if root else reports_root()
    made: list[Path] = []
    for p in sorted(root.rglob("comparison.json")):
        made += comparison_figures(p)
    for p in sorted(root.rglob("sweep.json")):
        made += sweep_figures(p)
    for p in sorted(root.rglob("results.json")):
        try:
            notebook = json.loads(p.read_text()).get("notebook")
        except ValueError:
            continue
        if notebook == "02_router":
            made.append(router_stages(p, p.parent / "router.png"))
        elif notebook in ("04_lora_ablation", "06_data_scale") and (p.parent / "history.json").exists():
            made.append(training_dashboard({p.parent.name: json.loads((p.parent / "history.json").read_text())},
                                           p.parent / "training.png"))
    return made


def main(argv: list[str] | None = None) -> list[Path]:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", default=None,
                        help="folder searched for comparison.json and sweep.json (default: reports/)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (else one line)")
    args = parser.parse_args(argv)
    made = regenerate(args.root)
    for p in made:
        print(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p)
    print(f"{len(made)} figures from saved results under {args.root or reports_root()}")
    return made


if __name__ == "__main__":
    cli(main)
