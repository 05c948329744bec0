"""The parameters of a generation run: what evaluation and BFCL share, and what evaluation adds.

`GenerationSpec` extends the shared `params.ModelSpec` (model, format, device, W&B) with
the adapter, dtype, backend and batching; `EvalParams` adds the data and decoding;
`bfcl.run.BFCLParams` adds the categories. Both name a run the same way (`run_name`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from common.backends import BACKENDS
from common.models import default_format, resolve_dtype
from common.params import ModelSpec
from common.provenance import reports_root

# Parameters that change what is generated: a rerun into the same folder must match them.
GENERATION_KEYS = ("model", "adapter", "merge_adapter", "data", "format", "backend", "dtype",
                   "max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed", "call_gate")
# Parameters that only change scoring: `--score-only --set` may change these.
SCORING_KEYS = ("strict_strings",)


def run_name(model: str, adapter: str | None) -> str:
    """`smollm2-135m-instruct`, or `smollm2-135m-instruct+lora-sft` for the adapter
    `runs/quickstart/lora-sft/adapter` (a training run's folder names it; `adapter` says nothing)."""
    if not adapter:
        return Path(model).name
    path = Path(adapter)
    return f"{Path(model).name}+{path.parent.name if path.name == 'adapter' else path.name}"


class GenerationSpec(ModelSpec):
    """A model (and adapter) that generates, where it writes, how it batches."""

    adapter: str | None = Field(None, description="PEFT adapter folder on top of the model")
    limit: int | None = Field(None, ge=1, description="only the first N samples")
    experiment: str = Field("suite", description="reports/<experiment>/<run> is the default output")
    run: str | None = Field(None, description="run name; default: the model name (+ the adapter's run)")
    out: str | None = Field(None, description="output folder; default reports/<experiment>/<run>")
    backend: str = Field("transformers", description=f"one of {sorted(BACKENDS)}")
    dtype: str = Field("auto", description="auto (bf16 where the hardware is fast at it), bfloat16, float32")
    batch_size: int = Field(8, ge=1, description="prompts per generate call in the batched phase")
    max_new_tokens: int = Field(256, ge=1)
    seed: int = Field(42, description="generation seed (greedy decoding does not draw on it)")

    @field_validator("backend")
    @classmethod
    def _backend(cls, v: str) -> str:
        if v not in BACKENDS:
            raise ValueError(f"unknown backend {v!r}; choose one of {sorted(BACKENDS)}")
        return v

    def default_run(self) -> str:
        return self.run or run_name(self.model, self.adapter)

    def default_out(self) -> str:
        return self.out or str(reports_root() / self.experiment / self.default_run())


class EvalParams(GenerationSpec):
    merge_adapter: bool = Field(False, description="merge the adapter into the weights before generating")
    data: str = Field("suite:everyday_tools", description="suite:NAME (shipped), bfcl:CATEGORY (from the "
                      "bfcl-eval wheel), a samples JSONL/JSON file, or a built dataset: data/<build> (its eval "
                      "split) or data/<build>:train")
    temperature: float = Field(0.0, ge=0, description="0 decodes greedily")
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0, description="top-k cut when sampling; 0 turns it off")
    repetition_penalty: float = Field(1.0, gt=0, description="1.0 is none (the SLM paper used 1.1)")
    call_gate: float | None = Field(None, gt=0, lt=1, description=(
        "decide call/no-call at the first token: call iff P(call) >= this (decoding.CallDecision); "
        "None leaves the decision to plain decoding. P(call) is recorded either way"))
    latency_requests: int = Field(20, ge=0, description="samples re-run one at a time to time requests")
    strict_strings: bool = Field(False, description="compare strings exactly, not BFCL-normalised")

    def resolved(self) -> EvalParams:
        """Defaults that depend on other parameters, filled in."""
        dtype = str(resolve_dtype(self.dtype, self.device)).removeprefix("torch.")
        return self.model_copy(update={"run": self.default_run(), "out": self.default_out(), "dtype": dtype,
                                       "format": self.format or default_format(self.model)})
