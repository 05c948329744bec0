"""A backend that answers with each sample's expected completion, and the evaluation
parameters the tests share (the fixtures `tok` and `gold` are in conftest.py)."""

import json
import time

from common.backends import Backend, Generation
from common.evaluation import runner as ev


class GoldBackend(Backend):
    """Answers every prompt with the sample's expected completion (the first acceptable
    value of each argument), and can be told to fail on a given call."""

    name = "gold"
    answers: dict[str, str] = {}
    calls = 0
    fail_on_call: int | None = None
    delay = 0.0  # seconds per generate call (the fault-injection tests kill it mid-run)

    def __init__(self, model, tokenizer, settings, stop_texts=(), logits_processors=None):
        pass

    def generate(self, prompts):
        type(self).calls += 1
        if type(self).calls == self.fail_on_call:
            raise KeyboardInterrupt("interrupted by the test")
        if self.delay:
            time.sleep(self.delay)
        return [Generation(self.answers[p], 100, 10, 0.5, "stop") for p in prompts]

    def describe(self):
        return {"backend": self.name}


def params(tmp_path, **kw):
    base = dict(model="tiny-random-llama", out=str(tmp_path / "run"), latency_requests=0, wandb="disabled")
    return ev.EvalParams(**(base | kw))


def recorded_before_prompt_versions(predictions):
    """A predictions.jsonl rewritten as answers were recorded before they carried `prompt_version`
    (what the runner reads as version 1: a tool's keys in their source's order)."""
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    predictions.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "prompt_version"}) + "\n"
                                   for r in rows))
