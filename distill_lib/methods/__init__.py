"""Distillation methods, one file each, and the one registry that names them (``registry``).

A method (see :mod:`.base`, which also gives the order of its hooks in a training step) turns the
student's and the teacher's outputs on a batch into named loss parts, owns its extra modules (a
hint regressor, a discriminator) and, only where it must, an extra update of its own (the
discriminator's step). The one training loop, ``distill_lib.loop.train``, trains every method;
``fit`` and ``distill`` are two of its uses.

Adding a method: write ``methods/<name>.py`` with a :class:`Method` subclass (a logit method
subclasses :class:`LogitDistillation` and only writes its ``soft_term``), then add it to
``METHODS`` in ``registry.py``; ``get_method``, ``get_loss`` and ``distill(loss=...)`` then all
know it. ``dkd.py`` is the worked example.

Layer ``methods`` may import: core; no plotting or notebook package. (The table of every layer
is ``distill_lib/layers.py``; ``tests/test_layers.py`` checks every import against it.)
"""
from __future__ import annotations

from .adversarial import Adversarial, Discriminator
from .attention import AttentionTransfer, attention_loss, attention_map
from .base import Combined, Method, StepOutputs, StopTraining, combine
from .ce import CrossEntropy
from .data_free import DataFree, Generator, GeneratorBatches
from .dkd import DKD, dkd_loss
from .hint import Hint, HintRegressor, hint_loss
from .kd import KD, LogitDistillation, LogitMSE, ProbabilityMSE, kd_loss, soft_targets
from .registry import LOGIT_LOSSES, METHODS, get_loss, get_method, logit_method

__all__ = ["METHODS", "LOGIT_LOSSES", "get_method", "logit_method", "get_loss", "Method", "StepOutputs",
           "StopTraining", "Combined", "combine", "CrossEntropy", "LogitDistillation", "KD", "LogitMSE",
           "ProbabilityMSE", "DKD", "Hint", "HintRegressor", "AttentionTransfer", "Adversarial", "Discriminator",
           "DataFree", "Generator", "GeneratorBatches",
           "kd_loss", "soft_targets", "dkd_loss", "hint_loss", "attention_map", "attention_loss"]
