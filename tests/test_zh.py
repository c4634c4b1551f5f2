"""The Chinese edition (notebooks/zh) is in step with the English notebooks; fast, nothing executed.

Each failure names the notebook and the cell id, and says what to run (``python -m distill_lib
translations status|sync|stamp``, or ``quote``). The second half shows on a temporary copy that an
English edit without its translation is caught, and how the tool repairs what it can.
"""
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from distill_lib.batch import translations as tr
from distill_lib.batch.cli import main
from distill_lib.core import stats

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
PAIRS = tr.pairs(NOTEBOOKS)
CJK = re.compile(r"[\u4e00-\u9fff]")
# what a translation keeps as it is: code spans, display and inline maths, link targets
KEPT = re.compile(r"`[^`\n]+`|\$\$.+?\$\$|\$[^$\n]+\$|\]\([^)\s]+\)", re.S)


def problems_of(english: Path, chinese: Path) -> list:
    if not chinese.exists():
        return [f"{chinese} is missing: run `python -m distill_lib translations sync`, then translate its cells"]
    return [str(p) for p in tr.check(tr.read(english), tr.read(chinese), chinese.name) if p.kind != "comments"]


@pytest.mark.parametrize("english, chinese", PAIRS, ids=[p[0].stem for p in PAIRS])
def test_the_chinese_edition_is_in_step(english, chinese):
    """Same cells in the same order, the same code, every translation of the current English text,
    the same quoted headline and when-kd-pays table."""
    found = problems_of(english, chinese)
    assert not found, "\n".join(found)


def test_no_chinese_notebook_without_an_english_one():
    extra = [str(p) for p in tr.status(NOTEBOOKS) if p.kind == "extra"]
    assert not extra, "\n".join(extra)


@pytest.mark.parametrize("english, chinese", PAIRS, ids=[p[0].stem for p in PAIRS])
def test_translations_are_chinese_and_keep_code_maths_and_links(english, chinese):
    en_cells = tr.read(english)["cells"]
    zh_cells = {c["id"]: c for c in tr.read(chinese)["cells"]}
    for index, cell in enumerate(en_cells):
        if cell["cell_type"] != "markdown":
            continue
        zh = tr.cell_text(zh_cells[cell["id"]])
        assert CJK.search(zh), f"zh/{chinese.name} cell {cell['id']}: no Chinese in it (stamped untranslated?)"
        missing = [kept for kept in KEPT.findall(tr.masked(tr.cell_text(cell), index == 0)) if kept not in zh]
        assert not missing, f"zh/{chinese.name} cell {cell['id']}: the translation lost {missing}"


def test_verdicts_and_terms_are_the_fixed_chinese_names():
    assert stats.VERDICTS_ZH == {"gain": "提升", "loss": "下降", "negligible": "可忽略", "inconclusive": "尚无定论"}
    text = "".join(tr.cell_text(c) for _, zh in PAIRS for c in tr.read(zh)["cells"] if c["cell_type"] == "markdown")
    for term in ("知识蒸馏", "教师模型", "学生模型", "温度", "软目标", "暗知识", "蒸馏损失", "迁移学习", "对抗蒸馏",
                 "知识匹配", "轻量化", "边际"):
        assert term in text, term
    assert "阈值" not in text, "the margin is 边际 everywhere"


# ---------------------------------------------------------------- the zh headline line

def test_the_chinese_headline_line_reads_back_the_same_fields_as_the_english_one():
    comparison = stats.versus_fixed([0.80, 0.81, 0.79], 0.9, seeds=[0, 1, 2])
    headline = stats.headline("students vs the teacher scored once, accuracy", "accuracy", comparison)
    english = stats.parse_headline_line(stats.headline_line(headline, "here"))
    chinese = stats.parse_headline_line_zh("前言\n\n" + stats.headline_line_zh(headline, stats.measured_on_zh(
        "quick", 1, "2-core x86_64 CPU, no GPU")) + "\n\n其余")
    assert {k: v for k, v in chinese.items() if k != "where"} == {k: v for k, v in english.items() if k != "where"}
    assert chinese["where"] == "quick 配置，1 个 torch 线程，2-core x86_64 CPU, no GPU"
    assert chinese["verdict"] == "loss" and chinese["kind"] == "one-sample"
    assert stats.parse_headline_line_zh(stats.headline_line(headline, "here")) is None


# ---------------------------------------------------------------- stale detection, shown on a copy

@pytest.fixture
def workbench(tmp_path):
    """A copy of notebooks/ (both editions) in a git repository of its own."""
    shutil.copytree(NOTEBOOKS, tmp_path / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "."], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "as translated"], cwd=tmp_path, check=True)
    return tmp_path / "notebooks"


def edit(path: Path, cell_id: str, change) -> None:
    notebook = tr.read(path)
    cell = next(c for c in notebook["cells"] if c["id"] == cell_id)
    cell["source"] = change(tr.cell_text(cell)).splitlines(keepends=True)
    tr.write(path, notebook)


def status_lines(notebooks) -> list:
    return [str(p) for p in tr.status(notebooks)]


def test_an_english_markdown_edit_without_its_translation_fails_naming_the_cell(workbench, capsys):
    english = workbench / "00_quickstart.ipynb"
    assert status_lines(workbench) == []
    edit(english, "cell-09", lambda text: text.replace("In plain PyTorch:", "In plain PyTorch, line by line:"))
    found = problems_of(english, workbench / "zh" / english.name)
    assert found == ["zh/00_quickstart.ipynb cell cell-09: stale: the English cell changed after it was translated; "
                     "update the translation (`translations status --diff` shows the change), then "
                     "`python -m distill_lib translations stamp 00 cell-09`"]
    # the maintainer's view: the command names it, exits 1, and shows what changed in English
    assert main(["translations", "status", "--diff", "--notebooks-dir", str(workbench)]) == 1
    out = capsys.readouterr().out
    assert found[0] in out
    assert re.search(r"^-.*In plain PyTorch:$", out, re.M) and re.search(r"^\+.*In plain PyTorch, line by line:$", out, re.M)
    # after translating the change, a stamp records it and the edition is in step again
    edit(workbench / "zh" / english.name, "cell-09", lambda text: text.replace("用纯 PyTorch 写出来：", "用纯 PyTorch 逐行写出来："))
    assert main(["translations", "stamp", "00", "cell-09", "--notebooks-dir", str(workbench)]) == 0
    assert status_lines(workbench) == []


def test_what_quote_rewrites_makes_no_translation_stale(workbench):
    """A re-measured headline, time or when-kd-pays table is quote's business, not the translator's."""
    def requote(text):
        text = re.sub(r"\*\*Headline\*\*.*?\n\n", "**Headline** (re-measured, any numbers)\n\n", text, flags=re.S)
        return re.sub(r"\*\*Time:\*\*.*?\n\n", "**Time:** 12 s of runner wall time.\n\n", text, flags=re.S)

    def requote_zh(text):  # the Chinese first cell re-quoted the same way (both editions quote no headline now)
        text = re.sub(r"\*\*核心结论\*\*.*?\n\n", "**核心结论**（重新测量）\n\n", text, flags=re.S)
        return re.sub(r"\*\*用时：\*\*.*?\n\n", "**用时：** 运行器挂钟时间 12 秒。\n\n", text, flags=re.S)

    edit(workbench / "00_quickstart.ipynb", "cell-00", requote)
    edit(workbench / "zh" / "00_quickstart.ipynb", "cell-00", requote_zh)
    edit(workbench / "06_pitfalls.ipynb", "when-kd-pays", lambda text: re.sub(
        r"(<!-- when-kd-pays:start -->\n).*?(\n<!-- when-kd-pays:end -->)", r"\1| a | table |\2", text, flags=re.S))
    found = status_lines(workbench)
    assert found == ["zh/06_pitfalls.ipynb cell when-kd-pays: table: the when-kd-pays table differs from the English "
                     "one; run `python -m distill_lib quote RUNS`"]
    edit(workbench / "00_quickstart.ipynb", "cell-00", lambda text: text.replace("Prerequisites", "Before you start"))
    assert "zh/00_quickstart.ipynb cell cell-00: stale" in "\n".join(status_lines(workbench))


def test_structure_and_code_differences_are_named_and_sync_repairs_them(workbench, capsys):
    english = workbench / "01_teacher_training.ipynb"
    notebook = tr.read(english)
    cells = notebook["cells"]
    code = next(i for i, c in enumerate(cells) if c["cell_type"] == "code" and "parameters" not in c["metadata"].get("tags", []))
    cells[code]["source"] = ["# a comment only changes no code\n"] + cells[code]["source"]
    commented = cells[code]["id"]
    new_text = {"cell_type": "markdown", "id": "new-prose", "metadata": {}, "source": ["## A new section\n"]}
    removed = cells.pop(6)  # cell-06, a markdown cell
    cells.insert(2, new_text)
    tr.write(english, notebook)
    found = status_lines(workbench)
    assert found == [
        "zh/01_teacher_training.ipynb cell new-prose: structure: in the English notebook, not in the Chinese one",
        f"zh/01_teacher_training.ipynb cell {removed['id']}: structure: in the Chinese notebook, not in the English "
        "one; run `python -m distill_lib translations sync`",
        f"zh/01_teacher_training.ipynb cell {commented}: comments: the same code with other comments or "
        "spacing than the English; `translations sync` copies the English text"]  # a note; the test lets it pass
    assert len(problems_of(english, workbench / "zh" / english.name)) == 2
    renamed = next(c for c in cells if c["cell_type"] == "code" and "dl.get_teacher(" in "".join(c["source"]))
    renamed["source"] = [line.replace("dl.get_teacher(", "dl.load_teacher(") for line in renamed["source"]]
    tr.write(english, notebook)
    assert (f"zh/01_teacher_training.ipynb cell {renamed['id']}: code: not the English code (compared with ast); run "
            "`python -m distill_lib translations sync`") in status_lines(workbench)

    assert main(["translations", "sync", "--notebooks-dir", str(workbench)]) == 0
    out = capsys.readouterr().out
    assert f"{renamed['id']}: code replaced by the English code" in out and "new-prose: markdown cell added" in out
    assert f"{commented}: comments, outputs or metadata copied from the English cell" in out
    assert status_lines(workbench) == [
        "zh/01_teacher_training.ipynb cell new-prose: untranslated: translate it, then "
        "`python -m distill_lib translations stamp 01 new-prose`"]
    chinese = tr.read(workbench / "zh" / english.name)
    assert [c["id"] for c in chinese["cells"]] == [c["id"] for c in cells]
    assert "dl.load_teacher(" in tr.cell_text(next(c for c in chinese["cells"] if c["id"] == renamed["id"]))
    # --all stamps nothing that still holds the English text
    assert main(["translations", "stamp", "01", "--all", "--notebooks-dir", str(workbench)]) == 0
    assert "new-prose: skipped, it still holds the English text" in capsys.readouterr().out
    edit(workbench / "zh" / english.name, "new-prose", lambda text: "## 新的一节\n")
    assert main(["translations", "stamp", "01", "--all", "--notebooks-dir", str(workbench)]) == 0
    assert status_lines(workbench) == []


def test_cells_in_another_order_and_a_missing_notebook_are_named(workbench):
    english = workbench / "04_adversarial_distillation.ipynb"
    notebook = tr.read(english)
    notebook["cells"][4], notebook["cells"][5] = notebook["cells"][5], notebook["cells"][4]
    tr.write(english, notebook)
    (workbench / "zh" / "06_pitfalls.ipynb").unlink()
    found = status_lines(workbench)
    assert len(found) == 2 and found[0].startswith("zh/04_adversarial_distillation.ipynb: structure: cells in another "
                                                   "order: English cell-00 cell-01 cell-02 cell-03 cell-05 cell-04")
    assert found[1].startswith("zh/06_pitfalls.ipynb: missing: no Chinese edition of 06_pitfalls.ipynb")
    tr.sync(workbench)
    found = status_lines(workbench)
    assert not [f for f in found if "04_" in f]
    # the new notebook's markdown arrives in English, marked untranslated; its first cell's headline in
    # English reads as no Chinese headline until `quote` writes one
    assert found and all(f.startswith("zh/06_pitfalls.ipynb cell ") and (": untranslated:" in f or ": headline:" in f)
                         for f in found), found


def test_a_cell_that_changed_its_id_keeps_its_translation(workbench):
    english = workbench / "02_temperature_soft_targets.ipynb"
    notebook = tr.read(english)
    notebook["cells"][1]["id"] = "parameters-intro"
    tr.write(english, notebook)
    tr.sync(workbench)
    chinese = tr.read(workbench / "zh" / english.name)
    assert chinese["cells"][1]["id"] == "parameters-intro" and "## 参数" in tr.cell_text(chinese["cells"][1])
    assert status_lines(workbench) == []


def test_a_headline_quoted_in_one_edition_only_is_named(workbench):
    zh = workbench / "zh" / "03_transfer_vs_distillation.ipynb"
    edit(zh, "1087edad", lambda text: text.replace("个百分点：提升。", "个百分点：可忽略。", 1))
    found = status_lines(workbench)
    assert len(found) == 1 and found[0].startswith("zh/03_transfer_vs_distillation.ipynb cell 1087edad: headline: "
                                                   "the Chinese first cell quotes")


# ---------------------------------------------------------------- README.zh-CN.md

README_EN, README_ZH = ROOT / "README.md", ROOT / "README.zh-CN.md"
FENCE = re.compile(r"^[ \t]*```sh\n(.*?)^[ \t]*```", re.S | re.M)
INLINE = re.compile(r"`((?:\.venv/bin/|python3? -m |python3 |bash )[^`]+)`")


def commands(text: str) -> tuple[list, list]:
    """(the command lines of the ```sh blocks, trailing comments and line continuations removed;
    the commands written inline as code spans), white space folded."""
    blocks = []
    for block in FENCE.findall(text):
        for line in re.sub(r"\\\n\s*", "", block).splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line:
                blocks.append(" ".join(line.split()))
    return blocks, [" ".join(span.split()) for span in INLINE.findall(FENCE.sub("", text))]


def for_the_chinese_edition(command: str) -> bool:
    return "--lang zh" in command or "notebooks/zh/" in command or "distill_lib translations" in command


def test_the_chinese_readme_gives_the_english_readmes_commands():
    """Its commands are the English README's, in the same order; the only others run the Chinese
    edition (the same command with --lang zh or notebooks/zh/) or keep it in step (translations)."""
    en_blocks, en_inline = commands(README_EN.read_text(encoding="utf-8"))
    zh_blocks, zh_inline = commands(README_ZH.read_text(encoding="utf-8"))
    assert len(en_blocks) >= 5 and [c for c in zh_blocks if not for_the_chinese_edition(c)] == en_blocks
    english = set(en_blocks + en_inline)
    assert [c for c in zh_inline if not for_the_chinese_edition(c) and c not in english] == []
    for command in zh_blocks + zh_inline:
        if for_the_chinese_edition(command) and "distill_lib translations" not in command:
            assert command.replace(" --lang zh", "").replace("notebooks/zh/", "notebooks/") in english, command


def test_the_two_readmes_link_to_each_other():
    assert "[简体中文](README.zh-CN.md)" in README_EN.read_text(encoding="utf-8").splitlines()[2]
    assert "[English](README.md)" in README_ZH.read_text(encoding="utf-8").splitlines()[2]


def test_the_chinese_readme_quotes_the_recorded_full_data_effects():
    text = README_ZH.read_text(encoding="utf-8")
    for name in ("00_quickstart", "02_temperature_soft_targets"):
        headline = json.loads((ROOT / "docs" / "full-data-cpu" / f"{name}.metrics.json").read_text())["metrics"]["headline"]
        low, high = (100 * value for value in headline["effect_ci95"])
        quoted = (f"**{100 * headline['effect_mean']:+.2f} 个百分点（95% 置信区间 {low:+.2f} 至 {high:+.2f}）**，"
                  f"{headline['n_seeds']} 个种子，配对比较：{stats.VERDICTS_ZH[headline['verdict']]}。")
        assert f"- {name[:2]}：" in text and quoted in text, quoted
