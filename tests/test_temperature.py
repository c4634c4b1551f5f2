"""Notebook 02's analysis, explorer and grid helpers, against closed forms and PyTorch's own functions."""
import math

import matplotlib
import pytest
import torch
import torch.nn.functional as F

from distill_lib.lessons import temperature_grid as grid
from distill_lib.lessons.temperature import (centre, class_similarity, entropy_bits, entropy_vs_temperature, gradient_scale,
                                     high_temperature_gap, logit_matching_gradient, loss_split, most_similar_classes,
                                     soft_term_gradient)
from distill_lib.viz.explorer import TemperatureExplorer

matplotlib.use("Agg")


def logits_pair(n=16, c=10, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g, dtype=torch.float64) * scale, torch.randn(n, c, generator=g, dtype=torch.float64) * scale


# ------------------------------------------------------------------ entropy and similarity
def test_entropy_in_bits_of_known_distributions():
    probs = torch.tensor([[0.25] * 4, [1.0, 0.0, 0.0, 0.0], [0.5, 0.25, 0.25, 0.0]])
    assert entropy_bits(probs).tolist() == pytest.approx([2.0, 0.0, 1.5])


def test_entropy_vs_temperature_matches_the_binary_entropy_formula():
    d = 3.0  # two classes, logits (0, d): p = sigmoid(d / T)
    temperatures = [0.5, 1.0, 4.0, 50.0]
    got = entropy_vs_temperature(torch.tensor([[0.0, d]]), temperatures)[:, 0]
    for t, h in zip(temperatures, got.tolist()):
        p = 1 / (1 + math.exp(-d / t))
        assert h == pytest.approx(-(p * math.log2(p) + (1 - p) * math.log2(1 - p)), rel=1e-5)
    assert got.tolist() == sorted(got.tolist())  # flatter as T grows


def test_class_similarity_is_the_mean_soft_target_per_true_class():
    logits = torch.tensor([[2.0, 0.0, -1.0], [1.0, 1.0, 0.0], [0.0, 3.0, 0.0], [-2.0, 0.0, 2.0]])
    labels = torch.tensor([0, 0, 1, 2])
    got = class_similarity(logits, labels, temperature=2.0)
    expected_row0 = (F.softmax(logits[0] / 2, -1) + F.softmax(logits[1] / 2, -1)) / 2
    assert torch.allclose(got[0], expected_row0)
    assert torch.allclose(got[2], F.softmax(logits[3] / 2, -1))
    assert torch.allclose(got.sum(dim=1), torch.ones(3))
    with pytest.raises(ValueError, match="labels must hold one class index in"):
        class_similarity(logits, torch.tensor([0, 1, 2, 3]), 1.0)


def test_most_similar_classes_ranks_wrong_classes_only():
    similarity = torch.tensor([[0.7, 0.1, 0.2], [0.3, 0.6, 0.1], [0.0, 0.0, 1.0]])
    assert most_similar_classes(similarity, ["a", "b", "c"], 0, k=2) == [("c", pytest.approx(0.2)), ("b", pytest.approx(0.1))]
    with pytest.raises(ValueError, match="label must be one of"):
        most_similar_classes(similarity, ["a", "b", "c"], 3)


@pytest.mark.parametrize("bad", [[], [1.0, 0.0], [float("inf")]])
def test_bad_temperature_lists_are_refused(bad):
    with pytest.raises(ValueError, match="temperature"):
        entropy_vs_temperature(torch.zeros(2, 3), bad)


# ------------------------------------------------------------------ gradients and the T^2 factor
@pytest.mark.parametrize("T", [0.5, 1.0, 4.0, 20.0])
def test_kl_gradient_is_the_closed_form(T):
    s, t = logits_pair()
    expected = T * (F.softmax(s / T, -1) - F.softmax(t / T, -1))  # T^2 * (p_s - p_t) / T, per sample
    assert torch.allclose(soft_term_gradient(s, t, T), expected, atol=1e-12)
    assert torch.allclose(soft_term_gradient(s, t, T, t2_factor=False), expected / T ** 2, atol=1e-12)


def test_mse_soft_gradient_matches_finite_differences():
    s, t = logits_pair(n=3, c=5, seed=1)
    T, eps = 2.5, 1e-6
    got = soft_term_gradient(s, t, T, kind="mse-soft")

    def per_sample_loss(row, i):
        return T ** 2 * ((F.softmax(row / T, -1) - F.softmax(t[i] / T, -1)) ** 2).sum()

    for i in range(3):
        for j in range(5):
            step = torch.zeros(5, dtype=torch.float64)
            step[j] = eps
            numeric = (per_sample_loss(s[i] + step, i) - per_sample_loss(s[i] - step, i)) / (2 * eps)
            assert got[i, j].item() == pytest.approx(numeric.item(), rel=1e-5, abs=1e-9)


def test_t2_keeps_the_soft_gradient_on_the_scale_of_the_hard_one():
    s, t = logits_pair(n=64, seed=2)
    labels = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(0))
    scale = gradient_scale(s, t, labels, [4.0, 8.0, 16.0, 32.0])
    # without T^2 each doubling of T divides the gradient by about 4; with it, it barely moves
    ratios = [a / b for a, b in zip(scale["without_t2"], scale["without_t2"][1:])]
    assert all(3.0 < r < 4.5 for r in ratios), ratios
    assert max(scale["with_t2"]) / min(scale["with_t2"]) < 1.5
    probs = F.softmax(s, -1) - F.one_hot(labels, 10)  # CE gradient per sample, closed form
    assert scale["hard"] == pytest.approx(float(probs.norm(dim=1).mean()), rel=1e-9)


def test_high_temperature_limit_of_kl_is_logit_matching_for_zero_mean_logits():
    s, t = logits_pair(n=32, seed=3)
    s, t = centre(s), centre(t)
    target = (s - t) / s.shape[1]  # Hinton et al. 2015, sec. 2.1
    assert torch.allclose(logit_matching_gradient(s, t), target)
    for T, tolerance in ((100.0, 0.05), (1000.0, 0.005)):
        assert torch.allclose(soft_term_gradient(s, t, T), target, atol=tolerance * float(target.abs().max()))
    gaps = high_temperature_gap(s, t, [1.0, 10.0, 100.0, 1000.0])
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 5e-3
    assert gaps[2] / gaps[3] == pytest.approx(10, rel=0.1)  # the gap falls like 1/T


def test_without_zero_mean_the_limit_is_the_centred_difference():
    s, t = logits_pair(n=8, seed=4)
    s = s + torch.arange(8, dtype=torch.float64)[:, None]  # per-sample shifts that softmax ignores
    difference = s - t
    shift = difference.mean(dim=1, keepdim=True).expand_as(difference)
    expected_gap = float(shift.norm() / difference.norm())
    assert high_temperature_gap(s, t, [1e4])[0] == pytest.approx(expected_gap, rel=1e-3)


def test_loss_split_matches_the_hand_written_kd_loss():
    s, t = logits_pair(n=5, c=4, seed=5)
    y = torch.tensor([0, 1, 2, 3, 0])
    T, alpha = 3.0, 0.7
    ce = sum(-math.log(math.exp(s[i, y[i]]) / sum(math.exp(v) for v in s[i])) for i in range(5)) / 5
    kl = 0.0
    for i in range(5):
        pt = F.softmax(t[i] / T, -1).tolist()
        ps = F.softmax(s[i] / T, -1).tolist()
        kl += sum(a * math.log(a / b) for a, b in zip(pt, ps)) / 5
    parts = loss_split(s, t, y, temperature=T, alpha=alpha)
    assert parts["hard"] == pytest.approx((1 - alpha) * ce, rel=1e-5)
    assert parts["soft"] == pytest.approx(alpha * T ** 2 * kl, rel=1e-5)
    assert parts["total"] == pytest.approx(parts["hard"] + parts["soft"])
    with pytest.raises(ValueError, match="alpha must be a number in"):
        loss_split(s, t, y, temperature=T, alpha=1.2)


# ------------------------------------------------------------------ the explorer
@pytest.fixture
def explorer():
    g = torch.Generator().manual_seed(7)
    teacher, student = torch.randn(12, 10, generator=g) * 4, torch.randn(12, 10, generator=g) * 2
    images = torch.rand(12, 1, 28, 28, generator=g)
    labels = torch.arange(12) % 10
    return TemperatureExplorer(teacher, student, images, labels, [f"c{i}" for i in range(10)], index=3)


def test_the_temperature_slider_updates_state_and_the_plotted_probabilities(explorer):
    controls = explorer.widget().children  # rows: sliders, picker, readout, picture
    slider = controls[0].children[0]
    picture_before = explorer._controls["picture"].value
    slider.value = 5.0
    assert explorer.temperature == 5.0
    assert torch.allclose(explorer.plotted["teacher"], torch.softmax(explorer.teacher_logits[3] / 5.0, -1), atol=1e-6)
    assert torch.allclose(explorer.plotted["student"], torch.softmax(explorer.student_logits[3] / 5.0, -1), atol=1e-6)
    assert "T=5.000" in controls[2].value and 'class="temperature-readout"' in controls[2].value
    assert explorer._controls["picture"].value != picture_before and explorer._controls["picture"].value[:4] == b"\x89PNG"


def test_the_alpha_slider_moves_the_split_between_hard_and_soft(explorer):
    explorer.widget()
    explorer._controls["temperature"].value = 2.0
    explorer._controls["alpha"].value = 0.25
    i = explorer.index
    ce = float(F.cross_entropy(explorer.student_logits[i:i + 1], explorer.labels[i:i + 1]))
    kl = float(F.kl_div(F.log_softmax(explorer.student_logits[i] / 2, -1), F.softmax(explorer.teacher_logits[i] / 2, -1),
                        reduction="sum"))
    assert explorer.loss["hard"] == pytest.approx(0.75 * ce, rel=1e-5)
    assert explorer.loss["soft"] == pytest.approx(0.25 * 4 * kl, rel=1e-5)
    assert explorer._artists["hard"].get_height() == pytest.approx(explorer.loss["hard"])
    assert explorer._artists["soft"].get_y() == pytest.approx(explorer.loss["hard"])


def test_picking_an_image_by_class_and_by_index(explorer):
    explorer.widget()
    explorer._controls["klass"].value = 1  # images 1 and 11 (labels are index % 10)
    assert explorer.index == 1 and explorer.label == 1 and explorer._controls["image"].max == 1
    explorer._controls["image"].value = 1  # the second image of class 1
    assert explorer.index == 11
    explorer.set(index=7)  # not in class 1: the picker goes back to all images
    assert explorer._controls["klass"].value == -1 and explorer._controls["image"].value == 7
    assert torch.allclose(explorer.plotted["teacher"], torch.softmax(explorer.teacher_logits[7] / explorer.temperature, -1))


def test_state_without_widgets_and_the_entropy_readout(explorer):
    explorer.set(temperature=0.1)
    assert explorer.entropy["teacher"] == pytest.approx(float(entropy_bits(torch.softmax(explorer.teacher_logits[3] / 0.1, -1))))
    assert explorer.plotted["teacher"].sum().item() == pytest.approx(1.0, abs=1e-5)
    assert "T=0.100" in explorer.readout


def test_static_figure_shows_each_temperature_and_leaves_the_state_alone(explorer):
    explorer.set(temperature=2.0)
    fig = explorer.static_figure(temperatures=(1.0, 4.0, 20.0))
    titles = [ax.get_title() for ax in fig.axes]
    assert sum("teacher, T=" in t for t in titles) == 3 and any("T=20:" in t for t in titles)
    assert explorer.temperature == 2.0


@pytest.mark.parametrize("change,message", [
    (dict(temperature=0.0), "temperature must be a finite number > 0"),
    (dict(temperature=80.0), r"temperature must be in \[0.1, 50\]"),
    (dict(alpha=-0.1), r"alpha must be a number in \[0, 1\]"),
    (dict(index=12), r"index must be an integer in \[0, 11\]"),
    (dict(index=True), r"index must be an integer"),
])
def test_bad_explorer_settings_are_refused(explorer, change, message):
    with pytest.raises(ValueError, match=message):
        explorer.set(**change)


def test_explorer_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="must both be samples x classes"):
        TemperatureExplorer(torch.zeros(3, 4), torch.zeros(3, 5), torch.zeros(3, 1, 2, 2), torch.zeros(3), list("abcd"))
    with pytest.raises(ValueError, match="one class name per column"):
        TemperatureExplorer(torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(3, 1, 2, 2), torch.zeros(3), list("abc"))


# ------------------------------------------------------------------ the grid
def test_grid_settings_and_their_checks():
    settings = grid.grid_settings(["mlp-tiny"], [1.0, 4.0], [0.5, 0.9], [0, 1])
    assert len(settings) == 2 * (1 + 2 * 2)
    assert sum(s["method"] == "scratch" for s in settings) == 2
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        grid.grid_settings(["mlp-tiny"], [0.0], [0.5], [0])
    with pytest.raises(ValueError, match="student must be one of"):
        grid.grid_settings(["resnet"], [1.0], [0.5], [0])
    with pytest.raises(ValueError, match="alphas must hold at least one value"):
        grid.grid_settings(["mlp-tiny"], [1.0], [], [0])


def test_summary_mean_and_sample_std_over_seeds():
    rows = [dict(student="s", method="kd", loss="kl", temperature=4.0, alpha=0.9, seed=k,
                 accuracy=a, nll=1.0, ece=0.1, confidence=0.8, agreement=0.9) for k, a in enumerate([0.80, 0.82, 0.84])]
    (entry,) = grid.summarise(rows)
    assert entry["n"] == 3 and entry["accuracy_mean"] == pytest.approx(0.82)
    assert entry["accuracy_std"] == pytest.approx(0.02)  # sample std of 0.80, 0.82, 0.84
    assert grid.format_metric(entry, "accuracy") == "82.00 ± 2.00%"


def test_effects_pair_each_kd_run_with_the_same_seed_from_scratch():
    # T=1: +0.3, +0.1, +0.2 points: interval -0.05 to +0.45 (t = 4.303, std 0.1), inside the
    # 0.5-point margin -> negligible
    # T=4: +2, +2.5, +1.5: clear gain; T=8: -2, -1.5, -2.5: clear loss
    base = dict(student="s", nll=1.0, ece=0.1, agreement=0.9)
    scratch = [0.850, 0.840, 0.860]
    rows = [{**base, "method": "scratch", "loss": None, "temperature": None, "alpha": None, "seed": k, "accuracy": a}
            for k, a in enumerate(scratch)]
    for T, gains in ((1.0, (0.003, 0.001, 0.002)), (4.0, (0.020, 0.025, 0.015)), (8.0, (-0.020, -0.015, -0.025))):
        rows += [{**base, "method": "kd", "loss": "kl", "temperature": T, "alpha": 0.9, "seed": k, "accuracy": a + g}
                 for k, (a, g) in enumerate(zip(scratch, gains))]
    found = grid.effects(rows)
    t1, t4, t8 = (found[("s", "kl", T, 0.9)] for T in (1.0, 4.0, 8.0))
    assert (t1.verdict, t4.verdict, t8.verdict) == ("negligible", "gain", "loss")
    low, high = t1.ci95
    assert (low, high) == (pytest.approx(0.002 - 4.302653 * 0.001 / 3 ** 0.5, abs=1e-7),
                           pytest.approx(0.002 + 4.302653 * 0.001 / 3 ** 0.5, abs=1e-7))
    lines = grid.reading(found)
    assert "+2.00 points" in lines[1] and lines[1].endswith("gain") and lines[2].endswith("loss")


def test_kd_with_alpha_zero_is_exactly_training_from_scratch(tiny_dataset):
    # alpha = 0 leaves only (1 - alpha) * CE: with identical initial weights and batches the two
    # runs must agree to the last bit, which checks that the grid compares like with like
    from distill_lib.core.models import build_model
    teacher = build_model("mlp-tiny", seed=99).eval()
    teacher_logits = teacher(tiny_dataset.images).detach()
    training = dict(epochs=1, batch_size=16, lr=1e-3, device="cpu")
    scratch, kd = (grid.train_one(s, teacher, tiny_dataset, tiny_dataset, teacher_logits, **training)
                   for s in grid.grid_settings(["mlp-tiny"], [4.0], [0.0], [0]))
    assert kd["method"] == "kd" and scratch["method"] == "scratch"
    assert (kd["accuracy"], kd["nll"], kd["ece"]) == (scratch["accuracy"], scratch["nll"], scratch["ece"])
    assert 0.0 <= scratch["agreement"] <= 1.0


def test_dark_knowledge_profile_against_a_hand_made_teacher():
    from distill_lib.lessons.temperature import dark_knowledge_profile
    # 3 classes; class 0's images put their wrong mass on class 1, class 1's on class 2, class 2's
    # on class 0: each class's nearest wrong class gets ALL the wrong mass at T = 1
    probs = torch.tensor([[0.8, 0.2, 0.0], [0.0, 0.7, 0.3], [0.1, 0.0, 0.9], [0.9, 0.1, 0.0]]) + 1e-12
    labels = torch.tensor([0, 1, 2, 0])
    out = dark_knowledge_profile(probs.log(), labels, [1.0], nearest=1)
    assert out["wrong_mass"][0] == pytest.approx((0.2 + 0.3 + 0.1 + 0.1) / 4, abs=1e-6)
    assert out["nearest_share"][0] == pytest.approx(1.0, abs=1e-6) and out["uniform_share"] == 0.5
    # the least confident tenth of 4 images is 1 image: the 0.7 one, which carries 0.3 of the 0.7
    assert out["least_confident_share"][0] == pytest.approx(0.3 / 0.7, abs=1e-6)
    # at a huge T every soft target is uniform: wrong mass 2/3, shared evenly -> the uniform share
    hot = dark_knowledge_profile(probs.log(), labels, [1e6], nearest=1)
    assert hot["wrong_mass"][0] == pytest.approx(2 / 3, abs=1e-4) and hot["nearest_share"][0] == pytest.approx(0.5, abs=1e-4)
    with pytest.raises(ValueError, match="nearest must be below the number of wrong classes"):
        dark_knowledge_profile(probs.log(), labels, [1.0], nearest=2)
