"""Checkpoints: a state dict plus metadata, written atomically, loaded with ``weights_only``.

File layout (a dict saved with ``torch.save``), format version 2::

    {"format": "distill_lib.checkpoint", "format_version": 2,
     "state_dict": {name: tensor, ...},
     "metadata": {"architecture": {...}, "weights_sha256": "...", ...},   # plain JSON values only
     "sha256": "..."}

``weights_only=True`` means a file can only hold tensors and plain containers: a pickle that
tries to run code is refused instead of executed.

``sha256`` covers the weights **and** the metadata: it is the sha256 of the format, the weights'
digest (:func:`state_dict_sha256`, recomputed from the tensors on load) and the canonical JSON of
the metadata (sorted keys, no spaces). An edited accuracy, a swapped recipe or a modified weight is
refused on load. This is an integrity check, not a signature: whoever can write the file can also
recompute the digest, so a file is only as trustworthy as the place it came from (the shipped
teacher's file digest is published in ``data/README.md``).

Metadata is converted to plain JSON values **before** anything is written (numpy scalars and
arrays, 0-d tensors, paths, tuples), so every file ``save_checkpoint`` writes, its loader reads;
what cannot be converted is refused with the key that holds it.

Format version 1 (up to distill_lib 0.1.0) recorded the weights' digest only. Such files are
refused with the way to convert them: :func:`upgrade_checkpoint` re-saves one in the current format.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import tempfile
from pathlib import Path

import torch

from .results import write_atomic

FORMAT = "distill_lib.checkpoint"
FORMAT_VERSION = 2
OLD_FORMAT_VERSIONS = (1,)


class CheckpointError(ValueError):
    """A file that is missing, damaged, tampered with, foreign or for another architecture, or a
    place a checkpoint cannot be written to."""


# --------------------------------------------------------------------------- digests
def state_dict_sha256(model_or_state) -> str:
    """sha256 over names, dtypes, shapes and bytes of every tensor, in name order."""
    state = model_or_state.state_dict() if hasattr(model_or_state, "state_dict") else model_or_state
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def canonical_json(metadata: dict) -> str:
    """The one text of ``metadata`` the digest covers: sorted keys, no spaces, ASCII only.
    Floats are written by ``repr`` (exact round trip); NaN and infinities as ``NaN``/``Infinity``."""
    return json.dumps(metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)


def checkpoint_sha256(weights_sha256: str, metadata: dict) -> str:
    """The digest recorded in a format-version-2 file: the weights' digest and the metadata together."""
    digest = hashlib.sha256()
    digest.update(f"{FORMAT}|{FORMAT_VERSION}|{weights_sha256}|".encode())
    digest.update(canonical_json(metadata).encode("ascii"))
    return digest.hexdigest()


# --------------------------------------------------------------------------- plain metadata
_PLAIN = (str, int, float, bool, type(None))  # exact types: np.float64 is a float subclass, converted below


def _kind(value) -> str:
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def plain_metadata(metadata: dict, *, where: str = "metadata") -> dict:
    """``metadata`` as plain JSON values: numpy scalars -> int/float/bool, numpy arrays and tensors
    -> (nested) lists, ``os.PathLike`` -> str, tuples -> lists. Anything else (objects, sets, dict
    keys that are not strings) raises ``ValueError`` naming the key that holds it."""
    if not isinstance(metadata, dict):
        raise ValueError(f"{where} must be a dict, got {_kind(metadata)}")
    return _plain(metadata, where)


def _plain(value, where: str):
    if type(value) in _PLAIN:
        return value
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(key, str):
                key = str(key)  # np.str_ and other str subclasses: plain str
            else:
                raise ValueError(f"{where} has the key {key!r} ({_kind(key)}); checkpoint metadata keys "
                                 f"must be strings (JSON objects have string keys only)")
            out[key] = _plain(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, os.PathLike):
        return _plain(os.fspath(value), where)
    if isinstance(value, torch.Tensor):
        return _plain(value.detach().cpu().tolist(), where)
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):  # numpy scalars and arrays
        return _plain(value.tolist(), where)
    raise ValueError(f"{where} is {_kind(value)} ({value!r:.80}), which a checkpoint cannot store; metadata "
                     f"may hold str, int, float, bool, None, lists, dicts with string keys, and numpy "
                     f"scalars/arrays, tensors, paths and tuples (converted)")


def _check_plain(path, value, where: str = "metadata") -> None:
    """On load: metadata must already be plain (nothing converted), so its canonical JSON is exact."""
    if type(value) in _PLAIN:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CheckpointError(f"{path} is a damaged distill_lib checkpoint: {where} has the "
                                      f"non-string key {key!r}")
            _check_plain(path, item, f"{where}[{key!r}]")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_plain(path, item, f"{where}[{i}]")
    else:
        raise CheckpointError(f"{path} is a damaged distill_lib checkpoint: {where} is {_kind(value)}, "
                              f"not a plain JSON value")


# --------------------------------------------------------------------------- where a file may go
_KINDS = ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))


def _file_kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "a special file")


def refuse_non_regular(path, what: str = "checkpoint") -> None:
    """Raise when ``path`` exists (links followed) and is not a regular file: replacing a device,
    a directory, a FIFO or a socket with a file is never what a save means."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return  # absent (or a dangling link, which the rename replaces); a bad directory is reported next
    except OSError as error:
        raise CheckpointError(f"cannot write the {what} {path}: {error.strerror or error}") from None
    if not stat.S_ISREG(mode):
        raise CheckpointError(f"refusing to write the {what} {path}: it exists and is {_file_kind(mode)}, "
                              f"not a regular file; give the path of a new or regular file")


def prepare_directory(folder, what: str = "checkpoint", *, setting: str = "", target=None) -> Path:
    """Create ``folder`` if needed and prove a file can be written in it (a probe file is made and
    removed), so that work whose result goes there fails before it starts, not after.

    ``setting`` names where the folder came from (e.g. ``"$DISTILL_LIB_CACHE"``) and ``target`` the
    file that is to be written there, for the error message."""
    folder = Path(folder)
    named = f"{setting}={folder}" if setting else str(folder)
    intro = f"cannot write the {what} {target}: its directory {named}" if target else f"the {what} directory {named}"
    existing = folder
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if os.path.lexists(existing) and not existing.is_dir():
        try:
            kind = _file_kind(os.stat(existing).st_mode)
        except OSError:
            kind = "a broken link"
        where = "is" if existing == folder else f"cannot be created: {existing} is"
        raise CheckpointError(f"{intro} {where} {kind}, not a directory")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".write-probe-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise CheckpointError(f"{intro} cannot be written to: {error.strerror or error}") from None
    return folder


def prepare_destination(path, what: str = "checkpoint") -> Path:
    """Check, before any work, that a file can be written at ``path``: its directory exists or can
    be created and is writable, and ``path`` is absent or a regular file."""
    path = Path(path)
    if path.name in ("", ".", ".."):
        raise CheckpointError(f"the {what} path {path} names a directory, not a file")
    refuse_non_regular(path, what)
    prepare_directory(path.parent, what, target=path)
    return path


# --------------------------------------------------------------------------- save
def _library_version() -> str:
    from . import __version__
    return __version__


def save_checkpoint(model, path, /, **metadata) -> Path:
    """Write ``model``'s weights and ``metadata`` to ``path`` atomically (format version 2).

    The metadata is converted to plain JSON values first (see :func:`plain_metadata`); what cannot
    be converted, a ``path`` that exists and is not a regular file, and a directory that cannot be
    written raise before anything is written.
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    meta = plain_metadata({"architecture": getattr(model, "arch", {}), "library_version": _library_version(),
                           **metadata}, where="metadata")
    meta["weights_sha256"] = state_dict_sha256(state)
    return _write(path, state, meta)


def _write(path, state: dict, meta: dict) -> Path:
    path = prepare_destination(path)
    for name, tensor in state.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"cannot save {path}: state_dict entry {name!r} is {_kind(tensor)}, not a tensor")
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "state_dict": state, "metadata": meta,
               "sha256": checkpoint_sha256(meta["weights_sha256"], meta)}
    write_atomic(path, lambda handle: torch.save(payload, handle))
    return path


# --------------------------------------------------------------------------- load
def _load_payload(path: Path):
    if not os.path.lexists(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        raise CheckpointError(f"cannot read the checkpoint {path}: {error.strerror}") from None
    if not stat.S_ISREG(mode):  # a FIFO would block the reader forever; a device is no checkpoint
        raise CheckpointError(f"{path} is {_file_kind(mode)}, not a regular file: not a checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, random bytes, or a pickle that wants to run code
        raise CheckpointError(f"{path} is not a readable distill_lib checkpoint (damaged, truncated, "
                              f"or holding objects other than tensors): {type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''}") from None


def _check_structure(path, payload) -> None:
    """Every malformed payload is a CheckpointError naming the path and what is wrong."""
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} is not a distill_lib checkpoint: it holds {_kind(payload)}, not a dict")
    if payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a distill_lib checkpoint (no '{FORMAT}' format marker)")
    version = payload.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{path} is a damaged distill_lib checkpoint: format_version is {version!r}, "
                              f"not an integer")
    if version in OLD_FORMAT_VERSIONS:
        raise CheckpointError(
            f"{path} is a checkpoint of format version {version}, whose digest covers the weights but not "
            f"the metadata; this library reads format version {FORMAT_VERSION} only. If you trust the "
            f"file's current contents, convert it once with "
            f"distill_lib.core.checkpoints.upgrade_checkpoint({str(path)!r}): it re-saves the same "
            f"weights and metadata, now covered by the digest (or retrain the model).")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path} is a checkpoint of format version {version}, written by a newer "
                              f"distill_lib; this one reads format version {FORMAT_VERSION}: update distill_lib")
    _check_parts(path, payload)
    if not isinstance(payload.get("sha256"), str):
        raise CheckpointError(f"{path} is a damaged distill_lib checkpoint: "
                              + ("no 'sha256' digest" if "sha256" not in payload
                                 else f"'sha256' is {_kind(payload['sha256'])}, not a string"))


def _check_parts(path, payload) -> None:
    for part in ("state_dict", "metadata"):
        if part not in payload:
            raise CheckpointError(f"{path} is a damaged distill_lib checkpoint: no '{part}'")
        if not isinstance(payload[part], dict):
            raise CheckpointError(f"{path} is a damaged distill_lib checkpoint: '{part}' is "
                                  f"{_kind(payload[part])}, not a dict")
    file_bytes = _file_size(path)
    for name, tensor in payload["state_dict"].items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{path} is a damaged distill_lib checkpoint: state_dict entry {name!r} is "
                                  f"{_kind(tensor)}, not a tensor")
        refuse_oversized(path, f"state_dict entry {name!r}", tensor, file_bytes)
    if not isinstance(payload["metadata"].get("weights_sha256"), str):
        raise CheckpointError(f"{path} is a damaged distill_lib checkpoint: metadata has no 'weights_sha256'")
    _check_plain(path, payload["metadata"])


def _file_size(path) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def refuse_oversized(path, what: str, tensor: torch.Tensor, file_bytes: int | None) -> None:
    """Before anything copies ``tensor`` (a digest makes it contiguous): its declared size must be
    backed by bytes of the file. A few bytes with zero strides can declare a tensor of gigabytes,
    and copying it would allocate them all: such a file is refused as damaged (``CheckpointError``)."""
    declared = tensor.numel() * tensor.element_size()
    stored = tensor.untyped_storage().nbytes()
    if declared > stored or (file_bytes is not None and declared > file_bytes):
        whole = "" if file_bytes is None else f"; the whole file has {file_bytes:,} bytes"
        raise CheckpointError(
            f"{path} is a damaged or forged file: {what} declares shape {tuple(tensor.shape)} "
            f"({declared:,} bytes) but only {stored:,} bytes of it are stored{whole}; refused before "
            f"allocating it")


def _check_weights(path, payload) -> str:
    actual = state_dict_sha256(payload["state_dict"])
    if actual != payload["metadata"]["weights_sha256"]:
        raise CheckpointError(f"{path}: weights do not match their recorded sha256; the file was "
                              f"modified or damaged after it was written")
    return actual


def read_checkpoint(path) -> dict:
    """The verified payload (format, state_dict, metadata, sha256) of a checkpoint file."""
    path = Path(path)
    payload = _load_payload(path)
    _check_structure(path, payload)
    weights = _check_weights(path, payload)
    if checkpoint_sha256(weights, payload["metadata"]) != payload["sha256"]:
        raise CheckpointError(f"{path}: the metadata (or the weights) do not match the recorded sha256; "
                              f"the file was modified after it was written (e.g. an edited accuracy or "
                              f"recipe)")
    return payload


def upgrade_checkpoint(path, out=None) -> Path:
    """Re-save an older-format checkpoint at ``path`` (or at ``out``) in the current format.

    The weights must still match the digest the old file recorded, but an old file's **metadata
    was never covered by a digest**: this function trusts the file's current contents, and from
    then on the new digest vouches for them. Only upgrade a file whose origin you trust. Weights
    and metadata are kept exactly (the metadata's ``weights_sha256`` included); a file already in
    the current format is verified and left as it is (copied to ``out`` when given).
    """
    path = Path(path)
    payload = _load_payload(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        _check_structure(path, payload)  # raises the precise error
    version = payload.get("format_version")
    if version == FORMAT_VERSION:
        read_checkpoint(path)  # verified, nothing to do
        if out is None or Path(out) == path:
            return path
        return _write(out, payload["state_dict"], payload["metadata"])
    if version not in OLD_FORMAT_VERSIONS:
        _check_structure(path, payload)  # raises: unknown or newer version
    _check_parts(path, payload)
    _check_weights(path, payload)
    return _write(path if out is None else out, payload["state_dict"], payload["metadata"])


def load_checkpoint(path, model=None):
    """Load weights into ``model`` (or rebuild the recorded architecture); return (model, metadata)."""
    payload = read_checkpoint(path)
    metadata = payload["metadata"]
    if model is None:
        from .models import rebuild
        if not metadata.get("architecture"):
            raise CheckpointError(f"{path} records no architecture; pass the model to load into")
        try:
            model = rebuild(metadata["architecture"])
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{path} records an architecture this library cannot build "
                                  f"({metadata['architecture']!r}): {error}") from None
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
    if not isinstance(recorded, dict):
        raise CheckpointError(f"{path} is a damaged distill_lib checkpoint: its architecture is "
                              f"{_kind(recorded)}, not a dict")
    if recorded and actual and recorded != actual:
        raise CheckpointError(f"{path} holds a {recorded.get('name')!r} model {recorded}, but the model "
                              f"given is {actual.get('name')!r} {actual}")
