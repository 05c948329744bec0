"""Training on tiny random models: the loss mask, what each method changes, resume, DPO's reference."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
import torch
from transformers import TrainerCallback

from common.errors import UserError
from common.formats import get_format
from common.models import load_model, load_tokenizer
from common.params import ParamsError, load_params, parse_overrides
from common.samples import write_samples
from common.sources import load_data
from common.training.cli import main as train_main
from common.training.dpo import dpo_trainer, train_dpo
from common.training.params import DPOParams, SFTParams
from common.training.preferences import (
    CORRUPTIONS,
    Pair,
    corrupt,
    corrupted_pairs,
    sampled_pairs,
)
from common.training.run_folder import prepare_out, resolve
from common.training.sft import train_sft
from common.training.trainers import (
    COMPILE_MIN_TOKENS,
    CompletionSFTTrainer,
    changed_parameters,
    compile_layers,
    cxx_compiler,
)
from common.training.training_data import TrainingDataError, completion_text, sft_rows

TINY = ("tiny-random-llama", "tiny-random-gemma3")


@pytest.fixture(scope="module")
def samples():
    """The shipped suite, with a reply on every no-call sample (suites carry none)."""
    out = []
    for s in load_data("suite:everyday_tools"):
        out.append(s if s.expected_calls else s.model_copy(update={"reply": "I can't do that with these tools."}))
    return out


@pytest.fixture(scope="module")
def data_file(samples, tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    write_samples(samples, path)
    return str(path)


def sft_params(tmp_path, data_file, **kw):
    base = dict(model="tiny-random-llama", data=data_file, eval_data=data_file, eval_limit=4, max_steps=4,
                batch_size=2, gradient_accumulation_steps=1, learning_rate=5e-3, logging_steps=1, save_steps=2,
                precision="fp32", device="cpu", wandb="disabled", out=str(tmp_path / "sft"), warmup_ratio=0.0,
                max_length=4096)
    return SFTParams(**(base | kw))


# -- the loss mask ------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", TINY)
def test_mask_covers_exactly_the_completion_and_its_end_token(name, samples):
    tok = load_tokenizer(name)
    fmt = get_format("hermes" if name.endswith("llama") else "functiongemma")
    enc = sft_rows(samples, fmt, tok, max_length=4096)
    assert len(enc.rows) == len(samples)
    for s, row in zip(samples, enc.rows):
        ids, mask = row["input_ids"], row["completion_mask"]
        first = mask.index(1)
        assert all(mask[first:])
        completion = tok.decode(ids[first:], skip_special_tokens=False)
        assert completion == completion_text(s, fmt, tok)
        assert completion.endswith(fmt.end_of_turn(tok))
        # the prompt part is what the evaluation runner sends
        assert tok.decode(ids[:first], skip_special_tokens=False) == fmt.render_prompt(s.tools, s.messages, tok)


def test_trl_labels_follow_the_mask(tmp_path, samples):
    """What TRL's collator makes of the rows: labels on the completion tokens only."""
    from datasets import Dataset
    from trl import SFTConfig
    model, tok = load_model("tiny-random-llama", dtype="float32")
    enc = sft_rows(samples[:6], get_format("hermes"), tok, 4096)
    ds = Dataset.from_list([{k: r[k] for k in ("input_ids", "completion_mask")} for r in enc.rows])
    args = SFTConfig(output_dir=str(tmp_path), per_device_train_batch_size=6, use_cpu=True, report_to=[],
                     completion_only_loss=True, max_length=4096, shuffle_dataset=False)
    trainer = CompletionSFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    by_ids = {tuple(r["input_ids"]): r["completion_mask"] for r in enc.rows}
    for ids, labels, attn in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
        n = int(attn.sum())
        mask = by_ids[tuple(ids[:n].tolist())]
        assert [int(x != -100) for x in labels[:n]] == mask
        assert (labels[n:] == -100).all()


def test_a_no_call_sample_without_reply_is_refused(samples):
    bare = next(s for s in samples if not s.expected_calls).model_copy(update={"reply": None})
    tok = load_tokenizer("tiny-random-llama")
    with pytest.raises(TrainingDataError, match="no `reply`"):
        sft_rows([bare], get_format("hermes"), tok, 4096)


def test_sequences_over_max_length_are_dropped_and_counted(samples):
    tok = load_tokenizer("tiny-random-llama")
    lengths = sorted(len(r["input_ids"]) for r in sft_rows(samples, get_format("hermes"), tok, 8192).rows)
    cut = lengths[len(lengths) // 2]
    enc = sft_rows(samples, get_format("hermes"), tok, max_length=cut)
    assert enc.dropped["longer_than_max_length"] == len(samples) - len(enc.rows) > 0
    assert max(len(r["input_ids"]) for r in enc.rows) <= cut
    with pytest.raises(TrainingDataError, match="no sample fits"):
        sft_rows(samples, get_format("hermes"), tok, max_length=20)


def one_batch_trainer(model, tok, samples, out, **trainer_kw):
    """A `CompletionSFTTrainer` over `samples` as one padded batch (TRL's collator), and that
    batch; the model in training mode."""
    from datasets import Dataset
    from trl import SFTConfig
    enc = sft_rows(samples, get_format("hermes"), tok, 4096)
    ds = Dataset.from_list([{k: r[k] for k in ("input_ids", "completion_mask")} for r in enc.rows])
    args = SFTConfig(output_dir=str(out), per_device_train_batch_size=len(samples), use_cpu=True, report_to=[],
                     completion_only_loss=True, max_length=4096)
    trainer = CompletionSFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, **trainer_kw)
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    return trainer, batch


@pytest.mark.slow
def test_completion_logits_loss_equals_trls_loss(tmp_path, samples):
    """The fast loss is the same number as TRL's fused one, on a padded batch."""
    model, tok = load_model("tiny-random-llama", dtype="float32")
    trainer, batch = one_batch_trainer(model, tok, samples[:4], tmp_path)
    with torch.no_grad():
        ours = trainer.compute_loss(trainer.model, dict(batch))
        trainer.own_loss = False
        theirs = trainer.compute_loss(trainer.model, dict(batch))
    assert torch.allclose(ours, theirs, rtol=1e-4)
    assert len(trainer._metrics["train"]["mean_token_accuracy"]) == 2


def test_decision_weight_adds_the_first_answer_tokens_loss(tmp_path, samples):
    """With weight w, the train loss is the plain loss plus (w - 1) x each row's first-token
    loss over the token count; the eval loss stays the plain loss."""
    import torch.nn.functional as F
    model, tok = load_model("tiny-random-llama", dtype="float32")
    trainer, batch = one_batch_trainer(model, tok, samples[:3], tmp_path, decision_weight=5.0)
    with torch.no_grad():
        weighted = trainer.compute_loss(trainer.model, dict(batch))
        trainer.decision_weight = 1.0
        plain = trainer.compute_loss(trainer.model, dict(batch))
        logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"][:, 1:]
        firsts = [(row, int((labels[row] != -100).nonzero()[0])) for row in range(labels.shape[0])]
        first_loss = sum(F.cross_entropy(logits[r, c][None], labels[r, c][None]) for r, c in firsts)
        n = (labels != -100).sum()
        trainer.decision_weight = 5.0
        trainer.model.eval()
        evaluated = trainer.compute_loss(trainer.model, dict(batch))
    assert torch.allclose(weighted, plain + 4 * first_loss / n, rtol=1e-4)
    assert torch.allclose(evaluated, plain, rtol=1e-4)


# -- the fast path: compiled layers --------------------------------------------------------------
def lora_loss_and_grads(samples, compile_setting, out):
    """One training step's loss and LoRA gradients on a padded batch of three samples, fp32."""
    from peft import get_peft_model

    from common.training.trainers import lora_config
    model, tok = load_model("tiny-random-llama", dtype="float32", seed=0)
    model = get_peft_model(model, lora_config(8, 16, 0.0, "all"))
    torch.manual_seed(0)  # PEFT starts lora_B at zero: give it values so every gradient is non-trivial
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.02)
    decision = compile_layers(model, compile_setting, "cpu", "lora")
    trainer, batch = one_batch_trainer(model, tok, samples[:3], out, decision_weight=3.0)
    loss = trainer.compute_loss(trainer.model, dict(batch))
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return decision, loss.detach(), grads


@pytest.mark.slow
@pytest.mark.skipif(cxx_compiler() is None, reason="torch.compile's CPU backend needs a C++ compiler")
def test_compiled_layers_give_the_eager_loss_and_gradients(samples, tmp_path):
    """The fast path (each decoder layer torch.compiled) computes what the reference path
    (eager, fp32) computes: the loss within 1e-5 relative, every LoRA gradient within 1e-4
    relative + 1e-6 absolute (fused kernels reorder float additions, nothing more)."""
    eager_decision, eager_loss, eager_grads = lora_loss_and_grads(samples, "off", tmp_path / "eager")
    fast_decision, fast_loss, fast_grads = lora_loss_and_grads(samples, "on", tmp_path / "compiled")
    assert not eager_decision["compile"] and fast_decision["compile"] and fast_decision["layers"] == 2
    assert torch.allclose(fast_loss, eager_loss, rtol=1e-5, atol=0), (fast_loss, eager_loss)
    assert fast_grads.keys() == eager_grads.keys() and len(fast_grads) == 2 * 7 * 2
    for name, g in eager_grads.items():
        assert g.abs().max() > 0, name
        assert torch.allclose(fast_grads[name], g, rtol=1e-4, atol=1e-6), name


def test_compile_auto_stays_off_where_it_cannot_pay_or_is_unmeasured():
    model, _ = load_model("tiny-random-llama", dtype="float32", seed=0)
    assert not compile_layers(model, "auto", "cpu", "lora", COMPILE_MIN_TOKENS - 1)["compile"]
    assert not compile_layers(model, "auto", "cuda", "lora", 10 * COMPILE_MIN_TOKENS)["compile"]
    assert not compile_layers(model, "auto", "cpu", "full", 10 * COMPILE_MIN_TOKENS)["compile"]
    assert not compile_layers(model, "off", "cpu", "lora", 10 * COMPILE_MIN_TOKENS)["compile"]


@pytest.mark.parametrize(("written", "meant"), [("off", "off"), ("on", "on"), ("false", "off"), ("auto", "auto")])
def test_compile_reads_as_written_in_yaml(written, meant, tmp_path, data_file):
    """YAML reads on/off as booleans; `--set compile=off` and `compile: off` mean what they say."""
    p = SFTParams(**(sft_params(tmp_path, data_file).model_dump() | parse_overrides([f"compile={written}"])))
    assert p.compile == meant


def test_a_short_run_records_that_it_did_not_compile(tmp_path, data_file):
    results = train_sft(sft_params(tmp_path, data_file, max_steps=1, eval_limit=0))
    assert results["compile"]["compile"] is False and "tokens to train on" in results["compile"]["reason"]
    t = results["throughput"]
    assert t["first_step_seconds"] is not None and t["steps"] == 1


# -- what training changes -------------------------------------------------------------------
class Snapshot(TrainerCallback):
    """Every parameter (trainable or not) when training begins."""

    def on_train_begin(self, args, state, control, model=None, **kw):
        self.model = model
        self.before = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.trainable = {n for n, p in model.named_parameters() if p.requires_grad}


def adapted_module(name):
    """`…q_proj.lora_A.default.weight` -> `q_proj`."""
    parts = name.split(".")
    return parts[next(i for i, x in enumerate(parts) if x.startswith("lora_")) - 1]


def test_lora_changes_the_adapter_weights_and_only_those(tmp_path, data_file):
    snap = Snapshot()
    results = train_sft(sft_params(tmp_path, data_file), callbacks=[snap])
    changed = changed_parameters(snap.model, snap.before)
    assert snap.trainable and all("lora_" in n for n in snap.trainable)
    assert changed and changed <= snap.trainable
    assert any("lora_B" in n for n in changed)
    # all seven projections carry an adapter
    assert {adapted_module(n) for n in snap.trainable} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                           "up_proj", "down_proj"}
    assert results["parameters"]["trainable"] < results["parameters"]["total"]
    assert (tmp_path / "sft" / "adapter" / "adapter_config.json").exists()


def test_attention_only_targets_q_k_v_o(tmp_path, data_file):
    snap = Snapshot()
    train_sft(sft_params(tmp_path, data_file, target_modules="attention", max_steps=1), callbacks=[snap])
    assert {adapted_module(n) for n in snap.trainable} == {"q_proj", "k_proj", "v_proj", "o_proj"}


def test_full_finetuning_changes_the_base_weights(tmp_path, data_file):
    snap = Snapshot()
    results = train_sft(sft_params(tmp_path, data_file, method="full", max_steps=2), callbacks=[snap])
    changed = changed_parameters(snap.model, snap.before)
    assert snap.trainable == set(snap.before)  # every weight trains
    assert any("self_attn.q_proj.weight" in n for n in changed)
    assert any("mlp.down_proj.weight" in n for n in changed)
    assert results["parameters"]["trainable"] == results["parameters"]["total"]
    assert (tmp_path / "sft" / "model" / "config.json").exists()


def test_the_adapter_loads_and_merges_like_any_peft_adapter(tmp_path, data_file):
    train_sft(sft_params(tmp_path, data_file, max_steps=2, merge=True))
    merged, tok = load_model(str(tmp_path / "sft" / "merged"), dtype="float32")
    adapted, _ = load_model("tiny-random-llama", adapter=str(tmp_path / "sft" / "adapter"), dtype="float32")
    base, _ = load_model("tiny-random-llama", dtype="float32")
    x = torch.tensor([tok("call the weather tool")["input_ids"]])
    with torch.no_grad():
        a, m, b = adapted(x).logits, merged(x).logits, base(x).logits
    assert torch.allclose(a, m, atol=1e-4) and not torch.allclose(a, b, atol=1e-4)


# -- history, results, resume ----------------------------------------------------------------
def test_a_run_saves_its_curves_and_results(tmp_path, data_file):
    results = train_main(["sft", "--set", *(f"{k}={json.dumps(v)}" for k, v in sft_params(tmp_path, data_file)
                                         .model_dump(exclude={"target_modules"}).items() if v is not None)])
    out = tmp_path / "sft"
    lines = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    train = [r for r in lines if "loss" in r]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    for key in ("loss", "learning_rate", "grad_norm", "entropy", "mean_token_accuracy"):
        assert all(key in r for r in train), key
    assert any("eval_loss" in r for r in lines)
    saved = json.loads((out / "results.json").read_text())
    assert saved["final"]["loss"] == train[-1]["loss"] and saved["steps"] == 4
    assert saved["throughput"]["tokens"] > 0 and saved["throughput"]["tokens_per_s"] > 0
    assert saved["provenance"]["git"]["commit"] and saved["params"]["seed"] == 42
    assert results["data"]["train"]["sequences"] == 40
    assert results["data"]["train"]["split_sha256"] is None  # a JSONL file, not a build with a card


class Interrupt(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        if state.global_step == 3:
            raise KeyboardInterrupt("killed")


class FirstStep(TrainerCallback):
    def on_step_begin(self, args, state, control, **kw):
        self.step = getattr(self, "step", state.global_step)


@pytest.mark.slow
def test_an_interrupted_run_resumes_from_its_last_checkpoint(tmp_path, data_file):
    p = sft_params(tmp_path, data_file, max_steps=4, save_steps=2)
    with pytest.raises(KeyboardInterrupt):
        train_sft(p, callbacks=[Interrupt()])
    assert (tmp_path / "sft" / "checkpoints" / "checkpoint-2").is_dir()
    # the invocations so far are inside the file that makes a checkpoint complete: no kill can part them
    state = json.loads((tmp_path / "sft" / "checkpoints" / "checkpoint-2" / "trainer_state.json").read_text())
    assert [i["until_step"] for i in state["stateful_callbacks"]["CheckpointInvocations"]["attributes"]
            ["invocations"]] == [2]
    first = FirstStep()
    results = train_sft(p, callbacks=[first])
    assert first.step == 2  # continued from checkpoint-2, not from 0
    assert results["steps"] == 4 and results["throughput"]["steps"] == 2
    # the killed invocation is recorded up to the checkpoint resumed from, then this one
    killed, resumed = results["invocations"]
    assert (killed["steps"], killed["until_step"], resumed["steps"]) == (2, 2, 2) and "until_step" not in resumed
    assert killed["tokens"] > 0 and killed["seconds"] > 0 and resumed == {"git": resumed["git"], **results["throughput"]}
    history = json.loads((tmp_path / "sft" / "history.json").read_text())
    steps = [r["step"] for r in history if "loss" in r]
    assert steps == [1, 2, 3, 4]


def test_other_settings_in_the_same_folder_are_refused(tmp_path, data_file):
    train_sft(sft_params(tmp_path, data_file, max_steps=1))
    with pytest.raises(ValueError, match="learning_rate"):
        train_sft(sft_params(tmp_path, data_file, max_steps=1, learning_rate=1e-3))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train_sft(sft_params(tmp_path / "other", data_file, max_steps=1, resume="always",
                                out=str(tmp_path / "fresh")))


# -- parameters ------------------------------------------------------------------------------
def test_bad_parameters_fail_with_the_fix(tmp_path, data_file):
    with pytest.raises(ParamsError, match="did you mean 'lora_alpha'"):
        load_params(SFTParams, overrides={"lora_alpa": 8})
    with pytest.raises(ParamsError, match="target_modules"):
        load_params(SFTParams, overrides={"target_modules": "mlp"})
    with pytest.raises(ParamsError, match="set `sft`"):
        load_params(DPOParams, overrides={})
    with pytest.raises(ValueError, match="flash-attention"):
        train_sft(sft_params(tmp_path, data_file, packing=True))
    with pytest.raises(RuntimeError, match="CUDA"):
        train_sft(sft_params(tmp_path, data_file, method="qlora", device="cpu", out=str(tmp_path / "q")))
    with pytest.raises(UserError, match="python -m common.data build"):
        train_sft(sft_params(tmp_path, "data/no-such-build:train", out=str(tmp_path / "n")))


# -- DPO -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_each_corruption_is_rejected_by_the_checker(kind, samples):
    from common.evaluation.checker import check_sample
    fmt = get_format("hermes")
    applicable = rejected = 0
    for s in samples:
        bad = corrupt(tr_calls(s), kind, random.Random(0), s.functions()) if s.expected_calls else None
        if bad:
            applicable += 1
            rejected += not check_sample(s, fmt.parse(fmt.render_completion(bad), s.tools)).correct
    # a dropped argument whose expected value is its schema default is still a right call
    assert applicable >= 10 and rejected >= 0.8 * applicable



def test_corrupted_pairs_never_reject_a_right_answer(samples):
    from common.evaluation.checker import check_sample
    fmt, tok = get_format("hermes"), load_tokenizer("tiny-random-llama")
    stats = Counter()
    pairs = corrupted_pairs(samples, fmt, tok, seed=0, stats=stats)
    # one pair per sample with calls at most, and every pair counted under its kind
    assert len(pairs) <= sum(1 for s in samples if s.expected_calls)
    assert sum(v for k, v in stats.items() if k.count(":") == 1) == len(pairs)
    assert pairs and all(p.chosen != p.rejected and p.source.startswith("corrupted:") for p in pairs)
    end = fmt.end_of_turn(tok)
    for p in pairs:
        s = next(x for x in samples if x.id == p.sample_id)
        assert p.chosen == completion_text(s, fmt, tok)
        assert not check_sample(s, fmt.parse(p.rejected.removesuffix(end), s.tools)).correct


def tr_calls(sample):
    from common.training.training_data import target_calls
    return target_calls(sample)


def test_corruptions_do_what_their_names_say(samples):
    s = next(x for x in samples if x.expected_calls and len(x.expected_calls[0].arguments) >= 2)
    calls = tr_calls(s)
    args = calls[0].arguments
    rng = random.Random(0)
    renamed = corrupt(calls, "rename_argument", rng, s.functions())[0].arguments
    assert set(renamed) != set(args) and len(renamed) == len(args)
    dropped = corrupt(calls, "drop_argument", rng, s.functions())[0].arguments
    assert set(dropped) < set(args)
    typed = corrupt(calls, "wrong_type", rng, s.functions())[0].arguments
    assert set(typed) == set(args) and any(type(typed[k]) is not type(args[k]) for k in args)
    extra = corrupt(calls, "extra_argument", rng, s.functions())[0].arguments
    assert set(extra) > set(args)


class Scripted:
    """A backend that answers every prompt with the next scripted texts."""

    def __init__(self, texts):
        self.texts = texts

    def generate(self, prompts):
        from common.backends import Generation
        return [Generation(t, 1, 1, 0.0, "stop") for t in self.texts[:len(prompts)]]


def test_sampled_pairs_prefer_a_correct_answer_over_the_worst_wrong_one(samples):
    fmt, tok = get_format("hermes"), load_tokenizer("tiny-random-llama")
    s = next(x for x in samples if x.expected_calls)
    right = fmt.render_completion(tr_calls(s))
    wrong_args = fmt.render_completion([c.model_copy(update={"arguments": {}}) for c in tr_calls(s)])
    garbage = "<tool_call>{not json"
    end = fmt.end_of_turn(tok)
    [(_, pairs, outcome)] = sampled_pairs([s], fmt, tok, Scripted([wrong_args, right, garbage, right]), k=4)
    assert outcome == "sampled" and pairs[0].chosen == right + end and pairs[0].rejected == garbage + end
    [(_, pairs, outcome)] = sampled_pairs([s], fmt, tok, Scripted([right] * 2), k=2)
    assert outcome == "sampled:all_correct" and not pairs
    [(_, pairs, outcome)] = sampled_pairs([s], fmt, tok, Scripted([garbage, wrong_args]), k=2)
    assert outcome == "sampled_gold" and pairs[0].chosen == completion_text(s, fmt, tok)
    assert pairs[0].rejected == garbage + end
    assert isinstance(pairs[0], Pair)


def sequence_logps(model, prompt_ids, answer_ids):
    """log p(answer | prompt) summed over the answer's tokens."""
    ids = torch.tensor([prompt_ids + answer_ids])
    n = len(prompt_ids)
    with torch.no_grad():
        logp = model(ids).logits[0, :-1].float().log_softmax(-1)
    return logp[torch.arange(n - 1, ids.shape[1] - 1), ids[0, n:]].sum()


def tiny_dpo_trainer(tmp_path, data_file, sft_steps, **kw):
    """An SFT run of `sft_steps` on the tiny model, then the DPOTrainer on its corrupted pairs."""
    train_sft(sft_params(tmp_path, data_file, max_steps=sft_steps))
    p = resolve(DPOParams(**({"sft": str(tmp_path / "sft"), "data": data_file, "pair_sources": ["corrupted"],
                              "batch_size": 2, "gradient_accumulation_steps": 1, "precision": "fp32", "device": "cpu",
                              "wandb": "disabled", "max_length": 4096, "out": str(tmp_path / "dpo")} | kw)), "dpo")
    return dpo_trainer(p, prepare_out(p, "dpo"), [])


@pytest.mark.slow
def test_dpo_reference_is_the_sft_model_and_dpo_trains_the_adapter(tmp_path, data_file):
    trainer, info = tiny_dpo_trainer(tmp_path, data_file, 4, pair_prompts=12, max_steps=2, learning_rate=5e-3,
                                     save_steps=10)
    pair = trainer.train_dataset[0]
    batch = trainer.data_collator([pair])
    ref_chosen, _ = trainer.compute_ref_log_probs(trainer.model, batch)
    prompt, chosen = pair["prompt_ids"], pair["chosen_ids"]
    sft, _ = load_model("tiny-random-llama", adapter=str(tmp_path / "sft" / "adapter"), dtype="float32")
    base, _ = load_model("tiny-random-llama", dtype="float32")
    assert torch.allclose(ref_chosen[0], sequence_logps(sft, prompt, chosen), atol=1e-3)
    assert not torch.allclose(ref_chosen[0], sequence_logps(base, prompt, chosen), atol=1e-3)
    # training moves the trained adapter and leaves the reference copy alone
    before = {n: q.detach().clone() for n, q in trainer.model.named_parameters()}
    trainer.train()
    changed = changed_parameters(trainer.model, before)
    assert changed and all(".default." in n for n in changed)
    assert info["pairs"]["trained"] > 0 and all(k.startswith("corrupted:") for k in info["pairs"]["by_source"])


@pytest.mark.slow
def test_dpo_scores_only_the_answers_on_the_cpu_with_trls_log_probs(tmp_path, data_file, monkeypatch):
    """TRL's fused LM head projects every position off Triton devices; this trainer projects the
    answers' only (`completions_only`), and its loss and reference log-probs are TRL's."""
    import trl.trainer.utils as trl_utils
    from trl import DPOTrainer
    trainer, _ = tiny_dpo_trainer(tmp_path, data_file, 1, pair_prompts=4, max_steps=1)
    batch = trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[1]])
    scored = []  # the rows each call projects through the LM head
    real = trl_utils._ChunkedLogProbFunction

    class Spy:
        @staticmethod
        def apply(hidden, *rest):
            scored.append(hidden.shape[0])
            return real.apply(hidden, *rest)
    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", Spy)
    answers = int(batch["completion_mask"][:, 1:].sum())
    positions = batch["input_ids"].shape[0] * (batch["input_ids"].shape[1] - 1)
    assert answers < positions / 3  # the prompt (tools and request) is most of each sequence
    ours = trainer.compute_ref_log_probs(trainer.model, batch)
    theirs = DPOTrainer.compute_ref_log_probs(trainer, trainer.model, batch)
    assert scored == [answers, positions]
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, atol=1e-4)
    scored.clear()
    loss = trainer.compute_loss(trainer.model, batch)
    trl_loss = DPOTrainer.compute_loss(trainer, trainer.model, batch)
    assert scored == [answers, answers, positions, positions]  # policy and reference, each way
    assert torch.allclose(loss, trl_loss, atol=1e-5)


@pytest.mark.slow
def test_dpo_run_with_the_sft_loss_logs_rewards(tmp_path, data_file):
    train_sft(sft_params(tmp_path, data_file, max_steps=2))
    results = train_dpo(dict(sft=str(tmp_path / "sft"), data=data_file, pair_sources=["corrupted"],
                                pair_prompts=8, max_steps=2, batch_size=2, gradient_accumulation_steps=1,
                                precision="fp32", device="cpu", wandb="disabled", logging_steps=1,
                                sft_loss_weight=1.0, max_length=4096,
                                out=str(tmp_path / "dpo")))
    for key in ("rewards/margins", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "loss"):
        assert key in results["final"], key
    assert results["params"]["sft_loss_weight"] == 1.0 and results["reference"].startswith("the SFT adapter")
    adapter = tmp_path / "dpo" / "adapter"
    assert (adapter / "adapter_config.json").exists() and not (adapter / "ref").exists()
    with pytest.raises(ParamsError, match="come from the SFT run"):
        load_params(DPOParams, overrides={"sft": "x", "lora_r": 8})


def test_dpo_draws_its_prompts_from_the_sft_runs_data_unless_told_otherwise(tmp_path):
    from common.jsonio import write_json
    sft = tmp_path / "sft"
    sft.mkdir()
    write_json(sft / "run.json", {"stage": "sft", "params": SFTParams(data="data/elsewhere:train").model_dump()})
    assert resolve(DPOParams(sft=str(sft)), "dpo").data == "data/elsewhere:train"
    assert resolve(DPOParams(sft=str(sft), data="x.jsonl"), "dpo").data == "x.jsonl"
