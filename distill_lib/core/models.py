"""Teacher and student models by name, parameter and MAC counts, and feature access.

Every model is a :class:`StagedNet`: a sequence of named stages followed by a head. Calling it
with ``return_features=True`` also returns each stage's output, which is what feature (hint)
distillation matches. Models take images in [0, 1] and centre them themselves, so every model
sees the same tensors and no preprocessing can go missing between training and deployment.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from . import checks

# Every model takes images in [0, 1] and centres them itself with these constants; the int8
# wrapper (lessons.lightweight) and the ImageNet adapter (lessons.transfer_models) use the same
# two functions, so the preprocessing exists in exactly one place.
INPUT_MEAN, INPUT_STD = 0.5, 0.5


def normalise_inputs(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] images -> centred inputs in [-1, 1], what every model's first layer sees."""
    return (images - INPUT_MEAN) / INPUT_STD


def denormalise_inputs(centred: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`normalise_inputs`: centred inputs back to [0, 1]."""
    return centred * INPUT_STD + INPUT_MEAN


# name -> (family, default keyword arguments). Overrides go through build_model(**kwargs).
MODEL_PRESETS = {
    # The teacher: a VGG-style BN CNN, 28 -> 14 -> 7 -> global pool. Full-resolution stages
    # get one conv only: that keeps it CPU-trainable (about 15M MACs per image).
    "cnn-teacher": ("cnn", {"channels": (32, 64, 128), "convs_per_stage": (1, 1, 2), "dropout": 0.2}),
    # A small CNN student: two single-conv stages (about 5k parameters).
    "cnn-small": ("cnn", {"channels": (16, 32), "convs_per_stage": (1, 1), "dropout": 0.0}),
    # A MobileNet-style student: a conv stem, then depthwise-separable stages (about 0.35M MACs).
    "cnn-dws": ("dws", {"channels": (16, 32, 64), "dropout": 0.0}),
    # A tiny MLP student, 784-32-10: too small to gain much from soft targets at high T.
    "mlp-tiny": ("mlp", {"hidden": (32,), "dropout": 0.0}),
    # A small MLP student, 784-128-10.
    "mlp-small": ("mlp", {"hidden": (128,), "dropout": 0.0}),
    # Hinton et al. 2015's 800-800 student: overfits alone, which is where KD helps most.
    "mlp-hinton": ("mlp", {"hidden": (800, 800), "dropout": 0.0}),
    # LeNet-5 with BatchNorm after every layer but the last (about 0.42M MACs, 62k parameters):
    # the teacher size of the data-free papers (DAFL, DFAD, ZSKD), cheap enough to run forwards
    # AND backwards through every generated batch on a CPU (notebook 07).
    "lenet5-bn": ("lenet", {"channels": (6, 16), "hidden": (120, 84), "dropout": 0.0}),
}


class StagedNet(nn.Module):
    """Named stages, then a head; ``forward(x, return_features=True)`` exposes every stage."""

    def __init__(self, stages: "OrderedDict[str, nn.Module]", head: nn.Module):
        super().__init__()
        self.stages = nn.ModuleDict(stages)
        self.head = head
        self.arch: dict = {}  # filled by build_model: the name and arguments that rebuild it

    @property
    def num_classes(self) -> int:
        return self.arch.get("num_classes") or [m for m in self.head.modules() if isinstance(m, nn.Linear)][-1].out_features

    def forward(self, x: torch.Tensor, return_features: bool = False):
        features = OrderedDict()
        x = normalise_inputs(x)  # centre [0, 1] inputs; BN / Adam take care of the rest of the scale
        for name, stage in self.stages.items():
            x = stage(x)
            features[name] = x
        logits = self.head(x)
        return (logits, features) if return_features else logits


def _conv_bn_relu(c_in: int, c_out: int) -> list:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def make_cnn(in_shape, num_classes, channels, convs_per_stage, dropout) -> StagedNet:
    """Stage i has ``convs_per_stage[i]`` conv-BN-ReLU blocks of ``channels[i]`` channels and,
    all but the last, ends in a 2x2 max-pool; then global average pooling and a linear layer."""
    if len(convs_per_stage) != len(channels):
        raise ValueError(f"convs_per_stage {tuple(convs_per_stage)} needs one entry per stage of channels {tuple(channels)}")
    stages, c_in = OrderedDict(), in_shape[0]
    for i, c_out in enumerate(channels):
        layers = []
        for _ in range(convs_per_stage[i]):
            layers += _conv_bn_relu(c_in, c_out)
            c_in = c_out
        if i < len(channels) - 1:
            layers.append(nn.MaxPool2d(2))
        stages[f"stage{i + 1}"] = nn.Sequential(*layers)
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in, num_classes))
    return StagedNet(stages, head)


def _depthwise_separable(c_in: int, c_out: int) -> list:
    # a 3x3 filter per channel (groups=c_in), then a 1x1 conv mixing channels: about
    # 9 / c_out + 1 / 9 of a full 3x3 conv's multiply-accumulates (Howard et al. 2017)
    return [nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False), nn.BatchNorm2d(c_in), nn.ReLU(inplace=True),
            nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def make_dws_cnn(in_shape, num_classes, channels, dropout) -> StagedNet:
    """MobileNet-style CNN: stage 1 is a full 3x3 conv-BN-ReLU stem (a depthwise filter on one
    input channel would see too little), every later stage one depthwise-separable block; 2x2
    max-pool after all but the last stage, then global average pooling and a linear layer."""
    stages, c_in = OrderedDict(), in_shape[0]
    for i, c_out in enumerate(channels):
        layers = _conv_bn_relu(c_in, c_out) if i == 0 else _depthwise_separable(c_in, c_out)
        if i < len(channels) - 1:
            layers.append(nn.MaxPool2d(2))
        stages[f"stage{i + 1}"] = nn.Sequential(*layers)
        c_in = c_out
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in, num_classes))
    return StagedNet(stages, head)


def make_lenet(in_shape, num_classes, channels, hidden, dropout) -> StagedNet:
    """LeNet-5 (LeCun et al. 1998) with BatchNorm: a 5x5 conv (padding 2) and a 5x5 conv (no
    padding), each conv-BN-ReLU then a 2x2 max-pool; then fully connected BN-ReLU layers of
    ``hidden`` units (stage ``fc``) and a linear head. 28x28 inputs give 16 x 5 x 5 features."""
    if len(channels) != 2:
        raise ValueError(f"a LeNet has two conv stages; got channels {tuple(channels)}")
    size = (in_shape[1] // 2 - 4) // 2, (in_shape[2] // 2 - 4) // 2
    if min(size) < 1:
        raise ValueError(f"a LeNet needs images of at least 10 x 10 pixels; got {tuple(in_shape[1:])}")
    stages = OrderedDict()
    stages["stage1"] = nn.Sequential(nn.Conv2d(in_shape[0], channels[0], 5, padding=2, bias=False),
                                     nn.BatchNorm2d(channels[0]), nn.ReLU(inplace=True), nn.MaxPool2d(2))
    stages["stage2"] = nn.Sequential(nn.Conv2d(channels[0], channels[1], 5, bias=False),
                                     nn.BatchNorm2d(channels[1]), nn.ReLU(inplace=True), nn.MaxPool2d(2))
    layers, width = [nn.Flatten()], channels[1] * size[0] * size[1]
    for units in hidden:
        layers += [nn.Linear(width, units, bias=False), nn.BatchNorm1d(units), nn.ReLU(inplace=True)]
        width = units
    stages["fc"] = nn.Sequential(*layers, nn.Dropout(dropout))
    return StagedNet(stages, nn.Linear(width, num_classes))


def make_mlp(in_shape, num_classes, hidden, dropout) -> StagedNet:
    """Fully connected ReLU layers; stage ``fc{i}`` is the i-th hidden layer's activation."""
    stages, width = OrderedDict(), math.prod(in_shape)
    for i, units in enumerate(hidden):
        flatten = [nn.Flatten()] if i == 0 else []
        stages[f"fc{i + 1}"] = nn.Sequential(*flatten, nn.Linear(width, units), nn.ReLU(inplace=True), nn.Dropout(dropout))
        width = units
    if not hidden:
        stages["flatten"] = nn.Flatten()
    return StagedNet(stages, nn.Linear(width, num_classes))


FAMILIES = {"cnn": make_cnn, "mlp": make_mlp, "dws": make_dws_cnn, "lenet": make_lenet}


def build_model(name: str, num_classes: int = 10, *, in_shape=(1, 28, 28), seed: int | None = None,
                **overrides) -> StagedNet:
    """Build a model by preset name (see ``MODEL_PRESETS``); ``seed`` makes its weights repeatable.

    Two models built with the same name, arguments and seed start from identical weights, which
    is how students compared against each other are made. The global RNG is left untouched.
    """
    checks.one_of("name", name, list(MODEL_PRESETS))
    checks.positive_int("num_classes", num_classes)
    in_shape = tuple(in_shape) if isinstance(in_shape, (list, tuple)) else in_shape
    if not isinstance(in_shape, tuple) or len(in_shape) != 3 or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in in_shape):
        raise ValueError(f"in_shape must be (channels, height, width), three positive integers; got {in_shape!r}")
    if seed is not None:
        checks.non_negative_int("seed", seed)
    family, defaults = MODEL_PRESETS[name]
    unknown = set(overrides) - set(defaults)
    if unknown:
        raise ValueError(f"unknown argument(s) {sorted(unknown)} for model {name!r}; allowed: {sorted(defaults)}")
    kwargs = {**defaults, **overrides}
    _check_family_kwargs(kwargs)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model = FAMILIES[family](tuple(in_shape), num_classes, **kwargs)
    model.arch = {"name": name, "num_classes": num_classes, "in_shape": list(in_shape),
                  "kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}}
    return model


def _check_family_kwargs(kwargs: dict) -> None:
    checks.fraction("dropout", kwargs["dropout"])
    for key in ("channels", "hidden", "convs_per_stage"):
        for width in kwargs.get(key, ()):
            checks.positive_int(f"{key} entries", width)


def rebuild(arch: dict) -> StagedNet:
    """Build a model from the ``arch`` dictionary that ``build_model`` attached to it."""
    return build_model(arch["name"], arch["num_classes"], in_shape=tuple(arch["in_shape"]), **arch.get("kwargs", {}))


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, in_shape=(1, 28, 28)) -> int:
    """Multiply-accumulates of one forward pass on one image, counted over Conv2d and Linear.

    A conv contributes out_elements x (in_channels / groups) x kernel_h x kernel_w, a linear
    layer in_features x out_features; BN, activations and pooling are ignored (they are cheap).
    """
    total = [0]

    def conv_hook(module, _inputs, output):
        kh, kw = module.kernel_size
        total[0] += output.numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module, _inputs, output):
        total[0] += (output.numel() // module.out_features) * module.in_features * module.out_features

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(linear_hook) for m in model.modules() if isinstance(m, nn.Linear)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            device = next(model.parameters()).device
            model(torch.zeros(1, *in_shape, device=device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return total[0]


def feature_shapes(model: StagedNet, in_shape=(1, 28, 28)) -> dict:
    """Shape (without the batch dimension) of every stage's output, for choosing hint layers."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        device = next(model.parameters()).device
        _, features = model(torch.zeros(1, *in_shape, device=device), return_features=True)
    model.train(was_training)
    return {name: tuple(f.shape[1:]) for name, f in features.items()}
