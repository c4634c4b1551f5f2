"""The statistics module against closed forms and published t tables."""
import math
import statistics

import pytest

from distill_lib.core import stats


def test_t_quantiles_match_closed_forms_and_the_table():
    # df = 1 is the Cauchy distribution: t = tan(pi (p - 1/2)); df = 2: t = (2p - 1) / sqrt(2 p (1 - p))
    p = 0.975
    assert stats.t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)
    assert stats.t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-9)
    # printed tables (e.g. NIST/SEMATECH e-Handbook, table of t critical values, 0.975)
    for df, table in ((3, 3.182), (4, 2.776), (5, 2.571), (10, 2.228), (30, 2.042)):
        assert stats.t_quantile(p, df) == pytest.approx(table, abs=5e-4)
    assert stats.t_quantile(p, 100000) == pytest.approx(1.959964, abs=1e-4)  # the normal's 97.5%


def test_mean_interval_is_the_student_t_formula():
    values = [0.81, 0.84, 0.86, 0.82]
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    half = 3.182446305284263 * sd / 2  # t(0.975, 3) * s / sqrt(4)
    assert stats.mean_interval(values) == (pytest.approx(mean - half, rel=1e-9), pytest.approx(mean + half, rel=1e-9))
    assert stats.mean_std(values) == (pytest.approx(mean), pytest.approx(sd))
    assert all(math.isnan(v) for v in stats.mean_interval([0.8]))


@pytest.mark.parametrize("interval, margin, expected", [
    ((0.001, 0.02), 0.005, "gain"),            # above 0, reaches past the margin
    ((0.006, 0.02), 0.005, "gain"),
    ((0.001, 0.004), 0.005, "negligible"),     # above 0 but wholly inside the margin: too small to matter
    ((-0.004, 0.003), 0.005, "negligible"),    # crosses 0 inside the margin: shown too small to matter
    ((-0.005, 0.005), 0.005, "negligible"),    # the margin's edges belong to it
    ((-0.02, -0.001), 0.005, "loss"),
    ((-0.004, -0.001), 0.005, "negligible"),
    ((-0.001, 0.02), 0.005, "inconclusive"),   # crosses 0 and reaches past the margin: more seeds
    ((-0.02, 0.001), 0.005, "inconclusive"),
    ((-0.001, 0.02), 0.0, "inconclusive"),     # margin 0: the zero-only rule, and nothing is negligible
    ((0.001, 0.02), 0.0, "gain"),
    ((math.nan, math.nan), 0.005, "inconclusive"),  # one seed: no interval
])
def test_the_verdict_is_read_off_the_interval_and_the_margin(interval, margin, expected):
    assert stats.verdict(interval, margin) == expected


def test_the_four_verdicts_are_the_only_ones():
    assert set(stats.VERDICTS) == {"gain", "loss", "negligible", "inconclusive"}


def test_a_margin_in_points_turns_the_04_flip_into_one_verdict():
    # issue 18: KD + adversarial vs KD gave (-0.14, +0.38) on one CPU and (+0.09, +0.24) on another;
    # with a 0.5-point margin both say the same thing
    assert stats.verdict((-0.0014, 0.0038)) == stats.verdict((0.0009, 0.0024)) == "negligible"


def test_paired_uses_the_differences_not_the_two_spreads():
    # both arms vary a lot from seed to seed, the difference hardly at all: a clear gain
    a, b = [0.90, 0.80, 0.85], [0.89, 0.79, 0.84]
    c = stats.paired(a, b, seeds=[0, 1, 2])
    assert c.mean == pytest.approx(0.01) and c.std == pytest.approx(0.0, abs=1e-12)
    assert c.verdict == "gain" and c.n == 3 and c.seeds == [0, 1, 2]
    unpaired_half = 4.303 * statistics.stdev(a) / math.sqrt(3)
    assert unpaired_half > 0.05  # an unpaired interval would have called this "inconclusive"
    assert "+1.00 points (95% CI +1.00 to +1.00, 3 seeds, margin ±0.50): gain" == c.text()
    assert c.kind == "paired" and c.margin == 0.005


def test_versus_fixed_is_the_one_sample_interval_and_says_so():
    # a teacher scored once at 0.90 against three students: differences -0.05, -0.06, -0.04
    c = stats.versus_fixed([0.85, 0.84, 0.86], 0.90, seeds=[0, 1, 2])
    half = 4.302652729911275 * 0.01 / math.sqrt(3)  # t(0.975, 2) * s / sqrt(3), s = 0.01
    assert c.mean == pytest.approx(-0.05) and c.ci95 == (pytest.approx(-0.05 - half), pytest.approx(-0.05 + half))
    assert c.kind == "one-sample" and "one-sample" in c.text() and c.verdict == "loss"


def test_negated_reads_the_comparison_the_other_way_round():
    c = stats.versus_fixed([0.85, 0.84, 0.86], 0.90, seeds=[0, 1, 2]).negated()   # teacher - students
    direct = stats.paired([0.90] * 3, [0.85, 0.84, 0.86])
    assert c.mean == pytest.approx(direct.mean) and c.ci95 == (pytest.approx(direct.ci95[0]), pytest.approx(direct.ci95[1]))
    assert c.verdict == "gain" and c.kind == "one-sample" and c.seeds == [0, 1, 2]


def test_the_margin_is_per_metric_and_checked():
    c = stats.paired([0.10, 0.11, 0.12], [0.095, 0.105, 0.115], margin=stats.MARGINS["ece"])
    assert c.verdict == "negligible" and c.margin == 0.01
    with pytest.raises(ValueError, match="margin must be a finite number >= 0.*got -1"):
        stats.paired([1, 2], [1, 2], margin=-1)


def test_one_seed_gives_no_interval_and_no_verdict():
    c = stats.paired([0.9], [0.8])
    assert c.verdict == "inconclusive" and "no interval from one seed" in c.text()


def test_headline_carries_what_metrics_json_needs():
    c = stats.paired([0.86, 0.87, 0.85], [0.85, 0.85, 0.85], seeds=[0, 1, 2])
    h = stats.headline("KD vs scratch", "accuracy", c)
    assert set(h) >= {"claim", "metric", "n_seeds", "effect_mean", "effect_ci95", "margin", "verdict", "kind"}
    assert h["n_seeds"] == 3 and h["effect_ci95"][0] < h["effect_mean"] < h["effect_ci95"][1]
    assert h["verdict"] == stats.verdict(h["effect_ci95"], h["margin"])


def test_a_headline_line_round_trips_with_its_margin_and_kind():
    c = stats.versus_fixed([0.85, 0.84, 0.86], 0.90, seeds=[0, 1, 2])
    line = stats.headline_line(stats.headline("students vs the teacher", "accuracy", c), "quick profile, 1 torch thread, here")
    assert "1 torch thread," in line and "3 seeds, one-sample, margin ±0.50 points: loss." in line
    parsed = stats.parse_headline_line("intro\n\n" + line + "\n\nmore")
    assert (parsed["mean"], parsed["margin"], parsed["kind"], parsed["verdict"]) == (-5.0, 0.5, "one-sample", "loss")


@pytest.mark.parametrize("call, message", [
    (lambda: stats.paired([0.1, 0.2], [0.1]), "one value of each arm per seed"),
    (lambda: stats.paired([], []), "at least one value"),
    (lambda: stats.paired([float("nan")], [0.1]), "finite"),
    (lambda: stats.t_quantile(0.975, 0), "df must be an integer >= 1"),
    (lambda: stats.t_quantile(1.5, 3), "probability must be in"),
    (lambda: stats.headline("", "accuracy", stats.paired([1.0], [0.0])), "needs a claim"),
    # issue 22: each bad input named, not a raw TypeError
    (lambda: stats.paired([0.1, 0.2], [0.1, 0.3], seeds=5), "seeds must be a list with one seed per pair"),
    (lambda: stats.paired([0.1, None], [0.1, 0.3]), "a must be numbers; entry 1 is None"),
    (lambda: stats.paired([[0.1, 0.2]], [[0.1, 0.3]]), "a must be a flat sequence of numbers"),
    (lambda: stats.paired("0.1", [0.1]), "a must be a sequence of numbers"),
    (lambda: stats.paired([1e308, -1e308], [-1e308, 1e308]), "the differences between the two arms overflow"),
])
def test_bad_inputs_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_accuracies_over_seeds_print_as_mean_and_sample_std_in_percent():
    from distill_lib.viz.notebook import percent_mean_std
    # mean 0.85; sample std of (0.8, 0.9) = sqrt(0.005 + 0.005) = 0.0707...
    assert percent_mean_std([0.8, 0.9]) == "85.00 ± 7.07%"
