"""The headline recipe (issue 18): live data -> LoRA SFT -> dev, transfer, held-out, suite, BFCL -> report.

    python -m common.experiments.headline params/headline.yaml                        # the whole recipe
    python -m common.experiments.headline params/headline.yaml params/headline/real_only.yaml   # an ablation
    python -m common.experiments.headline params/headline.yaml --set sets=[dev] bfcl=false untrained=false  # dev only

One recipe per invocation, each stage resumable (rerun the command after an interruption:
the data build, the training checkpoints and every evaluation's predictions are kept). Every
finished evaluation's predictions are also archived beside its results (`predictions.jsonl.gz`,
committed), and the training record in `<report>/<recipe>/train/`: on a fresh clone without
runs/, a recipe whose evaluations are all recorded is rescored from them, not retrained.
1. build the live mix (`common.data`, `data_params` + `data_set`);
2. LoRA SFT on it (`common.training`, `sft_params` + `sft_set`) into runs/<experiment>/<recipe>;
3. the adapter on each evaluation set of `sets` (dev first: the split recipes are chosen on),
   then on BFCL's five non-live categories (`common.bfcl`, scored by BFCL's own checker);
4. the untrained model on the same sets, once for every recipe (its folders are keyed by the
   hash of the split's samples, so a recipe whose dev split differs gets its own; `fine_tuned: false`
   runs this stage alone; `bfcl: false` keeps its recorded BFCL row as measured; `untrained: false`
   generates nothing for it and pairs the recipe with its recorded evaluations that still stand,
   naming each set left unpaired and why);
5. `<report>/README.md` from every finished recipe under `<report>`: BFCL beside the published
   small models, the headline recipe against the untrained model on each set (paired), and
   the ablation table.
Decoding is plain greedy (no call gate) unless `call_gate` fixes a threshold; `gate_from_dev`
also chooses one on the dev split and evaluates the same adapter with it on every set and BFCL,
beside the plain rows.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from common import adapter_card, bfcl_data
from common.bfcl.params import BFCLParams
from common.data.build import DataParams, build
from common.errors import ArgumentParser, UserError, cli
from common.experiments import steps as ex
from common.experiments.compare import kinetic_row, paired, results_of, verdicts
from common.experiments.headline_records import (
    bfcl_folder,
    copied_answers,
    finished,
    keep_predictions,
    recorded_bfcl,
    recorded_spec,
    rescore,
    rescore_bfcl,
    split_key,
    trained_on_split,
    weights_sha256,
)
from common.experiments.headline_report import PUBLISHED, bfcl_summary, published, write_report
from common.experiments.quickstart import in_fresh_process, recipe_text
from common.jsonio import read_json, read_jsonl, write_json
from common.models import default_format
from common.params import (
    DEFAULT_MODEL,
    add_set_argument,
    invocation,
    load_params,
    overrides_of,
)
from common.provenance import provenance, reports_root, shown
from common.sources import load_data, with_samples_sha256
from common.tracking import WandbMode
from common.training.params import SFTParams

SETS = ("dev", "transfer", "held_out", "suite")


class HeadlineParams(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    model: str = Field(DEFAULT_MODEL, description="the model, fine-tuned and evaluated untrained")
    recipe: str = Field("full", description="this recipe's name: runs/<experiment>/<recipe>, <report>/<recipe>/")
    description: str = Field("the whole recipe", description="what this recipe is, for the ablation table")
    headline: str = Field("full", description="the recipe the report leads with")
    report: str = Field("bfcl/headline-smollm2-135m", description="the report folder under reports/ (all recipes)")
    target: str = Field(PUBLISHED[0][0], description="the published model whose BFCL row the recipes are marked "
                        "against (one of the report's published rows)")
    experiment: str = Field("headline", description="runs/<experiment>/ and the W&B group")
    data_params: list[str] = Field(["params/data_live.yaml"], description="the data build's parameter files")
    data_set: dict[str, Any] = Field(default_factory=dict, description="data build overrides (an ablation's)")
    sft_params: list[str] = Field(["params/sft_live.yaml"], description="the training's parameter files")
    sft_set: dict[str, Any] = Field(default_factory=dict, description="training overrides")
    eval_params: list[str] = Field(["params/evaluate.yaml"], description="generation settings of every evaluation")
    eval_set: dict[str, Any] = Field(default_factory=dict, description="generation overrides (all evaluations)")
    sets: list[Literal["dev", "transfer", "held_out", "suite"]] = Field(
        list(SETS), description="evaluation sets besides BFCL: dev, transfer, held_out, suite")
    held_out_params: list[str] = Field(["params/data.yaml"], description="the build whose eval split is `held_out`")
    bfcl: bool = Field(True, description="score BFCL's non-live categories")
    bfcl_categories: list[str] = Field(list(bfcl_data.BENCHMARK_CATEGORIES), description="BFCL categories")
    bfcl_limit: int | None = Field(None, ge=1, description="only the first N entries per category (a smoke run)")
    bfcl_max_new_tokens: int | None = Field(None, ge=1, description="BFCL's answer cap (default: the BFCL runner's 256)")
    untrained: bool = Field(True, description="evaluate the untrained model on the same sets (once for all recipes); "
                            "false: pair with its recorded evaluations that still stand, generating none")
    fine_tuned: bool = Field(True, description="train and evaluate the recipe; false: only the untrained model's "
                             "rows (with `untrained`), which every recipe shares")
    call_gate: float | None = Field(None, gt=0, lt=1, description="a fixed call gate for every evaluation of "
                                    "the recipe; null: plain decoding")
    gate_from_dev: float | None = Field(None, gt=0, lt=1, description=(
        "also choose a call gate on the dev split (plain decoding's P(call) there): the threshold that calls on "
        "the most dev requests needing a call while answering at least this share of dev's no-call requests "
        "without one; the gated model is then evaluated on every set and BFCL beside the plain one"))
    reuse_plain: bool = Field(True, description=(
        "the gated evaluations copy the plain answers whose first token the gate keeps (the same answer under "
        "greedy decoding: EvalParams.reuse) and generate only the rest; false: generate every gated answer"))

    @field_validator("target")
    @classmethod
    def _published(cls, v: str) -> str:
        published(v)  # a one-line error naming the rows there are
        return v

    @model_validator(mode="after")
    def _something_to_run(self) -> HeadlineParams:
        if not self.fine_tuned and not self.untrained:
            raise ValueError("fine_tuned: false with untrained: false leaves nothing to run; set one of them true")
        return self

    @model_validator(mode="after")
    def _gate_needs_dev(self) -> HeadlineParams:
        if self.gate_from_dev is not None and ("dev" not in self.sets or self.call_gate is not None):
            raise ValueError("gate_from_dev chooses the gate on the dev split: keep `dev` in `sets` and leave "
                             "`call_gate` null")
        return self
    wandb: WandbMode = Field("auto", description="online, offline, disabled, or auto")


def data_spec(which: str, build_dir: Path, held_out_dir: Path) -> str:
    return {"dev": shown(build_dir), "transfer": f"{shown(build_dir)}:transfer", "held_out": shown(held_out_dir),
            "suite": "suite:everyday_tools"}[which]


def evaluate_sets(p: HeadlineParams, who: str, folder: Path, adapter: dict[str, Any], specs: dict[str, str],
                  keys: dict[str, str], timings: dict[str, float], gate: float | None = None,
                  suffix: str = "", reuse: dict[str, Path] | None = None) -> dict[str, Path]:
    """Each set's evaluation of one model into folder/eval/<set><key><suffix>; their folders.
    `gate`: the call gate of a fine-tuned model (default `p.call_gate`); `reuse`: each set's plain
    evaluation, whose answers the gated one copies where its gate keeps their first token."""
    out = {}
    gate = p.call_gate if gate is None else gate
    for which in p.sets:
        dest = folder / "eval" / f"{which}{keys.get(which, '')}{suffix}"
        spec = recorded_spec([dest, reuse[which] if reuse else None], specs[which])
        overrides = {**p.eval_set, "model": p.model, **adapter, "data": spec, "latency_requests": 0,
                     "experiment": p.experiment, "wandb": p.wandb, "wandb_group": p.experiment,
                     "run": f"{who}/{which}", "out": str(dest), "call_gate": gate if adapter else None,
                     "reuse": str(reuse[which]) if reuse and adapter and gate is not None else None}
        with ex.stage(f"evaluate {who} on {which}", timings):
            if finished(dest):  # rescored from its record: no model, no adapter needed
                rescore(dest, ex.eval_params(p.eval_params, overrides), spec)
            else:
                in_fresh_process(ex.evaluate_model, p.eval_params, overrides)
        keep_predictions(dest)
        out[which] = dest
    return out


def bfcl_plan(p: HeadlineParams, who: str, folder: Path, adapter: dict[str, Any], gate: float | None = None,
              suffix: str = "", reuse: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """Where a model's BFCL run lives, and the BFCL runner's overrides for it."""
    gen = ex.eval_params(p.eval_params, {**p.eval_set, "model": p.model})
    dest = bfcl_folder(folder, p, gen.format, adapter, suffix)
    gate = p.call_gate if gate is None else gate
    return dest, {"model": p.model, **adapter, "categories": p.bfcl_categories, "limit": p.bfcl_limit,
                  "call_gate": gate if adapter and gate is not None else "none", "experiment": p.experiment,
                  "run": f"{who}/bfcl", "out": str(dest), "wandb": p.wandb, "wandb_group": p.experiment,
                  "reuse": str(reuse) if reuse and adapter and gate is not None else None,
                  # the format always: the one the recipe's sets are evaluated (and its adapter trained) in,
                  # not the model's default (Gemma's is functiongemma); the other keys only when the recipe sets them
                  **{k: getattr(gen, k) for k in ex.BFCL_SHARED_KEYS if k in p.eval_set or k == "format"},
                  **({"max_new_tokens": p.bfcl_max_new_tokens} if p.bfcl_max_new_tokens else {})}


def run_bfcl(p: HeadlineParams, who: str, folder: Path, adapter: dict[str, Any], timings: dict[str, float],
             gate: float | None = None, suffix: str = "", reuse: Path | None = None) -> Path:
    from common.bfcl.run import run as bfcl_run  # (the BFCL runner imports the engines)
    dest, overrides = bfcl_plan(p, who, folder, adapter, gate, suffix, reuse)
    with ex.stage(f"BFCL {who}", timings):
        if finished(dest):  # rescored from its record
            rescore_bfcl(dest, BFCLParams(**overrides).resolved())
        else:
            in_fresh_process(bfcl_run, overrides)
    keep_predictions(dest)
    return dest


def dev_gate(p: HeadlineParams, dev_dir: Path, spec: str) -> dict[str, Any]:
    """The call gate chosen on the dev split from plain decoding's P(call) at the first token
    (`calibrate.choose_threshold`: the most calls at dev no-call accuracy >= `gate_from_dev`)."""
    # calibrate imports the engines (torch): only a dev gate needs it
    from common.evaluation.calibrate import choose_threshold
    expects = {s.id: bool(s.expected_calls) for s in load_data(spec)}
    rows = [r for r in read_jsonl(dev_dir / "predictions.jsonl", ("id",))
            if r["id"] in expects and r.get("p_call") is not None]
    if not rows:
        raise ValueError(f"{shown(dev_dir)} records no P(call): the gate needs a format whose calls start with "
                         "one token (hermes does), and a finished dev evaluation")
    chosen = choose_threshold([r["p_call"] for r in rows], [expects[r["id"]] for r in rows], p.gate_from_dev)
    return {**chosen, "chosen_on": shown(dev_dir), "data": spec}


def run(p: HeadlineParams, command: str) -> dict[str, Any]:
    started = time.perf_counter()
    timings: dict[str, float] = {}
    report = reports_root() / p.report
    folder = report / p.recipe
    data_p = load_params(DataParams, p.data_params, p.data_set)
    build_dir = data_p.out_dir()
    sft_set = {**p.sft_set, "model": p.model, "experiment": p.experiment, "run": p.recipe, "wandb": p.wandb,
               "wandb_group": p.experiment, "data": f"{shown(build_dir)}:train", "eval_data": shown(build_dir)}
    sft_p = load_params(SFTParams, p.sft_params, sft_set)  # every parameter checked before the first stage
    gen = ex.eval_params(p.eval_params, {**p.eval_set, "model": p.model})
    trained_format = sft_p.format or default_format(p.model)
    if p.fine_tuned and trained_format != gen.format:
        raise UserError(f"the recipe trains in format {trained_format!r} but evaluates in {gen.format!r}: set the "
                        "same `format` in sft_set and eval_set")
    if p.gate_from_dev is not None and p.reuse_plain and gen.temperature != 0:
        raise UserError(f"reuse_plain copies plain answers into the gated pass, which holds only for greedy decoding; "
                        f"eval temperature is {gen.temperature}: set reuse_plain: false or temperature: 0")
    held_p = load_params(DataParams, p.held_out_params)

    # the held-out set first: the live build keeps its requests out (live_exclude_eval_of)
    with ex.stage(f"build the held-out set ({held_p.name})", timings):
        held_card = with_samples_sha256(in_fresh_process(build, held_p), held_p.out_dir())
    with ex.stage(f"build the data ({data_p.name})", timings):
        card = with_samples_sha256(in_fresh_process(build, data_p), build_dir)
    specs = {w: data_spec(w, build_dir, held_p.out_dir()) for w in SETS}
    keys = {w: split_key(d, c, split) for w, d, c, split in (
        ("dev", build_dir, card, "eval"), ("transfer", build_dir, card, "transfer"),
        ("held_out", held_p.out_dir(), held_card, "eval")) if w in p.sets}
    if not p.fine_tuned:
        return untrained_only(p, report, specs, keys, timings, started, command)
    with ex.stage(f"train {p.recipe}", timings):
        tr = trained(p, folder, keys, sft_set)
    trained_on = trained_on_split(tr, card, build_dir)
    adapter = ex.adapter_of(tr)
    mine = evaluate_sets(p, p.recipe, folder, adapter, specs, keys, timings)
    bfcl_dir = run_bfcl(p, p.recipe, folder, adapter, timings) if p.bfcl else None
    gated: dict[str, Any] | None = None
    if p.gate_from_dev is not None:
        gate = dev_gate(p, mine["dev"], specs["dev"])
        write_json(folder / "call_gate.json", gate)
        adapter_card.keep_gate(adapter["adapter"], gate)  # `--adapter` applies it, the model card shows it
        print(f"call gate chosen on dev: {gate['threshold']:.4f} (dev calls {gate['call_recall']:.1%}, "
              f"no call {gate['no_call_accuracy']:.1%}, AUC {gate['auc']:.3f})")
        reuse = mine if p.reuse_plain else None
        g_evals = evaluate_sets(p, f"{p.recipe}+gate", folder, adapter, specs, keys, timings, gate["threshold"],
                                "-gate", reuse)
        g_bfcl = run_bfcl(p, f"{p.recipe}+gate", folder, adapter, timings, gate["threshold"], "-gate",
                          bfcl_dir if p.reuse_plain else None) if p.bfcl else None
        gated = {"gate": {k: v for k, v in gate.items() if k != "samples"}, "dirs": g_evals, "bfcl_dir": g_bfcl}
    base: dict[str, Path] = {}
    unpaired: dict[str, str] = {}
    base_bfcl = None
    if p.untrained:
        base, base_bfcl = evaluate_untrained(p, report, specs, keys, timings, command)
    else:
        base, unpaired = recorded_untrained(p, report, specs, keys, timings)
    timings["total"] = round(time.perf_counter() - started, 1)
    before = read_json(folder / "results.json", "recipe results") if (folder / "results.json").is_file() else {}
    results = {
        "recipe": p.recipe, "description": p.description, "model": p.model, "command": command,
        "params": p.model_dump(), "data": {"build": shown(build_dir), "params": card["params"],
                                           "trained_on_sha256": trained_on,
                                           "live": card.get("live"), "splits": {
                                               k: {"samples": v["samples"], "sha256": v["samples_sha256"],
                                                   "content_sha256": v["content_sha256"]}
                                               for k, v in card["splits"].items()}},
        "train": ex.training_summary(tr), "recipe_text": recipe_text(tr["params"], tr.get("precision")),
        "evals": {w: {"dir": shown(d), **kinetic_row(w, results_of(d)), "by_category": by_category(d, specs[w])}
                  for w, d in mine.items()},
        # each dev verdict by sample id: the report pairs every recipe with the headline on them
        "dev_correct": {v.id: v.correct for v in verdicts(mine["dev"])} if "dev" in mine else None,
        "untrained": {w: shown(d) for w, d in base.items()},
        "paired": {w: paired(mine[w], base[w]) for w in mine if w in base},
        "unpaired": unpaired,  # untrained: false: each set without a standing untrained record, and why
        "bfcl": bfcl_summary(bfcl_dir) if bfcl_dir else None,
        "untrained_bfcl": shown(base_bfcl) if base_bfcl else None,
        "gated": {"gate": gated["gate"], "answers_copied": copied_answers([*gated["dirs"].values(), gated["bfcl_dir"]]),
                  "evals": {w: {"dir": shown(d), **kinetic_row(w, results_of(d))} for w, d in gated["dirs"].items()},
                  "paired": {w: paired(d, base[w]) for w, d in gated["dirs"].items() if w in base},
                  "bfcl": bfcl_summary(gated["bfcl_dir"]) if gated["bfcl_dir"] else None} if gated else None,
        # this invocation's stages (a recorded evaluation is rescored in seconds), and those of the first
        # run that made the recipe's results, kept across reruns
        "timings": timings, "first_run_timings": before.get("first_run_timings") or before.get("timings") or timings,
        "provenance": provenance(), "complete": True}
    write_json(folder / "results.json", results)
    readme = write_report(report, p.headline, p.target)
    print(f"headline recipe {p.recipe} done in {timings['total'] / 60:.1f} min; report: {shown(readme)}")
    return results


def planned_stages(p: HeadlineParams, folder: Path, keys: dict[str, str]) -> list[Path]:
    """The folders of every evaluation of the recipe's adapter (plain, then gated)."""
    suffixes = ["", "-gate"] if p.gate_from_dev is not None else [""]
    return [folder / "eval" / f"{w}{keys.get(w, '')}{x}" for x in suffixes for w in p.sets] + \
        ([folder / f"bfcl{x}" for x in suffixes] if p.bfcl else [])


def trained(p: HeadlineParams, folder: Path, keys: dict[str, str], sft_set: dict[str, Any]) -> dict[str, Any]:
    """The recipe's training run: trained (or resumed, or found finished in runs/), and its record kept
    in `<folder>/train/`; when every evaluation of the adapter is already recorded (a fresh clone
    of committed results without runs/), that record stands in and nothing is trained."""
    record = folder / "train" / "results.json"
    stages = planned_stages(p, folder, keys)
    recorded_evals = [shown(d) for d in stages if finished(d)]
    if record.is_file() and len(recorded_evals) == len(stages):
        tr = read_json(record, "training record")
        if "outputs" in tr:
            if not ex.run_dir(tr).is_dir():
                print(f"every evaluation of recipe {p.recipe} is recorded under {shown(folder)}: rescoring them "
                      f"without its adapter (not on this machine; delete {shown(folder)} to train again)", flush=True)
            return tr
    tr = in_fresh_process(ex.train, "sft", p.sft_params, sft_set)
    tr["weights_sha256"] = weights_sha256(ex.run_dir(tr))
    had = read_json(record, "training record") if record.is_file() else {}
    if recorded_evals and had.get("weights_sha256") not in (None, tr["weights_sha256"]):
        # training again (a machine without runs/) must give the same weights for the recorded
        # evaluations to stand beside the new ones; only the recorded hash can tell
        raise UserError(f"the adapter trained now ({tr['weights_sha256'][:12]}) is not the one whose evaluations are "
                        f"recorded under {shown(folder)} ({(had.get('weights_sha256') or 'unrecorded')[:12]}; "
                        f"{len(recorded_evals)} of them, first {recorded_evals[0]}); delete that folder's eval/ and "
                        "bfcl*/ folders to evaluate this adapter (git keeps the old ones)")
    if recorded_evals and had.get("weights_sha256"):
        print(f"the adapter trained again is identical to the recorded one ({tr['weights_sha256'][:12]}): its "
              f"{len(recorded_evals)} recorded evaluations stand", flush=True)
    shutil.rmtree(folder / "train", ignore_errors=True)
    ex.keep_training(tr, folder / "train", summary=False)
    write_json(record, tr)
    return tr


def evaluate_untrained(p: HeadlineParams, report: Path, specs: dict[str, str], keys: dict[str, str],
                       timings: dict[str, float], command: str) -> tuple[dict[str, Path], Path | None]:
    """The untrained model on the recipe's sets and BFCL; its latest rows in <report>/untrained/results.json."""
    base = evaluate_sets(p, "untrained", report / "untrained", {}, specs, keys, timings)
    base_bfcl = (run_bfcl(p, "untrained", report / "untrained", {}, timings) if p.bfcl
                 else recorded_bfcl(*bfcl_plan(p, "untrained", report / "untrained", {})))
    write_json(report / "untrained" / "results.json", {
        "model": p.model, "command": command,
        "evals": {w: {"dir": shown(d), **kinetic_row(w, results_of(d))} for w, d in base.items()},
        "bfcl": bfcl_summary(base_bfcl) if base_bfcl else None, "provenance": provenance(), "complete": True})
    return base, base_bfcl


def recorded_untrained(p: HeadlineParams, report: Path, specs: dict[str, str], keys: dict[str, str],
                       timings: dict[str, float]) -> tuple[dict[str, Path], dict[str, str]]:
    """`untrained: false`: the untrained model's recorded evaluations of the recipe's sets that still
    stand, rescored to pair the recipe with (nothing is generated); and, for each set left unpaired,
    why: no finished record, or one `rescore` refuses (other generation settings, answers to prompts
    that have changed since), in the words of its refusal, which say what to do."""
    base, unpaired = {}, {}
    for which in p.sets:
        dest = report / "untrained" / "eval" / f"{which}{keys.get(which, '')}"
        if not finished(dest):
            unpaired[which] = f"{shown(dest)} holds no finished evaluation (untrained: true makes it)"
            continue
        try:
            base.update(evaluate_sets(p.model_copy(update={"sets": [which]}), "untrained", report / "untrained", {},
                                      specs, keys, timings))
        except UserError as err:  # refused before it is scored: no result is written over
            unpaired[which] = str(err)
    for which, why in unpaired.items():
        print(f"not paired with the untrained model on {which}: {why}", flush=True)
    return base, unpaired


def untrained_only(p: HeadlineParams, report: Path, specs: dict[str, str], keys: dict[str, str],
                   timings: dict[str, float], started: float, command: str) -> dict[str, Any]:
    """`fine_tuned: false`: the untrained model's rows alone, then the report."""
    evaluate_untrained(p, report, specs, keys, timings, command)
    readme = write_report(report, p.headline, p.target)
    print(f"untrained rows done in {(time.perf_counter() - started) / 60:.1f} min; report: {shown(readme)}")
    return read_json(report / "untrained" / "results.json", "untrained rows")


def by_category(eval_dir: Path, spec: str) -> dict[str, dict[str, Any]] | None:
    """Accuracy per BFCL-live category on a live split (a sample's notes name its category)."""
    category = {s.id: (s.notes or "").split(";")[0] for s in load_data(spec)}
    found: dict[str, list[bool]] = {}
    for v in verdicts(eval_dir):
        if category.get(v.id, "").startswith("live_"):
            found.setdefault(category[v.id], []).append(v.correct)
    return {c: {"n": len(xs), "accuracy": sum(xs) / len(xs)} for c, xs in sorted(found.items())} or None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = ArgumentParser(prog="python -m common.experiments.headline", description=__doc__.split("\n\n")[0])
    parser.add_argument("params", nargs="*", default=["params/headline.yaml"], help="YAML files, merged in order")
    add_set_argument(parser, HeadlineParams)
    args = parser.parse_args(argv)
    command = invocation("python -m common.experiments.headline", args.params, args)
    return run(load_params(HeadlineParams, args.params, overrides_of(args)), command)


if __name__ == "__main__":
    cli(main)
