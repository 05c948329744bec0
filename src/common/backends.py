"""Generation backends: the one interface the evaluation runner talks to.

A backend turns rendered prompts into generated text with token counts and timings.
Only local transformers exists now; vLLM, OpenAI-compatible HTTP and llama.cpp
backends implement the same `Backend.generate` and register in `BACKENDS`, with no
change to the runner. Constrained decoding plugs in through `logits_processors`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
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


class Backend(ABC):
    name: str

    @abstractmethod
    def generate(self, prompts: list[str]) -> list[Generation]:
        """One generation per prompt, in order, in one call (a batch)."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What a results file records about how text was generated."""


class TransformersBackend(Backend):
    """Local `model.generate`, batched with left padding.

    Generation stops at the tokenizer's end token or at the end marker of the prompt
    template's assistant turn (e.g. `<|im_end|>`, `<end_of_turn>`), passed as `stop_texts`.
    Special tokens are kept in the decoded text (FunctionGemma's call markers are
    special tokens in its tokenizer); the text is cut at the first stop token.
    """

    name = "transformers"

    def __init__(self, model: Any, tokenizer: Any, settings: GenerationSettings,
                 stop_texts: tuple[str, ...] = (), logits_processors: list[Any] | None = None):
        self.model, self.tokenizer, self.settings = model, tokenizer, settings
        self.logits_processors = list(logits_processors or [])
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
        for text in stop_texts:
            token = tokenizer.convert_tokens_to_ids(text) if text in tokenizer.get_vocab() else None
            if token is not None:
                ids.add(token)
        if not ids:
            raise ValueError("no stop token: the tokenizer has no eos token and no stop text is a token")
        self.stop_ids = sorted(ids)

    def describe(self) -> dict[str, Any]:
        p = next(self.model.parameters())
        return {"backend": self.name, **asdict(self.settings), "dtype": str(p.dtype).replace("torch.", ""),
                "device": str(p.device), "stop_tokens": self.tokenizer.convert_ids_to_tokens(self.stop_ids),
                "logits_processors": [type(lp).__name__ for lp in self.logits_processors]}

    @torch.inference_mode()
    def generate(self, prompts: list[str]) -> list[Generation]:
        from transformers import LogitsProcessorList
        s = self.settings
        # The chat template already wrote any BOS token, so none is added here.
        batch = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        batch = batch.to(self.model.device)
        sampling = {} if s.greedy else {"temperature": s.temperature, "top_p": s.top_p}
        torch.manual_seed(s.seed)
        start = time.perf_counter()
        out = self.model.generate(
            **batch, max_new_tokens=s.max_new_tokens, do_sample=not s.greedy, **sampling,
            eos_token_id=self.stop_ids, pad_token_id=self.tokenizer.pad_token_id,
            logits_processor=LogitsProcessorList(self.logits_processors))
        seconds = time.perf_counter() - start
        width = batch["input_ids"].shape[1]
        results = []
        for row, mask in zip(out, batch["attention_mask"]):
            new = row[width:].tolist()
            stop = next((i for i, t in enumerate(new) if t in self.stop_ids), None)
            kept = new if stop is None else new[:stop]
            results.append(Generation(
                text=self.tokenizer.decode(kept, skip_special_tokens=False),
                prompt_tokens=int(mask.sum()), new_tokens=len(kept) + (stop is not None),
                seconds=seconds, finish_reason="length" if stop is None else "stop"))
        return results


BACKENDS = {"transformers": TransformersBackend}
