"""`python -m common.data build PARAMS.yaml ...` (see `common.data.build`)."""

from common.data.build import main
from common.errors import cli

cli(main)
