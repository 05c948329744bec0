"""Weights & Biases tracking: offline by default, online with a key, a no-op when disabled.

The mode comes from the run's parameter, or WANDB_MODE when that is `auto`. Offline runs
are written under ./wandb and uploaded later with `wandb sync wandb/offline-run-*`.
Results files remain the source of truth; W&B receives the same config and metrics.
"""

from __future__ import annotations

import difflib
import os
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
              group: str | None = None, name: str | None = None, job_type: str | None = None) -> Any:
    mode = resolve_mode(mode)
    if mode == "disabled":
        return NoRun()
    import wandb  # seconds to import, and a disabled run never needs it

    # Runs go under the project root wherever the caller runs (a notebook, a test), and
    # wandb's own console banner is replaced by one line saying where the run is.
    os.environ.setdefault("WANDB_SILENT", "true")
    run = wandb.init(project=project, group=group, name=name, job_type=job_type, config=portable(config),
                     mode=mode, reinit="finish_previous", dir=os.environ.get("WANDB_DIR", ROOT))
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
