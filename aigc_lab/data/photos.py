"""Natural photographs that ship with scikit-image and matplotlib, so they load without a network.

Sources: ``skimage.data`` (scikit-image's sample images: portraits, objects, textures, a
microscope slide, a retina, the Hubble Deep Field; see the scikit-image documentation for each
image's origin and licence) and matplotlib's sample data (Grace Hopper's portrait,
``matplotlib.cbook.get_sample_data``).

Left out: the images scikit-image fetches from the internet with ``pooch`` (``brain``,
``cells3d``, ``eagle``, ``human_mitosis``, ``kidney``, ``lily``, ``nickel_solidification``,
``palisades_of_vogt``, ``protein_transport``, ``skin``, ``vortex``); synthetic images
(``checkerboard``, ``binary_blobs``, ``colorwheel``, ``logo``, ``horse``, ``shepp_logan_phantom``);
``page`` (a scan of a typeset page); ``microaneurysms`` (102 x 102, smaller than the default 128);
``lfw_subset`` (25 x 25 face crops); ``cat`` (the same photo as ``chelsea``).

The split is by photograph, so a model is tested on scenes it never saw. It is fixed in
:data:`TRAIN_PHOTOS` and :data:`TEST_PHOTOS` (13 / 5, about 72% / 28%, both with color and gray
photos and with textures) and never changes with the installed library versions.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import skimage.data
import torch
from matplotlib import cbook
from PIL import Image
from torch import Tensor

from aigc_lab.data.registry import ImageDataset, check_choice_option, check_int_option, register_dataset, resize_square

TRAIN_PHOTOS = (
    "astronaut", "brick", "cell", "chelsea", "clock", "coins", "grass",
    "hubble_deep_field", "immunohistochemistry", "motorcycle", "retina", "rocket", "text",
)  # fmt: skip
TEST_PHOTOS = ("camera", "coffee", "grace_hopper", "gravel", "moon")
_SPLITS = {"train": TRAIN_PHOTOS, "test": TEST_PHOTOS, "all": tuple(sorted(TRAIN_PHOTOS + TEST_PHOTOS))}

# ITU-R BT.601 luma weights, the ones PIL's convert("L") uses.
_LUMA = (0.299, 0.587, 0.114)


def _read_uint8(name: str) -> np.ndarray:
    if name == "grace_hopper":
        with cbook.get_sample_data("grace_hopper.jpg") as file:
            return np.asarray(Image.open(file).convert("RGB"))
    if name == "motorcycle":
        return skimage.data.stereo_motorcycle()[0]  # the left view of a stereo pair
    return getattr(skimage.data, name)()


def load_photos(split: str = "all") -> list[tuple[str, np.ndarray]]:
    """The photographs of a split as ``(name, H x W x 3 float32 array in [0, 1])`` pairs.

    Gray photographs are repeated into three channels so every photo has the same layout.
    ``split`` is ``"train"``, ``"test"`` or ``"all"`` (sorted by name).
    """
    check_choice_option("split", split, tuple(_SPLITS))
    photos = []
    for name in _SPLITS[split]:
        pixels = _read_uint8(name)
        if pixels.ndim == 2:
            pixels = np.repeat(pixels[:, :, None], 3, axis=2)
        photos.append((name, pixels.astype(np.float32) / 255))
    return photos


class PatchSample(NamedTuple):
    """What :func:`sample_patches` returns: patch ``k`` is ``images[source[k]]`` cropped at ``(top[k], left[k])``."""

    patches: Tensor  # (n, C, p, p)
    source: Tensor  # (n,) int64 index into the list of images
    top: Tensor  # (n,) int64 row of the patch's top-left pixel
    left: Tensor  # (n,) int64 column of the patch's top-left pixel


def sample_patches(
    images: list[np.ndarray] | list[Tensor] | Tensor,
    patch_size: int,
    n: int,
    generator: torch.Generator | int,
) -> PatchSample:
    """Cut ``n`` random ``patch_size x patch_size`` patches out of a list of images.

    Each patch picks its image uniformly (so small photos count as much as large ones), then
    its top-left corner uniformly among the positions where it fits.

    Args:
        images: ``H x W x C`` numpy arrays (as :func:`load_photos` returns), ``C x H x W``
            tensors, or one ``N x C x H x W`` tensor; all with the same number of channels.
        patch_size: side of the square patches, at most the smallest image side.
        n: number of patches.
        generator: a ``torch.Generator`` or an integer seed.
    """
    check_int_option("patch_size", patch_size)
    check_int_option("n", n)
    tensors = [torch.from_numpy(im).permute(2, 0, 1) if isinstance(im, np.ndarray) else im for im in images]
    if not tensors:
        raise ValueError("sample_patches needs at least one image")
    channels = sorted({t.shape[0] for t in tensors})
    if len(channels) > 1:
        raise ValueError(f"all images must have the same number of channels, got {channels}")
    for index, image in enumerate(tensors):
        h, w = image.shape[-2:]
        if min(h, w) < patch_size:
            raise ValueError(f"patch_size {patch_size} is larger than image {index} ({h} x {w})")
    if isinstance(generator, int):
        generator = torch.Generator().manual_seed(generator)
    source = torch.randint(len(tensors), (n,), generator=generator)
    heights = torch.tensor([t.shape[-2] for t in tensors])[source]
    widths = torch.tensor([t.shape[-1] for t in tensors])[source]
    top = (torch.rand(n, generator=generator, dtype=torch.float64) * (heights - patch_size + 1)).long()
    left = (torch.rand(n, generator=generator, dtype=torch.float64) * (widths - patch_size + 1)).long()
    corners = zip(source.tolist(), top.tolist(), left.tolist())
    patches = torch.stack([tensors[s][:, t : t + patch_size, l : l + patch_size] for s, t, l in corners])
    return PatchSample(patches, source, top, left)


@register_dataset(
    "photos",
    online=False,
    description="18 natural photographs (scikit-image, matplotlib), whole or as random patches; split by photo",
    splits=("train", "test", "all"),
)
def load_photos_dataset(
    split: str = "train",
    *,
    size: int | None = None,
    patch_size: int | None = None,
    n_patches: int = 1000,
    seed: int = 0,
    channels: int = 3,
) -> ImageDataset:
    """The photographs as an :class:`ImageDataset`; label = which photograph, classes = their names.

    Args:
        split: ``"train"`` (13 photos), ``"test"`` (5) or ``"all"``.
        size: output side. Without ``patch_size``: each photo center-cropped to a square and
            resized to ``size x size`` (default 128), one image per photo. With ``patch_size``:
            patches are resized to ``size`` if given (e.g. cut 64, keep 32 for smoother images).
        patch_size: cut ``n_patches`` random square patches of this side instead (see
            :func:`sample_patches`); their positions are in ``attributes["top"]`` and ``["left"]``.
        n_patches: how many patches.
        seed: seed of the patch positions.
        channels: 3 for RGB, 1 for luminance ``Y = 0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601).
    """
    check_int_option("size", size, allow_none=True)
    check_int_option("patch_size", patch_size, allow_none=True)
    check_int_option("n_patches", n_patches)
    check_int_option("seed", seed, minimum=0)
    check_choice_option("channels", channels, (1, 3))
    names, arrays = zip(*load_photos(split))
    photos = [torch.from_numpy(a).permute(2, 0, 1) for a in arrays]  # (3, H, W) each
    if channels == 1:
        luma = torch.tensor(_LUMA).view(3, 1, 1)
        photos = [(p * luma).sum(0, keepdim=True).clamp(0, 1) for p in photos]
    attributes = {}
    if patch_size is None:
        size = 128 if size is None else size
        images = torch.stack([resize_square(p, size) for p in photos])
        labels = torch.arange(len(photos))
        resized = any(min(p.shape[-2:]) != size for p in photos)
    else:
        images, labels, top, left = sample_patches(photos, patch_size, n_patches, seed)
        attributes = {"top": top, "left": left}
        resized = size is not None and size != patch_size
        if resized:
            images = resize_square(images, size)
    levels = 256 if channels == 3 and not resized else None
    return ImageDataset(images, labels, list(names), name="photos", split=split, attributes=attributes, levels=levels)
