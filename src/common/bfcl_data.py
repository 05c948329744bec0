"""The BFCL v4 data files inside the `bfcl-eval` wheel, read without importing it.

`bfcl-eval` pins numpy 1.26, tree_sitter 0.21 and every API SDK, which clash with
the project; `make install` installs it with `--no-deps` and this module only reads
its JSON lines (`importlib.util.find_spec` locates the package without running it).

Two uses: the live categories are a source of real tool schemas and real user
requests for training; the non-live categories are the external benchmark, which
`benchmark_fingerprint` describes so that the data builder can refuse to train on it.
"""

from __future__ import annotations

import importlib.util
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from common.samples import ExpectedCall, Sample
from common.schemas import SchemaProblem, normalize_function

# The external benchmark: never in training data.
BENCHMARK_CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance")
LIVE_CATEGORIES = ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple",
                   "live_irrelevance", "live_relevance")
VERSION = "BFCL_v4"


class BFCLNotInstalled(RuntimeError):
    pass


@lru_cache(maxsize=1)
def data_dir() -> Path:
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        raise BFCLNotInstalled(
            "the BFCL data is read from the `bfcl-eval` wheel, which is not installed; run "
            "`make install` or `pip install --no-deps bfcl-eval==2026.3.23` (without its "
            "dependencies, which clash with the project's)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data"
    if not (path / f"{VERSION}_simple_python.json").is_file():
        raise BFCLNotInstalled(f"no {VERSION} data in {path}; install bfcl-eval==2026.3.23")
    return path


def _read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@lru_cache(maxsize=32)
def read_category(category: str) -> tuple[dict[str, Any], ...]:
    """The entries of one category, each with its `ground_truth` when BFCL has one."""
    path = data_dir() / f"{VERSION}_{category}.json"
    if not path.is_file():
        known = sorted(p.stem.removeprefix(f"{VERSION}_") for p in data_dir().glob(f"{VERSION}_*.json"))
        raise ValueError(f"no BFCL category {category!r}; categories: {known}")
    entries = _read_lines(path)
    answers_path = data_dir() / "possible_answer" / path.name
    if answers_path.is_file():
        answers = {a["id"]: a["ground_truth"] for a in _read_lines(answers_path)}
        for e in entries:
            e["ground_truth"] = answers.get(e["id"])
    return tuple(entries)


def multi_turn_toolkits() -> dict[str, list[dict[str, Any]]]:
    """The multi-turn categories' API docs: one file per app (file system, trading bot…)."""
    out = {}
    for path in sorted((data_dir() / "multi_turn_func_doc").glob("*.json")):
        out[path.stem] = _read_lines(path)
    return out


def normalize_request(text: str) -> str:
    """A request reduced to lower-case words, to compare requests across sources."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def user_text(entry: dict[str, Any]) -> str:
    """The user turns of a single-turn entry, joined."""
    turns = entry["question"][0] if entry["question"] else []
    return "\n".join(m["content"] for m in turns if m.get("role") == "user")


@lru_cache(maxsize=1)
def benchmark_fingerprint() -> tuple[frozenset[str], frozenset[str]]:
    """(normalised requests, function names) of the non-live benchmark categories."""
    requests, names = set(), set()
    for category in BENCHMARK_CATEGORIES:
        for entry in read_category(category):
            requests.add(normalize_request(user_text(entry)))
            names.update(f["name"] for f in entry["function"])
    requests.discard("")
    return frozenset(requests), frozenset(names)


def _first_value(alternatives: Any) -> Any:
    """A concrete value from BFCL alternatives (nested dicts hold alternatives too)."""
    if isinstance(alternatives, list):
        for a in alternatives:
            if a != "":
                return _concrete(a)
        return None
    return _concrete(alternatives)


def _concrete(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _first_value(v) for k, v in value.items() if _first_value(v) is not None}
    return value


def expected_calls(ground_truth: list[dict[str, Any]] | None) -> list[ExpectedCall]:
    """BFCL's possible answers as expected calls.

    BFCL lists acceptable values per argument and marks "may be left out" with "".
    Nested dict values hold alternatives per key; they become one concrete dict (the
    first alternative of each key), which is stricter than BFCL on those few cases.
    """
    calls = []
    for item in ground_truth or []:
        (name, args), = item.items()
        arguments, optional = {}, []
        for key, alternatives in args.items():
            alternatives = alternatives if isinstance(alternatives, list) else [alternatives]
            values = [_concrete(a) for a in alternatives if a != ""]
            if "" in alternatives or not values:
                optional.append(key)
            if values:
                arguments[key] = values
        calls.append(ExpectedCall(name=name, arguments=arguments, optional=optional))
    return calls


def entry_to_sample(entry: dict[str, Any], category: str) -> Sample:
    """One single-turn BFCL entry as a sample (tools as given, the turns as messages)."""
    calls = expected_calls(entry.get("ground_truth"))
    scenario = {"irrelevance": "no_tool", "live_irrelevance": "no_tool"}.get(
        category, "parallel" if len(calls) > 1 else "single")
    tools = []
    for function in entry["function"]:
        try:
            tools.append(normalize_function(function)[0])
        except SchemaProblem:  # keep BFCL's own form rather than lose the case
            tools.append(function)
    return Sample(id=entry["id"], tools=tools, messages=entry["question"][0],
                  expected_calls=calls, scenario=scenario, source=f"bfcl:{category}")
