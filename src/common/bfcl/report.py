"""Scoring a BFCL run: the project's verdicts beside BFCL's own checker's, their agreement,
the leaderboard's aggregates and the SLM paper's metrics, into results.json and README.md."""

from __future__ import annotations

import json
from collections import Counter
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from common import bfcl_data
from common.bfcl.agreement import UNEXPLAINED, agreement
from common.bfcl.params import BFCLParams, command_line
from common.bfcl.reference import reference_verdicts
from common.evaluation.checker import Verdict
from common.evaluation.metrics import (
    call_decision,
    compute_metrics,
    latency_summary,
    proportion_ci,
)
from common.errors import UserError
from common.evaluation.report import engine_text
from common.evaluation.runner import PREDICTION_KEYS, stale_answers
from common.evaluation.runner import score as score_evaluation
from common.formats.base import PROMPT_VERSION
from common.jsonio import read_jsonl, restore, write_json, write_jsonl
from common.markdown import pct
from common.provenance import provenance, shown
from common.sources import BFCL_PREFIX, load_data


def reference_cases(category: str, verdict_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """BFCL checker inputs for one category: the parsed calls of each verdict row, as BFCL's
    `[{name: {argument: value}}]`, with the entry's function docs and possible answers."""
    entries = {e["id"]: e for e in bfcl_data.read_category(category)}
    cases = []
    for row in verdict_rows:
        entry, parsed = entries[row["id"]], row["parsed"]
        error = parsed.get("error")
        cases.append({"id": row["id"], "category": category, "function": entry["function"],
                      "possible_answer": entry.get("ground_truth"),
                      "decoded": None if error else [{c["name"]: c["arguments"]} for c in parsed["calls"]],
                      "decode_error": error and f"{error['kind']}: {error['message']}"})
    return cases


def share(rows: list[dict[str, Any]], key: str) -> float | None:
    """The share of `rows` whose `key` is true (None for no rows)."""
    return sum(r[key] for r in rows) / len(rows) if rows else None


def leaderboard(per_category: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """BFCL v4's aggregates (`eval_runner_helper.generate_leaderboard_csv`) over what was
    scored. Its "simple" is the unweighted mean of simple_python, simple_java and
    simple_javascript; Java and JavaScript are outside this project, so here simple is
    simple_python alone, and the leaderboard itself would print N/A for it."""
    acc = {c: d["bfcl_accuracy"] for c, d in per_category.items()}
    count = {c: d["n"] for c, d in per_category.items()}
    out: dict[str, Any] = {}
    if "simple_python" in acc:
        out["simple_ast (simple_python only)"] = acc["simple_python"]
    non_live = ["simple_python", "multiple", "parallel", "parallel_multiple"]
    if all(c in acc for c in non_live):
        out["non_live_ast_summary (unweighted; simple = simple_python only)"] = sum(acc[c] for c in non_live) / 4
    live = [c for c in ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple") if c in acc]
    if live:
        out["live_ast_summary (weighted by count" + ("" if len(live) == 4 else f", {len(live)} of 4 categories")
            + ")"] = sum(acc[c] * count[c] for c in live) / sum(count[c] for c in live)
    irrelevance = [c for c in ("irrelevance", "live_irrelevance") if c in acc]
    if irrelevance:  # the leaderboard's total: the unweighted mean of the non-live and live scores
        which = {1: "live" if irrelevance == ["live_irrelevance"] else "non-live", 2: "non-live and live, unweighted"}
        out[f"irrelevance ({which[len(irrelevance)]})"] = \
            sum(acc[c] for c in irrelevance) / len(irrelevance)
    return out


def refuse_stale_categories(out: str | Path, categories: list[str], limit: int | None) -> None:
    """One error for every category of a BFCL run in `out` that holds answers to prompts that have
    changed since they were generated, before anything loads or is scored (`runner.score`
    refuses them too, one folder at a time)."""
    stale = {}
    for category in categories:
        path = Path(out) / category / "predictions.jsonl"
        restore(path)
        rows = read_jsonl(path, PREDICTION_KEYS)
        if rows and (ids := stale_answers(rows, load_data(f"{BFCL_PREFIX}{category}", limit))):
            stale[category] = len(ids)
    if stale:
        listed = ", ".join(f"{c} ({n})" for c, n in stale.items())
        raise UserError(f"{shown(out)} holds answers to prompts that have changed since they were generated "
                        f"(prompt_version {PROMPT_VERSION}: a tool's keys are now listed sorted): {listed}; "
                        f"delete {'that category folder' if len(stale) == 1 else 'those category folders'} "
                        "(or the whole folder) to generate them again (git keeps the old ones)")


def score(out: str | Path) -> dict[str, Any]:
    """The project's and BFCL's verdicts on every category in `out`, their agreement, the
    leaderboard's aggregates and the SLM paper's metrics into results.json and README.md."""
    out = Path(out)
    params = BFCLParams.model_validate(json.loads((out / "params.json").read_text()))
    refuse_stale_categories(out, params.categories, params.limit)
    project_rows, cases, runs, p_call = {}, [], {}, {}
    for category in params.categories:
        folder = out / category
        if not (folder / "run.json").is_file():
            raise RuntimeError(f"{folder} holds no generation; run the same command without --score-only "
                               "to generate it (done samples are kept)")
        # rescored every time, so that the verdicts are those of the current checker
        runs[category] = score_evaluation(folder)
        p_call.update({r["id"]: r.get("p_call") for r in read_jsonl(folder / "predictions.jsonl", PREDICTION_KEYS)})
        project_rows[category] = read_jsonl(folder / "verdicts.jsonl")
        cases += reference_cases(category, project_rows[category])
    flat = [r for rows in project_rows.values() for r in rows]
    agreed_all = agreement(cases, flat, reference_verdicts(cases))
    by_category: dict[str, list[dict[str, Any]]] = {}
    for row in agreed_all:
        by_category.setdefault(row["category"], []).append(row)
    per_category, all_verdicts = {}, []
    for category, rows in project_rows.items():
        agreed = by_category.get(category, [])
        vs = [Verdict.from_dict({k: v for k, v in r.items() if k != "parsed"}) for r in rows]
        all_verdicts += vs
        correct = sum(r["bfcl_valid"] for r in agreed)
        per_category[category] = {
            "n": len(rows), "bfcl_correct": correct, "bfcl_accuracy": correct / len(rows) if rows else None,
            "bfcl_accuracy_ci95": proportion_ci(correct, len(rows)),
            "project_accuracy": share(agreed, "project_correct"),
            # BFCL counts a malformed call as "no call" on irrelevance; this is the stricter share:
            # answers that parse and make no call
            "parse_valid_no_call": (sum(not v.output_names and v.parse_error is None for v in vs) / len(vs)
                                    if vs else None),
            "agreement": share(agreed, "agree"),
            "disagreements": sum(not r["agree"] for r in agreed),
            "bfcl_error_types": dict(Counter(r["bfcl_error_type"] for r in agreed if not r["bfcl_valid"])
                                     .most_common()),
            "slm": compute_metrics(vs)["slm"],
            "generation": {k: runs[category]["throughput"][k] for k in ("seconds", "samples", "truncated")}}
    write_jsonl(out / "agreement.jsonl", agreed_all)
    # every category's project verdicts, for 07's head to head
    write_jsonl(out / "verdicts.jsonl", (r for rows in project_rows.values() for r in rows))
    metrics = compute_metrics(all_verdicts)
    metrics["kinetic"]["latency"] = latency_summary([])
    # P(call) pooled over the categories: irrelevance entries against the others
    metrics["decision"] = call_decision([p_call.get(v.id) for v in all_verdicts],
                                        [bool(v.expected_names) for v in all_verdicts])
    first = runs[params.categories[0]]
    results = {
        "experiment": params.experiment, "run": params.run, "model": params.model, "adapter": params.adapter,
        "format": first["format"], "data": "bfcl:" + ",".join(params.categories), "n_samples": len(agreed_all),
        "seed": params.seed, "params": params.model_dump(), "command": command_line(params),
        "generation": first.get("generation"),
        "prompt_version": min(r["prompt_version"] for r in runs.values()),  # each category just scored
        "metrics": metrics | {"bfcl": {
            "per_category": per_category, "leaderboard": leaderboard(per_category),
            "accuracy_all_samples": share(agreed_all, "bfcl_valid"),
            "agreement": share(agreed_all, "agree"),
            "disagreements": [r for r in agreed_all if not r["agree"]],
            "unexplained": sum(r["explanation"] == UNEXPLAINED for r in agreed_all),
            "checker_crashes": sum(r["bfcl_error_type"] == "checker_crash" for r in agreed_all),
            "checker": f"bfcl_eval {bfcl_version()} eval_checker/ast_eval/ast_checker.py"}},
        "timings": {"generate_s": sum(r["timings"].get("generate_s", 0.0) for r in runs.values()),
                    "total_s": sum(r["timings"].get("total_s", 0.0) for r in runs.values())},
        "provenance": provenance(),
    }
    write_json(out / "results.json", results)
    (out / "README.md").write_text(report(results), encoding="utf-8")
    return results


def bfcl_version() -> str:
    try:
        return version("bfcl-eval")
    except PackageNotFoundError:
        return "unknown"


def decision_lines(d: dict[str, Any] | None, gate: float | None) -> list[str]:
    if not d or d["auc"] is None:
        return []
    return [f"Call decision: P(call) at the first token has ROC AUC {d['auc']:.3f} between the {d['n']} entries "
            "that need a call and those that need none (irrelevance); mean P(call) "
            f"{d['mean_p_call_when_call_expected']:.2f} where a call is needed, "
            f"{d['mean_p_call_when_none_expected']:.2f} where none is; \"call iff P(call) >= 0.5\" would be "
            f"right on {pct(d['accuracy_at_half'])} of entries"
            + ("." if gate is None else f" (the gate used here calls iff P(call) >= {gate:.3f})."), ""]


def report(results: dict[str, Any]) -> str:
    """The per-model BFCL report: leaderboard numbers, SLM metrics, and the agreement."""
    b, slm = results["metrics"]["bfcl"], results["metrics"]["slm"]
    gate = results["params"].get("call_gate")
    minutes = results["timings"]["generate_s"] / 60
    lines = [
        f"# BFCL: {results['model']}" + (f" + {results['adapter']}" if results["adapter"] else ""), "",
        f"{results['n_samples']} entries of BFCL v4 ({', '.join(b['per_category'])}), read offline from the "
        f"bfcl-eval wheel; format {results['format']}, greedy, max {results['params']['max_new_tokens']} new "
        f"tokens, call gate {'none' if gate is None else f'{gate:.3f}'}; {minutes:.1f} min of generation "
        f"({engine_text(results.get('generation'))}). Checker: {b['checker']} on the project's parsed calls. "
        f"Command: `{results['command']}`.", "",
        "| category | n | accuracy (BFCL checker) | accuracy (project checker) | agreement | SLM exact match | "
        "argument F1 | tool-select F1 | hallucination-free |", "|---|---|---|---|---|---|---|---|---|",
        *(f"| {c} | {d['n']} | {pct(d['bfcl_accuracy'])} | {pct(d['project_accuracy'])} | {pct(d['agreement'])} | "
          f"{pct(d['slm']['exact_match'])} | {pct(d['slm']['argument_f1'])} | {pct(d['slm']['tool_select_f1'])} | "
          f"{pct(d['slm']['hallucination_free_rate'])} |" for c, d in b["per_category"].items()),
        f"| **all** | {results['n_samples']} | {pct(b['accuracy_all_samples'])} | "
        f"{pct(results['metrics']['kinetic']['accuracy'])} | {pct(b['agreement'])} | {pct(slm['exact_match'])} | "
        f"{pct(slm['argument_f1'])} | {pct(slm['tool_select_f1'])} | {pct(slm['hallucination_free_rate'])} |",
        "", "Leaderboard aggregates (BFCL v4's formulas over the categories scored here):", "",
        *(f"- {k}: **{pct(v)}**" for k, v in b["leaderboard"].items()),
        "", "SLM paper metrics over all entries: exact match " + pct(slm["exact_match"])
        + f", argument P/R/F1 {pct(slm['argument_precision'])} / {pct(slm['argument_recall'])} / "
        f"{pct(slm['argument_f1'])}, tool-select F1 {pct(slm['tool_select_f1'])}, hallucination-free rate "
        f"{pct(slm['hallucination_free_rate'])}.", "",
        *decision_lines(results["metrics"].get("decision"), gate),
        f"## Agreement with BFCL's checker: {pct(b['agreement'])} of {results['n_samples']} verdicts", "",
    ]
    if b["disagreements"]:
        lines += [f"{len(b['disagreements'])} disagreements, {b['unexplained']} of them unexplained. Each reason "
                  "was checked by BFCL's checker itself: under the project's rule named, it accepts the output "
                  "(`common.bfcl.agreement`).", "",
                  "| id | project | BFCL | why they differ |", "|---|---|---|---|",
                  *(f"| {r['id']} | {'correct' if r['project_correct'] else r['project_error_kind']} | "
                    f"{'valid' if r['bfcl_valid'] else r['bfcl_error_type']} | {r['explanation']} |"
                    for r in b["disagreements"])]
    else:
        lines.append("Every verdict agrees.")
    if b["checker_crashes"]:
        lines += ["", f"BFCL's checker raised an exception on {b['checker_crashes']} outputs (counted as wrong above; "
                  "BFCL's own runner would stop): see `agreement.jsonl`, error type checker_crash."]
    lines += ["", "BFCL's error types where it marks a sample wrong: " + "; ".join(
        f"{c}: " + ", ".join(f"{k} {n}" for k, n in d["bfcl_error_types"].items())
        for c, d in b["per_category"].items() if d["bfcl_error_types"])]
    return "\n".join(lines) + "\n"
