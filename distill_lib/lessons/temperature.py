"""Temperature, soft targets and the gradients of the KD loss: the analysis behind notebook 02.

Softmax with temperature T turns logits ``z`` into ``p_i = exp(z_i / T) / sum_j exp(z_j / T)``:
T = 1 is the ordinary softmax, T -> 0 the one-hot argmax, large T the uniform distribution. At a
moderate T the small probabilities a teacher gives to *wrong* classes become visible; Hinton,
Vinyals & Dean (2015) call this the "dark knowledge" a student learns from.

Gradients (per sample, student logits ``s``, teacher logits ``t``, N classes):

- ``d KL(p_t^T || p_s^T) / d s = (p_s^T - p_t^T) / T``, whose size shrinks like ``1 / T^2`` at
  high T; multiplying the loss by ``T^2`` keeps the soft term's weight independent of T.
- For large T and zero-mean logits, ``T^2 * (p_s^T - p_t^T) / T -> (s - t) / N``: the gradient
  of logit matching ``0.5 * mean_i (s_i - t_i)^2`` (Hinton et al. 2015, section 2.1).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..core import checks
from ..methods import logit_method
from ..methods.kd import kl_soft_term, soft_targets


def entropy_bits(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in bits along the last axis (``0 log 0 = 0``); at most ``log2(N)``."""
    return -torch.special.xlogy(probs, probs).sum(dim=-1) / math.log(2)


def _check_temperatures(temperatures) -> list:
    temperatures = list(temperatures)
    if not temperatures:
        raise ValueError("temperatures must hold at least one temperature; got an empty list")
    for value in temperatures:
        checks.positive_number("temperature", value)
    return temperatures


def _check_logits(name: str, logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[1] < 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"{name} must be a 2-D tensor (samples x classes, >= 2 classes); got {shape}")


def entropy_vs_temperature(logits: torch.Tensor, temperatures) -> torch.Tensor:
    """Entropy in bits of ``softmax(logits / T)`` for every T (rows) and sample (columns)."""
    _check_logits("logits", logits)
    temperatures = _check_temperatures(temperatures)
    return torch.stack([entropy_bits(soft_targets(logits.float(), t)) for t in temperatures])


def class_similarity(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Row c: the mean soft target ``softmax(logits / T)`` over the samples whose label is c.

    Off-diagonal mass says which wrong classes the model finds similar to class c. A class with
    no sample gets a row of NaN.
    """
    _check_logits("logits", logits)
    num_classes = logits.shape[1]
    if labels.shape != logits.shape[:1] or (labels < 0).any() or (labels >= num_classes).any():
        raise ValueError(f"labels must hold one class index in [0, {num_classes - 1}] per row of logits "
                         f"({logits.shape[0]} rows); got shape {tuple(labels.shape)}")
    probs = soft_targets(logits.float(), temperature)
    rows = [probs[labels == c].mean(dim=0) for c in range(num_classes)]  # empty class -> NaN row
    return torch.stack(rows)


def most_similar_classes(similarity: torch.Tensor, classes, label: int, k: int = 3) -> list:
    """The ``k`` wrong classes with the most mean probability for true class ``label``: [(name, p)]."""
    checks.one_of("label", label, range(len(classes)))
    checks.positive_int("k", k)
    row = similarity[label].clone()
    row[label] = -1.0  # the right class is not "dark" knowledge
    order = row.argsort(descending=True)[:k]
    return [(classes[i], float(row[i])) for i in order]


# ------------------------------------------------------------------ gradients of the soft term
def soft_term_gradient(student_logits, teacher_logits, temperature: float, *, kind: str = "kl",
                       t2_factor: bool = True) -> torch.Tensor:
    """Per-sample gradient of a soft term (a logit method's ``soft_term``, by its registry name)
    w.r.t. the student's logits.

    The losses average over the batch, so the batch gradient times the batch size is the
    gradient of each sample's own loss. ``t2_factor=False`` removes the T^2 factor of "kl" and
    "mse-soft" (the form without Hinton's correction); "mse-logits" has no such factor.
    """
    method = logit_method(kind, temperature=temperature, alpha=1.0)
    _check_logits("student_logits", student_logits)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student_logits {tuple(student_logits.shape)} and teacher_logits "
                         f"{tuple(teacher_logits.shape)} must have the same shape")
    method.check_inputs(student_logits, teacher_logits, None)  # "dkd" is refused: it needs labels
    student = student_logits.detach().double().requires_grad_(True)
    loss = method.soft_term(student, teacher_logits.detach().double(), None)
    if not t2_factor and kind != "mse-logits":
        loss = loss / temperature ** 2
    (gradient,) = torch.autograd.grad(loss, student)
    return gradient * student.shape[0]


def gradient_scale(student_logits, teacher_logits, labels, temperatures) -> dict:
    """Mean per-sample gradient norm of the soft term at each T, with and without the T^2 factor,
    and of the hard term ``CE(s, labels)`` (which does not depend on T), for comparison."""
    temperatures = _check_temperatures(temperatures)

    def mean_norm(gradient):
        return float(gradient.norm(dim=1).mean())

    student = student_logits.detach().double().requires_grad_(True)
    (hard,) = torch.autograd.grad(F.cross_entropy(student, labels), student)
    return {
        "temperatures": temperatures,
        "with_t2": [mean_norm(soft_term_gradient(student_logits, teacher_logits, t)) for t in temperatures],
        "without_t2": [mean_norm(soft_term_gradient(student_logits, teacher_logits, t, t2_factor=False))
                       for t in temperatures],
        "hard": mean_norm(hard * student.shape[0]),
    }


def logit_matching_gradient(student_logits, teacher_logits) -> torch.Tensor:
    """``(s - t) / N`` per sample: the gradient of ``0.5 * mean_i (s_i - t_i)^2`` (Ba & Caruana)."""
    return (student_logits.double() - teacher_logits.double()) / student_logits.shape[1]


def centre(logits: torch.Tensor) -> torch.Tensor:
    """Logits shifted to zero mean per sample (softmax does not change: it ignores shifts)."""
    return logits - logits.mean(dim=-1, keepdim=True)


def high_temperature_gap(student_logits, teacher_logits, temperatures) -> list:
    """Relative distance ``|T^2 grad_KL - (s - t)/N| / |(s - t)/N|`` at each T (pooled over samples).

    Tends to 0 as T grows when both logit vectors have zero mean (Hinton et al. 2015, sec. 2.1);
    otherwise it tends to the share of ``s - t`` that is a constant shift, which softmax ignores.
    """
    temperatures = _check_temperatures(temperatures)
    target = logit_matching_gradient(student_logits, teacher_logits)
    gaps = []
    for t in temperatures:
        kl = soft_term_gradient(student_logits, teacher_logits, t)  # includes the T^2 factor
        gaps.append(float((kl - target).norm() / target.norm()))
    return gaps


def loss_split(student_logits, teacher_logits, labels, *, temperature: float, alpha: float) -> dict:
    """The two parts of the KD loss (batch means): ``hard = (1 - alpha) * CE`` and
    ``soft = alpha * T^2 * KL``, their sum ``total``, and the unweighted ``ce`` and ``kl``."""
    checks.positive_number("temperature", temperature)
    checks.fraction("alpha", alpha)
    ce = float(F.cross_entropy(student_logits.float(), labels))
    kl = float(kl_soft_term(student_logits.float(), teacher_logits.float(), temperature)) / temperature ** 2
    hard, soft = (1 - alpha) * ce, alpha * temperature ** 2 * kl
    return {"ce": ce, "kl": kl, "hard": hard, "soft": soft, "total": hard + soft}


def dark_knowledge_profile(logits: torch.Tensor, labels: torch.Tensor, temperatures, *, nearest: int = 2) -> dict:
    """Where the teacher's wrong-class probability sits, at each T.

    - ``wrong_mass``: the mean probability on the wrong classes (the "dark" part of a soft target);
    - ``nearest_share``: the share of that mass on each true class's ``nearest`` most similar wrong
      classes (ranked by :func:`class_similarity` at T = 1): the similarity structure, to hold
      against ``uniform_share`` = ``nearest / (N - 1)``, the share of a floor that says nothing;
    - ``least_confident_share``: the share of the wrong mass carried by the tenth of the images on
      which the teacher is least confident (at T = 1).
    """
    _check_logits("logits", logits)
    temperatures = _check_temperatures(temperatures)
    checks.positive_int("nearest", nearest)
    num_classes = logits.shape[1]
    if nearest >= num_classes - 1:
        raise ValueError(f"nearest must be below the number of wrong classes ({num_classes - 1}); got {nearest}")
    similarity = class_similarity(logits, labels, 1.0)
    similarity.fill_diagonal_(-1.0)  # the right class is no neighbour of itself
    near = similarity.topk(nearest, dim=1).indices[labels]  # per image: its class's nearest wrong classes
    confidence = soft_targets(logits.float(), 1.0).max(dim=1).values
    least_confident = confidence.argsort()[: max(1, len(confidence) // 10)]
    out = {"temperatures": temperatures, "wrong_mass": [], "nearest_share": [], "least_confident_share": [],
           "uniform_share": nearest / (num_classes - 1)}
    for t in temperatures:
        probs = soft_targets(logits.float(), t)
        wrong = 1 - probs.gather(1, labels[:, None]).squeeze(1)
        out["wrong_mass"].append(float(wrong.mean()))
        out["nearest_share"].append(float(probs.gather(1, near).sum() / wrong.sum()))
        out["least_confident_share"].append(float(wrong[least_confident].sum() / wrong.sum()))
    return out
