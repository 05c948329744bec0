"""A build in TRL's conversational format: splits, rows, the dataset card, and TRL reading it."""

from __future__ import annotations

import json

import pytest
from datasets import load_from_disk

from common.data import build as data
from common.data import export
from common.errors import UserError
from common.sources import load_split
from common.training.training_data import target_calls

# A chat template that writes tools and tool calls, as tool-calling models' templates do (SmolLM2's own
# ignores both), so that TRL's tokenisation shows what it made of each row.
TOOL_TEMPLATE = (
    "{% if tools %}<tools>{{ tools | tojson }}</tools>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{% if m.tool_calls %}{% for c in m.tool_calls %}<tool_call>{{ c.function.name }} {{ c.function.arguments }}"
    "</tool_call>{% endfor %}{% else %}{{ m.content }}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    params = data.DataParams(name="t", out=str(tmp / "t"), top_toolkits=4, samples_per_toolkit=30, eval_size=12,
                             tools_per_prompt=4, max_description_chars=100, max_prompt_tokens=700,
                             tokenizer="tiny-random-llama")
    return tmp / "t", data.build(params)


def test_every_build_is_exported_with_three_splits_and_the_answers_trained_on(built):
    out, card = built
    hf = load_from_disk(str(out / "hf"))
    assert list(hf) == ["train", "validation", "test"]
    train, evals = load_split(out, "train"), load_split(out, "eval")
    # an offline build: its eval split is the test split, 5% of train (seeded) the validation split
    assert [r["id"] for r in hf["test"]] == [s.id for s in evals]
    assert len(hf["validation"]) == round(0.05 * len(train)) > 0
    assert {r["id"] for r in hf["train"]} | {r["id"] for r in hf["validation"]} == {s.id for s in train}
    assert not {r["id"] for r in hf["train"]} & {r["id"] for r in hf["validation"]}
    by_id = {s.id: s for s in train + evals}
    for split in hf.values():
        for row in split:
            sample = by_id[row["id"]]
            answer = row["messages"][-1]
            assert answer["role"] == "assistant" and json.loads(row["tools"]) == sample.tools
            if sample.expected_calls:
                calls = [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in answer["tool_calls"]]
                assert calls == [(c.name, c.arguments) for c in target_calls(sample)]
                assert all(c["type"] == "function" for c in answer["tool_calls"])
            else:
                assert answer["tool_calls"] is None and answer["content"] == sample.reply.strip() != ""
    assert hf["train"].info.license and "TRL" in hf["train"].info.description


def test_the_dataset_card_names_sources_licences_sizes_and_the_leakage_check(built):
    out, card = built
    text = (out / "hf" / "README.md").read_text()
    header = text.split("---")[1]
    assert "license: apache-2.0" in header and "text-generation" in header and "n<1K" in header
    for source in card["splits"]["train"]["sources"]:
        assert f"| {source} |" in text
    assert f"| test | {card['splits']['eval']['samples']} |" in text
    assert f"({card['leakage']['checked']} samples)" in text and "## Splits" in text


def test_trl_tokenises_the_rows_with_their_tools_and_answers(built, tmp_path):
    from trl import SFTConfig, SFTTrainer  # seconds to import: this test only

    from common.models import load_model

    out, _ = built
    ds = load_from_disk(str(out / "hf"))["train"].select(range(6))
    model, tok = load_model("tiny-random-llama", dtype="float32")
    tok.chat_template = TOOL_TEMPLATE
    args = SFTConfig(output_dir=str(tmp_path / "trl"), max_steps=1, report_to=[], per_device_train_batch_size=2,
                     bf16=False, use_cpu=True,
                     assistant_only_loss=False, max_length=None, dataset_num_proc=None)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    for row, encoded in zip(ds, trainer.train_dataset):
        text = tok.decode(encoded["input_ids"])
        answer = row["messages"][-1]
        assert json.loads(row["tools"])[0]["function"]["name"] in text
        if answer["tool_calls"]:
            assert f"<tool_call>{answer['tool_calls'][0]['function']['name']} " in text
        else:
            assert answer["content"][:20] in text


def test_the_command_exports_a_build_again(built, capsys):
    out, _ = built
    (out / "hf" / "README.md").unlink()
    data.main(["export", str(out)])
    assert "written:" in capsys.readouterr().out and (out / "hf" / "README.md").is_file()
    assert export.size_category(999) == "n<1K" and export.size_category(250_000) == "100K<n<1M"


def test_exporting_what_is_not_a_build_names_the_fix(tmp_path):
    with pytest.raises(UserError, match="python -m common.data build"):
        export.export(tmp_path / "nothing")
    assert export.source_terms("bfcl_live_composed")[1] == "apache-2.0"
    assert export.source_terms("xlam")[1] == "cc-by-4.0" and export.source_terms("mystery")[1].startswith("unknown")
