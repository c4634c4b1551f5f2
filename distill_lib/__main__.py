"""``python -m distill_lib ...``: see :mod:`distill_lib.cli`."""
import sys

from .cli import main

sys.exit(main())
