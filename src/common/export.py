"""`python -m common.export`: the same command as `python -m common.training.export` (`common.training.export`).

The short name the issue and the README use for exporting a fine-tuned model as GGUF.
"""

from common.errors import cli
from common.training.export import main

if __name__ == "__main__":
    cli(main)
