"""Tool-call formats: render -> parse round trips, known pitfalls, prompt rendering."""

from __future__ import annotations

import json
import keyword

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from common.formats import FORMATS, get_format
from common.formats.base import has_token
from common.samples import ToolCall

ALL = sorted(FORMATS)

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name"},
            "days": {"type": "integer", "description": "Forecast days"}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "get_time", "description": "Local time in a zone",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}},
                       "required": ["zone"]}}},
]
WEATHER = ToolCall(name="get_weather", arguments={"city": "Zürich", "days": 3})
TIME = ToolCall(name="get_time", arguments={"zone": "東京 🕒"})

# The exact text each format writes for WEATHER.
WEATHER_TEXT = {
    "hermes": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Zürich", "days": 3}}\n</tool_call>',
    "qwen_xml": ("<tool_call>\n<function=get_weather>\n<parameter=city>\nZürich\n</parameter>\n"
                 "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>"),
    "functiongemma": "<start_function_call>call:get_weather{city:<escape>Zürich<escape>,days:3}<end_function_call>",
    "pythonic": "[get_weather(city='Zürich', days=3)]",
}
# The exact user turn each format writes for the tool result '{"temp": 15}'.
RESULT_TEXT = {
    "hermes": '<tool_response>\n{"temp": 15}\n</tool_response>',
    "qwen_xml": '<tool_response>\n{"temp": 15}\n</tool_response>',
    "functiongemma": "<start_function_response>response:get_weather{temp:15}<end_function_response>",
    "pythonic": '<tool_response>\n{"temp": 15}\n</tool_response>',
}


def dump(calls: list[ToolCall]) -> str:
    # JSON text, so True and 1, or 1.0 and 1, do not compare equal as they do in Python
    return json.dumps([c.model_dump() for c in calls], sort_keys=True, ensure_ascii=False)


def call_attempt(arguments: str, **extra: str) -> list[dict]:
    return [{"role": "user", "content": "Weather in Zürich?"},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {
                "name": "get_weather", "arguments": arguments}}], **extra}]


def test_registry_names_every_format():
    assert ALL == ["functiongemma", "hermes", "pythonic", "qwen_xml"]
    assert {n: get_format(n).native_marker for n in ALL} == {
        "functiongemma": "<start_function_declaration>", "hermes": "<tool_call>",
        "pythonic": "[func_name1(", "qwen_xml": "<function="}
    with pytest.raises(ValueError, match="unknown tool-call format 'json'"):
        get_format("json")


# -- round trips --------------------------------------------------------------------

KEYS = st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True)  # Python keywords included
# Function names are Python identifiers so that the pythonic format can write them.
NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True).filter(lambda s: not keyword.iskeyword(s))
SCALARS = (st.none() | st.booleans() | st.integers()
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(KEYS, inner, max_size=4), max_leaves=12)
CALLS = st.lists(st.builds(ToolCall, name=NAMES, arguments=st.dictionaries(KEYS, VALUES, max_size=5)),
                 min_size=1, max_size=3, unique_by=lambda c: c.name)

# What a format cannot carry inside a value: reasoning is split off before any format
# parses, so no format can hold a think tag; the others are each format's own delimiter.
UNREPRESENTABLE = {"hermes": ("<think>", "</think>"),
                   "qwen_xml": ("<think>", "</think>", "</parameter>"),
                   "functiongemma": ("<think>", "</think>", "<escape>"),
                   "pythonic": ("<think>", "</think>", "<|tool_code|>")}


def schema_type(value: object) -> str:
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if value is None:
        return "null"
    return "array" if isinstance(value, list) else "object"


def tools_for(calls: list[ToolCall]) -> list[dict]:
    return [{"name": c.name, "parameters": {"type": "object", "properties": {
        k: {"type": schema_type(v)} for k, v in c.arguments.items()}}} for c in calls]


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=75, deadline=None)
@given(calls=CALLS)
def test_render_then_parse_round_trips(name, calls):
    text = json.dumps([c.model_dump() for c in calls], ensure_ascii=False)
    assume(not any(marker in text for marker in UNREPRESENTABLE[name]))
    fmt = get_format(name)
    parsed = fmt.parse(fmt.render_calls(calls), tools_for(calls))
    assert parsed.error is None
    assert dump(parsed.calls) == dump(calls)
    assert parsed.content == ""
    assert parsed.reasoning is None


@pytest.mark.parametrize("name", ALL)
def test_renders_each_format_exactly(name):
    assert get_format(name).render_calls([WEATHER]) == WEATHER_TEXT[name]


# -- pitfalls other projects ran into -----------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_arguments_as_json_string_or_dict_render_the_same_object(name):
    fmt = get_format(name)
    as_string = fmt.render_prompt(TOOLS, call_attempt('{"city": "Zürich", "days": 3}'))
    as_dict = fmt.render_prompt(TOOLS, call_attempt({"city": "Zürich", "days": 3}))
    assert as_string == as_dict
    assert WEATHER_TEXT[name] in as_string
    assert '\\"city' not in as_string  # no double encoding


@pytest.mark.parametrize("name", ALL)
def test_content_none_and_empty_render_identically(name):
    fmt = get_format(name)
    none = fmt.render_prompt(TOOLS, call_attempt({"city": "Zürich", "days": 3}, content=None))
    empty = fmt.render_prompt(TOOLS, call_attempt({"city": "Zürich", "days": 3}, content=""))
    assert none == empty
    assert f"<|im_start|>assistant\n{WEATHER_TEXT[name]}<|im_end|>" in none


@pytest.mark.parametrize("name", ALL)
def test_reasoning_before_the_call_is_captured(name):
    parsed = get_format(name).parse(f"<think>The user wants Zürich.</think>\n{WEATHER_TEXT[name]}", TOOLS)
    assert (parsed.reasoning, parsed.content, parsed.error) == ("The user wants Zürich.", "", None)
    assert dump(parsed.calls) == dump([WEATHER])


@pytest.mark.parametrize("name", ALL)
def test_text_after_the_call_is_content(name):
    parsed = get_format(name).parse(f"{WEATHER_TEXT[name]}\nI will report back.", TOOLS)
    assert (parsed.content, parsed.error) == ("I will report back.", None)
    assert dump(parsed.calls) == dump([WEATHER])


@pytest.mark.parametrize("name", ALL)
def test_text_before_the_call_round_trips_as_content(name):
    fmt = get_format(name)
    completion = fmt.render_completion([WEATHER, TIME], "Checking both.")
    assert completion.startswith("Checking both.\n")
    parsed = fmt.parse(completion, TOOLS)
    assert (parsed.content, parsed.error) == ("Checking both.", None)
    assert dump(parsed.calls) == dump([WEATHER, TIME])


@pytest.mark.parametrize("name", ALL)
def test_unicode_is_written_as_is(name):
    fmt = get_format(name)
    call = ToolCall(name="get_time", arguments={"zone": "東京 🕒", "note": "Zürich"})
    text = fmt.render_calls([call])
    assert "東京 🕒" in text and "Zürich" in text and "\\u" not in text
    assert dump(fmt.parse(text, TOOLS).calls) == dump([call])


@pytest.mark.parametrize("name", ALL)
def test_unclosed_think_is_a_truncation(name):
    parsed = get_format(name).parse("<think>Let me look up Zürich", TOOLS)
    assert parsed.calls == []
    assert (parsed.reasoning, parsed.content) == ("Let me look up Zürich", "")
    assert parsed.error.kind == "truncated_think"


@pytest.mark.parametrize("name", ALL)
def test_plain_text_is_content_without_a_call(name):
    text = "The weather in Zürich is sunny (22 °C).\nEnjoy it!"
    parsed = get_format(name).parse(text, TOOLS)
    assert (parsed.calls, parsed.content, parsed.error) == ([], text, None)


MALFORMED = [
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Zürich"\n</tool_call>', "invalid_json"),
    ("hermes", '<tool_call>\n{"arguments": {"city": "Zürich"}}\n</tool_call>', "missing_field"),
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {}} Thanks\n</tool_call>', "unclosed_tag"),
    ("qwen_xml", "<tool_call>\n<function=get_weather>\n<parameter=city>\nZürich\n", "unclosed_tag"),
    ("qwen_xml", "<tool_call>\n<function=get_weather>\n<parameter=city>\nZürich\n</parameter>\n", "unclosed_tag"),
    ("qwen_xml", "<tool_call>\n<function=get_weather>\n</function>\nThanks", "unclosed_tag"),
    ("qwen_xml", "<tool_call>\n<function=get_weather\n</function>\n</tool_call>", "unclosed_tag"),
    ("qwen_xml", ("<tool_call>\n<function=get_weather>\n<parameter=city>\nA\n</parameter>\n"
                  "<parameter=city>\nB\n</parameter>\n</function>\n</tool_call>"), "syntax_error"),
    ("qwen_xml", '<tool_call>\n{"name": "get_weather"}\n</tool_call>', "syntax_error"),
    ("qwen_xml", "<tool_call>\n<function=get_weather>\ncity: Zürich\n</function>\n</tool_call>", "syntax_error"),
    ("qwen_xml", "<tool_call>\n<function=>\n</function>\n</tool_call>", "missing_field"),
    ("functiongemma", "<start_function_call>call:get_weather{city:<escape>Zürich", "unclosed_tag"),
    ("functiongemma", "<start_function_call>call:get_weather{city:<escape>Zürich<escape>,days:3", "unclosed_tag"),
    ("functiongemma", "<start_function_call>call:get_weather{days:3} now<end_function_call>", "unclosed_tag"),
    ("functiongemma", "<start_function_call>call:get_weather{city <escape>Zürich<escape>}<end_function_call>",
     "syntax_error"),
    ("functiongemma", "<start_function_call>call:get_weather{days:[1,2}<end_function_call>", "syntax_error"),
    ("functiongemma", "<start_function_call>get_weather{days:3}<end_function_call>", "syntax_error"),
    ("functiongemma", "<start_function_call>call:{days:3}<end_function_call>", "missing_field"),
    ("functiongemma", "<start_function_call>call:get_weather{days:1,days:2}<end_function_call>", "syntax_error"),
    ("pythonic", "[get_weather(city='Zürich'", "syntax_error"),
    ("pythonic", "[get_weather(city='Zürich', days=)]", "syntax_error"),
    ("pythonic", "[get_weather(city=Zurich)]", "syntax_error"),
    ("pythonic", "[get_weather(city='Zürich'), 42]", "syntax_error"),
    ("pythonic", "get_weather('Zürich', days=3)", "unsupported"),
    ("pythonic", "get_weather(city={'Zürich', 'Bern'})", "unsupported"),
    ("pythonic", "get_weather(**['Zürich'])", "unsupported"),
]


@pytest.mark.parametrize(("name", "text", "kind"), MALFORMED)
def test_malformed_output_is_a_parse_error(name, text, kind):
    parsed = get_format(name).parse(text, TOOLS)
    assert parsed.calls == []
    assert parsed.error is not None and parsed.error.kind == kind
    assert parsed.error.snippet and parsed.error.snippet in text


@pytest.mark.parametrize("name", ["hermes", "qwen_xml", "functiongemma"])
def test_calls_before_a_broken_one_are_kept(name):
    broken = {"hermes": '<tool_call>\n{"name": "get_time", "arguments": {',
              "qwen_xml": "<tool_call>\n<function=get_time>\n<parameter=zone>\nCET",
              "functiongemma": "<start_function_call>call:get_time{zone:<escape>CET"}[name]
    parsed = get_format(name).parse(f"Sure.\n{WEATHER_TEXT[name]}\n{broken}", TOOLS)
    assert dump(parsed.calls) == dump([WEATHER])
    assert parsed.content == "Sure."
    assert parsed.error.kind in {"invalid_json", "unclosed_tag"}


@pytest.mark.parametrize("name", ["hermes", "qwen_xml", "functiongemma"])
def test_a_missing_final_close_tag_is_accepted(name):
    end = {"hermes": "</tool_call>", "qwen_xml": "</tool_call>", "functiongemma": "<end_function_call>"}[name]
    text = WEATHER_TEXT[name].removesuffix(end)
    parsed = get_format(name).parse(text, TOOLS)
    assert (parsed.error, parsed.content) == (None, "")
    assert dump(parsed.calls) == dump([WEATHER])


# -- format specifics -----------------------------------------------------------------

def test_qwen_xml_converts_values_by_schema():
    text = ("<tool_call>\n<function=get_weather>\n<parameter=city>\n123\n</parameter>\n"
            "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>")
    fmt = get_format("qwen_xml")
    assert fmt.parse(text, TOOLS).calls == [ToolCall(name="get_weather", arguments={"city": "123", "days": 3})]
    # without a schema JSON is tried first
    assert fmt.parse(text).calls == [ToolCall(name="get_weather", arguments={"city": 123, "days": 3})]
    # a non-JSON value for a typed argument stays a string for the metrics to flag
    loose = text.replace("\n3\n", "\nthree\n")
    assert fmt.parse(loose, TOOLS).calls[0].arguments == {"city": "123", "days": "three"}
    optional = [{"name": "get_weather", "parameters": {"type": "object", "properties": {
        "city": {"type": ["string", "null"]}}}}]
    assert fmt.parse(text.replace("\n123\n", "\nnull\n"), optional).calls[0].arguments == {
        "city": None, "days": 3}
    flag = [{"name": "f", "parameters": {"type": "object", "properties": {"on": {"type": "boolean"}}}}]
    python_bool = "<tool_call>\n<function=f>\n<parameter=on>\nTrue\n</parameter>\n</function>\n</tool_call>"
    assert fmt.parse(python_bool, flag).calls == [ToolCall(name="f", arguments={"on": True})]


def test_qwen_xml_keeps_a_value_s_own_surrounding_whitespace():
    fmt = get_format("qwen_xml")
    call = ToolCall(name="write_file", arguments={"code": "\n    indented()\n", "empty": ""})
    text = fmt.render_calls([call])
    assert text == ("<tool_call>\n<function=write_file>\n<parameter=code>\n\n    indented()\n\n</parameter>\n"
                    "<parameter=empty>\n\n</parameter>\n</function>\n</tool_call>")
    tools = [{"name": "write_file", "parameters": {"type": "object", "properties": {
        "code": {"type": "string"}, "empty": {"type": "string"}}}}]
    assert fmt.parse(text, tools).calls == [call]


def test_qwen_xml_reads_functions_without_a_tool_call_wrapper():
    parsed = get_format("qwen_xml").parse(
        "<function=get_time>\n<parameter=zone>\nCET\n</parameter>\n</function>\nDone.", TOOLS)
    assert (parsed.calls, parsed.content, parsed.error) == (
        [ToolCall(name="get_time", arguments={"zone": "CET"})], "Done.", None)


def test_functiongemma_declares_tools_in_its_template_syntax():
    prompt = get_format("functiongemma").system_prompt(TOOLS[:1])
    assert prompt.startswith(
        "You are a model that can do function calling with the following functions"
        "<start_function_declaration>declaration:get_weather{description:<escape>Current weather in a city"
        "<escape>,parameters:{properties:{city:{description:<escape>City name<escape>,type:<escape>STRING"
        "<escape>},days:{description:<escape>Forecast days<escape>,type:<escape>INTEGER<escape>}},"
        "required:[<escape>city<escape>],type:<escape>OBJECT<escape>}}<end_function_declaration>\n")
    assert "answer in plain text without a call" in prompt


def test_functiongemma_tool_results():
    fmt = get_format("functiongemma")
    assert fmt.render_tool_result("get_weather", '{"temp": 15, "sky": "sunny"}') == (
        "<start_function_response>response:get_weather{sky:<escape>sunny<escape>,temp:15}"
        "<end_function_response>")
    for content in ("sunny", "[1, 2]"):
        assert fmt.render_tool_result("get_weather", content) == (
            f"<start_function_response>response:get_weather{{result:<escape>{content}<escape>}}"
            "<end_function_response>")


def test_functiongemma_reads_lenient_values_and_the_response_stop():
    parsed = get_format("functiongemma").parse(
        "<start_function_call>call:get_weather{ <escape>city<escape> : Zürich , days : -2.5e1 ,"
        " opts:{deep:[true,null,{}]}}<end_function_call><start_function_response>")
    assert (parsed.content, parsed.error) == ("", None)
    assert dump(parsed.calls) == dump([ToolCall(name="get_weather", arguments={
        "city": "Zürich", "days": -25.0, "opts": {"deep": [True, None, {}]}})])


PYTHONIC_VARIANTS = [
    ("get_weather(city='Zürich', days=3)", [WEATHER], ""),
    ("get_weather(city='Zürich', days=3)\nget_time(zone='東京 🕒')", [WEATHER, TIME], ""),
    ("```python\n[get_weather(city='Zürich', days=3)]\n```", [WEATHER], ""),
    ("Here:\n```tool_code\nget_weather(city='Zürich', days=3)\n```\nDone.", [WEATHER], "Here:\n\nDone."),
    ("<|tool_code|>get_weather(city='Zürich', days=3)<|end|>", [WEATHER], ""),
    ('get_weather(**{"city": "Zürich", "days": 3})', [WEATHER], ""),
    ("[math.factorial(n=5)]", [ToolCall(name="math.factorial", arguments={"n": 5})], ""),
    ("[f(point=(1, 2.5), flag=true, none=null, nested={'a': (True, None)})]",
     [ToolCall(name="f", arguments={"point": [1, 2.5], "flag": True, "none": None,
                                    "nested": {"a": [True, None]}})], ""),
    ("[f(s='a ] b )')] and then some text (see)", [ToolCall(name="f", arguments={"s": "a ] b )"})],
     "and then some text (see)"),
]


@pytest.mark.parametrize(("text", "calls", "content"), PYTHONIC_VARIANTS)
def test_pythonic_reads_the_variants_models_write(text, calls, content):
    parsed = get_format("pythonic").parse(text, TOOLS)
    assert (parsed.content, parsed.error) == (content, None)
    assert dump(parsed.calls) == dump(calls)


def test_pythonic_leaves_code_answers_as_content():
    text = "Use this:\n```python\nimport math\nprint(math.pi)\n```"
    parsed = get_format("pythonic").parse(text, TOOLS)
    assert (parsed.calls, parsed.content, parsed.error) == ([], text, None)


def test_pythonic_writes_keyword_named_arguments_through_a_dict():
    fmt = get_format("pythonic")
    call = ToolCall(name="search", arguments={"query": "x", "from": 1, "max-results": 2})
    assert fmt.render_calls([call]) == "[search(query='x', **{'from': 1, 'max-results': 2})]"
    assert fmt.parse(fmt.render_calls([call])).calls == [call]


# -- prompts --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_fallback_chatml_prompt_holds_the_tools_and_opens_the_answer(name):
    fmt = get_format(name)
    prompt = fmt.render_prompt(TOOLS, [{"role": "user", "content": "Weather in Zürich?"}], tokenizer=None)
    system = fmt.system_prompt(TOOLS)
    assert "get_weather" in system and "get_time" in system
    assert prompt == (f"<|im_start|>system\n{system}<|im_end|>\n"
                      "<|im_start|>user\nWeather in Zürich?<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("name", ALL)
def test_a_prompt_is_the_same_whatever_order_the_tools_keys_come_in(name):
    # A BFCL entry normalised in memory lists `required` before `type` and `properties`; the
    # same entry stored by a data build (datacard.to_row) and read back (sources.from_row) has
    # every key sorted. The model must see one prompt for both, as in training (LOG.md,
    # 2026-12-01, session 21: the masking recipe wrote "required" as an argument name).
    from common.bfcl_data import entry_to_sample
    from common.data.datacard import to_row
    from common.sources import from_row
    entry = {"id": "simple_python_1", "question": [[{"role": "user", "content": "Factorial of 5?"}]],
             "function": [{"name": "math.factorial", "description": "Calculate the factorial.",
                           "parameters": {"type": "dict", "properties": {
                               "number": {"type": "integer", "description": "The number."},
                               "base": {"type": "float", "description": "Unused."}},
                               "required": ["number"]}}],
             "ground_truth": [{"math.factorial": {"number": [5]}}]}
    in_memory = entry_to_sample(entry, "simple_python")
    stored = from_row(json.loads(json.dumps(to_row(in_memory, 0))))
    assert json.dumps(in_memory.tools) != json.dumps(stored.tools)  # the orders do differ
    fmt = get_format(name)
    assert fmt.system_prompt(in_memory.tools) == fmt.system_prompt(stored.tools)
    assert (fmt.render_prompt(in_memory.tools, in_memory.messages, tokenizer=None)
            == fmt.render_prompt(stored.tools, stored.messages, tokenizer=None))


@pytest.mark.parametrize("name", ALL)
def test_plain_messages_fold_calls_and_results_into_turns(name):
    fmt = get_format(name)
    messages = [{"role": "system", "content": "Be brief."},
                *call_attempt('{"city": "Zürich", "days": 3}', content=None),
                {"role": "tool", "name": "get_weather", "tool_call_id": "c1", "content": '{"temp": 15}'},
                {"role": "tool", "name": "get_weather", "tool_call_id": "c1", "content": '{"temp": 15}'}]
    assert fmt.plain_messages(TOOLS, messages) == [
        {"role": "system", "content": f"{fmt.system_prompt(TOOLS)}\n\nBe brief."},
        {"role": "user", "content": "Weather in Zürich?"},
        {"role": "assistant", "content": WEATHER_TEXT[name]},
        {"role": "user", "content": f"{RESULT_TEXT[name]}\n{RESULT_TEXT[name]}"},
    ]


@pytest.mark.parametrize("name", ALL)
def test_render_example_completion_is_the_completion_and_end_marker(name):
    fmt = get_format(name)
    messages = [{"role": "user", "content": "Weather in Zürich?"}]
    prompt, completion = fmt.render_example(TOOLS, messages, [WEATHER], "Checking.")
    assert prompt == fmt.render_prompt(TOOLS, messages)
    assert completion == fmt.render_completion([WEATHER], "Checking.") + "<|im_end|>"
    assert completion == f"Checking.\n{WEATHER_TEXT[name]}<|im_end|>"


class GemmaVocabulary:
    """A tokenizer without a chat template whose vocabulary has Gemma's turn markers."""

    chat_template = None
    bos_token, eos_token = "<bos>", "<eos>"

    def get_vocab(self) -> dict[str, int]:
        return {"<start_of_turn>": 105, "<end_of_turn>": 106}


def test_gemma_vocabulary_gets_gemma_turns():
    fmt, tokenizer = get_format("functiongemma"), GemmaVocabulary()
    prompt, completion = fmt.render_example(
        TOOLS, [{"role": "user", "content": "Weather in Zürich?"}], [WEATHER], tokenizer=tokenizer)
    assert prompt == (f"<bos><start_of_turn>developer\n{fmt.system_prompt(TOOLS)}<end_of_turn>\n"
                      "<start_of_turn>user\nWeather in Zürich?<end_of_turn>\n<start_of_turn>model\n")
    assert completion == WEATHER_TEXT["functiongemma"] + "<end_of_turn>"


class GemmaLookupOnly(GemmaVocabulary):
    """Answers single-token lookups as HF tokenizers do (unknown -> the unk id) and refuses to
    build its whole vocabulary: rendering must not call get_vocab() once per prompt."""

    unk_token, unk_token_id = "<unk>", 3

    def get_vocab(self) -> dict[str, int]:
        raise AssertionError("get_vocab() builds the whole vocabulary; look up the one token")

    def convert_tokens_to_ids(self, token: str) -> int:
        return {"<start_of_turn>": 105, "<end_of_turn>": 106, "<unk>": 3}.get(token, 3)


def test_fallback_style_looks_up_one_token_not_the_vocabulary():
    fmt, lookup = get_format("functiongemma"), GemmaLookupOnly()
    messages = [{"role": "user", "content": "Weather in Zürich?"}]
    expected = fmt.render_example(TOOLS, messages, [WEATHER], tokenizer=GemmaVocabulary())
    assert fmt.render_example(TOOLS, messages, [WEATHER], tokenizer=lookup) == expected
    assert has_token(lookup, "<unk>") and not has_token(lookup, "<|im_start|>")
