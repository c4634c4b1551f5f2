"""Notebook 04's experiments: adversarial distillation arms, and the one-backward-pass pitfall.

The method itself (discriminator, losses, its step) is ``distill_lib.methods.adversarial``; the
loop is ``distill_lib.loop``. Here: :func:`adversarial_distill`, which trains one arm of the
ablation (KD + adversarial term, or either alone), and :func:`adversarial_gradients`, which
measures what three ways of coding the two objectives do to each player's gradient.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core import checks
from ..methods import KD, Adversarial, Discriminator, combine, soft_targets
from ..methods.adversarial import discriminator_loss, frozen, generator_loss, grad_reverse
from ..loop import train


def adversarial_distill(student, teacher, train_set, *, discriminator: Discriminator, temperature: float = 4.0,
                        alpha: float = 0.9, kd_weight: float = 1.0, adv_weight: float = 0.05,
                        warmup_epochs: int = 2, d_lr: float = 1e-4, real_target: float = 0.9,
                        saturation: float = 0.99, patience: int = 3, **training):
    """One arm: ``kd_weight * KD(T, alpha) + adv_weight * generator loss`` through the one loop.

    ``kd_weight`` is 1 (the KD term is there) or 0 (adversarial only); ``adv_weight=0`` leaves
    the discriminator watching. ``training`` goes to :func:`distill_lib.loop.train` (epochs,
    batch_size, lr, seed, eval_set, ...). Returns the History (``history.stats`` holds D's view).
    """
    if isinstance(kd_weight, bool) or kd_weight not in (0, 1):
        raise ValueError(f"kd_weight must be 1 (the KD term on) or 0 (adversarial only); got {kd_weight!r}")
    if kd_weight == 0 and (adv_weight == 0 or warmup_epochs > 0):
        raise ValueError(f"kd_weight=0 (adversarial only) needs adv_weight > 0 and warmup_epochs=0 "
                         f"(the warm-up trains on the KD term alone); got adv_weight={adv_weight}, "
                         f"warmup_epochs={warmup_epochs}")
    epochs = training.get("epochs", 10)
    if adv_weight > 0 and isinstance(epochs, int) and warmup_epochs >= epochs:
        raise ValueError(f"warmup_epochs ({warmup_epochs}) must be < epochs ({epochs}), or the "
                         f"adversarial term never switches on")
    adversarial = Adversarial(discriminator, weight=adv_weight, temperature=temperature, warmup_epochs=warmup_epochs,
                              d_lr=d_lr, real_target=real_target, saturation=saturation, patience=patience)
    parts = ([KD(temperature=temperature, alpha=alpha)] if kd_weight else []) + [adversarial]
    return train(student, train_set, combine(*parts), teacher=teacher, **{"desc": "adversarial", **training})


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


def gradient_agreement(gradients: dict) -> list:
    """Rows [scheme, cos(student, correct), cos(D, correct), |student| / |correct|] from the
    output of :func:`adversarial_gradients` (first scheme = correct)."""
    (s_ok, d_ok), rows = next(iter(gradients.values())), []
    for scheme, (s_grad, d_grad) in gradients.items():
        rows.append([scheme, float(F.cosine_similarity(s_grad, s_ok, dim=0)),
                     float(F.cosine_similarity(d_grad, d_ok, dim=0)), float(s_grad.norm() / s_ok.norm())])
    return rows
