import errno
import io
import json
import os
import re

import pytest
import torch
from torch import nn

from aigc_lab.checkpoint import CheckpointError, load_checkpoint, load_state_dict_checked, save_checkpoint, save_json


def test_round_trip_with_weights_only(tmp_path):
    state = {"step": 3, "model": nn.Linear(2, 3).state_dict(), "history": {"loss": [[1, 2], [0.5, 0.25]]}, "name": "x"}
    path = save_checkpoint(state, tmp_path / "sub" / "ckpt.pt")
    loaded = load_checkpoint(path)
    assert loaded["step"] == 3 and loaded["name"] == "x"
    assert torch.equal(loaded["model"]["weight"], state["model"]["weight"])
    assert not list(path.parent.glob(".*.tmp")), "the temporary file must be renamed away"


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    path = save_checkpoint({"step": 1}, tmp_path / "ckpt.pt")

    def broken_save(obj, f):
        f.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1, "an interrupted save must leave the old checkpoint intact"
    assert not list(tmp_path.glob(".*.tmp"))


class FullDisk(io.RawIOBase):
    """A file with ``room`` bytes left: the write that does not fit fails with ENOSPC, as on a full disk."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def writable(self):
        return True

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)


def _fill_the_disk(monkeypatch, room: int) -> None:
    """torch's own zip writer, over a disk with ``room`` bytes left."""
    real_save = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, f: real_save(obj, FullDisk(f, room)))


def _raise_after_some_bytes(monkeypatch, exc: BaseException) -> None:
    def save(obj, f):
        f.write(b"PK half a zip file")
        raise exc

    monkeypatch.setattr(torch, "save", save)


def _fail_fsync(monkeypatch) -> None:
    def fsync(fd):  # the data sat in the page cache; the disk filled before it could be written
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)


FULL = re.escape("the disk is full (No space left on device)")
TORCH = r"torch's writer failed \(unexpected pos \d+ vs \d+\), with [\d.]+ MiB free on its disk"


@pytest.mark.parametrize(
    "fill, reason",
    [
        (lambda mp: _raise_after_some_bytes(mp, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))), FULL),
        (lambda mp: _raise_after_some_bytes(mp, RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")), TORCH),
        # torch's writer surfaces the same full disk as the OSError or as its RuntimeError, depending on which write fails
        (lambda mp: _fill_the_disk(mp, room=5000), f"({FULL}|{TORCH})"),
        (_fail_fsync, FULL),
    ],
    ids=["oserror", "torch-runtimeerror", "torch-writer", "fsync"],
)
def test_a_full_disk_keeps_the_previous_checkpoint_and_says_so(tmp_path, monkeypatch, fill, reason):
    previous = {"step": 1, "model": nn.Linear(20, 30).state_dict()}
    path = save_checkpoint(previous, tmp_path / "ckpt.pt")
    fill(monkeypatch)
    with pytest.raises(CheckpointError) as info:
        save_checkpoint({"step": 2, "model": nn.Linear(200, 300).state_dict()}, path)
    monkeypatch.undo()
    message = str(info.value)
    assert re.fullmatch(f"could not write checkpoint {re.escape(str(path))}: {reason}; the previous checkpoint is kept", message), message
    assert "enforce fail" not in message and len(message.splitlines()) == 1
    kept = load_checkpoint(path)
    assert kept["step"] == 1 and all(torch.equal(kept["model"][k], v) for k, v in previous["model"].items())
    assert not list(tmp_path.glob(".*.tmp")), "the temporary file must be removed"


def test_a_failed_first_save_leaves_no_file(tmp_path, monkeypatch):
    _fill_the_disk(monkeypatch, room=10)
    with pytest.raises(CheckpointError, match=r"ckpt.pt: .*; no checkpoint was written$"):
        save_checkpoint({"step": 1, "model": nn.Linear(2, 3).state_dict()}, tmp_path / "ckpt.pt")
    assert list(tmp_path.iterdir()) == []


def test_save_json_is_atomic_too(tmp_path, monkeypatch):
    path = save_json({"model": "vae"}, tmp_path / "config.json")
    _fail_fsync(monkeypatch)
    with pytest.raises(CheckpointError, match=r"could not write file .*config.json: the disk is full .*; the previous file is kept"):
        save_json({"model": "ddpm"}, path)
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"model": "vae"} and not list(tmp_path.glob(".*.tmp"))


def test_missing_corrupt_and_foreign_files_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not an aigc_lab checkpoint"):
        load_checkpoint(foreign)


def test_refuses_pickled_objects(tmp_path):
    from fractions import Fraction  # any class outside weights_only's allow-list stands for malicious code

    path = tmp_path / "evil.pt"
    torch.save({"format": "aigc_lab-checkpoint-1", "obj": Fraction(1, 3)}, path)
    with pytest.raises(CheckpointError, match="corrupt or not a PyTorch file"):
        load_checkpoint(path)


def test_mismatched_state_dict_names_the_difference():
    with pytest.raises(CheckpointError, match=r"different shapes.*weight"):
        load_state_dict_checked(nn.Linear(2, 3), nn.Linear(2, 4).state_dict(), what="model", path="x.pt")
    with pytest.raises(CheckpointError, match="missing"):
        load_state_dict_checked(nn.Linear(2, 3), {}, what="model", path="x.pt")
