"""A grid of students (from scratch vs distilled at several T, alpha and losses), over seeds.

Every student of one seed starts from the same initial weights, so a difference between two
runs of a seed is the method's, not the initialisation's. The teacher's logits on the training
images are cached (``distill(cache_logits="auto")``): the whole grid costs one teacher pass.
Metrics are those of the final epoch on the test set (accuracy, NLL, ECE, agreement with the
teacher's predictions); a summary gives mean and sample standard deviation over seeds.
"""
from __future__ import annotations

from ..core import checks
from ..core.evaluate import evaluate
from ..core.models import MODEL_PRESETS, build_model
from ..core.progress import Progress
from ..core.stats import mean_std
from ..methods.kd import SOFT_TERMS
from ..loop import distill, fit

KEY_FIELDS = ("student", "method", "loss", "temperature", "alpha")  # one setting, all seeds
METRICS = ("accuracy", "nll", "ece", "agreement")


def grid_settings(students, temperatures, alphas, seeds, losses=("kl",)) -> list:
    """Per student and seed: one from-scratch run, then one KD run per loss x T x alpha."""
    for name, values, check in (("temperatures", temperatures, checks.positive_number),
                                ("alphas", alphas, checks.fraction), ("seeds", seeds, checks.non_negative_int)):
        if not list(values):
            raise ValueError(f"{name} must hold at least one value; got {values!r}")
        for value in values:
            check(name[:-1], value)
    for student in students:
        checks.one_of("student", student, MODEL_PRESETS)
    for loss in losses:
        checks.one_of("loss", loss, list(SOFT_TERMS))
    settings = []
    for student in students:
        for seed in seeds:
            settings.append(dict(student=student, method="scratch", loss=None, temperature=None, alpha=None, seed=seed))
            settings += [dict(student=student, method="kd", loss=loss, temperature=float(t), alpha=float(a), seed=seed)
                         for loss in losses for t in temperatures for a in alphas]
    return settings


def describe(setting: dict) -> str:
    """A short label: ``mlp-tiny scratch`` or ``mlp-tiny KD kl T=4 alpha=0.9``."""
    if setting["method"] == "scratch":
        return f"{setting['student']} scratch"
    return f"{setting['student']} KD {setting['loss']} T={setting['temperature']:g} alpha={setting['alpha']:g}"


def train_one(setting: dict, teacher, train_set, test_set, teacher_test_logits, *, epochs: int,
              batch_size: int, lr: float, device) -> dict:
    """Train the student of ``setting``; return the setting with its final test metrics."""
    model = build_model(setting["student"], train_set.num_classes, in_shape=train_set.input_shape,
                        seed=setting["seed"])
    common = dict(epochs=epochs, batch_size=batch_size, lr=lr, device=device, seed=setting["seed"],
                  progress="off", desc=describe(setting))
    if setting["method"] == "scratch":
        history = fit(model, train_set, **common)
    else:
        history = distill(model, teacher, train_set, temperature=setting["temperature"],
                          alpha=setting["alpha"], loss=setting["loss"], **common)
    metrics = evaluate(model, test_set, teacher_logits=teacher_test_logits, device=device)
    return {**setting, **metrics, "epochs": epochs, "seconds": round(history.seconds, 2)}


def run_grid(settings: list, teacher, train_set, test_set, teacher_test_logits, **training) -> list:
    """``train_one`` for every setting, with one progress bar (or log line) over the runs."""
    rows = []
    with Progress(len(settings), "students") as bar:
        for setting in settings:
            rows.append(train_one(setting, teacher, train_set, test_set, teacher_test_logits, **training))
            bar.update(1, last=describe(setting), accuracy=rows[-1]["accuracy"])
    return rows


def summarise(rows: list) -> list:
    """One entry per setting (seeds pooled): the setting, ``n`` and ``<metric>_mean/_std``."""
    groups: dict = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in KEY_FIELDS), []).append(row)
    summary = []
    for key, members in groups.items():
        entry = {**dict(zip(KEY_FIELDS, key)), "n": len(members)}
        for metric in METRICS:
            entry[f"{metric}_mean"], entry[f"{metric}_std"] = mean_std([m[metric] for m in members])
        summary.append(entry)
    return summary


def find(summary: list, **key) -> dict:
    """The summary entry matching ``key`` (e.g. ``student="mlp-tiny", method="scratch"``)."""
    found = [entry for entry in summary if all(entry.get(k) == v for k, v in key.items())]
    if len(found) != 1:
        raise KeyError(f"{len(found)} summary entries match {key}")
    return found[0]


SINGLE_RUN_NOISE = 0.005  # half a point: the seed-to-seed spread of these students on the mini data


def format_metric(entry: dict, metric: str, percent: bool = True) -> str:
    """``86.45 %`` for one seed, ``86.45 ± 0.21 %`` for several (ECE: ``0.028 ± 0.003``)."""
    mean, std = entry[f"{metric}_mean"], entry[f"{metric}_std"]
    if percent:
        return f"{100 * mean:.2f} %" if entry["n"] == 1 else f"{100 * mean:.2f} ± {100 * std:.2f} %"
    return f"{mean:.3f}" if entry["n"] == 1 else f"{mean:.3f} ± {std:.3f}"


def verdict(gain: float, noise: float) -> str:
    """A difference counts only when it exceeds the noise."""
    if gain > noise:
        return "KD helps"
    if gain < -noise:
        return "KD hurts"
    return "no clear difference"


def reading(summary: list, losses=("kl",), temperature: float | None = None, alpha: float | None = None) -> list:
    """One line per KD setting: its accuracy against the same student from scratch, the gain in
    points, the verdict and the change of ECE. Noise: the larger std over seeds, or
    ``SINGLE_RUN_NOISE`` for one seed."""
    lines = []
    for student in dict.fromkeys(e["student"] for e in summary):
        scratch = find(summary, student=student, method="scratch")
        for e in summary:
            if (e["student"] != student or e["method"] != "kd" or e["loss"] not in losses
                    or temperature not in (None, e["temperature"]) or alpha not in (None, e["alpha"])):
                continue
            gain = e["accuracy_mean"] - scratch["accuracy_mean"]
            noise = max(e["accuracy_std"], scratch["accuracy_std"]) if min(e["n"], scratch["n"]) > 1 else SINGLE_RUN_NOISE
            lines.append(f"{student:>10} KD {e['loss']:<10} T={e['temperature']:<4g} alpha={e['alpha']:<4g}: "
                         f"{format_metric(e, 'accuracy')} vs {format_metric(scratch, 'accuracy')} from scratch, "
                         f"{100 * gain:+.2f} points -> {verdict(gain, noise)} (noise {100 * noise:.2f} points); "
                         f"ECE {format_metric(scratch, 'ece', percent=False)} -> {format_metric(e, 'ece', percent=False)}")
    return lines
