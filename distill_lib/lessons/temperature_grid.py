"""A grid of students (from scratch vs distilled at several T, alpha and losses), over seeds.

Every student of one seed starts from the same initial weights, so a difference between two
runs of a seed is the method's, not the initialisation's. The teacher's logits on the training
images are cached (``distill(cache_logits="auto")``): the whole grid costs one teacher pass.
Metrics are those of the final epoch on the test set (accuracy, NLL, ECE, agreement with the
teacher's predictions). :func:`effects` pairs every KD run with the same student's from-scratch
run of the same seed and hands the differences to ``core.stats.paired``: mean, 95% interval and
the verdict, by the one rule of the workbench.
"""
from __future__ import annotations

from ..core import checks
from ..core.evaluate import evaluate
from ..core.models import MODEL_PRESETS, build_model
from ..core.progress import Progress
from ..core import stats
from ..methods import LOGIT_LOSSES
from ..loop import distill, fit

KEY_FIELDS = ("student", "method", "loss", "temperature", "alpha")  # one setting, all seeds
METRICS = ("accuracy", "nll", "ece", "confidence", "agreement")


def axes(cfg) -> dict:
    """The grid of notebook 02: every axis the profile's list, unless the parameter (``student``,
    ``temperature``, ``alpha``) gives one value; the seeds; and the headline setting."""
    students = [cfg.student] if cfg.student else list(cfg.students)
    temperatures = [cfg.temperature] if cfg.temperature else list(cfg.temperatures)
    alphas = [cfg.alpha] if cfg.alpha is not None else list(cfg.alphas)
    headline = {"student": students[0],
                "temperature": temperatures[0] if cfg.temperature else cfg.headline_temperature,
                "alpha": alphas[0] if cfg.alpha is not None else cfg.headline_alpha}
    variants = {"temperature": temperatures[0] if cfg.temperature else cfg.variants_temperature,
                "alpha": alphas[0] if cfg.alpha is not None else cfg.headline_alpha}
    for name, setting in (("headline", headline), ("loss variants' KL reference", variants)):
        if setting["temperature"] not in temperatures or setting["alpha"] not in alphas:
            raise ValueError(f"the {name} setting {setting} must be on the grid (temperatures {temperatures}, alphas {alphas})")
    seeds = list(range(cfg.seed, cfg.seed + cfg.n_seeds))
    # the headline's student runs more seeds where the profile asks (its verdict must hold for any
    # run of seeds); the other student the profile's n_seeds
    headline_seeds = list(range(cfg.seed, cfg.seed + max(cfg.n_seeds, cfg.headline_n_seeds)))
    return {"students": students, "temperatures": temperatures, "alphas": alphas, "seeds": seeds,
            "seeds_of": {s: headline_seeds if s == headline["student"] else seeds for s in students},
            "headline": headline, "variants": variants}


def grid_settings(students, temperatures, alphas, seeds, losses=("kl",), loss_options=None) -> list:
    """Per student and seed: one from-scratch run, then one KD run per loss x T x alpha.

    ``loss_options`` maps a loss name to its options (e.g. ``{"dkd": {"nckd_weight": 8.0}}``).
    """
    for name, values, check in (("temperatures", temperatures, checks.positive_number),
                                ("alphas", alphas, checks.fraction), ("seeds", seeds, checks.non_negative_int)):
        if not list(values):
            raise ValueError(f"{name} must hold at least one value; got {values!r}")
        for value in values:
            check(name[:-1], value)
    for student in students:
        checks.one_of("student", student, MODEL_PRESETS)
    for loss in losses:
        checks.one_of("loss", loss, LOGIT_LOSSES)
    options = loss_options or {}
    settings = []
    for student in students:
        for seed in seeds:
            settings.append(dict(student=student, method="scratch", loss=None, temperature=None, alpha=None, seed=seed))
            settings += [dict(student=student, method="kd", loss=loss, temperature=float(t), alpha=float(a), seed=seed,
                              options=dict(options.get(loss, {})))
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
        history = distill(model, teacher, train_set, temperature=setting["temperature"], alpha=setting["alpha"],
                          loss=setting["loss"], loss_options=setting.get("options") or None, **common)
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
            entry[f"{metric}_mean"], entry[f"{metric}_std"] = stats.mean_std([m[metric] for m in members])
        summary.append(entry)
    return summary


def find(summary: list, **key) -> dict:
    """The summary entry matching ``key`` (e.g. ``student="mlp-tiny", method="scratch"``)."""
    found = [entry for entry in summary if all(entry.get(k) == v for k, v in key.items())]
    if len(found) != 1:
        raise KeyError(f"{len(found)} summary entries match {key}")
    return found[0]


def effects(rows: list, metric: str = "accuracy", against: dict | None = None) -> dict:
    """Setting -> ``stats.Comparison`` of its runs against the runs matching ``against`` (default:
    the same student from scratch; ``{"loss": "kl"}`` compares other losses with KL), paired by
    student and seed. Keys are ``(student, loss, temperature, alpha)``."""
    checks.one_of("metric", metric, METRICS)
    against = against or {"method": "scratch"}

    def is_baseline(row):
        return all(row.get(k) == v for k, v in against.items())
    baseline = {(r["student"], r["seed"]): r[metric] for r in rows if is_baseline(r)}
    groups: dict = {}
    for r in rows:
        if r["method"] == "kd" and not is_baseline(r) and (r["student"], r["seed"]) in baseline:
            groups.setdefault((r["student"], r["loss"], r["temperature"], r["alpha"]), []).append(r)
    return {key: stats.paired([r[metric] for r in runs], [baseline[(r["student"], r["seed"])] for r in runs],
                              seeds=[r["seed"] for r in runs])
            for key, runs in groups.items()}


def format_metric(entry: dict, metric: str, percent: bool = True) -> str:
    """``86.45%`` for one seed, ``86.45 ± 0.21%`` (mean ± std) for several; ECE without percent."""
    mean, std = entry[f"{metric}_mean"], entry[f"{metric}_std"]
    if percent:
        return f"{100 * mean:.2f}%" if entry["n"] == 1 else f"{100 * mean:.2f} ± {100 * std:.2f}%"
    return f"{mean:.3f}" if entry["n"] == 1 else f"{mean:.3f} ± {std:.3f}"


def reading(comparisons: dict, label: str = "vs scratch") -> list:
    """One line per setting from its paired comparison: difference, 95% interval, verdict."""
    return [f"{student:>10} {loss:<10} T={temperature:<4g} alpha={alpha:<4g} {label}: {c.text()}"
            for (student, loss, temperature, alpha), c in comparisons.items()]
