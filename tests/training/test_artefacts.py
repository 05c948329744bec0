"""A trained adapter stands alone: its base by Hub id, its model card, its call gate applied by default,
and PEFT's AutoPeftModelForCausalLM loading it where the base model is available."""

from __future__ import annotations

import json

import pytest
import torch

from common import adapter_card
from common.evaluation.calibrate import calibrate
from common.evaluation.params import EvalParams
from common.evaluation.runner import evaluate
from common.gguf_convert import model_key
from common.models import EMBEDDED, hub_id_of, load_model
from common.samples import write_samples
from common.sources import load_data
from common.training.params import SFTParams
from common.training.sft import train_sft


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny LoRA run on 24 of the suite's samples (the other 16 are left for the gate), gated."""
    tmp = tmp_path_factory.mktemp("artefacts")
    samples = [s if s.expected_calls else s.model_copy(update={"reply": "I can't do that with these tools."})
               for s in load_data("suite:everyday_tools")]
    write_samples(samples, tmp / "train.jsonl")
    train_sft(SFTParams(model="tiny-random-llama", data=str(tmp / "train.jsonl"), limit=24, eval_data=None,
                        eval_limit=0, max_steps=2, batch_size=2, gradient_accumulation_steps=1, precision="fp32",
                        device="cpu", wandb="disabled", out=str(tmp / "sft"), max_length=4096))
    gate = calibrate(tmp / "sft", samples=16, backend="transformers", dtype="float32")
    return tmp / "sft", gate


def test_hub_ids_of_the_models():
    assert hub_id_of("smollm2-135m-instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert hub_id_of("gemma-3-270m") == "google/gemma-3-270m" == EMBEDDED["gemma-3-270m"].hub_id
    assert hub_id_of("qwen3-4b-instruct-2507") == "Qwen/Qwen3-4B-Instruct-2507"
    assert hub_id_of("org/model") == "org/model"
    assert hub_id_of("tiny-random-llama") is None and hub_id_of("runs/x/model") is None


def test_the_adapter_carries_its_card_and_its_gate(run):
    out, gate = run
    adapter = out / "adapter"
    kept = json.loads((adapter / "call_gate.json").read_text())
    assert kept["threshold"] == gate["threshold"] and "samples" not in kept
    card = (adapter / "README.md").read_text()
    header = card.split("---")[1]
    assert "library_name: peft" in header and "pipeline_tag: text-generation" in header
    assert f"**{gate['threshold']:.4f}**" in card and "LoRA r 16, alpha 32" in card
    assert "data: `" in card and "2 optimizer steps" in card and "Not evaluated yet." in card


def test_the_gate_applies_by_default_and_none_turns_it_off(run, tmp_path):
    out, gate = run
    adapter = str(out / "adapter")
    common = {"model": "tiny-random-llama", "adapter": adapter, "dtype": "float32", "backend": "transformers"}
    assert EvalParams(**common).resolved().call_gate == gate["threshold"]
    assert EvalParams(**common, call_gate="none").resolved().call_gate is None
    assert EvalParams(**common, call_gate=0.3).resolved().call_gate == 0.3
    assert EvalParams(model="tiny-random-llama").resolved().call_gate is None  # no adapter, no gate
    with pytest.raises(ValueError, match="auto, none or a number"):
        EvalParams(**common, call_gate="sometimes")
    with pytest.raises(ValueError, match=r"not in \(0, 1\)"):
        EvalParams(**common, call_gate=1.5)
    results = evaluate(EvalParams(**common, data="suite:everyday_tools", limit=4, latency_requests=0,
                                  out=str(tmp_path / "ev"), wandb="disabled", max_new_tokens=8))
    assert results["generation"]["call_gate"] == gate["threshold"]
    entries = json.loads((out / "adapter" / "evaluations.json").read_text())
    assert entries[str(tmp_path / "ev")]["n"] == 4  # keyed by the folder as shown (absolute outside the repo)
    card = (out / "adapter" / "README.md").read_text()
    assert "| evaluation | data | n | accuracy (95% CI)" in card and f"{gate['threshold']:.4f} |" in card


def test_rewriting_the_card_and_gate_keeps_the_cached_gguf(run):
    out, gate = run
    adapter = str(out / "adapter")
    before = model_key("tiny-random-llama", adapter, "float32")
    adapter_card.keep_gate(adapter, {**gate, "threshold": 0.5})
    adapter_card.name_base(out / "adapter", "smollm2-135m-instruct")
    assert model_key("tiny-random-llama", adapter, "float32") == before  # the weights did not change
    adapter_card.keep_gate(adapter, gate)


def test_peft_loads_it_by_the_hub_id_where_the_base_is_available(run, tmp_path):
    from peft import AutoPeftModelForCausalLM  # seconds to import: this test only

    out, _ = run
    adapter = out / "adapter"
    assert adapter_card.name_base(adapter, "smollm2-135m-instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    # a Hub cache that holds the base under that id (the tiny model stands in for it), read offline
    base, tok = load_model("tiny-random-llama", dtype="float32")
    snapshot = tmp_path / "hub" / "models--HuggingFaceTB--SmolLM2-135M-Instruct" / "snapshots" / ("0" * 40)
    base.save_pretrained(str(snapshot))
    tok.save_pretrained(str(snapshot))
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    loaded = AutoPeftModelForCausalLM.from_pretrained(str(adapter), cache_dir=str(tmp_path / "hub"),
                                                      local_files_only=True)
    ours, _ = load_model("tiny-random-llama", adapter=str(adapter), dtype="float32")
    x = torch.tensor([tok("call the weather tool")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(loaded(x).logits, ours(x).logits, atol=1e-4)
