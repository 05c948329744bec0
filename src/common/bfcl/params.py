"""The parameters of a BFCL run, and the command that regenerates one."""

from __future__ import annotations

from pydantic import Field, field_validator

from common import bfcl_data
from common.errors import UserError
from common.evaluation.params import GenerationSpec, gate_value, resolve_gate

CATEGORIES = bfcl_data.SCORED_CATEGORIES


class BFCLParams(GenerationSpec):
    """One model (and adapter) on BFCL's categories; the generation fields are `GenerationSpec`'s."""

    categories: list[str] = Field(list(bfcl_data.BENCHMARK_CATEGORIES), description=(
        f"BFCL categories to score: {', '.join(CATEGORIES)}"))
    limit: int | None = Field(None, ge=1, description="only the first N entries of each category")
    call_gate: float | str | None = Field("auto", description=(
        "auto: the adapter's own calibrated gate (its call_gate.json, or its training run's) when it has one, "
        "else none; none; or a threshold in (0, 1)"))
    reuse: str | None = Field(None, description=(
        "with a call gate: a finished BFCL run of the same model and adapter without one; each category's "
        "answers are copied wherever the gate keeps their first token (EvalParams.reuse), the rest generated"))
    experiment: str = Field("bfcl", description="reports/<experiment>/<run> is the default output")
    batch_size: int = Field(16, ge=1, description="prompts per generate call")
    max_new_tokens: int | str = Field(256, description="the longest answer (BFCL's parallel_multiple needs ~200)")

    @field_validator("categories")
    @classmethod
    def _categories(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if c not in CATEGORIES]
        if bad:
            raise ValueError(f"unknown BFCL categories {bad}; choose from {list(CATEGORIES)}")
        if not v:
            raise ValueError("no categories: name at least one of " + ", ".join(CATEGORIES))
        return list(dict.fromkeys(v))

    @field_validator("call_gate")
    @classmethod
    def _gate(cls, v: float | str | None) -> float | str | None:
        return gate_value(v)

    def resolved(self, loaded: object = None) -> BFCLParams:
        gate = resolve_gate(self.call_gate, self.adapter)
        if self.reuse and gate is None:
            raise UserError(f"reuse copies a plain run's answers where a call gate keeps them, and call_gate "
                            f"{self.call_gate!r} gives no gate here; set call_gate to a threshold, or drop reuse")
        fmt = self.resolved_format()
        return self.model_copy(update={"run": self.default_run(), "out": self.default_out(),
                                       **self.resolved_engine(loaded), "max_new_tokens": self.answer_cap(fmt),
                                       "format": fmt, "call_gate": gate})


def command_line(params: BFCLParams) -> str:
    """The command that regenerates this run (predictions are not committed)."""
    defaults = BFCLParams()
    flags = [f"--model {params.model}"] + ([f"--adapter {params.adapter}"] if params.adapter else [])
    if params.categories != defaults.categories:
        flags.append("--categories " + " ".join(params.categories))
    if params.limit:
        flags.append(f"--limit {params.limit}")
    flags.append(f"--call-gate {'none' if params.call_gate is None else params.call_gate}")
    flags.append(f"--run {params.run}")
    sets = [f"{k}={getattr(params, k)}" for k in ("format", "device", "dtype", "batch_size", "max_new_tokens", "seed",
                                                "backend")
            if getattr(params, k) != getattr(defaults, k)]
    return "python -m common.bfcl " + " ".join(flags) + (" --set " + " ".join(sets) if sets else "")
