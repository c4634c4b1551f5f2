"""Distillation losses, all with ONE convention for ``alpha`` and ``temperature``.

    loss = (1 - alpha) * CE(student, labels) + alpha * soft_term(student, teacher, T)

``alpha`` is the weight of the soft-target (teacher) term; ``alpha = 1`` needs no labels at all.
The soft terms, selectable by name through :func:`get_loss`:

- ``"kl"`` (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network"):
  ``T^2 * KL(softmax(t / T) || softmax(s / T))``, averaged over the batch (``batchmean``).
  The soft term's gradient scales as 1 / T^2, so the T^2 factor keeps its weight relative to
  the hard term roughly independent of T.
- ``"mse-logits"`` (Ba & Caruana 2014, "Do Deep Nets Really Need to be Deep?"): logit matching,
  ``0.5 * mean_over_classes((s - t)^2)`` averaged over the batch; ``T`` is not used. Its gradient
  ``(s - t) / N`` is the high-temperature limit of the KL term's (Hinton et al. section 2.1,
  for zero-mean logits), which is why the two forms are close relatives.
- ``"mse-soft"``: ``T^2 * sum_over_classes((softmax(s / T) - softmax(t / T))^2)`` averaged over
  the batch: the "cross-entropy plus MSE" form many tutorials use, scaled by T^2 like the KL.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import checks


def soft_targets(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``softmax(logits / T)``: T -> 0 gives the one-hot argmax, large T the uniform distribution."""
    checks.positive_number("temperature", temperature)
    return F.softmax(logits / temperature, dim=-1)


def _check_kd_inputs(student_logits, teacher_logits, labels, temperature, alpha) -> None:
    checks.positive_number("temperature", temperature)
    checks.fraction("alpha", alpha)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student_logits {tuple(student_logits.shape)} and teacher_logits "
                         f"{tuple(teacher_logits.shape)} must have the same shape (batch x classes)")
    if labels is None and alpha < 1:
        raise ValueError(f"labels=None is only allowed with alpha=1 (pure soft targets); got alpha={alpha}")


def _hard_term(student_logits, labels, alpha):
    """(1 - alpha) * CE over the labelled samples; a label of -1 marks an unlabelled one."""
    if alpha == 1:
        return 0.0
    labelled = labels >= 0
    if bool(labelled.all()):
        return (1 - alpha) * F.cross_entropy(student_logits, labels)
    if not bool(labelled.any()):
        return student_logits.sum() * 0.0  # keeps the graph; no labelled sample in this batch
    return (1 - alpha) * F.cross_entropy(student_logits[labelled], labels[labelled])


def kl_soft_term(student_logits, teacher_logits, temperature):
    """``T^2 * KL(p_teacher^T || p_student^T)`` with ``batchmean`` reduction."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return temperature ** 2 * kl


def mse_logits_soft_term(student_logits, teacher_logits, temperature):
    """``0.5 * mean_classes((s - t)^2)``, batch-averaged; temperature is not used."""
    return 0.5 * F.mse_loss(student_logits, teacher_logits)


def mse_soft_term(student_logits, teacher_logits, temperature):
    """``T^2 * sum_classes((p_s^T - p_t^T)^2)``, batch-averaged."""
    diff = F.softmax(student_logits / temperature, -1) - F.softmax(teacher_logits / temperature, -1)
    return temperature ** 2 * diff.pow(2).sum(dim=-1).mean()


SOFT_TERMS = {"kl": kl_soft_term, "mse-logits": mse_logits_soft_term, "mse-soft": mse_soft_term}


def kd_loss(student_logits, teacher_logits, labels, *, temperature: float, alpha: float, kind: str = "kl"):
    """``(1 - alpha) * CE(student, labels) + alpha * soft_term``; see the module docstring."""
    checks.one_of("kind", kind, list(SOFT_TERMS))
    _check_kd_inputs(student_logits, teacher_logits, labels, temperature, alpha)
    soft = SOFT_TERMS[kind](student_logits, teacher_logits, temperature) if alpha > 0 else 0.0
    return _hard_term(student_logits, labels, alpha) + alpha * soft


def get_loss(name: str):
    """The distillation loss registered under ``name`` ("kl", "mse-logits", "mse-soft"), as a
    function ``(student_logits, teacher_logits, labels, *, temperature, alpha) -> loss``."""
    checks.one_of("loss", name, list(SOFT_TERMS))

    def loss(student_logits, teacher_logits, labels, *, temperature, alpha):
        return kd_loss(student_logits, teacher_logits, labels, temperature=temperature, alpha=alpha, kind=name)

    loss.__name__ = f"kd_loss_{name.replace('-', '_')}"
    return loss


# ------------------------------------------------------------------ hint (feature) matching
class HintRegressor(nn.Module):
    """Maps a student feature to the teacher feature's shape (FitNets, Romero et al. 2015).

    Feature maps (C x H x W) go through a 1x1 convolution for the channels, then average pooling
    (student larger) or bilinear resizing (student smaller) for the spatial size. Vectors go
    through a linear layer. A map matched against a vector is globally pooled first.
    """

    def __init__(self, student_shape, teacher_shape):
        super().__init__()
        _check_feature_shape("student_shape", student_shape)
        _check_feature_shape("teacher_shape", teacher_shape)
        self.student_shape, self.teacher_shape = tuple(student_shape), tuple(teacher_shape)
        s_channels, t_channels = self.student_shape[0], self.teacher_shape[0]
        if len(self.teacher_shape) == 3 and len(self.student_shape) == 3:
            self.map = nn.Conv2d(s_channels, t_channels, kernel_size=1)
        else:
            self.map = nn.Linear(s_channels, t_channels)

    def forward(self, student_feature: torch.Tensor) -> torch.Tensor:
        if tuple(student_feature.shape[1:]) != self.student_shape:
            raise ValueError(f"student_feature has shape {tuple(student_feature.shape)}; this regressor "
                             f"was built for batch x {self.student_shape}")
        if len(self.teacher_shape) == 1 and student_feature.ndim == 4:
            student_feature = student_feature.mean(dim=(2, 3))
        if isinstance(self.map, nn.Linear):
            return self.map(student_feature)
        out = self.map(student_feature)
        size = self.teacher_shape[1:]
        if tuple(out.shape[2:]) == size:
            return out
        if out.shape[2] >= size[0] and out.shape[3] >= size[1]:  # student map larger: average it down
            return F.adaptive_avg_pool2d(out, size)
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)


def hint_loss(student_feature, teacher_feature, regressor: HintRegressor) -> torch.Tensor:
    """Mean squared error between the regressed student feature and the teacher feature."""
    prediction = regressor(student_feature)
    target = teacher_feature
    if teacher_feature.ndim == 4 and prediction.ndim == 2:  # a vector student matches pooled maps
        target = teacher_feature.mean(dim=(2, 3))
    if prediction.shape != target.shape:  # F.mse_loss would broadcast silently
        raise ValueError(f"regressed student feature {tuple(prediction.shape)} and teacher feature "
                         f"{tuple(target.shape)} differ; build the regressor with the teacher's feature shape")
    return F.mse_loss(prediction, target)


def _check_feature_shape(name: str, shape) -> None:
    shape = tuple(shape)
    if len(shape) not in (1, 3) or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ValueError(f"{name} must be a feature shape without the batch dimension, (C,) or "
                         f"(C, H, W) with positive integers; got {shape}")
