"""Generation backends: the one interface the evaluation runner talks to.

A backend turns rendered prompts into generated text with token counts and timings.
Two implement it: local transformers (here) and llama.cpp (`common.llamacpp`); the
registry and the `auto` choice are in `common.engines`. A vLLM or OpenAI-compatible HTTP
backend would implement the same `Backend.generate` and register there, with no change
to the runner. Constrained decoding plugs in through `logits_processors`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any

import torch
from transformers import LogitsProcessorList, StoppingCriteriaList, StopStringCriteria

from common.decoding import CallDecision


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    top_k: int = 0            # 0: no top-k cut when sampling
    repetition_penalty: float = 1.0
    seed: int = 42

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    new_tokens: int
    seconds: float          # wall time of the call that produced it (the whole batch)
    finish_reason: str      # "stop" (an end token) or "length" (max_new_tokens reached)
    p_call: float | None = None  # P(the answer starts a call) at the first token (decoding.CallDecision)
    # whether the first token generated was that call token (None without a CallDecision): with
    # greedy decoding, a call gate whose decision agrees leaves the whole answer unchanged
    first_call: bool | None = None


def stop_rules(tokenizer: Any, stop_texts: tuple[str, ...], eos_ids: Any = ()) -> tuple[list[int], list[str]]:
    """What ends an answer, shared by every backend: the stop token ids (the tokenizer's eos, the
    model's own `eos_ids`, the stop texts that are one token) and the stop strings (the stop texts
    of several tokens, matched on the decoded text)."""
    vocab = tokenizer.get_vocab()
    ids = {tokenizer.eos_token_id, *eos_ids, *(vocab[t] for t in stop_texts if t in vocab)} - {None}
    return sorted(ids), [t for t in stop_texts if t and t not in vocab]


def cut_at_stop(text: str, stop_strings: list[str]) -> int | None:
    """Where the first stop string starts in `text`, or None."""
    return min((i for i in (text.find(t) for t in stop_strings) if i >= 0), default=None)


class Backend(ABC):
    """Constructed as `cls(model, tokenizer, settings, stop_texts=..., logits_processors=...)`;
    a backend that records P(call) (decoding.CallDecision) fills `Generation.p_call`."""

    name: str

    @abstractmethod
    def generate(self, prompts: list[str]) -> list[Generation]:
        """One generation per prompt, in order, in one call (a batch)."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What a results file records about how text was generated."""


class TransformersBackend(Backend):
    """Local `model.generate`, batched with left padding.

    Generation stops at the tokenizer's and the model's end tokens and at the given
    `stop_texts` (the template's end of turn such as `<|im_end|>` or `<end_of_turn>`,
    and what a format never writes inside an answer, such as a tool response). Every
    setting is passed explicitly, so a hub model's own generation defaults (a repetition
    penalty, top-k) do not leak in; they are recorded by `describe`. Special tokens are
    kept in the decoded text (FunctionGemma's call markers are special tokens in its
    tokenizer), and the text is cut at the first stop.
    """

    name = "transformers"

    def __init__(self, model: Any, tokenizer: Any, settings: GenerationSettings,
                 stop_texts: tuple[str, ...] = (), logits_processors: list[Any] | None = None):
        self.model, self.tokenizer, self.settings = model, tokenizer, settings
        self.logits_processors = list(logits_processors or [])
        # the processor that records P(call) into each Generation, if one was given
        self.call_probe = next((lp for lp in self.logits_processors if isinstance(lp, CallDecision)), None)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        own = model.generation_config.eos_token_id if model.generation_config is not None else None
        # a stop text of several tokens is matched on the text by generate's stop_strings
        self.stop_ids, self.stop_strings = stop_rules(tokenizer, stop_texts, own if isinstance(own, list) else [own])
        if not self.stop_ids:
            raise ValueError("no stop token: the tokenizer has no eos token and no stop text is a token")
        # Built once, not per call through generate(stop_strings=...): transformers 5.23 caches the
        # criteria's embedding of the vocabulary under tokenizer.get_vocab(), whose order changes
        # from call to call with a Rust tokenizer, so the cache never hit and every batch embedded
        # the whole vocabulary again: 0.7 s a call for SmolLM2's 49k tokens, 6 s for Gemma's 262k
        # (LOG.md, 2026-12-03).
        self.stop_criteria = (StoppingCriteriaList([StopStringCriteria(tokenizer, self.stop_strings)])
                              if self.stop_strings else None)

    def describe(self) -> dict[str, Any]:
        p = next(self.model.parameters())
        own = self.model.generation_config.to_diff_dict() if self.model.generation_config is not None else {}
        return {"backend": self.name, **asdict(self.settings), "dtype": str(p.dtype).replace("torch.", ""),
                "device": str(p.device), "stop_tokens": self.tokenizer.convert_ids_to_tokens(self.stop_ids),
                "stop_strings": self.stop_strings, "model_generation_defaults_ignored": own,
                "logits_processors": [type(lp).__name__ for lp in self.logits_processors],
                "call_gate": self.call_probe.threshold if self.call_probe else None,
                # the base model's size (a PEFT wrapper's parameters include the adapter's)
                "parameters": sum(t.numel() for n, t in self.model.named_parameters() if "lora_" not in n)}

    @torch.inference_mode()
    def generate(self, prompts: list[str]) -> list[Generation]:
        s = self.settings
        self.tokenizer.padding_side = "left"
        # The chat template already wrote any BOS token, so none is added here.
        batch = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        batch = batch.to(self.model.device)
        sampling = {} if s.greedy else {"temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k}
        if self.call_probe:
            self.call_probe.reset()
        torch.manual_seed(s.seed)
        start = time.perf_counter()
        out = self.model.generate(
            **batch, max_new_tokens=s.max_new_tokens, do_sample=not s.greedy, **sampling,
            repetition_penalty=s.repetition_penalty, eos_token_id=self.stop_ids,
            pad_token_id=self.tokenizer.pad_token_id, stopping_criteria=self.stop_criteria,
            # the tokenizer too: a hub model whose generation_config sets stop_strings needs it
            tokenizer=self.tokenizer,
            logits_processor=LogitsProcessorList(self.logits_processors))
        seconds = time.perf_counter() - start
        width = batch["input_ids"].shape[1]
        p_call = (self.call_probe.p_call if self.call_probe and self.call_probe.p_call is not None
                  else [None] * len(prompts))
        return [self._decode(row[width:].tolist(), int(mask.sum()), seconds, p)
                for row, mask, p in zip(out, batch["attention_mask"], p_call)]

    def _decode(self, new: list[int], prompt_tokens: int, seconds: float, p_call: float | None = None
                ) -> Generation:
        stop = next((i for i, t in enumerate(new) if t in self.stop_ids), None)
        kept = new if stop is None else new[:stop]
        # a row that ended (on a stop string) while others went on is padded to their length
        while kept and kept[-1] == self.tokenizer.pad_token_id:
            kept = kept[:-1]
        text = self.tokenizer.decode(kept, skip_special_tokens=False)
        cut = cut_at_stop(text, self.stop_strings)
        stopped = stop is not None or cut is not None
        return Generation(text=text if cut is None else text[:cut], prompt_tokens=prompt_tokens,
                          new_tokens=len(kept) + (stop is not None), seconds=seconds,
                          finish_reason="stop" if stopped else "length", p_call=p_call,
                          first_call=self.call_probe.started_call(new) if self.call_probe else None)

