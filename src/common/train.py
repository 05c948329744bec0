"""Training: LoRA, full and QLoRA SFT, then DPO on top of an SFT run, with TRL and PEFT.

    python -m common.train sft params/sft.yaml                           # the CPU default
    python -m common.train sft params/sft.yaml --set limit=64 max_steps=4 --run smoke
    python -m common.train sft params/sft_kinetic.yaml                   # Qwen3-4B on a GPU
    python -m common.train dpo params/dpo.yaml                           # on top of the CPU SFT run
    accelerate launch -m common.train sft params/sft_kinetic.yaml        # several GPUs

Paths in parameters (`data`, `sft`) are read from the current directory, as in the
evaluation runner; outputs default to the project's `runs/`.

A run writes into `runs/<experiment>/<run>/`:
- `run.json`: the stage and resolved parameters (a rerun with other settings is refused);
- `checkpoints/checkpoint-N`: resumable checkpoints. A rerun of the same settings
  resumes from the last one (`--resume` insists on one, `--restart` starts over);
- `adapter/` (LoRA, QLoRA: PEFT format, loadable by transformers and by vLLM's
  `--lora-modules`) or `model/` (full fine-tuning), and `merged/` when `merge: true`;
- `history.jsonl`: every logged line as it came (loss, eval loss, token accuracy,
  learning rate, entropy, grad norm; for DPO the rewards and preference accuracy);
- `results.json`: parameters, data summary, trainable parameters, tokens/s, peak
  memory, final losses and provenance; `pairs.jsonl` for DPO.
W&B receives the same config and curves (offline unless a key and `wandb: online`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from common.errors import ArgumentParser, UserError, cli
from common.formats import get_format
from common.jsonl import (  # atomic: a killed run never leaves half a results file
    read_json,
    write_json,
)
from common.models import check_model_name
from common.params import add_set_argument, load_params, parse_overrides
from common.provenance import git_state, local_path, portable, provenance, runs_root
from common.tracking import NoRun, WandbMode, flatten, resolve_mode, start_run
from common.trainers import TARGETS, HistoryFile, lora_config, parameter_counts

# Parameters that do not change what a run computes: a rerun may change them.
FREE_KEYS = {"resume", "wandb", "wandb_project", "wandb_group", "logging_steps", "save_steps",
             "save_total_limit", "merge", "run", "out", "experiment"}


# What DPO takes from the SFT run it continues, never from its own parameters.
FROM_SFT = {"model", "format", "method", "lora_r", "lora_alpha", "lora_dropout", "target_modules"}


class TrainParams(BaseModel):
    """What SFT and DPO share."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    model: str = Field("smollm2-135m-instruct", description="registry name, hub id or local path")
    format: str | None = Field(None, description="tool-call format; default: the model's own")
    data: str = Field("data/offline-default:train", description="training samples: data/<build>[:split] "
                      "(python -m common.data build), a samples JSONL, or suite:NAME")
    experiment: str = Field("train", description="runs/<experiment>/<run> is the default output")
    run: str | None = Field(None, description="run name; default: <model>-<stage>-<method>")
    out: str | None = Field(None, description="output folder; default runs/<experiment>/<run>")
    method: Literal["lora", "full", "qlora"] = Field("lora", description="qlora needs a CUDA GPU")
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: str | list[str] = Field("all", description="all (q,k,v,o,gate,up,down), attention "
                                            "(q,k,v,o), or a list of module names")
    learning_rate: float = Field(2e-4, gt=0)
    batch_size: int = Field(1, ge=1, description="sequences per device per micro-batch")
    gradient_accumulation_steps: int = Field(8, ge=1)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; overrides epochs")
    max_length: int = Field(1024, ge=16, description="longer sequences are dropped (counted), not cut")
    lr_scheduler: str = "cosine"
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    seed: int = 42
    device: str = Field("auto", description="auto (cuda when there is one), cpu, cuda")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="auto: bf16 on a GPU that has it and on a CPU fast at it (AVX512-BF16/AMX), else fp32")
    gradient_checkpointing: bool = False
    logging_steps: int = Field(5, ge=1)
    save_steps: int = Field(25, ge=1, description="checkpoint every N optimizer steps")
    save_total_limit: int = Field(2, ge=1)
    merge: bool = Field(False, description="also save the adapter merged into the base weights")
    resume: Literal["auto", "always", "never"] = Field(
        "auto", description="auto: continue from the last checkpoint when there is one; always: fail "
        "without one (--resume); never: start over (--restart)")
    wandb: WandbMode = Field("auto", description="online, offline, disabled, or auto (WANDB_MODE, else offline)")
    wandb_project: str = "toolcall-lab"
    wandb_group: str | None = None

    @field_validator("format")
    @classmethod
    def _format(cls, v: str | None) -> str | None:
        return v if v is None else get_format(v).name  # an unknown name raises, listing the formats

    @field_validator("target_modules")
    @classmethod
    def _targets(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, str) and v not in TARGETS:
            raise ValueError(f"unknown target_modules {v!r}; use {sorted(TARGETS)} or a list of module names")
        return v


class SFTParams(TrainParams):
    limit: int | None = Field(None, ge=1, description="train on N samples drawn at random (seeded by `seed`) "
                              "from the split, which is stored grouped by toolkit")
    loss_impl: Literal["completion_logits", "trl_fused"] = Field(
        "completion_logits", description="completion_logits: logits of the completion positions only "
        "(fast on the CPU); trl_fused: TRL's chunked fused LM head")
    eval_data: str | None = Field("data/offline-default", description="held-out samples for the eval loss "
                                  "curve; null: none")
    eval_limit: int = Field(48, ge=0, description="eval-loss samples (drawn at random); 0: no eval loss")
    eval_steps: int | None = Field(None, ge=1, description="eval loss every N steps; default: 5 times a run")
    decision_weight: float = Field(1.0, ge=1.0, description=(
        "weight of each answer's first token in the training loss (the call/no-call decision); 1 is the "
        "plain loss. The logged train loss is the weighted one; the eval loss stays plain"))
    packing: bool = Field(False, description="padding-free packing (TRL's bfd) into max_length rows; "
                          "needs flash-attention (GPU)")

    @model_validator(mode="after")
    def _decision_weight(self) -> SFTParams:
        if self.decision_weight != 1.0 and (self.packing or self.loss_impl != "completion_logits"):
            raise ValueError("decision_weight needs loss_impl: completion_logits and packing: false (a packed row "
                             "holds several answers, whose first tokens the loss cannot tell apart)")
        return self


class DPOParams(TrainParams):
    sft: str | None = Field(None, description="the SFT run folder (runs/<experiment>/<run>) to start from "
                            "and to use as the reference model")
    data: str | None = Field(None, description="the pairs' prompts: data/<build>[:split], a samples JSONL or "
                             "suite:NAME; None: the SFT run's training data")
    learning_rate: float = Field(5e-5, gt=0)
    gradient_accumulation_steps: int = Field(4, ge=1)
    beta: float = Field(0.1, gt=0)
    sft_loss_weight: float = Field(0.0, ge=0, description="format-preserving variant: adds the SFT loss on "
                                   "the chosen answer with this weight (TRL loss_type sigmoid+sft, RPO)")
    pair_sources: list[Literal["sampled", "corrupted"]] = Field(["sampled", "corrupted"])
    pair_prompts: int = Field(64, ge=1, description="training samples the pairs are drawn from")
    samples_per_prompt: int = Field(4, ge=2, description="k answers sampled from the SFT model per prompt")
    sample_temperature: float = Field(0.8, gt=0)
    sample_top_p: float = Field(0.95, gt=0, le=1)
    sample_max_new_tokens: int = Field(160, ge=8)
    gold_when_none_correct: bool = Field(True, description="when no sampled answer is correct, the "
                                         "reference answer is the chosen one")
    corruptions_per_sample: int = Field(1, ge=1, le=4)

    @model_validator(mode="after")
    def _needs_sft(self) -> DPOParams:
        inherited = sorted(self.model_fields_set & FROM_SFT)
        if inherited:
            raise ValueError(f"{inherited} come from the SFT run that DPO continues (its model, format and "
                             "adapter); remove them from the DPO parameters")
        if not self.sft:
            raise ValueError("DPO starts from an SFT run: set `sft` to its folder "
                             "(e.g. --set sft=runs/train/smollm2-135m-instruct-sft-lora)")
        if not self.pair_sources:
            raise ValueError("pair_sources is empty; use sampled, corrupted or both")
        return self


STAGES = {"sft": SFTParams, "dpo": DPOParams}


# -- run folder -------------------------------------------------------------------------
def resolve(params: TrainParams, stage: str) -> TrainParams:
    update: dict[str, Any] = {}
    if isinstance(params, DPOParams):
        sft_run = read_run(Path(params.sft))
        update |= {k: sft_run["params"][k] for k in FROM_SFT}
        update["data"] = params.data or sft_run["params"]["data"]  # the pairs' prompts
    p = params.model_copy(update=update)
    run = p.run or f"{Path(p.model).name}-{stage}-{p.method}"
    out = p.out or str(runs_root() / p.experiment / run)
    from common.models import default_format
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
                             "or --restart to delete it and start over.")
    if is_main_process():  # under `accelerate launch`, one process owns the folder
        if p.resume == "never" and out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "run.json", {"stage": stage, "params": p.model_dump()})
    from accelerate import PartialState
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
    print(f"[train] {out} already finished with these settings; --restart trains it again", flush=True)
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


# -- devices, precision, models -------------------------------------------------------------
def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} asked for, but torch sees no CUDA GPU; use device: cpu")
    return device


def resolve_precision(precision: str, device: str) -> str:
    if precision != "auto":
        if precision == "fp16" and device == "cpu":
            raise ValueError("fp16 training needs a GPU; on the CPU use bf16 or fp32")
        return precision
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    from common.models import cpu_supports_bf16
    return "bf16" if cpu_supports_bf16() else "fp32"


def load_for_training(p: TrainParams, device: str, precision: str) -> tuple[Any, Any]:
    """The base model, its weights in the dtype training wants: fp32 master weights on
    the CPU and for full fine-tuning (bf16 comes from autocast), bf16 for a frozen base
    under LoRA on a GPU, 4-bit NF4 for QLoRA."""
    from common.models import load_model, load_tokenizer
    if p.method == "qlora":
        if not device.startswith("cuda"):
            raise RuntimeError("QLoRA quantizes the base model to 4 bits with bitsandbytes, which needs a CUDA "
                               "GPU; on the CPU use method: lora")
        from peft import prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig

        from common.models import _from_pretrained, _source
        if precision == "fp32":
            raise ValueError("QLoRA computes in bf16 or fp16 over the 4-bit weights; set precision: auto, bf16 or fp16")
        compute = torch.bfloat16 if precision == "bf16" else torch.float16
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=compute)
        model = _from_pretrained(AutoModelForCausalLM, _source(p.model), quantization_config=quant,
                                 dtype=compute, device_map={"": int(os.environ.get("LOCAL_RANK", "0"))})
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=p.gradient_checkpointing)
        return model, load_tokenizer(p.model)
    frozen_half = device.startswith("cuda") and p.method == "lora" and precision in {"bf16", "fp16"}
    dtype = ("bfloat16" if precision == "bf16" else "float16") if frozen_half else "float32"
    # seed 0: a tiny random model must be the same weights in every stage that loads it
    model, tokenizer = load_model(p.model, dtype=dtype, device="cpu", seed=0)
    return model, tokenizer


def training_arguments(cls: Any, p: TrainParams, out: Path, device: str, precision: str, report_to: list[str],
                       cpu_autocast: bool, **extra: Any) -> Any:
    return cls(
        output_dir=str(out / "checkpoints"), per_device_train_batch_size=p.batch_size,
        per_device_eval_batch_size=p.batch_size, gradient_accumulation_steps=p.gradient_accumulation_steps,
        num_train_epochs=p.epochs, max_steps=p.max_steps or -1, learning_rate=p.learning_rate,
        lr_scheduler_type=p.lr_scheduler, warmup_steps=p.warmup_ratio,  # a float < 1 is a ratio in transformers 5
        weight_decay=p.weight_decay,
        max_grad_norm=p.max_grad_norm, seed=p.seed, data_seed=p.seed, logging_steps=p.logging_steps,
        save_strategy="steps", save_steps=p.save_steps, save_total_limit=p.save_total_limit,
        bf16=precision == "bf16" and not cpu_autocast, fp16=precision == "fp16",
        use_cpu=device == "cpu", gradient_checkpointing=p.gradient_checkpointing,
        max_length=p.max_length, report_to=report_to, run_name=p.run, disable_tqdm=False,
        dataloader_num_workers=0, remove_unused_columns=False, **extra)


class Throughput:
    """Wall time and tokens of this invocation's training (the trainer counts tokens)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def finish(self, trainer: Any, steps_before: int) -> dict[str, Any]:
        seconds = time.perf_counter() - self.start
        tokens = int(getattr(trainer, "_total_train_tokens", 0))
        # the eval-loss passes of this invocation are not training time
        evals = sum(r.get("eval_runtime", 0.0) for r in trainer.state.log_history if r.get("step", 0) > steps_before)
        train_s = seconds - evals
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out = {"seconds": round(seconds, 1), "eval_seconds": round(evals, 1), "steps": trainer.state.global_step
               - steps_before, "tokens": tokens,
               "tokens_per_s": round(tokens / train_s, 1) if tokens and train_s > 0 else None,
               "peak_rss_mb": round(peak)}
        if torch.cuda.is_available():
            out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
        return out


def run_trainer(trainer: Any, checkpoint: str | None) -> dict[str, Any]:
    """Train (from `checkpoint` when resuming); this invocation's time, tokens and memory."""
    timer = Throughput()
    trainer.train(resume_from_checkpoint=checkpoint)
    return timer.finish(trainer, int(checkpoint.rsplit("-", 1)[1]) if checkpoint else 0)


def final_metrics(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The last value of every logged metric, and the first train loss."""
    last: dict[str, Any] = {}
    for row in history:
        last.update({k: v for k, v in row.items() if isinstance(v, (int, float))})
    first = next((r["loss"] for r in history if "loss" in r), None)
    return {"first_train_loss": first, **{k: last[k] for k in sorted(last) if k not in {"step", "epoch"}}}


def load_samples(spec: str, limit: int | None = None, seed: int = 0) -> list[Any]:
    """Samples of a data spec; `limit` draws that many at random (a built split is
    stored grouped by toolkit and scenario, so its first N would be a few toolkits)."""
    import random

    from common.evaluate import load_data
    samples = load_data(spec)  # a missing build's error says how to build it
    if limit and limit < len(samples):
        samples = random.Random(seed).sample(samples, limit)
    return samples


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
        from common.models import load_model
        # merged from a fresh, unquantized base so QLoRA merges into real weights
        merged, _ = load_model(p.model, adapter=str(out / kind), merge=True,
                               dtype={"bf16": "bfloat16", "fp16": "float16"}.get(precision, "float32"), seed=0)
        merged.save_pretrained(str(out / "merged"))
        tokenizer.save_pretrained(str(out / "merged"))
        saved["merged"] = str(out / "merged")
    return saved


def finish_run(trainer: Any, p: TrainParams, stage: str, out: Path, tokenizer: Any, tracker: Any,
               throughput: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Save the weights (every process), then history and results (the main one)."""
    saved = save_outputs(trainer, p, out, tokenizer, extra["precision"])
    if not trainer.is_world_process_zero():
        return {}
    history = trainer.state.log_history
    write_json(out / "history.json", history)
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
    from transformers import set_seed
    p = resolve(cls.model_validate(params) if isinstance(params, dict) else params, stage)
    check_model_name(p.model)  # a typo is reported before the run folder is made
    set_seed(p.seed)
    out = prepare_out(p, stage)
    done = finished(out, p.resume)
    return p, out, done, None if done else last_checkpoint(out, p.resume)


# -- SFT -----------------------------------------------------------------------------------
def train_sft(params: SFTParams | dict[str, Any], callbacks: list[Any] = ()) -> dict[str, Any]:
    """Supervised fine-tuning (LoRA, full or QLoRA) of `params.model` on `params.data`."""
    from datasets import Dataset
    from trl import SFTConfig

    from common.trainers import CompletionSFTTrainer
    from common.training_data import sft_rows
    p, out, done, checkpoint = begin(params, SFTParams, "sft")
    if done is not None:
        return done
    # the data is read (and validated) before the model loads
    samples = load_samples(p.data, p.limit, p.seed)
    eval_samples = load_samples(p.eval_data, p.eval_limit, p.seed) if p.eval_data and p.eval_limit else None
    device = resolve_device(p.device)
    precision = resolve_precision(p.precision, device)
    model, tokenizer = load_for_training(p, device, precision)
    attention = str(getattr(model.config, "_attn_implementation", ""))
    if p.packing and "flash" not in attention:
        # measured: with sdpa and eager, a packed row's second sequence attends to the first
        raise ValueError(f"packing needs a flash-attention kernel that keeps packed sequences apart; this model "
                         f"uses {attention!r}, where they would attend to each other. Set packing: false, or "
                         "install flash-attn on a GPU and load the model with attn_implementation=flash_attention_2")
    fmt = get_format(p.format)
    train = sft_rows(samples, fmt, tokenizer, p.max_length)
    columns = ("input_ids", "completion_mask")
    train_ds = Dataset.from_list([{k: r[k] for k in columns} for r in train.rows])
    evals = None
    if eval_samples:
        evals = sft_rows(eval_samples, fmt, tokenizer, p.max_length)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    steps = p.max_steps or math.ceil(math.ceil(len(train.rows) / (p.batch_size * world))
                                     / p.gradient_accumulation_steps * p.epochs)
    eval_steps = p.eval_steps or max(1, steps // 5)
    tracker, report_to = start_tracking(p, "sft")
    cpu_autocast = device == "cpu" and precision == "bf16"
    args = training_arguments(
        SFTConfig, p, out, device, precision, report_to, cpu_autocast,
        completion_only_loss=True, packing=p.packing, packing_strategy="bfd", padding_free=p.packing,
        eval_strategy="steps" if evals else "no", eval_steps=eval_steps if evals else None,
        dataset_num_proc=None)
    trainer = CompletionSFTTrainer(
        model=model, args=args, train_dataset=train_ds, processing_class=tokenizer,
        eval_dataset=Dataset.from_list([{k: r[k] for k in columns} for r in evals.rows]) if evals else None,
        peft_config=None if p.method == "full" else lora_config(p.lora_r, p.lora_alpha, p.lora_dropout,
                                                                p.target_modules),
        callbacks=[HistoryFile(out / "history.jsonl"), *callbacks], cpu_autocast=cpu_autocast,
        own_loss=p.loss_impl == "completion_logits", decision_weight=p.decision_weight)
    print(f"[train] sft {p.method} of {p.model} on {len(train.rows)} sequences ({train.tokens:,} tokens), "
          f"{steps} steps, {device}/{precision}{' (autocast)' if cpu_autocast else ''}, into {out}"
          + (f"; resuming from {Path(checkpoint).name}" if checkpoint else ""), flush=True)
    throughput = run_trainer(trainer, checkpoint)
    extra = {"data": {"train": train.summary(), "eval": evals.summary() if evals else None},
             "precision": precision, "device": device, "cpu_autocast": cpu_autocast}
    results = finish_run(trainer, p, "sft", out, tokenizer, tracker, throughput, extra)
    if not results:
        return {}
    print(f"[train] done: {throughput['tokens_per_s']} tokens/s, {throughput['seconds']} s; "
          f"final loss {results['final'].get('loss')}; outputs {results['outputs']}", flush=True)
    return results


# -- DPO -----------------------------------------------------------------------------------
def build_pairs(p: DPOParams, out: Path, tokenizer: Any) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Text pairs into `pairs.jsonl` (one line per prompt, appended as made, so an
    interrupted run resumes), returned with the count of every outcome."""
    from dataclasses import asdict

    from common.backends import GenerationSettings, TransformersBackend
    from common.jsonl import append_jsonl, repair
    from common.models import load_model
    from common.preferences import corrupted_pairs, sampled_pairs
    fmt = get_format(p.format)
    prompts = load_samples(p.data, p.pair_prompts, p.seed)
    path = out / "pairs.jsonl"
    done = {r["id"]: r for r in repair(path).rows}  # this run's folder is its own (train holds it)
    stats: Counter = Counter()
    if "sampled" in p.pair_sources and any(s.id not in done for s in prompts):
        kind, folder = weights_dir(local_path(p.sft))
        # sampled from a bf16 copy where that is fast; the trained copy stays fp32
        device = resolve_device(p.device)
        model, tok = (load_model(p.model, adapter=str(folder), dtype="auto", device=device, seed=0)
                      if kind == "adapter" else load_model(str(folder), dtype="auto", device=device))
        backend = TransformersBackend(model, tok, GenerationSettings(
            p.sample_max_new_tokens, p.sample_temperature, p.sample_top_p, 0, 1.0, p.seed),
            stop_texts=(fmt.end_of_turn(tok), *fmt.stop_texts))
        from tqdm.auto import tqdm
        todo = [s for s in prompts if s.id not in done]
        for sid, pairs, outcome in tqdm(sampled_pairs(todo, fmt, tok, backend, p.samples_per_prompt,
                                                      p.gold_when_none_correct),
                                        total=len(todo), desc="sample pairs", unit="prompt"):
            row = {"id": sid, "outcome": outcome, "pairs": [asdict(x) for x in pairs]}
            append_jsonl(path, [row])
            done[sid] = row
        del model, backend
    rows = []
    for s in prompts:
        if s.id in done:
            stats[done[s.id]["outcome"]] += 1
            rows += done[s.id]["pairs"]
    if "corrupted" in p.pair_sources:
        rows += [asdict(x) for x in corrupted_pairs(prompts, fmt, tokenizer, p.seed, p.corruptions_per_sample,
                                                    stats)]
    return rows, dict(stats)


def dpo_trainer(p: DPOParams, out: Path, tracker_report_to: list[str],
                callbacks: list[Any] = ()) -> tuple[Any, dict[str, Any]]:
    """The DPOTrainer for a resolved DPO run, with its pairs built, and what to record."""
    from datasets import Dataset
    from peft import PeftModel
    from trl import DPOConfig

    from common.trainers import TokenizedDPOTrainer
    from common.training_data import encode
    device = resolve_device(p.device)
    precision = resolve_precision(p.precision, device)
    kind, folder = weights_dir(local_path(p.sft))
    if kind == "adapter":
        base, tokenizer = load_for_training(p, device, precision)
    else:  # a fully fine-tuned SFT model: train it, against a frozen copy of it
        from common.models import load_model
        model, tokenizer = load_model(str(folder), dtype="float32")
        ref_model, _ = load_model(str(folder), dtype="float32")
    from accelerate import PartialState
    with PartialState().main_process_first():  # under several processes, one builds and the others read
        pairs, outcomes = build_pairs(p, out, tokenizer)
    # tokenized as the SFT rows are: the prompt as the evaluation renders it, no added
    # special tokens, answers ending with the template's end-of-turn marker
    rows, too_long = [], 0
    for x in pairs:
        row = {"prompt_ids": encode(tokenizer, x["prompt"]), "chosen_ids": encode(tokenizer, x["chosen"]),
               "rejected_ids": encode(tokenizer, x["rejected"]), "source": x["source"]}
        if len(row["prompt_ids"]) + max(len(row["chosen_ids"]), len(row["rejected_ids"])) > p.max_length:
            too_long += 1
        else:
            rows.append(row)
    if not rows:
        raise RuntimeError(f"no preference pair to train on: {len(pairs)} made ({outcomes}), {too_long} of them "
                           f"longer than max_length={p.max_length}. Raise max_length, draw more prompts "
                           "(pair_prompts), sample more answers (samples_per_prompt) or add corrupted pairs")
    if kind == "adapter":
        # The SFT adapter, trainable. With no ref_model, TRL copies it into a frozen "ref"
        # adapter, so the reference is the SFT model, not the base with adapters disabled
        # (what TRL does for a new adapter, and what the SLM paper's code appears to do).
        model, ref_model = PeftModel.from_pretrained(base, str(folder), is_trainable=True), None
    losses = ["sigmoid", "sft"] if p.sft_loss_weight > 0 else ["sigmoid"]
    args = training_arguments(DPOConfig, p, out, device, precision, tracker_report_to, cpu_autocast=False,
                              beta=p.beta, loss_type=losses,
                              loss_weights=[1.0, p.sft_loss_weight] if p.sft_loss_weight > 0 else None)
    dataset = Dataset.from_list([{k: r[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")} for r in rows])
    trainer = TokenizedDPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=dataset,
                         processing_class=tokenizer,
                         callbacks=[HistoryFile(out / "history.jsonl"), *callbacks])
    info = {"sft": p.sft, "reference": f"the SFT {kind} of {p.sft}",
            "pairs": {"trained": len(rows), "longer_than_max_length": too_long, "outcomes": outcomes,
                      "by_source": dict(Counter(r["source"] for r in rows))},
            "precision": precision, "device": device}
    return trainer, info


def train_dpo(params: DPOParams | dict[str, Any], callbacks: list[Any] = ()) -> dict[str, Any]:
    """DPO on top of an SFT run, with that SFT model as the reference."""
    p, out, done, checkpoint = begin(params, DPOParams, "dpo")
    if done is not None:
        return done
    tracker, report_to = start_tracking(p, "dpo")
    try:
        trainer, info = dpo_trainer(p, out, report_to, callbacks)
    except BaseException:
        tracker.finish()
        raise
    print(f"[train] dpo of {p.sft} on {info['pairs']['trained']} pairs ({info['pairs']['by_source']}), "
          f"beta {p.beta}, sft loss weight {p.sft_loss_weight}, {info['device']}/{info['precision']}, into {out}"
          + (f"; resuming from {Path(checkpoint).name}" if checkpoint else ""), flush=True)
    throughput = run_trainer(trainer, checkpoint)
    results = finish_run(trainer, p, "dpo", out, trainer.processing_class, tracker, throughput, info)
    if not results:
        return {}
    print(f"[train] done: {throughput['seconds']} s; reward accuracy {results['final'].get('rewards/accuracies')}, "
          f"margin {results['final'].get('rewards/margins')}", flush=True)
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=sorted(STAGES), help="sft, or dpo on top of an SFT run")
    parser.add_argument("params", nargs="*", help="YAML parameter files, merged in order")
    add_set_argument(parser)
    parser.add_argument("--run", help="run name (runs/<experiment>/<run>)")
    parser.add_argument("--out", help="output folder")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue from the last checkpoint (fail if none)")
    group.add_argument("--restart", action="store_true", help="delete this run's folder and start over")
    args = parser.parse_args(argv)
    overrides = parse_overrides(args.set)
    overrides |= {k: v for k, v in (("run", args.run), ("out", args.out)) if v is not None}
    if args.resume or args.restart:
        overrides["resume"] = "always" if args.resume else "never"
    params = load_params(STAGES[args.stage], args.params, overrides)
    return (train_sft if args.stage == "sft" else train_dpo)(params)


if __name__ == "__main__":
    cli(main)
