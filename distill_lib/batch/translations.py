"""The Chinese edition, ``notebooks/zh/``, kept in step with the English notebooks.

The contract (``tests/test_zh.py`` checks it, :func:`status` lists what breaks it):

- ``notebooks/zh/NN_name.ipynb`` for every ``notebooks/NN_name.ipynb``, with the same cells in the
  same order: the same cell ids and types.
- A code cell is the English code: the same ``ast`` and the same tags. ``sync`` copies the English
  cell as it is, comments included; a cell that differs in comments only is listed by ``status``
  (kind ``comments``) but lets the test pass.
- A markdown cell is a translation and says of what, in its metadata:
  ``{"translation": {"source_id": "<English cell id>", "source_sha256": "<sha256 of that cell>"}}``.
  The hash is taken over the English source with what ``quote`` rewrites masked (the first cell's
  ``**Headline**`` and ``**Time:**`` paragraphs, the ``when-kd-pays`` block): a re-measured number
  makes no translation stale, an edited sentence does. A cell added by :func:`sync` holds the
  English text and ``"untranslated": true`` until someone translates and stamps it.
- The first cells quote the same headline (``quote`` writes both editions from the same run), and
  a ``when-kd-pays`` block holds the same table in both.

For maintainers, ``python -m distill_lib translations``:

- ``status [--diff]``: every stale, untranslated or mismatched cell, by notebook and cell id (exit 1
  when there is one); ``--diff`` prints, for a stale cell, what changed in the English text since
  the version translated (found in git history by its hash).
- ``sync``: the Chinese notebooks follow the English structure: a missing notebook is created, cells
  are added, removed and reordered, every code cell is the English one again, and a new markdown
  cell arrives in English marked untranslated. Translations are kept (found
  by cell id, or by the hash they record when an English cell changed its id).
- ``stamp NOTEBOOK CELL_ID...`` (or ``--all``): record that these cells now translate the current
  English text.
"""
from __future__ import annotations

import ast
import difflib
import hashlib
import json
import subprocess
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ..core import stats
from .params import ZH_FOLDER
from .quote import HEADLINE_START, PAYS_END, PAYS_START, TIME_START, paragraph_pattern

KEY = "translation"
NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"


# ---------------------------------------------------------------- what a translation records

def cell_text(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def masked(text: str, first: bool) -> str:
    """``text`` without what ``quote`` rewrites: the first cell's headline and time paragraphs, and
    whatever stands between the when-kd-pays markers."""
    if first:
        for start in (HEADLINE_START, TIME_START):
            text = paragraph_pattern(start).sub(lambda _match, start=start: f"{start} ...", text, count=1)
    if PAYS_START in text and PAYS_END in text:
        head, rest = text.split(PAYS_START, 1)
        text = f"{head}{PAYS_START}...{PAYS_END}{rest.split(PAYS_END, 1)[1]}"
    return text


def source_sha256(notebook: dict, index: int) -> str:
    """The hash a translation of English cell ``index`` records (:func:`masked` source, UTF-8)."""
    return hashlib.sha256(masked(cell_text(notebook["cells"][index]), index == 0).encode("utf-8")).hexdigest()


def _same_code(a: str, b: str) -> bool:
    try:
        return ast.dump(ast.parse(a)) == ast.dump(ast.parse(b))
    except SyntaxError:  # IPython magics: the text itself must match
        return a == b


def _tags(cell: dict) -> list:
    return cell.get("metadata", {}).get("tags", [])


def _pays_block(text: str) -> str | None:
    if PAYS_START not in text or PAYS_END not in text:
        return None
    return text.split(PAYS_START, 1)[1].split(PAYS_END, 1)[0]


# ---------------------------------------------------------------- status

@dataclass
class Problem:
    notebook: str       # file name, e.g. 00_quickstart.ipynb
    cell: str | None    # cell id, None for the notebook as a whole
    kind: str           # missing, extra, structure, code, comments (a note), untranslated, stale, headline, table
    detail: str

    def __str__(self) -> str:
        where = f"{ZH_FOLDER}/{self.notebook}" + (f" cell {self.cell}" if self.cell else "")
        return f"{where}: {self.kind}: {self.detail}"


def pairs(notebooks_dir) -> list[tuple[Path, Path]]:
    """(English notebook, its Chinese twin's path) for every English notebook, in order."""
    folder = Path(notebooks_dir)
    return [(path, folder / ZH_FOLDER / path.name) for path in sorted(folder.glob(NOTEBOOK_GLOB))]


def status(notebooks_dir) -> list[Problem]:
    """Every way the Chinese edition is out of step with the English one (empty: in step)."""
    found = []
    for english, chinese in pairs(notebooks_dir):
        if not chinese.exists():
            found.append(Problem(chinese.name, None, "missing",
                                 f"no Chinese edition of {english.name}; run `python -m distill_lib translations "
                                 "sync`, then translate its cells"))
        else:
            found += check(read(english), read(chinese), chinese.name)
    english_names = {english.name for english, _ in pairs(notebooks_dir)}
    for extra in sorted((Path(notebooks_dir) / ZH_FOLDER).glob(NOTEBOOK_GLOB)):
        if extra.name not in english_names:
            found.append(Problem(extra.name, None, "extra", "no English notebook of that name"))
    return found


def check(english: dict, chinese: dict, name: str) -> list[Problem]:
    """The problems of one Chinese notebook against its English twin (both as JSON)."""
    en_cells, zh_cells = english["cells"], chinese["cells"]
    en_shape = [(c.get("id"), c["cell_type"]) for c in en_cells]
    zh_shape = [(c.get("id"), c["cell_type"]) for c in zh_cells]
    problems = []
    if en_shape != zh_shape:
        en_ids, zh_ids = [i for i, _ in en_shape], [i for i, _ in zh_shape]
        for cell_id in en_ids:
            if cell_id not in zh_ids:
                problems.append(Problem(name, cell_id, "structure", "in the English notebook, not in the Chinese one"))
        for cell_id in zh_ids:
            if cell_id not in en_ids:
                problems.append(Problem(name, cell_id, "structure", "in the Chinese notebook, not in the English one"))
        if not problems:
            kinds = dict(zh_shape)
            changed = [f"{i} ({t} in English, {kinds[i]} in Chinese)" for i, t in en_shape if kinds[i] != t]
            detail = ("cell types differ: " + ", ".join(changed) if changed else
                      f"cells in another order: English {' '.join(en_ids)}; Chinese {' '.join(zh_ids)}")
            problems.append(Problem(name, None, "structure", detail))
        problems[-1].detail += "; run `python -m distill_lib translations sync`"
    by_id = {c.get("id"): c for c in zh_cells}
    for index, en_cell in enumerate(en_cells):
        zh_cell = by_id.get(en_cell.get("id"))
        if zh_cell is None or zh_cell["cell_type"] != en_cell["cell_type"]:
            continue
        problems += _check_cell(english, index, zh_cell, name)
    problems += _check_first_cell(en_cells, zh_cells, name)
    return problems


def _check_cell(english: dict, index: int, zh_cell: dict, name: str) -> list[Problem]:
    en_cell = english["cells"][index]
    cell_id = en_cell.get("id")
    if en_cell["cell_type"] == "code":
        if not _same_code(cell_text(en_cell), cell_text(zh_cell)):
            return [Problem(name, cell_id, "code", "not the English code (compared with ast); run "
                                                   "`python -m distill_lib translations sync`")]
        if _tags(en_cell) != _tags(zh_cell):
            return [Problem(name, cell_id, "code", f"tags {_tags(zh_cell)} instead of the English {_tags(en_cell)}")]
        if cell_text(en_cell) != cell_text(zh_cell):  # the same code: a note, which tests/test_zh.py lets pass
            return [Problem(name, cell_id, "comments", "the same code with other comments or spacing than the "
                                                       "English; `translations sync` copies the English text")]
        return []
    if en_cell["cell_type"] != "markdown":
        return []
    record = zh_cell.get("metadata", {}).get(KEY)
    if not isinstance(record, dict) or record.get("untranslated"):
        return [Problem(name, cell_id, "untranslated", "translate it, then `python -m distill_lib translations "
                                                       f"stamp {name[:2]} {cell_id}`")]
    if record.get("source_id") != cell_id:
        return [Problem(name, cell_id, "stale", f"records source_id {record.get('source_id')!r}, not {cell_id!r}")]
    if record.get("source_sha256") != source_sha256(english, index):
        return [Problem(name, cell_id, "stale", "the English cell changed after it was translated; update the "
                                                "translation (`translations status --diff` shows the change), then "
                                                f"`python -m distill_lib translations stamp {name[:2]} {cell_id}`")]
    pays = _pays_block(cell_text(en_cell))
    if pays is not None and "|" in pays and _pays_block(cell_text(zh_cell)) != pays:  # a table, quoted in both
        return [Problem(name, cell_id, "table", "the when-kd-pays table differs from the English one; "
                                                "run `python -m distill_lib quote RUNS`")]
    return []


def _check_first_cell(en_cells: list, zh_cells: list, name: str) -> list[Problem]:
    """The first cells quote the same measured headline (or neither quotes one yet)."""
    if not en_cells or not zh_cells:
        return []
    fields = ("claim", "mean", "low", "high", "n", "kind", "margin", "verdict")
    en = stats.parse_headline_line(cell_text(en_cells[0]))
    zh = stats.parse_headline_line_zh(cell_text(zh_cells[0]))
    en, zh = ({k: q[k] for k in fields} if q else None for q in (en, zh))
    if en == zh:
        return []
    return [Problem(name, zh_cells[0].get("id"), "headline",
                    f"the Chinese first cell quotes {zh}, the English one {en}; run `python -m distill_lib quote RUNS`")]


# ---------------------------------------------------------------- sync and stamp

def read(path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write(path, notebook: dict) -> None:
    """As Jupyter saves a notebook: sorted keys, indent 1, UTF-8 text, a final newline."""
    text = json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not Path(path).exists() or Path(path).read_text(encoding="utf-8") != text:
        Path(path).write_text(text, encoding="utf-8")


def _untranslated(en_cell: dict) -> dict:
    cell = _copy(en_cell)
    cell.setdefault("metadata", {})[KEY] = {"source_id": en_cell.get("id"), "untranslated": True}
    return cell


def synced(english: dict, chinese: dict | None) -> tuple[dict, list[str]]:
    """``chinese`` made to follow ``english`` (see the module docstring) and what changed."""
    zh_cells = list((chinese or {}).get("cells", []))
    by_id = {c.get("id"): c for c in zh_cells}
    by_hash = {c["metadata"][KEY].get("source_sha256"): c for c in zh_cells
               if c["cell_type"] == "markdown" and isinstance(c.get("metadata", {}).get(KEY), dict)}
    cells, changes = [], []
    for index, en_cell in enumerate(english["cells"]):
        cell_id, kind = en_cell.get("id"), en_cell["cell_type"]
        mine = by_id.get(cell_id)
        mine = mine if mine is not None and mine["cell_type"] == kind else None
        if mine is None and kind == "markdown" and source_sha256(english, index) in by_hash:
            moved = by_hash[source_sha256(english, index)]  # the same English text under another id
            mine = _copy(moved)
            mine["id"], mine["metadata"][KEY]["source_id"] = cell_id, cell_id
            changes.append(f"{cell_id}: the translation of cell {moved.get('id')} (same English text) kept")
        if kind == "code":  # the English cell, text and all (so its comments follow the English ones too)
            cell = _copy(en_cell)
            if mine is None:
                changes.append(f"{cell_id}: code cell added")
            elif not _same_code(cell_text(en_cell), cell_text(mine)):
                changes.append(f"{cell_id}: code replaced by the English code")
            elif cell_text(en_cell) != cell_text(mine) or mine != cell:
                changes.append(f"{cell_id}: comments, outputs or metadata copied from the English cell")
        elif mine is None:
            cell = _untranslated(en_cell) if kind == "markdown" else _copy(en_cell)
            changes.append(f"{cell_id}: {kind} cell added" + (", in English, untranslated" if kind == "markdown" else ""))
        else:
            cell = mine
        cells.append(cell)
    new_ids = [c.get("id") for c in cells]
    changes += [f"{c.get('id')}: removed (not in the English notebook)" for c in zh_cells if c.get("id") not in new_ids]
    old_order = [c.get("id") for c in zh_cells if c.get("id") in new_ids]
    if old_order != [i for i in new_ids if i in old_order]:
        changes.append("cells put in the English order")
    notebook = {**{k: v for k, v in english.items() if k != "cells"}, "cells": cells}
    return notebook, changes


def _copy(cell: dict) -> dict:
    return json.loads(json.dumps(cell))


def sync(notebooks_dir) -> list[str]:
    """Make every Chinese notebook follow its English twin; returns what changed, per notebook."""
    report = []
    for english_path, chinese_path in pairs(notebooks_dir):
        chinese = read(chinese_path) if chinese_path.exists() else None
        notebook, changes = synced(read(english_path), chinese)
        if chinese is None:
            to_translate = sum(c["cell_type"] == "markdown" for c in notebook["cells"])
            changes = [f"created from {english_path.name}: {to_translate} markdown cells, in English, to translate"]
        if changes:
            write(chinese_path, notebook)
            report += [f"{ZH_FOLDER}/{chinese_path.name}: {change}" for change in changes]
    return report


def stamp(notebooks_dir, notebook: str, cell_ids: list[str], every: bool = False) -> list[str]:
    """Record that the Chinese cells ``cell_ids`` of ``notebook`` (``00`` or a file name) translate
    the current English text. ``every``: each stale or untranslated markdown cell, except one that
    still holds the English text. ``ValueError`` for an unknown notebook or cell."""
    matches = [pair for pair in pairs(notebooks_dir)
               if pair[0].stem == notebook.removesuffix(".ipynb") or pair[0].name.startswith(f"{notebook}_")]
    if len(matches) != 1:
        raise ValueError(f"notebook {notebook!r} names no single English notebook in {notebooks_dir}")
    english_path, chinese_path = matches[0]
    if not chinese_path.exists():
        raise ValueError(f"{chinese_path} does not exist; run `python -m distill_lib translations sync` first")
    english, chinese = read(english_path), read(chinese_path)
    index_of = {c.get("id"): i for i, c in enumerate(english["cells"]) if c["cell_type"] == "markdown"}
    zh_by_id = {c.get("id"): c for c in chinese["cells"] if c["cell_type"] == "markdown"}
    if every:
        stale = {p.cell for p in check(english, chinese, chinese_path.name) if p.kind in ("stale", "untranslated")}
        cell_ids = [i for i in index_of if i in stale]
    unknown = [i for i in cell_ids if i not in index_of or i not in zh_by_id]
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: no markdown cell of that id in both {english_path.name} editions "
                         "(run `translations sync` first)")
    report = []
    for cell_id in cell_ids:
        cell = zh_by_id[cell_id]
        if every and cell_text(cell) == cell_text(english["cells"][index_of[cell_id]]):
            report.append(f"{cell_id}: skipped, it still holds the English text")
            continue
        cell.setdefault("metadata", {})[KEY] = {"source_id": cell_id,
                                                "source_sha256": source_sha256(english, index_of[cell_id])}
        report.append(f"{cell_id}: stamped")
    write(chinese_path, chinese)
    return [f"{ZH_FOLDER}/{chinese_path.name} {line}" for line in report]


# ---------------------------------------------------------------- what changed in English

def english_diff(english_path: Path, cell_id: str, translated_sha256: str) -> str:
    """A unified diff from the English text that was translated (the version of cell ``cell_id``
    in git history whose hash the translation records) to the current one."""
    english_path = Path(english_path).resolve()
    current = read(english_path)
    index = next(i for i, c in enumerate(current["cells"]) if c.get("id") == cell_id)
    then = _translated_version(english_path, cell_id, translated_sha256)
    if then is None:
        return f"(the translated version of {cell_id} is not in this repository's git history)\n"
    now = cell_text(current["cells"][index])
    then, now = (text if text.endswith("\n") else text + "\n" for text in (then, now))  # whole diff lines
    return "".join(difflib.unified_diff(then.splitlines(keepends=True), now.splitlines(keepends=True),
                                        f"{cell_id} as translated", f"{cell_id} now"))


def _translated_version(english_path: Path, cell_id: str, sha256: str) -> str | None:
    def git(*args, cwd=english_path.parent):
        try:
            return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True).stdout
        except OSError:  # no git
            return ""

    top = git("rev-parse", "--show-toplevel").strip()
    if not top:
        return None
    git = partial(git, cwd=top)  # paths in log and show are the repository's
    relative = english_path.relative_to(Path(top).resolve()).as_posix()
    for commit in git("log", "--format=%H", "--", relative).split():
        try:
            notebook = json.loads(git("show", f"{commit}:{relative}"))
        except ValueError:
            continue
        for index, cell in enumerate(notebook.get("cells", [])):
            if cell.get("id") == cell_id and source_sha256(notebook, index) == sha256:
                return cell_text(cell)
    return None


def status_text(notebooks_dir, diff: bool = False) -> tuple[str, int]:
    """What ``translations status`` prints, and its exit code (0: in step)."""
    problems = status(notebooks_dir)
    if not problems:
        return f"the Chinese edition is in step with the English notebooks ({len(pairs(notebooks_dir))} notebooks)", 0
    lines = [str(problem) for problem in problems]
    if diff:
        for problem in problems:
            if problem.kind == "stale" and problem.cell:
                english = Path(notebooks_dir) / problem.notebook
                record = next(c for c in read(Path(notebooks_dir) / ZH_FOLDER / problem.notebook)["cells"]
                              if c.get("id") == problem.cell)["metadata"][KEY]
                lines.append(f"\n--- {problem.notebook} {problem.cell}: the English change since its translation\n"
                             + english_diff(english, problem.cell, record.get("source_sha256")))
    return "\n".join(lines) + f"\n{len(problems)} problem{'s' if len(problems) > 1 else ''}", 1


