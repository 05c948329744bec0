"""What a user did wrong, said in one line, and how every command line reports it.

A `UserError` (a parameter, a file, the data, a model name, a refusal to mix runs) is the
user's to fix: `cli` prints its message as one line, `error: <what, where, the fix>`, and
exits with 2. Anything else is a bug of the project and keeps its traceback. `--debug` on
any command (or TOOLCALL_LAB_DEBUG=1) shows the traceback of a user error too.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn


class UserError(ValueError):
    """An error the user fixes (bad parameter, file, data or model name; a refused run).
    A ValueError, so code that guarded against ValueError still does."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """--help as written (descriptions and the parameter list keep their lines), each option's
    default after its meaning where it has one (not None, a flag's False or an empty list: those
    take theirs from the parameter files, listed below the options)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default == []:
            return action.help
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, with a usage mistake reported in one line like every other user
    error (argparse itself prints the usage block, then exits), and `HelpFormatter`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog}: {message} (see --help)")


def debugging(argv: list[str] | None) -> bool:
    return "--debug" in (argv if argv is not None else sys.argv[1:]) or os.environ.get(
        "TOOLCALL_LAB_DEBUG", "").lower() in {"1", "true", "yes"}


# The project's own errors (ParamsError, ModelNotAvailable, TeacherError, ... subclass UserError),
# and the file errors a path the user gave raises.
USER_ERRORS = (UserError, FileNotFoundError, FileExistsError, NotADirectoryError)


def cli(main: Callable[[list[str] | None], Any], argv: list[str] | None = None) -> Any:
    """Run a command's `main(argv)`: a user error becomes one line on stderr and exit code 2."""
    args = list(argv if argv is not None else sys.argv[1:])
    debug = debugging(args)
    args = [a for a in args if a != "--debug"]
    try:
        return main(args)
    except USER_ERRORS as err:
        if debug:
            raise
        message = "; ".join(line.strip() for line in str(err).strip().splitlines() if line.strip())
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted: finished work is kept; run the same command again to resume", file=sys.stderr)
        raise SystemExit(130) from None

