"""distill_lib: the helper library of the knowledge-distillation workbench.

Loss convention used everywhere:
    loss = (1 - alpha) * CE(student, labels) + alpha * T^2 * KL(softmax(t/T) || softmax(s/T))
with KL averaged over the batch ("batchmean"); ``alpha`` weights the soft-target term.
"""
__version__ = "0.1.0"

import os as _os

# Busy-waiting OpenMP threads make torch 10x slower on a small machine the moment another
# process wants a core (measured on a shared 2-core box); passive waiting costs next to nothing
# otherwise. Only a default, and only effective when distill_lib is imported before torch.
# The runner's notebook kernels inherit it from this process's environment (parallel runs
# of a sweep share cores).
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .batches import Augment, TensorBatches
from .cache import cache_info, clear_cache, teacher_logits
from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .config import Config, make_config
from .data import Dataset, load_dataset
from .evaluate import evaluate, expected_calibration_error, metrics_from_logits, predict_logits
from .losses import HintRegressor, get_loss, hint_loss, kd_loss, soft_targets
from .models import MODEL_PRESETS, build_model, count_macs, count_params, feature_shapes
from .progress import set_progress
from .teachers import get_teacher, train_teacher
from .train import History, TrainingDiverged, distill, fit, resolve_device
from . import checks, notebook, viz  # noqa: E402  (modules the notebooks use by name)

__all__ = [
    "Augment", "TensorBatches", "cache_info", "clear_cache", "teacher_logits", "CheckpointError",
    "load_checkpoint", "save_checkpoint", "Config", "make_config", "get_teacher", "train_teacher", "Dataset", "load_dataset", "evaluate",
    "expected_calibration_error", "metrics_from_logits", "predict_logits", "HintRegressor", "get_loss", "hint_loss",
    "kd_loss", "soft_targets", "MODEL_PRESETS", "build_model", "count_macs", "count_params",
    "feature_shapes", "set_progress", "History", "TrainingDiverged", "distill", "fit", "resolve_device",
]
