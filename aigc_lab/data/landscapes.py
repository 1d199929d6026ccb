"""Procedural landscapes drawn by the package, each with its semantic layout map.

Chapter 6.3 generates landscapes, chapter 4.5 translates a layout map into a scene (pix2pix),
and a segmenter is asked to recover the layout from a generated scene. This dataset gives all
three something to learn from and something to check against: every scene is drawn from known
attributes, and every pixel's class is known exactly.

A scene, back to front: a sky gradient with a sun (a moon and stars at night) and its glow; a
far mountain range and a lower, darker near range, each a 1-D fractal ridge line; below the
horizon either a lake that mirrors the sky and the mountains (darkened, rippled) in front of a
grass bank, or grass alone; and a few trees (firs and round trees) standing on the grass.

**The layout map** (``attributes["layout"]``, int64 ``N x size x size``) gives each pixel the class
of :data:`LAYOUT_CLASSES` of the front-most layer that covers at least half of it (exactly: that
covers the pixel's centre):

=====  ==========  ============================================================
index  class       what it covers
=====  ==========  ============================================================
0      sky         the sky, the sun or moon, the stars
1      mountain    both mountain ranges, snow included: from the ridge line down to the horizon
2      water       the lake: from the horizon down to the shore line
3      vegetation  the grass below the horizon (or the shore) and the trees, trunks included
=====  ==========  ============================================================

With ``with_layout="index"`` (or ``True``) the map is stacked in front of the scene as one more
channel holding ``class / 3`` (0, 1/3, 2/3, 1); with ``with_layout="onehot"`` as four 0/1 channels,
one per class. The layout comes first and the scene last, as in :mod:`.pairs`, so a random crop
or flip keeps them aligned and pix2pix (``input_channels`` = 1 or 4) reads them as input and
target; :func:`split_layout` cuts them apart and :func:`layout_to_rgb` colours a map with
:data:`LAYOUT_COLOURS` for display.

The label of a scene is its time of day, an index into :data:`TIMES_OF_DAY` (``classes``). Every
attribute is in ``attributes``; the first ones are one value per image (length ``N``):

==============  ==================================================================================
key             meaning (positions are fractions of the side, ``y`` from the top edge)
==============  ==================================================================================
time            index into :data:`TIMES_OF_DAY` (int64): day (blue sky, white sun), dusk (violet
                to orange sky, large orange sun low over the mountains), night (dark blue sky,
                crescent moon, stars); uniform over the three. The same as ``labels``
horizon         the foot of the mountains and the top of the water or grass, uniform in
                :data:`HORIZON_RANGE`
mountain_height the far range's highest point above the horizon, uniform in
                :data:`MOUNTAIN_HEIGHT_RANGE`; the near range reaches
                :data:`NEAR_RANGE_RATIO` of it
roughness       the amplitude ratio of successive octaves of the ridge lines, uniform in
                :data:`ROUGHNESS_RANGE` (low: rounded hills, high: jagged peaks)
has_water       1 when the scene has a lake, else 0 (int64), probability :data:`WATER_PROBABILITY`
water_extent    the share of the band below the horizon that the lake covers (on average over the
                columns), uniform in :data:`WATER_EXTENT_RANGE`; 0 without a lake
has_trees       1 when the scene has trees, else 0 (int64), probability :data:`TREE_PROBABILITY`
n_trees         how many (int64), uniform in 1 to :data:`MAX_TREES` when ``has_trees``, else 0
sun_x, sun_y    the centre of the sun (the moon at night); ``sun_x`` uniform in
                :data:`SUN_X_RANGE`; by day and night the sun is always above the far range's
                highest point, at dusk it is low and may be partly behind the mountains
sun_radius      the disc's radius, :data:`SUN_RADIUS` of the time of day
==============  ==================================================================================

and three are maps that locate the layout's boundaries at this ``size``:

==========  ==========================================================================================
ridge       float32 ``N x size``: the top of the mountains (the higher of the two ridge lines) at each
            column's centre, as a fraction of the side from the top; a pixel whose centre lies
            between ``ridge`` and ``horizon`` is mountain unless a tree stands in front of it
shore       float32 ``N x size``: where the lake ends and the grass begins, at each column's centre;
            equal to ``horizon`` when there is no lake. Water is exactly ``horizon <= y < shore``
layout      int64 ``N x size x size``: the layout map above
==========  ==========================================================================================

How a scene is drawn (:func:`render_landscapes`, vectorised over a batch, no loop over images):

* Everything is a function of continuous positions, evaluated at pixel centres, so the same
  attributes draw the same scene at any size (32 x 32 for CPU runs, 64 x 64 by default).
* A ridge line is a sum of :data:`OCTAVES` octaves of 1-D value noise (random values on
  ``2**(k+1) + 1`` evenly spaced points, joined by straight lines, which is what midpoint
  displacement builds), octave ``k`` weighted ``roughness**k``; the sum is scaled to ``[0, 1]``
  on a fixed fine grid and the ridge is ``horizon - height * (floor + (1 - floor) * profile)``.
  Each range's faces are lit or shaded by the slope of its first :data:`FACET_OCTAVES` octaves
  (a face that descends toward the sun's side is bright); the far range is hazed toward the
  sky's colour and capped with snow above :data:`SNOW_LINE` of its height (not at night).
* A tree is a fir (a triangle on a short trunk) or a round tree (a disc on a taller trunk); its
  base is on the grass (below the shore), it is taller the nearer it stands (the lower its
  base), and nearer trees are drawn over farther ones.
* The lake mirrors the pixels above the horizon (sky, sun and mountains) about the horizon,
  displaced sideways by a ripple, and mixes them with the water's own colour, more of it the
  nearer the shore (less is reflected when one looks down into water).
* Each layer's edge is anti-aliased with its exact vertical distance to the pixel centre
  (``coverage = clamp(distance / pixel + 1/2, 0, 1)``), so a pixel's class is the layer whose
  coverage is at least 1/2: the map is aligned with the picture to the pixel.
* The values are rounded to 8 bits: the dataset has exactly 256 levels (``levels=256``); the
  stacked layout channels (multiples of 1/3) are on the same levels.

Each scene is decided by one row of :data:`DRAWS_PER_IMAGE` uniform random numbers, so the first
``n`` scenes of a larger ``n`` are the same pictures. The splits ``train``, ``val`` and ``test``
draw them from three independent streams of ``numpy.random.default_rng([seed, split_number])``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from aigc_lab.data.registry import ImageDataset, check_choice_option, check_int_option, register_dataset

TIMES_OF_DAY = ("day", "dusk", "night")
#: the classes of the layout map, in index order
LAYOUT_CLASSES = ("sky", "mountain", "water", "vegetation")
SKY, MOUNTAIN, WATER, VEGETATION = range(4)
#: display colours of the layout classes (RGB in [0, 1]) used by :func:`layout_to_rgb`
LAYOUT_COLOURS = {
    "sky": (0.55, 0.80, 1.0),
    "mountain": (0.55, 0.35, 0.20),
    "water": (0.05, 0.20, 0.75),
    "vegetation": (0.15, 0.70, 0.15),
}
#: ``with_layout`` value -> how many layout channels are stacked in front of the 3 scene channels
LAYOUT_CHANNELS = {"index": 1, "onehot": 4}

HORIZON_RANGE = (0.50, 0.68)
MOUNTAIN_HEIGHT_RANGE = (0.18, 0.40)  # so the highest peak stays at least 0.10 of the side below the top
NEAR_RANGE_RATIO = 0.55
RIDGE_FLOOR = (0.20, 0.10)  # far, near: the lowest point of a range above the horizon, as a share of its height
ROUGHNESS_RANGE = (0.40, 0.70)
OCTAVES = 6
FACET_OCTAVES = 3  # the octaves whose slopes shade the mountains' faces
SNOW_LINE = 0.78  # share of the far range's height above which its peaks are white
WATER_PROBABILITY = 0.5
WATER_EXTENT_RANGE = (0.30, 0.75)
SHORE_WAVE = 0.025  # the shore line's wiggle, as a fraction of the side
TREE_PROBABILITY = 0.6
MAX_TREES = 5
N_STARS = 16
SUN_X_RANGE = (0.12, 0.88)
SUN_RADIUS = {"day": 0.045, "dusk": 0.065, "night": 0.040}
SUN_GLOW = {"day": (0.25, 0.10), "dusk": (0.55, 0.22), "night": (0.10, 0.07)}  # (strength, radius)

# Colours of each time of day (RGB in [0, 1]); the sky is top -> horizon, raised to SKY_EXPONENT.
PALETTES: dict[str, dict[str, tuple[float, float, float]]] = {
    "day": {
        "sky_top": (0.22, 0.45, 0.88), "sky_horizon": (0.72, 0.86, 0.98), "sun": (1.0, 0.98, 0.86),
        "far": (0.42, 0.48, 0.62), "near": (0.26, 0.38, 0.30), "snow": (0.96, 0.97, 1.0),
        "water": (0.10, 0.30, 0.50), "grass_far": (0.50, 0.72, 0.28), "grass_near": (0.20, 0.48, 0.12),
        "crown": (0.08, 0.36, 0.12), "trunk": (0.36, 0.22, 0.10),
    },
    "dusk": {
        "sky_top": (0.20, 0.14, 0.42), "sky_horizon": (0.98, 0.56, 0.24), "sun": (1.0, 0.78, 0.38),
        "far": (0.46, 0.27, 0.40), "near": (0.20, 0.13, 0.22), "snow": (0.98, 0.74, 0.66),
        "water": (0.22, 0.12, 0.24), "grass_far": (0.42, 0.38, 0.16), "grass_near": (0.17, 0.19, 0.07),
        "crown": (0.10, 0.14, 0.06), "trunk": (0.16, 0.10, 0.06),
    },
    "night": {
        "sky_top": (0.01, 0.02, 0.08), "sky_horizon": (0.10, 0.15, 0.33), "sun": (0.93, 0.93, 0.84),
        "far": (0.15, 0.17, 0.28), "near": (0.07, 0.09, 0.15), "snow": (0.40, 0.44, 0.55),
        "water": (0.03, 0.05, 0.13), "grass_far": (0.10, 0.18, 0.14), "grass_near": (0.05, 0.10, 0.07),
        "crown": (0.02, 0.05, 0.04), "trunk": (0.04, 0.03, 0.03),
    },
}  # fmt: skip
SKY_EXPONENT = {"day": 1.0, "dusk": 1.6, "night": 1.2}

SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}
DEFAULT_N = {"train": 2000, "val": 500, "test": 500}
MIN_SIZE = 16
_CHUNK = 128  # scenes rendered at once: the temporaries stay small

# The columns of a scene's row of uniform numbers.
_SCALARS = 16
_LATTICE = [2 ** (k + 1) + 1 for k in range(OCTAVES)]
_RIDGE_DRAWS = sum(_LATTICE)
_SHORE_POINTS = 9
_GRASS_LATTICE = (9, 17)
_OFFSETS: dict[str, int] = {}
_at = 0
for _name, _width in (
    ("scalars", _SCALARS),
    ("far", _RIDGE_DRAWS),
    ("near", _RIDGE_DRAWS),
    ("shore", _SHORE_POINTS),
    ("trees", 4 * MAX_TREES),
    ("stars", 3 * N_STARS),
    ("grass", _GRASS_LATTICE[0] * _GRASS_LATTICE[1]),
):
    _OFFSETS[_name] = _at
    _at += _width
#: how many uniform numbers decide one scene
DRAWS_PER_IMAGE = _at
del _at, _name, _width
_FINE = np.linspace(0.0, 1.0, 257)  # where a ridge profile is scaled to [0, 1], whatever the size


def _palette(key: str) -> np.ndarray:
    return np.array([PALETTES[t][key] for t in TIMES_OF_DAY], dtype=np.float32)  # (3 times, 3 channels)


def sky_colour(time: int | str, y: object, horizon: object, sun_distance: object = None) -> np.ndarray:
    """The sky's colour at height ``y`` (fraction of the side from the top) under ``horizon``: RGB in a new last axis.

    The gradient: ``t = clip(y / horizon, 0, 1) ** SKY_EXPONENT[time]`` mixes ``sky_top``
    (``t = 0``) and ``sky_horizon`` (``t = 1``) of :data:`PALETTES`. Given ``sun_distance`` (from the
    centre of the sun, in fractions of the side) it adds the glow: the sun's colour mixed in with
    weight ``strength * exp(-(sun_distance / radius)**2)`` of :data:`SUN_GLOW`. The sun's disc and
    the stars are not included. ``time`` is a name or index of :data:`TIMES_OF_DAY`.
    """
    if isinstance(time, str):
        check_choice_option("time", time, TIMES_OF_DAY)
        time = TIMES_OF_DAY.index(time)
    name = TIMES_OF_DAY[int(time)]
    t = np.clip(np.asarray(y, dtype=np.float64) / np.asarray(horizon, dtype=np.float64), 0, 1) ** SKY_EXPONENT[name]
    top, bottom = np.array(PALETTES[name]["sky_top"]), np.array(PALETTES[name]["sky_horizon"])
    colour = top + t[..., None] * (bottom - top)
    if sun_distance is not None:
        strength, radius = SUN_GLOW[name]
        halo = strength * np.exp(-((np.asarray(sun_distance, dtype=np.float64) / radius) ** 2))
        colour = colour + halo[..., None] * (np.array(PALETTES[name]["sun"]) - colour)
    return colour


def layout_to_rgb(layout: Tensor) -> Tensor:
    """Colour an int64 layout map ``N x H x W`` (or ``H x W``) with :data:`LAYOUT_COLOURS`: float32 ``N x 3 x H x W``."""
    if not isinstance(layout, Tensor) or layout.dtype != torch.int64 or layout.dim() not in (2, 3):
        got = f"{layout.dtype} of shape {tuple(layout.shape)}" if isinstance(layout, Tensor) else type(layout).__name__
        raise ValueError(f"a layout map must be an int64 tensor N x H x W (or H x W), got {got}")
    if layout.numel() and (int(layout.min()) < 0 or int(layout.max()) >= len(LAYOUT_CLASSES)):
        raise ValueError(f"layout classes must lie in [0, {len(LAYOUT_CLASSES) - 1}], got [{int(layout.min())}, {int(layout.max())}]")
    colours = torch.tensor([LAYOUT_COLOURS[c] for c in LAYOUT_CLASSES], dtype=torch.float32)
    rgb = colours[layout]  # ... x H x W x 3
    return rgb.movedim(-1, -3)


def layout_channels(layout: Tensor, mode: str = "index") -> Tensor:
    """The layout map ``N x H x W`` as stacked channels: ``"index"`` -> ``N x 1 x H x W`` of ``class / 3``, ``"onehot"`` -> ``N x 4 x H x W``."""
    check_choice_option("mode", mode, tuple(LAYOUT_CHANNELS))
    if mode == "index":
        return (layout.float() / (len(LAYOUT_CLASSES) - 1)).unsqueeze(1)
    return torch.nn.functional.one_hot(layout, len(LAYOUT_CLASSES)).movedim(-1, 1).float()


def split_layout(images: Tensor, mode: str = "index") -> tuple[Tensor, Tensor]:
    """``(layout channels, scene)`` of images loaded with ``with_layout=mode``; views, not copies.

    :func:`layout_from_channels` turns the first part back into an int64 map.
    """
    check_choice_option("mode", mode, tuple(LAYOUT_CHANNELS))
    k = LAYOUT_CHANNELS[mode]
    if not isinstance(images, Tensor) or images.dim() not in (3, 4) or images.shape[-3] != k + 3:
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"landscapes with_layout={mode!r} are N x {k + 3} x H x W ({k} layout + 3 scene channels), got {got}")
    return images[..., :k, :, :], images[..., k:, :, :]


def layout_from_channels(channels: Tensor) -> Tensor:
    """The int64 map ``N x H x W`` from ``N x 1`` (``class / 3``, rounded to the nearest class) or ``N x 4`` (argmax) channels."""
    if not isinstance(channels, Tensor) or channels.dim() != 4 or channels.shape[1] not in (1, 4):
        got = tuple(channels.shape) if isinstance(channels, Tensor) else type(channels).__name__
        raise ValueError(f"layout channels must be N x 1 x H x W (class / 3) or N x 4 x H x W (one-hot), got {got}")
    if channels.shape[1] == 1:
        return torch.round(channels[:, 0] * (len(LAYOUT_CLASSES) - 1)).clamp(0, len(LAYOUT_CLASSES) - 1).long()
    return channels.argmax(1)


# ---------------------------------------------------------------- rendering


def _noise_1d(lattice: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Piecewise-linear value noise: ``lattice`` (n, L) values on L even points of [0, 1], at ``x`` (m,) -> (n, m)."""
    points = lattice.shape[1]
    position = x * (points - 1)
    left = np.clip(np.floor(position).astype(np.int64), 0, points - 2)
    t = (position - left).astype(np.float32)
    return lattice[:, left] * (1 - t) + lattice[:, left + 1] * t


def _fractal(draws: np.ndarray, roughness: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A ridge profile in [0, 1] at ``x``: OCTAVES octaves of value noise weighted ``roughness**k``, scaled on the fine grid.

    Also returns the sum of the first :data:`FACET_OCTAVES` octaves alone, on the same scale: its
    slope decides which faces of the mountains the sun lights (the fine octaves would only streak them).
    """
    values = 2 * draws - 1  # (n, sum of lattices) in [-1, 1]
    total_at = np.zeros((len(draws), len(x)), dtype=np.float32)
    total_fine = np.zeros((len(draws), len(_FINE)), dtype=np.float32)
    start = 0
    for k, points in enumerate(_LATTICE):
        lattice = values[:, start : start + points]
        weight = (roughness**k)[:, None].astype(np.float32)
        total_at += weight * _noise_1d(lattice, x)
        total_fine += weight * _noise_1d(lattice, _FINE)
        start += points
        if k + 1 == FACET_OCTAVES:
            coarse = total_at.copy()
    low, high = total_fine.min(1, keepdims=True), total_fine.max(1, keepdims=True)
    scale = np.maximum(high - low, 1e-6)
    return np.clip((total_at - low) / scale, 0, 1), (coarse - low) / scale


def _cover(distance: np.ndarray, side: int) -> np.ndarray:
    """Coverage of a pixel by a layer whose edge is ``distance`` (fraction of the side, positive inside) from its centre."""
    return np.clip(distance * side + 0.5, 0, 1)


def _mix(image: np.ndarray, colour: np.ndarray, cover: np.ndarray) -> np.ndarray:
    """``image`` (n, 3, S, S) with ``colour`` ((n, 3, S, S) or (n, 3, 1, 1)) laid over it with ``cover`` (n, S, S)."""
    return image + cover[:, None] * (colour - image)


def _mix_where(image: np.ndarray, colour: np.ndarray, cover: np.ndarray) -> None:
    """:func:`_mix` in place, computed only where ``cover > 0`` (a tree covers a few pixels of its image)."""
    i, r, c = np.nonzero(cover)
    colour = np.broadcast_to(colour, image.shape)
    image[i, :, r, c] += cover[i, r, c][:, None] * (colour[i, :, r, c] - image[i, :, r, c])


def _scalars(u: np.ndarray) -> dict[str, np.ndarray]:
    """The per-image attributes of the module docstring from the first _SCALARS uniforms of each row."""
    time = np.minimum((u[:, 0] * len(TIMES_OF_DAY)).astype(np.int64), len(TIMES_OF_DAY) - 1)
    horizon = HORIZON_RANGE[0] + u[:, 1] * (HORIZON_RANGE[1] - HORIZON_RANGE[0])
    height = MOUNTAIN_HEIGHT_RANGE[0] + u[:, 2] * (MOUNTAIN_HEIGHT_RANGE[1] - MOUNTAIN_HEIGHT_RANGE[0])
    roughness = ROUGHNESS_RANGE[0] + u[:, 3] * (ROUGHNESS_RANGE[1] - ROUGHNESS_RANGE[0])
    has_water = (u[:, 4] < WATER_PROBABILITY).astype(np.int64)
    extent = has_water * (WATER_EXTENT_RANGE[0] + u[:, 5] * (WATER_EXTENT_RANGE[1] - WATER_EXTENT_RANGE[0]))
    has_trees = (u[:, 6] < TREE_PROBABILITY).astype(np.int64)
    n_trees = has_trees * (1 + np.minimum((u[:, 7] * MAX_TREES).astype(np.int64), MAX_TREES - 1))
    sun_x = SUN_X_RANGE[0] + u[:, 8] * (SUN_X_RANGE[1] - SUN_X_RANGE[0])
    radius = np.array([SUN_RADIUS[t] for t in TIMES_OF_DAY])[time]
    peak = horizon - height  # the far range's highest point
    high_sun = radius + 0.02 + u[:, 9] * np.maximum(peak - 2 * radius - 0.04, 0)  # wholly above the peak
    low_sun = horizon - height * (0.25 + 0.85 * u[:, 9])  # dusk: down among the mountains
    sun_y = np.where(time == TIMES_OF_DAY.index("dusk"), low_sun, high_sun)
    return {
        "time": time,
        "horizon": horizon,
        "mountain_height": height,
        "roughness": roughness,
        "has_water": has_water,
        "water_extent": extent,
        "has_trees": has_trees,
        "n_trees": n_trees,
        "sun_x": sun_x,
        "sun_y": sun_y,
        "sun_radius": radius,
    }


def _render_chunk(u: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Scenes of the uniform rows ``u``: images (n, 3, S, S), layout (n, S, S), ridge (n, S), shore (n, S)."""
    n = len(u)
    a = _scalars(u)
    f32 = np.float32
    time = a["time"]
    horizon = a["horizon"].astype(f32)[:, None, None]
    height = a["mountain_height"].astype(f32)
    centres = ((np.arange(side) + 0.5) / side).astype(f32)
    x = centres[None, None, :]  # (1, 1, S)
    y = centres[None, :, None]  # (1, S, 1)
    colour = {key: _palette(key)[time][:, :, None, None] for key in PALETTES["day"]}  # each (n, 3, 1, 1)

    # Sky: gradient, glow, sun (a crescent moon at night), stars.
    exponent = np.array([SKY_EXPONENT[t] for t in TIMES_OF_DAY], dtype=f32)[time][:, None, None]
    t = np.clip(y / horizon, 0, 1) ** exponent  # (n, S, 1)
    image = colour["sky_top"] + t[:, None] * (colour["sky_horizon"] - colour["sky_top"])
    image = np.broadcast_to(image, (n, 3, side, side)).copy()
    sun_x, sun_y = a["sun_x"].astype(f32)[:, None, None], a["sun_y"].astype(f32)[:, None, None]
    radius = a["sun_radius"].astype(f32)[:, None, None]
    distance = np.sqrt((x - sun_x) ** 2 + (y - sun_y) ** 2)
    glow = np.array([SUN_GLOW[t_] for t_ in TIMES_OF_DAY], dtype=f32)[time]
    halo = glow[:, 0, None, None] * np.exp(-((distance / glow[:, 1, None, None]) ** 2))
    image = image + halo[:, None] * (colour["sun"] - image)
    disc = _cover(radius - distance, side)
    night = (time == TIMES_OF_DAY.index("night"))[:, None, None]
    shadow = _cover(radius * 0.95 - np.sqrt((x - sun_x - 0.55 * radius) ** 2 + (y - sun_y + 0.2 * radius) ** 2), side)
    disc = np.where(night, disc * (1 - shadow), disc)  # the moon is a crescent
    image = _mix(image, colour["sun"], disc)
    stars = u[:, _OFFSETS["stars"] : _OFFSETS["stars"] + 3 * N_STARS].reshape(n, N_STARS, 3)
    rows = np.minimum((stars[:, :, 1] * a["horizon"][:, None] * 0.9 * side).astype(np.int64), side - 1)
    cols = np.minimum((stars[:, :, 0] * side).astype(np.int64), side - 1)
    sparkle = np.zeros((n, side, side), dtype=f32)
    which = np.repeat(np.arange(n), N_STARS)
    sparkle[which, rows.ravel(), cols.ravel()] = (0.2 + 0.5 * stars[:, :, 2] ** 2).ravel()
    sparkle *= night * (1 - disc)
    image = image + sparkle[:, None] * (1 - image)

    # Mountains: two fractal ridge lines, the near one lower and darker.
    roughness = a["roughness"]
    far_o, near_o = _OFFSETS["far"], _OFFSETS["near"]
    profile_far, facets_far = _fractal(u[:, far_o : far_o + _RIDGE_DRAWS], roughness, centres)
    profile_near, facets_near = _fractal(u[:, near_o : near_o + _RIDGE_DRAWS], np.minimum(roughness + 0.1, 0.8), centres)
    h = height[:, None]
    ridge_far = horizon[:, 0] - h * (RIDGE_FLOOR[0] + (1 - RIDGE_FLOOR[0]) * profile_far)  # (n, S)
    ridge_near = horizon[:, 0] - NEAR_RANGE_RATIO * h * (RIDGE_FLOOR[1] + (1 - RIDGE_FLOOR[1]) * profile_near)
    ridge = np.minimum(ridge_far, ridge_near)
    # Faces lit by the sun's side: a face that descends toward the sun (slope of the coarse ridge) is bright.
    toward = np.sign(a["sun_x"] - 0.5).astype(f32)[:, None]
    slope_far = np.gradient(facets_far, axis=1) * side * h * (1 - RIDGE_FLOOR[0]) * toward
    slope_near = np.gradient(facets_near, axis=1) * side * NEAR_RANGE_RATIO * h * (1 - RIDGE_FLOOR[1]) * toward
    grass_o = _OFFSETS["grass"]
    texture_lattice = 2 * u[:, grass_o : grass_o + _GRASS_LATTICE[0] * _GRASS_LATTICE[1]].reshape(n, *_GRASS_LATTICE) - 1
    texture = _noise_2d(texture_lattice.astype(f32), centres)  # (n, S, S) in [-1, 1]

    altitude = (horizon - y) / h[:, :, None]  # height above the horizon as a share of the far range's height
    haze = 0.35 * (1 - np.clip(altitude, 0, 1))
    far = colour["far"] * (1 + 0.25 * np.tanh(3 * slope_far))[:, None, None, :]
    far = far + haze[:, None] * (colour["sky_horizon"] - far)
    snowy = (altitude > SNOW_LINE + 0.05 * texture) & ~night
    far = np.where(snowy[:, None], colour["snow"] * (1 + 0.12 * np.tanh(3 * slope_far))[:, None, None, :], far)
    near = colour["near"] * (1 + 0.25 * np.tanh(3 * slope_near))[:, None, None, :]
    near = near * (0.8 + 0.2 * np.clip(altitude / NEAR_RANGE_RATIO, 0, 1) + 0.06 * texture)[:, None]
    d_far, d_near = y - ridge_far[:, None, :], y - ridge_near[:, None, :]
    image = _mix(image, far, _cover(d_far, side))
    image = _mix(image, near, _cover(d_near, side))
    upper = image

    # Below the horizon: the lake (a rippled, darkened mirror image) and the grass.
    extent = a["water_extent"].astype(f32)
    shore_o = _OFFSETS["shore"]
    wiggle = SHORE_WAVE * _noise_1d(2 * u[:, shore_o : shore_o + _SHORE_POINTS].astype(f32) - 1, centres)
    has_water = a["has_water"].astype(bool)
    shore_mean = horizon[:, 0, 0] + extent * (1 - horizon[:, 0, 0])
    shore = np.where(has_water[:, None], shore_mean[:, None] + wiggle, horizon[:, 0])  # (n, S)
    phase_a, phase_b = 2 * np.pi * u[:, 11, None, None], 2 * np.pi * u[:, 12, None, None]
    depth = y - horizon  # >= 0 in the water
    wave = np.sin(2 * np.pi * (22 * depth + 0.6 * np.sin(2 * np.pi * 2.5 * x + phase_a)) + phase_b)  # (n, S, S)
    mirror_y = 2 * horizon - y + 0.004 * wave
    mirror_x = x + 0.012 * wave
    rows = np.clip((mirror_y * side).astype(np.int64), 0, side - 1)
    cols = np.clip((mirror_x * side).astype(np.int64), 0, side - 1)
    flat = upper.reshape(n, 3, side * side)
    reflection = np.take_along_axis(flat, (rows * side + cols).reshape(n, 1, side * side), axis=2).reshape(n, 3, side, side)
    look_down = np.clip(depth / np.maximum(shore_mean[:, None, None] - horizon, 1e-3), 0, 1)
    water = 0.82 * reflection * (1 + 0.10 * wave[:, None])
    water = water + (0.25 + 0.45 * look_down)[:, None] * (colour["water"] - water)
    near_share = np.clip((y - horizon) / (1 - horizon), 0, 1)
    grass = colour["grass_far"] + near_share[:, None] * (colour["grass_near"] - colour["grass_far"])
    grass = grass * (1 + 0.16 * texture + 0.04 * np.sin(2 * np.pi * 5 * near_share + phase_a))[:, None]  # gentle bands of meadow
    d_shore = y - shore[:, None, :]
    below = np.where(has_water[:, None, None, None], _mix(water, grass, _cover(d_shore, side)), grass)
    d_horizon = y - horizon
    image = _mix(image, below, _cover(np.broadcast_to(d_horizon, (n, side, 1)), side))

    layout = np.zeros((n, side, side), dtype=np.int64)
    layout[(d_far >= 0) | (d_near >= 0)] = MOUNTAIN
    below_mask = np.broadcast_to(d_horizon >= 0, (n, side, side))
    layout[below_mask] = VEGETATION
    layout[below_mask & (d_shore < 0) & has_water[:, None, None]] = WATER

    # Trees, far to near, standing on the grass.
    tree = u[:, _OFFSETS["trees"] : _OFFSETS["trees"] + 4 * MAX_TREES].reshape(n, MAX_TREES, 4).astype(f32)
    ground = np.where(has_water, shore_mean + SHORE_WAVE + 0.01, horizon[:, 0, 0] + 0.01)[:, None]
    base = ground + (0.1 + 0.9 * tree[:, :, 1]) * (1.03 - ground)
    depth_share = (base - horizon[:, 0]) / (1 - horizon[:, 0])
    tall = (0.05 + 0.22 * depth_share) * (0.7 + 0.6 * tree[:, :, 2])
    tall = np.where(np.arange(MAX_TREES)[None] < a["n_trees"][:, None], tall, 0)
    order = np.argsort(base, axis=1)
    pick = np.arange(n)[:, None]
    base, tall, tree = base[pick, order], tall[pick, order], tree[pick, order]
    for j in range(MAX_TREES):
        tx, b, th = tree[:, j, 0, None, None] * 0.92 + 0.04, base[:, j, None, None], tall[:, j, None, None]
        fir = (tree[:, j, 3] < 0.6)[:, None, None]
        present = (th > 0)
        trunk_top = b - np.where(fir, 0.16, 0.38) * th
        d_trunk = np.minimum(np.minimum(0.045 * th + 0.15 / side - np.abs(x - tx), b - y), y - trunk_top + 0.02 * th)
        # A fir: a triangle from its apex (b - th) down to the trunk's top, half as wide as tall at the base.
        apex = b - th
        half = np.clip((y - apex) / np.maximum(trunk_top - apex, 1e-6), 0, None) * 0.27 * th
        d_fir = np.minimum((half - np.abs(x - tx)) * 0.88, trunk_top - y)
        d_fir = np.where(y >= apex, d_fir, -np.sqrt((x - tx) ** 2 + (y - apex) ** 2))  # above the apex: the distance to it
        r = 0.32 * th
        d_round = r - np.sqrt((x - tx) ** 2 + ((y - (apex + r)) * 1.1) ** 2)
        d_crown = np.where(fir, d_fir, d_round)
        d_trunk = np.where(present, d_trunk, -1.0)
        d_crown = np.where(present, d_crown, -1.0)
        shade = 0.8 + 0.4 * ((tree[:, j, 3] * 7) % 1)
        lit = 1 + 0.22 * np.tanh(60 * (x - tx) * toward[:, :, None]) * (1 - night)
        crown = colour["crown"] * (shade[:, None, None, None] * lit[:, None])
        _mix_where(image, colour["trunk"], _cover(d_trunk, side))
        _mix_where(image, crown, _cover(d_crown, side))
        layout[(d_trunk >= 0) | (d_crown >= 0)] = VEGETATION

    image = np.clip(np.round(np.clip(image, 0, 1) * 255) / 255, 0, 1).astype(f32)
    return image, layout, ridge.astype(f32), shore.astype(f32)


def _noise_2d(lattice: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Bilinear value noise: ``lattice`` (n, R, C) on an even grid over the image, at the pixel centres -> (n, S, S)."""
    rows, cols = lattice.shape[1:]
    py, px = centres * (rows - 1), centres * (cols - 1)
    iy, ix = np.minimum(py.astype(np.int64), rows - 2), np.minimum(px.astype(np.int64), cols - 2)
    ty, tx = (py - iy)[None, :, None], (px - ix)[None, None, :]
    top = lattice[:, iy][:, :, ix] * (1 - tx) + lattice[:, iy][:, :, ix + 1] * tx
    bottom = lattice[:, iy + 1][:, :, ix] * (1 - tx) + lattice[:, iy + 1][:, :, ix + 1] * tx
    return top + ty * (bottom - top)


def render_landscapes(uniforms: object, size: int = 64) -> tuple[Tensor, dict[str, Tensor]]:
    """Draw the scenes that rows of uniform numbers decide: ``(images, attributes)``.

    Args:
        uniforms: ``N x DRAWS_PER_IMAGE`` numbers in ``[0, 1)`` (a NumPy array or a tensor); one
            row decides one scene (its attributes, its ridge lines, its trees, its stars).
        size: the side in pixels, at least :data:`MIN_SIZE`.

    Returns:
        ``images``, float32 ``N x 3 x size x size`` in ``[0, 1]`` on 256 levels, and the
        ``attributes`` of the module docstring (``layout``, ``ridge`` and ``shore`` included).
        The same rows give the same scene at any size; :func:`load_landscapes` draws the rows
        from a seeded stream.
    """
    check_int_option("size", size, minimum=MIN_SIZE)
    u = uniforms.detach().cpu().numpy() if isinstance(uniforms, Tensor) else np.asarray(uniforms)
    if u.ndim != 2 or u.shape[1] != DRAWS_PER_IMAGE or not np.issubdtype(u.dtype, np.floating):
        raise ValueError(f"uniforms must be a float array N x {DRAWS_PER_IMAGE}, got {u.dtype} of shape {u.shape}")
    if u.size and not (np.isfinite(u).all() and u.min() >= 0 and u.max() <= 1):
        raise ValueError("uniforms must lie in [0, 1]")
    u = u.astype(np.float32)
    parts = [_render_chunk(u[i : i + _CHUNK], size) for i in range(0, len(u), _CHUNK)] or [
        (np.zeros((0, 3, size, size), np.float32), np.zeros((0, size, size), np.int64), np.zeros((0, size), np.float32), np.zeros((0, size), np.float32))
    ]
    images, layout, ridge, shore = (np.concatenate(p) for p in zip(*parts))
    scalars = _scalars(u)
    attributes = {
        key: torch.from_numpy(value).long() if value.dtype.kind in "iu" else torch.from_numpy(value).float()
        for key, value in scalars.items()
    }
    attributes.update(ridge=torch.from_numpy(ridge), shore=torch.from_numpy(shore), layout=torch.from_numpy(layout))
    return torch.from_numpy(images), attributes


# ---------------------------------------------------------------- dataset


def _layout_mode(with_layout: object) -> str | None:
    if with_layout is False or with_layout is None or with_layout == "none":
        return None
    if with_layout is True:
        return "index"
    if isinstance(with_layout, str) and with_layout in LAYOUT_CHANNELS:
        return with_layout
    raise ValueError(f"option 'with_layout' must be False, True (= 'index'), 'index' or 'onehot'; got {with_layout!r}")


@register_dataset(
    "landscapes",
    online=False,
    description="procedural landscapes (sky and sun, fractal mountains, lake with reflections, grass, trees) "
    "with their layout map (sky, mountain, water, vegetation); label = time of day (day, dusk, night)",
    splits=tuple(SPLIT_STREAMS),
)
def load_landscapes(
    split: str = "train",
    *,
    n: int | None = None,
    size: int = 64,
    seed: int = 0,
    with_layout: bool | str = False,
) -> ImageDataset:
    """Procedural landscapes with their layout maps and attributes (see the module docstring).

    ``labels[i]`` is the time of day, ``classes = ["day", "dusk", "night"]`` (:data:`TIMES_OF_DAY`);
    ``attributes["layout"]`` is the int64 layout map ``N x size x size`` of :data:`LAYOUT_CLASSES`.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``: independent random streams.
        n: number of scenes (default 2000 for train, 500 for val and test).
        size: the side in pixels, at least 16 (64 by default; 32 for quick CPU runs).
        seed: the random seed; the same ``(split, seed, n, size)`` gives identical scenes, and
            the first ``n`` scenes of a larger ``n`` are the same pictures.
        with_layout: ``False`` (3 channels: the scene), ``True`` or ``"index"`` (1 + 3 channels:
            the layout map as ``class / 3``, then the scene), ``"onehot"`` (4 + 3 channels: one
            0/1 channel per class, then the scene). :func:`split_layout` cuts them apart.
    """
    check_choice_option("split", split, tuple(SPLIT_STREAMS))
    mode = _layout_mode(with_layout)
    n = DEFAULT_N[split] if n is None else n
    check_int_option("n", n)
    check_int_option("size", size, minimum=MIN_SIZE)
    check_int_option("seed", seed, minimum=0)
    uniforms = np.random.default_rng([seed, SPLIT_STREAMS[split]]).random((n, DRAWS_PER_IMAGE))
    images, attributes = render_landscapes(uniforms, size)
    if mode is not None:
        images = torch.cat([layout_channels(attributes["layout"], mode), images], 1).contiguous()
    return ImageDataset(
        images, attributes["time"].clone(), list(TIMES_OF_DAY), name="landscapes", split=split, attributes=attributes, levels=256
    )
