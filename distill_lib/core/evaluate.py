"""A model's outputs on images (:func:`predict`) and the metrics:
accuracy, negative log-likelihood, expected calibration error, teacher agreement, confusion
matrices and per-class accuracy."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from . import checks


@dataclass
class ModelOutputs:
    """A model's logits (N x classes) and the named stages' outputs (stage -> N x ...) on N images."""

    logits: torch.Tensor
    features: dict = field(default_factory=dict)

    def to(self, device) -> "ModelOutputs":
        return ModelOutputs(self.logits.to(device), {k: v.to(device) for k, v in self.features.items()})


@torch.inference_mode()
def predict(model, images: torch.Tensor, stages=(), *, batch_size: int = 1024, device="cpu") -> ModelOutputs:
    """Run ``model`` on ``images`` now, in eval mode: its logits and the ``stages`` asked for, on the
    CPU in float32. Nothing is kept; for a teacher's outputs on a dataset, computed once and
    cached, use :func:`distill_lib.core.cache.teacher_outputs`.

    ``stages`` are those of a :class:`~distill_lib.core.models.StagedNet`
    (``model(x, return_features=True)``).
    """
    checks.positive_int("batch_size", batch_size)
    stages = tuple(stages)
    was_training = model.training
    model.eval()
    logits, features = [], {stage: [] for stage in stages}
    try:
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size].to(device)
            if stages:
                out, feats = model(batch, return_features=True)
                for stage in stages:
                    features[stage].append(feats[stage].float().cpu())
            else:
                out = model(batch)
            logits.append(out.float().cpu())
    finally:
        model.train(was_training)
    return ModelOutputs(_cat(logits), {stage: _cat(parts) for stage, parts in features.items()})


def _cat(chunks: list) -> torch.Tensor:
    return torch.cat(chunks) if chunks else torch.empty(0)


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE (Guo et al. 2017): |accuracy - confidence| per confidence bin, weighted by bin size."""
    checks.positive_int("bins", bins)
    confidence, prediction = F.softmax(logits.float(), dim=-1).max(dim=-1)
    correct = (prediction == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    # bin i holds confidences in (edges[i], edges[i+1]]; confidence is always > 0
    which = torch.bucketize(confidence, edges[1:-1], right=False)
    ece = torch.zeros(())
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.float().mean() * (correct[in_bin].mean() - confidence[in_bin].mean()).abs()
    return float(ece)


def metrics_from_logits(logits, labels, teacher_logits=None) -> dict:
    """accuracy, nll, ece (and agreement with the teacher's argmax when teacher logits are given)."""
    labels = labels.cpu()
    metrics = {
        "accuracy": float((logits.argmax(-1) == labels).float().mean()),
        "nll": float(F.cross_entropy(logits.float(), labels)),
        "ece": expected_calibration_error(logits, labels),
    }
    if teacher_logits is not None:
        if teacher_logits.shape != logits.shape:
            raise ValueError(f"agreement needs a teacher with the student's classes: teacher logits "
                             f"{tuple(teacher_logits.shape)}, student logits {tuple(logits.shape)}")
        metrics["agreement"] = float((logits.argmax(-1) == teacher_logits.argmax(-1).cpu()).float().mean())
    return metrics


def evaluate(model, dataset, *, teacher=None, teacher_logits=None, batch_size: int = 1024, device="cpu") -> dict:
    """Accuracy, NLL, ECE of ``model`` on ``dataset``; plus agreement when a teacher is given."""
    logits = predict(model, dataset.images, batch_size=batch_size, device=device).logits
    if teacher is not None and teacher_logits is None:
        teacher_logits = predict(teacher, dataset.images, batch_size=batch_size, device=device).logits
    return metrics_from_logits(logits, dataset.labels, teacher_logits)


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts: row = true class, column = predicted class."""
    flat = labels.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def per_class_accuracy(predictions, labels, num_classes: int) -> torch.Tensor:
    counts = confusion_matrix(predictions, labels, num_classes)
    return counts.diag() / counts.sum(dim=1).clamp(min=1)
