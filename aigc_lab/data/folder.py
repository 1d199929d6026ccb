"""The reader's own pictures: ``load_dataset("folder:PATH")``.

Layout, as in torchvision's ``ImageFolder``: one class per immediate subfolder of ``PATH``
(sorted by name; images anywhere below it belong to it), or, when ``PATH`` has no subfolders
with images, a single class ``"images"``. Every image is center-cropped to a square and resized.

The optional train/test split hashes each file's path relative to ``PATH`` with the seed, so a
file stays on the same side when others are added or removed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from aigc_lab.data.registry import ImageDataset, check_choice_option, check_int_option, register_dataset, resize_square

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _images_below(folder: Path, recursive: bool) -> list[Path]:
    files = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        f for f in files
        if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith(".")  # skip ._x.png etc.
    )  # fmt: skip


def _find_images(root: Path) -> tuple[list[Path], list[int], list[str]]:
    """Image files, their class index and the class names, per the layout in the module docstring."""
    subfolders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    per_class = {d.name: _images_below(d, recursive=True) for d in subfolders}
    per_class = {name: files for name, files in per_class.items() if files}
    loose = _images_below(root, recursive=False)
    if not per_class and not loose:
        accepted = ", ".join(IMAGE_EXTENSIONS)
        raise ValueError(f"no images found in {root} or its subfolders (accepted extensions: {accepted})")
    if per_class and loose:
        raise ValueError(
            f"{root} has images both directly inside it ({loose[0].name}, ...) and in subfolders "
            f"({', '.join(per_class)}); put them all in subfolders (one per class) or all directly in {root}"
        )
    per_class = per_class or {"images": loose}
    files = [f for group in per_class.values() for f in group]
    labels = [k for k, group in enumerate(per_class.values()) for _ in group]
    return files, labels, list(per_class)


def _is_test(relative_path: str, seed: int, test_fraction: float) -> bool:
    digest = hashlib.sha256(f"{seed}/{relative_path}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_fraction


def _read(file: Path, mode: str) -> torch.Tensor:
    try:
        with Image.open(file) as image:
            pixels = np.asarray(image.convert(mode))  # convert() also forces the actual decoding
    except (OSError, ValueError, Image.DecompressionBombError) as error:  # UnidentifiedImageError is an OSError
        raise ValueError(f"could not read image {file}: {error}") from None
    tensor = torch.from_numpy(pixels.copy())
    return (tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1)).float() / 255


@register_dataset(
    "folder",
    online=False,
    description="your own images: one class per subfolder (or one class 'images'), square-cropped and resized",
    splits=("all", "train", "test"),
)
def load_folder(
    path: str | os.PathLike,
    split: str = "all",
    *,
    size: int = 64,
    channels: int = 3,
    test_fraction: float = 0.0,
    seed: int = 0,
) -> ImageDataset:
    """Images found (recursively) in ``path`` as an :class:`ImageDataset`.

    Args:
        path: the folder; ``~`` is expanded.
        split: ``"all"``; or ``"train"`` / ``"test"``, split by a hash of each file's path so that
            about ``test_fraction`` of the files are in test (with ``test_fraction=0``, train is all).
        size: every image is center-cropped to a square and resized to ``size x size``.
        channels: 3 (RGB) or 1 (gray, PIL's ``L``); transparency is dropped.
        test_fraction: share of files held out for the test split, in ``[0, 1)``.
        seed: changes which files are held out.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: not a folder, no images, an unreadable image (named), or a bad option.
    """
    check_int_option("size", size)
    check_choice_option("channels", channels, (1, 3))
    check_int_option("seed", seed, minimum=0)
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 <= test_fraction < 1:
        raise ValueError(f"option 'test_fraction' must be a number in [0, 1), got {test_fraction!r}")
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder; folder:PATH needs a folder of images")
    files, labels, classes = _find_images(root)
    if split != "all":
        chosen = [_is_test(f.relative_to(root).as_posix(), seed, test_fraction) == (split == "test") for f in files]
        files = [f for f, keep in zip(files, chosen) if keep]
        labels = [label for label, keep in zip(labels, chosen) if keep]
        if not files:
            raise ValueError(f"the {split!r} split of {root} is empty; set test_fraction (now {test_fraction}) in (0, 1)")
    images, resized = [], False
    for file in files:
        image = _read(file, "RGB" if channels == 3 else "L")
        resized = resized or min(image.shape[-2:]) != size
        images.append(resize_square(image, size))
    return ImageDataset(
        torch.stack(images), torch.tensor(labels, dtype=torch.int64), classes,
        name=f"folder:{root}", split=split, levels=None if resized else 256,
    )  # fmt: skip
