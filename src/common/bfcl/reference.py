"""BFCL's own AST checker as the reference verdict, run in a separate process.

    python -m common.bfcl.reference < cases.json > verdicts.json     # what `common.bfcl` does

`bfcl-eval` is installed without its dependencies (it pins numpy 1.26, tree_sitter 0.21
and every API SDK). Its checker is pure Python but imports the leaderboard's model
registry (`bfcl_eval.constants.model_config`), which imports those SDKs; this process
puts a stub in its place before importing the checker, so the stub never reaches the
project's own process (`reference_verdicts` runs this module with `subprocess`).

Each case: {id, category, function (BFCL's function docs, untouched), possible_answer
(BFCL's ground truth), decoded (the calls the project's parser read, as BFCL's
`[{name: {arg: value}}]`) or decode_error (the parse failed)}. Each verdict:
{id, valid, error_type, error}. The branches mirror `bfcl_eval.eval_checker.eval_runner`:
`_evaluate_single_relevance_entry` for irrelevance categories (correct iff no
function call was decoded) and `_evaluate_single_ast_entry` for the others, with the
project's parsed calls where BFCL's handler would call its own `decode_ast`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from typing import Any

# The model registry is consulted only for function names with a dot, to undo the
# dot-to-underscore renaming of APIs that forbid dots. The project's formats keep the
# name as shown, so every model is one that does not rename.
_NO_RENAMING = types.SimpleNamespace(underscore_to_dot=False)
MODEL_NAME = "toolcall-lab"  # only passed through to the stubbed registry


class _Registry(dict):
    def __getitem__(self, key: str) -> types.SimpleNamespace:
        return _NO_RENAMING


def _import_checker() -> tuple[Any, ...]:
    stub = types.ModuleType("bfcl_eval.constants.model_config")
    stub.MODEL_CONFIG_MAPPING = _Registry()
    sys.modules["bfcl_eval.constants.model_config"] = stub
    # imported only now, after the stub: bfcl_eval's own model registry would import its pinned packages
    from bfcl_eval.constants.enums import Language
    from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker
    from bfcl_eval.utils import is_empty_output, is_function_calling_format_output
    return ast_checker, Language, is_empty_output, is_function_calling_format_output


def check_cases(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ast_checker, Language, is_empty_output, is_function_calling_format_output = _import_checker()
    out = []
    for case in cases:
        decoded, category = case.get("decoded"), case["category"]
        if "irrelevance" in category or category == "live_relevance":
            called = decoded is not None and not is_empty_output(decoded)
            valid = not called if "irrelevance" in category else called
            error_type = None if valid else ("irrelevance_error:decoder_success" if "irrelevance" in category
                                             else "relevance_error:decoder_failed")
            out.append({"id": case["id"], "valid": valid, "error_type": error_type,
                        "error": None if valid else ["a function call was decoded" if called
                                                     else "no function call was decoded"]})
            continue
        if decoded is None:
            out.append({"id": case["id"], "valid": False, "error_type": "ast_decoder:decoder_failed",
                        "error": [f"Invalid syntax. Failed to decode AST. {case.get('decode_error')}"]})
            continue
        if not is_function_calling_format_output(decoded):
            out.append({"id": case["id"], "valid": False, "error_type": "ast_decoder:decoder_wrong_output_format",
                        "error": ["Did not output in the specified format."]})
            continue
        try:
            result = ast_checker(case["function"], decoded, case["possible_answer"], Language.PYTHON,
                                 category, MODEL_NAME)
        except Exception as err:  # noqa: BLE001 - a checker crash is a verdict to report, not to hide
            result = {"valid": False, "error": [f"{type(err).__name__}: {err}"], "error_type": "checker_crash"}
        out.append({"id": case["id"], "valid": bool(result["valid"]), "error_type": result.get("error_type"),
                    "error": result.get("error") or None})
    return out


def reference_verdicts(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """BFCL's verdicts on `cases`, computed in a fresh interpreter (see the docstring)."""
    proc = subprocess.run([sys.executable, "-m", "common.bfcl.reference"], input=json.dumps(cases),
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"BFCL's checker failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


if __name__ == "__main__":
    json.dump(check_cases(json.load(sys.stdin)), sys.stdout, default=repr)
