"""Evaluation: generate predictions, then score them into a results file.

- `params`: EvalParams and GenerationSpec (shared with BFCL), over `common.params.ModelSpec`;
- `runner`: the phases (generate, latency, score), resumable; `python -m common.evaluation`
  (the older `python -m common.evaluate` too);
- `checker`: one verdict per sample; `metrics`: each reference's metrics under its names;
- `report`: the run's summary.md; `calibrate`: the call gate of a trained run.
"""
