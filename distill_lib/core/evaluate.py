"""A model's outputs on images (:func:`predict`, at the measured inference batch) and the metrics:
accuracy, negative log-likelihood, expected calibration error, teacher agreement, confusion
matrices and per-class accuracy."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from . import checks
from .device import resolve_device


# The batch of an inference pass (``predict``, and through it the teacher-output cache) by device
# type, chosen by measurement. Not the larger the better on a CPU: a batch whose activations
# outgrow the CPU's caches is slower per image (the CNN teacher's first conv writes 100 kB per
# image: 13 MB for 128 images, 103 MB for 1024). benchmarks/inference_batch.py times the teacher
# pass over the 10k mini images at 64 to 1024; on the 2-core CPU with 2 threads 128 was the
# fastest and 1024 took 1.57x as long (docs/inference-batch.json; with 1 thread 1.59x). A float
# model's logits do not depend on it (tests/test_inference.py). CUDA keeps the large batch a GPU
# wants (not measured: the machine that chose the CPU value has no GPU).
INFERENCE_BATCH = {"cpu": 128, "cuda": 1024}


# Dynamic int8 quantization scales each batch's activations by that batch's own range, so such a
# model's outputs depend on the batch: it keeps the batch its results were measured and quoted with
# (notebook 05), whatever the speed-chosen INFERENCE_BATCH is.
BATCH_DEPENDENT_BATCH = 1024


def inference_batch(device, model=None) -> int:
    """The batch ``predict`` uses: :data:`INFERENCE_BATCH` for ``device`` (the CPU's for other
    devices), or :data:`BATCH_DEPENDENT_BATCH` for a ``model`` whose outputs depend on the batch."""
    if model is not None and _batch_dependent(model):
        return BATCH_DEPENDENT_BATCH
    return INFERENCE_BATCH.get(torch.device(device).type, INFERENCE_BATCH["cpu"])


def _batch_dependent(model) -> bool:
    return any(type(m).__module__.startswith("torch.ao.nn.quantized.dynamic") for m in model.modules())


@dataclass
class ModelOutputs:
    """A model's logits (N x classes) and the named stages' outputs (stage -> N x ...) on N images."""

    logits: torch.Tensor
    features: dict = field(default_factory=dict)

    def to(self, device) -> "ModelOutputs":
        return ModelOutputs(self.logits.to(device), {k: v.to(device) for k, v in self.features.items()})


@torch.inference_mode()
def predict(model, images: torch.Tensor, stages=(), *, batch_size: int | None = None, device="cpu") -> ModelOutputs:
    """Run ``model`` on ``images`` now, in eval mode: its logits and the ``stages`` asked for, on the
    CPU in float32. Nothing is kept; for a teacher's outputs on a dataset, computed once and
    cached, use :func:`distill_lib.core.cache.teacher_outputs`.

    ``stages`` are those of a :class:`~distill_lib.core.models.StagedNet`
    (``model(x, return_features=True)``). ``batch_size`` None is :func:`inference_batch`'s.
    """
    device = resolve_device(device)
    if batch_size is None:
        batch_size = inference_batch(device, model)
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
                out = checks.model_output("the model", model(batch))  # a tuple or dict is named, not crashed on
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
    """accuracy, nll, ece, confidence (the mean top-class probability: above accuracy is
    overconfident, below underconfident), and agreement with the teacher's argmax when teacher
    logits are given."""
    labels = labels.cpu().long()  # any integer labels; torch's cross-entropy takes int64 only
    metrics = {
        "accuracy": float((logits.argmax(-1) == labels).float().mean()),
        "nll": float(F.cross_entropy(logits.float(), labels)),
        "ece": expected_calibration_error(logits, labels),
        "confidence": float(F.softmax(logits.float(), dim=-1).max(dim=-1).values.mean()),
    }
    if teacher_logits is not None:
        if teacher_logits.shape != logits.shape:
            raise ValueError(f"agreement needs a teacher with the student's classes: teacher logits "
                             f"{tuple(teacher_logits.shape)}, student logits {tuple(logits.shape)}")
        metrics["agreement"] = float((logits.argmax(-1) == teacher_logits.argmax(-1).cpu()).float().mean())
    return metrics


def evaluate(model, dataset, *, teacher=None, teacher_logits=None, batch_size: int | None = None,
             device="cpu") -> dict:
    """Accuracy, NLL, ECE of ``model`` on ``dataset``; plus agreement when a teacher is given."""
    device = resolve_device(device)
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
