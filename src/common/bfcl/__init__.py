"""BFCL, the external benchmark, offline: `python -m common.bfcl --model NAME [--adapter DIR]`.

- `params`: BFCLParams (over `evaluation.params.GenerationSpec`) and the command that regenerates a run;
- `run`: generation, one evaluation run per category, then scoring; the command line;
- `report`: the project's and BFCL's verdicts, their agreement, the leaderboard's aggregates, README.md;
- `reference`: BFCL's own AST checker, in a separate process; `agreement`: why the two checkers differ.
The BFCL data itself is read by the core's `common.bfcl_data`.
"""
