"""Where training runs: device names, model placement, mixed precision on CUDA."""
from __future__ import annotations

import torch

DEVICE_FORMS = "'auto', 'cpu', 'cuda' or 'cuda:N'"  # and 'mps' on a Mac that has it


def resolve_device(device) -> torch.device:
    """"auto" means CUDA when available, else the CPU. Any other device must exist on this machine:
    ``ValueError`` (naming the devices there are) before any work, instead of torch's error in the
    middle of a call."""
    if isinstance(device, bool):  # torch.device(True) would be read as CUDA device 1
        raise ValueError(f"device must be {DEVICE_FORMS}; got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = device if isinstance(device, torch.device) else torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device must be {DEVICE_FORMS}; got {device!r}") from None
    if resolved.type not in ("cpu", "cuda", "mps"):  # "meta" and friends hold no data to train on
        raise ValueError(f"device must be {DEVICE_FORMS}; got {device!r}")
    if not _exists(resolved):
        raise ValueError(f"device {device!r} is not available on this machine; the devices here are: "
                         f"{', '.join(map(repr, available_devices()))} (or 'auto')")
    return resolved


def available_devices() -> list[str]:
    """The device names this machine can train on: 'cpu', then 'cuda:0'... and 'mps' where present."""
    names = ["cpu"] + [f"cuda:{index}" for index in range(_cuda_count())]
    return names + (["mps"] if _mps_available() else [])


def _exists(device: torch.device) -> bool:
    if device.type == "cuda":
        return (device.index or 0) < _cuda_count()
    if device.type == "mps":
        return _mps_available() and (device.index or 0) == 0
    return device.index in (None, 0)


def _cuda_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def autocast(device: torch.device):
    """bf16 autocast on CUDA (no loss scaling needed); full float32 on the CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def prepare_model(model, device: torch.device):
    """Move ``model`` to ``device``; channels_last for conv nets on CUDA (faster there)."""
    model.to(device)
    if device.type == "cuda" and any(p.ndim == 4 for p in model.parameters()):
        model.to(memory_format=torch.channels_last)
    return model
