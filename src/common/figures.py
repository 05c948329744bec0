"""`python -m common.figures`: the same command as `python -m common.experiments.figures` (`common.experiments.figures`).

Kept so that the commands recorded in results files, the README and the notebooks run unchanged.
"""

from common.errors import cli
from common.experiments.figures import main

if __name__ == "__main__":
    cli(main)
