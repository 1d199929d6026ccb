r"""Paired images for image-to-image translation (chapter 4.6, pix2pix), generated offline.

Isola, Zhu, Zhou & Efros (2017, "Image-to-Image Translation with Conditional Adversarial
Networks", CVPR) learn a map :math:`G: x \mapsto y` from aligned pairs :math:`(x, y)`: edges to
photo, labels to scene, gray to colour, map to aerial photo. This module builds four such tasks
from data that ships with the package's dependencies, so they load without a network:

==============  ====================================  ==========================================  ========================
task            input :math:`x` (1 channel)            target :math:`y` (3 channels, RGB)           train / test kept apart
==============  ====================================  ==========================================  ========================
edges           Canny edges of the gray patch (0 / 1)  the photo patch                              by photograph
hillshade       elevation, scaled to [0, 1] per patch  its hill-shaded, colour-mapped rendering     by region of the maps
labels          a shape's segmentation map             the rendered shape (:mod:`.shapes`)          by random stream
colour          the luma of the photo patch            the photo patch                              by photograph
pencil          the photo patch (3 channels)           its pencil drawing (1 channel, gray)         by photograph
pencil-texture  the photo patch and the filter's        its pencil drawing (1 channel, gray)         by photograph
                texture (3 + 1 channels)
pencil-tone     the photo patch, the filter's texture   its pencil drawing (1 channel, gray)         by photograph
                and the photo's tone map (3 + 2)
oil             the photo patch (3 channels)           its oil painting (3 channels)                by photograph
==============  ====================================  ==========================================  ========================

**A pair is one image.** Its channels are the input's followed by the target's
(:data:`PAIR_TASKS` gives how many of each: 1 + 3 for the first four tasks, 3 + 1, 4 + 1, 5 + 1
and 3 + 3 for the styles), so a random crop, a
flip or a batch of the generic training loop, which only knows ``(images, labels)``, keeps the
input and its target aligned by construction. :func:`split_pair` cuts a stacked pair back into
``(input, target)``.

How each task is made (all deterministic in ``(task, split, size, n, seed)``):

* ``edges`` and ``colour`` cut random ``size x size`` patches (:func:`~.photos.sample_patches`)
  from the *colour* photographs of :mod:`.photos`' split (7 train, 2 test: a gray photo's target
  would teach the model that gray is a right answer). The edges are
  :func:`skimage.feature.canny` (Canny, 1986) of the patch's luma
  :math:`Y = 0.299 R + 0.587 G + 0.114 B` (ITU-R BT.601), with :data:`CANNY_SIGMA`, computed on the
  patch itself with its border extended (``mode="nearest"``), so the input is a function of the
  target alone. Train and test come from different photographs.
* ``hillshade`` crops the two elevation maps matplotlib ships
  (``jacksboro_fault_dem.npz``, 344 x 403 on a 3-arcsecond grid, and ``topobathy.npz``, 91 x 120
  on a grid of about 1.3 x 2 arcminutes, upsampled twice by cubic splines so that a 64-pixel crop
  fits its test strip; that strip is 72 pixels wide, so its 64-pixel test crops overlap a lot).
  Each map's left :data:`HILLSHADE_TRAIN_FRACTION` of columns is the train region and the rest
  the test region; a crop lies wholly inside one region, so no test pixel is ever seen in
  training. The input is the crop scaled to ``[0, 1]``; the target is
  :meth:`matplotlib.colors.LightSource.shade` of that input, lit from the north-west
  (azimuth 315 degrees, altitude 45), colour-mapped with ``gist_earth`` and blended ``"soft"``.
  The vertical exaggeration is ``HILLSHADE_RELIEF * size``: the patch's relief is drawn as a
  fixed share of its width whatever the size. (``LightSource`` stretches each patch's shading to
  its own full range, so the target depends on the whole patch, not only on each pixel's
  neighbourhood.) No flip is a valid augmentation here: a mirrored pair is lit from the
  north-east.
* ``labels`` draws shapes from :func:`~.shapes.load_shapes` (its train and test random streams
  never share an image). The input is the segmentation map: 0 for the background and
  :math:`(k + 1) / 5` where the shape of kind :math:`k` of :data:`~.shapes.SHAPE_KINDS` covers at
  least half the pixel. The map says *which* shape, not its colour, as a label map says "car",
  not which car: the colour is the generator's to choose, the ambiguity for which L1 alone
  "will incentivize an average, grayish color" (Isola et al., section 4.2). The colour is kept
  in the labels (``classes`` are the shapes dataset's "red triangle", ...).

* ``pencil`` and ``oil`` render every photograph of the split (gray ones too) whole with
  :func:`aigc_lab.styles.render_style` (the classical Lu et al. pencil drawing, the Kuwahara oil
  painting) and cut each pair from the photo and its rendering at the same place: can a network
  learn the filter (chapter 6.2)? Train and test come from different photographs. Each photo is
  first resized so that its shorter side is :data:`STYLE_SHORT_SIDE` pixels, the side chapter
  6.2's test photos are drawn at: both filters work at a fixed scale in pixels (Kuwahara's radius,
  the pencil's stroke and line lengths), so a filter learned at one scale is another filter at
  another. ``pencil-texture`` is ``pencil`` with the filter's second input added to the network's:
  the random pencil texture (:func:`aigc_lab.styles.pencil_texture` of the photo's size, seed
  :data:`PENCIL_TEXTURE_SEED`) that the drawing's hatching comes from, which the photo alone does
  not determine. ``pencil-tone`` adds the filter's whole-image step as well: the photo's tone map
  (:func:`aigc_lab.styles.tone_map`, its brightness histogram-matched over the whole photo), which
  a network that sees a window cannot compute (:func:`pencil_side_inputs`).

``labels`` and ``classes`` say where each pair comes from (the photograph, the elevation map or
the shape's class); ``attributes`` holds the crop's position (``top``, ``left``, in the
photograph or the map) or the shape's attributes.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from aigc_lab.data.photos import load_photos, sample_patches
from aigc_lab.data.registry import ImageDataset, check_choice_option, check_int_option, register_dataset
from aigc_lab.data.shapes import SHAPE_KINDS, load_shapes
from aigc_lab.styles import pencil_texture, render_style, tone_map

#: task -> (input channels, target channels); a stacked pair has their sum.
PAIR_TASKS: dict[str, tuple[int, int]] = {
    "edges": (1, 3),
    "hillshade": (1, 3),
    "labels": (1, 3),
    "colour": (1, 3),
    "pencil": (3, 1),
    "pencil-texture": (4, 1),
    "pencil-tone": (5, 1),
    "oil": (3, 3),
}
DEFAULT_N = {"train": 1000, "test": 200}
MIN_SIZE = 16  # below it a Canny filter of sigma 1.5 and a PatchGAN have next to nothing to see
MAX_LABELS_SIZE = 512

# ITU-R BT.601 luma weights, the ones PIL's convert("L") and the photos' channels=1 use.
LUMA = (0.299, 0.587, 0.114)
#: the Gaussian's standard deviation of the Canny filter, in pixels: 1 keeps every grain of
#: texture, 2 loses the small objects of a 64-pixel patch.
CANNY_SIGMA = 1.5

#: the shorter side, in pixels, each photograph is resized to before a style filter draws it
#: (:data:`aigc_lab.style_study.SIZE`, the side of chapter 6.2's test photos)
STYLE_SHORT_SIDE = 256
#: the seed of the pencil texture of the ``pencil`` tasks (:func:`aigc_lab.styles.pencil_drawing`'s default)
PENCIL_TEXTURE_SEED = 0

HILLSHADE_MAPS = ("jacksboro_fault_dem", "topobathy")
HILLSHADE_TRAIN_FRACTION = 0.7  # of each map's columns, from the left
HILLSHADE_RELIEF = 0.25  # the vertical exaggeration, per pixel of the patch's side
HILLSHADE_AZIMUTH, HILLSHADE_ALTITUDE = 315, 45  # degrees: light from the north-west, cartography's convention
HILLSHADE_CMAP = "gist_earth"
HILLSHADE_BLEND = "soft"


def split_pair(images: Tensor, task: str) -> tuple[Tensor, Tensor]:
    """``(inputs, targets)`` of stacked pairs (``N x C x H x W`` or one ``C x H x W``) of ``task``.

    The first :data:`PAIR_TASKS` ``[task][0]`` channels are the input, the rest the target; both
    are views of ``images``, not copies.
    """
    check_choice_option("task", task, tuple(PAIR_TASKS))
    n_in, n_out = PAIR_TASKS[task]
    if not isinstance(images, Tensor) or images.dim() not in (3, 4) or images.shape[-3] != n_in + n_out:
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{task} pairs are N x {n_in + n_out} x H x W ({n_in} input + {n_out} target channels), got {got}")
    return images[..., :n_in, :, :], images[..., n_in:, :, :]


def luma(rgb: Tensor) -> Tensor:
    """The BT.601 luma of ``... x 3 x H x W`` images, ``... x 1 x H x W`` in ``[0, 1]``."""
    weights = torch.tensor(LUMA, dtype=rgb.dtype).view(3, 1, 1)
    return (rgb * weights).sum(-3, keepdim=True).clamp(0, 1)  # the weights' float sum can exceed 1 by a hair


def canny_edges(gray: Tensor) -> Tensor:
    """Canny edges (0 or 1) of ``N x 1 x H x W`` gray images, each computed on its own image."""
    from skimage.feature import canny

    edges = [canny(image[0].numpy().astype(np.float64), sigma=CANNY_SIGMA, mode="nearest") for image in gray]
    return torch.from_numpy(np.stack(edges)).float().unsqueeze(1)


def hillshade(elevation: Tensor) -> Tensor:
    """The target of the ``hillshade`` task: ``N x 1 x H x W`` elevations in ``[0, 1]`` -> ``N x 3 x H x W`` shaded colours."""
    from matplotlib import colormaps
    from matplotlib.colors import LightSource

    light = LightSource(azdeg=HILLSHADE_AZIMUTH, altdeg=HILLSHADE_ALTITUDE)
    cmap = colormaps[HILLSHADE_CMAP]
    shaded = [
        light.shade(
            e[0].numpy().astype(np.float64), cmap=cmap, blend_mode=HILLSHADE_BLEND, vmin=0.0, vmax=1.0,
            vert_exag=HILLSHADE_RELIEF * max(e.shape[-2:]),
        )[..., :3]
        for e in elevation
    ]  # fmt: skip
    return torch.from_numpy(np.stack(shaded)).float().permute(0, 3, 1, 2).clamp(0, 1)


@functools.cache
def _elevation_maps() -> list[tuple[str, np.ndarray]]:
    from matplotlib import cbook
    from scipy.ndimage import zoom

    jacksboro = cbook.get_sample_data("jacksboro_fault_dem.npz")["elevation"].astype(np.float64)
    topobathy = cbook.get_sample_data("topobathy.npz")["topo"].astype(np.float64)
    # Cubic, not linear: a linear upsampling has creases on the old grid, which the shading would show.
    return [("jacksboro_fault_dem", jacksboro), ("topobathy", zoom(topobathy, 2, order=3))]


def _hillshade_regions(split: str) -> list[tuple[str, Tensor, int]]:
    """``(map name, 1 x H x W region, its first column in the map)`` of ``split``."""
    regions = []
    for name, elevation in _elevation_maps():
        cut = int(round(elevation.shape[1] * HILLSHADE_TRAIN_FRACTION))
        left = 0 if split == "train" else cut
        part = elevation[:, :cut] if split == "train" else elevation[:, cut:]
        regions.append((name, torch.from_numpy(np.ascontiguousarray(part)).unsqueeze(0), left))
    return regions


def _colour_photos(split: str) -> list[tuple[str, np.ndarray]]:
    # A photo is gray when its three channels are equal (photos repeats a gray one into three).
    return [(name, pixels) for name, pixels in load_photos(split) if not (np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 1], pixels[..., 2]))]


def _check_size(task: str, size: int, largest: int, why: str) -> None:
    check_int_option("size", size, minimum=MIN_SIZE)
    if size > largest:
        raise ValueError(f"option 'size' of task {task!r} must be from {MIN_SIZE} to {largest} ({why}); got {size}")


def _photo_pairs(task: str, split: str, size: int, n: int, seed: int) -> tuple[Tensor, Tensor, Tensor, list[str], dict[str, Tensor]]:
    names, arrays = zip(*_colour_photos(split))
    # The train photos are the smaller (chelsea, 300 x 451), so a size that loads for train loads for test.
    _check_size(task, size, min(min(a.shape[:2]) for a in arrays), f"the smallest {split} photograph's side")
    target, source, top, left = sample_patches(list(arrays), size, n, seed)
    gray = luma(target)
    given = canny_edges(gray) if task == "edges" else gray
    return given, target, source, list(names), {"top": top, "left": left}


def pencil_side_inputs(photos: Tensor, *, tone: bool = False) -> Tensor:
    """What the ``pencil-texture`` (``tone=False``) and ``pencil-tone`` (``tone=True``) tasks add to
    ``N x 3 x H x W`` photos: the filter's random texture (:func:`aigc_lab.styles.pencil_texture`
    of the photos' size, seed :data:`PENCIL_TEXTURE_SEED`), and with ``tone`` also each photo's
    tone map (:func:`aigc_lab.styles.tone_map`): ``N x 1 x H x W`` or ``N x 2 x H x W``.

    The tone map is the filter's whole-image step: its brightness histogram-matched to that of
    pencil drawings, so each pixel's tone depends on its rank among *all* the photo's pixels,
    which a network looking at a window cannot know. Both are computed on the whole photo, before
    any crop.
    """
    if not isinstance(photos, Tensor) or photos.dim() != 4 or photos.shape[1] != 3:
        got = tuple(photos.shape) if isinstance(photos, Tensor) else type(photos).__name__
        raise ValueError(f"photos must be N x 3 x H x W colour images in [0, 1], got {got}")
    texture = pencil_texture(tuple(photos.shape[-2:]), PENCIL_TEXTURE_SEED).to(photos).expand(len(photos), -1, -1, -1)
    if not tone:
        return texture
    return torch.cat([texture, tone_map(photos).to(photos)], 1)


def at_style_scale(photo: Tensor) -> Tensor:
    """``C x H x W`` resized (bilinear, antialiased when shrinking) so that its shorter side is :data:`STYLE_SHORT_SIDE`."""
    h, w = photo.shape[-2:]
    if min(h, w) == STYLE_SHORT_SIDE:
        return photo
    scale = STYLE_SHORT_SIDE / min(h, w)
    shape = (max(STYLE_SHORT_SIDE, round(h * scale)), max(STYLE_SHORT_SIDE, round(w * scale)))
    resized = F.interpolate(photo.unsqueeze(0), size=shape, mode="bilinear", align_corners=False, antialias=scale < 1)
    return resized[0].clamp(0, 1)


@functools.cache
def _styled_photos(style: str, split: str) -> tuple[tuple[str, ...], tuple[Tensor, ...], tuple[Tensor, ...]]:
    """Every photograph of ``split`` at :data:`STYLE_SHORT_SIDE` and its whole-photo rendering in ``style`` (cached: the renderings take seconds)."""
    names, photos, rendered = [], [], []
    for name, pixels in load_photos(split):
        photo = at_style_scale(torch.from_numpy(pixels).permute(2, 0, 1))
        names.append(name)
        photos.append(photo)
        options = {"seed": PENCIL_TEXTURE_SEED} if style == "pencil" else {}
        styled = render_style(photo.unsqueeze(0), style, **options)[0]
        rendered.append(styled[:1] if PAIR_TASKS[style][1] == 1 else styled)  # a pencil drawing is gray: one channel
    return tuple(names), tuple(photos), tuple(rendered)


def _style_pairs(task: str, split: str, size: int, n: int, seed: int) -> tuple[Tensor, Tensor, Tensor, list[str], dict[str, Tensor]]:
    _check_size(task, size, STYLE_SHORT_SIDE, "the photographs' shorter side, once resized for the filter")
    style = "pencil" if task.startswith("pencil") else task
    names, photos, rendered = _styled_photos(style, split)
    if task != style:  # pencil-texture, pencil-tone: the photo and what else the filter computes from
        photos = tuple(torch.cat([p, pencil_side_inputs(p.unsqueeze(0), tone=task == "pencil-tone")[0]]) for p in photos)
    # The whole photo is rendered first and the pair cut from both at the same place: a rendering's
    # strokes depend on the image around them (line length, tone histogram), so a patch rendered
    # on its own would be another drawing.
    stacked = [torch.cat([p, r], 0) for p, r in zip(photos, rendered)]
    crops, source, top, left = sample_patches(stacked, size, n, seed)
    n_in = PAIR_TASKS[task][0]
    return crops[:, :n_in], crops[:, n_in:], source, list(names), {"top": top, "left": left}


def _hillshade_pairs(split: str, size: int, n: int, seed: int) -> tuple[Tensor, Tensor, Tensor, list[str], dict[str, Tensor]]:
    # Checked against both splits' regions, so that a model trained at a size can be tested at it.
    largest = min(min(region.shape[-2:]) for part in ("train", "test") for _, region, _ in _hillshade_regions(part))
    _check_size("hillshade", size, largest, "the narrowest test strip of the maps")
    names, regions, offsets = zip(*_hillshade_regions(split))
    crops, source, top, left = sample_patches(list(regions), size, n, seed)
    low = crops.amin(dim=(1, 2, 3), keepdim=True)
    high = crops.amax(dim=(1, 2, 3), keepdim=True)
    # A flat crop (a lake) would divide 0 by 0; it becomes a flat 0 instead.
    elevation = ((crops - low) / (high - low).clamp(min=1e-6)).float()
    left = left + torch.tensor(offsets)[source]  # the column in the whole map, not in the region
    return elevation, hillshade(elevation), source, list(names), {"top": top, "left": left}


def _label_pairs(split: str, size: int, n: int, seed: int) -> tuple[Tensor, Tensor, Tensor, list[str], dict[str, Tensor]]:
    _check_size("labels", size, MAX_LABELS_SIZE, "drawn at any size; the bound only catches a typo")
    shapes = load_shapes(split, n=n, size=size, seed=seed)
    target = shapes.images
    # Every palette colour has a channel at 1 on a black background, so the brightest channel is the coverage.
    covered = target.amax(1, keepdim=True) >= 0.5
    kind = shapes.attributes["shape"].float().view(-1, 1, 1, 1)
    labels_map = covered * (kind + 1) / len(SHAPE_KINDS)
    return labels_map, target, shapes.labels, shapes.classes, dict(shapes.attributes)


@register_dataset(
    "pairs",
    online=False,
    description="aligned image pairs for pix2pix, stacked as input + target channels: "
    "task=edges (Canny -> photo), hillshade (elevation -> shaded map), labels (shape mask -> shape), colour (gray -> RGB), "
    "pencil, pencil-texture (photo and the filter's texture), pencil-tone (also its tone map) and oil (photo -> its classical rendering)",
    splits=("train", "test"),
)
def load_pairs(split: str = "train", *, task: str = "edges", size: int = 64, n: int | None = None, seed: int = 0) -> ImageDataset:
    """Aligned pairs of ``task``, each stacked as one ``(input + target channels) x size x size`` image (see the module docstring).

    Args:
        split: ``"train"`` or ``"test"``: different photographs, map regions or random streams.
        task: one of :data:`PAIR_TASKS`: ``"edges"``, ``"hillshade"``, ``"labels"``, ``"colour"``,
            ``"pencil"``, ``"pencil-texture"``, ``"pencil-tone"``, ``"oil"``.
        size: the side of the pairs, from 16 to what the task's sources allow (300 for the photo
            tasks, 256 for the styles, 72 for hillshade, 512 for labels).
        n: how many pairs (default 1000 for train, 200 for test).
        seed: the seed of the crops' positions (of the shapes' draws for ``labels``); the same
            ``(task, split, size, n, seed)`` gives identical pairs.

    Use :func:`split_pair` to cut the images into inputs and targets.
    """
    check_choice_option("task", task, tuple(PAIR_TASKS))
    check_choice_option("split", split, tuple(DEFAULT_N))
    n = DEFAULT_N[split] if n is None else n
    check_int_option("n", n)
    check_int_option("seed", seed, minimum=0)
    check_int_option("size", size, minimum=MIN_SIZE)
    if task == "hillshade":
        given, target, labels, classes, attributes = _hillshade_pairs(split, size, n, seed)
    elif task == "labels":
        given, target, labels, classes, attributes = _label_pairs(split, size, n, seed)
    elif task in ("pencil", "pencil-texture", "pencil-tone", "oil"):
        given, target, labels, classes, attributes = _style_pairs(task, split, size, n, seed)
    else:
        given, target, labels, classes, attributes = _photo_pairs(task, split, size, n, seed)
    images = torch.cat([given, target], 1).contiguous()
    return ImageDataset(images, labels.long(), classes, name="pairs", split=split, attributes=attributes)
