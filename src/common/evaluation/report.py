"""The markdown summary of one evaluation run, grouped as the references report their metrics."""

from __future__ import annotations

from typing import Any

from common.markdown import number, pct, seconds


def _decision_rows(d: dict[str, Any] | None, generation: dict[str, Any]) -> list[str]:
    if not d or not d["n"]:
        return []
    auc = number(d["auc"], 3)
    gate = generation.get("call_gate")
    return [f"| decision | call/no-call ROC AUC of P(call) at the first token (n={d['n']}) | {auc} |",
            f"| decision | mean P(call) where a call / no call is expected | "
            f"{number(d['mean_p_call_when_call_expected'])} / {number(d['mean_p_call_when_none_expected'])} |",
            f"| decision | accuracy of \"call iff P(call) >= 0.5\" | {pct(d['accuracy_at_half'])} |",
            f"| decision | call gate used when decoding | {'none (plain decoding)' if gate is None else gate} |"]


def summary_table(results: dict[str, Any]) -> str:
    """The run's metrics as a markdown table, grouped as the references report them."""
    m = results["metrics"]
    k, slm, st, lat = m["kinetic"], m["slm"], m["smol_tools"], m["kinetic"]["latency"]
    ci = k.get("accuracy_ci95")
    lines = [
        f"## {results['model']}{' + ' + results['adapter'] if results['adapter'] else ''} "
        f"on {results['data']} ({results['n_samples']} samples, format {results['format']})", "",
        "| group | metric | value |", "|---|---|---|",
        f"| Kinetic-4B | accuracy (tool + args) | {pct(k['accuracy'])}"
        + (f" (95% CI {pct(ci[0])}–{pct(ci[1])})" if ci else "") + " |",
        f"| Kinetic-4B | tool-name accuracy | {pct(k['tool_name_accuracy'])} |",
        f"| Kinetic-4B | failure rate (no valid call) | {pct(k['failure_rate'])} |",
        f"| Kinetic-4B | latency p50 / p95 (1 request, n={lat['n']}) | {seconds(lat['p50_s'])} / {seconds(lat['p95_s'])} |",
        f"| SLM paper | exact match | {pct(slm['exact_match'])} |",
        f"| SLM paper | argument P / R / F1 | {pct(slm['argument_precision'])} / "
        f"{pct(slm['argument_recall'])} / {pct(slm['argument_f1'])} |",
        f"| SLM paper | tool-select F1 | {pct(slm['tool_select_f1'])} |",
        f"| SLM paper | hallucination-free rate | {pct(slm['hallucination_free_rate'])} |",
        f"| smol-tools | tool selection P / R / F1 | {pct(st['tool_selection_precision'])} / "
        f"{pct(st['tool_selection_recall'])} / {pct(st['tool_selection_f1'])} |",
        f"| smol-tools | JSON validity | {pct(st['json_validity'])} |",
        f"| smol-tools | argument correctness | {pct(st['argument_correctness'])} |",
        f"| smol-tools | no-tool accuracy | {pct(st['no_tool_accuracy'])} |",
        *_decision_rows(m.get("decision"), results.get("generation") or {}),
        "", "| scenario | n | accuracy | tool-selection F1 |", "|---|---|---|---|",
        *(f"| {s} | {d['count']} | {pct(d['accuracy'])} | {pct(d['tool_selection_f1'])} |"
          for s, d in st["per_scenario"].items()),
        "", "Error kinds: " + (", ".join(f"{e} {n}" for e, n in m["error_kinds"].items()) or "none"),
    ]
    t, tp = results.get("timings", {}), results["throughput"]
    if t:
        n = results.get("invocations", 1)
        lines += ["", "Times" + (f" (summed over {n} invocations)" if n > 1 else "") + ": "
                  + ", ".join(f"{k} {v:.1f} s" for k, v in t.items()),
                  f"Batched throughput: {tp['new_tokens_per_s'] or 0:.1f} new tokens/s, "
                  f"{tp['samples_per_s'] or 0:.2f} samples/s; {tp['truncated']} outputs hit max_new_tokens."]
    return "\n".join(lines) + "\n"


