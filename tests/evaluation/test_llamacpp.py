"""The llama.cpp backend on tiny random models: GGUF conversion, logits, generation against
transformers, the runner, the call gate, `auto`, and the GGUF export round trip.

These need llama-cpp-python and llama.cpp's converter, which `make install` builds; where
they are missing (a hand-made environment) the tests skip, except under CI, where the
missing engine is a failure (`test_ci_has_the_engine`).
"""

import json
import os

import numpy as np
import pytest
import torch

from common import engines
from common.backends import GenerationSettings, TransformersBackend
from common.decoding import CallDecision, call_start_token
from common.errors import UserError
from common.evaluation import runner as ev
from common.evaluation.params import EvalParams
from common.formats import get_format
from common.gguf_convert import cached_gguf, missing_converter
from common.llamacpp import LlamaCppBackend, LlamaCppModel, missing_engine
from common.models import load_model
from common.sources import load_data

READY = missing_engine() is None and missing_converter() is None
needs_engine = pytest.mark.skipif(not READY, reason=f"{missing_engine() or missing_converter()}")


def test_ci_has_the_engine():
    """CI runs `make test`, whose install builds llama.cpp: there it must be present."""
    if not os.environ.get("CI"):
        pytest.skip("outside CI a missing engine only skips the tests below")
    assert READY, missing_engine() or missing_converter()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    old = os.environ.get("TOOLCALL_LAB_CACHE")
    path = tmp_path_factory.mktemp("cache")
    # the embedded tokenizers' converted copies are reused from the real cache
    real = old or os.path.expanduser("~/.cache/toolcall-lab")
    if os.path.isdir(os.path.join(real, "models")):
        os.symlink(os.path.join(real, "models"), path / "models")
    os.environ["TOOLCALL_LAB_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("TOOLCALL_LAB_CACHE")
    else:
        os.environ["TOOLCALL_LAB_CACHE"] = old


@pytest.fixture(scope="module")
def tiny(cache):
    if not READY:
        pytest.skip(missing_engine() or missing_converter())
    gguf = cached_gguf("tiny-random-llama", dtype="float32")
    hf, tok = load_model("tiny-random-llama", dtype="float32")
    return LlamaCppModel(gguf, n_seq=4, info={"dtype": "float32", "gguf": "f32"}), hf, tok


def _prompts(tok, n=4):
    fmt = get_format("hermes")
    return fmt, [fmt.render_prompt(s.tools, s.messages, tok) for s in load_data("suite:everyday_tools", n)]


@needs_engine
def test_converted_logits_match_transformers(tiny):
    lm, hf, tok = tiny
    _, prompts = _prompts(tok, 1)
    ids = tok(prompts[0], add_special_tokens=False).input_ids
    lm.clear()
    ours = lm.prefill(ids, 0)
    with torch.inference_mode():
        theirs = hf(torch.tensor([ids])).logits[0, -1].numpy()
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-4)


@needs_engine
def test_generation_matches_transformers_and_batching_changes_nothing(tiny):
    lm, hf, tok = tiny
    fmt, prompts = _prompts(tok)
    settings = GenerationSettings(max_new_tokens=12)
    stops = (fmt.end_of_turn(tok), *fmt.stop_texts)
    token = call_start_token(fmt, tok)
    ours = LlamaCppBackend(lm, tok, settings, stop_texts=stops, logits_processors=[CallDecision(token)])
    theirs = TransformersBackend(hf, tok, settings, stop_texts=stops, logits_processors=[CallDecision(token)])
    batched, hf_out = ours.generate(prompts), theirs.generate(prompts)
    single = [ours.generate([p])[0] for p in prompts]
    assert [g.text for g in batched] == [g.text for g in hf_out] == [g.text for g in single]
    assert [g.new_tokens for g in batched] == [g.new_tokens for g in hf_out]
    assert [g.finish_reason for g in batched] == [g.finish_reason for g in hf_out]
    for a, b in zip(batched, hf_out):
        assert a.p_call == pytest.approx(b.p_call, rel=1e-3, abs=1e-7)
    assert [g.prompt_tokens for g in batched] == [g.prompt_tokens for g in hf_out]


@needs_engine
def test_more_prompts_than_sequences_and_the_gate(tiny):
    lm, _, tok = tiny
    fmt, prompts = _prompts(tok, 6)  # 6 prompts over 4 sequences: two groups
    token = call_start_token(fmt, tok)
    gate = CallDecision(token, threshold=1e-9)  # every row must call
    out = LlamaCppBackend(lm, tok, GenerationSettings(max_new_tokens=3), logits_processors=[gate]).generate(prompts)
    assert len(out) == 6 and all(g.p_call is not None for g in out)
    assert all(g.text.startswith(tok.decode([token])) for g in out)


@needs_engine
def test_the_runner_records_the_engine(tiny, tmp_path):
    p = EvalParams(model="tiny-random-llama", backend="llama.cpp", data="suite:everyday_tools", limit=3,
                   max_new_tokens=6, latency_requests=1, batch_size=2, out=str(tmp_path / "run"), wandb="disabled")
    results = ev.evaluate(p)
    gen = results["generation"]
    assert gen["backend"] == "llama.cpp" and gen["engine"] == "llama.cpp" and gen["dtype"] == "float16"  # auto
    assert gen["llama_cpp_python"] and gen["gguf"] == "f16"
    assert results["params"]["backend"] == "llama.cpp"
    rows = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["p_call"] is not None for r in rows)
    assert rows[0]["settings"]["backend"] == "llama.cpp"


def test_auto_picks_by_model_device_and_install(monkeypatch, tmp_path):
    assert engines.resolve_backend("auto", "tiny-random-llama") == "transformers"
    assert engines.resolve_backend("auto", "smollm2-135m-instruct", device="cuda") == "transformers"
    assert engines.resolve_backend("transformers", "smollm2-135m-instruct") == "transformers"
    if READY:
        assert engines.resolve_backend("auto", "smollm2-135m-instruct") == "llama.cpp"
    monkeypatch.setenv("LLAMA_CPP_SCRIPTS", str(tmp_path))  # no converter there
    assert engines.resolve_backend("auto", "smollm2-135m-instruct") == "transformers"
    assert "converter" in engines.why_not_llamacpp("smollm2-135m-instruct")
    with pytest.raises(UserError, match="backend llama.cpp cannot run here.*backend=transformers"):
        engines.load_generator("llama.cpp", "smollm2-135m-instruct")


def test_a_loaded_model_decides_auto_and_dtypes_are_checked():
    assert engines.resolve_backend("auto", "smollm2-135m-instruct", loaded=torch.nn.Linear(1, 1)) == "transformers"
    assert engines.resolve_backend_dtype("llama.cpp", "auto") == engines.LLAMA_CPP_DEFAULT_DTYPE
    with pytest.raises(UserError, match="q8_0.*llama.cpp"):
        engines.resolve_backend_dtype("transformers", "q8_0")
    with pytest.raises(UserError, match="GGUF weights"):
        engines.resolve_backend_dtype("llama.cpp", "int4")
    with pytest.raises(ValueError, match="unknown backend"):
        EvalParams(backend="vllm")


@needs_engine
def test_export_round_trip(cache, tmp_path):
    """A tiny model with a LoRA adapter: exported merged to GGUF, loaded by llama.cpp, the same logits."""
    from peft import LoraConfig, get_peft_model

    from common.training.export import export

    hf, tok = load_model("tiny-random-llama", dtype="float32")
    torch.manual_seed(1)
    peft = get_peft_model(hf, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                         init_lora_weights=False))
    run = tmp_path / "run"
    peft.save_pretrained(run / "adapter")
    (run / "results.json").write_text(json.dumps({
        "run": "tiny-lora", "model": "tiny-random-llama", "format": "hermes", "method": "lora",
        "params": {"data": "suite:everyday_tools"}, "outputs": {"adapter": str(run / "adapter")}}))
    record = export(run, "f32", tmp_path / "export")
    folder = tmp_path / "export"
    assert set(record["files"]) == {"model", "adapter"}
    assert (folder / "model-f32.gguf").is_file() and (folder / "adapter-f32.gguf").is_file()
    card = (folder / "README.md").read_text()
    assert "hermes" in card and "llama-server -m model-f32.gguf" in card
    assert (folder / "example_prompt.txt").read_text().startswith("<|im_start|>")
    merged = peft.merge_and_unload()
    lm = LlamaCppModel(folder / "model-f32.gguf", n_seq=1)
    _, prompts = _prompts(tok, 1)
    ids = tok(prompts[0], add_special_tokens=False).input_ids
    with torch.inference_mode():
        theirs = merged(torch.tensor([ids])).logits[0, -1].numpy()
        base = load_model("tiny-random-llama", dtype="float32")[0](torch.tensor([ids])).logits[0, -1].numpy()
    ours = lm.prefill(ids, 0)
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=3e-4)  # llama.cpp's kernels sum in another order
    assert np.abs(theirs - base).max() > 1e-3  # the adapter changed the model: the match is not the base's


def test_export_refuses_what_is_not_a_run(tmp_path):
    from common.training.export import export

    if missing_converter():
        pytest.skip(missing_converter())
    with pytest.raises(UserError, match="not a finished training run"):
        export(tmp_path, "f32")
    with pytest.raises(UserError, match="unknown quant"):
        export(tmp_path, "q3")


@needs_engine
def test_the_generation_benchmark_prints_every_configuration(cache, tmp_path, capsys):
    from common.evaluation.bench import main

    rows = main(["--model", "tiny-random-llama", "--data", "suite:everyday_tools", "--prompts", "3", "--batch", "2",
                 "--max-new-tokens", "4", "--configs", "transformers", "llama-f32", "llama-q8_0",
                 "--out", str(tmp_path / "bench")])
    assert [r["config"] for r in rows] == ["transformers", "llama-f32", "llama-q8_0"]
    for r in rows:
        assert r["single_p50_s"] > 0 and r["prefill_tok_s"] > 0 and r["batched_tok_s"] > 0
        assert r["prefill_bound_tok_s"] > 0 and r["decode_bound_tok_s"] > 0
    assert rows[1]["same_text"] == 3 and rows[1]["dtype"] == "float32"  # f32 reproduces transformers fp32
    printed = capsys.readouterr().out
    assert "| llama-q8_0 | q8_0 |" in printed and "Machine bounds" in printed
    saved = json.loads((tmp_path / "bench" / "generate.json").read_text())
    assert len(saved["rows"]) == 3 and saved["bounds"]["matmul_gflops"] > 0


@needs_engine
def test_p_call_follows_its_prompt_across_groups(tiny):
    """6 prompts over 4 sequences, no gate: each prompt's P(call) is the one it gets alone."""
    lm, _, tok = tiny
    fmt, prompts = _prompts(tok, 6)
    token = call_start_token(fmt, tok)
    backend = LlamaCppBackend(lm, tok, GenerationSettings(max_new_tokens=2), logits_processors=[CallDecision(token)])
    batched = [g.p_call for g in backend.generate(prompts)]
    alone = [backend.generate([p])[0].p_call for p in prompts]
    assert batched == pytest.approx(alone, rel=1e-4, abs=1e-9)
    assert len(set(batched)) == 6  # the prompts differ, so would a mix-up


@needs_engine
def test_a_loaded_gguf_decides_what_the_run_records(tiny):
    lm, _, _ = tiny
    p = EvalParams(model="tiny-random-llama").resolved(loaded=lm)
    assert (p.backend, p.dtype) == ("llama.cpp", "float32")  # the GGUF's, not llama.cpp's auto (f16)
    with pytest.raises(UserError, match="model passed in is a llama.cpp model"):
        EvalParams(model="tiny-random-llama", backend="transformers").resolved(loaded=lm)
