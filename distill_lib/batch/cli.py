"""``python -m distill_lib``: run notebooks headlessly, or sweep one over a parameter grid.

Examples::

    python -m distill_lib run                              # every notebook, quick profile
    python -m distill_lib run 01 02 --profile full --out runs/full -p epochs 5
    python -m distill_lib sweep 02 -p temperature 1 2 4 8 -p alpha 0.5 0.9 --jobs 2
    python -m distill_lib run 00 --lang zh                 # the Chinese edition (notebooks/zh), into runs/zh/
    python -m distill_lib quote runs/quick                 # measured headlines into the notebooks and README
    python -m distill_lib translations status --diff       # what of the Chinese edition is out of step

Exit status: 0 when every run succeeded, 1 when any failed or the sweep could not do its own
part (results.csv or the figure not written, a --metric no run has), 2 for a refused command line
(unknown or repeated parameter, unparsable value, unknown notebook or kernel, a file that is no
notebook, a bad --timeout, --jobs or --cluster, an --out that cannot be written, that another
runner holds, or whose run directories the runner did not make: nothing was run), 130 after
Ctrl-C or SIGTERM. ``quote`` exits 2 when an input is refused and 1 when a write fails; either
way no file has changed.

Adding a subcommand: write ``_NAME_arguments(parser)`` and ``_NAME_command(args) -> int`` and
register them in ``SUBCOMMANDS``.
"""
from __future__ import annotations

import argparse
import signal
import threading

from .console import flush_quietly, say
from .params import LANGUAGES
from .runner import DEFAULT_KERNEL, DEFAULT_TIMEOUT_S, PROFILES


def _add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", choices=PROFILES, default="quick",
                        help="quick: mini data on CPU, minutes; full: full data on GPU (default quick)")
    parser.add_argument("--timeout", default=DEFAULT_TIMEOUT_S, metavar="SECONDS",  # checked by the runner
                        help=f"time limit per run, also per cell (default {DEFAULT_TIMEOUT_S})")
    parser.add_argument("--kernel", default=DEFAULT_KERNEL,
                        help="Jupyter kernel; the default runs this same Python interpreter")
    parser.add_argument("--log-output", action="store_true",
                        help="stream the notebooks' cell output (default: only in run.log)")
    parser.add_argument("--notebooks-dir", default=None, metavar="DIR",
                        help="where short names like 01 are looked up (default ./notebooks)")
    parser.add_argument("--lang", choices=LANGUAGES, default="en",
                        help="edition: en (default) or zh, the Chinese notebooks in notebooks/zh, whose runs go to "
                             "<out>/zh/; a path to a notebook is taken as it is")


# ---------------------------------------------------------------- run

def _run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebooks", nargs="*", metavar="NOTEBOOK",
                        help="path or short name (01, 01_teacher_training); default: all, in order")
    parser.add_argument("-p", "--param", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"), help="set a notebook parameter (repeatable)")
    parser.add_argument("--out", default="runs", metavar="DIR",
                        help="one directory per notebook is made here (default runs)")
    _add_common_arguments(parser)


def _run_command(args: argparse.Namespace) -> int:
    from .runner import format_summary, run_notebooks

    params = {name: value for name, [value] in _once_each(args.param).items()}
    results = run_notebooks(args.notebooks, profile=args.profile, out=args.out,
                            params=params, timeout=args.timeout, kernel=args.kernel,
                            log_output=args.log_output, notebooks_dir=args.notebooks_dir, lang=args.lang)
    say("\n" + format_summary(results))
    return 0 if all(r.ok for r in results) else 1


def _once_each(options: list[list[str]], *, sweep: bool = False) -> dict[str, list[str]]:
    """-p NAME VALUE... occurrences as name -> values; a name given twice is refused (argparse's
    append would silently keep only one of them)."""
    given: dict[str, list[str]] = {}
    for name, *values in options:
        if name in given:
            how = (f"give it once, with all its values: -p {name} {' '.join(given[name] + values)}" if sweep
                   else f"give it once (-p {name} VALUE); to try several values use `sweep`")
            raise ValueError(f"-p {name} is given more than once ({' '.join(given[name])}, then "
                             f"{' '.join(values)}); {how}")
        given[name] = values
    return given


# ---------------------------------------------------------------- sweep

def _sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebook", metavar="NOTEBOOK", help="path or short name (02, 02_temperature...)")
    parser.add_argument("-p", "--param", nargs="+", action="append", default=[],
                        metavar=("NAME", "VALUE"), help="a swept parameter and its values (repeatable); "
                                                   "with one value it is fixed for all runs")
    parser.add_argument("--seeds", nargs="+", default=None, metavar="SEED",
                        help="run every setting once per seed")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="sweep directory (default runs/sweeps/<notebook>)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N", help="runs at once (default 1)")
    parser.add_argument("--force", action="store_true", help="re-run runs that finished before")
    parser.add_argument("--cluster", default=None, metavar="ADDRESS",
                        help="Dask scheduler address (e.g. tcp://host:8786); workers share the paths")
    parser.add_argument("--metric", default=None, metavar="NAME",
                        help="metric for results.png (default: first one named *accuracy*)")
    _add_common_arguments(parser)


def _sweep_command(args: argparse.Namespace) -> int:
    from .sweep import sweep

    grid, fixed = {}, {}
    for name, values in _once_each(args.param, sweep=True).items():
        if not values:
            raise ValueError(f"-p {name} needs at least one value")
        (grid.__setitem__(name, values) if len(values) > 1 else fixed.__setitem__(name, values[0]))
    outcome = sweep(args.notebook, grid, seeds=args.seeds, params=fixed, profile=args.profile,
                    out=args.out, jobs=args.jobs, force=args.force, timeout=args.timeout,
                    cluster=args.cluster, metric=args.metric, kernel=args.kernel,
                    log_output=args.log_output, notebooks_dir=args.notebooks_dir, lang=args.lang)
    ran = len(outcome.results)
    say(f"\n{ran - len(outcome.failed)} of {ran} runs ok; table: {outcome.csv_path}"
        + (f"; figure: {outcome.figure_path}" if outcome.figure_path else ""))
    for failure in outcome.failed:
        say(f"  FAILED {failure.describe_failure()}")
    for problem in outcome.problems:
        say(f"error: {problem}", err=True)
    return 1 if outcome.failed or outcome.problems else 0


# ---------------------------------------------------------------- demo, train-teacher

def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--student", default="mlp-hinton", help="student preset (default mlp-hinton)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per student (default 20)")
    parser.add_argument("--temperature", type=float, default=4.0, help="softmax temperature T (default 4)")
    parser.add_argument("--alpha", type=float, default=0.9, help="weight of the soft-target term (default 0.9)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def _demo_command(args: argparse.Namespace) -> int:
    from ..demo import format_demo, run_demo

    say(format_demo(run_demo(student=args.student, epochs=args.epochs, temperature=args.temperature,
                             alpha=args.alpha, seed=args.seed, device=args.device)))
    return 0


def _train_teacher_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", choices=("quick", "full"), default="full",
                        help="the recipe in distill_lib.profiles.TEACHER_RECIPES (default full)")
    parser.add_argument("--out", required=True, metavar="PATH", help="checkpoint to write, e.g. data/teacher-fashion-mnist.pt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def _train_teacher_command(args: argparse.Namespace) -> int:
    from ..teachers import export_teacher

    info = export_teacher(args.profile, args.out, seed=args.seed, device=args.device)
    say(f"teacher written to {info['checkpoint']}: test accuracy {info['test_accuracy']:.2%} on "
        f"{info['dataset']} ({info['train_seconds']:.0f} s on {info['device']})")
    return 0


def _quote_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", metavar="RUNS_DIR", help="the --out of a finished `run` (one directory per notebook)")
    parser.add_argument("--notebooks-dir", default=None, metavar="DIR", help="default ./notebooks")
    parser.add_argument("--readme", default="README.md", metavar="PATH",
                        help="the README whose headline table is rewritten (default README.md; '' for none)")


def _quote_command(args: argparse.Namespace) -> int:
    from .params import default_notebooks_dir
    from .quote import quote

    changed = quote(args.runs, args.notebooks_dir or default_notebooks_dir(), args.readme or None)
    say(f"quoted into: {', '.join(changed)}" if changed else "nothing to change: every quote is up to date")
    return 0


def _translations_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    status = actions.add_parser("status", help="list stale, untranslated and mismatched cells (exit 1 if any)")
    status.add_argument("--diff", action="store_true",
                        help="show, for each stale cell, the English change since its translation (from git)")
    actions.add_parser("sync", help="make notebooks/zh follow the English structure and code")
    stamp = actions.add_parser("stamp", help="record that cells now translate the current English text")
    stamp.add_argument("notebook", metavar="NOTEBOOK", help="short name (00) or file name")
    stamp.add_argument("cells", nargs="*", metavar="CELL_ID", help="the translated cells' ids")
    stamp.add_argument("--all", action="store_true",
                       help="every stale or untranslated cell that no longer holds the English text")
    for action in (status, actions.choices["sync"], stamp):
        action.add_argument("--notebooks-dir", default=None, metavar="DIR", help="default ./notebooks")


def _translations_command(args: argparse.Namespace) -> int:
    from .params import default_notebooks_dir
    from . import translations

    folder = args.notebooks_dir or default_notebooks_dir()
    if args.action == "status":
        text, code = translations.status_text(folder, diff=args.diff)
        say(text)
        return code
    if args.action == "sync":
        changes = translations.sync(folder)
        say("\n".join(changes) if changes else "nothing to change: the Chinese edition follows the English one")
        return 0
    if not args.cells and not args.all:
        raise ValueError("stamp needs the ids of the cells you translated, or --all")
    say("\n".join(translations.stamp(folder, args.notebook, args.cells, every=args.all)))
    return 0


# name -> (add its arguments, run it and return the exit status, one-line help)
SUBCOMMANDS = {
    "run": (_run_arguments, _run_command, "execute notebooks headlessly with papermill"),
    "sweep": (_sweep_arguments, _sweep_command, "run one notebook over a parameter grid x seeds"),
    "demo": (_demo_arguments, _demo_command, "one-minute distillation on the bundled data (teacher, student, KD)"),
    "train-teacher": (_train_teacher_arguments, _train_teacher_command,
                      "train the profile's teacher and write its checkpoint (how data/ gets its teacher)"),
    "quote": (_quote_arguments, _quote_command,
              "write the measured headlines and times of a finished run into the notebooks and README"),
    "translations": (_translations_arguments, _translations_command,
                     "keep the Chinese edition (notebooks/zh) in step: status, sync, stamp"),
}


def build_parser() -> argparse.ArgumentParser:
    examples = __doc__[__doc__.index("Examples::"):__doc__.index("Adding a subcommand")].strip()
    parser = argparse.ArgumentParser(
        prog="python -m distill_lib", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the workbench notebooks headlessly, or sweep one over a parameter grid.",
        epilog=examples.replace("Examples::", "examples:"))
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (add_arguments, handler, help_text) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        add_arguments(sub)
        sub.set_defaults(handler=handler)
    return parser


def _raise_interrupt(_signum, _frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # `kill` (SIGTERM) takes the same path as Ctrl-C: child notebooks and kernels are stopped
    # and finished results kept, instead of the runner dying and leaving its kernels orphaned.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return args.handler(args)
    except ValueError as error:  # refused parameters, notebooks or options: nothing ran
        say(f"error: {error}", err=True)
        return 2
    except OSError as error:  # the filesystem's trouble outside any one run: a message, no traceback
        say(f"error: {error}", err=True)
        return 1
    except KeyboardInterrupt:
        say("\ninterrupted: finished runs keep their metrics.json and run.json", err=True)
        return 130
    finally:
        flush_quietly()  # a reader that went away (`| head`) is no error at exit either
