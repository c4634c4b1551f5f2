"""Where training runs: device names, model placement, mixed precision on CUDA."""
from __future__ import annotations

import torch


def resolve_device(device) -> torch.device:
    """"auto" means CUDA when available, else the CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}") from None
    if resolved.type not in ("cpu", "cuda", "mps"):  # "meta" and friends hold no data to train on
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}")
    return resolved


def autocast(device: torch.device):
    """bf16 autocast on CUDA (no loss scaling needed); full float32 on the CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def prepare_model(model, device: torch.device):
    """Move ``model`` to ``device``; channels_last for conv nets on CUDA (faster there)."""
    model.to(device)
    if device.type == "cuda" and any(p.ndim == 4 for p in model.parameters()):
        model.to(memory_format=torch.channels_last)
    return model
