"""The parameter grammar every command shares, and the one model spec the run parameters extend."""

from __future__ import annotations

import pytest

from common.bfcl.params import BFCLParams
from common.evaluation.params import EvalParams, GenerationSpec, run_name
from common.experiments.quickstart import QuickstartParams, stage_overrides
from common.params import (
    DEFAULT_MODEL,
    ModelSpec,
    ParamsError,
    Replace,
    load_params,
    merge,
    parse_overrides,
)
from common.training.params import DPOParams, SFTParams, TrainParams


def test_a_dotted_key_reaches_into_a_dict_and_a_dict_value_merges_key_by_key():
    assert parse_overrides(["sft_set.lora_r=8", "eval_set.limit=20", "eval_set={batch_size: 4}", "seed=1"]) == {
        "sft_set": {"lora_r": 8}, "eval_set": {"limit": 20, "batch_size": 4}, "seed": 1}
    base = {"eval_set": {"data": "data/x", "limit": 150}, "sft_set": {"decision_weight": 10, "eval_limit": 16}}
    assert merge(base, parse_overrides(["sft_set.lora_r=8", "eval_set={batch_size: 4}"])) == {
        "eval_set": {"data": "data/x", "limit": 150, "batch_size": 4},
        "sft_set": {"decision_weight": 10, "eval_limit": 16, "lora_r": 8}}
    assert base == {"eval_set": {"data": "data/x", "limit": 150}, "sft_set": {"decision_weight": 10, "eval_limit": 16}}


def test_replace_replaces_a_whole_dict_and_its_mark_never_reaches_the_parameters():
    replaced = parse_overrides(["eval_set={batch_size: 4}"], replace=True)
    assert replaced == {"eval_set": Replace({"batch_size": 4})}
    assert merge({"eval_set": {"data": "x", "limit": 3}}, replaced) == {"eval_set": {"batch_size": 4}}
    assert merge({}, parse_overrides(["a.b=1"], replace=True)) == {"a": {"b": 1}}  # nothing to merge into


@pytest.mark.parametrize("item, message", [("eval_set.=3", "not a key or a dotted path"), (".x=1", "not a key"),
                                           ("limit", "is not key=value"), ("x=[1", "not valid YAML")])
def test_a_malformed_override_is_named(item, message):
    with pytest.raises(ParamsError, match=message):
        parse_overrides([item])


def test_the_quickstart_keeps_the_keys_an_override_does_not_name():
    """The issue's two cases: `--set sft_set={lora_r: 8}` used to drop decision_weight and
    eval_limit, and `--set eval_set={batch_size: 4}` the held-out data and its limit."""
    base = load_params(QuickstartParams, ["params/quickstart.yaml"])
    p = load_params(QuickstartParams, ["params/quickstart.yaml"],
                    parse_overrides(["sft_set={lora_r: 8}", "eval_set={batch_size: 4}"]))
    assert p.sft_set == {**base.sft_set, "lora_r": 8}
    assert p.eval_set == {**base.eval_set, "batch_size": 4}
    assert p.eval_set["data"] == "data/offline-default" and p.eval_set["limit"] == 150
    dotted = load_params(QuickstartParams, ["params/quickstart.yaml"],
                         parse_overrides(["sft_set.lora_r=8", "eval_set.batch_size=4"]))
    assert dotted == p
    whole = load_params(QuickstartParams, ["params/quickstart.yaml"],
                        parse_overrides(["eval_set={batch_size: 4}"], replace=True))
    assert whole.eval_set == {"batch_size": 4}


def test_a_gpu_layer_replaces_the_cpu_override_dicts_whole():
    """Files layer by top-level key: the Qwen3-4B layer's eval_set has no limit, so all 300
    held-out samples are scored, and its empty sft_set drops the CPU run's decision weight."""
    p = load_params(QuickstartParams, ["params/quickstart.yaml", "params/quickstart_qwen3_4b.yaml"])
    assert "limit" not in p.eval_set and p.sft_set == {} and p.model == "qwen3-4b-instruct-2507"
    assert p.held_out_params == []  # Kinetic's data keeps nothing out


def test_a_dotted_key_into_a_value_that_is_not_a_dict_is_refused(tmp_path):
    layer = tmp_path / "p.yaml"
    layer.write_text("model: smollm2-135m-instruct\n")
    with pytest.raises(ParamsError, match="model is 'smollm2-135m-instruct', not a mapping"):
        load_params(EvalParams, [layer], parse_overrides(["model.x=1"]))
    with pytest.raises(ParamsError, match="model: Input should be a valid string"):
        load_params(EvalParams, [], parse_overrides(["model.x=1"]))


def test_the_default_model_is_written_once_in_the_shared_spec():
    for cls in (EvalParams, BFCLParams, SFTParams, DPOParams):
        assert issubclass(cls, ModelSpec) and cls.model_fields["model"].default == DEFAULT_MODEL
    assert issubclass(BFCLParams, GenerationSpec) and issubclass(EvalParams, GenerationSpec)
    assert issubclass(SFTParams, TrainParams) and QuickstartParams().model == DEFAULT_MODEL
    for field in ("model", "format", "device", "wandb", "wandb_project", "wandb_group"):
        assert field in ModelSpec.model_fields
    for field in ("adapter", "dtype", "backend", "batch_size", "max_new_tokens", "seed", "limit", "run", "out"):
        assert field in GenerationSpec.model_fields and field in BFCLParams.model_fields


def test_the_quickstart_sets_its_model_once():
    eval_set, sft_set = stage_overrides(QuickstartParams(model="tiny-random-llama"))
    assert eval_set["model"] == sft_set["model"] == "tiny-random-llama"
    with pytest.raises(ParamsError, match="sft_set sets model"):
        stage_overrides(QuickstartParams(sft_set={"model": "gemma-3-270m"}))


def test_lora_alpha_follows_the_rank_unless_given():
    assert SFTParams(lora_r=8).lora_alpha == 16 and SFTParams().lora_alpha == 32
    assert SFTParams(lora_r=8, lora_alpha=8).lora_alpha == 8
    assert load_params(SFTParams, ["params/sft.yaml"], parse_overrides(["lora_r=64"])).lora_alpha == 128
    assert load_params(SFTParams, ["params/sft_kinetic.yaml"]).lora_alpha == 128
    assert "lora_alpha" not in DPOParams(sft="runs/x").model_fields_set  # DPO takes it from its SFT run


def test_evaluation_and_bfcl_name_a_run_alike():
    assert run_name("smollm2-135m-instruct", None) == "smollm2-135m-instruct"
    assert run_name("smollm2-135m-instruct", "runs/quickstart/lora-sft/adapter") == "smollm2-135m-instruct+lora-sft"
    assert run_name("m", "some/folder/my-adapter") == "m+my-adapter"
    adapter = "runs/quickstart/lora-sft/adapter"
    assert EvalParams(adapter=adapter).default_run() == BFCLParams(adapter=adapter, call_gate="none").resolved().run


def _mains():
    from common.bfcl.run import main as bfcl_main
    from common.data.build import main as data_main
    from common.evaluation.runner import main as evaluate_main
    from common.experiments.quickstart import main as quickstart_main
    from common.experiments.sweep import main as sweep_main
    from common.training.cli import main as train_main
    return {"evaluate": (evaluate_main, ["params/evaluate.yaml"]), "train": (train_main, ["sft", "params/sft.yaml"]),
            "data": (data_main, ["build", "params/data.yaml"]), "bfcl": (bfcl_main, []),
            "sweep": (sweep_main, ["params/sweeps/lora_rank.yaml"]), "quickstart": (quickstart_main, [])}


@pytest.mark.parametrize("command", ["evaluate", "train", "data", "bfcl", "sweep", "quickstart"])
def test_every_command_reads_overrides_with_the_same_grammar(command):
    """A dotted --set and a --replace reach each command's parameters (the unknown top-level
    key is named before anything runs)."""
    main, argv = _mains()[command]
    with pytest.raises(ParamsError, match=r"unknown parameter 'nope'"):
        main([*argv, "--set", "nope.deeper=1", "--replace", "nope.other={a: 1}"])


def test_the_quickstart_scores_only_non_live_bfcl_categories():
    assert QuickstartParams(bfcl_categories=[]).bfcl_categories == []
    with pytest.raises(ValueError, match=r"\['live_simple'\]: the quickstart scores BFCL's non-live categories"):
        QuickstartParams(bfcl_categories=["simple_python", "live_simple"])


def test_the_live_quickstart_layer_builds_the_held_out_set_first_and_scores_a_bfcl_slice():
    p = load_params(QuickstartParams, ["params/quickstart.yaml", "params/quickstart_live.yaml"])
    assert p.held_out_params == ["params/data.yaml"] and p.data_params == ["params/data_live.yaml"]
    assert p.eval_set["data"] == "data/live:transfer" and p.bfcl_categories == ["simple_python", "irrelevance"]
    assert load_params(QuickstartParams, ["params/quickstart.yaml"]).bfcl_categories == []
