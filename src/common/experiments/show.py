"""What a notebook displays, drawn from the files a step saved: tables as markdown, figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from IPython.display import Image, Markdown, display

from common.experiments import figures, findings
from common.experiments.compare import bfcl_table, markdown_table


def comparison(out: str | Path, comp: dict[str, Any]) -> list[Path]:
    """The Kinetic table (and BFCL's, when there is one), then every figure of
    `out/comparison.json` (`save_comparison`). Returns the figures' paths."""
    display(Markdown(markdown_table(comp["table"])))
    if comp.get("bfcl"):
        display(Markdown(bfcl_table(comp["bfcl"])))
    return images(figures.comparison_figures(Path(out) / "comparison.json"))


def one_run(r: dict[str, Any]) -> list[Path]:
    """A sweep notebook's run (`steps.one_run`): its row, its training curves, and the
    sweep's figures so far when the run belongs to one. Returns the figures' paths."""
    out = Path(r["out"])
    display(Markdown(markdown_table([r["row"]])))
    run = r["row"]["model"]
    paths = [figures.training_dashboard({run: json.loads((out / "history.json").read_text())}, out / "training.png")]
    sweep = out.parent / "sweep.json"
    if sweep.exists():  # the sweep so far, from the runs saved on disk
        paths += figures.sweep_figures(sweep)
    return images(paths)


def images(paths: list[Path]) -> list[Path]:
    for path in paths:
        display(Image(path))
    return paths


def beside_finding(out: str | Path) -> None:
    """The reference's numbers beside the run's own (`findings`), from its saved results."""
    display(Markdown(findings.beside_finding(out)))
