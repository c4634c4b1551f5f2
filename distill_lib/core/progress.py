"""Progress reporting: a tqdm bar when someone is watching, plain log lines when headless.

The mode is passed, never read from the environment: ``set_progress("log")`` (what
``dl.notebook.start`` does for ``interactive=False``) or ``progress="log"`` on a training call.
"auto" shows a bar in a terminal or a live notebook kernel and log lines otherwise.

What draws a bar can be passed too: ``set_progress("bar", bar=factory)``. ``dl.notebook.start``
passes one that, when the bar closes, replaces the widget by a line of text with its final state
(a widget is only alive while its kernel runs: a saved notebook would show it frozen at 0%).
This module itself imports no notebook package.
"""
from __future__ import annotations

import sys
import time

from . import checks

MODES = ("auto", "bar", "log", "off")
_mode = "auto"
_bar_factory = None  # callable(total, desc) -> a tqdm-like bar; None: tqdm.auto


def set_progress(mode: str, bar=None) -> None:
    """Choose how long loops report: "auto" (default), "bar", "log" or "off"; ``bar`` optionally
    makes the bars: ``bar(total, desc)`` returning an object with tqdm's ``update``,
    ``set_postfix`` and a ``close(final_line)``."""
    global _mode, _bar_factory
    _mode = checks.one_of("mode", mode, MODES)
    if bar is not None and not callable(bar):
        raise ValueError(f"bar must be a callable (total, desc) -> bar; got {bar!r}")
    _bar_factory = bar


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
        self.bar, self.custom = None, _bar_factory is not None
        if self.mode == "bar":
            if self.custom:
                self.bar = _bar_factory(total, desc)
            else:
                from tqdm.auto import tqdm
                self.bar = tqdm(total=total, desc=desc)

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
            if self.custom:
                self.bar.close(self.line())
            else:
                self.bar.close()
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _short(value):
    return f"{value:.4g}" if isinstance(value, float) else value
