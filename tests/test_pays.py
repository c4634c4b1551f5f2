"""The "when does distillation pay" rows and table: what a notebook records and quote writes."""
import pytest

from distill_lib.core import pays, stats


def make_row(notebook="00", comparison="KD vs alone", kd=(0.86, 0.87, 0.85), alone=(0.85, 0.85, 0.84)):
    effect = stats.paired(list(kd), list(alone), seeds=[0, 1, 2])
    return pays.regime_row(notebook, comparison, effect, student="mlp-hinton", student_params=1_276_810,
                           labels_per_class=500, unlabelled=0, teacher="CNN 93.40%", temperature=4.0,
                           loss="KL, alpha 0.9", test_images=2000)


def test_a_row_becomes_a_table_line_and_reads_back():
    row, other = make_row(), make_row("03", "KD + unlabelled vs KD", (0.6, 0.62, 0.61), (0.4, 0.41, 0.39))
    text = pays.table([row, other])
    parsed = pays.parse_table("intro\n\n" + text + "\n\nafter")
    # +1.33 points: 0.0133 x 2,000 = 27 test images (rounded), the differences' own interval
    low, high = stats.paired([0.86, 0.87, 0.85], [0.85, 0.85, 0.84]).ci95
    assert parsed[pays.regime_key(row)] == {"mean": 1.33, "low": round(100 * low, 2), "high": round(100 * high, 2),
                                             "n": 3, "verdict": "inconclusive"}
    assert "| mlp-hinton (1,276,810) | 500 | 0 | CNN 93.40% | 4 | KL, alpha 0.9 |" in text
    assert "| +27 of 2,000 |" in text
    assert parsed[pays.regime_key(other)]["verdict"] == "gain"


def test_one_comparison_in_two_regimes_reads_back_as_two_rows():
    """02 records "KD vs from scratch, T=4" for two students: each must read back as its own row."""
    small = make_row("02", "KD vs from scratch, T=4", (0.80, 0.81, 0.80), (0.82, 0.83, 0.82))
    large = {**make_row("02", "KD vs from scratch, T=4"), "student": "mlp-tiny", "student_params": 25_450}
    parsed = pays.parse_table(pays.table([small, large]))
    assert len(parsed) == 2
    assert parsed[pays.regime_key(small)]["verdict"] == "loss" and parsed[pays.regime_key(large)]["mean"] == 1.33


def test_the_same_regime_twice_is_refused():
    with pytest.raises(ValueError, match="more than once"):
        pays.table([make_row(), make_row()])


@pytest.mark.parametrize("change, message", [
    (dict(notebook="0"), "two-digit notebook number"),
    (dict(student=""), "student must be a non-empty string"),
    (dict(loss="a | b"), "loss must be a non-empty string without"),
    (dict(unlabelled=-1), "unlabelled must be an integer >= 0"),
    (dict(labels_per_class="some"), "labels_per_class must be an integer >= 0 or 'all'"),
    (dict(temperature=0), "temperature must be a number > 0"),
])
def test_bad_rows_are_refused(change, message):
    fields = dict(notebook="00", comparison="c", effect=stats.paired([1, 2], [0, 1]), student="s", student_params=1,
                  labels_per_class=1, unlabelled=0, teacher="t", temperature=None, loss="KL", test_images=10)
    fields.update(change)
    with pytest.raises(ValueError, match=message):
        pays.regime_row(fields.pop("notebook"), fields.pop("comparison"), fields.pop("effect"), **fields)
