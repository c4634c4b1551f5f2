"""Parameter sweeps: a grid of notebook runs (x seeds), resumable, in parallel or on Dask.

Each run gets a directory named from its swept values (``T=4__alpha=0.9__seed=1``). A run that
finished successfully with the same parameters is skipped on the next sweep unless ``force``;
"finished" is checked, not assumed (see :func:`finished_result`). ``results.csv`` is rewritten
atomically after every finished run, so an interrupted sweep keeps everything that finished.

One sweep at a time per directory: the sweep holds an ``flock`` on ``<out>/.sweep.lock`` (freed
by the kernel if the sweep dies). When ``results.csv`` cannot be written (a full disk), no
further run is started; the runs already going finish, and the sweep reports the problem.
"""
from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import os
import queue
import re
import statistics
import uuid
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from ..core.stats import mean_interval
from ..core.results import (flatten_numbers, headline_of, read_metrics_checksummed, to_jsonable, write_atomic,
                            write_text_atomic)
from .console import say
from .guards import (DirectoryLock, check_jobs, check_out_dir, check_switches, connect_cluster,
                     refuse_foreign_directory)
from .runner import (CHILDREN, DEFAULT_KERNEL, DEFAULT_TIMEOUT_S, RUN_FILE, RunResult, RunSpec,
                     _unrecorded, check_options, check_parameters, check_run_dirs, check_settings, execute_run,
                     injected_parameters, notebook_parameters, progress_word, resolve_notebooks, same_file)
from .params import edition_of, run_dir_of

CSV_NAME = "results.csv"
FIGURE_NAME = "results.png"
LOCK_NAME = ".sweep.lock"
_NOT_IN_TABLE = ("run_dir", "interactive")  # the same for every run of a sweep


@dataclass
class SweepResult:
    results: list[RunResult]
    csv_path: Path
    figure_path: Path | None
    problems: list[str] = field(default_factory=list)  # the sweep's own trouble: exit code 1

    @property
    def failed(self) -> list[RunResult]:
        return [r for r in self.results if not r.ok]


def sweep(notebook, grid: dict[str, list], *, seeds=None, profile: str = "quick", out=None,
          jobs: int = 1, force: bool = False, timeout: float = DEFAULT_TIMEOUT_S, cluster=None,
          params: dict | None = None, metric: str | None = None, kernel: str = DEFAULT_KERNEL,
          log_output: bool = False, notebooks_dir=None, lang: str = "en") -> SweepResult:
    """Run ``notebook`` for every combination of ``grid`` values x ``seeds``; collect the results.

    ``grid`` maps parameter names to value lists (strings are parsed to the declared types);
    ``lang="zh"`` sweeps the Chinese edition's notebook (default ``out``: ``runs/sweeps/zh/<notebook>``;
    a run of the other edition in ``out`` is not taken as finished);
    ``params`` holds fixed values for all runs. ``cluster`` is a Dask scheduler address (or a
    ``distributed.Client``); otherwise up to ``jobs`` runs execute at once on this machine.

    Refused with ``ValueError`` before the first run starts (nothing created): any parameter,
    option or ``--metric`` that finished runs in ``out`` show to be wrong, a scheduler that
    cannot be reached, an ``out`` that cannot be written, and an ``out`` another sweep holds.
    Trouble of the sweep's own (``results.csv`` or the figure cannot be written, a ``metric``
    no run has) is listed in ``SweepResult.problems``.
    """
    check_jobs(jobs)
    check_switches(force=force, log_output=log_output)
    path = resolve_notebooks([notebook], notebooks_dir, lang)[0]
    out = Path(out) if out else run_dir_of(Path("runs") / "sweeps", path)  # runs/sweeps[/zh]/<notebook>
    specs, swept = plan_sweep(path, grid, seeds=seeds, params=params or {}, profile=profile,
                              out=out, timeout=timeout, kernel=kernel, log_output=log_output)
    _check_metric_against(metric, out)
    client = connect_cluster(cluster) if cluster is not None else None
    try:
        check_out_dir(out)
        with DirectoryLock(out / LOCK_NAME, "sweep directory"):
            return _sweep_owned(specs, swept, out, title=path.stem, jobs=jobs, force=force,
                                client=client, metric=metric)
    finally:
        if client is not None and client is not cluster:
            client.close()


def _sweep_owned(specs, swept, out: Path, *, title, jobs, force, client, metric) -> SweepResult:
    table = ResultTable(specs, swept, out / CSV_NAME)
    todo = []
    for spec in specs:  # decided under the lock: nobody else is writing these directories
        previous = None if force else finished_result(spec)
        (todo.append(spec) if previous is None else table.add(previous))
    table.write()
    left, how = [], "not started"
    try:
        if client is not None:
            left, how = _run_on_cluster(todo, client, table.add, stop=table.broken), "cancelled"
        else:
            left = _run_locally(todo, jobs, table.add, stop=table.broken)
    finally:
        table.write()  # also after Ctrl-C: what finished is in the table (never raises)
    results = table.results()
    problems = table.problems()
    if left:
        problems.append(f"{len(left)} run{'s' if len(left) > 1 else ''} {how} after {table.path.name} "
                        f"could not be written: {', '.join(spec.name for spec in left)}")
    metric_problem = _metric_missing(metric, results)
    if metric_problem:
        problems.append(metric_problem)
    figure = None
    try:
        figure = plot_sweep(results, swept, out / FIGURE_NAME, metric=metric, title=title)
    except OSError as error:
        problems.append(f"{out / FIGURE_NAME} could not be written ({error})")
    return SweepResult(results=results, csv_path=table.path, figure_path=figure, problems=problems)


def plan_sweep(notebook: Path, grid: dict, *, seeds, params: dict, profile: str, out: Path,
               timeout: float, kernel: str, log_output: bool) -> tuple[list[RunSpec], list[str]]:
    """The run specs of the grid (all values checked) and the names of the swept parameters."""
    timeout = check_options(profile, [*grid, *params], timeout, kernel)
    both = [name for name in grid if name in params]
    if both:
        raise ValueError(f"parameter {both[0]!r} is given both as swept values and as a fixed value; "
                         "give it once")
    declared = notebook_parameters(notebook)
    axes = dict(grid)
    if seeds:
        if "seed" in axes or "seed" in params:
            raise ValueError("give the seeds either with --seeds or with -p seed, not both")
        axes["seed"] = list(seeds)
    if not axes or not all(axes.values()):
        raise ValueError("nothing to sweep: give -p NAME V1 V2 ... (each with a value) and/or --seeds")
    axes = {name: [check_parameters(notebook, {name: v}, declared)[name] for v in values]
            for name, values in axes.items()}
    fixed = check_parameters(notebook, params, declared)
    specs = []
    for combination in itertools.product(*axes.values()):
        point = dict(zip(axes, combination))
        run_dir = (out / run_name(point)).resolve()
        values = {**fixed, **point, **injected_parameters(declared, profile=profile, run_dir=run_dir)}
        check_settings(notebook, profile, values)
        specs.append(RunSpec(notebook=str(notebook.resolve()), run_dir=str(run_dir), params=values,
                             name=run_name(point), timeout=timeout, kernel=kernel, log_output=log_output))
    _refuse_duplicates(specs)
    check_sweep_dir(out, notebook)
    check_run_dirs(specs, [notebook])
    return specs, list(axes)


def check_sweep_dir(out: Path, notebook: Path) -> None:
    """The sweep writes results.csv, results.png and .sweep.lock in ``out``: refused (``ValueError``)
    where those names hold files an earlier sweep did not make, or the notebook itself."""
    refuse_foreign_directory(out, "--out", (LOCK_NAME,), owner_files=(CSV_NAME, FIGURE_NAME))
    for name in (CSV_NAME, FIGURE_NAME, LOCK_NAME):
        if same_file(out / name, notebook):
            raise ValueError(f"the sweep would write {out / name}, which is the notebook {notebook} itself; "
                             "choose another --out")


def run_name(point: dict) -> str:
    """A stable, filesystem-safe directory name, e.g. ``T=4__alpha=0.9__seed=1``."""
    text = "__".join(f"{name}={_short(value)}" for name, value in point.items())
    safe = re.sub(r"[^A-Za-z0-9._=+-]+", "-", text)
    if safe != text or len(safe) > 120:  # keep names distinct when characters were replaced
        digest = hashlib.sha1(json.dumps(to_jsonable(point), sort_keys=True).encode()).hexdigest()
        safe = f"{safe[:110]}__{digest[:8]}"
    return safe


def _short(value) -> str:
    """4.0 -> "4", 0.9 -> "0.9"; the full repr only where the short form would lose digits."""
    if isinstance(value, float):
        short = format(value, "g")
        return short if float(short) == value else repr(value)
    return str(value)


def _refuse_duplicates(specs: list[RunSpec]) -> None:
    names = [spec.name for spec in specs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"the grid repeats runs (same values after parsing): {', '.join(repeated)}")


def finished_result(spec: RunSpec) -> RunResult | None:
    """The earlier result of this run if it can be trusted, else None (the run is run again).

    Trusted means: ``run.json`` says ok, holds the run's parameters and the sha256 of
    ``metrics.json`` that the runner recorded when the run ended; ``metrics.json`` has exactly
    those bytes, is a record with ``params`` and ``metrics`` objects, and the parameters it
    recorded agree with the run's. A truncated, edited or foreign metrics.json, or a run.json
    from before checksums were recorded, means the run is executed again.
    """
    run_dir = Path(spec.run_dir)
    try:
        record = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
        written, written_sha256 = read_metrics_checksummed(run_dir)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("status") != "ok":
        return None
    if edition_of(str(record.get("notebook", ""))) != edition_of(spec.notebook):  # the other language's edition
        return None
    if not isinstance(record.get("params"), dict) or \
            _identity(record["params"]) != _identity(to_jsonable(spec.params)):
        return None
    if record.get("metrics_sha256") != written_sha256:
        return None
    if not (isinstance(written, dict) and isinstance(written.get("metrics"), dict)
            and isinstance(written.get("params"), dict)):
        return None
    if not _recorded_params_agree(written["params"], spec.params):
        return None
    known = {f.name for f in fields(RunResult)} - {"name", "notebook", "run_dir", "params", "metrics"}
    try:
        earlier = RunResult(name=spec.name, notebook=spec.notebook, run_dir=spec.run_dir, params=spec.params,
                            **{k: v for k, v in record.items() if k in known})
    except TypeError:
        return None
    return replace(earlier, metrics=flatten_numbers(written["metrics"]), headline=headline_of(written), resumed=True)


def _identity(params: dict) -> dict:
    return {name: value for name, value in params.items() if name != "run_dir"}


def _recorded_params_agree(recorded: dict, wanted: dict) -> bool:
    """Each parameter the runner passed (not None, which means "the profile's value") and the
    notebook recorded must have the same value. A value the notebook recorded as another kind of
    thing (a comma-separated string it parsed into a list) cannot be compared and is let pass."""
    for name, value in to_jsonable(wanted).items():
        if name == "run_dir" or value is None or name not in recorded:
            continue
        if _kind(recorded[name]) == _kind(value) and recorded[name] != value:
            return False
    return True


def _kind(value) -> str:
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, (int, float)) else type(value).__name__


def _check_metric_against(metric: str | None, out: Path) -> None:
    """``--metric`` against the metrics of the runs that finished ok in the sweep directory
    (this grid's or an earlier one's); nothing to check against when there are none."""
    if metric is None:
        return
    names: dict = {}
    try:
        records = sorted(out.glob(f"*/{RUN_FILE}"))[:10_000]
    except OSError:
        records = []
    for path in records:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("status") == "ok" and isinstance(record.get("metrics"), dict):
            names.update(dict.fromkeys(record["metrics"]))
    if names and metric not in names:
        raise ValueError(f"--metric {metric!r} is not a metric of the finished runs in {out}; "
                         f"their metrics: {', '.join(names)}")


def _metric_missing(metric: str | None, results: list[RunResult]) -> str | None:
    """After the runs: a ``--metric`` that no successful run has is an error, not a silent note."""
    succeeded = [r for r in results if r.ok]
    if metric is None or not succeeded or any(metric in r.metrics for r in succeeded):
        return None
    names = list(dict.fromkeys(k for r in succeeded for k in r.metrics))
    return (f"--metric {metric!r} is not a metric of any successful run, so there is no figure; "
            f"their metrics: {', '.join(names) or 'none'}")


# ---------------------------------------------------------------- executing the runs

def cuda_device_ids() -> list[str]:
    """The GPUs runs can be spread over (honours an existing CUDA_VISIBLE_DEVICES)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch

        return [str(index) for index in range(torch.cuda.device_count())]
    except Exception:
        return []


def _run_locally(specs: list[RunSpec], jobs: int, on_done, stop=lambda: False,
                 poll_s: float = 0.5) -> list[RunSpec]:
    """Up to ``jobs`` runs at once, each in its own child process; GPUs shared round-robin.

    Runs are handed to the pool only as slots free up, so once ``stop()`` is true no further run
    starts; the runs not started are returned. The main thread waits in short slices rather than
    one unbounded lock wait, so a Ctrl-C or SIGTERM is acted on within ``poll_s`` whichever
    thread the operating system delivered it to.
    """
    if not specs:
        return []
    jobs = min(jobs, len(specs))
    devices = cuda_device_ids() if jobs > 1 else []
    slots = queue.SimpleQueue()  # one token per parallel slot; a token is a GPU id or None
    for slot in range(jobs):
        slots.put(devices[slot % len(devices)] if devices else None)

    def run_in_slot(spec):
        device = slots.get()
        try:
            return execute_run(replace(spec, cuda_device=device))
        finally:
            slots.put(device)

    CHILDREN.stopping.clear()
    waiting, running = list(specs), []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        try:
            while True:
                while waiting and len(running) < jobs and not stop():
                    running.append(pool.submit(run_in_slot, waiting.pop(0)))
                if not running:
                    break
                done, _ = wait(running, timeout=poll_s, return_when=FIRST_COMPLETED)
                for future in [f for f in running if f in done]:
                    running.remove(future)
                    on_done(future.result())
        except KeyboardInterrupt:
            CHILDREN.stop_all()  # running children are killed, their runs marked interrupted
            for future in running:
                on_done(future.result())
            raise
    return waiting


def _run_on_cluster(specs: list[RunSpec], client, on_done, stop=lambda: False) -> list[RunSpec]:
    """One Dask task per run; the workers must see the same filesystem paths as this process.
    Once ``stop()`` is true the unfinished tasks are cancelled and their specs returned."""
    if not specs:
        return []
    from distributed import as_completed as dask_as_completed

    futures = [client.submit(execute_run, spec, pure=False,
                             key=f"distill-{spec.name}-{uuid.uuid4().hex[:8]}") for spec in specs]
    spec_of = {future.key: spec for future, spec in zip(futures, specs)}
    reported = set()
    try:
        for future in dask_as_completed(futures, loop=client.loop):
            reported.add(future.key)
            on_done(_task_result(future, spec_of[future.key]))
            if stop():
                for other in futures:  # finished but not yet reported: keep them
                    if other.key not in reported and other.done():
                        reported.add(other.key)
                        on_done(_task_result(other, spec_of[other.key]))
                rest = [f for f in futures if f.key not in reported]
                client.cancel(rest)  # a task already running still ends with its own run.json
                return [spec_of[f.key] for f in rest]
    except KeyboardInterrupt:
        client.cancel(futures)  # queued runs are dropped; running ones end at their timeout
        raise
    return []


def _task_result(future, spec: RunSpec) -> RunResult:
    try:
        return future.result()
    except Exception as error:  # the worker died or could not import distill_lib
        return _unrecorded(spec, f"Dask task failed: {error!r}")


# ---------------------------------------------------------------- results.csv and figure

class ResultTable:
    """The rows of results.csv, one per planned run; rewritten after every finished run.

    A write that fails (a full disk) is not an exception: it is remembered, :meth:`broken` turns
    true (the sweep starts no further run) and :meth:`problems` says what the file now shows.
    """

    def __init__(self, specs: list[RunSpec], swept: list[str], path: Path):
        self.specs, self.swept, self.path = specs, swept, Path(path)
        self._by_name: dict[str, RunResult] = {}
        self.first_error: OSError | None = None  # the first write that failed
        self.last_error: OSError | None = None  # None when the last write succeeded

    def add(self, result: RunResult) -> None:
        first_time = result.name not in self._by_name
        self._by_name[result.name] = result
        if first_time:
            say(f"[{len(self._by_name)}/{len(self.specs)}] {_label(result.params, self.swept)} ... "
                f"{progress_word(result)}")
        self.write()

    def results(self) -> list[RunResult]:
        return [self._by_name[s.name] for s in self.specs if s.name in self._by_name]

    def broken(self) -> bool:
        return self.first_error is not None

    def write(self) -> bool:
        """Rewrite the file atomically; False (and remembered) when that fails."""
        rows = [self._row(spec) for spec in self.specs]
        metric_names = list(dict.fromkeys(k for r in self.results() for k in r.metrics))
        param_names = list(dict.fromkeys([*self.swept, *(k for s in self.specs for k in s.params)]))
        param_names = [n for n in param_names if n not in _NOT_IN_TABLE]
        columns = ["run", *param_names, "status", "resumed", "wall_s", "error", *metric_names]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.path, buffer.getvalue())
        except OSError as error:
            if self.first_error is None:
                say(f"warning: could not write {self.path} ({error}); no further run is started",
                    err=True)
            self.first_error = self.first_error or error
            self.last_error = error
            return False
        self.last_error = None
        return True

    def problems(self) -> list[str]:
        if self.last_error is not None:
            return [f"{self.path} could not be written ({self.last_error}); it is out of date. The "
                    "run directories hold each finished run's run.json; rerun the same command to "
                    "rebuild the table (runs that finished ok are not run again)"]
        if self.first_error is not None:
            return [f"{self.path} could not be written for a while ({self.first_error}); it is "
                    "up to date again"]
        return []

    def _row(self, spec: RunSpec) -> dict:
        result = self._by_name.get(spec.name)
        row = {"run": spec.name, **spec.params, "status": "pending"}
        if result is not None:
            row.update(status=result.status, resumed=result.resumed, wall_s=result.wall_s,
                       error="" if result.ok else result.failure_text(), **result.metrics)
        return row


def _label(params: dict, swept: list[str]) -> str:
    return " ".join(f"{name}={params[name]}" for name in swept)


def default_metric(results: list[RunResult]) -> str | None:
    """The first metric whose name contains "accuracy"."""
    names = dict.fromkeys(k for r in results for k in r.metrics)
    return next((name for name in names if "accuracy" in name.lower()), None)


def plot_sweep(results: list[RunResult], swept: list[str], path: Path, *, metric: str | None = None,
               title: str = "") -> Path | None:
    """Mean +/- std over seeds of ``metric`` vs the first swept parameter, one line per value of
    the second; None (with a note) when no successful run has that metric."""
    metric = metric or default_metric(results)
    points = [r for r in results if r.ok and metric in r.metrics]
    if not points:
        say(f"no figure: no successful run has a metric {metric!r}" if metric
            else "no figure: no metric name contains 'accuracy' (choose one with --metric)")
        return None
    x_name = swept[0]
    line_name = swept[1] if len(swept) > 1 and swept[1] != "seed" else None
    groups: dict = {}
    for r in points:
        line = groups.setdefault(r.params.get(line_name) if line_name else None, {})
        line.setdefault(r.params.get(x_name), []).append(r.metrics[metric])
    figure = _draw(groups, x_name, line_name, metric, title)
    return write_atomic(path, lambda handle: figure.savefig(handle, format="png", dpi=120))


def _draw(groups: dict, x_name: str, line_name: str | None, metric: str, title: str):
    # Figure + Agg canvas directly: no pyplot, so no global backend is switched in the caller.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    x_values = sorted({x for line in groups.values() for x in line}, key=_sort_key)
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in x_values)
    position = {x: (x if numeric else i) for i, x in enumerate(x_values)}
    runs_per_point = set()
    for line_value, line in sorted(groups.items(), key=lambda item: _sort_key(item[0])):
        xs = sorted(line, key=_sort_key)
        means = [statistics.fmean(line[x]) for x in xs]
        intervals = [mean_interval(line[x]) for x in xs]  # the workbench's one statistics module
        errors = [[m - low if low == low else 0.0 for m, (low, _) in zip(means, intervals)],
                  [high - m if high == high else 0.0 for m, (_, high) in zip(means, intervals)]]
        runs_per_point.update(len(line[x]) for x in xs)
        label = f"{line_name}={line_value}" if line_name else None
        axes.errorbar([position[x] for x in xs], means, yerr=errors, marker="o", capsize=3, label=label)
    if not numeric:
        axes.set_xticks(range(len(x_values)), [str(x) for x in x_values])
    n_text = "/".join(map(str, sorted(runs_per_point)))
    axes.set(xlabel=x_name, ylabel=metric)  # two title lines: a long notebook name must not be cut off
    axes.set_title(f"{title}\n{metric}, mean and 95% interval over {n_text} runs per point", fontsize=10)
    if line_name:
        axes.legend(title=None)
    axes.grid(alpha=0.3)
    return figure


def _sort_key(value):
    # Numbers in order, then everything else by text (None and strings mix in one sweep).
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return (0, value, "") if is_number else (1, 0, str(value))
