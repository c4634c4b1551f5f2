"""Notebook 06's measurements against independent oracles (the library's own KD path, autograd)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import distill_lib as dl
from distill_lib.core.batches import Augment
from distill_lib.lessons import pitfalls
from distill_lib.methods import StepOutputs
from distill_lib.methods.adversarial import Discriminator, generator_loss


def hand_written_kd(s, t, y, T, alpha):
    kl = F.kl_div(F.log_softmax(s / T, dim=1), F.softmax(t / T, dim=1), reduction="batchmean")
    return (1 - alpha) * F.cross_entropy(s, y) + alpha * T * T * kl


def test_a_loss_function_trains_like_the_library_kd(tiny_dataset):
    teacher = dl.build_model("mlp-small", seed=1).eval()
    a, b = dl.build_model("mlp-tiny", seed=0), dl.build_model("mlp-tiny", seed=0)
    common = dict(epochs=2, batch_size=16, device="cpu", seed=3, progress="off")
    dl.train(a, tiny_dataset, pitfalls.LossFunction(hand_written_kd, temperature=4.0, alpha=0.7), teacher=teacher, **common)
    dl.distill(b, teacher, tiny_dataset, temperature=4.0, alpha=0.7, **common)
    for x, y in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)


def test_wrong_rows_hands_each_image_another_images_teacher_outputs():
    seen = []
    method = pitfalls.WrongRows(lambda s, t, y, T, a: seen.append(t) or s.sum() * 0, temperature=2.0, alpha=0.5, seed=0)
    teacher_logits = torch.arange(8.0).repeat(3, 1).T  # row i holds the value i
    method(StepOutputs(torch.zeros(8, 3), torch.zeros(8, dtype=torch.long), teacher_logits))
    rows = seen[0][:, 0].tolist()
    assert sorted(rows) == list(range(8)) and rows != list(range(8))  # a permutation, not the identity


def test_train_arms_records_stops_and_accuracies(tiny_dataset):
    teacher = dl.build_model("mlp-small", seed=1).eval()
    arms = {"correct": hand_written_kd, "nan": lambda s, t, y, T, a: s.sum() * float("nan")}
    records = pitfalls.train_arms(arms, teacher, tiny_dataset, tiny_dataset, student="mlp-tiny", seeds=[0, 1],
                                  temperature=2.0, alpha=0.5, epochs=1, batch_size=16, device="cpu")
    assert [(r["arm"], r["seed"]) for r in records] == [("correct", 0), ("nan", 0), ("correct", 1), ("nan", 1)]
    assert all(0 <= r["accuracy"] <= 1 for r in records if r["arm"] == "correct")
    assert all(r["accuracy"] is None and "loss became nan at epoch 1, step 1" in r["stopped"]
               for r in records if r["arm"] == "nan")


def test_saved_activations_are_zero_under_no_grad_and_grow_with_the_batch():
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5))
    small, large = torch.rand(4, 20), torch.rand(40, 20)
    assert pitfalls.saved_activation_bytes(model, small, grad=False) == 0
    with_grad = pitfalls.saved_activation_bytes(model, small, grad=True)
    # at least the first layer's input (4 x 20 floats) and the ReLU's output (4 x 30) are kept
    assert with_grad >= (4 * 20 + 4 * 30) * 4
    assert pitfalls.saved_activation_bytes(model, large, grad=True) > with_grad


def test_teacher_in_train_mode_changes_answers_and_statistics():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 3)).eval()
    data = dl.Dataset("d", "train", torch.rand(64, 1, 2, 2), torch.arange(64) % 3, ["a", "b", "c"])
    found = pitfalls.teacher_in_train_mode(teacher, data, data, batch_size=16)
    assert found["train_mode_disagreement"] > 0  # dropout and batch statistics change the answers
    assert set(found) == {"accuracy_before", "accuracy_after", "train_mode_disagreement"}
    assert teacher.training is False and float(teacher[2].running_mean.abs().sum()) == 0.0  # the original is untouched


def test_augmentation_mismatch_is_zero_without_augmentation():
    teacher = dl.build_model("mlp-small", seed=0).eval()
    data = dl.Dataset("d", "train", torch.rand(32, 1, 28, 28), torch.arange(32) % 10, [str(i) for i in range(10)])
    same = pitfalls.augmentation_mismatch(teacher, data, lambda images, generator: images)
    assert same == {"disagreement": 0.0, "mean_kl": pytest.approx(0.0, abs=1e-6)}
    shifted = pitfalls.augmentation_mismatch(teacher, data, Augment(shift=4, flip=True))
    assert shifted["mean_kl"] > 0


def test_generator_gradients_match_autograd_of_the_library_loss():
    student, disc = dl.build_model("mlp-tiny", seed=0), Discriminator(10, spectral_norm=False, input_dropout=0.0, seed=1)
    images, labels = torch.rand(16, 1, 28, 28), torch.arange(16) % 10
    found = pitfalls.generator_gradients(student, disc, images, labels, temperature=2.0)
    assert all(p.grad is None for p in disc.parameters())  # D was frozen: only the student got gradients
    student.zero_grad()
    generator_loss(disc(F.softmax(student(images) / 2.0, dim=1), labels)).backward()  # BCE(D(p_s), 1)
    oracle = torch.cat([p.grad.flatten() for p in student.parameters()])
    torch.testing.assert_close(found["correct"], oracle)
    assert found["cosine"] < 0
