"""The deployment figure of notebook 05: accuracy against a cost, with the Pareto front."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ..core import checks
from ..lessons.lightweight import pareto_front

AXES = {"latency_b1_ms": "median CPU latency, batch 1 (ms)", "latency_b256_ms": "median CPU latency, batch 256 (ms)",
        "size_bytes": "size on disk (bytes)", "gzip_bytes": "size after gzip -9 (bytes)",
        "macs": "multiply-accumulates per image"}


def plot_tradeoffs(rows: list, x_keys=("latency_b1_ms", "latency_b256_ms"), title: str = ""):
    """Accuracy against each cost in ``x_keys`` (log scale), one panel each, Pareto front as a step line.

    Points are numbered; the legend maps numbers to variants (names would overlap).
    """
    for key in x_keys:
        checks.one_of("x_keys entry", key, list(AXES))
    fig, axes = plt.subplots(1, len(x_keys), figsize=(6 * len(x_keys) + 2, 4.4), squeeze=False)
    for ax, key in zip(axes[0], x_keys):
        cost, acc = [r[key] for r in rows], [100 * r["accuracy"] for r in rows]
        front = sorted(pareto_front(cost, acc), key=lambda i: cost[i])
        ax.step([cost[i] for i in front], [acc[i] for i in front], where="post", color="0.6", zorder=1)
        for i, r in enumerate(rows):
            colour = "C3" if i in front else "C0"
            ax.scatter(cost[i], acc[i], s=40, zorder=2, color=colour)
            # a leader line ties each number to its own point where neighbours crowd
            ax.annotate(str(i + 1), (cost[i], acc[i]), fontsize=8, color=colour, xytext=_label_offset(i, cost, acc),
                        textcoords="offset points", arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.5})
        ax.set(xscale="log", xlabel=AXES[key] + ", log scale", ylabel="test accuracy (%)")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3, which="both")
    numbers = [Line2D([], [], marker=f"${i + 1}$", linestyle="", color="k") for i in range(len(rows))]
    axes[0][-1].legend(numbers, [r["model"] for r in rows], fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5),
                       title="point number: variant\nred: on the Pareto front (grey line)\nof that panel; blue: another variant\n"
                             "is at least as fast and as accurate", title_fontsize=7)
    fig.suptitle(title or "accuracy vs cost")
    fig.tight_layout()
    return fig


OFFSETS = ((6, 5), (6, -13), (-14, 5), (-14, -13), (6, 16), (-14, 16))  # points: right/left, up/down


def _label_offset(i: int, cost: list, acc: list) -> tuple:
    """Where point ``i``'s number goes: the next free slot around it when earlier points lie close
    (within ~8% in log cost and 1 point of accuracy), so that neighbours' numbers do not collide."""
    near = sum(1 for j in range(i) if abs(math.log10(cost[j]) - math.log10(cost[i])) < 0.035
               and abs(acc[j] - acc[i]) < 1.0)
    return OFFSETS[near % len(OFFSETS)]

