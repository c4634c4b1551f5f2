"""The foundation every other layer stands on: data, batches, models, evaluation, the teacher-output
cache, checkpoints, input checks, seed statistics, progress reporting and result files.

What may be imported here: torch, numpy, tqdm and the standard library, and other ``core``
modules. Nothing from ``methods``, ``train``, ``lessons``, ``viz`` or ``batch``, and no plotting,
widget or notebook-execution package (matplotlib, IPython, ipywidgets, papermill, nbclient):
importing the library and training a student must never load a plotting stack.
``tests/test_layers.py`` enforces this.
"""

__version__ = "0.2.0"  # the library's version, recorded in checkpoints and metrics.json
