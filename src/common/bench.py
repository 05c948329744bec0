"""`python -m common.bench`: the same command as `python -m common.training.bench` (`common.training.bench`).

Kept so that the commands recorded in results files, the README and the notebooks run unchanged.
"""

from common.errors import cli
from common.training.bench import main

if __name__ == "__main__":
    cli(main)
