"""W&B as a researcher compares a sweep: notebook 04 run twice under papermill with two ranks, W&B
offline, then both runs read back from their `run-<id>.wandb` files (`tracking.read_offline_run`)."""

from __future__ import annotations

import json

import pytest
import yaml

from common.errors import UserError
from common.experiments.notebooks import execute
from common.experiments.tracked import compared, differences, other_result, summary
from common.provenance import ROOT
from common.tracking import read_offline_run

CI = yaml.safe_load((ROOT / "params" / "ci.yaml").read_text())


@pytest.mark.slow
def test_two_runs_of_a_sweep_differ_in_exactly_their_swept_parameters(tmp_path, monkeypatch):
    monkeypatch.setenv("TOOLCALL_LAB_REPORTS", str(tmp_path / "reports"))
    monkeypatch.setenv("TOOLCALL_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    execute("00_data", tmp_path / "nb", CI["00_data"])  # the tiny build the notebooks read
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    for rank in (4, 2):
        base = CI["04_lora_ablation"]
        execute("04_lora_ablation", tmp_path / "nb", {**base, "wandb_group": "rank-sweep",
                                                      "sft_set": {**base["sft_set"], "lora_r": rank}})
    folders = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(folders) == 2  # one run per configuration: the training and evaluation log none inside a notebook
    runs = {r["name"]: r for r in map(read_offline_run, folders)}
    assert set(runs) == {"r4-all", "r2-all"}
    r4, r2 = runs["r4-all"], runs["r2-all"]
    for r, rank in ((r4, 4), (r2, 2)):
        assert r["group"] == "rank-sweep" and r["job_type"] == "notebook"
        assert {"04_lora_ablation", "tiny-random-llama", "lora", f"r{rank}"} <= set(r["tags"])
        assert r["config"]["train/lora_r"] == rank and r["config"]["train/lora_alpha"] == 2 * rank
        assert r["config"]["eval/max_new_tokens"] == 8 and r["config"]["notebook"] == "04_lora_ablation"
        s = r["summary"]
        assert 0 <= s["accuracy"] <= 1 and s["n"] == 4 and 0 < s["gate/threshold"] < 1 and s["train/final_loss"] > 0
        table = s["predictions"]
        assert table["_type"] == "table-file" and table["nrows"] == 4
        assert any(k.startswith("figures/training") for k in s)
        curve = [h[f"{r['name']}/train/step"] for h in r["history"] if f"{r['name']}/train/loss" in h]
        assert curve and curve == sorted(curve) and curve[-1] == 2  # the training curve, replayed by its steps
    differ = {k for k in set(r4["config"]) | set(r2["config"]) if r4["config"].get(k) != r2["config"].get(k)}
    assert differ == {"sft_set/lora_r", "train/lora_r", "train/lora_alpha"}
    # the table and the figures are files of the run, as `wandb sync` uploads them
    for folder in folders:
        media = {p.relative_to(folder / "files").parts[1] for p in (folder / "files" / "media").rglob("*")
                 if p.is_file()}
        assert {"table", "images"} <= media
        rows = json.loads(next((folder / "files" / "media" / "table").glob("predictions*.table.json")).read_text())
        assert rows["columns"][:4] == ["evaluation", "id", "scenario", "correct"] and len(rows["data"]) == 4


def test_what_a_notebook_run_compares():
    params = {"experiment": "e", "run": "r16-all", "restart": False, "wandb_group": None,
              "sft_set": {"lora_r": 16, "target_modules": ["q_proj", "v_proj"], "out": "x"}}
    assert compared(params) == {"sft_set/lora_r": 16, "sft_set/target_modules": '["q_proj", "v_proj"]'}
    metrics = {"table": [{"model": "fine-tuned", "accuracy": 0.5, "n": 4}], "head_to_head": {"difference": {"d": 0.1}}}
    got = summary(metrics, {"gate": {"threshold": 0.7}, "train": {"final": {"train_loss": 1.5}}})
    assert got == {"fine-tuned/accuracy": 0.5, "fine-tuned/n": 4, "head_to_head/difference/d": 0.1,
                   "gate/threshold": 0.7, "train/final_loss": 1.5}


def test_how_a_complete_result_was_made_with_other_parameters(tmp_path):
    was = {"experiment": "e", "run": "r16-all", "restart": False, "sft_set": {"lora_r": 16, "limit": 160}}
    assert differences(was, {**was, "run": "x", "restart": True, "wandb_group": "g"}) == []  # naming keys only
    now = {**was, "sft_set": {"lora_r": 8, "model": "tiny"}, "gate_samples": 9}
    assert differences(was, now) == ["gate_samples: (not set) there, 9 now", "sft_set/limit: 160 there, (not set) now",
                                     "sft_set/lora_r: 16 there, 8 now", "1 more"]
    # nested keys all count (an adapter's path too); a key the record lacks reads as the notebook's default
    assert differences({"models": {"a": {"adapter": "x"}}}, {"models": {"a": {"adapter": "y"}}}) == \
        ["models/a/adapter: 'x' there, 'y' now"]
    assert differences(was, {**was, "gate_samples": 160}, defaults={"gate_samples": 160}) == []
    assert differences(was, {**was, "gate_samples": 9}, defaults={"gate_samples": 160}) == \
        ["gate_samples: 160 there, 9 now"]
    assert differences({"eval_set": {"data": "data/x"}}, {"eval_set": {"data": str(ROOT / "data/x")}}) == []  # as recorded
    assert other_result(tmp_path, now) == []  # no result here
    (tmp_path / "results.json").write_text(json.dumps({"params": was, "complete": False}))
    assert other_result(tmp_path, now) == []  # an unfinished one: the run makes it
    (tmp_path / "results.json").write_text(json.dumps({"params": was, "complete": True}))
    assert other_result(tmp_path, was) == [] and other_result(tmp_path, now)[2] == "sft_set/lora_r: 16 there, 8 now"
    (tmp_path / "results.json").write_text(json.dumps({"complete": True}))
    assert other_result(tmp_path, was) == ["no parameters recorded"]


def test_reading_what_is_not_an_offline_run_names_the_fix(tmp_path):
    with pytest.raises(UserError, match="offline run's folder"):
        read_offline_run(tmp_path)
    (tmp_path / "run-x.wandb").write_bytes(b"nope")
    with pytest.raises(UserError, match="not a W&B run file"):
        read_offline_run(tmp_path)
