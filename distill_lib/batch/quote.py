"""Quote measured results where people read them: each notebook's first cell and the README.

``python -m distill_lib quote RUNS_DIR`` reads ``RUNS_DIR/<notebook>/metrics.json`` and ``run.json``
(written by ``python -m distill_lib run``) and rewrites, in each notebook's first cell, the
paragraph that starts with ``**Headline**`` (the notebook's one paired comparison, with where it
was measured) and the one that starts with ``**Time:**`` (the runner's wall time); in README.md it
rewrites the table between ``<!-- headlines:start -->`` and ``<!-- headlines:end -->``. When every
notebook has a run in RUNS_DIR it also writes the "when does distillation pay" table (the
``when_kd_pays`` rows of every run, ``core.pays``) between ``<!-- when-kd-pays:start -->`` and
``<!-- when-kd-pays:end -->``, in the README and in every notebook cell that holds that pair (06's
last section). No number is typed by hand, and ``tests/test_notebooks.py`` compares the quoted
headline (and the notebook's rows) with a fresh run.

The Chinese edition is quoted from the same runs: each ``notebooks/zh/NN_name.ipynb`` gets the
paragraphs that start with ``**核心结论**`` and ``**用时：**`` (``stats.headline_line_zh``) and the
same when-kd-pays table, and ``README.zh-CN.md`` beside the README, when it exists, gets the
headline table with Chinese headers and verdicts (and the when-kd-pays table where it has markers).

All or nothing: every input is read and checked, and every new text made in memory, before the
first file is written; then all files are replaced together (``core.results.replace_files``). A
refusal (``ValueError``: exit code 2) names the file and what is wrong with it. The places quoted
are those of the quick profile; quote fills no place for full-profile numbers, so such a run is
refused.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..core import pays, stats
from ..core.results import METRICS_FILE, replace_files
from ..core.stats import headline_line, parse_headline_line
from .params import ZH_FOLDER
from .runner import RUN_FILE

README_START, README_END = "<!-- headlines:start -->", "<!-- headlines:end -->"
PAYS_START, PAYS_END = "<!-- when-kd-pays:start -->", "<!-- when-kd-pays:end -->"
QUOTED_PROFILE = "quick"  # what the first cells and the README table state; see the module docstring
HEADLINE_START, TIME_START = "**Headline**", "**Time:**"  # the paragraphs of a first cell that quote rewrites
README_ZH = "README.zh-CN.md"  # the Chinese README, beside the README


def where_measured(record: dict, measured_on=stats.measured_on) -> str:
    """``quick profile, 2 torch threads, 2-core CPU (x86_64), no GPU`` from a metrics.json record."""
    params = record.get("params", {})
    return measured_on(params.get("profile"), params.get("threads"), params.get("machine", record.get("device")))


def time_paragraph(stem: str, wall_s: float, record: dict) -> str:
    params = record.get("params", {})
    return (f"**Time:** {wall_s:.0f} s of runner wall time (`python -m distill_lib run {stem[:2]}`, "
            f"{stats.measured_on(params.get('profile'), params.get('threads'), params.get('machine'))}). "
            f"The full profile is sized for a GPU.")


def time_paragraph_zh(stem: str, wall_s: float, record: dict) -> str:
    params = record.get("params", {})
    return (f"**用时：** 运行器挂钟时间 {wall_s:.0f} 秒（"
            f"{stats.measured_on_zh(params.get('profile'), params.get('threads'), params.get('machine'))}；"
            f"在代码相同的英文版上以 `python -m distill_lib run {stem[:2]}` 测得）。full 配置按 GPU 的规模设计。")


def _row(stem: str, quoted: dict) -> str:
    return (f"| `{stem}` | {quoted['claim']} | {quoted['mean']:+.2f} ({quoted['low']:+.2f} to {quoted['high']:+.2f}), "
            f"{quoted['n']} seeds, {quoted['kind']} | ±{quoted['margin']:.2f} | {quoted['verdict']} |")


def _row_zh(stem: str, quoted: dict) -> str:
    return (f"| `{stem}` | {quoted['claim']} | {quoted['mean']:+.2f}（{quoted['low']:+.2f} 至 {quoted['high']:+.2f}），"
            f"{quoted['n']} 个种子，{stats.KINDS_ZH[quoted['kind']]} | ±{quoted['margin']:.2f} | "
            f"{stats.VERDICTS_ZH[quoted['verdict']]} |")


@dataclass(frozen=True)
class Edition:
    """How one language edition quotes: its paragraphs, its headline line, its table."""

    headline_start: str
    time_start: str
    headline_line: Callable
    parse_headline_line: Callable
    measured_on: Callable
    time_paragraph: Callable
    table_head: str
    row: Callable


EN = Edition(HEADLINE_START, TIME_START, headline_line, parse_headline_line, stats.measured_on, time_paragraph,
             "| notebook | headline | effect, points (95% CI) | margin | verdict |", _row)
ZH = Edition("**核心结论**", "**用时：**", stats.headline_line_zh, stats.parse_headline_line_zh, stats.measured_on_zh,
             time_paragraph_zh, "| 笔记本 | 核心结论 | 效应，百分点（95% 置信区间） | 边际 | 判定 |", _row_zh)


def quote(runs_dir, notebooks_dir, readme=None) -> list[str]:
    """Quote every notebook that has a run in ``runs_dir``, then the README; returns the names of
    the files that changed. Everything is checked before anything is written (module docstring)."""
    runs_dir, notebooks_dir = Path(runs_dir), Path(notebooks_dir)
    notebooks = _notebooks(notebooks_dir)
    runs = _runs(runs_dir, notebooks)
    # the take-home table needs every notebook's rows: with a partial set of runs it is left alone
    pays_table = pays.table(_pays_rows(runs, notebooks)) if len(runs) == len(notebooks) else None
    new_texts, first_cells = {}, {}
    for path in notebooks:
        first_cells[path] = _quoted_notebook(path, runs, pays_table, EN, new_texts)
    for path in sorted((notebooks_dir / ZH_FOLDER).glob("[0-9][0-9]_*.ipynb")):  # the Chinese edition
        _quoted_notebook(path, runs, pays_table, ZH, new_texts)
    if readme is not None:
        readme = Path(readme)
        readmes = [(readme, EN)]
        if readme.with_name(README_ZH).exists():  # the Chinese README, where there is one
            readmes.append((readme.with_name(README_ZH), ZH))
        for path, edition in readmes:
            text = _read_readme(path)
            updated = readme_with_table(path, text, first_cells, edition)
            if pays_table is not None and (PAYS_START in updated or PAYS_END in updated):  # the block is optional
                updated = _between_markers(path, updated, PAYS_START, PAYS_END, pays_table)
            if updated != text:
                new_texts[path] = updated
    replace_files(new_texts)
    return [path.name if path.parent.name != ZH_FOLDER else f"{ZH_FOLDER}/{path.name}" for path in new_texts]


def _quoted_notebook(path: Path, runs: dict, pays_table, edition: "Edition", new_texts: dict) -> str:
    """Quote the run of ``path``'s stem (if any) and the pays table into ``path``, in memory; its new
    text goes into ``new_texts`` when it changed. Returns the (new) text of its first cell."""
    notebook, first = _read_notebook(path)
    if path.stem in runs:
        first = quoted_cell(path, first, runs[path.stem], edition)
        notebook["cells"][0]["source"] = first.splitlines(keepends=True)
    if pays_table is not None:
        _fill_pays_cells(path, notebook, pays_table)
    text = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
    if text != path.read_text(encoding="utf-8"):
        new_texts[path] = text
    return first


# ---------------------------------------------------------------- what is read, checked first

def _notebooks(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ValueError(f"notebooks directory {folder} does not exist; give --notebooks-dir")
    notebooks = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise ValueError(f"{folder} holds no notebook named like 00_name.ipynb; give --notebooks-dir")
    return notebooks


def _runs(runs_dir: Path, notebooks: list[Path]) -> dict[str, Path]:
    """notebook stem -> its run directory in ``runs_dir``; every one present must be a finished run."""
    how = "give the --out of a finished `python -m distill_lib run`"
    if not runs_dir.exists():
        raise ValueError(f"RUNS_DIR {runs_dir} does not exist; {how}")
    if not runs_dir.is_dir():
        raise ValueError(f"RUNS_DIR {runs_dir} is not a directory; {how}")
    runs = {path.stem: runs_dir / path.stem for path in notebooks if (runs_dir / path.stem).exists()}
    if not runs:
        expected = ", ".join(f"{path.stem}/" for path in notebooks[:3])
        raise ValueError(f"RUNS_DIR {runs_dir} holds no run of these notebooks (expected folders such as "
                         f"{expected} with {METRICS_FILE} and {RUN_FILE}); {how}")
    return runs


def _json_file(path: Path, what: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist: {what}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} cannot be read ({error})") from None
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from None


def _object(value, path: Path, what: str) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{path}: {what} must be a JSON object; it holds {type(value).__name__} {value!r:.80}")
    return value


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def quoted_cell(path: Path, first: str, run_dir: Path, edition: Edition = EN) -> str:
    """``path``'s first cell with its headline and time paragraphs made from the run in ``run_dir``."""
    record, headline, wall_s = _finished_run(run_dir)
    line = _headline_line(run_dir / METRICS_FILE, headline, where_measured(record, edition.measured_on), edition)
    try:
        updated = _replace_paragraph(first, edition.headline_start, line)
        return _replace_paragraph(updated, edition.time_start, edition.time_paragraph(path.stem, wall_s, record))
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def _finished_run(run_dir: Path) -> tuple[dict, dict, float]:
    """(metrics.json record, its headline, the runner's wall time) of a finished quick-profile run."""
    run_path, metrics_path = run_dir / RUN_FILE, run_dir / METRICS_FILE
    run = _object(_json_file(run_path, "not a run of `python -m distill_lib run`"), run_path, "run.json")
    if run.get("status") != "ok":
        raise ValueError(f"{run_dir} did not finish ok (status {run.get('status')!r}); quote only finished runs")
    if not _finite(run.get("wall_s")) or run["wall_s"] < 0:
        raise ValueError(f"{run_path}: wall_s must be a number of seconds >= 0; got {run.get('wall_s')!r}")
    record = _object(_json_file(metrics_path, "the run wrote no metrics"), metrics_path, "metrics.json")
    params = _object(record.get("params"), metrics_path, "its 'params'")
    run_params = run.get("params") if isinstance(run.get("params"), dict) else {}
    for profile in (params.get("profile"), run_params.get("profile", QUOTED_PROFILE)):
        if profile != QUOTED_PROFILE:
            raise ValueError(f"{run_dir} was measured with profile {profile!r}; the notebooks' first cells and "
                             f"the README table quote the {QUOTED_PROFILE!r} profile only, and quote fills no "
                             f"place for {profile!r}-profile numbers (the README's full-data paragraph is "
                             f"checked against docs/full-data-cpu by tests/test_readme.py): quote a "
                             f"--profile {QUOTED_PROFILE} run")
    metrics = _object(record.get("metrics"), metrics_path, "its 'metrics'")
    if "headline" not in metrics:
        raise ValueError(f"{metrics_path} holds no headline")
    return record, _checked_headline(metrics_path, _object(metrics["headline"], metrics_path, "its headline")), run["wall_s"]


def _checked_headline(path: Path, headline: dict) -> dict:
    """The fields a quoted line is made of, each of the right kind (``ValueError`` naming it)."""
    interval = headline.get("effect_ci95")
    problems = {
        "claim": not (isinstance(headline.get("claim"), str) and headline["claim"].strip()
                      and "\n" not in headline["claim"]),
        "n_seeds": not (isinstance(headline.get("n_seeds"), int) and not isinstance(headline["n_seeds"], bool)
                        and headline["n_seeds"] >= 2),
        "effect_mean": not _finite(headline.get("effect_mean")),
        "effect_ci95": not (isinstance(interval, list) and len(interval) == 2 and all(map(_finite, interval))
                            and interval[0] <= interval[1]),
        "verdict": headline.get("verdict") not in stats.VERDICTS,
    }
    allowed = {"claim": "a one-line text", "n_seeds": "a whole number >= 2 (an interval needs two seeds)",
               "effect_mean": "a finite number", "effect_ci95": "[low, high], two finite numbers, low <= high",
               "verdict": " or ".join(map(repr, stats.VERDICTS))}
    for name, wrong in problems.items():
        if wrong:
            raise ValueError(f"{path}: headline {name} must be {allowed[name]}; got {headline.get(name)!r}")
    return headline


def _headline_line(path: Path, headline: dict, where: str, edition: Edition = EN) -> str:
    """The quoted line, made by ``stats.headline_line`` and read back by ``stats.parse_headline_line``
    (their ``_zh`` twins for the Chinese edition): a headline whose line would not read back the same
    (a claim that breaks the format) is refused."""
    try:
        line = edition.headline_line(headline, where)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: its headline cannot be quoted ({type(error).__name__}: {error})") from None
    parsed = edition.parse_headline_line(line)
    if parsed is None or (parsed["claim"], parsed["n"], parsed["verdict"]) != (
            headline["claim"], headline["n_seeds"], headline["verdict"]):
        raise ValueError(f"{path}: its headline cannot be quoted: the line {line!r} does not read back as "
                         "written (a claim with '**', ': **' or '」：**' breaks the format)")
    return line


def _read_notebook(path: Path) -> tuple[dict, str]:
    """(the notebook as JSON, the text of its first cell)."""
    notebook = _object(_json_file(path, "a notebook"), path, "a notebook")
    cells = notebook.get("cells")
    source = cells[0].get("source") if isinstance(cells, list) and cells and isinstance(cells[0], dict) else None
    if isinstance(source, str):
        return notebook, source
    if isinstance(source, list) and all(isinstance(line, str) for line in source):
        return notebook, "".join(source)
    raise ValueError(f"{path} is not a notebook with a first cell to quote into")


def _read_readme(readme: Path) -> str:
    try:
        return readme.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"README {readme} does not exist; give --readme PATH, or --readme '' to leave "
                         "the README alone") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"README {readme} cannot be read ({error})") from None


def readme_table(notebooks: list, first_cells: dict | None = None, edition: Edition = EN) -> str:
    """The README's table of every (English) notebook's quoted headline, read from its first cell
    (the text in ``first_cells`` where given: what ``quote`` is about to write); with ``edition=ZH``
    the same numbers in README.zh-CN.md's words."""
    rows = [edition.table_head, "|---|---|---|---|---|"]
    for path in notebooks:
        first = (first_cells or {}).get(path)
        quoted = parse_headline_line(_read_notebook(path)[1] if first is None else first)
        if quoted is None:
            raise ValueError(f"{path.name}: its first cell quotes no measured headline; run `quote` on it first")
        rows.append(edition.row(path.stem, quoted))
    return "\n".join(rows)


def readme_with_table(readme: Path, text: str, first_cells: dict, edition: Edition = EN) -> str:
    """``text`` with the headline table between its markers rewritten."""
    return _between_markers(readme, text, README_START, README_END,
                            readme_table(list(first_cells), first_cells, edition))


def _between_markers(where, text: str, start: str, end: str, table: str) -> str:
    """``text`` with ``table`` between ``start`` and ``end``; exactly one pair, in order."""
    counts = (text.count(start), text.count(end))
    if counts != (1, 1) or text.index(start) > text.index(end):
        raise ValueError(f"{where} must hold one {start} ... {end} block to fill (found "
                         f"{counts[0]} start and {counts[1]} end markers)")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{table}\n{end}{tail}"


# ---------------------------------------------------------------- when does distillation pay

def _pays_rows(runs: dict, notebooks: list) -> list:
    """Every run's ``when_kd_pays`` rows, in notebook order, each checked."""
    rows = []
    for path in notebooks:
        metrics_path = runs[path.stem] / METRICS_FILE
        record = _object(_json_file(metrics_path, "the run wrote no metrics"), metrics_path, "metrics.json")
        found = _object(record.get("metrics"), metrics_path, "its 'metrics'").get(pays.KEY, [])
        if not isinstance(found, list):
            raise ValueError(f"{metrics_path}: {pays.KEY} must be a list of rows; got {type(found).__name__}")
        rows += [_checked_row(metrics_path, row) for row in found]
    return rows


def _checked_row(path: Path, row) -> dict:
    row = _object(row, path, f"each {pays.KEY} row")
    effect = row.get("effect")
    fields_ok = (isinstance(effect, dict) and _finite(effect.get("mean")) and isinstance(effect.get("ci95"), list)
                 and len(effect["ci95"]) == 2 and effect.get("verdict") in stats.VERDICTS
                 and isinstance(effect.get("differences"), list) and _finite(row.get("test_images")))
    try:
        if not fields_ok:
            raise TypeError("effect or test_images")
        pays.table([row])  # every field a table cell needs, of the kind it needs
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: a {pays.KEY} row cannot be quoted ({type(error).__name__}: {error}): "
                         f"{json.dumps(row)[:200]}") from None
    return row


def _fill_pays_cells(path: Path, notebook: dict, table: str) -> None:
    """Write ``table`` into every markdown cell of ``notebook`` that holds the pays markers."""
    for cell in notebook.get("cells", []):
        source = cell.get("source")
        text = "".join(source) if isinstance(source, list) else source
        if cell.get("cell_type") == "markdown" and isinstance(text, str) and PAYS_START in text:
            cell["source"] = _between_markers(path, text, PAYS_START, PAYS_END, table).splitlines(keepends=True)


def paragraph_pattern(start: str) -> re.Pattern:
    """The paragraph (up to a blank line) that begins with ``start`` at the start of a line."""
    return re.compile(rf"^{re.escape(start)}.*?(?=\n\s*\n|\Z)", re.S | re.M)


def _replace_paragraph(text: str, start: str, replacement: str) -> str:
    """``text`` with the paragraph that begins with ``start`` replaced (it must exist)."""
    pattern = paragraph_pattern(start)
    if not pattern.search(text):
        raise ValueError(f"no paragraph starting with {start!r} in the first cell")
    return pattern.sub(lambda _match: replacement, text, count=1)
