import pytest
import torch
from torch import nn

from aigc_lab.checkpoint import CheckpointError, load_checkpoint, load_state_dict_checked, save_checkpoint


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
