"""Adversarial distillation: losses against hand-written formulas, gradients against autograd
oracles computed on copies, the gradient-reversal layer, and the loop's divergence stops."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from distill_lib import build_model, fit
from distill_lib.core.data import Dataset
from distill_lib.lessons.adversarial import SCHEMES, adversarial_distill, adversarial_gradients, gradient_agreement
from distill_lib.loop import TrainingDiverged, train_step
from distill_lib.methods import KD, Adversarial, combine
from distill_lib.methods.adversarial import (Discriminator, SaturationWatch, discriminator_accuracy, discriminator_loss,
                                             frozen, generator_loss, grad_reverse, one_hot_or_zeros)

SHAPE = (1, 6, 6)


def synthetic(n: int = 192, seed: int = 0, classes: int = 4) -> Dataset:
    """Images whose class sets the brightness of one quadrant: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = torch.rand(n, *SHAPE, generator=g) * 0.3
    images.view(n, -1)[torch.arange(n), labels * 9] += 0.7
    return Dataset("synthetic", "train", images, labels, [f"c{i}" for i in range(classes)])


def tiny(seed: int, classes: int = 4):
    return build_model("mlp-tiny", classes, in_shape=SHAPE, seed=seed, hidden=(16,))


class Scaled(nn.Module):
    """A teacher whose logits are ``factor`` times a fixed random model's: very confident."""

    def __init__(self, model, factor):
        super().__init__()
        self.model, self.factor = model, factor

    def forward(self, x):
        return self.model(x) * self.factor


pytestmark = pytest.mark.usefixtures("cleared_cache")  # conftest: every test starts and ends with an empty cache


# ------------------------------------------------------------------ losses and D
def test_discriminator_loss_matches_written_out_bce():
    real, fake = torch.randn(7), torch.randn(7)
    expected = (-(0.9 * torch.log(torch.sigmoid(real)) + 0.1 * torch.log(1 - torch.sigmoid(real))).mean()
                - torch.log(1 - torch.sigmoid(fake)).mean())
    torch.testing.assert_close(discriminator_loss(real, fake, real_target=0.9), expected)


def test_generator_losses_match_written_out_forms():
    fake = torch.randn(9)
    torch.testing.assert_close(generator_loss(fake), -torch.log(torch.sigmoid(fake)).mean())
    torch.testing.assert_close(generator_loss(fake, "minimax"), torch.log(1 - torch.sigmoid(fake)).mean())


def test_discriminator_accuracy_counts_each_side():
    real, fake = torch.tensor([1.0, -1.0, 2.0, 3.0]), torch.tensor([-1.0, -2.0, 0.5, 4.0])
    assert discriminator_accuracy(real, fake) == (0.75, 0.5)


def test_unlabelled_samples_condition_on_zeros():
    rows = one_hot_or_zeros(torch.tensor([2, -1, 0]), 3)
    assert rows.tolist() == [[0, 0, 1], [0, 0, 0], [1, 0, 0]]


def test_conditional_discriminator_depends_on_the_label():
    d = Discriminator(4, conditional=True, input_dropout=0.0, seed=0).eval()
    p = torch.softmax(torch.randn(3, 4), dim=-1)
    assert not torch.allclose(d(p, torch.tensor([0, 0, 0])), d(p, torch.tensor([1, 1, 1])))


def test_spectral_norm_bounds_each_layer():
    d = Discriminator(10, hidden=(32, 16), seed=0).eval()
    linears = [m for m in d.net.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 3
    for layer in linears:
        assert torch.linalg.matrix_norm(layer.weight.detach(), ord=2) == pytest.approx(1.0, rel=0.05)
    plain = Discriminator(10, hidden=(32, 16), spectral_norm=False, seed=0)
    assert not any(hasattr(m, "parametrizations") for m in plain.net.modules())


def test_discriminator_rejects_bad_inputs():
    with pytest.raises(ValueError, match="input_dropout"):
        Discriminator(10, input_dropout=1.5)
    with pytest.raises(ValueError, match="hidden entries"):
        Discriminator(10, hidden=(0,))
    with pytest.raises(ValueError, match="N x 10"):
        Discriminator(10)(torch.rand(3, 9))
    with pytest.raises(ValueError, match="needs labels"):
        Discriminator(10, conditional=True)(torch.rand(3, 10))


def test_frozen_blocks_gradients_but_passes_them_on():
    layer, x = nn.Linear(3, 1), torch.randn(4, 3, requires_grad=True)
    with frozen(layer):
        layer(x).sum().backward()
    assert layer.weight.grad is None and x.grad is not None
    assert layer.weight.requires_grad


# ------------------------------------------------------------------ gradient reversal
def test_gradient_reversal_is_identity_forward_and_flips_backward():
    x = torch.randn(5, 3, requires_grad=True)
    f = lambda t: (t.sin() * torch.arange(3.0)).sum()  # noqa: E731  any non-linear function
    (oracle,) = torch.autograd.grad(f(x), x)
    y = grad_reverse(x, 0.25)
    torch.testing.assert_close(y, x)
    (reversed_grad,) = torch.autograd.grad(f(y), x)
    torch.testing.assert_close(reversed_grad, -0.25 * oracle)
    with pytest.raises(ValueError, match="scale"):
        grad_reverse(x, -1.0)


# ------------------------------------------------------------------ one step: no leaks
def _oracle_step(student, disc, images, labels, teacher_logits, T, alpha, w, lr):
    """Gradients and updated parameters written out independently of the library's step."""
    s, d = copy.deepcopy(student), copy.deepcopy(disc)
    p_t = torch.softmax(teacher_logits / T, -1)
    p_s = torch.softmax(s(images) / T, -1)
    real, fake = d(p_t, labels), d(p_s.detach(), labels)
    loss_d = (-(0.9 * F.logsigmoid(real) + 0.1 * F.logsigmoid(-real)).mean() - F.logsigmoid(-fake).mean())
    grads_d = torch.autograd.grad(loss_d, list(d.parameters()))
    with torch.no_grad():  # plain SGD on D first: the student then plays against the updated D
        for param, grad in zip(d.parameters(), grads_d):
            param -= lr * grad
    logits = s(images)
    kl = (torch.softmax(teacher_logits / T, -1) * (torch.log_softmax(teacher_logits / T, -1)
                                                  - torch.log_softmax(logits / T, -1))).sum(1).mean()
    kd = (1 - alpha) * F.cross_entropy(logits, labels) + alpha * T ** 2 * kl
    adv = -F.logsigmoid(d(torch.softmax(logits / T, -1), labels)).mean()
    grads_s = torch.autograd.grad(kd + w * adv, list(s.parameters()))
    return grads_s, grads_d


@pytest.mark.parametrize("conditional", [False, True])
def test_step_updates_each_model_with_its_own_gradient_only(conditional):
    data = synthetic(32)
    student = tiny(seed=1)
    disc = Discriminator(4, conditional=conditional, spectral_norm=False, input_dropout=0.0, seed=2)
    teacher_logits = torch.randn(32, 4, generator=torch.Generator().manual_seed(3)) * 3
    T, alpha, w, lr = 2.0, 0.7, 0.5, 0.1
    grads_s, grads_d = _oracle_step(student, disc, data.images, data.labels, teacher_logits, T, alpha, w, lr)
    before_s = [p.detach().clone() for p in student.parameters()]
    before_d = [p.detach().clone() for p in disc.parameters()]
    adversarial = Adversarial(disc, weight=w, temperature=T, warmup_epochs=0)
    method = combine(KD(temperature=T, alpha=alpha), adversarial)
    method.prepare(student_shapes={}, teacher_shapes={}, num_classes=4, seed=0)
    adversarial.disc_optimizer = torch.optim.SGD(disc.parameters(), lr=lr)  # plain SGD, as the oracle
    method.start_epoch(1)
    train_step(student, method, torch.optim.SGD(student.parameters(), lr=lr), data.images, data.labels,
               teacher_logits=teacher_logits)
    for param, old, grad in zip(disc.parameters(), before_d, grads_d):
        torch.testing.assert_close(param.grad, grad)  # nothing of the student's objective in D
        torch.testing.assert_close(param.detach(), old - lr * grad)
    for param, old, grad in zip(student.parameters(), before_s, grads_s):
        torch.testing.assert_close(param.grad, grad)  # nothing of D's objective in the student
        torch.testing.assert_close(param.detach(), old - lr * grad)


def test_the_one_pass_schemes_against_the_correct_gradients():
    data = synthetic(24)
    student, disc = tiny(seed=4), Discriminator(4, spectral_norm=False, seed=5)
    teacher_logits = torch.randn(24, 4, generator=torch.Generator().manual_seed(6))
    w = 0.1
    grads = adversarial_gradients(student, disc, data.images, data.labels, teacher_logits, temperature=2.0,
                                  adv_weight=w)
    (s_ok, d_ok), (s_sum, d_sum), (s_grl, d_grl) = (grads[name] for name in SCHEMES)
    # oracle for the student side: d D(p_s) / d theta_s through autograd on a copy
    s, d = copy.deepcopy(student).eval(), copy.deepcopy(disc).eval()
    p_s = torch.softmax(s(data.images) / 2.0, -1)
    d_fake = d(p_s, data.labels)
    minimax = torch.cat([g.flatten() for g in torch.autograd.grad(
        torch.log(1 - torch.sigmoid(d_fake)).mean(), list(s.parameters()))])
    torch.testing.assert_close(d_grl, d_ok)            # reversal: D gets exactly its own gradient
    torch.testing.assert_close(s_grl, w * minimax)      # ... and the student the minimax one
    assert not torch.allclose(d_sum, d_ok)              # the plain sum leaks into D
    # the plain sum pushes the student AGAINST the correct direction when w is small
    assert F.cosine_similarity(s_sum, s_ok, dim=0) < 0
    assert all(p.grad is None for p in student.parameters())


# ------------------------------------------------------------------ the loop
def test_ce_arm_equals_plain_training_while_d_watches():
    data = synthetic(128)
    watched, plain = tiny(seed=7), tiny(seed=7)
    common = dict(epochs=2, batch_size=32, lr=3e-3, weight_decay=5e-4, seed=3, progress="off")
    history = adversarial_distill(watched, tiny(seed=8).eval(), data, discriminator=Discriminator(4, seed=0),
                                  alpha=0.0, adv_weight=0.0, warmup_epochs=0, **common)
    fit(plain, data, **common)
    for a, b in zip(watched.parameters(), plain.parameters()):
        torch.testing.assert_close(a, b)
    assert len(history.stats["disc_loss"]) == 2 and all(0 <= a <= 1 for a in history.stats["disc_acc_student"])


def test_history_records_every_epoch_and_the_warmup():
    data, test = synthetic(96), synthetic(40, seed=1)
    history = adversarial_distill(tiny(seed=0), tiny(seed=9).eval(), data, discriminator=Discriminator(4, seed=0),
                                  epochs=3, warmup_epochs=1, adv_weight=0.1, batch_size=32, eval_set=test,
                                  progress="off")
    assert history.stats["adv_weight"] == [0.0, 0.1, 0.1]
    assert len(history.train_loss) == 3
    for name in ("generator_loss", "disc_loss", "disc_acc_teacher", "disc_acc_student"):
        assert len(history.stats[name]) == 3
    assert len(history.parts["ce"]) == len(history.parts["kd"]) == 3  # the KD ("match") term, every epoch
    assert history.parts["adversarial"][0] == 0.0 and history.parts["adversarial"][1] > 0  # on after warm-up
    assert {"accuracy", "agreement", "disc_acc_teacher", "disc_acc_student"} <= set(history.final)


class BlowsUp(nn.Module):
    """Wraps a model; from its ``after``-th training forward on, its logits are infinite."""

    def __init__(self, model, after):
        super().__init__()
        self.model, self.after, self.calls = model, after, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
        logits = self.model(x)
        return logits * float("inf") if self.training and self.calls >= self.after else logits


def test_non_finite_loss_stops_with_the_history_so_far():
    data = synthetic(64)  # 2 batches of 32 per epoch: call 5 is epoch 3, step 1
    with pytest.raises(TrainingDiverged, match="discriminator loss became nan at epoch 3, step 1") as stop:
        adversarial_distill(BlowsUp(tiny(seed=0), after=5), tiny(seed=1).eval(), data,
                            discriminator=Discriminator(4, seed=0), epochs=4, warmup_epochs=1,
                            batch_size=32, progress="off")
    assert len(stop.value.history.train_loss) == 2


def test_a_huge_learning_rate_is_caught():
    with pytest.raises(TrainingDiverged, match="became"):
        adversarial_distill(tiny(seed=0), tiny(seed=1).eval(), synthetic(128), discriminator=Discriminator(4),
                            epochs=3, warmup_epochs=1, lr=1e30, batch_size=32, progress="off")


def _winning_d_run(adv_weight, patience=2):
    """A confident teacher, a student that barely moves, a fast unregularised D: D wins."""
    teacher = Scaled(tiny(seed=1), 30.0).eval()
    disc = Discriminator(4, spectral_norm=False, input_dropout=0.0, seed=0)
    return adversarial_distill(tiny(seed=0), teacher, synthetic(128), discriminator=disc, epochs=6,
                               warmup_epochs=0, adv_weight=adv_weight, lr=1e-9,
                               d_lr=3e-2, batch_size=32, patience=patience, progress="off")


def test_discriminator_stuck_at_100_percent_stops_the_run():
    with pytest.raises(TrainingDiverged, match="discriminator has won") as stop:
        _winning_d_run(adv_weight=0.01)
    stats = stop.value.history.stats
    assert len(stats["disc_loss"]) < 6
    last = [(t + s) / 2 for t, s in zip(stats["disc_acc_teacher"][-2:], stats["disc_acc_student"][-2:])]
    assert min(last) >= 0.99


def test_a_winning_d_that_only_watches_does_not_stop_the_run():
    history = _winning_d_run(adv_weight=0.0)
    assert len(history.stats["disc_loss"]) == 6 and history.stats["disc_acc_student"][-1] >= 0.99


def test_saturation_watch_needs_consecutive_checks():
    watch = SaturationWatch(0.99, patience=2)
    assert [watch.stuck(*acc) for acc in [(1, 1), (0.9, 1), (1, 1), (1, 0.99)]] == [False, False, False, True]


@pytest.mark.parametrize("kwargs, message", [
    (dict(kd_weight=0.0, warmup_epochs=2), "adversarial only"),
    (dict(adv_weight=0.1, warmup_epochs=3), "never switches on"),
    (dict(d_lr=0.0), "d_lr"),
    (dict(real_target=1.5), "real_target"),
    (dict(discriminator=nn.Linear(4, 1)), "Discriminator"),
    (dict(saturation=2.0), "saturation"),
])
def test_bad_settings_are_refused_before_training(kwargs, message):
    settings = {"discriminator": Discriminator(4), "epochs": 3, "progress": "off", **kwargs}
    with pytest.raises(ValueError, match=message):
        adversarial_distill(tiny(seed=0), tiny(seed=1), synthetic(32), **settings)


def test_gradient_agreement_reports_cosines_and_norm_ratios():
    ok = (torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0]))
    rows = gradient_agreement({"correct": ok, "flipped": (torch.tensor([-3.0, 0.0]), torch.tensor([1.0, 1.0]))})
    assert rows[0] == ["correct", pytest.approx(1.0), pytest.approx(1.0), pytest.approx(1.0)]
    assert rows[1] == ["flipped", pytest.approx(-1.0), pytest.approx(2 ** -0.5), pytest.approx(3.0)]
