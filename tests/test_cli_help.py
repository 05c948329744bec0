"""`--help` of every command: each option with its meaning and default, and each parameter a
command takes from YAML files and `--set` listed with its default and meaning (issue 19, item 6)."""

from __future__ import annotations

import argparse
import importlib

import pytest

from common.bfcl.params import BFCLParams
from common.data.build import DataParams
from common.errors import ArgumentParser
from common.evaluation.params import EvalParams
from common.experiments.headline import HeadlineParams
from common.experiments.quickstart import QuickstartParams
from common.params import parameters_help
from common.training.params import STAGES

# (module whose main() is the command, arguments before --help, the parameter classes it lists)
COMMANDS = [
    ("common.evaluation.runner", [], [EvalParams]),
    ("common.bfcl.run", [], [BFCLParams]),
    ("common.training.cli", [], list(STAGES.values())),
    ("common.data.build", ["build"], [DataParams]),
    ("common.data.build", ["show"], []),
    ("common.experiments.quickstart", [], [QuickstartParams]),
    ("common.experiments.headline", [], [HeadlineParams]),
    ("common.experiments.sweep", [], []),
    ("common.experiments.figures", [], []),
    ("common.evaluation.calibrate", [], []),
    ("common.evaluation.parity", [], []),
    ("common.training.bench", [], []),
    ("common.training.bench", ["generate"], []),
    ("common.training.export", [], []),
    ("common.samples", [], []),
]


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize(("module", "argv", "classes"), COMMANDS, ids=[f"{m} {' '.join(a)}" for m, a, _ in COMMANDS])
def test_help_gives_each_option_and_parameter_its_meaning_and_default(module, argv, classes, monkeypatch, capsys):
    made: list[argparse.ArgumentParser] = []
    init = ArgumentParser.__init__

    def keep(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(ArgumentParser, "__init__", keep)
    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps to the terminal, which may cut a long default path
    with pytest.raises(SystemExit) as done:
        importlib.import_module(module).main([*argv, "--help"])
    assert done.value.code == 0
    raw = capsys.readouterr().out
    text = flat(raw)
    shown = made[-1] if not argv or argv == ["generate"] else next(p for p in made if p.prog.endswith(argv[0]))
    for action in shown._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        assert action.help, f"{module}: {action.dest} has no help"
        assert flat(action.help) in text
        # argparse shows the default of an option, or of a positional that may be left out
        shows_default = (action.option_strings or action.nargs in ("?", "*")) and not (
            action.default is None or action.default is False or action.default in ([], argparse.SUPPRESS))
        assert (f"(default: {action.default})" in text) == bool(shows_default), (module, action.dest)
    for cls in classes:
        for name, field in cls.model_fields.items():
            assert field.description, f"{cls.__name__}.{name} has no description"
            assert f"\n  {name} = " in raw and flat(field.description) in text, (cls.__name__, name)


def test_the_parameter_list_gives_defaults_as_yaml_and_stages_share_what_they_share():
    text = parameters_help(DataParams)
    assert "  seed = 0\n" in text and "  out = null\n" in text and "  catalog_sources = [bfcl]\n" in text
    assert "  scenario_mix = {single: 0.4, parallel: 0.2, sequential: 0.1, no_tool: 0.15, missing_info: 0.15}" in text
    staged = parameters_help(STAGES)
    every, sft, dpo = (staged.split("parameters of every stage")[1].split("parameters of sft")[0],
                       staged.split("parameters of sft")[1].split("parameters of dpo")[0],
                       staged.split("parameters of dpo")[1])
    assert "  lora_r = 16" in every and "  lora_r = " not in sft + dpo  # said once
    assert "  learning_rate = 0.0002" in sft and "  learning_rate = 5.0e-05" in dpo  # each stage's own default
    assert "  beta = 0.1" in dpo and "  beta = " not in sft and "  decision_weight = 1.0" in sft
