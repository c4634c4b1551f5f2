"""Notebook 03's numbers, from the records of ``transfer_arms.run_experiment``: one dict per
(seed, label budget, model) with accuracy, nll, ece and, for students, agreement with that budget's
teacher. Every comparison is paired by seed (same labelled images, same initial weights where
the arms start alike) and judged by ``core.stats``'s one rule; nothing here trains.
"""
from __future__ import annotations

from ..core import stats
from ..core.stats import mean_std
from .transfer_arms import ARMS, LABELS, TEACHER, UPPER_BOUND


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


def effect(records, model: str, per_class: int, against: str = "scratch") -> stats.Comparison:
    """``model`` minus ``against`` at one budget, paired by seed."""
    mine = {r["seed"]: r["accuracy"] for r in records if r["model"] == model and r["per_class"] == per_class}
    other = {r["seed"]: r["accuracy"] for r in records if r["model"] == against and r["per_class"] == per_class}
    seeds = sorted(set(mine) & set(other))
    if not seeds:
        raise ValueError(f"no seed has both {model!r} and {against!r} at {per_class} labels per class")
    return stats.paired([mine[s] for s in seeds], [other[s] for s in seeds], seeds=seeds)


def effects(records, against: str = "scratch") -> dict:
    """``(model, per_class) -> Comparison`` for every arm (and the teacher) against ``against``."""
    return {(model, b): effect(records, model, b, against) for model in [*ARMS, TEACHER] if model != against
            for b in budgets_of(records)}


def effects_rows(found: dict, budgets) -> list:
    """Rows for ``notebook.table``: one per arm, the paired difference and verdict per budget."""
    models = list(dict.fromkeys(model for model, _ in found))
    return [[LABELS[m]] + [found[(m, b)].text() for b in budgets] for m in models]


def students_beating_teacher(records) -> dict:
    """arm -> (runs where the student beat its honest teacher, runs): the "student beats teacher" myth."""
    teacher = {(r["seed"], r["per_class"]): r["accuracy"] for r in records if r["model"] == TEACHER}
    counts = {}
    for r in records:
        if r["model"] in ARMS and (r["seed"], r["per_class"]) in teacher:
            wins, runs = counts.get(r["model"], (0, 0))
            counts[r["model"]] = (wins + (r["accuracy"] > teacher[(r["seed"], r["per_class"])]), runs + 1)
    return counts


def reading(records) -> list:
    """Plain sentences computed from the paired comparisons; the verdicts are the stats module's."""
    budgets = budgets_of(records)
    few, many = budgets[0], budgets[-1]
    seeds = len({r["seed"] for r in records})

    def at(model, b):
        return f"{effect(records, model, b).text()} with {_labels(b)}"

    lines = [f"Every comparison below is paired by seed ({seeds} seeds): same labelled images and, where the arms "
             f"start alike, the same initial weights. The verdict is read off the 95% interval."]
    lines.append(f"Transfer, fine-tuning the source model vs scratch: {at('finetune', few)}; {at('finetune', many)}.")
    lines.append(f"Frozen source features + a new head vs scratch: {at('frozen', few)}; {at('frozen', many)}.")
    lines.append(f"Distillation on the labelled images only vs scratch: {at('kd_labelled', few)}.")
    lines.append(f"Distillation with the unlabelled images too vs scratch: {at('kd_unlabelled', few)}; "
                 f"vs distillation on the labelled images only: {effect(records, 'kd_unlabelled', few, 'kd_labelled').text()}.")
    lines.append(f"Both (fine-tune + KD with unlabelled images) vs scratch: {at('finetune_kd', few)}; {at('finetune_kd', many)}.")
    lines.append(f"The honest teacher vs the student from scratch: {at(TEACHER, few)}.")
    upper = [r["accuracy"] for r in records if r["model"] == UPPER_BOUND]
    if upper:
        lines.append(f"A teacher trained on ALL target labels reaches {mean_std(upper)[0]:.1%}: an upper bound for "
                     f"reference, not an option for someone who has only {_labels(few)}.")
    return lines


def _labels(count: int) -> str:
    return f"{count} label{'s' if count != 1 else ''} per class"


def metrics_for_json(records) -> dict:
    """Every model's accuracy, agreement, ECE and NLL per budget (mean, std), the paired effects
    against scratch, and the records themselves."""
    out = {}
    for metric in ("accuracy", "agreement", "ece", "nll"):
        for model, per_budget in summary(records, metric).items():
            for per_class, (mean, std, _seeds) in per_budget.items():
                out.setdefault(metric, {}).setdefault(model, {})[str(per_class)] = mean
                out.setdefault(f"{metric}_std", {}).setdefault(model, {})[str(per_class)] = std
    out["effects_vs_scratch"] = {f"{m} {b}": c.to_dict() for (m, b), c in effects(records).items()}
    out["per_seed_records"] = records
    return out
