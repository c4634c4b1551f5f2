"""Tables, figures, an explorer widget and a computed reading for notebook 03's records.

The input everywhere is the tidy list of records from ``transfer_arms.run_experiment``: one dict
per (seed, label budget, model) with accuracy, nll, ece and, for the students, agreement with
that budget's teacher. Nothing here trains; everything is recomputed from the records.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt

from ..core.stats import mean_std
from ..lessons.transfer_arms import ARMS, LABELS, TEACHER, UPPER_BOUND

METRICS = {"accuracy": "test accuracy", "gain": "accuracy gain over scratch (points)",
           "agreement": "agreement with the teacher", "ece": "expected calibration error (ECE)",
           "nll": "test NLL"}
STYLES = {TEACHER: dict(color="black", linestyle="--"), UPPER_BOUND: dict(color="grey", linestyle=":")}


def budgets_of(records) -> list:
    return sorted({r["per_class"] for r in records if r["model"] != UPPER_BOUND})


def values(records, model: str, per_class: int, metric: str) -> list:
    """One value per seed; metric "gain" is accuracy minus the same seed's scratch, in points."""
    if metric == "gain":
        scratch = {r["seed"]: r["accuracy"] for r in records if r["model"] == "scratch" and r["per_class"] == per_class}
        return [100 * (r["accuracy"] - scratch[r["seed"]]) for r in records
                if r["model"] == model and r["per_class"] == per_class and r["seed"] in scratch]
    return [r[metric] for r in records if r["model"] == model and r["per_class"] == per_class and metric in r]


def summary(records, metric: str) -> dict:
    """{model: {per_class: (mean, std over seeds, number of seeds)}} for every model that has ``metric``."""
    table = {}
    for model in [*ARMS, TEACHER, UPPER_BOUND]:
        for per_class in sorted({r["per_class"] for r in records}):
            found = values(records, model, per_class, metric)
            if found:
                table.setdefault(model, {})[per_class] = (*mean_std(found), len(found))
    return table


def results_rows(records) -> list:
    """Rows for ``notebook.table``: one per model, accuracy mean (+- std) per budget."""
    acc = summary(records, "accuracy")
    budgets = budgets_of(records)
    return [[LABELS[model]] + [_cell(acc[model].get(b)) for b in budgets] for model in acc if model != UPPER_BOUND]


def _cell(entry) -> str:
    if entry is None:
        return ""
    mean, std, n = entry
    return f"{mean:.2%}" + (f" ± {100 * std:.2f}" if n > 1 else "")


# ------------------------------------------------------------------------------- figures
def plot_metric(ax, records, metric: str, models=None) -> None:
    """``metric`` against labels per class (log axis): mean over seeds, band = +- one std."""
    models = list(models or [*ARMS, TEACHER])
    table = summary(records, metric)
    budgets = budgets_of(records)
    for model in (m for m in models if m in table and m != UPPER_BOUND):
        if metric == "gain" and model == "scratch":
            continue  # zero by definition
        points = [(b, *table[model][b][:2]) for b in budgets if b in table[model]]
        xs, means, stds = zip(*points)
        style = STYLES.get(model) or dict(color=f"C{list(ARMS).index(model)}", linestyle="-")  # one colour per arm
        ax.plot(xs, means, marker="o", ms=4, label=LABELS[model], **style)
        ax.fill_between(xs, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                        color=style["color"], alpha=0.15)
    if metric == "accuracy" and UPPER_BOUND in table:
        mean = mean_std([v[0] for v in table[UPPER_BOUND].values()])[0]
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


# ------------------------------------------------------------------------------- reading
def standard_error(accuracy: float, test_images: int) -> float:
    """Binomial standard error of one accuracy measured on ``test_images`` images."""
    return math.sqrt(accuracy * (1 - accuracy) / test_images)


def _mean(table, model, per_class) -> float:
    return table[model][per_class][0]


def _labels(count: int) -> str:
    return f"{count} label{'s' if count != 1 else ''} per class"


def _verdict(diff: float, noise: float) -> str:
    if abs(diff) < noise:
        return "within noise"
    return "a real gain" if diff > 0 else "a real loss"


def reading(records, test_images: int) -> list:
    """Plain sentences computed from the records: what the figures show, gains and losses alike.

    A difference counts as real only when it exceeds ``noise``: twice the larger of the
    binomial standard error of one accuracy on this test set and the spread of the difference
    over seeds. That is a yardstick for reading, not a significance test.
    """
    acc, gain = summary(records, "accuracy"), summary(records, "gain")
    budgets, seeds = budgets_of(records), len({r["seed"] for r in records})
    few, many = budgets[0], budgets[-1]
    se = 100 * standard_error(_mean(acc, "scratch", few), test_images)

    def noise(model, per_class):
        return 2 * max(se, gain[model][per_class][1])

    def compare(model, per_class):
        g = _mean(gain, model, per_class)
        return f"{g:+.1f} points ({_verdict(g, noise(model, per_class))})"

    def at_both_ends(model):
        text = f"{compare(model, few)} with {_labels(few)}"
        return text + (f", {compare(model, many)} with {_labels(many)}" if many != few else "")

    best = max(ARMS, key=lambda m: _mean(acc, m, few))
    lines = [f"Yardstick: one accuracy on {test_images} test images has a standard error of about "
             f"{se:.1f} points, so differences below about {2 * se:.1f} points are read as noise"
             + (f"; with {seeds} seeds, twice the spread of a difference over seeds counts too, when larger."
                if seeds > 1 else "; with ONE seed, the variation from which images happen to be labelled "
                "is not measured at all (it is largest at the smallest budgets): run num_seeds=3 to see it.")]
    lines.append(f"With {_labels(few)} the best arm is '{LABELS[best]}' at {_mean(acc, best, few):.1%}, "
                 f"against {_mean(acc, 'scratch', few):.1%} from scratch: {compare(best, few)}."
                 if best != "scratch" else
                 f"With {_labels(few)} nothing beats training from scratch ({_mean(acc, 'scratch', few):.1%}).")
    lines.append(f"Transfer (fine-tuning the source model vs scratch): {at_both_ends('finetune')}.")
    lines.append(f"Frozen source features + a new head vs scratch: {at_both_ends('frozen')}.")
    lines.append(f"Distillation on the labelled images only vs scratch: {compare('kd_labelled', few)} with "
                 f"{_labels(few)}; adding the unlabelled images: {compare('kd_unlabelled', few)}.")
    lines.append(f"Both (fine-tune + KD with unlabelled images) vs scratch: {at_both_ends('finetune_kd')}.")
    teacher = _mean(acc, TEACHER, few)
    student = _mean(acc, best, few)
    relation = "exceeds" if student > teacher else "stays below"
    lines.append(f"The honest teacher reaches {teacher:.1%} with {_labels(few)}; the best student "
                 f"{relation} it by {100 * abs(student - teacher):.1f} points.")
    if UPPER_BOUND in acc:
        upper = mean_std([v[0] for v in acc[UPPER_BOUND].values()])[0]
        lines.append(f"A teacher trained on ALL target labels reaches {upper:.1%}: an upper bound for reference, "
                     f"not an option for someone who has only {_labels(few)}.")
    return lines


def metrics_for_json(records) -> dict:
    """Every model's accuracy, agreement, ECE and NLL per budget (mean, std, per seed) + the records."""
    out = {}
    for metric in ("accuracy", "agreement", "ece", "nll"):
        for model, per_budget in summary(records, metric).items():
            for per_class, (mean, std, _seeds) in per_budget.items():
                out.setdefault(metric, {}).setdefault(model, {})[str(per_class)] = mean
                out.setdefault(f"{metric}_std", {}).setdefault(model, {})[str(per_class)] = std
    out["per_seed_records"] = records
    return out


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
