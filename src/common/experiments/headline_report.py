"""The headline recipe's report (`common.experiments.headline`): BFCL beside the published small
models, the headline recipe against the untrained model on each set, and the ablation table,
drawn from every finished recipe's results.json under the report folder."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from common import bfcl_data
from common.evaluation.checker import Verdict
from common.evaluation.metrics import head_to_head, paired_difference
from common.experiments.compare import results_of
from common.formats.base import PROMPT_VERSION
from common.jsonio import write_json
from common.markdown import pct
from common.provenance import local_path, shown

SET_TEXT = {"dev": "dev split (live toolkits held back; recipes are chosen here)",
            "transfer": "transfer split (live toolkits never trained on; tested once)",
            "held_out": "the project's held-out set (data/offline-default, 300 written + real requests)",
            "suite": "the 40-case everyday suite"}
# Published non-live BFCL scores of small models (issue 18's table): simple is the leaderboard's
# mean of python, java and javascript where marked, irrelevance non-live.
# The first row is SmolLM2-135M's bar (issue 18); a recipe names its own with `target`.
PUBLISHED = [
    ("FunctionGemma-270M-it", {"simple_python": 0.616, "multiple": 0.635, "parallel": 0.39,
                               "parallel_multiple": 0.295, "irrelevance": 0.737},
     "google/functiongemma-270m-it model card"),
    ("Granite-4.0-350M", {"simple_python": 0.83, "multiple": 0.845, "parallel": 0.70, "parallel_multiple": 0.555,
                          "irrelevance": 0.767}, "BFCL v4 leaderboard"),
    ("Hammer2.1-0.5B", {"simple_python": 0.833, "multiple": 0.81, "parallel": 0.69, "parallel_multiple": 0.515,
                        "irrelevance": 0.85}, "BFCL v4 leaderboard"),
    ("Qwen3-0.6B (FC)", {"simple_python": 0.642, "multiple": 0.86, "parallel": 0.675, "parallel_multiple": 0.695,
                         "irrelevance": 0.808}, "BFCL v4 leaderboard"),
    ("xLAM-1b-fc-r", {"simple_python": 0.717, "multiple": 0.86, "parallel": 0.05, "parallel_multiple": 0.02,
                      "irrelevance": 0.067}, "BFCL v3"),
]


# BFCL's error types (its AST checker's `error_type`), in words; a type not listed is shown as BFCL names it.
BFCL_ERRORS = {
    "ast_decoder:decoder_failed": "no call could be read from the answer",
    "simple_function_checker:wrong_count": "no call (or several) where one was needed",
    "multiple_function_checker:wrong_count": "no call (or several) where one was needed",
    "parallel_function_checker_no_order:wrong_count": "the wrong number of calls",
    "parallel_function_checker_no_order:cannot_find_match": "a call that matches none of the expected ones",
    "simple_function_checker:wrong_func_name": "the wrong function",
    "simple_function_checker:missing_required": "a required argument left out",
    "simple_function_checker:missing_optional": "an optional argument the answer needs left out",
    "simple_function_checker:unexpected_param": "an argument the function does not take",
    "type_error:simple": "an argument of another Python type (15.0 for an int, 5 for a float)",
    "type_error:nested": "a list or dict element of another type",
    "value_error:string": "a string argument's value",
    "value_error:others": "a number's or boolean's value",
    "value_error:list/tuple": "a list's value",
    "value_error:dict_key": "a dict's keys",
    "irrelevance_error:decoder_success": "a call where none was needed",
}


def error_rows(rows: list[tuple[str, dict[str, Any]]], top: int = 3) -> list[str]:
    """Where each BFCL row's wrong answers are: per category, the commonest of BFCL's error types
    with their share of that category's wrong answers (what limits a recipe, by the benchmark's own
    classification)."""
    lines = ["| model | category | wrong | commonest errors (BFCL's error type: share of the wrong answers) |",
             "|---|---|---|---|"]
    for name, b in rows:
        for category in bfcl_data.BENCHMARK_CATEGORIES:
            kinds = ((b["per_category"].get(category) or {}).get("bfcl_error_types")) or {}
            wrong = sum(kinds.values())
            if not wrong:
                continue
            by_words: Counter[str] = Counter()
            for kind, n in kinds.items():
                by_words[BFCL_ERRORS.get(kind, kind)] += n
            lines.append(f"| {name} | {category} | {wrong} | "  # ties: in BFCL's order
                         + "; ".join(f"{w}: {pct(n / wrong)}" for w, n in by_words.most_common(top)) + " |")
    return lines


def published(name: str) -> dict[str, float]:
    """The published row `name` (a model of PUBLISHED), or a one-line error naming the choices."""
    for row, scores, _ in PUBLISHED:
        if row == name:
            return scores
    raise ValueError(f"unknown published model {name!r} for the target; use one of "
                     + ", ".join(row for row, _, _ in PUBLISHED))


def bfcl_summary(folder: Path) -> dict[str, Any]:
    res = results_of(folder)
    b = res["metrics"]["bfcl"]
    return {"dir": shown(folder), "agreement": b["agreement"], "leaderboard": b["leaderboard"],
            "per_category": {c: {k: d.get(k) for k in ("n", "bfcl_accuracy", "bfcl_accuracy_ci95", "project_accuracy",
                                                         "agreement", "parse_valid_no_call", "bfcl_error_types")}
                             for c, d in b["per_category"].items()},
            "decision": res["metrics"].get("decision"), "max_new_tokens": res["params"].get("max_new_tokens"),
            "prompt_version": res.get("prompt_version", 1)}  # results scored before it was recorded: version 1


#: The mark of a BFCL row answered before prompts listed a tool's keys sorted, and its note.
OLD_PROMPTS = " ‡"
OLD_PROMPTS_NOTE = ("‡ BFCL answered with the prompts of before session 21 (`prompt_version` 1): a tool's keys in "
                    "BFCL's order, `required` before `properties`, an order no training prompt had; kept as measured "
                    "(LOG.md, 2026-12-01), until that model runs on BFCL again.")


def old_prompts(bfcl: dict[str, Any] | None) -> str:
    """The mark of a BFCL summary answered at an older prompt version ('' for none or the current one)."""
    return OLD_PROMPTS if bfcl and bfcl.get("prompt_version", 1) < PROMPT_VERSION else ""


def old_prompts_note(summaries: Any) -> list[str]:
    """The lines that explain the mark under a table, where any of its BFCL summaries carries it."""
    return ["", OLD_PROMPTS_NOTE] if any(old_prompts(b) for b in summaries) else []


# -- the report ----------------------------------------------------------------------
def recipes(report: Path) -> dict[str, dict[str, Any]]:
    """Every finished recipe under `report`, by name."""
    out = {}
    for path in sorted(report.glob("*/results.json")):
        r = json.loads(path.read_text())
        if r.get("complete") and "recipe" in r:
            out[r["recipe"]] = r
    return out


def _cell(value: float | None, target: float | None = None) -> str:
    if value is None:
        return "n/a"
    mark = "" if target is None else (" ✓" if value >= target else " ✗")
    return pct(value) + mark


def bfcl_rows(found: dict[str, dict[str, Any]], headline: str, untrained: dict[str, Any] | None,
              model: str, gated: bool = True) -> list[tuple[str, dict[str, Any]]]:
    """(row name, BFCL summary) of the untrained model, the headline and every other recipe, plain
    and (with `gated`) with the call gate chosen on dev."""
    rows = [(f"{model}, untrained{old_prompts(untrained)}", untrained)] if untrained else []
    for n, r in sorted(found.items(), key=lambda kv: (kv[0] != headline, kv[0])):
        name = f"{r['model']} + recipe `{n}`" + (" (headline)" if n == headline else "")
        rows += [(name + old_prompts(r["bfcl"]), r["bfcl"])] if r.get("bfcl") else []
        if gated and (r.get("gated") or {}).get("bfcl"):
            rows.append((f"{name}, call gate chosen on dev ({gate_text(r['gated']['gate'])}){old_prompts(r['gated']['bfcl'])}",
                         r["gated"]["bfcl"]))
    return rows


def bfcl_table(found: dict[str, dict[str, Any]], headline: str, untrained: dict[str, Any] | None,
               model: str, target: str = PUBLISHED[0][0]) -> list[str]:
    cats = list(bfcl_data.BENCHMARK_CATEGORIES)
    lines = ["| model | " + " | ".join(cats) + " | irrelevance: parse-valid no call | checkers agree | source |",
             "|---" * (len(cats) + 4) + "|"]
    bar = published(target)
    for name, scores, source in PUBLISHED:
        name += " (the target)" if name == target else ""
        lines.append(f"| {name} | " + " | ".join(_cell(scores.get(c)) for c in cats) + f" | n/a | n/a | {source} |")
    rows = bfcl_rows(found, headline, untrained, model)
    for name, b in rows:
        per = b["per_category"]
        lines.append(f"| {name} | " + " | ".join(_cell((per.get(c) or {}).get("bfcl_accuracy"),
                                                       bar[c] if "recipe" in name else None) for c in cats)
                     + f" | {_cell((per.get('irrelevance') or {}).get('parse_valid_no_call'))}"
                     + f" | {pct(b['agreement'])} | this repository, `{b['dir']}` |")
    return lines + old_prompts_note(b for _, b in rows)


def trained_elsewhere(r: dict[str, Any]) -> bool:
    """Whether the recipe's adapter recorded a training split other than its build's (rebuilt since)."""
    return r["data"].get("trained_on_sha256") not in (None, r["data"]["splits"]["train"]["sha256"])


def trained_on_text(r: dict[str, Any]) -> str:
    """A warning when the adapter's training split is not the build's (rebuilt since); '' when it is."""
    had, now = r["data"].get("trained_on_sha256"), r["data"]["splits"]["train"]["sha256"]
    if had is None:
        return " (The training run did not record its split's hash: runs made before commit 3d3e321 did not.)"
    return "" if had == now else (f" **The adapter trained on another build of this data** (train samples "
                                  f"{had[:8]}, the build now {now[:8]}).")


def versus(r: dict[str, Any], head: dict[str, Any] | None) -> str:
    """Recipe `r` minus the headline on the dev split, paired on the same samples: the difference
    with its 95% paired bootstrap interval and McNemar's p; n/a where either did not record its
    dev verdicts (`dev_correct`, recorded since session 18) or they are not the same samples."""
    a, b = r.get("dev_correct"), (head or {}).get("dev_correct")
    if not a or not b or set(a) != set(b):
        return "n/a"
    va, vb = ([Verdict(id=i, scenario="dev", correct=c[i], error_kind=None, expected_names=[], output_names=[])
               for i in sorted(a)] for c in (a, b))
    diff, p = paired_difference(va, vb), head_to_head(va, vb)["mcnemar_exact_p"]
    ci = diff["ci"] or [float("nan")] * 2
    return f"{100 * diff['difference']:+.1f} ({100 * ci[0]:+.1f} to {100 * ci[1]:+.1f}), p {p:.2g}"


def gate_text(gate: dict[str, Any]) -> str:
    return f"P(call) ≥ {gate['threshold']:.3f}: dev no-call accuracy ≥ {pct(gate['target_no_call_accuracy'])}"


def copied_text(copied: dict[str, int] | None) -> str:
    if not copied or not copied["of"]:
        return ""
    return (f"; {copied['copied']} of its {copied['of']} answers, on these sets and BFCL, were the plain answers "
            "the gate kept, copied rather than generated again")


def paired_rows(paired_sets: dict[str, Any]) -> list[str]:
    lines = ["| set | n | recipe | untrained | difference (95% paired bootstrap CI) | McNemar p | "
             "needs a call: n, recipe / untrained | needs none: n, recipe / untrained |", "|---|---|---|---|---|---|---|---|"]
    for which, d in paired_sets.items():
        diff = d["difference"]
        ci = diff.get("ci") or [float("nan")] * 2
        kinds = [(k := (d.get("by_kind") or {}).get(kind)) and
                 f"{k['n']}, {_cell(k['accuracy'])} / {_cell(k['untrained_accuracy'])}" or "n/a"
                 for kind in ("call", "no_call")]
        lines.append(f"| {SET_TEXT[which]} | {d['n']} | {pct(d['accuracy'])} | {pct(d['untrained_accuracy'])} | "
                     f"{100 * diff['difference']:+.1f} ({100 * ci[0]:+.1f} to {100 * ci[1]:+.1f}) | "
                     f"{d['mcnemar_exact_p']:.3g} | {kinds[0]} | {kinds[1]} |")
    return lines


def unpaired(evals: dict[str, Any], paired_sets: dict[str, Any]) -> list[str]:
    """The sets of `evals` that `paired_sets` leaves out."""
    return [w for w in evals if w not in paired_sets]


def not_paired_rows(evals: dict[str, Any], why: dict[str, str] | None = None) -> list[str]:
    """The recipe's own rows while no evaluation of the untrained model pairs them: none made yet,
    or (`why`, recorded by an `untrained: false` run) none that still stands, each set's reason below."""
    intro = ("No standing evaluation of the untrained model pairs these sets (the recipe ran with `untrained: false`); "
             "why, set by set, below." if why else
             "The untrained model has not been evaluated on these sets yet (the recipe ran with `untrained: false`); "
             "the recipe's command without that override adds it, resuming every recorded stage.")
    return [intro, "", "| set | n | recipe | untrained |", "|---|---|---|---|",
            *(f"| {SET_TEXT[w]} | {e['n']} | {pct(e['accuracy'])} | {'not paired' if why else 'not evaluated yet'} |"
              for w, e in evals.items()), *(unpaired_note(evals, {}, why) if why else [])]


def unpaired_note(evals: dict[str, Any], paired_sets: dict[str, Any], why: dict[str, str] | None,
                  named: Any = ()) -> list[str]:
    """The sets the recipe was evaluated on that no standing untrained evaluation pairs, each with
    the reason the run recorded (`untrained: false`); a set already `named` above is only referred to."""
    left = unpaired(evals, paired_sets)
    if not left:
        return []
    return ["", "Not paired with the untrained model:", "",
            *(f"- {SET_TEXT[w]}: " + ("as above" if w in named else (why or {}).get(w, "no untrained evaluation recorded"))
              for w in left)]


def untrained_bfcl(found: dict[str, dict[str, Any]], report: Path) -> dict[str, Any] | None:
    """The untrained model's BFCL row: a recipe's, else the latest untrained-only run's."""
    for r in found.values():
        if r.get("untrained_bfcl") and (local_path(r["untrained_bfcl"]) / "results.json").is_file():
            return bfcl_summary(local_path(r["untrained_bfcl"]))
    alone = report / "untrained" / "results.json"
    return json.loads(alone.read_text()).get("bfcl") if alone.is_file() else None


def write_report(report: Path, headline: str, target: str | None = None) -> Path:
    """`target`: the published row the recipes' BFCL cells are marked against; default the headline
    recipe's recorded `target`, else FunctionGemma-270M's."""
    found = recipes(report)
    head = found.get(headline)
    target = target or (head or {}).get("params", {}).get("target") or PUBLISHED[0][0]
    alone = report / "untrained" / "results.json"
    model = head["model"] if head else next((r["model"] for r in found.values()),
                                            json.loads(alone.read_text())["model"] if alone.is_file() else "the model")
    lines = [f"# The headline recipe: {model} fine-tuned for BFCL", "",
             ("Made by `python -m common.experiments.headline` (issue 18; the commands are listed at the end); "
              "each recipe's folder holds its `results.json`, training record and evaluation folders, each with its "
              "predictions compressed (`predictions.jsonl.gz`), so this report and its paired tests rebuild from a fresh clone. "
              "BFCL's non-live categories are scored by BFCL's own AST checker; every recipe was chosen on the dev "
              "split and run on BFCL once, plain, and, where a call gate was chosen on dev, once more with it "
              "(LOG.md lists every run)."), "",
             "## BFCL non-live, BFCL's checker", "",
             ("Published rows: the leaderboard's `simple` is the mean of python, java and javascript; ours is "
              f"simple_python alone. ✓/✗: at or above {target}'s score in that category."), "",
             *bfcl_table(found, headline, untrained_bfcl(found, report), model, target), ""]
    if head:
        lines += ["## The headline recipe against the untrained model, paired", "",
                  (f"Recipe `{headline}` ({head['description']}): {head['recipe_text']}; "
                   f"{head['train']['data']['train']['sequences']} training samples of `{head['data']['build']}`, "
                   f"{head['train']['steps']} steps. Plain greedy decoding.{trained_on_text(head)} A model "
                   "that never calls scores a set's share of requests that need no call, so the last two columns "
                   "split each set by what its requests need."), "",
                  *(paired_rows(head["paired"]) + unpaired_note(head["evals"], head["paired"], head.get("unpaired"))
                    if head["paired"] else not_paired_rows(head["evals"], head.get("unpaired"))), ""]
        if head.get("gated") and head["gated"]["paired"]:
            lines += [(f"With the call gate chosen on the dev split ({gate_text(head['gated']['gate'])}; on dev it "
                       f"calls on {pct(head['gated']['gate']['call_recall'])} of the requests that need a call; the "
                       "dev row is where the threshold was chosen"
                       + copied_text(head["gated"].get("answers_copied")) + "):"), "",
                      *paired_rows(head["gated"]["paired"]),
                      *unpaired_note(head["gated"]["evals"], head["gated"]["paired"], head.get("unpaired"),
                                     named=unpaired(head["evals"], head["paired"])), ""]
    lines += ["## Ablations: what each ingredient adds", ""]
    if not found:
        lines += ["No recipe has finished yet: each fills a row here as it finishes "
                  "(`python -m common.experiments.headline params/headline.yaml`, then `params/headline/*.yaml`).", ""]
    else:
        lines += [("Same model, training budget and dev split; BFCL once per recipe and decoding. A gated row's "
                   "dev accuracy is in-sample for its threshold (chosen on those predictions). "
                   f"\"dev vs `{headline}`\": the recipe minus the headline on the same dev samples, in points, "
                   "with its 95% paired bootstrap interval and McNemar's exact p."), "",
                  f"| recipe | what | training samples | no-call share | dev accuracy | dev vs `{headline}` | "
                  "dev no-tool acc. | " + " | ".join(bfcl_data.BENCHMARK_CATEGORIES) + " |",
                  "|---" * (7 + len(bfcl_data.BENCHMARK_CATEGORIES)) + "|"]
    marked = {name for name, r in found.items() if trained_elsewhere(r)}
    for name, r in sorted(found.items()):
        live = (r["data"].get("live") or {}).get("train") or {}
        dagger = " †" if name in marked else ""
        variants = [(f"`{name}`{dagger}", r["description"], r["evals"], r.get("bfcl"),
                     "—" if name == headline else versus(r, head))]
        if r.get("gated"):
            what = f"the same adapter, call gate chosen on dev ({gate_text(r['gated']['gate'])}; dev: in-sample)"
            variants.append((f"`{name}` + gate{dagger}", what, r["gated"]["evals"], r["gated"]["bfcl"], "n/a"))
        for label, what, evals, bfcl, vs in variants:
            label += old_prompts(bfcl)
            dev = evals.get("dev") or {}
            per = (bfcl or {}).get("per_category") or {}
            lines.append(f"| {label} | {what} | {r['train']['data']['train']['sequences']} | "
                         f"{pct(live.get('no_call_share'))} | {_cell(dev.get('accuracy'))} | {vs} | "
                         f"{_cell(dev.get('no_tool_accuracy'))} | "
                         + " | ".join(_cell((per.get(c) or {}).get("bfcl_accuracy"))
                                      for c in bfcl_data.BENCHMARK_CATEGORIES) + " |")
    if marked:
        lines += ["", "† trained on an earlier build of its data: a build made now from the same parameters holds "
                  "other training samples (its results.json: `data.trained_on_sha256` against the build's). Its "
                  "evaluations stand as measured; training it again gives another adapter (delete "
                  "`runs/headline/<recipe>` and its report folder)."]
    lines += old_prompts_note(b for r in found.values() for b in (r.get("bfcl"), (r.get("gated") or {}).get("bfcl")))
    plain = bfcl_rows(found, headline, None, model, gated=False)
    if plain:
        lines += ["", "## Where the BFCL errors are", "",
                  ("Each recipe's wrong answers on BFCL (plain decoding), by BFCL's own error type, the three "
                   "commonest per category: what limits the recipe there. An answer no call could be read from "
                   "is a format failure (malformed output, or prose where a call was needed)."), "",
                  *error_rows(plain), *old_prompts_note(b for _, b in plain)]
    lines += ["", "## Commands", "", *(f"- `{r['command']}`" for r in found.values()), ""]
    path = report / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    write_json(report / "results.json", {"headline": headline, "recipes": sorted(found),
                                         "target": {"model": target, **published(target)},
                                         "published": [list(x) for x in PUBLISHED]})
    return path

