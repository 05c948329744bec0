"""`python -m common.training sft|dpo PARAMS.yaml ...` (see `common.training.cli`)."""

from common.errors import cli
from common.training.cli import main

cli(main)
