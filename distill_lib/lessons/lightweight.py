"""Make a trained student deployable, and measure what that costs: int8 quantization, magnitude
pruning, export, size on disk, CPU latency, and the accuracy-vs-latency Pareto front.

Everything uses PyTorch's own tooling, no extra package:

- **Quantization** with ``torch.ao.quantization`` (eager mode): ``quantize_dynamic`` stores the
  weights of ``nn.Linear`` layers in int8 and quantizes activations on the fly (convolutions are
  untouched, so a CNN barely changes); static quantization wraps the model between
  ``QuantStub`` / ``DeQuantStub``, fuses conv-BN-ReLU, runs calibration images through observers
  and converts every layer to int8 kernels (fbgemm / x86 backend). PyTorch 2.14 marks
  ``torch.ao.quantization`` as deprecated in favour of the separate ``torchao`` package; it still
  works, and these functions silence that one warning (``QUANT_WARNINGS``).
- **Pruning** with ``torch.nn.utils.prune``: global L1 (magnitude) pruning of every conv and
  linear weight; fine-tune with the masks in place, then ``finalize_pruning`` makes them
  permanent. Unstructured zeros do NOT make a dense file smaller or dense kernels faster: the
  honest size of a sparse model is that of a compressed file (``gzip_bytes``).
- **Export** with ``torch.export`` (a ``.pt2`` file with the graph and weights, batch size
  dynamic) for float models, and TorchScript tracing for eager-mode int8 models, which
  ``torch.export`` cannot serialise in 2.14 (TorchScript is deprecated too, but works);
  ``compare_outputs`` checks that the reloaded file predicts what the model does.
- **Latency**: median of repeated timed forward passes after untimed warm-up passes, with
  PyTorch's thread count left as it is.
"""
from __future__ import annotations

import copy
import gzip
import os
import re
import statistics
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from torch.ao import quantization as tq
from torch.nn.utils import prune

from ..core import checks
from ..core.evaluate import metrics_from_logits, predict
from ..core.models import StagedNet, count_macs, count_params, normalise_inputs

# Messages PyTorch 2.14 prints on every use of its (still working) eager-mode quantization.
QUANT_WARNINGS = ("torch.ao.quantization is deprecated", "torch.quantize_per_tensor, torch.quantize_per_channel",
                  "Please use quant_min and quant_max", "`torch.jit.save` is deprecated", "`torch.jit.load` is deprecated",
                  "`torch.jit.trace` is deprecated", "`torch.jit.trace_method` is deprecated",
                  # tracing reads each int8 layer's fixed scale and zero point as constants: intended
                  "Converting a tensor to a Python")


@contextmanager
def quiet_quantization_warnings():
    """Silence only the deprecation notices listed in ``QUANT_WARNINGS`` (int8 and TorchScript)."""
    with warnings.catch_warnings():
        for message in QUANT_WARNINGS:
            warnings.filterwarnings("ignore", message=f".*{message}.*")
        yield


# ---------------------------------------------------------------------------- quantization
def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """A copy with int8 weights in its ``nn.Linear`` layers (activations quantized per batch)."""
    with quiet_quantization_warnings():
        return tq.quantize_dynamic(copy.deepcopy(model).cpu().eval(), {nn.Linear}, dtype=torch.qint8)


class QuantReady(nn.Module):
    """A StagedNet between QuantStub and DeQuantStub, as eager-mode static quantization needs.

    The centring of the inputs stays in float in front of the QuantStub (quantized tensors have
    no subtraction); it must equal ``StagedNet.forward``'s, which a test checks.
    """

    def __init__(self, model: StagedNet):
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.stages, self.head = model.stages, model.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.quant(normalise_inputs(x))
        for stage in self.stages.values():
            x = stage(x)
        return self.dequant(self.head(x))


FUSABLE = ((nn.Conv2d, nn.BatchNorm2d, nn.ReLU), (nn.Conv2d, nn.BatchNorm2d), (nn.Conv2d, nn.ReLU), (nn.Linear, nn.ReLU))


def fusable_groups(sequential: nn.Sequential) -> list:
    """Names of consecutive layers that fuse into one kernel (conv-BN-ReLU, conv-BN, linear-ReLU)."""
    names, layers, groups, i = list(sequential._modules), list(sequential), [], 0
    while i < len(layers):
        for pattern in FUSABLE:
            window = layers[i:i + len(pattern)]
            if len(window) == len(pattern) and all(type(m) is t for m, t in zip(window, pattern)):
                groups.append(names[i:i + len(pattern)])
                i += len(pattern)
                break
        else:
            i += 1
    return groups


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """Fuse every conv-BN(-ReLU) and linear-ReLU run in the model's Sequentials, in place (eval mode)."""
    model.eval()
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential) and fusable_groups(module):
            tq.fuse_modules(module, fusable_groups(module), inplace=True)
    return model


def quantize_static_int8(model: StagedNet, calibration_images: torch.Tensor, *, backend: str = "x86",
                         batch_size: int = 500) -> nn.Module:
    """A copy with int8 weights AND activations; activation ranges come from ``calibration_images``.

    Sets ``torch.backends.quantized.engine`` to ``backend``: the converted model runs on it.
    """
    checks.one_of("backend", backend, torch.backends.quantized.supported_engines)
    checks.positive_int("batch_size", batch_size)
    if calibration_images.ndim != 4 or len(calibration_images) == 0:
        raise ValueError(f"calibration_images must be a non-empty N x C x H x W batch, "
                         f"got shape {tuple(calibration_images.shape)}")
    torch.backends.quantized.engine = backend
    with quiet_quantization_warnings():
        ready = fuse_for_inference(QuantReady(copy.deepcopy(model).cpu().eval()))
        ready.qconfig = tq.get_default_qconfig(backend)
        prepared = tq.prepare(ready)
        with torch.no_grad():  # observers record activation ranges
            for start in range(0, len(calibration_images), batch_size):
                prepared(calibration_images[start:start + batch_size])
        return tq.convert(prepared)


# ---------------------------------------------------------------------------- pruning
def prunable_weights(model: nn.Module) -> list:
    """(module, "weight") for every conv and linear layer: what magnitude pruning may zero."""
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def prune_global_magnitude(model: nn.Module, sparsity: float) -> nn.Module:
    """Zero the ``sparsity`` fraction of smallest-magnitude weights across all layers (in place).

    The masks stay attached (``weight = weight_orig * weight_mask``) so fine-tuning keeps the
    zeros; call :func:`finalize_pruning` afterwards.
    """
    checks.fraction("sparsity", sparsity)
    prune.global_unstructured(prunable_weights(model), pruning_method=prune.L1Unstructured, amount=float(sparsity))
    return model


def finalize_pruning(model: nn.Module) -> nn.Module:
    """Make the masks permanent: plain ``weight`` tensors with zeros, no hooks (in place)."""
    for module, name in prunable_weights(model):
        if prune.is_pruned(module) and hasattr(module, name + "_orig"):
            prune.remove(module, name)
    return model


def weight_sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero entries among all conv and linear weights."""
    weights = [getattr(m, name).detach() for m, name in prunable_weights(model)]
    total = sum(w.numel() for w in weights)
    return sum(int((w == 0).sum()) for w in weights) / total if total else 0.0


# ---------------------------------------------------------------------------- export
def export_model(model: nn.Module, path, example: torch.Tensor) -> Path:
    """Save ``model`` (eval mode, on the CPU) as a ``torch.export`` program with a dynamic batch size."""
    model = model.cpu().eval()
    example = example.detach().cpu().clone()  # the program stores it: a view would drag its whole dataset along
    program = torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim.DYNAMIC},))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, path)
    return path


def load_exported(path) -> nn.Module:
    """The callable module of a program saved by :func:`export_model`."""
    return torch.export.load(Path(path)).module()


def export_torchscript(model: nn.Module, path, example: torch.Tensor) -> Path:
    """Save a traced TorchScript module: the route for eager-mode int8 models, which
    ``torch.export`` in PyTorch 2.14 cannot serialise (their packed weights are script objects)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with quiet_quantization_warnings(), torch.no_grad():
        torch.jit.save(torch.jit.trace(model.cpu().eval(), example.cpu()), str(path))
    return path


def load_torchscript(path) -> nn.Module:
    with quiet_quantization_warnings():
        return torch.jit.load(str(path))


@torch.no_grad()
def compare_outputs(reference: nn.Module, other: nn.Module, images: torch.Tensor, batch_size: int = 500) -> dict:
    """Largest absolute logit difference and fraction of identical predicted classes."""
    reference.eval()
    diffs, same = [], 0
    for start in range(0, len(images), batch_size):
        a, b = reference(images[start:start + batch_size]), other(images[start:start + batch_size])
        diffs.append(float((a - b).abs().max()))
        same += int((a.argmax(-1) == b.argmax(-1)).sum())
    return {"max_abs_diff": max(diffs), "same_prediction": same / len(images)}


# ---------------------------------------------------------------------------- size and latency
def save_state_dict(model: nn.Module, path) -> int:
    """Write ``model.state_dict()`` with ``torch.save`` to ``path``; return its size in bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return os.path.getsize(path)


def gzip_bytes(path) -> int:
    """Size of the file after ``gzip -9``: what zeros (pruning) actually save on disk or wire."""
    return len(gzip.compress(Path(path).read_bytes(), compresslevel=9, mtime=0))


def _check_timing(batch_size, repeats, warmup) -> None:
    checks.positive_int("batch_size", batch_size)
    checks.positive_int("repeats", repeats)
    checks.non_negative_int("warmup", warmup)


def _summary(times_ms: list, batch_size: int, warmup: int) -> dict:
    quartiles = statistics.quantiles(times_ms, n=4) if len(times_ms) > 1 else [times_ms[0]] * 3
    return {"median_ms": statistics.median(times_ms), "q1_ms": quartiles[0], "q3_ms": quartiles[2],
            "batch_size": batch_size, "repeats": len(times_ms), "warmup": warmup}


@torch.inference_mode()
def measure_latencies(models: dict, batch_size: int, *, repeats: int = 20, warmup: int = 3,
                      in_shape=(1, 28, 28)) -> dict:
    """name -> median (and quartiles) in ms of ``repeats`` timed forward passes per model.

    Each model first gets ``warmup`` untimed passes; then the timed passes go round-robin over
    the models, so a burst of load from elsewhere on a shared machine hits every model alike
    instead of whichever happened to be measured at that moment.
    """
    _check_timing(batch_size, repeats, warmup)
    images = torch.rand(batch_size, *in_shape, generator=torch.Generator().manual_seed(0))
    for model in models.values():
        model.eval()
        for _ in range(warmup):
            model(images)
    times = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            started = time.perf_counter()
            model(images)
            times[name].append((time.perf_counter() - started) * 1e3)
    return {name: _summary(t, batch_size, warmup) for name, t in times.items()}


def measure_latency(model: nn.Module, batch_size: int, *, repeats: int = 20, warmup: int = 3,
                    in_shape=(1, 28, 28)) -> dict:
    """Median (and quartiles) of ``repeats`` timed forward passes in ms; ``warmup`` untimed passes first."""
    return measure_latencies({"model": model}, batch_size, repeats=repeats, warmup=warmup, in_shape=in_shape)["model"]


def profile_variant(name: str, model: nn.Module, test_set, *, float_model: nn.Module, save_dir,
                    accuracy: float | None = None) -> dict:
    """One row of the deployment table: accuracy, parameters, MACs, sparsity, size, gzip size.

    Parameters and MACs are counted on ``float_model`` (a quantized model has the same layers,
    in int8; its weights are packed and not ``nn.Parameter`` any more). ``accuracy`` may be
    passed when already computed on ``test_set`` (the teacher's, say); latency is measured
    separately with :func:`measure_latencies`, all variants together.
    """
    path = Path(save_dir) / (re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("_") + ".pt")
    size = save_state_dict(model, path)
    if accuracy is None:
        with quiet_quantization_warnings():
            accuracy = metrics_from_logits(predict(model, test_set.images).logits, test_set.labels)["accuracy"]
    return {"model": name, "accuracy": accuracy, "params": count_params(float_model),
            "macs": count_macs(float_model, test_set.input_shape), "weight_sparsity": weight_sparsity(float_model),
            "size_bytes": size, "gzip_bytes": gzip_bytes(path)}


# ---------------------------------------------------------------------------- Pareto view
def pareto_front(latencies, accuracies) -> list:
    """Indices of the points no other point beats on both axes (lower latency, higher accuracy)."""
    if len(latencies) != len(accuracies):
        raise ValueError(f"latencies ({len(latencies)}) and accuracies ({len(accuracies)}) must have the same length")
    points = list(zip(latencies, accuracies))

    def dominated(i):
        li, ai = points[i]
        return any(lj <= li and aj >= ai and (lj, aj) != (li, ai) for lj, aj in points)
    return [i for i in range(len(points)) if not dominated(i)]


def pareto_leads(latencies, accuracies) -> dict:
    """For each point on the Pareto front: how much more accurate it is than the most accurate
    strictly faster point (``None`` for the fastest). A lead smaller than the verdict margin puts
    a point on the front by run-to-run noise alone (one seed's accuracy), not by a real edge."""
    leads = {}
    for i in pareto_front(latencies, accuracies):
        faster = [a for latency, a in zip(latencies, accuracies) if latency < latencies[i]]
        leads[i] = accuracies[i] - max(faster) if faster else None
    return leads
