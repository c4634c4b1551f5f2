"""Figures of notebook 06's robustness myth: accuracy under noise and FGSM, and reliability."""
from __future__ import annotations

import matplotlib.pyplot as plt

from ..core.stats import mean_interval


def plot_robustness(students: dict, teacher: dict | None = None, title: str = ""):
    """Accuracy (%) against the noise's sigma and FGSM's epsilon (0 = clean). ``students`` maps an
    arm to its per-seed results (``lessons.robustness.perturbed_accuracies``): mean and 95%
    interval over seeds; ``teacher``: one such result, drawn dashed."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, kind, label in ((axes[0], "noise", "Gaussian noise, sigma"), (axes[1], "fgsm", "FGSM, epsilon")):
        for i, (arm, runs) in enumerate(students.items()):
            strengths = [0.0] + sorted(runs[0][kind])
            series = [[100 * (r["clean"] if s == 0 else r[kind][s]) for r in runs] for s in strengths]
            means = [sum(v) / len(v) for v in series]
            bounds = [mean_interval(v) if len(v) > 1 else (m, m) for v, m in zip(series, means)]
            ax.errorbar(strengths, means, yerr=[[m - lo for m, (lo, _) in zip(means, bounds)],
                                                [hi - m for m, (_, hi) in zip(means, bounds)]],
                        marker="o", capsize=3, color=f"C{i}", label=f"{arm} ({len(runs)} seeds)")
        if teacher is not None:
            strengths = [0.0] + sorted(teacher[kind])
            ax.plot(strengths, [100 * (teacher["clean"] if s == 0 else teacher[kind][s]) for s in strengths],
                    "k--", marker=".", label="teacher")
        ax.set(xlabel=label + " (0: clean images)", title=label.split(",")[0])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[1].legend(fontsize=8)
    fig.suptitle(title or "accuracy under perturbation (bars: 95% interval over seeds)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_reliability(models: dict, title: str = ""):
    """Reliability diagram: per confidence bin, accuracy (%) against mean confidence (%), one line
    per model (``lessons.robustness.reliability`` rows); the diagonal is perfect calibration,
    points below it are overconfident."""
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    ax.plot([0, 100], [0, 100], color="0.6", lw=1, label="perfectly calibrated")
    for i, (name, rows) in enumerate(models.items()):
        ax.plot([100 * c for c in rows["confidence"]], [100 * a for a in rows["accuracy"]], marker="o",
                color="k" if name == "teacher" else f"C{i}", ls="--" if name == "teacher" else "-", label=name)
    ax.set(xlabel="mean confidence in the bin (%)", ylabel="accuracy in the bin (%)", xlim=(0, 100), ylim=(0, 100),
           title=title or "reliability: below the diagonal = overconfident")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
