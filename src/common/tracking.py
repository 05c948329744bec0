"""Weights & Biases tracking: offline by default, online with a key, a no-op when disabled.

The mode comes from the run's parameter, or WANDB_MODE when that is `auto`. Offline runs
are written under ./wandb and uploaded later with `wandb sync wandb/offline-run-*`.
Results files remain the source of truth; W&B receives the same config and metrics.
"""

from __future__ import annotations

import difflib
import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator

from common.errors import UserError
from common.provenance import ROOT, portable

WANDB_MODES = ("auto", "online", "offline", "disabled")


def check_wandb_mode(v: str) -> str:
    """Checked with the other parameters, before any work (not when the run ends)."""
    if v not in WANDB_MODES:
        close = difflib.get_close_matches(str(v), WANDB_MODES, n=1)
        raise ValueError(f"W&B mode must be one of {', '.join(WANDB_MODES)}, not {v!r}"
                         + (f" (did you mean {close[0]!r}?)" if close else ""))
    return v


# The `wandb` parameter of every entry point.
WandbMode = Annotated[str, AfterValidator(check_wandb_mode)]


class NoRun:
    """Stands in for a W&B run when tracking is disabled (tests, CI)."""

    def log(self, *args: Any, **kwargs: Any) -> None:
        pass

    def finish(self) -> None:
        pass

    summary: dict[str, Any] = {}


def resolve_mode(mode: str) -> str:
    if mode == "auto":
        mode = os.environ.get("WANDB_MODE", "offline")
    if mode not in {"online", "offline", "disabled"}:
        raise UserError(f"unknown W&B mode {mode!r} (from WANDB_MODE); use online, offline or disabled")
    return mode


def start_run(config: dict[str, Any], mode: str = "auto", project: str = "toolcall-lab",
              group: str | None = None, name: str | None = None, job_type: str | None = None,
              tags: list[str] | None = None) -> Any:
    mode = resolve_mode(mode)
    if mode == "disabled":
        return NoRun()
    import wandb  # seconds to import, and a disabled run never needs it

    # Runs go under the project root wherever the caller runs (a notebook, a test), and
    # wandb's own console banner is replaced by one line saying where the run is.
    os.environ.setdefault("WANDB_SILENT", "true")
    run = wandb.init(project=project, group=group, name=name, job_type=job_type, config=portable(config),
                     mode=mode, reinit="finish_previous", dir=os.environ.get("WANDB_DIR", ROOT), tags=tags)
    where = f"upload with `wandb sync {run.settings.sync_dir}`" if mode == "offline" else run.url
    print(f"[wandb] {mode} run {run.name}: {where}", flush=True)
    return run


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested metrics as `group/name` keys, the shape W&B charts and tables expect."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) or v is None:
            out[key] = v
    return out


# -- reading an offline run back ---------------------------------------------------------
# wandb 0.31 ships no reader for an offline run's `run-<id>.wandb` (its datastore module is gone and
# the local API is unreleased), so this reads it as wandb writes it: a LevelDB log (google/leveldb
# doc/log_format.md: 32 KiB blocks of records with a 7-byte header; a file header ":W&B", magic,
# version) around wandb's own protobuf `Record`s.
_BLOCK, _HEADER = 32768, 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _records(data: bytes) -> Iterator[bytes]:
    if data[:4] != b":W&B":
        raise UserError("not a W&B run file (no :W&B header); give the run-<id>.wandb of an offline run")
    pos, parts = _HEADER, b""
    while pos + _HEADER <= len(data):
        room = _BLOCK - pos % _BLOCK
        if room < _HEADER:  # a block's trailer: too short for a header
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
        body = data[pos + _HEADER:pos + _HEADER + length]
        pos += _HEADER + length
        if kind == _FULL:
            yield body
        elif kind == _FIRST:
            parts = body
        elif kind == _MIDDLE:
            parts += body
        elif kind == _LAST:
            yield parts + body
            parts = b""
        else:  # zeros: the end of what was written
            return


def read_offline_run(folder: str | Path) -> dict[str, Any]:
    """What an offline run holds: name, group, job type, tags, config, summary, the logged history
    rows and the files it saved (`files/`, media included), from `<folder>/run-<id>.wandb`."""
    from wandb.proto import wandb_internal_pb2  # wandb's own record format; only reading a run needs it

    folder = Path(folder)
    found = sorted(folder.glob("run-*.wandb"))
    if not found:
        raise UserError(f"no run-<id>.wandb in {folder}; give an offline run's folder (wandb/offline-run-*)")
    out: dict[str, Any] = {"config": {}, "summary": {}, "history": [], "files": []}
    for raw in _records(found[0].read_bytes()):
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(raw)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out.update(name=rec.run.display_name, group=rec.run.run_group, job_type=rec.run.job_type,
                       tags=list(rec.run.tags), id=rec.run.run_id)
            out["config"].update({i.key: json.loads(i.value_json) for i in rec.run.config.update})  # wandb.init's
        elif kind == "config":
            out["config"].update({i.key: json.loads(i.value_json) for i in rec.config.update})
        elif kind == "summary":
            for i in rec.summary.update:  # a logged table or image comes as one item per field (nested_key)
                path = [i.key] if i.key else list(i.nested_key)
                place = out["summary"]
                for part in path[:-1]:
                    place = place.setdefault(part, {})
                place[path[-1]] = json.loads(i.value_json)
        elif kind == "history":
            out["history"].append({i.key or "/".join(i.nested_key): _history_value(i) for i in rec.history.item})
        elif kind == "files":
            out["files"] += [f.path for f in rec.files.files]
    # a config file wraps each value as {"value": ...}; unwrap that shape only
    out["config"] = {k: v["value"] if isinstance(v, dict) and set(v) <= {"value", "desc"} and "value" in v else v
                     for k, v in out["config"].items() if k != "_wandb"}
    return out


def _history_value(item: Any) -> Any:
    which = item.WhichOneof("value")
    if which is None:
        return json.loads(item.value_json) if item.value_json else None
    return None if which == "none" else json.loads(item.json) if which == "json" else getattr(item, which)
