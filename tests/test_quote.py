"""Quoting measured results into notebooks and the README: what a test later compares with a run."""
import json

import nbformat
import pytest

from distill_lib.batch.quote import quote
from distill_lib.core import stats
from distill_lib.core.results import write_metrics

FIRST_CELL = ("# 09 · A lesson\n\n**What you will learn:** something.\n\n**Headline** (not yet measured)\n\n"
              "**What it shows:** words.\n\n**Time:** not yet measured.")


def make_notebook(folder):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(FIRST_CELL), nbformat.v4.new_code_cell("1")])
    path = folder / "09_lesson.ipynb"
    nbformat.write(notebook, path)
    return path


def make_run(runs, status="ok"):
    run_dir = runs / "09_lesson"
    comparison = stats.paired([0.86, 0.87, 0.85], [0.85, 0.85, 0.84], seeds=[0, 1, 2])
    write_metrics(run_dir, params={"profile": "quick", "threads": 2, "machine": "2-core x86_64 CPU, no GPU"},
                  metrics={"headline": stats.headline("KD vs alone, accuracy", "accuracy", comparison)})
    (run_dir / "run.json").write_text(json.dumps({"status": status, "wall_s": 41.6}))
    return comparison


def test_quote_writes_the_measured_headline_and_time_and_the_readme_table(tmp_path):
    notebooks, runs = tmp_path / "notebooks", tmp_path / "runs"
    notebooks.mkdir()
    path = make_notebook(notebooks)
    comparison = make_run(runs)
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- headlines:start -->\nold\n<!-- headlines:end -->\nrest\n")
    assert quote(runs, notebooks, readme) == ["09_lesson.ipynb", "README.md"]
    first = nbformat.read(path, as_version=4).cells[0].source
    quoted = stats.parse_headline_line(first)
    low, high = comparison.ci95
    assert quoted["claim"] == "KD vs alone, accuracy" and quoted["verdict"] == comparison.verdict
    assert (quoted["mean"], quoted["low"], quoted["high"]) == (round(100 * comparison.mean, 2), round(100 * low, 2),
                                                               round(100 * high, 2))
    assert "**What it shows:** words." in first and "**Time:** 42 s of runner wall time" in first
    table = readme.read_text()
    assert "| `09_lesson` | KD vs alone, accuracy |" in table and "old" not in table and table.endswith("rest\n")
    assert quote(runs, notebooks, readme) == []  # nothing changes the second time


def test_quote_refuses_an_unfinished_run_and_a_readme_without_markers(tmp_path):
    notebooks, runs = tmp_path / "notebooks", tmp_path / "runs"
    notebooks.mkdir()
    make_notebook(notebooks)
    make_run(runs, status="failed")
    with pytest.raises(ValueError, match="did not finish ok"):
        quote(runs, notebooks)
    make_run(runs)
    (tmp_path / "README.md").write_text("no markers\n")
    with pytest.raises(ValueError, match="headlines:start"):
        quote(runs, notebooks, tmp_path / "README.md")
