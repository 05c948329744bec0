"""Bad input and faults a new user meets, each a named probe (issue 14): every one ends in
one clear line that says what is wrong and how to fix it, and none loses work or scores
silently wrong."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from evaluation_helpers import GoldBackend, params

from common.errors import UserError
from common.evaluation import runner as ev
from common.evaluation.checker import check_sample
from common.formats import get_format
from common.jsonio import append_jsonl, quarantine_path, read_jsonl, repair, scan_jsonl
from common.models import ModelNotAvailable, check_model_name
from common.params import ParamsError, load_params
from common.provenance import ROOT, local_path, portable, portable_path
from common.samples import Sample, ToolCall, read_samples

TINY_CLI = ["--model", "tiny-random-llama", "--set", "limit=4", "batch_size=2", "max_new_tokens=8",
            "latency_requests=0", "dtype=float32", "wandb=disabled"]


def tool(name="get_weather", props=None, required=None, **extra):
    params = {"type": "object", "properties": props if props is not None else {"city": {"type": "string"}}}
    if required is not None:
        params["required"] = required
    return {"type": "function", "function": {"name": name, "description": "", "parameters": params | extra}}


def row(i="s1", tools=None, calls=None):
    return {"id": i, "tools": tools or [tool()], "messages": [{"role": "user", "content": "weather in Paris?"}],
            "expected_calls": calls if calls is not None else [{"name": "get_weather", "arguments": {"city": ["Paris"]}}]}


def write_rows(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def cli(module: str, *args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"common.{module}", *args], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, "WANDB_MODE": "disabled", **(env or {})}, timeout=600)


# -- third-party noise on stderr ------------------------------------------------------------------
def test_bitsandbytes_hint_to_install_kernels_never_reaches_stderr(caplog):
    """peft imports bitsandbytes, which on an AVX512-BF16 CPU logs a hint to `pip install kernels`
    (a Hub download this offline project never makes): that line once broke every command's
    one-line error. Only that message is dropped."""
    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    with caplog.at_level(logging.WARNING):
        logger.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure "
                       "you already `pip install kernels`", "No module named 'kernels'")
        logger.warning("some other bitsandbytes warning")
    assert [r.getMessage() for r in caplog.records] == ["some other bitsandbytes warning"]


# -- data loss -------------------------------------------------------------------------------------
def test_score_only_with_a_corrupt_middle_line_loses_no_record(tmp_path, tok, gold):
    samples = ev.load_data("suite:everyday_tools", limit=4)
    gold("hermes", samples)
    ev.evaluate(params(tmp_path, backend="gold", limit=4), model_and_tokenizer=(None, tok))
    path = tmp_path / "run" / "predictions.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = lines[1][:40] + "\n"
    path.write_text("".join(lines))
    before = path.read_bytes()
    with pytest.raises(UserError, match=r"1 samples have no prediction yet .*line 2.*predictions.rejected.jsonl"):
        ev.score(tmp_path / "run")
    assert path.read_bytes() == before  # scoring never writes to the predictions
    assert [r["line"] for r in read_jsonl(quarantine_path(path))] == [2]
    # the rerun generates only the lost sample; the bad line is moved out, nothing else changes
    again = ev.evaluate(params(tmp_path, backend="gold", limit=4), model_and_tokenizer=(None, tok))
    ids = [r["id"] for r in scan_jsonl(path).rows]
    assert sorted(ids) == sorted(s.id for s in samples) and len(ids) == 4
    assert again["metrics"]["kinetic"]["accuracy"] == 1.0
    assert len(read_jsonl(quarantine_path(path))) == 1  # read twice, quarantined once


def test_a_last_record_without_its_newline_is_kept(tmp_path, tok, gold):
    samples = ev.load_data("suite:everyday_tools", limit=3)
    gold("hermes", samples)
    ev.evaluate(params(tmp_path, backend="gold", limit=3), model_and_tokenizer=(None, tok))
    path = tmp_path / "run" / "predictions.jsonl"
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    assert ev.score(tmp_path / "run")["n_samples"] == 3
    assert len(scan_jsonl(path).rows) == 3
    append_jsonl(path, [{"id": "x"}])  # an append starts a new line
    assert [r["id"] for r in scan_jsonl(path).rows][-1] == "x" and not scan_jsonl(path).rejected


@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_a_corrupt_line_anywhere_is_quarantined_with_its_number(tmp_path, where):
    path = tmp_path / "p.jsonl"
    append_jsonl(path, [{"id": str(i)} for i in range(5)])
    lines = path.read_text().splitlines(keepends=True)
    n = {"start": 0, "middle": 2, "end": 4}[where]
    lines[n] = '{"id": "bro' + ("\n" if where != "end" else "")
    path.write_text("".join(lines))
    rows = read_jsonl(path)
    assert [r["id"] for r in rows] == [str(i) for i in range(5) if i != n]
    assert [(r["line"], r["text"]) for r in read_jsonl(quarantine_path(path))] == [(n + 1, '{"id": "bro')]
    found = repair(path)  # the writer's step: moved out, the rest kept
    assert len(found.rows) == 4 and [r["id"] for r in scan_jsonl(path).rows] == [r["id"] for r in rows]
    assert not scan_jsonl(path).rejected


def test_bfcl_score_only_keeps_a_corrupt_prediction_file(tmp_path):
    from common.bfcl import report as bfcl_report
    from common.bfcl import run as bfcl
    from common.bfcl.params import BFCLParams
    out = tmp_path / "b"
    bfcl.run(BFCLParams(model="tiny-random-llama", categories=["irrelevance"], limit=2, max_new_tokens=2,
                             batch_size=2, dtype="float32", wandb="disabled", out=str(out)).resolved())
    path = out / "irrelevance" / "predictions.jsonl"
    text = path.read_text().splitlines(keepends=True)
    path.write_text(text[0][:30] + "\n" + "".join(text[1:]))
    before = path.read_bytes()
    with pytest.raises(UserError, match="line 1"):
        bfcl_report.score(out)
    assert path.read_bytes() == before


# -- silent wrong results --------------------------------------------------------------------------
def test_required_as_a_string_is_refused_where_samples_enter(tmp_path):
    path = write_rows(tmp_path / "s.jsonl", [row(tools=[tool(required="city")])])
    with pytest.raises(UserError, match=r"s.jsonl:1: sample 's1' is not valid: tools: .*required must be a list"):
        read_samples(path)
    with pytest.raises(UserError, match="required must be a list"):
        ev.load_data(str(path))
    result = subprocess.run([sys.executable, "-m", "common.samples", str(path)], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "required must be a list" in result.stderr


def test_required_naming_an_undeclared_property_is_refused(tmp_path):
    path = write_rows(tmp_path / "s.jsonl", [row(tools=[tool(required=["town"])])])
    with pytest.raises(UserError, match=r"required names \['town'\], which .* does not declare"):
        read_samples(path)


@pytest.mark.parametrize("python_type, value, json_type", [("str", 3, "string"), ("dict", "x", "object")])
def test_python_type_names_are_normalised_so_type_checks_hold(python_type, value, json_type):
    sample = Sample.model_validate(row(tools=[tool(props={"city": {"type": python_type}})],
                                       calls=[{"name": "get_weather", "arguments": {"city": ["Paris"]}}]))
    assert sample.tools[0]["function"]["parameters"]["properties"]["city"]["type"] == json_type
    fmt = get_format("hermes")
    parsed = fmt.parse(fmt.render_completion([ToolCall(name="get_weather", arguments={"city": value})], ""),
                       sample.tools)
    verdict = check_sample(sample, parsed)
    assert verdict.error_kind == "type_mismatch"


def test_an_unknown_type_name_is_refused():
    with pytest.raises(ValueError, match="has type 'strng'"):
        Sample.model_validate(row(tools=[tool(props={"city": {"type": "strng"}})]))


def test_an_expected_call_to_a_tool_not_offered_is_refused(tmp_path):
    path = write_rows(tmp_path / "s.jsonl", [row(), row("s2", calls=[{"name": "book_flight", "arguments": {}}])])
    with pytest.raises(UserError, match=r"s.jsonl:2: sample 's2' .*names 'book_flight', which is not among the offered"):
        read_samples(path)


def test_an_expected_argument_the_schema_lacks_is_refused():
    with pytest.raises(ValueError, match=r"gives arguments \['town'\] that the tool's parameters do not declare"):
        Sample.model_validate(row(calls=[{"name": "get_weather", "arguments": {"town": ["Paris"]}}]))


def test_an_empty_file_is_refused(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(UserError, match="holds no samples"):
        ev.load_data(str(tmp_path / "empty.jsonl"))


def test_another_models_predictions_without_run_json_are_not_scored_as_this_one(tmp_path, tok, gold):
    samples = ev.load_data("suite:everyday_tools", limit=2)
    gold("hermes", samples)
    ev.evaluate(params(tmp_path, backend="gold", limit=2), model_and_tokenizer=(None, tok))
    (tmp_path / "run" / "run.json").unlink()
    with pytest.raises(UserError, match="model: 'tiny-random-llama' there, 'tiny-random-gemma3' now"):
        ev.evaluate(params(tmp_path, backend="gold", limit=2, model="tiny-random-gemma3", format="hermes"),
                    model_and_tokenizer=(None, tok))
    with pytest.raises(UserError, match="run.json is missing"):
        ev.score(tmp_path / "run")


@pytest.mark.slow
def test_a_failed_start_leaves_nothing_that_blocks_the_corrected_rerun(tmp_path):
    out = tmp_path / "run"
    bad = cli("evaluate", *TINY_CLI, "--data", "suite:everyday_tool", "--out", str(out))
    assert bad.returncode == 2 and bad.stderr.startswith("error: no shipped suite 'everyday_tool'")
    assert "Traceback" not in bad.stderr and not (out / "run.json").exists()
    good = cli("evaluate", *TINY_CLI, "--data", "suite:everyday_tools", "--out", str(out))
    assert good.returncode == 0, good.stderr[-2000:]


@pytest.mark.slow
def test_a_missing_adapter_is_reported_before_the_model_loads(tmp_path):
    out = tmp_path / "run"
    result = cli("evaluate", *TINY_CLI, "--adapter", str(tmp_path / "nope"), "--out", str(out))
    assert result.returncode == 2 and "no adapter folder at" in result.stderr
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.slow
def test_a_mistyped_wandb_mode_fails_before_any_work(tmp_path):
    with pytest.raises(ParamsError, match=r"wandb: W&B mode must be one of .* not 'ofline' \(did you mean 'offline'\?\)"):
        load_params(ev.EvalParams, [], {"wandb": "ofline"})
    result = cli("evaluate", *TINY_CLI, "--set", "wandb=ofline", "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and "did you mean 'offline'" in result.stderr
    assert not (tmp_path / "run").exists()


def test_an_unasked_wrongly_typed_argument_has_one_verdict():
    sample = Sample.model_validate(row(tools=[tool(props={"city": {"type": "string"},
                                                          "outdoor": {"type": "boolean", "default": False}},
                                                   required=["city"])]))
    fmt = get_format("hermes")
    text = fmt.render_completion([ToolCall(name="get_weather", arguments={"city": "Paris", "outdoor": "false"})], "")
    verdict = check_sample(sample, fmt.parse(text, sample.tools))
    assert verdict.error_kind == "type_mismatch"
    assert [h["kind"] for h in verdict.hallucinations] == ["wrong_type"]


# -- the run folder is the project's, wherever it is cloned ------------------------------------------
def test_paths_are_recorded_relative_to_the_project_root():
    assert portable(str(ROOT / "runs" / "q" / "adapter")) == "runs/q/adapter"
    assert portable({"argv": [f"{ROOT}/src/common/x.py", f"--out={ROOT}/reports/a"]}) == \
        {"argv": ["src/common/x.py", "--out=reports/a"]}
    assert portable(str(Path.home() / ".cache" / "x")) == "~/.cache/x"
    assert portable(f"{ROOT}x/y") == f"{ROOT}x/y"  # another folder that merely starts alike
    assert portable_path(ROOT / "runs" / "a") == "runs/a" and portable_path("/elsewhere/a") == "/elsewhere/a"
    assert local_path("src/common") == (Path("src/common") if Path("src/common").exists() else ROOT / "src/common")
    assert local_path("~/x") == Path.home() / "x"


def test_committed_reports_carry_no_absolute_paths():
    tracked = subprocess.run(["git", "ls-files", "reports"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    found = []
    for name in tracked:
        path = ROOT / name
        if path.suffix in {".json", ".md", ".jsonl"}:
            text = path.read_text(encoding="utf-8")
            for root in {str(ROOT), str(Path.home()), "/tmp/", "/work/", "/home/", "/root/"}:
                if root in text:
                    found.append(f"{name}: {root}")
    assert not found, found


def test_a_run_recorded_elsewhere_is_this_clones_own(tmp_path, tok, gold):
    """run.json and each prediction name the adapter as the project records it: a committed
    record made in another folder does not block a fresh run, and its own predictions resume."""
    samples = ev.load_data("suite:everyday_tools", limit=2)
    gold("hermes", samples)
    out = tmp_path / "run"
    out.mkdir()
    # a committed record from another machine, with no predictions
    (out / "run.json").write_text(json.dumps({"generation": {"model": "x", "adapter": "/elsewhere/runs/a/adapter"},
                                              "invocations": [{"git": {}, "timings": {"total_s": 5.0},
                                                               "predictions": 300, "latency_requests": 0}],
                                              "params": {}}))
    res = ev.evaluate(params(tmp_path, backend="gold", limit=2), model_and_tokenizer=(None, tok))
    assert res["invocations"] == 1  # started afresh: the other machine's timings are not added
    rows = scan_jsonl(out / "predictions.jsonl").rows
    assert all(r["settings"]["model"] == "tiny-random-llama" for r in rows)
    # its own predictions resume: nothing is generated again, and the record keeps both invocations
    calls = GoldBackend.calls
    again = ev.evaluate(params(tmp_path, backend="gold", limit=2), model_and_tokenizer=(None, tok))
    assert GoldBackend.calls == calls and again["invocations"] == 2


# -- messages ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_model_name_typo_gets_did_you_mean_and_no_download_hint(tmp_path):
    with pytest.raises(ModelNotAvailable, match=r"unknown model 'smolm2-135m-instruct'; did you mean 'smollm2-135m-instruct'"):
        check_model_name("smolm2-135m-instruct")
    check_model_name("HuggingFaceTB/SmolLM2-360M-Instruct")  # a hub id passes (checked when it loads)
    result = cli("evaluate", "--model", "smolm2-135m-instruct", "--out", str(tmp_path / "r"))
    assert result.returncode == 2 and "did you mean 'smollm2-135m-instruct'" in result.stderr
    assert "huggingface-cli" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("module, args, message", [
    ("evaluate", ["--set", "limt=3"], "unknown parameter 'limt' in the overrides (did you mean 'limit'?)"),
    ("evaluate", ["--data", "bfcl:live_relevance"], "not a single-turn AST category this project scores"),
    ("train", ["sft", "--set", "lora_r=0"], "lora_r: Input should be greater than or equal to 1"),
    ("bfcl", ["--categories", "simple"], "unknown BFCL categories ['simple']"),
    ("data", ["build", "params/data.yaml", "--set", "top_toolkits=3", "samples_per_toolkit=x"],
     "samples_per_toolkit: Input should be a valid integer"),
    ("quickstart", ["params/quickstart.yaml", "--set", "gate_samples=2"], "gate_samples"),
    ("calibrate", ["runs/no-such-run"], "results.json does not exist"),
    ("sweep", ["params/sweeps/nope.yaml"], "no parameter file at params/sweeps/nope.yaml"),
])
@pytest.mark.slow
def test_every_command_reports_a_user_error_in_one_line(module, args, message):
    result = cli(module, *args)
    assert result.returncode == 2, (result.stdout[-500:], result.stderr[-2000:])
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and message in result.stderr, \
        result.stderr
    assert "live_relevance" not in result.stderr.split("choose from")[-1]


@pytest.mark.slow
def test_debug_shows_the_traceback_of_a_user_error():
    result = cli("evaluate", "--set", "limt=3", "--debug")
    assert result.returncode != 0 and "Traceback" in result.stderr and "ParamsError" in result.stderr


def test_data_build_takes_several_values_after_one_set(tmp_path):
    import argparse

    from common.data.build import DataParams
    from common.params import add_set_argument, parse_overrides
    parser = argparse.ArgumentParser()
    add_set_argument(parser, dest="overrides")
    args = parser.parse_args(["--set", "a=1", "b=2", "--set", "c=3"])
    assert parse_overrides(args.overrides) == {"a": 1, "b": 2, "c": 3}
    assert load_params(DataParams, ["params/data.yaml"], {"top_toolkits": 3, "eval_size": 10}).eval_size == 10


@pytest.mark.slow
def test_a_sweep_with_a_bad_figure_key_names_its_file(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\nnotebook: 06_data_scale\nexperiment: x\nruns: {a: {}}\nfigure: {x: a, metrix: [b]}\n")
    result = cli("sweep", str(spec))
    assert result.returncode == 2 and str(spec) in result.stderr and "metrix" in result.stderr


# -- secrets ----------------------------------------------------------------------------------------
FAKE_KEY = "sk-proj-" + "AbC1" * 12


def test_key_patterns_catch_keys_not_words():
    from common.secrets import looks_like_key, redact
    for key in (FAKE_KEY, "sk-ant-api03-" + "x" * 40, "hf_" + "a" * 34, "ghp_" + "b" * 36, "0123456789abcdef" * 2 + "01234567"):
        assert looks_like_key(key) and looks_like_key(f"--set x={key}") and redact(f"a {key} b") == "a <redacted> b"
    for word in ("task-specific-lora-rank-16", "risk-averse-baseline-run-01", "weak_baseline_lora_rank8",
                 "peak_memory_fraction_limit", "runs/quickstart/lora-sft/adapter", "smollm2-135m-instruct"):
        assert not looks_like_key(word), word


def test_a_key_where_a_variable_name_belongs_is_refused_without_repeating_it():
    from common.data.build import DataParams
    with pytest.raises(UserError) as err:
        load_params(DataParams, ["params/data.yaml"], {"teacher_api_key_env": FAKE_KEY})
    assert "looks like an API key" in str(err.value) and FAKE_KEY not in str(err.value) and "AbC1" not in str(err.value)
    with pytest.raises(ParamsError, match="not an environment variable's name") as err:
        load_params(DataParams, ["params/data.yaml"], {"teacher_api_key_env": "my key"})
    result = cli("data", "build", "params/data.yaml", "--set", f"teacher_api_key_env={FAKE_KEY}")
    assert result.returncode == 2 and FAKE_KEY not in result.stderr + result.stdout


@pytest.mark.slow
def test_a_planted_key_is_written_to_no_file(tmp_path, tok, gold):
    """Through every route a user has (a params file, --set, the environment), the key is
    refused or ignored, and no file the commands write holds it (nor W&B's config)."""
    reports, runs = tmp_path / "reports", tmp_path / "runs"
    env = {"TOOLCALL_LAB_REPORTS": str(reports), "TOOLCALL_LAB_RUNS": str(runs), "OPENAI_API_KEY": FAKE_KEY,
           "WANDB_API_KEY": "0123456789abcdef" * 2 + "01234567", "HF_TOKEN": "hf_" + "x" * 30,
           "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wandb")}
    (tmp_path / "wandb").mkdir()
    keyfile = tmp_path / "k.yaml"
    keyfile.write_text(f"run: leak\nwandb_group: '{FAKE_KEY}'\n")
    refused = [
        cli("evaluate", str(keyfile), *TINY_CLI, "--out", str(tmp_path / "e1"), env=env),
        cli("evaluate", *TINY_CLI, "--set", f"run={FAKE_KEY}", "--out", str(tmp_path / "e2"), env=env),
        cli("data", "build", "params/data.yaml", "--set", f"teacher_api_key_env={FAKE_KEY}", f"out={tmp_path / 'd'}",
            env=env),
        cli("train", "sft", "--set", f"wandb_group={FAKE_KEY}", env=env),
        cli("bfcl", "--set", f"run={FAKE_KEY}", env=env),
        cli("quickstart", "--set", f"run={FAKE_KEY}", env=env),
        cli("sweep", "params/sweeps/lora_rank.yaml", "--set", f"eval_set.run={FAKE_KEY}", env=env),
    ]
    for r in refused:
        assert r.returncode == 2 and "looks like an API key" in r.stderr, r.stderr[-1500:]
    # with the key only in the environment, the commands run and write it nowhere
    ran = cli("evaluate", *TINY_CLI[:-1], "wandb=offline", "--out", str(tmp_path / "e3"), env=env)
    assert ran.returncode == 0, ran.stderr[-2000:]
    leaks = [str(p) for p in tmp_path.rglob("*") if p.is_file() and p != keyfile
             and any(k.encode() in p.read_bytes() for k in (FAKE_KEY, env["WANDB_API_KEY"], env["HF_TOKEN"]))]
    assert not leaks, leaks
    assert any((tmp_path / "wandb").rglob("config.yaml")) or any((tmp_path / "wandb").rglob("*.wandb"))
