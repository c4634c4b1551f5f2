"""Experiments that belong to one notebook each: the temperature analysis and grid (02), the
transfer-vs-distillation arms (03), the adversarial arms and the one-pass pitfall (04),
structure matching and lightweighting (05), and so on.

Layer ``lessons`` may import: core, methods, loop, profiles, teachers; no plotting or notebook
package. A lesson computes, ``viz`` draws; ``batch`` never imports a lesson. (The table of every
layer is ``distill_lib/layers.py``; ``tests/test_layers.py`` checks every import against it.)
"""
import importlib as _importlib

# the notebooks reach a lesson as ``dl.lessons.<name>`` (their one import is ``import distill_lib as
# dl``); a lesson module loads on first use
_SUBMODULES = ("adversarial", "lightweight", "matching", "omitted_class", "pitfalls", "robustness", "temperature",
               "temperature_grid", "transfer", "transfer_arms", "transfer_models", "transfer_results")


def __getattr__(name: str):
    if name in _SUBMODULES:
        return _importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
