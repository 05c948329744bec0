"""Where a result came from: git commit, library versions, hardware. Recorded in every results file."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CODE_PATHS = ("src", "params", "notebooks", "pyproject.toml", "requirements.txt", "requirements-models.txt")
LIBRARIES = ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "numpy", "scipy",
             "jsonschema", "wandb", "papermill")


def git_state() -> dict[str, Any]:
    def run(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  check=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
    # "dirty" means the code and parameters differ from the commit; reports and logs
    # being rewritten by the run itself do not count
    status = run("status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS)
    return {"commit": run("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": sys.version.split()[0]}
    for lib in LIBRARIES:
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            versions[lib] = None
    return versions


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(),
                            "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
        info["memory_gib"] = round(mem_kb / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        import torch
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def provenance() -> dict[str, Any]:
    return {"git": git_state(), "libraries": library_versions(), "hardware": hardware(),
            "argv": sys.argv}


def reports_root() -> Path:
    """reports/ of the project, or TOOLCALL_LAB_REPORTS (the tests point it at a temporary folder)."""
    return Path(os.environ.get("TOOLCALL_LAB_REPORTS") or ROOT / "reports")


def runs_root() -> Path:
    """runs/ (training outputs, not committed), or TOOLCALL_LAB_RUNS."""
    return Path(os.environ.get("TOOLCALL_LAB_RUNS") or ROOT / "runs")


def shown(path: str | Path) -> str:
    """A path as a reader sees it: relative to the project root when inside it."""
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)
