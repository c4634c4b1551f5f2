"""Data-free distillation: a generator makes the images, the student learns from the teacher on them.

No training image is used. A generator ``G`` turns noise ``z`` into an image; the frozen teacher
judges it. Each step of the one loop (``distill_lib.loop.train`` with :meth:`DataFree.batches`, a
:class:`GeneratorBatches` source, as its ``train_set``):

1. the batch: the images ``G`` made in its previous step, detached, then shifted, flipped, rotated
   and scaled at random (no labels: the student learns from the teacher only);
2. the teacher's logits on them, run online;
3. **the generator's step**, this method's hook (as the discriminator's step is in ``adversarial``):
   a fresh batch, jittered (a random shift of up to 2 pixels and a flip per image, as
   DeepInversion jitters) and scored by the frozen teacher (and the frozen student); ``G`` minimises

   - ``class``   ``w_class * CE(teacher(x), argmax teacher(x))``: images the teacher is sure about
     (DAFL's one-hot loss); a conditional ``G`` asked for class ``c`` gets ``CE(teacher(x), c)``;
   - ``bn``      ``w_bn * sum_layers mean_channels KL(N(mu_batch, var_batch) || N(mu_run, var_run))``:
     the features of a generated batch must have the statistics the teacher's BatchNorm layers
     recorded on the real data (DeepInversion's prior, Yin et al. 2020, in a scale-free form). It
     also keeps every class in the batch: a batch of one class has the wrong statistics;
   - ``tv``      ``w_tv * total variation``: neighbouring pixels alike (an image prior);
   - ``adv``     ``-w_adv * L1(student(x), teacher(x))``: seek images where the student still
     disagrees with the teacher (DFAD, Fang et al. 2019);
   - ``balance`` ``w_balance * (log C - H(mean teacher softmax))``: every class equally often
     (DAFL's information-entropy loss; off by default, the BN prior does its work here);

4. **the student's step** on the batch of 1: ``T^2 * KL(softmax(t/T) || softmax(s/T))``, the
   workbench's KD loss with ``alpha = 1`` (its part is ``"kd"``).

The generator's weighted loss parts are recorded per epoch in ``History.stats`` as ``gen_class``,
``gen_bn``, ``gen_tv``, ``gen_adv``, ``gen_balance`` (only those with a weight > 0) with their sum
``gen_loss`` (and, for a conditional ``G``, ``gen_agree``: the share of images the teacher reads as
the class asked for); ``History.parts`` holds the student's. After every epoch the method keeps a
snapshot (:attr:`DataFree.snapshots`): the generator's images for a fixed batch of noise, and the
classes the teacher reads on them.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..core import checks
from ..core.batches import Augment, BatchSource
from .adversarial import frozen
from .base import Method, StepOutputs
from .kd import kl_soft_term, precise


class Generator(nn.Module):
    """``z`` (and, when ``conditional``, a one-hot class) -> linear -> ``channels`` x H/4 x W/4 ->
    upsample x2 -> conv -> upsample x2 -> conv -> sigmoid: images in [0, 1], the range every model
    of the workbench takes. BatchNorm (so no bias before it) and LeakyReLU(0.2) after the linear
    layer and the first conv: DCGAN's generator (Radford et al. 2016) made small, about 1.1M
    multiply-adds per 28 x 28 image at 32 channels (the LeNet teacher: 0.42M).

    Unconditional by default, the recipe of notebook 07: a conditional generator soon makes one
    image per class whatever its noise (collapse *within* a class); an unconditional one has to
    put the class into ``z`` too, and so keeps its noise meaningful. ``seed`` makes the initial
    weights repeatable; the global RNG is left untouched."""

    def __init__(self, num_classes: int = 10, *, image_shape=(1, 28, 28), noise_dim: int = 64, channels: int = 32,
                 conditional: bool = False, seed: int | None = None):
        super().__init__()
        self.num_classes = checks.positive_int("num_classes", num_classes)
        self.noise_dim = checks.positive_int("noise_dim", noise_dim)
        self.channels = checks.positive_int("channels", channels)
        self.image_shape = tuple(image_shape)
        if len(self.image_shape) != 3 or self.image_shape[1] % 4 or self.image_shape[2] % 4:
            raise ValueError(f"image_shape must be (channels, height, width) with height and width divisible by 4; "
                             f"got {image_shape!r}")
        self.conditional = checks.strict_choice("conditional", conditional, (True, False))
        self.start = (self.image_shape[1] // 4, self.image_shape[2] // 4)
        width = channels * self.start[0] * self.start[1]
        inputs = noise_dim + (num_classes if self.conditional else 0)
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(checks.non_negative_int("seed", seed))
            self.project = nn.Sequential(nn.Linear(inputs, width, bias=False), nn.BatchNorm1d(width), nn.LeakyReLU(0.2))
            self.body = nn.Sequential(
                nn.Upsample(scale_factor=2), nn.Conv2d(channels, channels // 2, 3, padding=1, bias=False),
                nn.BatchNorm2d(channels // 2), nn.LeakyReLU(0.2),
                nn.Upsample(scale_factor=2), nn.Conv2d(channels // 2, self.image_shape[0], 3, padding=1), nn.Sigmoid())

    def forward(self, z: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        if self.conditional:
            if classes is None:
                raise ValueError("a conditional generator needs the classes of the images to make")
            z = torch.cat([z, F.one_hot(classes, self.num_classes).to(z.dtype)], dim=1)
        return self.body(self.project(z).view(len(z), self.channels, *self.start))

    def draw(self, n: int, rng: torch.Generator, device="cpu") -> tuple:
        """Inputs for ``n`` images: noise ``z`` (standard normal, drawn on the CPU from ``rng``) and
        classes in turn 0, 1, ..., C-1, 0, 1, ... (every class equally often; an unconditional
        generator ignores them)."""
        z = torch.randn(n, self.noise_dim, generator=rng)
        classes = torch.arange(n) % self.num_classes
        return z.to(device), classes.to(device)


class GeneratorBatches(BatchSource):
    """The one loop's batches in data-free distillation: ``steps`` batches of ``batch_size`` images
    from ``generator`` per epoch, without gradients, labelled -1 (no label). The generator stays in
    training mode (its BatchNorm uses the batch's statistics, as in its own step).

    ``latest`` (what :meth:`DataFree.batches` passes): a callable that returns the images of the
    generator's latest step, or None; when it returns a batch of ``batch_size`` images, the student
    gets that batch instead of a new one. The generator then makes one batch per step, for its own
    update and (detached) for the student's, as DAFL does; making a second batch would cost a
    sixth of the step.

    ``augment`` (default on): each image is shifted by up to 2 pixels, mirrored with probability
    1/2, then rotated (up to 15 degrees), scaled (+-10%) and shifted (up to 10%) at random: the
    student sees more versions of each generated image, and the teacher (run online) labels each
    version. Draws come from a generator seeded with ``seed``: the same seed, the same batches."""

    def __init__(self, generator: Generator, *, steps: int, batch_size: int, seed: int = 0, augment: bool = True,
                 latest=None):
        if not isinstance(generator, Generator):
            raise ValueError(f"generator must be a distill_lib Generator; got {type(generator).__name__}")
        self.generator = generator
        self.input_shape = generator.image_shape
        self.steps = checks.positive_int("steps", steps)
        self.batch_size = checks.positive_int("batch_size", batch_size)
        self.augment = checks.strict_choice("augment", augment, (True, False))
        self.latest = latest
        self.rng = torch.Generator().manual_seed(checks.non_negative_int("seed", seed))

    def __repr__(self) -> str:
        return (f"GeneratorBatches({self.steps} x {self.batch_size} generated images of {self.input_shape}, "
                f"augment={self.augment})")

    def __iter__(self):
        for _ in range(self.steps):
            device = next(self.generator.parameters()).device
            images = self.latest() if self.latest is not None else None
            with torch.no_grad():
                if images is None or len(images) != self.batch_size:
                    images = self.generator(*self.generator.draw(self.batch_size, self.rng, device))
                if self.augment:
                    images = random_affine(jitter(images, self.rng, 2), self.rng)
            yield images, torch.full((self.batch_size,), -1, device=device), None


# ------------------------------------------------------------------ the generator's loss terms
class BatchNormStatistics:
    """Within ``with``: the per-channel mean and (biased) variance of the input of every BatchNorm
    layer of ``model`` on each forward pass, as ``records`` of ``(layer, mean, var)``."""

    def __init__(self, model: nn.Module):
        self.layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.records, self._handles = [], []

    def __enter__(self) -> "BatchNormStatistics":
        self.records = []
        self._handles = [layer.register_forward_hook(self._record) for layer in self.layers]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _record(self, layer, inputs, output) -> None:
        x = inputs[0]
        dims = [0, *range(2, x.ndim)]  # every axis but the channels
        self.records.append((layer, x.mean(dims), x.var(dims, unbiased=False)))


def gaussian_kl(mean, var, ref_mean, ref_var) -> torch.Tensor:
    """``KL(N(mean, var) || N(ref_mean, ref_var))`` elementwise (per channel)."""
    return 0.5 * (torch.log(ref_var / var) + (var + (mean - ref_mean) ** 2) / ref_var - 1)


def bn_prior(records) -> torch.Tensor:
    """DeepInversion's BatchNorm-statistics prior in a scale-free form: for every layer the Gaussian
    KL of the batch's channel statistics from the running ones, averaged over channels, summed over
    layers (``eps`` of each layer added to both variances). Zero when they match."""
    if not records:
        raise ValueError("no BatchNorm layer ran: the BatchNorm-statistics prior needs a teacher with BatchNorm")
    return sum(gaussian_kl(mean, var + layer.eps, layer.running_mean, layer.running_var + layer.eps).mean()
               for layer, mean, var in records)


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of vertically and of horizontally neighbouring pixels, summed."""
    return ((images[..., 1:, :] - images[..., :-1, :]).abs().mean()
            + (images[..., :, 1:] - images[..., :, :-1]).abs().mean())


def class_balance(teacher_logits: torch.Tensor) -> torch.Tensor:
    """``log C - H(p_mean)``, ``p_mean`` the batch mean of the teacher's softmax: 0 when the teacher
    sees every class equally often, ``log C`` when it sees one class only (DAFL's entropy loss)."""
    p_mean = F.softmax(teacher_logits, dim=1).mean(0)
    return math.log(teacher_logits.shape[1]) + (p_mean * torch.log(p_mean.clamp_min(1e-12))).sum()


def disagreement(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """DFAD's discrepancy: the mean absolute difference of student and teacher logits."""
    return F.l1_loss(student_logits, teacher_logits)


def jitter(images: torch.Tensor, rng: torch.Generator, max_shift: int) -> torch.Tensor:
    """Every image shifted by its own random (dy, dx) in [-max_shift, max_shift] (zero fill) and
    mirrored left-right with probability 1/2: ``Augment(max_shift, flip=True)``, differentiable in
    the images. What the generator's images go through before the teacher judges them (DeepInversion's
    jitter), so that the generator cannot rely on a pixel-exact pattern."""
    return Augment(max_shift, flip=True)(images, rng)


def random_affine(images: torch.Tensor, rng: torch.Generator, rotation: float = 15.0, scale: float = 0.1,
                  shift: float = 0.1) -> torch.Tensor:
    """Every image rotated by up to ``rotation`` degrees, scaled by 1 +- ``scale`` and shifted by up
    to ``shift`` of its size (uniform draws from ``rng``, on the CPU), bilinear, zero fill; batched."""
    n = len(images)
    draw = lambda: (torch.rand(n, generator=rng) * 2 - 1).to(images.device)  # noqa: E731  uniform in [-1, 1]
    angle, size, dx, dy = draw() * math.radians(rotation), 1 + draw() * scale, draw() * shift, draw() * shift
    theta = torch.stack([torch.stack([size * angle.cos(), -size * angle.sin(), dx], 1),
                         torch.stack([size * angle.sin(), size * angle.cos(), dy], 1)], 1)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, align_corners=False)


# ------------------------------------------------------------------ the method
class DataFree(Method):
    """The student's step is KD with ``alpha = 1`` (part ``"kd"``); the generator's step is the hook.

    ``teacher`` and ``student`` are the models the loop trains (the generator's step runs both, frozen:
    its gradients reach only the generator). Its Adam optimizer (``g_lr``, betas 0.5 / 0.999) and its
    random stream (``seed`` of the loop) are made in ``prepare``. See the module docstring for the terms.
    """

    name = "data-free"

    def __init__(self, generator: Generator, teacher: nn.Module, student: nn.Module | None = None, *,
                 temperature: float = 1.0, class_weight: float = 1.0, bn_weight: float = 10.0, tv_weight: float = 1.0,
                 adv_weight: float = 0.1, balance_weight: float = 0.0, jitter: int = 2, g_lr: float = 1e-2,
                 g_batch_size: int = 256):
        super().__init__()
        self.temperature = checks.positive_number("temperature", temperature)
        if not isinstance(generator, Generator):
            raise ValueError(f"generator must be a distill_lib Generator; got {type(generator).__name__}")
        checks.model("teacher", teacher)
        self.generator = generator
        self.class_weight = checks.non_negative_number("class_weight", class_weight)
        self.bn_weight = checks.non_negative_number("bn_weight", bn_weight)
        self.tv_weight = checks.non_negative_number("tv_weight", tv_weight)
        self.adv_weight = checks.non_negative_number("adv_weight", adv_weight)
        self.balance_weight = checks.non_negative_number("balance_weight", balance_weight)
        self.jitter = checks.non_negative_int("jitter", jitter)
        self.g_lr = checks.positive_number("g_lr", g_lr)
        self.g_batch_size = checks.positive_int("g_batch_size", g_batch_size)
        if self.adv_weight > 0 and student is None:
            raise ValueError("adv_weight > 0 needs the student (the generator seeks where it disagrees with the teacher)")
        if student is not None:
            checks.model("student", student)
        self.bn_stats = BatchNormStatistics(teacher)
        if self.bn_weight > 0 and not self.bn_stats.layers:
            raise ValueError("bn_weight > 0 needs a teacher with BatchNorm layers (their running statistics are the prior)")
        # kept in a tuple, not as submodules: the loop owns (and moves) these models
        self._models = (teacher, student)
        self.g_optimizer, self.rng, self.snapshots, self._fixed, self._latest = None, None, [], None, None

    def part_names(self) -> tuple:
        return ("kd",)

    def forward(self, out: StepOutputs) -> dict:
        """The student's part: ``T^2 * KL(softmax(t/T) || softmax(s/T))``, batch mean (no labels)."""
        return {"kd": kl_soft_term(precise(out.student_logits), precise(out.teacher_logits), self.temperature)}

    def batches(self, *, steps: int, batch_size: int, seed: int = 0, augment: bool = True) -> GeneratorBatches:
        """The loop's batch source: ``steps`` batches per epoch, each the images of the generator's
        previous step (a new batch before its first step), augmented."""
        return GeneratorBatches(self.generator, steps=steps, batch_size=batch_size, seed=seed, augment=augment,
                                latest=self.latest_images)

    def latest_images(self):
        """The images of the generator's latest step (detached), once; None when already taken."""
        images, self._latest = self._latest, None
        return images

    def student_parameters(self) -> list:
        return []  # the generator has its own objective and optimizer

    def prepare(self, *, student_shapes: dict, teacher_shapes: dict, num_classes: int, seed: int) -> None:
        if num_classes != self.generator.num_classes:
            raise ValueError(f"the generator makes {self.generator.num_classes} classes, the models predict "
                             f"{num_classes}; build Generator({num_classes})")
        self.generator.train()
        self.g_optimizer = torch.optim.Adam(self.generator.parameters(), lr=self.g_lr, betas=(0.5, 0.999))
        self.rng = torch.Generator().manual_seed(seed + 1)  # not the batch source's stream (seeded with seed)
        self._fixed = self.generator.draw(self.g_batch_size, torch.Generator().manual_seed(seed))
        self.snapshots, self._latest = [], None

    def generator_parts(self, images: torch.Tensor, classes: torch.Tensor) -> tuple:
        """The generator's weighted loss parts on ``images`` made for ``classes`` (jittered with
        this method's random stream), and the teacher's logits on them."""
        teacher, student = self._models
        seen = jitter(images, self.rng, self.jitter)
        with frozen(teacher), self.bn_stats:
            teacher_logits = teacher(seen)
        target = classes if self.generator.conditional else teacher_logits.argmax(1)
        parts = {}
        if self.class_weight > 0:
            parts["gen_class"] = self.class_weight * F.cross_entropy(teacher_logits, target)
        if self.bn_weight > 0:
            parts["gen_bn"] = self.bn_weight * bn_prior(self.bn_stats.records)
        if self.tv_weight > 0:
            parts["gen_tv"] = self.tv_weight * total_variation(images)
        if self.adv_weight > 0:
            with frozen(student):
                parts["gen_adv"] = -self.adv_weight * disagreement(student(seen), teacher_logits)
        if self.balance_weight > 0:
            parts["gen_balance"] = self.balance_weight * class_balance(teacher_logits)
        return parts, teacher_logits

    def before_student_step(self, out: StepOutputs) -> dict:
        """The generator's step on a fresh batch; returns its parts (detached) for History.stats."""
        device = next(self.generator.parameters()).device
        z, classes = self.generator.draw(self.g_batch_size, self.rng, device)
        images = self.generator(z, classes)
        self._latest = images.detach()
        parts, teacher_logits = self.generator_parts(images, classes)
        loss = sum(parts.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"generator loss became {loss.item()}")
        self.g_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.g_optimizer.step()
        stats = {**{name: value.detach() for name, value in parts.items()}, "gen_loss": loss.detach()}
        if self.generator.conditional:
            stats["gen_agree"] = (teacher_logits.argmax(1) == classes).float().mean().detach()
        return stats

    @torch.no_grad()
    def end_epoch(self, epoch: int, history) -> None:
        """Keep a snapshot: the generator's images for a fixed batch of noise (``g_batch_size``
        images, made as in training), the classes asked for and the classes the teacher reads."""
        teacher, _ = self._models
        device = next(self.generator.parameters()).device
        z, classes = (t.to(device) for t in self._fixed)
        images = self.generator(z, classes)
        read = teacher(images).argmax(1)
        self.snapshots.append({"epoch": epoch, "images": images.cpu(), "asked": classes.cpu(), "read": read.cpu(),
                               "teacher_counts": torch.bincount(read, minlength=self.generator.num_classes).cpu().tolist()})

    def settings(self) -> dict:
        return {"temperature": self.temperature, "class_weight": self.class_weight, "bn_weight": self.bn_weight,
                "tv_weight": self.tv_weight, "adv_weight": self.adv_weight, "balance_weight": self.balance_weight,
                "jitter": self.jitter, "g_lr": self.g_lr, "g_batch_size": self.g_batch_size,
                "conditional": self.generator.conditional, "noise_dim": self.generator.noise_dim,
                "generator_channels": self.generator.channels}
