"""Comparing evaluated runs on the same samples: the Kinetic table, the head-to-head with
McNemar's test and the paired bootstrap, BFCL beside the held-out set; and their markdown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common.errors import UserError
from common.evaluation.checker import Verdict
from common.evaluation.metrics import bootstrap_ci, head_to_head, paired_difference
from common.experiments.inputs import ensure_verdicts
from common.jsonio import read_jsonl, restore
from common.markdown import interval, pct, seconds
from common.provenance import local_path, shown


def verdicts(eval_dir: str | Path) -> list[Verdict]:
    """An evaluation's per-sample verdicts (judged again from its committed predictions where a fresh
    clone has only those); an evaluation without any is one line, never an empty comparison."""
    rows = read_jsonl(ensure_verdicts(eval_dir) / "verdicts.jsonl")
    if not rows:
        raise UserError(f"{shown(eval_dir)}/verdicts.jsonl holds no verdicts; score the evaluation again "
                        f"(python -m common.evaluation --score-only --out {shown(eval_dir)})")
    return [Verdict.from_dict({k: v for k, v in r.items() if k != "parsed"}) for r in rows]


def rows_by_model(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A saved comparison's Kinetic table (`metrics["table"]`), each row by its model's name."""
    return {r["model"]: r for r in metrics.get("table") or [] if isinstance(r, dict) and "model" in r}


def results_of(eval_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(eval_dir) / "results.json").read_text())


def paired(a: Path, b: Path) -> dict[str, Any]:
    """A fine-tuned model (a) against the untrained one (b) on the same samples: McNemar and the
    paired bootstrap, overall and split by what the requests need (`by_kind`)."""
    va, vb = verdicts(a), verdicts(b)
    return {**head_to_head(va, vb), "difference": paired_difference(va, vb),
            "accuracy": results_of(a)["metrics"]["kinetic"]["accuracy"],
            "untrained_accuracy": results_of(b)["metrics"]["kinetic"]["accuracy"], "n": len(va),
            "by_kind": by_kind(va, vb)}


def by_kind(va: list[Any], vb: list[Any]) -> dict[str, dict[str, Any]]:
    """Accuracy on the samples that need a call and on those that need none, for both models: a
    model that never calls scores the no-call share of a set, so the total alone can hide learning."""
    untrained = {v.id: v.correct for v in vb}
    out = {}
    for kind, wanted in (("call", True), ("no_call", False)):
        rows = [v for v in va if bool(v.expected_names) == wanted]
        out[kind] = {"n": len(rows), "accuracy": sum(v.correct for v in rows) / len(rows) if rows else None,
                     "untrained_accuracy": sum(untrained[v.id] for v in rows) / len(rows) if rows else None}
    return out


def kinetic_row(name: str, results: dict[str, Any]) -> dict[str, Any]:
    """One row of the Kinetic table (plus the no-tool accuracy this repository watches)."""
    m = results["metrics"]
    k = m["kinetic"]
    return {"model": name, "n": results["n_samples"], "accuracy": k["accuracy"],
            "accuracy_ci95": k["accuracy_ci95"], "tool_name_accuracy": k["tool_name_accuracy"],
            "failure_rate": k["failure_rate"], "p95_latency_s": k["latency"]["p95_s"],
            "no_tool_accuracy": m["smol_tools"]["no_tool_accuracy"],
            "tool_selection_f1": m["smol_tools"]["tool_selection_f1"], "argument_f1": m["slm"]["argument_f1"],
            "json_validity": m["smol_tools"]["json_validity"], "call_auc": (m.get("decision") or {}).get("auc"),
            "call_gate": (results.get("generation") or {}).get("call_gate"),
            "parameters": (results.get("generation") or {}).get("parameters"), "error_kinds": m["error_kinds"]}


def bfcl_rows(bfcl: dict[str, str | Path], heldout: dict[str, str | Path] | None = None) -> list[dict[str, Any]]:
    """BFCL beside the held-out set, per model: the BFCL checker's accuracy per category
    (Wilson 95% interval), the leaderboard's aggregates and the agreement of the two
    checkers (`common.bfcl`), and the held-out accuracy where `heldout` names the model."""
    rows = []
    for name, folder in bfcl.items():
        res = results_of(folder)
        b = res["metrics"]["bfcl"]
        row = {"model": name, "bfcl_dir": shown(folder), "n": res["n_samples"], "agreement": b["agreement"],
               "categories": {c: {"accuracy": d["bfcl_accuracy"], "ci95": d["bfcl_accuracy_ci95"], "n": d["n"]}
                              for c, d in b["per_category"].items()},
               "leaderboard": b["leaderboard"], "held_out": None}
        if heldout and name in heldout:
            h = results_of(heldout[name])
            row["held_out"] = {"accuracy": h["metrics"]["kinetic"]["accuracy"], "n": h["n_samples"],
                               "ci95": h["metrics"]["kinetic"]["accuracy_ci95"], "eval_dir": shown(heldout[name])}
        rows.append(row)
    return rows


def bfcl_table(rows: list[dict[str, Any]]) -> str:
    """`bfcl_rows` as markdown: held-out accuracy, then BFCL's per category and aggregates."""
    cats = list(dict.fromkeys(c for r in rows for c in r["categories"]))
    aggs = list(dict.fromkeys(k for r in rows for k in r["leaderboard"] if not k.startswith("simple_ast")))
    lines = ["| model | held-out | " + " | ".join(cats + aggs) + " | checkers agree |",
             "|---" * (len(cats) + len(aggs) + 3) + "|"]
    for r in rows:
        h = r["held_out"]
        lines.append(f"| {r['model']} | {pct(h['accuracy']) + ' (n=' + str(h['n']) + ')' if h else 'n/a'} | "
                     + " | ".join(pct(r["categories"][c]["accuracy"]) if c in r["categories"] else "n/a" for c in cats)
                     + (" | " if aggs else "") + " | ".join(pct(r["leaderboard"].get(k)) for k in aggs)
                     + f" | {pct(r['agreement'])} |")
    return "\n".join(lines) + "\n"


def compare(evals: dict[str, str | Path], a: str | None = None, b: str | None = None,
            bfcl: dict[str, str | Path] | None = None,
            heldout: dict[str, str | Path] | None = None) -> dict[str, Any]:
    """The comparison of evaluated runs on the same samples: a Kinetic row each (with a
    bootstrap interval on its accuracy) and, for the pair (a, b), the head-to-head
    breakdown with McNemar's exact test and the paired bootstrap interval of a - b.
    With `bfcl` (model name: `common.bfcl` folder), also BFCL beside the held-out set
    (`heldout`, by default `evals`)."""
    rows, vs = [], {}
    for name, folder in evals.items():
        vs[name] = verdicts(folder)
        row = kinetic_row(name, results_of(folder))
        row["accuracy_bootstrap_ci95"] = bootstrap_ci([v.correct for v in vs[name]])
        row["eval_dir"] = shown(folder)
        rows.append(row)
    for folder in evals.values():
        restore(local_path(folder) / "latency.jsonl")  # a fresh clone's committed archive, where there is one
    out: dict[str, Any] = {"table": rows, "latencies": {
        name: [r["seconds"] for r in read_jsonl(local_path(folder) / "latency.jsonl", ("seconds",))]
        for name, folder in evals.items()}}
    if a and b:
        out["head_to_head"] = {"a": a, "b": b, **head_to_head(vs[a], vs[b]),
                               "difference": paired_difference(vs[a], vs[b])}
    if bfcl:
        out["bfcl"] = bfcl_rows(bfcl, evals if heldout is None else heldout)
    return out


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The Kinetic table of `compare` as markdown."""
    lines = ["| model | n | accuracy (95% CI) | tool-name acc. | failure rate | no-tool acc. | tool-select F1 "
             "| p95 latency |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ci = r["accuracy_ci95"]
        lines.append(f"| {r['model']} | {r['n']} | {pct(r['accuracy'])}"
                     + interval(ci)
                     + f" | {pct(r['tool_name_accuracy'])} | {pct(r['failure_rate'])} | {pct(r['no_tool_accuracy'])}"
                     f" | {pct(r['tool_selection_f1'])} | {seconds(r['p95_latency_s'])} |")
    return "\n".join(lines) + "\n"


