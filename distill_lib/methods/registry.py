"""The one registry of distillation methods: every name the library accepts for a method or a loss
is a key of :data:`METHODS`, and each is reached the same three ways:

- ``get_method(name, **options)``: the method object, for ``dl.train`` (and ``combine``);
- ``distill(..., loss=name)``: the logit methods (``LOGIT_LOSSES``), through ``logit_method``;
- ``get_loss(name, **options)``: a logit method as a plain function of tensors,
  ``loss(student_logits, teacher_logits, labels, *, temperature, alpha)``, what a notebook or
  ``dl.audit_kd_loss`` calls on one batch.

Adding a method is its file and one line here.
"""
from __future__ import annotations

import inspect

from ..core import checks
from . import adversarial, attention, ce, data_free, dkd, hint, kd
from .base import Method
from .kd import LogitDistillation

# name -> class. The logit methods ("kl", "mse-logits", "mse-soft", "dkd") are what
# ``distill(loss=...)`` and ``get_loss`` accept; the others are combined with one of them (or "ce").
METHODS = {
    "ce": ce.CrossEntropy,
    "kl": kd.KD,
    "mse-logits": kd.LogitMSE,
    "mse-soft": kd.ProbabilityMSE,
    "dkd": dkd.DKD,
    "hint": hint.Hint,
    "attention": attention.AttentionTransfer,
    "adversarial": adversarial.Adversarial,
    "data-free": data_free.DataFree,
}
LOGIT_LOSSES = tuple(name for name, cls in METHODS.items() if issubclass(cls, LogitDistillation))


def get_method(name: str, **options) -> Method:
    """A new method by registry name, e.g. ``get_method("dkd", temperature=4, alpha=0.5)``."""
    checks.one_of("method", name, list(METHODS))
    allowed = [p for p in inspect.signature(METHODS[name]).parameters if p != "self"]
    unknown = sorted(set(options) - set(allowed))
    if unknown:  # named alone: the options the method does take are not the problem
        raise ValueError(f"method {name!r} has no option {', '.join(map(repr, unknown))} (given "
                         f"{ {k: options[k] for k in unknown} }); its options: {', '.join(allowed)}")
    try:
        return METHODS[name](**options)
    except TypeError as error:  # a missing option
        raise ValueError(f"method {name!r}: {error}; its options: {', '.join(allowed)}") from None


def logit_method(loss: str, *, temperature: float, alpha: float, **options) -> LogitDistillation:
    """The logit method ``distill(loss=...)`` trains with: ``(1 - alpha) * CE + alpha * soft``."""
    checks.one_of("loss", loss, LOGIT_LOSSES)
    return get_method(loss, temperature=temperature, alpha=alpha, **options)


def get_loss(name: str, **options):
    """The logit method ``name`` as a function ``(student_logits, teacher_logits, labels, *,
    temperature, alpha) -> loss``: ``(1 - alpha) * CE + alpha * soft``, the inputs checked first.
    ``options`` are the method's own (``get_loss("dkd", nckd_weight=8.0)``), checked here."""
    logit_method(name, temperature=1.0, alpha=0.5, **options)  # refuse a bad name or option now, not per call

    def loss(student_logits, teacher_logits, labels, *, temperature, alpha):
        method = logit_method(name, temperature=temperature, alpha=alpha, **options)
        return method.loss(student_logits, teacher_logits, labels)

    loss.__name__ = f"{name.replace('-', '_')}_loss"
    return loss
