"""Export a fine-tuned model as GGUF for llama.cpp, as smol-tools-4b ships its model.

    python -m common.export runs/quickstart/lora-sft                    # q8_0, into <run>/export/
    python -m common.export runs/quickstart/lora-sft --quant q4_k_m --out /tmp/smol-tools

Writes, for a finished training run (`runs/<experiment>/<run>`):
- `model-<quant>.gguf`: the base model with the adapter merged in (a full fine-tune as is),
  converted by llama.cpp's `convert_hf_to_gguf.py`; q4_k_m is quantized from f16 by
  llama.cpp's own `llama_model_quantize`;
- `adapter-<type>.gguf`: a LoRA adapter on its own, by `convert_lora_to_gguf.py`
  (`llama-server -m <base>.gguf --lora adapter.gguf`);
- `README.md`: the model card: the tool-call format, the call gate the run calibrated,
  an example prompt exactly as the model was trained to read it, and how to serve it;
- `export.json`: what was exported from what, with provenance.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Any

from common.errors import ArgumentParser, UserError, cli
from common.formats import get_format
from common.gguf_convert import (
    checkpoint_dir,
    convert_adapter,
    convert_checkpoint,
    missing_converter,
    outtype,
)
from common.jsonio import read_json, write_json
from common.llamacpp import engine, missing_engine
from common.models import load_tokenizer
from common.provenance import local_path, portable_path, provenance
from common.sources import load_data

QUANTS = {"f32": "float32", "f16": "float16", "bf16": "bfloat16", "q8_0": "q8_0", "q4_k_m": None}


def quantize(src: Path, dst: Path, ftype_name: str = "LLAMA_FTYPE_MOSTLY_Q4_K_M") -> Path:
    """llama.cpp's own quantizer (the C API of llama-quantize) on a GGUF file."""
    lc = engine()
    if lc is None:
        raise UserError(f"q4_k_m needs llama.cpp's quantizer: {missing_engine()}")
    params = lc.llama_model_quantize_default_params()
    params.ftype = getattr(lc, ftype_name)
    code = lc.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if code != 0:
        raise RuntimeError(f"llama_model_quantize returned {code} for {src}")
    return dst


def run_weights(run: Path) -> dict[str, Any]:
    results = run / "results.json"
    if not results.is_file():
        raise UserError(f"{run} is not a finished training run ({results} is missing); export the folder "
                        "`python -m common.training` wrote, e.g. runs/quickstart/lora-sft")
    r = read_json(results, "training results")
    outputs = r.get("outputs", {})
    if not (outputs.get("adapter") or outputs.get("model")):
        raise UserError(f"{results} names no adapter/ or model/ output to export")
    return r


def model_card(r: dict[str, Any], files: dict[str, str], gate: float | None, example: str, tokenizer: Any) -> str:
    fmt = get_format(r["format"])
    model_file = next(v for k, v in files.items() if k == "model")
    stops = ", ".join(f'"{t}"' for t in (fmt.end_of_turn(tokenizer), *fmt.stop_texts))
    gate_line = (f"The run calibrated a call gate at P(call) >= {gate:.3f} on the first token "
                 "(`common.decoding.CallDecision`); without it the model decides by greedy decoding."
                 if gate is not None else "The run has no calibrated call gate.")
    return f"""# {r['run']}: {r['model']} fine-tuned for tool calling, GGUF

Exported by `python -m common.export` from the training run `{r['run']}` ({r.get('method', 'lora')} on
`{r['params'].get('data')}`). Files: {', '.join(f'`{v}`' for v in files.values())}.

## Tool-call format: `{fmt.name}`

The model reads tools and messages rendered by the project's `{fmt.name}` format
(`common.formats.get_format("{fmt.name}").render_prompt(tools, messages, tokenizer)`), not by the
base model's chat template, and answers with calls in that format
(`get_format("{fmt.name}").parse(text, tools)` reads them). {gate_line}

An example prompt, as the model saw its training prompts (`example_prompt.txt`; without a leading BOS
token where the tokenizer adds one, as llama.cpp then does too):

```text
{example[:1500]}{' [...]' if len(example) > 1500 else ''}
```

## Serve it with llama.cpp

Send the rendered prompt as raw text (the completion endpoint, not the chat one: the base
template has no tools section), greedy, and stop at the end of turn:

```bash
llama-server -m {model_file} -c 4096 --port 8080
curl -s localhost:8080/completion -d "$(jq -Rs '{{prompt: ., temperature: 0, n_predict: 256, stop: [{stops}]}}' example_prompt.txt)"
```

or in Python (llama-cpp-python):

```python
from llama_cpp import Llama
llm = Llama("{model_file}", n_ctx=4096, verbose=False)
out = llm(open("example_prompt.txt").read(), max_tokens=256, temperature=0, stop=[{stops}])
print(out["choices"][0]["text"])
```

The LoRA alone: `llama-server -m <the base model's GGUF> --lora {files.get('adapter', 'adapter.gguf')}`.
"""


def export(run: str | Path, quant: str = "q8_0", out: str | Path | None = None, adapter_gguf: bool = True,
           ) -> dict[str, Any]:
    if quant not in QUANTS:
        raise UserError(f"unknown quant {quant!r}; choose one of {list(QUANTS)}")
    why = missing_converter() or (missing_engine() if quant == "q4_k_m" else None)
    if why:
        raise UserError(why)
    run = local_path(run)
    r = run_weights(run)
    outputs = r["outputs"]
    folder = Path(out) if out else run / "export"
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="toolcall-export-") as tmp:
        adapter = outputs.get("adapter")
        base = r["model"] if adapter else outputs["model"]
        print(f"[export] {base}{' + ' + adapter if adapter else ''} -> {folder}", flush=True)
        source = checkpoint_dir(base, Path(tmp) / "merged", adapter)
        model_file = folder / f"model-{quant}.gguf"
        if quant == "q4_k_m":
            convert_checkpoint(source, Path(tmp) / "f16.gguf", "float16")
            quantize(Path(tmp) / "f16.gguf", model_file)
        else:
            convert_checkpoint(source, model_file, QUANTS[quant])
        files["model"] = model_file.name
        if adapter and adapter_gguf:
            lora_dtype = QUANTS[quant] or "float16"  # q4_k_m's LoRA stays f16: the converter has no k-quants
            lora_file = folder / f"adapter-{outtype(lora_dtype)}.gguf"
            convert_adapter(local_path(adapter), checkpoint_dir(base, Path(tmp) / "base"), lora_file, lora_dtype)
            files["adapter"] = lora_file.name
        shutil.rmtree(Path(tmp) / "merged", ignore_errors=True)
    fmt = get_format(r["format"])
    tokenizer = load_tokenizer(r["model"] if adapter else outputs["model"])
    sample = load_data("suite:everyday_tools", 1)[0]
    example = fmt.render_prompt(sample.tools, sample.messages, tokenizer)
    bos = tokenizer.bos_token or ""
    adds_bos = bool(bos) and tokenizer("x").input_ids[:1] == [tokenizer.bos_token_id]
    if adds_bos and example.startswith(bos):  # a model whose tokenizer adds BOS: llama.cpp adds it too
        example = example[len(bos):]
    (folder / "example_prompt.txt").write_text(example, encoding="utf-8")
    gate_file = run / "call_gate.json"
    gate = read_json(gate_file, "call gate")["threshold"] if gate_file.is_file() else None
    (folder / "README.md").write_text(model_card(r, files, gate, example, tokenizer), encoding="utf-8")
    record = {"run": portable_path(run), "model": r["model"], "adapter": adapter, "format": r["format"],
              "quant": quant, "files": files, "call_gate": gate,
              "bytes": {k: (folder / v).stat().st_size for k, v in files.items()}, "provenance": provenance()}
    write_json(folder / "export.json", record)
    return record


def folder_of(args: argparse.Namespace) -> str:
    return args.out or str(Path(args.run) / "export")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = ArgumentParser(prog="python -m common.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a finished training run folder (runs/<experiment>/<run>)")
    parser.add_argument("--quant", default="q8_0", choices=list(QUANTS), help="the merged model's GGUF type")
    parser.add_argument("--out", default=None, help="output folder (default <run>/export)")
    parser.add_argument("--no-adapter-gguf", action="store_true", help="skip the LoRA GGUF")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (else one line)")
    args = parser.parse_args(argv)
    record = export(args.run, args.quant, args.out, adapter_gguf=not args.no_adapter_gguf)
    sizes = [f"{k}: {v} ({record['bytes'][k] / 1e6:.0f} MB)" for k, v in record["files"].items()]
    print(f"[export] {folder_of(args)}: {', '.join(sizes)}")
    return record


if __name__ == "__main__":
    cli(main)
