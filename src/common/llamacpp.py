"""llama.cpp as a generation backend: GGUF weights, batched decoding of many sequences.

`LlamaCppModel` loads a GGUF file (`gguf_convert.cached_gguf`) through llama-cpp-python's
low-level bindings, the public `llama_cpp.llama_*` C API, because its high-level `Llama`
class decodes one sequence at a time: here up to `n_seq` prompts share each decode call,
one KV-cache sequence each, so a batch's decode steps read the weights once for all of
them (a decode step of a 135M model is bound by reading its weights).

`LlamaCppBackend` keeps the project's semantics so that verdicts are comparable with
the transformers backend: prompts are tokenized by the same transformers tokenizer,
every setting is explicit (greedy unless a temperature is given; transformers' own
logits processors for the repetition penalty and the sampling warpers), the same stop
tokens and stop strings end an answer, the same `CallDecision` reads P(call) and
applies the gate at the first step, and text is decoded by the transformers tokenizer.
What differs is arithmetic (llama.cpp's kernels, and the GGUF precision), which the
parity report measures.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from common.backends import (
    Backend,
    Generation,
    GenerationSettings,
    cut_at_stop,
    stop_rules,
)
from common.decoding import CallDecision
from common.errors import UserError

INSTALL_HINT = "run `make install` (it builds llama-cpp-python from its sdist, ~3-10 min)"


def engine() -> Any:
    """The `llama_cpp` module, or None where llama-cpp-python is not installed."""
    try:
        import llama_cpp  # optional: a compiled package that `make install` builds from source
    except ImportError:
        return None
    return llama_cpp


def missing_engine() -> str | None:
    return None if engine() is not None else f"llama-cpp-python is not installed; {INSTALL_HINT}"


def _quiet() -> None:
    """llama.cpp prints every tensor it loads: llama-cpp-python routes its log through this
    logger, which passes errors only at ERROR."""
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)


class LlamaCppModel:
    """A GGUF model in llama.cpp with a context of `n_seq` sequences of up to `n_ctx_seq` tokens."""

    def __init__(self, path: str | Path, n_seq: int = 16, n_ctx_seq: int = 2048, n_threads: int | None = None,
                 info: dict[str, Any] | None = None):
        lc = engine()
        if lc is None:
            raise UserError(missing_engine())
        self.lc, self.path, self.info = lc, Path(path), dict(info or {})
        _quiet()
        lc.llama_backend_init()
        self.model = lc.llama_model_load_from_file(str(self.path).encode(), self._model_params())
        if not self.model:
            raise UserError(f"llama.cpp could not load {self.path}; delete it to convert again")
        self.vocab = lc.llama_model_get_vocab(self.model)
        self.n_vocab = lc.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train = lc.llama_model_n_ctx_train(self.model)
        self.n_threads = n_threads or len(os.sched_getaffinity(0))
        self.ctx = self.batch = None
        self.open(n_seq, n_ctx_seq)

    def _model_params(self) -> Any:
        """llama.cpp's defaults, less its extra weight buffers on CPUs with AMX: the AMX buffer of
        llama-cpp-python 0.3.36's build segfaults in its q8_0 matmul (SmolLM2-135M and the tiny
        test model alike; seen 2026-11-30 on a Sapphire Rapids-class CPU, LOG.md). Off, q8_0 runs
        on the AVX-512 kernels; f16 and f32 never use those buffers. (Off also means no repacked
        q4-class weights, which only costs speed on such GGUFs, not used here.)"""
        p = self.lc.llama_model_default_params()
        known = "use_extra_bufts" in dict(type(p)._fields_)  # a binding without it would ignore the setting
        if known and "AMX_INT8 = 1" in self.lc.llama_print_system_info().decode(errors="replace"):
            p.use_extra_bufts = False
            self.info["extra_buffers"] = False
        return p

    def open(self, n_seq: int, n_ctx_seq: int) -> None:
        """(Re)create the context: `n_seq` sequences of `n_ctx_seq` tokens each."""
        lc = self.lc
        self.close_context()
        p = lc.llama_context_default_params()
        p.n_seq_max, p.n_ctx = n_seq, n_seq * n_ctx_seq
        p.n_batch = p.n_ubatch = max(512, n_seq)  # a decode step holds one token of every sequence
        p.n_threads = p.n_threads_batch = self.n_threads
        p.kv_unified = False  # each sequence its own n_ctx_seq cells
        if self.info.get("gguf") == "f32":  # llama.cpp's f16 KV cache would round what fp32 keeps
            p.type_k = p.type_v = lc.GGML_TYPE_F32
        self.ctx = lc.llama_init_from_model(self.model, p)
        if not self.ctx:
            raise RuntimeError(f"llama.cpp could not create a context of {n_seq} x {n_ctx_seq} tokens")
        self.memory = lc.llama_get_memory(self.ctx)
        self.batch = lc.llama_batch_init(p.n_batch, 0, 1)
        self.n_seq, self.n_ctx_seq, self.n_batch = n_seq, n_ctx_seq, p.n_batch

    def ensure(self, tokens: int) -> None:
        """A context whose sequences hold `tokens` tokens each."""
        if tokens <= self.n_ctx_seq:
            return
        if tokens > self.n_ctx_train:
            raise UserError(f"a prompt plus its answer needs {tokens} tokens, more than the model's "
                            f"{self.n_ctx_train}; shorten the prompt or lower max_new_tokens")
        size = min(self.n_ctx_train, max(self.n_ctx_seq, 1 << (tokens - 1).bit_length()))
        self.open(self.n_seq, size)

    def close_context(self) -> None:
        if self.batch is not None:
            self.lc.llama_batch_free(self.batch)
        if self.ctx:
            self.lc.llama_free(self.ctx)
        self.ctx = self.batch = None

    def __del__(self) -> None:
        try:
            self.close_context()
            if getattr(self, "model", None):
                self.lc.llama_model_free(self.model)
                self.model = None
        except Exception:  # noqa: BLE001, S110 - at interpreter shutdown the bindings may be gone already
            pass

    def clear(self) -> None:
        self.lc.llama_memory_clear(self.memory, True)

    def decode(self, items: list[tuple[int, int, int, bool]]) -> None:
        """One llama_decode of (token, position, sequence, wants logits) rows."""
        b = self.batch
        b.n_tokens = len(items)
        for j, (token, pos, seq, logits) in enumerate(items):
            b.token[j], b.pos[j], b.n_seq_id[j], b.logits[j] = token, pos, 1, logits
            b.seq_id[j][0] = seq
        code = self.lc.llama_decode(self.ctx, b)
        if code != 0:
            raise RuntimeError(f"llama_decode returned {code}")

    def logits(self, row: int) -> np.ndarray:
        ptr = self.lc.llama_get_logits_ith(self.ctx, row)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    def prefill(self, tokens: list[int], seq: int) -> np.ndarray:
        """The prompt into sequence `seq`, in chunks of n_batch; the last token's logits."""
        for start in range(0, len(tokens), self.n_batch):
            chunk = tokens[start:start + self.n_batch]
            self.decode([(t, start + i, seq, start + i == len(tokens) - 1) for i, t in enumerate(chunk)])
        return self.logits(len(chunk) - 1)

    def describe(self) -> dict[str, Any]:
        lc = self.lc
        return {"engine": "llama.cpp", "llama_cpp_python": getattr(lc, "__version__", None),
                "n_threads": self.n_threads, "n_seq": self.n_seq,
                "parameters": int(lc.llama_model_n_params(self.model)),
                "system_info": lc.llama_print_system_info().decode(errors="replace").strip(), **self.info}


class LlamaCppBackend(Backend):
    """Batched generation in llama.cpp: the prompts of one `generate` call decode together,
    `n_seq` at a time; a sequence leaves the batch when it stops."""

    name = "llama.cpp"

    def __init__(self, model: LlamaCppModel, tokenizer: Any, settings: GenerationSettings,
                 stop_texts: tuple[str, ...] = (), logits_processors: list[Any] | None = None):
        if not isinstance(model, LlamaCppModel):
            raise UserError("the llama.cpp backend needs a GGUF model (engines.load_generator loads one), "
                            f"not a {type(model).__name__}; set backend=transformers to generate with it")
        self.model, self.tokenizer, self.settings = model, tokenizer, settings
        self.logits_processors = list(logits_processors or [])
        self.call_probe = next((lp for lp in self.logits_processors if isinstance(lp, CallDecision)), None)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        # the stop set TransformersBackend uses: the tokenizer's eos, the model's generation config's
        # (LlamaCppModel.info, read by engines.load_generator) and the stop texts that are tokens
        self.stop_ids, self.stop_strings = stop_rules(tokenizer, stop_texts, model.info.get("eos_token_ids", []))
        s = settings
        before = [RepetitionPenaltyLogitsProcessor(s.repetition_penalty)] if s.repetition_penalty != 1.0 else []
        warpers = [] if s.greedy else [TemperatureLogitsWarper(s.temperature),
                                       *([TopKLogitsWarper(s.top_k)] if s.top_k else []),
                                       *([TopPLogitsWarper(s.top_p)] if s.top_p < 1 else [])]
        # the order transformers' generate applies them in: penalties, the caller's, then sampling warpers
        self.processors = LogitsProcessorList([*before, *self.logits_processors, *warpers])
        # only the repetition penalty and a caller's own processor read the token ids
        self.needs_ids = bool(before) or any(not isinstance(lp, CallDecision) for lp in self.logits_processors)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, **asdict(self.settings), "dtype": self.model.info.get("dtype"),
                "device": "cpu", "stop_tokens": self.tokenizer.convert_ids_to_tokens(self.stop_ids),
                "stop_strings": self.stop_strings,
                "logits_processors": [type(lp).__name__ for lp in self.logits_processors],
                "call_gate": self.call_probe.threshold if self.call_probe else None, **self.model.describe()}

    def generate(self, prompts: list[str]) -> list[Generation]:
        s, m = self.settings, self.model
        rows = [self.tokenizer(p, add_special_tokens=False).input_ids for p in prompts]
        if self.call_probe:
            self.call_probe.reset()
        generator = torch.Generator().manual_seed(s.seed)
        start = time.perf_counter()
        m.ensure(max(map(len, rows)) + s.max_new_tokens)
        out: list[Generation | None] = [None] * len(rows)
        p_calls: list[float | None] = [None] * len(rows)
        for first in range(0, len(rows), m.n_seq):
            group = list(range(first, min(first + m.n_seq, len(rows))))
            self._group(rows, group, out, p_calls, generator)
        seconds = time.perf_counter() - start
        return [Generation(text=g.text, prompt_tokens=g.prompt_tokens, new_tokens=g.new_tokens, seconds=seconds,
                           finish_reason=g.finish_reason, p_call=p, first_call=g.first_call)
                for g, p in zip(out, p_calls)]

    def _group(self, rows: list[list[int]], group: list[int], out: list[Any], p_calls: list[Any],
               generator: torch.Generator) -> None:
        s, m = self.settings, self.model
        m.clear()
        scores = np.stack([m.prefill(rows[r], seq) for seq, r in enumerate(group)])
        new: dict[int, list[int]] = {r: [] for r in group}
        active = list(group)
        while active:
            ids = self._ids([rows[r] + new[r] for r in active]) if self.needs_ids else torch.zeros(len(active), 1)
            logits = self.processors(ids, torch.from_numpy(scores))
            if s.greedy:
                picks = logits.argmax(-1).tolist()
            else:
                picks = torch.multinomial(logits.float().softmax(-1), 1, generator=generator)[:, 0].tolist()
            still, step = [], []
            for r, token in zip(active, picks):
                new[r].append(token)
                finished = self._finished(new[r])
                if finished:
                    out[r] = self._decode(new[r], len(rows[r]), finished)
                else:
                    still.append(r)
                    step.append((token, len(rows[r]) + len(new[r]) - 1, group.index(r), True))
            active = still
            if active:
                m.decode(step)
                scores = np.stack([m.logits(j) for j in range(len(step))])
        if self.call_probe and self.call_probe.p_call is not None:  # read at this group's first step
            for r, p in zip(group, self.call_probe.p_call):
                p_calls[r] = p
            self.call_probe.reset()  # the next group reads its own first step

    @staticmethod
    def _ids(seqs: list[list[int]]) -> torch.Tensor:
        """The rows' token ids, left-padded with each row's own first token (a penalty sees no new token)."""
        width = max(map(len, seqs))
        return torch.tensor([[q[0]] * (width - len(q)) + q for q in seqs])

    def _finished(self, new: list[int]) -> str | None:
        if new[-1] in self.stop_ids:
            return "stop"
        if self.stop_strings and any(t in self.tokenizer.decode(new, skip_special_tokens=False)
                                     for t in self.stop_strings):
            return "stop"
        return "length" if len(new) >= self.settings.max_new_tokens else None

    def _decode(self, new: list[int], prompt_tokens: int, reason: str) -> Generation:
        kept = new[:-1] if new[-1] in self.stop_ids else new
        text = self.tokenizer.decode(kept, skip_special_tokens=False)
        cut = cut_at_stop(text, self.stop_strings)
        return Generation(text=text if cut is None else text[:cut], prompt_tokens=prompt_tokens,
                          new_tokens=len(new), seconds=0.0, finish_reason=reason,
                          first_call=self.call_probe.started_call(new) if self.call_probe else None)
