"""`python -m common.sweep`: the same command as `python -m common.experiments.sweep` (`common.experiments.sweep`).

Kept so that the commands recorded in results files, the README and the notebooks run unchanged.
"""

from common.errors import cli
from common.experiments.sweep import main

if __name__ == "__main__":
    cli(main)
