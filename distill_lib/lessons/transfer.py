"""Transfer tasks and label budgets: the data side of "fine-tune, distil, or both?" (notebook 03).

A :class:`TransferTask` holds a *source* task (where a model was pretrained) and a *target* task
(the one we care about, with few labels). Three ways to get one:

- ``"fashion-split"`` (offline default): Fashion-MNIST's classes split into two disjoint groups;
  the source task is one group, the target task the other (labels renumbered 0..K-1).
- ``"mnist"``: all of MNIST as the source task, all of Fashion-MNIST as the target (online:
  MNIST is downloaded when missing).
- ``"imagenet-resnet18"``: no source images at all, the source is torchvision's ImageNet weights;
  the target is CIFAR-10 (online).

A :class:`BudgetSplit` then draws ``per_class`` labelled images of every target class; the
rest of the target training images become the unlabelled pool (their labels are never used:
:meth:`BudgetSplit.transfer_set` marks them -1, the library's "unlabelled" label). The target
test set is a different split of the dataset and never enters either pool.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core import checks
from ..profiles import TRANSFER_SOURCES
from ..core.data import Dataset, load_dataset, stratified_indices

SOURCES = TRANSFER_SOURCES  # the names live with the profiles, so the runner can check them first
UNLABELLED = -1  # the label every logit method reads as "no label: soft term only"


@dataclass
class TransferTask:
    """Source task (``None`` when the source is pretrained weights) and target task datasets.

    ``*_rows`` are the row numbers of each dataset in the file it was cut from, so a test can
    check that source, target and test sets never share an image.
    """

    name: str
    source_train: Dataset | None
    source_test: Dataset | None
    target_train: Dataset
    target_test: Dataset
    source_rows: torch.Tensor | None = None
    target_rows: torch.Tensor | None = None

    @property
    def target_classes(self) -> list:
        return self.target_train.classes

    @property
    def images_per_class(self) -> int:
        """The smallest class of the target training set: the largest possible budget."""
        return int(torch.bincount(self.target_train.labels).min())

    def describe(self) -> str:
        source = (f"{len(self.source_train)} images of {', '.join(self.source_train.classes)}"
                  if self.source_train is not None else "pretrained weights (no source images)")
        return (f"{self.name}\n  source: {source}\n  target: {len(self.target_train)} train / "
                f"{len(self.target_test)} test images of {', '.join(self.target_classes)}")


# ----------------------------------------------------------------------------- class splits
def parse_classes(text: str, num_classes: int) -> tuple:
    """``"0,2,4"`` -> (0, 2, 4): class ids in [0, num_classes), unique, at least one left over."""
    try:
        ids = tuple(int(part) for part in str(text).replace(" ", "").split(",") if part != "")
    except ValueError:
        raise ValueError(f"source_classes must be comma-separated class ids like '0,2,4'; got {text!r}") from None
    if not ids or len(set(ids)) != len(ids) or not all(0 <= i < num_classes for i in ids):
        raise ValueError(f"source_classes must be distinct ids in [0, {num_classes - 1}]; got {text!r}")
    if len(ids) > num_classes - 2:
        raise ValueError(f"source_classes {text!r} leaves fewer than 2 target classes out of {num_classes}")
    return tuple(sorted(ids))


def select_classes(dataset: Dataset, class_ids) -> tuple:
    """Rows of ``dataset`` whose label is in ``class_ids``, relabelled 0..len(class_ids)-1 in
    the order given; returns (new dataset, row numbers in ``dataset``)."""
    class_ids = list(class_ids)
    rows = torch.nonzero(torch.isin(dataset.labels, torch.tensor(class_ids))).flatten()
    relabel = torch.full((int(dataset.labels.max()) + 1,), UNLABELLED, dtype=torch.long)
    relabel[torch.tensor(class_ids)] = torch.arange(len(class_ids))
    subset = dataset.subset(rows)
    subset.labels = relabel[subset.labels]
    subset.classes = [dataset.classes[i] for i in class_ids]
    return subset, rows


def class_split_task(train: Dataset, test: Dataset, source_classes) -> TransferTask:
    """Source task = ``source_classes`` of ``train``/``test``; target task = the other classes."""
    source_classes = tuple(source_classes)
    target_classes = tuple(i for i in range(train.num_classes) if i not in source_classes)
    source_train, source_rows = select_classes(train, source_classes)
    target_train, target_rows = select_classes(train, target_classes)
    name = (f"{train.name}: classes {', '.join(map(str, source_classes))} -> "
            f"{', '.join(map(str, target_classes))}")
    return TransferTask(name, source_train, select_classes(test, source_classes)[0], target_train,
                        select_classes(test, target_classes)[0], source_rows, target_rows)


def cross_dataset_task(name: str, source_train, source_test, target_train, target_test) -> TransferTask:
    """Source and target are different datasets (MNIST -> Fashion-MNIST); images must match in shape."""
    if source_train is not None and source_train.input_shape != target_train.input_shape:
        raise ValueError(f"source images {source_train.input_shape} and target images "
                         f"{target_train.input_shape} must have the same shape to share a model")
    every_row = torch.arange(len(target_train))
    source_rows = torch.arange(len(source_train)) if source_train is not None else None
    return TransferTask(name, source_train, source_test, target_train, target_test, source_rows, every_row)


def load_task(source: str, dataset: str = "fashion-mnist-mini", *, source_classes: str = "0,2,4,6,8",
              download: bool = False) -> TransferTask:
    """The task for ``source`` (see the module docstring); ``dataset`` is used by "fashion-split"."""
    checks.one_of("source", source, SOURCES)
    if source == "fashion-split":
        train, test = (load_dataset(dataset, split=s) for s in ("train", "test"))
        return class_split_task(train, test, parse_classes(source_classes, train.num_classes))
    if source == "mnist":
        mnist = [load_dataset("mnist", split=s, download=download) for s in ("train", "test")]
        fashion = [load_dataset("fashion-mnist", split=s, download=download) for s in ("train", "test")]
        return cross_dataset_task("mnist -> fashion-mnist", *mnist, *fashion)
    cifar = [load_dataset("cifar10", split=s, download=download) for s in ("train", "test")]
    return cross_dataset_task("imagenet (resnet18 weights) -> cifar10", None, None, *cifar)


# ----------------------------------------------------------------------------- label budgets
def parse_budgets(text: str, images_per_class: int) -> list:
    """``"10,100,all"`` -> [10, 100, images_per_class]: labelled images per class, ascending."""
    budgets = set()
    for part in str(text).replace(" ", "").split(","):
        if part == "all":
            budgets.add(images_per_class)
            continue
        if not part.isdigit() or not 1 <= int(part) <= images_per_class:
            raise ValueError(f"budgets must be comma-separated integers in [1, {images_per_class}] "
                             f"(images per class of this target task) or 'all'; got {part!r} in {text!r}")
        budgets.add(int(part))
    return sorted(budgets)


@dataclass
class BudgetSplit:
    """``per_class`` labelled images of every target class; the rest form the unlabelled pool.

    Indices are rows of ``task.target_train``; labelled and unlabelled never overlap and
    together cover every target training image.
    """

    per_class: int
    labelled_rows: torch.Tensor
    unlabelled_rows: torch.Tensor

    def labelled(self, task: TransferTask) -> Dataset:
        return task.target_train.subset(self.labelled_rows)

    def transfer_set(self, task: TransferTask) -> Dataset:
        """Labelled images (with labels) followed by the unlabelled pool (labels set to -1)."""
        rows = torch.cat([self.labelled_rows, self.unlabelled_rows])
        data = task.target_train.subset(rows)
        data.labels = data.labels.clone()
        data.labels[len(self.labelled_rows):] = UNLABELLED
        return data


def split_budget(task: TransferTask, per_class: int, seed: int) -> BudgetSplit:
    """Draw ``per_class`` labelled images of each target class (repeatable through ``seed``)."""
    checks.positive_int("per_class", per_class)
    checks.non_negative_int("seed", seed)
    if per_class > task.images_per_class:
        raise ValueError(f"per_class={per_class} exceeds the {task.images_per_class} images per class "
                         f"of the target training set")
    labels = task.target_train.labels
    labelled = stratified_indices(labels, per_class, torch.Generator().manual_seed(seed))
    is_labelled = torch.zeros(len(labels), dtype=torch.bool)
    is_labelled[labelled] = True
    return BudgetSplit(per_class, labelled, torch.nonzero(~is_labelled).flatten())
