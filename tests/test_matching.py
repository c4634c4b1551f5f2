"""Hint regressor, hint loss, attention transfer, structure matching and feature methods in the loop.

Oracles: hand-written loops and einsums, PyTorch's own pooling, and ``fit`` for the labels-only
recipe (KD with alpha = 0 must train exactly like plain cross-entropy).
"""
import pytest
import torch

from distill_lib import methods
from distill_lib import methods
from distill_lib.core import cache
from distill_lib.core.data import Dataset
from distill_lib.core.models import build_model, feature_shapes
from distill_lib.lessons import matching as mt
from distill_lib.loop import fit, train

TEACHER_SHAPES = {"stage1": (32, 14, 14), "stage2": (64, 7, 7), "stage3": (128, 7, 7)}


def tiny_dataset(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, 28, 28, generator=g)
    labels = torch.arange(n) % 10
    return Dataset("random", "train", images, labels, [str(i) for i in range(10)])


# ------------------------------------------------------------------ HintRegressor, hint_loss
@pytest.mark.parametrize("student_shape, teacher_shape", [
    ((16, 14, 14), (64, 7, 7)),    # student map larger: pooled down
    ((8, 7, 7), (32, 14, 14)),     # student map smaller: resized up
    ((16, 7, 7), (64, 7, 7)),      # same size: channels only
    ((32, 7, 7), (128,)),          # map student, vector teacher
    ((128,), (64, 7, 7)),          # vector student, map teacher (pooled in the loss)
    ((128,), (10,)),
])
def test_regressor_output_shape_for_mismatched_layers(student_shape, teacher_shape):
    regressor = methods.HintRegressor(student_shape, teacher_shape)
    out = regressor(torch.randn(3, *student_shape))
    vector_out = len(student_shape) == 1 and len(teacher_shape) == 3  # compared with the pooled teacher map
    expected = (3, teacher_shape[0]) if vector_out else (3, *teacher_shape)
    assert tuple(out.shape) == expected
    loss = methods.hint_loss(torch.randn(3, *student_shape), torch.randn(3, *teacher_shape), regressor)
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_regressor_is_a_pointwise_channel_map_then_average_pool():
    torch.manual_seed(0)
    regressor = methods.HintRegressor((6, 14, 14), (4, 7, 7))
    x = torch.randn(2, 6, 14, 14)
    w, b = regressor.map.weight[:, :, 0, 0], regressor.map.bias
    mixed = torch.einsum("oc,bchw->bohw", w, x) + b[None, :, None, None]
    # 2x2 block means written out by hand
    pooled = mixed.reshape(2, 4, 7, 2, 7, 2).mean(dim=(3, 5))
    torch.testing.assert_close(regressor(x), pooled, rtol=1e-5, atol=1e-5)


def test_regressor_upsampling_keeps_a_constant_map_constant():
    regressor = methods.HintRegressor((3, 7, 7), (5, 14, 14))
    x = torch.full((1, 3, 7, 7), 2.0)
    out = regressor(x)
    expected = (regressor.map.weight[:, :, 0, 0] @ torch.full((3,), 2.0) + regressor.map.bias)
    torch.testing.assert_close(out, expected[None, :, None, None].expand(1, 5, 14, 14), rtol=1e-5, atol=1e-5)


def test_hint_loss_is_mean_squared_error_and_pools_teacher_map_for_vector_student():
    regressor = methods.HintRegressor((12,), (5, 7, 7))
    s, t = torch.randn(4, 12), torch.randn(4, 5, 7, 7)
    prediction = s @ regressor.map.weight.T + regressor.map.bias
    target = t.sum(dim=(2, 3)) / 49
    manual = ((prediction - target) ** 2).sum() / prediction.numel()
    torch.testing.assert_close(methods.hint_loss(s, t, regressor), manual, rtol=1e-5, atol=1e-6)


def test_hint_loss_gradient_reaches_student_and_regressor():
    regressor = methods.HintRegressor((4, 7, 7), (8, 7, 7))
    s = torch.randn(2, 4, 7, 7, requires_grad=True)
    methods.hint_loss(s, torch.randn(2, 8, 7, 7), regressor).backward()
    assert s.grad.abs().sum() > 0 and regressor.map.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("student_shape", [(4, 7), (0, 7, 7), (4.0,), ()])
def test_regressor_rejects_bad_shapes(student_shape):
    with pytest.raises(ValueError, match="student_shape"):
        methods.HintRegressor(student_shape, (8, 7, 7))


def test_regressor_and_hint_loss_reject_mismatched_tensors():
    regressor = methods.HintRegressor((4, 7, 7), (8, 7, 7))
    with pytest.raises(ValueError, match="built for"):
        regressor(torch.randn(2, 5, 7, 7))
    with pytest.raises(ValueError, match="differ"):
        methods.hint_loss(torch.randn(2, 4, 7, 7), torch.randn(2, 8, 14, 14), regressor)


# ------------------------------------------------------------------ attention transfer
def loop_attention_map(feature, p=2):
    b, c, h, w = feature.shape
    out = torch.zeros(b, h * w)
    for i in range(b):
        q = sum(feature[i, k].abs() ** p for k in range(c)).flatten()
        out[i] = q / q.pow(2).sum().sqrt()
    return out


def test_attention_map_matches_a_hand_written_loop():
    x = torch.randn(3, 5, 4, 6)
    torch.testing.assert_close(methods.attention_map(x), loop_attention_map(x), rtol=1e-5, atol=1e-6)


def test_attention_map_ignores_scale_and_channel_count():
    x = torch.randn(2, 4, 7, 7)
    torch.testing.assert_close(methods.attention_map(3.0 * x), methods.attention_map(x), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(methods.attention_map(torch.cat([x, x], 1)), methods.attention_map(x), rtol=1e-5, atol=1e-6)


def test_attention_loss_is_mean_squared_difference_of_maps():
    s, t = torch.randn(2, 8, 7, 7), torch.randn(2, 64, 7, 7)
    manual = ((loop_attention_map(s) - loop_attention_map(t)) ** 2).mean()
    torch.testing.assert_close(methods.attention_loss(s, t), manual, rtol=1e-5, atol=1e-7)
    assert float(methods.attention_loss(t, t)) == pytest.approx(0.0, abs=1e-7)


def test_attention_rejects_mismatched_or_flat_features():
    with pytest.raises(ValueError, match="spatial"):
        methods.attention_loss(torch.randn(2, 8, 14, 14), torch.randn(2, 8, 7, 7))
    with pytest.raises(ValueError, match="feature maps"):
        methods.attention_map(torch.randn(2, 8))


# ------------------------------------------------------------------ structure matching
def test_match_stages_pairs_equal_resolutions_by_depth():
    student = feature_shapes(build_model("cnn-dws", channels=(8, 16, 32)))
    pairs = mt.match_stages(student, TEACHER_SHAPES)
    assert [(p["student"], p["teacher"]) for p in pairs] == [("stage1", "stage1"), ("stage2", "stage2"), ("stage3", "stage3")]


def test_match_stages_never_pairs_different_resolutions_when_an_equal_one_exists():
    student = feature_shapes(build_model("cnn-small"))  # two 14x14 stages
    pairs = mt.match_stages(student, TEACHER_SHAPES)
    assert [p["teacher"] for p in pairs] == ["stage1", "stage1"]


def test_match_stages_falls_back_to_depth_for_vector_students():
    pairs = mt.match_stages({"fc1": (800,), "fc2": (800,)}, TEACHER_SHAPES)
    assert [p["teacher"] for p in pairs] == ["stage2", "stage3"] and pairs[0]["why"] == "nearest depth"


def test_match_stages_rejects_empty_input():
    with pytest.raises(ValueError, match="student_shapes"):
        mt.match_stages({}, TEACHER_SHAPES)


# ------------------------------------------------------------------ teacher pass and training
def test_teacher_outputs_equal_a_direct_forward_pass():
    model = build_model("cnn-dws", channels=(4, 8, 8), seed=1).eval()
    data = tiny_dataset(20)
    out = cache.teacher_outputs(model, data, ["stage2"], batch_size=7, persist=False)
    with torch.no_grad():
        logits, feats = model(data.images, return_features=True)
    torch.testing.assert_close(out.logits, logits)
    torch.testing.assert_close(out.features["stage2"], feats["stage2"])
    with pytest.raises(ValueError, match="teacher stage"):
        cache.teacher_outputs(model, data, ["stage9"])


def test_labels_only_recipe_trains_exactly_like_fit():
    # KD with alpha = 0 is plain cross-entropy, even with the student's features in the step
    data = tiny_dataset(96)
    teacher = build_model("cnn-dws", channels=(8, 16, 32), seed=0).eval()
    a, b = build_model("cnn-dws", channels=(4, 8, 8), seed=3), build_model("cnn-dws", channels=(4, 8, 8), seed=3)
    common = dict(epochs=2, batch_size=32, lr=3e-3, weight_decay=5e-4, seed=5, device="cpu")
    labels_only = methods.combine(methods.KD(alpha=0.0), methods.Hint("stage2", "stage2", weight=0.0))
    train(a, data, labels_only, teacher=teacher, progress="off", **common)
    fit(b, data, optimizer="adam", schedule="onecycle", progress="off", **common)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        torch.testing.assert_close(pa, pb)


def test_hint_training_optimises_the_regressor_with_the_student():
    data = tiny_dataset(64)
    teacher = build_model("cnn-dws", channels=(8, 16, 32), seed=0).eval()
    hint = methods.Hint("stage2", "stage2", weight=1.0)
    student = build_model("cnn-dws", channels=(4, 8, 8), seed=0)
    reference = methods.Hint("stage2", "stage2")
    reference.prepare(student_shapes=feature_shapes(student), teacher_shapes=feature_shapes(teacher), num_classes=10, seed=0)
    history = train(student, data, methods.combine(methods.CrossEntropy(), hint), teacher=teacher, epochs=1,
                    batch_size=32, device="cpu", progress="off")
    assert tuple(hint.regressor.map.weight.shape) == (16, 8, 1, 1)  # teacher x student channels
    assert not torch.equal(hint.regressor.map.weight, reference.regressor.map.weight)  # same start, it learnt
    assert {"name": "hint", "student_stage": "stage2", "teacher_stage": "stage2", "weight": 1.0} in history.config["methods"]
    assert history.parts["hint"][0] > 0


def test_attention_recipe_runs_with_different_channel_counts():
    data = tiny_dataset(64)
    teacher = build_model("cnn-dws", channels=(8, 16, 32), seed=0).eval()
    method = methods.combine(methods.KD(alpha=0.5),
                             methods.AttentionTransfer((("stage1", "stage1"), ("stage3", "stage3")), weight=1000.0))
    history = train(build_model("cnn-dws", channels=(4, 8, 8), seed=0), data, method, teacher=teacher,
                    epochs=1, batch_size=32, device="cpu", progress="off")
    assert len(history.train_loss) == 1 and set(history.parts) == {"ce", "kd", "attention_stage1", "attention_stage3"}


@pytest.mark.parametrize("make, message", [
    (lambda: methods.Hint("stage1", "stage1", weight=-1.0), "weight must be a finite number >= 0"),
    (lambda: methods.KD(alpha=1.5), "alpha"),
    (lambda: methods.AttentionTransfer(()), "pairs"),
    (lambda: methods.combine(methods.CrossEntropy(), methods.Hint("stage7", "stage1")), "student stage"),
    (lambda: methods.combine(methods.CrossEntropy(), methods.Hint("stage1", "stage9")), "teacher stage"),
    (lambda: methods.combine(methods.KD(), methods.AttentionTransfer([("stage1", "stage3")])), "equal spatial size"),
    (lambda: methods.combine(methods.KD(), methods.CrossEntropy()), "both return a loss part named 'ce'"),
])
def test_bad_methods_are_refused_before_training(make, message):
    data = tiny_dataset(16)
    teacher = build_model("cnn-dws", channels=(8, 16, 32), seed=0).eval()
    cache.clear_cache(disk=True)
    with pytest.raises(ValueError, match=message):
        train(build_model("cnn-dws", channels=(4, 8, 8)), data, make(), teacher=teacher, epochs=1, device="cpu")
    assert cache.cache_info()["misses"] == 0  # refused before the teacher ran over the data


def test_a_feature_method_without_a_teacher_is_refused():
    with pytest.raises(ValueError, match="learns from a teacher"):
        train(build_model("mlp-tiny"), tiny_dataset(16), methods.KD(), epochs=1, device="cpu")
