"""`python -m common.evaluation PARAMS.yaml ...` (see `common.evaluation.runner`)."""

from common.errors import cli
from common.evaluation.runner import main

cli(main)
