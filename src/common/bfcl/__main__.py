"""`python -m common.bfcl ...` (see `common.bfcl.run`)."""

from common.bfcl.run import main
from common.errors import cli

cli(main)
