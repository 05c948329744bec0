"""Where a result came from: git commit, library versions, hardware. Recorded in every results file."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from common.secrets import redact

ROOT = Path(__file__).resolve().parents[2]
CODE_PATHS = ("src", "params", "notebooks", "pyproject.toml", "requirements.txt", "requirements-models.txt")
LIBRARIES = ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "numpy", "scipy",
             "jsonschema", "wandb", "papermill", "llama_cpp_python")


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
        import torch  # the hardware record names torch's threads and GPU; provenance is read before torch loads
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def command_line(argv: list[str] | None = None) -> list[str]:
    """The command that made a file, as it may be recorded: paths portable, secrets redacted.
    A notebook's kernel has no command of its own (papermill records its parameters)."""
    argv = list(sys.argv if argv is None else argv)
    if argv and Path(argv[0]).name in {"ipykernel_launcher.py", "ipykernel_launcher"}:
        return ["(notebook kernel)"]
    if argv and argv[0].endswith(".py") and "/common/" in argv[0]:
        argv = [f"python -m common.{Path(argv[0]).stem}", *argv[1:]]
    return [portable(redact(a)) for a in argv]


def provenance() -> dict[str, Any]:
    return {"git": git_state(), "libraries": library_versions(), "hardware": hardware(),
            "argv": command_line()}


# -- paths in files ----------------------------------------------------------------------
# A file a run writes names paths relative to the project root (or `~/` for the home folder),
# never by the absolute path of the machine that made it: a fresh clone elsewhere must read
# a committed run.json as its own.
def _path_pattern() -> re.Pattern[str]:
    roots = sorted({str(ROOT), str(Path.home())} - {"/"}, key=len, reverse=True)  # HOME=/ in some containers
    return re.compile(r"(?<![\w.~/-])(" + "|".join(re.escape(r) for r in roots) + r")(/|(?=$|[\s'\",;:)\]]))")


_PATHS = _path_pattern()


def _relative(match: re.Match[str]) -> str:
    if match.group(1) == str(ROOT):
        return "" if match.group(2) else "."
    return "~" + match.group(2)


def portable(value: Any) -> Any:
    """`value` with every absolute path inside the project root made relative to it and
    every one inside the home folder written `~/...` (in strings at any depth)."""
    if isinstance(value, str):
        return _PATHS.sub(_relative, value)
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v) for v in value]
    return value


def portable_path(path: str | Path | None) -> str | None:
    """A path as a run records it: resolved, then relative to the project root or `~/...`."""
    if path is None:
        return None
    return portable(str(Path(path).expanduser().resolve()))


def local_path(recorded: str | Path) -> Path:
    """A recorded path on this machine: `~/` expanded; a relative path that does not exist
    from the working directory is read from the project root (where runs record it)."""
    p = Path(recorded).expanduser()
    if p.is_absolute() or p.exists():
        return p
    return ROOT / p if (ROOT / p).exists() else p


def reports_root() -> Path:
    """reports/ of the project, or TOOLCALL_LAB_REPORTS (the tests point it at a temporary folder)."""
    return Path(os.environ.get("TOOLCALL_LAB_REPORTS") or ROOT / "reports")


def runs_root() -> Path:
    """runs/ (training outputs, not committed), or TOOLCALL_LAB_RUNS."""
    return Path(os.environ.get("TOOLCALL_LAB_RUNS") or ROOT / "runs")


def shown(path: str | Path) -> str:
    """A path as a reader sees it, the way files record it (`portable_path`)."""
    return portable_path(path)
