"""BFCL, the external benchmark: any model or adapter on the leaderboard's single-turn
AST categories, offline, scored by the project's checker and by BFCL's own.

    python -m common.bfcl --model smollm2-135m-instruct                      # the five categories
    python -m common.bfcl --model smollm2-135m-instruct --adapter runs/quickstart/lora-sft/adapter
    python -m common.bfcl --model smollm2-135m-instruct --categories simple_python irrelevance --limit 20
    python -m common.bfcl --score-only --out reports/bfcl/smollm2-135m-instruct

Phases, with files in between (as every evaluation here):
1. generate: each category is an evaluation run of `common.evaluate` on `bfcl:<category>`
   into `<out>/<category>/` (prompts in the model's own tool-call format, with BFCL's
   "Python 3 syntax" hint; resumable, one model load for all categories);
2. score: the project's verdicts (`verdicts.jsonl`, written by the runner) and BFCL's
   AST checker's verdicts on the same parsed calls (`common.bfcl_reference`, run in a
   separate process with its model registry stubbed, so the project's environment
   never installs bfcl-eval's pinned dependencies) go sample by sample into
   `<out>/agreement.jsonl`; the leaderboard's aggregates, the SLM paper's metrics and
   the agreement into `<out>/results.json` and `<out>/README.md`.

The live categories are refused for an adapter whose training data drew requests from
them (its data card lists them), since a score there would not be a held-out score.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from common import bfcl_data
from common.bfcl_agreement import UNEXPLAINED, agreement
from common.bfcl_reference import reference_verdicts
from common.checker import Verdict
from common.errors import ArgumentParser, cli
from common.evaluate import (
    BFCL_PREFIX,
    PREDICTION_KEYS,
    EvalParams,
    evaluate,
    load_data,
)
from common.evaluate import score as score_evaluation
from common.jsonl import read_json, read_jsonl, write_json, write_jsonl
from common.metrics import (
    call_decision,
    compute_metrics,
    latency_summary,
    proportion_ci,
)
from common.models import load_model, resolve_dtype
from common.params import add_set_argument, load_params, parse_overrides
from common.provenance import local_path, provenance, reports_root
from common.tracking import WandbMode, flatten, start_run

CATEGORIES = bfcl_data.SCORED_CATEGORIES


class BFCLParams(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    model: str = Field("smollm2-135m-instruct", description="registry name, hub id or local path")
    adapter: str | None = Field(None, description="PEFT adapter folder on top of the model")
    format: str | None = Field(None, description="tool-call format; default: the model's own")
    categories: list[str] = Field(list(bfcl_data.BENCHMARK_CATEGORIES), description=(
        f"BFCL categories to score: {', '.join(CATEGORIES)}"))
    limit: int | None = Field(None, ge=1, description="only the first N entries of each category")
    call_gate: float | str | None = Field("auto", description=(
        "auto: the adapter's training run's calibrated gate (runs/<...>/call_gate.json) when it has one, "
        "else none; none; or a threshold in (0, 1)"))
    experiment: str = Field("bfcl", description="reports/<experiment>/<run> is the default output")
    run: str | None = Field(None, description="run name; default: the model name (+ adapter run)")
    out: str | None = Field(None, description="output folder; default reports/<experiment>/<run>")
    backend: str = Field("transformers", description="generation backend (common.backends.BACKENDS)")
    device: str = Field("cpu", description="cpu, cuda, cuda:1, ...")
    dtype: str = Field("auto", description="auto (bf16 where the hardware is fast at it), bfloat16, float32")
    batch_size: int = Field(16, ge=1, description="prompts per generate call")
    max_new_tokens: int = Field(256, ge=1, description="the longest answer (BFCL's parallel_multiple needs ~200)")
    seed: int = Field(42, description="generation seed (greedy decoding does not draw on it)")
    wandb: WandbMode = Field("auto", description="online, offline, disabled, or auto (WANDB_MODE, else offline)")
    wandb_project: str = "toolcall-lab"

    @field_validator("categories")
    @classmethod
    def _categories(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if c not in CATEGORIES]
        if bad:
            raise ValueError(f"unknown BFCL categories {bad}; choose from {list(CATEGORIES)}")
        if not v:
            raise ValueError("no categories: name at least one of " + ", ".join(CATEGORIES))
        return list(dict.fromkeys(v))

    @field_validator("call_gate")
    @classmethod
    def _gate(cls, v: float | str | None) -> float | str | None:
        if isinstance(v, str) and v not in ("auto", "none"):
            raise ValueError(f"call_gate must be auto, none or a number in (0, 1), not {v!r}")
        if isinstance(v, float) and not 0 < v < 1:
            raise ValueError(f"call_gate {v} is not in (0, 1)")
        return v

    def resolved(self) -> BFCLParams:
        run = self.run or Path(self.model).name + (f"+{adapter_run_name(self.adapter)}" if self.adapter else "")
        return self.model_copy(update={"run": run, "out": self.out or str(reports_root() / self.experiment / run),
                                       "call_gate": resolve_gate(self.call_gate, self.adapter)})


def adapter_run_name(adapter: str) -> str:
    """`runs/quickstart/lora-sft/adapter` -> `lora-sft` (the folder name `adapter` says nothing)."""
    path = Path(adapter)
    return path.parent.name if path.name == "adapter" else path.name


def resolve_gate(gate: float | str | None, adapter: str | None) -> float | None:
    if gate in (None, "none"):
        return None
    if gate != "auto":
        return float(gate)
    if adapter is None:
        return None
    path = local_path(adapter).parent / "call_gate.json"
    return json.loads(path.read_text())["threshold"] if path.is_file() else None


def trained_on(adapter: str) -> dict[str, int]:
    """BFCL live entries per category in the training split of the adapter's data, read
    from its run's parameters (`<run>/run.json`) and its data card."""
    run_file = local_path(adapter).parent / "run.json"
    unknown = ("so it is unknown whether it trained on BFCL's live categories; score only the non-live ones "
               f"({', '.join(bfcl_data.BENCHMARK_CATEGORIES)})")
    if not run_file.is_file():
        raise FileNotFoundError(f"the adapter {adapter} has no training run beside it ({run_file} is missing), "
                                + unknown)
    data = json.loads(run_file.read_text())["params"].get("data") or ""
    card = local_path(data.partition(":")[0]) / "data_card.json"  # recorded relative to the project root
    if not card.is_file():
        raise FileNotFoundError(f"the adapter's training data {data!r} has no data card ({card}), " + unknown)
    counts: dict[str, int] = {}
    for sample_id in json.loads(card.read_text()).get("bfcl_live_ids_in_train", []):
        category = sample_id.rsplit("_", 1)[0]
        counts[category] = counts.get(category, 0) + 1
    return counts


def check_held_out(params: BFCLParams) -> None:
    """Refuse a live category the adapter's training data drew requests from."""
    live = [c for c in params.categories if c in bfcl_data.LIVE_CATEGORIES]
    if params.adapter is None or not live:
        return
    used = {c: n for c, n in trained_on(params.adapter).items() if c in live}
    if used:
        raise ValueError(
            f"the adapter {params.adapter} was trained on data with BFCL entries from {used} (its data card's "
            "bfcl_live_ids_in_train), so those categories are not held out for it; drop them from --categories, "
            "or train on data built without bfcl_live in request_sources")


def category_params(params: BFCLParams, category: str) -> EvalParams:
    return EvalParams(model=params.model, adapter=params.adapter, format=params.format,
                      data=f"{BFCL_PREFIX}{category}", limit=params.limit,
                      experiment=params.experiment, run=f"{params.run}/{category}",
                      out=str(Path(params.out) / category), backend=params.backend, device=params.device,
                      dtype=params.dtype,
                      batch_size=params.batch_size, max_new_tokens=params.max_new_tokens, seed=params.seed,
                      call_gate=params.call_gate, latency_requests=0, wandb=params.wandb,
                      wandb_project=params.wandb_project, wandb_group=f"{params.experiment}/{params.run}")


def generate(params: BFCLParams, model_and_tokenizer: tuple[Any, Any] | None = None) -> None:
    """Every category's predictions and project verdicts (resumable). `params.json`, which
    `score` reads, is written once every category has been generated (the last such run's)."""
    check_held_out(params)
    for category in params.categories:
        eval_params = category_params(params, category)
        if model_and_tokenizer is None and not _finished(eval_params):
            model_and_tokenizer = load_model(params.model, adapter=params.adapter, dtype=str(
                resolve_dtype(params.dtype, params.device)).removeprefix("torch."), device=params.device,
                seed=params.seed)
        print(f"BFCL {category}: {eval_params.out}", flush=True)
        evaluate(eval_params, model_and_tokenizer)
    write_json(Path(params.out) / "params.json", params.model_dump())


def _finished(eval_params: EvalParams) -> bool:
    done = {r["id"] for r in read_jsonl(Path(eval_params.out) / "predictions.jsonl", PREDICTION_KEYS)}
    return all(s.id in done for s in load_data(eval_params.data, eval_params.limit))


# -- scoring ------------------------------------------------------------------------
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


def score(out: str | Path) -> dict[str, Any]:
    """The project's and BFCL's verdicts on every category in `out`, their agreement, the
    leaderboard's aggregates and the SLM paper's metrics into results.json and README.md."""
    out = Path(out)
    params = BFCLParams.model_validate(json.loads((out / "params.json").read_text()))
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


def command_line(params: BFCLParams) -> str:
    """The command that regenerates this run (predictions are not committed)."""
    defaults = BFCLParams()
    flags = [f"--model {params.model}"] + ([f"--adapter {params.adapter}"] if params.adapter else [])
    if params.categories != defaults.categories:
        flags.append("--categories " + " ".join(params.categories))
    if params.limit:
        flags.append(f"--limit {params.limit}")
    flags.append(f"--call-gate {'none' if params.call_gate is None else params.call_gate}")
    flags.append(f"--run {params.run}")
    sets = [f"{k}={getattr(params, k)}" for k in ("format", "device", "dtype", "batch_size", "max_new_tokens", "seed",
                                                "backend")
            if getattr(params, k) != getattr(defaults, k)]
    return "python -m common.bfcl " + " ".join(flags) + (" --set " + " ".join(sets) if sets else "")


def bfcl_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("bfcl-eval")
    except PackageNotFoundError:
        return "unknown"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def decision_lines(d: dict[str, Any] | None, gate: float | None) -> list[str]:
    if not d or d["auc"] is None:
        return []
    return [f"Call decision: P(call) at the first token has ROC AUC {d['auc']:.3f} between the {d['n']} entries "
            "that need a call and those that need none (irrelevance); mean P(call) "
            f"{d['mean_p_call_when_call_expected']:.2f} where a call is needed, "
            f"{d['mean_p_call_when_none_expected']:.2f} where none is; \"call iff P(call) >= 0.5\" would be "
            f"right on {_pct(d['accuracy_at_half'])} of entries"
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
        f"({results['params']['device']}). Checker: {b['checker']} on the project's parsed calls. "
        f"Command: `{results['command']}`.", "",
        "| category | n | accuracy (BFCL checker) | accuracy (project checker) | agreement | SLM exact match | "
        "argument F1 | tool-select F1 | hallucination-free |", "|---|---|---|---|---|---|---|---|---|",
        *(f"| {c} | {d['n']} | {_pct(d['bfcl_accuracy'])} | {_pct(d['project_accuracy'])} | {_pct(d['agreement'])} | "
          f"{_pct(d['slm']['exact_match'])} | {_pct(d['slm']['argument_f1'])} | {_pct(d['slm']['tool_select_f1'])} | "
          f"{_pct(d['slm']['hallucination_free_rate'])} |" for c, d in b["per_category"].items()),
        f"| **all** | {results['n_samples']} | {_pct(b['accuracy_all_samples'])} | "
        f"{_pct(results['metrics']['kinetic']['accuracy'])} | {_pct(b['agreement'])} | {_pct(slm['exact_match'])} | "
        f"{_pct(slm['argument_f1'])} | {_pct(slm['tool_select_f1'])} | {_pct(slm['hallucination_free_rate'])} |",
        "", "Leaderboard aggregates (BFCL v4's formulas over the categories scored here):", "",
        *(f"- {k}: **{_pct(v)}**" for k, v in b["leaderboard"].items()),
        "", "SLM paper metrics over all entries: exact match " + _pct(slm["exact_match"])
        + f", argument P/R/F1 {_pct(slm['argument_precision'])} / {_pct(slm['argument_recall'])} / "
        f"{_pct(slm['argument_f1'])}, tool-select F1 {_pct(slm['tool_select_f1'])}, hallucination-free rate "
        f"{_pct(slm['hallucination_free_rate'])}.", "",
        *decision_lines(results["metrics"].get("decision"), gate),
        f"## Agreement with BFCL's checker: {_pct(b['agreement'])} of {results['n_samples']} verdicts", "",
    ]
    if b["disagreements"]:
        lines += [f"{len(b['disagreements'])} disagreements, {b['unexplained']} of them unexplained. Each reason "
                  "was checked by BFCL's checker itself: under the project's rule named, it accepts the output "
                  "(`common.bfcl_agreement`).", "",
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


def run(params: BFCLParams | dict[str, Any], model_and_tokenizer: tuple[Any, Any] | None = None) -> dict[str, Any]:
    """Generate what is missing, then score: the results of one model on BFCL."""
    params = params if isinstance(params, BFCLParams) else load_params(BFCLParams, [], params)
    params = params.resolved()
    generate(params, model_and_tokenizer)
    results = score(params.out)
    track(params, results)
    return results


def track(params: BFCLParams, results: dict[str, Any]) -> None:
    """The model's BFCL metrics as one W&B run (each category's evaluation logs its own too)."""
    tracker = start_run(params.model_dump(), mode=params.wandb, project=params.wandb_project,
                        group=params.experiment, name=params.run, job_type="bfcl")
    b = results["metrics"]["bfcl"]
    tracker.summary.update(flatten({"bfcl": {k: v for k, v in b.items() if k != "disagreements"}, "slm":
                                    results["metrics"]["slm"], "decision": results["metrics"]["decision"]}))
    tracker.finish()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("params", nargs="*", help="YAML parameter files, merged in order")
    for name in ("model", "adapter", "format", "run", "out", "device", "experiment"):
        parser.add_argument(f"--{name}", help=BFCLParams.model_fields[name].description)
    parser.add_argument("--limit", type=int, help=BFCLParams.model_fields["limit"].description)
    parser.add_argument("--categories", nargs="+", help=BFCLParams.model_fields["categories"].description)
    parser.add_argument("--call-gate", dest="call_gate", help=BFCLParams.model_fields["call_gate"].description)
    add_set_argument(parser, list(BFCLParams.model_fields))
    parser.add_argument("--score-only", action="store_true", help="rescore the predictions in --out")
    args = parser.parse_args(argv)
    flags = {k: v for k, v in vars(args).items() if k in BFCLParams.model_fields and v is not None}
    if flags.get("call_gate") not in (None, "auto", "none"):
        with contextlib.suppress(ValueError):  # else the validator names the valid values
            flags["call_gate"] = float(flags["call_gate"])
    if args.score_only:
        if not args.out or not (Path(args.out) / "params.json").is_file():
            parser.error("--score-only needs --out, the folder of a finished BFCL run (with its params.json)")
        saved = read_json(Path(args.out) / "params.json", "BFCL run record")
        params = BFCLParams.model_validate(saved | {"out": args.out})
    else:
        params = load_params(BFCLParams, args.params, parse_overrides(args.set) | flags).resolved()
    results = score(params.out) if args.score_only else run(params)
    print((Path(params.out) / "README.md").read_text())
    print(f"results: {Path(params.out) / 'results.json'}")
    return results


if __name__ == "__main__":
    cli(main)
