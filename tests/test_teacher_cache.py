"""The teacher-output cache never answers with stale or forged logits.

Every answer is compared with a fresh forward pass (``predict``, which shares no state with
the cache): after in-place edits of the teacher's weights or of the images, for two teachers that
share a state dict but not a forward pass, and after the disk entry was damaged or forged.
"""
import os

import pytest
import torch
from torch import nn

import distill_lib as dl
from distill_lib.core import cache
from distill_lib.core.evaluate import predict


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_LIB_CACHE", str(tmp_path / "cache"))
    cache.clear_cache()
    yield
    cache.clear_cache()


@pytest.fixture
def teacher():
    return dl.build_model("mlp-tiny", seed=5).eval()


def fresh(teacher, dataset):
    return predict(teacher, dataset.images).logits


def _scale_in_no_grad(model):
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2)


def _scale_through_data(model):
    for p in model.parameters():
        p.data.mul_(2)


def _scale_through_state_dict(model):
    for tensor in model.state_dict().values():  # state_dict tensors share the parameters' storage
        tensor.mul_(2)


def _scale_through_numpy(model):
    model.head.weight.detach().numpy()[:] *= 2


@pytest.mark.parametrize("edit", [_scale_in_no_grad, _scale_through_data, _scale_through_state_dict,
                                  _scale_through_numpy], ids=["no_grad", "data", "state_dict", "numpy"])
def test_in_place_weight_edits_give_new_logits(tiny_dataset, teacher, edit):
    before = cache.teacher_outputs(teacher, tiny_dataset).logits.clone()
    edit(teacher)
    after = cache.teacher_outputs(teacher, tiny_dataset).logits
    assert not torch.equal(after, before)
    assert torch.equal(after, fresh(teacher, tiny_dataset))
    assert cache.cache_info()["misses"] == 2


def test_in_place_image_edit_through_a_numpy_view_gives_new_logits(tiny_dataset, teacher):
    before = cache.teacher_outputs(teacher, tiny_dataset).logits.clone()
    tiny_dataset.images.numpy()[0] = 0
    after = cache.teacher_outputs(teacher, tiny_dataset).logits
    assert not torch.equal(after[0], before[0]) and torch.equal(after[1:], before[1:])
    assert torch.equal(after, fresh(teacher, tiny_dataset))


def test_replacing_the_images_gives_new_logits(tiny_dataset, teacher):
    before = cache.teacher_outputs(teacher, tiny_dataset).logits.clone()
    tiny_dataset.images = tiny_dataset.images.flip(-1)
    assert torch.equal(cache.teacher_outputs(teacher, tiny_dataset).logits, fresh(teacher, tiny_dataset))
    assert not torch.equal(cache.teacher_outputs(teacher, tiny_dataset).logits, before)


def test_teachers_with_the_same_state_dict_but_another_forward_pass_are_not_confused(tiny_dataset):
    """A state dict holds no activation functions: the key must also cover the module itself."""
    torch.manual_seed(0)
    relu = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.ReLU())
    tanh = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.Tanh())
    tanh.load_state_dict(relu.state_dict())
    assert torch.equal(cache.teacher_outputs(relu, tiny_dataset).logits, fresh(relu, tiny_dataset))
    assert torch.equal(cache.teacher_outputs(tanh, tiny_dataset).logits, fresh(tanh, tiny_dataset))
    cache.clear_cache()  # and from disk, in a "new process"
    assert torch.equal(cache.teacher_outputs(tanh, tiny_dataset).logits, fresh(tanh, tiny_dataset))


# --------------------------------------------------------------------------- the disk
def _only_entry():
    files = list((cache.cache_dir() / "teacher-outputs").glob("*.pt"))
    assert len(files) == 1, files
    return files[0]


def _truncate(path):
    path.write_bytes(path.read_bytes()[:100])


def _edit(change):
    def edit(path):
        payload = torch.load(path, weights_only=True)
        change(payload)
        torch.save(payload, path)
    return edit


def _forge_logits_keep_digest(payload):
    payload["logits"] = payload["logits"] + 1.0


def _forge_logits_and_digest(payload):  # a valid-looking entry, but for another key
    payload["logits"] = torch.zeros_like(payload["logits"])
    payload["sha256"] = cache._tensor_sha256(payload["logits"])
    payload["key"] = ["0" * 64, payload["key"][1], payload["key"][2]]


def _forge_logits_with_a_valid_digest(payload):  # right key, digest recomputed: only the spot check sees it
    payload["logits"] = torch.zeros_like(payload["logits"])
    payload["sha256"] = cache._tensor_sha256(payload["logits"])


def _wrong_width(payload):
    payload["logits"] = torch.zeros(len(payload["logits"]), 3)
    payload["sha256"] = cache._tensor_sha256(payload["logits"])


def _not_a_dict(path):
    torch.save([1, 2, 3], path)


def _a_directory(path):
    path.unlink()
    path.mkdir()


def _a_fifo(path):
    path.unlink()
    os.mkfifo(path)


@pytest.mark.parametrize("damage", [
    _truncate, _edit(_forge_logits_keep_digest), _edit(_forge_logits_and_digest),
    _edit(_forge_logits_with_a_valid_digest), _edit(_wrong_width),
    _edit(lambda p: p.pop("sha256")), _edit(lambda p: p.update(format="other")), _not_a_dict,
    _a_directory, _a_fifo,
], ids=["truncated", "wrong-digest", "wrong-key", "forged-valid-digest", "wrong-width", "no-digest", "foreign",
        "not-a-dict", "directory", "fifo"])
def test_a_damaged_or_forged_disk_entry_is_recomputed(tiny_dataset, teacher, damage):
    expected = fresh(teacher, tiny_dataset)
    cache.teacher_outputs(teacher, tiny_dataset).logits
    damage(_only_entry())
    cache.clear_cache()  # memory only: the next call must go to the disk
    assert torch.equal(cache.teacher_outputs(teacher, tiny_dataset).logits, expected)
    assert cache.cache_info()["disk_hits"] == 0 and cache.cache_info()["misses"] == 1


def test_a_sound_disk_entry_is_used(tiny_dataset, teacher):
    expected = cache.teacher_outputs(teacher, tiny_dataset).logits.clone()
    cache.clear_cache()
    assert torch.equal(cache.teacher_outputs(teacher, tiny_dataset).logits, expected)
    assert cache.cache_info()["disk_hits"] == 1 and cache.cache_info()["misses"] == 0


# ---------------------------------------------------------------- subsets served from their parent
def test_a_subset_is_served_from_its_parents_outputs_without_a_teacher_pass(tiny_dataset, teacher):
    cache.teacher_outputs(teacher, tiny_dataset).logits
    rows = torch.tensor([59, 3, 3, 17, 0])  # another order, a repeat
    part = tiny_dataset.subset(rows).subset([4, 1, 2])  # a subset of a subset: rows 0, 3, 3
    assert torch.allclose(cache.teacher_outputs(teacher, part).logits, fresh(teacher, part), rtol=0, atol=1e-6)
    assert cache.cache_info()["misses"] == 1


def test_a_relabelled_copy_shares_the_entry(tiny_dataset, teacher):
    cache.teacher_outputs(teacher, tiny_dataset).logits
    unlabelled = dl.Dataset("tiny", "train", tiny_dataset.images, torch.full((60,), -1), tiny_dataset.classes)
    assert torch.equal(cache.teacher_outputs(teacher, unlabelled).logits, fresh(teacher, tiny_dataset))
    assert cache.cache_info()["misses"] == 1


@pytest.mark.parametrize("edited", ["subset", "parent"])
def test_an_image_edited_after_the_cut_is_not_served_from_the_parent(tiny_dataset, teacher, edited):
    part = tiny_dataset.subset(range(10, 20))
    cache.teacher_outputs(teacher, tiny_dataset).logits
    (part if edited == "subset" else tiny_dataset).images[12 if edited == "parent" else 2] = 0.5
    if edited == "parent":
        cache.teacher_outputs(teacher, tiny_dataset).logits  # the edited parent is cached under its new key
    assert torch.equal(cache.teacher_outputs(teacher, part).logits, fresh(teacher, part))
    assert cache.cache_info()["misses"] == (3 if edited == "parent" else 2)
