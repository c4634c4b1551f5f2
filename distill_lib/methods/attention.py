"""Attention transfer (Zagoruyko & Komodakis 2017, "Paying More Attention to Attention").

Each feature map is summarised by its spatial attention map ``Q = mean_c |A_c|^p`` (p = 2),
flattened and L2-normalised; the student's map is pulled towards the teacher's. No regressor is
needed, so the channel counts may differ, but the spatial sizes must agree.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core import checks
from .base import Method, StepOutputs
from .hint import _stage_name


def attention_map(feature: torch.Tensor, p: int = 2) -> torch.Tensor:
    """``normalize(mean_c |A_c|^p)``, flattened: batch x (H*W), each row of unit L2 norm.

    The paper sums over channels; the mean differs by the constant 1/C, which the
    normalisation removes, and keeps the float range tame for wide layers.
    """
    checks.positive_int("p", p)
    if feature.ndim != 4:
        raise ValueError(f"attention maps need feature maps (batch x C x H x W); got shape {tuple(feature.shape)}")
    return F.normalize(feature.abs().pow(p).mean(dim=1).flatten(1), dim=1)


def attention_loss(student_feature: torch.Tensor, teacher_feature: torch.Tensor, p: int = 2) -> torch.Tensor:
    """Mean over batch and positions of the squared difference of the two attention maps.

    This is the form of the authors' code (``(at(x) - at(y)).pow(2).mean()``, used with a weight
    of 1000); the paper writes beta/2 times the unsquared norm of the difference.
    """
    if student_feature.shape[2:] != teacher_feature.shape[2:] or len(student_feature) != len(teacher_feature):
        raise ValueError(f"attention transfer needs equal batch and spatial sizes; student "
                         f"{tuple(student_feature.shape)}, teacher {tuple(teacher_feature.shape)} "
                         f"(pick stages with match_stages)")
    return (attention_map(student_feature, p) - attention_map(teacher_feature, p)).pow(2).mean()


class AttentionTransfer(Method):
    """``weight * attention_loss`` for each (student stage, teacher stage) pair; combine it with CE or KD."""

    name = "attention"

    def __init__(self, pairs, weight: float = 1000.0):
        super().__init__()
        pairs = tuple(tuple(pair) for pair in pairs)
        if not pairs or not all(len(pair) == 2 for pair in pairs):
            raise ValueError(f"pairs must be ((student stage, teacher stage), ...) with at least one pair; got {pairs!r}")
        self.pairs = tuple((_stage_name("student stage", s), _stage_name("teacher stage", t)) for s, t in pairs)
        students = [s for s, _ in self.pairs]
        if len(set(students)) != len(students):
            raise ValueError(f"each student stage may appear in one pair only (one loss part each); got {pairs!r}")
        self.weight = checks.non_negative_number("weight", weight)

    def part_names(self) -> tuple:
        return tuple(f"attention_{s}" for s, _ in self.pairs)

    def student_stages(self) -> tuple:
        return tuple(dict.fromkeys(s for s, _ in self.pairs))

    def teacher_stages(self) -> tuple:
        return tuple(dict.fromkeys(t for _, t in self.pairs))

    def prepare(self, *, student_shapes: dict, teacher_shapes: dict, num_classes: int, seed: int) -> None:
        for s_stage, t_stage in self.pairs:
            checks.one_of("student stage", s_stage, list(student_shapes))
            checks.one_of("teacher stage", t_stage, list(teacher_shapes))
            s_shape, t_shape = student_shapes[s_stage], teacher_shapes[t_stage]
            if len(s_shape) != 3 or len(t_shape) != 3 or s_shape[1:] != t_shape[1:]:
                raise ValueError(f"attention pair ({s_stage!r}, {t_stage!r}) needs feature maps of equal "
                                 f"spatial size; student {s_shape}, teacher {t_shape} (pick stages with match_stages)")

    def forward(self, out: StepOutputs) -> dict:
        """One part per pair (``attention_<student stage>``), each weighted."""
        return {f"attention_{s_stage}": self.weight * attention_loss(out.student_features[s_stage].float(),
                                                                      out.teacher_features[t_stage])
                for s_stage, t_stage in self.pairs}

    def settings(self) -> dict:
        return {"pairs": [list(pair) for pair in self.pairs], "weight": self.weight}
