"""Checkpoints: a state dict plus metadata, written atomically, loaded with ``weights_only``.

File layout (a dict saved with ``torch.save``)::

    {"format": "distill_lib.checkpoint", "format_version": 1,
     "state_dict": {...}, "metadata": {"architecture": {...}, "weights_sha256": "...", ...}}

``weights_only=True`` means a file can only hold tensors and plain containers: a pickle that
tries to run code is refused instead of executed. The sha256 of the weights is recomputed on
load, so a modified file is caught even when it still unpickles.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from .results import write_atomic

FORMAT = "distill_lib.checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file that is missing, damaged, tampered with, foreign or for another architecture."""


def state_dict_sha256(model_or_state) -> str:
    """sha256 over names, dtypes, shapes and bytes of every tensor, in name order."""
    state = model_or_state.state_dict() if hasattr(model_or_state, "state_dict") else model_or_state
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _library_version() -> str:
    from . import __version__
    return __version__


def save_checkpoint(model, path, **metadata) -> Path:
    """Write ``model``'s weights and ``metadata`` (plain values) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    meta = {"architecture": getattr(model, "arch", {}), "library_version": _library_version(),
            **metadata, "weights_sha256": state_dict_sha256(state)}
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "state_dict": state, "metadata": meta}
    write_atomic(path, lambda handle: torch.save(payload, handle))
    return path


def read_checkpoint(path) -> dict:
    """The verified payload (format, state_dict, metadata) of a checkpoint file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, random bytes, or a pickle that wants to run code
        raise CheckpointError(f"{path} is not a readable distill_lib checkpoint (damaged, truncated, "
                              f"or holding objects other than tensors): {type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a distill_lib checkpoint (no '{FORMAT}' format marker)")
    expected = payload["metadata"].get("weights_sha256")
    if state_dict_sha256(payload["state_dict"]) != expected:
        raise CheckpointError(f"{path}: weights do not match their recorded sha256; the file was "
                              f"modified or damaged after it was written")
    return payload


def load_checkpoint(path, model=None):
    """Load weights into ``model`` (or rebuild the recorded architecture); return (model, metadata)."""
    payload = read_checkpoint(path)
    metadata = payload["metadata"]
    if model is None:
        from .models import rebuild
        if not metadata.get("architecture"):
            raise CheckpointError(f"{path} records no architecture; pass the model to load into")
        model = rebuild(metadata["architecture"])
    _check_architecture(path, model, metadata)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        raise CheckpointError(f"{path} does not fit this model: {str(error).splitlines()[0]} "
                              f"(checkpoint architecture: {metadata.get('architecture')})") from None
    return model, metadata


def _check_architecture(path, model, metadata) -> None:
    recorded = metadata.get("architecture") or {}
    actual = getattr(model, "arch", {}) or {}
    if recorded and actual and recorded != actual:
        raise CheckpointError(f"{path} holds a {recorded.get('name')!r} model {recorded}, but the model "
                              f"given is {actual.get('name')!r} {actual}")
