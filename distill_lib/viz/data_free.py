"""Figures for data-free distillation: the generator's images per class as training goes on, the
teacher's class histogram on them, and the students' test accuracy over the steps."""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from ..core import stats


def tile(snapshot: dict, rows: int, by: str = "read") -> torch.Tensor:
    """One image: a column per class, the first ``rows`` images of that class going down (by the
    class the teacher reads, ``by="read"``, or the one asked for, ``by="asked"``); 1 pixel of white
    padding, a class without images stays white."""
    images, classes = snapshot["images"], snapshot[by]
    h, w = images.shape[-2:]
    columns = len(snapshot["teacher_counts"])
    grid = torch.ones(rows * (h + 1), columns * (w + 1))
    for c in range(columns):
        for r, image in enumerate(images[classes == c][:rows]):
            grid[r * (h + 1): r * (h + 1) + h, c * (w + 1): c * (w + 1) + w] = image[0]
    return grid


def plot_generated(snapshots: list, class_names: list, epochs=None, rows: int = 6, steps_per_epoch: int = 1,
                   title: str = ""):
    """The generator's images for a fixed batch of noise, a column per class the teacher reads
    (white where it reads none), one panel per chosen snapshot (``DataFree.snapshots``; by default
    the first, a middle one and the last)."""
    chosen = [s for s in snapshots if epochs is None or s["epoch"] in epochs]
    if epochs is None and len(chosen) > 3:
        chosen = [chosen[0], chosen[len(chosen) // 2], chosen[-1]]
    fig, axes = plt.subplots(1, len(chosen), figsize=(0.55 * len(class_names) * len(chosen) + 0.5, 0.6 * rows + 1.4),
                             squeeze=False)
    for ax, snap in zip(axes[0], chosen):
        ax.imshow(tile(snap, rows), cmap="gray", vmin=0, vmax=1)
        width = snap["images"].shape[-1] + 1
        ax.set_xticks([(i + 0.5) * width for i in range(len(class_names))])
        ax.set_xticklabels(class_names, fontsize=7, rotation=90)
        ax.set_yticks([])
        ax.set_title(f"after step {snap['epoch'] * steps_per_epoch}", fontsize=9)
    fig.suptitle(title or "generated images, a column per class the teacher reads")
    fig.tight_layout()
    return fig


def plot_class_histograms(counts: dict, class_names: list, title: str = ""):
    """Bars: how many generated images the teacher puts in each class, one panel per run
    (label -> counts). A flat histogram covers the classes; a spike is mode collapse."""
    fig, axes = plt.subplots(1, len(counts), figsize=(4.2 * len(counts), 3.2), squeeze=False, sharey=True)
    for ax, (label, row) in zip(axes[0], counts.items()):
        total = max(sum(row), 1)
        ax.bar(range(len(row)), [100 * c / total for c in row], color="C0")
        ax.axhline(100 / len(row), color="grey", ls="--", lw=1, label="every class equally often")
        ax.set_xticks(range(len(row)))
        ax.set_xticklabels(class_names, rotation=60, fontsize=7)
        ax.set_title(label, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("share of generated images (%)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title or "the teacher's class on generated images")
    fig.tight_layout()
    return fig


def plot_accuracy_over_steps(curves: dict, reference: tuple | None = None, title: str = ""):
    """Test accuracy (percent) after each evaluation against the student's steps: mean over seeds,
    the seeds' range shaded. ``curves``: label -> (list of per-seed accuracy curves, steps between
    two evaluations)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (label, (runs, every)) in enumerate(curves.items()):
        steps = [every * (e + 1) for e in range(len(runs[0]))]
        per_step = list(zip(*runs))
        mean = [100 * stats.mean_std(values)[0] for values in per_step]
        ax.plot(steps, mean, marker=".", color=f"C{i}", label=f"{label} (mean of {len(runs)} seeds)")
        ax.fill_between(steps, [100 * min(v) for v in per_step], [100 * max(v) for v in per_step],
                        color=f"C{i}", alpha=0.15)
    if reference is not None:
        ax.axhline(100 * reference[1], color="black", ls=":", label=reference[0])
    ax.set(xlabel="student steps", ylabel="test accuracy (%)", ylim=(0, 100), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
