"""Decoupled KD against the paper's definitions, written out sample by sample with plain floats.

Zhao et al. 2022, eq. (1)-(4): b = [p_t, 1 - p_t] (target / all non-target mass), p_hat the
softmax over the non-target classes; TCKD = KL(b^T || b^S), NCKD = KL(p_hat^T || p_hat^S), each
at temperature T, times T^2, averaged over the batch; DKD = alpha_w * TCKD + beta_w * NCKD.
"""
import math

import pytest
import torch

import distill_lib as dl
from distill_lib.methods import DKD, KD, StepOutputs


def softmax(row, T):
    exps = [math.exp(v / T) for v in row]
    return [e / sum(exps) for e in exps]


def kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0)


def dkd_from_the_paper(s, t, y, T, tckd_weight, nckd_weight):
    total = 0.0
    for srow, trow, label in zip(s.tolist(), t.tolist(), y.tolist()):
        ps, pt = softmax(srow, T), softmax(trow, T)
        bs, bt = [ps[label], 1 - ps[label]], [pt[label], 1 - pt[label]]
        others_s = softmax([v for j, v in enumerate(srow) if j != label], T)
        others_t = softmax([v for j, v in enumerate(trow) if j != label], T)
        total += tckd_weight * kl(bt, bs) + nckd_weight * kl(others_t, others_s)
    return T * T * total / len(y)


def logits(seed, n=6, c=5, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, c, generator=g, dtype=torch.float64) * scale,
            torch.randn(n, c, generator=g, dtype=torch.float64) * scale, torch.randint(0, c, (n,), generator=g))


@pytest.mark.parametrize("T, tckd_weight, nckd_weight", [(1.0, 1.0, 8.0), (4.0, 1.0, 8.0), (2.0, 0.5, 2.0), (10.0, 1.0, 0.0)])
def test_dkd_loss_matches_the_paper_written_out(T, tckd_weight, nckd_weight):
    s, t, y = logits(1)
    got = dl.dkd_loss(s, t, y, temperature=T, tckd_weight=tckd_weight, nckd_weight=nckd_weight)
    assert got.item() == pytest.approx(dkd_from_the_paper(s, t, y, T, tckd_weight, nckd_weight), rel=1e-9)


def test_classical_kd_is_tckd_plus_teacher_weighted_nckd_per_sample():
    # the paper's eq. (5): KD = TCKD + (1 - p_t^T) NCKD, checked on one sample at a time
    s, t, y = logits(2, n=4)
    T = 3.0
    for i in range(4):
        si, ti, yi = s[i:i + 1], t[i:i + 1], y[i:i + 1]
        tckd = dl.dkd_loss(si, ti, yi, temperature=T, tckd_weight=1.0, nckd_weight=0.0)
        nckd = dl.dkd_loss(si, ti, yi, temperature=T, tckd_weight=0.0, nckd_weight=1.0)
        teacher_target = torch.softmax(ti / T, -1)[0, yi].item()
        kd = dl.kd_loss(si, ti, yi, temperature=T, alpha=1.0)
        assert kd.item() == pytest.approx((tckd + (1 - teacher_target) * nckd).item(), rel=1e-9)


def test_dkd_is_zero_when_the_student_copies_the_teacher_and_stable_for_large_logits():
    s, _, y = logits(3)
    assert dl.dkd_loss(s, s.clone(), y, temperature=4.0).abs().item() < 1e-12
    big = dl.dkd_loss(s.float() * 100, -s.float() * 100, y, temperature=1.0)
    assert torch.isfinite(big) and big > 0


def test_dkd_gradient_matches_finite_differences():
    s, t, y = logits(4, n=3, c=4)
    s.requires_grad_(True)
    dl.dkd_loss(s, t, y, temperature=2.0).backward()
    eps, numeric = 1e-6, torch.zeros_like(s)
    for index in range(s.numel()):
        bump = torch.zeros_like(s).view(-1)
        bump[index] = eps
        bump = bump.view_as(s)
        plus = dkd_from_the_paper(s.detach() + bump, t, y, 2.0, 1.0, 8.0)
        minus = dkd_from_the_paper(s.detach() - bump, t, y, 2.0, 1.0, 8.0)
        numeric.view(-1)[index] = (plus - minus) / (2 * eps)
    torch.testing.assert_close(s.grad, numeric, rtol=1e-5, atol=1e-7)


def test_the_method_keeps_the_workbench_alpha_convention_and_warms_up():
    s, t, y = logits(5)
    method = DKD(temperature=4.0, alpha=0.3, tckd_weight=1.0, nckd_weight=8.0, warmup_epochs=4)
    method.start_epoch(1)
    parts = method(StepOutputs(s, y, t))
    ce = torch.nn.functional.cross_entropy(s, y)
    dkd = dl.dkd_loss(s, t, y, temperature=4.0)
    torch.testing.assert_close(parts["ce"], 0.7 * ce)
    torch.testing.assert_close(parts["dkd"], 0.3 * dkd / 4)  # epoch 1 of a 4-epoch ramp
    method.start_epoch(9)
    torch.testing.assert_close(method(StepOutputs(s, y, t))["dkd"], 0.3 * dkd)


def test_distill_trains_with_dkd_by_name(tiny_dataset):
    teacher = dl.build_model("mlp-small", seed=1).eval()
    history = dl.distill(dl.build_model("mlp-tiny", seed=0), teacher, tiny_dataset, loss="dkd", alpha=0.5,
                         temperature=4.0, loss_options={"nckd_weight": 4.0}, epochs=2, batch_size=16, device="cpu",
                         progress="off")
    assert set(history.parts) == {"ce", "dkd"} and history.config["nckd_weight"] == 4.0
    assert all(math.isfinite(v) for v in history.train_loss)


@pytest.mark.parametrize("call, message", [
    (lambda s, t, y: dl.dkd_loss(s, t, torch.full_like(y, -1), temperature=4.0), "needs a label for every sample"),
    (lambda s, t, y: dl.dkd_loss(s, t, y, temperature=0.0), "temperature must be a finite number > 0"),
    (lambda s, t, y: dl.dkd_loss(s, t, y, temperature=4.0, nckd_weight=-1.0), "nckd_weight"),
    (lambda s, t, y: dl.dkd_loss(s[0], t[0], y[:1], temperature=4.0), "must be a 2-D tensor"),
    (lambda s, t, y: DKD(warmup_epochs=-1), "warmup_epochs"),
])
def test_bad_dkd_inputs_are_refused(call, message):
    s, t, y = logits(6)
    with pytest.raises(ValueError, match=message):
        call(s, t, y)


def test_unlabelled_images_are_refused_before_training(tiny_dataset):
    tiny_dataset.labels[:5] = -1
    with pytest.raises(ValueError, match="needs a label for every training image"):
        dl.distill(dl.build_model("mlp-tiny"), dl.build_model("mlp-small"), tiny_dataset, loss="dkd", epochs=1)
