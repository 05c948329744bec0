"""GGUF files of the project's models, for llama.cpp: converted, cached, exported.

llama.cpp reads GGUF. A model here is a transformers checkpoint (an embedded model's
converted copy, a hub model, a full fine-tune) and maybe a PEFT adapter on top; this
module turns that into a GGUF file with llama.cpp's own converter,
`convert_hf_to_gguf.py` (and `convert_lora_to_gguf.py` for an adapter on its own).

Why llama.cpp's script and not a writer of our own: the converter knows every
architecture's tensor layout (the LLaMA q/k permutation, Gemma's norms), the
tokenizer's pre-tokenizer and the chat template, and it moves with llama.cpp. It is
not installed with the llama-cpp-python wheel; `make install` extracts it from the
same sdist the wheel is built from into `<venv>/share/llama.cpp` (the folder
`$LLAMA_CPP_SCRIPTS` overrides), so script and engine are one version.

An adapter is merged into the weights first (PEFT's `merge_and_unload`, in fp32), so
the engine runs one plain model: no per-layer adapter matmuls at decode time.
Conversions are cached under `$TOOLCALL_LAB_CACHE/gguf-models/<key>/`, keyed by the
model, the adapter's bytes and the precision, written to a temporary folder and renamed
when complete (an interrupted conversion never looks finished).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.errors import UserError
from common.models import (
    EMBEDDED,
    TINY,
    cache_dir,
    check_adapter,
    converted_dir,
    load_model,
    load_tokenizer,
)
from common.provenance import local_path

# GGUF types the converter writes: dtype names of the evaluation parameters -> --outtype.
OUTTYPES = {"float32": "f32", "float16": "f16", "bfloat16": "bf16", "q8_0": "q8_0"}
CONVERTER, LORA_CONVERTER = "convert_hf_to_gguf.py", "convert_lora_to_gguf.py"
MARKER = "toolcall_lab_gguf.json"


def scripts_dir() -> Path:
    """Where llama.cpp's conversion scripts are: `$LLAMA_CPP_SCRIPTS`, else `<venv>/share/llama.cpp`."""
    return Path(os.environ.get("LLAMA_CPP_SCRIPTS") or Path(sys.prefix) / "share" / "llama.cpp")


def missing_converter() -> str | None:
    """Why GGUF conversion cannot run here (one line), or None when it can."""
    script = scripts_dir() / CONVERTER
    if not script.is_file():
        return (f"llama.cpp's converter is not at {script}; run `make install` (it extracts it from the "
                "llama-cpp-python sdist) or point LLAMA_CPP_SCRIPTS at a llama.cpp checkout")
    return None


def outtype(dtype: str) -> str:
    try:
        return OUTTYPES[dtype]
    except KeyError:
        raise UserError(f"no GGUF type for dtype {dtype!r}; choose one of {sorted(OUTTYPES)}") from None


def _run(script: str, args: list[str]) -> None:
    why = missing_converter()
    if why:
        raise UserError(why)
    cmd = [sys.executable, str(scripts_dir() / script), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise RuntimeError(f"{script} failed (exit {done.returncode}):\n{tail}")


def convert_checkpoint(hf_dir: Path, out_file: Path, dtype: str = "float32") -> Path:
    """A transformers checkpoint folder (weights, config, tokenizer) -> one GGUF file."""
    out_file.parent.mkdir(parents=True, exist_ok=True)
    _run(CONVERTER, [str(hf_dir), "--outfile", str(out_file), "--outtype", outtype(dtype)])
    return out_file


def convert_adapter(adapter_dir: Path, base_dir: Path, out_file: Path, dtype: str = "float32") -> Path:
    """A PEFT LoRA adapter -> a GGUF LoRA (llama.cpp applies it at run time with `--lora`)."""
    out_file.parent.mkdir(parents=True, exist_ok=True)
    _run(LORA_CONVERTER, [str(adapter_dir), "--base", str(base_dir), "--outfile", str(out_file),
                          "--outtype", outtype(dtype)])
    return out_file


def digest(folder: Path, content: bool = True, pattern: str = "*") -> str:
    """The files of `folder` (those matching `pattern`): their bytes, or (`content=False`) their
    names, sizes and times."""
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob(pattern) if p.is_file()):
        h.update(f.relative_to(folder).as_posix().encode())
        if not content:
            stat = f.stat()
            h.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
            continue
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def checkpoint_dir(model: str, work: Path, adapter: str | None = None, seed: int = 0) -> Path:
    """A transformers folder of `model` (with `adapter` merged into it) that the converter can read.

    An embedded model is its cached converted copy, a local folder is itself; anything
    else (a tiny random model, a hub model, a merge) is saved into `work`.
    """
    if adapter is None and model in EMBEDDED:
        return converted_dir(model)
    if adapter is None and local_path(model).is_dir():
        return local_path(model)
    lm, tokenizer = load_model(model, adapter=adapter, merge=adapter is not None, dtype="float32", seed=seed)
    lm.save_pretrained(work)
    (load_tokenizer(model) if model in TINY else tokenizer).save_pretrained(work)
    return work


def _converter_version() -> str | None:
    """The llama-cpp-python the converter came with (`make install` takes both from one sdist)."""
    try:
        return importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        return None


def adapter_digest(folder: Path) -> str:
    """What the merged weights depend on: the adapter's weights and the config that shapes them, not
    the files each calibration and evaluation rewrites there (its card, gate, evaluations, the base's
    Hub id: `adapter_card`)."""
    config = json.loads((folder / "adapter_config.json").read_text())
    config.pop("base_model_name_or_path", None)
    return hashlib.sha256((digest(folder, pattern="adapter_model*") + json.dumps(config, sort_keys=True)).encode()
                          ).hexdigest()


def model_key(model: str, adapter: str | None, dtype: str, seed: int = 0) -> str:
    """What a cached GGUF is named by: the model, the adapter's content, the precision."""
    parts = {"model": model, "dtype": outtype(dtype), "seed": seed if model in TINY else None,
             "converter": _converter_version(),
             "adapter": adapter_digest(check_adapter(adapter)) if adapter else None,
             # a local model may be gigabytes, read at every load: its files' stats stand for it
             "model_files": digest(local_path(model), content=False) if local_path(model).is_dir() else None}
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in Path(model).name)[:48]
    return f"{slug}-{outtype(dtype)}-{hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]}"


def cached_gguf(model: str, adapter: str | None = None, dtype: str = "float32", seed: int = 0,
                log: Callable[[str], Any] = print) -> Path:
    """The GGUF file of `model` (+ merged `adapter`) at `dtype`, converted on first use and cached."""
    target = cache_dir() / "gguf-models" / model_key(model, adapter, dtype, seed)
    gguf = target / "model.gguf"
    if (target / MARKER).is_file() and gguf.is_file():
        return gguf
    why = missing_converter()
    if why:
        raise UserError(why)
    start = time.perf_counter()
    log(f"[gguf] converting {model}{' + ' + adapter if adapter else ''} to GGUF {outtype(dtype)} "
        f"(once; cached in {target})")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp", dir=target.parent))
    try:
        source = checkpoint_dir(model, tmp / "checkpoint", adapter, seed)
        convert_checkpoint(source, tmp / "model.gguf", dtype)
        shutil.rmtree(tmp / "checkpoint", ignore_errors=True)
        (tmp / MARKER).write_text(json.dumps({"model": model, "adapter": adapter, "dtype": dtype,
                                              "seconds": round(time.perf_counter() - start, 1)}))
        shutil.rmtree(target, ignore_errors=True)
        try:
            tmp.rename(target)
        except OSError:  # another run finished the same conversion first: keep its file
            if not (target / MARKER).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return gguf
