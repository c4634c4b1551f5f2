"""When does distillation pay? One row per measured regime, and the table a learner takes home.

Each notebook records its comparisons of a distilled student against a reference (the same
student without the teacher, or with a weaker use of it) in ``metrics.json`` under
``when_kd_pays``: one :func:`regime_row` per comparison, saying who the student was, how many
labelled and unlabelled images it had, which teacher, temperature and loss, and the paired
effect with its interval, margin and verdict. ``python -m distill_lib quote RUNS`` gathers the
rows of every run into one table (:func:`table`), written into README.md and at the end of
notebook 06; :func:`parse_table` reads it back so that a test can hold it against a fresh run.
"""
from __future__ import annotations

import math
import re

from . import stats

KEY = "when_kd_pays"  # where the rows live in a notebook's metrics.json
HEADERS = ("notebook", "comparison", "student (parameters)", "labels per class", "unlabelled images", "teacher",
           "T", "loss", "effect, points (95% CI)", "test images", "verdict")


def regime_row(notebook: str, comparison: str, effect: stats.Comparison, *, student: str, student_params: int,
               labels_per_class, unlabelled: int, teacher: str, temperature, loss: str, test_images: int) -> dict:
    """One regime: ``effect`` is the paired comparison that ``comparison`` names (e.g. "KD vs alone")."""
    if not re.fullmatch(r"\d\d", str(notebook)):
        raise ValueError(f"notebook must be a two-digit notebook number like '00'; got {notebook!r}")
    for name, value in (("comparison", comparison), ("student", student), ("teacher", teacher), ("loss", loss)):
        if not isinstance(value, str) or not value.strip() or "|" in value:
            raise ValueError(f"{name} must be a non-empty string without '|'; got {value!r}")
    for name, value in (("student_params", student_params), ("unlabelled", unlabelled), ("test_images", test_images)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0; got {value!r}")
    if labels_per_class != "all" and (isinstance(labels_per_class, bool) or not isinstance(labels_per_class, int)
                                      or labels_per_class < 0):
        raise ValueError(f"labels_per_class must be an integer >= 0 or 'all'; got {labels_per_class!r}")
    if temperature is not None and not (isinstance(temperature, (int, float)) and temperature > 0):
        raise ValueError(f"temperature must be a number > 0, or None where the loss has none; got {temperature!r}")
    if not isinstance(effect, stats.Comparison):
        raise ValueError(f"effect must be a stats.Comparison (from stats.paired); got {type(effect).__name__}")
    return {"notebook": str(notebook), "comparison": comparison, "student": student, "student_params": student_params,
            "labels_per_class": labels_per_class, "unlabelled": unlabelled, "teacher": teacher,
            "temperature": temperature, "loss": loss, "test_images": test_images, "effect": effect.to_dict()}


def _regime_cells(row: dict) -> list:
    """The table cells that say which regime a row is (all but the effect, its size and the verdict)."""
    temperature = "–" if row["temperature"] is None else f"{row['temperature']:g}"
    return [row["notebook"], row["comparison"], f"{row['student']} ({row['student_params']:,})",
            str(row["labels_per_class"]), f"{row['unlabelled']:,}", row["teacher"], temperature, row["loss"]]


def _key(cells: list) -> tuple:
    """A row's identity: notebook, comparison, student, labels, unlabelled images, T and loss. One
    comparison name can stand in several regimes (02's "KD vs from scratch, T=4" for two students),
    so the name alone is not enough. The teacher cell is left out: it may quote a teacher trained in
    the run (03's honest teacher), whose accuracy moves with the CPU."""
    return tuple(cells[:5] + cells[6:8])


def regime_key(row: dict) -> tuple:
    """The key :func:`parse_table` files ``row`` under."""
    return _key(_regime_cells(row))


def table(rows: list) -> str:
    """The Markdown table of ``rows`` (in the order given): one line per regime. Two rows of one
    regime (the same :func:`regime_key`) are refused: a reader could not tell them apart."""
    keys = [regime_key(row) for row in rows]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(f"when_kd_pays rows must each be one regime; these appear more than once: {repeated}")
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for row in rows:
        effect = row["effect"]
        low, high = effect["ci95"]
        interval = "no interval" if low is None or math.isnan(low) else f"{100 * low:+.2f} to {100 * high:+.2f}"
        cells = _regime_cells(row) + [f"{100 * effect['mean']:+.2f} ({interval}), {len(effect['differences'])} seeds",
                                      f"{effect['mean'] * row['test_images']:+.0f} of {row['test_images']:,}",
                                      effect["verdict"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


_EFFECT = re.compile(r"(?P<mean>[+-]\d+\.\d+) \((?P<low>[+-]\d+\.\d+) to (?P<high>[+-]\d+\.\d+)\), (?P<n>\d+) seeds")


def parse_table(text: str) -> dict:
    """``{regime key: {mean, low, high, n, verdict}}`` (points) from a :func:`table` in ``text``; the
    key of a row is :func:`regime_key` (notebook, comparison, student, labels, unlabelled, T, loss)."""
    found = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != len(HEADERS) or not re.fullmatch(r"\d\d", cells[0]):
            continue
        effect = _EFFECT.fullmatch(cells[8])
        if effect is None:
            continue
        found[_key(cells)] = {**{k: float(effect[k]) for k in ("mean", "low", "high")},
                                       "n": int(effect["n"]), "verdict": cells[10]}
    return found
