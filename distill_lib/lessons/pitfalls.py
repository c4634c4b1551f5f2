"""Notebook 06's measurements: what the distillation bugs people actually make do to a student.

Loss bugs are trained as they are written: :class:`LossFunction` turns any function
``fn(student_logits, teacher_logits, labels, temperature, alpha)`` into a method of the one loop,
so a buggy loss and the correct one train the same student from the same weights on the same
batches. Loop bugs that cost memory or time rather than accuracy are measured as such.
"""
from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F

from ..core import checks
from ..core.cache import teacher_outputs
from ..core.data import Dataset, stratified_indices
from ..core.evaluate import predict
from ..core.models import build_model
from ..loop import TrainingDiverged, train
from ..methods import Method, StepOutputs, soft_targets
from ..methods.adversarial import frozen


def few_labels(dataset, per_class: int, seed: int = 0):
    """``dataset`` with only ``per_class`` labels of every class kept (stratified, seeded); every
    other image is marked unlabelled (-1): a transfer set where the teacher's soft targets teach."""
    checks.positive_int("per_class", per_class)
    keep = stratified_indices(dataset.labels, per_class, torch.Generator().manual_seed(seed))
    labels = torch.full_like(dataset.labels, -1)
    labels[keep] = dataset.labels[keep]
    return Dataset(f"{dataset.name} ({per_class} labels per class)", dataset.split, dataset.images, labels,
                   list(dataset.classes), dataset.source)


class LossFunction(Method):
    """A method whose whole objective is ``fn(student_logits, teacher_logits, labels, T, alpha)``."""

    name = "loss-function"

    def __init__(self, fn, *, temperature: float, alpha: float):
        super().__init__()
        if not callable(fn):
            raise ValueError(f"fn must be a function (student_logits, teacher_logits, labels, T, alpha); got {fn!r}")
        self.fn = fn
        self.temperature = checks.positive_number("temperature", temperature)
        self.alpha = checks.fraction("alpha", alpha)

    def part_names(self) -> tuple:
        return ("loss",)

    def forward(self, out: StepOutputs) -> dict:
        return {"loss": self.fn(out.student_logits, out.teacher_logits, out.labels, self.temperature, self.alpha)}

    def settings(self) -> dict:
        return {"fn": getattr(self.fn, "__name__", repr(self.fn)), "temperature": self.temperature, "alpha": self.alpha}


class WrongRows(LossFunction):
    """The pairing bug: each image gets the teacher's outputs for ANOTHER image of its batch, as when
    stored outputs are read in file order while the batches are shuffled (seeded permutation)."""

    name = "wrong-rows"

    def __init__(self, fn, *, temperature: float, alpha: float, seed: int = 0):
        super().__init__(fn, temperature=temperature, alpha=alpha)
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, out: StepOutputs) -> dict:
        shuffled = out.teacher_logits[torch.randperm(len(out.labels), generator=self.generator).to(out.labels.device)]
        return {"loss": self.fn(out.student_logits, shuffled, out.labels, self.temperature, self.alpha)}


def train_arms(arms: dict, teacher, train_set, test_set, *, student: str, seeds, temperature: float, alpha: float,
               progress=None, models: dict | None = None, **training) -> list:
    """One record per arm and seed: final test accuracy, or where the run was stopped.

    ``arms`` maps a name to a loss function (as in :class:`LossFunction`) or to ``("wrong-rows",
    fn)`` for the pairing bug. Every arm of a seed starts from the same weights. Give ``models``
    (a dict) to keep the trained students: ``models[(arm, seed)]`` (for measurements after training).
    """
    records = []
    for seed in seeds:
        for name, arm in arms.items():
            method = (WrongRows(arm[1], temperature=temperature, alpha=alpha, seed=seed) if isinstance(arm, tuple)
                      else LossFunction(arm, temperature=temperature, alpha=alpha))
            model = build_model(student, train_set.num_classes, in_shape=train_set.input_shape, seed=seed)
            record = {"arm": name, "seed": seed}
            try:
                history = train(model, train_set, method, teacher=teacher, seed=seed, eval_set=test_set,
                                progress="off", desc=f"{name} (seed {seed})", **training)
                record.update(accuracy=history.final["accuracy"], stopped=None)
                if models is not None:
                    models[(name, seed)] = model.eval()
            except TrainingDiverged as stop:
                record.update(accuracy=None, stopped=str(stop), epochs_done=len(stop.history.train_loss))
            records.append(record)
    return records


# ------------------------------------------------------------------ loop bugs, measured
def saved_activation_bytes(model, images: torch.Tensor, *, grad: bool) -> int:
    """Bytes of the tensors autograd keeps for backward during one forward pass of ``model``:
    what a teacher run without ``torch.no_grad()`` holds in memory for nothing."""
    total = [0]

    def pack(tensor):
        total[0] += tensor.numel() * tensor.element_size()
        return tensor

    model = model.eval()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), torch.set_grad_enabled(grad):
        model(images)
    return total[0]


def forward_seconds(model, images: torch.Tensor, *, grad: bool, repeats: int = 5) -> float:
    """Median time of a forward pass with or without autograd recording (warm-up excluded)."""
    model = model.eval()
    times = []
    for i in range(repeats + 1):
        started = time.perf_counter()
        with torch.set_grad_enabled(grad):
            model(images)
        if i:  # the first pass is a warm-up
            times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def teacher_in_train_mode(teacher, dataset, test_set, *, batch_size: int = 256) -> dict:
    """A copy of the teacher run over ``dataset`` in TRAIN mode (no gradients), as a loop that forgot
    ``teacher.eval()`` does: its outputs carry dropout noise and batch statistics, and every batch
    overwrites its batch-norm running statistics. Returns the teacher's test accuracy before and
    after, and how often its train-mode answer differs from its eval-mode one."""
    device = _device_of(teacher)
    drifted = copy.deepcopy(teacher).train()
    # the eval-mode answers come from the teacher-output cache: the students' training filled it
    before = teacher_outputs(teacher, test_set, device=device).logits
    eval_mode = teacher_outputs(teacher, dataset, device=device).logits
    disagree = 0
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            train_mode = drifted(dataset.images[start:start + batch_size].to(device)).cpu()
            disagree += int((train_mode.argmax(1) != eval_mode[start:start + batch_size].argmax(1)).sum())
    after = predict(drifted, test_set.images, device=device).logits
    return {"accuracy_before": _accuracy(before, test_set.labels), "accuracy_after": _accuracy(after, test_set.labels),
            "train_mode_disagreement": disagree / len(dataset)}


def augmentation_mismatch(teacher, dataset, augment, *, seed: int = 0, batch_size: int = 512) -> dict:
    """How far cached (un-augmented) teacher outputs are from what the teacher says about the
    augmented views the student is actually shown: argmax disagreement and mean KL at T = 1."""
    generator = torch.Generator().manual_seed(seed)
    device = _device_of(teacher)
    cached = teacher_outputs(teacher, dataset, device=device).logits
    disagree, kl, seen = 0, 0.0, 0
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            views = augment(dataset.images[start:start + batch_size], generator)
            online = teacher.eval()(views.to(device)).cpu()
            stale = cached[start:start + batch_size]
            disagree += int((online.argmax(1) != stale.argmax(1)).sum())
            kl += float(F.kl_div(F.log_softmax(stale, 1), F.log_softmax(online, 1), reduction="sum", log_target=True))
            seen += len(views)
    return {"disagreement": disagree / seen, "mean_kl": kl / seen}


def unused_teacher_seconds(teacher, student, dataset, *, batch_size: int = 256, epochs: int = 1) -> dict:
    """Seconds of plain cross-entropy training with and without a teacher forward pass per batch
    whose output is then never used (the tutorial bug): the cost of distilling nothing."""
    results = {}
    for label, with_teacher in (("without the teacher", False), ("with the unused teacher pass", True)):
        model = copy.deepcopy(student).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        started = time.perf_counter()
        for _ in range(epochs):
            for start in range(0, len(dataset), batch_size):
                images, labels = dataset.images[start:start + batch_size], dataset.labels[start:start + batch_size]
                if with_teacher:
                    with torch.no_grad():
                        teacher(images.to(_device_of(teacher)))  # computed ... and never used
                loss = F.cross_entropy(model(images), labels, ignore_index=-1)  # -1: unlabelled
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        results[label] = time.perf_counter() - started
    return results


def generator_gradients(student, discriminator, images, labels, *, temperature: float) -> dict:
    """The student's gradient from the adversarial term written correctly (make D call the student's
    outputs "teacher": BCE(D(p_s), 1)) and with the sign a popular tutorial gets wrong
    (BCE(D(p_s), 0): make D call them "student"). Returns both, flattened, and their cosine."""
    def gradient(target: float):
        student.zero_grad(set_to_none=True)
        with frozen(discriminator):
            logits = discriminator(soft_targets(student(images), temperature), labels)
            loss = F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))
            loss.backward()
        return torch.cat([p.grad.flatten() for p in student.parameters()])

    discriminator.eval()
    correct, wrong = gradient(1.0), gradient(0.0)
    student.zero_grad(set_to_none=True)
    return {"correct": correct, "wrong_sign": wrong, "cosine": float(F.cosine_similarity(correct, wrong, dim=0))}


def _device_of(model) -> torch.device:
    return next(model.parameters()).device


def _accuracy(logits, labels) -> float:
    return float((logits.argmax(1) == labels).float().mean())
