"""The adversarial distillation loop: the student (generator) against a discriminator.

Each step, in this order (the pieces are in :mod:`distill_lib.adversarial`):

1. the student's logits on the batch; the teacher's come from the logit cache (one pass);
2. a discriminator step on ``D``'s loss, with the student's outputs DETACHED, so that loss
   cannot reach the student's parameters; ``D`` has its own Adam optimizer;
3. a student step on ``kd_weight * kd_loss + w * generator_loss`` with ``D`` FROZEN, so that
   loss cannot reach ``D``'s parameters; the student has its own optimizer and schedule.

``w`` is 0 for the first ``warmup_epochs`` (plain KD) and ``adv_weight`` after. ``D`` is trained
in every run, even with ``w = 0``: it then only watches, and its accuracy says how well the
student's outputs can be told from the teacher's. The loop stops with ``TrainingDiverged``
(carrying the history so far) on a non-finite loss, or when ``D`` stays above ``saturation``
accuracy for ``patience`` consecutive epoch-end checks while the adversarial term is on: ``D``
has then won and its gradients no longer guide the student.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from . import cache, checks
from .adversarial import (Discriminator, discriminator_accuracy, discriminator_loss, frozen,
                          generator_loss)
from .batches import TensorBatches
from .evaluate import metrics_from_logits, predict_logits
from .losses import kd_loss, soft_targets
from .progress import Progress
from .train import (History, TrainingDiverged, autocast, check_training_args, make_optimizer, make_schedule,
                    prepare_model, progress_fields, resolve_device)

STATS = ("train_loss", "match_loss", "generator_loss", "disc_loss", "disc_acc_teacher", "disc_acc_student")


@dataclass
class AdversarialHistory(History):
    """Per-epoch means over the training batches (``D``'s accuracies measured before its step),
    the adversarial weight in force, evaluation metrics (with ``D``'s held-out accuracies)."""
    # train_loss (the student's whole objective), eval_metrics, epoch_seconds, final and config
    # come from History, as do curve(), seconds and to_dict().
    match_loss: list = field(default_factory=list)        # its kd_weight * (CE + KD) part
    generator_loss: list = field(default_factory=list)    # BCE(D(p_s), 1), before weighting
    disc_loss: list = field(default_factory=list)
    disc_acc_teacher: list = field(default_factory=list)  # teacher outputs called "teacher"
    disc_acc_student: list = field(default_factory=list)  # student outputs called "student"
    adv_weight: list = field(default_factory=list)


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


def adversarial_step(student, discriminator, student_opt, disc_opt, images, labels, teacher_logits, *,
                     temperature: float, alpha: float, kd_weight: float, adv_weight: float,
                     real_target: float = 0.9) -> torch.Tensor:
    """One discriminator step, then one student step (module docstring). Returns the STATS as
    one tensor. After it, each model's ``.grad`` holds the gradient of its own objective only."""
    with autocast(images.device):
        student_logits = student(images).float()
    p_teacher, p_student = soft_targets(teacher_logits, temperature), soft_targets(student_logits, temperature)
    real, fake, d_loss = discriminator_step(discriminator, disc_opt, p_teacher, p_student, labels, real_target)
    match = adversarial = student_logits.new_zeros(())
    if kd_weight > 0:  # skipped at 0: 0 * a non-finite KD loss would still be NaN
        match = kd_weight * kd_loss(student_logits, teacher_logits, labels, temperature=temperature, alpha=alpha)
    if adv_weight > 0:
        with frozen(discriminator):  # D passes gradients on to the student but keeps none
            adversarial = generator_loss(discriminator(p_student, labels))
    loss = match + adv_weight * adversarial
    _finite_or_raise("student loss", loss)
    student_opt.zero_grad(set_to_none=True)
    loss.backward()
    student_opt.step()
    monitored = adversarial.detach() if adv_weight > 0 else generator_loss(fake)  # D before its step
    return torch.stack([loss.detach(), match.detach(), monitored, d_loss, (real > 0).float().mean(),
                        (fake < 0).float().mean()])


def discriminator_step(discriminator, disc_opt, p_teacher, p_student, labels, real_target: float = 0.9):
    """Update ``D`` on its own loss; the student's probabilities go in DETACHED, so nothing of
    this loss reaches the student. One forward pass on both halves (one spectral-norm update).
    Returns D's logits on the teacher and student halves, and its loss, all detached."""
    both = discriminator(torch.cat([p_teacher, p_student.detach()]), torch.cat([labels, labels]))
    real, fake = both.split(len(labels))
    d_loss = discriminator_loss(real, fake, real_target=real_target)
    _finite_or_raise("discriminator loss", d_loss)
    disc_opt.zero_grad(set_to_none=True)
    d_loss.backward()
    disc_opt.step()
    return real.detach(), fake.detach(), d_loss.detach()


def _finite_or_raise(what: str, value: torch.Tensor) -> None:
    if not torch.isfinite(value):
        raise FloatingPointError(f"{what} became {value.item()}")


def _check_adversarial(discriminator, temperature, alpha, kd_weight, adv_weight, warmup_epochs, epochs,
                       d_lr, real_target) -> None:
    if not isinstance(discriminator, Discriminator):
        raise ValueError(f"discriminator must be a distill_lib.adversarial.Discriminator; got {type(discriminator).__name__}")
    checks.positive_number("temperature", temperature)
    checks.fraction("alpha", alpha)
    checks.non_negative_number("kd_weight", kd_weight)
    checks.non_negative_number("adv_weight", adv_weight)
    checks.non_negative_int("warmup_epochs", warmup_epochs)
    checks.positive_number("d_lr", d_lr)
    checks.fraction("real_target", real_target)
    if kd_weight == 0 and (adv_weight == 0 or warmup_epochs > 0):
        raise ValueError(f"kd_weight=0 (adversarial only) needs adv_weight > 0 and warmup_epochs=0 "
                         f"(the warm-up trains on the KD term alone); got adv_weight={adv_weight}, "
                         f"warmup_epochs={warmup_epochs}")
    if adv_weight > 0 and warmup_epochs >= epochs:
        raise ValueError(f"warmup_epochs ({warmup_epochs}) must be < epochs ({epochs}), or the "
                         f"adversarial term never switches on")


def _evaluator(student, discriminator, eval_set, eval_teacher_logits, temperature, device):
    """Student metrics on ``eval_set`` plus ``D``'s accuracies there (eval mode: no dropout)."""
    if eval_set is None:
        return lambda: {}

    # the same every epoch: only the student and D change
    labels = eval_set.labels.to(device)
    p_teacher = soft_targets(eval_teacher_logits.to(device), temperature)

    def evaluate_now():
        logits = predict_logits(student, eval_set.images, device=device)
        metrics = metrics_from_logits(logits, eval_set.labels, eval_teacher_logits)
        discriminator.eval()
        with torch.inference_mode():
            real = discriminator(p_teacher, labels)
            fake = discriminator(soft_targets(logits.to(device), temperature), labels)
        discriminator.train()
        metrics["disc_acc_teacher"], metrics["disc_acc_student"] = discriminator_accuracy(real, fake)
        return metrics
    return evaluate_now


def adversarial_distill(student, teacher, train_set, *, discriminator: Discriminator, temperature: float = 4.0,
                        alpha: float = 0.9, kd_weight: float = 1.0, adv_weight: float = 0.05,
                        warmup_epochs: int = 2, epochs: int = 15, batch_size: int = 128, lr: float = 1e-3,
                        weight_decay: float = 5e-4, d_lr: float = 1e-4, real_target: float = 0.9,
                        saturation: float = 0.99, patience: int = 3, device="auto", seed: int = 0,
                        eval_set=None, optimizer: str = "adam", schedule: str = "onecycle",
                        progress: str | None = None, desc: str = "adversarial") -> AdversarialHistory:
    """Distil ``teacher`` into ``student`` with a discriminator in the loop (module docstring).

    The student's loss: ``kd_weight * kd_loss(T, alpha) + w * generator_loss`` with the library's
    KD convention ``(1 - alpha) * CE + alpha * T^2 * KL``; ``alpha=0, adv_weight=0`` is plain
    cross-entropy, ``kd_weight=0`` is adversarial only. The teacher's logits are cached (no
    augmentation here), so five runs on the same data cost one teacher pass.
    """
    check_training_args(epochs, batch_size, lr, weight_decay, seed, optimizer, schedule)
    _check_adversarial(discriminator, temperature, alpha, kd_weight, adv_weight, warmup_epochs, epochs,
                       d_lr, real_target)
    watch = SaturationWatch(saturation, patience)
    device = resolve_device(device)
    torch.manual_seed(seed)  # D's input dropout draws from the global RNG
    student, discriminator = prepare_model(student, device).train(), discriminator.to(device).train()
    teacher = prepare_model(teacher, device).eval()
    train_logits = cache.teacher_logits(teacher, train_set, device=device).to(device)
    eval_logits = cache.teacher_logits(teacher, eval_set, device=device) if eval_set is not None else None
    batches = TensorBatches(train_set.images, train_set.labels, batch_size=batch_size, device=device, seed=seed)
    student_opt = make_optimizer(student.parameters(), optimizer, lr, weight_decay)
    student_schedule = make_schedule(student_opt, schedule, lr, epochs * len(batches))
    # betas=(0.5, 0.999): the usual GAN setting (Radford et al. 2016); less momentum chasing a moving target
    disc_opt = torch.optim.Adam(discriminator.parameters(), lr=d_lr, betas=(0.5, 0.999), foreach=True)
    settings = dict(temperature=temperature, alpha=alpha, kd_weight=kd_weight, real_target=real_target)
    history = AdversarialHistory(config={
        "kind": "adversarial", **settings, "adv_weight": adv_weight, "warmup_epochs": warmup_epochs,
        "conditional": discriminator.conditional, "epochs": epochs, "batch_size": batch_size, "lr": lr,
        "weight_decay": weight_decay, "d_lr": d_lr, "saturation": saturation, "patience": patience,
        "seed": seed, "optimizer": optimizer, "schedule": schedule})
    evaluate_now = _evaluator(student, discriminator, eval_set, eval_logits, temperature, device)

    def step(images, labels, index, weight):
        stats = adversarial_step(student, discriminator, student_opt, disc_opt, images, labels,
                                 train_logits[index], adv_weight=weight, **settings)
        student_schedule.step()
        return stats

    with Progress(epochs * len(batches), desc, progress) as bar:
        for epoch in range(1, epochs + 1):
            weight = adv_weight if epoch > warmup_epochs else 0.0
            _run_epoch(step, batches, weight, history, bar, f"{desc}: epoch {epoch}")
            history.eval_metrics.append(evaluate_now())
            bar.update(0, epoch=epoch, loss=history.train_loss[-1], d_acc_t=history.disc_acc_teacher[-1],
                       d_acc_s=history.disc_acc_student[-1], **progress_fields(history.eval_metrics[-1]))
            if weight > 0 and watch.stuck(history.disc_acc_teacher[-1], history.disc_acc_student[-1]):
                raise TrainingDiverged(_won_message(desc, watch, epoch, d_lr, lr), history)
    history.final = dict(history.eval_metrics[-1])
    return history


def _run_epoch(step, batches, weight, history, bar, where) -> None:
    started, total = time.perf_counter(), None
    for count, (images, labels, index) in enumerate(batches, start=1):
        try:
            stats = step(images, labels, index, weight)
        except FloatingPointError as error:
            raise TrainingDiverged(f"{where}, step {count}: {error}; training stopped. Try a lower lr "
                                   f"or d_lr, or a smaller adv_weight.", history) from None
        total = stats if total is None else total + stats
        bar.update(1)
    for name, value in zip(STATS, (total / len(batches)).tolist()):
        getattr(history, name).append(value)
    history.adv_weight.append(weight)
    history.epoch_seconds.append(time.perf_counter() - started)


def _won_message(desc, watch, epoch, d_lr, lr) -> str:
    return (f"{desc}: the discriminator has won: accuracy >= {watch.threshold} for {watch.patience} "
            f"consecutive epochs (at epoch {epoch}); its gradients no longer guide the student. Rein it "
            f"in (lower d_lr, now {d_lr}; spectral norm, input dropout, real_target < 1) or check that "
            f"the student learns at all (lr now {lr}).")

