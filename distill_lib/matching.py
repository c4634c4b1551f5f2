"""Knowledge matching beyond logits: hints (FitNets), attention transfer, structure matching.

Three ways for a student to learn from what the teacher computes *inside*:

- **Hint** (Romero et al. 2015, "FitNets"): a student stage's output, mapped to the teacher
  stage's shape by a small learned regressor (``losses.HintRegressor``), is pulled towards
  the teacher's feature map by a mean squared error. FitNets trained the hint first and the
  logits second; like most later benchmarks (e.g. RepDistiller) this module adds the hint term
  to the loss of a single training run.
- **Attention transfer** (Zagoruyko & Komodakis 2017, "Paying More Attention to Attention"):
  each feature map is summarised by its spatial attention map ``Q = sum_c |A_c|^p`` (p = 2),
  flattened and L2-normalised; the student's map is pulled towards the teacher's. No regressor
  is needed, so the channel counts may differ, but the spatial sizes must agree.
- **Structure matching**: when teacher and student have different depths and widths, which
  stage should guide which? :func:`match_stages` pairs stages of equal spatial size and, among
  those, the nearest relative depth.

The teacher is run ONCE over the (un-augmented) training set: :func:`teacher_outputs` keeps its
logits and the matched stages' features, and every student is trained against those tensors.
Total loss of one step, with the workbench's convention for ``alpha``:

    (1 - alpha) * CE + alpha * T^2 * KL  +  hint_weight * hint  +  at_weight * sum_pairs AT
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from . import checks
from .batches import TensorBatches
from .losses import HintRegressor, hint_loss, kd_loss
from .models import feature_shapes
from .train import autocast, check_training_args, make_evaluator, prepare_model, resolve_device, run_epochs


# ------------------------------------------------------------------------ attention transfer
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


# ------------------------------------------------------------------------ structure matching
def match_stages(student_shapes: dict, teacher_shapes: dict) -> list:
    """For every student stage, the teacher stage to match: same spatial size, then nearest depth.

    Shapes are ``models.feature_shapes`` dictionaries (stage -> (C, H, W) or (C,)). Relative
    depth is a stage's position divided by the number of stages, so the last stage of a 2-stage
    student matches the last stage of a 3-stage teacher. Returns one dict per student stage:
    student, teacher, their shapes, and "why" (the rule that decided).
    """
    for name, shapes in (("student_shapes", student_shapes), ("teacher_shapes", teacher_shapes)):
        if not shapes:
            raise ValueError(f"{name} must name at least one stage, got {shapes!r}")
    teacher_names = list(teacher_shapes)
    teacher_depth = {t: (i + 1) / len(teacher_names) for i, t in enumerate(teacher_names)}
    pairs = []
    for i, (s_name, s_shape) in enumerate(student_shapes.items()):
        depth = (i + 1) / len(student_shapes)
        same_size = [t for t in teacher_names if _spatial(teacher_shapes[t]) == _spatial(s_shape) and len(s_shape) == 3]
        candidates, why = (same_size, "same spatial size, nearest depth") if same_size else (teacher_names, "nearest depth")
        best = min(candidates, key=lambda t: (abs(teacher_depth[t] - depth), -teacher_depth[t]))
        pairs.append({"student": s_name, "teacher": best, "student_shape": tuple(s_shape),
                      "teacher_shape": tuple(teacher_shapes[best]), "why": why})
    return pairs


def _spatial(shape) -> tuple:
    return tuple(shape[1:])


# ------------------------------------------------------------------------ the teacher, once
@dataclass
class TeacherOutputs:
    """The teacher's logits and selected stage features on every image of one dataset (CPU)."""

    logits: torch.Tensor
    features: dict


@torch.inference_mode()
def teacher_outputs(teacher, dataset, stages=(), *, device="cpu", batch_size: int = 500) -> TeacherOutputs:
    """One pass of ``teacher`` over ``dataset``: logits plus the named stages' outputs."""
    checks.positive_int("batch_size", batch_size)
    device = resolve_device(device)
    teacher = prepare_model(teacher, device).eval()
    known = list(teacher.stages)
    for stage in stages:
        checks.one_of("teacher stage", stage, known)
    logits, features = [], {stage: [] for stage in stages}
    for start in range(0, len(dataset), batch_size):
        out, feats = teacher(dataset.images[start:start + batch_size].to(device), return_features=True)
        logits.append(out.float().cpu())
        for stage in stages:
            features[stage].append(feats[stage].float().cpu())
    return TeacherOutputs(torch.cat(logits), {stage: torch.cat(parts) for stage, parts in features.items()})


# ------------------------------------------------------------------------ training
@dataclass(frozen=True)
class Recipe:
    """What the student is taught: labels, logits (KD), a hint, attention maps, or a mix.

    ``alpha = 0`` and both weights 0 is plain training on the labels.
    """

    alpha: float = 0.0                # weight of the soft-target term (1 - alpha weights the labels)
    temperature: float = 4.0          # softmax temperature of the KD term
    hint_weight: float = 0.0          # weight of the hint MSE
    hint_pair: tuple | None = None    # (student stage, teacher stage) of the hint
    at_weight: float = 0.0            # weight of the attention-transfer term (authors: 1000)
    at_pairs: tuple = ()              # ((student stage, teacher stage), ...) for attention transfer

    def check(self) -> None:
        checks.fraction("alpha", self.alpha)
        checks.positive_number("temperature", self.temperature)
        checks.non_negative_number("hint_weight", self.hint_weight)
        checks.non_negative_number("at_weight", self.at_weight)
        if self.hint_weight > 0 and self.hint_pair is None:
            raise ValueError(f"hint_weight={self.hint_weight} needs a hint_pair (student stage, teacher stage)")
        if self.at_weight > 0 and not self.at_pairs:
            raise ValueError(f"at_weight={self.at_weight} needs at_pairs ((student stage, teacher stage), ...)")

    def active_pairs(self) -> list:
        """Every (student stage, teacher stage) pair a term with a non-zero weight uses."""
        return ([self.hint_pair] if self.hint_weight > 0 else []) + (list(self.at_pairs) if self.at_weight > 0 else [])

    def teacher_stages(self) -> list:
        """The teacher stages ``teacher_outputs`` must keep for this recipe."""
        return sorted({teacher for _, teacher in self.active_pairs()})

    def to_dict(self) -> dict:
        return asdict(self)


def _check_stages(recipe: Recipe, student_shapes: dict, targets: TeacherOutputs) -> None:
    for student_stage, teacher_stage in recipe.active_pairs():
        checks.one_of("student stage", student_stage, list(student_shapes))
        if teacher_stage not in targets.features:
            raise ValueError(f"teacher stage {teacher_stage!r} was not kept by teacher_outputs; kept: "
                             f"{sorted(targets.features)} (pass it in stages=...)")


def make_regressor(recipe: Recipe, student_shapes: dict, targets: TeacherOutputs, seed: int):
    """The hint's regressor, seeded (so every run with the same seed starts identically)."""
    if recipe.hint_weight == 0:
        return None
    student_stage, teacher_stage = recipe.hint_pair
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return HintRegressor(student_shapes[student_stage], tuple(targets.features[teacher_stage].shape[1:]))


def _on_device(targets: TeacherOutputs, recipe: Recipe, device) -> TeacherOutputs:
    """The logits and the stages ``recipe`` uses, moved to the training device once (as ``distill``
    does with cached logits), so that every batch looks its rows up there without a copy."""
    return TeacherOutputs(logits=targets.logits.to(device),
                          features={stage: targets.features[stage].to(device) for stage in recipe.teacher_stages()})


def _step_loss_fn(student, recipe, targets, regressor, device):
    """The loss of one batch; the teacher's rows (``targets`` on ``device``) are looked up by the
    batch's dataset indices."""
    def step_loss(images, labels, index):
        with autocast(device):
            logits, feats = student(images, return_features=True)
        loss = kd_loss(logits.float(), targets.logits[index], labels,
                       temperature=recipe.temperature, alpha=recipe.alpha)
        if recipe.hint_weight > 0:
            s_stage, t_stage = recipe.hint_pair
            target = targets.features[t_stage][index]
            loss = loss + recipe.hint_weight * hint_loss(feats[s_stage].float(), target, regressor)
        for s_stage, t_stage in (recipe.at_pairs if recipe.at_weight > 0 else ()):
            target = targets.features[t_stage][index]
            loss = loss + recipe.at_weight * attention_loss(feats[s_stage].float(), target)
        return loss
    return step_loss


def train_matched(student, train_set, targets: TeacherOutputs, recipe: Recipe, *, epochs: int = 10,
                  batch_size: int = 128, lr: float = 3e-3, weight_decay: float = 5e-4, seed: int = 0,
                  device="auto", eval_set=None, eval_teacher_logits=None, progress=None, desc: str = "student"):
    """Train ``student`` on ``recipe`` against precomputed teacher ``targets``; return (History, regressor).

    ``targets`` must come from ``teacher_outputs(teacher, train_set, recipe.teacher_stages())``;
    the regressor (None without a hint) is optimised together with the student.
    """
    recipe.check()
    check_training_args(epochs, batch_size, lr, weight_decay, seed, "adam", "onecycle")
    if len(targets.logits) != len(train_set):
        raise ValueError(f"targets hold {len(targets.logits)} samples but train_set has {len(train_set)}; "
                         f"compute them with teacher_outputs on this very train_set")
    device = resolve_device(device)
    student_shapes = feature_shapes(student, train_set.input_shape)
    _check_stages(recipe, student_shapes, targets)
    regressor = make_regressor(recipe, student_shapes, targets, seed)
    torch.manual_seed(seed)
    student = prepare_model(student, device)
    if regressor is not None:
        regressor.to(device)
    batches = TensorBatches(train_set.images, train_set.labels, batch_size=batch_size, device=device, seed=seed)
    step_loss = _step_loss_fn(student, recipe, _on_device(targets, recipe, device), regressor, device)
    history = run_epochs(student, batches, step_loss,
                         epochs=epochs, lr=lr, weight_decay=weight_decay, optimizer="adam", schedule="onecycle",
                         evaluate_fn=make_evaluator(student, eval_set, device, eval_teacher_logits), desc=desc,
                         progress=progress, extra_params=regressor.parameters() if regressor is not None else ())
    history.config = {"kind": "matching", **recipe.to_dict(), "epochs": epochs, "batch_size": batch_size,
                      "lr": lr, "weight_decay": weight_decay, "seed": seed}
    return history, regressor


def plot_attention_maps(images: torch.Tensor, maps: dict, title: str = ""):
    """One row per image: the image, then each labelled attention map (batch x H x W) beside it."""
    import matplotlib.pyplot as plt
    rows, cols = len(images), 1 + len(maps)
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, 1.7 * rows), squeeze=False)
    for r in range(rows):
        panels = [("image", images[r, 0])] + [(label, batch[r]) for label, batch in maps.items()]
        for c, (label, panel) in enumerate(panels):
            axes[r][c].imshow(panel.detach().cpu(), cmap="gray" if c == 0 else "magma")
            axes[r][c].set_xticks([]), axes[r][c].set_yticks([])
            if r == 0:
                axes[r][c].set_title(label, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
