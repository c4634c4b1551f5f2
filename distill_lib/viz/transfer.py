"""Figures and the explorer widget of notebook 03, drawn from the records of
``lessons.transfer_arms.run_experiment`` (the numbers come from ``lessons.transfer_results``)."""
from __future__ import annotations

import matplotlib.pyplot as plt

from ..core.stats import interval_from
from ..lessons.transfer_arms import ARMS, LABELS, TEACHER, UPPER_BOUND
from ..lessons.transfer_results import budgets_of, summary

METRICS = {"accuracy": "test accuracy", "gain": "accuracy gain over scratch (points)",
           "agreement": "agreement with the teacher", "ece": "expected calibration error (ECE)",
           "nll": "test NLL"}
STYLES = {TEACHER: dict(color="black", linestyle="--"), UPPER_BOUND: dict(color="grey", linestyle=":")}


# ------------------------------------------------------------------------------- figures
def plot_metric(ax, records, metric: str, models=None) -> None:
    """``metric`` against labels per class (log axis): mean over seeds, band = its 95% interval."""
    models = list(models or [*ARMS, TEACHER])
    table = summary(records, metric)
    budgets = budgets_of(records)
    for model in (m for m in models if m in table and m != UPPER_BOUND):
        if metric == "gain" and model == "scratch":
            continue  # zero by definition
        points = [(b, *table[model][b]) for b in budgets if b in table[model]]
        xs, means, stds, counts = zip(*points)
        style = STYLES.get(model) or dict(color=f"C{list(ARMS).index(model)}", linestyle="-")  # one colour per arm
        ax.plot(xs, means, marker="o", ms=4, label=LABELS[model], **style)
        bands = [interval_from(m, s, n) for m, s, n in zip(means, stds, counts)]
        if all(low == low for low, _ in bands):  # 95% interval of the mean, from two seeds on
            ax.fill_between(xs, [low for low, _ in bands], [high for _, high in bands], color=style["color"], alpha=0.15)
    if metric == "accuracy" and UPPER_BOUND in table:
        mean = sum(v[0] for v in table[UPPER_BOUND].values()) / len(table[UPPER_BOUND])
        ax.axhline(mean, label=LABELS[UPPER_BOUND], **STYLES[UPPER_BOUND])
    if metric == "gain":
        ax.axhline(0, color="black", linewidth=0.8)
    everything = max((r["per_class"] for r in records if r["model"] == UPPER_BOUND), default=None)
    ax.set_xscale("log")
    ax.set_xticks(budgets, [f"all ({b})" if b == everything else str(b) for b in budgets])
    ax.minorticks_off()
    ax.set(xlabel="labelled images per class (log scale)", ylabel=METRICS[metric], title=METRICS[metric])
    ax.grid(alpha=0.3)


def overview_figure(records, title: str = "", models=None):
    """Four panels: accuracy, gain over scratch, agreement with the teacher, ECE."""
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.4))
    for ax, metric in zip(axes.flat, ("accuracy", "gain", "agreement", "ece")):
        plot_metric(ax, records, metric, models)
    axes[0, 0].legend(fontsize=7, loc="lower right")
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
        plot_metric(ax, self.records, self.state["metric"], self.state["models"])
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
