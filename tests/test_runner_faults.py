"""The runner under faults: bad options, unusable directories, a full disk, SIGKILL, two sweeps at
once, forged results, a closed pipe. Each refusal must come before any work starts (exit code 2,
no traceback, nothing created); each fault must be survived with nothing lost and nothing left
running.

Same fixture notebooks as tests/test_runner.py (no torch, a kernel start per run). Every process a
test starts carries a marker in its environment (the runner passes its environment on to
papermill and the kernel); a test that leaves one running fails and the process is killed.
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid

import psutil
import pytest

from test_runner import PROBE, REPO, read_csv

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


def start_cli(*args, **popen_args) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONFAULTHANDLER="1")
    return subprocess.Popen([sys.executable, "-m", "distill_lib", *map(str, args)], cwd=REPO, env=env,
                            text=True, **{"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen_args})


def finish(process: subprocess.Popen) -> None:
    """Stop a background runner the way a user would (SIGTERM), or kill it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


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
