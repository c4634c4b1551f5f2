"""Distillation methods, one file each, and the registry that names them.

A method (see :mod:`.base`) turns the student's and the teacher's outputs on a batch into named
loss parts, owns its extra modules (a hint regressor, a discriminator) and, only where it must,
an extra update of its own (the discriminator's step). The one training loop,
``distill_lib.loop.train``, trains every method; ``fit`` and ``distill`` are two of its uses.

Adding a method: write ``methods/<name>.py`` with a :class:`Method` subclass (a logit method
subclasses :class:`LogitDistillation` and only writes its ``soft_term``), then add it to
``METHODS`` below. ``dkd.py`` is the worked example.

What may be imported here: ``core`` and other ``methods`` modules, torch. Nothing from
``train``, ``lessons``, ``viz`` or ``batch``, and no plotting or notebook package.
"""
from __future__ import annotations

from ..core import checks
from . import adversarial, attention, ce, data_free, dkd, hint, kd
from .adversarial import Adversarial, Discriminator
from .attention import AttentionTransfer, attention_loss, attention_map
from .base import Combined, Method, StepOutputs, StopTraining, combine
from .ce import CrossEntropy
from .dkd import DKD, dkd_loss
from .hint import Hint, HintRegressor, hint_loss
from .kd import KD, LogitDistillation, LogitMSE, ProbabilityMSE, get_loss, kd_loss, soft_targets

# name -> class. The logit methods ("kl", "mse-logits", "mse-soft", "dkd") are what
# ``distill(loss=...)`` accepts; the others are combined with one of them (or with "ce").
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
    try:
        return METHODS[name](**options)
    except TypeError as error:  # an unknown or missing option: say which ones exist
        import inspect
        allowed = [p for p in inspect.signature(METHODS[name]).parameters if p != "self"]
        raise ValueError(f"method {name!r} cannot take {sorted(options)}: {error}; its options: {allowed}") from None


def logit_method(loss: str, *, temperature: float, alpha: float, **options) -> LogitDistillation:
    """The logit method ``distill(loss=...)`` trains with: ``(1 - alpha) * CE + alpha * soft``."""
    checks.one_of("loss", loss, LOGIT_LOSSES)
    return get_method(loss, temperature=temperature, alpha=alpha, **options)


__all__ = ["METHODS", "LOGIT_LOSSES", "get_method", "logit_method", "Method", "StepOutputs", "StopTraining",
           "Combined", "combine", "CrossEntropy", "LogitDistillation", "KD", "LogitMSE", "ProbabilityMSE", "DKD",
           "Hint", "HintRegressor", "AttentionTransfer", "Adversarial", "Discriminator", "kd_loss", "get_loss",
           "soft_targets", "dkd_loss", "hint_loss", "attention_map", "attention_loss"]
