"""Printing that never stops a run: progress lines survive a closed pipe (``sweep ... | head -1``).

When the reader of stdout (or stderr) goes away, a write raises ``BrokenPipeError``. The runs must
go on regardless, so :func:`say` catches it, points that stream's file descriptor at
``os.devnull`` (the recipe in Python's documentation of SIGPIPE, which also keeps the flush at
interpreter exit from printing "Exception ignored ... BrokenPipeError") and stays silent on it
from then on. Nothing else changes: the runs, ``run.json``, ``results.csv`` and the exit code are
as they would have been.
"""
from __future__ import annotations

import contextlib
import errno
import os
import sys
import threading

_lock = threading.Lock()
_silenced: set[str] = set()  # "stdout", "stderr": streams whose reader has gone


def say(*parts, err: bool = False, end: str = "\n") -> None:
    """``print(*parts, end=end, flush=True)`` to stdout (stderr with ``err``); silent once its
    reader has gone."""
    name = "stderr" if err else "stdout"
    if name in _silenced:
        return
    with _silenced_when_reader_gone(name):
        print(*parts, end=end, file=getattr(sys, name), flush=True)


@contextlib.contextmanager
def _silenced_when_reader_gone(name: str):
    """Run a write to ``sys.<name>``; if its reader has gone (a closed pipe), silence the stream
    instead of failing: the work goes on, only its printing stops."""
    try:
        yield
    except (BrokenPipeError, ConnectionResetError):
        silence(name)
    except OSError as error:
        if error.errno not in (errno.EPIPE, errno.EINVAL):
            raise
        silence(name)


def silence(name: str) -> None:
    """From now on ``sys.<name>`` writes go to ``os.devnull`` (whatever is still buffered too)."""
    with _lock:
        if name in _silenced:
            return
        _silenced.add(name)
        stream = getattr(sys, name)
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
        except OSError:
            return
        try:
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError, AttributeError):  # no real descriptor (e.g. captured by pytest)
            pass
        finally:
            os.close(devnull)


def flush_quietly() -> None:
    """Flush stdout and stderr at the end of a command; a reader that has gone is not an error."""
    for name in ("stdout", "stderr"):
        try:
            with _silenced_when_reader_gone(name):
                getattr(sys, name).flush()
        except (ValueError, AttributeError):  # closed or replaced stream
            pass
