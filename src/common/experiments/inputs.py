"""What a notebook reads from disk, checked in its setup cell: made there when that takes seconds,
else named, in one line, with the command that makes it.

A fresh clone holds the committed reports (results, summaries, training histories, archives of
some runs' predictions) but no data builds (`data/`), no weights (`runs/`) and no per-sample
verdicts. `prepare` runs in every notebook's setup cell (`steps.notebook_params`), before anything
is trained, generated or written:
- a data build the notebook reads but does not build itself is built from the file in `params/`
  that makes it (its header's `python -m common.data build ...`; `data/offline-default` takes
  ~40 s on 2 cores), after the builds it keeps its samples apart from;
- an evaluation it compares gets its verdicts judged again from its committed predictions
  (`predictions.jsonl.gz`) into the ignored `verdicts.jsonl`; its committed results stay as they are;
- an adapter, a training history, a BFCL folder or an evaluation without its predictions that is
  not here stops the notebook, naming what makes it (`made_by`), before it writes anything.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

from common.data.build import DataParams, build
from common.errors import UserError
from common.evaluation.params import EvalParams
from common.evaluation.runner import judged
from common.experiments.notebooks import NOTEBOOKS, OVERRIDES, RUN_NAMES, declared_parameters
from common.jsonio import exclusive, read_json, unpacked, write_jsonl
from common.params import load_params
from common.provenance import ROOT, local_path, shown
from common.sources import build_name

DATA_PREFIX = "data/"
# the build command each params/data*.yaml gives in its header (tested for every such file)
BUILD_COMMAND = re.compile(r"^# python -m common\.data build ((?:params/\S+\.yaml ?)+)", re.M)


# -- data builds ---------------------------------------------------------------------------
@cache
def data_recipes() -> dict[str, list[str]]:
    """{build name: the parameter files that build data/<name>}, from each params/data*.yaml's header."""
    recipes: dict[str, list[str]] = {}
    for path in sorted((ROOT / "params").glob("data*.yaml")):
        found = BUILD_COMMAND.search(path.read_text(encoding="utf-8"))
        if found:
            files = found.group(1).split()
            recipes.setdefault(load_params(DataParams, [ROOT / f for f in files]).name, files)
    return recipes


def sources_of(params: DataParams) -> list[str]:
    """The builds a build keeps its samples apart from (`live_exclude_eval_of`) or takes its eval split from."""
    return [*params.live_exclude_eval_of, *([params.eval_from] if params.eval_from else [])]


def ensure_data(spec: str, built_here: frozenset[str] = frozenset()) -> None:
    """Build `data/<name>` from its parameter files when it is missing (and the builds it keeps
    its samples apart from, first); a build of another name, or one no params file makes, is one line."""
    name = build_name(spec)
    if name is None or name in built_here or (local_path(DATA_PREFIX + name) / "data_card.json").is_file():
        return
    files = data_recipes().get(name)
    if files is None:
        maker = _headline_builds().get(name)
        raise UserError(f"{DATA_PREFIX}{name} is not built here and no params/data*.yaml builds it; " + (
            f"`{maker}` builds it (its data stage, first)" if maker else
            "build it with `python -m common.data build <its parameter files>`, or point the notebook at a build"))
    params = load_params(DataParams, [ROOT / f for f in files])
    for other in sources_of(params):
        ensure_data(other, built_here)
    print(f"{DATA_PREFIX}{name} is not built here: building it (python -m common.data build {' '.join(files)})",
          flush=True)
    build(params)


# -- what makes a report or a run ------------------------------------------------------------
def recorded(path: str | Path) -> str:
    """A path as the project records it: relative to the project root as given, else `shown`."""
    return Path(path).as_posix() if not Path(path).is_absolute() else shown(path)


def made_by(path: str | Path) -> str:
    """What writes `path`, a folder or file under reports/ or runs/: the command, or the notebook and run."""
    parts = Path(recorded(path)).parts
    if len(parts) < 2 or parts[0] not in {"reports", "runs"}:
        return "the run that wrote it makes it"
    rel = "/".join(parts[1:]) + "/"
    for command, h in _headline_commands():
        if parts[0] == "runs" and parts[1] == h.experiment and list(parts[2:3]) in ([h.recipe], []):
            return f"`{command}` makes it"
        if parts[0] == "reports" and rel.startswith(h.report + "/"):
            mine = [(c, o) for c, o in _headline_commands() if o.report == h.report]
            sub = rel[len(h.report) + 1:].split("/")[0]
            if sub == "untrained":
                return f"`{mine[-1][0]} --set fine_tuned=false` makes it"
            return f"`{next((c for c, o in mine if o.recipe == sub), mine[-1][0])}` makes it"
    for command, experiment in _quickstart_commands():
        if parts[1] == experiment:
            return f"`{command}` makes it"
    for notebook, experiment in _notebook_experiments():
        if parts[1] == experiment:  # (01, 03 and 05 add a suffix to their run for each model they train)
            named = len(parts) > 2 and notebook in RUN_NAMES
            return f"notebook {notebook}" + (f" with run={parts[2]!r}" if named else "") + " makes it"
    return "the run that wrote it makes it"


@cache
def _headline_commands() -> list[tuple[str, Any]]:
    """(command, its HeadlineParams) of every headline recipe in params/, each report's own recipe
    (the fewest files) last."""
    from common.experiments.headline import HeadlineParams  # (it imports the steps, which import this)
    base = "params/headline.yaml"
    out = []
    for path in [None, *sorted((ROOT / "params").glob("headline_*.yaml")),
                 *sorted((ROOT / "params" / "headline").glob("*.yaml"))]:
        files = [base] + ([path.relative_to(ROOT).as_posix()] if path else [])
        out.append((f"python -m common.experiments.headline {' '.join(files)}",
                    load_params(HeadlineParams, [ROOT / f for f in files])))
    return sorted(out, key=lambda c: -len(c[0].split()))


@cache
def _headline_builds() -> dict[str, str]:
    """{build name: the headline command whose recipe builds it} (an ablation's `data_set` makes its own)."""
    out: dict[str, str] = {}
    for command, h in reversed(_headline_commands()):
        out.setdefault(load_params(DataParams, [ROOT / f for f in h.data_params], h.data_set).name, command)
    return out


@cache
def _quickstart_commands() -> list[tuple[str, str]]:
    from common.experiments.quickstart import QuickstartParams  # (as above)
    base = "params/quickstart.yaml"
    out = [("make quickstart", load_params(QuickstartParams, [ROOT / base]).experiment)]
    for path in sorted((ROOT / "params").glob("quickstart_*.yaml")):
        files = [base, path.relative_to(ROOT).as_posix()]
        out.append((f"python -m common.quickstart {' '.join(files)}",
                    load_params(QuickstartParams, [ROOT / f for f in files]).experiment))
    return out


def _notebook_experiments() -> list[tuple[str, str]]:
    return [(p.stem, declared_parameters(p.stem).get("experiment"))
            for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))]


# -- evaluations, adapters, files ------------------------------------------------------------
def check_evaluation(folder: str | Path) -> Path:
    """An evaluation folder with its results and its answers (verdicts, or predictions to judge them
    from), checked before anything is built or judged. Returns the folder on this machine."""
    folder = local_path(folder)
    if not (folder / "results.json").is_file():
        raise UserError(f"{shown(folder)} holds no evaluation (no results.json); {made_by(folder)}")
    if not any((folder / name).is_file() for name in ("verdicts.jsonl", "predictions.jsonl", "predictions.jsonl.gz")):
        raise UserError(f"{shown(folder)} has its results but not its answers (no predictions.jsonl, nor the "
                        f"committed predictions.jsonl.gz) to compare sample by sample; {made_by(folder)}")
    return folder


def ensure_verdicts(folder: str | Path) -> Path:
    """An evaluation folder ready to compare: its verdicts judged again from its (committed)
    predictions when they are not here or are older than those predictions (a pull brought new ones;
    a restored copy older than its archive is replaced first). Its results.json is left as it is."""
    folder = check_evaluation(folder)
    verdicts, plain = folder / "verdicts.jsonl", folder / "predictions.jsonl"
    packed = plain.with_name(plain.name + ".gz")
    if plain.is_file() and packed.is_file() and packed.stat().st_mtime > plain.stat().st_mtime \
            and unpacked(packed) != plain.read_bytes():
        plain.unlink()  # the committed answers changed since this copy was restored from them
    # judged from the plain copy when there is one: an archive written after scoring, of the same
    # answers (the headline archives each finished evaluation), leaves its verdicts standing
    answers = plain if plain.is_file() else packed
    if verdicts.is_file() and (not answers.is_file() or verdicts.stat().st_mtime >= answers.stat().st_mtime):
        return folder
    data = (read_json(folder / "run.json", "run record").get("params") or {}).get("data") \
        if (folder / "run.json").is_file() else None
    if data is None:
        raise UserError(f"{shown(folder)}/run.json does not say which data it evaluated; {made_by(folder)}")
    ensure_data(data)
    with exclusive(folder):
        write_jsonl(verdicts, judged(folder)[-1])  # ignored by git; results.json untouched
    return folder


def require(path: str | Path, what: str) -> None:
    """One line naming what makes `path` when it is not here."""
    if not local_path(path).exists():
        raise UserError(f"{what} {recorded(path)} is not here; {made_by(path)}")


# -- a notebook's inputs -------------------------------------------------------------------
def data_specs(params: dict[str, Any]) -> list[str]:
    """Every data spec the stages of a notebook's parameters read (training and its dev split, evaluation)."""
    specs = [params["data"]] if isinstance(params.get("data"), str) else []  # 02's samples
    for key, cls in OVERRIDES.items():
        files_key = "eval_params" if cls is EvalParams else key.removesuffix("_set") + "_params"
        if key not in params or files_key not in params:  # (data builds and BFCL read no data spec)
            continue
        stage = load_params(cls, [ROOT / f for f in params[files_key]], params[key])
        specs += [v for v in (getattr(stage, "data", None), getattr(stage, "eval_data", None)) if isinstance(v, str)]
    return list(dict.fromkeys(specs))


def notebook_builds(params: dict[str, Any]) -> list[DataParams]:
    """The builds a notebook makes itself (00's `data_set`, 03's generic data)."""
    return [load_params(DataParams, [ROOT / f for f in params[f"{key}_params"]], params.get(f"{key}_set") or {})
            for key in ("data", "generic_data") if params.get(f"{key}_params")]


def prepare(params: dict[str, Any]) -> None:
    """What a notebook with `params` reads, there before it runs: what only a long run makes is
    checked first (one line naming it, before anything is built or written), then the data built and
    the verdicts judged again. (08 says itself which held-out results it shows and which are missing.)"""
    evals = [check_evaluation(folder) for folder in (params.get("evals") or {}).values()]
    for path in (params.get("histories") or {}).values():
        require(path, "the training history")
    for folder in (params.get("bfcl") or {}).values() if isinstance(params.get("bfcl"), dict) else ():
        require(Path(folder) / "results.json", "the BFCL results")
    for spec in (params.get("models") or {}).values():
        if spec.get("adapter"):
            require(spec["adapter"], "the adapter")
    own = notebook_builds(params)
    built_here = frozenset(b.name for b in own)
    for spec in [*data_specs(params), *(source for b in own for source in sources_of(b))]:
        ensure_data(spec, built_here)
    for folder in evals:
        ensure_verdicts(folder)
