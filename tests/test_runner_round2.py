"""The runner never writes a file it did not create in this run's directories (issue 22), refuses
inputs that are no notebooks and an --out that is a dangling link (exit code 2, nothing created),
reports a run whose directory vanished as failed, and its summary shows each notebook's headline
(issue 19, item 4).

Fixture notebooks as in tests/test_runner.py (no torch: a run costs a kernel start).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from pathlib import Path

import nbformat
import pytest

from distill_lib.batch.runner import RunResult, RunSpec, execute_run, format_summary, run_notebooks

from test_runner import PLAIN, PROBE
from test_runner_faults import no_orphans, run_main  # noqa: F401  (autouse: no process left behind)


def digest_tree(folder: Path) -> dict:
    """Every file under ``folder`` (links not followed) -> its sha256, or its link target."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            found[str(path)] = "-> " + os.readlink(path)
        elif path.is_file():
            found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[str(path)] = "dir"
    return found


def copy_notebook(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


# ---------------------------------------------------------------- inputs are never written

@pytest.mark.parametrize("command", ["run", "sweep"])
def test_an_out_that_would_put_the_executed_copy_on_the_source_is_refused(command, tmp_path, capsys):
    folder = tmp_path / "X"
    place = "plain" if command == "run" else "n=1"  # the run directory the runner would use
    source = copy_notebook(PLAIN, folder / place / "plain.ipynb")
    before = digest_tree(tmp_path)
    grid = ["-p", "n", "1", "2"] if command == "sweep" else []
    code, stdout, stderr = run_main(capsys, command, source, *grid, "--out", folder)
    assert code == 2, stderr
    assert str(source) in stderr and "Traceback" not in stderr
    assert digest_tree(tmp_path) == before  # the source untouched, nothing created


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_a_link_to_the_source_at_the_executed_notebooks_place_is_refused(link, tmp_path, capsys):
    source = copy_notebook(PLAIN, tmp_path / "src" / "plain.ipynb")
    run_dir = tmp_path / "out" / "plain"
    run_dir.mkdir(parents=True)
    (run_dir / ".run.lock").touch()  # an earlier run's directory
    (os.symlink if link == "symlink" else os.link)(source, run_dir / "plain.ipynb")
    before = digest_tree(tmp_path)
    code, _, stderr = run_main(capsys, "run", source, "--out", tmp_path / "out")
    assert code == 2 and "is the notebook" in stderr, stderr
    assert digest_tree(tmp_path) == before


def test_a_link_left_in_a_run_directory_is_replaced_never_written_through(tmp_path, capsys):
    """An earlier run's directory whose run.log and executed notebook are links to a user's
    files: the run writes new files there; the user's files keep their bytes."""
    users = tmp_path / "users"
    users.mkdir()
    for name in ("diary.txt", "thesis.ipynb"):
        (users / name).write_text(f"the user's {name}\n")
    run_dir = tmp_path / "out" / "plain"
    run_dir.mkdir(parents=True)
    (run_dir / ".run.lock").touch()
    os.symlink(users / "diary.txt", run_dir / "run.log")
    os.link(users / "thesis.ipynb", run_dir / "plain.ipynb")
    before = digest_tree(users)
    code, _, stderr = run_main(capsys, "run", PLAIN, "--out", tmp_path / "out")
    assert code == 0, stderr
    assert digest_tree(users) == before
    assert not (run_dir / "run.log").is_symlink() and nbformat.read(run_dir / "plain.ipynb", as_version=4).cells


def test_two_notebooks_with_one_name_are_refused_before_any_run(tmp_path, capsys):
    a = copy_notebook(PLAIN, tmp_path / "a" / "plain.ipynb")
    b = copy_notebook(PLAIN, tmp_path / "b" / "plain" / "plain.ipynb")
    for notebooks in ([a, b], [PLAIN, os.path.relpath(PLAIN)]):  # (one path given twice runs once)
        code, stdout, stderr = run_main(capsys, "run", *notebooks, "--out", tmp_path / "O")
        assert code == 2 and "would all run in" in stderr and str(tmp_path / "O" / "plain") in stderr, stderr
        assert not (tmp_path / "O").exists() and stdout == ""


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_a_folder_the_runner_did_not_make_is_not_used_as_a_run_directory(command, tmp_path, capsys):
    out = tmp_path / "out"
    place = out / ("probe" if command == "run" else "x=1")
    place.mkdir(parents=True)
    (place / "notes.txt").write_text("mine\n")
    (place / "metrics.json").write_text('{"mine": true}\n')
    before = digest_tree(tmp_path)
    grid = ["-p", "x", "1", "2"] if command == "sweep" else []
    code, _, stderr = run_main(capsys, command, PROBE, *grid, "--out", out)
    assert code == 2 and "was not made by this runner" in stderr and "notes.txt" in stderr, stderr
    assert digest_tree(tmp_path) == before


def test_a_sweep_does_not_replace_a_results_csv_it_did_not_write(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.csv").write_text("my,own,table\n")
    before = digest_tree(tmp_path)
    code, _, stderr = run_main(capsys, "sweep", PROBE, "-p", "x", "1", "2", "--out", out)
    assert code == 2 and "results.csv" in stderr and "was not made by this runner" in stderr, stderr
    assert digest_tree(tmp_path) == before


def test_an_empty_folder_is_a_usable_run_directory(tmp_path):
    (tmp_path / "plain").mkdir()
    [result] = run_notebooks([PLAIN], out=tmp_path)
    assert result.ok


# ---------------------------------------------------------------- a run directory that vanishes

def run_in_background(spec: RunSpec):
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("result", execute_run(spec)))
    thread.start()
    return thread, box


def wait_for(condition, timeout=120):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("recreated", [True, False])
def test_a_run_directory_deleted_mid_run_is_reported_failed(recreated, tmp_path):
    run_dir = tmp_path / "probe"
    spec = RunSpec(notebook=str(PROBE), run_dir=str(run_dir), name="probe",
                   params={"run_dir": str(run_dir), "interactive": False, "sleep_s": 4.0})
    thread, box = run_in_background(spec)
    wait_for(lambda: (run_dir / "executions.log").exists())  # the kernel is in the notebook
    while run_dir.exists():  # papermill may write into it while it is being removed
        shutil.rmtree(run_dir, ignore_errors=True)
    if recreated:  # as a notebook's own mkdir (write_metrics) does: the rest of the run succeeds
        run_dir.mkdir()
    thread.join(timeout=120)
    result = box["result"]
    assert result.status == "failed" and "deleted or replaced" in result.error, result.error
    assert "run.log" in result.error
    assert not (run_dir / "run.json").exists()  # nothing written into a directory that is not the run's


# ---------------------------------------------------------------- inputs that are no notebooks

@pytest.mark.parametrize("content", ['{"a": 1}', "[1, 2]", "", "not json", '{"cells": 3, "nbformat": 4}',
                                     b"\x89PNG\r\n\x1a\n"])
@pytest.mark.parametrize("command", ["run", "sweep"])
def test_a_file_that_is_no_notebook_is_refused_with_exit_code_2(content, command, tmp_path, capsys):
    path = tmp_path / "odd.ipynb"
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    grid = ["-p", "x", "1", "2"] if command == "sweep" else []
    code, _, stderr = run_main(capsys, command, path, *grid, "--out", tmp_path / "out")
    assert code == 2 and "is not a Jupyter notebook" in stderr and "Traceback" not in stderr, stderr
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- --out a dangling link

@pytest.mark.parametrize("where", ["itself", "a parent"])
@pytest.mark.parametrize("command", ["run", "sweep"])
def test_an_out_that_is_a_dangling_link_is_refused_clearly(where, command, tmp_path, capsys):
    link = tmp_path / "link"
    os.symlink(tmp_path / "nowhere", link)
    out = link if where == "itself" else link / "runs"
    grid = ["-p", "x", "1", "2"] if command == "sweep" else []
    code, _, stderr = run_main(capsys, command, PROBE, *grid, "--out", out)
    assert code == 2 and "symbolic link" in stderr and "which does not exist" in stderr, stderr
    assert "File exists" not in stderr and not (tmp_path / "nowhere").exists()


# ---------------------------------------------------------------- the summary shows the headline

HEADLINE = {"claim": "KD vs alone", "metric": "accuracy", "n_seeds": 3, "effect_mean": 0.0167,
            "effect_ci95": [0.0148, 0.0186], "verdict": "gain", "per_seed": [0.0167] * 3, "seeds": [0, 1, 2]}


def headline_notebook(folder: Path) -> Path:
    """A notebook that writes a metrics.json with a headline and other metrics, as the lessons do."""
    record = {"params": {"profile": "quick"},
              "metrics": {"teacher": {"accuracy": 0.934}, "student_alone": [{"accuracy": 0.8415}],
                          "headline": HEADLINE}}
    cells = [nbformat.v4.new_code_cell('run_dir: str = "runs/manual"  # where metrics.json goes'),
             nbformat.v4.new_code_cell(f"import json, pathlib\npathlib.Path(run_dir).mkdir(parents=True, exist_ok=True)\n"
                                       f"(pathlib.Path(run_dir) / 'metrics.json').write_text(json.dumps({record!r}))")]
    cells[0].metadata["tags"] = ["parameters"]
    notebook = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                              "display_name": "Python 3"}})
    path = folder / "07_lesson.ipynb"
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


def test_the_summary_shows_each_notebooks_headline(tmp_path, capsys):
    notebook = headline_notebook(tmp_path / "nb")
    code, stdout, stderr = run_main(capsys, "run", notebook, PLAIN, "--out", tmp_path / "out")
    assert code == 0, stderr
    row = next(line for line in stdout.splitlines() if line.startswith("07_lesson"))
    assert "+1.67 points (95% CI +1.48 to +1.86), 3 seeds: gain" in row
    assert "accuracy=" not in stdout  # not the first two metric leaves any more
    plain_row = next(line for line in stdout.splitlines() if line.startswith("plain"))
    assert "(no metrics.json)" in plain_row


def test_the_summary_says_so_when_a_headline_is_missing_or_malformed():
    def result(headline, sha="abc"):
        return RunResult(name="n", notebook="n.ipynb", run_dir="r", params={}, status="ok", headline=headline,
                         metrics_sha256=sha)

    assert "(no headline in metrics.json)" in format_summary([result(None)])
    assert "(headline in metrics.json is malformed)" in format_summary([result({"effect_mean": "a lot"})])
    with_margin = format_summary([result({**HEADLINE, "margin": 0.005, "verdict": "gain"})])
    assert "+1.67 points (95% CI +1.48 to +1.86, margin 0.50), 3 seeds: gain" in with_margin


# ---------------------------------------------------------------- more of the same classes

def test_a_lock_file_that_is_a_link_to_a_users_file_is_never_opened_through(tmp_path, capsys):
    diary = tmp_path / "diary.txt"
    diary.write_text("dear diary\n")
    run_dir = tmp_path / "out" / "plain"
    run_dir.mkdir(parents=True)
    os.symlink(diary, run_dir / ".run.lock")
    code, _, stderr = run_main(capsys, "run", PLAIN, "--out", tmp_path / "out")
    assert code == 2 and "was not made by this runner" in stderr, stderr
    spec = RunSpec(notebook=str(PLAIN), run_dir=str(run_dir), name="plain", params={})
    result = execute_run(spec)  # a RunSpec made by hand (a Dask worker's): not started either
    assert result.status == "failed" and "not started" in result.error
    os.unlink(run_dir / ".run.lock")
    os.link(diary, run_dir / ".run.lock")  # a hard link: the same
    result = execute_run(spec)
    assert result.status == "failed" and "not started" in result.error
    assert diary.read_text() == "dear diary\n"


@pytest.mark.parametrize("call", [
    lambda out: run_notebooks([PLAIN], out=out, log_output="yes"),
    lambda out: __import__("distill_lib.batch.sweep", fromlist=["sweep"]).sweep(PROBE, {"x": [1, 2]}, out=out,
                                                                                 force="no"),
])
def test_switches_of_the_python_api_must_be_booleans(call, tmp_path):
    with pytest.raises(ValueError, match="must be True or False"):
        call(tmp_path / "out")
    assert not (tmp_path / "out").exists()
