"""Logits processors: what a backend applies to the next-token scores while it decodes.

`CallDecision` reads, at the first generated token, the probability that the answer
starts a tool call, and can turn that probability into the call/no-call decision.

Why it exists: greedy decoding picks the single most likely *token*, not the most
likely *answer kind*. A call starts with one token (`<tool_call>`'s first piece), while
a plain-text answer can start with many ("None", "I", "Which", ...). A model that gives
the call 0.45 and spreads 0.55 over ten reply openings still calls under greedy
decoding. Recording P(call) per sample measures how well a model knows *when* to call
(the evaluation reports its ROC AUC), apart from how greedy decoding spends it; the
optional gate decides "call iff P(call) >= threshold" instead of token by token.
Grammar-constrained decoding will plug in here too, as another processor.
"""

from __future__ import annotations

from typing import Any

import torch

from common.samples import ToolCall


def call_start_token(fmt: Any, tokenizer: Any) -> int | None:
    """The token every call of `fmt` starts with under `tokenizer`, or None when calls
    do not share one (a format whose first token merges with the function's name).

    Completions are tokenized on their own in training (`training_data.encode`), and the
    first generated token follows the prompt the same way, so this is the token whose
    probability at the first step is the probability of calling.
    """
    firsts = set()
    for name in ("alpha_lookup", "zeta_update", "Get.weather"):
        ids = tokenizer(fmt.render_calls([ToolCall(name=name, arguments={})]), add_special_tokens=False).input_ids
        if not ids:
            return None
        firsts.add(ids[0])
    if len(firsts) != 1:
        return None
    return firsts.pop()


class CallDecision:
    """A transformers logits processor (callable on `(input_ids, scores)`).

    At the first step of each `generate` call it records `p_call`, one probability per
    row of the batch. With `threshold` set it also decides there: a row whose P(call)
    is below the threshold may not start a call (its call token is masked) and a row at
    or above it must (every other token is masked); later steps are left alone. `reset()`
    before each generate call; the backend does that.

    Limits: P(call) is read from the scores this processor receives, i.e. after the
    processors transformers runs first (a repetition penalty other than 1.0 changes it).
    It counts only the call's own first token: a model that starts a call another way
    (a space or a newline, then `<tool_call>`) is neither measured nor stopped by the gate.
    """

    def __init__(self, token_id: int, threshold: float | None = None):
        if threshold is not None and not 0 < threshold < 1:
            raise ValueError(f"call gate threshold must lie strictly between 0 and 1, got {threshold}")
        self.token_id, self.threshold = token_id, threshold
        self.p_call: list[float] | None = None

    def reset(self) -> None:
        self.p_call = None

    def started_call(self, new: list[int]) -> bool:
        """Whether an answer's first generated token (of `new`) was the call token."""
        return bool(new) and new[0] == self.token_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.p_call is not None:  # not the first step
            return scores
        p = scores.float().softmax(-1)[:, self.token_id]
        self.p_call = p.tolist()
        if self.threshold is None:
            return scores
        scores = scores.clone()
        call = p >= self.threshold
        scores[~call, self.token_id] = float("-inf")
        kept = scores[call, self.token_id].clone()
        scores[call] = float("-inf")
        scores[call, self.token_id] = kept
        return scores
