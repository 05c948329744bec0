"""The project's files on disk: append-only JSONL records, atomic JSON, an output folder's lock.

Every file a run appends to (predictions, latency, DPO pairs, the teacher cache) is JSONL,
one record per line, appended and fsynced as each record is made, so a run killed at
any moment keeps what it finished. Reading never truncates or rewrites such a file:

- a line that does not parse (cut off by a kill mid-write, or damaged by hand) is
  copied, with its line number, into `<name>.rejected.jsonl` beside it, and named in a
  warning; the records that parse are returned;
- a last record without its newline is kept (the next append starts a new line).

Only the writer that holds the file (`repair`, under the run's lock) moves rejected
lines out of the file, after they are safely in the quarantine file, so that a resumed
run appends to a clean file. Derived files (verdicts, agreement) are written whole and
atomically with `write_jsonl`.

A finished run's record can be kept in git compressed (`archive`: `<name>.gz`, byte-identical
for the same content); `restore` brings it back where the plain file is missing, so that a
fresh clone resumes, rescores and compares from committed results instead of regenerating.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import json
import os
import sys
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import UserError
from common.provenance import portable


@dataclass
class JsonlRead:
    """What a JSONL file holds: the records that parse, and the lines that do not."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)  # {"line": n, "text": raw, "error": why}

    def describe(self, path: Path) -> str:
        lines = ", ".join(str(r["line"]) for r in self.rejected[:5]) + (" ..." if len(self.rejected) > 5 else "")
        return (f"{path}: {len(self.rejected)} line(s) do not parse (line {lines}; "
                f"first: {self.rejected[0]['error']}); kept in {quarantine_path(path).name}")


def quarantine_path(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".jsonl") + ".rejected.jsonl")


def scan_jsonl(path: str | Path, required: tuple[str, ...] = ()) -> JsonlRead:
    """Every line of `path`, parsed or rejected (not JSON, not an object, or without one of
    the `required` keys); the file is not touched."""
    path = Path(path)
    out = JsonlRead()
    if not path.exists():
        return out
    for number, raw in enumerate(path.read_bytes().split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
            if not isinstance(row, dict):
                raise ValueError(f"a record is a JSON object, not {type(row).__name__}")
            missing = [k for k in required if k not in row]
            if missing:
                raise ValueError(f"the record has no {missing}")
            out.rows.append(row)
        except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
            out.rejected.append({"line": number, "text": raw.decode("utf-8", "replace"), "error": str(err)[:200]})
    return out


def _quarantine(path: Path, rejected: list[dict[str, Any]]) -> None:
    """Copy rejected lines into the quarantine file, each (line, text) once however often it is read."""
    qpath = quarantine_path(path)
    have = {(r.get("line"), r.get("text")) for r in scan_jsonl(qpath).rows}
    new = [r for r in rejected if (r["line"], r["text"]) not in have]
    if new:
        append_jsonl(qpath, ({"file": path.name, **r} for r in new))


def read_checked(path: str | Path, required: tuple[str, ...] = ()) -> JsonlRead:
    """`scan_jsonl`, with the lines that do not parse copied to the quarantine file and
    named on stderr; `path` itself is never changed."""
    path = Path(path)
    found = scan_jsonl(path, required)
    if found.rejected:
        _quarantine(path, found.rejected)
        print(f"warning: {found.describe(path)}", file=sys.stderr, flush=True)
    return found


def read_jsonl(path: str | Path, required: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The records of `path` that parse (`read_checked`)."""
    return read_checked(path, required).rows


def repair(path: str | Path, required: tuple[str, ...] = ()) -> JsonlRead:
    """Before appending to `path` (the caller holds it): rejected lines are moved to the
    quarantine file (`read_checked` writes and syncs them there first, so nothing is lost if
    this is killed). Returns what the file held. (A last record without its newline needs
    nothing: `append_jsonl` starts a new line.)"""
    found = read_checked(path, required)
    if found.rejected:
        write_jsonl(path, found.rows)
    return found


def append_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Append records, one line each, and sync them to disk. A file whose last line has
    no newline gets one first, so a record never joins the line before it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if not text:
        return
    with path.open("a+b") as f:
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                text = "\n" + text
        f.write(text.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """The whole file at once: readers see the old file or the new one, never a part."""
    _atomic_write(Path(path), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8"))


def archive(path: str | Path) -> Path:
    """`<path>.gz` beside a finished JSONL record, for git: written only when its content changed,
    and with no name or time in the gzip header, so the same records give the same bytes."""
    path = Path(path)
    dest = path.with_name(path.name + ".gz")
    data = path.read_bytes()
    if not dest.is_file() or unpacked(dest) != data:  # (a damaged archive is rewritten)
        _atomic_write(dest, gzip.compress(data, compresslevel=9, mtime=0))
    return dest


def unpacked(packed: Path) -> bytes | None:
    """The records an archive holds; None for a damaged one."""
    try:
        return gzip.decompress(packed.read_bytes())
    except (OSError, EOFError, zlib.error):
        return None


def restore(path: str | Path) -> bool:
    """Bring a record back from its archive (`<path>.gz`) when the record itself is missing
    (a fresh clone of committed results); True when it did. A damaged archive is one clear error."""
    path = Path(path)
    packed = path.with_name(path.name + ".gz")
    if path.exists() or not packed.is_file():
        return False
    data = unpacked(packed)
    if data is None:
        raise UserError(f"{packed} is not a readable gzip archive; restore it with `git checkout -- {packed}`, "
                        "or delete it to generate the records again")
    _atomic_write(path, data)
    return True


def write_json(path: str | Path, data: Any) -> None:
    """Atomic (a killed run never leaves half a results file), and portable: paths inside the
    project or the home folder are written relative to them (`provenance.portable`)."""
    _atomic_write(Path(path), (json.dumps(portable(data), indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def json_lines(path: Path, what: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) of each non-blank line of a JSONL input file the user gives;
    a line that is not a JSON object is refused naming the file, the line and `what` each
    line must be. (Inputs are refused whole; the project's own appended files are read
    with `read_jsonl`, which keeps what it can.)"""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path} is not UTF-8 text ({err})") from None
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as err:
            raise UserError(f"{path}:{i}: not JSON ({err}); each line must be {what}") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{i}: a line must be a JSON object ({what})")
        rows.append((i, row))
    return rows


def read_json(path: str | Path, what: str = "file") -> dict[str, Any]:
    """A JSON object from a file, or one clear error naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"no {what} at {path}") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not valid JSON ({err}); restore it or delete its folder to start over") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} holds a JSON {type(data).__name__}, not the object a {what} is; restore it or "
                        "delete its folder to start over")
    return data


@contextlib.contextmanager
def exclusive(out: Path) -> Iterator[None]:
    """Hold an output folder for one writer: two runs appending to the same predictions
    would duplicate work and records."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another run is writing to {out}; wait for it to finish or stop it, "
                            "then run this again (finished samples are kept)") from None
        yield
