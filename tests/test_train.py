"""fit/distill: the teacher-logit cache, seeds, divergence, and validation before work."""
import pytest
import torch

import distill_lib as dl
from distill_lib.core import cache
from distill_lib.core.batches import Augment, TensorBatches
from distill_lib.loop import TrainingDiverged

FAST = dict(epochs=2, batch_size=16, lr=1e-3, device="cpu", seed=0)


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear_cache(disk=True)  # memory and disk: every test counts its own teacher passes


@pytest.fixture
def teacher():
    return dl.build_model("mlp-small", seed=11).eval()


def test_cached_logits_equal_online_teacher_outputs_exactly(tiny_dataset, teacher):
    cached = cache.teacher_outputs(teacher, tiny_dataset).logits
    for _images, _labels, index in TensorBatches(tiny_dataset.images, tiny_dataset.labels, batch_size=16, seed=0):
        with torch.inference_mode():
            online = teacher(tiny_dataset.images[index])
        assert torch.equal(cached[index], online)


def test_cached_and_online_distillation_train_the_same_student(tiny_dataset, teacher):
    a, b = dl.build_model("mlp-tiny", seed=0), dl.build_model("mlp-tiny", seed=0)
    ha = dl.distill(a, teacher, tiny_dataset, temperature=2.0, alpha=0.5, cache_logits=True, **FAST)
    hb = dl.distill(b, teacher, tiny_dataset, temperature=2.0, alpha=0.5, cache_logits=False, **FAST)
    assert ha.train_loss == hb.train_loss
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_a_temperature_sweep_pays_one_teacher_pass(tiny_dataset, teacher):
    for T in (1.0, 2.0, 4.0, 8.0):
        dl.distill(dl.build_model("mlp-tiny", seed=0), teacher, tiny_dataset, temperature=T, alpha=0.9, **FAST)
    assert cache.cache_info()["misses"] == 1 and cache.cache_info()["hits"] == 3


def test_cache_key_follows_teacher_weights_and_data(tiny_dataset, teacher):
    first = cache.teacher_outputs(teacher, tiny_dataset).logits.clone()
    with torch.no_grad():
        teacher.head.bias += 1.0
    assert torch.allclose(cache.teacher_outputs(teacher, tiny_dataset).logits, first + 1.0, atol=1e-5)
    tiny_dataset.images[0].fill_(0.5)  # in-place edit of the data must invalidate too
    cache.teacher_outputs(teacher, tiny_dataset).logits
    assert cache.cache_info()["misses"] == 3


def test_cache_refused_with_random_augmentation(tiny_dataset, teacher):
    with pytest.raises(ValueError, match="cannot be cached with random augmentation"):
        cache.teacher_outputs(teacher, tiny_dataset, augment=Augment())
    with pytest.raises(ValueError, match="cannot be cached with random augmentation"):
        dl.distill(dl.build_model("mlp-tiny"), teacher, tiny_dataset, augment=Augment(), cache_logits=True, **FAST)
    history = dl.distill(dl.build_model("mlp-tiny"), teacher, tiny_dataset, augment=Augment(), **FAST)
    assert history.config["teacher_cached"] is False and cache.cache_info()["misses"] == 0


def test_same_seed_same_metrics(tiny_dataset):
    runs = [dl.fit(dl.build_model("mlp-small", seed=3), tiny_dataset, eval_set=tiny_dataset, **FAST) for _ in range(2)]
    assert runs[0].train_loss == runs[1].train_loss and runs[0].final == runs[1].final
    other = dl.fit(dl.build_model("mlp-small", seed=3), tiny_dataset, **{**FAST, "seed": 1})
    assert other.train_loss != runs[0].train_loss


def test_training_learns_something(tiny_dataset):
    history = dl.fit(dl.build_model("mlp-small", seed=0), tiny_dataset, eval_set=tiny_dataset,
                     **{**FAST, "epochs": 15, "lr": 3e-3})
    assert history.train_loss[-1] < 0.5 * history.train_loss[0] and history.final["accuracy"] > 0.5


class BlowsUp(torch.nn.Module):
    """Wraps a model; from its ``after``-th training forward on, its logits are NaN."""

    def __init__(self, model, after):
        super().__init__()
        self.model, self.after, self.calls = model, after, 0

    def forward(self, x):
        self.calls += self.training
        logits = self.model(x)
        return logits * float("nan") if self.training and self.calls >= self.after else logits


def test_non_finite_loss_stops_training_with_the_history_kept(tiny_dataset):
    # 60 images in batches of 16: 4 steps an epoch, so forward 6 is epoch 2, step 2
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 2, step 2") as info:
        dl.fit(BlowsUp(dl.build_model("mlp-small"), after=6), tiny_dataset, **FAST)
    assert len(info.value.history.train_loss) == 1  # the finished epoch is kept


def test_nan_images_are_refused_before_training(tiny_dataset):
    tiny_dataset.images[5] = float("nan")
    with pytest.raises(ValueError, match=r"train_set.images must be in \[0, 1\]; got values from nan"):
        dl.fit(dl.build_model("mlp-small"), tiny_dataset, **FAST)


def test_distill_reports_agreement_with_teacher(tiny_dataset, teacher):
    history = dl.distill(dl.build_model("mlp-tiny"), teacher, tiny_dataset, eval_set=tiny_dataset, **FAST)
    assert set(history.final) == {"accuracy", "nll", "ece", "confidence", "agreement"}


@pytest.mark.parametrize("kwargs,message", [
    (dict(temperature=0), "temperature must be a finite number > 0, got 0"),
    (dict(temperature=float("inf")), "temperature must be a finite number > 0, got inf"),
    (dict(alpha=-0.1), "alpha must be a number in [0, 1], got -0.1"),
    (dict(epochs=0), "epochs must be an integer >= 1, got 0"),
    (dict(batch_size=2.5), "batch_size must be an integer >= 1, got 2.5"),
    (dict(lr=-1e-3), "lr must be a finite number > 0, got -0.001"),
    (dict(loss="hinge"), "loss must be one of 'kl', 'mse-logits', 'mse-soft', 'dkd'; got 'hinge'"),
    (dict(optimizer="lbfgs"), "optimizer must be one of 'adam', 'sgd'; got 'lbfgs'"),
    (dict(device="gpu0"), "device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got 'gpu0'"),
])
def test_bad_distill_inputs_fail_before_any_teacher_pass(tiny_dataset, teacher, kwargs, message):
    with pytest.raises(ValueError) as info:
        dl.distill(dl.build_model("mlp-tiny"), teacher, tiny_dataset, **{**FAST, **kwargs})
    assert message in str(info.value)
    assert cache.cache_info()["misses"] == 0


def test_teacher_and_student_class_counts_must_match(tiny_dataset, teacher):
    with pytest.raises(ValueError, match="teacher has 10, student has 7"):
        dl.distill(dl.build_model("mlp-tiny", num_classes=7), teacher, tiny_dataset, **FAST)


def test_ece_against_a_hand_computed_case():
    # two bins used: confidences 0.9 (correct, wrong) and 0.6 (correct); 15 equal bins
    logits = torch.log(torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4]]))
    labels = torch.tensor([0, 1, 0])
    expected = (2 / 3) * abs(0.5 - 0.9) + (1 / 3) * abs(1.0 - 0.6)
    assert dl.expected_calibration_error(logits, labels) == pytest.approx(expected, abs=1e-6)


def test_scoring_once_after_the_last_epoch_gives_the_same_final_metrics(tiny_dataset, teacher):
    method = dl.methods.KD(temperature=4.0, alpha=0.9)
    every = dl.train(dl.build_model("mlp-small", seed=3), tiny_dataset, method, teacher=teacher,
                     eval_set=tiny_dataset, **FAST)
    student = dl.build_model("mlp-small", seed=3)
    once = dl.train(student, tiny_dataset, method, teacher=teacher, eval_set=tiny_dataset,
                    eval_every_epoch=False, **FAST)
    assert once.train_loss == every.train_loss  # scoring draws nothing from training
    expected = dl.evaluate(student, tiny_dataset, teacher=teacher, device="cpu")
    assert once.final["accuracy"] == expected["accuracy"] == every.final["accuracy"]
    assert once.eval_metrics == [{}, {}]
    with pytest.raises(KeyError, match="no series 'accuracy'"):
        once.curve("accuracy")
    with pytest.raises(ValueError, match="eval_every_epoch must be True or False; got 'no'"):
        dl.train(student, tiny_dataset, method, teacher=teacher, eval_every_epoch="no", **FAST)


def test_confidence_is_the_mean_top_class_probability():
    # the same hand-made case: top probabilities 0.9, 0.9, 0.6 -> 0.8; accuracy 2/3, so the model
    # is overconfident by 0.8 - 0.667
    logits = torch.log(torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4]]))
    metrics = dl.metrics_from_logits(logits, torch.tensor([0, 1, 0]))
    assert metrics["confidence"] == pytest.approx(0.8, abs=1e-6) and metrics["accuracy"] == pytest.approx(2 / 3)


def test_a_loss_that_is_nan_before_any_update_blames_the_loss_not_the_lr(tiny_dataset, teacher):
    # 0 * log(0): a hand-written KL on a one-hot teacher is NaN at the very first step (notebook 06)
    class ZeroLogZero(dl.methods.Method):
        def part_names(self):
            return ("kl",)

        def forward(self, out):
            p_t = torch.nn.functional.one_hot(out.teacher_logits.argmax(1), 10).float()
            p_s = out.student_logits.softmax(1)
            return {"kl": (p_t * torch.log(p_t / p_s)).sum(1).mean()}

    with pytest.raises(dl.TrainingDiverged) as stopped:
        dl.train(dl.build_model("mlp-tiny"), tiny_dataset, ZeroLogZero(), teacher=teacher, **FAST)
    message = str(stopped.value)
    assert "epoch 1, step 1" in message and "learning rate is not the cause" in message and "0 * log(0)" in message
    assert "Try a lower lr" not in message
