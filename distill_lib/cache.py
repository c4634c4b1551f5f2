"""Teacher-logit cache: one teacher pass serves every student trained on the same data.

The key covers the teacher's weights (sha256 of its state dict), the dataset (sha256 of its
images and labels) and the preprocessing (none outside the model: models centre their own
inputs). With random augmentation every epoch shows the teacher new images, so caching is
refused: the teacher must run online on the very views the student sees (Beyer et al. 2022).
"""
from __future__ import annotations

from collections import OrderedDict

import torch

from .checkpoints import state_dict_sha256
from .evaluate import predict_logits

PREPROCESSING = "inputs in [0, 1]; centring inside the model"
MAX_ENTRIES = 8  # a few datasets x a few teachers; logits of 60k images are 2.4 MB each
_entries: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()
_stats = {"hits": 0, "misses": 0}


def cache_key(teacher, dataset) -> tuple:
    return (state_dict_sha256(teacher), dataset.fingerprint(), PREPROCESSING)


def refuse_with_augmentation(augment) -> None:
    if augment is not None:
        raise ValueError(
            f"teacher logits cannot be cached with random augmentation (augment={augment!r}): each "
            f"epoch shows different views, and fixed logits would not match them. Use cache=False "
            f"(the teacher runs online on the same augmented batch) or augment=None.")


def teacher_logits(teacher, dataset, *, device="cpu", batch_size: int = 1024, augment=None) -> torch.Tensor:
    """The teacher's logits on every image of ``dataset`` (CPU float32), computed at most once."""
    refuse_with_augmentation(augment)
    key = cache_key(teacher, dataset)
    if key in _entries:
        _stats["hits"] += 1
        _entries.move_to_end(key)
        return _entries[key]
    _stats["misses"] += 1
    logits = predict_logits(teacher, dataset.images, batch_size=batch_size, device=device)
    _entries[key] = logits
    while len(_entries) > MAX_ENTRIES:
        _entries.popitem(last=False)
    return logits


def cache_info() -> dict:
    """Hits, misses (= teacher passes) and entries since start or the last ``clear_cache()``."""
    return {**_stats, "entries": len(_entries)}


def clear_cache() -> None:
    _entries.clear()
    _stats.update(hits=0, misses=0)
