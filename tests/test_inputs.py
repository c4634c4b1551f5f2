"""Bad inputs to the library are refused before any work, naming the parameter, the value and
what is allowed (the red-team cases of the hardening issue, one test per class of defect)."""
import numpy as np
import pytest
import torch

import distill_lib as dl
from distill_lib.core import cache
from distill_lib.core.data import Dataset

FAST = dict(epochs=1, batch_size=16, device="cpu", progress="off")


@pytest.fixture(autouse=True)
def no_cache():
    cache.clear_cache()


def data(labels=None, images=None, n=32):
    labels = torch.arange(n) % 10 if labels is None else labels
    images = torch.rand(len(labels), 1, 28, 28) if images is None else images
    return Dataset("d", "train", images, labels, [str(i) for i in range(10)])


def refused(call, *words):
    with pytest.raises(ValueError) as error:
        call()
    for word in words:
        assert word in str(error.value), f"{word!r} not in: {error.value}"
    return str(error.value)


@pytest.mark.parametrize("labels, words", [
    (torch.full((32,), 10), ["train_set.labels", "[0, 9]", "max 10"]),
    (torch.full((32,), -2), ["train_set.labels", "-1 for an unlabelled sample", "min -2"]),
    (torch.arange(32).float() % 10, ["train_set.labels", "integer class indices", "float32"]),
])
def test_labels_are_range_and_type_checked_before_training(labels, words):
    refused(lambda: dl.fit(dl.build_model("mlp-tiny"), data(labels), **FAST), *words)


def test_a_bad_eval_set_is_refused_before_the_first_epoch_not_after():
    bad = data(torch.full((32,), -1))  # unlabelled test images cannot be scored
    started = []
    model = dl.build_model("mlp-tiny")
    model.register_forward_pre_hook(lambda *_: started.append(1) if model.training else None)
    refused(lambda: dl.fit(model, data(), eval_set=bad, **FAST), "eval_set.labels", "[0, 9]")
    assert not started  # no training step ran


@pytest.mark.parametrize("images, words", [
    (torch.randint(0, 256, (32, 1, 28, 28), dtype=torch.uint8), ["train_set.images", "floats in [0, 1]", "uint8"]),
    (torch.rand(32, 1, 28, 28) * 255, ["train_set.images must be in [0, 1]", "divide by 255"]),
    (torch.rand(32, 28, 28).unsqueeze(1).squeeze(1), ["N x C x H x W"]),
])
def test_images_outside_zero_one_or_of_the_wrong_shape_are_refused(images, words):
    make = (lambda: data(images=images)) if images.ndim == 4 else (lambda: Dataset("d", "train", images, torch.arange(32) % 10, list("abcdefghij")))
    refused(lambda: dl.fit(dl.build_model("mlp-tiny"), make(), **FAST), *words)


def test_an_empty_dataset_is_refused_clearly():
    empty = Dataset("d", "train", torch.zeros(0, 1, 28, 28), torch.zeros(0, dtype=torch.long), [str(i) for i in range(10)])
    refused(lambda: dl.fit(dl.build_model("mlp-tiny"), empty, **FAST), "train_set is empty")
    refused(lambda: dl.distill(dl.build_model("mlp-tiny"), dl.build_model("mlp-small"), data(), eval_set=empty, **FAST),
            "eval_set is empty")


def test_models_that_cannot_take_the_data_are_refused():
    refused(lambda: dl.fit(dl.build_model("mlp-tiny").double(), data(), **FAST), "student must have float32 parameters",
            "torch.float64")
    refused(lambda: dl.fit(dl.build_model("mlp-tiny", in_shape=(3, 32, 32)), data(), **FAST), "cannot take the dataset's images")
    refused(lambda: dl.build_model("cnn-small", in_shape=(0, 28, 28)), "in_shape", "(0, 28, 28)")
    refused(lambda: dl.build_model("cnn-small", in_shape=(28, 28)), "in_shape")
    refused(lambda: dl.fit(dl.build_model("mlp-tiny"), data(), augment="flip", **FAST), "augment", "'flip'")


def test_logits_must_be_batch_by_classes_and_low_precision_is_computed_in_float32():
    s, t, y = torch.randn(4, 10) * 3, torch.randn(4, 10) * 3, torch.arange(4)
    refused(lambda: dl.kd_loss(s[0], t[0], y[:1], temperature=4.0, alpha=0.9), "2-D tensor", "(10,)")
    reference = dl.kd_loss(s, t, y, temperature=19.0, alpha=0.9)
    for dtype in (torch.float16, torch.bfloat16):
        low = dl.kd_loss(s.to(dtype), t.to(dtype), y, temperature=19.0, alpha=0.9)
        assert low.dtype == torch.float32 and torch.isfinite(low)
        # only the inputs' rounding differs: within 1% of float32, not 6% off as when computed in bfloat16
        exact = dl.kd_loss(s.to(dtype).float(), t.to(dtype).float(), y, temperature=19.0, alpha=0.9)
        torch.testing.assert_close(low, exact)
    assert abs(float(reference)) > 0


def test_switches_and_numbers_are_checked_by_type():
    refused(lambda: dl.distill(dl.build_model("mlp-tiny"), dl.build_model("mlp-small"), data(), cache_logits=1, **FAST),
            "cache_logits must be one of 'auto', True, False; got 1")
    history = dl.distill(dl.build_model("mlp-tiny"), dl.build_model("mlp-small"), data(), temperature=np.float32(2.0),
                         alpha=np.float32(0.5), **FAST)  # numpy floats are numbers like any other
    assert history.train_loss
    refused(lambda: dl.distill(dl.build_model("mlp-tiny"), dl.build_model("mlp-small"), data(), temperature="2", **FAST),
            "temperature must be a number, got str")
    refused(lambda: dl.distill(dl.build_model("mlp-tiny"), dl.build_model("mlp-small"), data(), augment=dl.Augment(),
                               cache_logits=True, **FAST), "cache_logits=False")


def test_agreement_with_a_teacher_of_another_class_count_is_refused():
    teacher = dl.build_model("mlp-small", num_classes=7)
    refused(lambda: dl.evaluate(dl.build_model("mlp-tiny"), data(), teacher=teacher), "teacher", "7", "10")
