"""The headline runner (common.experiments.headline) on tiny models: every stage, resumable, one report."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from common.data.build import DataParams
from common.experiments import headline
from common.formats.base import PROMPT_VERSION
from common.params import ParamsError, load_params
from common.provenance import ROOT


@pytest.fixture
def roots(tmp_path, monkeypatch):
    monkeypatch.setenv("TOOLCALL_LAB_REPORTS", str(tmp_path / "reports"))
    monkeypatch.setenv("TOOLCALL_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    return tmp_path


def _params(tmp_path, **kw):
    held = tmp_path / "held.yaml"  # a tiny held-out build in place of data/offline-default
    held.write_text(yaml.safe_dump({"name": "hl-held", "out": str(tmp_path / "data" / "hl-held"), "top_toolkits": 4,
                                    "samples_per_toolkit": 24, "eval_size": 12, "tokenizer": "tiny-random-llama",
                                    "max_prompt_tokens": 700}))
    data = {"name": "hl-ci", "out": str(tmp_path / "data" / "hl-ci"), "tokenizer": "tiny-random-llama",
            "composed_parallel": 12, "near_miss": 8, "live_exclude_eval_of": [str(tmp_path / "data" / "hl-held")]}
    base = {"model": "tiny-random-llama", "data_set": data, "wandb": "disabled",
            "held_out_params": ["params/data.yaml", str(held)],
            "sft_set": {"limit": 4, "max_steps": 2, "eval_limit": 2, "gradient_accumulation_steps": 1, "save_steps": 1},
            "eval_set": {"limit": 3, "batch_size": 2, "max_new_tokens": 8, "dtype": "float32"},
            "sets": ["dev", "transfer", "held_out", "suite"], "bfcl_categories": ["simple_python", "irrelevance"],
            "bfcl_limit": 2, "bfcl_max_new_tokens": 8}
    return headline.HeadlineParams(**{**base, **kw})


@pytest.mark.slow
def test_a_recipe_and_its_ablation_make_one_report(roots, capsys):
    full = headline.run(_params(roots), "python -m common.experiments.headline params/headline.yaml")
    printed = capsys.readouterr().out
    for stage in ("build the held-out set (hl-held)", "build the data (hl-ci)", "train full", "evaluate full on dev", "evaluate full on transfer",
                  "BFCL full", "evaluate untrained on dev", "BFCL untrained"):
        assert f"==> {stage}" in printed, stage
    report = roots / "reports" / "bfcl" / "headline-smollm2-135m"
    assert full["complete"] and set(full["evals"]) == {"dev", "transfer", "held_out", "suite"}
    assert set(full["paired"]) == set(full["evals"]) and full["paired"]["dev"]["n"] == 3
    kinds = full["paired"]["dev"]["by_kind"]
    assert kinds["call"]["n"] + kinds["no_call"]["n"] == 3
    assert all(k["accuracy"] is None or 0 <= k["accuracy"] <= 1 for k in kinds.values())
    assert full["bfcl"]["per_category"]["irrelevance"]["n"] == 2
    assert sum(c["n"] for c in full["evals"]["dev"]["by_category"].values()) == 3
    assert full["evals"]["suite"]["by_category"] is None
    assert "parse_valid_no_call" in full["bfcl"]["per_category"]["irrelevance"]
    assert (report / "full" / "train" / "history.json").is_file()
    dev_dir = full["evals"]["dev"]["dir"]
    assert full["data"]["trained_on_sha256"] == full["data"]["splits"]["train"]["sha256"]  # recorded by training
    assert dev_dir.endswith("dev-" + full["data"]["splits"]["eval"]["sha256"][:8])
    # an ablation beside it: its own data and run, the same untrained evaluations (nothing regenerated)
    ablation = headline.run(_params(roots, recipe="real-only", description="real requests only",
                                    data_set={**_params(roots).data_set, "name": "hl-ci-real",
                                              "out": str(roots / "data" / "hl-ci-real"), "masking": 0.0,
                                              "composed_parallel": 0, "near_miss": 0}), "cmd")
    printed = capsys.readouterr().out
    assert ablation["data"]["splits"]["eval"]["sha256"] == full["data"]["splits"]["eval"]["sha256"]
    assert ablation["untrained"] == full["untrained"]
    text = (report / "README.md").read_text()
    assert "FunctionGemma-270M-it (the target)" in text and "recipe `full` (headline)" in text
    assert "| `real-only` | real requests only |" in text and "| `full` |" in text
    assert "tiny-random-llama, untrained" in text and "McNemar" in text
    assert "needs a call: n, recipe / untrained" in text
    assert json.loads((report / "results.json").read_text())["recipes"] == ["full", "real-only"]
    # a rerun finds every stage done: the adapter is not rewritten, no prediction is added
    adapter = roots / "runs" / "headline" / "full" / "adapter" / "adapter_model.safetensors"
    (preds,) = (report / "full" / "eval").glob("dev-*/predictions.jsonl")
    before = (adapter.stat().st_mtime_ns, preds.read_text())
    again = headline.run(_params(roots), "cmd")
    assert (adapter.stat().st_mtime_ns, preds.read_text()) == before
    assert again["evals"]["dev"]["accuracy"] == full["evals"]["dev"]["accuracy"]
    # the gate chosen on dev: the same adapter, gated, on every set and BFCL, beside the plain rows
    gated = headline.run(_params(roots, gate_from_dev=0.5), "cmd")
    assert (adapter.stat().st_mtime_ns, preds.read_text()) == before
    gate = json.loads((report / "full" / "call_gate.json").read_text())
    assert gated["gated"]["gate"]["threshold"] == gate["threshold"] and gate["chosen_on"].endswith(dev_dir)
    assert set(gated["gated"]["evals"]) == set(full["evals"]) and gated["gated"]["bfcl"]["per_category"]
    assert all(d["dir"].endswith("-gate") for d in gated["gated"]["evals"].values())
    assert json.loads((report / "full" / "bfcl-gate" / "params.json").read_text())["call_gate"] == gate["threshold"]
    text = (report / "README.md").read_text()
    assert "call gate chosen on dev (P(call) ≥" in text and "| `full` + gate |" in text
    # a fresh clone: no runs/, no data/, only what git keeps (no predictions.jsonl or verdicts.jsonl,
    # their archives): nothing is trained or generated, the report and its paired tests come back the same
    import shutil
    shutil.rmtree(roots / "runs"), shutil.rmtree(roots / "data")
    for path in [*report.rglob("predictions.jsonl"), *report.rglob("verdicts.jsonl")]:
        path.unlink()
    assert list(report.rglob("predictions.jsonl.gz"))
    capsys.readouterr()
    clone = headline.run(_params(roots, gate_from_dev=0.5), "cmd")
    printed = capsys.readouterr().out
    assert "rescoring them without its adapter" in printed
    assert not (roots / "runs" / "headline" / "full").exists()
    assert clone["paired"] == gated["paired"] and clone["gated"]["paired"] == gated["gated"]["paired"]
    assert clone["bfcl"]["per_category"] == gated["bfcl"]["per_category"]
    # a clone whose rebuild counts tokens with another renderer, its card from before samples hashes:
    # the same samples, so the same folders and training split; still nothing trained or generated
    for build in ("hl-ci", "hl-held"):
        _recount_tokens(roots / "data" / build)
    recounted = headline.run(_params(roots, gate_from_dev=0.5), "cmd")
    printed = capsys.readouterr().out
    assert "rescoring them without its adapter" in printed and "another build" not in printed
    assert not (roots / "runs" / "headline" / "full").exists()
    assert recounted["paired"] == gated["paired"] and recounted["evals"] == clone["evals"]
    assert recounted["data"]["trained_on_sha256"] == recounted["data"]["splits"]["train"]["sha256"]
    # a clone where the gated BFCL run never finished: the adapter is trained again, and the recorded
    # evaluations stand only because its weights are bit-identical to the recorded ones
    record = report / "full" / "train" / "results.json"
    kept = record.read_text()
    assert len(json.loads(kept)["weights_sha256"]) == 64
    record.write_text(kept.replace(json.loads(kept)["weights_sha256"], "0" * 64))
    shutil.rmtree(report / "full" / "bfcl-gate")
    from common.errors import UserError
    with pytest.raises(UserError, match=r"is not the one whose evaluations are recorded .*\(000000000000; 9 of them"):
        headline.run(_params(roots, gate_from_dev=0.5), "cmd")
    record.write_text(kept)
    shutil.rmtree(roots / "runs")
    capsys.readouterr()
    resumed = headline.run(_params(roots, gate_from_dev=0.5), "cmd")
    assert "is identical to the recorded one" in capsys.readouterr().out
    assert resumed["paired"] == gated["paired"] and resumed["gated"]["bfcl"]["per_category"] == \
        gated["gated"]["bfcl"]["per_category"]
    copied = json.loads((report / "full" / "bfcl-gate" / "irrelevance" / "results.json").read_text())["throughput"]
    plain = [json.loads(line) for line in (report / "full" / "bfcl" / "irrelevance" / "predictions.jsonl").open()]
    keeps = sum((r["p_call"] >= gate["threshold"]) == r["first_call"] for r in plain)
    assert copied["reused"] == keeps and copied["samples"] == 2 - keeps  # kept answers copied, the rest generated
    assert resumed["gated"]["answers_copied"]["of"] == 4 * 3 + 2 * 2  # every gated answer: 4 sets, 2 BFCL categories
    # the untrained rows alone (`fine_tuned: false`), from their records too
    alone = headline.run(_params(roots, fine_tuned=False), "cmd")
    assert alone["complete"] and alone["bfcl"]["dir"] == gated["untrained_bfcl"]
    assert alone["bfcl"]["per_category"]["irrelevance"]["n"] == 2
    assert {w: d["dir"] for w, d in alone["evals"].items()} == gated["untrained"]
    assert json.loads((report / "untrained" / "results.json").read_text())["model"] == "tiny-random-llama"
    # `untrained: false` pairs with the untrained records that still stand, generating nothing for that model:
    # one answered with prompts that have changed since, or made with other settings, is named and left out
    from evaluation_helpers import recorded_before_prompt_versions
    recorded_before_prompt_versions(report / "untrained" / "eval" / "suite" / "predictions.jsonl")  # the suite's
    untrained_preds = {q: q.read_text() for q in (report / "untrained").rglob("predictions.jsonl")}
    capsys.readouterr()
    mine = headline.run(_params(roots, gate_from_dev=0.5, untrained=False), "cmd")
    printed = capsys.readouterr().out
    assert "BFCL untrained" not in printed and "not paired with the untrained model on suite: " in printed
    assert set(mine["paired"]) == {"dev", "transfer", "held_out"} and mine["paired"]["dev"] == gated["paired"]["dev"]
    assert set(mine["gated"]["paired"]) == {"dev", "transfer", "held_out"}
    assert re.search(r"holds \d+ answers to prompts that have changed", mine["unpaired"]["suite"])
    text = (report / "README.md").read_text()
    assert "Not paired with the untrained model:\n\n- the 40-case everyday suite: " in text
    other = headline.run(_params(roots, recipe="cap-9", description="answers capped at 9 tokens", sets=["dev"],
                                 bfcl=False, untrained=False, eval_set={**_params(roots).eval_set, "max_new_tokens": 9}),
                         "cmd")
    assert other["paired"] == {} and "max_new_tokens: 8 there, 9 now" in other["unpaired"]["dev"]
    assert {q: q.read_text() for q in (report / "untrained").rglob("predictions.jsonl")} == untrained_preds


def test_the_dev_gate_is_chosen_on_dev_predictions_at_the_asked_no_call_accuracy(tmp_path):
    from common.samples import ExpectedCall, Sample
    tool = {"type": "function", "function": {"name": "f", "description": "F.", "parameters": {
        "type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}}}
    p_calls = {"c1": 0.9, "c2": 0.7, "c3": 0.4, "n1": 0.5, "n2": 0.3, "n3": 0.2, "n4": 0.1}
    samples = [Sample(id=i, tools=[tool], messages=[{"role": "user", "content": f"request {i}"}],
                      expected_calls=[ExpectedCall(name="f", arguments={"x": [1]})] if i[0] == "c" else [],
                      scenario="single" if i[0] == "c" else "no_tool") for i in p_calls]
    spec = tmp_path / "dev.jsonl"
    spec.write_text("".join(s.model_dump_json() + "\n" for s in samples))
    dev = tmp_path / "eval" / "dev-0"
    dev.mkdir(parents=True)
    (dev / "predictions.jsonl").write_text("".join(json.dumps({"id": i, "text": "", "p_call": v}) + "\n"
                                                   for i, v in p_calls.items()))
    gate = headline.dev_gate(_params(tmp_path, gate_from_dev=0.8), dev, str(spec))
    # no call on >= 80% of the 4 no-call requests: none may call, so the gate sits above n1's 0.5
    assert gate["threshold"] == pytest.approx(0.7) and gate["call_recall"] == pytest.approx(2 / 3)
    assert gate["no_call_accuracy"] == 1.0 and gate["n"] == 7 and gate["data"] == str(spec)
    looser = headline.dev_gate(_params(tmp_path, gate_from_dev=0.75), dev, str(spec))
    assert looser["threshold"] == pytest.approx(0.4) and looser["call_recall"] == 1.0  # n1 may call: 3 of 4 right
    assert looser["no_call_accuracy"] == 0.75
    (dev / "predictions.jsonl").write_text(json.dumps({"id": "c1", "text": "", "p_call": None}) + "\n")
    with pytest.raises(ValueError, match="records no P\\(call\\)"):
        headline.dev_gate(_params(tmp_path, gate_from_dev=0.75), dev, str(spec))
    with pytest.raises(ValueError, match="keep `dev`"):
        _params(tmp_path, gate_from_dev=0.8, sets=["transfer"])


def test_a_run_trained_on_another_build_is_named_with_the_fix(tmp_path, capsys):
    card = {"splits": {"train": {"content_sha256": "a" * 64, "samples_sha256": "c" * 64}}}
    tr = {"data": {"train": {"split_sha256": "b" * 64, "samples_sha256": "d" * 64}},
          "outputs": {"adapter": str(tmp_path / "run" / "adapter")}}
    assert headline.trained_on_split(tr, card, tmp_path / "data") == "d" * 64
    said = capsys.readouterr().out
    assert "trained on another build" in said and "(train samples dddddddd, now cccccccc)" in said
    assert "Delete that run folder and the recipe's report folder" in said
    tr["data"]["train"]["samples_sha256"] = "c" * 64  # other stored rows (token counts), the same samples
    assert headline.trained_on_split(tr, card, tmp_path / "data") == "c" * 64 and not capsys.readouterr().out
    # a run from before samples hashes: the same stored rows stand for the same samples, other rows do not
    old = {"data": {"train": {"split_sha256": "a" * 64}}, "outputs": tr["outputs"]}
    assert headline.trained_on_split(old, card, tmp_path / "data") == "c" * 64 and not capsys.readouterr().out
    old["data"]["train"]["split_sha256"] = "b" * 64
    assert headline.trained_on_split(old, card, tmp_path / "data") == "b" * 64
    assert "(train samples bbbbbbbb, now cccccccc)" in capsys.readouterr().out
    assert headline.trained_on_split({"data": {"train": {}}}, card, tmp_path) is None  # a run from before the hash


def _recount_tokens(build):
    """What a rebuild with another prompt renderer gives: the same samples with other token counts
    (and a data card from before session 25, without `samples_sha256`)."""
    import shutil

    from common.data import datacard
    from common.sources import content_hash, stored_rows
    card = json.loads((build / "data_card.json").read_text())
    splits = {k: [{**r, "prompt_tokens": r["prompt_tokens"] + 1} for r in stored_rows(build, k)]
              for k in card["splits"]}
    shutil.rmtree(build / "dataset")
    datacard.save_splits(splits, build)
    for k, rows in splits.items():
        card["splits"][k]["content_sha256"] = content_hash(rows)
        del card["splits"][k]["samples_sha256"]
    (build / "data_card.json").write_text(json.dumps(card))


def _recipe_results(name: str, trained_on: str | None) -> dict:
    row = {"n": 4, "accuracy": 0.5, "no_tool_accuracy": 0.5}
    return {"recipe": name, "complete": True, "description": f"{name} data", "model": "m", "command": "cmd",
            "recipe_text": "LoRA", "train": {"steps": 2, "data": {"train": {"sequences": 4}}},
            "data": {"build": "data/x", "live": None, "trained_on_sha256": trained_on,
                     "splits": {"train": {"samples": 4, "sha256": "a" * 64}}},
            "evals": {"dev": row}, "paired": {}, "bfcl": None, "gated": None}


@pytest.mark.parametrize(("trained_on", "said"), [
    ("a" * 64, None),
    ("b" * 64, ("trained on another build of this data** (train samples bbbbbbbb, the build "
                "now aaaaaaaa)")),
    (None, "did not record its split's hash")])
def test_the_report_says_when_an_adapter_trained_on_another_build(tmp_path, trained_on, said):
    for name, had in (("full", trained_on), ("other", trained_on)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(_recipe_results(name, had)))
    text = headline.write_report(tmp_path, "full").read_text()
    assert ("another build" in text) == (said is not None and "another" in said)
    assert ("| `other` † |" in text) == (trained_on == "b" * 64) == ("† trained on an earlier build" in text)
    # no untrained rows yet: the recipe's own rows, and what adds the untrained model's
    assert "| dev split (live toolkits held back; recipes are chosen here) | 4 | 50.0% | not evaluated yet |" in text
    if said:
        assert said in text


def _evaluation_folder(folder, params: dict, ids=("a",)) -> None:
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"params": params}))
    (folder / "results.json").write_text(json.dumps({"n_samples": len(ids)}))
    (folder / "predictions.jsonl").write_text("".join(json.dumps({"id": i, "text": "x"}) + "\n" for i in ids))


def test_a_finished_evaluation_is_known_by_its_record_and_must_match_the_recipe(tmp_path):
    from common.errors import UserError
    from common.experiments import headline_records as records
    from common.jsonio import archive
    dev = tmp_path / "eval" / "dev-1"
    assert not records.finished(dev)
    _evaluation_folder(dev, {"model": "m"}, ids=("a", "b"))
    assert records.finished(dev)
    archive(dev / "predictions.jsonl")
    (dev / "predictions.jsonl").unlink()
    assert records.finished(dev) and (dev / "predictions.jsonl").is_file()  # the committed archive, brought back
    (dev / "predictions.jsonl").write_text(json.dumps({"id": "a", "text": "x"}) + "\n")
    assert not records.finished(dev)  # a prediction short of its results' count: generate the rest
    (dev / "predictions.jsonl").unlink(), (dev / "predictions.jsonl.gz").unlink()
    assert not records.finished(dev)
    records.check_record(dev, {"model": "m", "adapter": str(ROOT / "runs" / "x")}, {"model": "m", "adapter": "runs/x"})
    with pytest.raises(UserError, match=r"other settings \(adapter: 'runs/x' there, 'runs/y' now; max_new_tokens: "
                                        r"8 there, 9 now\); delete that folder"):
        records.check_record(dev, {"adapter": "runs/x", "max_new_tokens": 8}, {"adapter": "runs/y", "max_new_tokens": 9})
    bfcl = tmp_path / "bfcl"
    _evaluation_folder(bfcl / "irrelevance", {"model": "m"})
    (bfcl / "params.json").write_text(json.dumps({"categories": ["irrelevance", "simple_python"]}))
    (bfcl / "results.json").write_text("{}")
    assert not records.finished(bfcl)  # one category not generated
    _evaluation_folder(bfcl / "simple_python", {"model": "m"})
    assert records.finished(bfcl)
    # the data spec a recorded evaluation read stands where this machine has it, else the recipe's own
    assert records.recorded_spec([tmp_path / "nothing", None], "data/live") == "data/live"  # no record
    _evaluation_folder(tmp_path / "held", {"data": str(tmp_path / "data" / "other:transfer")})
    assert records.recorded_spec([tmp_path / "nothing", tmp_path / "held"], "data/live:transfer") == "data/live:transfer"
    (tmp_path / "data" / "other").mkdir(parents=True)
    assert records.recorded_spec([tmp_path / "held"], "data/live:transfer") == str(tmp_path / "data" / "other:transfer")
    with pytest.raises(UserError, match="holds no saved weights"):
        records.weights_sha256(tmp_path)


def test_untrained_false_pairs_with_the_untrained_records_that_still_stand(tmp_path, monkeypatch, capsys):
    # an ablation (or a rerun that leaves the untrained model's BFCL for later) generates nothing for the
    # untrained model, yet pairs with its recorded evaluations that still stand, and says why a set is left out
    from common.errors import UserError
    for folder in ("dev-k", "suite", "transfer-k"):
        _evaluation_folder(tmp_path / "untrained" / "eval" / folder, {"model": "m"})
    (tmp_path / "untrained" / "eval" / "transfer-k" / "predictions.jsonl").write_text("")  # never finished
    seen = []

    def rescored(p, who, folder, adapter, *a):  # what rescore does with a record it refuses
        seen.append((who, p.sets, adapter))
        if p.sets == ["suite"]:
            raise UserError("suite holds 2 answers to prompts that have changed since; delete that folder")
        return {w: folder / "eval" / w for w in p.sets}
    monkeypatch.setattr(headline, "evaluate_sets", rescored)
    p = _params(tmp_path, untrained=False, sets=["dev", "transfer", "suite"])
    base, unpaired = headline.recorded_untrained(p, tmp_path, {}, {"dev": "-k", "transfer": "-k"}, {})
    assert seen == [("untrained", ["dev"], {}), ("untrained", ["suite"], {})]  # the unfinished one not even tried
    assert base == {"dev": tmp_path / "untrained" / "eval" / "dev"}
    assert unpaired["suite"].startswith("suite holds 2 answers to prompts that have changed")
    assert "untrained/eval/transfer-k holds no finished evaluation (untrained: true makes it)" in unpaired["transfer"]
    printed = capsys.readouterr().out
    assert "not paired with the untrained model on suite: suite holds 2 answers" in printed
    assert "not paired with the untrained model on transfer:" in printed


def test_the_shipped_recipe_and_ablations_validate_and_a_typo_is_named():
    p = load_params(headline.HeadlineParams, ["params/headline.yaml"])
    assert p.recipe == p.headline == "full" and p.sets == ["dev", "transfer", "held_out", "suite"]
    assert p.call_gate is None and p.gate_from_dev == 0.8  # plain rows, and a gate chosen on dev beside them
    names = {p.recipe: load_params(DataParams, p.data_params, p.data_set).name}
    for path in sorted((ROOT / "params" / "headline").glob("*.yaml")):
        a = load_params(headline.HeadlineParams, ["params/headline.yaml", str(path)])
        names[a.recipe] = load_params(DataParams, a.data_params, a.data_set).name
        assert a.gate_from_dev is None and not a.untrained  # ablations: plain decoding, the untrained rows once
    assert len(names) == 5  # each ablation its own recipe name, and its own build where its data differ
    assert len(set(names.values())) == 4 and names["pythonic"] == names["full"]
    with pytest.raises(ParamsError, match="sets"):
        load_params(headline.HeadlineParams, ["params/headline.yaml"], {"sets": ["devv"]})


def test_the_gemma_recipe_shares_the_data_and_names_its_own_target(tmp_path):
    smol = load_params(headline.HeadlineParams, ["params/headline.yaml"])
    gemma = load_params(headline.HeadlineParams, ["params/headline.yaml", "params/headline_gemma.yaml"])
    assert (gemma.model, gemma.target) == ("gemma-3-270m", "Granite-4.0-350M")
    assert gemma.report != smol.report and gemma.experiment != smol.experiment  # its own runs/ and report
    assert load_params(DataParams, gemma.data_params, gemma.data_set) == load_params(DataParams, smol.data_params,
                                                                                     smol.data_set)
    with pytest.raises(ParamsError, match="unknown published model 'Granite-4.0' for the target; use one of "
                                          "FunctionGemma-270M-it, Granite-4.0-350M"):
        load_params(headline.HeadlineParams, ["params/headline.yaml"], {"target": "Granite-4.0"})
    # the report marks the recipes' BFCL cells against the target it is given or the headline recorded
    r = _recipe_results("full", "a" * 64)
    per = {c: {"bfcl_accuracy": 0.7} for c in ("simple_python", "multiple", "parallel", "parallel_multiple",
                                               "irrelevance")}
    r["bfcl"] = {"dir": "reports/x/bfcl", "agreement": 1.0, "per_category": per, "prompt_version": PROMPT_VERSION}
    r["params"] = {"target": "Granite-4.0-350M"}
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "results.json").write_text(json.dumps(r))
    for target, marks in ((None, "| 70.0% ✗ | 70.0% ✗ | 70.0% ✓ | 70.0% ✓ | 70.0% ✗ |"),
                          ("FunctionGemma-270M-it", "| 70.0% ✓ | 70.0% ✓ | 70.0% ✓ | 70.0% ✓ | 70.0% ✗ |")):
        text = headline.write_report(tmp_path, "full", target).read_text()
        name = target or "Granite-4.0-350M"
        assert f"| {name} (the target) |" in text and f"at or above {name}'s score" in text
        assert f"| m + recipe `full` (headline) {marks}" in text
        assert json.loads((tmp_path / "results.json").read_text())["target"]["model"] == name


def test_untrained_rows_without_bfcl_keep_the_recorded_bfcl_row(tmp_path, monkeypatch, capsys):
    # `fine_tuned: false, bfcl: false` (the untrained suite again, BFCL's ~74 min left for later) must not
    # drop the untrained model's recorded BFCL row from its results, nor run BFCL; a record made with
    # another model or decoding is not taken for it
    from common.bfcl.params import BFCLParams
    from common.experiments.headline_records import BFCL_KEYS
    def no_bfcl(*a, **k):
        raise AssertionError("BFCL ran")
    monkeypatch.setattr(headline, "run_bfcl", no_bfcl)
    monkeypatch.setattr(headline, "evaluate_sets", lambda p, who, folder, *a: {})
    monkeypatch.setattr(headline, "bfcl_summary", lambda folder: {"dir": folder.name})
    untrained = tmp_path / "untrained"
    # the folders are named as the committed ones are: the default run's `bfcl`, an adapter's `bfcl<suffix>`
    assert headline.bfcl_folder(untrained, headline.HeadlineParams(), "hermes", {}).name == "bfcl"
    assert headline.bfcl_folder(untrained, headline.HeadlineParams(), "pythonic", {}).name == "bfcl-35b6c4fc"
    assert headline.bfcl_folder(untrained, headline.HeadlineParams(), "pythonic", {"adapter": "a"}, "-gate").name == \
        "bfcl-gate"
    p = _params(tmp_path, fine_tuned=False, bfcl=False)
    recorded, overrides = headline.bfcl_plan(p, "untrained", untrained, {})
    assert recorded.name == "bfcl-5a9beb8e"  # the test's categories, limit and answer cap key it

    def results():
        headline.evaluate_untrained(p, tmp_path, {}, {}, {}, "cmd")
        return json.loads((untrained / "results.json").read_text())["bfcl"]
    assert results() is None  # none recorded
    planned = BFCLParams(**overrides).resolved()
    _evaluation_folder(recorded / "irrelevance", {"model": "m"})
    (recorded / "params.json").write_text(json.dumps({k: getattr(planned, k) for k in BFCL_KEYS}, default=str))
    (recorded / "results.json").write_text("{}")
    assert results() is None  # simple_python never finished
    _evaluation_folder(recorded / "simple_python", {"model": "m"})
    assert results() == {"dir": recorded.name}
    assert "BFCL not run (bfcl: false); the untrained model's recorded BFCL row stands" in capsys.readouterr().out
    (recorded / "params.json").write_text(json.dumps({**{k: getattr(planned, k) for k in BFCL_KEYS}, "model": "other"},
                                                     default=str))
    assert results() is None
    assert "recorded BFCL row left out:" in capsys.readouterr().out


def test_a_stage_that_stops_prints_its_end_line_too(capsys):
    from common.experiments.steps import stage
    timings = {}
    with pytest.raises(ValueError), stage("evaluate untrained on suite", timings):
        raise ValueError("refused")
    assert capsys.readouterr().out.splitlines() == ["==> evaluate untrained on suite",
                                                    "<== evaluate untrained on suite: stopped after 0 s"]
    assert timings == {}


def test_the_ablation_table_pairs_each_recipe_with_the_headline_on_dev(tmp_path):
    ids = [f"s{i}" for i in range(10)]
    recipes = {"full": {i: k < 4 for k, i in enumerate(ids)},            # 4 of 10 right
               "real-only": {i: k < 7 for k, i in enumerate(ids)},       # the same 4 and 3 more
               "masking": {i: k < 4 for k, i in enumerate(ids[:9])},     # another dev split: not paired
               "old": None}                                              # recorded before dev_correct
    for name, correct in recipes.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps({**_recipe_results(name, "a" * 64),
                                                                  "dev_correct": correct}))
    text = headline.write_report(tmp_path, "full").read_text()
    assert "| dev vs `full` |" in text
    row = {line.split(" |")[0]: line for line in text.splitlines() if line.startswith("| `")}
    assert "| 50.0% | — |" in row["| `full`"]
    assert "| 50.0% | +30.0 (+" in row["| `real-only`"] and "), p 0.25 |" in row["| `real-only`"]
    assert "| 50.0% | n/a |" in row["| `masking`"] and "| 50.0% | n/a |" in row["| `old`"]


def test_the_paired_rows_split_each_set_by_what_its_requests_need(tmp_path):
    from common.evaluation.checker import Verdict
    from common.experiments.compare import by_kind
    def v(i, needs, right):
        return Verdict(id=i, scenario="s", correct=right, error_kind=None, expected_names=["f"] if needs else [],
                       output_names=[])
    recipe = [v("a", True, True), v("b", True, False), v("c", False, False), v("d", False, True)]
    never_calls = [v("a", True, False), v("b", True, False), v("c", False, True), v("d", False, True)]
    kinds = by_kind(recipe, never_calls)
    assert kinds == {"call": {"n": 2, "accuracy": 0.5, "untrained_accuracy": 0.0},
                     "no_call": {"n": 2, "accuracy": 0.5, "untrained_accuracy": 1.0}}
    from common.experiments.headline_report import paired_rows
    row = {"n": 4, "accuracy": 0.5, "untrained_accuracy": 0.5, "difference": {"difference": 0.0, "ci": [-0.5, 0.5]},
           "mcnemar_exact_p": 1.0, "by_kind": kinds}
    assert paired_rows({"dev": row})[2].endswith("| 2, 50.0% / 0.0% | 2, 50.0% / 100.0% |")
    assert paired_rows({"dev": {k: x for k, x in row.items() if k != "by_kind"}})[2].endswith("| n/a | n/a |")
    # a set the recipe ran on that no standing untrained evaluation pairs is named under the table
    results = {**_recipe_results("full", None), "evals": {"dev": row, "suite": row}, "paired": {"dev": row},
               "unpaired": {"suite": "reports/x/untrained/eval/suite holds 40 answers to prompts that have changed"}}
    folder = tmp_path / "full"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(results))
    text = headline.write_report(tmp_path, "full").read_text()
    assert "| 2, 50.0% / 0.0% | 2, 50.0% / 100.0% |" in text
    assert ("Not paired with the untrained model:\n\n- the 40-case everyday suite: reports/x/untrained/eval/suite "
            "holds 40 answers to prompts that have changed") in text
    # under the gated table the same set is referred to, not explained twice
    gate = {"threshold": 0.5, "target_no_call_accuracy": 0.8, "call_recall": 0.6}
    results["gated"] = {"gate": gate, "evals": {"dev": row, "suite": row}, "paired": {"dev": row}, "bfcl": None}
    (folder / "results.json").write_text(json.dumps(results))
    text = headline.write_report(tmp_path, "full").read_text()
    assert text.count("holds 40 answers") == 1
    assert "Not paired with the untrained model:\n\n- the 40-case everyday suite: as above" in text
    # nothing paired because every untrained record was refused: the reasons, not "not evaluated yet"
    results.update(paired={}, gated=None)
    (folder / "results.json").write_text(json.dumps(results))
    text = headline.write_report(tmp_path, "full").read_text()
    assert "No standing evaluation of the untrained model pairs these sets" in text and "not evaluated yet" not in text
    assert "| the 40-case everyday suite | 4 | 50.0% | not paired |" in text and "holds 40 answers" in text
    results.pop("unpaired")  # an old run's results, no reasons recorded: the untrained rows were never made
    (folder / "results.json").write_text(json.dumps(results))
    text = headline.write_report(tmp_path, "full").read_text()
    assert "has not been evaluated on these sets yet" in text and "| 50.0% | not evaluated yet |" in text


def test_a_report_with_no_finished_recipe_says_so_instead_of_an_empty_table(tmp_path):
    from common.experiments.headline_report import write_report
    text = write_report(tmp_path / "report", "full").read_text()
    assert "No recipe has finished yet" in text and "| recipe | what |" not in text


def test_bfcl_decodes_in_the_recipes_format_not_the_models_default(tmp_path, monkeypatch):
    # Gemma's own default format is functiongemma; the recipe trains and evaluates in hermes
    seen = {}
    monkeypatch.setattr(headline, "in_fresh_process", lambda fn, overrides: seen.update(overrides))
    monkeypatch.setattr(headline, "keep_predictions", lambda dest: None)
    p = _params(tmp_path, model="tiny-random-gemma3")
    headline.run_bfcl(p, "full", tmp_path / "full", {"adapter": "runs/x/adapter"}, {})
    assert seen["format"] == "hermes" and seen["out"].endswith("bfcl")
    headline.run_bfcl(p, "untrained", tmp_path / "untrained", {}, {})
    assert seen["format"] == "hermes" and "untrained/bfcl" in seen["out"]
    with pytest.raises(headline.UserError, match="trains in format 'pythonic' but evaluates in 'hermes'"):
        headline.run(_params(tmp_path, sft_set={"format": "pythonic"}), "cmd")


def test_a_bfcl_record_made_before_the_format_was_resolved_is_read_by_the_format_it_ran_in(tmp_path, monkeypatch):
    # SmolLM2's committed BFCL runs recorded format null (the category runs resolved it to hermes)
    from common.bfcl.params import BFCLParams
    from common.experiments import headline_records as records
    scored = []
    monkeypatch.setattr(records, "bfcl_score", scored.append)
    dest = tmp_path / "untrained" / "bfcl"
    for category in ("simple_python", "irrelevance"):
        _evaluation_folder(dest / category, {"format": "hermes"})
    planned = BFCLParams(model="tiny-random-llama", categories=["simple_python", "irrelevance"], limit=2,
                         call_gate="none", max_new_tokens=8, out=str(dest))
    (dest / "params.json").write_text(json.dumps({**planned.model_dump(), "format": None}))
    records.rescore_bfcl(dest, planned.model_copy(update={"format": "hermes"}))
    assert scored == [dest]
    with pytest.raises(records.UserError, match="format: 'hermes' there, 'pythonic' now"):
        records.rescore_bfcl(dest, planned.model_copy(update={"format": "pythonic"}))


def test_a_bfcl_record_of_prompts_that_have_changed_since_is_refused_not_rescored(tmp_path):
    # BFCL's committed answers before session 21 were prompted with a tool's keys in BFCL's order;
    # prompts now list them sorted, so those answers belong to another prompt (BFCL's scoring refuses them)
    from common.bfcl.params import BFCLParams
    from common.experiments import headline_records as records
    dest = tmp_path / "full" / "bfcl"
    _evaluation_folder(dest / "simple_python", {"format": "hermes"}, ids=("simple_python_0", "simple_python_1"))
    planned = BFCLParams(model="tiny-random-llama", format="hermes", categories=["simple_python"], limit=2,
                         call_gate="none", max_new_tokens=8, out=str(dest))
    (dest / "params.json").write_text(json.dumps(planned.model_dump()))
    with pytest.raises(records.UserError, match=r"changed since they were generated .*: simple_python \(2\); "
                                                "delete that category folder"):
        records.rescore_bfcl(dest, planned)


def test_the_report_says_where_each_recipes_bfcl_errors_are(tmp_path):
    from common.experiments.headline_report import OLD_PROMPTS_NOTE

    def bfcl(errors, **version):
        return {"dir": "x", "agreement": 1.0, "per_category": {"simple_python": {
            "n": 10, "bfcl_accuracy": 0.4, "agreement": 1.0, "bfcl_error_types": errors}}, **version}
    full = {**_recipe_results("full", "a" * 64), "bfcl": bfcl(
        {"ast_decoder:decoder_failed": 3, "value_error:string": 2, "type_error:simple": 1}, prompt_version=PROMPT_VERSION)}
    gated = {"gate": {"threshold": 0.9, "target_no_call_accuracy": 0.8}, "evals": {}, "paired": {},
             "bfcl": bfcl({"ast_decoder:decoder_failed": 6})}
    other = {**_recipe_results("other", "a" * 64), "gated": gated, "bfcl": bfcl(
        {"simple_function_checker:wrong_count": 1, "multiple_function_checker:wrong_count": 1,
         "some_new_checker:kind": 2})}
    for r in (full, other):
        (tmp_path / r["recipe"]).mkdir()
        (tmp_path / r["recipe"] / "results.json").write_text(json.dumps(r))
    text = headline.write_report(tmp_path, "full").read_text()
    rows = [line for line in text.split("## Where the BFCL errors are")[1].splitlines() if line.startswith("| m +")]
    # plain rows only, the headline first; shares of the wrong answers, the commonest first, at most three
    assert rows == [
        "| m + recipe `full` (headline) | simple_python | 6 | no call could be read from the answer: 50.0%; "
        "a string argument's value: 33.3%; an argument of another Python type (15.0 for an int, 5 for a float): 16.7% |",
        # two BFCL types that say the same are added up; an unknown one is shown as BFCL names it;
        # `other` answered BFCL before prompts listed a tool's keys sorted (no prompt_version recorded): marked
        "| m + recipe `other` ‡ | simple_python | 4 | no call (or several) where one was needed: 50.0%; "
        "some_new_checker:kind: 50.0% |"]
    # marked wherever its BFCL numbers are, with the note under each of the three tables; the headline is not
    assert "| m + recipe `other`, call gate chosen on dev (P(call) ≥ 0.900: dev no-call accuracy ≥ 80.0%) ‡ |" in text
    assert "| `other` ‡ |" in text and "| `other` + gate ‡ |" in text and "| `full` |" in text
    assert text.count(OLD_PROMPTS_NOTE) == 3 and "(headline) ‡" not in text
