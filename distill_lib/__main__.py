"""``python -m distill_lib ...``: see :mod:`distill_lib.batch.cli`."""
import sys

from .batch.cli import main

sys.exit(main())
