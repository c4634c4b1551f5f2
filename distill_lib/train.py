"""Training loops: ``fit`` (plain supervised) and ``distill`` (student learns from a teacher).

Both return a plain :class:`History`; nothing is hidden in the model. Reported metrics are
those of the FINAL epoch, never the best one (best-epoch picking on the test set inflates
results, a common reason published KD numbers do not reproduce).

Loss convention (see ``losses``):
``loss = (1 - alpha) * CE(student, labels) + alpha * T^2 * KL(softmax(t/T) || softmax(s/T))``.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch

from . import cache, checks
from .batches import TensorBatches
from .evaluate import metrics_from_logits, predict_logits
from .losses import get_loss
from .progress import Progress

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("onecycle", "cosine", "constant")
CACHE_MODES = ("auto", True, False)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; ``history`` holds the epochs finished before."""

    def __init__(self, message: str, history: "History"):
        super().__init__(message)
        self.history = history


@dataclass
class History:
    """Per-epoch training loss and evaluation metrics, the final metrics, and the settings."""

    train_loss: list = field(default_factory=list)
    eval_metrics: list = field(default_factory=list)  # one dict per epoch (empty without eval_set)
    epoch_seconds: list = field(default_factory=list)
    final: dict = field(default_factory=dict)  # metrics after the last epoch
    config: dict = field(default_factory=dict)

    def curve(self, metric: str) -> list:
        """One evaluation metric over epochs, e.g. ``history.curve("accuracy")``."""
        return [m[metric] for m in self.eval_metrics]

    @property
    def seconds(self) -> float:
        return float(sum(self.epoch_seconds))

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_device(device) -> torch.device:
    """"auto" means CUDA when available, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}") from None


def check_training_args(epochs, batch_size, lr, weight_decay, seed, optimizer, schedule) -> None:
    """The checks every training loop (fit, distill, adversarial_train) makes before any work."""
    checks.positive_int("epochs", epochs)
    checks.positive_int("batch_size", batch_size)
    checks.positive_number("lr", lr)
    checks.non_negative_number("weight_decay", weight_decay)
    checks.non_negative_int("seed", seed)
    checks.one_of("optimizer", optimizer, OPTIMIZERS)
    checks.one_of("schedule", schedule, SCHEDULES)


def make_optimizer(params, name, lr, weight_decay):
    """AdamW for "adam" (decoupled weight decay), else SGD with Nesterov momentum 0.9."""
    if name == "adam":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)


def make_schedule(optimizer, name, lr, total_steps):
    """A per-step learning-rate schedule: "onecycle", "cosine" or "constant"."""
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def autocast(device: torch.device):
    # bf16 autocast on CUDA (no loss scaling needed); full float32 on the CPU
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def prepare_model(model, device: torch.device):
    model.to(device)
    if device.type == "cuda" and any(p.ndim == 4 for p in model.parameters()):
        model.to(memory_format=torch.channels_last)
    return model


def run_epochs(model, batches, step_loss, *, epochs, lr, weight_decay, optimizer, schedule,
                evaluate_fn, desc, progress, extra_params=()) -> History:
    """The one training loop: optimise ``step_loss(images, labels, index)`` for ``epochs``."""
    params = list(model.parameters()) + list(extra_params)
    opt = make_optimizer(params, optimizer, lr, weight_decay)
    sched = make_schedule(opt, schedule, lr, epochs * len(batches))
    history = History()
    with Progress(epochs * len(batches), desc, progress) as bar:
        for epoch in range(1, epochs + 1):
            started, total, count = time.perf_counter(), 0.0, 0
            model.train()
            for images, labels, index in batches:
                loss = step_loss(images, labels, index)
                value = loss.item()  # one device sync per step, for the check and the epoch mean
                if not math.isfinite(value):
                    raise TrainingDiverged(
                        f"{desc}: loss became {value} at epoch {epoch}, step {count + 1}; "
                        f"training stopped. Try a lower lr (now {lr}) or check the inputs.", history)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total, count = total + value, count + 1
                bar.update(1)
            history.train_loss.append(total / count)
            history.epoch_seconds.append(time.perf_counter() - started)
            history.eval_metrics.append(evaluate_fn() if evaluate_fn else {})
            bar.update(0, epoch=epoch, loss=total / count, **progress_fields(history.eval_metrics[-1]))
    history.final = dict(history.eval_metrics[-1]) if history.eval_metrics else {}
    return history


def progress_fields(metrics: dict) -> dict:
    """What the progress bar shows of an epoch's evaluation: the test accuracy, when there is one."""
    return {"test_acc": metrics["accuracy"]} if "accuracy" in metrics else {}


def make_evaluator(model, eval_set, device, teacher_eval_logits=None):
    if eval_set is None:
        return None

    def evaluate_now():
        logits = predict_logits(model, eval_set.images, device=device)
        return metrics_from_logits(logits, eval_set.labels, teacher_eval_logits)
    return evaluate_now


def fit(model, train_set, *, epochs: int = 10, batch_size: int = 128, lr: float = 1e-3,
        weight_decay: float = 5e-4, device="auto", seed: int = 0, augment=None, eval_set=None,
        optimizer: str = "adam", schedule: str = "onecycle", label_smoothing: float = 0.0,
        progress: str | None = None, desc: str = "fit") -> History:
    """Train ``model`` with cross-entropy on ``train_set``; evaluate on ``eval_set`` every epoch."""
    check_training_args(epochs, batch_size, lr, weight_decay, seed, optimizer, schedule)
    checks.fraction("label_smoothing", label_smoothing)
    device = resolve_device(device)
    torch.manual_seed(seed)  # dropout and anything else drawing from the global RNG
    model = prepare_model(model, device)
    batches = TensorBatches(train_set.images, train_set.labels, batch_size=batch_size, device=device,
                            seed=seed, augment=augment)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def step_loss(images, labels, _index):
        with autocast(device):
            return criterion(model(images).float(), labels)

    history = run_epochs(model, batches, step_loss, epochs=epochs, lr=lr, weight_decay=weight_decay,
                          optimizer=optimizer, schedule=schedule, desc=desc, progress=progress,
                          evaluate_fn=make_evaluator(model, eval_set, device))
    history.config = {"kind": "fit", "epochs": epochs, "batch_size": batch_size, "lr": lr,
                      "weight_decay": weight_decay, "seed": seed, "augment": repr(augment),
                      "optimizer": optimizer, "schedule": schedule, "label_smoothing": label_smoothing}
    return history


def output_size(model, example: torch.Tensor) -> int:
    """Number of classes a model predicts, read off one forward pass in eval mode."""
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        size = model(example[:1].to(next(model.parameters()).device)).shape[-1]
    model.train(was_training)
    return size


def distill(student, teacher, train_set, *, temperature: float = 4.0, alpha: float = 0.9,
            epochs: int = 10, batch_size: int = 128, lr: float = 1e-3, weight_decay: float = 5e-4,
            device="auto", seed: int = 0, loss: str = "kl", augment=None, cache_logits="auto",
            eval_set=None, optimizer: str = "adam", schedule: str = "onecycle",
            progress: str | None = None, desc: str = "distill") -> History:
    """Train ``student`` to match ``teacher``; see the module docstring for the loss convention.

    ``cache_logits``: "auto" caches the teacher's logits when ``augment`` is None and runs the
    teacher online otherwise; True insists on the cache (refused with augmentation); False
    always runs the teacher online. Labels of -1 mark unlabelled images (soft term only).
    """
    check_training_args(epochs, batch_size, lr, weight_decay, seed, optimizer, schedule)
    checks.positive_number("temperature", temperature)
    checks.fraction("alpha", alpha)
    checks.one_of("cache_logits", cache_logits, CACHE_MODES)
    loss_fn = get_loss(loss)
    if cache_logits is True:
        cache.refuse_with_augmentation(augment)
    device = resolve_device(device)
    teacher = prepare_model(teacher, device).eval()
    checks.same_class_count(output_size(student.to(device), train_set.images),
                            output_size(teacher, train_set.images))
    torch.manual_seed(seed)
    student = prepare_model(student, device)
    use_cache = cache_logits is True or (cache_logits == "auto" and augment is None)
    train_teacher_logits = cache.teacher_logits(teacher, train_set, device=device).to(device) if use_cache else None
    batches = TensorBatches(train_set.images, train_set.labels, batch_size=batch_size, device=device,
                            seed=seed, augment=augment)

    def step_loss(images, labels, index):
        if train_teacher_logits is not None:
            targets = train_teacher_logits[index]
        else:
            with torch.inference_mode(), autocast(device):
                targets = teacher(images).float()
        with autocast(device):
            student_logits = student(images).float()
        return loss_fn(student_logits, targets, labels, temperature=temperature, alpha=alpha)

    eval_teacher = cache.teacher_logits(teacher, eval_set, device=device) if eval_set is not None else None
    history = run_epochs(student, batches, step_loss, epochs=epochs, lr=lr, weight_decay=weight_decay,
                          optimizer=optimizer, schedule=schedule, desc=desc, progress=progress,
                          evaluate_fn=make_evaluator(student, eval_set, device, eval_teacher))
    history.config = {"kind": "distill", "temperature": temperature, "alpha": alpha, "loss": loss,
                      "epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
                      "seed": seed, "augment": repr(augment), "teacher_cached": use_cache,
                      "optimizer": optimizer, "schedule": schedule}
    return history
