"""Every notebook: committed without outputs, follows the contract, and runs in the quick profile."""
import json
import os
from pathlib import Path

import nbformat
import papermill
import pytest

from distill_lib.core import stats

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
CONTRACT = {"profile": "str", "seed": "int", "interactive": "bool", "run_dir": "str"}


def ids(paths):
    return [p.stem for p in paths]


def test_the_tutorial_sequence_is_there():
    assert [p.stem[:2] for p in NOTEBOOKS] == ["00", "01", "02", "03", "04", "05", "06", "07"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"cell {index} of {path.name} has outputs"
    assert notebook.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_follows_the_notebook_contract(path):
    notebook = nbformat.read(path, as_version=4)
    first = notebook.cells[0].source
    assert notebook.cells[0].cell_type == "markdown" and "What you will learn" in first
    assert "not yet measured" not in first, "run `python -m distill_lib quote RUNS` to quote the measured results"
    quoted = stats.parse_headline_line(first)
    assert quoted is not None and quoted["n"] >= 3, f"{path.name}: the first cell must quote a headline over >= 3 seeds"
    assert quoted["verdict"] == stats.verdict((quoted["low"], quoted["high"])), "the verdict must follow the interval"
    declared = papermill.inspect_notebook(str(path))
    for name, type_name in CONTRACT.items():
        assert declared[name]["inferred_type_name"] == type_name, f"{path.name}: parameter {name}"
    assert all(p["help"] for p in declared.values()), f"{path.name}: every parameter needs a comment"
    assert "dl.notebook.finish(" in notebook.cells[-1].source, "the last cell writes metrics.json"


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_runs_headless_in_the_quick_profile(path, tmp_path):
    run_dir = tmp_path / "run"
    papermill.execute_notebook(str(path), str(tmp_path / path.name), cwd=str(NOTEBOOK_DIR), kernel_name="python3",
                               parameters={"profile": "quick", "interactive": False, "run_dir": str(run_dir)},
                               progress_bar=False, execution_timeout=900)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["params"]["profile"] == "quick" and metrics["metrics"]
    fresh = metrics["metrics"]["headline"]
    assert set(fresh) >= {"claim", "metric", "n_seeds", "effect_mean", "effect_ci95", "verdict"}
    assert fresh["n_seeds"] >= 3 and fresh["verdict"] == stats.verdict(fresh["effect_ci95"])
    quoted = stats.parse_headline_line(nbformat.read(path, as_version=4).cells[0].source)
    assert fresh["claim"] == quoted["claim"], "the quoted claim is not what the notebook measures now"
    # the fresh effect must lie within the quoted interval (numbers quoted in points, 2 decimals)
    assert quoted["low"] - 0.005 <= 100 * fresh["effect_mean"] <= quoted["high"] + 0.005, (
        f"{path.name}: a fresh run gives {100 * fresh['effect_mean']:+.2f} points, outside the quoted interval "
        f"{quoted['low']:+.2f} to {quoted['high']:+.2f}: re-measure and re-quote (python -m distill_lib quote)")
    executed = nbformat.read(tmp_path / path.name, as_version=4)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert not any(o.get("output_type") == "error" for o in outputs)
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) and "tqdm" in str(o)
                   for o in outputs), "a frozen widget progress bar in a headless run"
