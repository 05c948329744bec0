"""What the headline runner keeps so that a fresh clone loses nothing (`common.experiments.headline`):
each finished evaluation's predictions archived beside its results, the test that an evaluation is
finished (its results, and a prediction for every sample, local or archived), the check that a
recorded evaluation matches what the recipe asks for before it is rescored instead of generated,
the hash of a training run's weights, which decides whether a retrained adapter may stand
beside evaluations recorded from an earlier one, and the split keys that name evaluation folders
by the samples they read (a rebuild that only counts tokens anew finds them again)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from common import bfcl_data
from common.bfcl.params import BFCLParams
from common.bfcl.report import score as bfcl_score
from common.errors import UserError
from common.evaluation.params import EvalParams
from common.evaluation.runner import differences, generation_settings, score
from common.experiments.compare import results_of
from common.experiments.steps import run_dir
from common.gguf_convert import digest
from common.jsonio import archive, read_json, read_jsonl, restore
from common.provenance import local_path, portable, shown
from common.sources import BFCL_PREFIX, SUITE_PREFIX, load_data, samples_sha256

# Settings a recorded evaluation may differ in and still stand: how this machine runs the model
# (a fresh clone on a GPU resolves `auto` otherwise; the results record theirs), and the data's
# path (the folder's name carries the hash of the split's samples).
MACHINE_KEYS = ("backend", "dtype", "data")
BFCL_KEYS = ("model", "adapter", "categories", "limit", "call_gate", "max_new_tokens", "format", "seed")


def split_key(build_dir: Path, card: dict[str, Any], split: str) -> str:
    """`-<8 hex>`, the suffix of a split's evaluation folders: the hash of its samples alone, so a
    fresh clone's rebuild (same samples, token counts of another renderer) finds the recorded ones."""
    return "-" + samples_sha256(build_dir, split, card)[:8]


def trained_on_split(tr: dict[str, Any], card: dict[str, Any], build_dir: Path) -> str | None:
    """The hash of the train samples the run read (None before runs recorded one); a warning when
    the build holds other samples now. A run from before session 25 recorded only its stored rows'
    hash: the build's samples hash stands for it when the rows are the same, else that old hash
    does (it differs from any samples hash, so the run is marked as trained on another build, even
    where only token counts differ: an old record cannot tell)."""
    rec = (tr.get("data") or {}).get("train") or {}
    if not rec.get("samples_sha256") and not rec.get("split_sha256"):
        return None
    now = samples_sha256(build_dir, "train", card)
    had = rec.get("samples_sha256")
    if had is None:
        had = now if rec["split_sha256"] == card["splits"]["train"]["content_sha256"] else rec["split_sha256"]
    if had != now:
        print(f"warning: {shown(run_dir(tr))} trained on another build of {shown(build_dir)} (train samples "
              f"{had[:8]}, now {now[:8]}); the report says so. Delete that run folder and the recipe's report "
              "folder to train and evaluate on this build.", flush=True)
    return had


def bfcl_folder(folder: Path, p: Any, fmt: str, adapter: dict[str, Any], suffix: str = "") -> Path:
    """Where a model's BFCL run lives under `folder` (`p`: the headline's parameters, `fmt` the answer
    format): an adapter's in `bfcl<suffix>`; the untrained model's suffixed by nothing for the default
    run, else by a hash of what changes its predictions (format, categories, limit, answer cap), so no
    recipe reuses another's."""
    what = {"format": fmt, "categories": p.bfcl_categories, "limit": p.bfcl_limit,
            "max_new_tokens": p.bfcl_max_new_tokens}
    default = {"format": "hermes", "categories": list(bfcl_data.BENCHMARK_CATEGORIES), "limit": None,
               "max_new_tokens": None}
    key = "" if what == default else "-" + (
        hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:8])
    return folder / ("bfcl" + ("" if adapter else key) + suffix)


def answered(folder: Path) -> bool:
    """An evaluation folder with its results, whose predictions (local, else the committed archive,
    brought back) answer every sample its results count."""
    if not ((folder / "run.json").is_file() and (folder / "results.json").is_file()):
        return False
    restore(folder / "predictions.jsonl")
    ids = {r["id"] for r in read_jsonl(folder / "predictions.jsonl", ("id",))}
    return len(ids) >= read_json(folder / "results.json", "results")["n_samples"]


def finished(dest: Path) -> bool:
    """A finished evaluation (results and every prediction); a BFCL run: every category's."""
    if (dest / "params.json").is_file():  # a BFCL run: one evaluation folder per category
        cats = read_json(dest / "params.json", "BFCL parameters")["categories"]
        return (dest / "results.json").is_file() and all(answered(dest / c) for c in cats)
    return answered(dest)


def check_record(dest: Path, had: dict[str, Any], now: dict[str, Any]) -> None:
    """A finished evaluation stands only for the same model, adapter and decoding."""
    had, now = portable(had), portable(now)
    if had != now:
        raise UserError(f"{shown(dest)} holds an evaluation made with other settings ({differences(had, now)}); "
                        "delete that folder to evaluate this recipe into it")


def recorded_spec(folders: list[Path | None], spec: str) -> str:
    """The data spec the first recorded evaluation among `folders` read, where this machine has it:
    another recipe's build of the same split (the folders carry its samples' hash) holds the same
    samples, so its evaluation stands; else `spec`."""
    for d in folders:
        if d and (d / "run.json").is_file():
            had = read_json(d / "run.json", "run record")["params"]["data"]
            local = had.startswith((SUITE_PREFIX, BFCL_PREFIX)) or local_path(had.rsplit(":", 1)[0]).exists()
            return had if local else spec
    return spec


def drop(d: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in keys}


def keep_predictions(dest: Path) -> None:
    """Every predictions.jsonl under `dest` archived beside it (committed with the results)."""
    for path in sorted(dest.rglob("predictions.jsonl")):
        archive(path)


def rescore(dest: Path, planned: EvalParams, spec: str) -> None:
    """A finished evaluation scored again from its record (no model loads), once it matches `planned`."""
    run = read_json(dest / "run.json", "run record")
    check_record(dest, {**drop(run["generation"], MACHINE_KEYS), "limit": run["params"]["limit"]},
                 {**drop(generation_settings(planned), MACHINE_KEYS), "limit": planned.limit})
    score(dest, load_data(spec, planned.limit))  # restores the archive; refuses answers to changed prompts


def check_bfcl_record(dest: Path, planned: BFCLParams) -> None:
    """A finished BFCL run stands only for the same model, adapter, categories and decoding."""
    had = read_json(dest / "params.json", "BFCL parameters")
    if had.get("format") is None:  # recorded before BFCL resolved the format up front: what each category ran in
        ran = {str(read_json(dest / c / "run.json", "run record").get("params", {}).get("format"))
               for c in had["categories"]}
        had["format"] = ran.pop() if len(ran) == 1 else sorted(ran)
    check_record(dest, {k: had.get(k) for k in BFCL_KEYS}, {k: getattr(planned, k) for k in BFCL_KEYS})


def rescore_bfcl(dest: Path, planned: BFCLParams) -> None:
    """A finished BFCL run scored again from its record, once it matches `planned`."""
    check_bfcl_record(dest, planned)
    bfcl_score(dest)  # each category through runner.score: restored, answers to changed prompts refused


def recorded_bfcl(dest: Path, overrides: dict[str, Any]) -> Path | None:
    """`bfcl: false`: the untrained model's finished BFCL run at `dest`, kept as measured (not
    rescored: its answers may be to older prompts, which the report marks), where it was made with
    the settings `overrides` plan; else None, and why."""
    if not finished(dest):
        return None
    try:
        check_bfcl_record(dest, BFCLParams(**overrides).resolved())
    except UserError as err:
        print(f"BFCL not run (bfcl: false), and the untrained model's recorded BFCL row left out: {err}", flush=True)
        return None
    print(f"BFCL not run (bfcl: false); the untrained model's recorded BFCL row stands: {shown(dest)}", flush=True)
    return dest


def weights_sha256(run: Path) -> str:
    """One hash of a training run's saved weights: its adapter's (or the full model's) safetensors
    files (not its config, which names the base model's path on this machine)."""
    folder = next((run / k for k in ("adapter", "model") if any((run / k).glob("*.safetensors"))), None)
    if folder is None:
        raise UserError(f"{shown(run)} holds no saved weights (adapter/ or model/ *.safetensors); delete it to "
                        "train again")
    return digest(folder, pattern="*.safetensors")


def copied_answers(dests: list[Path | None]) -> dict[str, int]:
    """How many of the gated answers were copied from the plain pass (`reuse`), of how many."""
    found = [results_of(f.parent)["throughput"] for d in dests if d for f in d.rglob("run.json")]
    return {"copied": sum(t.get("reused", 0) for t in found), "of": sum(t["samples"] + t.get("reused", 0) for t in found)}
