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


def __getattr__(name: str):
    """``dl.viz.<name>`` loads a notebook's figures module on first use (the notebooks' one import is
    ``import distill_lib as dl``). The names are literals, so the layer test can read them."""
    for module in (".adversarial", ".data_free", ".explorer", ".lightweight", ".matching", ".notebook", ".robustness",
                   ".temperature", ".transfer"):
        if name == module[1:]:
            return _importlib.import_module(module, __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
