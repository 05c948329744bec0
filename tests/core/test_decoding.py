"""The call/no-call probe and gate at the first generated token (decoding.CallDecision)."""

import json

import pytest
import torch

from common.backends import GenerationSettings, TransformersBackend
from common.decoding import CallDecision, call_start_token
from common.evaluation import runner as ev
from common.evaluation.metrics import call_decision
from common.formats import FORMATS, get_format
from common.models import load_model, load_tokenizer
from common.samples import ToolCall

PROMPT = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny-random-llama", dtype="float32")


@pytest.mark.parametrize("tokenizer", ["smollm2-135m-instruct", "gemma-3-270m"])
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_call_start_token_starts_every_call_or_is_none(fmt, tokenizer):
    tok, f = load_tokenizer(tokenizer), get_format(fmt)
    token = call_start_token(f, tok)
    firsts = {tok(f.render_calls([ToolCall(name=n, arguments={"x": 1})]), add_special_tokens=False).input_ids[0]
              for n in ("get_weather", "Slack.send_message", "b")}
    if token is None:
        assert len(firsts) > 1
    else:
        assert firsts == {token}
    if fmt == "hermes" and tokenizer == "smollm2-135m-instruct":
        assert tok.decode([token]) == "<"


def test_probe_records_the_first_step_probability_and_leaves_scores_alone():
    probe = CallDecision(token_id=2)
    scores = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 10.0, 0.0]])
    assert torch.equal(probe(torch.zeros(2, 5, dtype=torch.long), scores), scores)
    assert probe.p_call == pytest.approx([0.25, torch.tensor([0., 0., 10., 0.]).softmax(-1)[2].item()])
    later = torch.tensor([[5.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    assert torch.equal(probe(torch.zeros(2, 6, dtype=torch.long), later), later)  # only the first step
    assert probe.p_call[0] == pytest.approx(0.25)
    probe.reset()
    assert probe.p_call is None


def test_gate_bans_the_call_below_the_threshold_and_forces_it_at_or_above():
    gate = CallDecision(token_id=0, threshold=0.4)
    # row 0: P(call) 0.25 < 0.4 although the call token is the argmax tie; row 1: P(call) 0.4
    # while another token is more likely (0.6 spread over... one token): the gate calls
    scores = torch.log(torch.tensor([[0.25, 0.25, 0.25, 0.25], [0.4, 0.6, 0.0, 0.0]]) + 1e-30)
    out = gate(torch.zeros(2, 3, dtype=torch.long), scores)
    assert out[0, 0] == float("-inf") and torch.equal(out[0, 1:], scores[0, 1:])
    assert out[1].argmax() == 0 and torch.isinf(out[1, 1:]).all()
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        CallDecision(0, threshold=1.0)


def test_backend_records_p_call_per_row_as_a_forward_pass_gives_it(tiny):
    model, tok = tiny
    prompts = [PROMPT, "<|im_start|>user\nwhat is the weather in Paris today?<|im_end|>\n<|im_start|>assistant\n"]
    token = call_start_token(get_format("hermes"), tok)
    backend = TransformersBackend(model, tok, GenerationSettings(max_new_tokens=3), ("<|im_end|>",),
                                  logits_processors=[CallDecision(token)])
    gens = backend.generate(prompts)  # left-padded batch of two lengths
    for prompt, g in zip(prompts, gens):
        ids = tok(prompt, return_tensors="pt", add_special_tokens=False).input_ids
        with torch.no_grad():
            want = model(ids).logits[0, -1].softmax(-1)[token].item()
        assert g.p_call == pytest.approx(want, rel=1e-4)
    assert backend.describe()["call_gate"] is None


@pytest.mark.parametrize("threshold, starts_with_call", [(0.999, False), (1e-9, True)])
def test_backend_gate_decides_the_first_token(tiny, threshold, starts_with_call):
    model, tok = tiny
    token = call_start_token(get_format("hermes"), tok)
    chosen = []

    def record(input_ids, scores):  # runs after the gate: greedy takes this argmax
        chosen.append(int(scores[0].argmax()))
        return scores
    backend = TransformersBackend(model, tok, GenerationSettings(max_new_tokens=2), ("<|im_end|>",),
                                  logits_processors=[CallDecision(token, threshold), record])
    plain = TransformersBackend(model, tok, GenerationSettings(max_new_tokens=2), ("<|im_end|>",))
    assert tok(plain.generate([PROMPT])[0].text, add_special_tokens=False).input_ids[0] != token
    backend.generate([PROMPT])
    assert (chosen[0] == token) is starts_with_call
    assert backend.describe()["call_gate"] == threshold


def test_call_decision_metric():
    m = call_decision([0.9, 0.8, 0.3, 0.6, None], [True, True, False, False, True])
    assert m["n"] == 4 and m["auc"] == 1.0
    assert m["accuracy_at_half"] == 0.75  # 0.6 on a no-call sample is a wrong call
    assert m["mean_p_call_when_call_expected"] == pytest.approx(0.85)
    assert m["mean_p_call_when_none_expected"] == pytest.approx(0.45)
    assert call_decision([0.2, 0.1], [False, True])["auc"] == 0.0
    assert call_decision([0.5], [True])["auc"] is None  # one class only
    assert call_decision([None, None], [True, False])["n"] == 0


def test_evaluation_records_p_call_reports_auc_and_refuses_another_gate(tmp_path):
    base = {"model": "tiny-random-llama", "out": str(tmp_path / "run"), "latency_requests": 0,
            "wandb": "disabled", "data": "suite:everyday_tools", "limit": 4, "batch_size": 2,
            "max_new_tokens": 3, "dtype": "float32"}
    results = ev.evaluate(ev.EvalParams(**base, call_gate=0.5))
    preds = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert all(0 <= r["p_call"] <= 1 for r in preds)
    d = results["metrics"]["decision"]
    assert d["n"] == 4 and results["generation"]["call_gate"] == 0.5
    assert "call/no-call ROC AUC" in (tmp_path / "run" / "summary.md").read_text()
    with pytest.raises(ValueError, match="call_gate: 0.5 there, 0.7 now"):
        ev.evaluate(ev.EvalParams(**base, call_gate=0.7))
    with pytest.raises(ValueError):
        ev.EvalParams(**base, call_gate=1.5)


def test_a_gated_run_reusing_the_plain_answers_equals_one_that_generates_them_all(tmp_path):
    base = {"model": "tiny-random-llama", "latency_requests": 0, "wandb": "disabled", "data": "suite:everyday_tools",
            "limit": 8, "batch_size": 4, "max_new_tokens": 6, "dtype": "float32", "backend": "transformers"}
    ev.evaluate(ev.EvalParams(**base, out=str(tmp_path / "plain")))
    plain = {r["id"]: r for r in map(json.loads, (tmp_path / "plain" / "predictions.jsonl").read_text().splitlines())}
    assert all(r["first_call"] is not None for r in plain.values())
    p_calls = sorted(r["p_call"] for r in plain.values())
    gate = (p_calls[3] + p_calls[4]) / 2  # half the samples forced to call, half kept from calling
    keeps = sum((r["p_call"] >= gate) == r["first_call"] for r in plain.values())
    assert 0 < keeps < 8  # some answers copied, some generated
    every = ev.evaluate(ev.EvalParams(**base, out=str(tmp_path / "gated"), call_gate=gate))
    (tmp_path / "plain" / "predictions.jsonl").rename(tmp_path / "plain" / "kept.jsonl")
    with pytest.raises(ValueError, match="holds no predictions"):
        ev.evaluate(ev.EvalParams(**base, out=str(tmp_path / "reused"), call_gate=gate, reuse=str(tmp_path / "plain")))
    (tmp_path / "plain" / "kept.jsonl").rename(tmp_path / "plain" / "predictions.jsonl")
    reused = ev.evaluate(ev.EvalParams(**base, out=str(tmp_path / "reused"), call_gate=gate,
                                       reuse=str(tmp_path / "plain")))
    texts = {d: {r["id"]: r["text"] for r in map(json.loads, (tmp_path / d / "predictions.jsonl").read_text().splitlines())}
             for d in ("gated", "reused")}
    assert texts["reused"] == texts["gated"]
    # the same answers, so the same verdicts (P(call) may differ by float noise across batches)
    assert reused["metrics"]["kinetic"] == every["metrics"]["kinetic"]
    assert reused["throughput"]["reused"] == keeps and reused["throughput"]["samples"] == 8 - keeps
    run = json.loads((tmp_path / "reused" / "run.json").read_text())
    assert run["invocations"][-1]["reused"] == keeps and run["invocations"][-1]["predictions"] == 8 - keeps
    # only a plain run of the same settings, and only a greedy gated run, may be copied
    with pytest.raises(ValueError, match="other settings.*max_new_tokens: 6 there, 5 now"):
        ev.evaluate(ev.EvalParams(**{**base, "max_new_tokens": 5}, out=str(tmp_path / "short"), call_gate=gate,
                                  reuse=str(tmp_path / "plain")))
    with pytest.raises(ValueError, match="needs call_gate set and temperature 0"):
        ev.EvalParams(**base, reuse=str(tmp_path / "plain"))
