"""The workbench's teacher: one call gets it (shipped checkpoint, cache, or train and cache).

``get_teacher()`` returns a ready teacher in this order:
1. the checkpoint shipped in ``data/`` (the full-profile Fashion-MNIST teacher, seed 0), when it is
   valid and records that recipe; it answers for ``seed=0`` of both profiles (a stronger teacher
   makes the lessons clearer, and it was trained on none of the mini test images). A recipe of
   another name (``"lenet"``, notebook 07's LeNet-5-sized teacher) has its own shipped file
   (:data:`SHIPPED_RECIPES`), which answers for that name and ``seed=0``;
2. a teacher trained earlier with the same recipe and seed, from the checkpoint cache
   (``$DISTILL_LIB_CACHE`` or ``~/.cache/distill_lib``);
3. otherwise it trains one with the profile's recipe and saves it into the cache.
``retrain=True`` skips 1 and 2. A damaged checkpoint, or one that records another recipe, seed,
profile or architecture than the one asked for, is reported ("ignoring ...") and never used.

Every argument, and the place the result will be written, is checked before any training starts.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

from .core import checks
from .core.batches import Augment
from .core.cache import cache_dir
from .core.checkpoints import (CheckpointError, load_checkpoint, prepare_destination, prepare_directory,
                               refuse_non_regular, save_checkpoint)
from .core.data import REPO_DATA_DIR, load_dataset
from .core.device import resolve_device
from .core.models import build_model
from .loop import fit
from .profiles import TEACHER_RECIPES

SHIPPED_TEACHER = REPO_DATA_DIR / "teacher-fashion-mnist.pt"
PROFILES = tuple(TEACHER_RECIPES)  # the recipes live with every other profile setting
# What the shipped file is (the full recipe's teacher, seed 0) and the profiles it answers for.
SHIPPED_PROFILE, SHIPPED_SEED = "full", 0
SHIPPED_SERVES = ("quick", "full")
# Other recipes shipped in data/ (seed 0), each answering for its own name only.
SHIPPED_RECIPES = {"lenet": REPO_DATA_DIR / "teacher-lenet-fashion-mnist.pt"}


def recipe(profile: str, **overrides) -> dict:
    checks.one_of("profile", profile, PROFILES)
    unknown = set(overrides) - set(TEACHER_RECIPES[profile])
    if unknown:
        raise ValueError(f"unknown teacher recipe key(s) {sorted(unknown)}; allowed: {sorted(TEACHER_RECIPES[profile])}")
    return {**TEACHER_RECIPES[profile], **overrides}


def recipe_key(rec: dict, seed: int) -> str:
    text = json.dumps({**rec, "seed": seed}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_arguments(profile, seed, device, **flags) -> int:
    """Every argument of get_teacher / export_teacher / train_teacher, before anything is loaded;
    returns the seed as a Python int (a numpy integer would not go into the recipe's JSON key)."""
    checks.one_of("profile", profile, PROFILES)
    seed = checks.non_negative_int("seed", seed)
    resolve_device(device)
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, got {value!r}")
    return seed


def train_teacher(profile: str = "full", *, seed: int = 0, device="auto", progress=None, **overrides):
    """Train the teacher of ``profile``; return (model, metadata with test accuracy and time, History)."""
    seed = _check_arguments(profile, seed, device)
    rec = recipe(profile, **overrides)
    train_set = load_dataset(rec["dataset"], split="train")
    test_set = load_dataset(rec["dataset"], split="test")
    model = build_model(rec["model"], train_set.num_classes, in_shape=train_set.input_shape, seed=seed)
    started = time.perf_counter()
    history = fit(model, train_set, epochs=rec["epochs"], batch_size=rec["batch_size"], lr=rec["lr"],
                  weight_decay=rec["weight_decay"], augment=Augment(rec["shift"], rec["flip"]),
                  label_smoothing=rec["label_smoothing"], device=device, seed=seed, eval_set=test_set,
                  progress=progress, desc=f"teacher ({profile})")
    metadata = {"dataset": rec["dataset"], "classes": train_set.classes, "recipe": rec, "seed": seed,
                "profile": profile, "recipe_key": recipe_key(rec, seed),
                "test_accuracy": history.final["accuracy"],  # the last epoch's score on test_set
                "train_seconds": round(time.perf_counter() - started, 1),
                "device": str(resolve_device(device)), "test_accuracy_curve": history.curve("accuracy"),
                "train_loss_curve": history.train_loss}
    return model.cpu().eval(), metadata, history


def cached_teacher_path(profile: str, seed: int = 0) -> Path:
    """Where ``get_teacher`` keeps the teacher trained with the profile's recipe and seed."""
    seed = checks.non_negative_int("seed", seed)
    return cache_dir() / f"teacher-{profile}-{recipe_key(recipe(profile), seed)}.pt"


def expected_metadata(profile: str, seed: int, *, with_key: bool = True) -> dict:
    """What a checkpoint must record to stand for ``train_teacher(profile, seed=seed)``."""
    rec = recipe(profile)
    expected = {"recipe": rec, "seed": seed, "profile": profile, "dataset": rec["dataset"],
                "architecture": rec["model"]}
    if with_key:
        expected["recipe_key"] = recipe_key(rec, seed)
    return expected


def recipe_mismatches(metadata: dict, expected: dict) -> list:
    """``["recorded seed 1, expected 0", ...]``: where ``metadata`` differs from ``expected``."""
    recorded = dict(metadata)
    arch = metadata.get("architecture")
    recorded["architecture"] = arch.get("name") if isinstance(arch, dict) else arch
    return [f"recorded {name} {recorded.get(name)!r}, expected {value!r}"
            for name, value in expected.items() if recorded.get(name) != value]


def _try_load(path: Path, expected: dict):
    if not os.path.lexists(path):
        return None
    try:
        model, metadata = load_checkpoint(path)
    except CheckpointError as error:
        print(f"ignoring teacher checkpoint: {error}")
        return None
    mismatches = recipe_mismatches(metadata, expected)
    if mismatches:
        print(f"ignoring teacher checkpoint {path}: {'; '.join(mismatches)}")
        return None
    return model, metadata


def _cache_setting() -> str:
    return "$DISTILL_LIB_CACHE" if os.environ.get("DISTILL_LIB_CACHE") else ""


def get_teacher(profile: str = "quick", *, retrain: bool = False, seed: int = 0, device="auto",
                progress=None, use_shipped: bool = True):
    """A trained teacher as (model in eval mode on ``device``, metadata); see the module docstring
    for the order."""
    seed = _check_arguments(profile, seed, device, retrain=retrain, use_shipped=use_shipped)
    cached = cached_teacher_path(profile, seed)
    if not retrain:
        candidates = []
        if use_shipped and profile in SHIPPED_SERVES and seed == SHIPPED_SEED:
            candidates.append((SHIPPED_TEACHER, expected_metadata(SHIPPED_PROFILE, SHIPPED_SEED, with_key=False)))
        elif use_shipped and profile in SHIPPED_RECIPES and seed == SHIPPED_SEED:
            candidates.append((SHIPPED_RECIPES[profile], expected_metadata(profile, SHIPPED_SEED)))
        candidates.append((cached, expected_metadata(profile, seed)))
        for path, expected in candidates:
            loaded = _try_load(path, expected)
            if loaded is not None:
                model, metadata = loaded
                return model.to(resolve_device(device)).eval(), {**metadata, "checkpoint": str(path)}
    # the teacher will be cached here: make sure it can be, before minutes of training
    prepare_directory(cached.parent, "teacher checkpoint", setting=_cache_setting(), target=cached)
    refuse_non_regular(cached, "teacher checkpoint")
    model, metadata, _ = train_teacher(profile, seed=seed, device=device, progress=progress)
    try:
        save_checkpoint(model, cached, **metadata)
    except (OSError, ValueError) as error:  # the teacher is what was asked for: keep it
        print(f"note: the trained teacher is returned but was not cached ({error}); the next call will "
              f"train again")
        return model.to(resolve_device(device)), {**metadata, "checkpoint": None}
    return model.to(resolve_device(device)), {**metadata, "checkpoint": str(cached)}


def export_teacher(profile: str, out, *, seed: int = 0, device="auto", progress=None) -> dict:
    """Train the profile's teacher and write it to ``out`` (how ``data/`` gets its teacher).

    ``out`` is checked before training (its directory can be created and written, and it is not a
    directory, device or FIFO). Should writing still fail after training, the teacher is saved in
    the cache directory instead and the error says where: hours of training are never lost."""
    seed = _check_arguments(profile, seed, device)
    out = prepare_destination(out, "teacher checkpoint")
    model, metadata, _ = train_teacher(profile, seed=seed, device=device, progress=progress)
    try:
        path = save_checkpoint(model, out, **metadata)
    except (OSError, ValueError) as error:
        rescue = _rescue(model, metadata, profile)
        where = f"it was saved to {rescue} instead" if rescue else "and could not be saved anywhere else"
        raise CheckpointError(f"the trained teacher could not be written to {out} ({error}); {where}") from error
    return {**metadata, "checkpoint": str(path)}


def _rescue(model, metadata, profile):
    """Save a trained teacher whose destination failed somewhere it can be found again."""
    for folder in (cache_dir(), Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle, name = tempfile.mkstemp(prefix=f"teacher-{profile}-rescued-", suffix=".pt", dir=folder)
            os.close(handle)
        except OSError:
            continue
        try:
            return save_checkpoint(model, name, **metadata)
        except (OSError, ValueError):
            Path(name).unlink(missing_ok=True)
    return None
