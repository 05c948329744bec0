"""`python -m common.quickstart`: the same command as `python -m common.experiments.quickstart` (`common.experiments.quickstart`).

Kept so that the commands recorded in results files, the README and the notebooks run unchanged.
"""

from common.errors import cli
from common.experiments.quickstart import main

if __name__ == "__main__":
    cli(main)
