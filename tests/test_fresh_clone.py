"""The main job, and every notebook's defaults, from a fresh clone in a new folder: the committed
reports (made in another folder, on another machine) do not block them, what they write names no
path of this one, and a notebook that needs what a clone lacks stops at its setup cell, in one line."""

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


def fresh_clone(where: Path) -> Path:
    """The project's files copied to `where/elsewhere/toolcall-lab`: no data/, runs/ or local records."""
    files = project_files()
    if not files:
        pytest.skip("not a git checkout")
    clone = where / "elsewhere" / "toolcall-lab"
    for name in files:
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, clone / name)
    return clone


def clone_env(clone: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLCALL_LAB_") or k == "TOOLCALL_LAB_CACHE"}
    return env | {"PYTHONPATH": str(clone / "src"), "WANDB_MODE": "disabled"}


@pytest.mark.slow
def test_a_fresh_clone_runs_the_quickstart_end_to_end(tmp_path):
    clone = fresh_clone(tmp_path)
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
    env = clone_env(clone)
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


# Runs one notebook in the clone (its own src/ and reports/) with the given parameters; prints
# {"ok": true} or the error papermill raised, as JSON on its last line.
RUN_NOTEBOOK = """
import json, sys
from papermill.exceptions import PapermillExecutionError
from common.experiments.notebooks import execute
name, out, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
try:
    execute(name, out, params)
    print(json.dumps({"ok": True}))
except PapermillExecutionError as err:
    print(json.dumps({"ok": False, "ename": err.ename, "evalue": err.evalue, "cell": err.source}))
"""


def tiny_models(declared: dict) -> dict:
    """A notebook's defaults, but every model it trains or evaluates a tiny random one (Gemma's
    stays a Gemma: notebook 01 tunes FunctionGemma's format, which needs its tokenizer)."""
    from common.evaluation.params import EvalParams
    from common.experiments.notebooks import OVERRIDES
    from common.training.params import SFTParams

    def tiny(model: str | None) -> str:
        return "tiny-random-gemma3" if model and "gemma" in model else "tiny-random-llama"
    out = {}
    for key, value in declared.items():
        if OVERRIDES.get(key) in (SFTParams, EvalParams):
            out[key] = {**value, "model": tiny(value.get("model"))}
        elif key == "models":  # 08's BFCL runs
            out[key] = {n: {**spec, "model": tiny(spec.get("model"))} for n, spec in value.items()}
    return out


@pytest.mark.slow
def test_every_notebook_runs_its_defaults_from_a_fresh_clone(tmp_path):
    """Each notebook with its defaults (models stubbed by tiny ones) on a clone with no data/ or
    runs/: it runs to the end on what it builds and what is committed, or, where it needs what
    only a long run makes (08: the quickstart's adapter), stops at its setup cell with one line that
    names the command. A committed result is rerun only with its own parameters: tiny models under a
    committed run's name stop at the setup cell, so the tiny runs are named apart."""
    from common.experiments.notebooks import NOTEBOOKS, declared_parameters, run_name
    clone = fresh_clone(tmp_path)
    env = clone_env(clone)
    committed = {p: p.read_bytes() for p in (clone / "reports").rglob("*") if p.is_file()}

    def notebook(name: str, params: dict) -> dict:
        done = subprocess.run([sys.executable, "-c", RUN_NOTEBOOK, name, str(tmp_path / "executed"),
                               json.dumps(params)], cwd=clone, env=env, capture_output=True, text=True, timeout=1500)
        assert done.returncode == 0, (name, done.stderr[-3000:])
        return json.loads(done.stdout.strip().splitlines()[-1])
    # the committed default run of 04 is the real model's: a tiny one under its name stops at the setup cell
    refused = notebook("04_lora_ablation", tiny_models(declared_parameters("04_lora_ablation")))
    assert refused["ename"] == "UserError" and "ex.notebook_params(" in refused["cell"]
    assert refused["evalue"].startswith("reports/lora_ablation/r16-all holds a complete result made with other "
                                        "parameters (eval_set/model: (not set) there, 'tiny-random-llama' now; ")
    runs = {}  # each notebook's run: its default name, or, where tiny models stand in, that name and -tiny
    outcome = {}
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        declared = declared_parameters(path.stem)
        params = tiny_models(declared)
        runs[path.stem] = (declared["run"] or run_name(path.stem, declared)) + ("-tiny" if params else "")
        outcome[path.stem] = notebook(path.stem, {**params, "run": runs[path.stem]} if params else params)
    stopped = {k: v for k, v in outcome.items() if not v["ok"]}
    assert set(stopped) == {"08_bfcl"}, stopped
    assert stopped["08_bfcl"]["ename"] == "UserError" and "ex.notebook_params(" in stopped["08_bfcl"]["cell"]
    assert stopped["08_bfcl"]["evalue"] == ("the adapter runs/quickstart/lora-sft/adapter is not here; "
                                           "`make quickstart` makes it")
    executed = json.loads((tmp_path / "executed" / "08_bfcl.ipynb").read_text())
    errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert len(errors) == 1 and len(errors[0]["traceback"]) == 1  # one line, not a traceback
    # 07 compared the committed headline evaluations, judged again from their archived predictions
    comp = json.loads((clone / "reports/benchmark/headline-smollm2-135m/comparison.json").read_text())
    h = comp["head_to_head"]
    assert h["a"] == "full" and h["b"] == "untrained" and {r["model"] for r in comp["bfcl"]} == {"full", "untrained"}
    for folder in ("untrained", "full"):
        held = clone / f"reports/bfcl/headline-smollm2-135m/{folder}/eval/held_out-24e0f25c"
        recorded = json.loads((held / "results.json").read_text())
        judged = [json.loads(line) for line in (held / "verdicts.jsonl").read_text().splitlines()]
        assert h["both"] + h["only_a"] + h["only_b"] + h["neither"] == len(judged) == recorded["n_samples"] == 300
        assert sum(v["correct"] for v in judged) == round(recorded["metrics"]["kinetic"]["accuracy"] * 300)
    for name in ("00_data", "01_functiongemma", "02_router", "03_full_ft_v1", "04_lora_ablation", "05_dpo",
                 "06_data_scale", "07_benchmark"):
        res = json.loads((clone / "reports" / declared_parameters(name)["experiment"] / runs[name] /
                          "results.json").read_text())
        assert res["complete"] is True, name
    changed = sorted(str(p.relative_to(clone)) for p, data in committed.items() if p.read_bytes() != data)
    # only the notebooks run with their committed result's own parameters (00, 07) wrote where it is
    assert all(c.startswith(("reports/data/offline-default/", "reports/benchmark/headline-smollm2-135m/"))
               for c in changed), changed
    for folder in ("reports/data/offline-default", "reports/benchmark/headline-smollm2-135m"):
        was = json.loads(committed[clone / folder / "results.json"])
        now = json.loads((clone / folder / "results.json").read_text())
        assert now["params"] == was["params"] and now["complete"] is True
