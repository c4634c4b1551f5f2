"""Batch execution: notebook parameters (``params``), the headless runner (``runner``), parameter
sweeps (``sweep``), measured results quoted into notebooks and READMEs (``quote``), the Chinese
edition kept in step with the English one (``translations``) and the command line (``cli``,
``python -m distill_lib``).

What may be imported here: ``core``, ``profiles`` and, from the command line only, ``loop``,
``teachers`` and ``demo``. Never ``lessons``: a batch job runs notebooks, it does not know
what they teach. The sweep's figure is drawn with matplotlib's Agg canvas directly.
"""
