"""Run notebooks headlessly with papermill: check parameters first, then one child process per run.

Each run executes ``python -m papermill`` in a child process of its own session, so a run that
hangs past its time limit is killed together with its kernel (found through psutil, since
jupyter_client starts kernels in a session of their own). The child never imports distill_lib,
so a run costs no torch import beyond what the notebook itself does.

Run directory layout: ``<run_dir>/<notebook>.ipynb`` (executed, with outputs), ``metrics.json``
(written by the notebook), ``run.json`` (status written by the runner), ``run.log`` (papermill's
log), ``.run.lock`` (who owns the directory). Parameters flow one way: only names the notebook
declares in its ``parameters`` cell are accepted, parsed to the declared type before anything runs.

Ownership: the runner writes only in run directories it made. A planned run directory must be
new, empty or hold ``.run.lock``; no two runs share one; none of the runner's files there may be
an input notebook (:func:`check_run_dirs`). Its files from an earlier run are removed before the
run, so a link left at one of their names is replaced, never written through. A run holds an
``flock`` on ``.run.lock`` while it runs, so a second runner is refused instead of both writing
one directory; a directory deleted or replaced meanwhile fails the run, and nothing more is
written there. The papermill child and the kernel of the default
kernelspec get ``PR_SET_PDEATHSIG`` (Linux), so a runner killed with SIGKILL takes them along;
both also carry the owner's token in their environment, and a later owner of the directory kills
any process still carrying a dead owner's token before it starts (kernels of other kinds, hosts
without prctl).

Records: ``run.json`` is "running" only while its runner is alive. A runner that cannot write the
final record (a full disk) removes it and reports the run failed; a run counts as finished only
with run.json "ok" and the sha256 of ``metrics.json`` it recorded (see ``sweep.finished_result``).
"""
from __future__ import annotations

import ctypes
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .console import say
from .guards import (DirectoryBusy, DirectoryLock, busy_error, check_kernel, check_out_dir, check_switches,
                     check_timeout, holder_of, kill_processes_with_token, refuse_foreign_directory)
from .params import (PACKAGE_ROOT, PROFILES, check_not_reserved, check_parameters, check_settings,
                              check_profile, describe_parameters, injected_parameters,
                              notebook_parameters, resolve_notebooks, run_dir_of)
from ..core.results import METRICS_FILE, flatten_numbers, headline_of, read_metrics_checksummed, write_json_atomic

__all__ = ["PROFILES", "RunSpec", "RunResult", "check_parameters", "describe_parameters",
           "execute_run", "format_summary", "resolve_notebooks", "run_notebooks"]

DEFAULT_KERNEL = "python3"
DEFAULT_TIMEOUT_S = 3600
RUN_FILE = "run.json"
LOG_FILE = "run.log"
LOCK_FILE = ".run.lock"
OWNER_ENV = "DISTILL_RUN_OWNER"  # the owning runner's token, in papermill's and the kernel's environment
# ipykernel's inline backend is headless and embeds PNGs in the executed notebook; "Agg" there
# would drop every figure from the report, so the kernel gets the inline backend explicitly.
KERNEL_MPLBACKEND = "module://matplotlib_inline.backend_inline"


# ---------------------------------------------------------------- one run

@dataclass
class RunSpec:
    """One notebook execution, everything the child needs (plain data: it travels to Dask)."""

    notebook: str
    run_dir: str
    params: dict
    name: str = ""
    timeout: float = DEFAULT_TIMEOUT_S
    kernel: str = DEFAULT_KERNEL
    log_output: bool = False
    cuda_device: str | None = None


@dataclass
class RunResult:
    """How a run ended. ``failed_cell`` is the 0-based cell index in the source notebook."""

    name: str
    notebook: str
    run_dir: str
    params: dict
    status: str  # "ok", "failed" or "interrupted"
    wall_s: float = 0.0
    error: str | None = None
    failed_cell: int | None = None
    failed_source: str | None = None
    metrics: dict = field(default_factory=dict)  # numeric metrics, dotted keys
    resumed: bool = False  # finished in an earlier sweep, not executed again
    metrics_sha256: str | None = None  # of metrics.json as the runner read it when the run ended
    headline: dict | None = None  # metrics.json's metrics.headline, when it has one

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def failure_text(self) -> str:
        where = "" if self.failed_cell is None else f"cell {self.failed_cell} `{self.failed_source}`: "
        return f"{where}{self.error or self.status}"

    def describe_failure(self) -> str:
        return f"{self.name}: {self.failure_text()}"


class ChildProcesses:
    """The live child processes, so Ctrl-C in the main thread can stop runs in worker threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self._live: set = set()
        self.stopping = threading.Event()

    def add(self, proc) -> None:
        with self._lock:
            self._live.add(proc)
        if self.stopping.is_set():  # started just as stop_all ran: it must not outlive the stop
            kill_process_tree(proc)

    def discard(self, proc) -> None:
        with self._lock:
            self._live.discard(proc)

    def stop_all(self) -> None:
        self.stopping.set()
        with self._lock:
            live = list(self._live)
        for proc in live:
            kill_process_tree(proc)


CHILDREN = ChildProcesses()


def execute_run(spec: RunSpec) -> RunResult:
    """Execute one notebook in a child process within ``spec.timeout`` s; failures are returned.

    The run directory is locked for the run (another live owner: the run fails, "not started",
    and nothing of the owner's is touched). The runner's own trouble (a full disk, no fork)
    fails this run only; ``run.json`` never stays "running" once this function has returned.
    """
    run_dir = Path(spec.run_dir)
    started = time.monotonic()
    lock = DirectoryLock(run_dir / LOCK_FILE, "run directory")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except (OSError, DirectoryBusy) as error:
        reason = str(error) if isinstance(error, DirectoryBusy) else f"cannot use {run_dir}: {error}"
        return _unrecorded(spec, f"not started: {reason}")
    try:
        return _execute_owned(spec, run_dir, lock, started)
    finally:
        lock.release()


def _execute_owned(spec: RunSpec, run_dir: Path, lock: DirectoryLock, started: float) -> RunResult:
    previous = lock.previous  # left by an owner that died without releasing the directory
    if previous.get("token") and previous.get("host") in (None, socket.gethostname()):
        kill_processes_with_token(OWNER_ENV, previous["token"])  # its papermill and kernel, if alive
    output = run_dir / Path(spec.notebook).name
    if same_file(output, Path(spec.notebook)):  # (plan_runs refuses this; a RunSpec made by hand too)
        return _unrecorded(spec, f"not started: the executed notebook {output} would replace the notebook itself")
    try:
        # A failed re-run must not show the old outcome; and the run writes new files, never
        # through a link or hard link left at one of its names (it would write a user's file).
        for stale in (METRICS_FILE, RUN_FILE, LOG_FILE, output.name):
            (run_dir / stale).unlink(missing_ok=True)
    except OSError as error:
        return _unrecorded(spec, f"not started: cannot clear the previous outcome in {run_dir}: {error}")
    if CHILDREN.stopping.is_set():
        return _save(_collect(spec, output, None, "interrupted", 0.0))
    try:
        write_json_atomic(run_dir / RUN_FILE, {**asdict(spec), "status": "running", "owner": {
            "pid": os.getpid(), "host": socket.gethostname(), "token": lock.token}})
    except OSError as error:  # nothing was written (atomic), and the old record is gone
        return _unrecorded(spec, f"not started: the runner could not write {run_dir / RUN_FILE}: {error}")
    returncode = None
    try:
        returncode, stop_reason = _run_child(spec, output, lock.token)
    except KeyboardInterrupt:
        _finish(spec, lock, output, None, "interrupted", time.monotonic() - started)
        raise
    except Exception as error:  # the runner's own trouble (disk, fork) fails this run only
        stop_reason = f"runner error: {error!r}"
    return _finish(spec, lock, output, returncode, stop_reason, time.monotonic() - started)


def _finish(spec: RunSpec, lock: DirectoryLock, output: Path, returncode, stop_reason, wall_s: float) -> RunResult:
    """The run's result, recorded in its run.json, unless the run directory was deleted or
    replaced meanwhile: then the run failed (its log went with the directory), and nothing is
    written into whatever stands at that path now."""
    lost = lock.lost()
    if lost:
        result = _unrecorded(spec, f"{lost}: its run.log went with it, so the outcome is unknown; "
                                   "nothing more was written there")
        result.wall_s = round(wall_s, 2)
        return result
    return _save(_collect(spec, output, returncode, stop_reason, wall_s))


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: the same path after links, or hard links to one inode."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def _unrecorded(spec: RunSpec, error: str) -> RunResult:
    return RunResult(name=spec.name, notebook=str(spec.notebook), run_dir=str(spec.run_dir),
                     params=spec.params, status="failed", error=error)


def _run_child(spec: RunSpec, output: Path, token: str) -> tuple[int | None, str | None]:
    """(exit code, why it was stopped: None, "interrupted" or "timed out after N s")."""
    import yaml  # papermill's own dependency; its -f parameter file is YAML

    with tempfile.TemporaryDirectory(prefix="distill-run-") as scratch:
        params_file = Path(scratch) / "params.yaml"
        params_file.write_text(yaml.safe_dump(spec.params), encoding="utf-8")
        command = [sys.executable, "-m", "papermill", str(spec.notebook), str(output),
                   "-f", str(params_file), "--kernel", spec.kernel,
                   "--cwd", str(Path(spec.notebook).resolve().parent), "--no-progress-bar",
                   "--log-output" if spec.log_output else "--no-log-output",
                   "--execution-timeout", str(math.ceil(spec.timeout))]
        with open(Path(spec.run_dir) / LOG_FILE, "w", encoding="utf-8") as log:
            proc = subprocess.Popen(command, env=_child_env(spec, Path(scratch), token),
                                    stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE if spec.log_output else log,
                                    stderr=subprocess.STDOUT, start_new_session=True, text=True,
                                    preexec_fn=_die_with_parent())
            CHILDREN.add(proc)
            echo = _echo_thread(proc, log) if spec.log_output else None
            try:
                return _wait(proc, spec.timeout)
            finally:
                kill_process_tree(proc)  # also on Ctrl-C; a no-op when it already ended
                CHILDREN.discard(proc)
                if echo:
                    echo.join(timeout=5)


def _wait(proc, timeout: float) -> tuple[int | None, str | None]:
    try:
        returncode = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:g} s"
    stopped_by_us = returncode != 0 and CHILDREN.stopping.is_set()
    return returncode, ("interrupted" if stopped_by_us else None)


# ---------------------------------------------------------------- children die with the runner

_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """A Popen ``preexec_fn`` that has Linux SIGKILL the child when the thread that started it
    (and so the runner) dies, and ends a child whose runner died before the setting took hold;
    None where prctl is not available.

    Everything is resolved here, in the parent: between fork and exec the child only calls the
    C function and ``os.getppid``.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    arguments = (_PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), ctypes.c_ulong(0),
                 ctypes.c_ulong(0), ctypes.c_ulong(0))
    parent = os.getpid()

    def preexec():
        prctl(*arguments)
        if os.getppid() != parent:  # the runner is already gone: do not run at all
            os._exit(1)

    return preexec


# The pinned kernel's launcher: the same PR_SET_PDEATHSIG towards papermill (its parent, which
# jupyter_client names in JPY_PARENT_PID), then ipykernel exactly as `python -m ipykernel_launcher`.
_KERNEL_LAUNCHER = """\
import ctypes, os, runpy, signal, sys
if sys.platform.startswith('linux'):
    try:
        ctypes.CDLL(None).prctl(1, ctypes.c_ulong(signal.SIGKILL), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))
    except (OSError, AttributeError):
        pass
    parent = os.environ.get('JPY_PARENT_PID', '')
    if parent.isdigit() and os.getppid() != int(parent):
        sys.exit('distill_lib kernel launcher: papermill ended before the kernel started')
runpy.run_module('ipykernel_launcher', run_name='__main__', alter_sys=True)
"""


def _child_env(spec: RunSpec, scratch: Path, token: str) -> dict:
    env = dict(os.environ, MPLBACKEND=KERNEL_MPLBACKEND, PYTHONUNBUFFERED="1",
               JUPYTER_RUNTIME_DIR=str(scratch / "runtime"))  # connection files die with scratch
    env[OWNER_ENV] = token  # inherited by the kernel: how a later owner finds leftovers
    # The kernel imports the same distill_lib as the runner, installed or not.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    if spec.kernel == DEFAULT_KERNEL:
        env["JUPYTER_PATH"] = os.pathsep.join(filter(None, [_pin_kernel(scratch), env.get("JUPYTER_PATH")]))
    if spec.cuda_device is not None:
        env["CUDA_VISIBLE_DEVICES"] = spec.cuda_device
    return env


def _pin_kernel(scratch: Path) -> str:
    """A "python3" kernelspec running this interpreter; JUPYTER_PATH puts it before any other.

    Without it a user-level python3 kernelspec pointing at another Python could win. Its launcher
    ties the kernel's life to papermill's (``_KERNEL_LAUNCHER``).
    """
    spec_dir = scratch / "kernels" / DEFAULT_KERNEL
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-c", _KERNEL_LAUNCHER, "-f", "{connection_file}"]
    (spec_dir / "kernel.json").write_text(json.dumps(
        {"argv": argv, "display_name": "Python 3 (ipykernel)", "language": "python"}))
    return str(scratch)


def _echo_thread(proc, log) -> threading.Thread:
    def copy_lines():  # goes on copying to run.log when stdout's reader has gone (say is silent)
        for line in proc.stdout:
            log.write(line)
            say(line, end="")

    thread = threading.Thread(target=copy_lines, daemon=True)
    thread.start()
    return thread


def kill_process_tree(proc) -> None:
    """Kill a child and all its descendants (the kernel lives in a session of its own)."""
    import psutil

    if proc.poll() is not None:
        return
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)  # before they are orphaned
    except psutil.NoSuchProcess:
        descendants = []
    proc.kill()
    for process in descendants:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(descendants, timeout=10)
    proc.wait()  # reaped by subprocess itself, so its return code stays truthful


def _collect(spec, output: Path, returncode, stop_reason, wall_s: float) -> RunResult:
    result = RunResult(name=spec.name, notebook=str(spec.notebook), run_dir=str(spec.run_dir),
                       params=spec.params, status="ok", wall_s=round(wall_s, 2))
    if stop_reason or returncode != 0:
        result.status = "interrupted" if stop_reason == "interrupted" else "failed"
        result.failed_cell, result.failed_source, cell_error, unreadable = _failed_cell(output)
        result.error = stop_reason or cell_error or _last_log_line(Path(spec.run_dir) / LOG_FILE)
        if unreadable and output.exists():
            result.error += f" (the executed notebook {output.name} is cut off)"
    elif not output.is_file():
        result.status = "failed"
        result.error = f"papermill ended without error but the executed notebook {output} is missing"
    try:
        record, sha256 = read_metrics_checksummed(spec.run_dir)
        result.metrics = flatten_numbers(record.get("metrics", {}))
        result.metrics_sha256 = sha256
        result.headline = headline_of(record)
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    return result


def _save(result: RunResult) -> RunResult:
    """Write the run's final ``run.json``. When that fails (a full disk) the run is failed with
    the reason, and the old "running" record is removed: a later sweep runs it again."""
    path = Path(result.run_dir) / RUN_FILE
    try:
        write_json_atomic(path, asdict(result))
    except (OSError, TypeError, ValueError) as error:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass
        finished = "finished, but " if result.ok else ""
        note = f"{finished}the runner could not write {path}: {error}"
        result.status = "failed" if result.status == "ok" else result.status
        result.error = f"{result.error}; {note}" if result.error else note
    return result


def _failed_cell(output: Path) -> tuple[int | None, str | None, str | None, bool]:
    """(source-notebook cell index, its first line, "Error: message") of the cell that failed or
    hung, and whether the executed notebook could not be read (missing, or cut off)."""
    import nbformat

    try:
        notebook = nbformat.read(str(output), as_version=4)
    except Exception:  # no output notebook (the run died before papermill wrote one), or a cut-off one
        return None, None, None, True
    cells = notebook.get("cells", [])  # (nbformat itself refuses a notebook without cells)
    index = -1
    for cell in cells:
        tags = cell.metadata.get("tags", [])
        if "papermill-error-cell-tag" in tags:
            continue
        index += "injected-parameters" not in tags  # that cell is not in the source notebook
        errors = [out for out in cell.get("outputs", []) if out.get("output_type") == "error"]
        state = cell.metadata.get("papermill", {})
        if errors or state.get("exception") or state.get("status") == "running":
            first_line = next((line for line in cell.source.splitlines() if line.strip()), "")
            message = f"{errors[0].ename}: {errors[0].evalue}" if errors else None
            return index, first_line.strip(), message, False
    return None, None, None, False


def _last_log_line(log_path: Path) -> str:
    try:
        lines = [line.strip() for line in log_path.read_text(encoding="utf-8").splitlines()]
    except OSError:
        return "failed (no log)"
    return next((line[:300] for line in reversed(lines) if line), "failed (empty log)")


# ---------------------------------------------------------------- several notebooks

def run_notebooks(notebooks=None, *, profile: str = "quick", out="runs", params: dict | None = None,
                  timeout: float = DEFAULT_TIMEOUT_S, kernel: str = DEFAULT_KERNEL,
                  log_output: bool = False, notebooks_dir=None, lang: str = "en") -> list[RunResult]:
    """Execute notebooks one after another into ``out/<notebook stem>/``; all checked first.
    ``lang="zh"`` runs the Chinese edition's notebooks (short names looked up in ``notebooks/zh``);
    a notebook of the Chinese edition, however named, runs in ``out/zh/<notebook stem>/``.

    With several notebooks, a ``params`` name goes to the notebooks that declare it; a name no
    selected notebook declares is refused. So is a run directory another runner is using, and an
    ``out`` that cannot be created or written (``ValueError``, before anything runs).
    """
    specs = plan_runs(resolve_notebooks(notebooks or [], notebooks_dir, lang), profile=profile, out=out,
                      params=params or {}, timeout=timeout, kernel=kernel, log_output=log_output)
    refuse_busy(specs)
    check_out_dir(out)
    results = []
    for number, spec in enumerate(specs, 1):
        say(f"[{number}/{len(specs)}] {spec.name} ...", end="\n" if log_output else " ")
        results.append(execute_run(spec))
        say(progress_word(results[-1]))
    return results


def check_options(profile, names, timeout, kernel) -> float:
    """The options every plan (``plan_runs``, ``sweep.plan_sweep``) checks first, in this order:
    the profile, that no parameter name is one the runner sets itself, the time limit, the kernel.
    ``ValueError`` on the first refusal; returns the time limit in seconds."""
    check_profile(profile)
    check_not_reserved(names)
    timeout = check_timeout(timeout)
    check_kernel(kernel, DEFAULT_KERNEL)
    return timeout


def plan_runs(paths, *, profile, out, params, timeout, kernel, log_output) -> list[RunSpec]:
    """The run specs, with every parameter checked; raises ``ValueError`` before anything runs."""
    timeout = check_options(profile, params, timeout, kernel)
    check_switches(log_output=log_output)
    declared_by = {path: notebook_parameters(path) for path in paths}
    orphans = [name for name in params if not any(name in d for d in declared_by.values())]
    if orphans:  # strict for one notebook; for several, a name must be known to one of them
        path = paths[0] if len(paths) == 1 else None
        if path is not None:
            check_parameters(path, params, declared_by[path])
        listing = "\n".join(describe_parameters(p, d) for p, d in declared_by.items())
        raise ValueError(f"unknown parameter {', '.join(map(repr, orphans))}.\n{listing}")
    specs = []
    for path, declared in declared_by.items():
        run_dir = run_dir_of(out, path)
        values = {**{k: v for k, v in params.items() if k in declared},
                  **injected_parameters(declared, profile=profile, run_dir=run_dir)}
        values = check_parameters(path, values, declared)
        check_settings(path, profile, values)
        specs.append(RunSpec(notebook=str(path.resolve()), run_dir=str(run_dir.resolve()),
                             name=run_dir_of("", path).as_posix(),  # 00_quickstart, or zh/00_quickstart
                             params=values, timeout=timeout, kernel=kernel, log_output=log_output))
    check_run_dirs(specs, paths)
    return specs


def runner_files(spec: RunSpec) -> list[Path]:
    """The files the runner itself writes in a run's directory (the notebook adds its figures)."""
    run_dir = Path(spec.run_dir)
    return [run_dir / Path(spec.notebook).name, run_dir / RUN_FILE, run_dir / LOG_FILE, run_dir / LOCK_FILE,
            run_dir / METRICS_FILE]


def check_run_dirs(specs: list[RunSpec], inputs) -> None:
    """``ValueError`` before anything runs unless every run has a directory of its own, new or
    empty or made by the runner, and no file the runner writes there is one of the ``inputs``
    (``run X/tiny/tiny.ipynb --out X`` would otherwise replace the notebook with its executed copy)."""
    by_dir: dict[str, list[RunSpec]] = {}
    for spec in specs:
        by_dir.setdefault(os.path.realpath(spec.run_dir), []).append(spec)
    for run_dir, sharing in by_dir.items():
        if len(sharing) > 1:
            notebooks = " and ".join(spec.notebook for spec in sharing)
            raise ValueError(f"{notebooks} would all run in {run_dir} (a run directory is named after the "
                             "notebook's file name), each replacing the one before; run them one at a time "
                             "with different --out")
    for spec in specs:
        for path in runner_files(spec):
            for source in inputs:
                if same_file(path, Path(source)):
                    raise ValueError(f"the run would write {path}, which is the notebook {source} itself (an "
                                     "input is never overwritten); choose an --out outside the notebook's folder")
    for spec in specs:
        refuse_foreign_directory(Path(spec.run_dir), "run directory", (LOCK_FILE,))


def refuse_busy(specs: list[RunSpec]) -> None:
    """``DirectoryBusy`` (a ``ValueError``) when a live runner holds one of the run directories.
    Reads lock files only: nothing is created."""
    for spec in specs:
        holder = holder_of(Path(spec.run_dir) / LOCK_FILE)
        if holder is not None:
            raise busy_error("run directory", spec.run_dir, holder)


def progress_word(result: RunResult) -> str:
    if result.resumed:
        return "skipped (finished earlier)"
    detail = f": {result.error}" if not result.ok and result.error else ""
    return f"{'ok' if result.ok else result.status.upper()} {result.wall_s:.1f} s{detail}"


def headline_text(result: RunResult) -> str:
    """The run's headline for the summary: ``+1.67 points (95% CI +1.48 to +1.86), 3 seeds: gain``
    (with the margin where the headline states one), from its metrics.json."""
    headline = result.headline
    if headline is None:
        return "(no headline in metrics.json)" if result.metrics_sha256 else "(no metrics.json)"
    try:
        low, high = (100 * float(v) for v in headline["effect_ci95"])
        margin = headline.get("margin")
        margin_text = f", margin {100 * float(margin):.2f}" if margin is not None else ""
        return (f"{100 * float(headline['effect_mean']):+.2f} points (95% CI {low:+.2f} to {high:+.2f}"
                f"{margin_text}), {int(headline['n_seeds'])} seeds: {headline['verdict']}")
    except (KeyError, TypeError, ValueError):
        return "(headline in metrics.json is malformed)"


def format_summary(results: list[RunResult]) -> str:
    """A table (notebook, status, wall time, the notebook's headline), then one line per failure."""
    width = max([len("notebook")] + [len(r.name) for r in results])
    lines = [f"{'notebook':<{width}}  {'status':<11}  {'wall':>8}  headline"]
    for r in results:
        lines.append(f"{r.name:<{width}}  {r.status:<11}  {r.wall_s:>6.1f} s  {headline_text(r) if r.ok else ''}")
    failures = [r for r in results if not r.ok]
    if failures:
        lines.append(f"\n{len(failures)} of {len(results)} failed:")
        for r in failures:
            output = Path(r.run_dir) / Path(r.notebook).name
            lines.append(f"  {r.describe_failure()}\n    executed notebook: {output}")
    return "\n".join(lines)
