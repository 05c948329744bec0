"""Supervised fine-tuning (LoRA, full or QLoRA) with TRL's SFTTrainer: `train_sft`."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from datasets import Dataset
from trl import SFTConfig

from common.formats import get_format
from common.markdown import number
from common.sources import load_samples, split_samples_sha256, split_sha256
from common.training.devices import load_for_training, resolve_device, resolve_precision
from common.training.params import SFTParams
from common.training.run_folder import begin, finish_run, start_tracking
from common.training.trainers import (
    CompletionSFTTrainer,
    HistoryFile,
    compile_layers,
    lora_config,
    run_trainer,
    training_arguments,
)
from common.training.training_data import sft_rows


def train_sft(params: SFTParams | dict[str, Any], callbacks: list[Any] = ()) -> dict[str, Any]:
    """Supervised fine-tuning (LoRA, full or QLoRA) of `params.model` on `params.data`."""
    p, out, done, checkpoint = begin(params, SFTParams, "sft")
    if done is not None:
        return done
    # the data is read (and validated) before the model loads
    samples = load_samples(p.data, p.limit, p.seed)
    data_sha = {"split_sha256": split_sha256(p.data), "samples_sha256": split_samples_sha256(p.data)}
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
    planned = steps * p.batch_size * p.gradient_accumulation_steps * world * train.tokens / len(train.rows)
    compiled = compile_layers(trainer.model, p.compile, device, p.method, int(planned))
    print(f"[train] sft {p.method} of {p.model} on {len(train.rows)} sequences ({train.tokens:,} tokens), "
          f"{steps} steps, {device}/{precision}{' (autocast)' if cpu_autocast else ''}"
          f"{', compiled layers' if compiled['compile'] else ''}, into {out}"
          + (f"; resuming from {Path(checkpoint).name}" if checkpoint else ""), flush=True)
    throughput = run_trainer(trainer, checkpoint)
    extra = {"data": {"train": {**train.summary(), **data_sha}, "eval": evals.summary() if evals else None},
             "precision": precision, "device": device, "cpu_autocast": cpu_autocast,
             "compile": compiled}
    results = finish_run(trainer, p, "sft", out, tokenizer, tracker, throughput, extra, checkpoint)
    if not results:
        return {}
    print(f"[train] done: {throughput['tokens_per_s']} tokens/s, {throughput['seconds']} s; "
          f"final loss {number(results['final'].get('loss'), 4)}; outputs {results['outputs']}", flush=True)
    return results
