"""Datasets: `python -m common.data build params/data.yaml` into `data/<name>/`.

- `build`: DataParams and the build (catalog -> scenarios -> filter -> splits -> card);
- `catalog`: the toolkits and tools (BFCL's functions, Composio, JSONL files); `composio`: its fetcher;
- `scenarios`, `phrasing`, `values`: the offline writer of requests and their calls;
- `teacher`: requests written by a model instead (OpenAI-compatible or local), cached;
- `xlam`: xLAM-60k samples; `quality`: the filter; `datacard`: splits on disk, the card, its figure.
Reading a build back is the core's `common.sources`.
"""
