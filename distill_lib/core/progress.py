"""Progress reporting: a tqdm bar when someone is watching, plain log lines when headless.

The mode is passed, never read from the environment: ``set_progress("log")`` (what
``dl.notebook.start`` does for ``interactive=False``) or ``progress="log"`` on a training call.
"auto" shows a bar in a terminal or a live notebook kernel and log lines otherwise.

A widget bar is only alive while its kernel runs: a saved notebook shows it frozen at its first
state. So a bar in a notebook is removed when it closes and replaced by one plain line with its
final state, which the saved notebook keeps.
"""
from __future__ import annotations

import sys
import time

from . import checks

MODES = ("auto", "bar", "log", "off")
_mode = "auto"


def set_progress(mode: str) -> None:
    """Choose how long loops report: "auto" (default), "bar", "log" or "off"."""
    global _mode
    _mode = checks.one_of("mode", mode, MODES)


def in_notebook_kernel() -> bool:
    """True inside a Jupyter kernel (papermill's included)."""
    shell = sys.modules.get("IPython")
    try:
        return shell is not None and type(shell.get_ipython()).__name__ == "ZMQInteractiveShell"
    except Exception:  # IPython present but not usable: treat as a plain process
        return False


def resolve_mode(mode: str | None = None) -> str:
    mode = checks.one_of("progress", mode or _mode, MODES)
    if mode != "auto":
        return mode
    return "bar" if (sys.stderr.isatty() or in_notebook_kernel()) else "log"


class Progress:
    """Count steps; show a bar, or print a line at most every ``log_seconds`` (and at the end)."""

    def __init__(self, total: int, desc: str, mode: str | None = None, log_seconds: float = 10.0):
        self.total, self.desc, self.done = total, desc, 0
        self.mode, self.log_seconds = resolve_mode(mode), log_seconds
        self.started = self.last_log = time.perf_counter()
        self.info: dict = {}
        self.bar = None
        if self.mode == "bar":
            from tqdm.auto import tqdm
            # in a notebook the widget is removed at close (leave=False) and a text line stays
            self.bar = tqdm(total=total, desc=desc, leave=not in_notebook_kernel())

    def update(self, steps: int = 1, **info) -> None:
        self.done += steps
        self.info.update(info)
        if self.bar is not None:
            self.bar.update(steps)
            if info:
                self.bar.set_postfix({k: _short(v) for k, v in info.items()}, refresh=False)
        elif self.mode == "log":
            now = time.perf_counter()
            if info and (now - self.last_log >= self.log_seconds or self.done >= self.total):
                self.last_log = now
                print(self.line(now), flush=True)

    def line(self, now: float | None = None) -> str:
        details = " ".join(f"{k}={_short(v)}" for k, v in self.info.items())
        elapsed = (now or time.perf_counter()) - self.started
        return f"{self.desc}: {self.done}/{self.total} {details} ({elapsed:.1f} s)".replace("  ", " ")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            if not self.bar.leave:
                print(self.line(), flush=True)
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _short(value):
    return f"{value:.4g}" if isinstance(value, float) else value
