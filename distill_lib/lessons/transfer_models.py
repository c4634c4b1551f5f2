"""Which networks notebook 03 uses, and where its source models come from.

- Offline ("fashion-split") and MNIST ("mnist") sources: workbench presets (``models.MODEL_PRESETS``);
  the source models are trained here on the source task's images.
- "imagenet-resnet18": torchvision's ResNets with ImageNet weights as the source models (the
  weights are downloaded on first use, so this path needs the network), fine-tuned on CIFAR-10.
  :func:`torchvision_resnet` wraps a ResNet as a :class:`~distill_lib.models.StagedNet`, so the
  arms treat it like any other model: ``stages`` are the features, ``head`` the output layer.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from ..core import checks
from ..profiles import TRANSFER_RESNETS, architecture_problem
from ..core.models import MODEL_PRESETS, StagedNet, build_model, denormalise_inputs
from .transfer_arms import pretrain_source

RESNETS = TRANSFER_RESNETS
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageNetInput(nn.Module):
    """Undo StagedNet's centring (``models.normalise_inputs``), then normalise as the ImageNet weights expect."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, centred: torch.Tensor) -> torch.Tensor:
        if centred.shape[1] != 3:
            raise ValueError(f"ImageNet models take 3-channel images; got {centred.shape[1]} channel(s)")
        return (denormalise_inputs(centred) - self.mean) / self.std


def torchvision_resnet(name: str = "resnet18", num_classes: int = 1000, *, weights=None,
                       seed: int | None = None) -> StagedNet:
    """torchvision's ResNet as a StagedNet: stages (input normalisation, the network up to the
    pooled 512-d feature) and a Linear head. ``weights="IMAGENET1K_V1"`` downloads ImageNet
    weights (online); ``weights=None`` gives random weights (offline stand-in, seeded)."""
    import torchvision

    checks.one_of("name", name, RESNETS)
    checks.positive_int("num_classes", num_classes)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(checks.non_negative_int("seed", seed))
        resnet = torchvision.models.get_model(name, weights=weights)
        head = resnet.fc
        if head.out_features != num_classes:
            head = nn.Linear(head.in_features, num_classes)
    resnet.fc = nn.Identity()
    model = StagedNet(OrderedDict(imagenet_input=ImageNetInput(), resnet=resnet), head)
    model.arch = {"name": name, "num_classes": num_classes, "in_shape": [3, 32, 32], "weights": str(weights)}
    return model


def check_architectures(source: str, student: str, teacher: str) -> None:
    """Presets for the fashion/MNIST sources, torchvision ResNets for the ImageNet source (the
    rule the runner also checks before a kernel starts: ``profiles.architecture_problem``)."""
    problem = architecture_problem(source, student, teacher)
    if problem:
        raise ValueError(problem)


def builder(source: str, name: str, in_shape):
    """``build(num_classes, seed)`` giving a freshly initialised network of architecture ``name``."""
    if source == "imagenet-resnet18":
        return lambda num_classes, seed: torchvision_resnet(name, num_classes, weights=None, seed=seed)
    return lambda num_classes, seed: build_model(name, num_classes, in_shape=in_shape, seed=seed)


def imagenet_weights_file(name: str, weights: str) -> Path:
    """Where torchvision keeps (or will download) the ImageNet weights of ResNet ``name``."""
    import torchvision

    url = torchvision.models.get_model_weights(name)[weights].url
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def source_models(source: str, task, *, student: str, teacher: str, schedule, seed: int, device,
                  source_steps: int, weights: str | None = "IMAGENET1K_V1", download: bool = False) -> dict:
    """{"student": model, "teacher": model} pretrained on the source task (or ImageNet weights;
    ``download=False`` refuses to fetch weights that are not in torch's cache yet)."""
    check_architectures(source, student, teacher)
    if source == "imagenet-resnet18" and weights is not None and not download:
        for name in (student, teacher):
            if not imagenet_weights_file(name, weights).is_file():
                raise FileNotFoundError(f"{name} ImageNet weights not found at {imagenet_weights_file(name, weights)}; "
                                        f"pass download=True (needs the network) to fetch them")
    in_shape = task.target_train.input_shape
    models = {}
    for name in dict.fromkeys((student, teacher)):  # the same architecture is pretrained once
        if source == "imagenet-resnet18":
            models[name] = torchvision_resnet(name, weights=weights).eval()
        else:
            models[name] = pretrain_source(builder(source, name, in_shape), task, schedule, seed=seed,
                                           device=device, steps=source_steps)
    return {"student": models[student], "teacher": models[teacher]}
