"""A build as the Hugging Face ecosystem reads it: TRL's conversational format, with a dataset card.

    python -m common.data export data/offline-default     # also written at the end of every build

`data/<build>/hf/` holds a `datasets.DatasetDict` (`load_from_disk`) with splits train / validation
/ test, and `README.md`, the dataset card. Each row is what TRL's `SFTTrainer` takes as a
conversational sample with tools:

- `messages`: the conversation, ending with the assistant's answer: its calls in the OpenAI shape
  (`tool_calls: [{type: function, function: {name, arguments}}]`, `arguments` a JSON string, so
  that every row has one Arrow schema), or its reply when no call is expected;
- `tools`: the offered tools in the OpenAI function format, as a JSON string (tool schemas differ
  in shape, and Arrow needs one per column; TRL decodes a string `tools` itself);
- `id`, `scenario`, `toolkit`, `source`, `expected_calls` (every acceptable value, JSON): what the
  project scores by.

`arguments` stays a string as the OpenAI API sends it; a chat template that writes
`arguments | tojson` expects a dict, so decode it first (`json.loads`) for such a template.

The answer is the project's training target (`training_data.target_calls`' rule: the first
acceptable value of each argument). The project's own training renders prompts through its
format's system prompt (`common.formats`), not through a chat template's `tools`; TRL applies the
tokenizer's template, so a model trained there sees the tools as that template writes them.

Splits: a live build's `eval` (dev) is the validation split and its `transfer` split (toolkits
never trained on) the test split; an offline build's `eval` (the held-out set) is the test split,
and its validation split is `validation_share` of its train split, drawn with `seed` (train keeps
the rest, so this train split is not exactly the one the project's runs trained on).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from common.errors import UserError
from common.jsonio import read_json
from common.provenance import shown
from common.samples import Sample
from common.sources import load_split

# where each kind of sample comes from, and its terms (the card lists them for every source present)
LICENCES = {
    "bfcl_live": ("BFCL v4 live categories (gorilla-llm, the bfcl-eval wheel)", "apache-2.0"),
    "offline": ("toolcall-lab's offline writer, over the build's tool catalog", "apache-2.0"),
    "xlam": ("Salesforce/xlam-function-calling-60k", "cc-by-4.0"),
    "teacher": ("requests written by a teacher model (see the build's parameters)", "the teacher's terms"),
}


SPDX = {"apache-2.0", "cc-by-4.0"}  # the licences above the Hub knows by name


def size_category(n: int) -> str:
    """The Hub's size bucket of a dataset of n rows."""
    for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < bound:
            return label
    return "n>1M"


def source_terms(source: str) -> tuple[str, str]:
    """(origin, licence) of a sample source; augmented live samples (`bfcl_live_composed`, ...) are BFCL's."""
    for prefix, terms in LICENCES.items():
        if source == prefix or source.startswith(f"{prefix}_") or source.startswith(f"{prefix}:"):
            return terms
    return (source, "unknown: check the source")


def openai_call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """A tool call in the OpenAI shape, its arguments a JSON string."""
    return {"type": "function", "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)}}


def answer_message(sample: Sample) -> dict[str, Any]:
    """The assistant's answer: the calls trained on, or the reply when no call is expected."""
    if sample.expected_calls:
        return {"role": "assistant", "content": "",
                "tool_calls": [openai_call(c.name, c.target_arguments()) for c in sample.expected_calls]}
    return {"role": "assistant", "content": (sample.reply or "").strip(), "tool_calls": None}


def message(m: dict[str, Any]) -> dict[str, Any]:
    """A sample's message with the keys every exported message has."""
    calls = [openai_call(c["function"]["name"], c["function"]["arguments"]) for c in m.get("tool_calls") or []]
    return {"role": m["role"], "content": m.get("content") or "", "tool_calls": calls or None,
            "name": m.get("name"), "tool_call_id": m.get("tool_call_id")}


def trl_row(sample: Sample) -> dict[str, Any]:
    answer = {**answer_message(sample), "name": None, "tool_call_id": None}
    return {"id": sample.id, "messages": [message(m) for m in sample.messages] + [answer],
            "tools": json.dumps(sample.tools, ensure_ascii=False), "scenario": sample.scenario,
            "toolkit": sample.toolkit, "source": sample.source,
            "expected_calls": json.dumps([c.model_dump() for c in sample.expected_calls], ensure_ascii=False)}


def split_plan(build_dir: Path, card: dict[str, Any], validation_share: float, seed: int) -> dict[str, list[Sample]]:
    """The exported splits from the build's stored ones (see the module's docstring)."""
    stored = {name: load_split(build_dir, name) for name in card["splits"]}
    if "transfer" in stored:
        return {"train": stored["train"], "validation": stored["eval"], "test": stored["transfer"]}
    train = list(stored["train"])
    held = set(random.Random(seed).sample(range(len(train)), round(len(train) * validation_share)))
    return {"train": [s for i, s in enumerate(train) if i not in held],
            "validation": [s for i, s in enumerate(train) if i in held], "test": stored["eval"]}


def card_text(build_dir: Path, card: dict[str, Any], splits: dict[str, list[Sample]],
              terms: dict[str, tuple[str, str]], validation_share: float, seed: int) -> str:
    """The README dataset card; `terms`: each source's origin and licence."""
    # huggingface_hub's card data writes the YAML header the Hub reads (licence, task, size)
    from huggingface_hub import DatasetCardData  # seconds to import; only an export needs it

    licences = sorted({lic for _, lic in terms.values()})
    total = sum(len(v) for v in splits.values())
    spdx = len(licences) == 1 and licences[0] in SPDX
    data = DatasetCardData(
        license=licences[0] if spdx else "other", **({} if spdx else {"license_name": "; ".join(licences)}),
        language=["en"], task_categories=["text-generation"], pretty_name=f"toolcall-lab {card['name']}",
        tags=["tool-calling", "function-calling", "trl", "conversational", "toolcall-lab"],
        size_categories=[size_category(total)])
    table = ["| split | samples | scenarios | sources |", "|---|---|---|---|"]
    for name, rows in splits.items():
        table.append(f"| {name} | {len(rows)} | {mix(s.scenario for s in rows)} | {mix(s.source for s in rows)} |")
    split_note = ("`validation` is the build's dev split (`eval`: toolkits apart from training's), `test` its "
                  "`transfer` split (toolkits never trained on)." if "transfer" in card["splits"] else
                  f"`test` is the build's held-out `eval` split; `validation` is {validation_share:.0%} of its "
                  f"train split drawn with seed {seed}, and `train` the rest.")
    leak = card.get("leakage") or {}
    lines = [
        f"---\n{data.to_yaml()}\n---", "", f"# toolcall-lab: `{card['name']}`", "",
        "Tool-calling conversations in TRL's conversational format: `messages` end with the assistant's "
        "answer (tool calls in the OpenAI shape, `arguments` a JSON string), `tools` holds the offered "
        "functions (OpenAI format, a JSON string). Made by `python -m common.data build` and "
        f"`python -m common.data export {shown(build_dir)}`.", "",
        "## Splits", "", *table, "", split_note, "",
        "## Sources and licences", "", "| source | origin | licence |", "|---|---|---|",
        *[f"| {src} | {o} | {lic} |" for src, (o, lic) in terms.items()], "",
        "## Leakage check", "",
        f"Every request checked against BFCL's non-live test categories ({leak.get('checked')} samples): "
        f"{leak.get('same_request')} share a request and {leak.get('benchmark_functions')} a function with them. "
        + (f"{len(card.get('bfcl_live_ids_in_train') or [])} BFCL *live* entries are used for training: a model "
           "trained here is not scored on BFCL's live categories." if card.get("bfcl_live_ids_in_train") else ""),
        "", "## Load it", "", "```python", "from datasets import load_from_disk", "",
        f'ds = load_from_disk("{shown(build_dir)}/hf")',
        "# TRL: SFTTrainer(model=..., train_dataset=ds[\"train\"], eval_dataset=ds[\"validation\"])", "```", "",
        f"The build's own card, with the filter's counts and prompt lengths: `{shown(build_dir)}/data_card.json`.",
        ""]
    return "\n".join(lines)


def mix(values: Iterable[str | None]) -> str:
    """'single 831, parallel 469': each value's count, commonest first."""
    return ", ".join(f"{k or 'none'} {n}" for k, n in Counter(values).most_common())


def export(build_dir: str | Path, validation_share: float = 0.05, seed: int = 0) -> Path:
    """Write `<build>/hf/` (the splits and README.md) and return it."""
    # `datasets` takes seconds to import, and only an export needs it
    from datasets import Dataset, DatasetDict, DatasetInfo

    build_dir = Path(build_dir)
    if not (build_dir / "data_card.json").is_file():
        raise UserError(f"no data build at {build_dir} (no data_card.json); build one with "
                        "`python -m common.data build params/data.yaml`, then export its folder")
    card = read_json(build_dir / "data_card.json", "data build (data_card.json)")
    splits = split_plan(build_dir, card, validation_share, seed)
    terms = {src: source_terms(src) for src in sorted({s.source for rows in splits.values() for s in rows})}
    readme = card_text(build_dir, card, splits, terms, validation_share, seed)
    info = DatasetInfo(description=f"toolcall-lab {card['name']}: tool-calling conversations in TRL's "
                       "conversational format (see README.md)",
                       license=", ".join(sorted({lic for _, lic in terms.values()})))
    out = build_dir / "hf"
    DatasetDict({k: Dataset.from_list([trl_row(s) for s in v], info=info) for k, v in splits.items()}) \
        .save_to_disk(str(out))
    (out / "README.md").write_text(readme, encoding="utf-8")
    return out
