import pytest
import torch

from aigc_lab import runtime


def test_quick_mode_follows_environment(monkeypatch):
    monkeypatch.setenv("AIGC_LAB_QUICK", "1")
    assert runtime.is_quick() and runtime.mode() == "quick"
    assert runtime.budget(full=3000, quick=10) == 10
    monkeypatch.setenv("AIGC_LAB_QUICK", "0")
    assert not runtime.is_quick() and runtime.mode() == "full"
    assert runtime.budget(full=3000, quick=10) == 3000
    monkeypatch.delenv("AIGC_LAB_QUICK")
    assert runtime.mode() == "full"


def test_quick_mode_rejects_unclear_values(monkeypatch):
    monkeypatch.setenv("AIGC_LAB_QUICK", "maybe")
    with pytest.raises(ValueError, match="AIGC_LAB_QUICK"):
        runtime.is_quick()


def test_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.delenv("AIGC_LAB_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runtime, "_mps_available", lambda: True)
    assert runtime.device().type == "mps"
    monkeypatch.setattr(runtime, "_mps_available", lambda: False)
    assert runtime.device().type == "cpu"


def test_device_can_be_forced_and_says_when_unavailable(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.device("cpu").type == "cpu"
    monkeypatch.setenv("AIGC_LAB_DEVICE", "cpu")
    assert runtime.device().type == "cpu"
    with pytest.raises(ValueError, match="CUDA is not available"):
        runtime.device("cuda")


def test_seed_everything_makes_torch_numpy_and_python_repeat():
    import random

    import numpy as np

    g = runtime.seed_everything(7)
    a = (torch.randn(3), np.random.rand(3), random.random(), torch.randn(2, generator=g))
    g = runtime.seed_everything(7)
    b = (torch.randn(3), np.random.rand(3), random.random(), torch.randn(2, generator=g))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2] and torch.equal(a[3], b[3])


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5, "3", True])
def test_seed_everything_rejects_bad_seeds(bad):
    with pytest.raises(ValueError, match="seed"):
        runtime.seed_everything(bad)


def test_describe_names_mode_and_device():
    info = runtime.describe()
    assert info["mode"] in ("quick", "full")
    assert info["device"] in ("cpu", "cuda", "mps")
    assert info["aigc_lab"]


def test_cpu_threads_from_argument_or_environment(monkeypatch):
    import torch

    from aigc_lab import runtime

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv(runtime.THREADS_ENV, raising=False)
        assert runtime.cpu_threads() == before  # nothing asked: torch's choice stays
        assert runtime.cpu_threads(1) == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv(runtime.THREADS_ENV, "2")
        assert runtime.cpu_threads() == 2 and torch.get_num_threads() == 2
        monkeypatch.setenv(runtime.THREADS_ENV, "many")
        with pytest.raises(ValueError, match="AIGC_LAB_THREADS must be a positive integer"):
            runtime.cpu_threads()
        with pytest.raises(ValueError, match="positive integer"):
            runtime.cpu_threads(0)
    finally:
        torch.set_num_threads(before)
