"""Judge one model output against one sample: a structured verdict, never a bare boolean.

The verdict says which output call matched which expected call, which argument failed
and why, what the output hallucinated, and one error kind for the sample. Metrics
(`common.evaluation.metrics`) are aggregates of verdicts, so error analysis needs no second pass.

Comparison rules:
- types matter: 7 and "7" are a type mismatch (checked against the argument's JSON
  schema with `jsonschema`, so an int is a valid "number" as JSON Schema says);
- an optional argument left out, or given its schema default, is correct unless the
  expected call pins it to another value (then leaving it out means the default is
  used, which is a wrong value);
- an argument the function's schema lacks is wrong, and a required one left out is
  missing, whatever the expected call says (a few BFCL answers contradict their schema);
- parallel calls match regardless of order (an optimal assignment, scipy's
  `linear_sum_assignment`);
- each expected argument lists its acceptable values (as BFCL's possible answers);
- strings compare after BFCL's normalisation (case, spaces and `,./-_*^` ignored)
  unless `strict_strings=True`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

import jsonschema
import numpy as np
from scipy.optimize import linear_sum_assignment

from common.formats.base import ParsedOutput
from common.samples import ExpectedCall, Sample, ToolCall

# Sample-level error kinds, in the order that names a failed sample: the first that
# applies wins (a malformed output is reported as such even if part of it parsed).
ERROR_KINDS = (
    "malformed_output",           # the text could not be read as calls
    "call_not_needed",            # a call where the sample expects none
    "no_call",                    # no call where one was expected
    "wrong_function",             # a call to another function than expected
    "missing_call",               # fewer calls than expected (parallel)
    "extra_call",                 # more calls than expected (parallel, sequential)
    "wrong_argument_name",        # an argument the schema does not have, in place of an expected one
    "missing_required_argument",  # a required argument left out
    "extra_argument",             # an argument the request did not ask for, not at its default
    "type_mismatch",              # a value of the wrong JSON type
    "wrong_value",                # right type, value not among the acceptable ones
)
ARGUMENT_KINDS = ERROR_KINDS[6:]
_NAME_MISMATCH = 1000.0  # assignment cost: a wrong name outweighs any number of argument errors


@dataclass
class ArgumentIssue:
    argument: str
    kind: str
    detail: str


@dataclass
class CallMatch:
    expected: int  # index into the sample's expected_calls
    output: int    # index into the parsed calls
    name_ok: bool
    issues: list[ArgumentIssue] = field(default_factory=list)

    @property
    def correct(self) -> bool:
        return self.name_ok and not self.issues


@dataclass
class Verdict:
    id: str
    scenario: str
    correct: bool
    error_kind: str | None
    expected_names: list[str]
    output_names: list[str]
    matches: list[CallMatch] = field(default_factory=list)
    missing_calls: list[int] = field(default_factory=list)
    extra_calls: list[int] = field(default_factory=list)
    parse_error: dict[str, str] | None = None
    hallucinations: list[dict[str, str]] = field(default_factory=list)
    # argument counts for the SLM paper's argument precision/recall/F1 (see _count_args)
    args_predicted: int = 0
    args_true: int = 0
    args_correct: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for m, md in zip(self.matches, d["matches"]):
            md["correct"] = m.correct
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        d = dict(d)
        d["matches"] = [CallMatch(expected=m["expected"], output=m["output"], name_ok=m["name_ok"],
                                  issues=[ArgumentIssue(**i) for i in m["issues"]])
                        for m in d["matches"]]
        return cls(**d)


# -- values -----------------------------------------------------------------------

def normalize_string(s: str) -> str:
    """BFCL's string standardisation (ast_checker.standardize_string)."""
    return re.sub(r"[ ,./\-_*^]", "", s).lower().replace("'", '"')


def values_equal(got: Any, want: Any, strict_strings: bool = False) -> bool:
    if isinstance(got, bool) or isinstance(want, bool):
        return isinstance(got, bool) and isinstance(want, bool) and got == want
    if isinstance(got, (int, float)) and isinstance(want, (int, float)):
        return got == want
    if isinstance(got, str) and isinstance(want, str):
        return got == want if strict_strings else normalize_string(got) == normalize_string(want)
    if isinstance(got, list) and isinstance(want, list):
        return len(got) == len(want) and all(values_equal(g, w, strict_strings) for g, w in zip(got, want))
    if isinstance(got, dict) and isinstance(want, dict):
        return got.keys() == want.keys() and all(values_equal(got[k], want[k], strict_strings) for k in got)
    return got is None and want is None


def _json_kind(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object", type(None): "null"}.get(type(v), "other")


def type_error(value: Any, schema: dict[str, Any] | None, acceptable: list[Any] | None = None) -> str | None:
    """Why `value` has the wrong type for its schema, or None if its type fits.

    Only the schema's `type` keywords are consulted (at any depth); a value outside an
    enum is a wrong value, not a wrong type. Without a declared type, the value's JSON
    kind is compared with the acceptable values' kinds.
    """
    if schema and "type" in schema:
        try:
            errors = [e for e in jsonschema.Draft202012Validator(schema).iter_errors(value)
                      if e.validator == "type"]
        except (jsonschema.exceptions.UnknownType, jsonschema.exceptions.SchemaError):
            # only a benchmark's own unusable schema gets here: every sample's tools are
            # normalised and validated where samples enter (samples.checked_tool)
            errors = []
        if errors:
            where = "/".join(str(p) for p in errors[0].absolute_path)
            return f"{where + ': ' if where else ''}{errors[0].message}"
        return None
    if acceptable:
        kinds = {_json_kind(a) for a in acceptable}
        if _json_kind(value) not in kinds:
            return f"{value!r} is a {_json_kind(value)}, expected {' or '.join(sorted(kinds))}"
    return None


# -- calls ------------------------------------------------------------------------

def _parameters(function: dict[str, Any] | None) -> tuple[dict[str, Any], set[str]]:
    params = (function or {}).get("parameters") or {}
    return params.get("properties") or {}, set(params.get("required") or [])


def omission_issue(key: str, expected: ExpectedCall, function: dict[str, Any] | None,
                   strict_strings: bool = False) -> ArgumentIssue | None:
    """The issue of leaving out an expected argument, or None when leaving it out is fine
    (it is listed optional, or its schema default is an acceptable value)."""
    props, required = _parameters(function)
    # The schema's `required` wins over an answer that lists the argument as optional
    # (a few BFCL answers do): a call without it is invalid for the function, as BFCL rules.
    if key in required:
        return ArgumentIssue(key, "missing_required_argument", f"required {key!r} left out")
    if key in expected.optional:
        return None
    schema = props.get(key) or {}
    if "default" not in schema:
        return ArgumentIssue(key, "wrong_value", f"left out (no default); acceptable {expected.arguments[key]!r}")
    if any(values_equal(schema["default"], a, strict_strings) for a in expected.arguments[key]):
        return None
    return ArgumentIssue(key, "wrong_value", f"left out, so its default {schema['default']!r} applies; "
                                             f"acceptable {expected.arguments[key]!r}")


def check_call(expected: ExpectedCall, call: ToolCall, function: dict[str, Any] | None,
               strict_strings: bool = False) -> list[ArgumentIssue]:
    """The argument issues of a call to the expected function (empty: correct)."""
    props, required = _parameters(function)
    omissions = [i for k in expected.arguments if k not in call.arguments
                 if (i := omission_issue(k, expected, function, strict_strings))]
    # a required argument the answer does not name is still required (as BFCL rules)
    omissions += [ArgumentIssue(k, "missing_required_argument", f"required {k!r} left out")
                  for k in sorted(required) if k not in call.arguments and k not in expected.arguments]
    issues: list[ArgumentIssue] = []
    for key, value in call.arguments.items():
        schema = props.get(key)
        if function is not None and key not in props:
            # Not a parameter of the function, even where an answer names it (a few BFCL
            # answers do). An unknown name where an expected argument is missing is most
            # likely that argument misnamed.
            kind = "wrong_argument_name" if omissions else "extra_argument"
            issues.append(ArgumentIssue(key, kind, f"{key!r} is not a parameter of {call.name}"))
        elif key in expected.arguments:
            acceptable = expected.arguments[key]
            if any(values_equal(value, a, strict_strings) for a in acceptable):
                continue
            why = type_error(value, schema, acceptable)
            if why:
                issues.append(ArgumentIssue(key, "type_mismatch", why))
            else:
                issues.append(ArgumentIssue(key, "wrong_value", f"got {value!r}, acceptable {acceptable!r}"))
        elif key in expected.optional:
            why = type_error(value, schema)
            if why:
                issues.append(ArgumentIssue(key, "type_mismatch", why))
        elif schema is not None and "default" in schema and values_equal(value, schema["default"], strict_strings):
            continue
        elif schema is not None and (why := type_error(value, schema)):
            # the same verdict the hallucination record gives it (`wrong_type`)
            issues.append(ArgumentIssue(key, "type_mismatch", f"{key} was not asked for, and {why}"))
        else:
            issues.append(ArgumentIssue(key, "extra_argument", f"{key}={value!r} was not asked for"))
    return issues + omissions


def hallucinations(calls: list[ToolCall], functions: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    """What an output invented, whatever was expected: a function that was not offered,
    an argument its schema does not have, or a value of the wrong type."""
    found = []
    for i, call in enumerate(calls):
        if call.name not in functions:
            found.append({"call": str(i), "kind": "unknown_function", "name": call.name})
            continue
        props, _ = _parameters(functions[call.name])
        for key, value in call.arguments.items():
            if key not in props:
                found.append({"call": str(i), "kind": "unknown_argument", "name": f"{call.name}.{key}"})
            elif type_error(value, props[key]):
                found.append({"call": str(i), "kind": "wrong_type", "name": f"{call.name}.{key}"})
    return found


def _count_args(verdict: Verdict, calls: list[ToolCall], expected: list[ExpectedCall]) -> None:
    """Argument counts for the SLM paper's P/R/F1.

    Predicted: every argument of every output call. Correct: an argument of a call matched
    to the expected function that raised no issue. True: for a matched call, its correct
    arguments plus the expected ones it got wrong or missed (so an optional argument
    rightly left out, or a default rightly given, costs nothing); for an expected call
    with no match, every argument it pins. A correct sample scores P = R = 1.
    """
    verdict.args_predicted = sum(len(c.arguments) for c in calls)
    matched = {m.expected: m for m in verdict.matches if m.name_ok}
    for i, e in enumerate(expected):
        m = matched.get(i)
        if m is None:
            verdict.args_true += sum(1 for k in e.arguments if k not in e.optional)
            continue
        call = calls[m.output]
        bad = {issue.argument for issue in m.issues}
        good = set(call.arguments) - bad
        verdict.args_correct += len(good)
        # the expected arguments it got wrong or missed count; invented ones do not
        verdict.args_true += len(good | (bad & set(e.arguments)))


def check_sample(sample: Sample, parsed: ParsedOutput, strict_strings: bool = False) -> Verdict:
    functions = sample.functions()
    calls, expected = parsed.calls, sample.expected_calls
    verdict = Verdict(
        id=sample.id, scenario=sample.scenario, correct=False, error_kind=None,
        expected_names=[e.name for e in expected], output_names=[c.name for c in calls],
        parse_error=parsed.error.to_dict() if parsed.error else None,
        hallucinations=hallucinations(calls, functions))

    if expected and calls:
        issues = [[check_call(e, c, functions.get(c.name), strict_strings) if e.name == c.name else None
                   for c in calls] for e in expected]
        cost = np.array([[_NAME_MISMATCH if iss is None else len(iss) for iss in row] for row in issues])
        rows, cols = linear_sum_assignment(cost)
        for r, c in zip(rows, cols):
            verdict.matches.append(CallMatch(expected=int(r), output=int(c),
                                             name_ok=issues[r][c] is not None, issues=issues[r][c] or []))
        verdict.missing_calls = sorted(set(range(len(expected))) - set(rows.tolist()))
        verdict.extra_calls = sorted(set(range(len(calls))) - set(cols.tolist()))
    _count_args(verdict, calls, expected)

    kinds = []
    if parsed.error:
        kinds.append("malformed_output")
    if not expected and calls:
        kinds.append("call_not_needed")
    if expected and not calls:
        kinds.append("no_call")
    if any(not m.name_ok for m in verdict.matches):
        kinds.append("wrong_function")
    if verdict.missing_calls:
        kinds.append("missing_call")
    if verdict.extra_calls:
        kinds.append("extra_call")
    kinds += [i.kind for m in verdict.matches for i in m.issues]
    verdict.error_kind = min(kinds, key=ERROR_KINDS.index) if kinds else None
    verdict.correct = verdict.error_kind is None
    return verdict
