"""The soft-term variants of the logit loss ("kl", "mse-logits", "mse-soft", by registry name through
``get_loss``) against hand-written formulas, and the high-temperature limit that relates them
(Hinton et al. 2015, section 2.1)."""
import math

import pytest
import torch
import torch.nn.functional as F

from distill_lib.methods import get_loss, kd_loss

KINDS = ("kl", "mse-logits", "mse-soft")


def softmax_list(row, T):
    exps = [math.exp(v / T) for v in row]
    return [e / sum(exps) for e in exps]


def hand_soft_term(kind, s, t, T):
    """Loops over samples and classes: no vectorised code shared with the library."""
    batch, classes = len(s), len(s[0])
    total = 0.0
    for i in range(batch):
        if kind == "mse-logits":  # Ba & Caruana 2014: 0.5 * mean over classes of squared logit gaps
            total += 0.5 * sum((s[i][j] - t[i][j]) ** 2 for j in range(classes)) / classes
            continue
        ps, pt = softmax_list(s[i], T), softmax_list(t[i], T)
        if kind == "kl":
            total += T * T * sum(pt[j] * math.log(pt[j] / ps[j]) for j in range(classes))
        else:  # mse-soft: T^2 * sum over classes of squared probability gaps
            total += T * T * sum((ps[j] - pt[j]) ** 2 for j in range(classes))
    return total / batch


def hand_ce(s, y):
    return sum(-math.log(softmax_list(row, 1.0)[label]) for row, label in zip(s, y)) / len(s)


def example(seed, n=6, c=5):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, c, generator=g, dtype=torch.float64) * 3
    t = torch.randn(n, c, generator=g, dtype=torch.float64) * 3
    return s, t, torch.randint(0, c, (n,), generator=g)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T,alpha", [(1.0, 0.5), (4.0, 0.9), (0.5, 1.0), (10.0, 0.0), (2.0, 0.3)])
def test_each_variant_matches_its_hand_written_formula(kind, T, alpha):
    s, t, y = example(seed=int(T * 10) + len(kind))
    expected = (1 - alpha) * hand_ce(s.tolist(), y.tolist()) + alpha * hand_soft_term(kind, s.tolist(), t.tolist(), T)
    assert get_loss(kind)(s, t, y, temperature=T, alpha=alpha).item() == pytest.approx(expected, rel=1e-10)
    if kind == "kl":  # Hinton's KD has its own name too
        assert kd_loss(s, t, y, temperature=T, alpha=alpha).item() == pytest.approx(expected, rel=1e-10)


def test_mse_logits_ignores_temperature_and_the_others_do_not():
    s, t, y = example(seed=1)
    at = {T: {k: get_loss(k)(s, t, y, temperature=T, alpha=1.0).item() for k in KINDS} for T in (1.0, 5.0)}
    assert at[1.0]["mse-logits"] == at[5.0]["mse-logits"]
    assert at[1.0]["kl"] != pytest.approx(at[5.0]["kl"]) and at[1.0]["mse-soft"] != pytest.approx(at[5.0]["mse-soft"])


@pytest.mark.parametrize("kind", KINDS)
def test_every_variant_is_zero_when_the_student_copies_the_teacher(kind):
    _, t, _ = example(seed=2)
    assert get_loss(kind)(t.clone(), t, None, temperature=3.0, alpha=1.0).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_unlabelled_samples_get_only_the_soft_term(kind):
    s, t, y = example(seed=3)
    y[[1, 4]] = -1
    keep = y >= 0
    expected = 0.4 * hand_ce(s[keep].tolist(), y[keep].tolist()) + 0.6 * hand_soft_term(kind, s.tolist(), t.tolist(), 2.0)
    assert get_loss(kind)(s, t, y, temperature=2.0, alpha=0.6).item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_every_variant_validates_its_inputs_the_same_way(kind):
    s, t, y = example(seed=4)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0, got -1"):
        get_loss(kind)(s, t, y, temperature=-1.0, alpha=0.5)
    with pytest.raises(ValueError, match=r"alpha must be a number in \[0, 1\], got 2"):
        get_loss(kind)(s, t, y, temperature=1.0, alpha=2.0)
    with pytest.raises(ValueError, match="must have the same shape"):
        get_loss(kind)(s, t[:, :3], y, temperature=1.0, alpha=0.5)
    with pytest.raises(ValueError, match="labels=None is only allowed with alpha=1"):
        get_loss(kind)(s, t, None, temperature=1.0, alpha=0.5)
    with pytest.raises(ValueError, match="loss must be one of 'kl', 'mse-logits', 'mse-soft', 'dkd'; got 'mse'"):
        get_loss("mse")


def test_mse_logits_gradient_is_the_logit_gap_over_n_per_sample():
    s, t, _ = example(seed=5)
    student = s.clone().requires_grad_(True)
    get_loss("mse-logits")(student, t, None, temperature=1.0, alpha=1.0).backward()
    batch, classes = s.shape
    assert torch.allclose(student.grad * batch, (s - t) / classes, atol=1e-12)


def kl_gradient_times_t2(s, t, T):
    """Per-sample gradient of T^2 * KL via PyTorch's own F.kl_div (not the library's loss)."""
    student = s.clone().requires_grad_(True)
    kl = F.kl_div(F.log_softmax(student / T, -1), F.softmax(t / T, -1), reduction="batchmean")
    (T ** 2 * kl).backward()
    return student.grad * s.shape[0]


def test_high_temperature_kl_gradient_approaches_logit_matching_for_zero_mean_logits():
    s, t, _ = example(seed=6, n=16, c=10)
    s, t = s - s.mean(1, keepdim=True), t - t.mean(1, keepdim=True)
    target = (s - t) / s.shape[1]
    gaps = [float((kl_gradient_times_t2(s, t, T) - target).norm() / target.norm()) for T in (10.0, 100.0, 1000.0)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 5e-3
    assert gaps[1] / gaps[2] == pytest.approx(10.0, rel=0.1)  # the gap shrinks like 1/T
    # and through the library's own loss, at the same T, the same gradient
    student = s.clone().requires_grad_(True)
    get_loss("kl")(student, t, None, temperature=1000.0, alpha=1.0).backward()
    assert torch.allclose(student.grad * s.shape[0], kl_gradient_times_t2(s, t, 1000.0), atol=1e-12)


def test_mse_soft_at_high_temperature_is_logit_matching_scaled_by_two_over_n():
    # p^T = (1 + z/T - mean(z)/T) / N + O(1/T^2), so T^2 * sum (p_s - p_t)^2 -> |s - t|^2 / N^2 for
    # zero-mean logits: twice the logit-matching loss divided by N
    s, t, _ = example(seed=7, n=8, c=10)
    s, t = s - s.mean(1, keepdim=True), t - t.mean(1, keepdim=True)
    soft = get_loss("mse-soft")(s, t, None, temperature=1e4, alpha=1.0).item()
    logits = get_loss("mse-logits")(s, t, None, temperature=1e4, alpha=1.0).item()
    assert soft == pytest.approx(2 * logits / s.shape[1], rel=1e-3)
