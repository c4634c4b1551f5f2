"""Figures for adversarial distillation: the discriminator's view of training, and the pitfall."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator


def plot_monitoring(histories: dict, title: str = ""):
    """Three panels over epochs, one colour per run (label -> History of an adversarial run, or None):
    D's accuracy on teacher outputs (solid) and on student outputs (dashed), with the healthy
    band 0.55-0.8 (rule of thumb) shaded; D's loss (solid) and the generator loss (dashed); student test accuracy.
    Epochs where the adversarial term was on are marked with dots on the accuracy panel."""
    fig, (ax_acc, ax_loss, ax_test) = plt.subplots(1, 3, figsize=(14, 3.8))
    ax_acc.axhspan(0.55, 0.8, color="green", alpha=0.08, label="0.55-0.8: a useful critic (rule of thumb)")
    for i, (label, history) in enumerate(histories.items()):
        if history is None:
            continue
        stats = history.stats
        colour, epochs = f"C{i}", range(1, len(stats["disc_loss"]) + 1)
        overall = [(t + s) / 2 for t, s in zip(stats["disc_acc_teacher"], stats["disc_acc_student"])]
        ax_acc.plot(epochs, stats["disc_acc_teacher"], color=colour, lw=1, alpha=0.6)
        ax_acc.plot(epochs, stats["disc_acc_student"], color=colour, lw=1, ls="--", alpha=0.6)
        ax_acc.plot(epochs, overall, color=colour, lw=2, label=label)
        on = [e for e, w in zip(epochs, stats["adv_weight"]) if w > 0]
        ax_acc.plot(on, [overall[e - 1] for e in on], ".", color=colour)
        ax_loss.plot(epochs, stats["disc_loss"], color=colour, label=f"{label}: D loss")
        ax_loss.plot(epochs, stats["generator_loss"], color=colour, ls="--")
        if history.eval_metrics and "accuracy" in history.eval_metrics[0]:
            ax_test.plot(epochs, history.curve("accuracy"), color=colour, marker=".", label=label)
    ax_acc.set(xlabel="epoch", ylabel="D accuracy (training batches)", ylim=(-0.02, 1.02),
               title="D: thick = overall, thin = on teacher,\ndashed = on student; dots = adversarial term on")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="D loss (solid), generator loss BCE(D(p_s), 1) (dashed)")
    ax_test.set(xlabel="epoch", ylabel="test accuracy", title="student test accuracy")
    for ax in (ax_acc, ax_loss, ax_test):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (ax_acc, ax_test):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
