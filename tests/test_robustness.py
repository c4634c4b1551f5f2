"""Noise, FGSM and reliability against hand computations (notebook 06's robustness myth)."""
import torch
import torch.nn.functional as F
import pytest

from distill_lib.lessons import robustness


def test_gaussian_noise_has_the_asked_spread_and_repeats_with_its_seed():
    images = torch.full((200, 1, 28, 28), 0.5)  # mid-grey: sigma 0.05 never reaches the clip at 0 or 1
    noisy = robustness.gaussian_noise(images, 0.05, seed=3)
    difference = noisy - images
    assert abs(float(difference.mean())) < 2e-3 and float(difference.std()) == pytest.approx(0.05, rel=0.02)
    assert torch.equal(noisy, robustness.gaussian_noise(images, 0.05, seed=3))
    assert not torch.equal(noisy, robustness.gaussian_noise(images, 0.05, seed=4))
    assert robustness.gaussian_noise(torch.ones(2, 3), 10.0).max() <= 1.0  # clipped to the image range


def test_fgsm_moves_every_pixel_along_the_sign_of_the_hand_computed_gradient():
    # a linear model z = W x + b: d CE / d x = W^T (softmax(z) - onehot(y)), written out by hand
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 3))
    images, labels = torch.rand(5, 1, 2, 3) * 0.5 + 0.25, torch.tensor([0, 1, 2, 1, 0])
    weight, bias = model[1].weight.detach(), model[1].bias.detach()
    z = images.flatten(1) @ weight.T + bias
    gradient = (F.softmax(z, 1) - F.one_hot(labels, 3)) @ weight / len(images)
    expected = (images.flatten(1) + 0.1 * gradient.sign()).clamp(0, 1).reshape(images.shape)
    assert torch.allclose(robustness.fgsm(model, images, labels, 0.1), expected)
    assert model.training  # the model's mode is restored


def test_reliability_bins_against_a_hand_made_case():
    # confidences 0.9 (right), 0.9 (wrong), 0.6 (right): two bins of 10
    logits = torch.log(torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4]]))
    rows = robustness.reliability(logits, torch.tensor([0, 1, 0]), bins=10)
    assert rows["count"] == [1, 2]
    assert rows["confidence"] == [pytest.approx(0.6), pytest.approx(0.9)] and rows["accuracy"] == [1.0, 0.5]


def test_perturbed_accuracies_of_a_constant_model_do_not_move():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([1.0, 0.0]))  # always class 0, whatever the image
    images, labels = torch.rand(8, 1, 2, 2), torch.tensor([0, 1] * 4)
    found = robustness.perturbed_accuracies(model, images, labels, sigmas=[0.3], epsilons=[0.1])
    assert found == {"clean": 0.5, "noise": {0.3: 0.5}, "fgsm": {0.1: 0.5}}
