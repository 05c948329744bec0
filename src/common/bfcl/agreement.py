"""The project's verdicts against BFCL's checker, sample by sample, each difference explained.

`agreement(cases, project_rows)` returns one row per sample: both verdicts, whether they
agree, and for a disagreement the rule that explains it. An explanation is not read off
error messages: where the project accepts what BFCL rejects, each known rule of the
project's checker is applied to the output (`RULES`: a number given its declared type, an
argument given its schema default dropped, a left-out argument given its default, the
calls in another order), and BFCL's own checker is asked again; the first rule under
which BFCL accepts the output is the reason. A disagreement no rule explains is reported
as "unexplained". Where BFCL accepts what the project rejects, the one known case is a
call that does not parse on an irrelevance entry (BFCL counts only decoded calls).
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable
from typing import Any

from common.bfcl.reference import reference_verdicts

MALFORMED_ON_IRRELEVANCE = (
    "a call that does not parse, on an irrelevance entry: BFCL counts only decoded calls (a failed decode is "
    "'no call', so right); the project counts the malformed attempt as wrong")
UNEXPLAINED = "unexplained"
MAX_ORDERS = 120  # permutations tried for the call-order rule (5 calls)

Decoded = list[dict[str, dict[str, Any]]]


def _doc(case: dict[str, Any], name: str) -> dict[str, Any]:
    return next((f for f in case["function"] if f["name"] == name), {"parameters": {"properties": {}}})


def _answers(case: dict[str, Any], project: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Output call index -> the BFCL answer (argument -> alternatives) the project matched it to."""
    answers = case.get("possible_answer") or []
    return {m["output"]: next(iter(answers[m["expected"]].values()))
            for m in project.get("matches", []) if m["name_ok"] and m["expected"] < len(answers)}


def _python_number(value: Any, bfcl_type: str | None) -> Any:
    if bfcl_type == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    if bfcl_type == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _edit_calls(case: dict[str, Any], project: dict[str, Any],
                edit: Callable[[dict[str, Any], dict[str, Any], dict[str, Any] | None], None]) -> Decoded:
    """A copy of the output with `edit(arguments, schema properties, matched answer or None)`
    applied to each call in place."""
    out, answers = copy.deepcopy(case["decoded"]), _answers(case, project)
    for i, call in enumerate(out):
        (name, args), = call.items()
        edit(args, _doc(case, name)["parameters"].get("properties", {}), answers.get(i))
    return out


def _whole_floats(case: dict[str, Any], project: dict[str, Any]) -> Decoded:
    """Numbers given the Python type the function declares: a whole float for an integer
    made an int, and in a list, ints made floats where the items are floats (BFCL turns an
    int into a float only at the top level)."""
    def edit(args: dict[str, Any], props: dict[str, Any], answer: dict[str, Any] | None) -> None:
        for key, value in args.items():
            schema = props.get(key, {})
            if schema.get("type") == "integer":
                args[key] = _python_number(value, "integer")
            elif schema.get("type") in ("array", "tuple") and isinstance(value, list):
                args[key] = [_python_number(v, (schema.get("items") or {}).get("type")) for v in value]
    return _edit_calls(case, project, edit)


def _defaults_dropped(case: dict[str, Any], project: dict[str, Any]) -> Decoded:
    """Arguments the matched answer does not name, given at their schema default, dropped."""
    def edit(args: dict[str, Any], props: dict[str, Any], answer: dict[str, Any] | None) -> None:
        for key in [k for k, v in args.items() if answer is not None and k not in answer
                    and "default" in props.get(k, {}) and props[k]["default"] == v]:
            del args[key]
    return _edit_calls(case, project, edit)


def _defaults_filled(case: dict[str, Any], project: dict[str, Any]) -> Decoded:
    """Arguments the matched answer pins, left out, given their schema default."""
    def edit(args: dict[str, Any], props: dict[str, Any], answer: dict[str, Any] | None) -> None:
        for key, alternatives in (answer or {}).items():
            if key not in args and "" not in alternatives and "default" in props.get(key, {}):
                args[key] = props[key]["default"]
    return _edit_calls(case, project, edit)


def _all_value_rules(case: dict[str, Any], project: dict[str, Any]) -> Decoded:
    step = {**case, "decoded": _whole_floats(case, project)}
    step = {**step, "decoded": _defaults_dropped(step, project)}
    return _defaults_filled(step, project)


# (name, transform, why the project keeps its rule); tried in this order
RULES: list[tuple[str, Callable[[dict[str, Any], dict[str, Any]], Decoded], str]] = [
    ("number_type", _whole_floats,
     "a number of the other Python type (15.0 for an integer, or 12 in a list of floats): JSON has one number "
     "type and JSON Schema accepts both, so the project accepts it; BFCL's Python type check rejects it"),
    ("default_given", _defaults_dropped,
     "an argument the answer does not name, given its schema default: the call means the same, so the project "
     "accepts it; BFCL rejects any argument its answer does not list"),
    ("default_left_out", _defaults_filled,
     "an argument the answer pins, left out where its schema default is the pinned value: the call means the "
     "same, so the project accepts it; BFCL asks for it unless the answer marks it optional"),
    ("several_value_rules", _all_value_rules,
     "several of: a number of the other Python type, an argument given its schema default, a pinned argument left "
     "at its default (each accepted by the project, rejected by BFCL)"),
]
CALL_ORDER = (
    "BFCL pairs parallel calls with its answers greedily, in the answer's order, so an output whose calls "
    "each fit a different answer can still fail; the project's optimal assignment accepts it")


def counterfactuals(case: dict[str, Any], project: dict[str, Any]) -> list[tuple[str, Decoded]]:
    """(reason, changed output) pairs to ask BFCL about, in order of preference."""
    out = [(why, rule(case, project)) for _, rule, why in RULES]
    calls = case["decoded"] or []
    if 1 < len(calls) and "parallel" in case["category"]:
        out += [(CALL_ORDER, list(p)) for p in itertools.islice(itertools.permutations(calls), 1, MAX_ORDERS)]
    same = json.dumps(case["decoded"], sort_keys=True)  # by JSON text: 15 == 15.0 in Python
    return [(why, decoded) for why, decoded in out if json.dumps(decoded, sort_keys=True) != same]


def agreement(cases: list[dict[str, Any]], project_rows: list[dict[str, Any]],
              reference: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per sample: both verdicts, agreement, and the reason for a disagreement.
    `cases`, `project_rows` and `reference` are aligned (same sample at the same index)."""
    rows, asks = [], []
    for case, project, ref in zip(cases, project_rows, reference, strict=True):
        row = {"id": project["id"], "category": case["category"], "project_correct": project["correct"],
               "project_error_kind": project["error_kind"], "bfcl_valid": ref["valid"],
               "bfcl_error_type": ref["error_type"], "bfcl_error": ref["error"],
               "agree": project["correct"] == ref["valid"], "explanation": None}
        if not row["agree"]:
            row["explanation"] = UNEXPLAINED
            if project["error_kind"] == "malformed_output" and ref["valid"] and "irrelevance" in case["category"]:
                row["explanation"] = MALFORMED_ON_IRRELEVANCE
            elif project["correct"] and case["decoded"] is not None:
                asks += [(len(rows), why, {**case, "decoded": d}) for why, d in counterfactuals(case, project)]
        rows.append(row)
    if asks:
        answers = reference_verdicts([c for _, _, c in asks])
        for (i, why, _), verdict in zip(asks, answers):
            if verdict["valid"] and rows[i]["explanation"] == UNEXPLAINED:
                rows[i]["explanation"] = why
    return rows
