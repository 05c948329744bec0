"""What a notebook reads from disk (`experiments.inputs`): the build each params/data*.yaml makes,
what makes a report or a run, verdicts judged again from committed predictions, one-line stops."""

import gzip
import json
import os
import shutil

import pytest
import yaml
from evaluation_helpers import params

from common.errors import UserError
from common.evaluation import runner as ev
from common.experiments import inputs
from common.experiments.compare import compare, verdicts
from common.experiments.kernel import one_line
from common.provenance import ROOT


def test_every_data_file_names_the_command_that_builds_it():
    recipes = inputs.data_recipes()
    for path in sorted((ROOT / "params").glob("data*.yaml")):
        name = yaml.safe_load(path.read_text())["name"]
        assert path.relative_to(ROOT).as_posix() in recipes[name], (path.name, recipes.get(name))
    assert recipes["offline-default"] == ["params/data.yaml"]
    assert recipes["generic-v1"] == ["params/data.yaml", "params/data_generic.yaml"]
    assert inputs.build_name("data/live:train") == "live" and inputs.build_name("data/offline-default") == \
        "offline-default"
    assert inputs.build_name("suite:everyday_tools") is None and inputs.build_name("bfcl:simple_python") is None
    assert inputs.build_name("data/live/samples.jsonl") is None


@pytest.mark.parametrize("path,command", [
    ("runs/quickstart/lora-sft/adapter", "`make quickstart`"),
    ("reports/quickstart-live/untrained", "`python -m common.quickstart params/quickstart.yaml "
                                          "params/quickstart_live.yaml`"),
    ("reports/bfcl/headline-smollm2-135m/masking/eval/dev-x", "`python -m common.experiments.headline "
                                                              "params/headline.yaml params/headline/masking.yaml`"),
    ("reports/bfcl/headline-smollm2-135m/full/train/history.json",
     "`python -m common.experiments.headline params/headline.yaml`"),
    ("reports/bfcl/headline-smollm2-135m/untrained/bfcl",
     "`python -m common.experiments.headline params/headline.yaml --set fine_tuned=false`"),
    ("reports/bfcl/headline-gemma-3-270m/full/bfcl",
     "`python -m common.experiments.headline params/headline.yaml params/headline_gemma.yaml`"),
    ("runs/headline-gemma/full/adapter",
     "`python -m common.experiments.headline params/headline.yaml params/headline_gemma.yaml`"),
    ("runs/headline/real-only/adapter",
     "`python -m common.experiments.headline params/headline.yaml params/headline/real_only.yaml`"),
    ("reports/lora_ablation/r16-all/eval", "notebook 04_lora_ablation with run='r16-all'"),
    ("reports/full_ft_v1/cpu-lora-balanced/eval", "notebook 03_full_ft_v1"),  # (its run is `cpu`, suffixed)
    ("/somewhere/else", "the run that wrote it"),
])
def test_what_makes_a_report_or_a_run(path, command):
    assert inputs.made_by(path) == f"{command} makes it"


def test_a_notebooks_data_specs_come_from_its_stages_parameters():
    nb04 = {"sft_params": ["params/sft.yaml"], "sft_set": {"limit": 4},
            "eval_params": ["params/evaluate.yaml"], "eval_set": {"data": "data/offline-default"}}
    assert inputs.data_specs(nb04) == ["data/offline-default:train", "data/offline-default"]
    nb03 = {"generic_data_params": ["params/data.yaml", "params/data_generic.yaml"], "generic_data_set": {}}
    assert [b.name for b in inputs.notebook_builds(nb03)] == ["generic-v1"]
    assert inputs.sources_of(inputs.notebook_builds(nb03)[0]) == ["data/offline-default"]  # built first
    assert inputs.data_specs({"data": "suite:everyday_tools"}) == ["suite:everyday_tools"]


def test_an_ablations_own_build_is_named_by_its_recipe():
    builds = inputs._headline_builds()
    assert builds["live"] == "python -m common.experiments.headline params/headline.yaml"
    assert builds["live-masking"] == "python -m common.experiments.headline params/headline.yaml " \
                                     "params/headline/masking.yaml"


def test_a_missing_build_no_params_file_makes_is_one_line():
    with pytest.raises(UserError, match=r"^data/no-such-build is not built here and no params/data\*\.yaml builds "
                                        r"it; build it with `python -m common.data build"):
        inputs.ensure_data("data/no-such-build:train")
    inputs.ensure_data("data/no-such-build", built_here=frozenset({"no-such-build"}))  # the notebook builds it


def test_verdicts_are_judged_again_from_committed_predictions(tmp_path, tok, gold):
    """A fresh clone has an evaluation's results and its predictions' archive, not its verdicts: the
    comparison judges them again (the same verdicts) and leaves the committed results as they were."""
    samples = ev.load_data("suite:everyday_tools", limit=6)
    gold("hermes", samples)
    ev.evaluate(params(tmp_path, backend="gold", data="suite:everyday_tools", limit=6), model_and_tokenizer=(None, tok))
    run = tmp_path / "run"
    made = (run / "verdicts.jsonl").read_text()
    results = (run / "results.json").read_bytes()
    (run / "predictions.jsonl.gz").write_bytes(gzip.compress((run / "predictions.jsonl").read_bytes()))
    (run / "predictions.jsonl").unlink()
    (run / "verdicts.jsonl").unlink()
    got = verdicts(run)
    assert [v.correct for v in got] == [True] * 6
    assert (run / "verdicts.jsonl").read_text() == made and (run / "results.json").read_bytes() == results

    # an archive of the same answers written after scoring (the headline's) leaves the verdicts standing
    judged_at = (run / "verdicts.jsonl").stat().st_mtime_ns
    newer = (run / "verdicts.jsonl").stat().st_mtime + 5
    os.utime(run / "predictions.jsonl.gz", (newer, newer))
    verdicts(run)
    assert (run / "verdicts.jsonl").stat().st_mtime_ns == judged_at

    # a pull brings other committed answers: the restored copy and the verdicts are made again from them
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    rows[0]["text"] = '<tool_call>\n{"name": "no_such_tool", "arguments": {}}\n</tool_call>'  # wrong either way
    (run / "predictions.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    later = (run / "verdicts.jsonl").stat().st_mtime + 10
    os.utime(run / "predictions.jsonl.gz", (later, later))
    assert [v.correct for v in verdicts(run)] == [False] + [True] * 5
    assert (run / "results.json").read_bytes() == results

    (run / "verdicts.jsonl").write_text("")  # an empty record is never compared as 0 samples
    os.utime(run / "verdicts.jsonl", (later + 1, later + 1))  # (newer than the answers: not judged again)
    with pytest.raises(UserError, match="verdicts.jsonl holds no verdicts; score the evaluation again"):
        verdicts(run)
    (run / "verdicts.jsonl").unlink()
    (run / "predictions.jsonl").unlink()
    (run / "predictions.jsonl.gz").unlink()
    with pytest.raises(UserError, match=r"has its results but not its answers \(no predictions.jsonl, nor the "
                                        r"committed predictions.jsonl.gz\) to compare sample by sample; the run"):
        compare({"a": run, "b": run}, "a", "b")
    shutil.rmtree(run)
    with pytest.raises(UserError, match=r"holds no evaluation \(no results.json\)"):
        verdicts(run)


def test_a_notebook_stops_on_a_missing_input_naming_what_makes_it():
    with pytest.raises(UserError, match=r"^the adapter runs/quickstart/no-such-run/adapter is not here; "
                                        r"`make quickstart` makes it$"):
        inputs.prepare({"models": {"x": {"model": "smollm2-135m-instruct",
                                          "adapter": "runs/quickstart/no-such-run/adapter"}}})
    with pytest.raises(UserError, match=r"^the training history reports/lora_ablation/r3/history.json is not here; "
                                        r"notebook 04_lora_ablation with run='r3' makes it$"):
        inputs.prepare({"histories": {"r3": "reports/lora_ablation/r3/history.json"}})


def test_a_user_error_in_a_notebook_shows_as_one_line():
    shown = []

    class Shell:
        def _showtraceback(self, etype, value, stb):
            shown.append((etype, stb))
    line = "UserError: the adapter x is not here; `make quickstart` makes it"
    assert one_line(Shell(), UserError, UserError(line.removeprefix("UserError: ")), None) == [line]
    assert shown == [(UserError, [line])]
