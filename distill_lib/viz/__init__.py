"""Every figure and widget of the workbench, and the notebook helpers (``viz.notebook``).

Layer ``viz`` may import: core, methods, profiles, lessons; plotting and notebook packages too.
``profiles`` is for ``viz.notebook``, which resolves a notebook's settings. Nothing here trains: a
figure is drawn from results a lesson or the loop computed. The common figures are re-exported:
``dl.viz.learning_curves``, ``dl.viz.plot_confusion``, ... (The table of every layer is
``distill_lib/layers.py``; ``tests/test_layers.py`` checks every import against it.)
"""
from .curves import (confusion_matrix, learning_curves, per_class_accuracy, plot_confusion,  # noqa: F401
                     plot_effects, plot_loss_parts, plot_overfitting, plot_per_class, plot_seed_comparison)

import importlib as _importlib

# ``dl.viz.<name>`` for the figures of one notebook (``dl.viz.temperature``, ...), loaded on first use
_SUBMODULES = ("adversarial", "explorer", "lightweight", "matching", "notebook", "robustness", "temperature",
               "transfer")


def __getattr__(name: str):
    if name in _SUBMODULES:
        return _importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
