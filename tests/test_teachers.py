"""The shipped teacher and how ``get_teacher`` chooses one.

The accuracy check reads Debian's Fashion-MNIST test files with gzip + numpy, by hand, and
scores with a plain argmax loop: an oracle that shares no code with ``load_dataset`` or
``evaluate``.
"""
import gzip

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


def test_shipped_teacher_reaches_93_percent_on_the_full_test_set(full_fashion_mnist_test):
    images, labels = full_fashion_mnist_test
    model, metadata = dl.load_checkpoint(teachers.SHIPPED_TEACHER)
    model.eval()
    with torch.no_grad():
        predictions = torch.cat([model(chunk).argmax(1) for chunk in images.split(1000)])
    accuracy = (predictions == labels).float().mean().item()
    assert accuracy >= 0.93, f"shipped teacher scores {accuracy:.4f} on the full test set"
    # The figure recorded in the checkpoint (and quoted in data/README.md) is the one measured here.
    assert metadata["test_accuracy"] == pytest.approx(accuracy, abs=1e-4)


def test_shipped_teacher_was_made_by_the_full_recipe():
    _, metadata = dl.load_checkpoint(teachers.SHIPPED_TEACHER)
    assert metadata["recipe"] == teachers.TEACHER_RECIPES["full"]
    assert metadata["dataset"] == "fashion-mnist" and metadata["seed"] == 0


# The weights of the shipped teacher as trained (the digest quoted in data/README.md): re-saving the
# file in a newer checkpoint format must never change them.
SHIPPED_WEIGHTS_SHA256 = "fc1fabf6b123bf2bce4ec02df0e31fdb0d3c534f6c4aac08a7066ef70d789141"


def test_shipped_teacher_is_in_the_current_format_with_its_original_weights():
    from distill_lib.core.checkpoints import FORMAT_VERSION, read_checkpoint, state_dict_sha256
    payload = read_checkpoint(teachers.SHIPPED_TEACHER)
    assert payload["format_version"] == FORMAT_VERSION
    assert payload["metadata"]["weights_sha256"] == SHIPPED_WEIGHTS_SHA256
    assert state_dict_sha256(payload["state_dict"]) == SHIPPED_WEIGHTS_SHA256


def _save_small_teacher(path, marker: str):
    model = dl.build_model("mlp-tiny", seed=0)
    dl.save_checkpoint(model, path, marker=marker)


def test_get_teacher_prefers_the_shipped_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_LIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(teachers, "SHIPPED_TEACHER", tmp_path / "shipped.pt")
    _save_small_teacher(tmp_path / "shipped.pt", "shipped")
    _save_small_teacher(teachers.cached_teacher_path("quick"), "cached")
    _, metadata = dl.get_teacher("quick")
    assert metadata["marker"] == "shipped"
    _, metadata = dl.get_teacher("quick", use_shipped=False)
    assert metadata["marker"] == "cached"


def test_a_damaged_shipped_teacher_is_reported_and_skipped(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DISTILL_LIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(teachers, "SHIPPED_TEACHER", tmp_path / "shipped.pt")
    _save_small_teacher(tmp_path / "shipped.pt", "shipped")
    data = (tmp_path / "shipped.pt").read_bytes()
    (tmp_path / "shipped.pt").write_bytes(data[: len(data) // 2])  # truncated, as by a failed copy
    _save_small_teacher(teachers.cached_teacher_path("quick"), "cached")
    _, metadata = dl.get_teacher("quick")
    assert metadata["marker"] == "cached"
    assert "ignoring teacher checkpoint" in capsys.readouterr().out


@pytest.mark.parametrize("call, message", [
    (lambda: teachers.recipe("huge"), "profile"),
    (lambda: teachers.recipe("quick", epoch=3), "unknown teacher recipe key"),
    (lambda: dl.get_teacher("quick", seed=-1, retrain=True), "seed"),
])
def test_bad_teacher_arguments_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()
