"""Matplotlib figures shared by the notebooks (each returns the Figure; nothing is shown here)."""
from __future__ import annotations

import matplotlib.pyplot as plt

from ..core.evaluate import confusion_matrix, per_class_accuracy
from ..core.stats import mean_std


def learning_curves(histories: dict, metric: str = "accuracy", title: str = ""):
    """Training loss and an evaluation metric over epochs, one line per labelled History."""
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, history in histories.items():
        epochs = range(1, len(history.train_loss) + 1)
        ax_loss.plot(epochs, history.train_loss, label=label)
        if history.eval_metrics and metric in history.eval_metrics[0]:
            ax_metric.plot(epochs, history.curve(metric), marker=".", label=label)
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="training loss")
    ax_metric.set(xlabel="epoch", ylabel=f"test {metric}", title=f"test {metric} (final epoch is reported)")
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_confusion(predictions, labels, classes, title: str = "confusion matrix"):
    """Row-normalised confusion matrix with the counts written in the cells."""
    counts = confusion_matrix(predictions, labels, len(classes))
    rates = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            if counts[i, j]:
                ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if rates[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of the true class")
    fig.tight_layout()
    return fig


def plot_per_class(accuracies: dict, classes, title: str = "per-class test accuracy"):
    """Grouped bars: one group per class, one bar per labelled model."""
    fig, ax = plt.subplots(figsize=(10, 3.6))
    width = 0.8 / max(len(accuracies), 1)
    for k, (label, values) in enumerate(accuracies.items()):
        ax.bar([i + k * width for i in range(len(classes))], [float(v) for v in values], width, label=label)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(classes))], classes, rotation=30, ha="right")
    ax.set(ylabel="accuracy", ylim=(0, 1.02), title=title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_bars_with_seeds(results: dict, ylabel: str = "test accuracy", title: str = ""):
    """One bar per method: mean over seeds, error bar = std, each seed as a dot."""
    fig, ax = plt.subplots(figsize=(1.4 * len(results) + 2, 3.6))
    for i, (label, values) in enumerate(results.items()):
        mean, std = mean_std(values)
        ax.bar(i, mean, yerr=std, capsize=4, color=f"C{i}", alpha=0.75)
        ax.plot([i] * len(values), values, "k.", ms=5)
        ax.text(i, mean, f"{mean:.4f}", ha="center", va="bottom", fontsize=8)
    low = min(min(v) for v in results.values())
    high = max(max(v) for v in results.values())
    ax.set_ylim(low - 0.5 * (high - low + 0.01), high + 0.3 * (high - low + 0.01))
    ax.set_xticks(range(len(results)), list(results), rotation=15)
    ax.set(ylabel=ylabel, title=title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
