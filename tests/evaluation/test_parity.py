"""`common.evaluation.parity`: two runs of the same samples compared, every changed verdict listed."""

import json

import pytest
from evaluation_helpers import params, recorded_before_prompt_versions

from common.errors import UserError
from common.evaluation import runner as ev
from common.evaluation.parity import main, parity


def _two_runs(tmp_path, tok, gold):
    samples = ev.load_data("suite:everyday_tools", limit=4)
    gold("hermes", samples)
    for name in ("a", "b"):
        ev.evaluate(params(tmp_path, backend="gold", limit=4, out=str(tmp_path / name)), model_and_tokenizer=(None, tok))
    return samples


def test_identical_runs_agree_and_a_changed_answer_is_listed(tmp_path, tok, gold):
    samples = _two_runs(tmp_path, tok, gold)
    same = parity(tmp_path / "a", tmp_path / "b")
    assert same["same_text"] == same["same_verdict"] == same["same_call_decision"] == 1.0 and not same["changed"]
    # b's first answer becomes a plain reply: its verdict changes, and only it is listed
    path = tmp_path / "b" / "predictions.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    first = next(r for r in rows if r["id"] == samples[0].id)
    first["text"] = "I cannot do that."
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ev.score(tmp_path / "b")
    p = main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "parity")])
    assert [c["id"] for c in p["changed"]] == [samples[0].id]
    assert p["changed"][0]["other"]["error_kind"] == "no_call" and p["same_verdict"] == 0.75
    assert samples[0].id in (tmp_path / "parity" / "b.md").read_text()


def test_runs_of_other_data_are_refused(tmp_path, tok, gold):
    _two_runs(tmp_path, tok, gold)
    results = json.loads((tmp_path / "b" / "results.json").read_text())
    results["params"]["data"] = "suite:other"
    (tmp_path / "b" / "results.json").write_text(json.dumps(results))
    with pytest.raises(UserError, match=r"differ in \['data'\]"):
        parity(tmp_path / "a", tmp_path / "b")
    with pytest.raises(UserError, match="no finished evaluation"):
        parity(tmp_path / "a", tmp_path / "missing")


def test_runs_that_answered_different_prompts_are_refused(tmp_path, tok, gold):
    # b's answers recorded before prompts listed a tool's keys sorted (no prompt_version): the
    # suite's tools come unsorted, so b answered other prompts; a data build's, sorted, the same ones
    suite = ev.load_data("suite:everyday_tools", limit=4)
    stored = tmp_path / "stored.jsonl"
    stored.write_text("".join(json.dumps(s.model_dump(), sort_keys=True) + "\n" for s in suite))
    for data, where in (("suite:everyday_tools", tmp_path / "suite"), (str(stored), tmp_path / "stored")):
        gold("hermes", ev.load_data(data, limit=4))
        for name in ("a", "b"):
            ev.evaluate(params(tmp_path, backend="gold", limit=4, data=data, out=str(where / name)),
                        model_and_tokenizer=(None, tok))
        recorded_before_prompt_versions(where / "b" / "predictions.jsonl")
    with pytest.raises(UserError, match="answered different prompts for 4 samples"):
        parity(tmp_path / "suite" / "a", tmp_path / "suite" / "b")
    assert parity(tmp_path / "stored" / "a", tmp_path / "stored" / "b")["same_text"] == 1.0
