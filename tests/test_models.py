"""Model presets: closed-form parameter and MAC counts, features, identical seeded starts."""
import pytest
import torch

from distill_lib.core.models import MODEL_PRESETS, build_model, count_macs, count_params, feature_shapes


def test_mlp_counts_match_closed_form():
    model = build_model("mlp-hinton")
    assert count_params(model) == (784 * 800 + 800) + (800 * 800 + 800) + (800 * 10 + 10)
    assert count_macs(model) == 784 * 800 + 800 * 800 + 800 * 10


def test_cnn_macs_match_closed_form():
    model = build_model("cnn-small")  # conv 1->16 @28x28, pool, conv 16->32 @14x14, GAP, linear 32->10
    assert count_macs(model) == 28 * 28 * 16 * 1 * 9 + 14 * 14 * 32 * 16 * 9 + 32 * 10
    convs = 16 * 1 * 9 + 32 * 16 * 9
    assert count_params(model) == convs + 2 * (16 + 32) + 32 * 10 + 10  # BN has weight and bias


def test_lenet_counts_match_closed_form():
    model = build_model("lenet5-bn")  # conv5 1->6 @28x28, pool, conv5 6->16 @10x10, pool, 400-120-84-10
    assert count_macs(model) == 28 * 28 * 6 * 25 + 10 * 10 * 16 * 6 * 25 + 400 * 120 + 120 * 84 + 84 * 10
    assert count_params(model) == 6 * 25 + 16 * 6 * 25 + 400 * 120 + 120 * 84 + 84 * 10 + 10 + 2 * (6 + 16 + 120 + 84)
    assert build_model("lenet5-bn", in_shape=(3, 32, 32))(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="at least 10 x 10"):
        build_model("lenet5-bn", in_shape=(1, 8, 8))


@pytest.mark.parametrize("name", list(MODEL_PRESETS))
def test_every_preset_returns_logits_and_features(name):
    model = build_model(name, seed=0).eval()
    logits, features = model(torch.rand(3, 1, 28, 28), return_features=True)
    assert logits.shape == (3, 10)
    assert {k: tuple(v.shape[1:]) for k, v in features.items()} == feature_shapes(model)


def test_same_seed_same_weights_different_seed_different_weights():
    a, b, c = build_model("mlp-small", seed=7), build_model("mlp-small", seed=7), build_model("mlp-small", seed=8)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.head.weight, c.head.weight)


def test_build_model_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_model("mlp-small", seed=5)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("kwargs,message", [
    (dict(name="resnet999"), "name must be one of"),
    (dict(name="mlp-small", num_classes=0), "num_classes must be an integer >= 1, got 0"),
    (dict(name="mlp-small", seed=-1), "seed must be an integer >= 0, got -1"),
    (dict(name="mlp-small", dropout=1.5), "dropout must be a number in [0, 1], got 1.5"),
    (dict(name="mlp-small", channels=(8,)), "unknown argument(s) ['channels'] for model 'mlp-small'"),
    (dict(name="cnn-small", channels=(8, 16, 32)), "needs one entry per stage"),
])
def test_bad_model_arguments(kwargs, message):
    with pytest.raises(ValueError) as info:
        build_model(**kwargs)
    assert message in str(info.value)
