"""The foundation every other layer stands on: data, batches, models, evaluation, the teacher-output
cache, checkpoints, input checks, seed statistics, progress reporting and result files.

Layer ``core`` may import: no other layer; no plotting or notebook package. Besides other
``core`` modules: torch, numpy, tqdm and the standard library. Importing the library and training
a student must never load a plotting stack. (The table of every layer is
``distill_lib/layers.py``; ``tests/test_layers.py`` checks every import against it.)
"""

__version__ = "0.2.0"  # the library's version, recorded in checkpoints and metrics.json
