"""The few calls every notebook makes: ``start`` (settings, threads, seed, run directory),
``save_figure``, ``table``, ``finish`` (metrics.json) and the headline helpers."""
from __future__ import annotations

import math
import platform
import time
from pathlib import Path

import torch

from .. import profiles
from ..core import stats
from ..core.device import resolve_device
from ..core.progress import in_notebook_kernel, set_progress


def start(notebook: str, namespace: dict):
    """Resolve and check ``notebook``'s parameters (``namespace`` holds its parameters cell; None
    means the profile's value), then set torch's threads, the progress style, the seed and the run
    directory. Returns ``(cfg, timer)``; ``cfg.device`` is a ``torch.device``."""
    cfg = profiles.configure(notebook, namespace)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cfg.threads = torch.get_num_threads()  # what really ran, for the report
    if cfg.interactive and in_notebook_kernel():
        set_progress("bar", bar=NotebookBar)
    else:
        set_progress("bar" if cfg.interactive else "log")
    Path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    if not cfg.interactive and not in_notebook_kernel():
        # a plain process: no GUI windows. Inside a kernel (papermill included) keep the inline
        # backend: it is headless already, and Agg would drop every figure from the report.
        import matplotlib
        matplotlib.use("Agg")
    cfg.device = resolve_device(cfg.device)
    cfg.machine = machine()
    return cfg, Timer()


class NotebookBar:
    """A widget progress bar that becomes one line of text when it closes, so that a saved
    notebook shows how the loop ended instead of a widget frozen at 0%."""

    def __init__(self, total: int, desc: str):
        from IPython.display import display
        from tqdm.notebook import tqdm
        self.bar = tqdm(total=total, desc=desc, display=False)
        self.handle = display(self.bar.container, display_id=True)

    def update(self, steps: int = 1) -> None:
        self.bar.update(steps)

    def set_postfix(self, values: dict, refresh: bool = False) -> None:
        self.bar.set_postfix(values, refresh=refresh)

    def close(self, final_line: str) -> None:
        from IPython.display import Pretty
        self.bar.close()
        self.handle.update(Pretty(final_line))


def seeds(cfg) -> list:
    """The seeds of a comparison: ``cfg.seed, cfg.seed + 1, ...`` (``cfg.n_seeds`` of them)."""
    return list(range(cfg.seed, cfg.seed + cfg.n_seeds))


def machine() -> str:
    """A short description of where this runs, e.g. ``2-core x86_64 CPU, no GPU``."""
    import os
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{os.cpu_count()}-core {platform.machine()} CPU, no GPU"


def save_figure(fig, cfg, name: str) -> None:
    """Save ``fig`` as ``<run_dir>/<name>.png`` (the figure is still shown by the notebook)."""
    fig.savefig(Path(cfg.run_dir) / f"{name}.png", dpi=110, bbox_inches="tight")


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


def finish(cfg, metrics: dict, timings: dict | None = None, headline: dict | None = None,
           when_kd_pays: list | None = None) -> None:
    """Write ``<run_dir>/metrics.json``: parameters, metrics (with the ``headline`` and the
    ``when_kd_pays`` rows of ``dl.pays.regime_row``), timings, versions and device. Prints the
    headline when there is one."""
    from ..core import pays
    from ..core.results import write_metrics
    if when_kd_pays:
        metrics = {pays.KEY: list(when_kd_pays), **metrics}
    if headline is not None:
        metrics = {"headline": headline, **metrics}
    path = write_metrics(cfg.run_dir, params=cfg.as_dict(), metrics=metrics, timings=timings)
    print(f"wrote {path}")
    if headline is not None:
        print(headline_text(headline, cfg))


def headline(claim: str, metric: str, comparison: stats.Comparison) -> dict:
    """The notebook's headline for metrics.json: one paired comparison over seeds."""
    return stats.headline(claim, metric, comparison)


def headline_text(headline: dict, cfg) -> str:
    """The headline as the notebook's first cell and the README quote it (``stats.headline_line``)."""
    where = stats.measured_on(cfg.profile, cfg.threads, cfg.machine)
    try:
        return stats.headline_line(headline, where)
    except ValueError:  # one seed: no interval, nothing to quote
        return (f"Headline ({where}): {headline['claim']}: {100 * headline['effect_mean']:+.2f} points from one seed "
                f"(no interval: inconclusive; run at least two seeds).")


def percent_mean_std(values) -> str:
    """Accuracies over seeds as ``84.75 ± 0.21%`` (mean ± sample std, in percent)."""
    mean, std = stats.mean_std(values)
    return f"{100 * mean:.2f} ± {100 * std:.2f}%"


def points(difference: float) -> str:
    """A difference of accuracies as points: ``+0.85 points``."""
    return f"{100 * difference:+.2f} points"


def percent(value) -> str:
    """An accuracy as a percentage, or an en dash where there is none (never ``nan%``)."""
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}%"


def table(rows: list, headers: list):
    """A Markdown table for display in a notebook (cells as written by the caller)."""
    from IPython.display import Markdown
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return Markdown("\n".join(lines))


def markdown_lines(lines: list):
    """Sentences computed from a run's numbers, shown as a Markdown bullet list."""
    from IPython.display import Markdown, display
    display(Markdown("\n".join(f"- {line}" for line in lines)))


def where_datasets_are(names=("fashion-mnist-mini", "fashion-mnist", "mnist", "cifar10")) -> list:
    """[name, where it was found (or "not found"), size] for each dataset: the environment check."""
    from ..core.data import load_dataset
    rows = []
    for name in names:
        try:
            data = load_dataset(name, split="test")
            rows.append([name, data.source, f"{len(data):,} test images"])
        except FileNotFoundError:
            rows.append([name, "not found here", f"dl.load_dataset({name!r}) lists where it looked and how to get it"])
    return rows
