"""Dataset lookup in every place, clear errors, the bundled mini set, batches and augmentation."""
import gzip
import hashlib

import numpy as np
import pytest
import torch

from distill_lib.core import data
from distill_lib.core.batches import Augment, TensorBatches, random_hflip, random_shift

N_TRAIN, N_TEST = 12, 6


def idx_file(array: np.ndarray) -> bytes:
    header = b"\x00\x00\x08" + bytes([array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def fake_split(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28)), np.arange(n) % 10


def write_fake_mnist(folder, gz: bool):
    """Tiny but valid idx files, flat .gz (Debian layout) or raw in <folder>/FashionMNIST/raw."""
    target = folder if gz else folder / "FashionMNIST" / "raw"
    target.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        images, labels = fake_split(n, seed=n)
        for name, array in zip(data.IDX_FILES[split], (images, labels)):
            payload = idx_file(array)
            if gz:
                (target / f"{name}.gz").write_bytes(gzip.compress(payload))
            else:
                (target / name).write_bytes(payload)
    return fake_split(N_TRAIN, seed=N_TRAIN)


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """Point the repo data dir and Debian's dir at empty temporary folders."""
    monkeypatch.setattr(data, "REPO_DATA_DIR", tmp_path / "repo-data")
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "debian")
    return tmp_path


def check_loaded(dataset, images, labels):
    assert dataset.images.shape == (N_TRAIN, 1, 28, 28) and dataset.images.dtype == torch.float32
    assert torch.equal((dataset.images[:, 0] * 255).round().to(torch.uint8), torch.as_tensor(images, dtype=torch.uint8))
    assert dataset.labels.dtype == torch.int64 and dataset.labels.tolist() == labels.tolist()
    assert dataset.classes[0] == "T-shirt/top"


@pytest.mark.parametrize("gz", [False, True])
def test_found_in_root_argument(nowhere, gz):
    images, labels = write_fake_mnist(nowhere / "mine", gz=gz)
    check_loaded(data.load_dataset("fashion-mnist", root=nowhere / "mine"), images, labels)


def test_found_in_repo_data_dir(nowhere):
    images, labels = write_fake_mnist(nowhere / "repo-data", gz=False)
    check_loaded(data.load_dataset("fashion-mnist"), images, labels)


def test_found_in_debian_dir_and_unpacked_for_torchvision(nowhere):
    images, labels = write_fake_mnist(nowhere / "debian", gz=True)
    dataset = data.load_dataset("fashion-mnist")
    check_loaded(dataset, images, labels)
    assert (nowhere / "repo-data" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").exists()
    assert str(nowhere / "debian") in dataset.source


def test_missing_dataset_lists_every_place_and_every_way(nowhere):
    with pytest.raises(FileNotFoundError) as info:
        data.load_dataset("fashion-mnist", root=nowhere / "mine")
    message = str(info.value)
    for place in (nowhere / "mine", nowhere / "repo-data", nowhere / "debian"):
        assert str(place) in message
    assert "download=True" in message and "apt-get install dataset-fashion-mnist" in message
    assert "fashion-mnist-mini" in message


def test_missing_mnist_and_cifar_say_where_they_looked(nowhere):
    for name in ("mnist", "cifar10"):
        with pytest.raises(FileNotFoundError, match="not found. Looked in"):
            data.load_dataset(name)


@pytest.mark.parametrize("kwargs,message", [
    (dict(name="imagenet"), "name must be one of"),
    (dict(name="fashion-mnist", split="validation"), "split must be one of 'train', 'test'; got 'validation'"),
])
def test_bad_dataset_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.load_dataset(**kwargs)


def test_bundled_mini_is_stratified_and_checksummed():
    train, test = data.load_dataset("fashion-mnist-mini"), data.load_dataset("fashion-mnist-mini", split="test")
    assert len(train) == 10_000 and len(test) == 2_000
    assert train.labels.bincount().tolist() == [1000] * 10 and test.labels.bincount().tolist() == [200] * 10
    assert 0.0 <= train.images.min() and train.images.max() <= 1.0
    sums = (data.REPO_DATA_DIR / "fashion-mnist-mini" / "SHA256SUMS").read_text()
    for path in (data.REPO_DATA_DIR / "fashion-mnist-mini").glob("*.gz"):
        assert hashlib.sha256(path.read_bytes()).hexdigest() in sums


def test_damaged_mini_file_is_refused(tmp_path):
    folder = tmp_path / "fashion-mnist-mini"
    folder.mkdir()
    source = data.REPO_DATA_DIR / "fashion-mnist-mini"
    for path in source.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    damaged = folder / "t10k-labels-idx1-ubyte.gz"
    damaged.write_bytes(damaged.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ValueError, match="checksum mismatch"):
        data.load_dataset("fashion-mnist-mini", split="test", root=tmp_path)


@pytest.mark.skipif(not data.DEBIAN_FASHION_MNIST_DIR.exists(), reason="Debian's dataset-fashion-mnist not installed")
def test_mini_train_and_test_come_from_the_official_splits():
    """Every mini image is found in the same official split (exact pixel match)."""
    for split in ("train", "test"):
        full, mini = data.load_dataset("fashion-mnist", split=split), data.load_dataset("fashion-mnist-mini", split=split)
        full_rows = {row.numpy().tobytes() for row in (full.images * 255).round().to(torch.uint8).flatten(1)}
        mini_rows = [row.numpy().tobytes() for row in (mini.images * 255).round().to(torch.uint8).flatten(1)]
        assert sum(r in full_rows for r in mini_rows) == len(mini_rows)


def test_batches_cover_the_data_once_per_epoch_and_repeat_with_the_seed(tiny_dataset):
    def epoch_indices(seed):
        batches = TensorBatches(tiny_dataset.images, tiny_dataset.labels, batch_size=16, seed=seed)
        return [index.tolist() for _, _, index in batches]
    first = epoch_indices(3)
    assert sorted(i for batch in first for i in batch) == list(range(60)) and len(first) == 4
    assert first == epoch_indices(3) and first != epoch_indices(4)


def test_batches_yield_matching_rows(tiny_dataset):
    batches = TensorBatches(tiny_dataset.images, tiny_dataset.labels, batch_size=7, seed=0)
    for images, labels, index in batches:
        assert torch.equal(images, tiny_dataset.images[index]) and torch.equal(labels, tiny_dataset.labels[index])


def test_random_shift_matches_a_per_image_roll_with_zero_fill():
    images = torch.rand(20, 2, 8, 8)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    shifted = random_shift(images, 2, g1)
    dy, dx = torch.randint(0, 5, (20,), generator=g2), torch.randint(0, 5, (20,), generator=g2)
    for k in range(20):  # the oracle: pad, then crop at (dy, dx), image by image
        padded = torch.nn.functional.pad(images[k], (2, 2, 2, 2))
        assert torch.equal(shifted[k], padded[:, dy[k]:dy[k] + 8, dx[k]:dx[k] + 8])


def test_random_flip_mirrors_some_images_and_keeps_the_others():
    images = torch.rand(64, 1, 5, 5)
    flipped = random_hflip(images, torch.Generator().manual_seed(0))
    mirrored = [torch.equal(flipped[k], images[k].flip(2)) for k in range(64)]
    kept = [torch.equal(flipped[k], images[k]) for k in range(64)]
    assert all(m or k for m, k in zip(mirrored, kept)) and 10 < sum(mirrored) < 54


def test_augment_and_batches_validate_inputs(tiny_dataset):
    with pytest.raises(ValueError, match="shift must be an integer >= 0, got -1"):
        Augment(shift=-1)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        TensorBatches(tiny_dataset.images, tiny_dataset.labels, batch_size=0)
