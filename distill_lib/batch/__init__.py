"""Batch execution: notebook parameters (``params``), the headless runner (``runner``), parameter
sweeps (``sweep``), measured results quoted into notebooks and READMEs (``quote``), the Chinese
edition kept in step with the English one (``translations``) and the command line (``cli``,
``python -m distill_lib``).

Layer ``batch`` may import: core, profiles; plotting and notebook packages too.
Layer ``cli`` may import: batch, core, profiles, demo, teachers; plotting and notebook packages
too. Never ``lessons`` or ``viz``, even through another layer: a batch job runs notebooks, it does
not know what they teach. The sweep's figure is drawn with matplotlib's Agg canvas directly.
(The table of every layer is ``distill_lib/layers.py``; ``tests/test_layers.py`` checks every
import against it.)
"""
