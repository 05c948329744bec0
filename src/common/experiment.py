"""The steps a notebook (and the quickstart) chains: train, calibrate, evaluate, compare, save.

Each step takes the same layered parameters as its command line (a list of YAML files,
then a dict of overrides), so a notebook's `parameters` cell names files in `params/`
and overrides, and an unknown key fails with the message `common.params` gives. Every
step writes to disk and reads back from it: a rerun skips what is finished (training
resumes from its checkpoint, evaluation from its predictions), and figures and tables
come from the files, never from memory.

A notebook's own results file, `reports/<experiment>/<run>/results.json`, is written
last by `save_results`, with `complete: true`; the sweep runner takes that as "done".
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common.checker import Verdict
from common.evaluate import EvalParams, evaluate
from common.jsonl import read_jsonl, write_json
from common.metrics import bootstrap_ci, head_to_head, paired_difference
from common.params import load_params
from common.provenance import local_path, provenance, reports_root, shown


def report_dir(experiment: str, run: str) -> Path:
    return reports_root() / experiment / run


@contextmanager
def stage(name: str, timings: dict[str, float]):
    """Print a stage's start and end with its wall time; record the seconds in `timings`."""
    print(f"==> {name}", flush=True)
    t = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - t, 1)
    print(f"<== {name}: {timings[name]:.0f} s", flush=True)


def train(stage_name: str, files: list[str], overrides: dict[str, Any]) -> dict[str, Any]:
    """`python -m common.train <stage> <files> --set <overrides>`, as a function."""
    from common.train import DPOParams, SFTParams, train_dpo, train_sft
    cls, fn = {"sft": (SFTParams, train_sft), "dpo": (DPOParams, train_dpo)}[stage_name]
    return fn(load_params(cls, files, overrides))


def eval_params(files: list[str], overrides: dict[str, Any]) -> EvalParams:
    return load_params(EvalParams, files, overrides).resolved()


def evaluate_model(files: list[str], overrides: dict[str, Any]) -> dict[str, Any]:
    """`python -m common.evaluate <files> --set <overrides>`, as a function."""
    return evaluate(eval_params(files, overrides))


def adapter_of(train_results: dict[str, Any]) -> dict[str, Any]:
    """The evaluation overrides that load what a training run produced."""
    outputs = train_results["outputs"]
    if "adapter" in outputs:
        return {"model": train_results["model"], "adapter": outputs["adapter"]}
    return {"model": outputs["model"], "adapter": None}


def calibrated_gate(train_results: dict[str, Any], samples: int, no_call_accuracy: float,
                    dtype: str = "auto", device: str = "cpu") -> dict[str, Any]:
    """The run's call gate (`common.calibrate`), read from its folder when already chosen
    with the same settings, else chosen now."""
    from common.calibrate import calibrate
    folder = run_dir(train_results)
    path = folder / "call_gate.json"
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("requested_samples") == samples and saved["target_no_call_accuracy"] == no_call_accuracy:
            return saved
    return calibrate(folder, samples, no_call_accuracy, dtype=dtype, device=device)


def verdicts(eval_dir: str | Path) -> list[Verdict]:
    rows = read_jsonl(Path(eval_dir) / "verdicts.jsonl")
    return [Verdict.from_dict({k: v for k, v in r.items() if k != "parsed"}) for r in rows]


def results_of(eval_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(eval_dir) / "results.json").read_text())


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
    pct = lambda x: "n/a" if x is None else f"{100 * x:.1f}%"
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
    out: dict[str, Any] = {"table": rows, "latencies": {
        name: [r["seconds"] for r in read_jsonl(Path(folder) / "latency.jsonl", ("seconds",))]
        for name, folder in evals.items()}}
    if a and b:
        out["head_to_head"] = {"a": a, "b": b, **head_to_head(vs[a], vs[b]),
                               "difference": paired_difference(vs[a], vs[b])}
    if bfcl:
        out["bfcl"] = bfcl_rows(bfcl, evals if heldout is None else heldout)
    return out


def save_results(out: str | Path, notebook: str, params: dict[str, Any], metrics: dict[str, Any],
                 **extra: Any) -> dict[str, Any]:
    """The notebook's results file: its parameters, metrics and provenance, complete."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"notebook": notebook, "params": params, "metrics": metrics, **extra,
               "provenance": provenance(), "complete": True}
    write_json(out / "results.json", results)
    return results


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The Kinetic table of `compare` as markdown."""
    pct = lambda x: "n/a" if x is None else f"{100 * x:.1f}%"
    sec = lambda x: "n/a" if x is None else f"{x:.2f} s"
    lines = ["| model | n | accuracy (95% CI) | tool-name acc. | failure rate | no-tool acc. | tool-select F1 "
             "| p95 latency |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ci = r["accuracy_ci95"]
        lines.append(f"| {r['model']} | {r['n']} | {pct(r['accuracy'])}"
                     + (f" ({pct(ci[0])}–{pct(ci[1])})" if ci else "")
                     + f" | {pct(r['tool_name_accuracy'])} | {pct(r['failure_rate'])} | {pct(r['no_tool_accuracy'])}"
                     f" | {pct(r['tool_selection_f1'])} | {sec(r['p95_latency_s'])} |")
    return "\n".join(lines) + "\n"


def train_and_evaluate(stage_name: str, experiment: str, run: str, train_files: list[str],
                       train_set: dict[str, Any], eval_files: list[str], eval_set: dict[str, Any],
                       gate_samples: int = 160, gate_no_call_accuracy: float | None = None,
                       wandb_group: str | None = None, timings: dict[str, float] | None = None) -> dict[str, Any]:
    """SFT (LoRA or full) or DPO (`train_set["sft"]` names the SFT run) into
    runs/<experiment>/<run>, the call gate chosen on unused training samples (when
    `gate_no_call_accuracy` is set), then the evaluation into reports/<experiment>/<run>/eval.
    Returns {train, gate, eval, eval_dir, row, timings}: this call's stage times, also added
    to `timings` when given (a notebook sums several calls' there)."""
    mine: dict[str, float] = {}
    common = {"experiment": experiment, "wandb_group": wandb_group}
    with stage(f"train {run}", mine):
        tr = train(stage_name, train_files, {**train_set, **common, "run": run})
    gate = None
    if gate_no_call_accuracy is not None:
        ev = eval_params(eval_files, eval_set)
        with stage(f"calibrate the call gate of {run}", mine):
            gate = calibrated_gate(tr, gate_samples, gate_no_call_accuracy, dtype=ev.dtype, device=ev.device)
        print(f"    call gate {gate['threshold']:.4f}: on {gate['n']} unused training samples it calls on "
              f"{gate['call_recall']:.0%} of those that need a call and on {1 - gate['no_call_accuracy']:.0%} "
              "of the others", flush=True)
    out = report_dir(experiment, run) / "eval"
    with stage(f"evaluate {run}", mine):
        res = evaluate_model(eval_files, {**eval_set, **adapter_of(tr), **common, "run": run, "out": str(out),
                                          "call_gate": gate["threshold"] if gate else None})
    if timings is not None:
        timings.update(mine)
    return {"train": tr, "gate": gate, "eval": res, "eval_dir": str(out), "row": kinetic_row(run, res),
            "timings": mine}


def training_summary(tr: dict[str, Any]) -> dict[str, Any]:
    """What a notebook's results keep of a training run (its folder is not committed)."""
    return {k: tr.get(k) for k in ("stage", "run", "model", "method", "steps", "final", "throughput", "parameters",
                                   "data", "params")}


def copy_history(tr: dict[str, Any], dest: str | Path) -> Path:
    """The run's history.json (runs/ is not committed) beside the notebook's results."""
    folder = run_dir(tr)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text((folder / "history.json").read_text())
    return dest


def notebook_params(notebook: str, namespace: dict[str, Any]) -> dict[str, Any]:
    """The values of the notebook's declared parameters (as injected or edited), checked:
    an override key its stage does not know fails here, before anything runs."""
    import types

    from common.notebooks import check_parameters, declared_parameters
    declared = declared_parameters(notebook)
    params = {k: namespace[k] for k in declared}
    # papermill injects an undeclared key without complaint: anything else defined by now is one
    # (besides IPython's own names, such as In, Out and open, and the setup cell's)
    shell = namespace.get("get_ipython")
    setup = {"os", "ROOT", "ex", "P", *(shell().user_ns_hidden if callable(shell) and shell() else ())}
    extra = {k: v for k, v in namespace.items() if not k.startswith("_") and k not in declared
             and k not in setup and not isinstance(v, types.ModuleType)}
    check_parameters(notebook, {**params, **extra}, "the parameters given")
    return params


def run_dir(tr: dict[str, Any]) -> Path:
    """A training run's folder (runs/<experiment>/<run>), from its results."""
    return local_path(tr["outputs"].get("adapter") or tr["outputs"]["model"]).parent
