"""Matplotlib figures shared by the notebooks (each returns the Figure; nothing is shown here)."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from ..core.evaluate import confusion_matrix, per_class_accuracy
from ..core.stats import mean_interval


def learning_curves(histories: dict, metric: str = "accuracy", title: str = ""):
    """Test NLL and a test metric over epochs, one line per labelled History.

    The left panel is the cross-entropy on the TEST labels, the same measure for every run; a
    run's training objective is not (a distilled student's includes the T^2-scaled soft term),
    so it is drawn separately by :func:`plot_loss_parts`.
    """
    fig, (ax_nll, ax_metric) = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, history in histories.items():
        if not history.eval_metrics or metric not in history.eval_metrics[0]:
            continue
        epochs = range(1, len(history.eval_metrics) + 1)
        ax_nll.plot(epochs, history.curve("nll"), marker=".", label=label)
        ax_metric.plot(epochs, [100 * v for v in history.curve(metric)] if metric == "accuracy" else history.curve(metric),
                       marker=".", label=label)
    ax_nll.set(xlabel="epoch", ylabel="test NLL (cross-entropy)", title="test loss: the same measure for every run")
    ax_metric.set(xlabel="epoch", ylabel=f"test {metric}" + (" (%)" if metric == "accuracy" else ""),
                  title=f"test {metric} (the final epoch is reported)")
    for ax in (ax_nll, ax_metric):
        _epoch_axis(ax)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_overfitting(alone, distilled=None, title: str = ""):
    """The signature of overfitting: the training loss of the student trained ``alone`` keeps
    falling while its test loss (NLL) turns and rises; a ``distilled`` student's test loss next to it
    (its training objective is another quantity, so only its test loss is drawn)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    epochs = range(1, len(alone.train_loss) + 1)
    ax.plot(epochs, alone.train_loss, color="C0", ls="--", marker=".", label="alone: training loss (cross-entropy)")
    ax.plot(epochs, alone.curve("nll"), color="C0", marker=".", label="alone: test loss (cross-entropy)")
    if distilled is not None:
        ax.plot(epochs, distilled.curve("nll"), color="C1", marker=".", label="distilled: test loss (cross-entropy)")
    ax.set(xlabel="epoch", ylabel="cross-entropy, nats per image (log scale)", yscale="log", title=title)
    _epoch_axis(ax)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_loss_parts(history, title: str = ""):
    """The named parts of one run's training objective over epochs (e.g. ``ce`` and ``kd``), with
    their sum: what the optimiser actually saw."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    epochs = range(1, len(history.train_loss) + 1)
    ax.plot(epochs, history.train_loss, color="k", marker=".", label="total (minimised)")
    for name, values in history.parts.items():  # the parts are stored weighted, as they are summed
        ax.plot(epochs, values, marker=".", label=f"{name}, weighted as in the total")
    ax.set(xlabel="epoch", ylabel="training loss, epoch mean (log scale)", title=title or "loss parts", yscale="log")
    _epoch_axis(ax)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _epoch_axis(ax) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.grid(alpha=0.3)


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
        ax.bar([i + k * width for i in range(len(classes))], [100 * float(v) for v in values], width, label=label)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(classes))], classes, rotation=30, ha="right")
    ax.set(ylabel="test accuracy per class (%)", ylim=(0, 102))
    ax.set_title(title, pad=24)
    # above the axes, so that it never covers a bar
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(accuracies), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_seed_comparison(results: dict, seeds, *, reference: tuple | None = None, ylabel: str = "test accuracy (%)",
                         title: str = "", span: float = 0.06):
    """Arms side by side: each seed's accuracy (dots joined across arms: the pairs), the mean and
    its 95% interval over seeds. ``reference`` = (label, value) draws a dashed line (a teacher).

    The y-axis spans at least ``span`` (6 points) so that a few tenths of a point do not look
    like a landslide.
    """
    fig, ax = plt.subplots(figsize=(1.6 * len(results) + 3, 3.8))
    names = list(results)
    for k, seed in enumerate(seeds):  # one grey line per seed: the pairs the comparison uses
        ax.plot(range(len(names)), [100 * results[n][k] for n in names], color="0.75", lw=1, zorder=1)
    for i, name in enumerate(names):
        values = [100 * v for v in results[name]]
        mean = sum(values) / len(values)
        low, high = mean_interval(values) if len(values) > 1 else (mean, mean)
        ax.plot([i] * len(values), values, "o", color=f"C{i}", ms=4, zorder=2)
        ax.errorbar(i + 0.12, mean, yerr=[[mean - low], [high - mean]], fmt="s", color="k", capsize=4, zorder=3)
        ax.annotate(f"{mean:.2f}", (i + 0.18, mean), fontsize=8, va="center")
    values = [100 * v for vs in results.values() for v in vs]
    if reference is not None:
        ax.axhline(100 * reference[1], color="k", ls="--", lw=1, label=f"{reference[0]} {100 * reference[1]:.2f}")
        ax.legend(fontsize=8, loc="lower right")
        values.append(100 * reference[1])
    _span_at_least(ax, min(values), max(values), 100 * span)
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.5, len(names) - 0.3)
    ax.set(ylabel=ylabel, title=title + f"\n{len(seeds)} seeds: dots, the mean (square) and its 95% interval")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


# one colour per verdict, in every figure that draws one (core.stats.VERDICTS)
VERDICT_COLOURS = {"gain": "C2", "loss": "C3", "negligible": "C0", "inconclusive": "0.45"}
VERDICT_LEGEND = "green: gain, red: loss, blue: negligible, grey: inconclusive; shaded: ±margin"


def shade_margin(ax, margin: float, *, vertical: bool) -> None:
    """The band of effects too small to matter (±margin, in points), behind everything else."""
    if margin:
        (ax.axvspan if vertical else ax.axhspan)(-100 * margin, 100 * margin, color="C0", alpha=0.12, lw=0, zorder=0)


def plot_effects(comparisons: dict, *, title: str = "", unit: str = "points"):
    """Each comparison's mean difference (x 100) and 95% interval against the zero line and the
    shaded ±margin band: the picture of the verdict rule, coloured by verdict."""
    fig, ax = plt.subplots(figsize=(7, 0.55 * len(comparisons) + 1.6))
    for row, (label, c) in enumerate(reversed(list(comparisons.items()))):
        low, high = c.ci95
        colour = VERDICT_COLOURS[c.verdict]
        if low == low:  # an interval exists (two or more seeds)
            ax.plot([100 * low, 100 * high], [row, row], color=colour, lw=2)
        ax.plot(100 * c.mean, row, "o", color=colour)
        ax.plot([100 * d for d in c.differences], [row] * c.n, "|", color="k", ms=8, alpha=0.6)
        ax.annotate(f"{100 * c.mean:+.2f} ({c.verdict})", (100 * c.mean, row + 0.22), fontsize=8, ha="center")
    margins = {c.margin for c in comparisons.values()}
    shade_margin(ax, max(margins), vertical=True)
    present = [v for v in VERDICT_COLOURS if any(c.verdict == v for c in comparisons.values())]
    ax.legend(handles=[plt.Line2D([], [], color=VERDICT_COLOURS[v], marker="o", lw=2, label=v) for v in present],
              fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(present), frameon=False)
    ax.axvline(0, color="k", lw=1)
    ax.set_yticks(range(len(comparisons)), list(reversed(list(comparisons))))
    ax.set_ylim(-0.6, len(comparisons) - 0.3)
    margin_text = ", ".join(f"±{100 * m:.2f}" for m in sorted(margins))
    ax.set(xlabel=f"difference ({unit}); line: 95% interval, ticks: seeds; shaded: margin {margin_text}")
    ax.set_title(title, pad=22)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def _span_at_least(ax, low: float, high: float, span: float) -> None:
    centre, half = (low + high) / 2, max(high - low, span) / 2
    ax.set_ylim(centre - 1.25 * half, centre + 1.25 * half)
