"""Where and in what precision a run trains, and the model loaded for it (LoRA, full, QLoRA)."""

from __future__ import annotations

import os
from typing import Any

import torch
from peft import prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from common.models import cpu_supports_bf16, from_pretrained, load_model, load_tokenizer
from common.training.params import TrainParams


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
    return "bf16" if cpu_supports_bf16() else "fp32"


def load_for_training(p: TrainParams, device: str, precision: str) -> tuple[Any, Any]:
    """The base model, its weights in the dtype training wants: fp32 master weights on
    the CPU and for full fine-tuning (bf16 comes from autocast), bf16 for a frozen base
    under LoRA on a GPU, 4-bit NF4 for QLoRA."""
    if p.method == "qlora":
        if not device.startswith("cuda"):
            raise RuntimeError("QLoRA quantizes the base model to 4 bits with bitsandbytes, which needs a CUDA "
                               "GPU; on the CPU use method: lora")
        if precision == "fp32":
            raise ValueError("QLoRA computes in bf16 or fp16 over the 4-bit weights; set precision: auto, bf16 or fp16")
        compute = torch.bfloat16 if precision == "bf16" else torch.float16
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=compute)
        model = from_pretrained(AutoModelForCausalLM, p.model, quantization_config=quant,
                                 dtype=compute, device_map={"": int(os.environ.get("LOCAL_RANK", "0"))})
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=p.gradient_checkpointing)
        return model, load_tokenizer(p.model)
    frozen_half = device.startswith("cuda") and p.method == "lora" and precision in {"bf16", "fp16"}
    dtype = ("bfloat16" if precision == "bf16" else "float16") if frozen_half else "float32"
    # seed 0: a tiny random model must be the same weights in every stage that loads it
    model, tokenizer = load_model(p.model, dtype=dtype, device="cpu", seed=0)
    return model, tokenizer
