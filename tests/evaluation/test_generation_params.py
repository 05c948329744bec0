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
