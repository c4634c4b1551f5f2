"""Hinton's omitted-class experiment (Hinton, Vinyals & Dean 2015, section 3), on Fashion-MNIST.

The transfer set leaves out every image of one class; the student never sees one. Distilled at a
high temperature, it still learns to *rank* images of that class, from the teacher's soft targets
on the other classes' images ("this shirt looks 2% like a dress"). What it cannot learn is how high
that class's logit should be: its bias. Hinton raised the bias of the omitted 3 by hand (3.5). Here
the bias comes from a stated rule that uses no label of the omitted class: raise it until a
``share`` of the unlabelled test images (1/10, the class's share if classes are balanced) are
predicted as that class. The same rule is applied to the student trained without a teacher.
"""
from __future__ import annotations

import math

import torch

from ..core import checks
from ..core.data import Dataset
from ..core.evaluate import per_class_accuracy, predict
from ..core.models import build_model
from ..loop import distill, fit


def without_class(dataset: Dataset, class_index: int) -> Dataset:
    """``dataset`` with every image of ``class_index`` removed (the class stays in ``classes``)."""
    checks.one_of("class_index", class_index, range(dataset.num_classes))
    keep = (dataset.labels != class_index).nonzero().flatten()
    return dataset.subset(keep, name=f"{dataset.name} without {dataset.classes[class_index]}")


def bias_for_share(logits: torch.Tensor, class_index: int, share: float) -> float:
    """The smallest bias >= 0 that, added to ``class_index``'s logit, makes at least ``share`` of
    the rows predict that class. Uses no label: only the logits of unlabelled images."""
    checks.fraction("share", share)
    others = logits.clone()
    others[:, class_index] = -math.inf
    needed = (others.max(dim=1).values - logits[:, class_index]).sort().values  # bias each row needs
    count = max(1, math.ceil(share * len(logits)))
    return max(0.0, float(needed[count - 1]) + 1e-6)  # + a hair: a tie must go to the class


def recall(logits: torch.Tensor, labels: torch.Tensor, class_index: int, bias: float = 0.0) -> float:
    """Share of the images of ``class_index`` predicted as that class, with ``bias`` added to its logit."""
    shifted = logits.clone()
    shifted[:, class_index] += bias
    members = labels == class_index
    return float((shifted[members].argmax(dim=1) == class_index).float().mean())


def auc(scores: torch.Tensor, positives: torch.Tensor) -> float:
    """Area under the ROC curve: the probability that a random positive outscores a random
    negative (Mann-Whitney U; tied scores share their average rank, so a tie counts half)."""
    positives = positives.bool()
    if positives.all() or not positives.any():
        raise ValueError("auc needs both positive and negative examples")
    _, inverse, counts = torch.unique(scores.double(), return_inverse=True, return_counts=True)
    last = counts.cumsum(0).double()            # 1-based rank of the last copy of each distinct score
    ranks = ((last - counts.double() + 1 + last) / 2)[inverse]
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def run(teacher, train_set: Dataset, test_set: Dataset, class_index: int, *, student: str, seeds, epochs: int,
        temperature: float, alpha: float, batch_size: int, lr: float, share: float, device) -> list:
    """One record per seed: both students' recall of the omitted class (raw and with the rule's
    bias), the biases, the AUC of that class's logit, and overall accuracy with the bias."""
    transfer = without_class(train_set, class_index)
    records = []
    for seed in seeds:
        common = dict(epochs=epochs, batch_size=batch_size, lr=lr, device=device, seed=seed, progress="off")
        kd, scratch = build_model(student, seed=seed), build_model(student, seed=seed)
        distill(kd, teacher, transfer, temperature=temperature, alpha=alpha, desc="KD without the class", **common)
        fit(scratch, transfer, desc="scratch without the class", **common)
        record = {"seed": seed}
        for name, model in (("kd", kd), ("scratch", scratch)):
            logits = predict(model, test_set.images, device=device).logits
            bias = bias_for_share(logits, class_index, share)
            shifted = logits.clone()
            shifted[:, class_index] += bias
            record.update({f"{name}_recall_raw": recall(logits, test_set.labels, class_index),
                           f"{name}_recall": recall(logits, test_set.labels, class_index, bias), f"{name}_bias": bias,
                           f"{name}_auc": auc(logits[:, class_index], test_set.labels == class_index),
                           f"{name}_accuracy": float((shifted.argmax(1) == test_set.labels).float().mean()),
                           f"{name}_per_class": per_class_accuracy(shifted.argmax(1), test_set.labels,
                                                                   test_set.num_classes).tolist()})
        records.append(record)
    return records
