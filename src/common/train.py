"""`python -m common.train`: the same command as `python -m common.training` (`common.training.cli`).

Kept so that the commands recorded in results files, the README and the notebooks run unchanged.
"""

from common.errors import cli
from common.training.cli import main

if __name__ == "__main__":
    cli(main)
