"""The book's image conventions, checked in one place.

Images are ``N x C x H x W`` float32 tensors. Models work in ``[-1, 1]``; display and
metrics use ``[0, 1]``. :func:`check_images` turns a wrong shape, dtype or range into a
``ValueError`` that says what was expected, instead of a deep traceback or silent garbage.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch import Tensor

UNIT_RANGE = (0.0, 1.0)
MODEL_RANGE = (-1.0, 1.0)

# Bilinear resizing and float arithmetic overshoot a range by a hair; allow that much.
_RANGE_TOLERANCE = 1e-4


def check_images(
    images: object,
    *,
    name: str = "images",
    value_range: tuple[float, float] | None = UNIT_RANGE,
    channels: int | tuple[int, ...] | None = None,
    size: tuple[int, int] | None = None,
    batched: bool = True,
) -> Tensor:
    """Check that ``images`` is a float tensor of images and return it unchanged.

    Args:
        images: the tensor to check.
        name: what to call it in an error message.
        value_range: ``(low, high)`` every value must lie in, or ``None`` to skip the check.
        channels: the allowed channel count(s), e.g. ``1`` or ``(1, 3)``.
        size: the required ``(H, W)``.
        batched: ``N x C x H x W`` when True, a single ``C x H x W`` image when False.

    Raises:
        ValueError: naming the expected shape, dtype or range and what was found.
    """
    layout = "N x C x H x W" if batched else "C x H x W"
    if not isinstance(images, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {layout}, got {type(images).__name__}")
    want_dim = 4 if batched else 3
    if images.dim() != want_dim:
        raise ValueError(f"{name} must have shape {layout}, got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(
            f"{name} must be a floating-point tensor (float32) with values in the documented range, "
            f"got dtype {images.dtype}; divide 8-bit images by 255"
        )
    c, h, w = images.shape[-3:]
    if channels is not None:
        allowed = (channels,) if isinstance(channels, int) else tuple(channels)
        if c not in allowed:
            raise ValueError(f"{name} must have {' or '.join(map(str, allowed))} channel(s), got {c} (shape {tuple(images.shape)})")
    if size is not None and (h, w) != tuple(size):
        raise ValueError(f"{name} must be {size[0]} x {size[1]} pixels, got {h} x {w}")
    if value_range is not None and images.numel() > 0:
        low, high = value_range
        lo, hi = float(images.min()), float(images.max())
        if not (lo == lo and hi == hi):  # NaN compares unequal to itself
            raise ValueError(f"{name} contain NaN values")
        if lo < low - _RANGE_TOLERANCE or hi > high + _RANGE_TOLERANCE:
            hint = " (they look like [-1, 1] model outputs; use to_unit_range)" if lo < 0 and low >= 0 else ""
            raise ValueError(f"{name} must lie in [{low:g}, {high:g}], got values in [{lo:.4g}, {hi:.4g}]{hint}")
    return images


def to_model_range(images: Tensor) -> Tensor:
    """Map ``[0, 1]`` images to the ``[-1, 1]`` range models work in: ``2x - 1``."""
    check_images(images, value_range=UNIT_RANGE, batched=images.dim() == 4)
    return images * 2 - 1


def to_unit_range(images: Tensor) -> Tensor:
    """Map model outputs in ``[-1, 1]`` back to ``[0, 1]``: ``(x + 1) / 2``, clamped."""
    check_images(images, value_range=None, batched=images.dim() == 4)
    return ((images + 1) / 2).clamp(0, 1)


def check_image_shape(image_shape: object, *, min_size: int = 8) -> tuple[int, int, int]:
    """``image_shape`` as a ``(C, H, W)`` tuple, checked: ``H == W``, a power of two, at least ``min_size``.

    The shape the convolutional networks need (they halve or double the side at every level).
    """
    try:
        shape = tuple(int(s) for s in image_shape)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"image_shape must be (C, H, W), e.g. (1, 8, 8), got {image_shape!r}") from None
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"image_shape must be (C, H, W) with positive sizes, e.g. (1, 8, 8), got {image_shape!r}")
    _, h, w = shape
    if h != w or h < min_size or h & (h - 1):
        raise ValueError(
            f"image_shape must have H == W, a power of two >= {min_size} (8, 16, 32, ...), got {h} x {w}; "
            "resize the images (e.g. load_dataset(..., size=16))"
        )
    return shape


def check_labels(labels: Tensor | None, n: int, num_classes: int) -> Tensor | None:
    """The class labels a conditional model was given, checked: ``None`` for an unconditional
    model (``num_classes == 0``), else an int64 tensor of ``n`` values in ``[0, num_classes)``."""
    if num_classes == 0:
        if labels is not None:
            raise ValueError("this model is unconditional (num_classes=0); do not pass labels")
        return None
    if labels is None:
        raise ValueError(f"this model is conditional on {num_classes} classes; pass labels (int64 tensor of length {n})")
    labels = torch.as_tensor(labels)
    if labels.shape != (n,) or labels.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"labels must be an integer tensor of shape ({n},), got {labels.dtype} {tuple(labels.shape)}")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes - 1}], got [{int(labels.min())}, {int(labels.max())}]")
    return labels.long()


def check_label_factors(label_factors: object, num_classes: int) -> tuple[int, ...] | None:
    """``label_factors`` checked against ``num_classes``: ``None`` (one embedding per class), or a
    sequence of at least two integers >= 2 whose product is ``num_classes``, returned as a tuple."""
    if label_factors is None:
        return None
    if isinstance(label_factors, (str, bytes)) or not hasattr(label_factors, "__len__"):
        raise ValueError(f"label_factors must be a sequence of integers such as (5, 6), or None; got {label_factors!r}")
    factors = tuple(label_factors)
    if len(factors) < 2 or any(isinstance(f, bool) or not isinstance(f, int) or f < 2 for f in factors):
        raise ValueError(f"label_factors must be at least two integers >= 2 (the number of values of each attribute), got {label_factors!r}")
    if not num_classes:
        raise ValueError("label_factors needs a conditional model: set num_classes")
    if math.prod(factors) != num_classes:
        raise ValueError(
            f"label_factors {factors} must multiply to num_classes={num_classes} (class k has attribute values "
            f"k's digits in that mixed radix, e.g. shapes: (5, 6) -> shape k // 6, colour k % 6); their product is {math.prod(factors)}"
        )
    return factors


# PIL modes read as one gray channel; everything else is read as RGB (transparency dropped).
_GRAY_MODES = {"1", "L", "LA", "I;16", "I;16B", "I;16L", "I;16N"}


def read_image_file(path: str | os.PathLike) -> Tensor:
    """An image file as a ``C x H x W`` float32 tensor in ``[0, 1]``: ``C = 1`` for a gray file, 3 otherwise.

    8-bit and 16-bit gray, RGB, RGBA and palette images are read; transparency is dropped.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not an image PIL can read (the message names it).
    """
    import numpy as np
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no image file {path}")
    try:
        with Image.open(path) as image:
            if image.mode.startswith("I;16"):
                pixels = np.asarray(image, dtype=np.float32) / 65535  # 16-bit gray, e.g. a scientific camera's PNG
            else:
                pixels = np.asarray(image.convert("L" if image.mode in _GRAY_MODES else "RGB"), dtype=np.float32) / 255
    except (OSError, ValueError, Image.DecompressionBombError) as error:  # UnidentifiedImageError is an OSError
        raise ValueError(f"could not read image {path}: {error}") from None
    tensor = torch.from_numpy(pixels.copy())
    return tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1)


def write_image_file(path: str | os.PathLike, image: Tensor) -> Path:
    """Write a ``C x H x W`` image in ``[0, 1]`` (``C`` = 1 or 3) as an 8-bit file; the format follows the suffix.

    The parent folder is created; JPEG files are written at quality 95. Returns the path.
    """
    import numpy as np
    from PIL import Image

    if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"image must be a C x H x W tensor with 1 or 3 channels, got {getattr(image, 'shape', type(image).__name__)}")
    check_images(image, value_range=UNIT_RANGE, batched=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = (image.detach().cpu().float().clamp(0, 1) * 255).round().to(torch.uint8)
    array = pixels[0].numpy() if pixels.shape[0] == 1 else pixels.permute(1, 2, 0).numpy()
    options = {"quality": 95} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    try:
        Image.fromarray(np.ascontiguousarray(array)).save(path, **options)
    except (KeyError, ValueError) as error:  # PIL: unknown suffix
        raise ValueError(f"cannot write {path}: unknown image format {path.suffix!r} ({error}); use .png or .jpg") from None
    return path
