"""The main job from a fresh clone in a new folder: the committed reports (made in another
folder, on another machine) do not block it, and what it writes names no path of this one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from common.provenance import ROOT

CI = yaml.safe_load((ROOT / "params" / "ci.yaml").read_text())


def project_files() -> list[str]:
    """What a clone of this checkout holds: tracked files and new ones git does not ignore."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True)
    return [f for f in out.stdout.splitlines() if (ROOT / f).is_file()] if out.returncode == 0 else []


@pytest.mark.slow
def test_a_fresh_clone_runs_the_quickstart_end_to_end(tmp_path):
    files = project_files()
    if not files:
        pytest.skip("not a git checkout")
    clone = tmp_path / "elsewhere" / "toolcall-lab"
    for name in files:
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, clone / name)
    committed = json.loads((clone / "reports/quickstart/untrained/run.json").read_text())
    assert committed["generation"]["model"] == "smollm2-135m-instruct"  # the real run's record, no predictions
    assert not (clone / "reports/quickstart/untrained/predictions.jsonl").exists()
    # the real quickstart's path in small: the held-out build, then the live mix keeping its requests out
    (clone / "params" / "qs_held_tiny.yaml").write_text(yaml.safe_dump({**CI["00_data"]["data_set"], "name": "qs-held"}))
    (clone / "params" / "qs_live_tiny.yaml").write_text(yaml.safe_dump({
        "name": "qs-live", "tokenizer": "tiny-random-llama", "composed_parallel": 12, "near_miss": 8,
        "live_exclude_eval_of": ["data/qs-held"]}))
    sft = {n: v for n, v in CI["04_lora_ablation"]["sft_set"].items() if n != "model"}
    ev = dict(CI["04_lora_ablation"]["eval_set"])
    (clone / "params" / "qs_tiny.yaml").write_text(yaml.safe_dump({
        "model": "tiny-random-llama", "held_out_params": ["params/data.yaml", "params/qs_held_tiny.yaml"],
        "data_params": ["params/data_live.yaml", "params/qs_live_tiny.yaml"],
        "sft_set": {**sft, "data": "data/qs-live:train", "eval_data": "data/qs-live"},
        "eval_set": {**ev, "data": "data/qs-live:transfer"}, "bfcl_limit": 2, "bfcl_max_new_tokens": 8,
        # a fifth of the live mix needs no call: 32 draws hold some for the gate's calibration
        "gate_samples": 32, "experiment": "quickstart", "wandb": "disabled"}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLCALL_LAB_") or k == "TOOLCALL_LAB_CACHE"}
    env |= {"PYTHONPATH": str(clone / "src"), "WANDB_MODE": "disabled"}
    done = subprocess.run([sys.executable, "-m", "common.quickstart", "params/quickstart.yaml",
                           "params/quickstart_live.yaml", "params/qs_tiny.yaml"],
                          cwd=clone, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "quickstart done" in done.stdout
    report = (clone / "reports/quickstart/README.md").read_text()
    assert "| untrained | 4 |" in report and "| lora-sft | 4 |" in report
    assert "## BFCL slice" in report and "| simple_python | 2 |" in report and "| irrelevance | 2 |" in report
    for who in ("untrained", "lora-sft"):
        res = json.loads((clone / f"reports/quickstart/{who}/bfcl/results.json").read_text())
        assert set(res["metrics"]["bfcl"]["per_category"]) == {"simple_python", "irrelevance"}
    assert "6/6 compare (notebook 07)" in done.stdout
    run = json.loads((clone / "reports/quickstart/lora-sft/eval/run.json").read_text())
    assert run["generation"]["adapter"] == "runs/quickstart/lora-sft/adapter"  # relative to the clone
    timings = json.loads((clone / "reports/quickstart/timings.json").read_text())
    assert timings["invocations"] == 1  # the committed run's times are not added to this one's
    for path in (clone / "reports" / "quickstart").rglob("*"):
        if path.suffix in {".json", ".md"}:
            text = path.read_text()
            assert str(clone) not in text and str(ROOT) not in text and f"{Path.home()}/" not in text, path
