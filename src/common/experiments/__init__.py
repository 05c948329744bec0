"""Experiments: what the numbered notebooks, the sweeps and the quickstart chain together.

`from common import experiments as ex` is a notebook's one import: every step below
takes the same layered parameters as its command line and writes to disk before it
returns (`steps`); comparisons and their tables are `compare`. The modules:
- `steps`: build, train, calibrate, evaluate, save a notebook's results; `show`: what a notebook displays;
- `compare`: the Kinetic table, head-to-head, BFCL beside the held-out set, as data and markdown;
- `inputs`: what a notebook reads, made in its setup cell (data, verdicts from committed predictions) or
  named in one line with the command that makes it; `kernel`: a user error in a notebook as that one line;
- `notebooks`: a notebook's declared parameters, checked, then papermill; `sweep`: a notebook per
  parameter set (`python -m common.experiments.sweep`, or `python -m common.sweep`);
- `quickstart`: the main job (`make quickstart`); `router`: the two-hop router of notebook 02;
- `figures`: every figure, drawn from saved results (`make figures`).
"""

from common.experiments.compare import (
    bfcl_rows,
    bfcl_table,
    compare,
    kinetic_row,
    markdown_table,
    results_of,
    verdicts,
)
from common.experiments.steps import (
    adapter_of,
    build_data,
    calibrated_gate,
    copy_history,
    eval_params,
    evaluate_model,
    keep_training,
    notebook_params,
    one_run,
    recipe,
    report_dir,
    run_dir,
    save_comparison,
    save_results,
    stage,
    train,
    train_and_evaluate,
    training_summary,
)
from common.provenance import shown

__all__ = ["adapter_of", "bfcl_rows", "bfcl_table", "build_data", "calibrated_gate", "compare", "copy_history",
           "eval_params", "evaluate_model", "keep_training", "kinetic_row", "markdown_table", "notebook_params",
           "one_run", "recipe", "report_dir", "results_of", "run_dir", "save_comparison", "save_results", "shown",
           "stage", "train", "train_and_evaluate", "training_summary", "verdicts"]
