"""The shipped teacher and how ``get_teacher`` chooses one.

The accuracy check reads Debian's Fashion-MNIST test files with gzip + numpy, by hand, and
scores with a plain argmax loop: an oracle that shares no code with ``load_dataset`` or
``evaluate``.
"""
import gzip
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

import distill_lib as dl
from distill_lib import teachers
from distill_lib.core.data import DEBIAN_FASHION_MNIST_DIR


def read_idx(path) -> np.ndarray:
    """An idx file (the MNIST format): magic 0x0000 08 ndim, then ndim big-endian sizes, then uint8 data."""
    raw = gzip.decompress(path.read_bytes())
    assert raw[:3] == b"\x00\x00\x08", f"{path} is not an unsigned-byte idx file"
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


@pytest.fixture(scope="module")
def full_fashion_mnist_test():
    images_path = DEBIAN_FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz"
    if not images_path.is_file():
        pytest.skip("needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist; .ci/run does)")
    images = torch.from_numpy(read_idx(images_path).copy()).float().div(255).unsqueeze(1)
    labels = torch.from_numpy(read_idx(DEBIAN_FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").copy()).long()
    assert images.shape == (10_000, 1, 28, 28) and labels.shape == (10_000,)
    return images, labels


def full_test_score(path, full_test) -> tuple:
    """The checkpoint's accuracy on the full test set, and its metadata."""
    images, labels = full_test
    model, metadata = dl.load_checkpoint(path)
    model.eval()
    with torch.no_grad():
        predictions = torch.cat([model(chunk).argmax(1) for chunk in images.split(1000)])
    return (predictions == labels).float().mean().item(), metadata


def test_shipped_teacher_reaches_93_percent_on_the_full_test_set(full_fashion_mnist_test):
    accuracy, metadata = full_test_score(teachers.SHIPPED_TEACHER, full_fashion_mnist_test)
    assert accuracy >= 0.93, f"shipped teacher scores {accuracy:.4f} on the full test set"
    # The figure recorded in the checkpoint (and quoted in data/README.md) is the one measured here.
    assert metadata["test_accuracy"] == pytest.approx(accuracy, abs=1e-4)


def test_shipped_teacher_was_made_by_the_full_recipe():
    _, metadata = dl.load_checkpoint(teachers.SHIPPED_TEACHER)
    assert metadata["recipe"] == teachers.TEACHER_RECIPES["full"]
    assert metadata["dataset"] == "fashion-mnist" and metadata["seed"] == 0


def test_shipped_lenet_teacher_scores_what_it_records_and_was_made_by_its_recipe(full_fashion_mnist_test):
    accuracy, metadata = full_test_score(teachers.SHIPPED_RECIPES["lenet"], full_fashion_mnist_test)
    assert accuracy >= 0.90, f"the shipped LeNet teacher scores {accuracy:.4f} on the full test set"
    assert metadata["test_accuracy"] == pytest.approx(accuracy, abs=1e-4)
    assert metadata["recipe"] == teachers.TEACHER_RECIPES["lenet"] and metadata["seed"] == 0
    assert metadata["weights_sha256"] == "1ff4e26019808db432f846d2e81d44f020d3160bbcb70600e7ca326a8c75c791"


def test_get_teacher_serves_a_named_recipe_from_its_own_shipped_file(places, fake_training, monkeypatch):
    monkeypatch.setitem(teachers.SHIPPED_RECIPES, "lenet", places / "lenet.pt")
    _teacher_file(teachers.SHIPPED_RECIPES["lenet"], "lenet", marker="shipped lenet")
    _teacher_file(teachers.SHIPPED_TEACHER, "full", marker="shipped")
    _, metadata = dl.get_teacher("lenet")
    assert metadata["marker"] == "shipped lenet" and fake_training == []
    _, metadata = dl.get_teacher("quick")  # the profiles still get the full teacher
    assert metadata["marker"] == "shipped"
    _, metadata = dl.get_teacher("lenet", seed=1)  # another seed: trained with the recipe
    assert metadata["marker"] == "trained" and fake_training == [("lenet", 1)]


# The weights of the shipped teacher as trained (the digest quoted in data/README.md): re-saving the
# file in a newer checkpoint format must never change them.
SHIPPED_WEIGHTS_SHA256 = "fc1fabf6b123bf2bce4ec02df0e31fdb0d3c534f6c4aac08a7066ef70d789141"


def test_shipped_teacher_is_in_the_current_format_with_its_original_weights():
    from distill_lib.core.checkpoints import FORMAT_VERSION, read_checkpoint, state_dict_sha256
    payload = read_checkpoint(teachers.SHIPPED_TEACHER)
    assert payload["format_version"] == FORMAT_VERSION
    assert payload["metadata"]["weights_sha256"] == SHIPPED_WEIGHTS_SHA256
    assert state_dict_sha256(payload["state_dict"]) == SHIPPED_WEIGHTS_SHA256


# --------------------------------------------------------------------------- choosing a teacher
def _teacher_file(path, profile="quick", seed=0, marker="", *, model=None, **changes):
    """A checkpoint that records what ``train_teacher(profile, seed=seed)`` records (untrained
    weights: only the choice is tested), with ``changes`` to the metadata."""
    rec = teachers.recipe(profile)
    model = model or dl.build_model(rec["model"], seed=0)
    metadata = {"dataset": rec["dataset"], "recipe": rec, "seed": seed, "profile": profile,
                "recipe_key": teachers.recipe_key(rec, seed), "test_accuracy": 0.5, "marker": marker}
    metadata.update(changes)
    dl.save_checkpoint(model, path, **metadata)
    return path


@pytest.fixture
def fake_training(monkeypatch):
    """``train_teacher`` replaced by one that records its calls and returns an untrained teacher."""
    calls = []

    def train(profile="full", *, seed=0, device="auto", progress=None, **overrides):
        calls.append((profile, seed))
        rec = teachers.recipe(profile, **overrides)
        metadata = {"dataset": rec["dataset"], "recipe": rec, "seed": seed, "profile": profile,
                    "recipe_key": teachers.recipe_key(rec, seed), "test_accuracy": 0.5, "marker": "trained"}
        return dl.build_model(rec["model"], seed=seed).eval(), metadata, None

    monkeypatch.setattr(teachers, "train_teacher", train)
    return calls


@pytest.fixture
def places(tmp_path, monkeypatch):
    """A throwaway cache and a throwaway shipped-teacher path (absent until a test writes it)."""
    monkeypatch.setenv("DISTILL_LIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(teachers, "SHIPPED_TEACHER", tmp_path / "shipped.pt")
    return tmp_path


def test_get_teacher_prefers_the_shipped_checkpoint(places, fake_training):
    _teacher_file(teachers.SHIPPED_TEACHER, "full", marker="shipped")
    _teacher_file(teachers.cached_teacher_path("quick"), "quick", marker="cached")
    _, metadata = dl.get_teacher("quick")
    assert metadata["marker"] == "shipped"
    _, metadata = dl.get_teacher("quick", use_shipped=False)
    assert metadata["marker"] == "cached"
    assert fake_training == []


def test_a_damaged_shipped_teacher_is_reported_and_skipped(places, fake_training, capsys):
    _teacher_file(teachers.SHIPPED_TEACHER, "full", marker="shipped")
    data = teachers.SHIPPED_TEACHER.read_bytes()
    teachers.SHIPPED_TEACHER.write_bytes(data[: len(data) // 2])  # truncated, as by a failed copy
    _teacher_file(teachers.cached_teacher_path("quick"), "quick", marker="cached")
    _, metadata = dl.get_teacher("quick")
    assert metadata["marker"] == "cached"
    assert "ignoring teacher checkpoint" in capsys.readouterr().out


@pytest.mark.parametrize("make, reported", [
    # the red-team case: any valid checkpoint, here an untrained mlp-tiny with no recipe at all
    (lambda path: dl.save_checkpoint(dl.build_model("mlp-tiny"), path), "recorded recipe None, expected {"),
    (lambda path: _teacher_file(path, recipe={**teachers.recipe("quick"), "epochs": 1}), "recorded recipe {"),
    (lambda path: _teacher_file(path, seed=1), "recorded seed 1, expected 0"),
    (lambda path: _teacher_file(path, profile="full"), "recorded profile 'full', expected 'quick'"),
    (lambda path: _teacher_file(path, model=dl.build_model("mlp-tiny")),
     "recorded architecture 'mlp-tiny', expected 'cnn-teacher'"),
    (lambda path: _teacher_file(path, recipe_key="0123456789abcdef"), "recorded recipe_key '0123456789abcdef'"),
], ids=["untrained-mlp-tiny", "other-epochs", "other-seed", "other-profile", "other-architecture", "other-key"])
def test_a_cached_teacher_for_another_recipe_is_reported_and_retrained(places, fake_training, capsys, make,
                                                                     reported):
    path = teachers.cached_teacher_path("quick")
    path.parent.mkdir(parents=True)
    make(path)
    _, metadata = dl.get_teacher("quick", use_shipped=False)
    out = capsys.readouterr().out
    assert f"ignoring teacher checkpoint {path}" in out and reported in out, out
    assert fake_training == [("quick", 0)] and metadata["marker"] == "trained"
    _, metadata = dl.get_teacher("quick", use_shipped=False)  # the retrained teacher replaced it
    assert fake_training == [("quick", 0)] and metadata["marker"] == "trained"


@pytest.mark.parametrize("make", [
    lambda path: dl.save_checkpoint(dl.build_model("mlp-tiny"), path),
    lambda path: _teacher_file(path, "quick"),            # a mini-data teacher is not the full one
    lambda path: _teacher_file(path, "full", seed=4),
], ids=["untrained-mlp-tiny", "quick-recipe", "other-seed"])
def test_a_shipped_file_for_another_recipe_is_reported_and_skipped(places, fake_training, capsys, make):
    make(teachers.SHIPPED_TEACHER)
    _teacher_file(teachers.cached_teacher_path("quick"), "quick", marker="cached")
    _, metadata = dl.get_teacher("quick")
    assert metadata["marker"] == "cached" and fake_training == []
    assert f"ignoring teacher checkpoint {teachers.SHIPPED_TEACHER}" in capsys.readouterr().out


def test_the_shipped_seed_0_teacher_does_not_answer_for_another_seed(places, fake_training):
    _teacher_file(teachers.SHIPPED_TEACHER, "full", marker="shipped")
    _, metadata = dl.get_teacher("quick", seed=0)
    assert metadata["marker"] == "shipped"
    _, metadata = dl.get_teacher("quick", seed=2)
    assert metadata["marker"] == "trained" and fake_training == [("quick", 2)]


def test_a_teacher_trained_by_get_teacher_is_taken_from_the_cache_next_time(places, monkeypatch):
    """The real train_teacher (1 epoch of mlp-tiny on 64 random images): what it records is what
    the cache check expects."""
    from distill_lib.core.data import Dataset
    generator = torch.Generator().manual_seed(0)
    tiny = Dataset("tiny", "train", torch.rand(64, 1, 28, 28, generator=generator), torch.arange(64) % 10,
                   [str(i) for i in range(10)])
    monkeypatch.setitem(teachers.TEACHER_RECIPES, "quick",
                        {**teachers.TEACHER_RECIPES["quick"], "model": "mlp-tiny", "epochs": 1, "batch_size": 32})
    monkeypatch.setattr(teachers, "load_dataset", lambda name, split: tiny)
    fits = []
    real_fit = teachers.fit
    monkeypatch.setattr(teachers, "fit", lambda *a, **k: fits.append(1) or real_fit(*a, **k))
    _, first = dl.get_teacher("quick", use_shipped=False, device="cpu")
    _, second = dl.get_teacher("quick", use_shipped=False, device="cpu")
    assert len(fits) == 1 and second["checkpoint"] == first["checkpoint"]
    assert second["recipe_key"] == teachers.recipe_key(teachers.recipe("quick"), 0)


# --------------------------------------------------------------------------- checked before training
def test_a_cache_directory_that_is_a_file_fails_before_training(places, fake_training, monkeypatch):
    blocker = places / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv("DISTILL_LIB_CACHE", str(blocker))
    for kwargs in ({"use_shipped": False}, {"retrain": True}):
        with pytest.raises(ValueError, match=f"{blocker}.*not a directory"):
            dl.get_teacher("quick", **kwargs)
    assert fake_training == []


def test_export_teacher_checks_its_destination_before_training(places, fake_training):
    (places / "file").write_text("x")
    os.mkfifo(places / "fifo.pt")
    (places / "folder.pt").mkdir()
    for out, problem in ((places / "file" / "t.pt", "not a directory"), (places / "fifo.pt", "not a regular file"),
                         (places / "folder.pt", "not a regular file")):
        with pytest.raises(ValueError, match=f"{out}.*{problem}"):
            teachers.export_teacher("quick", out)
    assert fake_training == []
    assert stat.S_ISFIFO(os.lstat(places / "fifo.pt").st_mode)
    info = teachers.export_teacher("quick", places / "new" / "t.pt")
    assert fake_training == [("quick", 0)] and info["checkpoint"] == str(places / "new" / "t.pt")


def test_a_teacher_whose_destination_fails_after_training_is_saved_elsewhere(places, fake_training, monkeypatch):
    """A fault after training (disk full, a directory removed meanwhile) loses nothing."""
    out = places / "out" / "t.pt"
    real_save = teachers.save_checkpoint

    def save(model, path, /, **metadata):
        if Path(path) == out:
            raise OSError(28, "No space left on device")
        return real_save(model, path, **metadata)

    monkeypatch.setattr(teachers, "save_checkpoint", save)
    with pytest.raises(ValueError, match=f"could not be written to {out}.*No space left.*saved to (.*)") as caught:
        teachers.export_teacher("quick", out)
    rescued = Path(str(caught.value).split("saved to ")[1].split(" instead")[0])
    _, metadata = dl.load_checkpoint(rescued)
    assert metadata["marker"] == "trained" and rescued.parent == places / "cache"


def test_get_teacher_keeps_a_trained_teacher_it_cannot_cache(places, fake_training, monkeypatch, capsys):
    def save(model, path, /, **metadata):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(teachers, "save_checkpoint", save)
    model, metadata = dl.get_teacher("quick", use_shipped=False)
    assert metadata["marker"] == "trained" and metadata["checkpoint"] is None
    assert "was not cached" in capsys.readouterr().out


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory anyway")
def test_export_teacher_into_a_read_only_directory_fails_before_training(places, fake_training):
    folder = places / "ro"
    folder.mkdir(mode=0o500)
    try:
        with pytest.raises(ValueError, match=f"{folder}.*cannot be written to"):
            teachers.export_teacher("quick", folder / "t.pt")
    finally:
        folder.chmod(0o700)
    assert fake_training == []


@pytest.mark.parametrize("call, message", [
    (lambda: teachers.recipe("huge"), "profile"),
    (lambda: teachers.recipe("quick", epoch=3), "unknown teacher recipe key"),
    (lambda: dl.get_teacher("quick", seed=-1, retrain=True), "seed"),
    # a shipped teacher is found below: the arguments are checked all the same
    (lambda: dl.get_teacher("quick", seed=-1), "seed must be an integer >= 0, got -1"),
    (lambda: dl.get_teacher("quick", seed=1.5), "seed must be an integer >= 0"),
    (lambda: dl.get_teacher("quick", seed=True), "seed must be an integer >= 0"),
    (lambda: dl.get_teacher("quick", device="gpu"), "device must be"),
    (lambda: dl.get_teacher("quick", device="meta"), "device must be"),
    (lambda: dl.get_teacher("huge"), "profile must be one of"),
    (lambda: dl.get_teacher("quick", retrain="no"), "retrain must be True or False"),
    (lambda: dl.get_teacher("quick", use_shipped=None), "use_shipped must be True or False"),
    (lambda: teachers.export_teacher("quick", "t.pt", seed=-2), "seed"),
    (lambda: teachers.export_teacher("quick", "t.pt", device="tpu"), "device must be"),
    (lambda: teachers.export_teacher("tiny", "t.pt"), "profile must be one of"),
])
def test_bad_teacher_arguments_are_refused(places, fake_training, monkeypatch, call, message):
    monkeypatch.chdir(places)  # where a wrongly accepted export would write t.pt
    _teacher_file(teachers.SHIPPED_TEACHER, "full", marker="shipped")
    with pytest.raises(ValueError, match=message):
        call()
    assert fake_training == []
