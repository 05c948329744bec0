"""The main job: data -> untrained model -> LoRA SFT -> fine-tuned model -> comparison, on the CPU.

    python -m common.quickstart params/quickstart.yaml          # make quickstart (77 min measured, 2 cores)
    python -m common.quickstart params/quickstart.yaml params/quickstart_qwen3_4b.yaml   # Qwen3-4B, a GPU

Stages, each printed with its wall time (1, 2 and 3-4 each in a new Python process), each
resumable (rerun the command after an interruption and finished stages are skipped: the data
build, the evaluations' predictions, the training checkpoints, the call gate):
1. build the offline dataset (`common.data`, params/data.yaml);
2. evaluate the untrained model on the first `eval_set.limit` held-out samples;
3. LoRA SFT (`common.train`, params/sft.yaml: 896 training samples);
4. choose the call gate on training samples the run did not train on (`common.calibrate`),
   then evaluate the adapter on the same held-out samples with it;
5. the comparison (notebook 07 through papermill): the Kinetic table, the head-to-head
   with McNemar's test and the paired bootstrap interval of the difference, figures.
It ends with `reports/quickstart/README.md`: the table, the figures, the times and the
commands that run the same pipeline with Qwen3-4B on a GPU.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from common import experiment as ex
from common.errors import ArgumentParser, cli
from common.jsonl import write_json
from common.params import add_set_argument, load_params, parse_overrides
from common.provenance import command_line, reports_root, runs_root, shown
from common.tracking import WandbMode


class QuickstartParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data_params: list[str] = Field(["params/data.yaml"], description="the data build's parameter files")
    eval_params: list[str] = Field(["params/evaluate.yaml"], description="the evaluation's parameter files")
    eval_set: dict[str, Any] = Field(default_factory=dict, description="evaluation overrides (both models)")
    sft_params: list[str] = Field(["params/sft.yaml"], description="the training's parameter files")
    sft_set: dict[str, Any] = Field(default_factory=dict, description="training overrides")
    gate_samples: int = Field(160, ge=8, description="unused training samples the call gate is chosen on")
    gate_no_call_accuracy: float | None = Field(0.8, gt=0, lt=1, description=(
        "the gate answers at least this share of calibration samples that need no call without one; "
        "None: no gate, plain greedy decoding"))
    experiment: str = Field("quickstart", description="reports/<experiment>/ and runs/<experiment>/")
    run: str = Field("lora-sft", description="the fine-tuned run's name")
    baseline: str = Field("untrained", description="the untrained run's name")
    gpu_command: str = Field("python -m common.quickstart params/quickstart.yaml params/quickstart_qwen3_4b.yaml",
                             description="the command the report gives for the real model on a GPU")
    wandb: WandbMode = Field("auto", description="online, offline, disabled, or auto (WANDB_MODE, else offline)")


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
    import ctypes
    import signal
    import sys
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def in_fresh_process(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """fn(*args, **kwargs) in a new Python interpreter (spawn), its result (or its exception,
    with the child's traceback) sent back: each heavy stage starts clean and gives its memory
    back when it ends (session 5 saw stages run slower inside one long process; LOG.md).
    Interrupted or failing here, the stage's process is ended, not waited for."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
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
    from common.data import DataParams, build
    from common.notebooks import execute
    started = time.perf_counter()
    timings: dict[str, float] = {}
    out = reports_root() / p.experiment
    # The report's times are summed only over invocations of this checkout: a local copy beside
    # the (uncommitted) runs says which; without it, `out`'s timings are another machine's.
    local_timings = runs_root() / p.experiment / "quickstart_timings.json"
    fresh = not local_timings.exists()
    eval_set = {**p.eval_set, "experiment": p.experiment, "wandb": p.wandb, "wandb_group": p.experiment}
    sft_set = {**p.sft_set, "wandb": p.wandb}
    # every parameter is checked before the first stage runs
    data_p = load_params(DataParams, p.data_params)
    from common.train import SFTParams
    base_model = ex.eval_params(p.eval_params, eval_set).model
    tuned_model = load_params(SFTParams, p.sft_params, sft_set).model
    if base_model != tuned_model:
        raise ValueError(f"the untrained model ({base_model}, from the evaluation's parameters) is not the one "
                         f"fine-tuned ({tuned_model}, from the training's); set the same `model` in eval_set and sft_set")

    with ex.stage("1/5 build the data", timings):
        card = in_fresh_process(build, data_p)
    with ex.stage("2/5 evaluate the untrained model", timings):
        base = in_fresh_process(ex.evaluate_model, p.eval_params,
                                {**eval_set, "run": p.baseline, "out": str(out / p.baseline)})
    fine = in_fresh_process(ex.train_and_evaluate, "sft", p.experiment, p.run, p.sft_params, sft_set, p.eval_params,
                            eval_set, p.gate_samples, p.gate_no_call_accuracy, wandb_group=p.experiment)
    timings |= fine["timings"]  # filled in the stage's process, so returned rather than passed in
    # stages 3 and 4 under the quickstart's names
    timings = {"1/5 build the data": timings["1/5 build the data"],
               "2/5 evaluate the untrained model": timings["2/5 evaluate the untrained model"],
               "3/5 LoRA SFT": timings[f"train {p.run}"],
               "4/5 call gate + evaluate the fine-tuned model": timings.get(f"calibrate the call gate of {p.run}", 0.0)
               + timings[f"evaluate {p.run}"]}
    # the fine-tuned evaluation sits in reports/<experiment>/<run>/eval; the report names it <run>
    shutil.rmtree(out / p.run / "train", ignore_errors=True)
    ex.copy_history(fine["train"], out / p.run / "train" / "history.json")
    write_json(out / p.run / "train" / "results.json", ex.training_summary(fine["train"]))
    if fine["gate"]:
        gate = {k: v for k, v in fine["gate"].items() if k != "samples"}
        write_json(out / p.run / "call_gate.json", gate)
    with ex.stage("5/5 compare (notebook 07)", timings):
        execute("07_benchmark", out, {
            "experiment": p.experiment, "run": "comparison", "out_dir": shown(out),
            "title": f"quickstart: {base['model']} untrained vs + LoRA SFT",
            "evals": {p.baseline: shown(out / p.baseline),
                      p.run: shown(Path(fine["eval_dir"]))},
            "a": p.run, "b": p.baseline,
            "histories": {p.run: shown(out / p.run / "train" / "history.json")}})
    comp = json.loads((out / "comparison.json").read_text())
    timings["total"] = round(time.perf_counter() - started, 1)
    record = add_timings(out / "timings.json", timings, fresh)
    write_json(local_timings, record)
    report = write_report(p, out, comp, record, fine, card, command)
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
        f"**{100 * no_tool:.1f}%** ({'at or above' if kept else 'below'} the 70% this repository asks of a fine-tuned model)")
    verdict = ("**the fine-tuned model beats the untrained one** and still answers requests that need no call without one"
               if beats and kept else "**the bar is not met** (see LOG.md)")
    return [f"- **{h['a']} minus {h['b']}: {100 * d['difference']:+.1f} points** of accuracy (95% paired bootstrap CI "
            f"{100 * ci[0]:+.1f} to {100 * ci[1]:+.1f}; McNemar exact p = {h['mcnemar_exact_p']:.3g}): {interval}.",
            f"- No-tool accuracy of {h['a']}: {no_tool_text}.",
            f"- Verdict: {verdict}."]


def write_report(p: QuickstartParams, out: Path, comp: dict[str, Any], timings: dict[str, Any],
                 fine: dict[str, Any], card: dict[str, Any], command: str = "make quickstart") -> Path:
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
        f"Model `{tr['model']}`; held-out samples: the first {ev['n_samples']} of the eval split of `{ev['data']}` "
        f"(drawn with seed {card['params']['eval_seed']}, never trained on); greedy decoding.", "",
        "## Result", "", *verdict_lines(comp), "",
        ex.markdown_table(comp["table"]),
        "Intervals in the table are Wilson 95% intervals; the figures draw percentile bootstrap intervals.", "",
        "## How the fine-tuned model was made", "",
        f"- LoRA r{tr['params']['lora_r']}/α{tr['params']['lora_alpha']} on {tr['params']['target_modules']} "
        f"projections, lr {tr['params']['learning_rate']}, {tr['params']['lr_scheduler']} with "
        f"{tr['params']['warmup_ratio']:.0%} warmup, {tr['data']['train']['sequences']} training samples drawn at random, "
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
        "", "## The same pipeline with Qwen3-4B-Instruct-2507 on a GPU", "",
        "```bash",
        "make install",
        "python -m common.data build params/data_kinetic.yaml            # 10 tools per prompt, Kinetic's mix",
        p.gpu_command,
        "```", "",
        "`params/quickstart_qwen3_4b.yaml` swaps in Kinetic-4B's recipe (`params/sft_kinetic.yaml`: LoRA r64/α128 on "
        "all projections, lr 2e-4, 2 epochs, cosine, 5% warmup, bf16) and `params/evaluate_qwen3_4b.yaml` "
        "(the 300 held-out samples on `cuda`). It needs the model in the Hugging Face cache or "
        "`TOOLCALL_LAB_ALLOW_DOWNLOAD=1`.", ""]
    path = out / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("params", nargs="*", default=["params/quickstart.yaml"], help="YAML files, merged in order")
    add_set_argument(parser, list(QuickstartParams.model_fields))
    args = parser.parse_args(argv)
    command = " ".join(command_line(["python -m common.quickstart", *args.params,
                                     *(["--set", *args.set] if args.set else [])]))
    return run(load_params(QuickstartParams, args.params, parse_overrides(args.set)), command)


if __name__ == "__main__":
    cli(main)
