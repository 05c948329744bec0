"""The tool catalog: tool schemas grouped into toolkits, from BFCL, Composio or JSONL.

A toolkit is an app or service whose tools belong together (a file system, a
ride-hailing app, a monitoring API). Kinetic-4B drew every prompt's distractors from
the correct tool's own toolkit, so grouping matters:

- BFCL-live functions are grouped by namespace (`EventSettingsApi.get_…`,
  `Flights_4_SearchOnewayFlight`) when a namespace has at least three tools, and
  otherwise by the entries they appear in together (connected components);
  each multi-turn API doc (`gorilla_file_system`, `trading_bot`…) is one toolkit.
  Functions of the external benchmark (BFCL's non-live categories) are left out.
- A JSONL file holds one OpenAI tool per line; its toolkit is the line's `toolkit`
  key or the file's name (Composio's fetch writes one file per toolkit).

Every schema is normalised to JSON Schema and validated; the report counts what was
fixed and what was dropped, and why.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from common import bfcl_data
from common.jsonio import json_lines
from common.schemas import SchemaProblem, normalize_function

SGD_NAME = re.compile(r"^([A-Z][A-Za-z]+)_\d+_[A-Z]")
MIN_NAMESPACE = 3
# Words too common in function names to name a toolkit by.
GENERIC_WORDS = frozenset(["get", "set", "list", "create", "add", "update", "delete", "del", "remove", "search", "find", "send", "generate", "by", "to", "of", "and", "the", "for", "in", "on", "from", "with", "all", "info", "detail", "details", "data", "api", "tools", "tool", "function", "default", "my", "new", "do", "run", "check"])
TOOLKIT_INTRO = re.compile(r"^This tool belongs to the (.+?)(?:, which (.+?))?\.\s*Tool description:\s*", re.DOTALL)


@dataclass
class Toolkit:
    name: str
    functions: list[dict[str, Any]]
    source: str
    description: str = ""

    def names(self) -> list[str]:
        return [f["name"] for f in self.functions]

    def text(self) -> str:
        """Words that say what the toolkit does (for finding its nearest neighbours)."""
        words = [self.name, self.description]
        for f in self.functions:
            words += [split_name(f["name"]), f.get("description", "")]
        return " ".join(words)


@dataclass
class Catalog:
    toolkits: dict[str, Toolkit]
    report: dict[str, Any] = field(default_factory=dict)

    def function(self, name: str) -> dict[str, Any]:
        return self._index()[name][1]

    def toolkit_of(self, name: str) -> str | None:
        hit = self._index().get(name)
        return hit[0] if hit else None

    def _index(self) -> dict[str, tuple[str, dict[str, Any]]]:
        if not hasattr(self, "_by_name"):
            self._by_name = {f["name"]: (t.name, f) for t in self.toolkits.values() for f in t.functions}
        return self._by_name

    def select(self, top: int | None = None, names: list[str] | None = None, min_tools: int = 1) -> Catalog:
        """The given toolkits, or the `top` largest with at least `min_tools` tools."""
        if names:
            unknown = [n for n in names if n not in self.toolkits]
            if unknown:
                raise ValueError(f"unknown toolkits {unknown}; the catalog has: {sorted(self.toolkits)}")
            chosen = list(names)
        else:
            ranked = sorted((t for t in self.toolkits.values() if len(t.functions) >= min_tools),
                            key=lambda t: (-len(t.functions), t.name))
            chosen = [t.name for t in ranked[:top] if top] if top else [t.name for t in ranked]
        if not chosen:
            raise ValueError(f"no toolkit has at least {min_tools} tools; lower `min_toolkit_tools`")
        return Catalog({n: self.toolkits[n] for n in chosen}, dict(self.report, selected=chosen))

    def without(self, names: Iterable[str]) -> Catalog:
        """A copy without the named functions (held-out tools); empty toolkits go."""
        drop = set(names)
        kits = {}
        for t in self.toolkits.values():
            kept = [f for f in t.functions if f["name"] not in drop]
            if kept:
                kits[t.name] = Toolkit(t.name, kept, t.source, t.description)
        return Catalog(kits, self.report)

    def nearest(self) -> dict[str, list[str]]:
        """Each toolkit's other toolkits, most similar first (TF-IDF cosine over names
        and descriptions), for topping up a toolkit too small for a prompt."""
        names = sorted(self.toolkits)
        if len(names) < 2:
            return {n: [] for n in names}
        matrix = TfidfVectorizer(stop_words="english").fit_transform([self.toolkits[n].text() for n in names])
        sim = (matrix @ matrix.T).toarray()
        np.fill_diagonal(sim, -1.0)
        return {n: [names[j] for j in np.lexsort((np.arange(len(names)), -sim[i]))[:-1]]
                for i, n in enumerate(names)}


def split_name(name: str) -> str:
    """`get_currentWeather.v2` -> `get current weather v2`."""
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return " ".join(w.lower() for w in re.split(r"[^A-Za-z0-9]+", name) if w)


def namespace(name: str) -> str | None:
    """The app a function name declares: `Flights_4_Search…` -> Flights,
    `vex_api.VexApi.upload` -> VexApi, `ChaDri.change_drink` -> ChaDri."""
    m = SGD_NAME.match(name)
    if m:
        return m.group(1)
    parts = name.split(".")
    if len(parts) > 1:
        apis = [p for p in parts[:-1] if p.lower().endswith("api") and p[0].isupper()]
        return apis[0] if apis else parts[0]
    return None


class _Builder:
    """Collects functions, normalises them, and keeps the report."""

    def __init__(self, exclude: frozenset[str] = frozenset()):
        self.exclude = exclude
        self.variants: dict[str, Counter] = defaultdict(Counter)
        self.order: dict[str, int] = {}
        self.report: dict[str, Any] = {"functions_read": 0, "fixes": Counter(), "invalid": Counter(),
                                       "invalid_examples": {}, "benchmark_excluded": set()}

    def add(self, function: dict[str, Any]) -> dict[str, Any] | None:
        self.report["functions_read"] += 1
        if function.get("name") in self.exclude:
            self.report["benchmark_excluded"].add(function["name"])
            return None
        try:
            normal, fixes = normalize_function(function)
        except SchemaProblem as err:
            self.report["invalid"][err.reason] += 1
            self.report["invalid_examples"].setdefault(err.reason, str(err)[:200])
            return None
        self.report["fixes"].update(set(fixes))
        key = json.dumps(normal, sort_keys=True)
        self.variants[normal["name"]][key] += 1
        self.order.setdefault(key, len(self.order))
        return normal

    def chosen(self, name: str) -> dict[str, Any]:
        """The variant of a function seen most often (BFCL repeats functions with edits)."""
        counts = self.variants[name]
        return json.loads(min(counts, key=lambda k: (-counts[k], self.order[k])))

    def finish(self, toolkits: dict[str, Toolkit]) -> Catalog:
        r = self.report
        r["fixes"] = dict(r["fixes"].most_common())
        r["invalid"] = dict(r["invalid"].most_common())
        r["benchmark_excluded"] = sorted(r["benchmark_excluded"])
        r["functions_unique"] = sum(len(t.functions) for t in toolkits.values())
        r["functions_with_variants"] = sum(len(v) > 1 for v in self.variants.values())
        r["toolkits"] = {t.name: len(t.functions) for t in sorted(toolkits.values(), key=lambda t: -len(t.functions))}
        return Catalog(toolkits, r)


class DisjointSets:
    """Union-find over names (path halving): functions offered together, toolkits offered together."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        """The representative of x's set (x joins as its own set when new)."""
        while self.parent.setdefault(x, x) != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, x: str, y: str) -> None:
        """Join x's set to y's: y's representative stays."""
        self.parent[self.find(x)] = self.find(y)


@lru_cache(maxsize=2)
def from_bfcl(exclude_benchmark: bool = True) -> Catalog:
    """Toolkits from BFCL-live functions and the multi-turn API docs (cached per
    process: it reads and normalises ~6,800 functions; callers never mutate it)."""
    exclude = bfcl_data.benchmark_fingerprint()[1] if exclude_benchmark else frozenset()
    b = _Builder(exclude)
    sets = DisjointSets()
    for category in bfcl_data.LIVE_CATEGORIES:
        for entry in bfcl_data.read_category(category):
            names = [f["name"] for f in entry["function"] if b.add(f)]
            for n in names:
                sets.find(n)
            for n in names[1:]:
                sets.union(n, names[0])
    parent, find = sets.parent, sets.find
    ns = {n: namespace(n) for n in parent}
    ns_size = Counter(v for v in ns.values() if v)
    groups: dict[str, list[str]] = defaultdict(list)
    for n in sorted(parent):
        key = ns[n] if ns[n] and ns_size[ns[n]] >= MIN_NAMESPACE else f"component:{find(n)}"
        groups[key].append(n)
    toolkits = {}
    for key, names in groups.items():
        if key.startswith("component:"):
            words = Counter(w for n in names for w in set(split_name(n).split()) if w not in GENERIC_WORDS
                            and not w.isdigit())
            key = f"{min(words, key=lambda w: (-words[w], w)) if words else split_name(names[0])}_tools"
        base, i = key, 2
        while key in toolkits:
            key, i = f"{base}_{i}", i + 1
        toolkits[key] = Toolkit(key, [b.chosen(n) for n in names], "bfcl_live")
    for app, functions in bfcl_data.multi_turn_toolkits().items():
        kept, description = [], ""
        for f in functions:
            f = {k: v for k, v in f.items() if k != "response"}
            intro = TOOLKIT_INTRO.match(f.get("description", ""))
            if intro:  # every tool repeats the app's description; keep it once
                description = intro.group(0).removeprefix("This tool belongs to the ").split(". Tool")[0]
                f["description"] = f["description"][intro.end():]
            if b.add(f):
                kept.append(b.chosen(f["name"]))
        if kept:
            toolkits[app] = Toolkit(app, kept, "bfcl_multi_turn", description)
    return b.finish(toolkits)


def from_jsonl(paths: Iterable[str | Path], exclude: frozenset[str] = frozenset()) -> Catalog:
    """Toolkits from JSONL files of OpenAI tools (`toolkit` key, else the file name)."""
    b = _Builder(exclude)
    members: dict[str, list[str]] = defaultdict(list)
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no tool schema file at {path}")
        for _, row in json_lines(path, "one OpenAI tool"):
            function = row.get("function", row)
            normal = b.add(function)
            if normal and normal["name"] not in members[row.get("toolkit") or path.stem]:
                members[row.get("toolkit") or path.stem].append(normal["name"])
    toolkits = {k: Toolkit(k, [b.chosen(n) for n in v], "jsonl") for k, v in members.items()}
    return b.finish(toolkits)


def merge(*catalogs: Catalog) -> Catalog:
    """One catalog from several; a toolkit name or function name seen twice keeps the first."""
    toolkits: dict[str, Toolkit] = {}
    seen: set[str] = set()
    reports = []
    for c in catalogs:
        reports.append(c.report)
        for t in c.toolkits.values():
            functions = [f for f in t.functions if f["name"] not in seen]
            seen.update(f["name"] for f in functions)
            if functions and t.name not in toolkits:
                toolkits[t.name] = Toolkit(t.name, functions, t.source, t.description)
    if len(catalogs) == 1:
        return Catalog(toolkits, catalogs[0].report)
    return Catalog(toolkits, {"sources": reports,
                              "toolkits": {t.name: len(t.functions) for t in toolkits.values()}})
