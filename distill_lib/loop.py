"""The one training loop. ``fit`` (labels only), ``distill`` (a logit method) and every method of
``distill_lib.methods`` (hints, attention, adversarial, combinations) go through :func:`train`.

Each step (:func:`train_step`):

1. the teacher's outputs for the batch: rows of the cache (one teacher pass for the whole
   dataset) or, with random augmentation, the teacher run online on the same views;
2. the student's logits (and the stages the method reads);
3. the method's own extra update, if it has one (a discriminator's step);
4. the method's named loss parts; their sum is the loss: ``backward()``, optimizer ``step()``.

Around it the loop does, once for every method: input checks before any work, seeding, the
progress bar, timing, per-epoch evaluation, the stop on a non-finite loss and the
:class:`History`. Reported metrics are those of the FINAL epoch, never the best one (best-epoch
picking on the test set inflates results, a common reason published KD numbers do not reproduce).

Loss convention of the logit methods (see ``methods.kd``):
``loss = (1 - alpha) * CE(student, labels) + alpha * T^2 * KL(softmax(t/T) || softmax(s/T))``.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch

from .core import cache, checks
from .core.batches import BatchSource, TensorBatches
from .core.device import autocast, prepare_model, resolve_device
from .core.evaluate import ModelOutputs, metrics_from_logits, predict
from .core.models import feature_shapes
from .core.progress import Progress
from .methods import CrossEntropy, Method, StepOutputs, StopTraining, logit_method

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("onecycle", "cosine", "constant")
CACHE_MODES = ("auto", True, False)


class TrainingDiverged(RuntimeError):
    """Training had to stop (non-finite loss, a method's stop); ``history`` holds the epochs before."""

    def __init__(self, message: str, history: "History"):
        super().__init__(message)
        self.history = history


@dataclass
class History:
    """Per-epoch training loss, loss parts, method statistics, evaluation metrics and timing."""

    train_loss: list = field(default_factory=list)     # epoch mean of the summed objective
    eval_metrics: list = field(default_factory=list)   # one dict per epoch (empty without eval_set)
    epoch_seconds: list = field(default_factory=list)
    parts: dict = field(default_factory=dict)          # loss part -> epoch means (weighted, as summed)
    stats: dict = field(default_factory=dict)          # a method's monitoring values -> epoch means
    final: dict = field(default_factory=dict)          # metrics after the last epoch
    config: dict = field(default_factory=dict)

    def curve(self, name: str) -> list:
        """One series over epochs: an evaluation metric ("accuracy"), a loss part or a statistic."""
        if self.eval_metrics and name in self.eval_metrics[0]:
            return [m[name] for m in self.eval_metrics]
        for table in (self.parts, self.stats):
            if name in table:
                return list(table[name])
        known = sorted(set(self.eval_metrics[0] if self.eval_metrics else ()) | set(self.parts) | set(self.stats))
        raise KeyError(f"no series {name!r} in this History; it has {known}")

    @property
    def seconds(self) -> float:
        return float(sum(self.epoch_seconds))

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------ checks and factories
def check_training_args(epochs, batch_size, lr, weight_decay, seed, optimizer, schedule) -> tuple:
    """The checks every training call makes before any work; returns ``(epochs, batch_size, seed)``
    as Python ints (numpy integers pass the checks, but torch's schedulers and generators refuse them)."""
    counts = (checks.positive_int("epochs", epochs), checks.positive_int("batch_size", batch_size))
    checks.positive_number("lr", lr)
    checks.non_negative_number("weight_decay", weight_decay)
    seed = checks.non_negative_int("seed", seed)
    checks.one_of("optimizer", optimizer, OPTIMIZERS)
    checks.one_of("schedule", schedule, SCHEDULES)
    return (*counts, seed)


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


def output_size(model, example: torch.Tensor, name: str = "the model") -> int:
    """Number of classes a model predicts, read off one forward pass in eval mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            logits = checks.model_output(name, model(example[:1].to(next(model.parameters()).device)))
    except RuntimeError as error:  # wrong input shape or dtype for this model
        raise ValueError(f"{name} cannot take the dataset's images (shape {tuple(example.shape[1:])}, "
                         f"dtype {example.dtype}): {str(error).splitlines()[0]}") from None
    finally:
        model.train(was_training)
    if logits.ndim != 2:
        raise ValueError(f"a model must return batch x classes logits; this one returns shape {tuple(logits.shape)}")
    return logits.shape[-1]


def _check_inputs(student, train_set, method, teacher, eval_set, cache_teacher, augment) -> None:
    if not isinstance(method, Method):
        raise ValueError(f"method must be a distill_lib method (see dl.methods.METHODS); got {type(method).__name__}")
    checks.model("student", student)
    if method.needs_teacher and teacher is None:
        raise ValueError(f"method {method.name!r} learns from a teacher; pass teacher=...")
    if teacher is not None:
        checks.model("teacher", teacher)
    if isinstance(train_set, BatchSource):  # made batches: no rows to cache by, nothing to augment
        if cache_teacher is True or augment is not None:
            raise ValueError(f"train_set is a batch source ({train_set!r}): its images are new every step, so "
                             f"the teacher runs online; cache_logits=True and augment are refused")
    else:
        checks.dataset("train_set", train_set)
    if eval_set is not None:
        checks.dataset("eval_set", eval_set, allow_unlabelled=False)
    checks.strict_choice("cache_logits", cache_teacher, CACHE_MODES)
    checks.augmentation("augment", augment)
    if cache_teacher is True and method.needs_teacher:
        cache.refuse_with_augmentation(augment)


def _class_count(student, teacher, train_set, eval_set, method) -> int:
    """The classes the student predicts; teacher and labels must agree with it."""
    device = next(student.parameters()).device
    made = isinstance(train_set, BatchSource)  # a made batch's labels are made too: nothing to check
    example = torch.zeros(1, *train_set.input_shape) if made else train_set.images
    classes = output_size(student.to(device), example, "student")
    if teacher is not None:
        checks.same_class_count(classes, output_size(teacher, example, "teacher"))
    for name, data in (("train_set", None if made else train_set), ("eval_set", eval_set)):
        if data is not None:
            checks.class_labels(f"{name}.labels", data.labels, classes, allow_unlabelled=name == "train_set")
    if made:
        return classes
    if method.requires_every_label and bool((train_set.labels < 0).any()):
        raise ValueError(f"method {method.name!r} needs a label for every training image; train_set has "
                         f"{int((train_set.labels < 0).sum())} unlabelled ones (-1)")
    if not bool((train_set.labels >= 0).any()) and not method.needs_teacher:
        raise ValueError("train_set has no labelled image (every label is -1): nothing to learn from without a teacher")
    return classes


# ------------------------------------------------------------------ one step
@dataclass
class TeacherSource:
    """Where a step gets the teacher's outputs: cached rows, or the teacher run online."""

    cached: ModelOutputs | None = None
    teacher: torch.nn.Module | None = None
    stages: tuple = ()

    def for_batch(self, images, index, device):
        if self.cached is not None:
            return self.cached.logits[index], {s: f[index] for s, f in self.cached.features.items()}
        if self.teacher is None:
            return None, {}
        with torch.inference_mode(), autocast(device):
            if not self.stages:
                return self.teacher(images).float(), {}
            logits, features = self.teacher(images, return_features=True)
        return logits.float(), {s: features[s].float() for s in self.stages}


def train_step(student, method: Method, optimizer, images, labels, *, teacher_logits=None,
               teacher_features=None, student_stages=()) -> tuple:
    """One step (module docstring): returns ``(loss, parts, stats)``; the loss is checked finite
    BEFORE ``backward()`` (``FloatingPointError`` otherwise), so a bad batch never updates weights."""
    with autocast(images.device):
        if student_stages:
            logits, features = student(images, return_features=True)
            features = {s: features[s] for s in student_stages}
        else:
            logits, features = student(images), {}
    out = StepOutputs(logits.float(), labels, teacher_logits, features, teacher_features or {})
    stats = method.before_student_step(out)
    parts = method(out)
    loss = sum(parts.values())
    value = loss.item()  # one device sync per step, for the check and the epoch mean
    if not math.isfinite(value):
        raise FloatingPointError(f"loss became {value}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return value, parts, stats


class _EpochMeans:
    """Sums of the loss, its parts and the method's statistics over an epoch's steps."""

    def __init__(self):
        self.loss, self.count, self.parts, self.stats = 0.0, 0, {}, {}

    def add(self, loss: float, parts: dict, stats: dict) -> None:
        self.loss, self.count = self.loss + loss, self.count + 1
        for table, values in ((self.parts, parts), (self.stats, stats)):
            for name, value in values.items():
                value = value.detach() if isinstance(value, torch.Tensor) else torch.tensor(float(value))
                table[name] = table.get(name, 0) + value

    def record(self, history: History, epoch_stats: dict) -> None:
        history.train_loss.append(self.loss / self.count)
        means = {name: float(total) / self.count for name, total in self.stats.items()}
        for table, values in ((history.parts, {n: float(t) / self.count for n, t in self.parts.items()}),
                              (history.stats, {**means, **epoch_stats})):
            for name in set(table) | set(values):
                series = table.setdefault(name, [0.0] * (len(history.train_loss) - 1))  # absent earlier: 0
                series.append(values.get(name, 0.0))


# ------------------------------------------------------------------ the loop
def train(student, train_set, method: Method, *, teacher=None, epochs: int = 10, batch_size: int = 128,
          lr: float = 1e-3, weight_decay: float = 5e-4, optimizer: str = "adam", schedule: str = "onecycle",
          device="auto", seed: int = 0, augment=None, cache_logits="auto", eval_set=None,
          eval_every_epoch: bool = True, progress: str | None = None, desc: str = "train") -> History:
    """Train ``student`` on ``train_set`` with ``method`` (a ``distill_lib.methods`` object).

    ``train_set`` is a Dataset (batches of ``batch_size`` rows) or a ``BatchSource`` that makes its
    batches (a generator's images, noise): then an epoch is its ``steps`` batches, ``batch_size``
    is the source's own and the teacher runs online on every batch.

    ``eval_set`` is scored after every epoch (``History.eval_metrics``, the learning curves), or
    with ``eval_every_epoch=False`` once, after the last epoch (``History.final`` only): for
    models whose evaluation costs as much as an epoch of training.

    ``teacher`` is required by methods that learn from one; given to one that does not (plain
    cross-entropy), it is only used to report the student's agreement with it.

    ``cache_logits``: "auto" caches the teacher's outputs when ``augment`` is None and runs the
    teacher online otherwise; True insists on the cache (refused with augmentation); False
    always runs the teacher online. Labels of -1 mark unlabelled images. Everything is checked
    before any work; a non-finite loss or a method's stop raises :class:`TrainingDiverged`
    carrying the History of the finished epochs.
    """
    epochs, batch_size, seed = check_training_args(epochs, batch_size, lr, weight_decay, seed, optimizer, schedule)
    _check_inputs(student, train_set, method, teacher, eval_set, cache_logits, augment)
    if not isinstance(eval_every_epoch, bool):
        raise ValueError(f"eval_every_epoch must be True or False; got {eval_every_epoch!r}")
    device = resolve_device(device)
    use_teacher = method.needs_teacher  # a teacher given to a method that needs none only scores agreement
    if teacher is not None:
        teacher = prepare_model(teacher, device).eval()
    num_classes = _class_count(student, teacher, train_set, eval_set, method)
    torch.manual_seed(seed)  # dropout and anything else drawing from the global RNG
    student = prepare_model(student, device)
    student_stages, teacher_stages = method.student_stages(), method.teacher_stages()
    method.prepare(student_shapes=feature_shapes(student, train_set.input_shape) if student_stages else {},
                   teacher_shapes=feature_shapes(teacher, train_set.input_shape) if teacher_stages else {},
                   num_classes=num_classes, seed=seed)
    method.to(device)  # after prepare: the modules it builds there (a hint's regressor) must move too
    made = isinstance(train_set, BatchSource)
    use_cache = use_teacher and not made and (cache_logits is True or (cache_logits == "auto" and augment is None))
    source = TeacherSource(
        cached=cache.teacher_outputs(teacher, train_set, teacher_stages, device=device).to(device) if use_cache else None,
        teacher=teacher if use_teacher and not use_cache else None, stages=teacher_stages)
    batches = train_set.to(device) if made else TensorBatches(
        train_set.images, train_set.labels, batch_size=batch_size, device=device, seed=seed, augment=augment)
    evaluate_now = _evaluator(student, method, eval_set, teacher, device)
    history = History(config={"method": method.name, **method.settings(), "epochs": epochs,
                              "batch_size": train_set.batch_size if made else batch_size, "lr": lr, "weight_decay": weight_decay, "seed": seed,
                              "augment": repr(augment), "teacher_cached": use_cache, "optimizer": optimizer,
                              "schedule": schedule})
    params = list(student.parameters()) + list(method.student_parameters())
    opt = make_optimizer(params, optimizer, lr, weight_decay)
    sched = make_schedule(opt, schedule, lr, epochs * len(batches))
    with Progress(epochs * len(batches), desc, progress) as bar:
        for epoch in range(1, epochs + 1):
            started, means = time.perf_counter(), _EpochMeans()
            student.train()
            method.start_epoch(epoch)
            for step, (images, labels, index) in enumerate(batches, start=1):
                teacher_logits, teacher_features = source.for_batch(images, index, device)
                try:
                    loss, parts, stats = train_step(student, method, opt, images, labels, teacher_logits=teacher_logits,
                                                    teacher_features=teacher_features, student_stages=student_stages)
                except FloatingPointError as error:
                    raise TrainingDiverged(f"{desc}: {error} at epoch {epoch}, step {step}; training stopped. "
                                           f"{_divergence_advice(teacher_logits, lr, first_step=epoch == step == 1)}",
                                           history) from None
                sched.step()
                means.add(loss, parts, stats)
                bar.update(1)
            means.record(history, method.epoch_stats())
            history.epoch_seconds.append(time.perf_counter() - started)
            scored = evaluate_now is not None and (eval_every_epoch or epoch == epochs)
            metrics = evaluate_now() if scored else {}
            history.eval_metrics.append(metrics if eval_every_epoch else {})  # a curve, or nothing
            bar.update(0, epoch=epoch, loss=history.train_loss[-1], **_progress_fields(metrics))
            try:
                method.end_epoch(epoch, history)
            except StopTraining as stop:
                raise TrainingDiverged(f"{desc}: {stop}", history) from None
    history.final = dict(metrics)
    return history


def _divergence_advice(teacher_logits, lr, *, first_step: bool = False) -> str:
    """What to do about a non-finite loss: a teacher that emits NaN is broken, and a loss that is
    NaN before the first update comes from the loss itself; no lr fixes either."""
    if teacher_logits is not None and not bool(torch.isfinite(teacher_logits).all()):
        return ("The teacher's logits for this batch hold NaN or inf: the teacher is broken (its weights), "
                "not the student's training; a lower lr will not help.")
    if first_step:  # no weight has changed yet: the lr played no part
        return ("The loss was not finite before the first update, so the learning rate is not the cause: "
                "check the loss itself for log(0), 0 * log(0) (use torch.special.xlogy or F.kl_div on "
                "log-probabilities) or a division by zero, and the inputs for NaN.")
    return f"Try a lower lr (now {lr}) or check the inputs."


def _progress_fields(metrics: dict) -> dict:
    """What the progress bar shows of an epoch's evaluation: the test accuracy, when there is one."""
    return {"test_acc": metrics["accuracy"]} if "accuracy" in metrics else {}


def _evaluator(student, method, eval_set, teacher, device):
    """Final-epoch style metrics on ``eval_set`` (accuracy, nll, ece; agreement with a teacher)."""
    if eval_set is None:
        return None
    teacher_logits = cache.teacher_outputs(teacher, eval_set, device=device).logits if teacher is not None else None
    on_device = (teacher_logits.to(device) if teacher_logits is not None else None, eval_set.labels.to(device))

    def evaluate_now():
        logits = predict(student, eval_set.images, device=device).logits
        metrics = metrics_from_logits(logits, eval_set.labels, teacher_logits)
        if teacher_logits is not None:
            metrics.update(method.eval_metrics(logits.to(device), *on_device))
        return metrics
    return evaluate_now


# ------------------------------------------------------------------ the two everyday uses
def fit(model, train_set, *, epochs: int = 10, batch_size: int = 128, lr: float = 1e-3,
        weight_decay: float = 5e-4, device="auto", seed: int = 0, augment=None, eval_set=None,
        optimizer: str = "adam", schedule: str = "onecycle", label_smoothing: float = 0.0,
        progress: str | None = None, desc: str = "fit") -> History:
    """Train ``model`` with cross-entropy on ``train_set``; evaluate on ``eval_set`` every epoch."""
    method = CrossEntropy(label_smoothing)
    return train(model, train_set, method, epochs=epochs, batch_size=batch_size, lr=lr,
                 weight_decay=weight_decay, optimizer=optimizer, schedule=schedule, device=device, seed=seed,
                 augment=augment, eval_set=eval_set, progress=progress, desc=desc)


def distill(student, teacher, train_set, *, temperature: float = 4.0, alpha: float = 0.9,
            epochs: int = 10, batch_size: int = 128, lr: float = 1e-3, weight_decay: float = 5e-4,
            device="auto", seed: int = 0, loss: str = "kl", loss_options: dict | None = None, augment=None,
            cache_logits="auto", eval_set=None, optimizer: str = "adam", schedule: str = "onecycle",
            progress: str | None = None, desc: str = "distill") -> History:
    """Train ``student`` to match ``teacher`` with ``(1 - alpha) * CE + alpha * soft_term``.

    ``loss`` names the soft term: "kl" (Hinton's T^2 * KL), "mse-logits", "mse-soft" or "dkd"
    (decoupled KD; its weights go in ``loss_options``, e.g. ``{"nckd_weight": 8.0}``).
    ``cache_logits``: "auto" caches the teacher's logits when ``augment`` is None and runs the
    teacher online otherwise; True insists on the cache (refused with augmentation); False
    always runs the teacher online. Labels of -1 mark unlabelled images (soft term only).
    """
    check_training_args(epochs, batch_size, lr, weight_decay, seed, optimizer, schedule)
    if loss_options is not None and not isinstance(loss_options, dict):
        raise ValueError(f"loss_options must be a dict of the loss's options; got {loss_options!r}")
    method = logit_method(loss, temperature=temperature, alpha=alpha, **(loss_options or {}))
    return train(student, train_set, method, teacher=teacher, epochs=epochs, batch_size=batch_size, lr=lr,
                 weight_decay=weight_decay, optimizer=optimizer, schedule=schedule, device=device, seed=seed,
                 augment=augment, cache_logits=cache_logits, eval_set=eval_set, progress=progress, desc=desc)
