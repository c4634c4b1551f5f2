"""Which layer of distill_lib may import which: the one table.

``tests/test_layers.py`` reads every import of every module (``import``, ``from ... import``,
``importlib.import_module`` and ``__import__``, at module level or inside a function: a lazy
import is still a dependency) and checks it against :data:`LAYERS`; it also checks that the
README's "Layout of the library" table is :func:`readme_table` and that each folder's
``__init__`` docstring holds that folder's :func:`rule` sentences. After a change here, paste
``python -c "from distill_lib import layers; print(layers.readme_table())"`` into the README.

Plain data and string formatting only: the test reads it without importing torch.
"""
from __future__ import annotations

from dataclasses import dataclass

PLOTTING = ("matplotlib", "IPython", "ipywidgets", "papermill", "nbclient", "nbformat", "jupyter_client")


@dataclass(frozen=True)
class Layer:
    """``modules``: module paths below ``distill_lib`` (a folder covers its files; the longest
    match wins); ``path``: how the README names them; ``imports``: the other layers it may import;
    ``plotting``: whether it may import a plotting or notebook package (:data:`PLOTTING`)."""

    modules: tuple
    path: str
    holds: str
    imports: tuple = ()
    plotting: bool = False


# In dependency order: each layer imports only layers above it.
LAYERS = {
    "core": Layer(("core",), "core/", "data, batches, models, evaluation, the teacher-output cache, checkpoints, "
                  "checks, stats (means, paired intervals, the verdict rule), progress, result files"),
    "methods": Layer(("methods",), "methods/", "one file per distillation method (ce, kd: kl, mse-logits, "
                     "mse-soft; dkd, hint, attention, adversarial, data-free) and the one registry by name", ("core",)),
    "loop": Layer(("loop",), "loop.py", "the one training loop: train, train_step, fit, distill",
                  ("core", "methods")),
    "profiles": Layer(("profiles",), "profiles.py", "every notebook's settings and each profile's value, "
                      "the teacher recipes", ("core",)),
    "teachers": Layer(("teachers",), "teachers.py", "the teacher: shipped checkpoint, cache, or train and cache",
                      ("core", "loop", "profiles")),
    "audit": Layer(("audit",), "audit.py", "dl.audit_kd_loss: check anyone's KD loss (torch only)"),
    "demo": Layer(("demo",), "demo.py", "the one-minute demo of the command line", ("core", "loop", "teachers")),
    "lessons": Layer(("lessons",), "lessons/", "experiments that belong to one notebook (grid, transfer arms, "
                     "pitfalls, ...); a lesson computes, viz draws",
                     ("core", "methods", "loop", "profiles", "teachers")),
    "viz": Layer(("viz",), "viz/", "every figure and widget, and the notebook helpers (dl.notebook); "
                 "nothing here trains", ("core", "methods", "profiles", "lessons"), plotting=True),
    # batch runs notebooks and never knows what they teach: no lessons, no viz, no training of its own
    "batch": Layer(("batch",), "batch/", "notebook parameters, runner, sweeps, quote", ("core", "profiles"),
                   plotting=True),
    "cli": Layer(("batch.cli",), "batch/cli.py", "the command line (python -m distill_lib), which also "
                 "starts the demo and trains a teacher", ("batch", "core", "profiles", "demo", "teachers"),
                 plotting=True),
    "package": Layer(("__init__", "__main__", "layers"), "__init__.py, __main__.py, layers.py",
                     "the one import of the notebooks, import distill_lib as dl (names load lazily); "
                     "python -m distill_lib; this table",
                     ("core", "methods", "loop", "profiles", "teachers", "audit", "demo", "lessons", "viz",
                      "batch", "cli"), plotting=True),
}


def layer_of(module: str) -> str | None:
    """The layer of ``distill_lib.<...>`` (None for a module outside distill_lib)."""
    parts = module.split(".")
    if parts[0] != "distill_lib":
        return None
    relative = ".".join(parts[1:]) or "__init__"
    best, length = None, -1
    for name, layer in LAYERS.items():
        for prefix in layer.modules:
            if (relative == prefix or relative.startswith(prefix + ".")) and len(prefix) > length:
                best, length = name, len(prefix)
    return best


def may_import(importer: str, imported: str) -> bool:
    return importer == imported or imported in LAYERS[importer].imports


def reachable(layer: str) -> set:
    """Every layer ``layer`` may reach through the table, directly or through others."""
    seen, todo = set(), list(LAYERS[layer].imports)
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(LAYERS[current].imports)
    return seen


def _targets(layer: Layer) -> str:
    return ", ".join(layer.imports) if layer.imports else "no other layer"


def rule(name: str) -> str:
    """The sentence a folder's docstring holds about layer ``name``."""
    layer = LAYERS[name]
    plotting = "plotting and notebook packages too" if layer.plotting else "no plotting or notebook package"
    return f"Layer ``{name}`` may import: {_targets(layer)}; {plotting}."


def readme_table() -> str:
    """The README's table of the layers (Markdown): files, what they hold, what they may import."""
    rows = ["| layer | files | what lives there | may import |", "|---|---|---|---|"]
    for name, layer in LAYERS.items():
        targets = "any layer" if name == "package" else _targets(layer)
        rows.append(f"| {name} | `{layer.path}` | {layer.holds} | {targets} |")
    plotters = ", ".join(name for name, layer in LAYERS.items() if layer.plotting)
    return "\n".join(rows) + (f"\n\nPlotting and notebook packages ({', '.join(PLOTTING)}) are imported only in: "
                              f"{plotters}.")
