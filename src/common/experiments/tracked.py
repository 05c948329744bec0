"""One W&B run per notebook configuration, made when the notebook saves its results.

Inside a notebook the training and evaluation stages log no W&B run of their own
(`steps.train`, `steps.evaluate_model`); the notebook's results step (`steps.save_results`) makes
one run that holds everything a researcher compares an ablation by:

- name: the notebook's run (named from its parameters, `r16-all`); group: `wandb_group` or the
  experiment (a sweep's runs share it); job type `notebook`; tags: the notebook, model, method,
  format, `r{lora_r}`, `n{limit}`;
- config: the notebook's parameters (`sft_set/lora_r`, ...), and the resolved parameters of what it
  trained (`train/lora_alpha`, ...) and evaluated (`eval/max_new_tokens`, ...), without the keys that
  only name or place a run (`IDENTITY`), so two runs of a sweep differ in exactly their swept
  parameters and what follows from them;
- summary: the notebook's metrics under stable names (`accuracy`, `tool_name_accuracy`, or
  `<row>/accuracy` for a comparison; `gate/threshold`; `train/final_loss`);
- the per-sample answers of each evaluation as a `wandb.Table` (`predictions`), the notebook's
  figures as images, and each training curve replayed (`<name>/train/loss` against
  `<name>/train/step`).

Offline by default (`wandb sync <the folder printed>` uploads it); `WANDB_MODE=disabled` or
`wandb: disabled` in the notebook's `eval_set` turns it off.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.experiments.compare import results_of, rows_by_model, verdicts
from common.jsonio import read_jsonl, restore
from common.provenance import local_path, portable
from common.tracking import flatten, resolve_mode, start_run

# keys that name, place or restart a run: never compared across a sweep
IDENTITY = frozenset({"run", "out", "experiment", "wandb", "wandb_project", "wandb_group", "restart", "resume",
                      "adapter", "sft", "eval_dir"})
TABLE_COLUMNS = ["evaluation", "id", "scenario", "correct", "error_kind", "expected", "output", "answer", "p_call"]


def compared(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`d` flattened to `a/b` keys (lists as JSON), without the identity keys."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if k in IDENTITY:
            continue
        if isinstance(v, dict):
            out.update(compared(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = json.dumps(v) if isinstance(v, (list, tuple)) else v
    return out


# the top-level notebook parameters that name or place a run, or restart it: a rerun may change them
NAMING = frozenset({"run", "experiment", "out_dir", "wandb", "wandb_project", "wandb_group", "restart", "resume"})


def differences(recorded: dict[str, Any], params: dict[str, Any], defaults: dict[str, Any] | None = None,
                most: int = 3) -> list[str]:
    """Where two notebook configurations differ, beyond the top-level keys that name, place or
    restart a run (`NAMING`; nested keys all count, an adapter's path too): `key: <recorded> there,
    <given> now` for the first `most`, then how many more. A key the record lacks reads as its
    default in `defaults` (a parameter the notebook declared later)."""
    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            if isinstance(v, dict) and v:
                out.update(flat(v, f"{prefix}{k}/"))
            else:
                out[f"{prefix}{k}"] = json.dumps(v) if isinstance(v, (list, tuple)) else v
        return out
    mine = {k: v for k, v in portable(params).items() if k not in NAMING}  # paths as a record writes them
    had = {k: v for k, v in {**portable(defaults or {}), **recorded}.items() if k not in NAMING}
    was, now = flat(had), flat(mine)
    keys = [k for k in sorted(was.keys() | now.keys()) if was.get(k, ...) != now.get(k, ...)]

    def text(d: dict[str, Any], k: str) -> str:
        return repr(d[k]) if k in d else "(not set)"
    out = [f"{k}: {text(was, k)} there, {text(now, k)} now" for k in keys[:most]]
    return out + ([f"{len(keys) - most} more"] if len(keys) > most else [])


def other_result(folder: str | Path, params: dict[str, Any], defaults: dict[str, Any] | None = None) -> list[str]:
    """How the complete result in `folder` (its results.json) was made with other notebook
    parameters than `params` (`differences`, with the notebook's declared `defaults`); empty when
    there is none, it is unfinished, or it was made with the same ones."""
    try:
        done = json.loads((Path(folder) / "results.json").read_text())
    except (OSError, ValueError):
        return []  # no result, or one cut off while written: a run makes it
    if not done.get("complete"):
        return []
    if not isinstance(done.get("params"), dict):
        return ["no parameters recorded"]
    return differences(done["params"], params, defaults)


def eval_dirs(metrics: dict[str, Any], extra: dict[str, Any], run: str) -> dict[str, Path]:
    """The evaluations a notebook's results name: each comparison row's, or the run's own."""
    dirs = {name: r["eval_dir"] for name, r in rows_by_model(metrics).items() if r.get("eval_dir")}
    if extra.get("eval_dir"):
        dirs[run] = extra["eval_dir"]
    return {name: local_path(d) for name, d in dirs.items() if (local_path(d) / "results.json").is_file()}


def table_rows(name: str, folder: Path) -> list[list[Any]]:
    """One row per sample of an evaluation: its verdict and the answer it was judged on."""
    restore(folder / "predictions.jsonl")
    answers = {r["id"]: r for r in read_jsonl(folder / "predictions.jsonl", ("id", "text"))}
    rows = []
    for v in verdicts(folder):  # judged again from the committed answers where a clone has only those
        a = answers.get(v.id, {})
        rows.append([name, v.id, v.scenario, v.correct, v.error_kind, ", ".join(v.expected_names),
                     ", ".join(v.output_names), a.get("text"), a.get("p_call")])
    return rows


def tags(notebook: str, train: dict[str, Any], evaluation: dict[str, Any]) -> list[str]:
    out = [notebook, train.get("model") or evaluation.get("model"), train.get("method"),
           train.get("format") or evaluation.get("format")]
    if train.get("method") in ("lora", "qlora"):
        out.append(f"r{train.get('lora_r')}")
    if train.get("limit"):
        out.append(f"n{train['limit']}")
    return [str(t) for t in out if t]


def notebook_run(notebook: str, params: dict[str, Any], metrics: dict[str, Any], extra: dict[str, Any],
                 figures: Callable[[], list[Path]] | None = None,
                 histories: dict[str, list[dict[str, Any]]] | None = None) -> str | None:
    """Log the notebook's configuration as one W&B run (see the module's docstring); returns the
    run's folder, or None when W&B is off."""
    eval_set = params.get("eval_set") or {}
    mode = resolve_mode(params.get("wandb") or eval_set.get("wandb") or "auto")
    if mode == "disabled":
        return None
    # wandb takes seconds to import, and a disabled run never needs it
    import wandb

    train = (extra.get("train") or {}).get("params") or {}
    dirs = eval_dirs(metrics, extra, params.get("run") or notebook)
    # a comparison's rows share their decoding settings: the first row's stand for them
    evaluation = results_of(next(iter(dirs.values())))["params"] if dirs else {}
    config = {"notebook": notebook, **compared(params), **compared(train, "train/"),
              # the gate is each run's own calibration, an outcome (in the summary), not a setting
              **compared({k: v for k, v in evaluation.items() if k != "call_gate"}, "eval/")}
    run = start_run(config, mode=mode, project=eval_set.get("wandb_project") or "toolcall-lab",
                    group=params.get("wandb_group") or params.get("experiment"), name=params.get("run"),
                    job_type="notebook", tags=tags(notebook, train, evaluation))
    for name, history in (histories or {}).items():
        step = f"{name}/train/step"
        run.define_metric(step)
        run.define_metric(f"{name}/train/*", step_metric=step)
        for entry in history:
            if "step" in entry:
                run.log({step: entry["step"], **{f"{name}/train/{k}": v for k, v in flatten(entry).items()
                                                  if k != "step"}})
    if dirs:
        rows = [row for name, folder in dirs.items() for row in table_rows(name, folder)]
        run.log({"predictions": wandb.Table(columns=TABLE_COLUMNS, data=rows)})
    for path in (figures() if figures else []):
        run.log({f"figures/{Path(path).stem}": wandb.Image(str(path))})
    run.summary.update(summary(metrics, extra))
    folder = str(run.settings.sync_dir)
    run.finish()
    return folder


def summary(metrics: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The metrics under stable names: a comparison's rows by their name (`fine-tuned/accuracy`), the
    gate's threshold, the final training loss."""
    rows = {name: {k: v for k, v in r.items() if k != "model"} for name, r in rows_by_model(metrics).items()}
    out = flatten({k: v for k, v in metrics.items() if k != "table"} | rows)
    if (extra.get("gate") or {}).get("threshold") is not None:
        out["gate/threshold"] = extra["gate"]["threshold"]
    final = (extra.get("train") or {}).get("final") or {}
    if final.get("train_loss") is not None:
        out["train/final_loss"] = final["train_loss"]
    return out
