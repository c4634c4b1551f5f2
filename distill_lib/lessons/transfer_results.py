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


def per_class_text(count: int) -> str:
    """``1 label per class``, ``10 labels per class``."""
    return f"{count} label{'s' if count != 1 else ''} per class"


def budget_header(count: int) -> str:
    """A table header for one budget: ``1 label/class``, ``10 labels/class``."""
    return f"{count} label{'s' if count != 1 else ''}/class"


def rule_text(margin: float = stats.DEFAULT_MARGIN) -> str:
    """The verdict rule of ``core.stats`` in words, with the margin in points."""
    m = f"±{100 * margin:.2f} points"
    return (f"The verdict follows the 95% interval and a margin of {m}, the smallest effect that matters "
            f"here: **gain** when the interval lies above 0 (and not wholly inside {m}), **loss** the "
            f"mirror, **negligible** when it lies wholly inside {m} (shown too small to matter), "
            f"**inconclusive** when it crosses 0 and reaches past the margin (more seeds needed).")


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


# the strong-teacher experiment (``transfer_arms.run_with_teacher``): what the unlabelled images add
TRANSFER_SET_COMPARISONS = (("kd_labelled", "scratch"), ("kd_unlabelled", "scratch"), ("kd_unlabelled", "kd_labelled"))


SHORT_LABELS = {"scratch": "scratch", "kd_labelled": "KD (labelled only)", "kd_unlabelled": "KD + unlabelled"}


def comparison_label(model: str, against: str, short: bool = False) -> str:
    """``KD + unlabelled images vs KD, labelled images only`` (``short``: ``KD + unlabelled vs KD (labelled only)``)."""
    names = {**LABELS, **SHORT_LABELS} if short else LABELS
    return f"{names[model]} vs {names[against]}"


def comparisons(records, pairs=TRANSFER_SET_COMPARISONS) -> dict:
    """``(model, against, per_class) -> Comparison`` for every pair at every budget. The key names
    both arms: two comparisons of one arm (against scratch, against KD) never share a key."""
    return {(model, against, b): effect(records, model, b, against) for model, against in pairs
            for b in budgets_of(records)}


def comparison_rows(found: dict) -> list:
    """Rows for ``notebook.table``: one per pair of arms, the paired difference and verdict per budget."""
    pairs = list(dict.fromkeys((model, against) for model, against, _ in found))
    budgets = sorted({b for _, _, b in found})
    return [[comparison_label(m, a)] + [found[(m, a, b)].text() for b in budgets] for m, a in pairs]


def comparisons_for_json(found: dict) -> dict:
    """``{"kd_unlabelled vs kd_labelled 10": Comparison as a dict, ...}`` for metrics.json."""
    return {f"{m} vs {a} {b}": c.to_dict() for (m, a, b), c in found.items()}


def transfer_set_reading(found: dict) -> list:
    """One sentence per budget from :func:`comparisons` (the three :data:`TRANSFER_SET_COMPARISONS`):
    the gain of KD + unlabelled images over scratch is, seed by seed, exactly the sum of what KD on
    the labelled images adds and what the unlabelled images add on top, so the split holds for any
    outcome; whether the unlabelled images carry most of it (SimCLRv2's finding) is read off the numbers."""
    lines = []
    for b in sorted({b for _, _, b in found}):
        labelled = found[("kd_labelled", "scratch", b)]
        total = found[("kd_unlabelled", "scratch", b)]
        extra = found[("kd_unlabelled", "kd_labelled", b)]
        carried = extra.verdict == stats.GAIN and extra.mean > abs(labelled.mean)
        lines.append(
            f"With {per_class_text(b)}: KD + unlabelled images vs from scratch {100 * total.mean:+.2f} points "
            f"({total.verdict}) = KD on the labelled images vs from scratch {100 * labelled.mean:+.2f} ({labelled.verdict}) "
            f"+ the unlabelled images on top {100 * extra.mean:+.2f} ({extra.verdict}). "
            + ("The unlabelled images carry most of the gain, as SimCLRv2 found." if carried else
               "Here the unlabelled images are not shown to carry most of the gain (SimCLRv2's finding does not show)."))
    return lines


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


def beating_teacher_reading(beaten: dict, records) -> list:
    """Sentences that follow the counts of :func:`students_beating_teacher` and the paired
    teacher-vs-scratch comparisons, whatever they are. The student from scratch never sees the
    teacher, so its count is the baseline against which a distilled student's count means something."""
    wins, runs = beaten["scratch"]
    lines = [f"The student from scratch, which never sees the teacher, is above it in {wins} of {runs} runs."]
    for arm in ("kd_labelled", "kd_unlabelled", "finetune_kd"):
        if arm in beaten:
            w, r = beaten[arm]
            how = ("more often than" if w * runs > wins * r else "as often as" if w * runs == wins * r
                   else "less often than")
            lines.append(f"{LABELS[arm]}: above its teacher in {w} of {r} runs, {how} the student from scratch.")
    budgets = budgets_of(records)
    found = {b: effect(records, TEACHER, b) for b in budgets}
    lines.append("The honest teacher minus the student from scratch, paired by seed: "
                 + "; ".join(f"{c.text()} with {per_class_text(b)}" for b, c in found.items()) + ".")
    unclear = [b for b, c in found.items() if c.verdict != stats.GAIN]
    if unclear:
        lines.append(f"With {' and '.join(per_class_text(b) for b in unclear)} the teacher is not shown to be better "
                     f"than a student trained from scratch on the same labels, so a student 'beating' it there is two "
                     f"models of about the same accuracy trading places from seed to seed, not knowledge the "
                     f"student found beyond its teacher's.")
    else:
        lines.append("At every budget the teacher is shown to be better than a student trained from scratch on the "
                     "same labels; a student above it did more than copy it.")
    upper = [r["accuracy"] for r in records if r["model"] == UPPER_BOUND]
    if upper:
        best = max(((m, b) for m in ARMS for b in budgets if values(records, m, b, "accuracy")),
                    key=lambda mb: mean_std(values(records, *mb, "accuracy"))[0])
        best_mean, ceiling = mean_std(values(records, *best, "accuracy"))[0], mean_std(upper)[0]
        relation = "below" if best_mean < ceiling else "at or above"
        lines.append(f"The best student here ({LABELS[best[0]]} with {per_class_text(best[1])}, {best_mean:.2%} on "
                     f"average) is {100 * abs(ceiling - best_mean):.2f} points {relation} the teacher trained on ALL "
                     f"target labels ({ceiling:.2%}).")
    return lines


def reading(records) -> list:
    """Plain sentences computed from the paired comparisons; the verdicts are the stats module's."""
    budgets = budgets_of(records)
    few, many = budgets[0], budgets[-1]
    seeds = len({r["seed"] for r in records})

    def at(model, b):
        return f"{effect(records, model, b).text()} with {per_class_text(b)}"

    lines = [f"Every comparison below is paired by seed ({seeds} seeds): same labelled images and, where the arms "
             f"start alike, the same initial weights. " + rule_text()]
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
                     f"reference, not an option for someone who has only {per_class_text(few)}.")
    return lines


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
