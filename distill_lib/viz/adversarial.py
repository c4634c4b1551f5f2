"""Figures for adversarial distillation: the discriminator's view of training, run by run."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

HEALTHY = (55, 80)  # % accuracy of a discriminator that still teaches (a rule of thumb)


def plot_monitoring(histories: dict, title: str = ""):
    """One column per run (label -> History of an adversarial run): top, D's accuracy (%) on the
    teacher's outputs, on the student's and overall, with the healthy band shaded and the epochs
    with the adversarial term on marked; bottom, D's loss and the generator loss BCE(D(p_s), 1)."""
    runs = {label: history for label, history in histories.items() if history is not None and history.stats}
    fig, axes = plt.subplots(2, len(runs), figsize=(2.9 * len(runs) + 0.8, 5.4), squeeze=False, sharey="row")
    for column, (label, history) in enumerate(runs.items()):
        stats = history.stats
        epochs = range(1, len(stats["disc_loss"]) + 1)
        overall = [100 * (t + s) / 2 for t, s in zip(stats["disc_acc_teacher"], stats["disc_acc_student"])]
        ax_acc, ax_loss = axes[0][column], axes[1][column]
        ax_acc.axhspan(*HEALTHY, color="green", alpha=0.08)
        ax_acc.plot(epochs, [100 * v for v in stats["disc_acc_teacher"]], color="C0", lw=1, label="on teacher outputs")
        ax_acc.plot(epochs, [100 * v for v in stats["disc_acc_student"]], color="C1", lw=1, label="on student outputs")
        ax_acc.plot(epochs, overall, color="k", lw=2, label="overall")
        on = [e for e, w in zip(epochs, stats["adv_weight"]) if w > 0]
        ax_acc.plot(on, [overall[e - 1] for e in on], "k.", label="adversarial term on")
        ax_acc.set(ylim=(-2, 102), title=label)
        ax_loss.plot(epochs, stats["disc_loss"], color="C2", label="D loss")
        ax_loss.plot(epochs, stats["generator_loss"], color="C3", ls="--", label="generator loss")
        ax_loss.set(xlabel="epoch")
        for ax in (ax_acc, ax_loss):
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0][0].set_ylabel(f"D accuracy, training batches (%)\nshaded: {HEALTHY[0]}-{HEALTHY[1]}%, a useful critic")
    axes[1][0].set_ylabel("loss")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    axes[1][-1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_test_accuracy(histories: dict, title: str = ""):
    """Every run's student test accuracy (%) by epoch, in one panel."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for i, (label, history) in enumerate(histories.items()):
        if history is not None and history.eval_metrics and "accuracy" in history.eval_metrics[0]:
            values = [100 * v for v in history.curve("accuracy")]
            ax.plot(range(1, len(values) + 1), values, marker=".", color=f"C{i}", label=label)
    ax.set(xlabel="epoch", ylabel="student test accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
