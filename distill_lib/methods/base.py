"""What a distillation method is, for the one training loop (``distill_lib.loop``).

A method is an ``nn.Module`` that, for one batch, turns the student's and the teacher's outputs
(:class:`StepOutputs`: logits, the features it asked for, the labels) into **named loss parts**;
the loop sums them, calls ``backward()`` once and steps the student's optimizer. A method may own

- trainable modules that learn *with* the student (a hint regressor): its ``parameters()``, which
  the loop hands to the student's optimizer (``student_parameters()``);
- players with an objective of their *own* (a discriminator): they are kept out of the student's
  optimizer and updated in ``before_student_step``, the one hook for an extra update.

Everything else (progress, timing, evaluation, the divergence stop, History) is the loop's.
Adding a method = one file with a subclass + one line in the registry (``methods/registry.py``).

The order in which a method is called, by ``combine`` and then by ``distill_lib.loop.train``
(every hook but ``forward`` is optional):

0. ``part_names()`` when methods are combined, so that a clash of names is refused early;
1. once, before any work: ``student_stages()`` and ``teacher_stages()`` (the teacher's are
   computed with its cached logits), then ``prepare(...)`` with the stages' shapes (build a
   regressor, a discriminator's optimizer), then ``.to(device)``, ``settings()`` (recorded in
   ``History.config``) and ``student_parameters()`` (handed to the student's optimizer);
2. each epoch, ``start_epoch(epoch)``; then for each batch, after the student's forward pass:
   ``before_student_step(out)`` (the method's own update), then ``forward(out)`` (the loss
   parts), then the loop's ``backward()`` and the student's optimizer step;
3. after each epoch's batches: ``epoch_stats()``, then, with an eval set and a teacher,
   ``eval_metrics(...)`` on the eval set, then ``end_epoch(epoch, history)``, which may stop training.

``before_student_step`` and ``forward`` receive the same :class:`StepOutputs`; they should not
hand each other values through attributes: what both need is recomputed from ``out`` (state that
lives across steps, a warm-up weight or a saturation streak, is set in ``start_epoch`` or
``end_epoch``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class StepOutputs:
    """What one training step hands to a method (tensors on the training device)."""

    student_logits: torch.Tensor
    labels: torch.Tensor  # class indices; -1 marks an unlabelled image
    teacher_logits: torch.Tensor | None = None
    student_features: dict = field(default_factory=dict)  # stage name -> output, when asked for
    teacher_features: dict = field(default_factory=dict)


class StopTraining(Exception):
    """Raised by a method that says training cannot go on (the loop keeps the history)."""


class Method(nn.Module):
    """Base class: override ``forward`` (the loss parts) and, where needed, the hooks below."""

    name = "method"
    needs_teacher = True  # False for plain cross-entropy: no teacher pass at all
    requires_every_label = False  # True when unlabelled images (label -1) cannot be used

    # ------------------------------------------------------------ what the loop must provide
    def student_stages(self) -> tuple:
        """Stages of the student whose outputs ``forward`` reads (``StepOutputs.student_features``)."""
        return ()

    def teacher_stages(self) -> tuple:
        """Stages of the teacher whose outputs ``forward`` reads (cached with its logits)."""
        return ()

    # ------------------------------------------------------------ the objective
    def part_names(self) -> tuple:
        """The names ``forward`` may return, so a combination can refuse a clash before training."""
        return ()

    def forward(self, out: StepOutputs) -> dict:
        """The named, weighted loss parts of this batch; the student minimises their sum."""
        raise NotImplementedError

    # ------------------------------------------------------------ hooks (all optional)
    def prepare(self, *, student_shapes: dict, teacher_shapes: dict, num_classes: int, seed: int) -> None:
        """Build what depends on the models' shapes (a regressor), before any optimizer exists."""

    def student_parameters(self) -> list:
        """Parameters optimised together with the student: by default all of this module's."""
        return list(self.parameters())

    def start_epoch(self, epoch: int) -> None:
        """Called before each epoch (1-based): warm-ups switch terms on here."""

    def before_student_step(self, out: StepOutputs) -> dict:
        """An extra update of the method's own players, before the student's step (the
        discriminator's); returns monitoring values (tensors) that History averages per epoch."""
        return {}

    def epoch_stats(self) -> dict:
        """Values that hold for a whole epoch (a weight in force), recorded in ``History.stats``."""
        return {}

    def end_epoch(self, epoch: int, history) -> None:
        """Called after each epoch's evaluation; raise :class:`StopTraining` to stop."""

    def eval_metrics(self, student_logits, teacher_logits, labels) -> dict:
        """Extra evaluation metrics on the eval set (all tensors on the training device)."""
        return {}

    def settings(self) -> dict:
        """Plain values describing the method, recorded in ``History.config``."""
        return {}


class Combined(Method):
    """Several methods trained as one objective: their parts are summed; names must not repeat."""

    name = "combined"

    def __init__(self, *methods: Method):
        super().__init__()
        if not methods:
            raise ValueError("combine needs at least one method")
        for method in methods:
            if not isinstance(method, Method):
                raise ValueError(f"combine takes distill_lib methods; got {type(method).__name__}")
        names = [name for method in methods for name in method.part_names()]
        clashes = sorted({name for name in names if names.count(name) > 1})
        if clashes:
            raise ValueError(f"two combined methods both return a loss part named {clashes[0]!r}; "
                             f"combine each term once (e.g. one method with a 'ce' part)")
        self.members = nn.ModuleList(methods)
        self.needs_teacher = any(m.needs_teacher for m in methods)
        self.requires_every_label = any(m.requires_every_label for m in methods)

    def part_names(self) -> tuple:
        return tuple(name for m in self.members for name in m.part_names())

    def student_stages(self) -> tuple:
        return tuple(dict.fromkeys(s for m in self.members for s in m.student_stages()))

    def teacher_stages(self) -> tuple:
        return tuple(dict.fromkeys(s for m in self.members for s in m.teacher_stages()))

    def forward(self, out: StepOutputs) -> dict:
        parts: dict = {}
        for method in self.members:
            for name, value in method(out).items():
                if name in parts:
                    raise ValueError(f"two combined methods both return a loss part named {name!r}; "
                                     f"combine each term once (e.g. one method with a 'ce' part)")
                parts[name] = value
        return parts

    def prepare(self, **shapes) -> None:
        for method in self.members:
            method.prepare(**shapes)

    def student_parameters(self) -> list:
        return [p for m in self.members for p in m.student_parameters()]

    def start_epoch(self, epoch: int) -> None:
        for method in self.members:
            method.start_epoch(epoch)

    def before_student_step(self, out: StepOutputs) -> dict:
        return {k: v for m in self.members for k, v in m.before_student_step(out).items()}

    def epoch_stats(self) -> dict:
        return {k: v for m in self.members for k, v in m.epoch_stats().items()}

    def end_epoch(self, epoch: int, history) -> None:
        for method in self.members:
            method.end_epoch(epoch, history)

    def eval_metrics(self, student_logits, teacher_logits, labels) -> dict:
        return {k: v for m in self.members for k, v in m.eval_metrics(student_logits, teacher_logits, labels).items()}

    def settings(self) -> dict:
        return {"methods": [{"name": m.name, **m.settings()} for m in self.members]}


def combine(*methods: Method) -> Method:
    """One objective from several methods, e.g. ``combine(KD(T=4, alpha=0.5), Hint(...))``."""
    return methods[0] if len(methods) == 1 else Combined(*methods)
