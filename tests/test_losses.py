"""kd_loss and soft_targets against hand-written formulas and PyTorch's own functions."""
import math

import pytest
import torch
import torch.nn.functional as F

from distill_lib.methods import HintRegressor, get_loss, hint_loss, kd_loss, soft_targets


def hand_written_kd(s, t, y, T, alpha):
    """Loops over samples and classes: no vectorised shortcut shared with the library."""
    batch, classes = s.shape
    kl_total, ce_total = 0.0, 0.0
    for i in range(batch):
        zs = [math.exp(s[i, j].item() / T) for j in range(classes)]
        zt = [math.exp(t[i, j].item() / T) for j in range(classes)]
        ps = [v / sum(zs) for v in zs]
        pt = [v / sum(zt) for v in zt]
        kl_total += sum(pt[j] * math.log(pt[j] / ps[j]) for j in range(classes))
        e = [math.exp(s[i, j].item()) for j in range(classes)]
        ce_total += -math.log(e[y[i]] / sum(e))
    return (1 - alpha) * ce_total / batch + alpha * T * T * kl_total / batch


@pytest.mark.parametrize("T,alpha", [(1.0, 0.5), (4.0, 0.9), (20.0, 0.1), (0.5, 1.0), (3.0, 0.0)])
def test_kd_loss_matches_hand_written_formula(T, alpha):
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(5, 7, generator=g) * 3, torch.randn(5, 7, generator=g) * 3
    y = torch.randint(0, 7, (5,), generator=g)
    got = kd_loss(s.double(), t.double(), y, temperature=T, alpha=alpha)
    assert got.item() == pytest.approx(hand_written_kd(s.double(), t.double(), y, T, alpha), rel=1e-9)


def test_kd_loss_matches_torch_kl_div_with_probability_target():
    g = torch.Generator().manual_seed(2)
    s, t, y = torch.randn(8, 10, generator=g), torch.randn(8, 10, generator=g), torch.randint(0, 10, (8,), generator=g)
    T, alpha = 3.0, 0.7
    # the textbook call: log-probabilities of the student, probabilities of the teacher
    kl = F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), reduction="batchmean")
    expected = (1 - alpha) * F.cross_entropy(s, y) + alpha * T ** 2 * kl
    assert kd_loss(s, t, y, temperature=T, alpha=alpha).item() == pytest.approx(expected.item(), rel=1e-5)


def test_t_squared_keeps_gradient_magnitude_roughly_constant():
    g = torch.Generator().manual_seed(3)
    t = torch.randn(64, 10, generator=g) * 4
    s0 = torch.randn(64, 10, generator=g) * 4
    norms, unscaled = [], []
    for T in (2.0, 5.0, 10.0, 20.0):
        s = s0.clone().requires_grad_(True)
        kd_loss(s, t, None, temperature=T, alpha=1.0).backward()
        norms.append(s.grad.norm().item())
        unscaled.append(s.grad.norm().item() / T ** 2)
    assert max(norms) / min(norms) < 2.0  # with T^2: same order of magnitude from T=2 to T=20
    assert unscaled[0] / unscaled[-1] > 50  # without it the gradient shrinks about as 1/T^2


def test_soft_targets_limits():
    logits = torch.tensor([[2.0, 1.0, -1.0, 0.5]])
    assert torch.allclose(soft_targets(logits, 1e-3), F.one_hot(torch.tensor([0]), 4).float(), atol=1e-6)
    assert torch.allclose(soft_targets(logits, 1e4), torch.full((1, 4), 0.25), atol=1e-4)
    assert torch.allclose(soft_targets(logits, 1.0), F.softmax(logits, -1))


def test_labels_minus_one_are_unlabelled():
    g = torch.Generator().manual_seed(4)
    s, t = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    y = torch.tensor([0, 1, -1, 2, -1, 3])
    labelled = y >= 0
    expected = 0.5 * F.cross_entropy(s[labelled], y[labelled]) + 0.5 * kd_loss(s, t, None, temperature=2.0, alpha=1.0)
    assert kd_loss(s, t, y, temperature=2.0, alpha=0.5).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("kwargs,message", [
    (dict(temperature=0.0, alpha=0.5), "temperature must be a finite number > 0, got 0"),
    (dict(temperature=-2.0, alpha=0.5), "temperature must be a finite number > 0, got -2"),
    (dict(temperature=float("nan"), alpha=0.5), "temperature must be a finite number > 0, got nan"),
    (dict(temperature=2.0, alpha=1.5), "alpha must be a number in [0, 1], got 1.5"),
])
def test_bad_loss_inputs_name_parameter_value_and_range(kwargs, message):
    s = torch.zeros(2, 3)
    with pytest.raises(ValueError) as info:
        kd_loss(s, s, torch.tensor([0, 1]), **kwargs)
    assert message in str(info.value)


def test_shape_mismatch_and_missing_labels_are_refused():
    with pytest.raises(ValueError, match="same shape"):
        kd_loss(torch.zeros(2, 3), torch.zeros(2, 4), torch.tensor([0, 1]), temperature=1.0, alpha=0.5)
    with pytest.raises(ValueError, match="labels=None is only allowed with alpha=1"):
        kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), None, temperature=1.0, alpha=0.5)


def test_losses_selectable_by_name():
    s, t, y = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    assert get_loss("kl")(s, t, y, temperature=2.0, alpha=0.3).item() == pytest.approx(
        kd_loss(s, t, y, temperature=2.0, alpha=0.3).item())
    with pytest.raises(ValueError, match="loss must be one of"):
        get_loss("hinge")


@pytest.mark.parametrize("student_shape,teacher_shape", [
    ((16, 14, 14), (64, 7, 7)), ((16, 7, 7), (64, 14, 14)), ((32, 7, 7), (32, 7, 7)),
    ((128,), (64, 7, 7)), ((16, 14, 14), (800,)), ((128,), (800,)),
])
def test_hint_regressor_maps_any_student_shape_to_the_teacher_shape(student_shape, teacher_shape):
    regressor = HintRegressor(student_shape, teacher_shape)
    out = regressor(torch.randn(3, *student_shape))
    expected = teacher_shape if len(student_shape) == 3 and len(teacher_shape) == 3 else (teacher_shape[0],)
    assert tuple(out.shape[1:]) == expected
    loss = hint_loss(torch.randn(3, *student_shape), torch.randn(3, *teacher_shape), regressor)
    assert loss.ndim == 0 and torch.isfinite(loss)
