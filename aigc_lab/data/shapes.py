"""Coloured shapes drawn by the package: a dataset whose every attribute is known.

The conditional models of chapter 4 are asked for "a red triangle"; this dataset lets the book
check that what they draw really is one. Each image shows one shape of :data:`SHAPE_KINDS` in
one colour of :data:`COLOURS` on a black background. Its class is the (shape, colour) pair::

    labels[i] = shape_index * n_colours + colour_index      classes[k] = "red triangle", ...

so a classifier trained on the labels measures "shape and colour both right". The pose of
every image is kept in ``attributes`` (one tensor of length ``N`` each):

==========  ==============================================================================
key         meaning
==========  ==============================================================================
shape       index into :data:`SHAPE_KINDS` (int64; the full tuple, whatever ``shapes=`` is)
colour      index into :data:`COLOUR_NAMES` (int64; the full tuple, whatever ``colours=`` is)
size        circumradius (centre to farthest point) as a fraction of the image side, uniform in
            :data:`SIZE_RANGE`
x, y        the centre, as fractions of the side from the left and from the top edge, each
            uniform in ``[size + MARGIN, 1 - size - MARGIN]`` (so the shape, at any rotation,
            stays at least :data:`MARGIN` away from every edge)
rotation    degrees counter-clockwise as seen on screen, uniform in :data:`ROTATION_RANGE`;
            at 0 the triangle and the star point up and the square and the cross are upright.
            The shapes are symmetric, so ``rotation`` only matters modulo 90 (square, cross),
            120 (triangle) or 72 (star) degrees, and not at all for the circle
==========  ==============================================================================

All the units are fractions of the side, so the same attributes describe the same picture at
any ``size`` (16 x 16 for chapter 4's CPU runs, 32 x 32 by default).

How :func:`render_shapes` draws (vectorised over a batch, no loop over images): each pixel is
split into ``supersample x supersample`` sub-pixels; for each sub-pixel centre the exact signed
distance to the shape's outline is computed in the shape's own frame (rotated and scaled; the
formulas of Inigo Quilez's "2D distance functions" notes), turned into a coverage
``clamp(1/2 - distance / subpixel, 0, 1)``, and averaged over the pixel. This anti-aliases the
edges, so the shapes stay smooth and recognisable at 16 x 16. The value of a pixel is its coverage
times the colour, rounded to 8 bits: the dataset has exactly 256 levels (``levels=256``).

The splits ``train``, ``val`` and ``test`` draw from three independent random streams of
``numpy.random.default_rng([seed, split_number])``: the same ``(split, seed, n, size)`` gives
identical images, and different splits share none (their poses are continuous random numbers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from aigc_lab.data.registry import ImageDataset, check_int_option, register_dataset

SHAPE_KINDS = ("circle", "square", "triangle", "star", "cross")

# Six colours far apart in RGB (every pair differs by 1 in at least one channel), each clearly
# named. On black every one of them is bright enough to see; a pixel at the edge is a darker
# shade of the same colour (coverage x colour), never another colour of the palette.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "magenta": (1.0, 0.0, 1.0),
    "cyan": (0.0, 1.0, 1.0),
}
COLOUR_NAMES = tuple(COLOURS)
BACKGROUND = (0.0, 0.0, 0.0)

SIZE_RANGE = (0.25, 0.42)  # circumradius / side: at 16 px a shape spans 8 to 13.4 pixels
MARGIN = 0.05  # the shape keeps at least this share of the side from every edge
ROTATION_RANGE = (0.0, 360.0)  # degrees, counter-clockwise
STAR_INNER_RADIUS = 0.5  # inner corners of the 5-pointed star, relative to its tips (a plump star, clear at 16 px)
CROSS_ARM_WIDTH = 0.7  # the full width of a cross's arm, relative to its circumradius

SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}
DEFAULT_N = {"train": 5000, "val": 1000, "test": 1000}
MIN_SIZE = 8
_CHUNK_POINTS = 2**16


# ---------------------------------------------------------------- classes


def _index(value: object, names: Sequence[str], what: str) -> int:
    if isinstance(value, str):
        if value not in names:
            raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(names)}")
        return names.index(value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 0 <= value < len(names):
        return int(value)
    raise ValueError(f"{what} must be a name ({', '.join(names)}) or an index 0-{len(names) - 1}, got {value!r}")


def shape_class(shape: str | int, colour: str | int, *, shapes: Sequence[str] = SHAPE_KINDS, colours: Sequence[str] = COLOUR_NAMES) -> int:
    """The class index of a (shape, colour) pair: ``shape_index * len(colours) + colour_index``.

    ``shape_class("triangle", "red") == 12`` with the default palette. Pass the dataset's
    ``shapes``/``colours`` options when it was loaded with a subset.
    """
    return _index(shape, tuple(shapes), "shape") * len(colours) + _index(colour, tuple(colours), "colour")


def class_attributes(k: int, *, shapes: Sequence[str] = SHAPE_KINDS, colours: Sequence[str] = COLOUR_NAMES) -> tuple[str, str]:
    """The ``(shape, colour)`` names of class ``k``: ``class_attributes(12) == ("triangle", "red")``."""
    n = len(shapes) * len(colours)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < n:
        raise ValueError(f"a class index must be an integer 0-{n - 1}, got {k!r}")
    return tuple(shapes)[int(k) // len(colours)], tuple(colours)[int(k) % len(colours)]


def class_name(shape: str, colour: str) -> str:
    """The class name of a pair, colour first as in English: ``"red triangle"``."""
    return f"{colour} {shape}"


def shape_classes(shapes: Sequence[str] = SHAPE_KINDS, colours: Sequence[str] = COLOUR_NAMES) -> list[str]:
    """All class names in label order: ``["red circle", "green circle", ..., "cyan cross"]``."""
    return [class_name(s, c) for s in shapes for c in colours]


# ---------------------------------------------------------------- signed distances
# Each takes coordinates (u, v) in the shape's frame, v pointing up, scaled so the circumradius
# is 1, and returns the signed distance to the outline (negative inside) in the same units.


def _length(u: Tensor, v: Tensor) -> Tensor:
    return torch.sqrt(u * u + v * v)


def _sd_box(u: Tensor, v: Tensor, half_u: float, half_v: float) -> Tensor:
    qu, qv = u.abs() - half_u, v.abs() - half_v
    return _length(qu.clamp(min=0), qv.clamp(min=0)) + torch.maximum(qu, qv).clamp(max=0)


def _sd_circle(u: Tensor, v: Tensor) -> Tensor:
    return _length(u, v) - 1


def _sd_square(u: Tensor, v: Tensor) -> Tensor:
    half = 1 / math.sqrt(2)
    return _sd_box(u, v, half, half)


def _sd_triangle(u: Tensor, v: Tensor) -> Tensor:
    """Equilateral, apex up, centroid at the origin (Quilez's sdEquilateralTriangle)."""
    k = math.sqrt(3)
    r = k / 2  # half the side of a triangle of circumradius 1
    pu, pv = u.abs() - r, v + r / k
    fold = pu + k * pv > 0  # reflect into the region of the base edge
    pu, pv = torch.where(fold, (pu - k * pv) / 2, pu), torch.where(fold, (-k * pu - pv) / 2, pv)
    pu = pu - pu.clamp(-2 * r, 0)
    return -_length(pu, pv) * torch.sign(pv)


def _sd_star(u: Tensor, v: Tensor) -> Tensor:
    """Five points, one up, tips at radius 1 and inner corners at STAR_INNER_RADIUS (Quilez's sdStar5)."""
    k1u, k1v = 0.809016994375, -0.587785252292  # cos 36, -sin 36
    k2u, k2v = -k1u, k1v
    pu, pv = u.abs(), v
    d = (k1u * pu + k1v * pv).clamp(min=0)  # fold the plane into one of the ten half-points
    pu, pv = pu - 2 * d * k1u, pv - 2 * d * k1v
    d = (k2u * pu + k2v * pv).clamp(min=0)
    pu, pv = pu - 2 * d * k2u, pv - 2 * d * k2v
    pu, pv = pu.abs(), pv - 1
    bau, bav = STAR_INNER_RADIUS * -k1v, STAR_INNER_RADIUS * k1u - 1  # from the tip to the inner corner
    h = ((pu * bau + pv * bav) / (bau * bau + bav * bav)).clamp(0, 1)
    return _length(pu - bau * h, pv - bav * h) * torch.sign(pv * bau - pu * bav)


def _sd_cross(u: Tensor, v: Tensor) -> Tensor:
    """A plus sign: the union of two bars whose corners lie on the unit circle."""
    half_width = CROSS_ARM_WIDTH / 2
    half_length = math.sqrt(1 - half_width**2)
    return torch.minimum(_sd_box(u, v, half_length, half_width), _sd_box(u, v, half_width, half_length))


_DISTANCES = {"circle": _sd_circle, "square": _sd_square, "triangle": _sd_triangle, "star": _sd_star, "cross": _sd_cross}


# ---------------------------------------------------------------- rendering


def _indices(values: object, names: Sequence[str], what: str) -> Tensor:
    """Names or indices (one, a sequence or a tensor) as an int64 tensor of indices into ``names``."""
    if isinstance(values, Tensor):
        if values.is_floating_point() or values.dtype == torch.bool:
            raise ValueError(f"{what} must be given as names or integer indices, got a {values.dtype} tensor")
        values = values.reshape(-1).tolist()
    elif isinstance(values, (str, int, np.integer)):
        values = [values]
    return torch.tensor([_index(v, names, what) for v in values], dtype=torch.long)


def _floats(values: object, what: str) -> Tensor:
    tensor = torch.as_tensor(values, dtype=torch.float32).reshape(-1)
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{what} must be finite numbers, got {values!r}")
    return tensor


def render_shapes(
    shape: object,
    colour: object,
    size: object,
    x: object,
    y: object,
    rotation: object,
    image_size: int = 32,
    *,
    supersample: int = 4,
) -> Tensor:
    """Draw shapes from their attributes: an ``N x 3 x image_size x image_size`` float32 tensor.

    Every argument but ``image_size`` is one value or ``N`` values (a sequence or a 1-D tensor),
    broadcast against each other, with the units of the module docstring:

    Args:
        shape: a name of :data:`SHAPE_KINDS` or its index.
        colour: a name of :data:`COLOURS` or its index in :data:`COLOUR_NAMES`.
        size: circumradius as a fraction of the side, in ``(0, 0.5]``.
        x, y: centre as fractions of the side, from the left and from the top.
        rotation: degrees counter-clockwise.
        image_size: the side in pixels.
        supersample: sub-pixels per pixel side for anti-aliasing.

    The values are coverage x colour on black, rounded to 8 bits (multiples of 1/255). A shape
    that does not fit (``x - size < 0`` etc.) is cut off by the border, not refused;
    :func:`load_shapes` only draws shapes that fit. ``render_shapes("star", "red", 0.4, 0.5,
    0.5, 0)`` draws one red star in the middle of a 32 x 32 image. With the attributes of a
    ``shapes`` dataset it returns exactly the dataset's images.
    """
    check_int_option("image_size", image_size)
    check_int_option("supersample", supersample)
    shapes, colours = _indices(shape, SHAPE_KINDS, "shape"), _indices(colour, COLOUR_NAMES, "colour")
    size, x, y, rotation = (_floats(v, name) for v, name in ((size, "size"), (x, "x"), (y, "y"), (rotation, "rotation")))
    try:
        shapes, colours, size, x, y, rotation = torch.broadcast_tensors(shapes, colours, size, x, y, rotation)
    except RuntimeError:
        lengths = [len(t) for t in (shapes, colours, size, x, y, rotation)]
        raise ValueError(
            f"shape, colour, size, x, y and rotation must have one value or the same number N, got lengths {lengths}"
        ) from None
    if len(size) and not (size > 0).all():
        raise ValueError(f"size (the circumradius as a fraction of the side) must be > 0, got min {float(size.min())}")

    n, side = len(shapes), image_size
    # Pixel centres as fractions of the side; in the shape's frame v points up.
    centres = (torch.arange(side, dtype=torch.float32) + 0.5) / side
    grid_y, grid_x = torch.meshgrid(centres, centres, indexing="ij")
    grid_x, grid_y = grid_x.reshape(1, -1), grid_y.reshape(1, -1)
    # Offsets of the sub-pixel centres from their pixel's centre, in fractions of the side.
    steps = ((torch.arange(supersample, dtype=torch.float32) + 0.5) / supersample - 0.5) / side
    offset_y, offset_x = (t.reshape(1, -1) for t in torch.meshgrid(steps, steps, indexing="ij"))
    angle = torch.deg2rad(rotation)
    cos, sin = torch.cos(angle)[:, None], torch.sin(angle)[:, None]
    coverage = torch.empty(n, side * side)
    chunk = max(1, _CHUNK_POINTS // (side * side))  # small enough for the temporaries to stay in the CPU cache
    for k, name in enumerate(SHAPE_KINDS):
        distance_to = _DISTANCES[name]
        for part in torch.nonzero(shapes == k).flatten().split(chunk):
            r, c, s_ = size[part, None], cos[part], sin[part]
            dx, dy = (grid_x - x[part, None]) / r, (y[part, None] - grid_y) / r
            u, v = c * dx + s_ * dy, c * dy - s_ * dx  # rotated by -rotation into the shape's frame
            distance = distance_to(u, v) * (r * side)  # in pixels
            cover = (0.5 - distance).clamp(0, 1)
            if supersample > 1:
                # Only a pixel within sqrt(1/2) of the outline can be partly covered: supersample those.
                rows, columns = torch.nonzero(distance.abs() < 0.71, as_tuple=True)
                r, c, s_ = r[rows], c[rows], s_[rows]
                du, dv = (c * offset_x - s_ * offset_y) / r, (-c * offset_y - s_ * offset_x) / r
                sub = distance_to(u[rows, columns, None] + du, v[rows, columns, None] + dv) * (r * side * supersample)
                cover[rows, columns] = (0.5 - sub).clamp(0, 1).mean(1)
            coverage[part] = cover
    coverage = coverage.reshape(n, side, side)
    rgb = torch.tensor([COLOURS[c] for c in COLOUR_NAMES], dtype=torch.float32)[colours]  # (N, 3)
    background = torch.tensor(BACKGROUND, dtype=torch.float32)
    images = background[None, :, None, None] + coverage[:, None] * (rgb - background)[:, :, None, None]
    return torch.round(images * 255) / 255


# ---------------------------------------------------------------- dataset


def _subset(option: str, value: object, names: tuple[str, ...]) -> list[str]:
    if value is None:
        return list(names)
    chosen = [part.strip() for part in value.split(",")] if isinstance(value, str) else value
    valid = isinstance(chosen, (list, tuple)) and chosen and all(isinstance(c, str) and c in names for c in chosen)
    if valid and len(set(chosen)) == len(chosen):
        return list(chosen)
    raise ValueError(
        f"option {option!r} must be a non-empty list (or comma-separated string) of distinct names from {', '.join(names)}; got {value!r}"
    )


@register_dataset(
    "shapes",
    online=False,
    description=f"{len(SHAPE_KINDS)} shapes x {len(COLOURS)} colours on black, random size/position/rotation; "
    "label = (shape, colour), e.g. 'red triangle'",
    splits=tuple(SPLIT_STREAMS),
)
def load_shapes(
    split: str = "train",
    *,
    n: int | None = None,
    size: int = 32,
    seed: int = 0,
    shapes: Sequence[str] | str | None = None,
    colours: Sequence[str] | str | None = None,
) -> ImageDataset:
    """Procedural coloured shapes with their attributes (see the module docstring for the units).

    Each image draws its shape and its colour uniformly and independently from ``shapes`` and
    ``colours``, then its size, position and rotation uniformly from the ranges of the module
    docstring. ``labels[i] = shapes.index(shape) * len(colours) + colours.index(colour)`` and
    ``classes = ["red circle", "green circle", ...]`` (:func:`shape_classes`).

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``: independent random streams, no shared images.
        n: number of images (default 5000 for train, 1000 for val and test).
        size: image side in pixels, at least 8 (16 and 32 are the book's sizes).
        seed: the random seed; the same ``(split, seed, n, size)`` gives identical images, and
            the first ``n`` images of a larger ``n`` are the same pictures.
        shapes: a subset of :data:`SHAPE_KINDS` (a list, or names separated by commas), in the
            order of the labels; default all.
        colours: a subset of :data:`COLOUR_NAMES`, likewise.
    """
    shapes, colours = _subset("shapes", shapes, SHAPE_KINDS), _subset("colours", colours, COLOUR_NAMES)
    n = DEFAULT_N[split] if n is None else n
    check_int_option("n", n)
    check_int_option("size", size, minimum=MIN_SIZE)
    check_int_option("seed", seed, minimum=0)
    # One row of six uniform numbers per image, so the first n images do not depend on n.
    draw = np.random.default_rng([seed, SPLIT_STREAMS[split]]).random((n, 6))
    shape_label = np.minimum((draw[:, 0] * len(shapes)).astype(np.int64), len(shapes) - 1)
    colour_label = np.minimum((draw[:, 1] * len(colours)).astype(np.int64), len(colours) - 1)
    radius = SIZE_RANGE[0] + draw[:, 2] * (SIZE_RANGE[1] - SIZE_RANGE[0])
    x, y = (radius + MARGIN + draw[:, j] * (1 - 2 * (radius + MARGIN)) for j in (3, 4))
    rotation = ROTATION_RANGE[0] + draw[:, 5] * (ROTATION_RANGE[1] - ROTATION_RANGE[0])
    attributes = {
        "shape": torch.tensor([SHAPE_KINDS.index(shapes[k]) for k in shape_label], dtype=torch.long),
        "colour": torch.tensor([COLOUR_NAMES.index(colours[k]) for k in colour_label], dtype=torch.long),
        "size": torch.from_numpy(radius).float(),
        "x": torch.from_numpy(x).float(),
        "y": torch.from_numpy(y).float(),
        "rotation": torch.from_numpy(rotation).float(),
    }
    a = attributes
    images = render_shapes(a["shape"], a["colour"], a["size"], a["x"], a["y"], a["rotation"], image_size=size)
    labels = torch.from_numpy(shape_label * len(colours) + colour_label).long()
    return ImageDataset(images, labels, shape_classes(shapes, colours), name="shapes", split=split, attributes=attributes, levels=256)
