"""Every figure and widget of the workbench, and the notebook helpers (``viz.notebook``).

What may be imported here: ``core``, ``methods``, ``lessons`` and matplotlib, ipywidgets,
IPython. Nothing here trains: a figure is drawn from results a lesson or the loop computed.
The common figures are re-exported: ``dl.viz.learning_curves``, ``dl.viz.plot_confusion``, ...
"""
from .curves import (confusion_matrix, learning_curves, per_class_accuracy, plot_confusion,  # noqa: F401
                     plot_effects, plot_loss_parts, plot_per_class, plot_seed_comparison)
from . import data_free  # noqa: F401,E402  dl.viz.data_free: the figures of notebook 07
