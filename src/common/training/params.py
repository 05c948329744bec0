"""The parameters of a training run: what SFT and DPO share, and what each adds.

A run's folder records them (`run.json`); a rerun that changes anything but `FREE_KEYS`
is refused, and DPO takes `FROM_SFT` from the SFT run it continues.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from common.params import ModelSpec

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
ALL_PROJECTIONS = (*ATTENTION, "gate_proj", "up_proj", "down_proj")
TARGETS = {"attention": ATTENTION, "all": ALL_PROJECTIONS}


def target_modules(spec: str | list[str]) -> list[str]:
    return list(TARGETS[spec]) if isinstance(spec, str) else list(spec)


# Parameters that do not change what a run computes: a rerun may change them (`compile` changes
# how fast, and the last bits of the floats, as a thread count does).
FREE_KEYS = {"compile", "resume", "wandb", "wandb_project", "wandb_group", "logging_steps", "save_steps",
             "save_total_limit", "merge", "run", "out", "experiment"}


# What DPO takes from the SFT run it continues, never from its own parameters.
FROM_SFT = {"model", "format", "method", "lora_r", "lora_alpha", "lora_dropout", "target_modules"}


class TrainParams(ModelSpec):
    """What SFT and DPO share (the model, format, device and W&B fields come from `ModelSpec`)."""

    data: str = Field("data/offline-default:train", description="training samples: data/<build>[:split] "
                      "(python -m common.data build), a samples JSONL, or suite:NAME")
    experiment: str = Field("train", description="runs/<experiment>/<run> is the default output")
    run: str | None = Field(None, description="run name; default: <model>-<stage>-<method>")
    out: str | None = Field(None, description="output folder; default runs/<experiment>/<run>")
    method: Literal["lora", "full", "qlora"] = Field("lora", description="qlora needs a CUDA GPU")
    lora_r: int = Field(16, ge=1, description="LoRA rank")
    lora_alpha: int = Field(32, ge=1, description="default: 2 x lora_r")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the LoRA path")
    target_modules: str | list[str] = Field("all", description="all (q,k,v,o,gate,up,down), attention "
                                            "(q,k,v,o), or a list of module names")
    learning_rate: float = Field(2e-4, gt=0, description="peak learning rate (AdamW)")
    batch_size: int = Field(1, ge=1, description="sequences per device per micro-batch")
    gradient_accumulation_steps: int = Field(8, ge=1, description="micro-batches per optimizer step")
    epochs: float = Field(1.0, gt=0, description="passes over the training data (max_steps overrides)")
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; overrides epochs")
    max_length: int = Field(1024, ge=16, description="longer sequences are dropped (counted), not cut")
    lr_scheduler: str = Field("cosine", description="transformers' scheduler name (cosine, linear, constant, ...)")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="share of the steps the learning rate warms up")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping norm")
    seed: int = Field(42, description="seed of the initialisation, the data order and every draw (SFT's limit and "
                      "eval_limit samples; DPO's pair prompts, sampled answers and corruptions)")
    device: str = Field("auto", description="auto (cuda when there is one), cpu, cuda")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="auto: bf16 on a GPU that has it and on a CPU fast at it (AVX512-BF16/AMX), else fp32")
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass "
                                         "(less memory, slower)")
    logging_steps: int = Field(5, ge=1, description="log the train loss every N optimizer steps")
    save_steps: int = Field(25, ge=1, description="checkpoint every N optimizer steps")
    save_total_limit: int = Field(2, ge=1, description="checkpoints kept (the oldest are deleted)")
    merge: bool = Field(False, description="also save the adapter merged into the base weights")
    resume: Literal["auto", "always", "never"] = Field(
        "auto", description="auto: continue from the last checkpoint when there is one; always: fail "
        "without one (--resume); never: start over (--restart)")

    @model_validator(mode="before")
    @classmethod
    def _alpha(cls, data: Any) -> Any:
        """lora_alpha follows lora_r (alpha = 2 x r, as every reference recipe here) unless given."""
        if isinstance(data, dict) and "lora_r" in data and data.get("lora_alpha") is None:
            data = {**data, "lora_alpha": 2 * data["lora_r"]}
        return data

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
    compile: Literal["auto", "on", "off"] = Field(
        "auto", description="torch.compile of each decoder layer (one graph shared by all layers, any length): "
        "auto: on for LoRA on the CPU when the run trains on >= 100k tokens and torch finds its C++ compiler "
        "(measured 1.1-1.2x, ~1 min to compile), else off; on / off (true / false) force it")
    packing: bool = Field(False, description="padding-free packing (TRL's bfd) into max_length rows; "
                          "needs flash-attention (GPU)")

    @field_validator("compile", mode="before")
    @classmethod
    def _compile_words(cls, v: Any) -> Any:
        """YAML reads `on`/`off` (and `true`/`false`) as booleans: take them as meant."""
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v

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
    learning_rate: float = Field(5e-5, gt=0, description="peak learning rate (AdamW)")
    gradient_accumulation_steps: int = Field(4, ge=1, description="micro-batches per optimizer step")
    beta: float = Field(0.1, gt=0, description="DPO's beta: how far the policy may move from the reference")
    sft_loss_weight: float = Field(0.0, ge=0, description="format-preserving variant: adds the SFT loss on "
                                   "the chosen answer with this weight (TRL loss_type sigmoid+sft, RPO)")
    pair_sources: list[Literal["sampled", "corrupted"]] = Field(
        ["sampled", "corrupted"], description="sampled: a correct answer of the SFT model over its worst wrong one; "
        "corrupted: the reference answer over a scripted corruption of it")
    pair_prompts: int = Field(64, ge=1, description="training samples the pairs are drawn from")
    samples_per_prompt: int = Field(4, ge=2, description="k answers sampled from the SFT model per prompt")
    sample_temperature: float = Field(0.8, gt=0, description="temperature of the sampled answers")
    sample_top_p: float = Field(0.95, gt=0, le=1, description="top-p of the sampled answers")
    sample_max_new_tokens: int = Field(160, ge=8, description="token cap of each sampled answer")
    gold_when_none_correct: bool = Field(True, description="when no sampled answer is correct, the "
                                         "reference answer is the chosen one")
    corruptions_per_sample: int = Field(1, ge=1, le=4, description="corrupted pairs per prompt (renamed, "
                                        "dropped, wrongly typed or invented argument)")

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
