"""Built datasets on disk: Arrow splits through `datasets`, a JSON data card, a figure.

A build directory holds `dataset/` (a `datasets.DatasetDict` with `train` and
`eval`), `data_card.json` (counts per toolkit, scenario and source, prompt-length
percentiles in tokens, what the filter dropped, the catalog report, the leakage
check, the parameters and provenance, and two hashes per split: `content_sha256` of the
stored rows and `samples_sha256` of the samples alone, without the token counts the build
adds) and
`data_card.png`. Nested fields (tools, messages, expected calls) are stored as JSON
strings because tool schemas differ in shape and Arrow needs one schema per column.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from common.samples import Sample
from common.sources import JSON_FIELDS, content_hash, samples_hash


def to_row(sample: Sample, prompt_tokens: int) -> dict[str, Any]:
    d = sample.model_dump()
    row = {k: (json.dumps(d[k], ensure_ascii=False, sort_keys=True) if k in JSON_FIELDS else d[k])
           for k in d}
    row["prompt_tokens"] = prompt_tokens
    row["n_tools"] = len(sample.tools)
    return row


def save_splits(splits: dict[str, list[dict[str, Any]]], out: Path) -> None:
    from datasets import (  # seconds to import; only saving a build needs it
        Dataset,
        DatasetDict,
    )

    DatasetDict({name: Dataset.from_list(rows) for name, rows in splits.items()}).save_to_disk(str(out / "dataset"))


def percentiles(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    qs = np.percentile(values, [5, 25, 50, 75, 95, 99])
    return {**{f"p{q}": float(v) for q, v in zip((5, 25, 50, 75, 95, 99), qs)},
            "mean": float(np.mean(values)), "max": int(max(values)), "total": int(sum(values))}


def split_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def count(key: str) -> dict[str, int]:
        return dict(Counter(r[key] or "none" for r in rows).most_common())

    calls = Counter(len(json.loads(r["expected_calls"])) for r in rows)
    return {"samples": len(rows), "toolkits": count("toolkit"), "scenarios": count("scenario"),
            "sources": count("source"), "calls_per_sample": {str(k): v for k, v in sorted(calls.items())},
            "tools_per_prompt": percentiles([r["n_tools"] for r in rows]),
            "prompt_tokens": percentiles([r["prompt_tokens"] for r in rows]),
            "content_sha256": content_hash(rows), "samples_sha256": samples_hash(rows)}


def plot_card(card: dict[str, Any], splits: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """Prompt lengths per split, the scenario mix, the toolkit balance, the sources."""
    # plotting libraries take seconds to import: only a build's figure needs them
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after choosing the headless backend
    import pandas as pd  # (plotting, as above)
    import seaborn as sns  # (plotting, as above)

    rows = [{"split": s, "tokens": r["prompt_tokens"], "scenario": r["scenario"],
             "toolkit": r["toolkit"] or "none", "source": r["source"]} for s, rs in splits.items() for r in rs]
    df = pd.DataFrame(rows)
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    sns.histplot(df, x="tokens", hue="split", bins=40, stat="density", common_norm=False, element="step", ax=axes[0, 0])
    p95 = card["splits"]["train"]["prompt_tokens"].get("p95")
    if p95:
        axes[0, 0].axvline(p95, color="k", ls="--", lw=1)
        axes[0, 0].text(p95, axes[0, 0].get_ylim()[1] * 0.9, f" train p95 {p95:.0f}", fontsize=8)
    axes[0, 0].set(title=f"Prompt length ({card['tokenizer']}, {card['format']} format)", xlabel="prompt tokens")
    sns.countplot(df, x="scenario", hue="split", ax=axes[0, 1], order=sorted(df.scenario.unique()))
    axes[0, 1].set(title="Scenario mix")
    train = df[df.split == "train"]
    sns.countplot(train, y="toolkit", order=train.toolkit.value_counts().index, ax=axes[1, 0], color="C0")
    axes[1, 0].set(title="Training samples per toolkit", ylabel="")
    axes[1, 0].tick_params(axis="y", labelsize=7)
    sns.countplot(df, y="source", hue="split", ax=axes[1, 1], order=df.source.value_counts().index)
    axes[1, 1].set(title="Sources", ylabel="")
    fig.suptitle(f"Data card: {card['name']} (train {card['splits']['train']['samples']}, "
                 f"eval {card['splits']['eval']['samples']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
