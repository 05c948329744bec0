"""Every numbered notebook under papermill with params/ci.yaml, the sweep runner, the
quickstart and the figures, on tiny random models; and the static check of params/.

Reports and training runs go to a temporary folder (TOOLCALL_LAB_REPORTS/RUNS); notebook
00 builds the tiny dataset the others read (data/ci-notebooks, ignored by git).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from papermill.exceptions import PapermillExecutionError

from common.experiments import figures
from common.experiments.notebooks import (
    NOTEBOOKS,
    check_parameters,
    declared_parameters,
    execute,
    run_name,
    stage_class,
)
from common.experiments.sweep import load_sweep, run_sweep
from common.params import ParamsError
from common.provenance import ROOT, shown

CI = yaml.safe_load((ROOT / "params" / "ci.yaml").read_text())
ALL = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("nb")
    mp = pytest.MonkeyPatch()
    mp.setenv("TOOLCALL_LAB_REPORTS", str(base / "reports"))
    mp.setenv("TOOLCALL_LAB_RUNS", str(base / "runs"))
    mp.setenv("WANDB_MODE", "disabled")
    yield base
    mp.undo()


@pytest.fixture(scope="module")
def ran(roots):
    """Runs a notebook once with its CI section (plus extra parameters); returns its report folder."""
    done: dict[str, Path] = {}

    def run(name: str, extra: dict | None = None) -> Path:
        if name not in done:
            params = {**CI.get(name, {}), **(extra or {})}
            declared = declared_parameters(name)
            run_ = params.get("run", declared["run"]) or run_name(name, {**declared, **params})
            folder = roots / "reports" / params.get("experiment", declared["experiment"]) / run_
            execute(name, folder, params)
            done[name] = folder
        return done[name]
    return run


def results(folder: Path) -> dict:
    r = json.loads((folder / "results.json").read_text())
    assert r["complete"] is True and r["provenance"]["git"]["commit"]
    return r


def test_every_notebook_has_a_ci_section_and_no_outputs():
    assert ALL == ["00_data", "01_functiongemma", "02_router", "03_full_ft_v1", "04_lora_ablation", "05_dpo",
                   "06_data_scale", "07_benchmark", "08_bfcl"]
    assert sorted(CI) == ALL
    for name in ALL:
        nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(not c["outputs"] and c["execution_count"] is None for c in code), f"{name} has outputs"
        assert "parameters" in code[0]["metadata"].get("tags", []), f"{name}: the first code cell is not `parameters`"


MEASURED = re.compile(r"\*\*On 2 CPU cores with these defaults\*\* "
                      r"\(measured \d{4}-\d{2}-\d{2}[^)]*\): [\d.,]+ (s|min)")


NOT_YET_MEASURED: dict[str, str] = {}  # a notebook whose defaults are not timed yet: a strict xfail, with why


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=NOT_YET_MEASURED[n]))
                                  if n in NOT_YET_MEASURED else n for n in ALL])
def test_the_header_states_its_measured_cpu_time_and_what_it_writes(name):
    header = " ".join("".join(json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())["cells"][0]["source"]).split())
    found = MEASURED.search(header)
    assert found, f"{name}: the header does not state its measured CPU time with its defaults"
    assert "It writes `reports/" in header[found.end():], f"{name}: the header does not say what it writes"


# -- static: every key of every params file names a declared parameter --------------------
def _notebook_param_files():
    for path in sorted((ROOT / "params" / "notebooks").glob("*.yaml")):
        yield path, path.name.split(".")[0], yaml.safe_load(path.read_text())
    for name, section in CI.items():
        yield ROOT / "params" / "ci.yaml", name, section


@pytest.mark.parametrize("path,notebook,params", list(_notebook_param_files()),
                         ids=lambda x: x if isinstance(x, str) else None)
def test_params_files_name_only_declared_parameters(path, notebook, params):
    check_parameters(notebook, params, str(path.relative_to(ROOT)))


@pytest.mark.parametrize("name", ALL)
def test_notebook_defaults_are_valid(name):
    check_parameters(name, declared_parameters(name), "the parameters cell")


@pytest.mark.parametrize("path", sorted((ROOT / "params" / "sweeps").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_sweeps_check(path):
    spec = load_sweep(path)
    spec.check()
    assert len(spec.runs) >= 3


def test_unknown_keys_fail_with_the_fix():
    with pytest.raises(ParamsError, match=r"unknown parameter 'sft_sets' for notebook 04_lora_ablation.*did you "
                                          r"mean 'sft_set'\?.*it declares: experiment, run"):
        check_parameters("04_lora_ablation", {"sft_sets": {}}, "x.yaml")
    with pytest.raises(ParamsError, match=r"unknown parameter 'lora_rank' in x.yaml, sft_set \(did you mean 'lora_r'"):
        check_parameters("04_lora_ablation", {"sft_set": {"lora_rank": 8}}, "x.yaml")
    with pytest.raises(ParamsError, match="eval_set in x.yaml must be a mapping"):
        check_parameters("06_data_scale", {"eval_set": 3}, "x.yaml")
    assert stage_class("router_eval_set").__name__ == "EvalParams"
    assert stage_class("generic_data_set").__name__ == "DataParams"
    with pytest.raises(FileNotFoundError, match="the notebooks are: .*04_lora_ablation"):
        check_parameters("99_nothing", {}, "x")


# -- every notebook under papermill ------------------------------------------------------
@pytest.mark.slow
def test_00_data(ran):
    r = results(ran("00_data"))
    assert r["metrics"]["eval"]["samples"] == 12 and r["metrics"]["train"]["samples"] > 40
    assert (ROOT / r["data_dir"] / "data_card.json").is_file()


@pytest.mark.slow
def test_a_complete_result_of_other_parameters_is_not_replaced_unasked(ran, roots):
    folder = ran("00_data")
    before = (folder / "results.json").read_bytes()
    other = {**CI["00_data"], "show_samples": 7}
    with pytest.raises(PapermillExecutionError) as refused:  # 00 declares no `restart`
        execute("00_data", roots / "executed", other)
    assert refused.value.ename == "UserError" and "ex.notebook_params(" in refused.value.source
    assert refused.value.evalue == (
        f"{shown(folder)} holds a complete result made with other parameters (show_samples: 1 there, 7 now); "
        f"give this run another `run` name, or delete {shown(folder)} to make it again")
    assert (folder / "results.json").read_bytes() == before
    execute("00_data", roots / "executed", CI["00_data"])  # the same parameters: run again
    assert results(folder)["params"]["show_samples"] == 1


@pytest.mark.slow
def test_01_functiongemma(ran):
    ran("00_data")
    r = results(ran("01_functiongemma"))
    table = {row["model"]: row for row in r["metrics"]["table"]}
    assert set(table) == {"untrained", "fine-tuned"} and all(row["n"] == 4 for row in table.values())
    h = r["metrics"]["head_to_head"]
    assert h["both"] + h["only_a"] + h["only_b"] + h["neither"] == 4
    ev = json.loads((ROOT / table["fine-tuned"]["eval_dir"] / "results.json").read_text())
    assert ev["format"] == "functiongemma" and ev["adapter"]


@pytest.mark.slow
def test_02_router(ran):
    ran("00_data")
    folder = ran("02_router")
    m = results(folder)["metrics"]
    assert m["n"] == 3 and m["toolkits_shown"] == 8
    assert 0 <= m["end_to_end_accuracy"] <= m["router_accuracy"] <= 1
    if m["caller_accuracy_given_right_toolkit"] is not None:
        assert m["product_of_stages"] == pytest.approx(m["router_accuracy"] * m["caller_accuracy_given_right_toolkit"])
    routed = [json.loads(x) for x in (folder / "router_samples.jsonl").read_text().splitlines()]
    assert all(len(s["tools"]) == 8 and s["expected_calls"][0]["name"] == s["toolkit"] for s in routed)
    assert (folder / "router.png").is_file()


@pytest.mark.slow
def test_03_full_ft_v1(ran):
    ran("00_data")
    folder = ran("03_full_ft_v1")
    r = results(folder)
    assert [row["model"] for row in r["metrics"]["table"]] == ["lora-balanced", "full-v1-generic"]
    comp = json.loads((folder / "comparison.json").read_text())
    assert comp["histories"]["full-v1-generic"] and (folder / "figures" / "accuracy.png").is_file()


@pytest.mark.slow
def test_04_lora_ablation(ran):
    ran("00_data")
    folder = ran("04_lora_ablation")
    r = results(folder)
    assert r["train"]["params"]["lora_r"] == 4 and r["train"]["params"]["lora_alpha"] == 8  # alpha = 2 x rank
    assert r["train"]["steps"] == 2 and r["metrics"]["n"] == 4
    assert 0 < r["gate"]["threshold"] < 1 and r["metrics"]["call_gate"] == r["gate"]["threshold"]
    assert (folder / "history.json").is_file() and (folder / "training.png").is_file()


@pytest.mark.slow
def test_04_names_its_run_from_its_parameters_and_restarts_on_request(ran, roots):
    ran("00_data")
    assert ran("04_lora_ablation").name == "r4-all"  # run = None: named from the parameters
    base = {**CI["04_lora_ablation"], "experiment": "restart_ci", "run": "x"}
    execute("04_lora_ablation", roots / "executed", base)
    other = {**base, "sft_set": {**base["sft_set"], "lora_r": 2}}
    with pytest.raises(PapermillExecutionError) as refused:  # another rank under the same name
        execute("04_lora_ablation", roots / "executed", other)
    # refused at its setup cell, before anything is trained: the report holds rank 4's result
    assert refused.value.ename == "UserError" and "ex.notebook_params(" in refused.value.source
    assert "(sft_set/lora_r: 4 there, 2 now); give this run another `run` name, or `restart = True` replaces " \
           "that result" in refused.value.evalue
    execute("04_lora_ablation", roots / "executed", {**other, "restart": True})
    r = results(roots / "reports" / "restart_ci" / "x")
    assert r["train"]["params"]["lora_r"] == 2 and len(r["train"]["invocations"]) == 1  # trained afresh


def test_run_names_follow_the_parameters():
    assert run_name("04_lora_ablation", declared_parameters("04_lora_ablation")) == "r16-all"
    assert run_name("04_lora_ablation", {"sft_params": ["params/sft.yaml"],
                                         "sft_set": {"lora_r": 8, "target_modules": ["q_proj", "v_proj"]}}) == \
        "r8-q_proj+v_proj"
    assert run_name("06_data_scale", declared_parameters("06_data_scale")) == "n160-e1"
    assert run_name("06_data_scale", {"sft_params": ["params/sft.yaml"],
                                      "sft_set": {"data": "data/unfiltered:train", "limit": 64, "epochs": 2}}) == \
        "n64-e2-unfiltered"
    with pytest.raises(ParamsError, match="notebook 03_full_ft_v1 needs a run name: set `run`"):
        run_name("03_full_ft_v1", declared_parameters("03_full_ft_v1"))


@pytest.mark.slow
def test_05_dpo(ran):
    ran("00_data")
    folder = ran("05_dpo")
    r = results(folder)
    assert [row["model"] for row in r["metrics"]["table"]] == ["sft", "sampled", "corrupted", "format-preserving"]
    comp = json.loads((folder / "comparison.json").read_text())
    assert set(comp["histories"]) == {"sft", "sampled", "corrupted", "format-preserving"}


@pytest.mark.slow
def test_06_data_scale(ran):
    ran("00_data")
    r = results(ran("06_data_scale"))
    assert r["train"]["params"]["limit"] == 6 and r["train"]["data"]["train"]["sequences"] == 6


@pytest.mark.slow
def test_07_benchmark_and_figures_from_disk(ran, roots):
    a, b = ran("04_lora_ablation"), ran("06_data_scale")
    folder = ran("07_benchmark", {
        "evals": {"r4": str(a / "eval"), "n6": str(b / "eval")}, "a": "r4", "b": "n6",
        "histories": {"r4": str(a / "history.json"), "n6": str(b / "history.json")}})
    comp = json.loads((folder / "comparison.json").read_text())
    h = comp["head_to_head"]
    assert h["both"] + h["only_a"] + h["only_b"] + h["neither"] == 4
    assert h["difference"]["n"] == 4 and len(comp["latencies"]["r4"]) == 2
    pngs = sorted(p.name for p in (folder / "figures").glob("*.png"))
    assert pngs == ["accuracy.png", "error_kinds.png", "head_to_head.png", "latency_distribution.png",
                    "latency_p95.png", "size_vs_f1.png", "training.png"]
    for p in (folder / "figures").glob("*.png"):
        p.unlink()
    made = figures.regenerate(roots / "reports")  # from the saved files alone
    assert {p.name for p in made if p.parent == folder / "figures"} == set(pngs)


@pytest.mark.slow
def test_08_bfcl_beside_the_held_out_set(ran):
    held_out = ran("04_lora_ablation") / "eval"
    folder = ran("08_bfcl", {"heldout": {"tiny": str(held_out)}})
    r = results(folder)
    rows = {row["model"]: row for row in r["metrics"]["bfcl"]}
    assert set(rows) == {"tiny", "tiny-short"}
    assert set(rows["tiny"]["categories"]) == {"simple_python", "irrelevance"}
    assert rows["tiny"]["held_out"]["n"] == json.loads((held_out / "results.json").read_text())["n_samples"]
    # random tiny models write no call: every verdict is "no call", wrong on simple_python and right
    # on irrelevance, by both checkers
    assert rows["tiny-short"]["held_out"] is None and rows["tiny"]["agreement"] == 1.0
    h = r["metrics"]["head_to_head"]
    assert h["both"] + h["only_a"] + h["only_b"] + h["neither"] == 4  # 2 entries of each category
    assert (folder / "figures" / "bfcl.png").is_file()
    assert not (folder / "figures" / "latency_p95.png").exists()  # BFCL times no single requests


# -- sweeps --------------------------------------------------------------------------------
@pytest.mark.slow
def test_sweep_skips_complete_runs_and_reports_failures(roots, ran, tmp_path, capsys):
    ran("00_data")
    spec_path = tmp_path / "tiny.yaml"
    spec_path.write_text(yaml.safe_dump({
        "name": "tiny", "notebook": "notebooks/04_lora_ablation.ipynb", "experiment": "sweep_ci",
        "params": CI["04_lora_ablation"],
        "runs": {"r2": {"sft_set": {"lora_r": 2}}, "bad": {"sft_set": {"lora_r": 2, "data": "data/nothing:train"}},
                 "r8": {"sft_set": {"lora_r": 8}}},
        "figure": {"x": "train.params.lora_r", "metrics": ["metrics.accuracy", "metrics.no_tool_accuracy"],
                   "ci": {"metrics.accuracy": "metrics.accuracy_ci95"}, "log_x": True}}))
    spec = load_sweep(spec_path)
    record = run_sweep(spec)
    status = {r["run"]: r["status"] for r in record["runs"]}
    assert status == {"r2": "complete", "bad": "failed", "r8": "complete"}
    bad = next(r for r in record["runs"] if r["run"] == "bad")
    assert "data/nothing" in bad["error"] and Path(bad["notebook_out"]).name == "04_lora_ablation.ipynb"
    folder = roots / "reports" / "sweep_ci"
    saved = json.loads((folder / "sweep.json").read_text())
    assert saved["runs"][0]["params"]["wandb_group"] == "tiny" and (folder / "sweep_tiny.png").is_file()
    assert json.loads((folder / "r8" / "results.json").read_text())["train"]["params"]["lora_alpha"] == 16
    capsys.readouterr()
    again = run_sweep(spec, only=["r2", "r8"])
    assert "r2: complete, skipped" in capsys.readouterr().out
    # a skipped run keeps the executed notebook its own run recorded
    assert [r.get("notebook_out") for r in again["runs"]] == [r.get("notebook_out") for r in record["runs"]]
    assert {r["run"]: r["status"] for r in again["runs"]} == status
    # a failed run is tried again on the next sweep (and fails again, for the same reason)
    retry = run_sweep(spec, only=["bad"])
    assert "bad: running" in capsys.readouterr().out
    assert {r["run"]: r["status"] for r in retry["runs"]} == status
    # a complete run of other parameters is neither skipped as done nor replaced unasked: nothing runs
    record = (folder / "sweep.json").read_bytes()
    with pytest.raises(ParamsError, match=r"^sweep tiny: .*/sweep_ci/r2 holds a complete result made with other "
                                          r"parameters \(gate_samples: 8 there, 9 now\); `--only r2 --set "
                                          r"restart=true` replaces it, or name the run apart in the sweep file$"):
        run_sweep(spec, only=["r2"], overrides={"gate_samples": 9})
    assert (folder / "sweep.json").read_bytes() == record and results(folder / "r2")["params"]["gate_samples"] == 8


def test_sweep_checks_every_run_before_starting(tmp_path):
    spec_path = tmp_path / "typo.yaml"
    spec_path.write_text(yaml.safe_dump({
        "name": "typo", "notebook": "06_data_scale", "experiment": "x", "runs": {"a": {}, "b": {"sft_set": {"limt": 3}}},
        "figure": {"x": "train.params.limit", "metrics": ["metrics.accuracy"]}}))
    with pytest.raises(ParamsError, match=r"sweep typo, run b, sft_set \(did you mean 'limit'\?\)"):
        run_sweep(load_sweep(spec_path))


# -- the main job ------------------------------------------------------------------------------
@pytest.mark.slow
def test_quickstart_on_tiny_models(roots, ran, tmp_path, capsys):
    from common.experiments import quickstart
    ran("00_data")
    data_yaml = tmp_path / "data.yaml"
    data_yaml.write_text(yaml.safe_dump(CI["00_data"]["data_set"]))
    ci = {k: {n: v for n, v in CI["04_lora_ablation"][k].items() if n != "model"} | {"wandb": "disabled"}
          for k in ("eval_set", "sft_set")}
    p = quickstart.QuickstartParams(model="tiny-random-llama", data_params=["params/data.yaml", str(data_yaml)],
                                    **ci, gate_samples=8, experiment="qs_ci", wandb="disabled")
    out = quickstart.run(p)
    printed = capsys.readouterr().out
    stages = ["1/5 build the data", "2/5 evaluate the untrained model", "3/5 LoRA SFT",
              "4/5 call gate + evaluate the fine-tuned model", "5/5 compare (notebook 07)"]
    assert list(out["timings"]) == [*stages, "total"]
    assert all(f"==> {s}" in printed for s in stages if not s.startswith(("3/5", "4/5")))
    report = Path(out["report"]).read_text()
    folder = roots / "reports" / "qs_ci"
    assert "| untrained | 4 |" in report and "| lora-sft | 4 |" in report and "Call gate" in report
    assert "python -m common.quickstart params/quickstart.yaml params/quickstart_qwen3_4b.yaml" in report
    assert "![head_to_head](figures/head_to_head.png)" in report and (folder / "figures" / "head_to_head.png").is_file()
    h = out["comparison"]["head_to_head"]
    assert (h["a"], h["b"]) == ("lora-sft", "untrained") and h["both"] + h["only_a"] + h["only_b"] + h["neither"] == 4
    assert json.loads((folder / "lora-sft" / "call_gate.json").read_text())["n"] <= 8
    # one model, set once: an evaluation override naming another is refused before anything runs
    with pytest.raises(ParamsError, match="eval_set sets model: the quickstart evaluates and fine-tunes one model"):
        quickstart.run(p.model_copy(update={"eval_set": {**p.eval_set, "model": "tiny-random-gemma3"}}))


def test_every_override_dict_a_notebook_declares_is_in_the_table():
    """Which class checks an override dict is the explicit table, not the name's suffix: every
    dict parameter of every notebook is either in it or a plain dict of names to folders."""
    from common.experiments.notebooks import OVERRIDES, OVERRIDES_BY_NAME
    plain = {"evals", "histories", "bfcl", "heldout"}  # name: folder or file, no stage's parameters
    for notebook in sorted(NOTEBOOKS.glob("*.ipynb")):
        for key, value in declared_parameters(notebook.stem).items():
            if isinstance(value, dict):
                assert key in OVERRIDES or key in OVERRIDES_BY_NAME or key in plain, (notebook.stem, key)
    with pytest.raises(ParamsError, match=r"unknown parameter 'betta' in x.yaml, variants.sampled \(did you mean 'beta'"):
        check_parameters("05_dpo", {"variants": {"sampled": {"betta": 0.2}}}, "x.yaml")
    with pytest.raises(ParamsError, match=r"unknown parameter 'categorie' in x.yaml, models.tiny"):
        check_parameters("08_bfcl", {"models": {"tiny": {"categorie": ["irrelevance"]}}}, "x.yaml")
