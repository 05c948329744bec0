"""Running the numbered notebooks headlessly: their declared parameters, checked, then papermill.

A notebook declares its parameters in the cell tagged `parameters` (literals only).
Parameters named `<stage>_set` are override dicts of a command-line stage and are
checked against that stage's parameters too: `sft_set` (common.train SFT), `dpo_set`
(DPO), `eval_set` / `*_eval_set` (common.evaluate), `data_set` (common.data), `bfcl_set`
(common.bfcl). A key the
notebook does not declare fails before anything runs, with the closest valid name
(papermill itself would only warn and inject it).
"""

from __future__ import annotations

import difflib
import os
from functools import cache
from pathlib import Path
from typing import Any

from common.params import ParamsError, check_keys
from common.provenance import ROOT
from common.secrets import refuse_keys

NOTEBOOKS = ROOT / "notebooks"


def stage_class(name: str) -> type | None:
    """The parameter model an override dict named `name` is checked against, if any."""
    if not name.endswith("_set"):
        return None
    from common.bfcl import BFCLParams
    from common.data import DataParams
    from common.evaluate import EvalParams
    from common.train import DPOParams, SFTParams
    kind = name.removesuffix("_set").rsplit("_", 1)[-1]
    return {"sft": SFTParams, "dpo": DPOParams, "eval": EvalParams, "data": DataParams,
            "bfcl": BFCLParams}.get(kind)


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
    import ast

    import papermill

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
        cls = stage_class(key)
        if cls is not None:
            if not isinstance(value, dict):
                raise ParamsError(f"{key} in {where} must be a mapping of {cls.__name__} overrides, not {value!r}")
            check_keys(cls, value, f"{where}, {key}")


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`, override dicts (`*_set`) merged key by key, not replaced."""
    out = dict(base)
    for k, v in over.items():
        out[k] = {**out[k], **v} if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def execute(notebook: str | Path, out_dir: str | Path, params: dict[str, Any], log_output: bool = False) -> Path:
    """Execute the notebook with `params` into `out_dir/<name>.ipynb` (from the project
    root, on this interpreter's kernel); raises papermill's error when a cell fails,
    after saving the executed notebook with the failing cell's traceback."""
    import papermill
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
