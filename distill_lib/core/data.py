"""Datasets: where to find them offline, the bundled mini subset, and a plain tensor container.

``load_dataset`` returns a :class:`Dataset` whose ``images`` are float32 in [0, 1] with shape
N x C x H x W and whose ``labels`` are int64. The models centre their inputs themselves, so the
same tensors feed every model, the teacher-logit cache and the plots.

Lookup order for the full datasets (read through torchvision's dataset classes):
``root`` argument, the repository's ``data/`` folder, Debian's ``/usr/share/datasets/...``
(Fashion-MNIST only), then a download when ``download=True``.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import checks

REPO_DATA_DIR = Path(__file__).resolve().parents[2] / "data"  # distill_lib/core/data.py -> the repository
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
MINI_DIR_NAME = "fashion-mnist-mini"

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
IDX_FILES = {  # split -> (images file, labels file), the official names
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DATASET_NAMES = ("fashion-mnist", "fashion-mnist-mini", "mnist", "cifar10")
SPLITS = ("train", "test")


@dataclass
class Dataset:
    """Images (N x C x H x W, float32 in [0, 1]), labels (int64) and class names."""

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: list
    source: str = ""  # where the data was read from, for the environment report
    # (dataset, rows) this one was cut from by ``subset``: lets the teacher-output cache serve a
    # subset from its parent's outputs (verified image by image) instead of running the teacher again
    origin: tuple | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.images.ndim != 4:
            raise ValueError(f"images must be N x C x H x W, got shape {tuple(self.images.shape)}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"images ({len(self.images)}) and labels ({len(self.labels)}) differ in length")
        if isinstance(self.labels, torch.Tensor) and str(self.labels.dtype) in checks.INTEGER_LABEL_DTYPES:
            self.labels = self.labels.long()  # int8/int16/int32 labels: torch's losses take int64 only

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple:
        return tuple(self.images.shape[1:])

    def stratified(self, per_class: int | None, seed: int = 0) -> "Dataset":
        """``per_class`` random images of every class (seeded; file order kept); None: all of them."""
        if per_class is None:
            return self
        per_class = checks.positive_int("per_class", per_class)
        seed = checks.non_negative_int("seed", seed)  # a Python int: torch's Generator refuses numpy's
        picked = stratified_indices(self.labels, per_class, torch.Generator().manual_seed(seed))
        return self.subset(picked, name=f"{self.name} ({per_class} per class)")

    def subset(self, indices, name: str | None = None) -> "Dataset":
        """A new Dataset holding the given rows (a tensor or list of indices)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        return Dataset(name or self.name, self.split, self.images[index], self.labels[index],
                       list(self.classes), self.source, origin=(self, index))


def load_dataset(name: str = "fashion-mnist", *, split: str = "train", root=None,
                 download: bool = False) -> Dataset:
    """Load a dataset by name: fashion-mnist (default), fashion-mnist-mini, mnist or cifar10."""
    checks.one_of("name", name, DATASET_NAMES)
    checks.one_of("split", split, SPLITS)
    checks.boolean("download", download)
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise ValueError(f"root must be None or a folder path (str or pathlib.Path); got {type(root).__name__} {root!r}")
    if name == "fashion-mnist-mini":
        return load_mini(split=split, root=root)
    if name == "cifar10":
        return _load_cifar10(split, root, download)
    return _load_mnist_family(name, split, root, download)


# ----------------------------------------------------------------------------------- idx files
def read_idx(path) -> np.ndarray:
    """Read an idx file (the MNIST format), gzipped or not, into a numpy array."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte idx file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: header says {shape}, found {data.size} bytes")
    return data.reshape(shape).copy()  # frombuffer is read-only; torch wants writable memory


def _as_dataset(name, split, images_u8, labels, classes, source) -> Dataset:
    images = torch.as_tensor(np.asarray(images_u8), dtype=torch.uint8)
    if images.ndim == 3:
        images = images.unsqueeze(1)
    return Dataset(name, split, images.float().div_(255.0),
                   torch.as_tensor(np.asarray(labels), dtype=torch.long), list(classes), source)


# ------------------------------------------------------------------------ the bundled mini set
def mini_dir(root=None) -> Path:
    return Path(root) / MINI_DIR_NAME if root is not None else REPO_DATA_DIR / MINI_DIR_NAME


def load_mini(split: str = "train", root=None) -> Dataset:
    """The bundled Fashion-MNIST mini subset (10k train / 2k test, stratified), checksum-verified."""
    folder = mini_dir(root)
    images_file, labels_file = (folder / f"{f}.gz" for f in IDX_FILES[split])
    if not images_file.exists():
        raise FileNotFoundError(
            f"the bundled mini dataset is missing: looked for {images_file}. It ships with the "
            f"repository; restore it with `git checkout data/` or rebuild it with "
            f"`python data/make_fashion_mnist_mini.py` (needs the full Fashion-MNIST).")
    verify_checksums(folder, [images_file.name, labels_file.name])
    return _as_dataset("fashion-mnist-mini", split, read_idx(images_file), read_idx(labels_file),
                       FASHION_MNIST_CLASSES, str(folder))


def verify_checksums(folder: Path, names) -> None:
    """Compare files against ``folder/SHA256SUMS`` (lines of ``<sha256>  <name>``)."""
    expected = dict(reversed(line.split()) for line in (folder / "SHA256SUMS").read_text().splitlines()
                    if line.strip())
    for file_name in names:
        actual = hashlib.sha256((folder / file_name).read_bytes()).hexdigest()
        if expected.get(file_name) != actual:
            raise ValueError(f"checksum mismatch for {folder / file_name}: expected "
                             f"{expected.get(file_name)}, got {actual}; the file is damaged or was modified")


def stratified_indices(labels: torch.Tensor, per_class: int, generator: torch.Generator) -> torch.Tensor:
    """``per_class`` random indices of every class, sorted (so the subset keeps the file order)."""
    chosen = []
    for cls in torch.unique(labels).tolist():
        members = torch.nonzero(labels == cls).flatten()
        if len(members) < per_class:
            raise ValueError(f"per_class={per_class} but class {cls} has only {len(members)} samples")
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(chosen).sort().values


# --------------------------------------------------------------------- full MNIST-like sets
def _torchvision_class(name):
    import torchvision.datasets as tvd
    return {"fashion-mnist": tvd.FashionMNIST, "mnist": tvd.MNIST}[name]


def _candidate_roots(name, root):
    """(folder, kind) pairs in lookup order; kind 'torchvision' or 'flat-gz' (Debian's layout)."""
    candidates = []
    if root is not None:
        candidates += [(Path(root), "torchvision"), (Path(root), "flat-gz")]
    candidates.append((REPO_DATA_DIR, "torchvision"))
    if name == "fashion-mnist":
        candidates.append((DEBIAN_FASHION_MNIST_DIR, "flat-gz"))
    return candidates


def _has_flat_gz(folder: Path) -> bool:
    return all((folder / f"{f}.gz").exists() for pair in IDX_FILES.values() for f in pair)


def _prepare_from_flat_gz(folder: Path, cls, target_root: Path) -> Path:
    """Unpack Debian-style ``*.gz`` idx files into torchvision's ``<root>/<Class>/raw`` layout.

    Debian re-compressed the files, so their md5 differs from torchvision's list while the
    contents are identical; torchvision only checks md5 when downloading, so the unpacked
    files load as they are.
    """
    raw = target_root / cls.__name__ / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for pair in IDX_FILES.values():
        for file_name in pair:
            if not (raw / file_name).exists():
                tmp = raw / f"{file_name}.partial"
                with gzip.open(folder / f"{file_name}.gz", "rb") as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                tmp.replace(raw / file_name)
    return target_root


def _load_mnist_family(name, split, root, download) -> Dataset:
    cls = _torchvision_class(name)
    looked = []
    for folder, kind in _candidate_roots(name, root):
        if kind == "torchvision":
            looked.append(f"{folder / cls.__name__ / 'raw'} (torchvision layout)")
            if _torchvision_has(cls, folder):
                return _from_torchvision(name, cls, folder, split, download=False)
        else:
            looked.append(f"{folder} (gzipped idx files, Debian layout)")
            if _has_flat_gz(folder):
                target = Path(root) if root is not None else REPO_DATA_DIR
                prepared = _prepare_from_flat_gz(folder, cls, target)
                return _from_torchvision(name, cls, prepared, split, download=False, source=folder)
    if download:
        target = Path(root) if root is not None else REPO_DATA_DIR
        return _from_torchvision(name, cls, target, split, download=True)
    raise FileNotFoundError(_missing_message(name, looked))


def _torchvision_has(cls, folder: Path) -> bool:
    raw = folder / cls.__name__ / "raw"
    return all((raw / f).exists() for pair in IDX_FILES.values() for f in pair)


def _from_torchvision(name, cls, root: Path, split, download, source=None) -> Dataset:
    tv = cls(root=str(root), train=(split == "train"), download=download)
    return _as_dataset(name, split, tv.data.numpy(), tv.targets.numpy(), tv.classes,
                       str(source or Path(root) / cls.__name__))


def _missing_message(name, looked) -> str:
    ways = [f"load_dataset({name!r}, download=True) downloads it (needs internet)",
            f"put the files in {REPO_DATA_DIR} or pass root=...",
            "use the bundled 'fashion-mnist-mini' (no network needed)"]
    if name == "fashion-mnist":
        ways.insert(1, "on Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist")
    return (f"dataset {name!r} not found. Looked in:\n  - " + "\n  - ".join(looked)
            + "\nWays to get it:\n  - " + "\n  - ".join(ways))


# --------------------------------------------------------------------------------- CIFAR-10
def _load_cifar10(split, root, download) -> Dataset:
    import torchvision.datasets as tvd
    folders = ([Path(root)] if root is not None else []) + [REPO_DATA_DIR]
    for folder in folders:
        if (folder / "cifar-10-batches-py").is_dir():
            return _cifar_from(tvd, folder, split, download=False)
    if download:
        return _cifar_from(tvd, folders[0], split, download=True)
    looked = [f"{f / 'cifar-10-batches-py'}" for f in folders]
    raise FileNotFoundError(_missing_message("cifar10", looked))


def _cifar_from(tvd, folder, split, download) -> Dataset:
    tv = tvd.CIFAR10(root=str(folder), train=(split == "train"), download=download)
    images = np.ascontiguousarray(tv.data.transpose(0, 3, 1, 2))  # HWC -> CHW
    return _as_dataset("cifar10", split, images, tv.targets, tv.classes, str(folder))
