"""Input validation shared by every public function.

Each check raises ``ValueError`` naming the parameter, the value it got and what is allowed, so a
bad call fails at once, before any data is loaded or any model is trained.
"""
from __future__ import annotations

import math
from typing import Iterable


def _describe(value) -> str:
    return repr(value) if not isinstance(value, float) else f"{value:g}"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def positive_number(name: str, value) -> float:
    """A finite number > 0 (temperatures, learning rates)."""
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {_describe(value)}")
    return value


def non_negative_number(name: str, value) -> float:
    """A finite number >= 0 (weight decay, loss weights)."""
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {_describe(value)}")
    return value


def positive_int(name: str, value) -> int:
    """An integer >= 1 (epochs, batch sizes, widths)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {_describe(value)}")
    return value


def non_negative_int(name: str, value) -> int:
    """An integer >= 0 (seeds, indices)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {_describe(value)}")
    return value


def fraction(name: str, value) -> float:
    """A number in [0, 1] (alpha, dropout, sparsity)."""
    if not _is_number(value) or not math.isfinite(value) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], got {_describe(value)}")
    return value


def one_of(name: str, value, allowed: Iterable):
    """A value from a fixed set (names of models, datasets, losses, devices)."""
    allowed = list(allowed)
    if value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name} must be one of {choices}; got {value!r}")
    return value


def same_class_count(student_classes: int, teacher_classes: int) -> None:
    """Teacher and student must predict the same classes for their outputs to be compared."""
    if student_classes != teacher_classes:
        raise ValueError(
            f"teacher and student must have the same number of classes; "
            f"teacher has {teacher_classes}, student has {student_classes}")
