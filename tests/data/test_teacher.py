"""The teacher: its prompt, the OpenAI client against a recorded response, the cache, a local model.

The OpenAI teacher runs the real `openai` client; its HTTP is served from
tests/fixtures/openai_chat_completion.json through an `httpx2.MockTransport` (openai
3.x sends through httpx2, so a plain httpx transport would not be accepted), and the
test reads back the request body the client sent.
"""

import json
from pathlib import Path

import httpx2
import pytest
from openai import OpenAI

from common.data.teacher import (
    CachedTeacher,
    LocalTeacher,
    OpenAITeacher,
    Teacher,
    TeacherError,
    clean_request,
    teacher_prompt,
)

FIXTURE = Path(__file__).parents[1] / "fixtures" / "openai_chat_completion.json"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "The city."},
        "units": {"type": "string", "description": "celsius or fahrenheit."}}, "required": ["city"]}}}
BOOK = {"type": "function", "function": {
    "name": "book_table", "description": "Book a restaurant table.",
    "parameters": {"type": "object", "properties": {
        "restaurant": {"type": "string"}, "people": {"type": "integer"}, "time": {"type": "string"}},
        "required": ["restaurant", "people", "time"]}}}
OSLO = [{"name": "get_weather", "arguments": {"city": "Oslo"}}]


class RecordedOpenAI:
    def __init__(self):
        self.bodies: list[dict] = []

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        assert request.method == "POST" and request.url.path == "/v1/chat/completions", request.url
        self.bodies.append(json.loads(request.content))
        return httpx2.Response(200, json=json.loads(FIXTURE.read_text()))

    def client(self) -> OpenAI:
        return OpenAI(base_url="http://teacher.test/v1", api_key="sk-recorded", max_retries=0,
                      http_client=httpx2.Client(transport=httpx2.MockTransport(self.handle)))


class Scripted(Teacher):
    def __init__(self, answers):
        self.answers, self.prompts = list(answers), []

    def identity(self):
        return {"teacher": "scripted"}

    def complete(self, prompt, seed):
        self.prompts.append(prompt)
        return self.answers.pop(0)


def test_prompt_lists_the_values_and_hides_the_function_names():
    prompt = teacher_prompt([WEATHER, BOOK], [{"name": "book_table", "arguments": {
        "restaurant": "Chez Lu", "people": 4, "time": "19:30"}}], "single", seed=3)
    assert '"restaurant": "Chez Lu"' in prompt and '"people": 4' in prompt and '"time": "19:30"' in prompt
    assert "literally" in prompt and "Do not name any function" in prompt
    assert "get_weather" not in prompt  # only the functions called are described
    assert prompt == teacher_prompt([WEATHER, BOOK], [{"name": "book_table", "arguments": {
        "restaurant": "Chez Lu", "people": 4, "time": "19:30"}}], "single", seed=3)


def test_prompt_for_missing_info_withholds_the_missing_argument():
    call = {"name": "book_table", "arguments": {"restaurant": "Chez Lu", "people": 4, "time": "19:30"},
            "missing": "time"}
    prompt = teacher_prompt([BOOK], [call], "missing_info", seed=0)
    assert "19:30" not in prompt and "must NOT give any value for `time`" in prompt
    assert '"people": 4' in prompt


def test_prompt_for_no_call_and_for_parallel_calls():
    no_call = teacher_prompt([WEATHER, BOOK], [], "no_tool", seed=0)
    assert "none of these tools can help" in no_call and "get_weather" in no_call
    both = teacher_prompt([WEATHER], OSLO + [{"name": "get_weather", "arguments": {"city": "Lima"}}],
                          "parallel", seed=0)
    assert '"city": "Oslo"' in both and '"city": "Lima"' in both and "all of these at once" in both
    with pytest.raises(ValueError, match="not among the offered tools"):
        teacher_prompt([WEATHER], [{"name": "book_table", "arguments": {}}], "single", seed=0)


def test_openai_teacher_sends_model_messages_temperature_and_seed():
    recorded = RecordedOpenAI()
    teacher = OpenAITeacher("http://teacher.test/v1", "gpt-4.1-mini", temperature=0.7, client=recorded.client())
    text = teacher.write_request([WEATHER], OSLO, "single", seed=11)
    assert text == "Could you check what the weather is like in Oslo right now? I'm deciding whether to bike in."
    (body,) = recorded.bodies
    assert body["model"] == "gpt-4.1-mini" and body["temperature"] == 0.7 and body["seed"] == 11
    assert body["messages"] == [{"role": "user", "content": teacher_prompt([WEATHER], OSLO, "single", 11)}]


def test_openai_teacher_without_a_key_says_which_variable(monkeypatch):
    monkeypatch.delenv("TEACHER_KEY", raising=False)
    teacher = OpenAITeacher("http://localhost:8000/v1", "qwen", api_key_env="TEACHER_KEY")
    with pytest.raises(TeacherError, match="TEACHER_KEY"):
        teacher.write_request([WEATHER], OSLO, "single", seed=0)


def test_cache_answers_again_without_the_transport_and_survives_a_torn_line(tmp_path):
    recorded = RecordedOpenAI()
    path = tmp_path / "teacher.jsonl"

    def make():
        return OpenAITeacher("http://teacher.test/v1", "gpt-4.1-mini", client=recorded.client())

    first = CachedTeacher(make(), path).write_request([WEATHER], OSLO, "single", seed=1)
    assert len(recorded.bodies) == 1

    with path.open("a") as f:
        f.write('{"key": "abc", "te')  # the build was killed mid-append
    cached = CachedTeacher(make(), path)
    assert cached.write_request([WEATHER], OSLO, "single", seed=1) == first
    assert len(recorded.bodies) == 1 and (cached.hits, cached.misses) == (1, 0)

    cached.write_request([WEATHER], OSLO, "single", seed=2)  # another seed is another answer
    assert len(recorded.bodies) == 2 and recorded.bodies[1]["seed"] == 2
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line)["text"] for line in lines)

    other_model = CachedTeacher(OpenAITeacher("http://teacher.test/v1", "gpt-4.1", client=recorded.client()), path)
    other_model.write_request([WEATHER], OSLO, "single", seed=1)  # the key holds the teacher's identity
    assert len(recorded.bodies) == 3


def test_empty_answers_raise_and_are_not_cached(tmp_path):
    scripted = Scripted(['Request: ""', "Is it raining in Oslo?"])
    cached = CachedTeacher(scripted, tmp_path / "cache.jsonl")
    with pytest.raises(TeacherError, match="empty request.*get_weather"):
        cached.write_request([WEATHER], OSLO, "single", seed=5)
    assert not (tmp_path / "cache.jsonl").exists()
    assert cached.write_request([WEATHER], OSLO, "single", seed=5) == "Is it raining in Oslo?"


@pytest.mark.parametrize("raw, clean", [
    ('Request: "Book a table for 4 at Chez Lu at 19:30."', "Book a table for 4 at Chez Lu at 19:30."),
    ("Sure! Here's the user request:\n\nWhat's the weather in Oslo?", "What's the weather in Oslo?"),
    ("“Weather in Lima, please.”", "Weather in Lima, please."),
    ('"Dune" by "Herbert": find it for me', '"Dune" by "Herbert": find it for me'),
    ("Requesting a refund for order 42, please.", "Requesting a refund for order 42, please."),
])
def test_clean_request(raw, clean):
    assert clean_request(raw) == clean


def test_local_teacher_samples_a_request_reproducibly_for_a_seed():
    teacher = LocalTeacher("tiny-random-llama", max_new_tokens=6, top_p=1.0, dtype="float32")
    a = teacher.write_request([WEATHER], OSLO, "single", seed=3)
    b = teacher.write_request([WEATHER], OSLO, "single", seed=3)
    c = teacher.write_request([WEATHER], OSLO, "single", seed=4)
    assert a and a == b and a != c
    assert "<|im_end|>" not in a and "<|im_start|>" not in a
