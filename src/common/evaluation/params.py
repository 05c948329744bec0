"""The parameters of a generation run: what evaluation and BFCL share, and what evaluation adds.

`GenerationSpec` extends the shared `params.ModelSpec` (model, format, device, W&B) with
the adapter, dtype, backend and batching; `EvalParams` adds the data and decoding;
`bfcl.run.BFCLParams` adds the categories. Both name a run the same way (`run_name`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from common import adapter_card
from common.engines import choices, loaded_dtype, resolve_backend, resolve_backend_dtype
from common.errors import UserError
from common.formats import get_format
from common.models import default_format, resolve_dtype
from common.params import ModelSpec
from common.provenance import local_path, reports_root

# Parameters that change what is generated: a rerun into the same folder must match them.
GENERATION_KEYS = ("model", "adapter", "merge_adapter", "data", "format", "backend", "dtype",
                   "max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed", "call_gate")
# Parameters that only change scoring: `--score-only --set` may change these.
SCORING_KEYS = ("strict_strings",)


def gate_value(v: float | str | None) -> float | str | None:
    """A call gate as given: auto, none (or null), or a threshold in (0, 1)."""
    if isinstance(v, str) and v not in ("auto", "none"):
        try:
            v = float(v)
        except ValueError:
            raise ValueError(f"call_gate must be auto, none or a number in (0, 1), not {v!r}") from None
    if isinstance(v, (int, float)) and not isinstance(v, bool) and not 0 < v < 1:
        raise ValueError(f"call_gate {v} is not in (0, 1): give a threshold strictly between 0 and 1, auto or none")
    return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


def resolve_gate(gate: float | str | None, adapter: str | None) -> float | None:
    """The threshold a run decodes with: auto takes the adapter's own gate (`adapter_card.gate_of`)."""
    if gate in (None, "none"):
        return None
    if gate != "auto":
        return float(gate)
    found = adapter_card.gate_of(local_path(adapter)) if adapter else None
    return found["threshold"] if found else None


def run_name(model: str, adapter: str | None) -> str:
    """`smollm2-135m-instruct`, or `smollm2-135m-instruct+lora-sft` for the adapter
    `runs/quickstart/lora-sft/adapter` (a training run's folder names it; `adapter` says nothing)."""
    if not adapter:
        return Path(model).name
    path = Path(adapter)
    return f"{Path(model).name}+{path.parent.name if path.name == 'adapter' else path.name}"


def trained_format(model: str, adapter: str | None) -> str | None:
    """The tool-call format the weights were trained in, as their training run recorded it
    (`<run>/run.json`'s params.format beside `<run>/adapter`, or beside `<run>/model` or
    `<run>/merged` given as the model); None where no training run is beside them (a base
    model, a Hub adapter), so the model's own format applies. A clone without the run's folder
    has no record to read: a run that must resolve alike everywhere gives `format` (the headline does)."""
    weights = local_path(adapter or model)
    if not weights.is_dir():  # a registered name, a hub id
        return None
    run_file = weights.parent / "run.json"
    if not run_file.is_file():
        return None
    try:  # not jsonio.read_json: its advice, to delete the folder, would throw away a trained run
        return json.loads(run_file.read_text()).get("params", {}).get("format")
    except (json.JSONDecodeError, AttributeError) as e:
        raise UserError(f"{run_file} is not a readable training run record ({e}); restore it from the run, or "
                        "give the format with --set format=NAME") from e


_SAID: set[tuple[str | None, str]] = set()  # (adapter, format) pairs already warned about


def resolve_format(given: str | None, model: str, adapter: str | None) -> str:
    """The format given, else the one the adapter's (or model folder's) training run recorded,
    else the model's own: a trained adapter is prompted as it was trained. A format given that
    differs from the recorded one is kept (a cross-format test is a valid experiment) and
    said once, since a parameter file that pins one (params/evaluate.yaml) is the usual cause."""
    trained = trained_format(model, adapter)
    if given and trained and given != trained and (adapter, given) not in _SAID:
        _SAID.add((adapter, given))
        print(f"warning: {adapter or model} was trained in format {trained!r} and is prompted in {given!r} as "
              f"asked; --set format={trained} (or format: null) prompts it as trained", file=sys.stderr, flush=True)
    return given or trained or default_format(model)


class GenerationSpec(ModelSpec):
    """A model (and adapter) that generates, where it writes, how it batches."""

    format: str | None = Field(None, description=(
        "tool-call format; default: the one the adapter's training run recorded (its run.json), else the model's own"))
    adapter: str | None = Field(None, description="PEFT adapter folder on top of the model")
    limit: int | None = Field(None, ge=1, description="only the first N samples")
    experiment: str = Field("suite", description="reports/<experiment>/<run> is the default output")
    run: str | None = Field(None, description="run name; default: the model name (+ the adapter's run)")
    out: str | None = Field(None, description="output folder; default reports/<experiment>/<run>")
    backend: str = Field("auto", description=(
        "auto (llama.cpp on the CPU where it can run the model, else transformers), transformers or llama.cpp"))
    dtype: str = Field("auto", description=(
        "auto (transformers: bf16 where the hardware is fast at it, else fp32; llama.cpp: f16 GGUF), "
        "bfloat16, float16, float32, or q8_0 (llama.cpp only)"))
    batch_size: int = Field(8, ge=1, description="prompts per generate call in the batched phase")
    max_new_tokens: int | str = Field("auto", description=(
        "the longest answer in new tokens; auto: what a correct answer in the format needs "
        "(formats' answer_tokens: hermes 192, pythonic 128, qwen_xml 224, functiongemma 192)"))
    seed: int = Field(42, description="generation seed (greedy decoding does not draw on it)")

    @field_validator("backend")
    @classmethod
    def _backend(cls, v: str) -> str:
        if v not in choices():
            raise ValueError(f"unknown backend {v!r}; choose one of {list(choices())}")
        return v

    def resolved_engine(self, loaded: object = None) -> dict[str, str]:
        """The concrete backend and dtype (`auto` made concrete for this machine and model)."""
        backend = resolve_backend(self.backend, self.model, self.device, loaded)
        if loaded is not None:
            kind = resolve_backend("auto", self.model, self.device, loaded)
            if backend != kind and backend in ("transformers", "llama.cpp"):
                raise UserError(f"backend {backend} was asked for, but the model passed in is a {kind} model; "
                                f"set backend={kind} or auto, or let the run load its own model")
            dtype = loaded_dtype(loaded)
            if dtype:  # what the model passed in runs at is what the run records
                return {"backend": backend, "dtype": dtype}
        dtype = resolve_backend_dtype(backend, self.dtype)
        if backend == "transformers":
            dtype = str(resolve_dtype(dtype, self.device)).removeprefix("torch.")
        return {"backend": backend, "dtype": dtype}

    @field_validator("max_new_tokens")
    @classmethod
    def _max_new_tokens(cls, v: int | str) -> int | str:
        if v == "auto":
            return v
        if isinstance(v, str) and v.isdigit():
            v = int(v)
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"max_new_tokens must be a positive number of tokens or auto, not {v!r}")
        return v

    def resolved_format(self) -> str:
        """`format` made concrete (`resolve_format`)."""
        return resolve_format(self.format, self.model, self.adapter)

    def answer_cap(self, fmt: str) -> int:
        """max_new_tokens made concrete: `auto` is the answer_tokens of `fmt`, the resolved format."""
        if self.max_new_tokens != "auto":
            return int(self.max_new_tokens)
        return get_format(fmt).answer_tokens

    def default_run(self) -> str:
        return self.run or run_name(self.model, self.adapter)

    def default_out(self) -> str:
        return self.out or str(reports_root() / self.experiment / self.default_run())


class EvalParams(GenerationSpec):
    merge_adapter: bool = Field(True, description=(
        "merge an adapter into the weights before generating (the same model, without the adapter's extra "
        "matmuls in every layer); llama.cpp always runs the merged model"))
    data: str = Field("suite:everyday_tools", description="suite:NAME (shipped), bfcl:CATEGORY (from the "
                      "bfcl-eval wheel), a samples JSONL/JSON file, or a built dataset: data/<build> (its eval "
                      "split) or data/<build>:train")
    temperature: float = Field(0.0, ge=0, description="0 decodes greedily")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling when temperature > 0; 1: off")
    top_k: int = Field(0, ge=0, description="top-k cut when sampling; 0 turns it off")
    repetition_penalty: float = Field(1.0, gt=0, description="1.0 is none (the SLM paper used 1.1)")
    call_gate: float | str | None = Field("auto", description=(
        "decide call/no-call at the first token: call iff P(call) >= this threshold in (0, 1) "
        "(decoding.CallDecision); none leaves the decision to plain decoding; auto: the adapter's own "
        "gate (its call_gate.json) when it has one, else none. P(call) is recorded either way"))
    reuse: str | None = Field(None, description=(
        "with a call gate and greedy decoding: a finished evaluation of the same model, adapter, data and "
        "settings without a gate, whose answers are copied wherever the gate keeps their first token (the "
        "call token exactly when P(call) >= the gate), since greedy decoding then writes the same answer; "
        "the others are generated"))
    latency_requests: int = Field(20, ge=0, description="samples re-run one at a time to time requests")
    strict_strings: bool = Field(False, description="compare strings exactly, not BFCL-normalised")

    @field_validator("call_gate")
    @classmethod
    def _gate(cls, v: float | str | None) -> float | str | None:
        return gate_value(v)

    @model_validator(mode="after")
    def _reuse_needs_a_greedy_gate(self) -> EvalParams:
        no_gate = self.call_gate in (None, "none") or (self.call_gate == "auto" and not self.adapter)
        if self.reuse is not None and (no_gate or self.temperature != 0):
            raise ValueError("reuse copies a plain run's answers where a call gate keeps their first token: it "
                             "needs call_gate set and temperature 0 (greedy); drop reuse otherwise")
        return self

    def resolved(self, loaded: object = None) -> EvalParams:
        """Defaults that depend on other parameters (and the machine), filled in; `loaded`: a model
        the caller already loaded, which decides an `auto` backend."""
        fmt = self.resolved_format()
        gate = resolve_gate(self.call_gate, self.adapter)
        if self.reuse and gate is None:
            raise UserError(f"reuse copies a plain run's answers where a call gate keeps them, and call_gate "
                            f"{self.call_gate!r} gives no gate here; set call_gate to a threshold, or drop reuse")
        return self.model_copy(update={"run": self.default_run(), "out": self.default_out(),
                                       **self.resolved_engine(loaded), "max_new_tokens": self.answer_cap(fmt),
                                       "format": fmt, "call_gate": gate})
