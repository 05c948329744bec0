"""The main job: data -> untrained model -> LoRA SFT -> fine-tuned model -> comparison, on the CPU.

    python -m common.experiments.quickstart params/quickstart.yaml          # make quickstart (2 CPU cores)
    python -m common.experiments.quickstart params/quickstart.yaml params/quickstart_qwen3_4b.yaml   # Qwen3-4B, a GPU

Stages, each printed with its wall time (each in a new Python process), each resumable (rerun
the command after an interruption and finished stages are skipped: the data builds, the
evaluations' predictions, the training checkpoints, the call gate, BFCL's answers):
1. build the held-out set (`held_out_params`, when set), then the training data (`common.data`;
   params/quickstart_live.yaml: the live mix, which keeps the held-out set's requests out);
2. evaluate the untrained model on the first `eval_set.limit` samples of the evaluation split
   (params/quickstart_live.yaml: the live transfer split, toolkits never trained on);
3. LoRA SFT (`common.training`, `sft_params` on `sft_set.limit` samples);
4. choose the call gate on training samples the run did not train on (`common.evaluation.calibrate`),
   then evaluate the adapter on the same samples with it;
5. the BFCL slice (`bfcl_categories`, `bfcl_limit`; none: the stage is skipped): both models on
   BFCL's non-live entries, scored by BFCL's own checker (`common.bfcl`), decoding as in 2 and 4;
6. the comparison (notebook 07 through papermill): the Kinetic table, the head-to-head
   with McNemar's test and the paired bootstrap interval of the difference, figures.
It ends with `reports/quickstart/README.md`: the table, the BFCL slice, the figures, the times
and the commands that run the same pipeline with Qwen3-4B on a GPU.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import shutil
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from common import bfcl_data
from common.data.build import DataParams, build
from common.errors import ArgumentParser, cli
from common.evaluation.report import engine_text
from common.experiments import steps as ex
from common.experiments.compare import markdown_table
from common.experiments.headline_report import PUBLISHED, bfcl_summary
from common.experiments.notebooks import execute
from common.jsonio import write_json
from common.markdown import pct
from common.params import (
    DEFAULT_MODEL,
    ParamsError,
    add_set_argument,
    invocation,
    load_params,
    overrides_of,
)
from common.provenance import reports_root, runs_root, shown
from common.tracking import WandbMode
from common.training.params import SFTParams


class QuickstartParams(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    model: str = Field(DEFAULT_MODEL, description="the model, evaluated untrained and fine-tuned (set it here "
                       "once, not in eval_set or sft_set)")
    held_out_params: list[str] = Field(default_factory=list, description=(
        "a data build made first, whose eval split the training build keeps out (the live mix's "
        "live_exclude_eval_of); none: only data_params' build"))
    data_params: list[str] = Field(["params/data.yaml"], description="the data build's parameter files")
    eval_params: list[str] = Field(["params/evaluate.yaml"], description="the evaluation's parameter files")
    eval_set: dict[str, Any] = Field(default_factory=dict, description="evaluation overrides (both models)")
    sft_params: list[str] = Field(["params/sft.yaml"], description="the training's parameter files")
    sft_set: dict[str, Any] = Field(default_factory=dict, description="training overrides")
    bfcl_categories: list[str] = Field(default_factory=list, description=(
        "BFCL non-live categories both models are scored on by BFCL's checker (a slice of the headline's "
        "five, e.g. [simple_python, irrelevance]); []: none"))
    bfcl_limit: int | None = Field(100, ge=1, description="the first N entries of each BFCL category; None: all")
    bfcl_max_new_tokens: int | None = Field(None, ge=1, description=(
        "BFCL's answer cap; None: the BFCL runner's 256, as in the headline's BFCL runs"))
    gate_samples: int = Field(160, ge=8, description="unused training samples the call gate is chosen on")
    gate_no_call_accuracy: float | None = Field(0.8, gt=0, lt=1, description=(
        "the gate answers at least this share of calibration samples that need no call without one; "
        "None: no gate, plain greedy decoding"))
    experiment: str = Field("quickstart", description="reports/<experiment>/ and runs/<experiment>/")
    run: str = Field("lora-sft", description="the fine-tuned run's name")
    baseline: str = Field("untrained", description="the untrained run's name")
    gpu_params: list[str] = Field(["params/quickstart.yaml", "params/quickstart_qwen3_4b.yaml"],
                                  description="the quickstart's parameter files for the real model on a GPU, "
                                  "which the report describes and gives the command of")
    wandb: WandbMode = Field("auto", description="online, offline, disabled, or auto (WANDB_MODE, else offline)")

    @field_validator("bfcl_categories")
    @classmethod
    def _non_live(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if c not in bfcl_data.BENCHMARK_CATEGORIES]
        if bad:
            raise ValueError(f"bfcl_categories {bad}: the quickstart scores BFCL's non-live categories, "
                             f"{', '.join(bfcl_data.BENCHMARK_CATEGORIES)} (the live ones are training material)")
        return list(dict.fromkeys(v))


def stage_overrides(p: QuickstartParams) -> tuple[dict[str, Any], dict[str, Any]]:
    """The evaluation's and the training's overrides: the quickstart's `model`, experiment and W&B on top."""
    for name, overrides in (("eval_set", p.eval_set), ("sft_set", p.sft_set)):
        if "model" in overrides:
            raise ParamsError(f"{name} sets model: the quickstart evaluates and fine-tunes one model; set it once, "
                              f"as `model: {overrides['model']}` (or --set model={overrides['model']})")
    eval_set = {**p.eval_set, "model": p.model, "experiment": p.experiment, "wandb": p.wandb,
                "wandb_group": p.experiment}
    return eval_set, {**p.sft_set, "model": p.model, "wandb": p.wandb}


def add_timings(path: Path, timings: dict[str, float], fresh: bool = False) -> dict[str, Any]:
    """This invocation's stage times added to those of earlier ones (an interrupted run
    resumed costs the sum; a rerun of a finished one adds the seconds its skips take).
    `fresh`: the recorded times are not this checkout's (a new clone beside committed
    reports), so they start anew."""
    old = json.loads(path.read_text()) if path.exists() and not fresh else {"invocations": 0, "stages": {}}
    record = {"invocations": old["invocations"] + 1,
              "stages": {k: round(old["stages"].get(k, 0.0) + v, 1) for k, v in timings.items()},
              "this_invocation": timings}
    write_json(path, record)
    return record


def _die_with_parent() -> None:
    """In a stage's process: end when the quickstart ends (Linux), so that a killed quickstart
    leaves no trainer writing checkpoints that a rerun would write too."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def in_fresh_process(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """fn(*args, **kwargs) in a new Python interpreter (spawn), its result (or its exception,
    with the child's traceback) sent back: each heavy stage starts clean and gives its memory
    back when it ends (session 5 saw stages run slower inside one long process; LOG.md).
    Interrupted or failing here, the stage's process is ended, not waited for."""
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_die_with_parent)
    try:
        return pool.submit(fn, *args, **kwargs).result()
    except BaseException:
        # the executor has no public way to stop a running task; its worker processes are these
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def run(p: QuickstartParams, command: str = "make quickstart") -> dict[str, Any]:
    started = time.perf_counter()
    timings: dict[str, float] = {}
    out = reports_root() / p.experiment
    # The report's times are summed only over invocations of this checkout: a local copy beside
    # the (uncommitted) runs says which; without it, `out`'s timings are another machine's.
    local_timings = runs_root() / p.experiment / "quickstart_timings.json"
    fresh = not local_timings.exists()
    eval_set, sft_set = stage_overrides(p)
    # every parameter is checked before the first stage runs
    data_p = load_params(DataParams, p.data_params)
    ex.eval_params(p.eval_params, eval_set)
    load_params(SFTParams, p.sft_params, sft_set)
    gpu = gpu_section(p.gpu_params)  # the report's last section, read from its files now, not after the stages

    slice_ = bool(p.bfcl_categories)
    n = 6 if slice_ else 5
    names = [f"{i}/{n} {x}" for i, x in enumerate(
        ["build the data", "evaluate the untrained model", "LoRA SFT", "call gate + evaluate the fine-tuned model",
         *(["BFCL slice, both models"] if slice_ else []), "compare (notebook 07)"], 1)]
    held_p = load_params(DataParams, p.held_out_params) if p.held_out_params else None
    # the BFCL data (the bfcl-eval wheel) is looked for now, not after the training (the categories
    # and limit were checked with QuickstartParams)
    if slice_:
        bfcl_data.data_dir()

    with ex.stage(names[0], timings):
        if held_p is not None:  # the held-out build first: the training build keeps its requests out
            in_fresh_process(build, held_p)
        card = in_fresh_process(build, data_p)
    with ex.stage(names[1], timings):
        base = in_fresh_process(ex.evaluate_model, p.eval_params,
                                {**eval_set, "run": p.baseline, "out": str(out / p.baseline)})
    fine = in_fresh_process(ex.train_and_evaluate, stage_name="sft", experiment=p.experiment, run=p.run,
                            train_files=p.sft_params, train_set=sft_set, eval_files=p.eval_params, eval_set=eval_set,
                            gate_samples=p.gate_samples, gate_no_call_accuracy=p.gate_no_call_accuracy,
                            wandb_group=p.experiment)
    timings |= fine["timings"]  # filled in the stage's process, so returned rather than passed in
    # stages 3 and 4 under the quickstart's names
    timings = {names[0]: timings[names[0]], names[1]: timings[names[1]],
               names[2]: timings[f"train {p.run}"],
               names[3]: timings.get(f"calibrate the call gate of {p.run}", 0.0) + timings[f"evaluate {p.run}"]}
    # the fine-tuned evaluation sits in reports/<experiment>/<run>/eval; the report names it <run>
    shutil.rmtree(out / p.run / "train", ignore_errors=True)
    history = ex.keep_training(fine["train"], out / p.run / "train")
    if fine["gate"]:
        write_json(out / p.run / "call_gate.json", ex.gate_record(fine["gate"]))
    bfcl_dirs: dict[str, Path] = {}
    if slice_:
        with ex.stage(names[4], timings):
            gate = fine["gate"]["threshold"] if fine["gate"] else None
            for who, adapter, g in ((p.baseline, {}, None), (p.run, ex.adapter_of(fine["train"]), gate)):
                bfcl_dirs[who] = out / who / "bfcl"
                in_fresh_process(ex.bfcl_run, p.eval_params, eval_set, {
                    "model": p.model, **adapter, "categories": p.bfcl_categories, "limit": p.bfcl_limit,
                    "call_gate": g if g is not None else "none", "run": f"{who}/bfcl", "out": str(bfcl_dirs[who]),
                    **({"max_new_tokens": p.bfcl_max_new_tokens} if p.bfcl_max_new_tokens else {})})
    with ex.stage(names[-1], timings):
        execute("07_benchmark", out, {
            "experiment": p.experiment, "run": "comparison", "out_dir": shown(out),
            "title": f"quickstart: {base['model']} untrained vs + LoRA SFT",
            "evals": {p.baseline: shown(out / p.baseline),
                      p.run: shown(Path(fine["eval_dir"]))},
            "a": p.run, "b": p.baseline, "bfcl": {},  # (its BFCL slice has a section of the report)
            "histories": {p.run: shown(history)}})
    comp = json.loads((out / "comparison.json").read_text())
    timings["total"] = round(time.perf_counter() - started, 1)
    record = add_timings(out / "timings.json", timings, fresh)
    write_json(local_timings, record)
    report = write_report(p, out, comp, record, fine, card, command, gpu, bfcl_dirs)
    print("\n" + "\n".join(f"{k:<48} {v / 60:6.1f} min" for k, v in timings.items()))
    print("\n".join(verdict_lines(comp)).replace("**", ""))
    print(f"quickstart done in {timings['total'] / 60:.1f} min; report: {shown(report)}")
    return {"comparison": comp, "timings": timings, "report": str(report)}


def verdict_lines(comp: dict[str, Any]) -> list[str]:
    """The done-when of the quickstart, read off the comparison: a significant gain, and
    no-tool accuracy kept at 70% or more (a model that learns to always call fails it)."""
    h = comp["head_to_head"]
    d = h["difference"]
    no_tool = {r["model"]: r for r in comp["table"]}[h["a"]]["no_tool_accuracy"]
    ci = d["ci"] or [float("nan")] * 2
    beats = d["excludes_zero"] and d["difference"] > 0
    kept = no_tool is not None and no_tool >= 0.7
    interval = "the interval excludes zero" if d["excludes_zero"] else "the interval includes zero: no significant difference"
    no_tool_text = "n/a (no sample here needs no call)" if no_tool is None else (
        f"**{pct(no_tool)}** ({'at or above' if kept else 'below'} the 70% this repository asks of a fine-tuned model)")
    verdict = ("**the fine-tuned model beats the untrained one** and still answers requests that need no call without one"
               if beats and kept else "**the bar is not met** (see LOG.md)")
    return [f"- **{h['a']} minus {h['b']}: {100 * d['difference']:+.1f} points** of accuracy (95% paired bootstrap CI "
            f"{100 * ci[0]:+.1f} to {100 * ci[1]:+.1f}; McNemar exact p = {h['mcnemar_exact_p']:.3g}): {interval}.",
            f"- No-tool accuracy of {h['a']}: {no_tool_text}.",
            f"- Verdict: {verdict}."]


def write_report(p: QuickstartParams, out: Path, comp: dict[str, Any], timings: dict[str, Any],
                 fine: dict[str, Any], card: dict[str, Any], command: str = "make quickstart",
                 gpu: list[str] = (), bfcl_dirs: dict[str, Path] | None = None) -> Path:
    tr, gate = fine["train"], fine["gate"]
    ev = fine["eval"]
    hw = ev["provenance"]["hardware"]
    where = hw.get("gpu") or f"{hw.get('cpus')} CPU cores ({hw.get('cpu', 'unknown CPU')})"
    n_inv = timings["invocations"]
    thr = tr["throughput"]
    figs = sorted((out / "figures").glob("*.png"))
    lines = [
        "# Quickstart report", "",
        f"`{command}` on {where}, commit "
        f"`{(ev['provenance']['git']['commit'] or 'unknown')[:10]}`"
        f"{' (uncommitted changes)' if ev['provenance']['git']['dirty'] else ''}.", "",
        f"Model `{tr['model']}`; {held_out_text(ev, card)}; greedy decoding by "
        f"{engine_text(ev.get('generation'))}.", "",
        "## Result", "", *verdict_lines(comp), "",
        markdown_table(comp["table"]),
        "Intervals in the table are Wilson 95% intervals; the figures draw percentile bootstrap intervals.", "",
        *bfcl_section(p, bfcl_dirs or {}),
        "## How the fine-tuned model was made", "",
        f"- {recipe_text(tr['params'], tr.get('precision'))}; {tr['data']['train']['sequences']} training samples drawn at random, "
        f"{tr['steps']} optimizer steps of {tr['params']['batch_size']} × {tr['params']['gradient_accumulation_steps']}; "
        f"{thr.get('tokens', 0):,} tokens at {thr.get('tokens_per_s')} tokens/s.",
        (f"- Call gate: the first token decides call or no call by P(call) ≥ **{gate['threshold']:.3f}**, "
         f"chosen on {gate['n']} training samples this run did not train on so that at least "
         f"{gate['target_no_call_accuracy']:.0%} of those needing no call get none (there: calls on "
         f"{gate['call_recall']:.0%} of the samples that need one, none on {gate['no_call_accuracy']:.0%} of the "
         f"others; ROC AUC {gate['auc']:.3f}). Without it, greedy decoding calls on nearly every request after "
         "this little training (LOG.md). The untrained model decodes plainly: it rarely calls, so a gate "
         "could only lower its accuracy.") if gate else "- No call gate: plain greedy decoding.",
        "", "## Time by stage", "",
        "Wall time" + (f", summed over {n_inv} invocations of the command" if n_inv > 1 else "") + ":", "",
        "| stage | wall time |", "|---|---|",
        *(f"| {k} | {v / 60:.1f} min |" for k, v in timings["stages"].items()), "",
        "## Figures", "", *(f"![{f.stem}](figures/{f.name})" for f in figs), "",
        "## Files", "",
        "- `comparison.json`: the table, head-to-head, latencies and histories these figures are drawn from "
        "(`make figures` redraws them from it).",
        f"- `{p.baseline}/` and `{p.run}/eval/`: each evaluation's `results.json` and `summary.md` "
        "(predictions and verdicts stay local).",
        f"- `{p.run}/train/`: the training's history and summary; `{p.run}/call_gate.json`: the gate's calibration.",
        *([f"- `{p.baseline}/bfcl/` and `{p.run}/bfcl/`: the BFCL slice, per category (`results.json`, "
           "`README.md`)."] if bfcl_dirs else []),
        "", *gpu]
    path = out / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def held_out_text(ev: dict[str, Any], card: dict[str, Any]) -> str:
    """What the evaluation's samples are: a live build's split is whole toolkits held back, an
    offline build's eval split a seeded draw."""
    data, n = ev["data"], ev["n_samples"]
    if data.endswith(":transfer"):
        return (f"evaluation samples: the first {n} of `{data}`, the live mix's transfer split (real requests "
                "of toolkits never trained on)")
    if card.get("params", {}).get("mix") == "live":
        return f"evaluation samples: the first {n} of the dev split of `{data}` (live toolkits held back from training)"
    return (f"held-out samples: the first {n} of the eval split of `{data}` (drawn with seed "
            f"{card['params']['eval_seed']}, never trained on)")


def bfcl_section(p: QuickstartParams, dirs: dict[str, Path]) -> list[str]:
    """Both models on the BFCL slice, scored by BFCL's own checker, beside FunctionGemma-270M's
    published score on the whole category (the headline's target)."""
    if not dirs:
        return []
    runs = {who: bfcl_summary(d) for who, d in dirs.items()}
    name, target, source = PUBLISHED[0]
    first = next(iter(runs.values()))
    rows = []
    for c in p.bfcl_categories:
        cells = []
        for r in runs.values():
            d = r["per_category"][c]
            lo, hi = d["bfcl_accuracy_ci95"] or (None, None)
            cells.append(pct(d["bfcl_accuracy"]) + (f" ({pct(lo)}-{pct(hi)})" if lo is not None else ""))
        rows.append(f"| {c} | {first['per_category'][c]['n']} | " + " | ".join(cells) + f" | {pct(target[c])} |")
    no_call = [pct(r["per_category"]["irrelevance"]["parse_valid_no_call"]) for r in runs.values()] \
        if "irrelevance" in p.bfcl_categories else []
    agreement = ", ".join(f"{who} {pct(r['agreement'])}" for who, r in runs.items())
    limit = f"the first {p.bfcl_limit} entries" if p.bfcl_limit else "all entries"
    return ["## BFCL slice", "",
            f"BFCL's non-live {', '.join(p.bfcl_categories)}: {limit} of each, scored by BFCL's own checker "
            f"(Wilson 95% intervals); the untrained model decodes plainly, the fine-tuned one as in its evaluation "
            f"(with its call gate, if it has one); answers of up to {first['max_new_tokens']} tokens. The last "
            f"column is {name}'s published score on the whole category ({source}): the headline's target "
            "(reports/bfcl/headline-smollm2-135m/), not comparable entry for entry.", "",
            "| category | entries | " + " | ".join(runs) + f" | {name} |",
            "|---|---|" + "---|" * len(runs) + "---|", *rows, "",
            *([f"Irrelevance as a parse-valid answer with no call: {', '.join(f'{w} {v}' for w, v in zip(runs, no_call))}."]
              if no_call else []),
            f"BFCL's checker and the project's agree on: {agreement}.", ""]


def recipe_text(params: dict[str, Any], precision: str | None = None) -> str:
    """A training recipe in one line, read off its parameters (`SFTParams`, dumped);
    `precision`: the one the run resolved `auto` to, when it ran."""
    method = {"lora": "LoRA", "qlora": "QLoRA", "full": "full fine-tuning"}[params["method"]]
    adapter = f" r{params['lora_r']}/α{params['lora_alpha']}" if params["method"] != "full" else ""
    length = f"{params['max_steps']} steps" if params.get("max_steps") else f"{params['epochs']:g} epoch(s)"
    return (f"{method}{adapter} on {params['target_modules']} projections, lr {params['learning_rate']:g}, "
            f"{params['lr_scheduler']} with {params['warmup_ratio']:.0%} warmup, {length}, precision "
            f"{precision or params['precision']}")


def gpu_section(files: list[str]) -> list[str]:
    """How to run the same pipeline with the GPU layer `files`, described from those files
    (nothing when there are none)."""
    if not files:
        return []
    g = load_params(QuickstartParams, files)
    eval_set, sft_set = stage_overrides(g)
    data = load_params(DataParams, g.data_params)
    ev = ex.eval_params(g.eval_params, eval_set)
    sft = load_params(SFTParams, g.sft_params, sft_set)
    held_out = f"the first {ev.limit}" if ev.limit else f"all {data.eval_size}"
    return ["## The same pipeline with " + g.model + " on a GPU", "", "```bash", "make install",
            f"python -m common.data build {' '.join(g.data_params)}",
            f"python -m common.quickstart {' '.join(files)}", "```", "",
            f"`{files[-1]}` trains `{g.model}` with `{' + '.join(g.sft_params)}`: {recipe_text(sft.model_dump())}, on "
            f"`{sft.data}` (the build `{data.name}`); it evaluates with `{' + '.join(g.eval_params)}`: {held_out} "
            f"held-out samples of `{ev.data}` on `{ev.device}`, "
            + (f"with the call gate chosen on {g.gate_samples} unused training samples. " if g.gate_no_call_accuracy
               else "deciding by plain decoding (no call gate). ")
            + "It needs the model in the Hugging Face cache or `TOOLCALL_LAB_ALLOW_DOWNLOAD=1`.", ""]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("params", nargs="*", default=["params/quickstart.yaml"], help="YAML files, merged in order")
    add_set_argument(parser, QuickstartParams)
    args = parser.parse_args(argv)
    command = invocation("python -m common.quickstart", args.params, args)
    return run(load_params(QuickstartParams, args.params, overrides_of(args)), command)


if __name__ == "__main__":
    cli(main)
