"""Experiments that belong to one notebook each: the temperature analysis and grid (02), the
transfer-vs-distillation arms (03), the adversarial arms and the one-pass pitfall (04),
structure matching and lightweighting (05), and so on.

Layer ``lessons`` may import: core, methods, loop, profiles, teachers; no plotting or notebook
package. A lesson computes, ``viz`` draws; ``batch`` never imports a lesson. (The table of every
layer is ``distill_lib/layers.py``; ``tests/test_layers.py`` checks every import against it.)
"""
import importlib as _importlib


def __getattr__(name: str):
    """``dl.lessons.<name>`` loads a lesson module on first use (the notebooks' one import is
    ``import distill_lib as dl``). The names are literals, so the layer test can read them."""
    for module in (".adversarial", ".lightweight", ".matching", ".omitted_class", ".pitfalls",
                   ".robustness", ".temperature", ".temperature_grid", ".transfer", ".transfer_arms",
                   ".transfer_models", ".transfer_results"):
        if name == module[1:]:
            return _importlib.import_module(module, __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
