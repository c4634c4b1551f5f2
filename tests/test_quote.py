"""Quoting measured results into notebooks and the README: what a test later compares with a run."""
import json

import nbformat
import pytest

from distill_lib.batch.quote import quote
from distill_lib.core import stats
from distill_lib.core.results import write_metrics

FIRST_CELL = ("# 09 · A lesson\n\n**What you will learn:** something.\n\n**Headline** (not yet measured)\n\n"
              "**What it shows:** words.\n\n**Time:** not yet measured.")


def make_notebook(folder):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(FIRST_CELL), nbformat.v4.new_code_cell("1")])
    path = folder / "09_lesson.ipynb"
    nbformat.write(notebook, path)
    return path


def make_run(runs, status="ok"):
    run_dir = runs / "09_lesson"
    comparison = stats.paired([0.86, 0.87, 0.85], [0.85, 0.85, 0.84], seeds=[0, 1, 2])
    write_metrics(run_dir, params={"profile": "quick", "threads": 2, "machine": "2-core x86_64 CPU, no GPU"},
                  metrics={"headline": stats.headline("KD vs alone, accuracy", "accuracy", comparison)})
    (run_dir / "run.json").write_text(json.dumps({"status": status, "wall_s": 41.6}))
    return comparison


def test_quote_writes_the_measured_headline_and_time_and_the_readme_table(tmp_path):
    notebooks, runs = tmp_path / "notebooks", tmp_path / "runs"
    notebooks.mkdir()
    path = make_notebook(notebooks)
    comparison = make_run(runs)
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- headlines:start -->\nold\n<!-- headlines:end -->\nrest\n")
    assert quote(runs, notebooks, readme) == ["09_lesson.ipynb", "README.md"]
    first = nbformat.read(path, as_version=4).cells[0].source
    quoted = stats.parse_headline_line(first)
    low, high = comparison.ci95
    assert quoted["claim"] == "KD vs alone, accuracy" and quoted["verdict"] == comparison.verdict
    assert (quoted["mean"], quoted["low"], quoted["high"]) == (round(100 * comparison.mean, 2), round(100 * low, 2),
                                                               round(100 * high, 2))
    assert "**What it shows:** words." in first and "**Time:** 42 s of runner wall time" in first
    table = readme.read_text()
    assert "| `09_lesson` | KD vs alone, accuracy |" in table and "old" not in table and table.endswith("rest\n")
    assert quote(runs, notebooks, readme) == []  # nothing changes the second time


def test_quote_refuses_an_unfinished_run_and_a_readme_without_markers(tmp_path):
    notebooks, runs = tmp_path / "notebooks", tmp_path / "runs"
    notebooks.mkdir()
    make_notebook(notebooks)
    make_run(runs, status="failed")
    with pytest.raises(ValueError, match="did not finish ok"):
        quote(runs, notebooks)
    make_run(runs)
    (tmp_path / "README.md").write_text("no markers\n")
    with pytest.raises(ValueError, match="headlines:start"):
        quote(runs, notebooks, tmp_path / "README.md")


# ------------------------------------------------------------------ all or nothing (issue 22)
import hashlib  # noqa: E402

from distill_lib.batch.cli import main  # noqa: E402

STEMS = ("08_first", "09_lesson")


def workbench(tmp_path):
    """Two notebooks, a finished quick run of each, and a README with the markers."""
    notebooks, runs = tmp_path / "notebooks", tmp_path / "runs"
    notebooks.mkdir()
    for stem in STEMS:
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(FIRST_CELL)]),
                       notebooks / f"{stem}.ipynb")
        write_run(runs / stem)
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- headlines:start -->\nold\n<!-- headlines:end -->\nrest\n")
    return notebooks, runs, readme


def write_run(run_dir, profile="quick", **headline_changes):
    comparison = stats.paired([0.86, 0.87, 0.85], [0.85, 0.85, 0.84], seeds=[0, 1, 2])
    headline = {**stats.headline("KD vs alone, accuracy", "accuracy", comparison), **headline_changes}
    write_metrics(run_dir, params={"profile": profile, "threads": 2, "machine": "2-core CPU"},
                  metrics={"headline": headline})
    (run_dir / "run.json").write_text(json.dumps({"status": "ok", "wall_s": 41.6}))


def digests(*folders_or_files) -> dict:
    found = {}
    for item in folders_or_files:
        for path in ([item] if item.is_file() else sorted(item.rglob("*"))):
            if path.is_file():
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def break_second_run_status(runs, readme):
    (runs / STEMS[1] / "run.json").write_text(json.dumps({"status": "failed", "wall_s": 3.0}))


def break_readme_markers(runs, readme):
    readme.write_text("no markers here\n")


def remove_readme(runs, readme):
    readme.unlink()


def break_verdict(runs, readme):
    write_run(runs / STEMS[1], verdict="huge win")


def metrics_a_list(runs, readme):
    (runs / STEMS[1] / "metrics.json").write_text("[1, 2, 3]")


def effect_a_string(runs, readme):
    write_run(runs / STEMS[1], effect_mean="0.0167")


def interval_missing(runs, readme):
    write_run(runs / STEMS[1], effect_ci95=[None, None])


def a_full_profile_run(runs, readme):
    write_run(runs / STEMS[1], profile="full")


def metrics_not_json(runs, readme):
    (runs / STEMS[1] / "metrics.json").write_text("{cut off")


def run_json_missing(runs, readme):
    (runs / STEMS[1] / "run.json").unlink()


def claim_breaking_the_line(runs, readme):
    write_run(runs / STEMS[1], claim="KD: **+9.99 points (95% CI +9.00 to +10.00)**, 3 seeds, paired, margin ±0.50 points: gain. Really")


BROKEN = {  # what breaks the second notebook's input -> words of the refusal
    "its run failed": (break_second_run_status, ["did not finish ok", "'failed'"]),
    "README without markers": (break_readme_markers, ["headlines:start"]),
    "README missing": (remove_readme, ["README", "does not exist", "--readme"]),
    "an invalid verdict": (break_verdict, ["verdict", "'huge win'"]),
    "metrics.json holds a list": (metrics_a_list, ["metrics.json", "must be a JSON object", "list"]),
    "effect_mean a string": (effect_a_string, ["effect_mean", "'0.0167'"]),
    "no interval": (interval_missing, ["effect_ci95"]),
    "a full-profile run": (a_full_profile_run, ["profile 'full'", "'quick' profile only"]),
    "metrics.json cut off": (metrics_not_json, ["metrics.json", "not valid JSON"]),
    "run.json missing": (run_json_missing, ["run.json", "does not exist"]),
    "a claim that breaks the quoted line": (claim_breaking_the_line, ["cannot be quoted"]),
}


@pytest.mark.parametrize("case", BROKEN)
def test_quote_writes_nothing_when_any_input_is_wrong(case, tmp_path, capsys):
    notebooks, runs, readme = workbench(tmp_path)
    breaks, words = BROKEN[case]
    breaks(runs, readme)
    before = digests(notebooks, tmp_path / "README.md") if readme.exists() else digests(notebooks)
    code = main(["quote", str(runs), "--notebooks-dir", str(notebooks), "--readme", str(readme)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
    after = digests(notebooks, tmp_path / "README.md") if readme.exists() else digests(notebooks)
    assert after == before  # in particular 08_first.ipynb, which sorts first, is untouched


def test_quote_restores_every_file_when_a_later_write_fails(tmp_path, monkeypatch, capsys):
    import os

    notebooks, runs, readme = workbench(tmp_path)
    before = digests(notebooks, readme)
    real_replace, calls = os.replace, []

    def fail_on_the_third(source, target):
        calls.append(target)
        if len(calls) == 3:  # the README, after both notebooks were replaced
            raise OSError(28, "No space left on device", str(target))
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", fail_on_the_third)
    code = main(["quote", str(runs), "--notebooks-dir", str(notebooks), "--readme", str(readme)])
    err = capsys.readouterr().err
    assert code == 1 and "no file was changed" in err, err
    monkeypatch.setattr(os, "replace", real_replace)
    assert digests(notebooks, readme) == before
    assert not [p for p in tmp_path.rglob(".*.tmp")]  # no temp file left behind


@pytest.mark.parametrize("runs_dir", ["missing", "empty", "unrelated", "a file", "the notebooks"])
def test_quote_refuses_a_runs_dir_that_holds_no_run(runs_dir, tmp_path, capsys):
    notebooks, runs, readme = workbench(tmp_path)
    before = digests(notebooks, readme)
    target = {"missing": tmp_path / "nope", "empty": tmp_path / "empty", "unrelated": tmp_path / "other",
              "a file": readme, "the notebooks": notebooks}[runs_dir]
    if runs_dir == "empty":
        target.mkdir()
    if runs_dir == "unrelated":
        (target / "photos").mkdir(parents=True)
        (target / "notes.txt").write_text("x")
    code = main(["quote", str(target), "--notebooks-dir", str(notebooks), "--readme", str(readme)])
    err = capsys.readouterr().err
    assert code == 2 and "RUNS_DIR" in err and "nothing to change" not in err and "Traceback" not in err, err
    assert digests(notebooks, readme) == before


def test_quote_still_quotes_a_partial_run(tmp_path):
    """A run of one notebook (`run 09`) quotes that notebook; the README table reads the other
    notebook's earlier quote (and refuses when there is none, tested above)."""
    notebooks, runs, readme = workbench(tmp_path)
    assert quote(runs, notebooks, readme) == ["08_first.ipynb", "09_lesson.ipynb", "README.md"]
    import shutil
    shutil.rmtree(runs / STEMS[0])
    write_run(runs / STEMS[1], effect_mean=0.02, effect_ci95=[0.015, 0.025])
    assert quote(runs, notebooks, readme) == ["09_lesson.ipynb", "README.md"]
    table = readme.read_text()
    assert "| `09_lesson` | KD vs alone, accuracy | +2.00 (+1.50 to +2.50)" in table
    assert "| `08_first` | KD vs alone, accuracy | +1.33" in table


def test_quote_writes_a_linked_readme_through_its_link(tmp_path):
    import os

    notebooks, runs, readme = workbench(tmp_path)
    (tmp_path / "docs").mkdir()
    target = tmp_path / "docs" / "README.md"
    readme.rename(target)
    os.symlink(target, readme)
    assert quote(runs, notebooks, readme)[-1] == "README.md"
    assert readme.is_symlink() and "| `09_lesson` |" in target.read_text()


# ---------------------------------------------------------------- when does distillation pay

def pays_row(notebook, comparison, kd, alone):
    from distill_lib.core import pays
    return pays.regime_row(notebook, comparison, stats.paired(kd, alone, seeds=[0, 1, 2]), student="mlp-small",
                           student_params=101_770, labels_per_class=100, unlabelled=9_000, teacher="CNN 93.40%",
                           temperature=4.0, loss="KL, alpha 0.9", test_images=2000)


def pays_workbench(tmp_path):
    """The two-notebook workbench; each run records one row, the second notebook holds the table's cell."""
    notebooks, runs, readme = workbench(tmp_path)
    rows = {STEMS[0]: pays_row("08", "KD vs alone", [0.80, 0.81, 0.82], [0.76, 0.77, 0.78]),
            STEMS[1]: pays_row("09", "KD + x vs KD", [0.800, 0.801, 0.799], [0.800, 0.800, 0.800])}
    for stem, row in rows.items():
        record = json.loads((runs / stem / "metrics.json").read_text())
        write_metrics(runs / stem, params=record["params"], metrics={**record["metrics"], "when_kd_pays": [row]})
    cells = [nbformat.v4.new_markdown_cell(FIRST_CELL), nbformat.v4.new_markdown_cell(
        "## When?\n\n<!-- when-kd-pays:start -->\nnot yet\n<!-- when-kd-pays:end -->\n")]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), notebooks / f"{STEMS[1]}.ipynb")
    readme.write_text(readme.read_text() + "\n<!-- when-kd-pays:start -->\nold\n<!-- when-kd-pays:end -->\nend\n")
    return notebooks, runs, readme


def test_quote_writes_the_when_kd_pays_table_into_the_readme_and_the_notebook_cell(tmp_path):
    from distill_lib.core import pays
    notebooks, runs, readme = pays_workbench(tmp_path)
    quote(runs, notebooks, readme)
    in_readme = pays.parse_table(readme.read_text())
    in_notebook = pays.parse_table(nbformat.read(notebooks / f"{STEMS[1]}.ipynb", as_version=4).cells[1].source)
    by_comparison = {key[:2]: found for key, found in in_readme.items()}
    assert in_readme == in_notebook and set(by_comparison) == {("08", "KD vs alone"), ("09", "KD + x vs KD")}
    # +4.00 points, the same for every seed: a gain; the second row is within the margin: negligible
    assert by_comparison[("08", "KD vs alone")]["mean"] == 4.0 and by_comparison[("08", "KD vs alone")]["verdict"] == "gain"
    assert by_comparison[("09", "KD + x vs KD")]["verdict"] == "negligible"
    assert "| +80 of 2,000 |" in readme.read_text() and readme.read_text().endswith("end\n")


def test_a_partial_set_of_runs_leaves_the_when_kd_pays_table_alone(tmp_path):
    notebooks, runs, readme = pays_workbench(tmp_path)
    quote(runs, notebooks)  # both first cells quoted, the README left alone
    import shutil
    shutil.rmtree(runs / STEMS[0])
    quote(runs, notebooks, readme)
    assert "<!-- when-kd-pays:start -->\nold\n<!-- when-kd-pays:end -->" in readme.read_text()


def test_a_malformed_when_kd_pays_row_is_refused_and_nothing_is_written(tmp_path):
    notebooks, runs, readme = pays_workbench(tmp_path)
    record = json.loads((runs / STEMS[0] / "metrics.json").read_text())
    record["metrics"]["when_kd_pays"][0]["effect"]["verdict"] = "huge"
    write_metrics(runs / STEMS[0], params=record["params"], metrics=record["metrics"])
    before = digests(notebooks, readme)
    with pytest.raises(ValueError, match="when_kd_pays row cannot be quoted"):
        quote(runs, notebooks, readme)
    assert digests(notebooks, readme) == before


# ---------------------------------------------------------------- the Chinese edition (issue 21)

ZH_FIRST_CELL = ("# 09 · 一课\n\n**你将学到：** 某事。\n\n**核心结论**（尚未测量）\n\n**它展示了什么：** 文字。\n\n"
                 "**用时：** 尚未测量。")
ZH_README = "简介\n<!-- headlines:start -->\n旧\n<!-- headlines:end -->\n其余\n"


def zh_workbench(tmp_path):
    """The pays workbench with a Chinese edition of both notebooks and a README.zh-CN.md."""
    notebooks, runs, readme = pays_workbench(tmp_path)
    (notebooks / "zh").mkdir()
    for stem in STEMS:
        cells = [nbformat.v4.new_markdown_cell(ZH_FIRST_CELL)]
        if stem == STEMS[1]:
            cells.append(nbformat.v4.new_markdown_cell(
                "## 何时？\n\n<!-- when-kd-pays:start -->\n尚未\n<!-- when-kd-pays:end -->\n"))
        nbformat.write(nbformat.v4.new_notebook(cells=cells), notebooks / "zh" / f"{stem}.ipynb")
    (tmp_path / "README.zh-CN.md").write_text(ZH_README + "\n<!-- when-kd-pays:start -->\n旧\n<!-- when-kd-pays:end -->\n")
    return notebooks, runs, readme


def test_quote_writes_the_chinese_edition_from_the_same_runs(tmp_path):
    from distill_lib.batch.quote import ZH, readme_table
    from distill_lib.core import pays
    notebooks, runs, readme = zh_workbench(tmp_path)
    assert quote(runs, notebooks, readme) == [f"{STEMS[0]}.ipynb", f"{STEMS[1]}.ipynb", f"zh/{STEMS[0]}.ipynb",
                                              f"zh/{STEMS[1]}.ipynb", "README.md", "README.zh-CN.md"]
    for stem in STEMS:
        english = nbformat.read(notebooks / f"{stem}.ipynb", as_version=4).cells[0].source
        chinese = nbformat.read(notebooks / "zh" / f"{stem}.ipynb", as_version=4).cells[0].source
        en, zh = stats.parse_headline_line(english), stats.parse_headline_line_zh(chinese)
        assert {k: v for k, v in zh.items() if k != "where"} == {k: v for k, v in en.items() if k != "where"}
        assert zh["where"] == "quick 配置，2 个 torch 线程，2-core CPU" and zh["verdict"] == "inconclusive"
        assert "**用时：** 运行器挂钟时间 42 秒" in chinese and "`python -m distill_lib run 0" in chinese
        assert "**它展示了什么：** 文字。" in chinese and "尚未测量" not in chinese
    zh_readme = (tmp_path / "README.zh-CN.md").read_text()
    first_cells = {p: nbformat.read(p, as_version=4).cells[0].source for p in sorted(notebooks.glob("*.ipynb"))}
    assert readme_table(list(first_cells), first_cells, ZH) in zh_readme and "旧" not in zh_readme
    assert "| 笔记本 | 核心结论 |" in zh_readme and "个种子，配对 | ±0.50 | 尚无定论 |" in zh_readme
    in_zh_notebook = pays.parse_table(nbformat.read(notebooks / "zh" / f"{STEMS[1]}.ipynb", as_version=4).cells[1].source)
    assert in_zh_notebook == pays.parse_table(readme.read_text()) == pays.parse_table(zh_readme)
    assert quote(runs, notebooks, readme) == []  # both editions up to date


def test_a_chinese_first_cell_without_its_paragraph_refuses_everything(tmp_path, capsys):
    notebooks, runs, readme = zh_workbench(tmp_path)
    broken = notebooks / "zh" / f"{STEMS[1]}.ipynb"
    notebook = nbformat.read(broken, as_version=4)
    notebook.cells[0].source = notebook.cells[0].source.replace("**核心结论**（尚未测量）", "核心结论：尚未测量")
    nbformat.write(notebook, broken)
    before = digests(notebooks, readme, tmp_path / "README.zh-CN.md")
    code = main(["quote", str(runs), "--notebooks-dir", str(notebooks), "--readme", str(readme)])
    err = capsys.readouterr().err
    assert code == 2 and "zh" in err and "no paragraph starting with '**核心结论**'" in err, err
    assert digests(notebooks, readme, tmp_path / "README.zh-CN.md") == before  # the English files too


def test_a_claim_that_breaks_the_chinese_line_is_refused(tmp_path, capsys):
    notebooks, runs, readme = zh_workbench(tmp_path)
    write_run(runs / STEMS[1], claim="KD」：**+9.99 个百分点（95% 置信区间 +9.00 至 +10.00）**，3 个种子，配对比较，"
                                     "边际 ±0.50 个百分点：提升。 really")
    before = digests(notebooks, readme)
    assert main(["quote", str(runs), "--notebooks-dir", str(notebooks), "--readme", str(readme)]) == 2
    assert "cannot be quoted" in capsys.readouterr().err and digests(notebooks, readme) == before
