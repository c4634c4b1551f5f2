"""Figures and the explorer widget of notebook 03, drawn from the records of
``lessons.transfer_arms.run_experiment`` (the numbers come from ``lessons.transfer_results``)."""
from __future__ import annotations

import matplotlib.pyplot as plt

from ..core.stats import DEFAULT_MARGIN, interval_from
from ..lessons.transfer_arms import ARMS, LABELS, TEACHER, UPPER_BOUND
from ..lessons.transfer_results import budgets_of, summary
from .curves import shade_margin

# every metric of a fraction is drawn in percent (accuracy, agreement, ECE); gains in points
METRICS = {"accuracy": "test accuracy (%)", "gain": "accuracy gain over scratch (points)",
           "agreement": "agreement with the teacher (%)", "ece": "expected calibration error (ECE, %)",
           "nll": "test NLL (nats per image)"}
SCALE = {"accuracy": 100, "gain": 1, "agreement": 100, "ece": 100, "nll": 1}  # "gain" is in points already
STYLES = {TEACHER: dict(color="black", linestyle="--"), UPPER_BOUND: dict(color="grey", linestyle=":")}
# the two families of arms, drawn side by side so that no panel holds more than five lines
GROUPS = {"transfer: start from the source model": ("scratch", "finetune", "frozen", TEACHER),
          "distillation: learn from the teacher": ("scratch", "kd_labelled", "kd_unlabelled", "finetune_kd", TEACHER)}
DODGE = 0.025  # decades between neighbouring arms on the log axis, so that error bars do not cover each other


# ------------------------------------------------------------------------------- figures
def plot_metric(ax, records, metric: str, models=None, *, teacher_label: str | None = None) -> None:
    """``metric`` against labels per class (log axis): the mean over seeds and its 95% interval
    (error bars, from the seeds). "gain" is each arm minus the student from scratch of the same
    seed, with the ±margin band of the verdict rule shaded. ``teacher_label`` renames the teacher."""
    models = [m for m in (models or [*ARMS, TEACHER]) if not (metric == "gain" and m == "scratch")]
    table = summary(records, metric)
    budgets = budgets_of(records)
    scale = SCALE[metric]
    labels = {**LABELS, **({TEACHER: teacher_label} if teacher_label else {})}
    drawn = [m for m in models if m in table and m != UPPER_BOUND]
    for k, model in enumerate(drawn):
        points = [(b, *table[model][b]) for b in budgets if b in table[model]]
        xs, means, stds, counts = zip(*points)
        xs = [x * 10 ** (DODGE * (k - (len(drawn) - 1) / 2)) for x in xs]
        style = STYLES.get(model) or dict(color=f"C{list(ARMS).index(model)}", linestyle="-")  # one colour per arm
        bands = [interval_from(m, s, n) for m, s, n in zip(means, stds, counts)]
        if all(low == low for low, _ in bands):  # a 95% interval of the mean, from two seeds on
            errors = [[scale * (m - low) for m, (low, _) in zip(means, bands)],
                      [scale * (high - m) for m, (_, high) in zip(means, bands)]]
        else:
            errors = None
        ax.errorbar(xs, [scale * m for m in means], yerr=errors, marker="o", ms=4, capsize=3, label=labels[model],
                    **style)
    if metric == "accuracy" and UPPER_BOUND in table and UPPER_BOUND in models:
        mean = sum(v[0] for v in table[UPPER_BOUND].values()) / len(table[UPPER_BOUND])
        ax.axhline(scale * mean, label=labels[UPPER_BOUND], **STYLES[UPPER_BOUND])
    if metric == "gain":
        shade_margin(ax, DEFAULT_MARGIN, vertical=False)
        ax.axhline(0, color="black", linewidth=0.8)
    everything = max((r["per_class"] for r in records if r["model"] == UPPER_BOUND), default=None)
    ax.set_xscale("log")
    ax.set_xticks(budgets, [f"all ({b})" if b == everything else str(b) for b in budgets])
    ax.set_xlim(min(budgets) / 10 ** 0.2, max(budgets) * 10 ** 0.2)
    ax.minorticks_off()
    ax.set(xlabel="labelled images per class (log scale)", ylabel=METRICS[metric])
    ax.grid(alpha=0.3)


def overview_figure(records, title: str = "", *, metrics=("accuracy", "gain"), groups=None,
                    teacher_label: str | None = None, teacher_gain: bool = True):
    """One row per metric, one column per group of arms (:data:`GROUPS`); with a single group,
    the metrics fill a grid of two columns. ``teacher_gain=False`` leaves the teacher out of the
    gain panels (a teacher scored once is no paired comparison)."""
    groups = dict(groups or GROUPS)
    panels = [(metric, name, models) for metric in metrics for name, models in groups.items()]
    columns = len(groups) if len(groups) > 1 else min(2, len(metrics))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6.2 * columns, 3.9 * rows), squeeze=False)
    for ax, (metric, name, models) in zip(axes.flat, panels):
        shown = [m for m in models if teacher_gain or metric != "gain" or m != TEACHER]
        shown += [UPPER_BOUND] if metric == "accuracy" else []
        plot_metric(ax, records, metric, shown, teacher_label=teacher_label)
        ax.set_title(f"{name}\n{METRICS[metric]}" if len(groups) > 1 else METRICS[metric], fontsize=10)
        ax.legend(fontsize=7, loc="best")
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for r, metric in enumerate(metrics if len(groups) > 1 else ()):  # one scale per row, except for gains
        if metric != "gain":
            low = min(ax.get_ylim()[0] for ax in axes[r])
            high = max(ax.get_ylim()[1] for ax in axes[r])
            for ax in axes[r]:
                ax.set_ylim(low, high)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


class TransferExplorer:
    """Pick a metric and the models to show; ``state`` holds the current choice (inspectable)."""

    def __init__(self, records, title: str = ""):
        self.records, self.title = records, title
        self.state = {"metric": "accuracy", "models": [*ARMS, TEACHER]}

    def figure(self, metric: str | None = None, models=None):
        self.state = {"metric": metric or self.state["metric"], "models": list(models or self.state["models"])}
        fig, ax = plt.subplots(figsize=(8, 4.8))
        plot_metric(ax, self.records, self.state["metric"], [*self.state["models"], UPPER_BOUND])
        ax.set_title(METRICS[self.state["metric"]])
        ax.legend(fontsize=7)
        fig.suptitle(self.title)
        fig.tight_layout()
        return fig

    def widget(self):
        import ipywidgets as widgets
        from IPython.display import display

        metric = widgets.Dropdown(options=[(v, k) for k, v in METRICS.items()], value=self.state["metric"],
                                  description="metric")
        models = widgets.SelectMultiple(options=[(LABELS[m], m) for m in [*ARMS, TEACHER]],
                                        value=tuple(self.state["models"]), rows=7, description="models")
        out = widgets.Output()

        def redraw(_change=None):
            with out:
                out.clear_output(wait=True)
                fig = self.figure(metric.value, models.value or [TEACHER])
                display(fig)
                plt.close(fig)
        metric.observe(redraw, names="value")
        models.observe(redraw, names="value")
        redraw()
        return widgets.VBox([widgets.HBox([metric, models]), out])


def examples_figure(task, per_class: int = 2):
    """A few images of every source class (top rows) and target class (bottom rows)."""
    groups = [("source", task.source_train)] * (task.source_train is not None) + [("target", task.target_train)]
    columns = max(len(data.classes) for _, data in groups)
    fig, axes = plt.subplots(len(groups) * per_class, columns, figsize=(1.3 * columns, 1.4 * len(groups) * per_class),
                             squeeze=False)
    for g, (role, data) in enumerate(groups):
        for c, name in enumerate(data.classes):
            members = (data.labels == c).nonzero().flatten()[:per_class]
            for r, index in enumerate(members.tolist()):
                ax = axes[g * per_class + r, c]
                ax.imshow(data.images[index].permute(1, 2, 0).squeeze(-1), cmap="gray")
                if r == 0:
                    ax.set_title(f"{role}: {name}", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    return fig
