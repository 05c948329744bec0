"""Samples as training sequences: prompt tokens, completion tokens and the loss mask.

A sample's prompt is rendered exactly as the evaluation runner renders it (the
format's prompt through the model's own chat template), and its completion is the
answer the sample expects (its calls in the format's syntax, or its reply when no
call is expected) followed by the template's end-of-turn marker.

Prompt and completion are tokenized separately and concatenated, rather than
tokenizing their concatenation as TRL does with a text `prompt`/`completion`
dataset: at inference the model sees the prompt's own tokens and writes the rest,
so this is the sequence it must learn, and no token can straddle the boundary. The
mask is 1 on exactly the completion's tokens (its end token included) and is
checked never to be all zeros. TRL's SFTTrainer takes the result as an already
tokenized dataset (`input_ids` + `completion_mask`). DPO pairs stay text, since
TRL's DPOTrainer tokenizes them itself.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from common.errors import UserError
from common.formats.base import ToolCallFormat
from common.samples import Sample, ToolCall


class TrainingDataError(UserError):
    pass


def target_calls(sample: Sample) -> list[ToolCall]:
    """The calls to train on: each expected call with the first acceptable value of
    every argument it pins down (optional arguments the request leaves open are left out)."""
    return [ToolCall(name=c.name, arguments=c.target_arguments()) for c in sample.expected_calls]


def completion_text(sample: Sample, fmt: ToolCallFormat, tokenizer: Any) -> str:
    """The assistant's answer in the format's syntax, ending with the turn's end marker."""
    if sample.expected_calls:
        body = fmt.render_completion(target_calls(sample))
    elif sample.reply:
        body = sample.reply.strip()
    else:
        raise TrainingDataError(
            f"sample {sample.id!r} expects no call and has no `reply` to train on; give it the text the "
            "assistant should say (the data builder writes one for every no-call sample)")
    return body + fmt.end_of_turn(tokenizer)


def encode(tokenizer: Any, text: str) -> list[int]:
    # The chat template already wrote any BOS token, as at inference (backends.py).
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@dataclass
class Encoded:
    """Training sequences and what happened to the samples that did not fit."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)

    @property
    def tokens(self) -> int:
        return sum(len(r["input_ids"]) for r in self.rows)

    def summary(self) -> dict[str, Any]:
        lengths = sorted(len(r["input_ids"]) for r in self.rows)
        completion = sum(sum(r["completion_mask"]) for r in self.rows)
        return {"sequences": len(self.rows), "tokens": self.tokens, "completion_tokens": completion,
                "max_length": lengths[-1] if lengths else 0,
                "mean_length": round(self.tokens / len(lengths), 1) if lengths else 0,
                "dropped": dict(self.dropped)}


def sft_rows(samples: list[Sample], fmt: ToolCallFormat, tokenizer: Any, max_length: int) -> Encoded:
    """`input_ids` + `completion_mask` per sample. A sample longer than `max_length` is
    dropped (and counted), never truncated: a cut completion teaches a call that never ends."""
    out = Encoded()
    for s in samples:
        prompt = encode(tokenizer, fmt.render_prompt(s.tools, s.messages, tokenizer))
        completion = encode(tokenizer, completion_text(s, fmt, tokenizer))
        if len(prompt) + len(completion) > max_length:
            out.dropped["longer_than_max_length"] += 1
            continue
        mask = [0] * len(prompt) + [1] * len(completion)
        if not any(mask):
            raise TrainingDataError(f"sample {s.id!r} has an empty completion: nothing to learn from")
        out.rows.append({"id": s.id, "input_ids": prompt + completion, "completion_mask": mask})
    if not out.rows:
        raise TrainingDataError(
            f"no sample fits in max_length={max_length} tokens ({len(samples)} samples given); "
            "raise max_length or build the data with a lower max_prompt_tokens")
    return out
