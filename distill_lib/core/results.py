"""Run results on disk: ``metrics.json`` written atomically, read back, flattened for tables.

Every notebook ends with ``write_metrics(run_dir, params=..., metrics=...)``; the runner and the
sweep read these files back to build their summary table and ``results.csv``. Files are written
to a temporary file in the same directory and then renamed (``os.replace``), so a crash or a
Ctrl-C never leaves a half-written file that a later resume would trust.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import importlib
import json
import math
import os
import platform
import secrets
from pathlib import Path

from . import __version__

METRICS_FILE = "metrics.json"


def to_jsonable(value):
    """``value`` with numpy/torch scalars and arrays, tuples, sets and paths made JSON-safe.

    Non-finite floats (NaN, +-inf) become ``None`` (``null`` in the file): JSON has no NaN, and a
    diverged run's metric is better read as "missing" than as a fake number.
    """
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist"):  # numpy/torch scalars and arrays, without importing either
        return to_jsonable(value.tolist())
    if hasattr(value, "item"):
        return to_jsonable(value.item())
    raise TypeError(f"cannot store a {type(value).__name__} in JSON: {value!r}")


def write_json_atomic(path, data) -> Path:
    """Write ``data`` (made JSON-safe) to ``path`` through a temp file + ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(to_jsonable(data), indent=2, allow_nan=False) + "\n"
    write_text_atomic(path, text)
    return path


def write_atomic(path, write, *, mode: int | None = None) -> Path:
    """Replace ``path`` in one step with what ``write(binary_file)`` writes. A temp file in the same
    directory is filled, flushed to disk and renamed over ``path`` (readers see the old file or the
    new one, never half of one); it is removed if anything fails. ``mode`` None gives the file the
    permissions ``open()`` would: 0o666 less the umask, applied by the kernel."""
    path = Path(path)
    temp = _write_temp(path, write, mode)
    try:
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def _write_temp(path: Path, write, mode: int | None) -> Path:
    """A temp file beside ``path`` holding what ``write`` writes, flushed to disk."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(temp, mode)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def write_text_atomic(path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step (``write_atomic``); results are meant to be shared: 0o644."""
    write_atomic(path, lambda handle: handle.write(text.encode("utf-8")), mode=0o644)


def replace_files(texts: dict) -> None:
    """Replace every file in ``texts`` (path -> new text) or none of them, each at mode 0o644.

    Each new text goes to a temp file beside its target first (flushed to disk); only when all are
    written are they renamed over their targets, and should a rename fail, the files already
    replaced get their old bytes back. ``OSError`` (saying that no file changed) on failure.
    """
    staged = []  # (path, its old bytes or None, the temp file with its new text)
    try:
        for path, text in texts.items():
            path = Path(os.path.realpath(path))  # a README that is a link: its target is the file
            old = path.read_bytes() if path.exists() else None
            data = text.encode("utf-8")
            staged.append((path, old, _write_temp(path, lambda handle, data=data: handle.write(data), 0o644)))
        for number, (path, _, temp) in enumerate(staged):
            try:
                os.replace(temp, path)
            except BaseException:  # Ctrl-C included: all or nothing
                _restore(staged[:number])
                raise
    except OSError as error:
        raise OSError(error.errno, f"{error.strerror or error} ({error.filename}); no file was changed") from None
    finally:
        for _, _, temp in staged:
            temp.unlink(missing_ok=True)  # a temp file not renamed (after a failure)


def _restore(replaced: list) -> None:
    """Put back the old bytes of files that ``replace_files`` had already replaced."""
    for path, old, _ in replaced:
        if old is None:
            path.unlink(missing_ok=True)
        else:
            write_atomic(path, lambda handle, old=old: handle.write(old), mode=0o644)


def write_metrics(run_dir, *, params: dict, metrics: dict, timings: dict | None = None) -> Path:
    """Write ``<run_dir>/metrics.json`` atomically and return its path.

    Keys: ``params``, ``metrics``, ``timings``, ``versions`` (python, torch and torchvision
    when importable, distill_lib), ``device`` (CUDA device name or "cpu" with the CPU count) and
    ``created`` (UTC, ISO 8601). numpy/torch scalars and tuples are converted; NaN and infinite
    values are written as ``null``.
    """
    record = {
        "params": params,
        "metrics": metrics,
        "timings": timings or {},
        "versions": _versions(),
        "device": _device(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return write_json_atomic(Path(run_dir) / METRICS_FILE, record)


def read_metrics(run_dir) -> dict:
    """The record written by :func:`write_metrics` (``FileNotFoundError`` if there is none)."""
    return json.loads((Path(run_dir) / METRICS_FILE).read_text(encoding="utf-8"))


def read_metrics_checksummed(run_dir) -> tuple[object, str]:
    """(the parsed ``metrics.json``, the sha256 of its bytes as read). The record is whatever JSON
    the file holds: callers check its shape. ``OSError`` or ``ValueError`` if it cannot be read
    or parsed."""
    data = (Path(run_dir) / METRICS_FILE).read_bytes()
    return json.loads(data.decode("utf-8")), hashlib.sha256(data).hexdigest()


def headline_of(record) -> dict | None:
    """The ``metrics.headline`` entry of a metrics.json record (see ``stats.headline``), or None."""
    metrics = record.get("metrics") if isinstance(record, dict) else None
    headline = metrics.get("headline") if isinstance(metrics, dict) else None
    return headline if isinstance(headline, dict) else None


def flatten_numbers(tree: dict, prefix: str = "") -> dict:
    """Numeric leaves of a nested dict as ``{"dotted.key": number}`` (bools and text skipped)."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_numbers(value, prefix=f"{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = value
    return flat


def _versions() -> dict:
    versions = {"python": platform.python_version()}
    # Imported lazily and guarded: metrics must be written even where torch is missing or broken.
    for module_name in ("torch", "torchvision"):
        try:
            module = importlib.import_module(module_name)
            versions[module_name] = getattr(module, "__version__", "unknown")
        except Exception:
            continue
    return {**versions, "distill_lib": __version__}  # the version lives in core, beside this module


def _device() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(torch.cuda.current_device())
    except Exception:
        pass
    return f"cpu ({os.cpu_count()} cores)"
