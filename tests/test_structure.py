"""The package's shape: a core and areas that import only the core and the areas below them,
no private name imported across modules, no import inside a function without a comment saying
why, no module far over 400 lines; and the older command names still run."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import common

PACKAGE = Path(common.__file__).parent
# Each area may import the core and the areas before it.
AREAS = ("data", "evaluation", "training", "bfcl", "experiments")
# `python -m common.<old name>`: thin aliases kept for recorded commands; they sit above everything.
ALIASES = {"evaluate": "common.evaluation.runner", "train": "common.training.cli",
           "sweep": "common.experiments.sweep", "quickstart": "common.experiments.quickstart",
           "figures": "common.experiments.figures", "calibrate": "common.evaluation.calibrate",
           "bench": "common.training.bench", "export": "common.training.export"}
MAX_LINES = 420


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts).removesuffix(".__init__")] = path
    return found


def area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) >= 2 and parts[1] in AREAS else "core"


def imports(path: Path) -> list[tuple[ast.stmt, list[str], bool]]:
    """(node, the common modules it names, whether it sits inside a function)."""
    tree = ast.parse(path.read_text())
    out = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom) and child.module:
                names = [child.module] + [f"{child.module}.{a.name}" for a in child.names]
                out.append((child, names, in_function))
            elif isinstance(child, ast.Import):
                out.append((child, [a.name for a in child.names], in_function))
            visit(child, inside)
    visit(tree, False)
    return out


def test_every_area_imports_only_the_core_and_the_areas_below_it():
    known = modules()
    order = ("core", *AREAS)
    wrong = []
    for module, path in known.items():
        if module.removeprefix("common.") in ALIASES:
            continue
        for node, names, _ in imports(path):
            for name in names:
                if name in known and name != module:
                    if order.index(area(name)) > order.index(area(module)):
                        wrong.append(f"{module} imports {name} (line {node.lineno})")
    assert not wrong, wrong


def test_no_private_name_is_imported_across_modules():
    private = [f"{module}: {node.module}.{a.name}" for module, path in modules().items()
               for node, _, _ in imports(path) if isinstance(node, ast.ImportFrom)
               for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    assert not private, private


def test_an_import_inside_a_function_says_why():
    silent = []
    for module, path in modules().items():
        lines = path.read_text().splitlines()
        for node, _, in_function in imports(path):
            if not in_function:
                continue
            # the comment is on the import's lines, or on the line just above its block of imports
            above = node.lineno - 2
            while above >= 0 and lines[above].strip().startswith(("import ", "from ")):
                above -= 1
            own = lines[node.lineno - 1:node.end_lineno]
            if not any("#" in line for line in own) and not lines[above].strip().startswith("#"):
                silent.append(f"{module}:{node.lineno} {lines[node.lineno - 1].strip()}")
    assert not silent, silent


def test_no_module_is_far_over_400_lines():
    long = {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_the_tests_follow_the_areas():
    tests = Path(__file__).parent
    assert {p.name for p in tests.iterdir() if p.is_dir() and p.name not in {"fixtures", "__pycache__"}} >= {
        "core", *AREAS}


@pytest.mark.parametrize("alias, target", sorted(ALIASES.items()))
def test_an_old_command_runs_the_same_main(alias, target):
    assert importlib.import_module(f"common.{alias}").main is importlib.import_module(target).main


@pytest.mark.parametrize("command", ["common.train", "common.data", "common.bfcl", "common.evaluation",
                                     "common.training", "common.export"])
@pytest.mark.slow
def test_old_and_new_command_names_answer(command):
    done = subprocess.run([sys.executable, "-m", command, "--help"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
