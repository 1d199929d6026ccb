"""3D objects rendered by the package: triangle meshes seen from a camera orbiting them.

The "3D model" training data of the book. Each shape in :data:`OBJECT_SHAPES` is a small
triangle mesh built here from its definition (no files, no OpenGL), scaled to fit the unit
sphere. :func:`render_object` is a complete, if tiny, rasterizer (see Marschner & Shirley,
*Fundamentals of Computer Graphics*, chapters 7-9, or the "scratchapixel" rasterization notes):

1. camera: at ``distance`` from the origin, at ``azimuth`` degrees around the vertical axis and
   ``elevation`` degrees above the horizon, looking at the origin;
2. back faces (whose outward normal points away from the camera) are dropped;
3. perspective projection: a camera-space point ``(x, y, z)`` lands at pixel
   ``(S/2 + f x / z, S/2 - f y / z)`` with ``f = (S / 2) / tan(fov / 2)``;
4. rasterization: for every pixel center ``p`` in a triangle's bounding box, the barycentric
   coordinates ``w_i = area(p, v_j, v_k) / area(v_i, v_j, v_k)``; ``p`` is inside when all are >= 0;
5. z-buffer: ``1/z = sum_i w_i / z_i`` is linear in screen space; the largest wins each pixel;
6. Lambertian shading: the normal ``n`` is interpolated with the perspective-correct weights
   ``(w_i / z_i) / (1 / z)``, and ``shade = ambient + sum_lights k * max(0, n . l)``.

The lights are fixed in the world, so orbiting the camera changes which faces are bright: the
azimuth is visible even on the round shapes. The torus is tilted and the L-block is not
symmetric, so their silhouettes change with azimuth too. Rendering happens at ``supersample``
times the resolution and is averaged down, which anti-aliases the edges. The background is black.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

from aigc_lab.data.registry import ImageDataset, check_int_option, register_dataset

OBJECT_SHAPES = ("cube", "sphere", "cylinder", "cone", "torus", "pyramid", "octahedron", "l_block")

# Default RGB albedo per shape (channels=3); gray renders use one albedo for every shape so
# that brightness says nothing about the class.
_COLORS = {
    "cube": (0.90, 0.35, 0.30),
    "sphere": (0.35, 0.60, 0.95),
    "cylinder": (0.40, 0.85, 0.45),
    "cone": (0.95, 0.80, 0.30),
    "torus": (0.80, 0.45, 0.90),
    "pyramid": (0.95, 0.60, 0.25),
    "octahedron": (0.35, 0.85, 0.85),
    "l_block": (0.85, 0.85, 0.85),
}
_GRAY_ALBEDO = 0.9
_AMBIENT = 0.2
_KEY_STRENGTH = 0.75
_FILL_LIGHT = (-0.8, -0.2, -0.6)  # a weak light from the other side keeps shadowed faces distinct
_FILL_STRENGTH = 0.25


# ---------------------------------------------------------------- meshes
# A mesh is (corners, normals): float64 arrays F x 3 x 3, the three corners of every triangle and
# the surface normal at each corner (equal for a flat face, the true surface normal on a curved one).


def _flat(vertices: np.ndarray, faces: np.ndarray, center: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat triangles, each with its face normal turned away from ``center`` (outward for a convex solid)."""
    corners = vertices[faces]
    normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normal *= np.sign(np.sum(normal * (corners.mean(1) - center), axis=1, keepdims=True))
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    return corners, np.repeat(normal[:, None], 3, axis=1)


def _box(low: tuple[float, float, float], high: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.array(low, float), np.array(high, float)
    vertices = np.array([[(lo, hi)[i >> k & 1][k] for k in range(3)] for i in range(8)])
    quads = [(0, 1, 3, 2), (4, 5, 7, 6), (0, 1, 5, 4), (2, 3, 7, 6), (0, 2, 6, 4), (1, 3, 7, 5)]
    faces = np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))])
    return _flat(vertices, faces, (lo + hi) / 2)


def _revolve(profile: list[tuple[float, float, float, float]], segments: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth surface of revolution about the y axis from a profile of (radius, y, normal_r, normal_y)."""
    angle = np.linspace(0, 2 * np.pi, segments + 1)
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    r, y, nr, ny = (np.array(column, float)[None, :] for column in zip(*profile))
    points = np.stack(np.broadcast_arrays(r * c, y, r * s), -1)  # (segments + 1, len(profile), 3)
    normals = np.stack(np.broadcast_arrays(nr * c, ny, nr * s), -1)
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    i, j = (a.ravel() for a in np.meshgrid(np.arange(segments), np.arange(len(profile) - 1), indexing="ij"))
    quad = [(i, j), (i + 1, j), (i + 1, j + 1), (i, j + 1)]  # corners of each grid cell, in order

    def triangles(grid: np.ndarray) -> np.ndarray:
        a, b, c, d = (grid[q] for q in quad)
        return np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])

    return triangles(points), triangles(normals)


def _disk(radius: float, y: float, up: bool, segments: int) -> tuple[np.ndarray, np.ndarray]:
    angle = np.linspace(0, 2 * np.pi, segments + 1)
    ring = np.stack([radius * np.cos(angle), np.full_like(angle, y), radius * np.sin(angle)], -1)
    vertices = np.vstack([ring, [[0.0, y, 0.0]]])
    faces = np.array([(k, k + 1, segments + 1) for k in range(segments)])
    return _flat(vertices, faces, np.array([0.0, y - (1 if up else -1), 0.0]))


def _icosphere(subdivisions: int) -> tuple[np.ndarray, np.ndarray]:
    t = (1 + 5**0.5) / 2
    vertices = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t),
                (0, -1, -t), (0, 1, -t), (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]  # fmt: skip
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2),
             (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5),
             (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]  # fmt: skip
    corners = np.array(vertices, float)[np.array(faces)]
    for _ in range(subdivisions):  # split every triangle in four at its edge midpoints
        a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
        ab, bc, ca = (a + b) / 2, (b + c) / 2, (c + a) / 2
        corners = np.concatenate([np.stack(t, 1) for t in ((a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca))])
    corners /= np.linalg.norm(corners, axis=-1, keepdims=True)
    return corners, corners.copy()  # on a unit sphere the normal is the position


def _rotate_x(mesh: tuple[np.ndarray, np.ndarray], degrees: float) -> tuple[np.ndarray, np.ndarray]:
    a = math.radians(degrees)
    rotation = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    return mesh[0] @ rotation.T, mesh[1] @ rotation.T


def _join(*meshes: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([m[0] for m in meshes]), np.concatenate([m[1] for m in meshes])


def _build(shape: str) -> tuple[np.ndarray, np.ndarray]:
    n = 32  # segments around curved shapes: smooth at 64 px, cheap to render
    if shape == "cube":
        return _box((-1, -1, -1), (1, 1, 1))
    if shape == "sphere":
        return _icosphere(2)
    if shape == "cylinder":
        r, h = 0.75, 0.8
        return _join(_revolve([(r, -h, 1, 0), (r, h, 1, 0)], n), _disk(r, h, True, n), _disk(r, -h, False, n))
    if shape == "cone":
        r, h = 0.8, 0.9  # side normal of a cone of height 2h and radius r: (2h, r) in the (radial, y) plane
        # Rings part-way up keep the side's triangles compact: long slivers have huge bounding boxes.
        side = [(r * (1 - t), h * (2 * t - 1), 2 * h, r) for t in (0, 0.4, 0.7, 1)]
        return _join(_revolve(side, n), _disk(r, -h, False, n))
    if shape == "torus":
        big, small, m = 0.7, 0.3, 16
        v = np.linspace(0, 2 * np.pi, m + 1)
        profile = [(big + small * np.cos(a), small * np.sin(a), np.cos(a), np.sin(a)) for a in v]
        return _rotate_x(_revolve(profile, n), 35)  # tilted: its outline changes with azimuth
    if shape == "pyramid":
        vertices = np.array([(-1, -0.7, -1), (1, -0.7, -1), (1, -0.7, 1), (-1, -0.7, 1), (0, 1, 0)], float)
        faces = np.array([(0, 1, 4), (1, 2, 4), (2, 3, 4), (3, 0, 4), (0, 1, 2), (0, 2, 3)])
        return _flat(vertices, faces, np.array([0.0, -0.3, 0.0]))
    if shape == "octahedron":
        vertices = np.array([(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)], float)
        faces = np.array([(x, y, z) for x in (0, 1) for y in (2, 3) for z in (4, 5)])
        return _flat(vertices, faces, np.zeros(3))
    if shape == "l_block":  # an upright bar and a foot: not symmetric under any rotation about y
        return _join(_box((-1, -1, -0.45), (-0.2, 1, 0.45)), _box((-0.2, -1, -0.45), (1, -0.2, 0.45)))
    raise ValueError(f"unknown shape {shape!r}; choose from {', '.join(OBJECT_SHAPES)}")


@functools.cache
def _mesh(shape: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(corners, normals, face_normals) of a shape, scaled so its farthest corner is at distance 1."""
    corners, normals = _build(shape)
    corners = corners / np.linalg.norm(corners, axis=-1).max()
    face = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    keep = np.linalg.norm(face, axis=1) > 1e-12  # the cone's tip makes zero-area triangles
    corners, normals, face = corners[keep], normals[keep], face[keep]
    face *= np.sign(np.sum(face * normals.sum(1), axis=1, keepdims=True))  # point it the way the normals do
    face /= np.linalg.norm(face, axis=1, keepdims=True)
    return corners, normals, face


# ---------------------------------------------------------------- rendering


def _unit(v: tuple[float, float, float]) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def render_object(
    shape: str,
    azimuth: float,
    elevation: float,
    size: int = 32,
    channels: int = 1,
    color: tuple[float, float, float] | None = None,
    light: tuple[float, float, float] = (0.6, 1.0, 0.5),
    distance: float = 3.2,
    fov: float = 42.0,
    supersample: int = 2,
) -> Tensor:
    """Render one shape as a ``channels x size x size`` float32 image in ``[0, 1]`` on black.

    Args:
        shape: one of :data:`OBJECT_SHAPES`.
        azimuth: camera angle around the vertical (y) axis in degrees; 0 looks along ``-z``.
        elevation: camera angle above the horizontal plane in degrees, strictly between -90 and 90.
        size: image side in pixels.
        channels: 1 (gray) or 3 (RGB).
        color: RGB albedo in ``[0, 1]``; default a color per shape (RGB) or 0.9 gray.
        light: direction towards the main light, in world coordinates (fixed while the camera moves).
        distance: camera distance from the center (the object fits in the unit sphere).
        fov: vertical field of view in degrees.
        supersample: render at this many times the resolution and average down (anti-aliasing).
    """
    if shape not in OBJECT_SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose from {', '.join(OBJECT_SHAPES)}")
    if not -90 < elevation < 90:
        raise ValueError(f"elevation must lie strictly between -90 and 90 degrees, got {elevation}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if distance <= 1:
        raise ValueError(f"distance must exceed 1 (the object's radius), got {distance}")
    check_int_option("size", size)
    check_int_option("supersample", supersample)
    corners, normals, face_normals = _mesh(shape)
    s = size * supersample

    az, el = math.radians(azimuth), math.radians(elevation)
    eye = distance * np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
    forward = -eye / distance
    right = _unit(np.cross(forward, (0.0, 1.0, 0.0)))
    up = np.cross(right, forward)

    visible = np.sum(face_normals * (eye - corners.mean(1)), axis=1) > 0
    corners, normals = corners[visible], normals[visible]
    relative = corners - eye  # (T, 3, 3)
    x, y, z = relative @ right, relative @ up, relative @ forward  # (T, 3) camera coordinates
    focal = (s / 2) / math.tan(math.radians(fov) / 2)
    sx, sy = s / 2 + focal * x / z, s / 2 - focal * y / z  # (T, 3) pixel coordinates

    # Pixel centers sit at integer + 0.5; list every (triangle, pixel) pair in each bounding box.
    x0 = np.clip(np.ceil(sx.min(1) - 0.5), 0, s).astype(np.int64)
    x1 = np.clip(np.floor(sx.max(1) - 0.5), -1, s - 1).astype(np.int64)
    y0 = np.clip(np.ceil(sy.min(1) - 0.5), 0, s).astype(np.int64)
    y1 = np.clip(np.floor(sy.max(1) - 0.5), -1, s - 1).astype(np.int64)
    width, height = np.maximum(x1 - x0 + 1, 0), np.maximum(y1 - y0 + 1, 0)
    counts = width * height
    tri = np.repeat(np.arange(len(counts)), counts)
    k = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    px = x0[tri] + k % width[tri] + 0.5
    py = y0[tri] + k // width[tri] + 0.5

    ax, bx, cx = sx[tri].T
    ay, by, cy = sy[tri].T
    area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
    with np.errstate(divide="ignore", invalid="ignore"):  # degenerate (edge-on) triangles give inf/nan, never "inside"
        w0 = ((bx - px) * (cy - py) - (by - py) * (cx - px)) / area
        w1 = ((cx - px) * (ay - py) - (cy - py) * (ax - px)) / area
    w = np.stack([w0, w1, 1 - w0 - w1], 1)  # (P, 3)
    inside = np.all(w >= -1e-9, axis=1)
    tri, w, px, py = tri[inside], w[inside], px[inside], py[inside]

    w_over_z = w / z[tri]
    inv_z = w_over_z.sum(1)
    pixel = py.astype(np.int64) * s + px.astype(np.int64)
    nearest = np.full(s * s, -np.inf)
    np.maximum.at(nearest, pixel, inv_z)
    front = inv_z >= nearest[pixel]
    tri, pixel, weights = tri[front], pixel[front], w_over_z[front] / inv_z[front, None]

    n = np.einsum("pi,pij->pj", weights, normals[tri])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    shade = (
        _AMBIENT
        + _KEY_STRENGTH * np.maximum(n @ _unit(light), 0)
        + _FILL_STRENGTH * np.maximum(n @ _unit(_FILL_LIGHT), 0)
    )
    if color is None:
        albedo = np.array(_COLORS[shape]) if channels == 3 else np.array([_GRAY_ALBEDO])
    else:
        albedo = np.asarray(color, float)
        if channels == 1:
            albedo = np.array([albedo @ (0.299, 0.587, 0.114)])
    image = np.zeros((s * s, channels))
    image[pixel] = shade[:, None] * albedo
    image = image.reshape(size, supersample, size, supersample, channels).mean((1, 3))
    return torch.from_numpy(image.clip(0, 1)).float().permute(2, 0, 1).contiguous()


# ---------------------------------------------------------------- dataset

_SPLIT_STREAMS = {"train": 0, "test": 1}
_DEFAULT_N = {"train": 2000, "test": 500}


@register_dataset(
    "objects3d",
    online=False,
    description=f"{len(OBJECT_SHAPES)} 3D shapes rendered from random viewpoints; label = shape, attributes = viewpoint",
)
def load_objects3d(
    split: str = "train",
    *,
    size: int = 32,
    n: int | None = None,
    seed: int = 0,
    channels: int = 1,
    shapes: list[str] | tuple[str, ...] | None = None,
    azimuth_range: tuple[float, float] = (0.0, 360.0),
    elevation_range: tuple[float, float] = (-10.0, 60.0),
) -> ImageDataset:
    """Renders of :data:`OBJECT_SHAPES` from random viewpoints, with the viewpoint as attributes.

    Each image draws a shape uniformly from ``shapes`` (its label indexes ``classes = shapes``),
    an azimuth and an elevation uniformly from the ranges (degrees, in ``attributes["azimuth"]``
    and ``attributes["elevation"]``). The train and test splits are independent draws from
    different random streams derived from ``seed``; the same seed gives the same images.

    Args:
        n: number of images (default 2000 for train, 500 for test).
        size, channels: see :func:`render_object`.
        shapes: a subset of :data:`OBJECT_SHAPES` (default all).
    """
    shapes = list(OBJECT_SHAPES if shapes is None else shapes)
    unknown = [name for name in shapes if name not in OBJECT_SHAPES]
    if unknown or not shapes:
        raise ValueError(f"unknown shape(s) {unknown}; choose a non-empty subset of {', '.join(OBJECT_SHAPES)}")
    n = _DEFAULT_N[split] if n is None else n
    check_int_option("n", n)
    check_int_option("seed", seed, minimum=0)
    for option, (low, high) in (("azimuth_range", azimuth_range), ("elevation_range", elevation_range)):
        if not low <= high:
            raise ValueError(f"option {option!r} must be (low, high) with low <= high, got {(low, high)}")
    rng = np.random.default_rng([seed, _SPLIT_STREAMS[split]])
    labels = rng.integers(len(shapes), size=n)
    azimuth = rng.uniform(*azimuth_range, size=n)
    elevation = rng.uniform(*elevation_range, size=n)
    images = torch.stack(
        [render_object(shapes[k], a, e, size=size, channels=channels) for k, a, e in zip(labels, azimuth, elevation)]
    )
    attributes = {"azimuth": torch.from_numpy(azimuth).float(), "elevation": torch.from_numpy(elevation).float()}
    labels = torch.from_numpy(labels).long()
    return ImageDataset(images, labels, shapes, name="objects3d", split=split, attributes=attributes)
