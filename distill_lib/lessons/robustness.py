"""Is a distilled student more robust? Accuracy under Gaussian noise and FGSM, and calibration.

The claim comes from popular articles: a distilled student "is more robust to noise and
adversarial examples because it learned more comprehensive knowledge from the teacher". Notebook
06 measures it on its students, paired by seed:

- **Gaussian noise**: ``x + N(0, sigma^2)`` per pixel, clipped to the image range [0, 1]; the same
  noise (seeded) for every model, so a difference between two models is theirs, not the draw's;
- **FGSM** (Goodfellow et al. 2015): ``x + epsilon * sign(grad_x CE(model(x), y))``, clipped to
  [0, 1]: each model attacked through its OWN gradient (white box), one step;
- **reliability**: test images binned by the model's confidence (its top-class probability);
  per bin the mean confidence against the accuracy, the picture behind the ECE.

A model's "drop" is its clean accuracy minus its accuracy under a perturbation: the robustness
claim is about the drop, since a more accurate model can lose more and still end higher.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core import checks
from ..core.evaluate import predict


def _check_images(images: torch.Tensor, labels: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim < 2 or not images.is_floating_point():
        raise ValueError(f"images must be a floating-point tensor N x ...; got {getattr(images, 'shape', images)!r}")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"labels must hold one class per image ({len(images)}); got shape {tuple(labels.shape)}")


def gaussian_noise(images: torch.Tensor, sigma: float, *, seed: int = 0) -> torch.Tensor:
    """``images + N(0, sigma^2)``, clipped to [0, 1]; the same ``seed`` gives the same noise."""
    checks.non_negative_number("sigma", sigma)
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed), dtype=images.dtype)
    return (images + sigma * noise).clamp(0.0, 1.0)


def fgsm(model, images: torch.Tensor, labels: torch.Tensor, epsilon: float, *, batch_size: int = 512) -> torch.Tensor:
    """The fast gradient sign attack on ``model`` (eval mode): one step of size ``epsilon`` along
    the sign of the input gradient of the cross-entropy, clipped to [0, 1]."""
    checks.non_negative_number("epsilon", epsilon)
    _check_images(images, labels)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    attacked = []
    try:
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size].to(device).clone().requires_grad_(True)
            loss = F.cross_entropy(model(x).float(), labels[start:start + batch_size].to(device))
            (gradient,) = torch.autograd.grad(loss, x)
            attacked.append((x + epsilon * gradient.sign()).clamp(0.0, 1.0).detach().cpu())
    finally:
        model.train(was_training)
    return torch.cat(attacked)


def accuracy_on(model, images: torch.Tensor, labels: torch.Tensor) -> float:
    device = next(model.parameters()).device
    return float((predict(model, images, device=device).logits.argmax(1) == labels).float().mean())


def perturbed_accuracies(model, images: torch.Tensor, labels: torch.Tensor, *, sigmas, epsilons,
                         noise_seed: int = 0) -> dict:
    """``{"clean": acc, "noise": {sigma: acc}, "fgsm": {epsilon: acc}}`` for one model."""
    _check_images(images, labels)
    return {"clean": accuracy_on(model, images, labels),
            "noise": {float(s): accuracy_on(model, gaussian_noise(images, s, seed=noise_seed), labels) for s in sigmas},
            "fgsm": {float(e): accuracy_on(model, fgsm(model, images, labels, e), labels) for e in epsilons}}


def reliability(logits: torch.Tensor, labels: torch.Tensor, bins: int = 10) -> dict:
    """Per confidence bin (equal widths over [0, 1]): count, mean confidence and accuracy; empty
    bins are left out. The ECE is the count-weighted mean of |accuracy - confidence|."""
    checks.positive_int("bins", bins)
    confidence, prediction = F.softmax(logits.float(), dim=1).max(dim=1)
    correct = (prediction == labels).float()
    which = torch.clamp((confidence * bins).ceil().long() - 1, 0, bins - 1)  # bin b holds (b/bins, (b+1)/bins]
    rows = {"count": [], "confidence": [], "accuracy": []}
    for b in range(bins):
        members = which == b
        if members.any():
            rows["count"].append(int(members.sum()))
            rows["confidence"].append(float(confidence[members].mean()))
            rows["accuracy"].append(float(correct[members].mean()))
    return rows
