"""What makes a trained adapter folder stand alone outside the project.

- `adapter_config.json` names the base model by its Hub id (`name_base`): PEFT's
  `AutoPeftModelForCausalLM` reads it, while the project keeps loading the base from the embedded
  file (`PeftModel.from_pretrained(base, folder)` never reads that key).
- `call_gate.json`, the call gate chosen for the adapter (`evaluation.calibrate`, the headline's dev
  gate), sits in the folder: `python -m common.evaluate --adapter DIR` and `python -m common.bfcl
  --adapter DIR` apply it by default (`call_gate: auto`).
- `evaluations.json` keeps the headline metrics of every evaluation of the adapter, one entry per
  output folder, so a rerun replaces its own entry.
- `README.md`, the model card (`write`), is drawn from all of the above and the training run's
  `results.json` beside the folder: base model, format, data and recipe, gate, metrics with their
  95% intervals, how to load it. It is rewritten whenever one of them changes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common.jsonio import write_json
from common.markdown import interval, pct
from common.models import EMBEDDED, hub_id_of
from common.provenance import local_path, shown

GATE_FILE = "call_gate.json"
EVALUATIONS_FILE = "evaluations.json"


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:  # a card is a view: an unreadable record is left out, not fatal
        return {}


def is_adapter(folder: str | Path | None) -> bool:
    return folder is not None and (Path(folder) / "adapter_config.json").is_file()


def name_base(folder: Path, model: str) -> str | None:
    """Write the base model's Hub id into the adapter's config (None: a model the Hub does not know,
    whose config keeps what PEFT wrote)."""
    hub_id = hub_id_of(model)
    config_path = folder / "adapter_config.json"
    if hub_id is None or not config_path.is_file():
        return None
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = hub_id
    write_json(config_path, config)
    return hub_id


def gate_of(folder: str | Path) -> dict[str, Any] | None:
    """The adapter's call gate: its own `call_gate.json`, else its training run's (older runs kept it
    only beside the adapter folder)."""
    folder = Path(folder)
    for path in (folder / GATE_FILE, folder.parent / GATE_FILE):
        gate = _read(path)
        if "threshold" in gate:
            return gate
    return None


def keep_gate(adapter: str | Path | None, gate: dict[str, Any]) -> None:
    """Store the gate chosen for an adapter in its folder (without the calibration samples' values) and
    redraw the card; nothing for a base model's full weights."""
    folder = local_path(adapter) if adapter else None
    if folder is None or not is_adapter(folder):
        return
    write_json(folder / GATE_FILE, {k: v for k, v in gate.items() if k != "samples"})
    write(folder)


def record_evaluation(adapter: str | None, results: dict[str, Any], out: str | Path) -> None:
    """Keep an evaluation's headline metrics in the adapter's folder and redraw its card; nothing for a
    base model, or an adapter not on this machine (committed results rescored on a clone)."""
    folder = local_path(adapter) if adapter else None
    if folder is None or not is_adapter(folder):
        return
    metrics = results.get("metrics") or {}
    kinetic, decision = metrics.get("kinetic") or {}, metrics.get("decision") or {}
    entries = _read(folder / EVALUATIONS_FILE)
    entries[shown(out)] = {
        "data": results.get("data"), "n": metrics.get("n"),
        "accuracy": kinetic.get("accuracy"), "accuracy_ci95": kinetic.get("accuracy_ci95"),
        "tool_name_accuracy": kinetic.get("tool_name_accuracy"),
        "no_call_accuracy": decision.get("no_call_accuracy"),
        "call_gate": (results.get("generation") or {}).get("call_gate"),
        "backend": (results.get("generation") or {}).get("backend"), "generated_at": results.get("generated_at")}
    write_json(folder / EVALUATIONS_FILE, entries)
    write(folder)


def _front_matter(base: str | None, config: dict[str, Any]) -> str:
    # huggingface_hub's card data writes the YAML header the Hub and PEFT read (base_model, library_name)
    from huggingface_hub import ModelCardData  # seconds to import; only writing a card needs it

    tags = ["lora" if config.get("peft_type") == "LORA" else str(config.get("peft_type", "peft")).lower(),
            "tool-calling", "function-calling", "toolcall-lab"]
    data = ModelCardData(base_model=base, library_name="peft", pipeline_tag="text-generation",
                         tags=[f"base_model:adapter:{base}", *tags] if base else tags)
    return f"---\n{data.to_yaml()}\n---\n"


def _recipe(train: dict[str, Any]) -> list[str]:
    p = train.get("params") or {}
    if not p:
        return ["- no training record beside this folder (`../results.json`)"]
    steps = f", at most {p['max_steps']} steps" if p.get("max_steps") else ""
    lines = [f"- method: {p.get('method')}, LoRA r {p.get('lora_r')}, alpha {p.get('lora_alpha')}, modules "
             f"{p.get('target_modules')}, dropout {p.get('lora_dropout')}",
             f"- {p.get('epochs')} epoch(s){steps}, "
             f"learning rate {p.get('learning_rate')} ({p.get('lr_scheduler')}), batch {p.get('batch_size')} x "
             f"{p.get('gradient_accumulation_steps')} accumulation, sequences up to {p.get('max_length')} tokens, "
             f"seed {p.get('seed')}",
             f"- data: `{p.get('data')}`" + (f", {p['limit']} samples drawn" if p.get("limit") else "")
             + f"; {train.get('steps')} optimizer steps, final train loss "
             + (f"{train['final']['train_loss']:.3f}" if (train.get("final") or {}).get("train_loss") else "n/a")]
    if train.get("precision"):
        lines.append(f"- precision: {train['precision']}")
    return lines


def _gate_lines(gate: dict[str, Any] | None) -> list[str]:
    if gate is None:
        return ["No call gate: the model decides to call or not by plain greedy decoding."]
    where = gate.get("chosen_on") or gate.get("data")
    return [f"Threshold **{gate['threshold']:.4f}** on P(call), the probability of the format's call token at the "
            f"answer's first position: the model calls iff P(call) >= threshold. Chosen on `{where}` "
            f"({gate.get('n')} samples) for a no-call accuracy of at least {pct(gate.get('target_no_call_accuracy'))}"
            f" (there: calls {pct(gate.get('call_recall'))} of those that need one, no call on "
            f"{pct(gate.get('no_call_accuracy'))} of the others; AUC {gate.get('auc', float('nan')):.3f}).",
            "", "`python -m common.evaluate --adapter DIR` and `python -m common.bfcl --adapter DIR` apply it by "
            "default (`call_gate: auto`); `--set call_gate=none` decodes plainly."]


def _metric_lines(entries: dict[str, Any]) -> list[str]:
    if not entries:
        return ["Not evaluated yet."]
    lines = ["| evaluation | data | n | accuracy (95% CI) | tool name | no call right | call gate |",
             "|---|---|---|---|---|---|---|"]
    for out, e in sorted(entries.items()):
        gate = "none" if e.get("call_gate") is None else f"{e['call_gate']:.4f}"
        lines.append(f"| `{out}` | `{e.get('data')}` | {e.get('n')} | {pct(e.get('accuracy'))}"
                     f"{interval(e.get('accuracy_ci95'))} | {pct(e.get('tool_name_accuracy'))} | "
                     f"{pct(e.get('no_call_accuracy'))} | {gate} |")
    return lines


def write(folder: Path) -> Path:
    """The model card, `<folder>/README.md`, from what the folder and its run hold now."""
    config = _read(folder / "adapter_config.json")
    train = _read(folder.parent / "results.json")
    model = train.get("model") or ""
    base = hub_id_of(model) if model else config.get("base_model_name_or_path")
    embedded = EMBEDDED.get(model)
    fmt = train.get("format") or (train.get("params") or {}).get("format")
    base_line = f"`{base}`" if base else f"`{model or config.get('base_model_name_or_path')}` (not on the Hub)"
    if embedded:
        base_line += (f". Trained on the project's embedded copy of it (`{embedded.package}`, a quantised GGUF "
                      "dequantised to float weights), so on the Hub's full-precision weights it loads the same way "
                      "and answers close to, not exactly as, the project measured")
    lines = [_front_matter(base, config),
             f"# {train.get('experiment', 'toolcall-lab')}/{train.get('run', folder.parent.name)}: a tool-calling "
             f"{'LoRA adapter' if config.get('peft_type') == 'LORA' else 'adapter'}", "",
             "Made by toolcall-lab (`python -m common.training`); this card is rewritten by each of its evaluations.",
             "",
             f"- base model: {base_line}",
             f"- tool-call format: `{fmt}` (the project's `common.formats`: the tools go into the system prompt "
             "that format writes; answers are parsed by the same format)", "",
             "## Training", "", *_recipe(train), "",
             "## Call gate", "", *_gate_lines(gate_of(folder)), "",
             "## Evaluations", "", *_metric_lines(_read(folder / EVALUATIONS_FILE)), "",
             "## How to load it", "",
             "In the project (offline, the base from its embedded file):", "", "```bash",
             f"python -m common.evaluate params/evaluate.yaml --set model={model or base} adapter={shown(folder)}",
             "```", "", "With PEFT alone, where the base model is available:", "", "```python",
             "from peft import AutoPeftModelForCausalLM", "from transformers import AutoTokenizer", "",
             f'model = AutoPeftModelForCausalLM.from_pretrained("{shown(folder)}")',
             f'tokenizer = AutoTokenizer.from_pretrained("{shown(folder)}")', "```", ""]
    path = folder / "README.md"
    path.write_text("\n".join(lines))
    return path
