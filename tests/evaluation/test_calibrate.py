"""The call gate's calibration and the paired difference, on hand-made numbers."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from common.evaluation.calibrate import choose_threshold, used_ids
from common.evaluation.metrics import paired_difference


def test_threshold_keeps_the_no_call_accuracy_and_calls_as_much_as_it_can():
    p = [0.9, 0.8, 0.7, 0.4, 0.3, 0.85, 0.6, 0.5, 0.2, 0.1]
    y = [True, True, True, True, True, False, False, False, False, False]
    g = choose_threshold(p, y, 0.8)
    # calling at >= 0.7 calls 3 of 5 call samples and 1 of 5 no-call samples (0.85): 80% kept
    assert g["threshold"] == pytest.approx(0.7) and g["call_recall"] == 0.6 and g["no_call_accuracy"] == 0.8
    strict = choose_threshold(p, y, 1.0)  # no false call allowed: only above 0.85
    assert strict["threshold"] == pytest.approx(0.9) and strict["call_recall"] == 0.2
    assert strict["no_call_accuracy"] == 1.0 and 0 < strict["auc"] < 1


def test_threshold_can_be_never_call_and_needs_both_kinds():
    g = choose_threshold([0.2, 0.9], [True, False], 0.99)
    assert g["call_recall"] == 0.0 and g["no_call_accuracy"] == 1.0 and g["threshold"] > 0.9
    # the gate compares float32 P(call): "never call" must stay above the top value in float32 too
    top = float(np.float32(0.9))
    g = choose_threshold([0.2, top], [True, False], 0.99)
    assert not np.float32(top) >= np.float32(g["threshold"])
    with pytest.raises(ValueError, match="all of one kind"):
        choose_threshold([0.2, 0.4], [True, True], 0.8)


def test_used_ids_of_a_dpo_run_include_its_sft_draw(tmp_path):
    import json
    sft = {"stage": "sft", "params": {"data": "suite:everyday_tools", "limit": 5, "seed": 1}}
    (tmp_path / "results.json").write_text(json.dumps(sft))
    dpo = {"stage": "dpo", "params": {"data": "suite:everyday_tools", "pair_prompts": 4, "seed": 2,
                                      "sft": str(tmp_path)}}
    assert len(used_ids(sft)) == 5 and used_ids(sft) < used_ids(dpo) and len(used_ids(dpo)) <= 9


def _v(i, ok):
    return SimpleNamespace(id=str(i), correct=ok)


def test_paired_difference_interval():
    a = [_v(i, i < 60) for i in range(100)]
    b = [_v(i, i < 30) for i in range(100)]
    d = paired_difference(a, b)
    assert d["difference"] == pytest.approx(0.3) and d["excludes_zero"]
    assert 0.18 < d["ci"][0] < 0.3 < d["ci"][1] < 0.42
    same = paired_difference(a, a)
    assert same["difference"] == 0 and same["ci"] == [0.0, 0.0] and not same["excludes_zero"]
    noisy = paired_difference([_v(i, i % 2 == 0) for i in range(20)], [_v(i, i % 3 == 0) for i in range(20)])
    assert not noisy["excludes_zero"]
    with pytest.raises(ValueError, match="same samples"):
        paired_difference(a, b[:50])
