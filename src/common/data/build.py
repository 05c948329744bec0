"""Build the training and held-out datasets: catalog -> samples -> filter -> splits -> card.

    python -m common.data build params/data.yaml [--set key=value ...] [--force]
    python -m common.data show data/offline-default

The offline default reads tool schemas from the BFCL wheel, writes requests with
the offline writer and takes real requests from BFCL's live categories; nothing
touches the network. The same parameters give identical datasets (every random
choice is seeded by the build seed and the sample's id); the card records a content
hash per split to show it. BFCL's non-live categories never enter: the catalog
leaves their functions out and the leakage check fails the build if any remain.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from tqdm.auto import tqdm

from common import bfcl_data
from common.bfcl_data import normalize_request
from common.data import catalog as catalog_mod
from common.data import datacard, export, live, quality
from common.data.composio import fetch_toolkits
from common.data.scenarios import SCENARIOS, SampleWriter, essential_tools
from common.data.written import generate, live_samples, quotas, stratified_eval
from common.errors import ArgumentParser, cli
from common.formats import get_format
from common.jsonio import read_json, write_json
from common.params import add_set_argument, load_params, overrides_of
from common.provenance import ROOT, provenance, shown
from common.samples import Sample
from common.secrets import check_env_name
from common.sources import load_split


class DataParams(BaseModel):
    """Every setting of a build. Defaults are Kinetic-4B's where it had one."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field("offline-default", description="build name; the output goes to data/<name>")
    out: str | None = Field(None, description="output directory (default data/<name>)")
    seed: int = Field(0, description="seed of the build's draws (requests, values, distractors, augmentation; "
                      "the written eval split has eval_seed)")
    # catalog
    catalog_sources: list[Literal["bfcl", "jsonl", "composio"]] = Field(
        ["bfcl"], description="where tool schemas come from: bfcl (the bfcl-eval wheel's live and multi-turn "
        "functions), jsonl (`tool_files`), composio (`composio_toolkits`)")
    tool_files: list[str] = Field(default_factory=list, description="JSONL files of OpenAI tools (source jsonl)")
    composio_toolkits: list[str] = Field(default_factory=list, description="toolkits to fetch (needs COMPOSIO_API_KEY)")
    top_toolkits: int | None = Field(20, description="keep the N largest toolkits (ignored when `toolkits` is set)")
    toolkits: list[str] = Field(default_factory=list, description="keep exactly these toolkits")
    min_toolkit_tools: int = Field(3, ge=1, description="a toolkit with fewer tools is left out of the catalog "
                                   "(unless named in toolkits)")
    # requests
    request_sources: list[Literal["offline", "bfcl_live", "teacher", "xlam"]] = Field(
        ["offline", "bfcl_live"], description="who writes the requests: offline (the typed writer), bfcl_live "
        "(real requests, up to real_fraction), teacher (a model, see teacher), xlam (xLAM-60k, see xlam_samples)")
    real_fraction: float = Field(0.25, ge=0, le=1, description="max share of a toolkit's samples taken from BFCL live")
    teacher: Literal["openai", "local"] | None = Field(
        None, description="request source teacher: openai (any OpenAI-compatible server) or local (a registry model)")
    teacher_model: str | None = Field(None, description="the teacher's model name (openai) or registry name (local)")
    teacher_base_url: str | None = Field(None, description="the endpoint, needed with teacher: openai (e.g. "
                                             "https://api.openai.com/v1, http://localhost:8000/v1)")
    teacher_api_key_env: str = Field("OPENAI_API_KEY", description="the environment variable holding the teacher's "
                                     "API key (the key itself is never a parameter)")
    xlam_samples: int = Field(0, ge=0, description="xLAM-60k samples added to training (source xlam)")
    # prompts
    tools_per_prompt: int = Field(10, ge=1, description="tools offered per prompt: the needed ones plus distractors "
                                  "(a real request's own tools are never cut, so it may offer more)")
    max_description_chars: int | None = Field(None, ge=20, description="written mixes: cut each tool's and "
                                              "parameter's description to this many characters; null: keep whole")
    max_prompt_tokens: int | None = Field(None, ge=64, description="drop distractors (never a needed tool) until "
                                          "a prompt fits in this many tokens of `tokenizer`; a prompt that still "
                                          "does not fit is dropped (counted as prompt_too_long); null: no cap")
    optional_rate: float = Field(0.3, ge=0, le=1, description="written requests: chance that each optional "
                                 "argument is used")
    tokenizer: str = Field("smollm2-135m-instruct", description="tokenizer that counts prompt tokens (the card's "
                           "lengths, max_prompt_tokens)")
    format: str = Field("hermes", description="tool-call format the prompts are rendered in to count tokens")
    # mix
    mix: Literal["balanced", "generic", "live"] = Field(
        "balanced", description="balanced / generic: written requests per catalog toolkit (+ real ones up to "
        "real_fraction); live: BFCL-live's real requests as the backbone (common.data.live)")
    samples_per_toolkit: int = Field(120, ge=1, description="written mixes: samples per toolkit (generic: the "
                                     "average, Zipf-weighted)")
    generic_zipf: float = Field(1.3, gt=0, description="generic mix: toolkit k gets a share ~ 1/k^zipf")
    scenario_mix: dict[str, float] = Field(
        {"single": 0.4, "parallel": 0.2, "sequential": 0.1, "no_tool": 0.15, "missing_info": 0.15},
        description="written mixes: share of each scenario in a toolkit's samples")
    # the live mix (common.data.live): which toolkits are held back, and the augmentation
    live_dev_fraction: float = Field(0.1, ge=0, lt=0.5, description="live mix: share of the live entries, "
                                     "in whole toolkits, held back as the dev split (the build's eval)")
    live_transfer_fraction: float = Field(0.1, ge=0, lt=0.5, description="live mix: share held back as the "
                                          "`transfer` split (toolkits never in training; test once)")
    live_repeats: int = Field(1, ge=1, description="live mix: each real training request this many times, "
                              "each with its own draw of distractors and masking")
    masking: float = Field(0.0, ge=0, le=1, description="live mix: probability that a sample's function and "
                           "parameter names (and unset defaults) are random strings")
    type_flip: float = Field(0.0, ge=0, le=1, description="live mix: probability that a sample's whole-number "
                             "arguments swap their declared type (integer <-> float) and their answer with it "
                             "(15 <-> 15.0), so the model writes what the schema declares")
    composed_parallel: int = Field(0, ge=0, description="live mix: parallel samples composed of 2-3 real requests")
    near_miss: int = Field(0, ge=0, description="live mix: no-call samples made by withholding the fitting tool")
    no_call_share: float | None = Field(None, ge=0, lt=1, description="live mix: draw the no-call samples down "
                                        "to this share of the training set (null: keep all)")
    live_exclude_eval_of: list[str] = Field(default_factory=list, description="live mix: builds whose eval "
                                            "requests stay out of this build (another held-out set)")
    # splits
    eval_size: int = Field(300, ge=0, description="written mixes: samples in the eval split, drawn per scenario "
                                  "(unused with eval_from)")
    eval_seed: int = Field(42, description="written mixes: seed of the eval split's draw")
    eval_from: str | None = Field(None, description="reuse the eval split of this build (and keep training disjoint from it)")
    unseen_tools_fraction: float = Field(0.0, ge=0, lt=1, description="hold out this share of each toolkit's tools for eval only")
    quality_filter: bool = Field(True, description="drop what the quality filter rejects; false keeps it in the "
                                 "training split (counted as `kept_unfiltered`), for the filtered-vs-dirty ablation")

    @field_validator("teacher_api_key_env")
    @classmethod
    def _env_name(cls, v: str) -> str:
        return check_env_name(v, "teacher_api_key_env")

    @field_validator("scenario_mix")
    @classmethod
    def _mix(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = set(v) - set(SCENARIOS)
        if unknown:
            raise ValueError(f"unknown scenarios {sorted(unknown)}; scenarios: {list(SCENARIOS)}")
        if any(x < 0 for x in v.values()) or sum(v.values()) <= 0:
            raise ValueError("scenario shares must be >= 0 and sum to more than 0")
        total = sum(v.values())
        return {k: v[k] / total for k in SCENARIOS if v.get(k)}

    @model_validator(mode="after")
    def _sources(self) -> DataParams:
        if "jsonl" in self.catalog_sources and not self.tool_files:
            raise ValueError("catalog source `jsonl` needs `tool_files` (JSONL files of OpenAI tools)")
        if "composio" in self.catalog_sources and not self.composio_toolkits:
            raise ValueError("catalog source `composio` needs `composio_toolkits` (e.g. [GITHUB, SLACK])")
        if "teacher" in self.request_sources and not (self.teacher and self.teacher_model):
            raise ValueError("request source `teacher` needs `teacher` (openai or local) and `teacher_model`")
        if self.teacher == "openai" and not self.teacher_base_url:
            raise ValueError("teacher `openai` needs `teacher_base_url` (any OpenAI-compatible endpoint)")
        if "xlam" in self.request_sources and not self.xlam_samples:
            raise ValueError("request source `xlam` needs `xlam_samples` > 0")
        return self

    @model_validator(mode="after")
    def _live(self) -> DataParams:
        if self.mix == "live" and (self.eval_from or self.unseen_tools_fraction or self.catalog_sources != ["bfcl"]
                                   or self.request_sources != ["bfcl_live"]):
            raise ValueError("mix: live builds from BFCL-live alone, with its own dev and transfer splits; set "
                             "catalog_sources: [bfcl], request_sources: [bfcl_live] and leave eval_from and "
                             "unseen_tools_fraction unset")
        return self

    def out_dir(self) -> Path:
        return Path(self.out) if self.out else ROOT / "data" / self.name


# -- catalog -------------------------------------------------------------------------
def build_catalog(p: DataParams, work: Path) -> catalog_mod.Catalog:
    exclude = bfcl_data.benchmark_fingerprint()[1]
    parts = []
    if "bfcl" in p.catalog_sources:
        parts.append(catalog_mod.from_bfcl())
    if "jsonl" in p.catalog_sources:
        parts.append(catalog_mod.from_jsonl(p.tool_files))  # not filtered: leakage must fail loudly
    if "composio" in p.catalog_sources:

        files = fetch_toolkits(p.composio_toolkits, work / "composio")
        parts.append(catalog_mod.from_jsonl(files.values(), exclude=exclude))
    full = catalog_mod.merge(*parts)
    return full.select(top=p.top_toolkits, names=p.toolkits or None, min_tools=p.min_toolkit_tools)


def make_teacher(p: DataParams, work: Path) -> Any:
    if "teacher" not in p.request_sources:
        return None
    # the teacher loads torch and transformers: only a build that uses it pays for them
    from common.data import teacher as teacher_mod
    if p.teacher == "openai":
        inner = teacher_mod.OpenAITeacher(p.teacher_base_url, p.teacher_model, api_key_env=p.teacher_api_key_env)
    else:
        inner = teacher_mod.LocalTeacher(p.teacher_model)
    return teacher_mod.CachedTeacher(inner, work / "teacher_cache.jsonl")


# -- the build -----------------------------------------------------------------------
class PromptMeter:
    """Prompt length in tokens, and trimming a prompt's distractors to a cap."""

    def __init__(self, p: DataParams):
        from common.models import (
            load_tokenizer,  # torch and transformers: a build needs them, its parameters do not
        )
        self.fmt, self.tokenizer, self.cap = get_format(p.format), load_tokenizer(p.tokenizer), p.max_prompt_tokens

    def tokens(self, s: Sample) -> int:
        return len(self.tokenizer(self.fmt.render_prompt(s.tools, s.messages, self.tokenizer),
                                  add_special_tokens=False)["input_ids"])

    def fit(self, s: Sample) -> tuple[Sample | None, int]:
        n = self.tokens(s)
        if not self.cap or n <= self.cap:
            return s, n
        needed = essential_tools(s)
        tools = list(s.tools)
        while n > self.cap:
            spare = [i for i, t in enumerate(tools) if t["function"]["name"] not in needed]
            if not spare or len(tools) == 1:
                return None, n
            # the longest distractor goes first: fewest tools lost for the tokens saved
            tools.pop(max(spare, key=lambda i: (len(json.dumps(tools[i])), i)))
            s = s.model_copy(update={"tools": tools})
            n = self.tokens(s)
        return s, n


def _build_dir(path: str) -> Path:
    """A build directory given absolute, relative to the working directory or to the repo."""
    source = Path(path)
    return source if source.is_absolute() or source.exists() else ROOT / source


def same_build(built: dict[str, Any], config: dict[str, Any]) -> bool:
    """Whether a build made with `built` is the one `config` asks for. A field added to
    DataParams since then counts as its default (the build did not have it, so it did what
    the default does), so a new option does not turn every existing build into a stranger."""
    fields = DataParams.model_fields
    return all(built[k] == v if k in built else
               k in fields and v == fields[k].get_default(call_default_factory=True)
               for k, v in config.items()) and set(built) <= set(config)


def build(p: DataParams, force: bool = False) -> dict[str, Any]:
    """Build the datasets of `p` into `p.out_dir()` and return the data card."""
    out = p.out_dir()
    config = p.model_dump()
    if (out / "data_card.json").is_file() and not force:
        card = json.loads((out / "data_card.json").read_text())
        if "params" in card and same_build(card["params"], config):
            print(f"{out} is already built with these parameters; nothing to do (--force rebuilds)")
            if not (out / "hf" / "README.md").is_file():  # a build older than the export
                export.export(out)
            return card
        raise FileExistsError(f"{out} holds a build with other parameters; pass --force to replace it, "
                              f"or set `name` to build beside it")
    started = time.time()
    work = out.parent / f".{out.name}.building"
    work.mkdir(parents=True, exist_ok=True)  # survives an interruption (teacher cache)
    if p.mix == "live":
        cat, train_part, eval_part, extra, drops, live_ids = build_live(p)
        eval_rows, held = None, []
    else:
        cat, train_part, eval_part, eval_rows, drops, held = build_written(p, work)
        extra = {}
        live_ids = sorted(s.id for s, _ in train_part if s.source == "bfcl_live")
    bench_requests, bench_functions = bfcl_data.benchmark_fingerprint()
    train = [s for s, _ in train_part]
    evals = [s for s, _ in eval_part] + [s for rows in extra.values() for s, _ in rows]
    leak = quality.check_leakage(train + evals, bench_requests, bench_functions)
    splits = {"train": [datacard.to_row(s, n) for s, n in train_part],
              "eval": eval_rows if eval_rows is not None else [datacard.to_row(s, n) for s, n in eval_part],
              **{k: [datacard.to_row(s, n) for s, n in rows] for k, rows in extra.items()}}
    card = {"name": p.name, "tokenizer": p.tokenizer, "format": p.format, "params": config,
            "splits": {k: datacard.split_summary(v) for k, v in splits.items()},
            "filter": drops, "leakage": leak,
            "unseen_tools": sorted(held),
            "bfcl_live_ids_in_train": live_ids,
            "catalog": {k: v for k, v in cat.report.items() if k != "selected"},
            "toolkits": {k: {"tools": len(t.functions), "source": t.source} for k, t in cat.toolkits.items()},
            "build_seconds": None, "provenance": provenance()}
    if p.mix == "live":
        card["live"] = {"train": live.describe(train), "dev": live.describe([s for s, _ in eval_part]),
                        **{k: live.describe([s for s, _ in rows]) for k, rows in extra.items()},
                        "toolkits_held_back": {k: sorted({s.toolkit for s, _ in rows})
                                               for k, rows in {"dev": eval_part, **extra}.items()}}
    datacard.save_splits(splits, work)
    card["build_seconds"] = round(time.time() - started, 1)
    write_json(work / "data_card.json", card)
    with (work / "catalog.jsonl").open("w") as f:
        for t in cat.toolkits.values():
            for fn in t.functions:
                f.write(json.dumps({"toolkit": t.name, "type": "function", "function": fn}, ensure_ascii=False) + "\n")
    datacard.plot_card(card, splits, work / "data_card.png")
    if out.exists():
        shutil.rmtree(out)
    work.rename(out)  # the finished build appears at once, never half-written
    export.export(out)  # the same splits in TRL's conversational format, with a dataset card
    return card


def build_live(p: DataParams) -> tuple:
    """The live mix (common.data.live.build), with the requests of `live_exclude_eval_of` kept out."""
    other: set[str] = set()
    for path in p.live_exclude_eval_of:  # another build's held-out set stays out of this one
        source = _build_dir(path)
        if not (source / "data_card.json").is_file():
            raise FileNotFoundError(f"live_exclude_eval_of: no build at {source}; build it first "
                                    f"(e.g. `python -m common.data build params/data.yaml`)")
        other.update(normalize_request(quality.request_text(s)) for s in load_split(source, "eval"))
    return live.build(p, PromptMeter(p), frozenset(other))


def build_written(p: DataParams, work: Path) -> tuple:
    """The balanced and generic mixes: (catalog, train, eval, eval rows reused, drops, held tools)."""
    cat = build_catalog(p, work)
    bench_requests, bench_functions = bfcl_data.benchmark_fingerprint()
    held: set[str] = set()
    if p.unseen_tools_fraction:
        for kit in cat.toolkits.values():
            names = sorted(kit.names())
            k = max(1, round(len(names) * p.unseen_tools_fraction)) if len(names) > 2 else 0
            held.update(random.Random(f"{p.seed}:unseen:{kit.name}").sample(names, k))
    if p.eval_from:  # the reused eval's unseen tools must stay out of this training set too
        source_card = _build_dir(p.eval_from) / "data_card.json"
        if source_card.is_file():
            held.update(json.loads(source_card.read_text()).get("unseen_tools", []))
    train_cat = cat.without(held) if held else cat
    teacher = make_teacher(p, work)
    meter = PromptMeter(p)
    seen: set[str] = set()
    eval_rows = None
    if p.eval_from:
        source = _build_dir(p.eval_from)
        if not (source / "data_card.json").is_file():
            raise FileNotFoundError(f"eval_from: no build at {source}; build it first "
                                    f"(e.g. `python -m common.data build params/data.yaml`)")
        eval_samples = load_split(source, "eval")
        seen.update(normalize_request(quality.request_text(s)) for s in eval_samples)
        eval_rows = [datacard.to_row(s, meter.tokens(s)) for s in eval_samples]
    drops: dict[str, Any] = {"dropped": Counter(), "examples": {}, "short": {}}
    real = live_samples(train_cat, bench_requests) if "bfcl_live" in p.request_sources else {}
    n_eval = 0 if eval_rows is not None else p.eval_size
    per_kit = p.samples_per_toolkit
    train_plan = quotas(p, sorted(train_cat.toolkits, key=lambda t: (-len(train_cat.toolkits[t].functions), t)), per_kit)
    total = sum(sum(v.values()) for v in train_plan.values())
    with tqdm(total=total + (n_eval if held else 0), desc=f"building {p.name}", unit="sample") as bar:
        writer = SampleWriter(train_cat, p.tools_per_prompt, p.max_description_chars, p.optional_rate, teacher)
        pool = generate(p, writer, train_plan, real, meter, seen, "s", drops, bar)
        if held and n_eval:
            eval_writer = SampleWriter(cat, p.tools_per_prompt, p.max_description_chars, p.optional_rate, teacher,
                                       targets=held)
            kits = sorted(k for k in cat.toolkits if any(n in held for n in cat.toolkits[k].names()))
            share = math.ceil(n_eval / len(kits))
            plan = {k: {s: math.ceil(share * v) for s, v in p.scenario_mix.items()} for k in kits}
            eval_pool = generate(p, eval_writer, plan, {}, meter, seen, "u", drops, bar)
            eval_part = stratified_eval(eval_pool, n_eval, p.eval_seed)[0]
            train_part = pool
        else:
            eval_part, train_part = stratified_eval(pool, n_eval, p.eval_seed)
    if "xlam" in p.request_sources:
        from common.data.xlam import (
            load_xlam,  # `datasets` and the hub: only the xLAM source needs them
        )
        xlam, xlam_dropped = load_xlam(p.xlam_samples, p.seed)
        leaking = quality.leakage(xlam, bench_requests, bench_functions)
        bad = set(leaking["same_request"]) | {s.id for s in xlam if set(s.functions()) & bench_functions}
        kept, report = quality.quality_filter([s for s in xlam if s.id not in bad], seen)
        fitted = [meter.fit(s) for s in kept]
        drops["xlam"] = {"converted_dropped": xlam_dropped, "benchmark_dropped": len(bad), **report,
                         "prompt_too_long": sum(s is None for s, _ in fitted)}
        train_part += [(s, n) for s, n in fitted if s is not None]
    return cat, train_part, eval_part, eval_rows, drops, held


def show(card: dict[str, Any]) -> str:
    lines = [f"{card['name']}: built in {card['build_seconds']} s, tokens by {card['tokenizer']} ({card['format']})"]
    for split, s in card["splits"].items():
        t = s["prompt_tokens"]
        lines.append(f"  {split}: {s['samples']} samples, {len(s['toolkits'])} toolkits, scenarios {s['scenarios']}")
        lines.append(f"    sources {s['sources']}; prompt tokens p50 {t.get('p50', 0):.0f} "
                     f"p95 {t.get('p95', 0):.0f} max {t.get('max', 0)}; sha256 {s['content_sha256'][:12]}")
    lines.append(f"  filter dropped: {dict(card['filter']['dropped'])}; short quotas: {len(card['filter']['short'])}")
    lines.append(f"  leakage check: {card['leakage']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = ArgumentParser(prog="python -m common.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the datasets of a parameter file")
    b.add_argument("params", nargs="+", help="YAML parameter files, merged in order")
    add_set_argument(b, DataParams, dest="overrides")
    b.add_argument("--force", action="store_true", help="replace an existing build with other parameters")
    s = sub.add_parser("show", help="print the data card of a build directory")
    s.add_argument("path", help="a build directory, e.g. data/offline-default")
    s.add_argument("--debug", action="store_true", help="show the traceback of an error (else one line)")
    e = sub.add_parser("export", help="write a build's splits in TRL's conversational format, with a dataset card, "
                       "into <build>/hf (every build does)")
    e.add_argument("path", help="a build directory, e.g. data/offline-default")
    e.add_argument("--debug", action="store_true", help="show the traceback of an error (else one line)")
    args = parser.parse_args(argv)
    if args.command == "export":
        print(f"written: {shown(export.export(args.path))} (datasets.load_from_disk; README.md is its card)")
    if args.command in ("show", "export"):
        card = read_json(Path(args.path) / "data_card.json", "data build (data_card.json)")
    else:
        card = build(load_params(DataParams, args.params, overrides_of(args, "overrides")), force=args.force)
    print(show(card))
    return card


if __name__ == "__main__":
    cli(main)
