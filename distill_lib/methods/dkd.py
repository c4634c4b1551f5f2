"""Decoupled Knowledge Distillation (Zhao et al., CVPR 2022, "Decoupled Knowledge Distillation").

The KL of classical KD splits into two parts that DKD weights separately. With ``p = softmax(z/T)``,
``b = (p_target, 1 - p_target)`` the binary target/non-target distribution and ``p_hat`` the
distribution over the non-target classes only (renormalised):

    TCKD = T^2 * KL(b_teacher || b_student)              target-class knowledge
    NCKD = T^2 * KL(p_hat_teacher || p_hat_student)      non-target-class knowledge
    DKD  = tckd_weight * TCKD + nckd_weight * NCKD       (each KL averaged over the batch)

Classical KD is ``TCKD + (1 - p_target_teacher) * NCKD`` per sample: a confident teacher silences
its own dark knowledge, which DKD's fixed ``nckd_weight`` restores. The paper's CIFAR-100 defaults
are tckd_weight 1, nckd_weight 8, T 4, with a 20-epoch linear warm-up of the DKD term.

As a method it keeps the workbench's convention: ``(1 - alpha) * CE + alpha * warm-up * DKD``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core import checks, tempered
from .kd import LogitDistillation, check_logit_inputs, precise


def dkd_loss(student_logits, teacher_logits, labels, *, temperature: float, tckd_weight: float = 1.0,
             nckd_weight: float = 8.0) -> torch.Tensor:
    """``tckd_weight * TCKD + nckd_weight * NCKD`` (module docstring); no cross-entropy term."""
    checks.positive_number("temperature", temperature)
    checks.non_negative_number("tckd_weight", tckd_weight)
    checks.non_negative_number("nckd_weight", nckd_weight)
    if labels is None:  # (check_logit_inputs would speak of an alpha this loss does not have)
        raise ValueError("dkd_loss needs labels, a 1-D tensor of class indices (one per sample): it splits "
                         "the target class from the others; got labels=None. Use kd_loss(..., alpha=1) "
                         "for a soft term without labels")
    labels = check_logit_inputs(student_logits, teacher_logits, labels, alpha=0.0)
    _refuse_unlabelled(labels)
    return _dkd(precise(student_logits), precise(teacher_logits), labels, temperature, tckd_weight, nckd_weight)


def _refuse_unlabelled(labels) -> None:
    if labels is None or bool((labels < 0).any()):
        got = "labels=None" if labels is None else "unlabelled samples (-1)"
        raise ValueError(f"dkd needs a label for every sample (it splits target from non-target "
                         f"classes); got {got}. Use loss='kl' for unlabelled images")


def _dkd(student_logits, teacher_logits, labels, temperature, tckd_weight, nckd_weight):
    target = F.one_hot(labels, student_logits.shape[1]).bool()
    if temperature > tempered.PRECISE_ABOVE_T:  # each KL is of order 1 / T^2: the plain formulas cancel
        tckd, nckd = tempered.decoupled_terms(student_logits, teacher_logits, target, temperature)
        return (tckd_weight * tckd + nckd_weight * nckd).to(student_logits.dtype)
    log_s, log_t = F.log_softmax(student_logits / temperature, -1), F.log_softmax(teacher_logits / temperature, -1)
    tckd = _kl(_binary_log(log_s, target), _binary_log(log_t, target))
    # non-target distribution: the target logit pushed to -inf before the softmax
    hide = torch.where(target, float("-inf"), 0.0).to(student_logits.dtype)
    nckd = _kl(F.log_softmax(student_logits / temperature + hide, -1),
               F.log_softmax(teacher_logits / temperature + hide, -1), mask=~target)
    return temperature ** 2 * (tckd_weight * tckd + nckd_weight * nckd)


def _binary_log(log_p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """log of (p_target, 1 - p_target) per row, computed without leaving log space."""
    log_target = log_p.masked_fill(~target, float("-inf")).logsumexp(-1)
    log_rest = log_p.masked_fill(target, float("-inf")).logsumexp(-1)
    return torch.stack([log_target, log_rest], dim=-1)


def _kl(log_student: torch.Tensor, log_teacher: torch.Tensor, mask=None) -> torch.Tensor:
    """``sum p_t (log p_t - log p_s)`` per row, averaged over rows; masked entries count as 0."""
    terms = log_teacher.exp() * (log_teacher - log_student)
    if mask is not None:
        terms = torch.where(mask, terms, torch.zeros_like(terms))  # 0 * (-inf + inf) would be NaN
    return terms.sum(-1).mean()


class DKD(LogitDistillation):
    """``(1 - alpha) * CE + alpha * ramp * DKD``; ``ramp`` rises linearly to 1 over ``warmup_epochs``."""

    name, soft_name = "dkd", "dkd"
    requires_every_label = True  # the target class must be known

    def __init__(self, temperature: float = 4.0, alpha: float = 0.5, *, tckd_weight: float = 1.0,
                 nckd_weight: float = 8.0, warmup_epochs: int = 0):
        super().__init__(temperature, alpha)
        self.tckd_weight = checks.non_negative_number("tckd_weight", tckd_weight)
        self.nckd_weight = checks.non_negative_number("nckd_weight", nckd_weight)
        self.warmup_epochs = checks.non_negative_int("warmup_epochs", warmup_epochs)
        self.ramp = 1.0

    def start_epoch(self, epoch: int) -> None:
        self.ramp = min(epoch / self.warmup_epochs, 1.0) if self.warmup_epochs else 1.0

    def check_inputs(self, student_logits, teacher_logits, labels):
        _refuse_unlabelled(labels)
        return super().check_inputs(student_logits, teacher_logits, labels)

    def soft_term(self, student_logits, teacher_logits, labels):
        return self.ramp * _dkd(student_logits, teacher_logits, labels, self.temperature,
                                self.tckd_weight, self.nckd_weight)

    def settings(self) -> dict:
        return {**super().settings(), "tckd_weight": self.tckd_weight, "nckd_weight": self.nckd_weight,
                "warmup_epochs": self.warmup_epochs}
