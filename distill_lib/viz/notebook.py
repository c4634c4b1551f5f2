"""The few calls every notebook makes at its start and end (the notebook contract)."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from ..core.device import resolve_device
from ..core.progress import in_notebook_kernel, set_progress


def start(cfg, device="auto") -> torch.device:
    """Progress style from ``cfg.interactive``, a run directory, the seed; returns the device."""
    set_progress("bar" if cfg.interactive else "log")
    Path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    if not cfg.interactive and not in_notebook_kernel():
        # a plain process: no GUI windows. Inside a kernel (papermill included) keep the inline
        # backend: it is headless already, and Agg would drop every figure from the report.
        import matplotlib
        matplotlib.use("Agg")
    return resolve_device(device)


def save_figure(fig, cfg, name: str) -> Path:
    """Save ``fig`` as ``<run_dir>/<name>.png`` (the figure is still shown by the notebook)."""
    path = Path(cfg.run_dir) / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


class Timer:
    """``with timer("teacher"):`` adds the block's wall time to ``timer.seconds["teacher"]``."""

    def __init__(self):
        self.seconds: dict = {}
        self._name, self._started = None, 0.0

    def __call__(self, name: str) -> "Timer":
        self._name = name
        return self

    def __enter__(self):
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds[self._name] = round(self.seconds.get(self._name, 0.0) + time.perf_counter() - self._started, 2)


def finish(cfg, metrics: dict, timings: dict | None = None) -> Path:
    """Write ``<run_dir>/metrics.json`` (parameters, metrics, timings, versions, device)."""
    from ..core.results import write_metrics
    return write_metrics(cfg.run_dir, params=cfg.as_dict(), metrics=metrics, timings=timings)


def table(rows: list, headers: list):
    """A Markdown table for display in a notebook (numbers as written by the caller)."""
    from IPython.display import Markdown
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return Markdown("\n".join(lines))


def where_datasets_are(names=("fashion-mnist-mini", "fashion-mnist", "mnist", "cifar10")) -> list:
    """[name, found where (or why not), size] for each dataset: the environment check."""
    from ..core.data import load_dataset
    rows = []
    for name in names:
        try:
            data = load_dataset(name, split="test")
            rows.append([name, data.source, f"{len(data)} test images"])
        except FileNotFoundError as error:
            rows.append([name, "not found: " + str(error).splitlines()[0], "see the error for ways to get it"])
    return rows
