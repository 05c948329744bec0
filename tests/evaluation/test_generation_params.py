"""What `resolved()` makes concrete: the backend, its precision and the answer cap."""

import pytest

from common.evaluation.params import EvalParams
from common.formats import FORMATS


def test_max_new_tokens_auto_is_the_formats_answer_budget():
    for name in FORMATS:
        p = EvalParams(model="tiny-random-llama", format=name).resolved()
        assert p.max_new_tokens == FORMATS[name].answer_tokens
    assert EvalParams(model="tiny-random-llama", max_new_tokens=64).resolved().max_new_tokens == 64
    assert EvalParams(model="tiny-random-llama", max_new_tokens="64").resolved().max_new_tokens == 64
    # the default model's format (hermes) when none is given
    assert EvalParams(model="tiny-random-llama").resolved().max_new_tokens == 192


@pytest.mark.parametrize("bad", [0, -3, "many", 1.5])
def test_a_bad_answer_cap_is_refused(bad):
    with pytest.raises(ValueError, match="max_new_tokens"):
        EvalParams(max_new_tokens=bad)


def test_resolved_backend_and_dtype_are_concrete_and_stable():
    p = EvalParams(model="tiny-random-llama").resolved()
    assert p.backend == "transformers" and p.dtype in {"float32", "bfloat16"}
    assert p.resolved() == p  # resolving twice changes nothing (BFCL resolves, then each category again)
    with pytest.raises(Exception, match="q8_0"):
        EvalParams(model="tiny-random-llama", backend="transformers", dtype="q8_0").resolved()


def test_an_adapter_is_prompted_in_the_format_its_training_run_recorded(tmp_path, capsys):
    import json

    from common.bfcl.params import BFCLParams

    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "model").mkdir()
    (run / "run.json").write_text(json.dumps({"stage": "sft", "params": {"format": "pythonic"}}))
    adapter = str(run / "adapter")
    p = EvalParams(model="tiny-random-llama", adapter=adapter).resolved()
    assert (p.format, p.max_new_tokens) == ("pythonic", FORMATS["pythonic"].answer_tokens)
    b = BFCLParams(model="tiny-random-llama", adapter=adapter, out=str(tmp_path / "b")).resolved()
    assert b.format == "pythonic"  # recorded in the BFCL run's params.json, and each category's
    # a full fine-tune's weights given as the model read the same record
    assert EvalParams(model=str(run / "model")).resolved().format == "pythonic"
    # the format given wins; without a training run beside the adapter, the model's own applies
    assert capsys.readouterr().err == ""
    for _ in range(2):
        assert EvalParams(model="tiny-random-llama", adapter=adapter, format="hermes").resolved().format == "hermes"
    said = capsys.readouterr().err  # once, naming both formats and the way to prompt it as trained
    assert said.count("warning:") == 1 and "trained in format 'pythonic'" in said and "format=pythonic" in said
    (tmp_path / "lone" / "adapter").mkdir(parents=True)
    lone = EvalParams(model="tiny-random-llama", adapter=str(tmp_path / "lone" / "adapter")).resolved()
    assert lone.format == "hermes"
    # a damaged record is named, with the way round it
    (run / "run.json").write_text("{not json")
    with pytest.raises(Exception, match=r"run.json is not a readable training run record.*format=NAME"):
        EvalParams(model="tiny-random-llama", adapter=adapter).resolved()
