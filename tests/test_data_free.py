"""Data-free distillation: the generator's loss terms against independent oracles (torch.distributions,
loops over pixels, hand-computed batch statistics), the generator's step against autograd on a
copy, the batch sources, and the one loop trained from a generator."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal, kl_divergence

import distill_lib as dl
from distill_lib.core.batches import BatchSource, NoiseBatches
from distill_lib.core.cache import cache_info
from distill_lib.core.data import Dataset
from distill_lib.loop import train, train_step
from distill_lib.methods import METHODS, get_method
from distill_lib.methods.base import StepOutputs
from distill_lib.methods.data_free import (BatchNormStatistics, DataFree, Generator, GeneratorBatches, bn_prior,
                                           class_balance, disagreement, gaussian_kl, jitter, random_affine,
                                           total_variation)

SHAPE = (1, 12, 12)  # small images: divisible by 4 (the generator) and >= 10 (a LeNet)


def bn_teacher(seed=0, classes=4):
    """A LeNet with BatchNorm whose running statistics are not the defaults (as after training)."""
    model = dl.build_model("lenet5-bn", classes, in_shape=SHAPE, seed=seed, channels=(3, 4), hidden=(8,))
    g = torch.Generator().manual_seed(seed + 100)
    for layer in model.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.running_mean.copy_(torch.randn(layer.num_features, generator=g))
            layer.running_var.copy_(0.5 + torch.rand(layer.num_features, generator=g))
    return model.eval()


def student_model(seed=0, classes=4):
    return dl.build_model("mlp-tiny", classes, in_shape=SHAPE, seed=seed, hidden=(16,))


pytestmark = pytest.mark.usefixtures("cleared_cache")  # conftest: every test starts and ends with an empty cache


# ------------------------------------------------------------------ loss terms
def test_gaussian_kl_matches_torch_distributions():
    mean, var = torch.randn(7), 0.2 + torch.rand(7)
    ref_mean, ref_var = torch.randn(7), 0.2 + torch.rand(7)
    oracle = kl_divergence(Normal(mean, var.sqrt()), Normal(ref_mean, ref_var.sqrt()))
    torch.testing.assert_close(gaussian_kl(mean, var, ref_mean, ref_var), oracle)


def test_bn_prior_matches_a_hand_computation_of_every_layers_batch_statistics():
    teacher, x = bn_teacher(), torch.rand(16, *SHAPE)
    with torch.no_grad(), BatchNormStatistics(teacher) as stats:
        teacher(x)
        got = bn_prior(stats.records)
    # by hand: run the layers one by one, take each BN input's channel statistics
    conv1, bn1 = teacher.stages.stage1[0], teacher.stages.stage1[1]
    conv2, bn2 = teacher.stages.stage2[0], teacher.stages.stage2[1]
    fc, bn3 = teacher.stages.fc[1], teacher.stages.fc[2]
    with torch.no_grad():
        a1 = conv1((x - 0.5) / 0.5)
        a2 = conv2(teacher.stages.stage1[3](torch.relu(bn1(a1))))
        a3 = fc(teacher.stages.stage2[3](torch.relu(bn2(a2))).flatten(1))
    expected = 0.0
    for a, bn in ((a1, bn1), (a2, bn2), (a3, bn3)):
        channels = a.transpose(0, 1).reshape(a.shape[1], -1)  # channel x (batch * pixels)
        mean, var = channels.mean(1), ((channels - channels.mean(1, keepdim=True)) ** 2).mean(1)
        expected += kl_divergence(Normal(mean, (var + bn.eps).sqrt()),
                                  Normal(bn.running_mean, (bn.running_var + bn.eps).sqrt())).mean()
    assert len(stats.records) == 3
    torch.testing.assert_close(got, expected)


def test_bn_prior_is_near_zero_when_the_batch_has_the_running_statistics():
    teacher, x = bn_teacher(), torch.rand(32, *SHAPE)
    teacher.train()
    for layer in teacher.modules():  # momentum 1: the running statistics become this batch's
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.momentum = 1.0
    with torch.no_grad():
        teacher(x)
    teacher.eval()
    with torch.no_grad(), BatchNormStatistics(teacher) as same:
        teacher(x)
    with torch.no_grad(), BatchNormStatistics(teacher) as dark:
        teacher(torch.rand(32, *SHAPE) * 0.1)
    # not exactly 0: running_var keeps the unbiased variance (n / (n - 1)), the prior the biased one
    assert float(bn_prior(same.records)) < 1e-3 < float(bn_prior(dark.records))


def test_bn_statistics_record_only_inside_the_block_and_remove_their_hooks():
    teacher = bn_teacher()
    stats = BatchNormStatistics(teacher)
    with stats:
        teacher(torch.rand(4, *SHAPE))
    teacher(torch.rand(4, *SHAPE))
    assert len(stats.records) == 3
    assert all(not layer._forward_hooks for layer in stats.layers)
    with pytest.raises(ValueError, match="BatchNorm"):
        bn_prior([])


def test_total_variation_matches_a_loop_over_neighbours():
    x = torch.rand(2, 1, 4, 5)
    vertical = sum(abs(float(x[b, 0, i + 1, j] - x[b, 0, i, j])) for b in range(2) for i in range(3) for j in range(5)) / 30
    horizontal = sum(abs(float(x[b, 0, i, j + 1] - x[b, 0, i, j])) for b in range(2) for i in range(4) for j in range(4)) / 32
    assert float(total_variation(x)) == pytest.approx(vertical + horizontal, rel=1e-5)
    assert float(total_variation(torch.ones(2, 1, 4, 5))) == 0.0


def test_class_balance_is_zero_when_balanced_and_log_c_for_one_class():
    balanced = torch.eye(5) * 50  # five confident images, one per class
    assert float(class_balance(balanced)) == pytest.approx(0.0, abs=1e-6)
    one_class = torch.zeros(8, 5)
    one_class[:, 2] = 50
    assert float(class_balance(one_class)) == pytest.approx(math.log(5), abs=1e-5)


def test_disagreement_is_the_mean_absolute_logit_difference():
    s, t = torch.randn(3, 4), torch.randn(3, 4)
    assert float(disagreement(s, t)) == pytest.approx(float((s - t).abs().sum() / 12))


def test_jitter_is_the_workbench_augmentation_and_passes_gradients():
    x = torch.rand(5, 1, 6, 6, requires_grad=True)
    rng, copy_rng = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    got = jitter(x, rng, 2)
    torch.testing.assert_close(got, dl.Augment(2, True)(x, copy_rng))
    got.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_random_affine_is_the_identity_at_zero_and_keeps_the_range():
    x = torch.rand(4, 1, 8, 8)
    torch.testing.assert_close(random_affine(x, torch.Generator(), rotation=0, scale=0, shift=0), x)
    moved = random_affine(x, torch.Generator().manual_seed(1))
    assert moved.shape == x.shape and float(moved.min()) >= 0 and float(moved.max()) <= 1 + 1e-6
    assert torch.equal(moved, random_affine(x, torch.Generator().manual_seed(1)))
    assert not torch.allclose(moved, x)


# ------------------------------------------------------------------ the generator and the sources
def test_generator_makes_images_in_unit_range_and_a_conditional_one_follows_the_class():
    g = Generator(4, image_shape=SHAPE, noise_dim=8, channels=8, seed=0)
    z, classes = g.draw(10, torch.Generator().manual_seed(0))
    assert classes.tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1] and not g.conditional
    images = g(z).detach()
    assert images.shape == (10, *SHAPE) and float(images.min()) >= 0 and float(images.max()) <= 1
    torch.testing.assert_close(g(z, classes), g(z))  # unconditional: the classes are ignored
    c = Generator(4, image_shape=SHAPE, noise_dim=8, channels=8, conditional=True, seed=0)
    assert not torch.allclose(c(z, classes), c(z, (classes + 1) % 4))  # the class changes the image
    with pytest.raises(ValueError, match="needs the classes"):
        c(z)
    with pytest.raises(ValueError, match="divisible by 4"):
        Generator(4, image_shape=(1, 10, 10))


def test_generator_seed_gives_identical_weights_and_leaves_the_global_rng_alone():
    torch.manual_seed(1)
    expected = torch.rand(2)
    torch.manual_seed(1)
    a, b = Generator(4, image_shape=SHAPE, seed=3), Generator(4, image_shape=SHAPE, seed=3)
    assert torch.equal(torch.rand(2), expected)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_generator_batches_are_unlabelled_without_gradient_and_repeat_per_seed():
    g = Generator(4, image_shape=SHAPE, noise_dim=8, channels=8, seed=0)
    source = GeneratorBatches(g, steps=3, batch_size=5, seed=7)
    batches = list(source)
    assert len(source) == 3 and len(batches) == 3 and isinstance(source, BatchSource)
    for images, labels, index in batches:
        assert images.shape == (5, *SHAPE) and not images.requires_grad
        assert labels.tolist() == [-1] * 5 and index is None
    again = list(GeneratorBatches(g, steps=3, batch_size=5, seed=7))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))


def test_generator_batches_take_the_latest_step_s_images_when_there_are_some():
    g = Generator(4, image_shape=SHAPE, noise_dim=8, channels=8, seed=0)
    made = torch.rand(5, *SHAPE)
    latest = [made, None]
    source = GeneratorBatches(g, steps=2, batch_size=5, augment=False, latest=lambda: latest.pop(0))
    first, second = [images for images, _, _ in source]
    assert torch.equal(first, made)  # the generator's own step made them: no second batch
    assert second.shape == (5, *SHAPE) and not torch.equal(second, made)  # none left: a new batch
    teacher, student = bn_teacher(), student_model()
    method = _method(teacher, student)
    method.before_student_step(None)
    assert method.latest_images().shape == (12, *SHAPE) and method.latest_images() is None


def test_noise_batches():
    uniform = list(NoiseBatches(SHAPE, steps=2, batch_size=64, kind="uniform", seed=1))
    assert len(uniform) == 2 and uniform[0][0].shape == (64, *SHAPE) and uniform[0][1].tolist() == [-1] * 64
    assert float(uniform[0][0].min()) >= 0 and float(uniform[0][0].max()) <= 1
    assert abs(float(uniform[0][0].mean()) - 0.5) < 0.02
    gaussian = next(iter(NoiseBatches(SHAPE, steps=1, batch_size=64, kind="gaussian", seed=1)))[0]
    assert float(gaussian.min()) >= 0 and float(gaussian.max()) <= 1
    assert torch.equal(next(iter(NoiseBatches(SHAPE, steps=1, batch_size=64, seed=1)))[0], uniform[0][0])
    with pytest.raises(ValueError, match="kind"):
        NoiseBatches(SHAPE, steps=1, batch_size=4, kind="pink")


# ------------------------------------------------------------------ the method's two steps
def _method(teacher, student, **options):
    g = Generator(4, image_shape=SHAPE, noise_dim=8, channels=8, conditional=True, seed=0)
    settings = dict(g_batch_size=12, adv_weight=0.5, balance_weight=0.3, jitter=1)
    method = DataFree(g, teacher, student, **{**settings, **options})
    method.prepare(student_shapes={}, teacher_shapes={}, num_classes=4, seed=0)
    return method


def test_the_generator_step_follows_autograd_on_a_copy_and_leaves_teacher_and_student_alone():
    teacher, student = bn_teacher(), student_model()
    method = _method(teacher, student)
    before = copy.deepcopy(method.generator)
    teacher_before, student_before = copy.deepcopy(teacher.state_dict()), copy.deepcopy(student.state_dict())
    rng = torch.Generator()
    rng.set_state(method.rng.get_state())
    stats = method.before_student_step(StepOutputs(torch.zeros(1, 4), torch.tensor([-1])))

    # the oracle: the same draws, every term written out, gradients by autograd on the copy
    z, classes = before.draw(12, rng)
    images = before(z, classes)
    seen = jitter(images, rng, 1)
    records = []
    hooks = [m.register_forward_hook(lambda m, i, o: records.append((m, i[0]))) for m in teacher.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    t = teacher(seen)
    for h in hooks:
        h.remove()
    prior = 0.0
    for layer, a in records:
        dims = [0, *range(2, a.ndim)]
        prior = prior + kl_divergence(Normal(a.mean(dims), (a.var(dims, unbiased=False) + layer.eps).sqrt()),
                                      Normal(layer.running_mean, (layer.running_var + layer.eps).sqrt())).mean()
    p_mean = F.softmax(t, 1).mean(0)
    loss = (F.cross_entropy(t, classes) + 10.0 * prior + 1.0 * total_variation(images)
            - 0.5 * (student(seen) - t).abs().mean() + 0.3 * (math.log(4) + (p_mean * p_mean.log()).sum()))
    grads = torch.autograd.grad(loss, list(before.parameters()))
    for (name, param), grad in zip(method.generator.named_parameters(), grads):
        torch.testing.assert_close(param.grad, grad, rtol=1e-4, atol=1e-5, msg=name)
    assert float(stats["gen_loss"]) == pytest.approx(loss.item(), rel=1e-5)
    assert set(stats) == {"gen_class", "gen_bn", "gen_tv", "gen_adv", "gen_balance", "gen_loss", "gen_agree"}
    assert torch.equal(method.latest_images(), images.detach())  # the step's images, for the student's batch
    assert all(torch.equal(v, teacher_before[k]) for k, v in teacher.state_dict().items())
    assert all(torch.equal(v, student_before[k]) for k, v in student.state_dict().items())
    assert all(p.grad is None for p in [*teacher.parameters(), *student.parameters()])
    assert not all(torch.equal(a, b) for a, b in zip(before.parameters(), method.generator.parameters()))


def test_the_students_step_is_kd_with_alpha_one_and_no_labels():
    teacher, student = bn_teacher(), student_model()
    method, by_hand = _method(teacher, student, adv_weight=0.0), copy.deepcopy(student)
    images = torch.rand(6, *SHAPE)
    with torch.no_grad():
        t = teacher(images)
    labels = torch.full((6,), -1)
    loss, parts, _ = train_step(student, method, torch.optim.SGD(student.parameters(), lr=0.1), images, labels,
                                teacher_logits=t)
    T = method.temperature
    oracle = T ** 2 * (F.softmax(t / T, 1) * (F.log_softmax(t / T, 1) - F.log_softmax(by_hand(images) / T, 1))).sum(1).mean()
    assert set(parts) == {"kd"} and loss == pytest.approx(oracle.item(), rel=1e-5)
    oracle.backward()
    with torch.no_grad():
        for p in by_hand.parameters():
            p -= 0.1 * p.grad
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(by_hand.parameters(), student.parameters()))


def test_unconditional_generator_is_pushed_to_the_teachers_argmax():
    teacher = bn_teacher()
    g = Generator(4, image_shape=SHAPE, noise_dim=8, channels=8, seed=0)
    method = DataFree(g, teacher, None, adv_weight=0.0, bn_weight=0.0, tv_weight=0.0, g_batch_size=8, jitter=0)
    method.prepare(student_shapes={}, teacher_shapes={}, num_classes=4, seed=0)
    images = g(torch.randn(8, 8))
    parts, t = method.generator_parts(images, torch.zeros(8, dtype=torch.long))
    torch.testing.assert_close(parts["gen_class"], F.cross_entropy(t, t.argmax(1)))


def test_data_free_checks_its_arguments():
    teacher, g = bn_teacher(), Generator(4, image_shape=SHAPE)
    with pytest.raises(ValueError, match="needs the student"):
        DataFree(g, teacher, None, adv_weight=0.1)
    with pytest.raises(ValueError, match="Generator"):
        DataFree(nn.Linear(2, 2), teacher, None, adv_weight=0.0)
    with pytest.raises(ValueError, match="BatchNorm"):
        DataFree(g, student_model(), None, adv_weight=0.0)
    with pytest.raises(ValueError, match="bn_weight"):
        DataFree(g, teacher, None, adv_weight=0.0, bn_weight=-1.0)
    method = DataFree(g, teacher, None, adv_weight=0.0)
    with pytest.raises(ValueError, match="makes 4 classes"):
        method.prepare(student_shapes={}, teacher_shapes={}, num_classes=3, seed=0)
    assert METHODS["data-free"] is DataFree
    assert isinstance(get_method("data-free", generator=g, teacher=teacher, adv_weight=0.0), DataFree)


# ------------------------------------------------------------------ the one loop, fed by a generator
def test_the_loop_trains_from_a_generator_with_the_teacher_online():
    teacher, student = bn_teacher(), student_model()
    g = Generator(4, image_shape=SHAPE, noise_dim=8, channels=8, seed=0)
    method = DataFree(g, teacher, student, g_batch_size=16)
    test = Dataset("t", "test", torch.rand(20, *SHAPE), torch.arange(20) % 4, ["a", "b", "c", "d"])
    misses = cache_info()["misses"]
    history = train(student, method.batches(steps=3, batch_size=16, seed=0), method, teacher=teacher, epochs=2,
                    eval_set=test, progress="off")
    assert cache_info()["misses"] - misses <= 1  # the eval set's logits only: no training-set cache
    assert list(history.parts) == ["kd"] and len(history.train_loss) == 2
    assert {"gen_class", "gen_bn", "gen_tv", "gen_adv", "gen_loss"} <= set(history.stats)
    assert "gen_agree" not in history.stats  # an unconditional generator is asked for no class
    assert len(history.curve("gen_bn")) == 2 and len(history.curve("accuracy")) == 2
    assert history.config["batch_size"] == 16 and history.config["method"] == "data-free"
    assert [s["epoch"] for s in method.snapshots] == [1, 2]
    first = method.snapshots[0]
    assert first["images"].shape == (16, *SHAPE) and sum(first["teacher_counts"]) == 16
    assert first["teacher_counts"] == torch.bincount(first["read"], minlength=4).tolist()


def test_same_seed_same_run():
    def run():
        teacher, student = bn_teacher(), student_model()
        g = Generator(4, image_shape=SHAPE, noise_dim=8, channels=8, seed=0)
        method = DataFree(g, teacher, student, g_batch_size=16)
        history = train(student, method.batches(steps=2, batch_size=8, seed=3), method, teacher=teacher,
                        epochs=1, seed=3, progress="off")
        return history.train_loss, history.stats["gen_loss"]
    assert run() == run()


def test_the_loop_trains_on_noise_and_refuses_a_cache_or_augmentation_of_made_batches():
    teacher, student = bn_teacher(), student_model()
    noise = NoiseBatches(SHAPE, steps=2, batch_size=8)
    history = train(student, noise, get_method("kl", temperature=1.0, alpha=1.0), teacher=teacher, epochs=1,
                    progress="off")
    assert list(history.parts) == ["kd"]
    for bad in (dict(cache_logits=True), dict(augment=dl.Augment(1, False))):
        with pytest.raises(ValueError, match="batch source"):
            train(student, noise, get_method("kl", temperature=1.0, alpha=1.0), teacher=teacher, progress="off", **bad)
    with pytest.raises(ValueError, match="same number of classes|classes"):
        train(student_model(classes=3), noise, get_method("kl", temperature=1.0, alpha=1.0), teacher=teacher,
              progress="off")
