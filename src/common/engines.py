"""Which backend generates, and what it loads: `backend: auto | transformers | llama.cpp`.

`auto` picks llama.cpp where it can run the model, else transformers:
- llama.cpp needs llama-cpp-python (built by `make install`) and llama.cpp's GGUF
  converter (`gguf_convert.missing_converter`), the CPU (this build has no GPU code), and
  an architecture the converter knows (the embedded SmolLM2 and Gemma 3, Llama, Qwen,
  Mistral; a local or cached hub folder is asked for its `model_type`);
- the in-memory `tiny-random-*` test models stay on transformers: converting one costs
  more than generating with it, and the tests compare the backends explicitly.
On this 2-core CPU llama.cpp (f16) answered single requests 2.95x faster than the transformers
path before it, and batches 1.7-2.2x (LOG.md, session 10); on a GPU transformers is the one that runs.

`load_generator` returns what the chosen backend's constructor takes first: a transformers
model, or a `LlamaCppModel` of the model's GGUF (the adapter merged, converted once and
cached), with the transformers tokenizer either way (prompts are rendered and tokenized by it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common.backends import Backend, TransformersBackend
from common.errors import UserError
from common.gguf_convert import OUTTYPES, cached_gguf, missing_converter
from common.llamacpp import LlamaCppBackend, LlamaCppModel, missing_engine
from common.models import (
    EMBEDDED,
    TINY,
    ModelNotAvailable,
    from_pretrained,
    load_model,
    load_tokenizer,
    resolve_hub_id,
)
from common.provenance import local_path

BACKENDS: dict[str, type[Backend]] = {"transformers": TransformersBackend, LlamaCppBackend.name: LlamaCppBackend}


def choices() -> tuple[str, ...]:
    """What `backend` may be set to (a test may register a backend of its own)."""
    return ("auto", *BACKENDS)


# model_type values llama.cpp's converter and engine handle (checked: the embedded two)
LLAMA_CPP_TYPES = {"llama", "gemma3", "gemma3_text", "qwen2", "qwen3", "mistral", "smollm3", "granite"}
# The GGUF precision `dtype: auto` means for llama.cpp, chosen on the 40-case suite with a fine-tuned
# adapter (LOG.md, session 10): f16 and f32 both kept every verdict of transformers fp32 (100%, texts
# 82.5% and 85%), and f16 generated 1.65x faster than f32; q8_0 changed 1 verdict in 20 in the benchmark.
LLAMA_CPP_DEFAULT_DTYPE = "float16"


def _model_type(model: str) -> str | None:
    if model in EMBEDDED:
        return "gemma3" if "gemma" in model else "llama"
    config = local_path(model) / "config.json"
    if not local_path(model).is_dir():
        try:  # a hub model in the local cache (offline): its config says
            from huggingface_hub import (
                try_to_load_from_cache,  # (as transformers: only this path needs it)
            )
            found = try_to_load_from_cache(resolve_hub_id(model), "config.json")
        except Exception:  # noqa: BLE001 - any failure means "unknown here"
            return None
        config = Path(found) if isinstance(found, str) else config
    if not config.is_file():
        return None
    return json.loads(config.read_text(encoding="utf-8")).get("model_type")


def why_not_llamacpp(model: str, device: str = "cpu", explicit: bool = False) -> str | None:
    """Why llama.cpp cannot (or, for `auto`, should not) generate for `model` here, in one line;
    None when it can. `explicit`: llama.cpp was asked for by name, so a tiny test model is fine."""
    if not device.startswith("cpu"):
        return f"llama.cpp is built for the CPU here and the device is {device}"
    for why in (missing_engine(), missing_converter()):
        if why:
            return why
    if model in TINY:
        return None if explicit else "tiny random test models generate with transformers"
    kind = _model_type(model)
    if kind not in LLAMA_CPP_TYPES:
        return f"model_type {kind!r} of {model} is not one llama.cpp is set up for here ({sorted(LLAMA_CPP_TYPES)})"
    return None


def resolve_backend(backend: str, model: str, device: str = "cpu", loaded: Any = None) -> str:
    """`auto` made concrete. A model the caller already loaded decides by its kind."""
    if backend not in choices():
        raise UserError(f"unknown backend {backend!r}; choose one of {list(choices())}")
    if backend != "auto":
        return backend
    if loaded is not None:
        return LlamaCppBackend.name if isinstance(loaded, LlamaCppModel) else "transformers"
    return "transformers" if why_not_llamacpp(model, device) else LlamaCppBackend.name


def resolve_backend_dtype(backend: str, dtype: str) -> str:
    """The precision a backend runs at: llama.cpp's `auto` is LLAMA_CPP_DEFAULT_DTYPE; a GGUF
    type (q8_0) is refused by transformers."""
    if backend == LlamaCppBackend.name:
        if dtype == "auto":
            return LLAMA_CPP_DEFAULT_DTYPE
        if dtype not in OUTTYPES:
            raise UserError(f"llama.cpp runs GGUF weights of {sorted(OUTTYPES)}; dtype {dtype!r} is not one")
        return dtype
    if dtype in OUTTYPES and dtype not in ("float32", "float16", "bfloat16"):
        raise UserError(f"dtype {dtype!r} is a GGUF type for backend=llama.cpp; transformers takes auto, "
                        "float32, float16 or bfloat16")
    return dtype


def generation_eos(model: str) -> list[int]:
    """The end tokens of the model's own generation config (transformers' generate stops there too)."""
    if model in TINY:
        return []  # built from a config whose eos is the tokenizer's
    try:
        from transformers import (
            GenerationConfig,  # (as models: seconds to import, only loading needs it)
        )
        config = from_pretrained(GenerationConfig, model)
    except (OSError, ValueError, ModelNotAvailable):  # no generation_config.json: the tokenizer's eos only
        return []
    eos = config.eos_token_id
    return [e for e in (eos if isinstance(eos, list) else [eos]) if e is not None]


def loaded_dtype(loaded: Any) -> str | None:
    """The precision of a model a caller already loaded: a GGUF's, or a torch model's parameters'."""
    if isinstance(loaded, LlamaCppModel):
        return loaded.info.get("dtype")
    params = getattr(loaded, "parameters", None)
    if params is None:
        return None
    first = next(iter(params()), None)
    return None if first is None else str(first.dtype).removeprefix("torch.")


def load_generator(backend: str, model: str, adapter: str | None = None, merge: bool = True,
                   dtype: str = "float32", device: str = "cpu", seed: int = 0, n_seq: int = 16) -> tuple[Any, Any]:
    """(model, tokenizer) for `backend` (already resolved, not auto)."""
    if backend == LlamaCppBackend.name:
        why = why_not_llamacpp(model, device, explicit=True)
        if why:
            raise UserError(f"backend llama.cpp cannot run here: {why}; or set backend=transformers")
        path = cached_gguf(model, adapter, dtype, seed)
        info = {"dtype": dtype, "gguf": OUTTYPES[dtype], "gguf_key": path.parent.name,
                "adapter_merged": adapter is not None, "eos_token_ids": generation_eos(model)}
        return LlamaCppModel(path, n_seq=n_seq, info=info), load_tokenizer(model)
    return load_model(model, adapter=adapter, merge=merge and adapter is not None, dtype=dtype,
                      device=device, seed=seed)
