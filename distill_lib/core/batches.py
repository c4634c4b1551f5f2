"""A tensor-resident batch iterator and batched augmentation.

The whole dataset lives in one tensor on the training device; a batch is an index slice of a
seeded permutation, and augmentation is a handful of tensor ops on the whole batch. There is no
per-sample Python in the hot loop, which is what makes MNIST-sized training fast on a GPU.
"""
from __future__ import annotations

import torch

from . import checks


class Augment:
    """Random shifts (up to ``shift`` pixels, zero padding) and horizontal flips, batched."""

    def __init__(self, shift: int = 2, flip: bool = True):
        self.shift = checks.non_negative_int("shift", shift)
        self.flip = checks.boolean("flip", flip)  # bool("no") would be True

    def __repr__(self) -> str:
        return f"Augment(shift={self.shift}, flip={self.flip})"

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.shift:
            images = random_shift(images, self.shift, generator)
        if self.flip:
            images = random_hflip(images, generator)
        return images


def _random_ints(high: int, count: int, generator: torch.Generator, device) -> torch.Tensor:
    # drawn on the CPU generator, so the same seed gives the same augmentation on any device
    return torch.randint(0, high, (count,), generator=generator).to(device)


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift every image by its own random (dy, dx) in [-max_shift, max_shift], zero fill."""
    n, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (max_shift,) * 4)
    dy = _random_ints(2 * max_shift + 1, n, generator, images.device)
    dx = _random_ints(2 * max_shift + 1, n, generator, images.device)
    rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channels = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return padded[batch, channels, rows, cols]


def random_hflip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the batch left-right."""
    flip = _random_ints(2, len(images), generator, images.device).bool()
    return torch.where(flip[:, None, None, None], images.flip(3), images)


class TensorBatches:
    """Iterate over (images, labels, indices) batches of tensors kept on ``device``.

    ``indices`` are the rows of the batch in the dataset, so per-sample side data (cached
    teacher logits, say) is looked up with the same slice. Each epoch draws a new permutation
    from a generator seeded with ``seed``: the same seed gives the same batches.
    """

    def __init__(self, images, labels, *, batch_size: int, device="cpu", shuffle: bool = True,
                 seed: int = 0, augment: Augment | None = None, drop_last: bool = False):
        checks.positive_int("batch_size", batch_size)
        checks.non_negative_int("seed", seed)
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.batch_size, self.shuffle, self.augment, self.drop_last = batch_size, shuffle, augment, drop_last
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        full, rest = divmod(len(self.labels), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self):
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.to(self.images.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start:start + self.batch_size]
            images = self.images[index]
            if self.augment is not None:
                images = self.augment(images, self.generator)
            yield images, self.labels[index], index


class BatchSource:
    """Batches that are made rather than read from a dataset: what the one training loop trains on
    when there is no training set (a generator's images in data-free distillation, noise images).

    A subclass sets ``input_shape`` (C, H, W), ``steps`` (batches per epoch) and ``batch_size``, and yields
    ``(images, labels, index)`` like :class:`TensorBatches`: labels -1 mark images without a label,
    and ``index`` is None, since there are no dataset rows to look cached teacher outputs up by (the
    loop runs the teacher online on every batch). Pass one as ``train_set`` to ``distill_lib.train``.
    """

    input_shape: tuple = ()
    steps: int = 0
    batch_size: int = 0
    device = torch.device("cpu")

    def __len__(self) -> int:
        return self.steps

    def to(self, device) -> "BatchSource":
        """Make the batches on ``device`` from now on (the loop calls this with the training device)."""
        self.device = torch.device(device)
        return self

    def __iter__(self):
        raise NotImplementedError


class NoiseBatches(BatchSource):
    """Random images, the control of data-free distillation: ``"uniform"`` pixels in [0, 1] or
    ``"gaussian"`` ones (mean 0.5, std 0.25, clipped to [0, 1]), drawn from a generator seeded with
    ``seed`` on the CPU (the same seed gives the same images on any device)."""

    KINDS = ("uniform", "gaussian")

    def __init__(self, input_shape, *, steps: int, batch_size: int, kind: str = "uniform", seed: int = 0):
        self.input_shape = tuple(input_shape)
        self.steps = checks.positive_int("steps", steps)
        self.batch_size = checks.positive_int("batch_size", batch_size)
        self.kind = checks.one_of("kind", kind, self.KINDS)
        self.generator = torch.Generator().manual_seed(checks.non_negative_int("seed", seed))

    def __repr__(self) -> str:
        return f"NoiseBatches({self.kind}, {self.steps} x {self.batch_size} images of {self.input_shape})"

    def __iter__(self):
        shape = (self.batch_size, *self.input_shape)
        for _ in range(self.steps):
            if self.kind == "uniform":
                images = torch.rand(shape, generator=self.generator)
            else:
                images = (0.5 + 0.25 * torch.randn(shape, generator=self.generator)).clamp(0, 1)
            yield images.to(self.device), torch.full((self.batch_size,), -1, device=self.device), None
