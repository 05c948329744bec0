"""`python -m common.calibrate`: the same command as `python -m common.evaluation.calibrate` (`common.evaluation.calibrate`).

Kept so that the commands recorded in results files, the README and the notebooks run unchanged.
"""

from common.errors import cli
from common.evaluation.calibrate import main

if __name__ == "__main__":
    cli(main)
