"""The runner under faults: bad options, unusable directories, a full disk, SIGKILL, two sweeps at
once, forged results, a closed pipe. Each refusal must come before any work starts (exit code 2,
no traceback, nothing created); each fault must be survived with nothing lost and nothing left
running.

Same fixture notebooks as tests/test_runner.py (no torch, a kernel start per run). Every process a
test starts carries a marker in its environment (the runner passes its environment on to
papermill and the kernel); a test that leaves one running fails and the process is killed.
"""
from __future__ import annotations

import errno
import hashlib
import http.server
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

from distill_lib.batch.cli import main
from distill_lib.batch.runner import run_notebooks
from distill_lib.batch.sweep import sweep
from distill_lib.core import results as results_module
from distill_lib.core.results import read_metrics

from test_runner import PLAIN, PROBE, REPO, cli, executions, read_csv

MARK = "DISTILL_TEST_MARK"


def marked_processes(mark: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        if process.pid == os.getpid():
            continue
        try:
            if process.environ().get(MARK) == mark and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (psutil.Error, OSError):
            continue
    return found


@pytest.fixture(autouse=True)
def no_orphans(monkeypatch):
    """Fail a test that leaves a papermill, kernel or runner process behind (and kill it)."""
    mark = uuid.uuid4().hex
    monkeypatch.setenv(MARK, mark)
    yield
    left = marked_processes(mark)
    _, alive = psutil.wait_procs(left, timeout=5)
    described = []
    for process in alive:
        try:
            described.append(f"{process.pid} {' '.join(process.cmdline())[:120]}")
            process.kill()
        except psutil.Error:
            pass
    assert not described, "processes left running:\n" + "\n".join(described)


def run_main(capsys, *args) -> tuple[int, str, str]:
    """``python -m distill_lib ARGS`` in this process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def start_cli(*args, **popen_args) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONFAULTHANDLER="1")
    return subprocess.Popen([sys.executable, "-m", "distill_lib", *map(str, args)], cwd=REPO, env=env,
                            text=True, **{"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen_args})


def wait_for_kernel(run_dir: Path, process: subprocess.Popen, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while not executions(run_dir):
        assert process.poll() is None, f"the runner ended early: {process.communicate()}"
        assert time.monotonic() < deadline, "the run never started its kernel"
        time.sleep(0.2)
    return executions(run_dir)[0]


def finish(process: subprocess.Popen) -> None:
    """Stop a background runner the way a user would (SIGTERM), or kill it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


@pytest.fixture
def tiny_fs(tmp_path):
    """mount(name, size, readonly): a tmpfs of its own (we are root); unmounted afterwards."""
    mounts = []

    def mount(name: str, size: str = "64k", readonly: bool = False) -> Path:
        point = tmp_path / name
        point.mkdir()
        options = f"size={size}" + (",ro" if readonly else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounts.append(point)
        return point

    yield mount
    for point in reversed(mounts):
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


# ---------------------------------------------------------------- 11: filesystem

def fill(folder: Path) -> None:
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as error:
        assert error.errno == errno.ENOSPC
    finally:
        os.close(fd)


@pytest.mark.parametrize("case", ["a file", "under /proc", "read-only", "full"])
@pytest.mark.parametrize("command", ["run", "sweep"])
def test_unusable_out_is_refused_before_anything_runs(case, command, tmp_path, tiny_fs, capsys):
    if case == "a file":
        out = tmp_path / "results.txt"
        out.write_text("not a directory")
        reason = "is not a directory"
    elif case == "under /proc":
        out = Path("/proc/distill-test-out")
        reason = "cannot be created"
    elif case == "read-only":
        out = tiny_fs("ro", readonly=True) / "out"
        reason = "Read-only file system"
    else:
        disk = tiny_fs("full")
        fill(disk)
        out = disk / "out"
        reason = "free"
    before = sorted(p.name for p in out.parent.iterdir()) if out.parent.is_dir() else None
    grid = ["-p", "x", "1", "2"] if command == "sweep" else []
    code, stdout, stderr = run_main(capsys, command, PROBE, *grid, "--out", out)
    assert code == 2, stderr
    assert f"--out {str(out)!r}" in stderr and reason in stderr, stderr
    assert "Traceback" not in stderr and stdout == ""
    if before is not None:  # nothing created, nothing left behind (no probe file either)
        assert sorted(p.name for p in out.parent.iterdir()) == before


def no_space(path) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def written(write) -> bytes:
    buffer = io.BytesIO()
    write(buffer)
    return buffer.getvalue()


def test_a_run_whose_record_cannot_be_written_fails_and_is_not_left_running(tmp_path, monkeypatch, capsys):
    real = results_module.write_atomic

    def full_for_the_final_record(path, write, **options):
        if Path(path).name == "run.json" and b'"running"' not in written(write):
            raise no_space(path)
        return real(path, write, **options)

    monkeypatch.setattr(results_module, "write_atomic", full_for_the_final_record)
    code, stdout, stderr = run_main(capsys, "run", PROBE, "--out", tmp_path)
    assert code == 1 and "Traceback" not in stderr
    assert "No space left on device" in stdout and "run.json" in stdout
    assert not (tmp_path / "probe" / "run.json").exists()  # never left saying "running"
    # metrics.json is there but unrecorded: a resumed sweep must run it again
    assert (tmp_path / "probe" / "metrics.json").exists()


@pytest.mark.parametrize("pages_free", [0, 4])
def test_a_run_on_a_really_full_disk_fails_cleanly(pages_free, tiny_fs):
    """A real tmpfs with nothing or 16 KiB left: the run fails with the reason (a notebook that
    papermill could not finish writing is called cut off), and no run.json says "running"."""
    from distill_lib.batch.runner import RunSpec, execute_run

    disk = tiny_fs("disk", size="96k")
    run_dir = disk / "probe"
    run_dir.mkdir()
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.statvfs(disk).f_bavail > pages_free:
            os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
    spec = RunSpec(notebook=str(PROBE), run_dir=str(run_dir), name="probe",
                   params={"run_dir": str(run_dir), "interactive": False})
    result = execute_run(spec)
    assert result.status == "failed" and "No space left on device" in result.error, result.error
    assert not (run_dir / "run.json").exists()
    if pages_free:
        assert "cut off" in result.error, result.error


@pytest.mark.parametrize("space_comes_back", [True, False])
def test_a_full_disk_stops_the_sweep_cleanly(space_comes_back, tmp_path, monkeypatch, capsys):
    """The disk fills as the second of three runs finishes: its record and the next results.csv
    fail. The sweep starts no further run, keeps what finished, and ends with a message and
    exit code 1, never a traceback."""
    real = results_module.write_atomic
    disk = {"full": False}

    def filling_disk(path, write, **options):
        path = Path(path)
        if path.name == "run.json" and path.parent.name == "x=2" and b'"running"' not in written(write):
            disk["full"] = True
        if disk["full"]:
            if path.name == "results.csv" and space_comes_back:
                disk["full"] = False  # this write fails, the next ones succeed
            raise no_space(path)
        return real(path, write, **options)

    monkeypatch.setattr(results_module, "write_atomic", filling_disk)
    out = tmp_path / "sweep"
    code, stdout, stderr = run_main(capsys, "sweep", PROBE, "-p", "x", "1", "2", "4", "--out", out)
    assert code == 1, stderr
    assert "Traceback" not in stderr
    assert "results.csv" in stderr and "No space left on device" in stderr
    assert "not started" in stderr  # x=4 was not started on a full disk
    assert not (out / "x=2" / "run.json").exists() and not (out / "x=4").exists()
    assert json.loads((out / "x=1" / "run.json").read_text())["status"] == "ok"
    rows = read_csv(out / "results.csv")
    if space_comes_back:  # results.csv reflects every finished run
        assert [rows[name]["status"] for name in ("x=1", "x=2", "x=4")] == ["ok", "failed", "pending"]
        assert "No space left on device" in rows["x=2"]["error"]
    else:  # the last table that could be written; stderr says it is out of date
        assert "could not be written" in stderr


# ---------------------------------------------------------------- 12: options

def test_a_repeated_parameter_is_refused(tmp_path, capsys):
    for command in (["sweep", PROBE, "-p", "x", "1", "2", "-p", "x", "4"],
                    ["run", PROBE, "-p", "x", "1", "-p", "x", "2"]):
        out = tmp_path / command[0]
        code, _, stderr = run_main(capsys, *command, "--out", out)
        assert code == 2, stderr
        assert "-p x" in stderr and "more than once" in stderr
        assert not out.exists()


@pytest.mark.parametrize("option, value, allowed", [
    ("--timeout", "0", "> 0"), ("--timeout", "-5", "> 0"), ("--timeout", "nan", "finite"),
    ("--timeout", "inf", "finite"), ("--jobs", "0", ">= 1"), ("--jobs", "-2", ">= 1")])
def test_bad_timeout_and_jobs_are_refused(option, value, allowed, tmp_path, capsys):
    commands = [["sweep", PROBE, "-p", "x", "1", "2"]] + ([["run", PROBE]] if option == "--timeout" else [])
    for command in commands:
        out = tmp_path / command[0]
        code, _, stderr = run_main(capsys, *command, option, value, "--out", out)
        assert code == 2, stderr
        assert option in stderr and repr(value) in stderr and allowed in stderr, stderr
        assert not out.exists()


def test_an_unknown_kernel_is_refused_before_any_run(tmp_path, capsys):
    for command in (["sweep", PROBE, "-p", "x", "1", "2"], ["run", PROBE]):
        out = tmp_path / command[0]
        code, _, stderr = run_main(capsys, *command, "--kernel", "pyhton3", "--out", out)
        assert code == 2, stderr
        assert "--kernel 'pyhton3'" in stderr and "python3" in stderr.split("pyhton3", 2)[-1]
        assert not out.exists()


def test_a_metric_typo_is_an_error(tmp_path, capsys):
    out = tmp_path / "sweep"
    # no finished run to check against: the runs go ahead, then the command fails and says why
    code, _, stderr = run_main(capsys, "sweep", PROBE, "--seeds", "0", "--out", out, "--metric", "acuracy")
    assert code == 1, stderr
    assert "--metric 'acuracy'" in stderr and "accuracy" in stderr.split("acuracy", 1)[1]
    assert not (out / "results.png").exists()
    # with finished runs in the sweep directory (any grid) the name is checked before anything runs
    code, _, stderr = run_main(capsys, "sweep", PROBE, "-p", "x", "1", "2", "--out", out,
                               "--metric", "acuracy")
    assert code == 2, stderr
    assert "--metric 'acuracy'" in stderr and "student.top1_accuracy" in stderr
    assert not (out / "x=1").exists()
    # a right name still works (and the finished run is resumed, not re-run)
    code, _, stderr = run_main(capsys, "sweep", PROBE, "--seeds", "0", "--out", out, "--metric", "loss")
    assert code == 0, stderr
    assert len(executions(out / "seed=0")) == 1 and (out / "results.png").exists()


def test_a_value_error_while_planning_is_reported_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    """Where the notebook-level range checks (distill_lib.profiles) plug in: any ValueError raised
    while the runs are planned is an exit-2 refusal that leaves no directory behind."""
    from distill_lib.batch import runner, sweep as sweep_module

    original = runner.check_parameters

    def refuse_temperature(notebook, params, declared=None):
        if "x" in params and str(params["x"]) in ("-1", "-1.0"):
            raise ValueError("parameter 'x' must be >= 0; got -1.0")
        return original(notebook, params, declared)

    monkeypatch.setattr(runner, "check_parameters", refuse_temperature)
    monkeypatch.setattr(sweep_module, "check_parameters", refuse_temperature)
    for command in (["sweep", PROBE, "-p", "x", "1", "-1"], ["run", PROBE, "-p", "x", "-1"],
                    ["sweep", PROBE, "-p", "x", "1", "-1", "--cluster", "tcp://127.0.0.1:9"]):
        out = tmp_path / command[0]
        code, _, stderr = run_main(capsys, *command, "--out", out)
        assert code == 2, stderr
        assert stderr.startswith("error: ") and "must be >= 0; got -1.0" in stderr and "Traceback" not in stderr
        assert not out.exists()


# ---------------------------------------------------------------- 13: --cluster

@pytest.fixture
def http_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("kind", ["http scheme", "tcp to an http server", "refused", "no port", "garbage"])
def test_a_bad_cluster_address_fails_within_seconds(kind, tmp_path, http_server):
    address = {"http scheme": f"http://127.0.0.1:{http_server}",
               "tcp to an http server": f"tcp://127.0.0.1:{http_server}",
               "refused": f"tcp://127.0.0.1:{free_port()}",
               "no port": "tcp://127.0.0.1",
               "garbage": "tcp://no such host:x"}[kind]
    out = tmp_path / "sweep"
    started = time.monotonic()
    try:
        finished = cli("sweep", PROBE, "-p", "x", "1", "2", "--out", out, "--cluster", address, timeout=40)
    except subprocess.TimeoutExpired:
        pytest.fail(f"--cluster {address} did not fail within 40 s")
    took = time.monotonic() - started
    assert finished.returncode == 2, finished.stderr
    assert f"--cluster {address!r}" in finished.stderr and "Traceback" not in finished.stderr, finished.stderr
    assert took < 15, f"took {took:.1f} s"
    assert not out.exists()


# ---------------------------------------------------------------- 14: SIGKILL of the runner

def test_sigkill_of_the_runner_takes_papermill_and_kernel_along(tmp_path):
    out = tmp_path / "out"
    runner = start_cli("run", PROBE, "-p", "sleep_s", "120", "--out", out)
    try:
        kernel_pid = wait_for_kernel(out / "probe", runner)
        children = psutil.Process(runner.pid).children(recursive=True)
        assert kernel_pid in [child.pid for child in children]
        runner.kill()
        runner.communicate()
        _, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"left running after SIGKILL of the runner: {[p.cmdline()[:3] for p in alive]}"
    finally:
        finish(runner)
    # an immediate rerun owns its directory: its outcome is its own
    [result] = run_notebooks([PROBE], out=out, params={"x": "2"})
    assert result.ok and result.metrics["accuracy"] == 20.0
    assert len(executions(out / "probe")) == 2
    assert read_metrics(out / "probe")["params"]["x"] == 2.0


def test_a_live_owner_of_a_run_directory_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "out"
    runner = start_cli("run", PROBE, "-p", "sleep_s", "120", "--out", out)
    try:
        wait_for_kernel(out / "probe", runner)
        code, _, stderr = run_main(capsys, "run", PROBE, PLAIN, "--out", out)
        assert code == 2, stderr
        assert "in use" in stderr and f"pid {runner.pid}" in stderr and str(out / "probe") in stderr
        assert len(executions(out / "probe")) == 1 and not (out / "plain").exists()
        assert json.loads((out / "probe" / "run.json").read_text())["status"] == "running"
    finally:
        finish(runner)


def test_processes_of_a_dead_owner_are_killed_before_a_rerun(tmp_path):
    """What PR_SET_PDEATHSIG cannot reach (a kernel of another kind, a runner on a host that went
    away): the rerun finds the previous owner's processes by the token in their environment."""
    from distill_lib.batch import runner

    run_dir = tmp_path / "probe"
    run_dir.mkdir()
    token = uuid.uuid4().hex
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                              env=dict(os.environ, **{runner.OWNER_ENV: token}), start_new_session=True)
    try:
        dead_owner = {"pid": 2 ** 22 + 1, "host": socket.gethostname(), "token": token,
                      "command": "python -m distill_lib run probe"}
        (run_dir / runner.LOCK_FILE).write_text(json.dumps(dead_owner))
        [result] = run_notebooks([PROBE], out=tmp_path)
        assert result.ok
        orphan.wait(timeout=10)  # killed (psutil may have reaped it first: no exit code to check)
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


# ---------------------------------------------------------------- 15: resume checks what it trusts

def test_resume_reruns_truncated_forged_or_mismatched_results(tmp_path):
    out = tmp_path / "sweep"
    first = sweep(PROBE, {"x": [1, 2, 4, 5]}, out=out, jobs=2)
    assert [r.status for r in first.results] == ["ok"] * 4
    runs = {x: out / f"x={x}" for x in (1, 2, 4, 5)}
    # 1: cut off, as by a full disk or a crash of whatever copied it
    text = (runs[1] / "metrics.json").read_text()
    (runs[1] / "metrics.json").write_text(text[: len(text) // 2])
    # 2: a forged number, still valid JSON of the right shape
    record = json.loads((runs[2] / "metrics.json").read_text())
    record["metrics"]["accuracy"] = 99.0
    (runs[2] / "metrics.json").write_text(json.dumps(record))
    # 4: metrics of another setting, with run.json's checksum forged to match
    record = json.loads((runs[4] / "metrics.json").read_text())
    record["params"]["x"] = 8.0
    forged = json.dumps(record).encode()
    (runs[4] / "metrics.json").write_bytes(forged)
    status = json.loads((runs[4] / "run.json").read_text())
    status["metrics_sha256"] = hashlib.sha256(forged).hexdigest()
    (runs[4] / "run.json").write_text(json.dumps(status))
    again = sweep(PROBE, {"x": [1, 2, 4, 5]}, out=out, jobs=2)
    assert [(r.name, r.resumed) for r in again.results] == [
        ("x=1", False), ("x=2", False), ("x=4", False), ("x=5", True)]
    assert [len(executions(runs[x])) for x in (1, 2, 4, 5)] == [2, 2, 2, 1]
    assert [r.metrics["accuracy"] for r in again.results] == [10.0, 20.0, 40.0, 50.0]
    assert read_csv(out / "results.csv")["x=2"]["accuracy"] == "20.0"


# ---------------------------------------------------------------- 16: one sweep per directory

def test_a_second_sweep_into_a_busy_directory_is_refused_and_a_crash_frees_it(tmp_path, capsys):
    out = tmp_path / "sweep"
    first = start_cli("sweep", PROBE, "-p", "sleep_s", "120", "--seeds", "0", "--out", out)
    try:
        wait_for_kernel(out / "seed=0", first)
        code, _, stderr = run_main(capsys, "sweep", PROBE, "-p", "x", "1", "2", "--out", out)
        assert code == 2, stderr
        assert "in use" in stderr and f"pid {first.pid}" in stderr and "sweep" in stderr
        assert not (out / "x=1").exists() and len(executions(out / "seed=0")) == 1
        first.kill()  # a crash: the kernel's lock goes with the process
        first.communicate()
    finally:
        finish(first)
    code, _, stderr = run_main(capsys, "sweep", PROBE, "-p", "x", "1", "--seeds", "0", "--out", out)
    assert code == 0, stderr
    assert read_csv(out / "results.csv")["seed=0"]["status"] == "ok"
    assert len(executions(out / "seed=0")) == 2


# ---------------------------------------------------------------- 17: a closed pipe

def test_a_closed_stdout_does_not_stop_the_sweep(tmp_path):
    """`python -m distill_lib sweep ... | head -1`: the runs go on, silently, and results.csv is right."""
    out = tmp_path / "sweep"
    process = start_cli("sweep", PROBE, "-p", "x", "1", "2", "--out", out)
    try:
        first_line = process.stdout.readline()
        process.stdout.close()  # what head does after its line
        stderr = process.stderr.read()
        process.wait(timeout=120)
    finally:
        finish(process)
    assert first_line.startswith("[1/2] x=1"), first_line
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr and "Exception ignored" not in stderr
    rows = read_csv(out / "results.csv")
    assert [rows[name]["status"] for name in ("x=1", "x=2")] == ["ok", "ok"]
