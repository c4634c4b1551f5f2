"""Bad inputs of the second hardening round (issue 22): each is either handled as a user expects
(labels of any integer dtype, numpy integers) or refused before any work, with a message naming
the parameter, the value and what is allowed. One test per class of defect, with variants."""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import distill_lib as dl
from distill_lib.core import cache
from distill_lib.core.checkpoints import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from distill_lib.core.data import Dataset
from distill_lib.core.device import resolve_device
from distill_lib.core.evaluate import metrics_from_logits
from distill_lib.methods import dkd_loss, kd_loss

FAST = dict(epochs=1, batch_size=16, device="cpu", progress="off")
INTEGER_DTYPES = [torch.int8, torch.int16, torch.int32, torch.uint8]


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_LIB_CACHE", str(tmp_path / "cache"))
    cache.clear_cache()


def data(labels=None, n=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10 if labels is None else labels
    return Dataset("d", "train", torch.rand(len(labels), 1, 28, 28, generator=generator), labels,
                   [str(i) for i in range(10)])


def refused(call, *words, error=ValueError):
    with pytest.raises(error) as raised:
        call()
    for word in words:
        assert word in str(raised.value), f"{word!r} not in: {raised.value}"
    return str(raised.value)


def logits(n=8, classes=10, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(n, classes, generator=generator), 3 * torch.randn(n, classes, generator=generator)


# ---------------------------------------------------------------- labels of any integer dtype

@pytest.mark.parametrize("dtype", INTEGER_DTYPES)
def test_losses_take_labels_of_every_integer_dtype_as_int64(dtype):
    s, t = logits()
    y = torch.arange(8) % 10
    assert torch.equal(kd_loss(s, t, y.to(dtype), temperature=4.0, alpha=0.5),
                       kd_loss(s, t, y, temperature=4.0, alpha=0.5))
    assert torch.equal(dkd_loss(s, t, y.to(dtype), temperature=4.0), dkd_loss(s, t, y, temperature=4.0))


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.int32])
def test_training_and_scoring_take_labels_of_every_integer_dtype(dtype):
    """fit, eval_set, distill(loss="dkd") and evaluate give exactly what int64 labels give."""
    runs = {}
    for kind in (torch.int64, dtype):
        labels = (torch.arange(32) % 10).to(kind)
        train, test = data(labels), data(labels, seed=1)
        assert train.labels.dtype == torch.int64  # a Dataset converts them when built
        fitted = dl.fit(dl.build_model("mlp-tiny", seed=0), train, eval_set=test, **FAST)
        distilled = dl.distill(dl.build_model("mlp-tiny", seed=0), dl.build_model("mlp-small", seed=1), train,
                               loss="dkd", eval_set=test, **FAST)
        runs[kind] = (fitted.train_loss, fitted.final, distilled.train_loss, distilled.final)
    assert runs[dtype] == runs[torch.int64]
    s, _ = logits(32)
    labels = torch.arange(32) % 10
    assert metrics_from_logits(s, labels.to(dtype)) == metrics_from_logits(s, labels)


def test_labels_changed_to_another_dtype_after_the_dataset_was_built_are_refused_clearly():
    train = data()
    train.labels = train.labels.int()
    refused(lambda: dl.fit(dl.build_model("mlp-tiny"), train, **FAST), "train_set.labels", "int64", "torch.int32",
            ".long()")


# ---------------------------------------------------------------- numbers: numpy integers, 64-bit bounds

def test_numpy_integers_train_like_python_integers():
    numpy_run = dl.fit(dl.build_model("mlp-tiny", seed=0), data(), epochs=np.int64(2), batch_size=np.int32(16),
                       seed=np.int64(3), device="cpu", progress="off")
    python_run = dl.fit(dl.build_model("mlp-tiny", seed=0), data(), epochs=2, batch_size=16, seed=3, device="cpu",
                        progress="off")
    assert numpy_run.train_loss == python_run.train_loss
    assert dl.distill(dl.build_model("mlp-tiny"), dl.build_model("mlp-small"), data(), epochs=np.int64(1),
                      batch_size=16, device="cpu", progress="off").train_loss


@pytest.mark.parametrize("call, name", [
    (lambda value: dl.fit(dl.build_model("mlp-tiny"), data(), seed=value, **FAST), "seed"),
    (lambda value: dl.fit(dl.build_model("mlp-tiny"), data(), **{**FAST, "epochs": value}), "epochs"),
    (lambda value: dl.build_model("mlp-tiny", seed=value), "seed"),
    (lambda value: dl.get_teacher("quick", seed=value), "seed"),
])
@pytest.mark.parametrize("value", [2 ** 64, 2 ** 63])
def test_integers_beyond_64_bits_are_refused_before_work(call, name, value):
    refused(lambda: call(value), f"{name} must be an integer >= ", str(value), "2**63 - 1")


def test_the_runner_refuses_a_seed_beyond_64_bits_before_starting_a_kernel(tmp_path, capsys):
    from distill_lib.batch.cli import main

    code = main(["run", "00", "-p", "seed", str(2 ** 64), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "seed must be an integer >= 0" in err and str(2 ** 64) in err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- models that return several things

class Pair(torch.nn.Module):
    """A model whose forward returns (logits, features) or a dict, as many codebases' models do."""

    def __init__(self, kind):
        super().__init__()
        self.inner, self.kind = dl.build_model("mlp-tiny"), kind

    def forward(self, x):
        out = self.inner(x)
        return (out, x) if self.kind == "tuple" else {"logits": out}


@pytest.mark.parametrize("kind", ["tuple", "dict"])
def test_models_returning_a_tuple_or_dict_are_refused_naming_the_model(kind):
    shown = "tuple" if kind == "tuple" else "dict"
    refused(lambda: dl.fit(Pair(kind), data(), **FAST), "student must return one tensor of logits", shown)
    refused(lambda: dl.distill(dl.build_model("mlp-tiny"), Pair(kind), data(), **FAST),
            "teacher must return one tensor of logits", shown)
    refused(lambda: dl.evaluate(Pair(kind), data()), "must return one tensor of logits", shown)


@pytest.mark.parametrize("convert, dtype", [(lambda m: m.double(), "torch.float64"),
                                            (lambda m: m.to(torch.bfloat16), "torch.bfloat16")])
def test_a_student_of_another_dtype_is_refused_naming_its_dtype(convert, dtype):
    refused(lambda: dl.fit(convert(dl.build_model("mlp-tiny")), data(), **FAST), "student", "float32", dtype,
            "student.float()")
    refused(lambda: dl.distill(dl.build_model("mlp-tiny"), convert(dl.build_model("mlp-small")), data(), **FAST),
            "teacher", dtype, "teacher.float()")


def test_a_student_on_the_meta_device_is_refused():
    with torch.device("meta"):
        student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    refused(lambda: dl.fit(student, data(), **FAST), "student", "'meta' device")


# ---------------------------------------------------------------- devices that do not exist here

@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", 0, "mps", "cuda:7", torch.device("cuda")])
def test_a_device_this_machine_lacks_is_refused_before_work_naming_the_devices_there(device):
    words = ["not available on this machine", "'cpu'", repr(device)]
    refused(lambda: resolve_device(device), *words)
    model = dl.build_model("mlp-tiny")
    model.register_forward_pre_hook(lambda *_: pytest.fail("a forward pass ran before the refusal"))
    refused(lambda: dl.fit(model, data(), epochs=1, batch_size=16, progress="off", device=device), *words)
    refused(lambda: dl.get_teacher("quick", device=device), *words)
    refused(lambda: dl.evaluate(dl.build_model("mlp-tiny"), data(), device=device), *words)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("command", [["demo", "--epochs", "1", "--device", "cuda"],
                                     ["train-teacher", "--out", "{tmp}/t.pt", "--device", "cuda"],
                                     ["run", "00", "-p", "device", "cuda", "--out", "{tmp}/out"]])
def test_the_command_line_refuses_a_missing_device_with_exit_code_2(command, tmp_path, capsys):
    from distill_lib.batch.cli import main

    code = main([part.replace("{tmp}", str(tmp_path)) for part in command])
    err = capsys.readouterr().err
    assert code == 2 and "device 'cuda' is not available on this machine" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_true_is_no_device():
    refused(lambda: resolve_device(True), "device must be", "True")


# ---------------------------------------------------------------- switches that must be True or False

@pytest.mark.parametrize("value", ["no", "False", 0, 1, None])
def test_download_must_be_a_real_boolean(value, tmp_path, monkeypatch):
    import distill_lib.core.data as data_module

    monkeypatch.setattr(data_module, "REPO_DATA_DIR", tmp_path)
    refused(lambda: dl.load_dataset("mnist", download=value), "download must be True or False", repr(value))
    assert list(tmp_path.iterdir()) == []  # nothing created, no download tried


def test_root_must_be_a_path():
    refused(lambda: dl.load_dataset("mnist", root=3), "root must be None or a folder path", "int")


# ---------------------------------------------------------------- kd_loss / dkd_loss inputs

def test_an_empty_batch_is_refused_not_nan():
    s, t = logits()
    empty = torch.zeros(0, dtype=torch.long)
    refused(lambda: kd_loss(s[:0], t[:0], empty, temperature=4.0, alpha=0.5), "student_logits", "no rows", "(0, 10)")
    refused(lambda: kd_loss(s[:0], t[:0], None, temperature=4.0, alpha=1.0), "no rows")
    refused(lambda: dkd_loss(s[:0], t[:0], empty, temperature=4.0), "no rows")


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_integer_logits_are_refused_naming_the_dtype(dtype):
    s, t = logits()
    y = torch.arange(8) % 10
    refused(lambda: kd_loss(s.to(dtype), t, y, temperature=4.0, alpha=0.5), "student_logits", "floating-point",
            str(dtype))
    refused(lambda: dkd_loss(s, t.to(dtype), y, temperature=4.0), "teacher_logits", str(dtype))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_logits_are_refused_naming_the_side(bad):
    s, t = logits()
    t[2, 3] = bad
    message = refused(lambda: kd_loss(s, t, None, temperature=4.0, alpha=1.0), "teacher_logits", "non-finite")
    assert "lr" not in message


def test_dkd_without_labels_says_it_needs_labels_and_no_alpha():
    s, t = logits()
    message = refused(lambda: dkd_loss(s, t, None, temperature=4.0), "dkd_loss needs labels", "labels=None")
    assert "alpha" not in message.split("Use")[0]


def test_a_teacher_that_outputs_nan_is_named_not_the_learning_rate():
    teacher = dl.build_model("mlp-small")
    with torch.no_grad():
        next(teacher.parameters()).fill_(float("nan"))
    message = refused(lambda: dl.distill(dl.build_model("mlp-tiny"), teacher, data(), **FAST), "teacher",
                      "non-finite", "broken")
    assert "lr" not in message
    with pytest.raises(dl.TrainingDiverged) as diverged:  # online (augmented) teacher: the same diagnosis
        dl.distill(dl.build_model("mlp-tiny"), teacher, data(), augment=dl.Augment(), cache_logits=False, **FAST)
    assert "teacher's logits" in str(diverged.value) and "Try a lower lr" not in str(diverged.value)


def test_a_huge_temperature_trains_without_nan():
    history = dl.distill(dl.build_model("mlp-tiny"), dl.build_model("mlp-small"), data(), temperature=1e300, **FAST)
    assert all(np.isfinite(history.train_loss))


# ---------------------------------------------------------------- checkpoints that declare more than they hold

def forged(tmp_path, shape, name="weights.evil"):
    """A valid checkpoint plus one tensor of ``shape`` stored in 4 bytes (zero strides); digests match."""
    from distill_lib.core import checkpoints

    path = tmp_path / "teacher.pt"
    save_checkpoint(dl.build_model("mlp-tiny"), path)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"][name] = torch.zeros(1).expand(*shape)
    meta = payload["metadata"]
    # a digest over the huge tensor would allocate it: forge one over its would-be bytes instead
    meta["weights_sha256"] = "0" * 64
    payload["sha256"] = checkpoints.checkpoint_sha256(meta["weights_sha256"], meta)
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("shape", [(2 ** 30, 1024), (2 ** 21, 1024), (2 ** 18, 1024), (1024, 1024)])
def test_a_checkpoint_declaring_more_bytes_than_it_holds_is_refused_before_allocating(tmp_path, shape):
    path = forged(tmp_path, shape)
    assert os.path.getsize(path) < 200 * 1024  # a small file (the mlp-tiny weights and 4 bytes)
    message = refused(lambda: load_checkpoint(path), str(shape), "bytes", error=CheckpointError)
    assert "refused before allocating" in message
    refused(lambda: read_checkpoint(path), "declares shape", error=CheckpointError)


def test_get_teacher_ignores_such_a_checkpoint_instead_of_crashing(tmp_path, monkeypatch, capsys):
    from distill_lib import teachers

    path = forged(tmp_path, (2 ** 30, 1024))  # 4 TiB: no machine allocates it
    monkeypatch.setattr(teachers, "train_teacher", lambda *a, **k: pytest.fail("no training in this test"))
    assert teachers._try_load(path, {}) is None
    out = capsys.readouterr().out
    assert "ignoring teacher checkpoint" in out and "refused before allocating" in out


def test_a_cached_teacher_output_declaring_gigabytes_is_recomputed_not_allocated(tmp_path, monkeypatch):
    teacher, train = dl.build_model("mlp-small"), data()
    first = cache.teacher_outputs(teacher, train).logits
    [stored] = (tmp_path / "cache" / "teacher-outputs").glob("*.pt")
    payload = torch.load(stored, weights_only=True)
    payload["logits"] = torch.zeros(1).expand(len(train), 2 ** 26)  # 8 GiB declared in 4 bytes
    torch.save(payload, stored)
    cache.clear_cache()
    digested, digest = [], cache._tensor_sha256  # the digest is what would copy (allocate) it
    monkeypatch.setattr(cache, "_tensor_sha256", lambda tensor: digested.append(tensor.numel()) or digest(tensor))
    assert torch.equal(cache.teacher_outputs(teacher, train).logits, first)
    assert cache.cache_info()["misses"] == 1  # recomputed, not trusted
    assert max(digested) == first.numel()  # only the recomputed logits were digested


def test_a_teacher_outputs_cache_path_that_is_a_file_is_named_clearly(tmp_path, capsys):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "teacher-outputs").write_text("a file")
    cache.teacher_outputs(dl.build_model("mlp-small"), data()).logits
    out = capsys.readouterr().out
    assert "teacher-outputs is a regular file, not a directory" in out and "Errno" not in out


# ---------------------------------------------------------------- more of the same classes

@pytest.mark.parametrize("value", ["no", "False", 1, None])
def test_every_switch_must_be_a_real_boolean(value, tmp_path):
    refused(lambda: dl.Augment(flip=value), "flip must be True or False", repr(value))
    (tmp_path / "cache" / "teacher-outputs").mkdir(parents=True)
    kept = tmp_path / "cache" / "teacher-outputs" / "kept.pt"
    kept.write_bytes(b"x")
    refused(lambda: cache.clear_cache(disk=value), "disk must be True or False")
    assert kept.exists()  # clear_cache(disk="no") deletes nothing
    refused(lambda: cache.teacher_outputs(dl.build_model("mlp-small"), data(), persist=value), "persist")


def test_numpy_integers_everywhere_a_seed_or_count_is_taken():
    train = data(n=60)
    assert torch.equal(train.stratified(np.int64(3), seed=np.int64(1)).labels, train.stratified(3, seed=1).labels)
    from distill_lib.teachers import cached_teacher_path
    assert cached_teacher_path("quick", np.int64(4)) == cached_teacher_path("quick", 4)
    loss = lambda s, t, y, T, a: (1 - a) * F.cross_entropy(s, y) + a * T ** 2 * F.kl_div(
        F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), reduction="batchmean", log_target=True)
    assert dl.audit_kd_loss(loss, num_classes=np.int64(10), batch_size=np.int32(16), seed=np.int64(2)).ok


def test_the_demo_checks_its_seed_before_fetching_a_teacher(monkeypatch):
    from distill_lib import demo

    monkeypatch.setattr(demo, "get_teacher", lambda *a, **k: pytest.fail("the teacher was fetched first"))
    refused(lambda: demo.run_demo(seed=-1, epochs=1), "seed must be an integer >= 0")
    refused(lambda: demo.run_demo(seed=2 ** 64, epochs=1), "2**63 - 1")
