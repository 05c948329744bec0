"""DPO on top of an SFT run, with that SFT model as the reference: `train_dpo`.

Pairs come from answers sampled from the SFT model and checked (`sampled`) and from
corrupted copies of the reference answer (`corrupted`), into `pairs.jsonl`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from accelerate import PartialState
from datasets import Dataset
from peft import PeftModel
from tqdm.auto import tqdm
from trl import DPOConfig

from common.backends import GenerationSettings, TransformersBackend
from common.formats import get_format
from common.jsonio import append_jsonl, repair
from common.models import load_model
from common.provenance import local_path
from common.sources import load_samples
from common.training.devices import load_for_training, resolve_device, resolve_precision
from common.training.params import DPOParams
from common.training.preferences import corrupted_pairs, sampled_pairs
from common.training.run_folder import begin, finish_run, start_tracking, weights_dir
from common.training.trainers import (
    HistoryFile,
    TokenizedDPOTrainer,
    run_trainer,
    training_arguments,
)
from common.training.training_data import encode


def build_pairs(p: DPOParams, out: Path, tokenizer: Any) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Text pairs into `pairs.jsonl` (one line per prompt, appended as made, so an
    interrupted run resumes), returned with the count of every outcome."""
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
    device = resolve_device(p.device)
    precision = resolve_precision(p.precision, device)
    kind, folder = weights_dir(local_path(p.sft))
    if kind == "adapter":
        base, tokenizer = load_for_training(p, device, precision)
    else:  # a fully fine-tuned SFT model: train it, against a frozen copy of it
        model, tokenizer = load_model(str(folder), dtype="float32")
        ref_model, _ = load_model(str(folder), dtype="float32")
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
    results = finish_run(trainer, p, "dpo", out, trainer.processing_class, tracker, throughput, info, checkpoint)
    if not results:
        return {}
    print(f"[train] done: {throughput['seconds']} s; reward accuracy {results['final'].get('rewards/accuracies')}, "
          f"margin {results['final'].get('rewards/margins')}", flush=True)
    return results
