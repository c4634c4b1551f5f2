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
:class:`Adversarial` is the method: ``D`` and its optimizer belong to it, ``D``'s step is its
``before_student_step`` hook, and the one training loop (``distill_lib.loop``) does the rest.
Combine it with a KD method: every variant that works keeps a direct matching term.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from ..core import checks
from .base import Method, StepOutputs, StopTraining
from .kd import soft_targets

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


# ------------------------------------------------------------------ the method
class SaturationWatch:
    """True once ``D``'s accuracy was >= ``threshold`` at ``patience`` consecutive checks."""

    def __init__(self, threshold: float = 0.99, patience: int = 3):
        self.threshold = checks.fraction("saturation", threshold)
        self.patience = checks.positive_int("patience", patience)
        self.streak = 0

    def stuck(self, acc_teacher: float, acc_student: float) -> bool:
        saturated = (acc_teacher + acc_student) / 2 >= self.threshold
        self.streak = self.streak + 1 if saturated else 0
        return self.streak >= self.patience


class Adversarial(Method):
    """The student as a GAN generator against ``discriminator`` (module docstring).

    Its loss part is ``weight * BCE(D(p_s), 1)`` (``"adversarial"``), from epoch
    ``warmup_epochs + 1`` on; before that (and always with ``weight=0``) ``D`` only watches: it is
    trained every step, and its accuracy says how well the student's outputs can be told from the
    teacher's. ``D``'s own Adam optimizer (``disc_optimizer``) is made in ``prepare``; it is not
    part of the student's. Monitoring (per epoch, in ``History.stats``): ``disc_loss``,
    ``disc_acc_teacher``, ``disc_acc_student`` (measured before D's step), ``generator_loss``
    (``BCE(D(p_s), 1)`` with D before its step) and ``adv_weight`` (the weight in force).
    Training stops (``StopTraining``) when ``D``'s accuracy stays >= ``saturation`` for
    ``patience`` consecutive epochs while the term is on: ``D`` has won.
    """

    name = "adversarial"

    def __init__(self, discriminator: Discriminator, *, weight: float = 0.05, temperature: float = 4.0,
                 warmup_epochs: int = 2, d_lr: float = 1e-4, real_target: float = 0.9,
                 saturation: float = 0.99, patience: int = 3):
        super().__init__()
        if not isinstance(discriminator, Discriminator):
            raise ValueError(f"discriminator must be a distill_lib Discriminator; got {type(discriminator).__name__}")
        self.discriminator = discriminator
        self.weight = checks.non_negative_number("adv_weight", weight)
        self.temperature = checks.positive_number("temperature", temperature)
        self.warmup_epochs = checks.non_negative_int("warmup_epochs", warmup_epochs)
        self.d_lr = checks.positive_number("d_lr", d_lr)
        self.real_target = checks.fraction("real_target", real_target)
        self.watch = SaturationWatch(saturation, patience)
        self.active_weight, self.disc_optimizer = 0.0, None

    def part_names(self) -> tuple:
        return ("adversarial",)

    def student_parameters(self) -> list:
        return []  # D plays against the student: never in the student's optimizer

    def prepare(self, *, student_shapes: dict, teacher_shapes: dict, num_classes: int, seed: int) -> None:
        if num_classes != self.discriminator.num_classes:
            raise ValueError(f"the discriminator scores {self.discriminator.num_classes} classes, the models "
                             f"predict {num_classes}; build Discriminator({num_classes})")
        self.discriminator.train()
        # betas=(0.5, 0.999): the usual GAN setting (Radford et al. 2016); less momentum chasing a moving target
        self.disc_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=self.d_lr, betas=(0.5, 0.999),
                                               foreach=True)

    def start_epoch(self, epoch: int) -> None:
        self.active_weight = self.weight if epoch > self.warmup_epochs else 0.0

    def before_student_step(self, out: StepOutputs) -> dict:
        """D's step on its own loss; the student's probabilities go in DETACHED, so nothing of
        this loss reaches the student. One forward pass on both halves (one spectral-norm update).
        Nothing is kept for ``forward``: it softens the student's logits again (a softmax over a
        batch x classes, next to nothing), so the two hooks share no state."""
        p_teacher = soft_targets(out.teacher_logits, self.temperature)
        p_student = soft_targets(out.student_logits.detach(), self.temperature)
        labels = out.labels
        both = self.discriminator(torch.cat([p_teacher, p_student]), torch.cat([labels, labels]))
        real, fake = both.split(len(labels))
        d_loss = discriminator_loss(real, fake, real_target=self.real_target)
        if not torch.isfinite(d_loss):
            raise FloatingPointError(f"discriminator loss became {d_loss.item()}")
        self.disc_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        self.disc_optimizer.step()
        real, fake = real.detach(), fake.detach()
        return {"disc_loss": d_loss.detach(), "disc_acc_teacher": (real > 0).float().mean(),
                "disc_acc_student": (fake < 0).float().mean(), "generator_loss": generator_loss(fake)}

    def forward(self, out: StepOutputs) -> dict:
        if self.active_weight == 0:
            return {}
        p_student = soft_targets(out.student_logits, self.temperature)  # with its graph: the student learns here
        with frozen(self.discriminator):  # D passes gradients on to the student but keeps none
            return {"adversarial": self.active_weight * generator_loss(self.discriminator(p_student, out.labels))}

    def epoch_stats(self) -> dict:
        return {"adv_weight": self.active_weight}

    def end_epoch(self, epoch: int, history) -> None:
        if self.active_weight > 0 and self.watch.stuck(history.stats["disc_acc_teacher"][-1],
                                                       history.stats["disc_acc_student"][-1]):
            raise StopTraining(
                f"the discriminator has won: accuracy >= {self.watch.threshold} for {self.watch.patience} "
                f"consecutive epochs (at epoch {epoch}); its gradients no longer guide the student. Rein it "
                f"in (lower d_lr, now {self.d_lr}; spectral norm, input dropout, real_target < 1) or check "
                f"that the student learns at all.")

    @torch.inference_mode()
    def eval_metrics(self, student_logits, teacher_logits, labels) -> dict:
        """D's accuracies on the eval set (eval mode: no input dropout)."""
        self.discriminator.eval()
        try:
            real = self.discriminator(soft_targets(teacher_logits, self.temperature), labels)
            fake = self.discriminator(soft_targets(student_logits, self.temperature), labels)
        finally:
            self.discriminator.train()
        accuracy_teacher, accuracy_student = discriminator_accuracy(real, fake)
        return {"disc_acc_teacher": accuracy_teacher, "disc_acc_student": accuracy_student}

    def settings(self) -> dict:
        return {"adv_weight": self.weight, "temperature": self.temperature, "warmup_epochs": self.warmup_epochs,
                "d_lr": self.d_lr, "real_target": self.real_target, "conditional": self.discriminator.conditional,
                "saturation": self.watch.threshold, "patience": self.watch.patience}
