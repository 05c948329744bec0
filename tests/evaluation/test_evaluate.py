"""The evaluation runner: resumable generation, scoring, results files, parameters."""

import json

import pytest
import torch
from evaluation_helpers import GoldBackend, params, recorded_before_prompt_versions

from common.errors import UserError
from common.evaluation import runner as ev
from common.formats import FORMATS
from common.params import ParamsError, load_params


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_gold_answers_score_perfectly_on_the_suite_in_every_format(tmp_path, tok, gold, fmt):
    samples = ev.load_data("suite:everyday_tools")
    gold(fmt, samples)
    results = ev.evaluate(params(tmp_path, backend="gold", format=fmt), model_and_tokenizer=(None, tok))
    m = results["metrics"]
    assert results["n_samples"] == 40
    assert m["kinetic"]["accuracy"] == 1.0, m["error_kinds"]
    assert m["kinetic"]["failure_rate"] == 0.0 and m["smol_tools"]["no_tool_accuracy"] == 1.0
    assert m["slm"]["argument_f1"] == 1.0 and m["slm"]["hallucination_free_rate"] == 1.0
    assert set(m["smol_tools"]["per_scenario"]) == {"tool_selection", "argument_accuracy", "parallel",
                                                    "no_tool", "edge_case", "sequential"}


def test_an_interrupted_run_resumes_without_redoing_samples(tmp_path, tok, gold):
    samples = ev.load_data("suite:everyday_tools", limit=6)
    gold("hermes", samples)
    p = params(tmp_path, backend="gold", limit=6, batch_size=2)
    GoldBackend.fail_on_call = 2
    with pytest.raises(KeyboardInterrupt):
        ev.evaluate(p, model_and_tokenizer=(None, tok))
    pred = tmp_path / "run" / "predictions.jsonl"
    assert len(pred.read_text().splitlines()) == 2
    with pred.open("a") as f:  # the kill came in the middle of writing a line
        f.write('{"id": "everyday-0')
    GoldBackend.fail_on_call, GoldBackend.calls = None, 0
    results = ev.evaluate(p, model_and_tokenizer=(None, tok))
    assert GoldBackend.calls == 2  # the 4 remaining samples in batches of 2
    ids = [json.loads(line)["id"] for line in pred.read_text().splitlines()]
    assert sorted(ids) == sorted(s.id for s in samples)
    assert results["metrics"]["kinetic"]["accuracy"] == 1.0
    GoldBackend.calls = 0
    again = ev.evaluate(p, model_and_tokenizer=(None, tok))  # complete: nothing to generate
    assert GoldBackend.calls == 0
    # the killed invocation kept the timings of the batch it finished; all three are added up
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert [i["predictions"] for i in run["invocations"]] == [2, 4, 0]
    assert "generate_s" in run["invocations"][0]["timings"]
    assert again["invocations"] == 3 and again["timings"]["generate_s"] == results["timings"]["generate_s"]
    assert again["timings"]["total_s"] > results["timings"]["total_s"]
    assert [g["predictions"] for g in again["generated_at"]] == [2, 4]


def test_a_second_evaluation_into_the_same_folder_is_refused(tmp_path, tok, gold):
    import fcntl
    gold("hermes", ev.load_data("suite:everyday_tools", limit=1))
    (tmp_path / "run").mkdir()
    with open(tmp_path / "run" / ".lock", "w") as held:  # as a running evaluation holds it
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(UserError, match="another run is writing"):
            ev.evaluate(params(tmp_path, backend="gold", limit=1), model_and_tokenizer=(None, tok))
    assert ev.evaluate(params(tmp_path, backend="gold", limit=1), model_and_tokenizer=(None, tok))["n_samples"] == 1


def test_rescoring_may_change_scoring_parameters_only(tmp_path, tok, gold):
    samples = ev.load_data("suite:everyday_tools", limit=4)
    gold("hermes", samples)
    ev.evaluate(params(tmp_path, backend="gold", limit=4), model_and_tokenizer=(None, tok))
    rescored = ev.main(["--score-only", "--out", str(tmp_path / "run"), "--set", "strict_strings=true"])
    assert rescored["params"]["strict_strings"] is True
    with pytest.raises(ValueError, match="rescoring may only change"):
        ev.score(tmp_path / "run", overrides={"temperature": 0.5})


def test_rerun_with_other_generation_settings_is_refused(tmp_path, tok, gold):
    samples = ev.load_data("suite:everyday_tools", limit=2)
    gold("hermes", samples)
    ev.evaluate(params(tmp_path, backend="gold", limit=2), model_and_tokenizer=(None, tok))
    with pytest.raises(ValueError, match="max_new_tokens: 192 there, 32 now"):
        ev.evaluate(params(tmp_path, backend="gold", limit=2, max_new_tokens=32), model_and_tokenizer=(None, tok))


def test_answers_to_prompts_that_have_changed_since_are_refused(tmp_path, tok, gold):
    from common.formats.base import PROMPT_VERSION
    suite = ev.load_data("suite:everyday_tools", limit=2)  # tools in their source's key order
    stored = tmp_path / "stored.jsonl"  # the same samples as a data build keeps them: keys sorted
    stored.write_text("".join(json.dumps(s.model_dump(), sort_keys=True) + "\n" for s in suite))
    for data, out in (("suite:everyday_tools", "suite"), (str(stored), "stored")):
        samples = ev.load_data(data, limit=2)
        gold("hermes", samples)
        p = params(tmp_path, backend="gold", limit=2, data=data, out=str(tmp_path / out))
        ev.evaluate(p, model_and_tokenizer=(None, tok))
        pred = tmp_path / out / "predictions.jsonl"
        rows = [json.loads(line) for line in pred.read_text().splitlines()]
        assert {r["prompt_version"] for r in rows} == {PROMPT_VERSION}
        assert json.loads((tmp_path / out / "results.json").read_text())["prompt_version"] == PROMPT_VERSION
        recorded_before_prompt_versions(pred)  # as recorded before prompts listed a tool's keys sorted
        GoldBackend.calls = 0
        if out == "suite":  # the suite's prompts changed: its old answers are not this prompt's
            with pytest.raises(UserError, match="holds 2 answers to prompts that have changed"):
                ev.evaluate(p, model_and_tokenizer=(None, tok))
            with pytest.raises(UserError, match="holds 2 answers to prompts that have changed"):
                ev.score(tmp_path / out)  # --score-only: not rescored either
        else:  # sorted already: the same prompt then and now, so the record stands, scored as version 1's
            again = ev.evaluate(p, model_and_tokenizer=(None, tok))
            assert again["n_samples"] == 2 and again["prompt_version"] == 1
        assert GoldBackend.calls == 0


def test_real_tiny_model_end_to_end_writes_every_file(tmp_path):
    results = ev.evaluate(params(tmp_path, limit=3, batch_size=2, max_new_tokens=4, latency_requests=2,
                                 dtype="float32"))
    out = tmp_path / "run"
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 3 and all(r["new_tokens"] <= 4 for r in preds)
    assert {r["batch_size"] for r in preds} == {1, 2}
    assert len((out / "latency.jsonl").read_text().splitlines()) == 2
    assert len((out / "verdicts.jsonl").read_text().splitlines()) == 3
    saved = json.loads((out / "results.json").read_text())
    assert saved["metrics"] == results["metrics"]
    assert saved["generation"]["max_new_tokens"] == 4 and saved["generation"]["dtype"] == "float32"
    assert saved["generation"]["stop_tokens"] == ["<|im_end|>"]
    assert saved["provenance"]["libraries"]["torch"].startswith("2.13.0")
    assert saved["provenance"]["hardware"]["cpus"] >= 1 and "git" in saved["provenance"]
    assert saved["generated_at"] == [{"git": saved["generated_at"][0]["git"], "predictions": 3,
                                      "latency_requests": 2}]
    assert set(saved["generated_at"][0]["git"]) == {"commit", "dirty"}
    assert saved["metrics"]["kinetic"]["latency"]["n"] == 2
    # left padding is right: one request alone gives the batch's text (fp32, greedy)
    assert saved["latency_mode"]["same_text_as_batched"] == 2
    assert set(saved["timings"]) == {"model_load_s", "generate_s", "latency_s", "total_s"}
    assert "| Kinetic-4B | accuracy" in (out / "summary.md").read_text()
    moved = tmp_path / "moved"
    out.rename(moved)
    rescored = ev.score(moved)  # scoring again from the files, moved elsewhere, gives the same metrics
    assert rescored["metrics"] == results["metrics"] and rescored["params"]["out"] == str(moved)


def test_cli_runs_and_rejects_unknown_parameters(tmp_path, capsys):
    results = ev.main(["--model", "tiny-random-llama", "--limit", "1", "--out", str(tmp_path / "cli"),
                       "--experiment", "heldout", "--set", "max_new_tokens=2", "latency_requests=0",
                       "wandb=disabled"])
    assert results["n_samples"] == 1 and "results:" in capsys.readouterr().out
    assert results["experiment"] == "heldout"
    with pytest.raises(ParamsError, match=r"unknown parameter 'max_tokens'.*did you mean 'max_new_tokens'"):
        ev.main(["--set", "max_tokens=3"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("modle: smollm2-135m-instruct\n")
    with pytest.raises(ParamsError, match=r"unknown parameter 'modle' in .*bad.yaml.*did you mean 'model'"):
        ev.main([str(bad)])
    with pytest.raises(ParamsError, match="unknown format"):
        load_params(ev.EvalParams, overrides={"format": "yaml"})


def test_params_files_layer_in_order(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("batch_size: 2\nseed: 1\n")
    b.write_text("seed: 7\n")
    p = load_params(ev.EvalParams, [a, b], {"batch_size": 3})
    assert (p.batch_size, p.seed) == (3, 7)


def test_every_shipped_params_file_is_valid():
    from common.experiments.headline import HeadlineParams
    from common.experiments.quickstart import QuickstartParams
    from common.provenance import ROOT
    from common.training.params import DPOParams, SFTParams
    # ci.yaml holds the notebooks' sections (tests/experiments/test_notebooks.py); params/headline/
    # holds the headline's ablations (tests/experiments/test_headline.py)
    by_prefix = {"sft": SFTParams, "dpo": DPOParams, "evaluate": ev.EvalParams, "quickstart": QuickstartParams,
                 "headline": HeadlineParams}
    files = sorted(f for f in (ROOT / "params").glob("*.yaml") if not f.name.startswith(("data", "ci.")))
    assert {f.name.split("_")[0].removesuffix(".yaml") for f in files} == set(by_prefix)
    for f in files:
        load_params(by_prefix[f.name.split("_")[0].removesuffix(".yaml")], [f])


def test_ci_params_run_the_tiny_model(tmp_path):
    from common.provenance import ROOT
    results = ev.main([str(ROOT / "params" / "evaluate_ci.yaml"), "--out", str(tmp_path / "ci")])
    assert results["n_samples"] == 4 and results["latency_mode"]["requests"] == 2


PROMPT = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


class Script:
    """Forces `tokens` one per step after the prompt, then its last one: a stand-in for a grammar."""

    def __init__(self, tok, tokens):
        self.width, self.tokens = len(tok(PROMPT, add_special_tokens=False)["input_ids"]), tokens

    def __call__(self, input_ids, scores):
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.tokens[min(input_ids.shape[1] - self.width, len(self.tokens) - 1)]] = 0
        return forced


def test_backend_stops_at_a_stop_token_and_applies_logits_processors(tok):
    from common.backends import GenerationSettings, TransformersBackend
    from common.models import load_model
    model, _ = load_model("tiny-random-llama", dtype="float32")
    end = tok.convert_tokens_to_ids("<|im_end|>")
    word = tok.convert_tokens_to_ids("hello")
    backend = TransformersBackend(model, tok, GenerationSettings(max_new_tokens=10), ("<|im_end|>",),
                                  logits_processors=[Script(tok, [word, word, word, end])])
    g = backend.generate([PROMPT])[0]
    assert g.text == "hellohellohello" and g.new_tokens == 4 and g.finish_reason == "stop"
    assert backend.describe()["logits_processors"] == ["Script"]
    assert end in backend.stop_ids


def test_a_row_padded_after_a_stop_string_counts_only_its_own_tokens(tok):
    import copy

    from common.backends import GenerationSettings, TransformersBackend
    from common.models import load_model
    model, _ = load_model("tiny-random-llama", dtype="float32")
    padded = copy.deepcopy(tok)
    padded.pad_token = "<|endoftext|>"  # a pad token that is not an end token, as Gemma's <pad>
    backend = TransformersBackend(model, padded, GenerationSettings(), ("<|im_end|>", "<tool_response>"))
    assert backend.stop_strings == ["<tool_response>"]
    hello, pad = padded.convert_tokens_to_ids("hello"), padded.pad_token_id
    answer = padded("hello<tool_response>", add_special_tokens=False)["input_ids"]
    g = backend._decode(answer + [pad] * 5, prompt_tokens=10, seconds=1.0)
    assert (g.text, g.new_tokens, g.finish_reason) == ("hello", len(answer), "stop")
    g = backend._decode([hello, hello, pad, pad], prompt_tokens=10, seconds=1.0)
    assert (g.text, g.new_tokens, g.finish_reason) == ("hellohello", 2, "length")


def test_a_stop_string_ends_every_batch_and_its_criterion_is_built_once(tok, monkeypatch):
    """generate(stop_strings=...) would embed the whole vocabulary again on every call (its cache
    misses: get_vocab's order changes); the backend builds the criterion once and reuses it."""
    import common.backends as backends
    from common.models import load_model
    built = []

    class Counted(backends.StopStringCriteria):
        def __init__(self, *args, **kwargs):
            built.append(1)
            super().__init__(*args, **kwargs)
    monkeypatch.setattr(backends, "StopStringCriteria", Counted)
    model, _ = load_model("tiny-random-llama", dtype="float32")
    script = tok("hello<tool_response>world", add_special_tokens=False)["input_ids"]
    backend = backends.TransformersBackend(model, tok, backends.GenerationSettings(max_new_tokens=12),
                                           ("<|im_end|>", "<tool_response>"), logits_processors=[Script(tok, script)])
    for _ in range(2):
        g = backend.generate([PROMPT, PROMPT])
        assert [(x.text, x.finish_reason) for x in g] == [("hello", "stop")] * 2
        assert g[0].new_tokens < len(script)  # stopped at the string, before "world"
    assert len(built) == 1


def test_unknown_suite_lists_the_shipped_ones():
    with pytest.raises(UserError, match="everyday_tools"):
        ev.load_data("suite:nope")


def test_wandb_receives_the_config_and_metrics(tmp_path, tok, gold, monkeypatch):
    seen = {}

    class Recorder:
        summary = {}

        def finish(self):
            seen["finished"] = True

    def fake_start_run(config, **kw):
        seen.update(config=config, **kw)
        return Recorder()
    monkeypatch.setattr(ev, "start_run", fake_start_run)
    samples = ev.load_data("suite:everyday_tools", limit=2)
    gold("hermes", samples)
    ev.evaluate(params(tmp_path, backend="gold", limit=2, wandb="offline", experiment="exp"),
                model_and_tokenizer=(None, tok))
    assert seen["config"]["model"] == "tiny-random-llama" and seen["mode"] == "offline"
    assert seen["group"] == "exp" and seen["finished"]
    assert Recorder.summary["kinetic/accuracy"] == 1.0 and "timings/total_s" in Recorder.summary


def test_wandb_offline_writes_a_local_run_and_disabled_writes_nothing(tmp_path, monkeypatch):
    from common.tracking import NoRun, start_run
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    assert isinstance(start_run({"a": 1}, mode="disabled"), NoRun)
    assert not (tmp_path / "wandb").exists()
    run = start_run({"a": 1}, mode="offline", name="t")
    run.summary.update({"x": 1.0})
    run.finish()
    assert len(list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))) == 1
