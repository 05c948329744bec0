"""A training run's folder: naming, refusing other settings, resuming, saving, recording.

`runs/<experiment>/<run>/` holds `run.json` (the stage and resolved parameters),
`checkpoints/`, the trained `adapter/` or `model/` (and `merged/`), `history.json(l)`
and `results.json`; see `common.training.cli` for the whole layout.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from accelerate import PartialState
from transformers import set_seed

from common import adapter_card
from common.errors import UserError
from common.jsonio import (  # atomic: a killed run never leaves half a results file
    read_json,
    write_json,
)
from common.models import check_model_name, default_format, load_model
from common.provenance import git_state, local_path, portable, provenance, runs_root
from common.tracking import NoRun, flatten, resolve_mode, start_run
from common.training.params import FREE_KEYS, FROM_SFT, DPOParams, TrainParams
from common.training.trainers import checkpoint_invocations, final_metrics, parameter_counts


def resolve(params: TrainParams, stage: str) -> TrainParams:
    update: dict[str, Any] = {}
    if isinstance(params, DPOParams):
        sft_run = read_run(Path(params.sft))
        update |= {k: sft_run["params"][k] for k in FROM_SFT}
        update["data"] = params.data or sft_run["params"]["data"]  # the pairs' prompts
    p = params.model_copy(update=update)
    run = p.run or f"{Path(p.model).name}-{stage}-{p.method}"
    out = p.out or str(runs_root() / p.experiment / run)
    return p.model_copy(update={"run": run, "out": out, "format": p.format or default_format(p.model)})


def read_run(folder: Path) -> dict[str, Any]:
    folder = local_path(folder)
    path = folder / "run.json"
    if not path.exists():
        raise UserError(f"{folder} is not a training run (no run.json); give the folder that "
                        "`python -m common.train sft` wrote, e.g. runs/train/<run>")
    return read_json(path, "training run record")


def weights_dir(folder: Path) -> tuple[str, Path]:
    """('adapter' | 'model', path) of a finished run's trained weights."""
    for kind in ("adapter", "model"):
        if (folder / kind).is_dir():
            return kind, folder / kind
    raise FileNotFoundError(f"{folder} has no adapter/ or model/: the run has not finished; rerun it to resume")


def prepare_out(p: TrainParams, stage: str) -> Path:
    out = Path(p.out)
    # compared as recorded: paths relative to the project root (a fresh clone resumes its own runs)
    wanted = portable({"stage": stage, **{k: v for k, v in p.model_dump().items() if k not in FREE_KEYS}})
    path = out / "run.json"
    if path.exists():
        had = read_json(path, "training run record")
        old = portable({"stage": had["stage"], **{k: v for k, v in had["params"].items() if k not in FREE_KEYS}})
        diff = {k: (old.get(k), v) for k, v in wanted.items() if old.get(k) != v}
        # a folder with no checkpoint and no results holds nothing (a start that failed): not a run to protect
        started = (out / "results.json").exists() or any((out / "checkpoints").glob("checkpoint-*"))
        if diff and started and p.resume != "never":
            lines = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
            raise UserError(f"{out} holds a run with other settings ({lines}). Use another --run or --out, "
                             "or --restart to delete it and start over (in a notebook: another `run`, or "
                             "`restart = True`).")
    if is_main_process():  # under `accelerate launch`, one process owns the folder
        if p.resume == "never" and out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "run.json", {"stage": stage, "params": p.model_dump()})
    PartialState().wait_for_everyone()
    return out


def finished(out: Path, resume: str) -> dict[str, Any] | None:
    """The results of a run that already finished with these settings (not on --restart)."""
    if resume == "never" or not (out / "results.json").exists():
        return None
    try:
        weights_dir(out)
    except FileNotFoundError:
        return None
    print(f"[train] {out} already finished with these settings; --restart (a notebook's `restart = True`) "
          "trains it again", flush=True)
    return json.loads((out / "results.json").read_text())


def last_checkpoint(out: Path, resume: str) -> str | None:
    """The newest complete checkpoint (one killed while saving has no trainer_state.json)."""
    if resume == "never":
        return None
    folder = out / "checkpoints"
    complete = [d for d in folder.glob("checkpoint-*") if (d / "trainer_state.json").exists()
                and d.name.split("-")[-1].isdigit()] if folder.is_dir() else []
    found = str(max(complete, key=lambda d: int(d.name.split("-")[-1]))) if complete else None
    if resume == "always" and found is None:
        raise FileNotFoundError(f"--resume: {folder} holds no checkpoint to continue from; drop --resume to "
                                "start this run")
    return found


def save_outputs(trainer: Any, p: TrainParams, out: Path, tokenizer: Any, precision: str) -> dict[str, str]:
    """The final weights (adapter or full model) and, when asked, a merged copy.
    Called on every process: under FSDP or ZeRO-3, saving gathers from all of them."""
    kind = "model" if p.method == "full" else "adapter"
    model = trainer.model
    if kind == "adapter" and "ref" in getattr(model, "peft_config", {}):
        # DPO: only the trained adapter, not TRL's frozen reference copy of it
        if trainer.is_world_process_zero():
            model.save_pretrained(str(out / kind), selected_adapters=["default"])
    else:
        trainer.save_model(str(out / kind))
    saved = {kind: str(out / kind)}
    if not trainer.is_world_process_zero():
        return saved
    tokenizer.save_pretrained(str(out / kind))
    if p.merge and kind == "adapter":
        # merged from a fresh, unquantized base so QLoRA merges into real weights
        merged, _ = load_model(p.model, adapter=str(out / kind), merge=True,
                               dtype={"bf16": "bfloat16", "fp16": "float16"}.get(precision, "float32"), seed=0)
        merged.save_pretrained(str(out / "merged"))
        tokenizer.save_pretrained(str(out / "merged"))
        saved["merged"] = str(out / "merged")
    return saved


def finish_run(trainer: Any, p: TrainParams, stage: str, out: Path, tokenizer: Any, tracker: Any,
               throughput: dict[str, Any], extra: dict[str, Any], checkpoint: str | None = None) -> dict[str, Any]:
    """Save the weights (every process), then history and results (the main one). `invocations`
    lists every invocation that trained the weights: those recorded in the `checkpoint` resumed
    from (each up to the step it saved, `until_step`), then this one; `throughput` is this one's."""
    saved = save_outputs(trainer, p, out, tokenizer, extra["precision"])
    if not trainer.is_world_process_zero():
        return {}
    history = trainer.state.log_history
    write_json(out / "history.json", history)
    if checkpoint:
        invocations = checkpoint_invocations(checkpoint)
    else:  # a finished run trained again (its weights were removed): its record keeps the earlier ones
        invocations = [*json.loads((out / "results.json").read_text()).get("invocations", [])] \
            if (out / "results.json").exists() else []
    invocations.append({"git": git_state(), **throughput})
    results = {"stage": stage, "experiment": p.experiment, "run": p.run, "model": p.model, "method": p.method,
               "format": p.format, "seed": p.seed, "params": p.model_dump(), **extra,
               "parameters": parameter_counts(trainer.model), "throughput": throughput,
               "invocations": invocations, "final": final_metrics(history),
               "steps": trainer.state.global_step, "outputs": saved, "history": "history.json",
               "provenance": provenance()}
    write_json(out / "results.json", results)
    if "adapter" in saved:  # the adapter stands alone: its base by Hub id, its model card
        adapter_card.name_base(out / "adapter", p.model)
        adapter_card.write(out / "adapter")
    tracker.summary.update(flatten({"final": results["final"], "throughput": throughput}))
    tracker.finish()
    return results


def start_tracking(p: TrainParams, stage: str) -> tuple[Any, list[str]]:
    """One W&B run, on the main process (the trainer's callback also logs from it only)."""
    if not is_main_process():
        return NoRun(), ([] if resolve_mode(p.wandb) == "disabled" else ["wandb"])
    tracker = start_run(p.model_dump() | {"stage": stage}, mode=p.wandb, project=p.wandb_project,
                        group=p.wandb_group or p.experiment, name=p.run, job_type=stage)
    return tracker, ([] if isinstance(tracker, NoRun) else ["wandb"])


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def begin(params: TrainParams | dict[str, Any], cls: type[TrainParams], stage: str
          ) -> tuple[TrainParams, Path, dict[str, Any] | None, str | None]:
    """(resolved params, run folder, results if already finished, checkpoint to resume)."""
    p = resolve(cls.model_validate(params) if isinstance(params, dict) else params, stage)
    check_model_name(p.model)  # a typo is reported before the run folder is made
    set_seed(p.seed)
    out = prepare_out(p, stage)
    done = finished(out, p.resume)
    return p, out, done, None if done else last_checkpoint(out, p.resume)
