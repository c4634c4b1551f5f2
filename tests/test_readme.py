"""The numbers the README quotes are the numbers the runs recorded."""
import json
from pathlib import Path

import pytest

from distill_lib.batch.quote import EN, ZH, readme_table, where_measured
from distill_lib.core import stats
from distill_lib.core.evaluate import INFERENCE_BATCH

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
FULL = ROOT / "docs" / "full-data-cpu"


def record(name):
    return json.loads((FULL / f"{name}.metrics.json").read_text())


@pytest.mark.parametrize("readme, edition", [("README.md", EN), ("README.zh-CN.md", ZH)])
def test_the_quick_profile_table_is_the_notebooks_quoted_headlines(readme, edition):
    """The same table in both READMEs (the Chinese one in its words), as quote writes it."""
    table = readme_table(sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")), edition=edition)
    text = (ROOT / readme).read_text(encoding="utf-8")
    start, end = text.index("<!-- headlines:start -->"), text.index("<!-- headlines:end -->")
    assert text[start:end].strip().endswith(table)


def judged_today(headline: dict) -> dict:
    """A headline recorded before the margin rule, judged by today's rule from its per-seed
    differences (the measurement itself is the recorded one: mean and interval must not move)."""
    comparison = stats.paired(headline["per_seed"], [0.0] * len(headline["per_seed"]), seeds=headline["seeds"])
    assert comparison.mean == headline["effect_mean"] and list(comparison.ci95) == headline["effect_ci95"]
    return stats.headline(headline["claim"], headline["metric"], comparison)


def test_the_full_data_headlines_are_the_recorded_runs():
    for name in ("00_quickstart", "02_temperature_soft_targets"):
        run = record(name)
        assert run["params"]["profile"] == "full" and run["params"]["train_per_class"] is None
        headline = run["metrics"]["headline"]
        quoted = headline if "margin" in headline else judged_today(headline)
        assert stats.headline_line(quoted, where_measured(run)) in README


def test_the_full_data_wall_times_are_the_recorded_runs():
    for name in ("00_quickstart", "02_temperature_soft_targets"):
        run = json.loads((FULL / f"{name}.run.json").read_text())
        assert run["status"] == "ok" and f"{run['wall_s']:.0f} s" in README.replace("\n", " ")


def test_the_full_data_details_are_the_recorded_runs():
    run = record("00_quickstart")["metrics"]
    alone = sum(m["accuracy"] for m in run["student_alone"].values()) / len(run["student_alone"])
    kd = sum(m["accuracy"] for m in run["student_kd"].values()) / len(run["student_kd"])
    for quoted in (f"teacher ({run['teacher']['accuracy']:.2%})", f"{100 * run['teacher_gap']:.2f} points above",
                   f"alone ({alone:.2%})", f"({kd:.2%}) closes {run['gap_closed']:.0%}"):
        assert quoted in README.replace("\n  ", " "), quoted
    omitted = record("02_temperature_soft_targets")["metrics"]["omitted_class"]
    text = README.replace("\n  ", " ")
    for quoted in (f"{omitted['kd_recall_raw']:.1%} of the test dresses", f"{omitted['kd_recall']:.1%} once",
                   f"{omitted['scratch_recall_raw']:.1%} and {omitted['scratch_recall']:.1%}",
                   f"{omitted['kd_auc']:.3f} against {omitted['scratch_auc']:.3f}"):
        assert quoted in text, quoted


def test_the_speed_figures_are_the_recorded_ones():
    text = README.replace("\n  ", " ")
    sweep = json.loads((ROOT / "docs" / "benchmark-temperature-sweep.json").read_text())
    for quoted in (f"{sweep['common_way_s']:.1f} s", f"{sweep['distill_lib_s']:.1f} s", f"**{sweep['speedup']:.1f}x**"):
        assert quoted in text, quoted
    batch = json.loads((ROOT / "docs" / "inference-batch.json").read_text())
    wall = batch["median_s"]["wall"]
    assert batch["best"]["wall"] == INFERENCE_BATCH["cpu"] and batch["threads"] == 2  # the constant is the measured one
    for quoted in (f"batch 128 took {wall['128']:.1f} s", f"1024, the batch used before, {wall['1024']:.1f} s",
                   f"({wall['1024'] / wall['128']:.2f}x as long;"):
        assert quoted in text, quoted
    quick = json.loads((ROOT / "docs" / "quick-profile-time.json").read_text())
    assert abs(quick["cold_total_s"] - sum(quick["cold_s"].values())) < 0.5  # the totals are the notebooks' sum
    for quoted in (f"**{quick['cold_total_s']:.0f} s** with an", f"**{quick['warm_total_s']:.0f} s** with the"):
        assert quoted in text, quoted
    before_07 = sum(seconds for name, seconds in quick["cold_s"].items() if not name.startswith("07"))
    assert f"Notebooks 00-06 take {before_07:.0f} s of it" in text
    runs = [json.loads(path.read_text()) for path in (ROOT / "docs" / "benchmark-temperature-sweep-repeats").glob("run*.json")]
    repeats, cpu = sorted(run["speedup"] for run in runs), sorted(run["speedup_cpu"] for run in runs)
    assert len(repeats) == 3 and sweep["speedup"] == repeats[1]  # the quoted file is the median run
    assert f": {repeats[0]:.1f}x, {repeats[1]:.1f}x and {repeats[2]:.1f}x; in the CPU seconds of the process {cpu[0]:.1f}x to {cpu[-1]:.1f}x)" in text
    for name in quick["cold_s"]:
        assert f"{quick['cold_s'][name]:.0f} s | {quick['warm_s'][name]:.0f} s |" in text, name
