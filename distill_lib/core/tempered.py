"""Softened-softmax divergences at high temperature, computed without cancellation.

The distillation terms compare ``softmax(t / T)`` with ``softmax(s / T)``. At a large T both are
nearly uniform: their KL is of order 1 / T^2 while each log-probability is of order log C, so the
usual formula subtracts nearly equal numbers, and the T^2 factor then multiplies the rounding
error (in float32, T^2 * KL is off by about T^2 * 1e-7: 30% at T = 1e4, negative at 3e4).

Here the teacher's distribution is the student's tilted by the logit difference ``d = t - s``:
``p ∝ q * exp(d / T)`` with ``q = softmax(s / T)``. With ``u = d - E_q[d]`` and ``x = u / T``:

    T^2 A            = E_q[T^2 (exp(x) - 1 - x)]                    (>= 0, about Var_q(u) / 2)
    T^2 KL(p || q)   = E_q[u * T expm1(x)] / (1 + A) - T^2 log1p(A)
    T (p - q)        = q * (T expm1(x) - T A) / (1 + A)
    T log E_q[exp(d / T)] = E_q[d] + T log1p(A)

No step subtracts nearly equal numbers, and T enters only through ``T expm1(u / T)`` and
``T^2 (exp(x) - 1 - x)``, taken from their series near x = 0, so the results keep float64
precision for every finite T. As T grows they tend to the closed form of Hinton et al. (2015,
section 2.1): ``T^2 KL -> 0.5 * mean_classes((d - mean(d))^2)``. The identity needs |x| <= 1
(exp overflows far beyond); a row with larger centred differences (a moderate T) takes the
direct formula, in float64 as well.
"""
from __future__ import annotations

import torch

# Up to this temperature the methods keep their plain float32 formulas: their error (about
# T^2 * 1e-7) is negligible there, and the numbers measured with them stay the same to the bit.
PRECISE_ABOVE_T = 20.0


def kl_term(student_logits, teacher_logits, temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(t / T) || softmax(s / T))``, batch mean, in the student's dtype."""
    t2_kl, _, _ = _tempered_pair(student_logits, teacher_logits, temperature)
    return t2_kl.mean().to(student_logits.dtype)


def mse_soft_term(student_logits, teacher_logits, temperature: float) -> torch.Tensor:
    """``T^2 * sum_classes((softmax(s / T) - softmax(t / T))^2)``, batch mean, in the student's dtype."""
    _, _, gap = _tempered_pair(student_logits, teacher_logits, temperature)
    return gap.pow(2).sum(-1).mean().to(student_logits.dtype)


def decoupled_terms(student_logits, teacher_logits, target: torch.Tensor, temperature: float):
    """DKD's ``(T^2 * TCKD, T^2 * NCKD)``, batch means; ``target`` is the one-hot mask of the labels.

    NCKD compares the distributions over the non-target classes. TCKD compares the binary
    (target, rest) distributions, whose logits are the target's and the log-sum-exp of the rest;
    their difference for the rest is the tilt's ``T log E_q[exp(d / T)]`` over the non-target
    classes, taken from the NCKD computation instead of subtracting two large log-sum-exps.
    """
    s, t = student_logits.double(), teacher_logits.double()
    T = float(temperature)
    rest = ~target
    nckd, rest_shift, _ = tempered(s / T, t / T, t - s, T, mask=rest)
    hide = torch.zeros_like(s).masked_fill(target, float("-inf"))
    binary_student = torch.stack([(s * target).sum(-1) / T, torch.logsumexp(s / T + hide, -1)], -1)
    binary_teacher = torch.stack([(t * target).sum(-1) / T, torch.logsumexp(t / T + hide, -1)], -1)
    binary_diff = torch.stack([((t - s) * target).sum(-1), rest_shift], -1)
    tckd, _, _ = tempered(binary_student, binary_teacher, binary_diff, T)
    return tckd.mean(), nckd.mean()


def _tempered_pair(student_logits, teacher_logits, temperature):
    s, t = student_logits.double(), teacher_logits.double()
    T = float(temperature)
    return tempered(s / T, t / T, t - s, T)


def tempered(student_scaled, teacher_scaled, diff, temperature: float, mask=None):
    """Per row: ``(T^2 KL(p || q), T log E_q[exp(d / T)], T (p - q))`` for ``q = softmax(s / T)``
    and ``p = softmax(t / T)`` over the classes in ``mask`` (all when None).

    ``student_scaled`` and ``teacher_scaled`` are ``s / T`` and ``t / T``; ``diff`` is ``t - s`` in
    logit units, given separately because recovering it from the scaled logits would cancel.
    Float64 tensors; see the module docstring for the formulas.
    """
    T = float(temperature)
    mask = torch.ones_like(diff, dtype=torch.bool) if mask is None else mask
    log_q = torch.log_softmax(student_scaled.masked_fill(~mask, float("-inf")), -1)
    diff = diff.masked_fill(~mask, 0.0)
    with torch.no_grad():  # which rows the tilt identity serves (|x| <= 1 on every class)
        centred = diff - (log_q.exp() * diff).sum(-1, keepdim=True)
        near = (centred.abs() <= T).all(-1, keepdim=True)
    # Far rows get a zero difference in the tilt (so it stays finite) and the direct formula.
    results = _tilt(log_q, torch.where(near, diff, torch.zeros_like(diff)), T, mask)
    if bool(near.all()):
        return results
    direct = _direct(student_scaled, teacher_scaled, T, mask)
    return tuple(torch.where(near if r.ndim == 2 else near.squeeze(-1), r, o) for r, o in zip(results, direct))


def _tilt(log_q, diff, T: float, mask):
    q = log_q.exp()  # 0 outside the mask
    mean = (q * diff).sum(-1, keepdim=True)
    u = (diff - mean).masked_fill(~mask, 0.0)
    x = u / T
    t2_a = (q * u * u * _phi_over_x2(x)).sum(-1)  # T^2 A
    t_expm1 = u * _expm1_over_x(x)  # T expm1(x)
    t_a = t2_a / T
    a = t_a / T  # not t2_a / T**2: T**2 overflows for T > 1e154
    log1p_ratio = _log1p_over_x(a)
    t2_kl = (q * u * t_expm1).sum(-1) / (1 + a) - t2_a * log1p_ratio
    shift = mean.squeeze(-1) + t_a * log1p_ratio
    gap = q * (t_expm1 - t_a.unsqueeze(-1)) / (1 + a).unsqueeze(-1)
    return t2_kl, shift, gap


def _direct(student_scaled, teacher_scaled, T: float, mask):
    """The plain formulas (float64), for rows whose logits differ by more than T."""
    hidden = [z.masked_fill(~mask, float("-inf")) for z in (student_scaled, teacher_scaled)]
    log_q, log_p = (torch.log_softmax(z, -1) for z in hidden)
    p, q = log_p.exp(), log_q.exp()
    terms = torch.where(mask, p * (log_p - log_q), torch.zeros_like(p))  # 0 * (-inf + inf) would be NaN
    shift = T * (torch.logsumexp(hidden[1], -1) - torch.logsumexp(hidden[0], -1))
    return T * T * terms.sum(-1), shift, T * (p - q)


# ------------------------------------------------------------------ functions of x near 0
def _expm1_over_x(x):
    """``expm1(x) / x``, 1 at x = 0 (series below 1e-4: the next term is below 1e-18)."""
    small = x.abs() < 1e-4
    safe = torch.where(small, torch.ones_like(x), x)  # no 0 / 0, not even in the unused branch's gradient
    return torch.where(small, 1 + x * (1 / 2 + x * (1 / 6 + x / 24)), torch.expm1(safe) / safe)


def _phi_over_x2(x):
    """``(exp(x) - 1 - x) / x^2``, 1/2 at x = 0 (series below 1e-2, where the direct form cancels)."""
    small = x.abs() < 1e-2
    safe = torch.where(small, torch.ones_like(x), x)
    series = 1 / 2 + x * (1 / 6 + x * (1 / 24 + x * (1 / 120 + x * (1 / 720 + x / 5040))))
    return torch.where(small, series, (torch.expm1(safe) - safe) / (safe * safe))


def _log1p_over_x(a):
    """``log1p(a) / a`` for a >= 0, 1 at a = 0 (series below 1e-4)."""
    small = a < 1e-4
    safe = torch.where(small, torch.ones_like(a), a)
    return torch.where(small, 1 - a * (1 / 2 - a * (1 / 3 - a / 4)), torch.log1p(safe) / safe)
