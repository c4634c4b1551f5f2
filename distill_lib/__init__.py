"""distill_lib: the helper library of the knowledge-distillation workbench.

Loss convention used everywhere:
    loss = (1 - alpha) * CE(student, labels) + alpha * T^2 * KL(softmax(t/T) || softmax(s/T))
with KL averaged over the batch ("batchmean"); ``alpha`` weights the soft-target term.

The library is in layers (core, methods, loop, ..., viz, batch); which may import which is written
once, in :mod:`distill_lib.layers`, which the README's layout table, each folder's docstring and
``tests/test_layers.py`` follow.

``import distill_lib as dl`` is the one import of the notebooks. Every name below is loaded on
first use, so importing the library and training a student loads no plotting stack.
"""
from __future__ import annotations

import importlib
import os as _os

from .core import __version__  # noqa: E402  (defined where checkpoints can read it)

# Busy-waiting OpenMP threads make torch 10x slower on a small machine the moment another
# process wants a core (measured on a shared 2-core box); passive waiting costs next to nothing
# otherwise. Only a default, and only effective when distill_lib is imported before torch.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# public name -> module that defines it (relative to this package)
_EXPORTS = {
    # core
    "Augment": "core.batches", "TensorBatches": "core.batches",
    "BatchSource": "core.batches", "NoiseBatches": "core.batches",
    # the teacher's outputs on a dataset, computed once and cached (``.logits``, ``.features``)
    "cache_info": "core.cache", "clear_cache": "core.cache", "teacher_outputs": "core.cache", "cache_dir": "core.cache",
    "CheckpointError": "core.checkpoints", "load_checkpoint": "core.checkpoints", "save_checkpoint": "core.checkpoints",
    "Dataset": "core.data", "load_dataset": "core.data",
    "resolve_device": "core.device",
    "evaluate": "core.evaluate", "expected_calibration_error": "core.evaluate",
    # a model's outputs on images, computed now and not kept (``.logits``, ``.features``)
    "metrics_from_logits": "core.evaluate", "predict": "core.evaluate",
    "MODEL_PRESETS": "core.models", "build_model": "core.models", "count_macs": "core.models",
    "count_params": "core.models", "feature_shapes": "core.models",
    "set_progress": "core.progress",
    # methods
    "kd_loss": "methods", "dkd_loss": "methods", "get_loss": "methods", "soft_targets": "methods",
    "hint_loss": "methods", "HintRegressor": "methods", "get_method": "methods", "METHODS": "methods",
    # the loop and what sits on it
    "History": "loop", "TrainingDiverged": "loop", "train": "loop", "train_step": "loop",
    "distill": "loop", "fit": "loop",
    "get_teacher": "teachers", "train_teacher": "teachers",
    "Config": "profiles", "make_config": "profiles",
    "audit_kd_loss": "audit",
}
# modules the notebooks use by name: dl.checks, dl.stats, dl.methods, dl.notebook, dl.viz, ...
_MODULES = {"checks": "core.checks", "stats": "core.stats", "pays": "core.pays", "data": "core.data", "models": "core.models",
            "methods": "methods", "teachers": "teachers", "profiles": "profiles", "lessons": "lessons",
            "notebook": "viz.notebook", "viz": "viz"}

__all__ = sorted(_EXPORTS) + sorted(_MODULES)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _MODULES:
        value = importlib.import_module(f".{_MODULES[name]}", __name__)
    else:
        raise AttributeError(f"module 'distill_lib' has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
