"""The evaluation runner: generate predictions, then score them into a results file.

    python -m common.evaluation params/evaluate.yaml                      # the embedded default
    python -m common.evaluation --model tiny-random-llama --limit 4 --out /tmp/ev
    python -m common.evaluation --model qwen3-4b-instruct-2507 --device cuda --out reports/suite/qwen3
    python -m common.evaluation --score-only --out reports/suite/smollm2-135m-instruct

Phases, with files in between (generation never scores, scoring never generates):
1. generate: prompts rendered in the chosen format, generated in batches through a
   backend; one JSON line per sample is appended to `predictions.jsonl` as each batch
   finishes, so a rerun skips what is done and an interrupted run loses nothing;
2. latency: the first `latency_requests` samples again, one request at a time (what a
   user waits for), into `latency.jsonl`, also resumable; batched throughput comes
   from phase 1;
3. score: each prediction parsed and checked into `verdicts.jsonl`, the metrics into
   `results.json` (with parameters, seed, commit, versions, hardware) and a table into
   `summary.md`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from tqdm.auto import tqdm

from common.adapter_card import record_evaluation
from common.backends import Backend, GenerationSettings
from common.decoding import CallDecision, call_start_token
from common.engines import BACKENDS, load_generator
from common.errors import ArgumentParser, UserError, cli
from common.evaluation.checker import check_sample
from common.evaluation.metrics import call_decision, compute_metrics, latency_summary
from common.evaluation.params import GENERATION_KEYS, SCORING_KEYS, EvalParams
from common.evaluation.report import summary_table
from common.formats import get_format
from common.formats.base import PROMPT_VERSION, prompt_unchanged
from common.jsonio import (
    append_jsonl,
    exclusive,
    read_checked,
    read_json,
    read_jsonl,
    repair,
    restore,
    write_json,
    write_jsonl,
)
from common.models import check_adapter, check_model_name
from common.params import (
    ParamsError,
    add_set_argument,
    load_params,
    merge,
    overrides_of,
    validation_message,
)
from common.provenance import (
    git_state,
    local_path,
    portable,
    portable_path,
    provenance,
)
from common.samples import Sample
from common.sources import load_data, portable_data
from common.tracking import flatten, start_run

# What a line of predictions.jsonl and of latency.jsonl must hold to count (else it is quarantined).
PREDICTION_KEYS, LATENCY_KEYS = ("id", "text"), ("id", "seconds")


def generation_settings(params: EvalParams) -> dict[str, Any]:
    """What decides a run's predictions, in the portable form each prediction records."""
    wanted = {k: getattr(params, k) for k in GENERATION_KEYS}
    if local_path(params.model).exists():
        wanted["model"] = portable_path(local_path(params.model))
    wanted["adapter"] = params.adapter and portable_path(local_path(params.adapter))
    wanted["data"] = portable_data(params.data)
    return wanted


def preflight(params: EvalParams, loads_model: bool) -> list[Sample]:
    """Everything that can be checked before a model loads and before anything is written:
    the data (validated where it enters), the model's name and the adapter's folder."""
    samples = load_data(params.data, params.limit)
    if loads_model:
        check_model_name(params.model)
        if params.adapter:
            check_adapter(params.adapter)
    return samples


# -- whose run a folder holds -------------------------------------------------------
def differences(there: dict[str, Any], now: dict[str, Any]) -> str:
    return "; ".join(f"{k}: {there.get(k)!r} there, {now.get(k)!r} now" for k in now if there.get(k) != now.get(k))


def settings_of(row: dict[str, Any], recorded: dict[str, Any] | None) -> dict[str, Any] | None:
    """A prediction's generation settings: its own, else (an older record) its folder's run.json's."""
    return row.get("settings") or (recorded and portable(recorded)) or None


def check_predictions(out: Path, settings: dict[str, Any], recorded: dict[str, Any] | None,
                      rows: list[dict[str, Any]]) -> None:
    """Refuse predictions made with other settings than `settings`. Each record carries its
    own; older records without them fall back to the folder's run.json."""
    for row in rows:
        theirs = settings_of(row, recorded)
        if not theirs:
            raise UserError(f"{out} holds predictions whose settings are unknown (no run.json, none in the "
                            "records); use another --out (or --run), or delete that folder to start over")
        if theirs != settings:
            raise UserError(f"{out} holds predictions made with other settings ({differences(theirs, settings)}). "
                            "Use another --out (or --run), or delete that folder to start over.")


def stale_answers(rows: list[dict[str, Any]], samples: list[Sample]) -> list[str]:
    """The ids of recorded answers whose sample is prompted differently now than when they were
    generated (`formats.base.PROMPT_VERSION`): those answers belong to another prompt."""
    by_id = {s.id: s for s in samples}
    return sorted({r["id"] for r in rows if r["id"] in by_id
                   and not prompt_unchanged(r.get("prompt_version", 1), by_id[r["id"]].tools)})


def refuse_stale(out: Path, rows: list[dict[str, Any]], samples: list[Sample]) -> None:
    stale = stale_answers(rows, samples)
    if stale:
        raise UserError(f"{portable_path(out)} holds {len(stale)} answers to prompts that have changed since they "
                        f"were generated (prompt_version {PROMPT_VERSION}: a tool's keys are now listed sorted; e.g. "
                        f"{', '.join(stale[:3])}); delete that folder to generate them again (git keeps the old ones)")


def start_run_record(out: Path, params: EvalParams, settings: dict[str, Any], fresh: bool) -> dict[str, Any]:
    """run.json for this invocation. A folder with no predictions and no timed requests starts
    afresh whatever its run.json says (a committed record, a failed start); otherwise its
    earlier invocations are kept, so that the timings add up over resumed runs."""
    path = out / "run.json"
    old = {} if fresh or not path.exists() else read_json(path, "run record")
    run = {"generation": settings, "invocations": old.get("invocations", []), "backend": old.get("backend"),
           "params": params.model_dump()}
    write_json(path, run)
    return run


# -- phases ---------------------------------------------------------------------------
def reused_answers(params: EvalParams, samples: list[Sample], done: set[str],
                   settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The answers of the plain run `params.reuse` that the call gate leaves unchanged, as this run's
    records: with greedy decoding an answer depends only on its prompt and first token, and the gate
    only fixes the first token (the call token iff P(call) >= gate, P(call) read before it acts),
    so a plain answer whose first token agrees with the gate's decision is the gated answer.
    (Batch composition can move a float by an ulp, as it can between any two runs of the same settings.)
    Answers recorded without `first_call` (made before it was recorded) are generated again."""
    source = local_path(params.reuse)
    restore(source / "predictions.jsonl")
    rows: dict[str, dict[str, Any]] = {}
    for r in read_jsonl(source / "predictions.jsonl", PREDICTION_KEYS):
        rows.setdefault(r["id"], r)
    if not rows:
        raise UserError(f"reuse: {source} holds no predictions; evaluate the model without a call gate into it "
                        "first, or drop reuse")
    plain = {**settings, "call_gate": None}
    # older records carry no settings: the folder's run.json speaks for them
    recorded = read_json(source / "run.json", "run record").get("generation") if (source / "run.json").is_file() else None
    other = next((theirs for r in rows.values() if (theirs := settings_of(r, recorded) or {}) != plain), None)
    if other is not None:
        raise UserError(f"reuse: {source} was generated with other settings than this run's without its gate "
                        f"({differences(other, plain)}); reuse a plain run of the same model, adapter, "
                        "data and decoding, or drop reuse")
    gate = params.call_gate
    kept = []
    for s in samples:
        r = rows.get(s.id)
        if s.id in done or r is None or r.get("p_call") is None or r.get("first_call") is None \
                or not prompt_unchanged(r.get("prompt_version", 1), s.tools):  # answered another prompt
            continue
        if (r["p_call"] >= gate) == r["first_call"]:
            kept.append({**r, "settings": settings, "prompt_version": PROMPT_VERSION,
                         "reused_from": portable_path(source)})
    return kept


def generate_predictions(backend: Backend, prompts: dict[str, str], path: Path, batch_size: int, done: set[str],
                         checkpoint: Callable[[int], None] = lambda n: None,
                         settings: dict[str, Any] | None = None) -> None:
    """Append one record per sample (with the run's `settings`) to `path`, which the caller
    has repaired, batch by batch, skipping the `done` ids; `checkpoint(n)` runs after each batch of n."""
    todo = [i for i in prompts if i not in done]
    # Similar lengths in a batch waste less compute on padding.
    todo.sort(key=lambda i: len(prompts[i]))
    with tqdm(total=len(prompts), initial=len(prompts) - len(todo), desc="generate", unit="sample") as bar:
        for start in range(0, len(todo), batch_size):
            ids = todo[start:start + batch_size]
            gens = backend.generate([prompts[i] for i in ids])
            append_jsonl(path, ({"id": i, **asdict(g), "batch_size": len(ids), "settings": settings,
                                 "prompt_version": PROMPT_VERSION} for i, g in zip(ids, gens)))
            bar.update(len(ids))
            checkpoint(len(ids))


def measure_latency(backend: Backend, prompts: dict[str, str], ids: list[str], path: Path, done: set[str],
                    batched: dict[str, dict[str, Any]], checkpoint: Callable[[int], None] = lambda n: None,
                    settings: dict[str, Any] | None = None) -> None:
    todo = [i for i in ids if i not in done]
    for i in tqdm(todo, desc="latency (1 request at a time)", unit="request"):
        g = backend.generate([prompts[i]])[0]
        append_jsonl(path, [{"id": i, "seconds": g.seconds, "new_tokens": g.new_tokens,
                             "prompt_tokens": g.prompt_tokens, "text": g.text,
                             "same_text_as_batched": g.text == batched[i]["text"], "settings": settings,
                             "prompt_version": PROMPT_VERSION}])
        checkpoint(1)


def throughput(predictions: list[dict[str, Any]]) -> dict[str, Any]:
    """Batched throughput of the answers generated here (not those copied by `reuse`). Records of
    one batch share its wall time, counted once."""
    made = [r for r in predictions if not r.get("reused_from")]
    seconds = sum(r["seconds"] / r["batch_size"] for r in made)
    tokens = sum(r["new_tokens"] for r in made)
    return {"samples": len(made), "reused": len(predictions) - len(made), "seconds": seconds,
            "new_tokens_per_s": tokens / seconds if seconds else None,
            "samples_per_s": len(made) / seconds if seconds else None,
            "truncated": sum(r["finish_reason"] == "length" for r in predictions)}  # copied answers too


def judged(out: str | Path, samples: list[Sample] | None = None, overrides: dict[str, Any] | None = None) -> tuple:
    """Every prediction in `out` parsed and checked: (params, run, samples, predictions, latency rows, verdicts,
    verdicts.jsonl's rows). Writes only the plain copies of committed archives (`*.jsonl.gz`) that are missing."""
    out = Path(out)
    if not (out / "run.json").is_file():
        raise UserError(f"{out} holds no evaluation (run.json is missing); run the evaluation into it first")
    run = read_json(out / "run.json", "run record")
    bad = sorted(set(overrides or {}) - set(SCORING_KEYS))
    if bad:
        raise UserError(f"{bad} change generation; rescoring may only change {list(SCORING_KEYS)}")
    try:
        params = EvalParams.model_validate({"call_gate": None} | run["params"] | (overrides or {}) | {"out": str(out)})
    except ValidationError as err:
        raise ParamsError(validation_message(err, f"{out}/run.json and the overrides")) from None
    samples = samples if samples is not None else load_data(params.data, params.limit)
    fmt = get_format(params.format)
    restore(out / "predictions.jsonl"), restore(out / "latency.jsonl")  # a fresh clone's committed archives
    found = read_checked(out / "predictions.jsonl", PREDICTION_KEYS)
    latency_rows = read_jsonl(out / "latency.jsonl", LATENCY_KEYS)
    check_predictions(out, portable(run["generation"]), run["generation"], found.rows + latency_rows)
    refuse_stale(out, found.rows + latency_rows, samples)  # --score-only and every rescoring path too
    predictions: dict[str, dict[str, Any]] = {}
    for r in found.rows:
        predictions.setdefault(r["id"], r)
    missing = [s.id for s in samples if s.id not in predictions]
    if missing:
        corrupt = f"; {found.describe(out / 'predictions.jsonl')}" if found.rejected else ""
        raise UserError(f"{len(missing)} samples have no prediction yet (first: {missing[:3]}){corrupt}; "
                        "run the evaluation again to generate them (the others are kept)")
    verdicts, rows = [], []
    for s in samples:
        parsed = fmt.parse(predictions[s.id]["text"], s.tools)
        v = check_sample(s, parsed, strict_strings=params.strict_strings)
        verdicts.append(v)
        rows.append({**v.to_dict(), "parsed": parsed.to_dict()})
    return params, run, samples, predictions, latency_rows, verdicts, rows


def score(out: str | Path, samples: list[Sample] | None = None,
          overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every prediction in `out` judged (`judged`) into verdicts.jsonl, metrics, results.json. `overrides` may change
    the scoring parameters (SCORING_KEYS); timings add up every invocation that generated into `out`. Answers to
    prompts that changed since they were generated (`formats.base.PROMPT_VERSION`) are refused, not scored."""
    out = Path(out)
    params, run, samples, predictions, latency_rows, verdicts, rows = judged(out, samples, overrides)
    write_jsonl(out / "verdicts.jsonl", rows)
    latency = {r["id"]: r for r in latency_rows}.values()
    metrics = compute_metrics(verdicts)
    metrics["kinetic"]["latency"] = latency_summary([r["seconds"] for r in latency])
    metrics["decision"] = call_decision([predictions[s.id].get("p_call") for s in samples],
                                        [bool(s.expected_calls) for s in samples])
    invocations = run.get("invocations", [])
    keys = dict.fromkeys([*(k for i in invocations for k in i["timings"] if k != "total_s"), "total_s"])
    timings = {k: sum(i["timings"].get(k, 0.0) for i in invocations) for k in keys}
    generated_at = [{"git": i["git"], "predictions": i["predictions"], "latency_requests": i["latency_requests"]}
                    for i in invocations if i["predictions"] or i["latency_requests"]]
    results = {
        "experiment": params.experiment, "run": params.run, "model": params.model,
        "adapter": params.adapter, "format": params.format, "data": params.data, "n_samples": len(samples),
        "seed": params.seed, "params": params.model_dump(), "generation": run.get("backend"),
        # the oldest prompt rendering among the answers judged (`formats.base.PROMPT_VERSION`)
        "prompt_version": min(predictions[s.id].get("prompt_version", 1) for s in samples) if samples else PROMPT_VERSION,
        "metrics": metrics, "throughput": throughput([predictions[s.id] for s in samples]),
        "latency_mode": {"batch_size": 1, "requests": len(latency),
                         "same_text_as_batched": sum(r["same_text_as_batched"] for r in latency)},
        "timings": timings, "invocations": len(invocations), "generated_at": generated_at,
        "provenance": provenance(),
    }
    results = portable(results)
    write_json(out / "results.json", results)
    (out / "summary.md").write_text(summary_table(results), encoding="utf-8")
    return results


def evaluate(params: EvalParams, model_and_tokenizer: tuple[Any, Any] | None = None) -> dict[str, Any]:
    """Generate what is missing, measure latency, score. Returns the results dict.

    `model_and_tokenizer` lets a notebook or test pass an already loaded model. Everything
    that can be checked before a model loads is checked first (`preflight`), and nothing is
    written to the output folder until it passes.
    """
    params = params.resolved(loaded=model_and_tokenizer[0] if model_and_tokenizer else None)
    samples = preflight(params, loads_model=model_and_tokenizer is None)
    with exclusive(Path(params.out)):
        return _evaluate(params, samples, model_and_tokenizer)


def _evaluate(params: EvalParams, samples: list[Sample], model_and_tokenizer: tuple[Any, Any] | None) -> dict[str, Any]:
    t0 = time.perf_counter()
    out = Path(params.out)
    fmt = get_format(params.format)
    pred_path, lat_path = out / "predictions.jsonl", out / "latency.jsonl"
    settings = generation_settings(params)
    restore(pred_path), restore(lat_path)  # committed archives of a finished run count as done
    predicted, timed_rows = repair(pred_path, PREDICTION_KEYS).rows, repair(lat_path, LATENCY_KEYS).rows
    # older records carry no settings: the folder's run.json speaks for them
    legacy = any("settings" not in r for r in predicted + timed_rows) and (out / "run.json").is_file()
    recorded = read_json(out / "run.json", "run record").get("generation") if legacy else None
    check_predictions(out, settings, recorded, predicted + timed_rows)
    refuse_stale(out, predicted + timed_rows, samples)
    done = {r["id"] for r in predicted}
    copied = reused_answers(params, samples, done, settings) if params.reuse else []  # checked before writing
    run = start_run_record(out, params, settings, fresh=not predicted and not timed_rows)
    latency_ids = [s.id for s in samples[:params.latency_requests]]
    timed = {r["id"] for r in timed_rows}
    # This invocation's record is saved after every batch and request, so a killed run
    # keeps the timings and counts of what it finished.
    this = {"git": git_state(), "timings": {}, "predictions": 0, "latency_requests": 0}
    run["invocations"] = [*run.get("invocations", []), this]

    def save(phase: str | None = None, started: float = 0.0, counter: str | None = None, n: int = 0) -> None:
        if phase:
            this["timings"][phase] = time.perf_counter() - started
        if counter:
            this[counter] += n
        this["timings"]["total_s"] = time.perf_counter() - t0
        write_json(out / "run.json", run)

    if params.reuse:
        append_jsonl(pred_path, copied)
        done |= {r["id"] for r in copied}
        this["reused"], this["reused_from"] = len(copied), portable_path(local_path(params.reuse))
        if run["backend"] is None:  # every answer copied so far: the backend that wrote them, gated
            source = read_json(local_path(params.reuse) / "run.json", "run record").get("backend")
            run["backend"] = source and {**source, "call_gate": params.call_gate, "copied_from": this["reused_from"]}
        save()
    if any(s.id not in done for s in samples) or any(i not in timed for i in latency_ids):
        t = time.perf_counter()
        model, tokenizer = model_and_tokenizer or load_generator(
            params.backend, params.model, adapter=params.adapter, merge=params.merge_adapter, dtype=params.dtype,
            device=params.device, seed=params.seed, n_seq=params.batch_size)
        save("model_load_s", t)
        gen = GenerationSettings(params.max_new_tokens, params.temperature, params.top_p, params.top_k,
                                 params.repetition_penalty, params.seed)
        call_token = call_start_token(fmt, tokenizer)
        if params.call_gate is not None and call_token is None:
            raise UserError(f"call_gate needs the token every {params.format} call starts with, and this "
                            "tokenizer merges it with the function name; drop call_gate for this model")
        probe = [] if call_token is None else [CallDecision(call_token, params.call_gate)]
        backend = BACKENDS[params.backend](model, tokenizer, gen,
                                           stop_texts=(fmt.end_of_turn(tokenizer), *fmt.stop_texts),
                                           logits_processors=probe)
        run["backend"] = backend.describe()
        prompts = {s.id: fmt.render_prompt(s.tools, s.messages, tokenizer) for s in samples}
        t = time.perf_counter()
        generate_predictions(backend, prompts, pred_path, params.batch_size, done,
                             checkpoint=lambda n: save("generate_s", t, "predictions", n), settings=settings)
        t = time.perf_counter()
        batched = {r["id"]: r for r in read_jsonl(pred_path, PREDICTION_KEYS)}
        measure_latency(backend, prompts, latency_ids, lat_path, timed, batched,
                        checkpoint=lambda n: save("latency_s", t, "latency_requests", n), settings=settings)
    save()
    results = score(out, samples)
    record_evaluation(params.adapter, results, out)  # the adapter's model card shows it (not on a rescoring)
    tracker = start_run(params.model_dump(), mode=params.wandb, project=params.wandb_project,
                        group=params.wandb_group or params.experiment, name=params.run, job_type="evaluate")
    tracker.summary.update(flatten(results["metrics"]) | flatten({"throughput": results["throughput"],
                                                                  "timings": results["timings"]}))
    tracker.finish()
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = ArgumentParser(prog="python -m common.evaluation", description=__doc__.split("\n\n")[0])
    parser.add_argument("params", nargs="*", help="YAML parameter files, merged in order")
    for name, field in EvalParams.model_fields.items():
        if name in {"model", "adapter", "data", "format", "out", "limit", "run", "device", "experiment"}:
            parser.add_argument(f"--{name}", type=int if name == "limit" else str, help=field.description)
    add_set_argument(parser, EvalParams)
    parser.add_argument("--score-only", action="store_true",
                        help=f"rescore the predictions in --out (--set may change {', '.join(SCORING_KEYS)})")
    args = parser.parse_args(argv)
    if args.score_only:
        if not args.out:
            parser.error("--score-only needs --out, the folder of a finished generation")
        if not Path(args.out).is_dir():
            raise UserError(f"no evaluation folder at {args.out}")
        with exclusive(Path(args.out)):  # a running generation may be appending to it
            results = score(args.out, overrides=merge({}, overrides_of(args)))
    else:
        flags = {k: v for k, v in vars(args).items() if k in EvalParams.model_fields and v is not None}
        params = load_params(EvalParams, args.params, overrides_of(args) | flags)
        results = evaluate(params)
    print(summary_table(results))
    print(f"results: {Path(results['params']['out']) / 'results.json'}")
    return results


if __name__ == "__main__":
    cli(main)
