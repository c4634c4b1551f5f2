"""Input validation shared by every public function.

Each check raises ``ValueError`` naming the parameter, the value it got and what is allowed, so a
bad call fails at once, before any data is loaded or any model is trained.
"""
from __future__ import annotations

import math
import numbers
from typing import Iterable


def _describe(value) -> str:
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, numbers.Integral)):
        return f"{float(value):g}"
    return repr(value)


def _is_number(value) -> bool:
    """Python and numpy reals (np.float32 as well as np.float64), never bools."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and type(value).__name__ != "bool_"


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and type(value).__name__ != "bool_"


def _need_number(name: str, value) -> None:
    if not _is_number(value):
        raise ValueError(f"{name} must be a number, got {type(value).__name__} {value!r}")


def positive_number(name: str, value) -> float:
    """A finite number > 0 (temperatures, learning rates)."""
    _need_number(name, value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {_describe(value)}")
    return value


def non_negative_number(name: str, value) -> float:
    """A finite number >= 0 (weight decay, loss weights)."""
    _need_number(name, value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {_describe(value)}")
    return value


INTEGER_LABEL_DTYPES = ("torch.int64", "torch.int32", "torch.int16", "torch.int8", "torch.uint8")

# torch stores counts and seeds as 64-bit integers: a larger Python int passes every comparison
# and then fails deep inside torch ("Overflow when unpacking long long").
MAX_INT = 2 ** 63 - 1


def positive_int(name: str, value) -> int:
    """An integer from 1 to 2**63 - 1 (epochs, batch sizes, widths), returned as a Python int."""
    return _bounded_int(name, value, 1)


def non_negative_int(name: str, value) -> int:
    """An integer from 0 to 2**63 - 1 (seeds, indices), returned as a Python int."""
    return _bounded_int(name, value, 0)


def _bounded_int(name: str, value, low: int) -> int:
    # numpy integers are accepted and returned as Python ints: torch's schedulers and generators
    # refuse numpy scalars, so callers use the returned value.
    if not _is_int(value) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {_describe(value)}")
    if value > MAX_INT:
        raise ValueError(f"{name} must be an integer >= {low}, got {_describe(value)}, which is more than "
                         f"torch can hold: at most 2**63 - 1 ({MAX_INT})")
    return int(value)


def boolean(name: str, value) -> bool:
    """True or False exactly: a string such as "no" is true in Python, so it is refused."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False; got {type(value).__name__} {value!r}")
    return value


def fraction(name: str, value) -> float:
    """A number in [0, 1] (alpha, dropout, sparsity)."""
    _need_number(name, value)
    if not math.isfinite(value) or not 0 <= value <= 1:
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


def strict_choice(name: str, value, allowed: Iterable):
    """Like :func:`one_of`, but ``1`` is not ``True`` and ``0.0`` is not ``False``: the type must match."""
    allowed = list(allowed)
    if not any(value == a and type(value) is type(a) for a in allowed):
        choices = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name} must be one of {choices}; got {value!r}")
    return value


def model(name: str, value) -> None:
    """An ``nn.Module`` whose parameters are float32 tensors holding data (not on the meta device).

    The workbench's images are float32 and training is float32 (bf16 autocast on CUDA does the
    mixed precision), so a float64 or bf16 model would fail in its first layer: refused here,
    with the conversion that fixes it.
    """
    import torch
    if not isinstance(value, torch.nn.Module):
        raise ValueError(f"{name} must be a torch.nn.Module; got {type(value).__name__}")
    params = list(value.parameters())
    if not params:
        raise ValueError(f"{name} has no parameters")
    dtypes = sorted({str(p.dtype) for p in params})
    if dtypes != ["torch.float32"]:
        raise ValueError(f"{name} must have float32 parameters (the images and the training are float32; "
                         f"on CUDA bf16 autocast is applied for you); got {', '.join(dtypes)}. "
                         f"Convert it with {name}.float()")
    devices = sorted({p.device.type for p in params})
    if "meta" in devices:
        raise ValueError(f"{name} has parameters on the 'meta' device, which hold no values; build it on "
                         f"a real device (e.g. 'cpu') or load its weights first")


def model_output(name: str, output):
    """What a model returned for a batch: it must be one tensor of logits (batch x classes)."""
    import torch
    if not isinstance(output, torch.Tensor):
        raise ValueError(f"{name} must return one tensor of logits (batch x classes); it returned a "
                         f"{type(output).__name__}. A model whose forward returns a tuple or dict (logits "
                         f"and extras) needs a wrapper whose forward returns the logits alone")
    return output


def class_labels(name: str, labels, num_classes: int, *, length: int | None = None,
                 allow_unlabelled: bool = True) -> None:
    """A 1-D integer tensor of class indices in [0, num_classes - 1]; -1 (and only -1) marks an
    unlabelled sample where ``allow_unlabelled``. Any integer dtype passes: the functions that
    take labels use them as int64 (``labels.long()``), the one dtype torch's losses accept."""
    import torch
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1:
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"{name} must be a 1-D tensor of class indices; got {shape}")
    if str(labels.dtype) not in INTEGER_LABEL_DTYPES:
        raise ValueError(f"{name} must hold integer class indices (torch.int64); got dtype {labels.dtype}")
    if length is not None and len(labels) != length:
        raise ValueError(f"{name} has {len(labels)} entries; expected one per sample ({length})")
    if len(labels) == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    lowest = -1 if allow_unlabelled else 0
    if low < lowest or high > num_classes - 1:
        bad = labels[(labels < lowest) | (labels > num_classes - 1)][:5].tolist()
        allowed = f"[0, {num_classes - 1}]" + (", or -1 for an unlabelled sample" if allow_unlabelled else "")
        raise ValueError(f"{name} must be class indices in {allowed}; got values such as {bad} "
                         f"(min {low}, max {high})")


def dataset(name: str, value, *, allow_unlabelled: bool = True) -> None:
    """A non-empty ``Dataset`` of float images in [0, 1] (N x C x H x W) with integer labels."""
    import torch
    images, labels = getattr(value, "images", None), getattr(value, "labels", None)
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise ValueError(f"{name} must be a distill_lib Dataset (with .images and .labels tensors); "
                         f"got {type(value).__name__}")
    if len(labels) == 0:
        raise ValueError(f"{name} is empty: it holds no images")
    if images.ndim != 4 or len(images) != len(labels):
        raise ValueError(f"{name}.images must be N x C x H x W with one label per image; got images "
                         f"{tuple(images.shape)} and {len(labels)} labels")
    if not images.dtype.is_floating_point:
        raise ValueError(f"{name}.images must be floats in [0, 1]; got dtype {images.dtype} (divide "
                         f"uint8 pixels by 255: images.float() / 255)")
    low, high = float(images.min()), float(images.max())
    if not (math.isfinite(low) and math.isfinite(high)) or low < 0 or high > 1:
        raise ValueError(f"{name}.images must be in [0, 1]; got values from {low:g} to {high:g}"
                         + (" (0-255 pixels? divide by 255)" if high > 1 else ""))
    classes = getattr(value, "classes", None)
    class_labels(f"{name}.labels", labels, len(classes) if classes else 1 << 30, allow_unlabelled=allow_unlabelled)
    if labels.dtype != torch.int64:  # a Dataset converts them when built; these were set afterwards
        raise ValueError(f"{name}.labels must be int64 class indices; got dtype {labels.dtype}. A Dataset "
                         f"converts integer labels when it is built: Dataset(..., labels=...), or set "
                         f"{name}.labels = {name}.labels.long()")


def augmentation(name: str, value) -> None:
    """None or a callable ``augment(images, generator) -> images`` (e.g. ``dl.Augment()``)."""
    if value is not None and not callable(value):
        raise ValueError(f"{name} must be None or an augmentation such as dl.Augment(shift=2, flip=True); "
                         f"got {type(value).__name__} {value!r}")
