"""The arms of notebook 03: one small student, six ways to train it on a few labels.

Every arm trains the SAME student architecture and differs in three choices only:

- ``init``: ``"scratch"`` (random weights, identical for every scratch arm of a seed) or
  ``"source"`` (the weights of the student-sized model pretrained on the source task, with a new,
  randomly initialised output layer for the target classes);
- ``data``: ``"labelled"`` (the label budget only) or ``"labelled+unlabelled"`` (plus the rest of
  the target training images, labelled -1: only the teacher's soft targets teach on them);
- ``teacher``: whether the loss includes the distillation term
  ``(1 - alpha) * CE + alpha * T^2 * KL(softmax(t/T) || softmax(s/T))``, and ``frozen``: whether
  only the new output layer learns (a "linear probe" on the source model's features).

The teacher of each budget is honest: it was fine-tuned from its own source model on the same
labelled images as the students, never on more (see :func:`run_experiment`).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from ..core import checks
from ..core.cache import teacher_outputs
from ..core.device import resolve_device
from ..core.evaluate import evaluate, metrics_from_logits, predict
from ..core.progress import Progress
from ..loop import distill, fit
from .transfer import BudgetSplit, TransferTask, split_budget

INITS = ("scratch", "source")
DATA = ("labelled", "labelled+unlabelled")


@dataclass(frozen=True)
class Arm:
    """How one arm trains the student (see the module docstring)."""

    label: str
    init: str
    data: str
    teacher: bool
    frozen: bool = False

    def __post_init__(self):
        checks.one_of("init", self.init, INITS)
        checks.one_of("data", self.data, DATA)
        if self.data != "labelled" and not self.teacher:
            raise ValueError(f"arm {self.label!r}: unlabelled images teach nothing without a teacher")


ARMS = {
    "scratch": Arm("from scratch", "scratch", "labelled", teacher=False),
    "finetune": Arm("fine-tune (whole network)", "source", "labelled", teacher=False),
    "frozen": Arm("frozen features + new head", "source", "labelled", teacher=False, frozen=True),
    "kd_labelled": Arm("KD, labelled images only", "scratch", "labelled", teacher=True),
    "kd_unlabelled": Arm("KD + unlabelled images", "scratch", "labelled+unlabelled", teacher=True),
    "finetune_kd": Arm("fine-tune + KD (+ unlabelled)", "source", "labelled+unlabelled", teacher=True),
}
TEACHER, UPPER_BOUND = "teacher", "upper_bound"
LABELS = {**{key: arm.label for key, arm in ARMS.items()}, TEACHER: "teacher (same labels)",
          UPPER_BOUND: "teacher on ALL labels (upper bound, not a real option)"}


@dataclass(frozen=True)
class Schedule:
    """Optimisation settings shared by every run; ``steps`` is a minimum number of updates."""

    steps: int = 150
    batch_size: int = 128
    lr: float = 1e-3
    finetune_lr: float | None = None  # whole-network fine-tuning; None: the same as lr
    weight_decay: float = 5e-4
    temperature: float = 2.0
    alpha: float = 0.5

    def __post_init__(self):
        for name in ("steps", "batch_size"):
            checks.positive_int(name, getattr(self, name))
        checks.positive_number("lr", self.lr)
        if self.finetune_lr is not None:
            checks.positive_number("finetune_lr", self.finetune_lr)
        checks.non_negative_number("weight_decay", self.weight_decay)
        checks.positive_number("temperature", self.temperature)
        checks.fraction("alpha", self.alpha)

    def epochs_for(self, num_images: int) -> int:
        """Epochs that give at least ``steps`` updates: 50 images train as long as 5000 do."""
        return math.ceil(self.steps / math.ceil(num_images / self.batch_size))


# ------------------------------------------------------------------------- model surgery
def replace_head(model: nn.Module, num_classes: int, seed: int) -> nn.Module:
    """A deep copy of ``model`` whose last Linear layer of ``model.head`` is new (seeded)."""
    checks.positive_int("num_classes", num_classes)
    new = copy.deepcopy(model)
    parent, name = new, "head"
    if not isinstance(new.head, nn.Linear):
        linears = [n for n, m in new.head.named_children() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError("model.head must be a Linear layer or contain one")
        parent, name = new.head, linears[-1]
    old = getattr(parent, name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        setattr(parent, name, nn.Linear(old.in_features, num_classes).to(old.weight.device))
    if getattr(new, "arch", None):
        new.arch = {**new.arch, "num_classes": num_classes}
    return new


class FrozenBackbone(nn.Module):
    """Only ``model.head`` learns; the stages keep their weights and stay in eval mode, so batch
    norm statistics and dropout are frozen too (``requires_grad=False`` alone would not do that)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        for parameter in model.stages.parameters():
            parameter.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.stages.eval()
        return self

    def forward(self, x, return_features: bool = False):
        return self.model(x, return_features=return_features)


# ------------------------------------------------------------------------- one arm
def training_set(arm: Arm, task: TransferTask, split: BudgetSplit):
    """The images (and labels, -1 for unlabelled) this arm trains on."""
    return split.labelled(task) if arm.data == "labelled" else split.transfer_set(task)


def training_size(arm: Arm, split: BudgetSplit) -> int:
    """How many images ``training_set`` gives this arm, without building it."""
    unlabelled = len(split.unlabelled_rows) if arm.data != "labelled" else 0
    return len(split.labelled_rows) + unlabelled


def initial_student(arm: Arm, build_student, source_student, num_classes: int, seed: int) -> nn.Module:
    """Fresh seeded weights, or the source model with a new head; wrapped when frozen."""
    if arm.init == "scratch":
        return build_student(num_classes, seed)
    student = replace_head(source_student, num_classes, seed)
    return FrozenBackbone(student) if arm.frozen else student


def train_model(model, data, schedule: Schedule, *, seed: int, device, teacher=None, fine_tune=False, desc="run"):
    """``fit`` (no teacher) or ``distill`` (teacher) for ``schedule.epochs_for(len(data))`` epochs;
    ``fine_tune`` uses ``schedule.finetune_lr`` instead of ``schedule.lr``."""
    lr = schedule.finetune_lr if fine_tune and schedule.finetune_lr is not None else schedule.lr
    common = dict(epochs=schedule.epochs_for(len(data)), batch_size=schedule.batch_size, lr=lr,
                  weight_decay=schedule.weight_decay, device=device, seed=seed, progress="off", desc=desc)
    if teacher is None:
        fit(model, data, **common)
    else:
        distill(model, teacher, data, temperature=schedule.temperature, alpha=schedule.alpha, **common)
    return model


def train_arm(key: str, task, split, schedule, *, build_student, source_student, teacher, seed, device):
    """Train arm ``key`` of :data:`ARMS` on ``split``; returns the trained model."""
    arm = ARMS[checks.one_of("arm", key, list(ARMS))]
    student = initial_student(arm, build_student, source_student, len(task.target_classes), seed)
    return train_model(student, training_set(arm, task, split), schedule, seed=seed, device=device,
                       teacher=teacher if arm.teacher else None, fine_tune=arm.init == "source" and not arm.frozen,
                       desc=key)


# ------------------------------------------------------------------------- the experiment
def pretrain_source(build, task: TransferTask, schedule: Schedule, *, seed: int, device, steps: int):
    """A model of ``build``'s architecture trained on the source task (all its labels)."""
    model = build(task.source_train.num_classes, seed)
    return train_model(model, task.source_train, dataclasses.replace(schedule, steps=steps),
                       seed=seed, device=device, desc="source model").eval()


def fine_tune_teacher(source_teacher, task, split, schedule, *, seed, device):
    """The honest teacher of a budget: its source model fine-tuned on the budget's labels only."""
    teacher = replace_head(source_teacher, len(task.target_classes), seed)
    return train_model(teacher, split.labelled(task), schedule, seed=seed, device=device, fine_tune=True,
                       desc="teacher").eval()


def _record(name, split, seed, metrics, seconds, train_images):
    return {"model": name, "per_class": split.per_class, "seed": seed, "seconds": round(seconds, 2),
            "train_images": train_images, **metrics}


def _evaluated_teacher(source_teacher, task, split, schedule, *, seed, device):
    """The budget's teacher, its logits on the target test set, and the record of its metrics."""
    started = time.perf_counter()
    teacher = fine_tune_teacher(source_teacher, task, split, schedule, seed=seed, device=device)
    logits = predict(teacher, task.target_test.images, device=device).logits
    metrics = metrics_from_logits(logits, task.target_test.labels)
    return teacher, logits, _record(TEACHER, split, seed, metrics, time.perf_counter() - started,
                                    len(split.labelled_rows))


def _evaluated_arm(key, task, split, schedule, *, sources, build_student, teacher, teacher_logits, seed, device):
    started = time.perf_counter()
    model = train_arm(key, task, split, schedule, build_student=build_student, source_student=sources["student"],
                      teacher=teacher, seed=seed, device=device)
    metrics = evaluate(model, task.target_test, teacher_logits=teacher_logits, device=device)
    return _record(key, split, seed, metrics, time.perf_counter() - started, training_size(ARMS[key], split))


def run_seed(task, budgets, seed, *, sources, build_student, schedule, device, arms, bar) -> list:
    """Every arm at every budget for one seed; ``sources`` = {"student": model, "teacher": model}.
    The teacher fine-tuned on all target labels is recorded once more as the upper bound."""
    records = []
    for per_class in sorted(set(budgets) | {task.images_per_class}):
        split = split_budget(task, per_class, seed)
        teacher, teacher_logits, record = _evaluated_teacher(sources["teacher"], task, split, schedule,
                                                             seed=seed, device=device)
        if per_class == task.images_per_class:
            records.append({**record, "model": UPPER_BOUND})
        if per_class not in budgets:
            bar.update(1, seed=seed, budget="upper bound", acc=record["accuracy"])
            continue
        records.append(record)
        bar.update(1, seed=seed, budget=per_class, model=TEACHER, acc=record["accuracy"])
        for key in arms:
            records.append(_evaluated_arm(key, task, split, schedule, sources=sources, build_student=build_student,
                                          teacher=teacher, teacher_logits=teacher_logits, seed=seed, device=device))
            bar.update(1, seed=seed, budget=per_class, model=key, acc=records[-1]["accuracy"])
    return records


def run_experiment(task: TransferTask, budgets, seeds, *, sources_for_seed, build_student, schedule: Schedule,
                   device="cpu", arms=tuple(ARMS), progress=None) -> list:
    """Tidy records (one dict per seed x budget x model) for every arm, the teacher and the
    all-labels upper bound. ``sources_for_seed(seed)`` returns the pretrained source models."""
    arms = [checks.one_of("arm", key, list(ARMS)) for key in arms]
    if not budgets or not seeds:
        raise ValueError(f"budgets and seeds must not be empty; got budgets={budgets!r}, seeds={seeds!r}")
    for per_class in budgets:
        checks.positive_int("budget", per_class)
        if per_class > task.images_per_class:
            raise ValueError(f"budget {per_class} exceeds the {task.images_per_class} images per class of the target")
    device = resolve_device(device)
    extra = 0 if task.images_per_class in budgets else 1
    records = []
    with Progress(len(seeds) * (len(budgets) * (1 + len(arms)) + extra), "transfer runs", progress) as bar:
        for seed in seeds:
            records += run_seed(task, list(budgets), seed, sources=sources_for_seed(seed), build_student=build_student,
                                schedule=schedule, device=device, arms=arms, bar=bar)
    return records


# ------------------------------------------------------------------------- a strong teacher
TRANSFER_SET_ARMS = ("scratch", "kd_labelled", "kd_unlabelled")


def run_with_teacher(task: TransferTask, teacher, budgets, seeds, *, build_student, schedule: Schedule,
                     device="cpu", progress=None) -> list:
    """Records like :func:`run_experiment` for a FIXED teacher (one trained elsewhere with many
    labels): from scratch, KD on the labelled images, KD on labelled + unlabelled images.

    This is the practitioner who can use a strong model but has few labels of their own: the
    only way the teacher's knowledge reaches the student beyond those labels is its soft targets
    on the unlabelled images (the transfer set). No source model is involved.
    """
    for per_class in budgets:
        checks.positive_int("budget", per_class)
    device = resolve_device(device)
    # one teacher pass over all training images: every labelled subset and transfer set below is
    # cut from them, so the cache serves each from these rows instead of running the teacher again
    teacher_outputs(teacher, task.target_train, device=device)
    teacher_logits = teacher_outputs(teacher, task.target_test, device=device).logits
    teacher_record = metrics_from_logits(teacher_logits, task.target_test.labels)
    records = []
    with Progress(len(seeds) * len(budgets) * len(TRANSFER_SET_ARMS), "transfer set runs", progress) as bar:
        for seed in seeds:
            for per_class in sorted(budgets):
                split = split_budget(task, per_class, seed)
                records.append(_record(TEACHER, split, seed, teacher_record, 0.0, len(task.target_train)))
                for key in TRANSFER_SET_ARMS:
                    records.append(_evaluated_arm(key, task, split, schedule, sources={"student": None},
                                                  build_student=build_student, teacher=teacher,
                                                  teacher_logits=teacher_logits, seed=seed, device=device))
                    bar.update(1, seed=seed, budget=per_class, model=key, acc=records[-1]["accuracy"])
    return records
