"""Fixtures shared by the test modules: the embedded tokenizer and the gold backend."""

import pytest
from evaluation_helpers import GoldBackend

from common.engines import BACKENDS
from common.formats import get_format
from common.models import load_tokenizer
from common.samples import ToolCall


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("smollm2-135m-instruct")


@pytest.fixture
def gold(monkeypatch, tok):
    monkeypatch.setitem(BACKENDS, "gold", GoldBackend)
    monkeypatch.setattr(GoldBackend, "calls", 0)
    monkeypatch.setattr(GoldBackend, "fail_on_call", None)

    def prepare(fmt_name, samples):
        fmt = get_format(fmt_name)
        GoldBackend.answers = {
            fmt.render_prompt(s.tools, s.messages, tok): fmt.render_completion(
                [ToolCall(name=c.name, arguments={k: v[0] for k, v in c.arguments.items()})
                 for c in s.expected_calls], "" if s.expected_calls else "I can answer that directly.")
            for s in samples}
    return prepare
