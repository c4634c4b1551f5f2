"""Logit distillation, all with ONE convention for ``alpha`` and ``temperature``.

    loss = (1 - alpha) * CE(student, labels) + alpha * soft_term(student, teacher, T)

``alpha`` is the weight of the soft-target (teacher) term; ``alpha = 1`` needs no labels at all.
The soft terms, each a method of the one registry (``methods/registry.py``), reached by name
through ``get_method``, ``get_loss`` and ``distill(loss=...)`` alike:

- ``"kl"`` (:class:`KD`; Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural
  Network"): ``T^2 * KL(softmax(t / T) || softmax(s / T))``, averaged over the batch
  (``batchmean``). The soft term's gradient scales as 1 / T^2, so the T^2 factor keeps its
  weight relative to the hard term roughly independent of T.
- ``"mse-logits"`` (:class:`LogitMSE`; Ba & Caruana 2014, "Do Deep Nets Really Need to be
  Deep?"): logit matching, ``0.5 * mean_over_classes((s - t)^2)`` averaged over the batch; ``T``
  is not used. Its gradient ``(s - t) / N`` is the high-temperature limit of the KL term's
  (Hinton et al. section 2.1, for zero-mean logits), which is why the two are close relatives.
- ``"mse-soft"`` (:class:`ProbabilityMSE`): ``T^2 * sum_over_classes((softmax(s / T) -
  softmax(t / T))^2)`` averaged over the batch: the "cross-entropy plus MSE" of many tutorials.

The loss is computed in float32 (or float64 when given) whatever the input dtype: in float16 the
softmax of high-temperature logits underflows and the KL can come out negative or infinite.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core import checks, tempered
from .base import Method, StepOutputs
from .ce import labelled_cross_entropy


def soft_targets(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``softmax(logits / T)``: T -> 0 gives the one-hot argmax, large T the uniform distribution."""
    checks.positive_number("temperature", temperature)
    return F.softmax(precise(logits) / temperature, dim=-1)


def kl_soft_term(student_logits, teacher_logits, temperature):
    """``T^2 * KL(p_teacher^T || p_student^T)`` with ``batchmean`` reduction."""
    if temperature > tempered.PRECISE_ABOVE_T:  # a KL of order 1 / T^2: the plain formula cancels
        return tempered.kl_term(student_logits, teacher_logits, temperature)
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return temperature ** 2 * kl


def mse_logits_soft_term(student_logits, teacher_logits, temperature):
    """``0.5 * mean_classes((s - t)^2)``, batch-averaged; temperature is not used."""
    return 0.5 * F.mse_loss(student_logits, teacher_logits)


def mse_soft_term(student_logits, teacher_logits, temperature):
    """``T^2 * sum_classes((p_s^T - p_t^T)^2)``, batch-averaged."""
    if temperature > tempered.PRECISE_ABOVE_T:  # p_s - p_t of order 1 / T: the plain difference cancels
        return tempered.mse_soft_term(student_logits, teacher_logits, temperature)
    diff = F.softmax(student_logits / temperature, -1) - F.softmax(teacher_logits / temperature, -1)
    return temperature ** 2 * diff.pow(2).sum(dim=-1).mean()


def check_logit_inputs(student_logits, teacher_logits, labels, *, alpha: float):
    """Shapes (batch x classes, equal, at least one row), finite floating-point logits, labels
    (integers in [-1, classes - 1]) and alpha; returns the labels as int64 (or None)."""
    for name, logits in (("student_logits", student_logits), ("teacher_logits", teacher_logits)):
        _check_logits(name, logits)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student_logits {tuple(student_logits.shape)} and teacher_logits "
                         f"{tuple(teacher_logits.shape)} must have the same shape (batch x classes)")
    if labels is None:
        if alpha < 1:
            raise ValueError(f"labels=None is only allowed with alpha=1 (pure soft targets); got alpha={alpha}")
        return None
    checks.class_labels("labels", labels, student_logits.shape[1], length=len(student_logits))
    return labels.long()  # int8/int16/int32 labels: torch's cross-entropy and one_hot take int64 only


def _check_logits(name: str, logits) -> None:
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[1] < 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"{name} must be a 2-D tensor, batch x classes (>= 2 classes); got {shape}. "
                         f"A single sample is logits[None]: a 1-D vector would be read as a batch "
                         f"of one-class rows")
    if not logits.dtype.is_floating_point:
        raise ValueError(f"{name} must be floating-point logits (float32, float64, float16 or bfloat16); "
                         f"got dtype {logits.dtype}")
    if len(logits) == 0:  # the batch mean of no sample is 0 / 0
        raise ValueError(f"{name} has no rows (shape {tuple(logits.shape)}): a loss over an empty batch is undefined")
    bad = int((~torch.isfinite(logits)).sum())
    if bad:
        raise ValueError(f"{name} hold {bad} non-finite values (NaN or inf) of {logits.numel()}; "
                         f"a diverged or broken model gives them")


def kd_loss(student_logits, teacher_logits, labels, *, temperature: float, alpha: float):
    """Hinton's KD loss on one batch: ``(1 - alpha) * CE(student, labels) + alpha * T^2 * KL``
    (module docstring). The other soft terms by name: ``get_loss("mse-soft")``, ``get_loss("dkd")``."""
    return KD(temperature, alpha).loss(student_logits, teacher_logits, labels)


def logit_parts(soft, student_logits, labels, alpha: float, soft_name: str) -> dict:
    """``{"ce": (1 - alpha) * CE, soft_name: alpha * soft}``, each part only where its weight is > 0."""
    parts = {}
    if alpha < 1:
        parts["ce"] = (1 - alpha) * labelled_cross_entropy(student_logits, labels)
    if alpha > 0:
        parts[soft_name] = alpha * soft
    return parts


def precise(logits: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 -> float32; float32 and float64 stay as they are."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


# ------------------------------------------------------------------ the methods
class LogitDistillation(Method):
    """``(1 - alpha) * CE + alpha * soft_term``: the workbench's convention for every logit method.

    A subclass defines ``soft_term(student_logits, teacher_logits, labels)`` and ``soft_name``.
    """

    soft_name = "soft"

    def __init__(self, temperature: float = 4.0, alpha: float = 0.9):
        super().__init__()
        self.temperature = checks.positive_number("temperature", temperature)
        self.alpha = checks.fraction("alpha", alpha)

    def soft_term(self, student_logits, teacher_logits, labels) -> torch.Tensor:
        raise NotImplementedError

    def check_inputs(self, student_logits, teacher_logits, labels):
        """Refuse what this method cannot take, with a message (the loop checks datasets instead);
        returns the labels as int64."""
        return check_logit_inputs(student_logits, teacher_logits, labels, alpha=self.alpha)

    def loss(self, student_logits, teacher_logits, labels) -> torch.Tensor:
        """The summed loss of one batch of plain tensors, inputs checked first: what ``get_loss``
        and ``kd_loss`` return. The loop calls ``forward`` instead, for the named parts."""
        labels = self.check_inputs(student_logits, teacher_logits, labels)
        return sum(self(StepOutputs(student_logits, labels, teacher_logits)).values())

    def part_names(self) -> tuple:
        return ("ce",) * (self.alpha < 1) + (self.soft_name,) * (self.alpha > 0)

    def forward(self, out: StepOutputs) -> dict:
        student, teacher = precise(out.student_logits), precise(out.teacher_logits)
        soft = self.soft_term(student, teacher, out.labels) if self.alpha > 0 else None
        return logit_parts(soft, student, out.labels, self.alpha, self.soft_name)

    def settings(self) -> dict:
        return {"temperature": self.temperature, "alpha": self.alpha}


class KD(LogitDistillation):
    """Hinton et al.'s KD: ``T^2 * KL(softmax(t/T) || softmax(s/T))`` as the soft term."""

    name, soft_name = "kl", "kd"

    def soft_term(self, student_logits, teacher_logits, labels):
        return kl_soft_term(student_logits, teacher_logits, self.temperature)


class LogitMSE(LogitDistillation):
    """Ba & Caruana's logit matching ``0.5 * mean((s - t)^2)`` as the soft term (T unused)."""

    name, soft_name = "mse-logits", "mse_logits"

    def soft_term(self, student_logits, teacher_logits, labels):
        return mse_logits_soft_term(student_logits, teacher_logits, self.temperature)


class ProbabilityMSE(LogitDistillation):
    """MSE on softened probabilities times T^2 as the soft term."""

    name, soft_name = "mse-soft", "mse_soft"

    def soft_term(self, student_logits, teacher_logits, labels):
        return mse_soft_term(student_logits, teacher_logits, self.temperature)
