"""The pieces the training entry point puts around TRL: adapters, the SFT loss, history.

- `lora_config`: PEFT LoRA over the attention projections or all seven projections.
- `CompletionSFTTrainer`: TRL's SFTTrainer whose loss projects through the LM head
  only the positions that have a label (the completion), under bf16 autocast on a
  CPU that is fast at it. Everything else (data collation, padding-free batches,
  checkpoints, resume, W&B) is TRL's and transformers'.
- `TokenizedDPOTrainer`: TRL's DPOTrainer fed pairs tokenized like the SFT rows, scoring
  only the answers' positions on the CPU (`completions_only`).
- `HistoryFile`: every logged line appended to `history.jsonl` as it comes, so the
  curves of a run survive without the W&B server and while the run is going.
- `changed_parameters`, `parameter_counts`: what training changed, and how much may train.
- `training_arguments`, `run_trainer`: the trainer's arguments from a run's parameters,
  and one invocation's wall time, tokens/s and peak memory.
- `compile_layers`: torch.compile of each decoder layer, where it measured faster.
"""

from __future__ import annotations

import contextlib
import json
import resource
import shutil
import sysconfig
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import trl.trainer.utils as trl_utils
from peft import LoraConfig
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState
from trl import DPOTrainer, SFTTrainer

from common.jsonio import append_jsonl
from common.provenance import git_state
from common.training.params import TrainParams, target_modules


def lora_config(r: int, alpha: int, dropout: float, targets: str | list[str]) -> Any:
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules(targets),
                      bias="none", task_type="CAUSAL_LM")


class CompletionSFTTrainer(SFTTrainer):
    """SFTTrainer with a loss computed from the completion positions' logits only.

    TRL's own loss runs a chunked, fused LM head (`fused_lm_head=True`) that keeps
    GPU memory low but, measured on this 2-core CPU with SmolLM2-135M, took about
    half of every step (its backward alone 1.5 s of 3.5 s). Here the model's own
    forward is asked for the logits of the labelled positions only
    (`logits_to_keep`, so the model's head, soft-capping and scaling apply), and the
    loss, entropy and token accuracy are computed from those: the same values TRL
    logs, at a fraction of the cost when the completion is ~10% of the sequence.

    `cpu_autocast`: run the forward under bf16 autocast here rather than through
    `TrainingArguments(bf16=True)`; measured, accelerate's wrapped forward gave
    185 tokens/s where this gave 230-250 on the same steps and the same losses.

    `decision_weight`: the loss of each answer's first token (where the model decides
    between starting a call and replying) counts this many times. It is one token of
    the ~40 in an answer, so at weight 1 a short run learns the call format long before
    it learns when to call (LOG.md, 2026-11-23); 1.0 is the plain loss.
    """

    def __init__(self, *args: Any, cpu_autocast: bool = False, own_loss: bool = True,
                 decision_weight: float = 1.0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.cpu_autocast, self.own_loss, self.decision_weight = cpu_autocast, own_loss, decision_weight

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if self.cpu_autocast else contextlib.nullcontext()
        # TRL's own loss (fused LM head): on request, and for what this one does not do
        # (DFT loss, label smoothing, a MoE router's auxiliary loss)
        if (not self.own_loss or self.args.loss_type != "nll" or self.label_smoother is not None
                or self.aux_loss_enabled):
            if self.decision_weight != 1.0:
                raise ValueError("decision_weight needs the completion_logits loss with loss_type nll")
            with autocast:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        target = labels[:, 1:]
        # positions whose next token is labelled in any row (exact for one row or padding-free)
        keep = (target != -100).any(dim=0).nonzero().squeeze(-1)
        with autocast:
            outputs = model(**inputs, use_cache=False, logits_to_keep=keep)
        logits = outputs.logits.float()
        target = target[:, keep]
        mask = target != -100
        # each row's first labelled token: the call/no-call decision (one answer per row
        # unpacked; packed rows hold several answers and are weighted at their first only)
        first = mask & (mask.cumsum(dim=1) == 1)
        # (the eval loss stays the plain loss, comparable across weights)
        weight = torch.where(first, self.decision_weight if mode == "train" else 1.0, 1.0)[mask]
        logits, target = logits[mask], target[mask]
        num_tokens = mask.sum() if num_items_in_batch is None else num_items_in_batch
        ce = F.cross_entropy(logits, target, reduction="none")
        loss = (ce * weight).sum() / torch.as_tensor(num_tokens).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())  # as TRL does
        with torch.no_grad():
            log_probs = logits.log_softmax(-1)
            entropy = -(log_probs.exp() * log_probs).sum(-1).sum()
            correct = (logits.argmax(-1) == target).sum()
            n = self.accelerator.gather_for_metrics(mask.sum()).sum()
            entropy = self.accelerator.gather_for_metrics(entropy).sum()
            correct = self.accelerator.gather_for_metrics(correct).sum()
        self._metrics[mode]["entropy"].append((entropy / n).item() if n > 0 else 0.0)
        self._metrics[mode]["mean_token_accuracy"].append((correct / n).item() if n > 0 else 0.0)
        if mode == "train":
            if "attention_mask" in inputs:
                seen = inputs["attention_mask"].sum()
            else:  # padding-free: one row of packed sequences
                seen = torch.tensor(inputs["position_ids"].size(1), device=labels.device)
            self._total_train_tokens += self.accelerator.gather_for_metrics(seen).sum().item()
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return (loss, outputs) if return_outputs else loss


@contextlib.contextmanager
def completions_only():
    """TRL's fused LM head scoring only the labelled positions on the CPU too.

    TRL 1.16 (`trl.trainer.utils.add_fused_lm_head`) projects only the labelled positions
    through the LM head on Triton devices; elsewhere it projects every position and masks
    after, so that tile shapes stay fixed for compilers such as Neuron's. On the CPU nothing
    recompiles, and a tool-calling prompt is ~90% of its sequence: every DPO forward and
    backward (policy and reference, chosen and rejected) paid the vocabulary projection for
    the prompt. TRL has no option for it, so its switch is flipped here, for this trainer's
    calls only; the log-probabilities are the same (test_train checks both paths)."""
    original = trl_utils._use_triton
    trl_utils._use_triton = lambda device: device.type == "cpu" or original(device)
    try:
        yield
    finally:
        trl_utils._use_triton = original


class TokenizedDPOTrainer(DPOTrainer):
    """DPOTrainer that takes pairs already tokenized (`prompt_ids`, `chosen_ids`,
    `rejected_ids`), the way `training_data` tokenizes SFT rows. TRL 1.16 always
    tokenizes text pairs itself: with special tokens added (a second BOS after the
    one the chat template wrote, for Gemma and Llama) and its `eos_token` appended
    to answers that end with another end-of-turn marker (Gemma's `<end_of_turn>`),
    so DPO would train on other sequences than SFT and inference see."""

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
        if {"prompt_ids", "chosen_ids", "rejected_ids"} <= set(dataset.column_names):
            return dataset
        return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

    def compute_loss(self, *args: Any, **kwargs: Any) -> Any:
        with completions_only():
            return super().compute_loss(*args, **kwargs)

    def compute_ref_log_probs(self, *args: Any, **kwargs: Any) -> Any:
        with completions_only():
            return super().compute_ref_log_probs(*args, **kwargs)


class HistoryFile(TrainerCallback):
    """Append each log line (with its step) to a JSONL file on the main process."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any):
        if state.is_world_process_zero and logs:
            append_jsonl(self.path, [{"step": state.global_step, "epoch": state.epoch, **logs}])


def cxx_compiler() -> str | None:
    """The C++ compiler torch.compile's CPU backend (inductor) builds its kernels with, when it
    is there with Python's headers (the kernels include Python.h); None otherwise. Asked of
    torch itself ($CXX, else g++ on Linux), not guessed."""
    # imported here: inductor is heavy and only a run that may compile needs it
    from torch._inductor.cpp_builder import get_cpp_compiler
    try:
        compiler = get_cpp_compiler()
    except (RuntimeError, OSError):  # torch's InvalidCxxCompiler is a RuntimeError
        return None
    found = shutil.which(compiler) if compiler else None
    headers = Path(sysconfig.get_paths()["include"], "Python.h").is_file()
    return found if found and headers else None


# `compile: auto` compiles when a run is long enough to pay the compile back: ~60 s on 2 cores the
# first time (~10 s from torch's on-disk cache later) against ~12% of a step saved at ~150
# tokens/s, so from ~75k tokens; tiny runs and tests stay eager.
COMPILE_MIN_TOKENS = 100_000


def compile_layers(model: torch.nn.Module, setting: str, device: str, method: str,
                   planned_tokens: int | None = None) -> dict[str, Any]:
    """torch.compile each decoder layer of `model` in place (`setting`: auto, on, off).

    Regional compilation, PyTorch's recipe for a stack of identical blocks: every layer
    runs the same code, so one graph (compiled once, with the sequence length dynamic)
    serves all of them, in ~1 min on 2 cores, where compiling the whole model (the
    Trainer's `torch_compile=True`) traces all layers unrolled and recompiles per length.
    Parameter names, checkpoints and the saved adapter are unchanged (`Module.compile`
    wraps the forward, not the module). What it buys on the CPU is fused elementwise work
    (norms, rotary, SiLU, LoRA's scaling and residuals: ~12% of a step, LOG.md
    2026-11-30); the matmuls, already at ~95% of the CPU's fp32 peak, stay as they are.
    `auto` turns it on for LoRA on the CPU with a C++ compiler (measured 1.1-1.2x there)
    when the run will train on at least `COMPILE_MIN_TOKENS` tokens; on a GPU it is not
    measured here, so `auto` leaves it off."""
    if setting == "off":
        return {"compile": False, "reason": "compile: off"}
    if setting == "auto":
        if device != "cpu" or method != "lora":
            return {"compile": False, "reason": f"auto: measured only for LoRA on the CPU (this run: {method} "
                                               f"on {device})"}
        if planned_tokens is not None and planned_tokens < COMPILE_MIN_TOKENS:
            return {"compile": False, "reason": f"auto: {planned_tokens:,} tokens to train on, under the "
                                               f"{COMPILE_MIN_TOKENS:,} where compiling pays for itself"}
        if cxx_compiler() is None:
            return {"compile": False, "reason": "auto: no C++ compiler (with Python's headers) for torch.compile's "
                                               "CPU kernels (install g++ and python3-dev, or set CXX)"}
    elif device == "cpu" and cxx_compiler() is None:
        raise RuntimeError("compile: on needs a C++ compiler (with Python's headers) for torch.compile's CPU "
                           "kernels; install g++ and python3-dev (or set CXX), or set compile: off")
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    kinds = set(getattr(base, "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in kinds]
    if not layers:
        if setting == "on":
            raise RuntimeError(f"compile: on, but {type(base).__name__} names no decoder layer class "
                               "(_no_split_modules) to compile; set compile: off")
        return {"compile": False, "reason": f"auto: {type(base).__name__} names no decoder layer class"}
    for layer in layers:
        layer.compile(dynamic=True)
    return {"compile": True, "reason": f"{setting}: {len(layers)} x {type(layers[0]).__name__}",
            "layers": len(layers)}


def changed_parameters(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> set[str]:
    """Names of the parameters whose values differ from `before` (a full snapshot)."""
    now = dict(model.named_parameters())
    return {n for n, old in before.items() if n in now and not torch.equal(now[n].detach().cpu(), old.cpu())}


def parameter_counts(model: torch.nn.Module) -> dict[str, Any]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable, "trainable_pct": round(100 * trainable / total, 3)}


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


class FirstStep(TrainerCallback):
    """When this invocation's first optimizer step ended, and the tokens it had read by then
    (the first step carries one-off costs: torch.compile, allocator warm-up)."""

    def __init__(self, trainer: Any) -> None:
        self.trainer, self.at, self.tokens = trainer, None, 0

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.at is None:
            self.at, self.tokens = time.perf_counter(), int(getattr(self.trainer, "_total_train_tokens", 0))


class Throughput:
    """Wall time and tokens of this invocation's training (the trainer counts tokens)."""

    def __init__(self, first_step: FirstStep | None = None) -> None:
        self.start = time.perf_counter()
        self.first_step = first_step

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
        first = self.first_step
        if first is not None and first.at is not None:
            # the steady pace: after the first step, whose one-off costs the line above includes
            # (eval-loss passes all come after the first step)
            rest_s, rest_tokens = seconds - (first.at - self.start) - evals, tokens - first.tokens
            out["first_step_seconds"] = round(first.at - self.start, 3)
            out["tokens_per_s_after_first_step"] = (round(rest_tokens / rest_s, 1)
                                                    if rest_tokens > 0 and rest_s > 0 else None)
        if torch.cuda.is_available():
            out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
        return out


INVOCATIONS_FILE = "invocations.json"  # where checkpoints saved before session 30 kept them


class CheckpointInvocations(TrainerCallback, ExportableState):
    """Each checkpoint keeps the invocations that trained up to it: those it resumed from and this
    one's time and tokens so far (`until_step`). A run killed after a checkpoint and resumed from
    it then records what its first steps cost, not only the resumed tail's. They are written inside
    the checkpoint's trainer_state.json (transformers' `ExportableState`), the file whose presence makes a
    checkpoint complete, so a kill can never leave a complete checkpoint without them."""

    def __init__(self, trainer: Any, timer: Throughput, steps_before: int, earlier: list[dict[str, Any]],
                 git: dict[str, Any]) -> None:
        self.trainer, self.timer, self.steps_before, self.earlier, self.git = trainer, timer, steps_before, earlier, git

    def state(self) -> dict[str, Any]:
        so_far = {"git": self.git, **self.timer.finish(self.trainer, self.steps_before),
                  "until_step": self.trainer.state.global_step}
        return {"args": {}, "attributes": {"invocations": [*self.earlier, so_far]}}


def checkpoint_invocations(checkpoint: str | None) -> list[dict[str, Any]]:
    """The invocations that trained up to `checkpoint` ([] without one, or for a checkpoint saved
    before they were recorded)."""
    if not checkpoint:
        return []
    state = Path(checkpoint) / "trainer_state.json"
    kept = json.loads(state.read_text()).get("stateful_callbacks", {}).get(CheckpointInvocations.__name__) \
        if state.is_file() else None
    if isinstance(kept, dict):
        return kept.get("attributes", {}).get("invocations", [])
    old = Path(checkpoint) / INVOCATIONS_FILE
    return json.loads(old.read_text()) if old.is_file() else []


def run_trainer(trainer: Any, checkpoint: str | None) -> dict[str, Any]:
    """Train (from `checkpoint` when resuming); this invocation's time, tokens and memory. Every
    checkpoint saved records the invocations so far (`CheckpointInvocations`)."""
    first = FirstStep(trainer)
    trainer.add_callback(first)
    timer = Throughput(first)
    steps_before = int(checkpoint.rsplit("-", 1)[1]) if checkpoint else 0
    trainer.add_callback(CheckpointInvocations(trainer, timer, steps_before, checkpoint_invocations(checkpoint),
                                               git_state()))
    trainer.train(resume_from_checkpoint=checkpoint)
    return timer.finish(trainer, steps_before)


def final_metrics(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The last value of every logged metric, and the first train loss."""
    last: dict[str, Any] = {}
    for row in history:
        last.update({k: v for k, v in row.items() if isinstance(v, (int, float))})
    first = next((r["loss"] for r in history if "loss" in r), None)
    return {"first_train_loss": first, **{k: last[k] for k in sorted(last) if k not in {"step", "epoch"}}}
