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
import itertools
import json
import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from common.errors import UserError
from common.samples import ExpectedCall, Sample
from common.schemas import SchemaProblem, normalize_function

# The external benchmark: never in training data.
BENCHMARK_CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance")
LIVE_CATEGORIES = ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple",
                   "live_irrelevance", "live_relevance")
# live_relevance is left out of scoring: its entries have no answer, and BFCL counts any call
# as right, which the project's checker (an expected call, or none) cannot express.
SCORED_CATEGORIES = BENCHMARK_CATEGORIES + tuple(c for c in LIVE_CATEGORIES if c != "live_relevance")
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


_ABSENT = object()  # a dict key that an alternative leaves out
MAX_ALTERNATIVES = 4096  # concrete values per argument; no BFCL v4 answer comes near


def concrete_values(value: Any) -> list[Any]:
    """Every concrete value that a BFCL answer value stands for, first alternative first.

    In a possible answer, a dict value maps each key to its alternatives ("" meaning the
    key may be left out), and a list value holds items (a list of dicts holds dicts of
    alternatives, as in `[{"field": ["age"], "value": ["25"]}]`). BFCL's `dict_checker`
    and `list_dict_checker` accept any combination; so does this list, which is their
    product; more than MAX_ALTERNATIVES is refused rather than cut (which would make the
    project stricter than BFCL without a word).
    """
    if isinstance(value, dict):
        per_key = []
        for key, alternatives in value.items():
            alternatives = alternatives if isinstance(alternatives, list) else [alternatives]
            options = [c for a in alternatives if a != "" for c in concrete_values(a)]
            if "" in alternatives or not options:
                options.append(_ABSENT)
            per_key.append([(key, o) for o in options])
        _check_size([len(options) for options in per_key])
        return [{k: v for k, v in combo if v is not _ABSENT} for combo in itertools.product(*per_key)]
    if isinstance(value, list):
        items = [concrete_values(v) for v in value]
        _check_size([len(i) for i in items])
        return [list(c) for c in itertools.product(*items)]
    return [value]


def _check_size(choices: list[int]) -> None:
    if math.prod(choices) > MAX_ALTERNATIVES:
        raise ValueError(f"a BFCL answer's nested alternatives make {math.prod(choices):,} concrete values "
                         f"(over {MAX_ALTERNATIVES:,}); raise bfcl_data.MAX_ALTERNATIVES to score it")


def expected_calls(ground_truth: list[dict[str, Any]] | None) -> list[ExpectedCall]:
    """BFCL's possible answers as expected calls.

    BFCL lists acceptable values per argument and marks "may be left out" with "" (alone:
    "must be left out").
    Nested values (dicts, lists of dicts) hold alternatives per key too; each becomes
    the concrete values it allows (`concrete_values`), so the project's checker accepts
    what BFCL's accepts.
    """
    calls = []
    for item in ground_truth or []:
        (name, args), = item.items()
        arguments, optional = {}, []
        for key, alternatives in args.items():
            alternatives = alternatives if isinstance(alternatives, list) else [alternatives]
            values = _unique([c for a in alternatives if a != "" for c in concrete_values(a)])
            if values:
                arguments[key] = values
                if "" in alternatives:
                    optional.append(key)
            # an answer of "" alone means "leave it out": the key is neither pinned nor
            # optional (which would allow any value), so giving it a value is an extra argument
        calls.append(ExpectedCall(name=name, arguments=arguments, optional=optional))
    return calls


def _unique(values: list[Any]) -> list[Any]:
    seen, out = set(), []
    for v in values:
        key = json.dumps(v, sort_keys=True, default=repr)
        if key not in seen:
            seen.add(key)
            out.append(v)
    return out


# BFCL appends this to every Python function's description before prompting any model
# (`bfcl_eval.utils._func_doc_language_specific_pre_processing`); the benchmark adds it
# too, so that a score here is a score on the prompts the leaderboard shows.
PYTHON_HINT = " Note that the provided function is in Python 3 syntax."


def entry_to_sample(entry: dict[str, Any], category: str, hint: str = "") -> Sample:
    """One single-turn BFCL entry as a sample (tools as given, the turns as messages);
    `hint` is appended to each function's description."""
    calls = expected_calls(entry.get("ground_truth"))
    scenario = {"irrelevance": "no_tool", "live_irrelevance": "no_tool"}.get(
        category, "parallel" if len(calls) > 1 else "single")
    tools = []
    for function in entry["function"]:
        function = {**function, "description": str(function.get("description") or "") + hint}
        try:
            tools.append(normalize_function(function)[0])
        except SchemaProblem:  # keep BFCL's own form rather than lose the case
            tools.append(function)
    # validated as a benchmark entry: BFCL's own form is kept where it is not valid JSON Schema,
    # and its answer key as it is (samples.Sample)
    return Sample.model_validate({"id": entry["id"], "tools": tools, "messages": entry["question"][0],
                                  "expected_calls": calls, "scenario": scenario, "source": f"bfcl:{category}"},
                                 context={"benchmark": True})


def category_samples(category: str) -> list[Sample]:
    """A benchmark category as evaluation samples, prompted as BFCL prompts them."""
    if category not in SCORED_CATEGORIES:
        raise UserError(f"BFCL category {category!r} is not a single-turn AST category this project "
                        f"scores; choose from {', '.join(SCORED_CATEGORIES)}")
    return [entry_to_sample(e, category, hint=PYTHON_HINT) for e in read_category(category)]
