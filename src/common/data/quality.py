"""The quality filter and the leakage check, run on every built dataset.

The filter (smol-tools' lesson: 4.6k filtered samples beat 5k dirty ones) drops a
sample whose expected call names a tool it does not offer, whose arguments are not
plain JSON or fail the tool's schema, whose request does not say a value the call
needs (only for written requests: real ones paraphrase), or that repeats another
request. Each drop is counted by reason, with an example.

The leakage check guards the external benchmark: no sample may carry a request or
a function of BFCL's non-live categories. It raises, failing the build, instead of
quietly dropping, because leakage means the inputs are wrong.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

from common.bfcl_data import normalize_request
from common.data.values import say_value
from common.errors import UserError
from common.samples import Sample, undeclared_arguments
from common.schemas import validate_arguments

WRITTEN_SOURCES = ("offline", "teacher")


class LeakageError(UserError, RuntimeError):
    pass


def request_text(sample: Sample) -> str:
    return "\n".join(m["content"] for m in sample.messages if m["role"] == "user")


def _said(value: Any, text: str) -> bool:
    if isinstance(value, bool):
        return True  # booleans are said as "enabled"/"disabled"
    if isinstance(value, dict):
        return all(_said(v, text) for v in value.values())
    if isinstance(value, list):
        return all(_said(v, text) for v in value)
    return say_value(value).lower() in text.lower()


def problem(sample: Sample) -> tuple[str, str] | None:
    """(reason, detail) when the sample should be dropped, else None."""
    functions = sample.functions()
    text = request_text(sample)
    if not text.strip():
        return "empty_request", sample.id
    if not sample.expected_calls and not (sample.reply or "").strip():
        return "no_call_without_reply", sample.id
    for call in sample.expected_calls:  # each names an offered tool (samples.Sample checks it)
        concrete = {k: v[0] for k, v in call.arguments.items()}
        try:
            if json.loads(json.dumps(concrete)) != concrete:
                return "malformed_json", f"{sample.id}: {call.name} arguments do not survive JSON"
        except (TypeError, ValueError) as err:
            return "malformed_json", f"{sample.id}: {err}"
        broken = validate_arguments(functions[call.name], concrete)
        if broken:
            return "args_fail_schema", f"{sample.id}: {call.name}.{broken}"
        # a BFCL-live answer may name an argument its function lacks (Sample lets the benchmark's
        # own data through, never a build's): JSON Schema allows extra keys, so check it here
        undeclared = undeclared_arguments(call, functions[call.name])
        if undeclared:
            return "args_fail_schema", f"{sample.id}: {call.name}.{undeclared[0]}: not a declared parameter"
        if sample.source.startswith(WRITTEN_SOURCES):
            unsaid = [k for k, v in concrete.items() if not _said(v, text)]
            if unsaid:
                return "value_not_in_request", f"{sample.id}: {call.name}.{unsaid[0]}"
    return None


def quality_filter(samples: Iterable[Sample], seen: set[str] | None = None
                   ) -> tuple[list[Sample], dict[str, Any]]:
    """(kept samples, report). `seen` holds normalised requests already used elsewhere
    (another split, another build) and is updated, so duplicates across them go too."""
    seen = set() if seen is None else seen
    kept, dropped, examples = [], Counter(), {}
    for s in samples:
        found = problem(s)
        if found is None:
            key = normalize_request(request_text(s))
            if key in seen:
                found = ("duplicate_request", s.id)
            seen.add(key)
        if found:
            dropped[found[0]] += 1
            examples.setdefault(found[0], found[1][:200])
            continue
        kept.append(s)
    return kept, {"kept": len(kept), "dropped": dict(dropped.most_common()), "examples": examples}


def leakage(samples: Iterable[Sample], requests: frozenset[str], functions: frozenset[str]) -> dict[str, Any]:
    """Samples that carry a benchmark request or offer a benchmark function."""
    same_request, benchmark_tools = [], Counter()
    for s in samples:
        if normalize_request(request_text(s)) in requests:
            same_request.append(s.id)
        for name in s.functions():
            if name in functions:
                benchmark_tools[name] += 1
    return {"same_request": same_request, "benchmark_functions": dict(benchmark_tools)}


def check_leakage(samples: list[Sample], requests: frozenset[str], functions: frozenset[str]) -> dict[str, Any]:
    """The leakage report, or a LeakageError that names what leaked and how to fix it."""
    found = leakage(samples, requests, functions)
    if found["same_request"] or found["benchmark_functions"]:
        raise LeakageError(
            f"the dataset contains the external benchmark (BFCL non-live categories): "
            f"{len(found['same_request'])} samples repeat a benchmark request "
            f"(e.g. {found['same_request'][:3]}) and {len(found['benchmark_functions'])} benchmark functions "
            f"are offered (e.g. {sorted(found['benchmark_functions'])[:5]}). Remove them from your tool "
            f"files or requests (the BFCL catalog already leaves them out); training on the benchmark "
            f"would make its scores meaningless.")
    return {"checked": len(samples), "same_request": 0, "benchmark_functions": 0}
