"""Plain cross-entropy on the labels: what ``fit`` trains with, and the hard term of every logit
method. A label of -1 marks an unlabelled image, which this term skips."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core import checks
from .base import Method, StepOutputs


def labelled_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy over the labelled rows (label >= 0); a zero that keeps the graph if none."""
    labelled = labels >= 0
    if bool(labelled.all()):
        return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    if not bool(labelled.any()):
        return logits.sum() * 0.0  # no labelled sample in this batch
    return F.cross_entropy(logits[labelled], labels[labelled], label_smoothing=label_smoothing)


class CrossEntropy(Method):
    """``CE(student, labels)``: training from the labels alone, no teacher."""

    name = "ce"
    needs_teacher = False

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = checks.fraction("label_smoothing", label_smoothing)

    def part_names(self) -> tuple:
        return ("ce",)

    def forward(self, out: StepOutputs) -> dict:
        return {"ce": labelled_cross_entropy(out.student_logits, out.labels, self.label_smoothing)}

    def settings(self) -> dict:
        return {"label_smoothing": self.label_smoothing}
