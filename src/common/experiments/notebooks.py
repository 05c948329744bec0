"""Running the numbered notebooks headlessly: their declared parameters, checked, then papermill.

A notebook declares its parameters in the cell tagged `parameters` (literals only). Some
are override dicts of a command-line stage, checked against that stage's parameters too;
which class each feeds is the table `OVERRIDES` (and `OVERRIDES_BY_NAME` for dicts of
named override dicts, such as 05's DPO variants). A key the notebook does not declare
fails before anything runs, with the closest valid name (papermill itself would only
warn and inject it).
"""

from __future__ import annotations

import ast
import difflib
import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import papermill
from pydantic import BaseModel

from common.bfcl.params import BFCLParams
from common.data.build import DataParams
from common.evaluation.params import EvalParams
from common.params import ParamsError, check_keys, load_params
from common.provenance import ROOT
from common.secrets import refuse_keys
from common.sources import build_name
from common.training.params import DPOParams, SFTParams

NOTEBOOKS = ROOT / "notebooks"


# Which parameter class each notebook override dict feeds (the notebooks' `parameters` cells).
OVERRIDES: dict[str, type[BaseModel]] = {
    "data_set": DataParams, "generic_data_set": DataParams,
    "sft_set": SFTParams, "lora_sft_set": SFTParams, "full_sft_set": SFTParams,
    "dpo_set": DPOParams,
    "eval_set": EvalParams, "router_eval_set": EvalParams, "caller_eval_set": EvalParams,
    "bfcl_set": BFCLParams,
}
# Dicts of {name: override dict}: 05's DPO variants, 08's models.
OVERRIDES_BY_NAME: dict[str, type[BaseModel]] = {"variants": DPOParams, "models": BFCLParams}


# How a sweep notebook names a run left unnamed (`run = None`): from its training parameters as
# resolved, so that a run with other settings never lands in another's folder (or is refused there).
def _modules(spec: str | list[str]) -> str:
    return spec if isinstance(spec, str) else "+".join(spec)


def _build(data: str) -> str:
    name = build_name(data) or data.partition(":")[0].removeprefix("data/").replace("/", "_")  # (a samples file)
    return "" if name == "offline-default" else f"-{name}"


RUN_NAMES: dict[str, Callable[[SFTParams], str]] = {
    "04_lora_ablation": lambda t: f"r{t.lora_r}-{_modules(t.target_modules)}",
    "06_data_scale": lambda t: f"n{t.limit or 'all'}-e{t.epochs:g}{_build(t.data)}",
}


def run_name(notebook: str, params: dict[str, Any]) -> str:
    """The run name of a notebook whose `run` is None, from its `sft_params` + `sft_set` (`RUN_NAMES`)."""
    if notebook not in RUN_NAMES:
        raise ParamsError(f"notebook {notebook} needs a run name: set `run` in its parameters")
    return RUN_NAMES[notebook](load_params(SFTParams, [ROOT / f for f in params["sft_params"]], params["sft_set"]))


def stage_class(name: str) -> type[BaseModel] | None:
    """The parameter model an override dict named `name` is checked against, if any."""
    return OVERRIDES.get(name)


def notebook_path(name: str | Path) -> Path:
    """`04_lora_ablation`, `notebooks/04_lora_ablation.ipynb` or a path, as the notebook's path."""
    p = Path(name)
    for cand in (p, ROOT / p, NOTEBOOKS / p, NOTEBOOKS / f"{p}.ipynb"):
        if cand.suffix == ".ipynb" and cand.is_file():
            return cand.resolve()
    known = sorted(q.stem for q in NOTEBOOKS.glob("*.ipynb"))
    raise FileNotFoundError(f"no notebook {name!r}; the notebooks are: {known}")


@cache
def _declared(path: str, mtime: float) -> dict[str, Any]:
    def value(text: str) -> Any:  # papermill gives each default as its source text
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    return {k: value(v["default"]) for k, v in papermill.inspect_notebook(path).items()}


def declared_parameters(notebook: str | Path) -> dict[str, Any]:
    """{name: default as written} of the notebook's `parameters` cell."""
    path = notebook_path(notebook)
    declared = _declared(str(path), path.stat().st_mtime)
    if not declared:
        raise ValueError(f"{path.name} has no cell tagged `parameters`")
    return declared


def check_parameters(notebook: str | Path, params: dict[str, Any], where: str) -> None:
    """Fail on a key the notebook does not declare, or an override key its stage does not know."""
    refuse_keys(params, where)  # parameters are written into the executed notebook and results
    declared = declared_parameters(notebook)
    name = notebook_path(notebook).stem
    for key, value in params.items():
        if key not in declared:
            close = difflib.get_close_matches(key, list(declared), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ParamsError(f"unknown parameter {key!r} for notebook {name} in {where}{hint}; "
                              f"it declares: {', '.join(declared)}")
        if key in OVERRIDES:
            check_overrides(OVERRIDES[key], value, key, where)
        elif key in OVERRIDES_BY_NAME:
            if not isinstance(value, dict):
                raise ParamsError(f"{key} in {where} must map names to {OVERRIDES_BY_NAME[key].__name__} overrides, "
                                  f"not {value!r}")
            for name, entry in value.items():
                check_overrides(OVERRIDES_BY_NAME[key], entry, f"{key}.{name}", where)


def check_overrides(cls: type[BaseModel], value: Any, key: str, where: str) -> None:
    """`value`, the override dict `key` of `where`, names only parameters of `cls`."""
    if not isinstance(value, dict):
        raise ParamsError(f"{key} in {where} must be a mapping of {cls.__name__} overrides, not {value!r}")
    check_keys(cls, value, f"{where}, {key}")


def execute(notebook: str | Path, out_dir: str | Path, params: dict[str, Any], log_output: bool = False) -> Path:
    """Execute the notebook with `params` into `out_dir/<name>.ipynb` (from the project
    root, on this interpreter's kernel); raises papermill's error when a cell fails,
    after saving the executed notebook with the failing cell's traceback."""
    path = notebook_path(notebook)
    check_parameters(path, params, "the given parameters")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / path.name
    env_path = os.environ.get("PYTHONPATH", "")
    src = str(ROOT / "src")
    if src not in env_path.split(os.pathsep):  # the kernel imports `common` without an install too
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (src, env_path) if p)
    papermill.execute_notebook(str(path), str(target), parameters=params, cwd=str(ROOT), kernel_name="python3",
                               progress_bar=False, log_output=log_output, request_save_on_cell_execute=True)
    return target
