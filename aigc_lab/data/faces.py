"""Faces for chapter 6.3: real face crops that ship with scikit-image, and cartoon faces drawn by the package.

Two datasets, both offline:

``faces``: the 100 face crops of :func:`skimage.data.lfw_subset` (a subset of Labeled Faces in
the Wild, Huang et al., 2007; the crops of Huang, Mattar, Lee & Learned-Miller, 2012, resized to
25 x 25 by scikit-image). The function returns 200 gray images, the first 100 faces and the
last 100 patches of background; only the faces are kept. Each image is ``1 x 25 x 25`` in
``[0, 1]`` (each crop stretched by scikit-image to nearly its full range; the values are floats,
not 8-bit levels, so ``levels=None``). They are split once and for all by a fixed permutation
(:data:`LFW_SPLIT_SEED`): 80 train, 20 test (:data:`LFW_TEST_SIZE`); ``"all"`` is the 100 in
their original order. The subset carries no names, so the same person (LFW has many photos of a
few public figures) may appear in both splits. The labels are all 0 (one class, ``"face"``);
``attributes`` holds ``index`` (the crop's position among the 100 faces of ``lfw_subset``) and
``flipped`` (1 for a mirrored copy). ``non_faces=True`` adds the subset's 100 background patches,
split the same way, as a second class ``"not a face"``: the data a face-or-not judge is trained on
(its features give chapter 6.3's Frechet distance, and its verdict the share of samples that look
like faces).

``flips=True`` adds the left-right mirror of every train face to the train split (160 images,
the originals first). It is the one augmentation that is always safe here: a face is nearly
symmetric and a mirrored face is still a plausible, upright, centred, aligned face, whereas a
vertical flip or a rotation makes upside-down or tilted faces the data never shows, a crop or a
shift breaks the alignment of the crops (eyes at the same height in every image), and a change of
contrast fights the per-crop stretching. The other splits ignore ``flips`` (the test set is kept as
photographed), so the same options load matching train and test sets.

``face-attributes``: cartoon faces drawn from seven discrete factors, each drawn uniformly and
independently for every image (the full tuples are :data:`FACTORS`):

============  ==========================================  ==============================================
factor        values (index 0, 1, ...)                    what it changes in the picture
============  ==========================================  ==============================================
face_shape    round, oval                                 the face ellipse's half-width: 0.94 or 0.72 of
                                                          its half-height (:data:`FACE_HALF_WIDTH`)
skin          light, medium, dark                         the face's colour (:data:`SKIN_COLOURS`)
hair          black, brown, blond, red                    the hair's colour (:data:`HAIR_COLOURS`)
hairstyle     short, long                                 short: a cap over the top of the head; long:
                                                          also falls on both sides of the face to below
                                                          the mouth
eyes          open, closed                                open: white eyes with dark pupils; closed: a
                                                          dark curved line, no white at all
mouth         smile, neutral                              a dark red arc curving up, or a straight line
glasses       none, glasses                               two dark round frames, a bridge and temples
============  ==========================================  ==============================================

and four continuous ones (all fractions of the image side, so the same attributes draw the same
picture at any ``size``):

==========  =====================================================================================
key         meaning
==========  =====================================================================================
size        half the height of the face ellipse (forehead to chin, hair not included), uniform in
            :data:`SIZE_RANGE`; the unit ``R`` of the face's own frame below
x, y        the centre of the face ellipse, as fractions of the side from the left and from the
            top, each uniform in ``[REACH * size + MARGIN, 1 - REACH * size - MARGIN]``: every
            part of the drawing (hair included) lies within ``REACH * size`` of the centre, so it
            stays at least :data:`MARGIN` away from every edge at any tilt
tilt        degrees counter-clockwise as seen on screen, uniform in :data:`TILT_RANGE`
==========  =====================================================================================

Every attribute is kept in ``attributes`` (the factors as int64 indices into their tuple of
:data:`FACTORS`, the rest float32). The label is a class over a chosen subset of factors, the
option ``label_by`` (default :data:`DEFAULT_LABEL_BY`, ``("hair", "mouth", "glasses")``, 16
classes). With ``label_by = (f_1, ..., f_m)`` and ``n_j = len(FACTORS[f_j])``::

    labels[i] = (...((i_1 * n_2 + i_2) * n_3 + i_3) ...) * n_m + i_m     (mixed radix, f_1 most significant)

(``hair * 4 + ...``: with the default, ``labels = hair * 4 + mouth * 2 + glasses``), and
``classes[k]`` joins the phrases of :data:`PHRASES` with commas, e.g. ``"blond hair, smiling,
glasses"`` (:func:`face_classes`, :func:`face_class`, :func:`face_class_attributes`).

How :func:`render_faces` draws (vectorised over a batch, no loop over images): every part is a
signed distance in the face's own frame (``u`` to the right, ``v`` up, in units of ``R``, turned
by the tilt), evaluated at the centres of ``supersample x supersample`` sub-pixels and turned
into a coverage ``clamp(1/2 - distance / subpixel, 0, 1)``. The parts are painted back to front
(background, hair behind the face, face, nose, fringe, eyes, mouth, glasses), each over the
result so far with its coverage, and each pixel is the mean of its sub-pixels, rounded to 8 bits
(``levels=256``). The frame's layout (eyes at ``v = 0.1``, ``u = +-0.34``; mouth near
``v = -0.5``; fringe above ``v = 0.58``; ...) is in the constants of this module.

The splits ``train``, ``val`` and ``test`` draw from three independent random streams of
``numpy.random.default_rng([seed, split_number])``: the same ``(split, seed, n, size)`` gives
identical images, and different splits share none (their poses are continuous random numbers).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from aigc_lab.data.registry import ImageDataset, check_int_option, register_dataset, resize_square
# Names-or-indices and finite-number checks, the same as the shapes' attributes need.
from aigc_lab.data.shapes import _floats, _index, _indices

# ---------------------------------------------------------------- real faces (lfw_subset)

LFW_FACES = 100  # the first 100 of skimage.data.lfw_subset()'s 200 images are faces
LFW_SIZE = 25
LFW_SPLIT_SEED = 0  # the fixed permutation of the 100 faces; never change it (it would reshuffle train and test)
LFW_TEST_SIZE = 20
LFW_SPLITS = ("train", "test", "all")


@functools.cache
def _lfw_faces(non_faces: bool = False) -> np.ndarray:
    """The 100 face crops of ``skimage.data.lfw_subset()`` (or its 100 non-face patches), ``100 x 25 x 25`` float in ``[0, 1]``."""
    import skimage.data

    images = np.asarray(skimage.data.lfw_subset(), dtype=np.float64)
    return np.clip(images[LFW_FACES:] if non_faces else images[:LFW_FACES], 0.0, 1.0)


def lfw_split_indices(split: str) -> np.ndarray:
    """Indices into the 100 faces of ``lfw_subset`` of ``split``: 80 train and 20 test (disjoint), or all 100 in order."""
    if split == "all":
        return np.arange(LFW_FACES)
    order = np.random.default_rng(LFW_SPLIT_SEED).permutation(LFW_FACES)
    part = order[: LFW_FACES - LFW_TEST_SIZE] if split == "train" else order[LFW_FACES - LFW_TEST_SIZE :]
    return np.sort(part)


@register_dataset(
    "faces",
    online=False,
    description="100 real face crops from LFW, 25x25 gray (scikit-image's lfw_subset; train 80 / test 20); one class 'face'",
    splits=LFW_SPLITS,
)
def load_faces(split: str = "train", *, size: int | None = None, flips: bool = False, non_faces: bool = False) -> ImageDataset:
    """The face crops of :func:`skimage.data.lfw_subset` as ``1 x 25 x 25`` gray images (see the module docstring).

    Args:
        split: ``"train"`` (80 faces), ``"test"`` (20) or ``"all"`` (100); a fixed split.
        size: resize to ``size x size`` (bilinear, antialiased when shrinking); default 25.
        flips: add the left-right mirror of every train face to the train split (the
            originals first, then their mirrors in the same order); the other splits ignore it.
        non_faces: add ``lfw_subset``'s 100 patches of background (split the same way, 80 train
            and 20 test, and mirrored too with ``flips``) after the faces, as a second class
            ``"not a face"`` (label 1): the data of the face-or-not judge of chapter 6.3. Their
            ``index`` counts from 0 among the non-faces.
    """
    check_int_option("size", size, allow_none=True)
    for name, value in (("flips", flips), ("non_faces", non_faces)):
        if not isinstance(value, bool):
            raise ValueError(f"option '{name}' must be True or False, got {value!r}")
    split_index = lfw_split_indices(split)
    images = torch.from_numpy(_lfw_faces()[split_index]).float().unsqueeze(1)  # (N, 1, 25, 25)
    labels = torch.zeros(len(split_index), dtype=torch.long)
    if non_faces:
        images = torch.cat([images, torch.from_numpy(_lfw_faces(non_faces=True)[split_index]).float().unsqueeze(1)])
        labels = torch.cat([labels, torch.ones_like(labels)])
        split_index = np.concatenate([split_index, split_index])
    index = torch.from_numpy(split_index).long()
    flipped = torch.zeros(len(index), dtype=torch.long)
    if flips and split == "train":
        images, labels = torch.cat([images, images.flip(-1)]), torch.cat([labels, labels])
        index, flipped = torch.cat([index, index]), torch.cat([flipped, torch.ones_like(flipped)])
    if size is not None and size != LFW_SIZE:
        images = resize_square(images, size)
    classes = ["face", "not a face"] if non_faces else ["face"]
    return ImageDataset(
        images.contiguous(), labels, classes, name="faces", split=split, attributes={"index": index, "flipped": flipped}
    )


# ---------------------------------------------------------------- cartoon faces: factors and classes

FACTORS: dict[str, tuple[str, ...]] = {
    "face_shape": ("round", "oval"),
    "skin": ("light", "medium", "dark"),
    "hair": ("black", "brown", "blond", "red"),
    "hairstyle": ("short", "long"),
    "eyes": ("open", "closed"),
    "mouth": ("smile", "neutral"),
    "glasses": ("none", "glasses"),
}
#: how each factor's values read in a class name
PHRASES: dict[str, tuple[str, ...]] = {
    "face_shape": ("round face", "oval face"),
    "skin": ("light skin", "medium skin", "dark skin"),
    "hair": ("black hair", "brown hair", "blond hair", "red hair"),
    "hairstyle": ("short hair", "long hair"),
    "eyes": ("eyes open", "eyes closed"),
    "mouth": ("smiling", "not smiling"),
    "glasses": ("no glasses", "glasses"),
}
DEFAULT_LABEL_BY = ("hair", "mouth", "glasses")
CONTINUOUS = ("size", "x", "y", "tilt")

# Colours (RGB in [0, 1]). Every hair colour lies at least 0.3 (Euclidean, in RGB) from every skin
# tone and from the background; the eye white is the only colour whose three channels all exceed 0.85.
BACKGROUND = (0.62, 0.76, 0.90)  # a pale sky blue
SKIN_COLOURS: dict[str, tuple[float, float, float]] = {
    "light": (1.00, 0.86, 0.74),
    "medium": (0.80, 0.57, 0.40),
    "dark": (0.55, 0.36, 0.23),
}
HAIR_COLOURS: dict[str, tuple[float, float, float]] = {
    "black": (0.08, 0.07, 0.07),
    "brown": (0.30, 0.16, 0.06),
    "blond": (0.98, 0.86, 0.30),
    "red": (0.82, 0.27, 0.06),
}
EYE_WHITE = (1.0, 1.0, 1.0)
PUPIL = (0.10, 0.10, 0.14)
LASHES = (0.12, 0.08, 0.08)  # the line of a closed eye
MOUTH = (0.55, 0.07, 0.10)
GLASSES = (0.05, 0.05, 0.07)
NOSE_SHADE = 0.8  # the nose is the skin colour times this

# The ranges of the continuous attributes (fractions of the side, degrees).
SIZE_RANGE = (0.30, 0.35)  # at 32 px the face is 19 to 22 pixels tall, hair not included
TILT_RANGE = (-12.0, 12.0)
REACH = 1.3  # every drawn part lies within REACH * size of the face's centre (the long hair's bottom corners are the farthest, 1.28)
MARGIN = 0.03

# The layout in the face's frame (u right, v up, unit R = size).
FACE_HALF_WIDTH = {"round": 0.94, "oval": 0.72}  # the half-height is 1
HAIR_BACK_CENTRE, HAIR_BACK_HALF_HEIGHT, HAIR_BACK_EXTRA_WIDTH = 0.12, 1.02, 0.12  # the cap behind the face
HAIR_BACK_BOTTOM = 0.0  # short hair shows beside the face above this height
LONG_HAIR_BOTTOM, LONG_HAIR_EXTRA_WIDTH, LONG_HAIR_ROUNDING = -0.85, 0.12, 0.2
FRINGE_HEIGHT, FRINGE_DROP = 0.58, 0.15  # the fringe covers the face above v = 0.58 - 0.15 (u / half_width)^2
NOSE = (0.0, -0.24, 0.07, 0.10)  # centre u, v and half-axes
EYE_U, EYE_V = 0.34, 0.10  # eye centres at (+-EYE_U, EYE_V)
EYE_HALF_AXES = (0.23, 0.16)
PUPIL_RADIUS = 0.08
CLOSED_EYE = (0.16, 0.17, 70.0, 0.055)  # an arc curving down: centre height above EYE_V, radius, half-aperture (deg), half-thickness
SMILE = (-0.30, 0.31, 58.0, 0.06)  # an arc curving up: centre v, radius, half-aperture (deg), half-thickness
NEUTRAL_MOUTH = (-0.56, 0.24, 0.05)  # a straight line: v, half-length, half-thickness
GLASSES_RADIUS, GLASSES_HALF_THICKNESS = 0.29, 0.055  # frames: circles around the eyes
GLASSES_BRIDGE_V = 0.15

SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}
DEFAULT_N = {"train": 5000, "val": 1000, "test": 1000}
MIN_SIZE = 16  # below 16 px the eyes and the glasses' frames are under a pixel
_CHUNK_POINTS = 2**18  # sub-pixels per chunk: large enough to amortise each tensor operation's overhead


def _label_by(value: object) -> tuple[str, ...]:
    chosen = [part.strip() for part in value.split(",")] if isinstance(value, str) else value
    valid = isinstance(chosen, (list, tuple)) and chosen and all(isinstance(c, str) and c in FACTORS for c in chosen)
    if valid and len(set(chosen)) == len(chosen):
        return tuple(chosen)
    raise ValueError(
        f"option 'label_by' must be a non-empty list (or comma-separated string) of distinct factors from "
        f"{', '.join(FACTORS)}; got {value!r}"
    )


def face_classes(label_by: Sequence[str] | str = DEFAULT_LABEL_BY) -> list[str]:
    """All class names in label order: ``["black hair, smiling, no glasses", "black hair, smiling, glasses", ...]``."""
    label_by = _label_by(label_by)
    names = [""]
    for factor in label_by:
        names = [f"{prefix}, {phrase}" if prefix else phrase for prefix in names for phrase in PHRASES[factor]]
    return names


def face_class(label_by: Sequence[str] | str = DEFAULT_LABEL_BY, **values: str | int) -> int:
    """The class index of one value (name or index) per factor of ``label_by``.

    ``face_class(hair="blond", mouth="smile", glasses="glasses") == 9`` (``2 * 4 + 0 * 2 + 1``).
    """
    label_by = _label_by(label_by)
    if set(values) != set(label_by):
        raise ValueError(f"face_class needs exactly one value for each of {', '.join(label_by)}; got {', '.join(values) or 'none'}")
    k = 0
    for factor in label_by:
        k = k * len(FACTORS[factor]) + _index(values[factor], FACTORS[factor], factor)
    return k


def face_class_attributes(k: int, label_by: Sequence[str] | str = DEFAULT_LABEL_BY) -> dict[str, str]:
    """The factor values of class ``k``: ``face_class_attributes(9) == {"hair": "blond", "mouth": "smile", "glasses": "glasses"}``."""
    label_by = _label_by(label_by)
    n = math.prod(len(FACTORS[f]) for f in label_by)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < n:
        raise ValueError(f"a class index must be an integer 0-{n - 1}, got {k!r}")
    values, k = {}, int(k)
    for factor in reversed(label_by):
        k, values[factor] = divmod(k, len(FACTORS[factor]))[0], FACTORS[factor][k % len(FACTORS[factor])]
    return {f: values[f] for f in label_by}


# ---------------------------------------------------------------- signed distances (face frame, unit R)


def _length(u: Tensor, v: Tensor) -> Tensor:
    return torch.sqrt(u * u + v * v)


def _sd_ellipse(u: Tensor, v: Tensor, a: Tensor | float, b: float) -> Tensor:
    """Approximate signed distance to an ellipse of half-axes ``a``, ``b`` centred at the origin (Quilez's first-order form)."""
    k0 = _length(u / a, v / b)
    k1 = _length(u / (a * a), v / (b * b)).clamp(min=1e-6)
    return k0 * (k0 - 1) / k1


def _sd_segment(u: Tensor, v: Tensor, au: float, av: float, bu: float, bv: float, half_thickness: float) -> Tensor:
    pu, pv, du, dv = u - au, v - av, bu - au, bv - av
    h = ((pu * du + pv * dv) / (du * du + dv * dv)).clamp(0, 1)
    return _length(pu - du * h, pv - dv * h) - half_thickness


def _sd_arc(u: Tensor, v: Tensor, cu: float, cv: float, radius: float, aperture: float, half_thickness: float, down: bool) -> Tensor:
    """A stroke along the part of a circle within ``aperture`` degrees of straight down (``down``) or up."""
    s, c = math.sin(math.radians(aperture)), math.cos(math.radians(aperture))
    pu, pv = (u - cu).abs(), (v - cv) * (-1 if down else 1)  # fold: the arc is now around +v, symmetric in u
    inside = pu * c <= pv * s  # within the aperture
    end = _length(pu - radius * s, pv - radius * c)
    return torch.where(inside, (_length(pu, pv) - radius).abs(), end) - half_thickness


def _sd_rounded_box(u: Tensor, v: Tensor, cv: float, half_u: Tensor | float, half_v: float, rounding: float) -> Tensor:
    qu, qv = u.abs() - half_u + rounding, (v - cv).abs() - half_v + rounding
    return _length(qu.clamp(min=0), qv.clamp(min=0)) + torch.maximum(qu, qv).clamp(max=0) - rounding


def _parts(u: Tensor, v: Tensor, a: Tensor, long_hair: Tensor) -> dict[str, Tensor]:
    """Signed distances (unit R) of every part of the drawing at points ``(u, v)`` (``n x P``); ``a`` the face's half-width (``n x 1``)."""
    parts: dict[str, Tensor] = {}
    cap = torch.maximum(
        _sd_ellipse(u, v - HAIR_BACK_CENTRE, a + HAIR_BACK_EXTRA_WIDTH, HAIR_BACK_HALF_HEIGHT), HAIR_BACK_BOTTOM - v
    )
    box_centre, box_half = (HAIR_BACK_CENTRE + LONG_HAIR_BOTTOM) / 2, (HAIR_BACK_CENTRE - LONG_HAIR_BOTTOM) / 2
    sides = _sd_rounded_box(u, v, box_centre, a + LONG_HAIR_EXTRA_WIDTH, box_half, LONG_HAIR_ROUNDING)
    parts["hair_back"] = torch.where(long_hair, torch.minimum(cap, sides), cap)
    parts["face"] = _sd_ellipse(u, v, a, 1.0)
    nu, nv, na, nb = NOSE
    parts["nose"] = _sd_ellipse(u - nu, v - nv, na, nb)
    hairline = FRINGE_HEIGHT - FRINGE_DROP * (u / a) ** 2
    parts["fringe"] = torch.maximum(parts["face"], hairline - v)
    eu = u.abs() - EYE_U  # both eyes at once: the drawing is symmetric in u
    ev = v - EYE_V
    parts["eye_white"] = _sd_ellipse(eu, ev, EYE_HALF_AXES[0], EYE_HALF_AXES[1])
    parts["pupil"] = _length(eu, ev) - PUPIL_RADIUS
    rise, radius, aperture, half = CLOSED_EYE
    parts["closed_eye"] = _sd_arc(eu, ev, 0.0, rise, radius, aperture, half, down=True)
    cv, radius, aperture, half = SMILE
    parts["smile"] = _sd_arc(u, v, 0.0, cv, radius, aperture, half, down=True)
    mv, half_length, half = NEUTRAL_MOUTH
    parts["neutral"] = _sd_segment(u, v, -half_length, mv, half_length, mv, half)
    rims = (_length(eu, ev) - GLASSES_RADIUS).abs() - GLASSES_HALF_THICKNESS
    inner = EYE_U - GLASSES_RADIUS
    bridge = _sd_segment(u, v, -inner, GLASSES_BRIDGE_V, inner, GLASSES_BRIDGE_V, GLASSES_HALF_THICKNESS)
    outer = EYE_U + GLASSES_RADIUS
    temples = torch.maximum(
        (ev.abs() - GLASSES_HALF_THICKNESS), torch.maximum(outer - u.abs(), u.abs() - (a - 0.02))
    )  # a bar from each frame's outer side to the face's edge
    parts["glasses"] = torch.minimum(torch.minimum(rims, bridge), temples)
    return parts


# ---------------------------------------------------------------- rendering


def _colours(table: dict[str, tuple[float, float, float]]) -> Tensor:
    return torch.tensor(list(table.values()), dtype=torch.float32)


def render_faces(
    *,
    face_shape: object = "round",
    skin: object = "light",
    hair: object = "brown",
    hairstyle: object = "short",
    eyes: object = "open",
    mouth: object = "smile",
    glasses: object = "none",
    size: object = 0.31,
    x: object = 0.5,
    y: object = 0.5,
    tilt: object = 0.0,
    image_size: int = 32,
    supersample: int = 2,
) -> Tensor:
    """Draw faces from their attributes: an ``N x 3 x image_size x image_size`` float32 tensor.

    Every attribute is one value or ``N`` values (a sequence or a 1-D tensor), broadcast against
    each other, with the units of the module docstring: the factors as names of :data:`FACTORS`
    or their indices, ``size``, ``x``, ``y`` as fractions of the side, ``tilt`` in degrees.
    ``render_faces(**dataset.attributes, image_size=32)`` returns exactly the images of a
    ``face-attributes`` dataset of size 32; ``render_faces(hair="red", glasses="glasses")`` draws
    one face. A face that does not fit is cut off by the border, not refused.

    Args:
        image_size: the side in pixels.
        supersample: sub-pixels per pixel side for anti-aliasing (2: within 0.12 of 8 x 8 sub-pixels
            everywhere, and within 1/255 on all but a handful of pixels).
    """
    check_int_option("image_size", image_size)
    check_int_option("supersample", supersample)
    factors = {
        "face_shape": face_shape, "skin": skin, "hair": hair, "hairstyle": hairstyle,
        "eyes": eyes, "mouth": mouth, "glasses": glasses,
    }  # fmt: skip
    values = [_indices(v, FACTORS[name], name) for name, v in factors.items()]
    values += [_floats(v, name) for v, name in ((size, "size"), (x, "x"), (y, "y"), (tilt, "tilt"))]
    try:
        values = torch.broadcast_tensors(*values)
    except RuntimeError:
        lengths = {name: len(t) for name, t in zip((*FACTORS, *CONTINUOUS), values)}
        raise ValueError(f"the attributes must have one value or the same number N, got lengths {lengths}") from None
    shape_i, skin_i, hair_i, style_i, eyes_i, mouth_i, glasses_i, size, x, y, tilt = values
    if len(size) and not (size > 0).all():
        raise ValueError(f"size (half the face's height as a fraction of the side) must be > 0, got min {float(size.min())}")

    n, side, ss = len(size), image_size, supersample
    fine = side * ss
    centres = (torch.arange(fine, dtype=torch.float32) + 0.5) / fine  # sub-pixel centres, fractions of the side
    grid_y, grid_x = torch.meshgrid(centres, centres, indexing="ij")
    grid_x, grid_y = grid_x.reshape(1, -1), grid_y.reshape(1, -1)
    angle = torch.deg2rad(tilt)
    cos, sin = torch.cos(angle)[:, None], torch.sin(angle)[:, None]
    half_width = torch.tensor(list(FACE_HALF_WIDTH.values()), dtype=torch.float32)[shape_i][:, None]
    skin_rgb, hair_rgb = _colours(SKIN_COLOURS)[skin_i], _colours(HAIR_COLOURS)[hair_i]
    fixed = {"eye_white": EYE_WHITE, "pupil": PUPIL, "closed_eye": LASHES, "smile": MOUTH, "neutral": MOUTH, "glasses": GLASSES}
    constant = {name: torch.tensor(c, dtype=torch.float32) for name, c in fixed.items()}
    images = torch.empty(n, 3, side, side)
    chunk = max(1, _CHUNK_POINTS // (fine * fine))
    for part in torch.arange(n).split(chunk):
        r, c, s_ = size[part, None], cos[part], sin[part]
        dx, dy = (grid_x - x[part, None]) / r, (y[part, None] - grid_y) / r
        u, v = c * dx + s_ * dy, c * dy - s_ * dx  # turned by -tilt into the face's frame
        distances = _parts(u, v, half_width[part], (style_i[part] == 1)[:, None])
        scale = r * fine  # sub-pixels per unit R

        def cover(name: str, where: Tensor | None = None) -> Tensor:
            cov = (0.5 - distances[name] * scale).clamp(0, 1)
            return cov if where is None else cov * where[part, None].float()

        canvas = torch.tensor(BACKGROUND, dtype=torch.float32)[None, :, None].expand(len(part), 3, fine * fine)
        layers = [
            (cover("hair_back"), hair_rgb[part]),
            (cover("face"), skin_rgb[part]),
            (cover("nose"), skin_rgb[part] * NOSE_SHADE),
            (cover("fringe"), hair_rgb[part]),
            (cover("eye_white", eyes_i == 0), constant["eye_white"]),
            (cover("pupil", eyes_i == 0), constant["pupil"]),
            (cover("closed_eye", eyes_i == 1), constant["closed_eye"]),
            (cover("smile", mouth_i == 0), constant["smile"]),
            (cover("neutral", mouth_i == 1), constant["neutral"]),
            (cover("glasses", glasses_i == 1), constant["glasses"]),
        ]
        for coverage, colour in layers:
            colour = colour.expand(len(part), 3)[:, :, None]
            canvas = canvas + coverage[:, None] * (colour - canvas)
        canvas = canvas.reshape(len(part), 3, side, ss, side, ss).mean((3, 5))
        images[part] = canvas
    return torch.round(images.clamp(0, 1) * 255) / 255


# ---------------------------------------------------------------- dataset


@register_dataset(
    "face-attributes",
    online=False,
    description="cartoon faces drawn by the package: face shape, skin, hair colour and style, eyes, mouth, glasses; "
    "label = (hair, mouth, glasses), e.g. 'blond hair, smiling, glasses'",
    splits=tuple(SPLIT_STREAMS),
)
def load_face_attributes(
    split: str = "train",
    *,
    n: int | None = None,
    size: int = 32,
    seed: int = 0,
    label_by: Sequence[str] | str = DEFAULT_LABEL_BY,
) -> ImageDataset:
    """Procedural cartoon faces with their attributes (see the module docstring for the factors and units).

    Each image draws every factor uniformly and independently, then its size, position and tilt
    uniformly from the ranges of the module docstring. The label is the mixed-radix class of the
    factors ``label_by`` (:func:`face_classes` names them).

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``: independent random streams, no shared images.
        n: number of images (default 5000 for train, 1000 for val and test).
        size: image side in pixels, at least 16 (32 is the book's size).
        seed: the random seed; the same ``(split, seed, n, size)`` gives identical images, and
            the first ``n`` images of a larger ``n`` are the same pictures.
        label_by: the factors the label is made of, most significant first (a list, or names
            separated by commas); default ``("hair", "mouth", "glasses")``, 16 classes.
    """
    label_by = _label_by(label_by)
    n = DEFAULT_N[split] if n is None else n
    check_int_option("n", n)
    check_int_option("size", size, minimum=MIN_SIZE)
    check_int_option("seed", seed, minimum=0)
    # One row of uniform numbers per image, so the first n images do not depend on n.
    draw = np.random.default_rng([seed, SPLIT_STREAMS[split]]).random((n, len(FACTORS) + len(CONTINUOUS)))
    attributes: dict[str, Tensor] = {}
    for j, (factor, names) in enumerate(FACTORS.items()):
        attributes[factor] = torch.from_numpy(np.minimum((draw[:, j] * len(names)).astype(np.int64), len(names) - 1))
    j = len(FACTORS)
    radius = SIZE_RANGE[0] + draw[:, j] * (SIZE_RANGE[1] - SIZE_RANGE[0])
    x, y = (REACH * radius + MARGIN + draw[:, j + k] * (1 - 2 * (REACH * radius + MARGIN)) for k in (1, 2))
    tilt = TILT_RANGE[0] + draw[:, j + 3] * (TILT_RANGE[1] - TILT_RANGE[0])
    for key, value in (("size", radius), ("x", x), ("y", y), ("tilt", tilt)):
        attributes[key] = torch.from_numpy(value).float()
    images = render_faces(**attributes, image_size=size)
    labels = torch.zeros(n, dtype=torch.long)
    for factor in label_by:
        labels = labels * len(FACTORS[factor]) + attributes[factor]
    return ImageDataset(
        images, labels, face_classes(label_by), name="face-attributes", split=split, attributes=attributes, levels=256
    )
