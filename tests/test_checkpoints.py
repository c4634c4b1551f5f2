"""Checkpoint round trip, and refusal of tampered, truncated, foreign and malicious files."""
import os
import pickle
import stat

import pytest
import torch

from distill_lib.core.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from distill_lib.core.models import build_model


def test_round_trip_restores_weights_and_metadata(tmp_path):
    model = build_model("cnn-small", seed=1)
    path = save_checkpoint(model, tmp_path / "m.pt", dataset="fashion-mnist", test_accuracy=0.9)
    rebuilt, meta = load_checkpoint(path)  # architecture rebuilt from the metadata
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), rebuilt.state_dict().values()))
    assert meta["dataset"] == "fashion-mnist" and meta["test_accuracy"] == 0.9
    assert meta["architecture"]["name"] == "cnn-small" and len(meta["weights_sha256"]) == 64
    into = build_model("cnn-small", seed=2)
    load_checkpoint(path, into)
    assert torch.equal(into.head[-1].weight, model.head[-1].weight)


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    save_checkpoint(build_model("mlp-tiny"), tmp_path / "m.pt")
    save_checkpoint(build_model("mlp-tiny"), tmp_path / "m.pt")  # overwrite through rename
    assert os.listdir(tmp_path) == ["m.pt"]


def test_wrong_architecture_is_refused(tmp_path):
    path = save_checkpoint(build_model("mlp-small"), tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="holds a 'mlp-small' model"):
        load_checkpoint(path, build_model("mlp-tiny"))


def test_tampered_weights_are_refused(tmp_path):
    path = save_checkpoint(build_model("mlp-tiny", seed=0), tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["head.weight"][0, 0] += 1.0
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="do not match their recorded sha256"):
        load_checkpoint(path)


def test_truncated_file_is_refused(tmp_path):
    path = save_checkpoint(build_model("mlp-tiny"), tmp_path / "m.pt")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable distill_lib checkpoint"):
        load_checkpoint(path)


def test_foreign_files_are_refused(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save(build_model("mlp-tiny").state_dict(), plain)  # a bare state dict, not ours
    with pytest.raises(CheckpointError, match="no 'distill_lib.checkpoint' format marker"):
        load_checkpoint(plain)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(text)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "absent.pt")


class Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    Exploit.marker = marker
    path = tmp_path / "evil.pt"
    torch.save({"format": "distill_lib.checkpoint", "state_dict": {}, "metadata": {}, "x": Exploit()}, path,
               pickle_module=pickle)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not marker.exists()


def test_checkpoint_gets_the_permissions_of_an_ordinary_file(tmp_path):
    """Not the 0600 of a private temp file: 0666 less the umask, as open() would give."""
    old = os.umask(0o027)
    try:
        path = save_checkpoint(build_model("mlp-tiny"), tmp_path / "m.pt")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
