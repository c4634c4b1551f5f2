"""Quote measured results where people read them: each notebook's first cell and the README.

``python -m distill_lib quote RUNS_DIR`` reads ``RUNS_DIR/<notebook>/metrics.json`` and ``run.json``
(written by ``python -m distill_lib run``) and rewrites, in each notebook's first cell, the
paragraph that starts with ``**Headline**`` (the notebook's one paired comparison, with where it
was measured) and the one that starts with ``**Time:**`` (the runner's wall time); in README.md it
rewrites the table between ``<!-- headlines:start -->`` and ``<!-- headlines:end -->``. No number
is typed by hand, and ``tests/test_notebooks.py`` compares the quoted headline with a fresh run.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..core import stats
from ..core.results import read_metrics, write_text_atomic
from ..core.stats import headline_line, parse_headline_line

README_START, README_END = "<!-- headlines:start -->", "<!-- headlines:end -->"


def where_measured(record: dict) -> str:
    """``quick profile, 2 torch threads, 2-core CPU (x86_64), no GPU`` from a metrics.json record."""
    params = record.get("params", {})
    return stats.measured_on(params.get("profile"), params.get("threads"), params.get("machine", record.get("device")))


def time_paragraph(stem: str, wall_s: float, record: dict) -> str:
    params = record.get("params", {})
    return (f"**Time:** {wall_s:.0f} s of runner wall time (`python -m distill_lib run {stem[:2]}`, "
            f"{stats.measured_on(params.get('profile'), params.get('threads'), params.get('machine'))}). "
            f"The full profile is sized for a GPU.")


def quote_notebook(path: Path, run_dir: Path) -> bool:
    """Rewrite ``path``'s headline and time paragraphs from ``run_dir``; True when it changed."""
    record = read_metrics(run_dir)
    headline = record["metrics"].get("headline")
    if headline is None:
        raise ValueError(f"{run_dir / 'metrics.json'} holds no headline")
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    if run.get("status") != "ok":
        raise ValueError(f"{run_dir} did not finish ok (status {run.get('status')!r}); quote only finished runs")
    notebook = json.loads(path.read_text(encoding="utf-8"))
    first = "".join(notebook["cells"][0]["source"])
    updated = _replace_paragraph(first, "**Headline**", headline_line(headline, where_measured(record)))
    updated = _replace_paragraph(updated, "**Time:**", time_paragraph(path.stem, run["wall_s"], record))
    if updated == first:
        return False
    notebook["cells"][0]["source"] = updated.splitlines(keepends=True)
    write_text_atomic(path, json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
    return True


def readme_table(notebooks: list[Path]) -> str:
    """The README's table of every notebook's quoted headline (read back from the notebooks)."""
    rows = ["| notebook | headline (paired over seeds) | effect, points (95% CI) | verdict |", "|---|---|---|---|"]
    for path in notebooks:
        first = "".join(json.loads(path.read_text(encoding="utf-8"))["cells"][0]["source"])
        quoted = parse_headline_line(first)
        if quoted is None:
            raise ValueError(f"{path.name}: its first cell quotes no measured headline; run `quote` on it first")
        rows.append(f"| `{path.stem}` | {quoted['claim']} | {quoted['mean']:+.2f} ({quoted['low']:+.2f} to "
                    f"{quoted['high']:+.2f}), {quoted['n']} seeds | {quoted['verdict']} |")
    return "\n".join(rows)


def quote_readme(readme: Path, notebooks: list[Path]) -> bool:
    text = readme.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        raise ValueError(f"{readme} has no {README_START} ... {README_END} block to fill")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    updated = f"{head}{README_START}\n{readme_table(notebooks)}\n{README_END}{tail}"
    if updated == text:
        return False
    write_text_atomic(readme, updated)
    return True


def quote(runs_dir, notebooks_dir, readme=None) -> list[str]:
    """Quote every notebook that has a run in ``runs_dir``, then the README; returns what changed."""
    runs_dir, notebooks_dir = Path(runs_dir), Path(notebooks_dir)
    notebooks = sorted(notebooks_dir.glob("[0-9][0-9]_*.ipynb"))
    changed = [path.name for path in notebooks if (runs_dir / path.stem / "metrics.json").is_file()
               and quote_notebook(path, runs_dir / path.stem)]
    if readme is not None and quote_readme(Path(readme), notebooks):
        changed.append(Path(readme).name)
    return changed


def _replace_paragraph(text: str, start: str, replacement: str) -> str:
    """``text`` with the paragraph that begins with ``start`` replaced (it must exist)."""
    pattern = re.compile(rf"^{re.escape(start)}.*?(?=\n\s*\n|\Z)", re.S | re.M)
    if not pattern.search(text):
        raise ValueError(f"no paragraph starting with {start!r} in the first cell")
    return pattern.sub(lambda _match: replacement, text, count=1)
