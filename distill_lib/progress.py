"""Progress reporting: a tqdm bar when someone is watching, plain log lines when headless.

Under papermill a widget progress bar is frozen in the saved notebook, so batch runs (the
runner sets ``DISTILL_HEADLESS=1``) get periodic ``print`` lines instead.
"""
from __future__ import annotations

import os
import sys
import time

from . import checks

MODES = ("auto", "bar", "log", "off")
_mode = "auto"


def set_progress(mode: str) -> None:
    """Choose how long loops report: "auto" (default), "bar", "log" or "off"."""
    global _mode
    _mode = checks.one_of("mode", mode, MODES)


def _in_notebook_kernel() -> bool:
    shell = sys.modules.get("IPython")
    try:
        return shell is not None and type(shell.get_ipython()).__name__ == "ZMQInteractiveShell"
    except Exception:  # IPython present but not usable: treat as a plain process
        return False


def resolve_mode(mode: str | None = None) -> str:
    mode = checks.one_of("progress", mode or _mode, MODES)
    if mode != "auto":
        return mode
    if os.environ.get("DISTILL_HEADLESS") == "1":
        return "log"
    return "bar" if (sys.stderr.isatty() or _in_notebook_kernel()) else "log"


class Progress:
    """Count steps; show a bar, or print a line at most every ``log_seconds`` (and at the end)."""

    def __init__(self, total: int, desc: str, mode: str | None = None, log_seconds: float = 10.0):
        self.total, self.desc, self.done = total, desc, 0
        self.mode, self.log_seconds = resolve_mode(mode), log_seconds
        self.started = self.last_log = time.perf_counter()
        self.bar = None
        if self.mode == "bar":
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, desc=desc, leave=True)

    def update(self, steps: int = 1, **info) -> None:
        self.done += steps
        if self.bar is not None:
            self.bar.update(steps)
            if info:
                self.bar.set_postfix({k: _short(v) for k, v in info.items()}, refresh=False)
        elif self.mode == "log":
            now = time.perf_counter()
            if info and (now - self.last_log >= self.log_seconds or self.done >= self.total):
                self.last_log = now
                details = " ".join(f"{k}={_short(v)}" for k, v in info.items())
                print(f"{self.desc}: {self.done}/{self.total} {details} ({now - self.started:.1f} s)", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _short(value):
    return f"{value:.4g}" if isinstance(value, float) else value
