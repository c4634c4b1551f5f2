"""Adversarial distillation: the pieces (discriminator, losses, gradient reversal).

The GAN reading of distillation (Xu et al. 2017; Wang et al. AAAI 2018; Belagiannis et al.
2018): the *student* is the generator. For each input it produces an output distribution; an
auxiliary *discriminator* is shown the teacher's distributions ("real") and the student's
("fake") and learns to tell them apart; the student learns to fool it, on top of the usual
distillation loss. The discriminator is only a training aid and is thrown away afterwards.

Two objectives, two sets of parameters, two optimizers:

- discriminator ``D`` minimises ``BCE(D(p_t), 0.9) + BCE(D(p_s), 0)`` over ITS parameters only
  (``0.9``: one-sided label smoothing, so ``D`` cannot become arbitrarily confident);
- the student minimises ``kd_loss + w * BCE(D(p_s), 1)`` over ITS parameters only (the
  "non-saturating" generator loss of Goodfellow et al. 2014).

``p = softmax(logits / T)``: ``D`` sees softened probabilities, never raw logits, whose scale
alone would tell teacher from student. Adding ``D``'s loss to the student's loss and calling
``backward()`` once is NOT adversarial (each side then helps the other); a gradient-reversal
layer (:func:`grad_reverse`, Ganin & Lempitsky 2015) is the one-pass way to do it right.
The training loop is in :mod:`distill_lib.adversarial_train`.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from . import checks
from .losses import soft_targets

GENERATOR_LOSSES = ("non-saturating", "minimax")


class Discriminator(nn.Module):
    """An MLP that scores a class distribution: logit > 0 means "this came from the teacher".

    ``conditional=True`` also feeds the one-hot label, so ``D`` judges "is this the teacher's
    distribution *for this class*" (a label of -1, an unlabelled sample, feeds zeros).
    Spectral norm on every linear layer (Miyato et al. 2018) bounds how sharply ``D`` can react;
    input dropout keeps it from latching onto one probability. No output activation: the losses
    use BCE-with-logits, which is numerically stable.
    """

    def __init__(self, num_classes: int, *, hidden=(64, 64), conditional: bool = False,
                 spectral_norm: bool = True, input_dropout: float = 0.2, input_scale: float | None = None,
                 seed: int | None = None):
        super().__init__()
        checks.positive_int("num_classes", num_classes)
        for width in hidden:
            checks.positive_int("hidden entries", width)
        checks.fraction("input_dropout", input_dropout)
        self.num_classes, self.conditional = num_classes, bool(conditional)
        self.input_scale = float(num_classes if input_scale is None else checks.positive_number("input_scale", input_scale))
        with torch.random.fork_rng(devices=[]):  # a seeded D leaves the global RNG untouched
            if seed is not None:
                torch.manual_seed(checks.non_negative_int("seed", seed))
            self.net = _mlp(num_classes * (2 if conditional else 1), tuple(hidden), spectral_norm)
        self.input_dropout = nn.Dropout(input_dropout)

    def forward(self, probabilities: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """One logit per row of ``probabilities`` (N x num_classes)."""
        if probabilities.ndim != 2 or probabilities.shape[1] != self.num_classes:
            raise ValueError(f"probabilities must be N x {self.num_classes}; got {tuple(probabilities.shape)}")
        x = self.input_dropout((probabilities - 1 / self.num_classes) * self.input_scale)
        if self.conditional:
            if labels is None:
                raise ValueError("a conditional Discriminator needs labels (got labels=None)")
            x = torch.cat([x, one_hot_or_zeros(labels, self.num_classes).to(x.dtype)], dim=1)
        return self.net(x).squeeze(1)


def _mlp(width: int, hidden: tuple, spectral_norm: bool) -> nn.Sequential:
    wrap = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda layer: layer)
    layers = []
    for units in hidden:
        layers += [wrap(nn.Linear(width, units)), nn.LeakyReLU(0.2)]
        width = units
    return nn.Sequential(*layers, wrap(nn.Linear(width, 1)))


def one_hot_or_zeros(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """One-hot rows; an unlabelled sample (label -1) gets a row of zeros."""
    return F.one_hot(labels.clamp(min=0), num_classes) * (labels >= 0).unsqueeze(1)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, *,
                       real_target: float = 0.9) -> torch.Tensor:
    """``BCE(D(teacher), real_target) + BCE(D(student), 0)``, each averaged over its batch."""
    checks.fraction("real_target", real_target)
    real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, real_target))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def generator_loss(fake_logits: torch.Tensor, kind: str = "non-saturating") -> torch.Tensor:
    """The student's adversarial loss on ``D``'s logits for its own outputs.

    "non-saturating": ``BCE(D(p_s), 1) = mean(softplus(-d))``, strong gradients while ``D`` wins.
    "minimax": ``-BCE(D(p_s), 0) = -mean(softplus(d))``, the exact negative of ``D``'s fake term;
    what a gradient-reversal layer computes, and weak exactly when ``D`` is winning.
    """
    checks.one_of("kind", kind, GENERATOR_LOSSES)
    if kind == "non-saturating":
        return F.softplus(-fake_logits).mean()
    return -F.softplus(fake_logits).mean()


def discriminator_accuracy(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[float, float]:
    """(share of teacher outputs called "teacher", share of student outputs called "student")."""
    return float((real_logits > 0).float().mean()), float((fake_logits < 0).float().mean())


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output):
        return -ctx.scale * grad_output, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity going forward; multiplies the gradient by ``-scale`` going backward.

    Put between the student's output and ``D``: one ``backward()`` of ``D``'s loss then trains
    ``D`` to minimise it and the student to MAXIMISE it (scaled), which is the minimax game.
    """
    checks.non_negative_number("scale", scale)
    return _GradientReversal.apply(x, float(scale))


@contextlib.contextmanager
def frozen(module: nn.Module):
    """Within the block ``module``'s parameters get no gradients (it still passes them on)."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


# ------------------------------------------------------------------ the one-backward-pass pitfall
SCHEMES = ("two steps (correct)", "one backward of the sum", "one backward + gradient reversal")


def adversarial_gradients(student, discriminator, images, labels, teacher_logits, *, temperature: float,
                          adv_weight: float) -> dict:
    """Gradients of the ADVERSARIAL part only, on (student, D), under three ways to code it.

    - two steps (correct): ``D`` gets ``dL_D/dD`` with the student's outputs detached; the
      student gets ``w * d generator_loss / d student`` with ``D`` frozen;
    - one backward of the sum ``w * generator_loss + L_D``: each side also receives the other's
      gradient, so ``D`` is pushed to be fooled and the student to be caught;
    - one backward of ``L_D`` with :func:`grad_reverse` (scale ``w``) before ``D``: ``D`` gets
      exactly ``dL_D/dD``, the student ``-w * dL_D/d student`` (the minimax generator gradient).

    Returns ``{scheme: (student gradient, D gradient)}``, each flattened into one vector.
    """
    p_teacher = soft_targets(teacher_logits, temperature)  # checks temperature first
    checks.non_negative_number("adv_weight", adv_weight)

    def gradients(build_loss):
        student.zero_grad(set_to_none=True)
        discriminator.zero_grad(set_to_none=True)
        build_loss(soft_targets(student(images), temperature)).backward()
        return _flat_grad(student), _flat_grad(discriminator)

    def d_loss(p_student):
        return discriminator_loss(discriminator(p_teacher, labels), discriminator(p_student, labels))

    modes = student.training, discriminator.training
    student.eval(), discriminator.eval()  # no dropout: all schemes see the same forward pass
    try:
        d_only = gradients(lambda p: d_loss(p.detach()))[1]
        with frozen(discriminator):
            s_only = gradients(lambda p: adv_weight * generator_loss(discriminator(p, labels)))[0]
        return {
            SCHEMES[0]: (s_only, d_only),
            SCHEMES[1]: gradients(lambda p: adv_weight * generator_loss(discriminator(p, labels)) + d_loss(p)),
            SCHEMES[2]: gradients(lambda p: d_loss(grad_reverse(p, adv_weight))),
        }
    finally:
        student.zero_grad(set_to_none=True)
        discriminator.zero_grad(set_to_none=True)
        student.train(modes[0]), discriminator.train(modes[1])


def _flat_grad(module: nn.Module) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                      for p in module.parameters()])
