"""Hill-shaded crops of the two elevation maps matplotlib ships: real terrain, offline.

Chapter 6.3's procedural landscapes know every pixel's class; real terrain is the check that a
model is not only learning the book's own drawing rules. matplotlib installs two digital
elevation models (DEMs) with its sample data (``matplotlib.cbook.get_sample_data``), so they are
on every machine that runs the book:

* ``jacksboro_fault_dem.npz``: 344 x 403 elevations in metres, 236-1,076 m, around the Jacksboro
  fault in Tennessee, on a 3-arc-second grid (about 92 m north-south and 74 m east-west);
* ``topobathy.npz``: 91 x 120 heights and depths in metres, -1,437 to 2,205 m, of a coast of the
  North Pacific, on a grid of 0.0333 degrees of longitude by 0.0223 of latitude (about 2.5 km).

Each image is a square crop of one map, resized to ``size`` and rendered with
:class:`matplotlib.colors.LightSource` as in matplotlib's hill-shading example: the colour of the
height (colour map ``gist_earth``, over the whole map's range, so a colour is a height) blended
("overlay") with the shading of a light from azimuth ``a`` (degrees clockwise from north) and
altitude ``h`` above the horizon, the cosine between the surface normal and the light direction.

**Label**: where the light comes from, :data:`LIGHT_FROM` ``[round(a / 90) mod 4]`` (north, east,
south, west); a classifier must read the direction of the shadows, not the colours.

**Attributes** (tensors of length N): ``azimuth`` and ``altitude`` (degrees), ``map`` (0
Jacksboro, 1 topobathy), ``row`` and ``col`` (the crop's top-left corner in the map), ``side``
(the crop's side in map cells) and ``elevation`` (N x size x size float32, the crop's heights in
metres, resized like the image): a height map and its rendering, for translation exercises.

**Splits** are disjoint bands of columns of each map (train the west 70%, val the next 15%, test
the east 15%), so no test crop overlaps a training crop. Crop sides are drawn up to the band's
width: 32-60 cells of the Jacksboro map and 12-18 of the smaller topobathy map, which is upsampled.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from aigc_lab.data.registry import ImageDataset, check_choice_option, check_int_option, register_dataset

#: where the light comes from, by quadrant of the azimuth (degrees clockwise from north)
LIGHT_FROM = ("north", "east", "south", "west")
MAPS = ("jacksboro_fault_dem.npz", "topobathy.npz")
SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}
DEFAULT_N = {"train": 2000, "val": 500, "test": 500}
#: the share of each map's columns, west to east, that each split crops from
SPLIT_BANDS = {"train": (0.0, 0.7), "val": (0.7, 0.85), "test": (0.85, 1.0)}
#: the smallest crop side in map cells, per map (the largest is the split band's width)
MIN_SIDE = (32, 12)
MAX_SIDE = (60, 18)
ALTITUDE_RANGE = (25.0, 60.0)
VERTICAL_EXAGGERATION = (1.0, 10.0)  # per map: the topobathy grid is 30 times coarser
MIN_SIZE = 8
EARTH_RADIUS_M = 6_371_000.0


def load_maps() -> list[tuple[np.ndarray, float, float]]:
    """The two DEMs as ``(heights in metres float64 H x W, dx, dy in metres)``, from matplotlib's sample data."""
    from matplotlib import cbook

    maps = []
    with np.load(cbook.get_sample_data(MAPS[0], asfileobj=False)) as dem:
        z = dem["elevation"].astype(np.float64)
        lat = math.radians(float(dem["ymin"] + dem["ymax"]) / 2)
        dy = math.radians(float(dem["dy"])) * EARTH_RADIUS_M
        maps.append((z, dy * math.cos(lat), dy))
    with np.load(cbook.get_sample_data(MAPS[1], asfileobj=False)) as dem:
        z = dem["topo"].astype(np.float64)
        lon, lat = dem["longitude"].astype(np.float64), dem["latitude"].astype(np.float64)
        dy = math.radians(float(np.diff(lat).mean())) * EARTH_RADIUS_M
        dx = math.radians(float(np.diff(lon).mean())) * EARTH_RADIUS_M * math.cos(math.radians(float(lat.mean())))
        maps.append((z, dx, dy))
    return maps


def light_class(azimuth: Tensor | np.ndarray | float) -> Tensor:
    """The index into :data:`LIGHT_FROM` of each azimuth (degrees clockwise from north): its nearest of 0, 90, 180, 270."""
    a = torch.as_tensor(azimuth, dtype=torch.float64)
    return (torch.round(a / 90.0).long() % 4).reshape(a.shape)


def _resize(array: np.ndarray, size: int) -> Tensor:
    """``H x W`` or ``C x H x W`` to ``size x size`` (bilinear, antialiased when shrinking)."""
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    t = t[None, None] if t.dim() == 2 else t[None]
    t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return t[0, 0] if array.ndim == 2 else t[0]


def render_crop(heights: np.ndarray, dx: float, dy: float, azimuth: float, altitude: float, *, vmin: float, vmax: float, vert_exag: float) -> np.ndarray:
    """One hill-shaded RGB crop, ``3 x H x W`` float in ``[0, 1]`` (see the module docstring)."""
    import matplotlib
    from matplotlib.colors import LightSource

    light = LightSource(azdeg=azimuth, altdeg=altitude)
    rgba = light.shade(heights, cmap=matplotlib.colormaps["gist_earth"], blend_mode="overlay", vert_exag=vert_exag, dx=dx, dy=dy, vmin=vmin, vmax=vmax)
    return np.clip(rgba[..., :3], 0, 1).transpose(2, 0, 1)


@register_dataset(
    "terrain",
    online=False,
    description="hill-shaded crops of the two elevation maps matplotlib ships (real terrain); label = where the light comes from",
    splits=tuple(SPLIT_STREAMS),
)
def load_terrain(split: str = "train", *, n: int | None = None, size: int = 32, seed: int = 0) -> ImageDataset:
    """Hill-shaded terrain crops with their heights, light direction and position (see the module docstring).

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``: disjoint bands of columns of each map.
        n: number of crops (default 2000 for train, 500 for val and test).
        size: the side in pixels, at least 8 (32 by default).
        seed: the random seed; the same ``(split, seed, n, size)`` gives identical crops.
    """
    check_choice_option("split", split, tuple(SPLIT_STREAMS))
    n = DEFAULT_N[split] if n is None else n
    check_int_option("n", n)
    check_int_option("size", size, minimum=MIN_SIZE)
    check_int_option("seed", seed, minimum=0)
    maps = load_maps()
    rng = np.random.default_rng([seed, SPLIT_STREAMS[split], 7])
    low, high = SPLIT_BANDS[split]
    # Each map is drawn in proportion to the area of its band, so both take part.
    areas = np.array([z.shape[0] * z.shape[1] * (high - low) for z, _, _ in maps])
    which = rng.choice(len(maps), size=n, p=areas / areas.sum())
    images = torch.empty(n, 3, size, size)
    elevation = torch.empty(n, size, size)
    columns = {k: np.empty(n) for k in ("azimuth", "altitude", "row", "col", "side")}
    for i, k in enumerate(which):
        z, dx, dy = maps[k]
        first, last = int(round(low * z.shape[1])), int(round(high * z.shape[1]))
        side = int(rng.integers(MIN_SIDE[k], min(MAX_SIDE[k], last - first, z.shape[0]) + 1))
        row = int(rng.integers(0, z.shape[0] - side + 1))
        col = int(rng.integers(first, last - side + 1))
        azimuth, altitude = float(rng.uniform(0, 360)), float(rng.uniform(*ALTITUDE_RANGE))
        crop = z[row : row + side, col : col + side]
        rgb = render_crop(crop, dx, dy, azimuth, altitude, vmin=float(z.min()), vmax=float(z.max()), vert_exag=VERTICAL_EXAGGERATION[k])
        images[i] = _resize(rgb, size).clamp(0, 1)
        elevation[i] = _resize(crop, size)
        for key, value in zip(columns, (azimuth, altitude, row, col, side)):
            columns[key][i] = value
    attributes = {
        "azimuth": torch.from_numpy(columns["azimuth"]).float(),
        "altitude": torch.from_numpy(columns["altitude"]).float(),
        "map": torch.from_numpy(which).long(),
        "row": torch.from_numpy(columns["row"]).long(),
        "col": torch.from_numpy(columns["col"]).long(),
        "side": torch.from_numpy(columns["side"]).long(),
        "elevation": elevation,
    }
    labels = light_class(attributes["azimuth"])
    return ImageDataset(images.contiguous(), labels, list(LIGHT_FROM), name="terrain", split=split, attributes=attributes)
