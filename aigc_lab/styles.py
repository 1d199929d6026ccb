r"""The two styles of chapter 6.2, rendered without a network: oil painting and pencil drawing.

The source article names two target styles, oil painting (油画风格) and pencil drawing (铅笔风格).
Before a network learns them, this module renders each the classical way, so the chapter has a
baseline to compare with and a picture of what the style is:

* Oil painting: the Kuwahara filter (Kuwahara, Hachimura, Eiho & Kinoshita, 1976,
  "Processing of RI-angiocardiographic images"), :func:`kuwahara`, which flattens each region into
  a patch of one colour like a brush stroke while keeping the edges between regions sharp;
  :func:`oil_painting` adds a mild saturation boost. For comparison, OpenCV's edge-preserving
  stylization (Gastal & Oliveira, 2011), :func:`opencv_stylization`.
* Pencil drawing: Lu, Xu & Jia (2012), "Combining Sketch and Tone for Pencil Drawing Production"
  (NPAR), :func:`pencil_drawing`: a stroke map of lines drawn along the image's edges
  (:func:`stroke_map`) times a pencil texture (:func:`pencil_texture`) raised to a per-pixel power so
  that it matches the tone of a real pencil drawing (:func:`tone_map`, :func:`texture_exponent`).
  For comparison, OpenCV's ``pencilSketch`` (also Gastal & Oliveira), :func:`opencv_pencil_sketch`.

Every function takes and returns the book's tensors, ``N x C x H x W`` in :math:`[0, 1]` with
``C = 1`` (gray) or 3 (RGB), and keeps the shape and dtype. The work is done per image on the CPU
in NumPy and OpenCV; :data:`STYLES` and :func:`render_style` pick a style by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from aigc_lab.images import check_images

# ITU-R BT.601 luma weights: those of OpenCV's COLOR_RGB2GRAY and PIL's convert("L").
_LUMA = (0.299, 0.587, 0.114)

# Lu, Xu & Jia (2012), section 3.2: the tone distribution of real pencil drawings on the 0-255
# scale: a bright Laplacian layer (the white paper), a uniform mid-tone layer, a dark Gaussian layer.
PENCIL_TONE = {"sigma_b": 9.0, "u_a": 105.0, "u_b": 225.0, "mu_d": 90.0, "sigma_d": 11.0}
# Weights of the (bright, mid-tone, dark) layers, in percent; see tone_distribution.
PENCIL_TONE_WEIGHTS = (76.0, 22.0, 2.0)


# --------------------------------------------------------------------------------------------
# Conventions: checks and the per-image loop
# --------------------------------------------------------------------------------------------


def _check(images: Tensor, name: str = "images") -> Tensor:
    return check_images(images, name=name, value_range=(0.0, 1.0), channels=(1, 3), batched=True)


def _check_positive_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_in_range(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not low <= value <= high:
        raise ValueError(f"{name} must be a number in [{low:g}, {high:g}], got {value!r}")
    return float(value)


def _per_image(images: Tensor, fn: Callable[[np.ndarray], np.ndarray]) -> Tensor:
    """``fn`` applied to each image as an ``H x W`` (gray) or ``H x W x 3`` (RGB) float64 array in
    [0, 1]; its results (``H x W`` or ``H x W x 3``) stacked into an ``N x C x H x W`` tensor of the
    input's dtype and device, clamped to [0, 1]."""
    out = []
    for image in images.detach().cpu().double().numpy():
        array = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
        result = np.asarray(fn(array), dtype=np.float64)
        out.append(result[None] if result.ndim == 2 else result.transpose(2, 0, 1))
    if not out:
        return images.detach().clone()
    return torch.from_numpy(np.stack(out)).clamp(0, 1).to(dtype=images.dtype, device=images.device)


def _luma(array: np.ndarray) -> np.ndarray:
    """The brightness of an ``H x W x 3`` RGB array (BT.601 luma); a gray ``H x W`` array unchanged."""
    return array if array.ndim == 2 else array @ np.asarray(_LUMA)


def _brightness(images: Tensor) -> Tensor:
    """The brightness of ``N x C x H x W`` images as ``N x 1 x H x W``: the BT.601 luma of RGB."""
    if images.shape[1] == 1:
        return images
    return torch.einsum("nchw,c->nhw", images, images.new_tensor(_LUMA))[:, None]


def _as_channels(gray: np.ndarray, channels: int) -> np.ndarray:
    """A gray ``H x W`` result in the input's layout: itself, or repeated into three channels."""
    return gray if channels == 1 else np.repeat(gray[..., None], 3, axis=-1)


def _to_uint8_rgb(array: np.ndarray) -> np.ndarray:
    """An ``H x W x 3`` uint8 array for OpenCV's photo module, which takes only 8-bit colour images;
    gray images are repeated into three channels."""
    rgb = array if array.ndim == 3 else np.repeat(array[..., None], 3, axis=-1)
    return np.ascontiguousarray(np.round(rgb * 255).astype(np.uint8))


# --------------------------------------------------------------------------------------------
# Oil painting: the Kuwahara filter
# --------------------------------------------------------------------------------------------


def _reflect_101(n: int, pad: int) -> Tensor:
    """Indices of a length-``n`` axis padded by ``pad`` on both sides with reflection about the end
    pixels (``dcb|abcd|cba``), OpenCV's default border, repeated for pads longer than the axis."""
    if n == 1:
        return torch.zeros(n + 2 * pad, dtype=torch.long)
    period = 2 * (n - 1)
    index = torch.arange(-pad, n + pad).abs() % period
    return torch.minimum(index, period - index)


def quadrant_means(images: Tensor, radius: int) -> Tensor:
    r"""The means of the four ``(radius + 1) x (radius + 1)`` quadrant windows with pixel ``p`` in a
    corner, for every pixel of ``N x C x H x W`` images: ``N x 4 x C x H x W``, ordered below right,
    above right, below left, above left (pykuwahara's order, so that a tie between two quadrants
    picks the same one).

    The image is extended by ``radius`` pixels by reflection about its border pixels
    (:func:`_reflect_101`, for any size); one box filter then gives the mean of the window starting
    at every position, and the quadrant of ``p`` that lies below it (right of it) starts ``radius``
    rows (columns) further than the one above it (left of it). Differentiable: the Kuwahara filter
    (:func:`kuwahara`) and the network built like it (:mod:`aigc_lab.models.kuwahara_net`) share it.
    """
    h, w = images.shape[-2:]
    padded = images[..., _reflect_101(h, radius).to(images.device), :][..., _reflect_101(w, radius).to(images.device)]
    n, c = padded.shape[:2]
    box = F.avg_pool2d(padded.reshape(n * c, 1, *padded.shape[-2:]), radius + 1, stride=1)
    box = box.reshape(n, c, h + radius, w + radius)
    corners = ((1, 1), (0, 1), (1, 0), (0, 0))
    return torch.stack([box[..., dy * radius : dy * radius + h, dx * radius : dx * radius + w] for dy, dx in corners], 1)


def kuwahara(images: Tensor, radius: int = 4) -> Tensor:
    r"""The Kuwahara filter (Kuwahara et al., 1976): each pixel becomes the mean of the quadrant
    around it with the least variance.

    Each pixel :math:`p` has four overlapping square windows :math:`Q_k` of side
    :math:`r + 1` (``radius + 1``), each with :math:`p` in a corner (above left, above right, below
    left, below right), so together they cover the :math:`(2r+1) \times (2r+1)` window centred on
    :math:`p`. With the mean :math:`m_k` and variance :math:`s_k^2 = \overline{x^2} - m_k^2` of each,

    .. math:: y(p) = m_{k^*}(p), \qquad k^* = \arg\min_k s_k^2(p).

    Near an edge, the quadrants that straddle it have a large variance, so the pixel takes the mean
    of a quadrant that lies wholly on its own side: flat areas are smoothed into patches, and edges
    stay sharp. For a colour image the variance is that of the brightness (BT.601 luma) and the
    chosen quadrant's mean is taken per channel, so the three channels pick the same quadrant and no
    false colours appear. The image is extended past its border by reflection about the border
    pixels.

    This is the definition of the ``pykuwahara`` package (``method="mean"``, same ``radius``,
    ``grayconv=cv2.COLOR_RGB2GRAY`` for RGB arrays), which the tests check it against.

    Args:
        images: ``N x C x H x W`` in :math:`[0, 1]`, ``C`` 1 or 3.
        radius: :math:`r \ge 1`; the quadrants are :math:`(r+1) \times (r+1)` pixels.
    """
    _check(images)
    radius = _check_positive_int("radius", radius)
    x = images.detach().cpu().double()
    means = quadrant_means(x, radius)  # N x 4 x C x H x W
    if x.shape[1] == 3:
        brightness = _brightness(x)
        brightness_means = quadrant_means(brightness, radius)
    else:
        brightness, brightness_means = x, means
    # E[x^2] - E[x]^2 from two box filters: O(1) per pixel whatever the radius.
    variances = quadrant_means(brightness**2, radius) - brightness_means**2  # N x 4 x 1 x H x W
    best = variances.argmin(dim=1, keepdim=True).expand(-1, 1, *means.shape[2:])
    result = means.gather(1, best)[:, 0]
    return result.clamp(0, 1).to(dtype=images.dtype, device=images.device)


def _boost_saturation(rgb: Tensor, saturation: float) -> Tensor:
    r"""Move each colour away from its gray by the factor ``saturation``:
    :math:`y = Y + s (x - Y)` with :math:`Y` the BT.601 luma, which keeps the brightness."""
    brightness = _brightness(rgb)
    return (brightness + saturation * (rgb - brightness)).clamp(0, 1)


def oil_painting(images: Tensor, radius: int = 4, saturation: float = 1.3) -> Tensor:
    r"""The book's classical oil painting: the Kuwahara filter, then a mild saturation boost.

    .. math:: y = Y(k) + s\,\bigl(k - Y(k)\bigr), \qquad k = \mathrm{Kuwahara}_r(x),

    with :math:`Y` the BT.601 luma and :math:`s` = ``saturation``. The Kuwahara filter
    (:func:`kuwahara`) does the painting: it replaces fine texture by flat patches a few pixels
    across, with crisp borders, like the strokes of a loaded brush. Oil paint is also more vivid than
    a photograph, so colours are pushed away from gray by :math:`s` (1.3: visible, not garish; 1
    keeps them). Gray images get the filter only. The patch size grows with ``radius``: 4 suits a
    256-pixel image, larger images want more.

    We chose this over the "oil paint" filter of image editors (the most frequent intensity bin in a
    window, OpenCV's ``xphoto.oilPainting``): that needs OpenCV's contrib build, and its patches
    follow the intensity histogram rather than the image's edges.
    """
    _check(images)
    _check_in_range("saturation", saturation, 0.0, 4.0)
    painted = kuwahara(images, radius)
    if images.shape[1] == 1 or saturation == 1:
        return painted
    return _boost_saturation(painted.double(), saturation).to(images.dtype)


def opencv_stylization(images: Tensor, sigma_s: float = 60, sigma_r: float = 0.45) -> Tensor:
    r"""OpenCV's ``cv2.stylization``: edge-aware smoothing by the domain transform (Gastal &
    Oliveira, 2011, "Domain Transform for Edge-Aware Image and Video Processing", SIGGRAPH), with
    the strongest edges darkened, which gives a watercolour or painted look.

    ``sigma_s`` (0-200) is the spatial extent of the smoothing in pixels and ``sigma_r`` (0-1) how
    different two colours must be to count as an edge; 60 and 0.45 are OpenCV's defaults. OpenCV
    works on 8-bit RGB images, so the image is rounded to 256 levels; a gray image is repeated into
    three channels and the result's luma returned.
    """
    _check(images)
    sigma_s = _check_in_range("sigma_s", sigma_s, 1e-3, 200)
    sigma_r = _check_in_range("sigma_r", sigma_r, 1e-3, 1)
    import cv2

    def fn(array: np.ndarray) -> np.ndarray:
        bgr = cv2.cvtColor(_to_uint8_rgb(array), cv2.COLOR_RGB2BGR)
        styled = cv2.cvtColor(cv2.stylization(bgr, sigma_s=sigma_s, sigma_r=sigma_r), cv2.COLOR_BGR2RGB) / 255.0
        return styled if array.ndim == 3 else _luma(styled)

    return _per_image(images, fn)


# --------------------------------------------------------------------------------------------
# Pencil drawing: Lu, Xu & Jia (2012)
# --------------------------------------------------------------------------------------------


def line_kernel(length: int, angle: float) -> np.ndarray:
    r"""A ``length x length`` kernel holding a line segment through its centre at ``angle`` radians
    from the horizontal (counter-clockwise, the image's rows growing downwards), summing to 1.

    A pixel at offset :math:`(d_x, d_y)` from the centre (:math:`d_y` down) lies
    :math:`a = d_x \cos\theta - d_y \sin\theta` along the line and
    :math:`d = d_x \sin\theta + d_y \cos\theta` across it; it weighs how much of it the segment
    covers, one pixel wide and ``length`` long:

    .. math:: w = \max(0, 1 - |d|)\;\mathrm{clip}\bigl(\tfrac{\mathrm{length}}{2} + \tfrac12 - |a|, 0, 1\bigr).

    This anti-aliasing gives every direction a line of the same length and strength; a line
    rasterised pixel by pixel would be shorter on the diagonals, where the square's corners cut it.
    """
    length = _check_positive_int("length", length)
    offsets = np.arange(length) - (length - 1) / 2
    dx, dy = np.meshgrid(offsets, offsets)  # dx grows along a row, dy down the column
    along = dx * math.cos(angle) - dy * math.sin(angle)
    across = dx * math.sin(angle) + dy * math.cos(angle)
    kernel = np.clip(1 - np.abs(across), 0, None) * np.clip(length / 2 + 0.5 - np.abs(along), 0, 1)
    return kernel / kernel.sum()


def stroke_line_length(height: int, width: int) -> int:
    """The length of the stroke kernels for an image: about 1/30 of its smaller side (Lu et al.
    suggest 1/30 of the image's height or width), at least 5, and odd so the line has a centre."""
    length = max(5, round(min(height, width) / 30))
    return length + 1 - length % 2


def _gradient_magnitude(gray: np.ndarray) -> np.ndarray:
    r""":math:`G = \sqrt{(\partial_x I)^2 + (\partial_y I)^2}` with forward differences, 0 past the
    last row and column, as in Lu et al."""
    dx = np.zeros_like(gray)
    dy = np.zeros_like(gray)
    dx[:, :-1] = gray[:, 1:] - gray[:, :-1]
    dy[:-1, :] = gray[1:, :] - gray[:-1, :]
    return np.hypot(dx, dy)


def _stroke_map_2d(gray: np.ndarray, length: int, directions: int) -> np.ndarray:
    import cv2

    gradient = _gradient_magnitude(gray).astype(np.float32)
    kernels = [line_kernel(length, math.pi * i / directions).astype(np.float32) for i in range(directions)]
    # A constant border, as the paper's zero-padded convolution: a line does not run past the image.
    border = cv2.BORDER_CONSTANT
    responses = np.stack([cv2.filter2D(gradient, -1, k, borderType=border) for k in kernels])  # directions x H x W
    winner = responses.argmax(axis=0)
    strokes = sum(cv2.filter2D(np.where(winner == i, gradient, 0).astype(np.float32), -1, k, borderType=border) for i, k in enumerate(kernels))
    strokes = strokes.astype(np.float64)
    spread = strokes.max() - strokes.min()
    normalised = (strokes - strokes.min()) / spread if spread > 0 else np.zeros_like(strokes)
    return 1 - normalised


def stroke_map(images: Tensor, line_length: int | None = None, directions: int = 8) -> Tensor:
    r"""The stroke map :math:`S` of Lu, Xu & Jia (2012), section 3.1: the image's edges redrawn as
    straight pencil lines, dark on white, ``N x 1 x H x W``.

    1. The gradient magnitude :math:`G` of the brightness, with forward differences.
    2. Each pixel is classified to the one of ``directions`` line directions whose line kernel
       :math:`\mathcal{L}_i` (:func:`line_kernel`, angles :math:`i\pi/8`) responds most:
       :math:`C_i(p) = G(p)` if :math:`\arg\max_j (\mathcal{L}_j * G)(p) = i`, else 0.
       Noise gives short, isolated responses; an edge gives a long one along its own direction.
    3. Each class is drawn with its own line: :math:`S' = \sum_i \mathcal{L}_i * C_i`, so
       every edge pixel becomes a short stroke along the edge, and strokes cross a little at
       corners as an artist's do.
    4. :math:`S = 1 - (S' - \min S') / (\max S' - \min S')`: dark lines on white paper.

    ``line_length`` defaults to :func:`stroke_line_length` (1/30 of the smaller side, at least 5).
    """
    _check(images)
    directions = _check_positive_int("directions", directions, 2)
    h, w = images.shape[-2:]
    length = stroke_line_length(h, w) if line_length is None else _check_positive_int("line_length", line_length, 3)
    return _per_image(_brightness(images), lambda gray: _stroke_map_2d(gray, length, directions))


def tone_distribution(
    levels: int = 256, weights: Sequence[float] = PENCIL_TONE_WEIGHTS, **parameters: float
) -> tuple[np.ndarray, np.ndarray]:
    r"""The tone distribution of pencil drawings (Lu, Xu & Jia, 2012, section 3.2), sampled at
    ``levels`` values :math:`v` in [0, 1]: ``(v, p(v))`` with ``p`` summing to 1.

    On the 0-255 scale,

    .. math::
        p(v) = \frac{1}{Z} \sum_{i=1}^{3} \omega_i\, p_i(v), \qquad
        p_1(v) = \frac{1}{\sigma_b} e^{-\frac{255 - v}{\sigma_b}}, \quad
        p_2(v) = \frac{[u_a \le v \le u_b]}{u_b - u_a}, \quad
        p_3(v) = \frac{1}{\sqrt{2\pi}\,\sigma_d} e^{-\frac{(v - \mu_d)^2}{2\sigma_d^2}}:

    the white paper (a Laplacian tail falling off from 255), the mid tones drawn with light strokes
    (uniform) and the darkest strokes (Gaussian). The parameters are the paper's values fitted to
    real drawings, :data:`PENCIL_TONE`: :math:`\sigma_b = 9`, :math:`u_a = 105`, :math:`u_b = 225`,
    :math:`\mu_d = 90`, :math:`\sigma_d = 11`; any of them can be overridden by keyword. :math:`Z`
    makes the sampled values sum to 1. (The paper prints :math:`p_3`'s normaliser as
    :math:`\sqrt{2\pi\sigma_d}`; with :math:`Z` renormalising, that only rescales :math:`\omega_3`.)

    The weights :math:`\omega` of the (bright, mid-tone, dark) layers set how light the drawing is.
    The default, :data:`PENCIL_TONE_WEIGHTS` = (76, 22, 2), is the lightest of the three weight
    groups that the widely used reimplementations of the paper offer (42:29:29, 52:37:11, 76:22:2),
    and their default: mostly white paper, as in the paper's drawings. The paper's own table of
    fitted weights lists 11, 37, 52, the middle group in the opposite order; taken with
    :math:`\omega_1` on the bright layer, half of every drawing would be the darkest tone, which is
    not what the paper's results look like, so we follow the reimplementations. Pass another
    ``weights`` for a darker drawing.
    """
    levels = _check_positive_int("levels", levels, 2)
    values = dict(PENCIL_TONE)
    unknown = set(parameters) - set(values)
    if unknown:
        raise ValueError(f"unknown tone parameter(s) {sorted(unknown)}; expected some of {sorted(values)}")
    values.update({k: float(v) for k, v in parameters.items()})
    weights = tuple(float(w) for w in weights)
    if len(weights) != 3 or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"weights must be three non-negative numbers (bright, mid-tone, dark) with a positive sum, got {weights!r}")
    v = np.linspace(0, 255, levels)
    bright = np.exp(-(255 - v) / values["sigma_b"]) / values["sigma_b"]
    mid = ((values["u_a"] <= v) & (v <= values["u_b"])) / (values["u_b"] - values["u_a"])
    dark = np.exp(-((v - values["mu_d"]) ** 2) / (2 * values["sigma_d"] ** 2)) / (math.sqrt(2 * math.pi) * values["sigma_d"])
    density = weights[0] * bright + weights[1] * mid + weights[2] * dark
    return v / 255, density / density.sum()


def _match_to_distribution(gray: np.ndarray, values: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    r"""Histogram matching to a target distribution: :math:`J = F_t^{-1}(F(I))`, with :math:`F` the
    input's empirical CDF (the mid-rank of each value, so equal values stay equal) and :math:`F_t`
    the target's CDF, inverted by linear interpolation."""
    flat = gray.ravel()
    order = np.sort(flat)
    rank = (np.searchsorted(order, flat, side="left") + np.searchsorted(order, flat, side="right")) / 2
    quantile = rank / flat.size
    target_cdf = np.cumsum(probabilities)
    # The target CDF is flat where p = 0 (between the layers); np.interp needs it increasing.
    keep = np.concatenate([[True], np.diff(target_cdf) > 0])
    return np.interp(quantile, target_cdf[keep], values[keep]).reshape(gray.shape)


def tone_map(images: Tensor, weights: Sequence[float] = PENCIL_TONE_WEIGHTS) -> Tensor:
    r"""The tone map :math:`J` of Lu, Xu & Jia (2012), section 3.2: the brightness, histogram-matched
    to the tone distribution of pencil drawings (:func:`tone_distribution`), ``N x 1 x H x W``.

    :math:`J = F_t^{-1}(F(I))` with :math:`F` the empirical CDF of the brightness :math:`I` and
    :math:`F_t` the CDF of :math:`p(v)`: the order of the tones is kept, and their histogram becomes
    the one measured on real drawings, mostly paper white with a few dark strokes.
    """
    _check(images)
    values, probabilities = tone_distribution(weights=weights)
    return _per_image(_brightness(images), lambda gray: _match_to_distribution(gray, values, probabilities))


def _generator(seed: int | torch.Generator) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int or a torch.Generator, got {seed!r}")
    return torch.Generator().manual_seed(int(seed))


def pencil_texture(
    size: int | tuple[int, int],
    seed: int | torch.Generator = 0,
    *,
    angle: float = 45.0,
    stroke_length: int | None = None,
    mean: float = 0.75,
    contrast: float = 0.15,
) -> Tensor:
    r"""A procedural pencil hatching, the tone texture :math:`H` of :func:`pencil_drawing`: a gray
    ``1 x 1 x H x W`` tensor in [0, 1] whose mean is about ``mean``.

    Lu et al. scan a real drawing of evenly hatched pencil strokes; we draw one:

    .. math:: H = \mathrm{clip}\Bigl(\mu - c\,\frac{n - \bar n}{\operatorname{std} n}, 0, 1\Bigr),
        \qquad n = \mathcal{L}_\theta * \max(\varepsilon, 0)^2,

    with :math:`\varepsilon` white Gaussian noise. Squaring its positive half leaves a few strong
    grains of graphite; blurring them with a line :math:`\mathcal{L}_\theta` (:func:`line_kernel`) at
    ``angle`` degrees smears each grain into a stroke along the hatching direction; the result is
    standardised and subtracted from the mean tone :math:`\mu` with contrast :math:`c`, so strokes
    are dark; clipping at 0 and 1 moves the mean by less than 0.01.
    ``stroke_length`` (pixels) defaults to a fifth of the smaller side, at least 9.

    The same ``seed`` (an int or a ``torch.Generator``) gives the same texture.
    """
    h, w = (size, size) if isinstance(size, (int, np.integer)) and not isinstance(size, bool) else tuple(size)
    h, w = _check_positive_int("size (height)", h), _check_positive_int("size (width)", w)
    mean = _check_in_range("mean", mean, 0.0, 1.0)
    contrast = _check_in_range("contrast", contrast, 0.0, 1.0)
    length = max(9, min(h, w) // 5) if stroke_length is None else _check_positive_int("stroke_length", stroke_length)
    import cv2

    # Noise wider than the texture by one stroke on each side, so that strokes run off the edges
    # as on a cut-out piece of a larger drawing instead of fading at the border.
    noise = torch.randn(h + 2 * length, w + 2 * length, generator=_generator(seed), dtype=torch.float64).numpy()
    grains = np.maximum(noise, 0) ** 2
    kernel = line_kernel(length, math.radians(angle))
    strokes = cv2.filter2D(grains, -1, kernel)[length : length + h, length : length + w]
    spread = strokes.std()
    standardised = (strokes - strokes.mean()) / spread if spread > 0 else np.zeros_like(strokes)
    texture = np.clip(mean - contrast * standardised, 0, 1)
    return torch.from_numpy(texture).float()[None, None]


def texture_exponent(texture: np.ndarray, tone: np.ndarray, smoothness: float = 0.2) -> np.ndarray:
    r"""The per-pixel exponent :math:`\beta` that makes the texture match the tone, :math:`H^\beta
    \approx J` (Lu, Xu & Jia, 2012, section 3.2): both ``H x W`` arrays in (0, 1].

    .. math:: \beta^* = \arg\min_\beta \|\beta \ln H - \ln J\|_2^2 + \lambda \|\nabla \beta\|_2^2,

    with :math:`\lambda` = ``smoothness`` (the paper's 0.2). Raising a texture value to
    :math:`\beta > 1` darkens it: hatching the same stroke again. The smoothness term keeps
    :math:`\beta` from following every grain of the texture, so the strokes keep their look and
    only their density changes. Setting the gradient to zero gives the sparse linear system

    .. math:: \bigl(\operatorname{diag}(\ln H)^2 + \lambda (D_x^\top D_x + D_y^\top D_y)\bigr)\,\beta
        = \ln H \cdot \ln J,

    with :math:`D_x, D_y` forward differences. It is symmetric positive definite, and for the
    paper's small :math:`\lambda` well conditioned, so conjugate gradients, started from the
    per-pixel solution :math:`\ln J / \ln H` and preconditioned by the diagonal, solve it fast: on a
    256 x 256 image, 75 iterations and 0.08 s to a relative residual of :math:`10^{-6}`, where a
    sparse direct solve (SuperLU) takes 0.5 s. A large :math:`\lambda` needs many more iterations;
    if 1000 are not enough, the direct solver is used.
    """
    from scipy import sparse
    from scipy.sparse.linalg import cg, spsolve

    smoothness = _check_in_range("smoothness", smoothness, 0.0, 1e6)
    h, w = tone.shape
    # Keep the logarithms finite and texture values away from 1, where H^beta = 1 for every beta.
    log_texture = np.log(np.clip(texture, 1e-3, 0.999)).ravel()
    log_tone = np.log(np.clip(tone, 1e-3, 1.0)).ravel()

    def forward_difference(n: int) -> sparse.csr_matrix:
        return sparse.diags([-np.ones(n - 1), np.ones(n - 1)], [0, 1], shape=(n - 1, n))

    dx = sparse.kron(sparse.identity(h), forward_difference(w))
    dy = sparse.kron(forward_difference(h), sparse.identity(w))
    system = (sparse.diags(log_texture**2) + smoothness * (dx.T @ dx + dy.T @ dy)).tocsr()
    right = log_texture * log_tone
    jacobi = sparse.diags(1 / system.diagonal())
    beta, info = cg(system, right, x0=log_tone / log_texture, rtol=1e-6, maxiter=1000, M=jacobi)
    if info != 0:
        beta = spsolve(system.tocsc(), right)
    return beta.reshape(h, w)


def _pencil_gray(gray: np.ndarray, texture: np.ndarray, length: int, weights: Sequence[float], smoothness: float) -> np.ndarray:
    values, probabilities = tone_distribution(weights=weights)
    strokes = _stroke_map_2d(gray, length, 8)
    tone = _match_to_distribution(gray, values, probabilities)
    beta = texture_exponent(texture, tone, smoothness)
    shading = np.clip(texture, 1e-3, 1.0) ** beta
    return strokes * shading


def pencil_drawing(
    images: Tensor,
    *,
    seed: int | torch.Generator = 0,
    texture: Tensor | None = None,
    line_length: int | None = None,
    weights: Sequence[float] = PENCIL_TONE_WEIGHTS,
    smoothness: float = 0.2,
    colour: bool = False,
) -> Tensor:
    r"""A pencil drawing of each image (Lu, Xu & Jia, 2012, "Combining Sketch and Tone for Pencil
    Drawing Production", NPAR): lines along the edges times hatching shaded to the image's tones.

    .. math:: R = S \cdot H^{\beta}

    * :math:`S`, the stroke map (:func:`stroke_map`): the edges drawn as short straight lines;
    * :math:`J`, the tone map (:func:`tone_map`): the brightness histogram-matched to the tone
      distribution of real pencil drawings (:func:`tone_distribution`, ``weights``);
    * :math:`H`, a pencil texture (:func:`pencil_texture` from ``seed``, or ``texture``, a gray
      ``1 x 1 x H x W`` tensor at least as large as the images, cropped to them);
    * :math:`\beta`, the per-pixel exponent with :math:`H^\beta \approx J`, smooth in space
      (:func:`texture_exponent`, :math:`\lambda` = ``smoothness``).

    Colour images are drawn on their brightness (BT.601 luma); the gray drawing is returned
    repeated into three channels, so the output's shape is the input's. With ``colour=True`` the
    drawing replaces the luma (the Y of YUV) of the colour image instead, as the paper does for
    colour pencil drawings, giving a coloured-pencil look.
    """
    _check(images)
    h, w = images.shape[-2:]
    length = stroke_line_length(h, w) if line_length is None else _check_positive_int("line_length", line_length, 3)
    if texture is None:
        texture = pencil_texture((h, w), seed)
    else:
        check_images(texture, name="texture", value_range=(0.0, 1.0), channels=1, batched=True)
        if texture.shape[0] != 1 or texture.shape[-2] < h or texture.shape[-1] < w:
            raise ValueError(f"texture must be 1 x 1 x H' x W' with H' >= {h} and W' >= {w}, got shape {tuple(texture.shape)}")
    hatching = texture[0, 0, :h, :w].detach().cpu().double().numpy()
    import cv2

    def fn(array: np.ndarray) -> np.ndarray:
        drawing = _pencil_gray(_luma(array), hatching, length, weights, smoothness)
        if array.ndim == 2 or not colour:
            return _as_channels(drawing, 1 if array.ndim == 2 else 3)
        yuv = cv2.cvtColor(array.astype(np.float32), cv2.COLOR_RGB2YUV)
        yuv[..., 0] = drawing
        return cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB)

    return _per_image(images, fn)


def opencv_pencil_sketch(images: Tensor, sigma_s: float = 60, sigma_r: float = 0.07, shade_factor: float = 0.05) -> Tensor:
    r"""OpenCV's ``cv2.pencilSketch`` (after Gastal & Oliveira, 2011): the image smoothed by the
    domain transform's normalized-convolution filter, its edges traced dark, on a shaded paper.

    ``sigma_s`` (0-200) is the smoothing's extent in pixels, ``sigma_r`` (0-1) the colour difference
    that counts as an edge, ``shade_factor`` (0-0.1) how much of the image's brightness shades the
    paper; 60, 0.07 and 0.02 are OpenCV's defaults, and 0.05 gives the paper a little more shading.
    OpenCV returns a gray and a colour sketch of an 8-bit RGB image; the gray one is returned,
    repeated into three channels for a colour input.
    """
    _check(images)
    sigma_s = _check_in_range("sigma_s", sigma_s, 1e-3, 200)
    sigma_r = _check_in_range("sigma_r", sigma_r, 1e-3, 1)
    shade_factor = _check_in_range("shade_factor", shade_factor, 0, 0.1)
    import cv2

    def fn(array: np.ndarray) -> np.ndarray:
        bgr = cv2.cvtColor(_to_uint8_rgb(array), cv2.COLOR_RGB2BGR)
        gray, _ = cv2.pencilSketch(bgr, sigma_s=sigma_s, sigma_r=sigma_r, shade_factor=shade_factor)
        return _as_channels(gray / 255.0, 1 if array.ndim == 2 else 3)

    return _per_image(images, fn)


# --------------------------------------------------------------------------------------------
# By name
# --------------------------------------------------------------------------------------------

STYLES: dict[str, Callable[..., Tensor]] = {"oil": oil_painting, "pencil": pencil_drawing}


def _check_style(style: str) -> None:
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose one of: {', '.join(STYLES)}")


def render_style(images: Tensor, style: str, **options: object) -> Tensor:
    """The images in a style of :data:`STYLES` (``"oil"`` or ``"pencil"``), with that function's
    ``options``."""
    _check_style(style)
    return STYLES[style](images, **options)


def reference_image(style: str, size: int = 256) -> Tensor:
    """A style's reference picture, the target a style network learns from: scikit-image's
    ``astronaut`` photo (flat areas, sharp edges, dark and light regions, skin, fabric), cropped to
    a square and resized to ``size``, rendered in ``style``; ``1 x 3 x size x size`` in [0, 1].

    The Kuwahara radius grows with the size (4 at 256 pixels), so that the brush strokes cover the
    same part of the picture at every size; the pencil drawing scales its lines itself.
    """
    _check_style(style)
    size = _check_positive_int("size", size, 8)
    from skimage import data, transform

    photo = data.astronaut()  # 512 x 512, already square
    array = transform.resize(photo, (size, size), anti_aliasing=True)
    images = torch.from_numpy(array).float().permute(2, 0, 1)[None].clamp(0, 1)
    if style == "oil":
        return oil_painting(images, radius=max(1, round(4 * size / 256)))
    return render_style(images, style)
