"""BFCL: the project's verdicts against BFCL's own AST checker, on hand-made outputs to
real entries of the wheel's data, on every entry's answer, and end to end."""

import json

import pytest
from evaluation_helpers import recorded_before_prompt_versions

from common import bfcl_data
from common.bfcl import params as bfcl_params
from common.bfcl import report as bfcl_report
from common.bfcl import run as bfcl
from common.bfcl.agreement import agreement
from common.bfcl.reference import reference_verdicts
from common.errors import UserError
from common.evaluation.checker import check_sample
from common.formats import get_format
from common.formats.base import PROMPT_VERSION
from common.samples import ExpectedCall, Sample, ToolCall

HERMES = get_format("hermes")


def call(function, /, **arguments):
    return HERMES.render_calls([ToolCall(name=function, arguments=arguments)])


TRIANGLE = "calculate_triangle_area"  # simple_python_0: base [10], height [5], unit ["units", ""]
# (case, category, entry, model output, project verdict, BFCL verdict)
HAND_MADE = [
    ("right", "simple_python", 0, call(TRIANGLE, base=10, height=5, unit="units"), True, True),
    ("optional argument left out", "simple_python", 0, call(TRIANGLE, base=10, height=5), True, True),
    ("string case and spaces ignored", "simple_python", 0, call(TRIANGLE, base=10, height=5, unit="Units "),
     True, True),
    ("wrong type", "simple_python", 0, call(TRIANGLE, base="10", height=5), False, False),
    ("wrong value", "simple_python", 0, call(TRIANGLE, base=12, height=5), False, False),
    ("extra argument", "simple_python", 0, call(TRIANGLE, base=10, height=5, colour="red"), False, False),
    ("required argument left out", "simple_python", 0, call(TRIANGLE, base=10), False, False),
    # simple_python_5: root_type is optional in the schema, but the answer pins it to "all"
    ("pinned optional argument left out", "simple_python", 5, call("solve_quadratic", a=3, b=-11, c=-4),
     False, False),
    ("no call", "simple_python", 0, "The area is 25 square units.", False, False),
    ("two calls where one is expected", "simple_python", 0,
     call(TRIANGLE, base=10, height=5) + "\n" + call(TRIANGLE, base=10, height=5), False, False),
    # multiple_0: triangle_properties.get is right, circle_properties.get is offered too
    ("right among several functions", "multiple", 0, call("triangle_properties.get", side1=5, side2=4, side3=3),
     True, True),
    ("wrong function", "multiple", 0, call("circle_properties.get", radius=3), False, False),
    ("parallel calls in the order asked", "parallel", 0,
     call("spotify.play", artist="Taylor Swift", duration=20) + "\n"
     + call("spotify.play", artist="Maroon 5", duration=15), True, True),
    ("parallel calls in another order", "parallel", 0,
     call("spotify.play", artist="Maroon 5", duration=15) + "\n"
     + call("spotify.play", artist="Taylor Swift", duration=20), True, True),
    ("one of two parallel calls", "parallel", 0, call("spotify.play", artist="Maroon 5", duration=15),
     False, False),
    ("a call on an irrelevance case", "irrelevance", 0,
     call("determine_body_mass_index", weight=70.0, height=1.75), False, False),
    ("a plain answer on an irrelevance case", "irrelevance", 0, "I cannot compute that with these tools.",
     True, True),
]


def verdict_rows(category, index, text):
    """The runner's verdict row for `text` as the answer to one entry."""
    sample = bfcl_data.category_samples(category)[index]
    parsed = HERMES.parse(text, sample.tools)
    return {**check_sample(sample, parsed).to_dict(), "parsed": parsed.to_dict()}


def agree(items):
    """Agreement rows for [(category, entry index, output text)], both checkers run."""
    rows = [verdict_rows(category, index, text) for category, index, text in items]
    cases = [c for (category, _, _), row in zip(items, rows) for c in bfcl_report.reference_cases(category, [row])]
    return agreement(cases, rows, reference_verdicts(cases))


@pytest.fixture(scope="module")
def hand_made():
    return agree([(category, index, text) for _, category, index, text, _, _ in HAND_MADE])


@pytest.mark.parametrize("i", range(len(HAND_MADE)), ids=[c[0] for c in HAND_MADE])
def test_hand_made_outputs_get_the_same_verdict_from_both_checkers(hand_made, i):
    name, *_, project_ok, bfcl_ok = HAND_MADE[i]
    row = hand_made[i]
    assert (row["project_correct"], row["bfcl_valid"]) == (project_ok, bfcl_ok), (name, row)
    assert row["agree"] and row["explanation"] is None


# (case, category, entry, output, the reason the report must give); the project accepts
# each output and BFCL rejects it, except the last (the other way round)
DIFFERENCES = [
    ("whole float for an integer", "simple_python", 0, call(TRIANGLE, base=10.0, height=5),
     "a number of the other Python type"),
    ("whole float in parallel calls", "parallel", 0, call("spotify.play", artist="Maroon 5", duration=15.0) + "\n"
     + call("spotify.play", artist="Taylor Swift", duration=20), "a number of the other Python type"),
    # simple_python_82: numbers is an array of floats; BFCL makes an int a float only at the top level
    ("ints in a list of floats", "simple_python", 82, call("calculate_average", numbers=[12, 15, 18, 20, 21, 26, 30]),
     "a number of the other Python type"),
    # simple_python_120: equal_variance is pinned to [True], its schema default
    ("pinned argument left at its default", "simple_python", 120,
     call("run_two_sample_ttest", group1=[3, 4, 5, 6, 4], group2=[7, 8, 9, 8, 7]), "an argument the answer pins"),
    # parallel_multiple_75: the Rook Corner answer names no `event`, whose schema default is "null"
    ("unnamed argument given its default", "parallel_multiple", 75, "\n".join([
        call("route_planner.calculate_route", start="New York", destination="Boston"),
        call("chess_club_details.find", name="Knight Gambit", city="Boston"),
        call("route_planner.calculate_route", start="Boston", destination="Philadelphia"),
        call("chess_club_details.find", name="Rook Corner", city="Philadelphia", event="null"),
        call("route_planner.calculate_route", start="Philadelphia", destination="New York", method="shortest")]),
     "an argument the answer does not name"),
    ("malformed call on an irrelevance entry", "irrelevance", 0,
     '<tool_call>\n{"name": "determine_body_mass_index", "arguments": {\n', "a call that does not parse"),
]


@pytest.mark.parametrize("i", range(len(DIFFERENCES)), ids=[c[0] for c in DIFFERENCES])
def test_each_known_difference_is_named_and_checked_by_bfcl_itself(i):
    name, category, index, text, reason = DIFFERENCES[i]
    (row,) = agree([(category, index, text)])
    irrelevance = category == "irrelevance"
    assert (row["project_correct"], row["bfcl_valid"]) == (irrelevance is False, irrelevance), (name, row)
    assert row["explanation"].startswith(reason), row["explanation"]


def test_bfcl_greedy_pairing_of_parallel_calls_is_named():
    """BFCL pairs answers with calls greedily: the first answer takes the first call that
    fits, which the second answer needed; the project's optimal assignment pairs both."""
    tool = {"name": "f", "description": "", "parameters": {"type": "object", "properties": {
        "x": {"type": "string"}}, "required": ["x"]}}
    sample = Sample(id="parallel_x", tools=[tool], messages=[{"role": "user", "content": "q"}], scenario="parallel",
                    expected_calls=[ExpectedCall(name="f", arguments={"x": ["a", "b"]}),
                                    ExpectedCall(name="f", arguments={"x": ["a"]})])
    parsed = HERMES.parse(call("f", x="a") + "\n" + call("f", x="b"), sample.tools)
    row = {**check_sample(sample, parsed).to_dict(), "parsed": parsed.to_dict()}
    case = {"id": "parallel_x", "category": "parallel", "function": [{**tool, "parameters": {
        "type": "dict", "properties": {"x": {"type": "string"}}, "required": ["x"]}}],
        "possible_answer": [{"f": {"x": ["a", "b"]}}, {"f": {"x": ["a"]}}],
        "decoded": [{"f": {"x": "a"}}, {"f": {"x": "b"}}], "decode_error": None}
    (agreed,) = agreement([case], [row], reference_verdicts([case]))
    assert (agreed["project_correct"], agreed["bfcl_valid"]) == (True, False)
    assert agreed["explanation"].startswith("BFCL pairs parallel calls with its answers greedily")


def test_an_argument_bfcl_says_to_leave_out_is_wrong_for_both():
    """simple_python_211 answers cc and bcc with "" alone: they must be left out."""
    text = call("send_email", to="john.doe@example.com", subject="Meeting", body="Let's meet at 10 AM tomorrow",
                cc="boss@example.com")
    right = call("send_email", to="john.doe@example.com", subject="Meeting", body="Let's meet at 10 AM tomorrow")
    wrong, ok = agree([("simple_python", 211, text), ("simple_python", 211, right)])
    assert (wrong["project_correct"], wrong["bfcl_valid"], ok["project_correct"], ok["bfcl_valid"]) == (
        False, False, True, True)


def test_every_answer_of_every_category_gets_the_same_verdict_from_both_checkers():
    """The answer key itself (first acceptable value of each argument), for all 3,475
    entries: a difference in how the two sides read BFCL's answers shows up here."""
    cases, rows = [], []
    for category in bfcl_params.CATEGORIES:
        for s in bfcl_data.category_samples(category):
            text = HERMES.render_completion(
                [ToolCall(name=c.name, arguments={k: v[0] for k, v in c.arguments.items()})
                 for c in s.expected_calls], "" if s.expected_calls else "No function fits this request.")
            parsed = HERMES.parse(text, s.tools)
            rows.append({**check_sample(s, parsed).to_dict(), "parsed": parsed.to_dict()})
            cases += bfcl_report.reference_cases(category, rows[-1:])
    agreed = agreement(cases, rows, reference_verdicts(cases))
    assert len(agreed) == 3475
    assert [r["id"] for r in agreed if not r["agree"]] == []
    # the answer key fails only where a BFCL answer breaks its own schema (an argument the
    # function lacks, a required one marked optional): 7 entries of bfcl-eval 2026.3.23
    wrong = sorted(r["id"] for r in agreed if not r["bfcl_valid"])
    assert len(wrong) == 7 and wrong[:2] == ["live_multiple_507-149-4", "live_multiple_862-181-3"], wrong


def test_nested_answers_expand_to_every_combination_bfcl_accepts():
    calls = bfcl_data.expected_calls([{"f": {"rows": [[{"k": ["a", "b"], "opt": ["", 1]}]], "n": [2, 2.0]}}])
    assert calls[0].arguments["rows"] == [[{"k": "a", "opt": 1}], [{"k": "a"}], [{"k": "b", "opt": 1}], [{"k": "b"}]]
    assert calls[0].arguments["n"] == [2, 2.0] and calls[0].optional == []


def test_the_leaderboard_aggregates_follow_bfcl_formulas():
    per = {c: {"bfcl_accuracy": a, "n": n} for c, a, n in [
        ("simple_python", 0.8, 400), ("multiple", 0.6, 200), ("parallel", 0.4, 200),
        ("parallel_multiple", 0.2, 200), ("irrelevance", 0.9, 240),
        ("live_simple", 0.5, 258), ("live_multiple", 0.25, 1053)]}
    board = bfcl_report.leaderboard(per)
    assert board["non_live_ast_summary (unweighted; simple = simple_python only)"] == pytest.approx(0.5)
    assert board["live_ast_summary (weighted by count, 2 of 4 categories)"] == pytest.approx(
        (0.5 * 258 + 0.25 * 1053) / (258 + 1053))
    assert board["irrelevance (non-live)"] == 0.9


def test_live_categories_are_refused_for_an_adapter_trained_on_them(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "data_card.json").write_text(json.dumps({"bfcl_live_ids_in_train": ["live_simple_3-2-0"]}))
    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"params": {"data": f"{data}:train"}}))
    (run / "call_gate.json").write_text(json.dumps({"threshold": 0.6}))
    params = bfcl_params.BFCLParams(adapter=str(run / "adapter"), categories=["simple_python", "live_simple"],
                             out=str(tmp_path / "out")).resolved()
    assert params.call_gate == 0.6 and params.run == "smollm2-135m-instruct+run"
    with pytest.raises(ValueError, match="live_simple.*not held out"):
        bfcl.check_held_out(params)
    bfcl.check_held_out(params.model_copy(update={"categories": ["simple_python", "live_multiple"]}))
    # without a training run beside it, a live category is refused, a non-live one is scored
    alone = tmp_path / "alone" / "adapter"
    alone.mkdir(parents=True)
    lone = params.model_copy(update={"adapter": str(alone)})
    with pytest.raises(FileNotFoundError, match="unknown whether it trained on BFCL's live categories"):
        bfcl.check_held_out(lone.model_copy(update={"categories": ["live_multiple"]}))
    bfcl.check_held_out(lone.model_copy(update={"categories": ["simple_python"]}))


def test_bad_parameters_name_the_problem():
    with pytest.raises(ValueError, match="unknown BFCL categories.*live_relevance"):
        bfcl_params.BFCLParams(categories=["live_relevance"])
    with pytest.raises(ValueError, match="call_gate must be auto, none or a number"):
        bfcl_params.BFCLParams(call_gate="sometimes")
    with pytest.raises(ValueError, match="not a single-turn AST category"):
        bfcl_data.category_samples("multi_turn_base")


def test_the_cli_generates_resumes_and_scores_with_a_tiny_model(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    out = tmp_path / "bfcl"
    argv = ["--model", "tiny-random-llama", "--categories", "simple_python", "irrelevance", "--limit", "2",
            "--out", str(out), "--set", "max_new_tokens=4", "batch_size=2", "wandb=disabled", "dtype=float32"]
    results = bfcl.main(argv)
    assert results["n_samples"] == 4 and results["data"] == "bfcl:simple_python,irrelevance"
    assert results["prompt_version"] == PROMPT_VERSION  # what the headline's report marks older runs by
    assert set(results["metrics"]["bfcl"]["per_category"]) == {"simple_python", "irrelevance"}
    lines = [json.loads(x) for x in (out / "agreement.jsonl").read_text().splitlines()]
    assert [r["id"] for r in lines] == ["simple_python_0", "simple_python_1", "irrelevance_0", "irrelevance_1"]
    assert results["metrics"]["bfcl"]["agreement"] == sum(r["agree"] for r in lines) / 4
    verdict_rows = [json.loads(x) for x in (out / "verdicts.jsonl").read_text().splitlines()]
    for category in ("simple_python", "irrelevance"):  # answers that parse and make no call, stricter than BFCL
        rows = [r for r in verdict_rows if r["id"].startswith(category)]
        clean = sum(not r["output_names"] and r["parse_error"] is None for r in rows) / len(rows)
        assert results["metrics"]["bfcl"]["per_category"][category]["parse_valid_no_call"] == clean
    assert "Agreement with BFCL's checker" in (out / "README.md").read_text()
    # a rerun generates nothing new and rescoring gives the same results
    before = (out / "simple_python" / "predictions.jsonl").read_text()
    again = bfcl.main(argv)
    assert (out / "simple_python" / "predictions.jsonl").read_text() == before
    assert again["metrics"]["bfcl"] == results["metrics"]["bfcl"]
    assert bfcl.main(["--score-only", "--out", str(out)])["metrics"]["bfcl"] == results["metrics"]["bfcl"]
    # the command the results record reproduces the run (here: finds it done)
    command = results["command"]
    assert command.startswith("python -m common.bfcl --model tiny-random-llama --categories simple_python "
                              "irrelevance --limit 2 --call-gate none")
    assert bfcl.main([*command.split()[3:], "--out", str(out)])["metrics"]["bfcl"] == results["metrics"]["bfcl"]
    assert (out / "simple_python" / "predictions.jsonl").read_text() == before
    # answers recorded before prompts listed a tool's keys sorted (no prompt_version) answered
    # other prompts (BFCL's entries are not sorted): refused by a rerun before a model loads, and by --score-only
    for category in ("simple_python", "irrelevance"):
        recorded_before_prompt_versions(out / category / "predictions.jsonl")
    monkeypatch.setattr(bfcl, "load_generator", lambda *a, **k: pytest.fail("a model loaded"))
    stale = r"changed since they were generated .*: simple_python \(2\), irrelevance \(2\); delete those"
    with pytest.raises(UserError, match=stale):
        bfcl.main(argv)
    with pytest.raises(UserError, match=stale):
        bfcl.main(["--score-only", "--out", str(out)])
