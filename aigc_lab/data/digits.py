"""Handwritten digits: 1,797 gray 8 x 8 images in 17 gray levels, bundled with scikit-learn.

The test set of the UCI "Optical Recognition of Handwritten Digits" data (Alpaydin & Kaynak,
1998), shipped as :func:`sklearn.datasets.load_digits`, so it loads without any download. Each
pixel counts the ink in a 4 x 4 block of a 32 x 32 bitmap: an integer 0..16, stored here as
``value / 16``.

The splits follow J. M. Tomczak's *Deep Generative Modeling* code (``intro_dgm``): the first
1000 images train, the next 350 validate, the last 447 test.
"""

from __future__ import annotations

import torch

from aigc_lab.data.registry import ImageDataset, check_int_option, register_dataset, resize_square

DIGITS_SPLITS = {"train": slice(0, 1000), "val": slice(1000, 1350), "test": slice(1350, None), "all": slice(None)}

_MAX_VALUE = 16


@register_dataset(
    "digits",
    online=False,
    description="handwritten digits 0-9, 8x8 gray, 17 levels (scikit-learn; train 1000 / val 350 / test 447)",
    splits=tuple(DIGITS_SPLITS),
)
def load_digits(split: str = "train", *, size: int | None = None) -> ImageDataset:
    """The scikit-learn digits as an :class:`ImageDataset` of ``1 x 8 x 8`` images.

    Args:
        split: ``"train"`` (1000), ``"val"`` (350), ``"test"`` (447) or ``"all"`` (1797).
        size: enlarge to ``size x size`` (bilinear) for display and convolutional models;
            the values are then no longer exact gray levels (``levels`` becomes ``None``).
    """
    check_int_option("size", size, allow_none=True)
    from sklearn.datasets import load_digits as sklearn_load_digits  # here: scikit-learn takes seconds to import

    bunch = sklearn_load_digits()
    part = DIGITS_SPLITS[split]
    images = torch.from_numpy(bunch.images[part]).float().unsqueeze(1) / _MAX_VALUE  # (N, 1, 8, 8)
    labels = torch.from_numpy(bunch.target[part]).long()
    levels = _MAX_VALUE + 1
    if size is not None and size != 8:
        images, levels = resize_square(images, size), None
    classes = [str(d) for d in range(10)]
    return ImageDataset(images, labels, classes, name="digits", split=split, levels=levels)
