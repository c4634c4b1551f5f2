"""Figures of notebook 02 (temperature and soft targets); each returns the Figure."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch

from ..core import checks, stats
from ..lessons.temperature import entropy_bits
from ..lessons.temperature_grid import METRICS, find
from ..methods.kd import soft_targets
from .curves import VERDICT_COLOURS, VERDICT_LEGEND, shade_margin


def as_picture(image: torch.Tensor):
    """A C x H x W image as imshow wants it: H x W for one channel, H x W x C for colour."""
    image = image.detach().cpu()
    return (image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)).numpy()


def _bars(ax, probs: torch.Tensor, classes, highlight: int, title: str) -> None:
    colours = ["C2" if i == highlight else "C0" for i in range(len(classes))]
    ax.bar(range(len(classes)), probs.tolist(), color=colours)
    ax.set_xticks(range(len(classes)), classes, rotation=70, fontsize=7)
    ax.set(ylim=(0, 1), title=title)
    ax.grid(axis="y", alpha=0.3)


def plot_softened_examples(logits, images, labels, classes, indices, temperatures):
    """One row per test image: the image, then the model's ``softmax(logits / T)`` for each T
    (the true class in green), with the entropy in the panel title."""
    fig, axes = plt.subplots(len(indices), len(temperatures) + 1, squeeze=False,
                             figsize=(1.9 + 2.6 * len(temperatures), 2.5 * len(indices)))
    for row, index in zip(axes, indices):
        row[0].imshow(as_picture(images[index]), cmap="gray_r")
        row[0].set_title(f"#{index}: {classes[int(labels[index])]}", fontsize=9)
        row[0].axis("off")
        for ax, temperature in zip(row[1:], temperatures):
            probs = soft_targets(logits[index].float(), temperature)
            _bars(ax, probs, classes, int(labels[index]),
                  f"T={temperature:g}: H={float(entropy_bits(probs)):.2f} bits")
    fig.tight_layout()
    return fig


def plot_class_similarity(similarities: dict, classes):
    """One heat map per T: row = true class, column = the mean probability given to each WRONG
    class (the diagonal is blanked, it would dwarf the rest)."""
    fig, axes = plt.subplots(1, len(similarities), figsize=(5.6 * len(similarities), 5.0), squeeze=False)
    for ax, (temperature, matrix) in zip(axes[0], similarities.items()):
        wrong = 100 * matrix  # percent
        wrong.fill_diagonal_(float("nan"))
        image = ax.imshow(wrong, cmap="magma_r", vmin=0)
        darkest = float(wrong.nan_to_num(0).max())
        for i in range(len(classes)):
            for j in range(len(classes)):
                if i != j and wrong[i, j] >= 1:
                    ax.text(j, i, f"{float(wrong[i, j]):.0f}", ha="center", va="center", fontsize=6,
                            color="white" if wrong[i, j] > 0.6 * darkest else "black")
        ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(classes)), classes, fontsize=8)
        ax.set(xlabel="wrong class", ylabel="true class", title=f"T={temperature:g}: mean soft target (%)")
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def plot_entropy(temperatures, entropies: dict, num_classes: int):
    """Median entropy (bits) against T with the 10-90 % range of samples, one line per model."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for i, (label, values) in enumerate(entropies.items()):
        low, mid, high = torch.quantile(values, torch.tensor([0.1, 0.5, 0.9]), dim=1)
        ax.plot(temperatures, mid, marker=".", color=f"C{i}", label=f"{label} (median)")
        ax.fill_between(temperatures, low, high, color=f"C{i}", alpha=0.2)
    ax.axhline(math.log2(num_classes), color="k", ls="--", lw=1, label=f"uniform: log2({num_classes})")
    ax.set(xscale="log", xlabel="temperature T", ylabel="entropy of softmax(z/T) (bits)",
           title="soft targets flatten as T grows (band: 10-90 % of test images)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_gradient_scale(scale: dict):
    """Mean gradient norm of the soft term against T, with and without T^2, beside the hard term."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot(scale["temperatures"], scale["without_t2"], marker="o", label="KL alone")
    ax.plot(scale["temperatures"], scale["with_t2"], marker="o", label="T² · KL (the convention)")
    ax.axhline(scale["hard"], color="k", ls="--", lw=1, label="CE with the labels (no T)")
    ax.set(xscale="log", yscale="log", xlabel="temperature T", ylabel="mean |d loss / d student logits|",
           title="gradient size of the soft term")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_high_temperature_limit(temperatures, gaps: dict):
    """Relative gap between ``T^2 * grad KL`` and the logit-matching gradient, against T."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for label, values in gaps.items():
        ax.plot(temperatures, values, marker="o", label=label)
    ax.set(xscale="log", yscale="log", xlabel="temperature T",
           ylabel="|T² ∇KL − (s − t)/N| / |(s − t)/N|", title="KL approaches logit matching as T grows")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ the grid of notebook 02
def plot_grid(summary: list, metric: str = "accuracy", teacher_value: float | None = None):
    """``metric`` against T, one panel per student: a line per (loss, alpha) with the 95% interval
    of the mean over seeds as error bars, the from-scratch student as a band (its 95% interval)."""
    checks.one_of("metric", metric, METRICS)
    scale = 100 if metric in PERCENT_METRICS else 1  # accuracies in percent, as everywhere
    students = list(dict.fromkeys(e["student"] for e in summary))
    fig, axes = plt.subplots(1, len(students), figsize=(5.2 * len(students), 3.6), squeeze=False)
    for ax, student in zip(axes[0], students):
        scratch = find(summary, student=student, method="scratch")
        mean = scratch[f"{metric}_mean"]
        low, high = stats.interval_from(mean, scratch[f"{metric}_std"], scratch["n"])
        if low == low:
            ax.axhspan(scale * low, scale * high, color="grey", alpha=0.25)
        ax.axhline(scale * mean, color="grey", label="from scratch")
        if teacher_value is not None:
            ax.axhline(scale * teacher_value, color="k", ls="--", lw=1, label="teacher")
        ax.set_xscale("log")  # before the ticks: setting the scale resets them
        _plot_kd_lines(ax, [e for e in summary if e["student"] == student and e["method"] == "kd"], metric, scale)
        n = scratch["n"]
        ax.set(xlabel="temperature T", ylabel=f"test {metric}" + (" (%)" if scale == 100 else ""),
               title=f"{student} ({n} seed{'s' if n > 1 else ''}; bars: 95% interval of the mean)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


PERCENT_METRICS = ("accuracy", "agreement")


def _plot_kd_lines(ax, entries: list, metric: str, scale: float) -> None:
    lines: dict = {}
    for entry in entries:
        lines.setdefault((entry["loss"], entry["alpha"]), []).append(entry)
    for (loss, alpha), points in lines.items():
        points.sort(key=lambda e: e["temperature"])
        means = [scale * e[f"{metric}_mean"] for e in points]
        intervals = [[scale * v for v in stats.interval_from(e[f"{metric}_mean"], e[f"{metric}_std"], e["n"])]
                     for e in points]
        errors = [[m - lo if lo == lo else 0 for m, (lo, _) in zip(means, intervals)],
                  [hi - m if hi == hi else 0 for m, (_, hi) in zip(means, intervals)]]
        ax.errorbar([e["temperature"] for e in points], means, yerr=errors, marker="o", capsize=3,
                    label=f"KD ({loss}), alpha={alpha:g}")
    _temperature_ticks(ax, sorted({e["temperature"] for e in entries}))


def _temperature_ticks(ax, temperatures) -> None:
    if temperatures:
        ax.set_xticks(temperatures, [f"{t:g}" for t in temperatures])
        ax.minorticks_off()


def plot_grid_effects(effects: dict, title: str = ""):
    """KD minus from scratch (points) against T, one panel per student: the mean paired difference
    over seeds with its 95% interval, each seed as a tick, and the zero line of the verdict."""
    students = list(dict.fromkeys(student for student, *_ in effects))
    fig, axes = plt.subplots(1, len(students), figsize=(5.2 * len(students), 3.6), squeeze=False, sharey=True)
    for ax, student in zip(axes[0], students):
        mine = sorted(((k, c) for k, c in effects.items() if k[0] == student), key=lambda item: (item[0][1], item[0][3], item[0][2]))
        for (_, loss, temperature, alpha), c in mine:
            low, high = c.ci95
            if low == low:
                ax.plot([temperature] * 2, [100 * low, 100 * high], color=VERDICT_COLOURS[c.verdict], lw=2)
            ax.plot(temperature, 100 * c.mean, "o", color=VERDICT_COLOURS[c.verdict])
            ax.plot([temperature] * c.n, [100 * d for d in c.differences], "_", color="k", ms=8, alpha=0.6)
        shade_margin(ax, max(c.margin for _, c in mine), vertical=False)
        ax.axhline(0, color="k", lw=1)
        ax.set_xscale("log")
        _temperature_ticks(ax, sorted({k[2] for k, _ in mine}))
        ax.set(xlabel="temperature T", ylabel="KD minus from scratch (points)", title=student)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title or 'the effect of distillation, by temperature'}\n({VERDICT_LEGEND})", fontsize=10)
    fig.tight_layout()
    return fig


def plot_omitted_class(records: list, classes, omitted: int, title: str = ""):
    """Per-class test accuracy (with the bias rule) of the distilled and the labels-only student that
    never saw class ``omitted``: mean over the seeds' records, the omitted class marked."""
    fig, ax = plt.subplots(figsize=(10, 3.6))
    width = 0.4
    for k, (arm, label) in enumerate((("kd", "distilled (T high, no labels)"), ("scratch", "from labels"))):
        means = [sum(r[f"{arm}_per_class"][c] for r in records) / len(records) for c in range(len(classes))]
        ax.bar([c + (k - 0.5) * width for c in range(len(classes))], [100 * m for m in means], width, label=label, zorder=2,
               color=f"C{k}")
    # behind the bars (zorder 0), so that the highlight does not change their colours
    ax.axvspan(omitted - 0.5, omitted + 0.5, color="gold", alpha=0.35, zorder=0, label=f"never seen: {classes[omitted]}")
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set(ylabel="test accuracy per class (%)", ylim=(0, 100))
    ax.set_title(title, fontsize=10, pad=24)
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
