"""Every notebook, in both editions: committed without outputs, follows the contract, and runs in the
quick profile (the Chinese edition's 00 end to end; tests/test_zh.py keeps the rest in step)."""
import json
import os
from pathlib import Path

import nbformat
import papermill
import pytest

from distill_lib.core import pays, stats

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
ZH_NOTEBOOKS = sorted((NOTEBOOK_DIR / "zh").glob("[0-9][0-9]_*.ipynb"))
BOTH = NOTEBOOKS + ZH_NOTEBOOKS
EXECUTED = NOTEBOOKS + ZH_NOTEBOOKS[:1]  # zh 00 runs end to end too
CONTRACT = {"profile": "str", "seed": "int", "interactive": "bool", "run_dir": "str"}
# per edition: how the first cell opens, what it says before quote ran, how its headline is read
FIRST_CELL = {"en": ("What you will learn", "not yet measured", stats.parse_headline_line),
              "zh": ("你将学到", "尚未测量", stats.parse_headline_line_zh)}


def edition(path):
    return "zh" if path.parent.name == "zh" else "en"


def ids(paths):
    return [("zh/" if edition(p) == "zh" else "") + p.stem for p in paths]


def test_the_tutorial_sequence_is_there():
    assert [p.stem[:2] for p in NOTEBOOKS] == ["00", "01", "02", "03", "04", "05", "06", "07"]


@pytest.mark.parametrize("path", BOTH, ids=ids(BOTH))
def test_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"cell {index} of {path.name} has outputs"
    assert notebook.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("path", BOTH, ids=ids(BOTH))
def test_follows_the_notebook_contract(path):
    notebook = nbformat.read(path, as_version=4)
    first = notebook.cells[0].source
    opening, unmeasured, parse_headline_line = FIRST_CELL[edition(path)]
    assert notebook.cells[0].cell_type == "markdown" and opening in first
    assert unmeasured not in first, "run `python -m distill_lib quote RUNS` to quote the measured results"
    quoted = parse_headline_line(first)
    assert quoted is not None and quoted["n"] >= 3, f"{path.name}: the first cell must quote a headline over >= 3 seeds"
    assert quoted["verdict"] == stats.verdict((quoted["low"] / 100, quoted["high"] / 100), quoted["margin"] / 100), (
        f"{path.name}: the quoted verdict must follow the quoted interval and margin")
    declared = papermill.inspect_notebook(str(path))
    for name, type_name in CONTRACT.items():
        assert declared[name]["inferred_type_name"] == type_name, f"{path.name}: parameter {name}"
    assert all(p["help"] for p in declared.values()), f"{path.name}: every parameter needs a comment"
    assert "dl.notebook.finish(" in notebook.cells[-1].source, "the last cell writes metrics.json"


def check_03_transfer_set(metrics: dict) -> None:
    """Every strong-teacher comparison of 03 is in metrics.json under its own key, with the numbers
    its per-seed records give (recomputed here with stats.paired). Two comparisons once shared a key,
    so "KD + unlabelled vs scratch" showed the numbers of "... vs KD, labelled images only"."""
    accuracy = {(r["model"], r["per_class"], r["seed"]): r["accuracy"] for r in metrics["transfer_set_records"]}
    budgets = sorted({b for _, b, _ in accuracy})
    seeds = sorted({s for _, _, s in accuracy})
    pairs = (("kd_labelled", "scratch"), ("kd_unlabelled", "scratch"), ("kd_unlabelled", "kd_labelled"))
    assert len(metrics["transfer_set"]) == len(pairs) * len(budgets)
    for model, against in pairs:
        for b in budgets:
            expected = stats.paired([accuracy[(model, b, s)] for s in seeds], [accuracy[(against, b, s)] for s in seeds])
            found = metrics["transfer_set"][f"{model} vs {against} {b}"]
            assert found["differences"] == pytest.approx(expected.differences), (model, against, b)
    assert {row["notebook"] for row in metrics["when_kd_pays"]} == {"03"}


NOTEBOOK_CHECKS = {"03_transfer_vs_distillation": check_03_transfer_set}  # what one notebook's metrics must hold


def check_when_kd_pays_rows(path, fresh_rows):
    """Each row the notebook records is in the README's "when does distillation pay" table, and the
    fresh effect lies within the quoted interval, give or take the row's margin (as the headline)."""
    quoted = pays.parse_table((NOTEBOOK_DIR.parent / "README.md").read_text(encoding="utf-8"))
    for row in fresh_rows:
        key = pays.regime_key(row)
        assert key in quoted, f"{path.name}: its row {key} is not in README's when-kd-pays table: re-quote"
        found, mean = quoted[key], 100 * row["effect"]["mean"]
        slack = 100 * row["effect"]["margin"] + 0.005
        assert found["low"] - slack <= mean <= found["high"] + slack, (
            f"{path.name}: row {key} gives {mean:+.2f} points now, outside the quoted {found['low']:+.2f} to "
            f"{found['high']:+.2f} (± its margin): re-measure and re-quote")


@pytest.mark.notebook
@pytest.mark.parametrize("path", EXECUTED, ids=ids(EXECUTED))
def test_runs_headless_in_the_quick_profile(path, tmp_path):
    run_dir = tmp_path / "run"
    papermill.execute_notebook(str(path), str(tmp_path / path.name), cwd=str(path.parent), kernel_name="python3",
                               parameters={"profile": "quick", "interactive": False, "run_dir": str(run_dir)},
                               progress_bar=False, execution_timeout=900)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["params"]["profile"] == "quick" and metrics["metrics"]
    fresh = metrics["metrics"]["headline"]
    assert set(fresh) >= {"claim", "metric", "n_seeds", "effect_mean", "effect_ci95", "margin", "verdict"}
    assert fresh["n_seeds"] >= 3 and fresh["verdict"] == stats.verdict(fresh["effect_ci95"], fresh["margin"])
    quoted = FIRST_CELL[edition(path)][2](nbformat.read(path, as_version=4).cells[0].source)
    assert fresh["claim"] == quoted["claim"], "the quoted claim is not what the notebook measures now"
    # the verdict is what a learner takes away: it must hold on this machine, whatever its CPU
    assert fresh["verdict"] == quoted["verdict"], (
        f"{path.name}: a fresh run's verdict is {fresh['verdict']!r} "
        f"({100 * fresh['effect_mean']:+.2f}, 95% CI {100 * fresh['effect_ci95'][0]:+.2f} to "
        f"{100 * fresh['effect_ci95'][1]:+.2f}), the first cell quotes {quoted['verdict']!r}")
    assert 100 * fresh["margin"] == pytest.approx(quoted["margin"]) and fresh.get("kind", "paired") == quoted["kind"]
    # the fresh effect must lie within the quoted interval, give or take the margin (another kind of
    # CPU moves the last bits, and training amplifies them; a stale quote moves more than that)
    slack = quoted["margin"] + 0.005  # points; 0.005: the quote's rounding to 2 decimals
    assert quoted["low"] - slack <= 100 * fresh["effect_mean"] <= quoted["high"] + slack, (
        f"{path.name}: a fresh run gives {100 * fresh['effect_mean']:+.2f} points, outside the quoted interval "
        f"{quoted['low']:+.2f} to {quoted['high']:+.2f} (± the margin {quoted['margin']:.2f}): re-measure and "
        f"re-quote (python -m distill_lib quote)")
    NOTEBOOK_CHECKS.get(path.stem, lambda found: None)(metrics["metrics"])
    if edition(path) == "en":  # the same code in both editions: the English rows stand for both
        check_when_kd_pays_rows(path, metrics["metrics"].get(pays.KEY, []))
    executed = nbformat.read(tmp_path / path.name, as_version=4)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert not any(o.get("output_type") == "error" for o in outputs)
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) and "tqdm" in str(o)
                   for o in outputs), "a frozen widget progress bar in a headless run"
