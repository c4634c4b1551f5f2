"""The batch side: parameter checks, run/sweep execution, resume, parallel and Dask runs, limits.

Fixture notebooks (tests/fixtures) never import torch, so a run costs about the kernel start-up.
``probe.ipynb`` raises when ``x == 3``, sleeps ``sleep_s`` in cell 4, waits in ``rendezvous`` for
a parallel sibling run, appends its kernel's pid to ``executions.log`` on every execution and
writes metrics.json with what its kernel saw (interpreter, cwd, environment, parameter types).
"""
from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from distill_lib.batch.cli import main
from distill_lib.core.results import read_metrics, write_metrics
from distill_lib.batch.runner import check_parameters, resolve_notebooks, run_notebooks
from distill_lib.batch.sweep import run_name, sweep

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
PROBE = FIXTURES / "probe.ipynb"
PLAIN = FIXTURES / "plain.ipynb"


def cli(*args, timeout=300, **env_vars) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), **env_vars)
    return subprocess.run([sys.executable, "-m", "distill_lib", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def read_csv(path: Path) -> dict[str, dict]:
    with open(path, newline="") as handle:
        return {row["run"]: row for row in csv.DictReader(handle)}


def executions(run_dir: Path) -> list[int]:
    """Kernel pids of every execution of the probe in ``run_dir``."""
    log = run_dir / "executions.log"
    return [int(line) for line in log.read_text().split()] if log.exists() else []


def sigint_as_at_a_terminal() -> None:
    """Popen preexec_fn: give the child the default SIGINT disposition. A test run started in
    the background by a non-interactive shell (`bash .ci/run &`) inherits SIGINT *ignored*;
    Python then keeps ignoring it, and a Ctrl-C test would test nothing but that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def signal_and_wait(process: subprocess.Popen, signum, timeout: float = 60) -> str:
    """Send ``signum`` and return the runner's stderr. A runner that does not stop in time is
    made to dump every thread's stack (PYTHONFAULTHANDLER, SIGABRT), so a hang can be diagnosed."""
    process.send_signal(signum)
    try:
        return process.communicate(timeout=timeout)[1] or ""
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        stacks = process.communicate(timeout=30)[1]
        pytest.fail(f"the runner did not stop within {timeout} s of signal {signum}; its threads:\n{stacks}")


def assert_gone(pid: int) -> None:
    """Checked at once: the runner kills and reaps the kernel itself, without waiting for
    ipykernel's own parent-poller to notice that papermill died."""
    import psutil

    try:
        status = psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return
    assert status == psutil.STATUS_ZOMBIE, f"kernel {pid} is still running ({status})"


# ---------------------------------------------------------------- parameter checks (no kernel)

def test_cli_strings_are_parsed_to_the_declared_types():
    parsed = check_parameters(PROBE, {"x": "2", "seed": "3", "flag": "true", "limit": "null",
                                      "mode": "b c", "sleep_s": "0.5"})
    assert parsed == {"x": 2.0, "seed": 3, "flag": True, "limit": None, "mode": "b c", "sleep_s": 0.5}
    assert type(parsed["x"]) is float and type(parsed["seed"]) is int
    assert check_parameters(PROBE, {"flag": "0", "limit": "7"}) == {"flag": False, "limit": 7}


@pytest.mark.parametrize("name, value, expected", [
    ("x", "abc", "float"), ("seed", "1.5", "int"), ("flag", "maybe", "bool"), ("mode", 3, "str"),
    ("seed", "None", "int"),  # None only where the default is None
])
def test_unparsable_value_is_refused_with_the_parameter_list(name, value, expected):
    with pytest.raises(ValueError) as refused:
        check_parameters(PROBE, {name: value})
    message = str(refused.value)
    assert f"{name!r}" in message and repr(value) in message and expected in message
    # the listing: every parameter with type, default and comment
    assert "seed         int   = 0" in message and "# seeds everything" in message
    assert "sleep_s" in message and "# optional cap, None for no cap" in message


def test_unknown_parameter_is_an_error():
    with pytest.raises(ValueError, match=r"unknown parameter 'epochz'(.|\n)*x +float += 1\.0"):
        check_parameters(PROBE, {"epochz": "3"})


def test_cli_refuses_unknown_parameter_before_anything_runs(tmp_path, capsys):
    # in-process main(): the same code path as `python -m distill_lib`, without its start-up
    for command in (["sweep", PROBE, "-p", "epochz", "1", "2"], ["run", PROBE, "-p", "epochz", "1"]):
        out = tmp_path / command[0]
        assert main([*map(str, command), "--out", str(out)]) == 2
        stderr = capsys.readouterr().err
        assert "unknown parameter 'epochz'" in stderr
        assert "# seeds everything" in stderr  # the parameter list
        assert not out.exists()  # no run directory, so no kernel either
    with pytest.raises(SystemExit) as refused:
        main(["run", str(PROBE), "--profile", "fast", "--out", str(tmp_path / "p")])
    assert refused.value.code == 2 and "invalid choice: 'fast'" in capsys.readouterr().err


def test_runner_owned_and_unreadable_parameters_are_refused(tmp_path):
    with pytest.raises(ValueError, match="--profile"):
        run_notebooks([PROBE], out=tmp_path, params={"profile": "full"})
    with pytest.raises(ValueError, match="quick, full"):
        run_notebooks([PROBE], profile="fast", out=tmp_path)
    notebook = nbformat.v4.new_notebook(metadata={
        "kernelspec": {"name": "python3", "display_name": "P", "language": "python"}})
    # papermill silently skips both lines: two '=' in one, an annotation it cannot read in the other
    cell = nbformat.v4.new_code_cell("lr: float = 0.1  # lr = 1 diverges\nsteps: int | None = None  # cap")
    cell.metadata["tags"] = ["parameters"]
    notebook.cells = [cell]
    path = tmp_path / "bad.ipynb"
    nbformat.write(notebook, path)
    with pytest.raises(ValueError, match=r"lr: float = 0.1 .*\n  steps: int \| None = None"):
        check_parameters(path, {"lr": "0.2"})
    assert not (tmp_path / "probe").exists()


def test_notebooks_resolve_by_short_name(tmp_path):
    for stem in ("02_b", "01_a", "01_ab"):
        nbformat.write(nbformat.v4.new_notebook(), tmp_path / f"{stem}.ipynb")
    assert [p.name for p in resolve_notebooks([], tmp_path)] == ["01_a.ipynb", "01_ab.ipynb", "02_b.ipynb"]
    assert resolve_notebooks(["02", "01_a", str(PROBE)], tmp_path) == [
        tmp_path / "02_b.ipynb", tmp_path / "01_a.ipynb", PROBE]
    with pytest.raises(ValueError, match="ambiguous"):
        resolve_notebooks(["01"], tmp_path)
    with pytest.raises(ValueError, match="available: 01_a, 01_ab, 02_b"):
        resolve_notebooks(["03"], tmp_path)


def test_run_names_are_stable_and_filesystem_safe():
    assert run_name({"T": 4.0, "alpha": 0.9, "seed": 1}) == "T=4__alpha=0.9__seed=1"
    assert run_name({"lr": 1e-05, "x": 0.1234567}) == "lr=1e-05__x=0.1234567"
    odd, plain = run_name({"mode": "b/c"}), run_name({"mode": "b-c"})
    assert odd != plain and "/" not in odd and odd == run_name({"mode": "b/c"})


# ---------------------------------------------------------------- results

def test_write_metrics_converts_scalars_and_nan(tmp_path):
    np = pytest.importorskip("numpy")
    metrics = {"acc": np.float32(0.5), "n": np.int64(3), "curve": np.array([1.0, 2.0]),
               "shape": (2, 3), "nan": float("nan"), "nested": {"inf": np.float64("inf")}}
    try:
        import torch

        metrics["torch"] = torch.tensor(0.25)
    except ImportError:
        pass
    path = write_metrics(tmp_path, params={"T": np.float64(4.0), "where": tmp_path}, metrics=metrics,
                         timings={"train_s": 1.5})
    record = json.loads(path.read_text())  # plain json: no NaN tokens allowed through
    assert record == read_metrics(tmp_path)
    assert record["metrics"]["acc"] == 0.5 and record["metrics"]["n"] == 3
    assert record["metrics"]["curve"] == [1.0, 2.0] and record["metrics"]["shape"] == [2, 3]
    assert record["metrics"]["nan"] is None and record["metrics"]["nested"]["inf"] is None
    assert record["metrics"].get("torch", 0.25) == 0.25
    assert record["params"] == {"T": 4.0, "where": str(tmp_path)}
    assert record["timings"] == {"train_s": 1.5}
    assert record["versions"]["python"].count(".") == 2 and record["device"]
    assert record["created"].endswith("+00:00")
    with pytest.raises(TypeError, match="object"):
        write_metrics(tmp_path, params={}, metrics={"bad": object()})
    assert read_metrics(tmp_path) == record  # the refused write left the file alone


def test_write_metrics_is_atomic(tmp_path, monkeypatch):
    write_metrics(tmp_path, params={}, metrics={"acc": 0.9})
    before = (tmp_path / "metrics.json").read_bytes()

    def crash(fd):
        raise OSError("disk full")

    monkeypatch.setattr("distill_lib.core.results.os.fsync", crash)  # dies after writing the temp file
    with pytest.raises(OSError, match="disk full"):
        write_metrics(tmp_path, params={}, metrics={"acc": 0.1})
    assert (tmp_path / "metrics.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # no temp file left
    assert (tmp_path / "metrics.json").stat().st_mode & 0o777 == 0o644  # shared, whatever the umask


# ---------------------------------------------------------------- run

def test_run_injects_only_declared_parameters_into_the_same_python(tmp_path):
    results = run_notebooks([PROBE, PLAIN], profile="full", out=tmp_path, params={"x": "2"})
    assert [(r.name, r.status) for r in results] == [("probe", "ok"), ("plain", "ok")]
    record = read_metrics(tmp_path / "probe")
    assert record["params"]["profile"] == "full" and record["params"]["x"] == 2.0
    env = record["env"]
    assert env["python"] == sys.executable  # the kernel runs the runner's interpreter
    assert env["interactive"] is False and env["run_dir"] == str((tmp_path / "probe").resolve())
    assert env["headless"] is None and env["cwd"] == str(FIXTURES)  # headless is the interactive parameter, no env variable
    assert env["types"] == ["float", "int", "bool", "NoneType"]
    assert results[0].metrics == {"accuracy": 20.0, "loss": 1 / 3, "student.top1_accuracy": 0.2}
    executed = nbformat.read(tmp_path / "plain" / "plain.ipynb", as_version=4)
    injected = "".join(c.source for c in executed.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "profile" not in injected and "x =" not in injected and "run_dir" not in injected
    assert executed.cells[-1].outputs[0]["text"] == "0\n1\n"


def test_run_cli_failure_names_notebook_cell_and_error(tmp_path):
    finished = cli("run", PROBE, "-p", "x", "3", "--out", tmp_path)
    assert finished.returncode == 1
    summary = finished.stdout
    assert "probe" in summary and "failed" in summary
    assert "cell 3 `if x == 3:`: ValueError: x == 3 is refused on purpose" in summary
    status = json.loads((tmp_path / "probe" / "run.json").read_text())
    assert status["status"] == "failed" and status["failed_cell"] == 3
    executed = nbformat.read(tmp_path / "probe" / "probe.ipynb", as_version=4)
    assert "papermill-error-cell-tag" in executed.cells[0].metadata.get("tags", [])


def test_hung_run_is_killed_at_the_time_limit(tmp_path):
    started = time.monotonic()
    [result] = run_notebooks([PROBE], out=tmp_path, params={"sleep_s": "300"}, timeout=15)
    assert time.monotonic() - started < 60
    assert result.status == "failed" and result.error == "timed out after 15 s"
    assert result.failed_cell == 4 and result.failed_source == "time.sleep(sleep_s)"
    assert json.loads((tmp_path / "probe" / "run.json").read_text())["error"] == "timed out after 15 s"
    [kernel_pid] = executions(tmp_path / "probe")
    assert_gone(kernel_pid)


# ---------------------------------------------------------------- sweep

def test_sweep_records_failures_runs_in_parallel_and_resumes(tmp_path):
    out, meeting = tmp_path / "sweep", tmp_path / "meeting"
    finished = cli("sweep", PROBE, "-p", "x", "1", "2", "3", "-p", "rendezvous", meeting, "--seeds", "0",
                   "--jobs", "2", "--out", out, CUDA_VISIBLE_DEVICES="5,7")
    assert finished.returncode == 1, finished.stderr
    assert "FAILED x=3__seed=0: cell 3 `if x == 3:`: ValueError" in finished.stdout
    rows = read_csv(out / "results.csv")
    assert {name: row["status"] for name, row in rows.items()} == {
        "x=1__seed=0": "ok", "x=2__seed=0": "ok", "x=3__seed=0": "failed"}
    assert [rows[f"x={x}__seed=0"]["accuracy"] for x in (1, 2)] == ["10.0", "20.0"]
    assert rows["x=2__seed=0"]["student.top1_accuracy"] == "0.2"
    assert "x == 3 is refused" in rows["x=3__seed=0"]["error"]
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"
    # --jobs 2: each of the two successful runs saw the other one executing (rendezvous cell)
    first, second = (read_metrics(out / f"x={x}__seed=0")["env"] for x in (1, 2))
    assert first["met"] is True and second["met"] is True
    # ... each on its own GPU (round-robin over the visible devices; fake ids, no GPU needed)
    assert {first["cuda_visible_devices"], second["cuda_visible_devices"]} == {"5", "7"}

    runs = {x: out / f"x={x}__seed=0" for x in (1, 2, 3)}
    mtimes = {x: (runs[x] / "metrics.json").stat().st_mtime_ns for x in (1, 2)}
    again = sweep(PROBE, {"x": [1, 2, 3]}, params={"rendezvous": str(meeting)}, seeds=[0], out=out, jobs=2)
    assert [(r.name, r.status, r.resumed) for r in again.results] == [
        ("x=1__seed=0", "ok", True), ("x=2__seed=0", "ok", True), ("x=3__seed=0", "failed", False)]
    assert [len(executions(runs[x])) for x in (1, 2, 3)] == [1, 1, 2]  # only the failed one re-ran
    assert all((runs[x] / "metrics.json").stat().st_mtime_ns == mtimes[x] for x in (1, 2))
    assert read_csv(out / "results.csv")["x=1__seed=0"]["resumed"] == "True"

    sweep(PROBE, {"x": [1, 2]}, seeds=[0], out=out, jobs=2, force=True)
    assert [len(executions(runs[x])) for x in (1, 2, 3)] == [2, 2, 2]


def test_sweep_on_a_dask_local_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        outcome = sweep(PROBE, {"x": ["1", "3"]}, seeds=[1], out=tmp_path,
                        cluster=cluster.scheduler_address)
    assert [(r.name, r.status) for r in outcome.results] == [("x=1__seed=1", "ok"), ("x=3__seed=1", "failed")]
    assert read_metrics(outcome.results[0].run_dir)["metrics"]["accuracy"] == 11
    assert "x == 3 is refused on purpose (seed 1)" in outcome.results[1].error
    rows = read_csv(outcome.csv_path)
    assert [rows[name]["status"] for name in rows] == ["ok", "failed"]
    assert outcome.figure_path is not None and outcome.figure_path.exists()


def test_interrupted_sweep_keeps_finished_runs(tmp_path):
    out = tmp_path / "sweep"
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONFAULTHANDLER="1")
    command = [sys.executable, "-m", "distill_lib", "sweep", str(PROBE), "-p", "sleep_s", "0", "300",
               "--out", str(out)]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=sigint_as_at_a_terminal)
    hung = out / "sleep_s=300"
    deadline = time.monotonic() + 120
    while not executions(hung) and time.monotonic() < deadline:  # the second run's kernel is busy
        time.sleep(0.3)
    assert executions(hung), "the second run never started"
    stderr = signal_and_wait(process, signal.SIGINT)
    assert process.returncode == 130, stderr
    assert read_metrics(out / "sleep_s=0")["metrics"]["accuracy"] == 10.0
    rows = read_csv(out / "results.csv")
    assert rows["sleep_s=0"]["status"] == "ok" and rows["sleep_s=300"]["status"] == "interrupted"
    assert json.loads((hung / "run.json").read_text())["status"] == "interrupted"
    assert_gone(executions(hung)[0])
    assert math.isclose(float(rows["sleep_s=0"]["loss"]), 0.5)


def test_sigterm_stops_the_run_and_its_kernel(tmp_path):
    """`kill RUNNER` must not orphan the notebook's papermill child and kernel."""
    pid_log = tmp_path / "out" / "probe" / "executions.log"  # the probe writes its kernel's pid there
    proc = subprocess.Popen([sys.executable, "-m", "distill_lib", "run", str(PROBE), "--out", str(tmp_path / "out"),
                             "-p", "sleep_s", "120"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONFAULTHANDLER="1"))
    deadline = time.monotonic() + 120
    while not (pid_log.exists() and pid_log.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.5)
    kernel_pid = int(pid_log.read_text().split()[0])
    signal_and_wait(proc, signal.SIGTERM)
    assert proc.returncode == 130
    time.sleep(1)
    with pytest.raises(ProcessLookupError):
        os.kill(kernel_pid, 0)


def test_a_child_started_after_the_stop_is_killed_at_once():
    """The race behind a hung Ctrl-C: a worker thread starts its child just as the main thread
    stops all children. Registering it after the stop must kill it, not let it run on."""
    from distill_lib.batch.runner import ChildProcesses

    children = ChildProcesses()
    children.stop_all()
    late = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started = time.monotonic()
    children.add(late)
    assert late.wait(timeout=10) != 0 and time.monotonic() - started < 10


@pytest.mark.parametrize("command", [
    ["run", "02", "-p", "temperature", "-1"],
    ["run", "00", "-p", "epochs", "0"],
    ["sweep", "02", "-p", "alpha", "0.5", "1.5"],
    ["run", "03", "-p", "budgets", "1,ten"],
    ["run", "04", "-p", "warmup_epochs", "40"],
])
def test_notebook_range_checks_come_before_any_kernel_starts(tmp_path, command):
    started = time.monotonic()
    finished = cli(*command, "--out", tmp_path / "out")
    assert finished.returncode == 2, finished.stderr
    assert "error:" in finished.stderr and "Traceback" not in finished.stderr
    assert not (tmp_path / "out").exists()  # no run directory left behind
    assert time.monotonic() - started < 30  # no kernel was started (that alone takes several seconds)


# ---------------------------------------------------------------- the Chinese edition (issue 21)

def two_editions(tmp_path) -> Path:
    """``notebooks/01_probe.ipynb`` and its Chinese edition ``notebooks/zh/01_probe.ipynb``."""
    import shutil
    folder = tmp_path / "notebooks"
    (folder / "zh").mkdir(parents=True)
    shutil.copy(PROBE, folder / "01_probe.ipynb")
    shutil.copy(PROBE, folder / "zh" / "01_probe.ipynb")
    return folder


def test_lang_zh_looks_short_names_up_in_the_chinese_edition(tmp_path):
    folder = two_editions(tmp_path)
    assert resolve_notebooks(["01"], folder, "zh") == [folder / "zh" / "01_probe.ipynb"]
    assert resolve_notebooks([], folder, "zh") == [folder / "zh" / "01_probe.ipynb"]
    assert resolve_notebooks(["01"], folder) == [folder / "01_probe.ipynb"]
    assert resolve_notebooks([str(folder / "01_probe.ipynb")], folder, "zh") == [folder / "01_probe.ipynb"]  # a path is a path
    with pytest.raises(ValueError, match="--lang must be one of en, zh; got 'fr'"):
        resolve_notebooks(["01"], folder, "fr")
    refused = cli("run", "01", "--lang", "fr", "--notebooks-dir", folder, "--out", tmp_path / "out")
    assert refused.returncode == 2 and "invalid choice: 'fr'" in refused.stderr and not (tmp_path / "out").exists()


def test_both_editions_run_into_one_out_with_the_same_parameters(tmp_path):
    folder, out = two_editions(tmp_path), tmp_path / "out"
    english = cli("run", "01", "--notebooks-dir", folder, "--out", out, "-p", "x", "2", "--profile", "full")
    chinese = cli("run", "01", "--lang", "zh", "--notebooks-dir", folder, "--out", out, "-p", "x", "2",
                  "--profile", "full")
    assert english.returncode == 0 and chinese.returncode == 0, english.stderr + chinese.stderr
    en, zh = read_metrics(out / "01_probe"), read_metrics(out / "zh" / "01_probe")
    assert en["params"] == zh["params"] == {"profile": "full", "seed": 0, "x": 2.0, "mode": "a", "flag": False,
                                            "limit": None}
    assert zh["env"]["cwd"] == str(folder / "zh") and zh["env"]["run_dir"] == str((out / "zh" / "01_probe").resolve())
    assert (out / "zh" / "01_probe" / "01_probe.ipynb").exists() and (out / "01_probe" / "01_probe.ipynb").exists()
    # one command, both editions by path: two run directories, no collision
    [a, b] = run_notebooks([folder / "01_probe.ipynb", folder / "zh" / "01_probe.ipynb"], out=tmp_path / "both")
    assert (a.status, b.status) == ("ok", "ok") and Path(b.run_dir) == (tmp_path / "both" / "zh" / "01_probe").resolve()
    assert (a.name, b.name) == ("01_probe", "zh/01_probe")  # as the summary names them


def test_a_chinese_sweep_has_its_own_directory_and_never_resumes_an_english_run(tmp_path, monkeypatch):
    folder = two_editions(tmp_path)
    monkeypatch.chdir(tmp_path)  # the default sweep directory is runs/sweeps/... under the working directory
    default = sweep("01", {"x": [1, 2]}, notebooks_dir=folder, lang="zh")
    assert default.csv_path == Path("runs") / "sweeps" / "zh" / "01_probe" / "results.csv"
    assert all(r.ok and "/zh/01_probe.ipynb" in r.notebook for r in default.results)
    shared = tmp_path / "shared"
    sweep("01", {"x": [1, 2]}, notebooks_dir=folder, out=shared)
    again = sweep("01", {"x": [1, 2]}, notebooks_dir=folder, out=shared, lang="zh")
    assert [(r.ok, r.resumed) for r in again.results] == [(True, False), (True, False)]  # run again, as zh
    assert [len(executions(shared / f"x={x}")) for x in (1, 2)] == [2, 2]
    assert [r.resumed for r in sweep("01", {"x": [1, 2]}, notebooks_dir=folder, out=shared, lang="zh").results] == [
        True, True]
