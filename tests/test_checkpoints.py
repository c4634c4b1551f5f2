"""Checkpoint round trip, and refusal of tampered, truncated, foreign and malicious files."""
import os
import pickle
import re
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


# --------------------------------------------------------------------------- format version 2
def _rewrite(path, edit):
    """Load the raw payload, let ``edit`` change it, write it back (as a forger would)."""
    payload = torch.load(path, weights_only=True)
    payload = edit(payload) or payload
    torch.save(payload, path)


def test_forged_metadata_is_refused(tmp_path):
    """The recorded digest covers the metadata too: a forged accuracy no longer loads cleanly."""
    path = save_checkpoint(build_model("mlp-tiny", seed=0), tmp_path / "m.pt", test_accuracy=0.61)
    _rewrite(path, lambda p: p["metadata"].update(test_accuracy=0.999))
    with pytest.raises(CheckpointError, match=r"m\.pt.*metadata.*recorded sha256"):
        load_checkpoint(path)
    _rewrite(path, lambda p: p["metadata"].update(test_accuracy=0.61, extra="added later"))
    with pytest.raises(CheckpointError, match="recorded sha256"):
        load_checkpoint(path)


def _old_format_file(path):
    """A format-version-1 file as the previous library wrote it: the digest covers the weights only."""
    from distill_lib.core.checkpoints import state_dict_sha256
    model = build_model("mlp-tiny", seed=3)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    metadata = {"architecture": model.arch, "library_version": "0.1.0", "test_accuracy": 0.5,
                "weights_sha256": state_dict_sha256(state)}
    torch.save({"format": "distill_lib.checkpoint", "format_version": 1, "state_dict": state,
                "metadata": metadata}, path)
    return state, metadata


def test_old_format_is_refused_with_the_way_to_convert_it(tmp_path):
    from distill_lib.core.checkpoints import FORMAT_VERSION, read_checkpoint, upgrade_checkpoint
    path = tmp_path / "old.pt"
    state, metadata = _old_format_file(path)
    with pytest.raises(CheckpointError, match=r"old\.pt.*format version 1.*upgrade_checkpoint"):
        load_checkpoint(path)
    assert upgrade_checkpoint(path) == path
    payload = read_checkpoint(path)
    assert payload["format_version"] == FORMAT_VERSION
    assert payload["metadata"] == metadata  # identical metadata, weights digest included
    assert payload["state_dict"].keys() == state.keys()
    assert all(torch.equal(payload["state_dict"][k], v) for k, v in state.items())
    load_checkpoint(path)
    assert upgrade_checkpoint(path) == path  # already current: left as it is


def test_upgrade_refuses_an_old_file_whose_weights_were_modified(tmp_path):
    from distill_lib.core.checkpoints import upgrade_checkpoint
    path = tmp_path / "old.pt"
    _old_format_file(path)

    def tamper(payload):
        payload["state_dict"]["head.weight"].add_(1.0)

    _rewrite(path, tamper)
    with pytest.raises(CheckpointError, match="do not match their recorded sha256"):
        upgrade_checkpoint(path)


def test_a_newer_format_version_is_refused(tmp_path):
    path = save_checkpoint(build_model("mlp-tiny"), tmp_path / "m.pt")
    _rewrite(path, lambda p: p.update(format_version=99))
    with pytest.raises(CheckpointError, match=r"m\.pt.*format version 99.*newer"):
        load_checkpoint(path)


@pytest.mark.parametrize("edit, problem", [
    (lambda p: ["a", "list"], "not a dict"),
    (lambda p: {k: v for k, v in p.items() if k != "metadata"}, "no 'metadata'"),
    (lambda p: {**p, "metadata": ["not", "a", "dict"]}, "'metadata' is a list, not a dict"),
    (lambda p: {k: v for k, v in p.items() if k != "state_dict"}, "no 'state_dict'"),
    (lambda p: {**p, "state_dict": [1, 2]}, "'state_dict' is a list, not a dict"),
    (lambda p: {**p, "state_dict": {**p["state_dict"], "head.weight": [0.0]}}, "'head.weight' is a list, not a tensor"),
    (lambda p: {k: v for k, v in p.items() if k != "sha256"}, "no 'sha256'"),
    (lambda p: {**p, "sha256": 12}, "'sha256'"),
    (lambda p: {**p, "metadata": {k: v for k, v in p["metadata"].items() if k != "weights_sha256"}},
     "weights_sha256"),
    (lambda p: {**p, "metadata": {**p["metadata"], "when": (1, 2)}}, r"metadata\['when'\] is a tuple"),
    (lambda p: {k: v for k, v in p.items() if k != "format_version"}, "format_version"),
    (lambda p: {**p, "format_version": "2"}, "format_version"),
])
def test_every_malformed_payload_is_a_checkpoint_error(tmp_path, edit, problem):
    """Not KeyError or AttributeError from deep inside: the path and what is wrong."""
    path = save_checkpoint(build_model("mlp-tiny"), tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    torch.save(edit(payload), path)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    assert str(path) in str(caught.value)
    assert re.search(problem, str(caught.value)), str(caught.value)


def test_a_format_marker_without_metadata_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "m.pt"
    torch.save({"format": "distill_lib.checkpoint", "format_version": 2, "state_dict": {}}, path)
    with pytest.raises(CheckpointError, match=r"m\.pt.*no 'metadata'"):
        load_checkpoint(path)


# --------------------------------------------------------------------------- metadata on save
def test_numpy_paths_and_tuples_in_metadata_round_trip_as_plain_values(tmp_path):
    import numpy as np
    from pathlib import Path
    path = save_checkpoint(build_model("mlp-tiny"), tmp_path / "m.pt", test_accuracy=np.float64(0.875),
                           epochs=np.int64(3), ok=np.bool_(True), curve=np.array([0.5, 0.25]),
                           loss=torch.tensor(1.5), run_dir=Path("/runs/a"), shape=(1, 28, 28),
                           nested={"where": [Path("x"), (np.float32(0.5),)]})
    _, meta = load_checkpoint(path)
    assert meta["test_accuracy"] == 0.875 and type(meta["test_accuracy"]) is float
    assert meta["epochs"] == 3 and type(meta["epochs"]) is int
    assert meta["ok"] is True and meta["curve"] == [0.5, 0.25] and meta["loss"] == 1.5
    assert meta["run_dir"] == "/runs/a" and meta["shape"] == [1, 28, 28]
    assert meta["nested"] == {"where": ["x", [0.5]]}


@pytest.mark.parametrize("metadata, problem", [
    ({"model": object()}, r"metadata\['model'\] is an object"),
    ({"steps": {1: "a"}}, r"metadata\['steps'\] has the key 1"),
    ({"tags": {"a", "b"}}, r"metadata\['tags'\] is a set"),
    ({"deep": [1, {"x": build_model}]}, r"metadata\['deep'\]\[1\]\['x'\] is a function"),
])
def test_metadata_that_cannot_be_stored_is_refused_before_writing(tmp_path, metadata, problem):
    path = tmp_path / "m.pt"
    path.write_bytes(b"the previous file")
    with pytest.raises(ValueError, match=problem):
        save_checkpoint(build_model("mlp-tiny"), path, **metadata)
    assert path.read_bytes() == b"the previous file"  # nothing written, nothing replaced
    assert os.listdir(tmp_path) == ["m.pt"]


# --------------------------------------------------------------------------- where it is written
def _special_files(tmp_path):
    """A /dev/full-like character device (needs root or CAP_MKNOD), a fifo and a directory, all in tmp_path."""
    made = {}
    try:
        os.mknod(tmp_path / "full", stat.S_IFCHR | 0o600, os.makedev(1, 7))
        made["full"] = stat.S_ISCHR
    except PermissionError:
        pass
    os.mkfifo(tmp_path / "fifo")
    made["fifo"] = stat.S_ISFIFO
    (tmp_path / "folder").mkdir()
    made["folder"] = stat.S_ISDIR
    return made


def test_saving_over_a_device_fifo_or_directory_is_refused(tmp_path):
    for name, still in _special_files(tmp_path).items():
        target = tmp_path / name
        with pytest.raises(CheckpointError, match=f"{target}.*not a regular file"):
            save_checkpoint(build_model("mlp-tiny"), target)
        assert still(os.lstat(target).st_mode), f"{target} was replaced"
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_a_symlink_to_a_device_is_refused_too(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link.pt").symlink_to(tmp_path / "fifo")
    with pytest.raises(CheckpointError, match="not a regular file"):
        save_checkpoint(build_model("mlp-tiny"), tmp_path / "link.pt")
    assert stat.S_ISFIFO(os.stat(tmp_path / "link.pt").st_mode)


def test_loading_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "fifo.pt")
    with pytest.raises(CheckpointError, match=r"fifo\.pt.*not a regular file"):
        load_checkpoint(tmp_path / "fifo.pt")


def test_saving_under_a_file_names_the_path(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match=r"file.*not a directory"):
        save_checkpoint(build_model("mlp-tiny"), tmp_path / "file" / "m.pt")


def test_an_unwritable_directory_is_reported_before_writing(tmp_path, monkeypatch):
    """Root writes into a 0o500 directory, so the failure of the write probe is simulated."""
    from distill_lib.core import checkpoints

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(checkpoints.tempfile, "mkstemp", read_only)
    with pytest.raises(CheckpointError, match=r"cannot write the checkpoint .*m\.pt: its directory .* cannot be "
                                              r"written to: Read-only file system"):
        checkpoints.prepare_destination(tmp_path / "m.pt")
