"""BFCL, the external benchmark: any model or adapter on the leaderboard's single-turn
AST categories, offline, scored by the project's checker and by BFCL's own.

    python -m common.bfcl --model smollm2-135m-instruct                      # the five categories
    python -m common.bfcl --model smollm2-135m-instruct --adapter runs/quickstart/lora-sft/adapter
    python -m common.bfcl --model smollm2-135m-instruct --categories simple_python irrelevance --limit 20
    python -m common.bfcl --score-only --out reports/bfcl/smollm2-135m-instruct

Phases, with files in between (as every evaluation here):
1. generate: each category is an evaluation run of `common.evaluation` on `bfcl:<category>`
   into `<out>/<category>/` (prompts in the model's own tool-call format, with BFCL's
   "Python 3 syntax" hint; resumable, one model load for all categories);
2. score: the project's verdicts (`verdicts.jsonl`, written by the runner) and BFCL's
   AST checker's verdicts on the same parsed calls (`common.bfcl.reference`, run in a
   separate process with its model registry stubbed, so the project's environment
   never installs bfcl-eval's pinned dependencies) go sample by sample into
   `<out>/agreement.jsonl`; the leaderboard's aggregates, the SLM paper's metrics and
   the agreement into `<out>/results.json` and `<out>/README.md`.

The live categories are refused for an adapter whose training data drew requests from
them (its data card lists them), since a score there would not be a held-out score.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common import bfcl_data
from common.bfcl.params import BFCLParams
from common.bfcl.report import refuse_stale_categories, score
from common.engines import load_generator
from common.errors import ArgumentParser, cli
from common.evaluation.params import EvalParams, GenerationSpec
from common.evaluation.runner import PREDICTION_KEYS, evaluate
from common.jsonio import read_json, read_jsonl, restore, write_json
from common.params import add_set_argument, load_params, overrides_of
from common.provenance import local_path
from common.sources import BFCL_PREFIX, load_data
from common.tracking import flatten, start_run


def trained_on(adapter: str) -> dict[str, int]:
    """BFCL live entries per category in the training split of the adapter's data, read
    from its run's parameters (`<run>/run.json`) and its data card."""
    run_file = local_path(adapter).parent / "run.json"
    unknown = ("so it is unknown whether it trained on BFCL's live categories; score only the non-live ones "
               f"({', '.join(bfcl_data.BENCHMARK_CATEGORIES)})")
    if not run_file.is_file():
        raise FileNotFoundError(f"the adapter {adapter} has no training run beside it ({run_file} is missing), "
                                + unknown)
    data = json.loads(run_file.read_text())["params"].get("data") or ""
    card = local_path(data.partition(":")[0]) / "data_card.json"  # recorded relative to the project root
    if not card.is_file():
        raise FileNotFoundError(f"the adapter's training data {data!r} has no data card ({card}), " + unknown)
    counts: dict[str, int] = {}
    for sample_id in json.loads(card.read_text()).get("bfcl_live_ids_in_train", []):
        category = sample_id.rsplit("_", 1)[0]
        counts[category] = counts.get(category, 0) + 1
    return counts


def check_held_out(params: BFCLParams) -> None:
    """Refuse a live category the adapter's training data drew requests from."""
    live = [c for c in params.categories if c in bfcl_data.LIVE_CATEGORIES]
    if params.adapter is None or not live:
        return
    used = {c: n for c, n in trained_on(params.adapter).items() if c in live}
    if used:
        raise ValueError(
            f"the adapter {params.adapter} was trained on data with BFCL entries from {used} (its data card's "
            "bfcl_live_ids_in_train), so those categories are not held out for it; drop them from --categories, "
            "or train on data built without bfcl_live in request_sources")


def category_params(params: BFCLParams, category: str) -> EvalParams:
    """One category's evaluation run: the generation fields as given, no latency phase."""
    shared = {k: getattr(params, k) for k in GenerationSpec.model_fields}
    return EvalParams(**shared | {"data": f"{BFCL_PREFIX}{category}", "run": f"{params.run}/{category}",
                                  "out": str(Path(params.out) / category), "call_gate": params.call_gate,
                                  "reuse": str(Path(params.reuse) / category) if params.reuse else None,
                                  "latency_requests": 0, "wandb_group": f"{params.experiment}/{params.run}"})


def generate(params: BFCLParams, model_and_tokenizer: tuple[Any, Any] | None = None) -> None:
    """Every category's predictions and project verdicts (resumable). `params.json`, which
    `score` reads, is written once every category has been generated (the last such run's)."""
    check_held_out(params)
    refuse_stale_categories(params.out, params.categories, params.limit)  # before a model loads
    for category in params.categories:
        eval_params = category_params(params, category)
        if model_and_tokenizer is None and not _finished(eval_params):
            model_and_tokenizer = load_generator(params.backend, params.model, adapter=params.adapter,
                                                 dtype=params.dtype, device=params.device, seed=params.seed,
                                                 n_seq=params.batch_size)
        print(f"BFCL {category}: {eval_params.out}", flush=True)
        evaluate(eval_params, model_and_tokenizer)
    write_json(Path(params.out) / "params.json", params.model_dump())


def _finished(eval_params: EvalParams) -> bool:
    restore(Path(eval_params.out) / "predictions.jsonl")  # committed archives count as done
    done = {r["id"] for r in read_jsonl(Path(eval_params.out) / "predictions.jsonl", PREDICTION_KEYS)}
    return all(s.id in done for s in load_data(eval_params.data, eval_params.limit))


def run(params: BFCLParams | dict[str, Any], model_and_tokenizer: tuple[Any, Any] | None = None) -> dict[str, Any]:
    """Generate what is missing, then score: the results of one model on BFCL."""
    params = params if isinstance(params, BFCLParams) else load_params(BFCLParams, [], params)
    params = params.resolved(loaded=model_and_tokenizer[0] if model_and_tokenizer else None)
    generate(params, model_and_tokenizer)
    results = score(params.out)
    track(params, results)
    return results


def track(params: BFCLParams, results: dict[str, Any]) -> None:
    """The model's BFCL metrics as one W&B run (each category's evaluation logs its own too)."""
    tracker = start_run(params.model_dump(), mode=params.wandb, project=params.wandb_project,
                        group=params.wandb_group or params.experiment, name=params.run, job_type="bfcl")
    b = results["metrics"]["bfcl"]
    tracker.summary.update(flatten({"bfcl": {k: v for k, v in b.items() if k != "disagreements"}, "slm":
                                    results["metrics"]["slm"], "decision": results["metrics"]["decision"]}))
    tracker.finish()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = ArgumentParser(prog="python -m common.bfcl", description=__doc__.split("\n\n")[0])
    parser.add_argument("params", nargs="*", help="YAML parameter files, merged in order")
    for name in ("model", "adapter", "format", "run", "out", "device", "experiment"):
        parser.add_argument(f"--{name}", help=BFCLParams.model_fields[name].description)
    parser.add_argument("--limit", type=int, help=BFCLParams.model_fields["limit"].description)
    parser.add_argument("--categories", nargs="+", help=BFCLParams.model_fields["categories"].description)
    parser.add_argument("--call-gate", dest="call_gate", help=BFCLParams.model_fields["call_gate"].description)
    add_set_argument(parser, BFCLParams)
    parser.add_argument("--score-only", action="store_true", help="rescore the predictions in --out")
    args = parser.parse_args(argv)
    flags = {k: v for k, v in vars(args).items() if k in BFCLParams.model_fields and v is not None}
    if args.score_only:
        if not args.out or not (Path(args.out) / "params.json").is_file():
            parser.error("--score-only needs --out, the folder of a finished BFCL run (with its params.json)")
        saved = read_json(Path(args.out) / "params.json", "BFCL run record")
        params = BFCLParams.model_validate(saved | {"out": args.out})
    else:
        params = load_params(BFCLParams, args.params, overrides_of(args) | flags).resolved()
    results = score(params.out) if args.score_only else run(params)
    print((Path(params.out) / "README.md").read_text())
    print(f"results: {Path(params.out) / 'results.json'}")
    return results


if __name__ == "__main__":
    cli(main)
