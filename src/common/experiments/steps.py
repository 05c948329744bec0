"""The steps a notebook (and the quickstart) chains: train, calibrate, evaluate, compare, save.

Each step takes the same layered parameters as its command line (a list of YAML files,
then a dict of overrides), so a notebook's `parameters` cell names files in `params/`
and overrides, and an unknown key fails with the message `common.params` gives. Every
step writes to disk and reads back from it: a rerun skips what is finished (training
resumes from its checkpoint, evaluation from its predictions), and figures and tables
come from the files, never from memory.

A notebook's own results file, `reports/<experiment>/<run>/results.json`, is written
last by `save_results`, with `complete: true` and the notebook's parameters; the sweep runner
takes that as "done" when the parameters are the same, and a notebook run under that name with
other parameters stops at its setup cell (`keep_other_result`).
"""

from __future__ import annotations

import json
import shutil
import time
import types
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common import adapter_card
from common.data.build import DataParams, build
from common.errors import UserError
from common.evaluation.calibrate import calibrate
from common.evaluation.params import EvalParams
from common.evaluation.runner import evaluate
from common.experiments.compare import kinetic_row
from common.experiments.inputs import prepare
from common.experiments.kernel import errors_in_one_line, quiet
from common.experiments.notebooks import check_parameters, declared_parameters, run_name
from common.experiments.tracked import notebook_run, other_result
from common.jsonio import write_json
from common.params import load_params
from common.provenance import local_path, provenance, reports_root, shown


# Set by `notebook_params`: inside a notebook the stages log no W&B run of their own; the notebook's
# results step logs one for the whole configuration (`tracked.notebook_run`).
IN_NOTEBOOK: dict[str, str | None] = {"name": None}


def stage_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """A stage's overrides, with its own W&B run off inside a notebook."""
    return {**overrides, "wandb": "disabled"} if IN_NOTEBOOK["name"] else overrides


def report_dir(experiment: str, run: str) -> Path:
    return reports_root() / experiment / run


@contextmanager
def stage(name: str, timings: dict[str, float]):
    """Print a stage's start and end with its wall time; record the seconds in `timings`."""
    print(f"==> {name}", flush=True)
    t = time.perf_counter()
    try:
        yield
    except BaseException:  # a refusal, an error or Ctrl-C: the start line gets its end line too
        print(f"<== {name}: stopped after {time.perf_counter() - t:.0f} s", flush=True)
        raise
    timings[name] = round(time.perf_counter() - t, 1)
    print(f"<== {name}: {timings[name]:.0f} s", flush=True)


def build_data(files: list[str], overrides: dict[str, Any]) -> tuple[DataParams, dict[str, Any]]:
    """`python -m common.data build <files> --set <overrides>`, as a function: the build's
    parameters and its data card (a build with the same parameters is not redone)."""
    params = load_params(DataParams, files, overrides)
    return params, build(params)


def train(stage_name: str, files: list[str], overrides: dict[str, Any]) -> dict[str, Any]:
    """`python -m common.train <stage> <files> --set <overrides>`, as a function."""
    # TRL takes seconds to import, and only the notebooks that train need it
    from common.training.dpo import train_dpo
    from common.training.params import DPOParams, SFTParams  # (as above)
    from common.training.sft import train_sft  # (as above)
    cls, fn = {"sft": (SFTParams, train_sft), "dpo": (DPOParams, train_dpo)}[stage_name]
    return fn(load_params(cls, files, stage_overrides(overrides)))


def eval_params(files: list[str], overrides: dict[str, Any]) -> EvalParams:
    return load_params(EvalParams, files, overrides).resolved()


def evaluate_model(files: list[str], overrides: dict[str, Any]) -> dict[str, Any]:
    """`python -m common.evaluate <files> --set <overrides>`, as a function."""
    return evaluate(eval_params(files, stage_overrides(overrides)))


# what a BFCL run takes from an evaluation's parameters, so both decode alike
BFCL_SHARED_KEYS = ("format", "backend", "dtype", "device", "seed", "batch_size")


def bfcl_run(eval_files: list[str], eval_set: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`python -m common.bfcl` (`overrides`: model, adapter, categories, ...) with the generation
    settings and W&B of the evaluation `eval_files` + `eval_set`, as given (the BFCL run resolves
    `auto` itself, for its model and adapter)."""
    from common.bfcl.run import run  # (the BFCL runner imports the engines)
    ev = load_params(EvalParams, eval_files, eval_set)
    return run({**{k: getattr(ev, k) for k in BFCL_SHARED_KEYS},
                **{k: eval_set[k] for k in ("experiment", "wandb", "wandb_group") if k in eval_set},
                **stage_overrides(overrides)})


def adapter_of(train_results: dict[str, Any]) -> dict[str, Any]:
    """The evaluation overrides that load what a training run produced."""
    outputs = train_results["outputs"]
    if "adapter" in outputs:
        return {"model": train_results["model"], "adapter": outputs["adapter"]}
    return {"model": outputs["model"], "adapter": None}


def calibrated_gate(train_results: dict[str, Any], samples: int, no_call_accuracy: float,
                    dtype: str = "auto", device: str = "cpu", backend: str = "transformers") -> dict[str, Any]:
    """The run's call gate (`common.evaluation.calibrate`), read from its folder when already chosen
    with the same settings, else chosen now."""
    folder = run_dir(train_results)
    path = folder / "call_gate.json"
    if path.exists():
        saved = json.loads(path.read_text())
        if (saved.get("requested_samples") == samples and saved["target_no_call_accuracy"] == no_call_accuracy
                and saved.get("backend", "transformers") == backend):
            adapter_card.keep_gate(train_results["outputs"].get("adapter"), saved)  # a run calibrated before it did
            return saved
    return calibrate(folder, samples, no_call_accuracy, dtype=dtype, device=device, backend=backend)


def save_results(out: str | Path, notebook: str, params: dict[str, Any], metrics: dict[str, Any], *,
                 figures: Callable[[], list[Path]] | None = None,
                 histories: dict[str, list[dict[str, Any]]] | None = None, **extra: Any) -> dict[str, Any]:
    """The notebook's results file: its parameters, metrics and provenance, complete; then the
    notebook's W&B run (`tracked.notebook_run`: `figures` draws the figures it logs, `histories`
    are the training curves it replays)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"notebook": notebook, "params": params, "metrics": metrics, **extra,
               "provenance": provenance(), "complete": True}
    write_json(out / "results.json", results)
    notebook_run(notebook, params, metrics, extra, figures, histories)
    return results


def train_and_evaluate(*, stage_name: str = "sft", experiment: str, run: str, train_files: list[str],
                       train_set: dict[str, Any], eval_files: list[str], eval_set: dict[str, Any],
                       gate_samples: int = 160, gate_no_call_accuracy: float | None = None,
                       wandb_group: str | None = None, timings: dict[str, float] | None = None,
                       restart: bool = False) -> dict[str, Any]:
    """SFT (LoRA or full) or DPO (`train_set["sft"]` names the SFT run) into
    runs/<experiment>/<run>, the call gate chosen on unused training samples (when
    `gate_no_call_accuracy` is set), then the evaluation into reports/<experiment>/<run>/eval.
    A rerun resumes each stage; `restart` deletes the run's weights and evaluation first.
    Returns {train, gate, eval, eval_dir, row, timings}: this call's stage times, also added
    to `timings` when given (a notebook sums several calls' there)."""
    mine: dict[str, float] = {}
    common = {"experiment": experiment, "wandb_group": wandb_group}
    out = report_dir(experiment, run) / "eval"
    if restart:  # the training deletes its own folder (resume: never); these predictions were of it
        shutil.rmtree(out, ignore_errors=True)
    with stage(f"train {run}", mine):
        tr = train(stage_name, train_files,
                   {**train_set, **common, "run": run, **({"resume": "never"} if restart else {})})
    gate = None
    if gate_no_call_accuracy is not None:
        ev = eval_params(eval_files, eval_set)
        with stage(f"calibrate the call gate of {run}", mine):
            gate = calibrated_gate(tr, gate_samples, gate_no_call_accuracy, dtype=ev.dtype, device=ev.device,
                                   backend=ev.backend)
        print(f"    call gate {gate['threshold']:.4f}: on {gate['n']} unused training samples it calls on "
              f"{gate['call_recall']:.0%} of those that need a call and on {1 - gate['no_call_accuracy']:.0%} "
              "of the others", flush=True)
    with stage(f"evaluate {run}", mine):
        res = evaluate_model(eval_files, {**eval_set, **adapter_of(tr), **common, "run": run, "out": str(out),
                                          "call_gate": gate["threshold"] if gate else None})
    if timings is not None:
        timings.update(mine)
    return {"train": tr, "gate": gate, "eval": res, "eval_dir": str(out), "row": kinetic_row(run, res),
            "timings": mine}


def recipe(params: dict[str, Any], prefix: str = "sft", **changes: Any) -> dict[str, Any]:
    """The keyword arguments of `train_and_evaluate` that a notebook's parameters hold: its
    `<prefix>_params`/`<prefix>_set` (training), `eval_params`/`eval_set`, the call gate's and
    `experiment`/`run`/`wandb_group`; `changes` on top (a run name, other overrides)."""
    return {"stage_name": "dpo" if prefix == "dpo" else "sft", "experiment": params["experiment"],
            "run": params["run"], "train_files": params[f"{prefix}_params"], "train_set": params[f"{prefix}_set"],
            "eval_files": params["eval_params"], "eval_set": params["eval_set"],
            "gate_samples": params["gate_samples"], "gate_no_call_accuracy": params["gate_no_call_accuracy"],
            "wandb_group": params.get("wandb_group"), "restart": params.get("restart", False), **changes}


def one_run(notebook: str, params: dict[str, Any], timings: dict[str, float]) -> dict[str, Any]:
    """One SFT run of a sweep's notebook (04, 06): trained, gated, evaluated, and its results
    saved in reports/<experiment>/<run>/ with its training curve. Returns `train_and_evaluate`'s
    dict with `out`, the report folder, and `results`, the notebook's results."""
    r = train_and_evaluate(**recipe(params), timings=timings)
    out = report_dir(params["experiment"], params["run"])
    history = keep_training(r["train"], out, summary=False)  # results.json below holds the summary
    curve = json.loads(history.read_text())

    def drawn() -> list[Path]:
        from common.experiments import figures  # plotting takes seconds to import: only W&B's figures need it
        return [figures.training_dashboard({params["run"]: curve}, out / "training.png")]

    results = save_results(out, notebook, params, r["row"], train=training_summary(r["train"]),
                           gate=gate_record(r["gate"]), eval_dir=shown(r["eval_dir"]), timings=timings,
                           figures=drawn, histories={params["run"]: curve})
    return {**r, "out": out, "results": results}


def save_comparison(out: str | Path, notebook: str, params: dict[str, Any], comp: dict[str, Any],
                    trained: dict[str, dict[str, Any]] | None = None,
                    histories: dict[str, str | Path] | None = None, title: str | None = None,
                    timings: dict[str, float] | None = None) -> dict[str, Any]:
    """A comparison (`compare`) saved as its figures' source, `comparison.json`, with the
    training curves of `trained` (training results, whose history is copied beside it) and
    of `histories` (history files), then the notebook's results file. Returns the results."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    curves = {name: keep_training(tr, out / name, summary=False) for name, tr in (trained or {}).items()}
    curves |= {name: Path(path) for name, path in (histories or {}).items()}
    comp = {**comp, **({"title": title} if title is not None else {})}
    if trained is not None or histories is not None:
        comp["histories"] = {name: json.loads(path.read_text()) for name, path in curves.items()}
    write_json(out / "comparison.json", comp)
    metrics = {"table": comp["table"], "head_to_head": comp.get("head_to_head")}
    if "bfcl" in comp or "bfcl" in params:  # BFCL beside the held-out set, or a notebook that could show it
        metrics["bfcl"] = comp.get("bfcl")

    def drawn() -> list[Path]:
        from common.experiments import figures  # plotting takes seconds to import: only W&B's figures need it
        return figures.comparison_figures(out / "comparison.json")

    return save_results(out, notebook, params, metrics, figures=drawn, histories=comp.get("histories"),
                        **({"timings": timings} if timings is not None else {}))


def gate_record(gate: dict[str, Any] | None) -> dict[str, Any] | None:
    """What reports/ keeps of a call gate's calibration: all but its samples' ids."""
    return {k: v for k, v in gate.items() if k != "samples"} if gate else None


def keep_training(tr: dict[str, Any], folder: str | Path, summary: bool = True) -> Path:
    """What reports/ keeps of a training run (runs/ is not committed): its `history.json`
    and, with `summary`, `training_summary` as `results.json`, in `folder`. Returns the history's path."""
    folder = Path(folder)
    history = copy_history(tr, folder / "history.json")
    if summary:
        write_json(folder / "results.json", training_summary(tr))
    return history


def training_summary(tr: dict[str, Any]) -> dict[str, Any]:
    """What a notebook's results keep of a training run (its folder is not committed)."""
    return {k: tr.get(k) for k in ("stage", "run", "model", "method", "steps", "final", "throughput", "invocations",
                                   "parameters", "data", "params")}


def copy_history(tr: dict[str, Any], dest: str | Path) -> Path:
    """The run's history.json (runs/ is not committed) beside the notebook's results."""
    folder = run_dir(tr)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text((folder / "history.json").read_text())
    return dest


def notebook_params(notebook: str, namespace: dict[str, Any]) -> dict[str, Any]:
    """The values of the notebook's declared parameters (as injected or edited), checked: an
    override key its stage does not know fails here, before anything runs; then what they name on
    disk is there (`inputs.prepare`: data built, verdicts judged again from committed predictions)
    or named in one line with the command that makes it. A `run` left None is named from the
    parameters (`notebooks.RUN_NAMES`). A user error shows as its one line, and third-party noise is
    off (`kernel.quiet`)."""
    errors_in_one_line()
    quiet()
    IN_NOTEBOOK["name"] = notebook
    declared = declared_parameters(notebook)
    params = {k: namespace[k] for k in declared}
    # papermill injects an undeclared key without complaint: anything else defined by now is one
    # (besides IPython's own names, such as In, Out and open, and the setup cell's)
    shell = namespace.get("get_ipython")
    setup = {"os", "ROOT", "ex", "P", *(shell().user_ns_hidden if callable(shell) and shell() else ())}
    extra = {k: v for k, v in namespace.items() if not k.startswith("_") and k not in declared
             and k not in setup and not isinstance(v, types.ModuleType)}
    check_parameters(notebook, {**params, **extra}, "the parameters given")
    if params.get("run", "") is None:  # named from the parameters (notebooks.RUN_NAMES)
        params["run"] = namespace["run"] = run_name(notebook, params)
        print(f"run: {params['run']} (named from the parameters)", flush=True)
    keep_other_result(notebook, params)
    prepare(params)
    return params


def keep_other_result(notebook: str, params: dict[str, Any]) -> None:
    """A notebook's run never replaces, unasked, a complete result made with other parameters:
    when reports/<experiment>/<run>/results.json is complete and records other notebook parameters
    (`tracked.other_result`: all but those that name, place or restart a run), one line names the
    first differences and the way out (another `run`; `restart = True` where the notebook declares
    it), before anything is built or written. The same parameters run again: a reproduction, whose
    changes git shows. (Only the notebook's parameters are compared: a params/*.yaml file they
    name is versioned by git, and a training run's folder refuses other settings itself. A notebook
    given its own `out_dir`, 07 or 08, writes there and is the caller's to place.)"""
    if not params.get("experiment") or not params.get("run") or params.get("out_dir"):
        return
    folder = report_dir(params["experiment"], params["run"])
    declared = declared_parameters(notebook)
    diff = other_result(folder, params, declared)
    if not diff:
        return
    if params.get("restart"):
        print(f"restart: replacing {shown(folder)}, made with other parameters ({'; '.join(diff)})", flush=True)
        return
    ways = ("give this run another `run` name, or `restart = True` replaces that result" if "restart" in declared
            else f"give this run another `run` name, or delete {shown(folder)} to make it again")
    raise UserError(f"{shown(folder)} holds a complete result made with other parameters ({'; '.join(diff)}); {ways}")


def run_dir(tr: dict[str, Any]) -> Path:
    """A training run's folder (runs/<experiment>/<run>), from its results."""
    return local_path(tr["outputs"].get("adapter") or tr["outputs"]["model"]).parent
