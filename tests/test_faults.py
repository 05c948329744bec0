"""Fault injection: runs killed with SIGKILL at random points (mid-line writes included),
then resumed, lose no record and end as an uninterrupted run ends; malformed samples and
schemas, fuzzed, end in one clear error, never a crash.

The evaluation trials fork the test process (fast: no new interpreter), kill the child
with SIGKILL, and resume in the parent. Half of them kill inside a write: the child's
append writes part of its line, syncs it, and kills itself, which is what a kill during
write() leaves on disk. A few trials kill a real evaluation, data build and training
started as commands.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from evaluation_helpers import GoldBackend, params
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.errors import UserError
from common.evaluation import runner as ev
from common.jsonio import quarantine_path, read_jsonl, scan_jsonl
from common.provenance import ROOT
from common.samples import read_samples

TRIALS = 24
N_SAMPLES, LATENCY = 12, 3
SUMMARY: dict[str, int] = {"trials": 0, "kills": 0, "torn_writes": 0, "torn_lines_quarantined": 0,
                           "records_lost": 0}


def _parses(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except ValueError:
        return False


def _stable(results: dict) -> dict:
    """What must not depend on interruptions: the metrics and the samples scored."""
    return {"metrics": _no_latency(results["metrics"]), "n": results["n_samples"]}


def _no_latency(metrics: dict) -> dict:
    out = json.loads(json.dumps(metrics))
    out["kinetic"].pop("latency", None)  # the gold backend's fixed seconds: equal anyway, but not the point
    return out


def _child(out: Path, p: ev.EvalParams, tok, torn_at: int | None, cut: float) -> None:
    """In the forked child: evaluate; with `torn_at`, the torn_at-th append writes a part
    of its text, syncs it and kills the process."""
    try:
        # tqdm's write lock is a semaphore shared with the parent across the fork: a child killed
        # while holding it would leave the parent blocked forever. The child gets its own.
        import threading

        import tqdm.auto
        import tqdm.std
        for cls in {tqdm.std.tqdm, tqdm.auto.tqdm}:
            cls.set_lock(threading.RLock())
        calls = {"n": 0}
        real_append = ev.append_jsonl

        def append(path, rows):
            calls["n"] += 1
            if calls["n"] == torn_at:
                text = "".join(json.dumps(r) + "\n" for r in rows).encode()
                with open(path, "ab") as f:
                    f.write(text[: max(1, int(len(text) * cut))])
                    f.flush()
                    os.fsync(f.fileno())
                os.kill(os.getpid(), signal.SIGKILL)
            real_append(path, rows)

        ev.append_jsonl = append
        GoldBackend.delay = 0.01
        ev.evaluate(p, model_and_tokenizer=(None, tok))
    finally:
        os._exit(0)


def _complete_records(out: Path) -> dict[str, str]:
    return {r["id"]: r["text"] for r in scan_jsonl(out / "predictions.jsonl").rows}


@pytest.mark.slow
def test_evaluation_killed_at_random_points_loses_nothing(tmp_path, tok, gold, monkeypatch):
    samples = ev.load_data("suite:everyday_tools", limit=N_SAMPLES)
    gold("hermes", samples)
    monkeypatch.setattr(GoldBackend, "delay", 0.0)
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    reference = ev.evaluate(params(tmp_path / "reference", backend="gold", limit=N_SAMPLES, batch_size=2,
                                   latency_requests=LATENCY), model_and_tokenizer=(None, tok))
    rng = random.Random(14)
    for trial in range(TRIALS):
        out_root = tmp_path / f"t{trial}"
        p = params(out_root, backend="gold", limit=N_SAMPLES, batch_size=2, latency_requests=LATENCY)
        out = Path(p.out)
        kept: dict[str, str] = {}
        torn_lines: list[tuple[Path, str]] = []
        for attempt in range(2):  # killed twice, then left to finish
            torn = trial % 2 == 1
            pid = os.fork()
            if pid == 0:
                _child(out, p, tok, rng.randint(1, N_SAMPLES // 2 + LATENCY) if torn else None, rng.random())
            if not torn:
                time.sleep(rng.uniform(0.0, 0.12))
                os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            SUMMARY["kills"] += os.WIFSIGNALED(status)
            SUMMARY["torn_writes"] += torn and os.WIFSIGNALED(status)
            for name in ("predictions.jsonl", "latency.jsonl"):  # a torn last line, to be found in quarantine
                data = (out / name).read_bytes() if (out / name).exists() else b""
                tail = data.rsplit(b"\n", 1)[-1]
                if tail and not _parses(tail):
                    torn_lines.append((out / name, tail.decode()))
            now = _complete_records(out)
            SUMMARY["records_lost"] += sum(1 for i, t in kept.items() if now.get(i) != t)
            kept.update(now)
        final = ev.evaluate(p, model_and_tokenizer=(None, tok))
        rows = scan_jsonl(out / "predictions.jsonl")
        ids = [r["id"] for r in rows.rows]
        assert not rows.rejected, trial  # torn lines were moved to the quarantine file
        assert sorted(ids) == sorted(s.id for s in samples), f"trial {trial}: every sample exactly once"
        SUMMARY["records_lost"] += sum(1 for i, t in kept.items() if _complete_records(out).get(i) != t)
        timed = [r["id"] for r in scan_jsonl(out / "latency.jsonl").rows]
        assert sorted(timed) == sorted(s.id for s in samples[:LATENCY])
        assert _stable(final) == _stable(reference), f"trial {trial}"
        for path, text in torn_lines:  # moved out of the file, kept in its quarantine
            assert text in {r["text"] for r in scan_jsonl(quarantine_path(path)).rows}, (trial, text)
            SUMMARY["torn_lines_quarantined"] += 1
        SUMMARY["trials"] += 1
    print(f"\nfault injection (evaluation): {SUMMARY}")
    assert SUMMARY["records_lost"] == 0
    assert SUMMARY["kills"] >= TRIALS and SUMMARY["torn_writes"] >= TRIALS // 4
    assert SUMMARY["torn_lines_quarantined"] >= TRIALS // 4


def _command(module: str, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", f"common.{module}", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "WANDB_MODE": "disabled", **(env or {})})


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 300) -> bool:
    """SIGKILL `proc` as soon as `ready()` holds; False if it finished first."""
    start = time.time()
    while proc.poll() is None and time.time() - start < timeout:
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.05)
    proc.wait()
    return False


@pytest.mark.slow
def test_a_real_evaluation_killed_mid_generation_resumes(tmp_path):
    out = tmp_path / "run"
    args = ["--model", "tiny-random-llama", "--data", "suite:everyday_tools", "--out", str(out), "--set", "limit=12",
            "batch_size=1", "max_new_tokens=16", "latency_requests=2", "dtype=float32", "wandb=disabled"]
    pred = out / "predictions.jsonl"
    killed = _kill_when(_command("evaluate", *args), lambda: pred.exists() and len(pred.read_bytes().splitlines()) >= 3)
    assert killed, "the evaluation finished before it could be killed"
    before = {r["id"]: r["text"] for r in scan_jsonl(pred).rows}
    done = _command("evaluate", *args)
    _, err = done.communicate(timeout=600)
    assert done.returncode == 0, err[-2000:]
    after = scan_jsonl(pred).rows
    assert len(after) == 12 and len({r["id"] for r in after}) == 12
    assert all({r["id"]: r["text"] for r in after}[i] == t for i, t in before.items())
    assert json.loads((out / "results.json").read_text())["n_samples"] == 12


@pytest.mark.slow
def test_a_data_build_killed_midway_rebuilds_the_same_data(tmp_path):
    settings_ = ["name=faults", "top_toolkits=3", "samples_per_toolkit=16", "eval_size=8",
                 "tokenizer=tiny-random-llama", "max_prompt_tokens=700"]
    ref = _command("data", "build", "params/data.yaml", "--set", *settings_, f"out={tmp_path / 'ref'}")
    assert ref.wait(timeout=600) == 0, ref.stderr.read()[-2000:]
    work = tmp_path / ".killed.building"
    proc = _command("data", "build", "params/data.yaml", "--set", *settings_, f"out={tmp_path / 'killed'}")
    delay = random.Random(0).uniform(0.5, 3.0)
    seen: dict[str, float] = {}
    assert _kill_when(proc, lambda: work.exists() and time.time() - seen.setdefault("t", time.time()) > delay), \
        "the build finished before it could be killed"
    assert not (tmp_path / "killed").exists()  # a build appears whole or not at all
    again = _command("data", "build", "params/data.yaml", "--set", *settings_, f"out={tmp_path / 'killed'}")
    assert again.wait(timeout=600) == 0, again.stderr.read()[-2000:]
    card = lambda p: json.loads((p / "data_card.json").read_text())["splits"]  # noqa: E731
    assert {k: v["content_sha256"] for k, v in card(tmp_path / "killed").items()} == \
        {k: v["content_sha256"] for k, v in card(tmp_path / "ref").items()}


@pytest.mark.slow
def test_training_killed_after_a_checkpoint_resumes_from_it(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(s.model_dump_json() + "\n" for s in ev.load_data("suite:everyday_tools")
                            if s.expected_calls))
    args = ["sft", "--set", "model=tiny-random-llama", f"data={data}", "max_steps=6", "save_steps=1",
            "gradient_accumulation_steps=1", "eval_data=null", "wandb=disabled", "logging_steps=1",
            "save_total_limit=10", "max_length=2048"]
    out = tmp_path / "run"
    ckpt = out / "checkpoints" / "checkpoint-3"
    proc = _command("train", *args, "--out", str(out))
    assert _kill_when(proc, lambda: (ckpt / "trainer_state.json").exists()), "training finished before the kill"
    assert not (out / "adapter").exists()
    again = _command("train", *args, "--out", str(out))
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 6 and (out / "adapter" / "adapter_config.json").is_file()
    killed, resumed = results["invocations"]  # the killed one up to the checkpoint resumed from
    assert killed["until_step"] + resumed["steps"] == 6 and killed["steps"] == killed["until_step"] >= 3
    steps = [r["step"] for r in read_jsonl(out / "history.jsonl") if "loss" in r]
    assert steps[-1] == 6 and steps.count(6) == 1


# -- fuzzing: malformed samples and files end in one clear error ----------------------------------------
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
                    max_leaves=12)
TYPES = st.sampled_from(["string", "str", "integer", "int", "number", "float", "boolean", "bool", "object", "dict",
                         "array", "list", "null", "any", "strng", 3, None, ["string", "null"]])
PROPS = st.dictionaries(st.sampled_from(["city", "n", "when", "x"]),
                        st.fixed_dictionaries({"type": TYPES}) | JSON, max_size=3)
PARAMETERS = st.fixed_dictionaries({"type": st.sampled_from(["object", "dict", "array", 5])},
                                   optional={"properties": PROPS | JSON,
                                             "required": st.lists(st.sampled_from(["city", "n", "zz"]), max_size=2)
                                             | st.text(max_size=5) | JSON})
TOOL = st.fixed_dictionaries({"type": st.sampled_from(["function", "other"]),
                              "function": st.fixed_dictionaries({"name": st.sampled_from(["f", "g"]) | JSON},
                                                                optional={"parameters": PARAMETERS | JSON,
                                                                          "description": JSON})}) | JSON
CALL = st.fixed_dictionaries({"name": st.sampled_from(["f", "g", "h"]) | JSON},
                             optional={"arguments": st.dictionaries(st.sampled_from(["city", "n", "q"]),
                                                                    st.lists(JSON, max_size=2) | JSON, max_size=2),
                                       "optional": st.lists(st.text(max_size=4), max_size=2) | JSON})
SAMPLE = st.fixed_dictionaries({"id": st.text(min_size=1, max_size=6) | JSON,
                                "tools": st.lists(TOOL, max_size=3) | JSON,
                                "messages": st.lists(st.fixed_dictionaries(
                                    {"role": st.sampled_from(["user", "assistant", "robot"]), "content": JSON}),
                                    max_size=2) | JSON},
                               optional={"expected_calls": st.lists(CALL, max_size=2) | JSON, "scenario": JSON})


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(SAMPLE | JSON, min_size=0, max_size=3), junk=st.binary(max_size=30))
def test_fuzzed_sample_files_load_or_fail_with_one_clear_error(tmp_path, rows, junk):
    path = tmp_path / "fuzz.jsonl"
    lines = [json.dumps(r) for r in rows]
    path.write_bytes(("\n".join(lines)).encode() + (b"\n" + junk if junk and rows else b""))
    try:
        samples = read_samples(path)
    except UserError as err:
        message = str(err)
        assert str(path) in message and "\n" not in message.strip()
        return
    assert samples and all(s.id for s in samples)
    for s in samples:  # what loads is usable by the checker: tools valid, calls on offered tools
        names = {t["function"]["name"] for t in s.tools}
        assert all(c.name in names for c in s.expected_calls)
        for t in s.tools:
            required = t["function"]["parameters"].get("required", [])
            assert isinstance(required, list) and set(required) <= set(t["function"]["parameters"].get("properties", {}))


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(st.binary(max_size=40) | st.builds(lambda d: json.dumps(d).encode(),
                                                          st.fixed_dictionaries({"id": st.text(max_size=5)})),
                       max_size=8))
def test_fuzzed_jsonl_bytes_never_crash_a_reader_and_lose_no_good_record(tmp_path_factory, chunks):
    path = tmp_path_factory.mktemp("j") / "p.jsonl"
    path.write_bytes(b"\n".join(chunks))
    found = scan_jsonl(path)
    good = 0
    for raw in b"\n".join(chunks).split(b"\n"):
        try:
            good += isinstance(json.loads(raw), dict)
        except ValueError:
            pass
    assert len(found.rows) == good
    before = path.read_bytes()
    read_jsonl(path)
    assert path.read_bytes() == before
    assert len(scan_jsonl(quarantine_path(path)).rows) == len(found.rejected)


def test_an_archived_record_comes_back_only_where_it_is_missing(tmp_path):
    from common.jsonio import archive, restore
    path = tmp_path / "predictions.jsonl"
    path.write_text('{"id": "a", "text": "x"}\n{"id": "b", "text": "y"}\n')
    packed = archive(path)
    first = packed.read_bytes()
    mtime = packed.stat().st_mtime_ns
    time.sleep(0.01)
    assert archive(path) == packed and packed.stat().st_mtime_ns == mtime  # same records: not rewritten
    (tmp_path / "again").mkdir()
    twin = tmp_path / "again" / "predictions.jsonl"
    twin.write_bytes(path.read_bytes())
    assert archive(twin).read_bytes() == first  # no name or time in the header: the same bytes for git
    assert not restore(path)  # the record is here: the archive never overwrites it
    path.unlink()
    assert restore(path) and [r["id"] for r in read_jsonl(path)] == ["a", "b"]
    path.unlink()
    packed.write_bytes(first[:10])
    with pytest.raises(UserError, match=r"predictions.jsonl.gz is not a readable gzip archive; restore it with `git checkout"):
        restore(path)
    assert not path.exists() and not restore(tmp_path / "none.jsonl")
