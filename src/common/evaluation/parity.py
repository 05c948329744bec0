"""Parity of two evaluation runs of the same samples: how often a backend or precision
changes the text, the verdict and the call decision, with every changed verdict listed.

    python -m common.evaluation.parity reports/parity/transformers reports/parity/llama-f32 --out reports/parity

The first run is the reference (transformers fp32, say). Both must be finished runs of the
same data and model; only how they generated may differ. Writes `<out>/<other run>.md`
and `.json` (or prints only, without `--out`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from common.errors import ArgumentParser, UserError, cli
from common.formats.base import PROMPT_VERSION, prompt_unchanged
from common.jsonio import read_json, read_jsonl, write_json
from common.markdown import pct

SAME = ("model", "adapter", "data", "format")


def _run(folder: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    if not (folder / "results.json").is_file():
        raise UserError(f"{folder} holds no finished evaluation (results.json is missing); run it first")
    results = read_json(folder / "results.json", "evaluation results")
    predictions: dict[str, dict[str, Any]] = {}
    for r in read_jsonl(folder / "predictions.jsonl", ("id", "text")):
        predictions.setdefault(r["id"], r)  # the one `runner.score` judged: the first of each id
    verdicts = {r["id"]: r for r in read_jsonl(folder / "verdicts.jsonl", ("id", "correct"))}
    return results, predictions, verdicts


def check_same_prompts(results: dict[str, Any], ref_pred: dict[str, dict[str, Any]],
                       oth_pred: dict[str, dict[str, Any]], ids: list[str]) -> None:
    """Both runs answered the same prompts: where their answers were generated at different prompt
    versions (`formats.base.PROMPT_VERSION`), only samples whose prompt did not change between them
    (every data build's) compare; the samples are loaded only then."""
    versions = {i: (ref_pred[i].get("prompt_version", 1), oth_pred[i].get("prompt_version", 1)) for i in ids}
    differ = {i: min(v) for i, v in versions.items() if v[0] != v[1]}  # the older of the two
    if not differ:
        return
    from common.sources import load_data  # only for runs generated at different prompt versions
    tools = {s.id: s.tools for s in load_data(results["params"]["data"], results["params"].get("limit"))}
    changed = sorted(i for i, v in differ.items() if i not in tools or not prompt_unchanged(v, tools[i]))
    if changed:
        raise UserError(f"the runs answered different prompts for {len(changed)} samples (e.g. {changed[:3]}): one was "
                        f"generated before prompt_version {PROMPT_VERSION} (a tool's keys listed sorted); "
                        "generate the older run again and compare those")


def parity(reference: str | Path, other: str | Path) -> dict[str, Any]:
    ref_results, ref_pred, ref_ver = _run(Path(reference))
    oth_results, oth_pred, oth_ver = _run(Path(other))
    differ = [k for k in SAME if ref_results["params"].get(k) != oth_results["params"].get(k)]
    if differ:
        raise UserError(f"the runs differ in {differ}, not only in how they generated; compare runs of the same "
                        "model, adapter, data and format")
    ids = [i for i in ref_ver if i in oth_ver]
    if not ids or len(ids) != len(ref_ver) or len(ids) != len(oth_ver):
        raise UserError(f"the runs hold different samples ({len(ref_ver)} and {len(oth_ver)}, {len(ids)} shared)")
    check_same_prompts(ref_results, ref_pred, oth_pred, ids)
    changed, p_diff = [], []
    for i in ids:
        a, b = ref_ver[i], oth_ver[i]
        pa, pb = ref_pred[i].get("p_call"), oth_pred[i].get("p_call")
        if pa is not None and pb is not None:
            p_diff.append(abs(pa - pb))
        if a["correct"] != b["correct"] or a["error_kind"] != b["error_kind"]:
            changed.append({"id": i, "reference": {"correct": a["correct"], "error_kind": a["error_kind"],
                                                   "text": ref_pred[i]["text"]},
                            "other": {"correct": b["correct"], "error_kind": b["error_kind"],
                                      "text": oth_pred[i]["text"]}})
    n = len(ids)
    return {
        "reference": str(reference), "other": str(other), "n": n,
        "reference_generation": ref_results.get("generation"), "other_generation": oth_results.get("generation"),
        "same_text": sum(ref_pred[i]["text"] == oth_pred[i]["text"] for i in ids) / n,
        "same_verdict": sum(ref_ver[i]["correct"] == oth_ver[i]["correct"] for i in ids) / n,
        "same_verdict_and_error_kind": 1 - len(changed) / n,
        "same_call_decision": sum(bool(ref_ver[i]["output_names"]) == bool(oth_ver[i]["output_names"])
                                  for i in ids) / n,
        "accuracy": {"reference": ref_results["metrics"]["kinetic"]["accuracy"],
                     "other": oth_results["metrics"]["kinetic"]["accuracy"]},
        "max_abs_p_call_difference": max(p_diff, default=None),
        "generate_s": {"reference": ref_results["timings"].get("generate_s"),
                       "other": oth_results["timings"].get("generate_s")},
        "changed": changed,
    }


def _verdict(v: dict[str, Any]) -> str:
    return "correct" if v["correct"] else str(v["error_kind"])


def _excerpt(text: str, start: int, width: int = 90) -> str:
    cut = ("…" if start else "") + text[start:start + width] + ("…" if len(text) > start + width else "")
    return "`" + cut.replace("|", "\\|").replace("\n", "⏎").replace("`", "'") + "`"


def report(p: dict[str, Any]) -> str:
    g = p["other_generation"] or {}
    summary = (
             f"{p['n']} samples. The same text: {pct(p['same_text'])}; the same verdict: {pct(p['same_verdict'])} "
             f"(and error kind: {pct(p['same_verdict_and_error_kind'])}); the same call decision: "
             f"{pct(p['same_call_decision'])}; largest P(call) difference "
             f"{'n/a' if p['max_abs_p_call_difference'] is None else format(p['max_abs_p_call_difference'], '.4f')}. "
             f"Accuracy {pct(p['accuracy']['other'])} against the reference's {pct(p['accuracy']['reference'])}; "
             f"generation {p['generate_s']['other'] or 0:.0f} s against {p['generate_s']['reference'] or 0:.0f} s "
             f"({g.get('backend')}, {g.get('gguf') or g.get('dtype')}).")
    lines = [f"# Parity: {p['other']} against {p['reference']}", "", summary, ""]
    if p["changed"]:
        lines += ["Every sample whose verdict or error kind changed, the texts from just before they part:", "",
                  "| sample | reference | other | reference text | other text |", "|---|---|---|---|---|"]
        for c in p["changed"]:
            a, b = c["reference"]["text"], c["other"]["text"]
            start = max(0, len(os.path.commonprefix([a, b])) - 30)  # from just before they part
            lines.append(f"| {c['id']} | {_verdict(c['reference'])} | {_verdict(c['other'])} | {_excerpt(a, start)} | "
                         f"{_excerpt(b, start)} |")
    else:
        lines.append("No verdict changed.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = ArgumentParser(prog="python -m common.evaluation.parity", description=__doc__.split("\n\n")[0])
    parser.add_argument("reference", help="the reference run's folder")
    parser.add_argument("other", help="the compared run's folder")
    parser.add_argument("--out", default=None, help="write <out>/<other's name>.md and .json")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (else one line)")
    args = parser.parse_args(argv)
    p = parity(args.reference, args.other)
    text = report(p)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        name = Path(args.other).name
        write_json(out / f"{name}.json", p)
        (out / f"{name}.md").write_text(text, encoding="utf-8")
    return p


if __name__ == "__main__":
    cli(main)
