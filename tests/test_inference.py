"""The inference batch is a matter of speed only: ``predict`` (and through it the teacher-output
cache) gives a float model's logits and features at any batch size, and a model whose outputs
depend on the batch (dynamic int8 quantization) keeps a fixed batch."""
import pytest
import torch

import distill_lib as dl
from distill_lib.core.evaluate import BATCH_DEPENDENT_BATCH, INFERENCE_BATCH, inference_batch, predict


@pytest.mark.parametrize("preset", ["cnn-teacher", "cnn-dws", "mlp-hinton"])
def test_logits_and_features_do_not_depend_on_the_batch_size(preset):
    images = torch.rand(300, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    model = dl.build_model(preset, seed=0)
    stage = list(model.stages)[-1]
    whole = predict(model, images, (stage,), batch_size=300)
    for batch_size in (1, 7, 128, 1024):
        part = predict(model, images, (stage,), batch_size=batch_size)
        # equal to the last bit on the CPUs measured; a tolerance for other kernels (oneDNN, cuDNN)
        torch.testing.assert_close(part.logits, whole.logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(part.features[stage], whole.features[stage], rtol=1e-5, atol=1e-5)


def test_the_batch_defaults_to_the_measured_one_for_the_device():
    assert inference_batch("cpu") == INFERENCE_BATCH["cpu"] and inference_batch(torch.device("cuda:1")) == 1024
    assert inference_batch("mps") == INFERENCE_BATCH["cpu"]  # unmeasured devices get the CPU's


def test_an_empty_image_set_gives_empty_outputs():
    model = dl.build_model("mlp-tiny", seed=0)
    out = predict(model, torch.empty(0, 1, 28, 28), ("fc1",))
    assert out.logits.numel() == 0 and out.features["fc1"].numel() == 0


def test_predict_leaves_the_model_in_its_mode_and_refuses_a_bad_batch():
    model = dl.build_model("mlp-tiny", seed=0).train()
    predict(model, torch.rand(4, 1, 28, 28))
    assert model.training
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        predict(model, torch.rand(4, 1, 28, 28), batch_size=0)


def test_a_dynamically_quantized_model_keeps_its_fixed_batch():
    from distill_lib.lessons.lightweight import quantize_dynamic_int8
    quantized = quantize_dynamic_int8(dl.build_model("mlp-small", seed=0))
    images = torch.rand(2000, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    fixed = predict(quantized, images, batch_size=BATCH_DEPENDENT_BATCH).logits
    assert inference_batch("cpu", quantized) == BATCH_DEPENDENT_BATCH
    assert torch.equal(predict(quantized, images).logits, fixed)
    # why: each batch's activations are scaled by its own range, so another batch gives other logits
    assert not torch.equal(predict(quantized, images, batch_size=128).logits, fixed)
