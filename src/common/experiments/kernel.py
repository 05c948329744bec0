"""What a notebook's kernel is set to by its setup cell (`steps.notebook_params`): a user error
(`errors.UserError`: a parameter, a missing input, a refused run) shows as its one line, as on
the command line, not as a traceback through the package (anything else keeps its traceback);
and the known third-party noise is off (`quiet`), so a training cell shows the project's lines
and one progress bar per long step, not a wall of stderr."""

from __future__ import annotations

import logging
import warnings
from typing import Any

from common.errors import UserError, debugging


def one_line(shell: Any, etype: type[BaseException], value: BaseException, tb: Any, tb_offset: Any = None) -> list[str]:
    """IPython's handler for `UserError` (`set_custom_exc`): the error output holds one line, so
    JupyterLab shows it and papermill still stops the run on it."""
    line = f"{etype.__name__}: " + "; ".join(str(value).splitlines())
    shell._showtraceback(etype, value, [line])  # what ipykernel sends as the cell's error output
    return [line]


def errors_in_one_line() -> bool:
    """Install `one_line` for the project's own errors (`UserError` and its kinds; a library's
    FileNotFoundError keeps its traceback) in the running IPython kernel; False outside IPython, or
    with TOOLCALL_LAB_DEBUG=1, which keeps every traceback as `--debug` does on the command line."""
    if debugging([]):
        return False
    try:
        from IPython import get_ipython  # (a notebook's kernel has it; the command lines never call this)
    except ImportError:  # pragma: no cover - IPython is a dependency of the notebooks
        return False
    shell = get_ipython()
    if shell is None:
        return False
    shell.set_custom_exc((UserError,), one_line)
    return True


def quiet() -> None:
    """Third-party noise that says nothing about the run, off for the notebook's kernel:
    transformers' FutureWarnings about its own renamed arguments (raised from inside transformers
    and TRL for settings the project does not use), the bars TRL's dataset preparation draws
    (six per training, each a few milliseconds) and transformers' shard-writing bar; library
    logging stays at warning level. The training, generation and latency bars stay."""
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers(\.|$)")
    # (one of them is raised with its caller's module: peft's or TRL's, so its text is matched too)
    warnings.filterwarnings("ignore", message=r".*is deprecated and will be removed in v6", category=FutureWarning)
    # (imported here, not at the top, as the training modules do: both are imported by the steps already)
    import datasets
    import transformers
    datasets.utils.disable_progress_bars()
    datasets.utils.logging.set_verbosity_warning()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_warning()
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # its CPU-kernel notices at import
