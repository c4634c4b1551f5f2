"""Build data/fashion-mnist-mini/ from the full Fashion-MNIST.

Train images come only from the official train split and test images only from the official
test split, so a teacher trained on the full train set is still evaluated fairly on the mini
test set. Both are stratified: the same number of images from every class, chosen at random
with a fixed seed, kept in their original file order.

Run from the repository root:  python data/make_fashion_mnist_mini.py
The gzip streams are written with mtime=0, so the output (and its SHA256SUMS) is reproducible.
"""
import gzip
import hashlib
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from distill_lib.data import IDX_FILES, load_dataset, stratified_indices  # noqa: E402

PER_CLASS = {"train": 1000, "test": 200}  # 10,000 train and 2,000 test images
SEED = 20150309  # any fixed number; this one is the date of Hinton et al.'s KD paper
OUT = Path(__file__).resolve().parent / "fashion-mnist-mini"


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_gz(path: Path, payload: bytes) -> None:
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(payload)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    generator = torch.Generator().manual_seed(SEED)
    sums = []
    for split, per_class in PER_CLASS.items():
        full = load_dataset("fashion-mnist", split=split)
        keep = stratified_indices(full.labels, per_class, generator)
        images = (full.images[keep, 0] * 255).round().to(torch.uint8).numpy()
        labels = full.labels[keep].numpy().astype(np.uint8)
        for name, array in zip(IDX_FILES[split], (images, labels)):
            path = OUT / f"{name}.gz"
            write_gz(path, idx_bytes(array))
            sums.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}")
        print(f"{split}: {len(keep)} images, {np.bincount(labels).tolist()} per class, from {full.source}")
    (OUT / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    print((OUT / "SHA256SUMS").read_text())


if __name__ == "__main__":
    main()
