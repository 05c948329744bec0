"""Run a notebook once per parameter set, through papermill, into reports/<experiment>/<run>/.

    python -m common.experiments.sweep params/sweeps/lora_rank.yaml            # make sweep SWEEP=lora_rank
    python -m common.experiments.sweep params/sweeps/lora_rank.yaml --only r8 r32
    python -m common.experiments.sweep params/sweeps/data_scale.yaml --set eval_set.limit=20

A sweep file names the notebook, the experiment, the parameters every run shares
(`params`), one entry per run (`runs: {name: parameters}`, merged on top: override
dicts key by key) and what its figure plots (`figure: {x, metrics, ...}`, dotted paths
into each run's results.json). Every run's parameters are checked against the
notebook before the first one starts.

Each run writes `reports/<experiment>/<run>/`: the executed notebook, its
`results.json` (complete: true when the last cell ran), the evaluation's predictions,
verdicts and summary (in `eval/`), and its figures. (Notebooks that train several models,
01, 03 and 05, put each one's evaluation beside it, in `reports/<experiment>/<run>-<name>/`.)
A run whose results are complete with the same parameters is skipped; one complete with other
parameters stops the sweep before anything runs or is written (`restart` replaces it); a run
that fails is reported (its executed notebook keeps the traceback) and the sweep goes on with
the others; rerunning the sweep resumes the failed or interrupted
ones (training from its last checkpoint, evaluation from its predictions). W&B runs
are grouped by the sweep's name (offline unless WANDB_MODE says otherwise; upload
with `wandb sync wandb/offline-run-*`). `sweep.json` records every run's status and
time, and the sweep's figure is redrawn from the saved results at the end.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from common.errors import ArgumentParser, cli
from common.experiments.figures import sweep_figures
from common.experiments.notebooks import (
    check_parameters,
    declared_parameters,
    execute,
    notebook_path,
)
from common.experiments.tracked import other_result
from common.jsonio import write_json
from common.params import (
    ParamsError,
    add_set_argument,
    load_params,
    merge,
    overrides_of,
)
from common.provenance import git_state, reports_root, shown


class FigureSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    x: str = Field(description="dotted path in a run's results.json of the swept value")
    x_label: str | None = None
    metrics: list[str] = Field(description="dotted paths of the metrics to plot (fractions)")
    ci: dict[str, str] = Field(default_factory=dict, description="metric path: path of its [low, high] interval")
    series: str | None = Field(None, description="dotted path that splits the runs into lines")
    log_x: bool = False
    note: str | None = None


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="the sweep's name: W&B group and figure name")
    notebook: str = Field(description="the notebook each run executes")
    experiment: str = Field(description="runs go to reports/<experiment>/<run>/")
    params: dict[str, Any] = Field(default_factory=dict, description="parameters every run shares")
    runs: dict[str, dict[str, Any]] = Field(description="run name: its parameters")
    figure: FigureSpec

    @field_validator("runs")
    @classmethod
    def _runs(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if not v:
            raise ValueError("a sweep needs at least one run")
        return {k: (r or {}) for k, r in v.items()}

    def run_params(self, run: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        p = merge(merge(self.params, self.runs[run]), overrides or {})
        tags = {"experiment": self.experiment, "run": run}
        if "wandb_group" in declared_parameters(self.notebook):  # 00 and 07 log nothing to W&B
            tags["wandb_group"] = self.name
        return {**p, **tags}

    def check(self, overrides: dict[str, Any] | None = None) -> None:
        for run in self.runs:
            check_parameters(self.notebook, self.run_params(run, overrides), f"sweep {self.name}, run {run}")


def load_sweep(path: str | Path) -> SweepSpec:
    spec = load_params(SweepSpec, [path])
    notebook_path(spec.notebook)  # fails with the list of notebooks if it names none
    return spec


def is_complete(folder: Path) -> bool:
    path = folder / "results.json"
    try:
        return bool(json.loads(path.read_text()).get("complete"))
    except (OSError, ValueError):
        return False


def refuse_other_results(spec: SweepSpec, root: Path, runs: list[str], overrides: dict[str, Any] | None,
                         declared: dict[str, Any]) -> None:
    """Before the first run: a run whose folder holds a complete result made with other parameters
    is neither taken as done nor replaced unasked (nothing is executed or written); `restart`
    replaces it."""
    for run in runs:
        params = spec.run_params(run, overrides)
        other = other_result(root / run, {**declared, **params}, declared)
        if other and not params.get("restart"):
            way = (f"`--only {run} --set restart=true` replaces it, or " if "restart" in declared else
                   "delete it first, or ")
            raise ParamsError(f"sweep {spec.name}: {shown(root / run)} holds a complete result made with other "
                              f"parameters ({'; '.join(other)}); {way}name the run apart in the sweep file")


def run_sweep(spec: SweepSpec, only: list[str] | None = None, overrides: dict[str, Any] | None = None,
              log_output: bool = False) -> dict[str, Any]:
    """Execute every run that is not complete with the same parameters (after refusing, before any
    runs, one complete with other parameters and no `restart`); returns the sweep record (also saved)."""
    spec.check(overrides)
    unknown = sorted(set(only or []) - set(spec.runs))
    if unknown:
        raise ParamsError(f"no run {unknown} in sweep {spec.name}; its runs: {list(spec.runs)}")
    root = reports_root() / spec.experiment
    declared = declared_parameters(spec.notebook)
    refuse_other_results(spec, root, [r for r in spec.runs if not only or r in only], overrides, declared)
    root.mkdir(parents=True, exist_ok=True)
    record_path = root / "sweep.json"
    old = json.loads(record_path.read_text()) if record_path.exists() else {}
    previous = {r["run"]: r for r in old.get("runs", [])}
    record = {"name": spec.name, "notebook": spec.notebook, "experiment": spec.experiment,
              **spec.figure.model_dump(), "git": git_state(), "runs": []}
    for run in spec.runs:
        folder = root / run
        entry = {"run": run, "params": spec.run_params(run, overrides)}
        if only and run not in only:
            entry.update({k: v for k, v in previous.get(run, {}).items() if k not in entry}
                         or {"status": "complete" if is_complete(folder) else "not run"})
        elif is_complete(folder) and not other_result(folder, {**declared, **entry["params"]}, declared):
            print(f"[sweep] {run}: complete, skipped", flush=True)
            before = previous.get(run, {})  # what the run that completed it recorded
            entry.update({"status": "complete", "seconds": before.get("seconds"),
                          **({"notebook_out": before["notebook_out"]} if "notebook_out" in before else {})})
        else:
            print(f"[sweep] {run}: running {Path(spec.notebook).name} into {shown(folder)}", flush=True)
            t = time.perf_counter()
            try:
                execute(spec.notebook, folder, entry["params"], log_output=log_output)
                entry["status"] = "complete" if is_complete(folder) else "failed"
                if entry["status"] == "failed":
                    entry["error"] = "the notebook ran but did not write a complete results.json"
            except Exception as err:  # a failed run is recorded and the sweep goes on
                entry.update({"status": "failed", "error": f"{type(err).__name__}: {str(err).strip()[-2000:]}"})
            entry["seconds"] = round(time.perf_counter() - t, 1)
            entry["notebook_out"] = shown(folder / Path(spec.notebook).name)
            print(f"[sweep] {run}: {entry['status']} in {entry['seconds']:.0f} s", flush=True)
        record["runs"].append(entry)
        write_json(record_path, record)
    record["figures"] = [shown(p) for p in sweep_figures(record_path)]
    write_json(record_path, record)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", help="a sweep file, e.g. params/sweeps/lora_rank.yaml")
    parser.add_argument("--only", nargs="*", help="run only these runs of the sweep")
    add_set_argument(parser)  # overrides every run's parameters
    parser.epilog = ("--set KEY=VALUE sets a parameter of every run of the sweep: the keys are those of the "
                     "sweep's notebook's parameters cell, checked against it before the first run.")
    parser.add_argument("--log-output", action="store_true", help="stream the notebooks' output here")
    args = parser.parse_args(argv)
    record = run_sweep(load_sweep(args.sweep), args.only, overrides_of(args), args.log_output)
    failed = [r for r in record["runs"] if r["status"] == "failed"]
    for r in record["runs"]:
        print(f"  {r['run']:<16} {r['status']:<9} {r.get('seconds') or 0:>7.0f} s"
              + (f"  {r['error'].splitlines()[0][:150]}" if r.get("error") else ""))
    print(f"sweep {record['name']}: {len(record['runs']) - len(failed)} of {len(record['runs'])} runs complete; "
          f"figure {', '.join(record['figures'])}")
    executed = [r["notebook_out"] for r in failed if r.get("notebook_out")]  # (a refused run executes nothing)
    if executed:
        print("failed runs keep their traceback in the executed notebook: " + ", ".join(executed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(cli(main))
