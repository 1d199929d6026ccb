"""MNIST, Fashion-MNIST and CIFAR-10, downloaded once through torchvision when a reader asks.

- MNIST: handwritten digits, 28 x 28 gray, 60,000 train / 10,000 test (LeCun et al., 1998).
- Fashion-MNIST: clothing, same format as MNIST (Xiao, Rasul & Vollgraf, 2017).
- CIFAR-10: 32 x 32 color photos of 10 classes, 50,000 / 10,000 (Krizhevsky, 2009).

The files live in ``root``: the ``root=`` option, else the ``AIGC_LAB_DATA`` environment
variable, else ``~/.cache/aigc_lab/datasets``, in torchvision's layout, so files copied there
by hand load without a network. Only when they are missing does anything try to download;
when that fails the reader gets :class:`DatasetUnavailableError` with one sentence saying what to
do, not a chain of urllib tracebacks.
"""

from __future__ import annotations

import contextlib
import os
import socket
import urllib.error
from http.client import HTTPException
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

from aigc_lab.data.registry import (
    DatasetUnavailableError,
    ImageDataset,
    check_int_option,
    offline_datasets,
    register_dataset,
    resize_square,
)

if TYPE_CHECKING:
    from torchvision.datasets import VisionDataset

DATA_ENV = "AIGC_LAB_DATA"
DEFAULT_ROOT = Path("~/.cache/aigc_lab/datasets")
# A dead network should fail within seconds, not after the operating system's minutes-long
# connect timeout (torchvision's urlopen calls set none).
_DOWNLOAD_TIMEOUT = 20.0


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where the online datasets are stored: ``root``, else ``$AIGC_LAB_DATA``, else ``~/.cache/aigc_lab/datasets``."""
    return Path(root or os.environ.get(DATA_ENV) or DEFAULT_ROOT).expanduser()


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _short_reason(error: BaseException) -> str:
    """The useful part of a download error, e.g. 'Temporary failure in name resolution'."""
    while isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        if not isinstance(error.reason, BaseException):
            return str(error.reason)
        error = error.reason
    if isinstance(error, TimeoutError):
        return "timed out"
    lines = [line for line in str(error).splitlines() if line.strip()]
    reason = lines[-1].strip() if lines else type(error).__name__
    reason = reason.removeprefix("<urlopen error ").removesuffix(">")  # torchvision's MNIST joins urllib messages
    return reason if len(reason) <= 100 else reason[:97] + "..."


def _torchvision_dataset(name: str, class_name: str, root: Path, train: bool) -> VisionDataset:
    import torchvision.datasets  # here, not at the top: importing torchvision takes seconds

    cls = getattr(torchvision.datasets, class_name)
    try:
        return cls(root, train=train, download=False)
    except RuntimeError:  # torchvision's "Dataset not found": fall through to downloading
        pass
    root.mkdir(parents=True, exist_ok=True)
    try:
        with _socket_timeout(_DOWNLOAD_TIMEOUT):
            return cls(root, train=train, download=True)
    except (OSError, RuntimeError, HTTPException) as error:
        raise DatasetUnavailableError(
            f"Could not download {name!r} to {root}: the download failed ({_short_reason(error)}); "
            f"connect once, or copy the files there, or use an offline dataset: {', '.join(offline_datasets())}."
        ) from None


def _register(name: str, class_name: str, description: str, classes: list[str] | None) -> None:
    def load(
        split: str = "train", *, root: str | os.PathLike | None = None, size: int | None = None, limit: int | None = None
    ) -> ImageDataset:
        check_int_option("size", size, allow_none=True)
        check_int_option("limit", limit, allow_none=True)
        source = _torchvision_dataset(name, class_name, data_root(root), train=split == "train")
        pixels = torch.as_tensor(np.asarray(source.data[:limit]))  # uint8 (N, H, W) or (N, H, W, 3)
        images = pixels.unsqueeze(1) if pixels.dim() == 3 else pixels.permute(0, 3, 1, 2)
        images = images.float() / 255
        levels = 256
        if size is not None and size != images.shape[-1]:
            images, levels = resize_square(images, size), None
        labels = torch.as_tensor(np.asarray(source.targets[:limit]), dtype=torch.int64)
        return ImageDataset(images, labels, classes or list(source.classes), name=name, split=split, levels=levels)

    load.__name__ = load.__qualname__ = f"load_{name.replace('-', '_')}"
    load.__doc__ = f"""{description}, as an :class:`ImageDataset` (downloaded on first use, see the module docstring).

    Args:
        split: ``"train"`` or ``"test"``.
        root: where the files are or go (default ``$AIGC_LAB_DATA`` or ``~/.cache/aigc_lab/datasets``).
        size: resize to ``size x size`` (bilinear); ``levels`` becomes ``None``.
        limit: keep only the first ``limit`` images (saves memory and time).

    Raises:
        DatasetUnavailableError: the files are missing and cannot be downloaded.
    """
    register_dataset(name, online=True, description=description)(load)


_register("mnist", "MNIST", "MNIST handwritten digits, 28x28 gray, 60k/10k", [str(d) for d in range(10)])
_register("fashion-mnist", "FashionMNIST", "Fashion-MNIST clothing, 28x28 gray, 60k/10k", None)
_register("cifar10", "CIFAR10", "CIFAR-10 color photos of 10 classes, 32x32, 50k/10k", None)
