"""Quantization, pruning, export, size and latency helpers.

Oracles: the float model itself (quantized and exported copies must agree with it), file sizes
from the operating system, zero counts and magnitude order computed directly on the weights,
a module that sleeps a known time, and a hand-worked Pareto example.
"""
import copy
import os
import time

import pytest
import torch
from torch import nn

from distill_lib.lessons import lightweight as lw
from distill_lib.core.data import load_dataset
from distill_lib.core.models import build_model, count_params
from distill_lib.loop import fit


@pytest.fixture(scope="module")
def data():
    train = load_dataset("fashion-mnist-mini", split="train")
    return train.subset(range(0, 10000, 10)), train.subset(range(5, 10000, 20))  # 1000 train, 500 held out


@pytest.fixture(scope="module")
def trained_mlp(data):
    model = build_model("mlp-small", seed=0)
    fit(model, data[0], epochs=2, batch_size=100, lr=3e-3, device="cpu", progress="off")
    return model.eval()


@pytest.fixture(scope="module")
def trained_dws(data):
    model = build_model("cnn-dws", channels=(4, 8, 16), seed=0)
    fit(model, data[0], epochs=1, batch_size=100, lr=1e-2, device="cpu", progress="off")
    return model.eval()


def agreement(a, b, images):
    with torch.no_grad(), lw.quiet_quantization_warnings():
        return float((a(images).argmax(-1) == b(images).argmax(-1)).float().mean())


# ------------------------------------------------------------------ quantization
@pytest.mark.parametrize("name", ["cnn-small", "cnn-dws", "mlp-small"])
def test_quant_ready_wrapper_computes_exactly_what_the_model_does(name):
    model = build_model(name, seed=0).eval()
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(lw.QuantReady(copy.deepcopy(model))(x), model(x), rtol=0, atol=0)


def test_fusable_groups_find_conv_bn_relu_and_linear_relu():
    dws = build_model("cnn-dws", seed=0)
    assert lw.fusable_groups(dws.stages["stage2"]) == [["0", "1", "2"], ["3", "4", "5"]]
    assert lw.fusable_groups(build_model("mlp-small").stages["fc1"]) == [["1", "2"]]
    assert lw.fusable_groups(nn.Sequential(nn.ReLU(), nn.Conv2d(1, 1, 1))) == []


def test_fused_model_matches_the_float_model(trained_dws):
    x = torch.rand(8, 1, 28, 28)
    fused = lw.fuse_for_inference(copy.deepcopy(trained_dws))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    with torch.no_grad():
        torch.testing.assert_close(fused(x), trained_dws(x), rtol=1e-4, atol=1e-4)


def test_dynamic_int8_quantizes_linear_layers_and_shrinks_an_mlp(trained_mlp, data, tmp_path):
    quantized = lw.quantize_dynamic_int8(trained_mlp)
    linears = [m for m in quantized.modules() if isinstance(m, (nn.Linear, torch.ao.nn.quantized.dynamic.Linear))]
    assert len(linears) == 2 and all(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in linears)
    assert agreement(trained_mlp, quantized, data[1].images) >= 0.97
    float_size = lw.save_state_dict(trained_mlp, tmp_path / "f.pt")
    int8_size = lw.save_state_dict(quantized, tmp_path / "q.pt")
    # 101,632 weights: 4 bytes each in float32, 1 byte in int8 (plus biases and file overhead)
    assert float_size > 4 * 101_632 and int8_size < 0.35 * float_size


def test_static_int8_converts_every_conv_and_agrees_with_float(trained_dws, data):
    quantized = lw.quantize_static_int8(trained_dws, data[0].images[:200])
    convs = [m for m in quantized.modules() if "Conv" in type(m).__name__]
    assert convs and all(type(m).__module__.startswith("torch.ao.nn.intrinsic.quantized")
                         or type(m).__module__.startswith("torch.ao.nn.quantized") for m in convs)
    assert agreement(trained_dws, quantized, data[1].images) >= 0.9


def test_static_int8_rejects_bad_inputs(trained_dws):
    with pytest.raises(ValueError, match="backend"):
        lw.quantize_static_int8(trained_dws, torch.rand(4, 1, 28, 28), backend="tpu")
    with pytest.raises(ValueError, match="calibration_images"):
        lw.quantize_static_int8(trained_dws, torch.rand(4, 28, 28))


# ------------------------------------------------------------------ pruning
def all_weights(model):
    return torch.cat([m.weight.detach().flatten() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))])


@pytest.mark.parametrize("sparsity", [0.5, 0.9])
def test_global_magnitude_pruning_zeros_the_smallest_weights(trained_dws, sparsity):
    original = all_weights(trained_dws)
    pruned = lw.prune_global_magnitude(copy.deepcopy(trained_dws), sparsity)
    after = all_weights(pruned)
    zeros = after == 0
    assert int(zeros.sum()) == round(sparsity * original.numel())
    assert original[zeros].abs().max() <= original[~zeros].abs().min()  # global magnitude order
    assert lw.weight_sparsity(pruned) == pytest.approx(sparsity, abs=1 / original.numel())


def test_fine_tuning_keeps_pruned_weights_at_zero_and_finalize_removes_the_masks(trained_dws, data):
    model = lw.prune_global_magnitude(copy.deepcopy(trained_dws), 0.7)
    mask = all_weights(model) == 0
    fit(model, data[0].subset(range(200)), epochs=1, batch_size=100, lr=1e-2, device="cpu", progress="off")
    assert bool((all_weights(model)[mask] == 0).all())
    lw.finalize_pruning(model)
    assert not any(name.endswith(("_orig", "_mask")) for name, _ in model.named_parameters())
    assert not any(name.endswith("_mask") for name, _ in model.named_buffers())
    assert lw.weight_sparsity(model) == pytest.approx(0.7, abs=1e-3)
    with torch.no_grad():
        assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_sparsity_does_not_shrink_the_dense_file_but_shrinks_the_gzip(trained_mlp, tmp_path):
    dense = lw.save_state_dict(trained_mlp, tmp_path / "dense.pt")
    pruned = lw.finalize_pruning(lw.prune_global_magnitude(copy.deepcopy(trained_mlp), 0.9))
    sparse = lw.save_state_dict(pruned, tmp_path / "sparse.pt")
    assert abs(sparse - dense) < 0.01 * dense
    assert lw.gzip_bytes(tmp_path / "sparse.pt") < 0.5 * lw.gzip_bytes(tmp_path / "dense.pt")


def test_pruning_rejects_a_sparsity_outside_0_1(trained_mlp):
    with pytest.raises(ValueError, match="sparsity"):
        lw.prune_global_magnitude(copy.deepcopy(trained_mlp), 1.5)


# ------------------------------------------------------------------ export
def test_torch_export_round_trip_gives_the_same_outputs_at_any_batch_size(trained_dws, tmp_path):
    path = lw.export_model(copy.deepcopy(trained_dws), tmp_path / "student.pt2", torch.rand(4, 1, 28, 28))
    loaded = lw.load_exported(path)
    for batch in (1, 37):
        x = torch.rand(batch, 1, 28, 28)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), trained_dws(x), rtol=1e-5, atol=1e-5)
    check = lw.compare_outputs(trained_dws, loaded, torch.rand(30, 1, 28, 28), batch_size=16)
    assert check["same_prediction"] == 1.0 and check["max_abs_diff"] < 1e-5


def test_torchscript_round_trip_of_an_int8_model(trained_dws, data, tmp_path):
    quantized = lw.quantize_static_int8(trained_dws, data[0].images[:200])
    loaded = lw.load_torchscript(lw.export_torchscript(quantized, tmp_path / "int8.ts", torch.rand(4, 1, 28, 28)))
    with lw.quiet_quantization_warnings():
        check = lw.compare_outputs(quantized, loaded, data[1].images[:100])
    assert check == {"max_abs_diff": 0.0, "same_prediction": 1.0}


def test_compare_outputs_detects_a_different_model():
    a, b = build_model("mlp-tiny", seed=0), build_model("mlp-tiny", seed=1)
    assert lw.compare_outputs(a, b, torch.rand(50, 1, 28, 28))["max_abs_diff"] > 1e-3


# ------------------------------------------------------------------ size, latency, table
def test_size_helpers_match_the_file_system(trained_mlp, tmp_path):
    size = lw.save_state_dict(trained_mlp, tmp_path / "m.pt")
    assert size == os.path.getsize(tmp_path / "m.pt")
    import gzip
    assert lw.gzip_bytes(tmp_path / "m.pt") == len(gzip.compress((tmp_path / "m.pt").read_bytes(), 9, mtime=0))


class Sleeper(nn.Module):
    """Sleeps ``slow`` seconds on its first ``slow_calls`` calls, ``fast`` seconds after."""

    def __init__(self, slow_calls, slow=0.3, fast=0.02):
        super().__init__()
        self.calls, self.slow_calls, self.slow, self.fast = 0, slow_calls, slow, fast

    def forward(self, x):
        self.calls += 1
        time.sleep(self.slow if self.calls <= self.slow_calls else self.fast)
        return x


def test_latency_is_the_median_of_timed_runs_after_warmup():
    module = Sleeper(slow_calls=2)
    result = lw.measure_latency(module, 4, repeats=5, warmup=2)
    assert module.calls == 7
    assert 19 <= result["median_ms"] < 150  # the 300 ms warm-up calls are excluded
    assert result["q1_ms"] <= result["median_ms"] <= result["q3_ms"]
    assert lw.measure_latency(Sleeper(slow_calls=2), 4, repeats=5, warmup=0)["median_ms"] < 150  # median ignores 2 of 5


@pytest.mark.parametrize("kwargs, message", [({"repeats": 0}, "repeats"), ({"warmup": -1}, "warmup")])
def test_latency_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        lw.measure_latency(nn.Identity(), 1, **kwargs)


class Recorder(nn.Module):
    def __init__(self, name, log, seconds):
        super().__init__()
        self.name, self.log, self.seconds = name, log, seconds

    def forward(self, x):
        self.log.append(self.name)
        time.sleep(self.seconds)
        return x


def test_latencies_are_measured_round_robin_after_each_models_warmup():
    log = []
    models = {"a": Recorder("a", log, 0.005), "b": Recorder("b", log, 0.03)}
    result = lw.measure_latencies(models, 2, repeats=3, warmup=1)
    assert log == ["a", "b"] + ["a", "b"] * 3
    assert 4 <= result["a"]["median_ms"] < result["b"]["median_ms"] and result["b"]["median_ms"] >= 29
    assert result["a"]["repeats"] == 3 and result["a"]["batch_size"] == 2


def test_profile_variant_row_reports_what_was_written(trained_mlp, data, tmp_path):
    quantized = lw.quantize_dynamic_int8(trained_mlp)
    row = lw.profile_variant("q (int8)", quantized, data[1], float_model=trained_mlp, save_dir=tmp_path)
    assert row["size_bytes"] == os.path.getsize(tmp_path / "q_int8.pt")
    assert row["gzip_bytes"] == lw.gzip_bytes(tmp_path / "q_int8.pt")
    assert row["params"] == count_params(trained_mlp) == 784 * 128 + 128 + 128 * 10 + 10
    assert row["macs"] == 784 * 128 + 128 * 10
    with torch.no_grad(), lw.quiet_quantization_warnings():
        expected = float((quantized(data[1].images).argmax(-1) == data[1].labels).float().mean())
    assert row["accuracy"] == pytest.approx(expected)
    assert lw.profile_variant("given", trained_mlp, data[1], float_model=trained_mlp, save_dir=tmp_path,
                              accuracy=0.5)["accuracy"] == 0.5


def test_pareto_front_on_a_hand_worked_example():
    latency = [1.0, 2.0, 3.0, 2.5, 0.5, 1.0]
    accuracy = [0.80, 0.90, 0.95, 0.85, 0.60, 0.80]
    # (2.5, 0.85) is beaten by (2.0, 0.90); the duplicate (1.0, 0.80) points beat nothing else, keep both
    assert lw.pareto_front(latency, accuracy) == [0, 1, 2, 4, 5]
    with pytest.raises(ValueError, match="same length"):
        lw.pareto_front([1.0], [])


def test_pareto_leads_are_the_accuracy_over_the_best_faster_point():
    latency = [1.0, 2.0, 3.0, 2.5, 0.5]
    accuracy = [0.80, 0.90, 0.95, 0.85, 0.60]
    leads = lw.pareto_leads(latency, accuracy)
    assert list(leads) == lw.pareto_front(latency, accuracy) == [0, 1, 2, 4]
    assert leads[4] is None  # the fastest has nothing faster to beat
    assert leads[0] == pytest.approx(0.20) and leads[1] == pytest.approx(0.10) and leads[2] == pytest.approx(0.05)


def test_exported_file_does_not_carry_the_tensor_the_example_was_sliced_from(trained_dws, tmp_path):
    dataset_images = torch.rand(2000, 1, 28, 28)  # 6.3 MB of float32
    path = lw.export_model(copy.deepcopy(trained_dws), tmp_path / "s.pt2", dataset_images[:4])
    assert os.path.getsize(path) < 1_000_000
