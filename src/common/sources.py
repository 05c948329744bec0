"""Where samples come from: the one reader every phase uses.

A data spec is one of
- `suite:NAME`: a suite shipped in `common/suites/NAME.json`;
- `bfcl:CATEGORY`: a BFCL v4 category, read from the installed `bfcl-eval` wheel;
- `data/<build>` (its eval split) or `data/<build>:train`: a dataset built by
  `python -m common.data build params/data.yaml` (Arrow splits beside a data card);
- a samples JSONL/JSON file.
Every sample is validated where it enters (`samples.Sample`); an empty source is an error.
"""

from __future__ import annotations

import hashlib
import json
import random
from importlib import resources
from pathlib import Path
from typing import Any

from common import bfcl_data
from common.errors import UserError
from common.jsonio import read_json
from common.provenance import local_path, portable_path
from common.samples import Sample, read_samples, validate_rows

SUITE_PREFIX = "suite:"
BFCL_PREFIX = "bfcl:"
# Nested fields of a built split, stored as JSON strings (tool schemas differ in shape
# and Arrow needs one schema per column).
JSON_FIELDS = ("tools", "messages", "expected_calls")
SPLITS = ("train", "eval")
# What a build adds to each stored sample (`datacard.to_row`): counted with the tokenizer and prompt
# renderer of the build's day. Training and evaluation render every prompt again, so these are not
# what they read; a new renderer changes them (session 22's fix changed `prompt_tokens` on 19% of
# the live dev rows) and, through the token cap, rarely a sample (one train sample's tool list).
DERIVED_FIELDS = ("prompt_tokens", "n_tools")


def load_data(spec: str, limit: int | None = None) -> list[Sample]:
    """The samples of a data spec, validated; the first `limit` of them when given."""
    if spec.startswith(SUITE_PREFIX):
        name = spec[len(SUITE_PREFIX):]
        path = resources.files("common") / "suites" / f"{name}.json"
        if not path.is_file():
            shipped = sorted(p.name.removesuffix(".json") for p in (resources.files("common") / "suites").iterdir()
                             if p.name.endswith(".json"))
            raise UserError(f"no shipped suite {name!r}; shipped suites: {shipped}")
        samples = read_samples(Path(str(path)))
    elif spec.startswith(BFCL_PREFIX):
        samples = bfcl_data.category_samples(spec[len(BFCL_PREFIX):])
    elif built_split(spec):
        path, split = built_split(spec)
        samples = load_split(path, split)
    elif not local_path(spec).exists():
        raise UserError(f"no sample file or data build at {spec}; give a samples JSONL, suite:NAME, bfcl:CATEGORY "
                        "or a build (data/<name>, data/<name>:train) made by `python -m common.data build "
                        "params/data.yaml`")
    else:
        samples = read_samples(local_path(spec))
    if not samples:
        raise UserError(f"{spec} holds no samples; point --data at a non-empty file or build")
    return samples[:limit] if limit else samples


def load_samples(spec: str, limit: int | None = None, seed: int = 0) -> list[Sample]:
    """Samples of a data spec; `limit` draws that many at random (a built split is
    stored grouped by toolkit and scenario, so its first N would be a few toolkits)."""
    samples = load_data(spec)  # a missing build's error says how to build it
    if limit and limit < len(samples):
        samples = random.Random(seed).sample(samples, limit)
    return samples


def build_name(spec: str) -> str | None:
    """`data/<name>` or `data/<name>:<split>` as the build's name, built or not; None for any other spec."""
    name = spec.partition(":")[0].removeprefix("data/").strip("/")
    return name if spec.startswith("data/") and name and "/" not in name else None


def built_split(spec: str) -> tuple[Path, str] | None:
    """`data/<build>` (its eval split) or `data/<build>:train`, when that is a built dataset."""
    path, _, split = spec.partition(":") if not local_path(spec).exists() else (spec, "", "")
    if (local_path(path) / "data_card.json").is_file():
        return local_path(path), split or "eval"
    return None


def split_sha256(spec: str) -> str | None:
    """The content hash its data card gives a built split (None for files, suites and BFCL):
    what a run records of its data, so a later rebuild that changed it shows."""
    built = built_split(spec)
    if built is None:
        return None
    path, split = built
    card = read_json(path / "data_card.json", "data card")
    return (card.get("splits", {}).get(split) or {}).get("content_sha256")


def content_hash(rows: list[dict[str, Any]]) -> str:
    """SHA-256 of a split's stored rows, in order."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
    return digest.hexdigest()


def samples_hash(rows: list[dict[str, Any]]) -> str:
    """SHA-256 of a split's samples without `DERIVED_FIELDS`: what names its evaluation folders and
    says whether a rebuild changed what a run read (token counts alone do not)."""
    return content_hash([{k: v for k, v in row.items() if k not in DERIVED_FIELDS} for row in rows])


def samples_sha256(path: Path, split: str, card: dict[str, Any] | None = None) -> str:
    """The hash of a built split's samples alone (`samples_hash`: without the token counts the build
    adds): what training and evaluation read. A card written before it existed (before
    session 25) gets it computed from the stored rows, so an old build needs no rebuild."""
    card = card or read_json(path / "data_card.json", "data card")
    known = (card.get("splits", {}).get(split) or {}).get("samples_sha256")
    if known:
        return known
    return samples_hash(stored_rows(path, split))


def with_samples_sha256(card: dict[str, Any], path: Path) -> dict[str, Any]:
    """`card` with every split's `samples_sha256` (`samples_sha256`), so that a card from before
    session 25 has its stored rows read once, not at each use."""
    return {**card, "splits": {k: {**v, "samples_sha256": samples_sha256(path, k, card)}
                               for k, v in card["splits"].items()}}


def split_samples_sha256(spec: str) -> str | None:
    """`samples_sha256` of a built split's spec (None for files, suites and BFCL)."""
    built = built_split(spec)
    return samples_sha256(*built) if built else None


def portable_data(spec: str) -> str:
    """A data spec as a run records it: a file or a build by its portable path."""
    if spec.startswith((SUITE_PREFIX, BFCL_PREFIX)):
        return spec
    built = built_split(spec)
    if built:
        path, split = built
        return portable_path(path) + (f":{split}" if ":" in spec else "")
    return portable_path(local_path(spec))


def decode_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row of a built split as the fields of a `Sample`."""
    return {k: (json.loads(row[k]) if k in JSON_FIELDS else row[k]) for k in Sample.model_fields if k in row}


def from_row(row: dict[str, Any]) -> Sample:
    return Sample.model_validate(decode_row(row))


def stored_rows(path: str | Path, split: str = "eval") -> list[dict[str, Any]]:
    """The rows of one split of a build directory as stored (nested fields as JSON strings)."""
    # `datasets` takes seconds to import, and only built splits need it
    from datasets import load_from_disk

    path = Path(path)
    target = path / "dataset" if (path / "dataset").is_dir() else path
    if not (target / "dataset_dict.json").is_file():
        raise UserError(f"no built dataset at {path}; build one with "
                        f"`python -m common.data build params/data.yaml`")
    data = load_from_disk(str(target))
    if split not in data:
        raise UserError(f"{path} has no split {split!r}; it has {list(data)}")
    return list(data[split])


def load_split(path: str | Path, split: str = "eval") -> list[Sample]:
    """The samples of one split of a build directory (`data/<name>`)."""
    return validate_rows([(f"{path}:{split}[{i}]", decode_row(r)) for i, r in enumerate(stored_rows(path, split))],
                         f"{path}:{split}")
