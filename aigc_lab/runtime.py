"""Where and how the book's code runs: device choice, seeding and quick mode.

Every chapter starts with::

    from aigc_lab import runtime
    device = runtime.device()      # cuda, then mps, then cpu
    runtime.seed_everything(0)     # same seed, same numbers on the CPU
    steps = runtime.budget(full=3000, quick=150)

Quick mode (``AIGC_LAB_QUICK=1`` in the environment) shrinks every training budget so a
notebook runs top to bottom in about a minute on two CPU cores; CI runs every notebook
that way. Full mode (the default) is what the book shows.
"""

from __future__ import annotations

import os
import platform
import random
from typing import TypeVar

import numpy as np
import torch

QUICK_ENV = "AIGC_LAB_QUICK"
DEVICE_ENV = "AIGC_LAB_DEVICE"
THREADS_ENV = "AIGC_LAB_THREADS"

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def is_quick() -> bool:
    """True when ``AIGC_LAB_QUICK`` is set to 1/true/yes/on (read at every call)."""
    value = os.environ.get(QUICK_ENV, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{QUICK_ENV} must be one of 1/0, true/false, yes/no, on/off; got {value!r}")


def mode() -> str:
    """``"quick"`` or ``"full"``."""
    return "quick" if is_quick() else "full"


def budget(full: T, quick: T) -> T:
    """Pick a step budget (or any setting) for the current mode.

    ``budget(full=3000, quick=100)`` returns 100 under ``AIGC_LAB_QUICK=1`` and 3000 otherwise,
    so a notebook states both numbers in one place.
    """
    return quick if is_quick() else full


def device(prefer: str | None = None) -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU.

    ``prefer`` (or the ``AIGC_LAB_DEVICE`` environment variable) forces one, e.g. ``"cpu"``
    to reproduce the book's CPU numbers on a GPU machine.
    """
    name = prefer or os.environ.get(DEVICE_ENV, "").strip() or None
    if name is not None:
        dev = torch.device(name)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was asked for, but CUDA is not available here; use 'cpu'")
        if dev.type == "mps" and not _mps_available():
            raise ValueError(f"device {name!r} was asked for, but MPS is not available here; use 'cpu'")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def cpu_threads(n: int | None = None) -> int:
    """Set how many CPU threads torch uses: ``n``, else ``$AIGC_LAB_THREADS``, else leave torch's choice.

    Returns the number in effect. Measured with ``tools/benchmark.py --threads 1`` and
    ``--threads 2`` on a quiet 2-core machine, two threads train the book's small models 1.0-1.6
    times as fast as one; but when other processes compete for the cores, the second thread's
    spinning made them several times *slower*. On a busy machine, use one thread
    (``AIGC_LAB_THREADS=1`` for the command line).
    """
    if n is None:
        text = os.environ.get(THREADS_ENV, "").strip()
        if not text:
            return torch.get_num_threads()
        try:
            n = int(text)
        except ValueError:
            raise ValueError(f"{THREADS_ENV} must be a positive integer, got {text!r}") from None
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of CPU threads must be a positive integer, got {n!r}")
    torch.set_num_threads(n)
    return n


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (all devices) and return a CPU ``torch.Generator``.

    The same seed gives the same numbers on the CPU. GPUs may still differ in the last bits
    because some CUDA kernels are not deterministic.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    seed = int(seed)
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


PRECISIONS = ("auto", "float32", "float16", "bfloat16")


def bfloat16_native() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX-512 BF16 or AMX); without them bfloat16 is emulated, and slow."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def autocast_dtype(precision: str, dev: torch.device) -> torch.dtype | None:
    """The dtype :func:`torch.autocast` should use for ``precision`` on ``dev``, or None for plain float32.

    * ``"auto"``: float16 on CUDA (with a gradient scaler: float16's small range underflows small
      gradients to zero unless the loss is scaled up first), float32 elsewhere;
    * ``"float32"``: no autocast anywhere;
    * ``"float16"``: CUDA only (float16 matrix products on a CPU are slow and gain nothing);
    * ``"bfloat16"``: any device. bfloat16 keeps float32's exponent range, so no scaler is needed;
      it keeps 8 bits of mantissa instead of 24, so results differ from float32 in the third
      significant digit. On a CPU it pays only with native instructions (:func:`bfloat16_native`).

    Autocast runs the matrix products and convolutions in the low precision and keeps reductions,
    losses and the weights in float32 (Micikevicius et al., 2018, "Mixed Precision Training").
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "auto":
        return torch.float16 if dev.type == "cuda" else None
    if precision == "float16":
        if dev.type != "cuda":
            raise ValueError(f"float16 mixed precision needs a CUDA GPU (this run is on {dev.type}); use 'bfloat16' or 'float32'")
        return torch.float16
    return torch.bfloat16 if precision == "bfloat16" else None


def describe() -> dict[str, str]:
    """A short record of where the code ran, stored in notebook metadata and run directories."""
    from aigc_lab import __version__

    dev = device()
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine()
    return {
        "mode": mode(),
        "device": dev.type,
        "device_name": name,
        "threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "aigc_lab": __version__,
    }
