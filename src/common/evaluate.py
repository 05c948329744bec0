"""`python -m common.evaluate`: the same command as `python -m common.evaluation` (`common.evaluation.runner`).

Kept so that the commands recorded in results files, the README and the notebooks run unchanged.
"""

from common.errors import cli
from common.evaluation.runner import main

if __name__ == "__main__":
    cli(main)
