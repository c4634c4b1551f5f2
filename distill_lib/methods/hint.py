"""Hint (feature) distillation (Romero et al. 2015, "FitNets: Hints for Thin Deep Nets").

A student stage's output, mapped to the teacher stage's shape by a small learned regressor, is
pulled towards the teacher's output at that stage by a mean squared error. FitNets trained the
hint first and the logits second; like most later benchmarks (e.g. RepDistiller) this method
adds the hint to the loss of a single training run. The regressor learns with the student.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core import checks
from .base import Method, StepOutputs


class HintRegressor(nn.Module):
    """Maps a student feature to the teacher feature's shape (FitNets, Romero et al. 2015).

    Feature maps (C x H x W) go through a 1x1 convolution for the channels, then average pooling
    (student larger) or bilinear resizing (student smaller) for the spatial size. Vectors go
    through a linear layer. A map matched against a vector is globally pooled first.
    """

    def __init__(self, student_shape, teacher_shape):
        super().__init__()
        _check_feature_shape("student_shape", student_shape)
        _check_feature_shape("teacher_shape", teacher_shape)
        self.student_shape, self.teacher_shape = tuple(student_shape), tuple(teacher_shape)
        s_channels, t_channels = self.student_shape[0], self.teacher_shape[0]
        if len(self.teacher_shape) == 3 and len(self.student_shape) == 3:
            self.map = nn.Conv2d(s_channels, t_channels, kernel_size=1)
        else:
            self.map = nn.Linear(s_channels, t_channels)

    def forward(self, student_feature: torch.Tensor) -> torch.Tensor:
        if tuple(student_feature.shape[1:]) != self.student_shape:
            raise ValueError(f"student_feature has shape {tuple(student_feature.shape)}; this regressor "
                             f"was built for batch x {self.student_shape}")
        if len(self.teacher_shape) == 1 and student_feature.ndim == 4:
            student_feature = student_feature.mean(dim=(2, 3))
        if isinstance(self.map, nn.Linear):
            return self.map(student_feature)
        out = self.map(student_feature)
        size = self.teacher_shape[1:]
        if tuple(out.shape[2:]) == size:
            return out
        if out.shape[2] >= size[0] and out.shape[3] >= size[1]:  # student map larger: average it down
            return F.adaptive_avg_pool2d(out, size)
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)


def hint_loss(student_feature, teacher_feature, regressor: HintRegressor) -> torch.Tensor:
    """Mean squared error between the regressed student feature and the teacher feature."""
    prediction = regressor(student_feature)
    target = teacher_feature
    if teacher_feature.ndim == 4 and prediction.ndim == 2:  # a vector student matches pooled maps
        target = teacher_feature.mean(dim=(2, 3))
    if prediction.shape != target.shape:  # F.mse_loss would broadcast silently
        raise ValueError(f"regressed student feature {tuple(prediction.shape)} and teacher feature "
                         f"{tuple(target.shape)} differ; build the regressor with the teacher's feature shape")
    return F.mse_loss(prediction, target)


class Hint(Method):
    """``weight * MSE(regressor(student stage), teacher stage)``; combine it with CE or KD."""

    name = "hint"

    def __init__(self, student_stage: str, teacher_stage: str, weight: float = 1.0):
        super().__init__()
        self.student_stage, self.teacher_stage = _stage_name("student_stage", student_stage), _stage_name(
            "teacher_stage", teacher_stage)
        self.weight = checks.non_negative_number("weight", weight)
        self.regressor = None

    def part_names(self) -> tuple:
        return ("hint",)

    def student_stages(self) -> tuple:
        return (self.student_stage,)

    def teacher_stages(self) -> tuple:
        return (self.teacher_stage,)

    def prepare(self, *, student_shapes: dict, teacher_shapes: dict, num_classes: int, seed: int) -> None:
        checks.one_of("student stage", self.student_stage, list(student_shapes))
        checks.one_of("teacher stage", self.teacher_stage, list(teacher_shapes))
        with torch.random.fork_rng(devices=[]):  # seeded, and the global RNG is left alone
            torch.manual_seed(seed)
            self.regressor = HintRegressor(student_shapes[self.student_stage], teacher_shapes[self.teacher_stage])

    def forward(self, out: StepOutputs) -> dict:
        feature = out.student_features[self.student_stage].float()
        return {"hint": self.weight * hint_loss(feature, out.teacher_features[self.teacher_stage], self.regressor)}

    def settings(self) -> dict:
        return {"student_stage": self.student_stage, "teacher_stage": self.teacher_stage, "weight": self.weight}


def _stage_name(name: str, value) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be the name of a model stage (see dl.feature_shapes); got {value!r}")
    return value


def _check_feature_shape(name: str, shape) -> None:
    shape = tuple(shape)
    if len(shape) not in (1, 3) or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ValueError(f"{name} must be a feature shape without the batch dimension, (C,) or "
                         f"(C, H, W) with positive integers; got {shape}")
