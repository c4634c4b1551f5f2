"""The one teacher-output cache: the teacher runs once over a dataset, every student reuses it.

What it keeps for a (teacher, dataset) pair: the teacher's logits on every image, and the outputs
of any stages a feature method asks for (hints, attention maps). The key covers

- the teacher's weights (sha256 of its state dict, recomputed on every call, so an in-place edit
  of a weight is a different teacher),
- the teacher's module structure (its class and ``repr``: layers, activations, their settings),
  because a state dict holds no activation function: two teachers with the same weights but a
  ReLU and a Tanh are different teachers,
- the dataset's images (sha256, recomputed on every call for the same reason; not its labels,
  which the teacher never sees, so relabelled or partly unlabelled copies share one entry),
- the preprocessing (none outside the model: models centre their own inputs).

A dataset cut from another by ``Dataset.subset`` (a labelled subset, a transfer set in another
order) is served from its parent's outputs when the parent's are in memory, after checking that
its images are exactly the parent's rows: one teacher pass then serves every split of the data.

Logits are also kept **on disk** (``<cache_dir>/teacher-outputs/``), so a notebook started in a
new process does not pay the teacher pass again. A file is trusted only when its recorded key
equals the key computed now, the sha256 of its logits matches, it has one row per image, and a
spot check (the teacher run now on the first and last image) agrees with it; anything else
(truncated, foreign, forged or for another key) is recomputed and replaced. The digest and the
spot check catch damage and careless edits, not a forger who rewrites middle rows and their
digest: the cache directory is trusted as much as the code is. Features stay in memory only (they
can be hundreds of MB).

With random augmentation every epoch shows the teacher new images, so caching is refused: the
teacher must run online on the very views the student sees (Beyer et al. 2022).
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
from collections import OrderedDict
from pathlib import Path

import torch

from . import checks
from .checkpoints import CheckpointError, prepare_directory, refuse_non_regular, refuse_oversized, state_dict_sha256
from .device import resolve_device
from .evaluate import ModelOutputs, predict
from .results import write_atomic

PREPROCESSING = "inputs in [0, 1]; centring inside the model"
FILE_FORMAT = "distill_lib.teacher_outputs"
MAX_ENTRIES = 8  # a few datasets x a few teachers in memory; logits of 60k images are 2.4 MB each
_entries: "OrderedDict[tuple, ModelOutputs]" = OrderedDict()
_stats = {"hits": 0, "disk_hits": 0, "misses": 0}


def cache_dir() -> Path:
    """Where teachers and teacher outputs are kept between notebooks and sessions:
    ``$DISTILL_LIB_CACHE``, else ``~/.cache/distill_lib``."""
    return Path(os.environ.get("DISTILL_LIB_CACHE") or Path.home() / ".cache" / "distill_lib")


def refuse_with_augmentation(augment, parameter: str = "cache_logits") -> None:
    if augment is not None:
        raise ValueError(
            f"teacher logits cannot be cached with random augmentation (augment={augment!r}): each "
            f"epoch shows different views, and fixed logits would not match them. Use "
            f"{parameter}=False (the teacher runs online on the same augmented batch) or augment=None.")


def cache_key(teacher, dataset) -> tuple:
    return _key((state_dict_sha256(teacher), module_sha256(teacher)), dataset)


def _key(teacher_part: tuple, dataset) -> tuple:
    return (*teacher_part, dataset_sha256(dataset), PREPROCESSING)


def module_sha256(module) -> str:
    """sha256 of a module's class and ``repr`` (its layers and their settings, not its weights)."""
    kind = type(module)
    return hashlib.sha256(f"{kind.__module__}.{kind.__qualname__}|{module!r}".encode()).hexdigest()


def dataset_sha256(dataset) -> str:
    """sha256 of a dataset's images (bytes, dtype and shape): all a teacher's outputs depend on."""
    images = dataset.images.detach().contiguous().cpu()
    digest = hashlib.sha256(f"{images.dtype}|{tuple(images.shape)}|".encode())
    digest.update(images.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def teacher_outputs(teacher, dataset, stages=(), *, device="cpu", batch_size: int | None = None, augment=None,
                    persist: bool = True) -> ModelOutputs:
    """The teacher's logits and ``stages`` outputs on every image of ``dataset``, computed at most
    once and then served from the cache (memory, and for logits the disk): ``.logits`` (CPU float32),
    ``.features``. For a model's outputs computed now and not kept, use ``predict``.

    Returns copies: editing them never corrupts the cache. ``persist=False`` skips the disk.
    ``batch_size`` None is the measured inference batch (``evaluate.inference_batch``).
    """
    refuse_with_augmentation(augment)
    if batch_size is not None:
        checks.positive_int("batch_size", batch_size)
    checks.boolean("persist", persist)
    device = resolve_device(device)
    stages = tuple(dict.fromkeys(stages))
    known = list(getattr(teacher, "stages", {}))
    for stage in stages:
        checks.one_of("teacher stage", stage, known)
    key = cache_key(teacher, dataset)
    entry = _from_memory(key, stages)
    if entry is None:
        derived = _from_parent(key, dataset, stages)
        if derived is not None:
            return derived
    if entry is None and not stages and persist:
        entry = _from_disk(key, teacher, dataset)
    if entry is None:
        _stats["misses"] += 1
        entry = predict(teacher, dataset.images, stages, batch_size=batch_size, device=device)
        refuse_non_finite(entry.logits)
        if persist:
            _to_disk(key, entry.logits)
    _remember(key, entry)
    return ModelOutputs(entry.logits.clone(), {s: entry.features[s].clone() for s in stages})


def refuse_non_finite(logits: torch.Tensor) -> None:
    """Teacher outputs with NaN or inf would make every student's loss NaN; the fault is the
    teacher's (diverged or damaged weights), so it is named here, before any student trains."""
    bad = int((~torch.isfinite(logits)).sum())
    if bad:
        raise ValueError(f"the teacher's logits hold {bad} non-finite values (NaN or inf) of {logits.numel()}: "
                         f"the teacher itself is broken (diverged or damaged weights), not the student's "
                         f"training; check it with dl.evaluate(teacher, test_set) or load another one")


def cache_info() -> dict:
    """Hits (memory, disk), misses (= teacher passes) and entries since start or ``clear_cache()``."""
    return {**_stats, "entries": len(_entries)}


def clear_cache(disk: bool = False) -> None:
    """Forget the in-memory outputs (and, with ``disk=True``, the files on disk too)."""
    checks.boolean("disk", disk)  # clear_cache(disk="no") must not delete anything
    _entries.clear()
    _stats.update(hits=0, disk_hits=0, misses=0)
    if disk:
        for path in _disk_dir().glob("*.pt"):
            path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- memory
def _from_memory(key, stages):
    entry = _entries.get(key)
    if entry is None or not all(s in entry.features for s in stages):
        return None
    _stats["hits"] += 1
    _entries.move_to_end(key)
    return entry


def _remember(key, entry: ModelOutputs) -> None:
    old = _entries.get(key)
    if old is not None and old is not entry:  # keep stages computed earlier for this pair
        entry = ModelOutputs(entry.logits, {**old.features, **entry.features})
    _entries[key] = entry
    _entries.move_to_end(key)
    while len(_entries) > MAX_ENTRIES:
        _entries.popitem(last=False)


def _from_parent(key, dataset, stages):
    """The outputs of ``dataset`` (whose cache key is ``key``) cut from an ancestor's cached ones
    (see ``Dataset.subset``), or None. Trusted only when the ancestor's rows are exactly
    ``dataset``'s images now: an in-place edit of either since the cut makes this a different dataset."""
    teacher_part = key[:2]  # the teacher's weights and structure, hashed once by the caller
    rows, ancestor = None, dataset
    while getattr(ancestor, "origin", None) is not None:
        ancestor, index = ancestor.origin
        rows = index if rows is None else index[rows]
        entry = _entries.get(_key(teacher_part, ancestor))
        if entry is None or not all(s in entry.features for s in stages):
            continue
        if not torch.equal(ancestor.images[rows], dataset.images):
            return None
        _stats["hits"] += 1
        return ModelOutputs(entry.logits[rows].clone(), {s: entry.features[s][rows].clone() for s in stages})
    return None


# --------------------------------------------------------------------------- disk
def _disk_dir() -> Path:
    return cache_dir() / "teacher-outputs"


def _disk_path(key) -> Path:
    return _disk_dir() / (hashlib.sha256(json.dumps(key).encode()).hexdigest()[:32] + ".pt")


def _from_disk(key, teacher, dataset):
    path = _disk_path(key)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # absent, or a directory/FIFO: never read it
            return None
        payload = torch.load(path, map_location="cpu", weights_only=True)
        logits = payload["logits"]
        valid = (payload.get("format") == FILE_FORMAT and tuple(payload.get("key", ())) == key
                 and isinstance(logits, torch.Tensor) and logits.ndim == 2 and len(logits) == len(dataset))
        if valid:  # before the digest copies it: a few bytes can declare gigabytes (raises if so)
            refuse_oversized(path, "the stored logits", logits, os.stat(path).st_size)
        valid = (valid and payload.get("sha256") == _tensor_sha256(logits)
                 and _spot_check(teacher, dataset, logits))
    except Exception:  # absent, truncated, foreign or tampered: recompute
        valid = False
    if not valid:
        return None
    _stats["disk_hits"] += 1
    return ModelOutputs(logits.float())


def _spot_check(teacher, dataset, logits: torch.Tensor) -> bool:
    """The teacher run now on the first and last image gives (nearly) the stored rows: a stored file
    with the right key and digest but other logits (forged, or from another class count) is caught.
    The tolerance allows for another device's arithmetic (TF32 convolutions on a GPU)."""
    if len(logits) == 0:
        return True
    index = torch.tensor(sorted({0, len(logits) - 1}))
    device = next((p.device for p in teacher.parameters()), torch.device("cpu"))
    now = predict(teacher, dataset.images[index], device=device).logits
    return now.shape == logits[index].shape and torch.allclose(now, logits[index].float(), rtol=1e-2, atol=1e-2)


def _to_disk(key, logits: torch.Tensor) -> None:
    payload = {"format": FILE_FORMAT, "key": list(key), "logits": logits, "sha256": _tensor_sha256(logits)}
    path = _disk_path(key)
    try:
        prepare_directory(_disk_dir(), "teacher outputs", target=path)  # says what is wrong with the folder
        refuse_non_regular(path, "teacher outputs")
        write_atomic(path, lambda handle: torch.save(payload, handle))
    except (OSError, CheckpointError) as error:  # a read-only or full cache costs the next process a teacher pass
        print(f"note: teacher outputs not saved (the next process runs the teacher again): {error}")


def _tensor_sha256(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()
