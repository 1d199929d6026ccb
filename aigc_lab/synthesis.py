r"""Chapter 6.4's synthesis tools: animations by latent interpolation, and a stereo view from depth.

**Interpolation.** A generator maps a code :math:`z \sim \mathcal N(0, I)` to an image; the frames
of an animation are the images of a path between two codes. The straight line
:math:`z(t) = (1 - t) z_0 + t z_1` passes, for large dimensions, through codes much shorter than
any the generator saw in training (the norm of a Gaussian code concentrates near
:math:`\sqrt d`, and the midpoint's is about :math:`\sqrt{d/2}`); spherical interpolation
(White, 2016, "Sampling Generative Networks") follows the great circle instead,

.. math:: \mathrm{slerp}(z_0, z_1; t) = \frac{\sin((1 - t)\Omega)}{\sin \Omega} z_0 + \frac{\sin(t\Omega)}{\sin \Omega} z_1,
          \qquad \cos \Omega = \frac{z_0 \cdot z_1}{\lVert z_0 \rVert \lVert z_1 \rVert}.

**Smoothness** (:func:`path_lengths`) is the perceptual path length idea of Karras, Laine & Aila
(2019, "A Style-Based Generator Architecture for Generative Adversarial Networks", CVPR), in the
book's own feature space instead of VGG's: for frames :math:`x_k = G(z(t_k))` at equal steps
:math:`\varepsilon`, :math:`\ell_k = \lVert \phi(x_{k+1}) - \phi(x_k) \rVert^2 / \varepsilon^2`. A
smooth animation spreads the change evenly (small, equal :math:`\ell_k`); a jump, where the
image switches from one face or digit to another in a frame or two, shows as one large term.

**A stereo view** (:func:`render_view`). Two cameras side by side see a point at depth :math:`Z`
at columns that differ by the disparity :math:`d = f B / Z` (focal length :math:`f` in pixels,
baseline :math:`B`). Given the left image and its disparity map, the right view is the left image
with every pixel moved :math:`d` columns to the left: ``right[y, x - d] = left[y, x]``. Where two
pixels land on the same place the nearer one (larger :math:`d`) wins; where none lands (the
background a near object hid from the left camera, a *disocclusion*) there is a hole, filled here
by inpainting (chapter 6.1's Telea method). This is depth-image-based rendering (Fehn, 2004,
"Depth-image-based rendering (DIBR), compression and transmission for a new approach on 3D-TV").
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from aigc_lab.images import check_images, to_unit_range

# ---------------------------------------------------------------- interpolation


def interpolate(z0: Tensor, z1: Tensor, steps: int, *, method: str = "slerp") -> Tensor:
    """``steps`` codes from ``z0`` to ``z1`` (both ends included), ``(steps, *z0.shape)``.

    ``method``: ``"linear"`` (the straight line) or ``"slerp"`` (the great circle; see the module
    docstring). The two codes must have the same shape and be finite; ``slerp`` of two parallel
    codes falls back to the straight line.
    """
    if method not in ("linear", "slerp"):
        raise ValueError(f"method must be 'linear' or 'slerp', got {method!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an integer >= 2 (the two ends included), got {steps!r}")
    if z0.shape != z1.shape:
        raise ValueError(f"the two codes must have the same shape, got {tuple(z0.shape)} and {tuple(z1.shape)}")
    if not (torch.isfinite(z0).all() and torch.isfinite(z1).all()):
        raise ValueError("the codes must be finite")
    t = torch.linspace(0, 1, steps, dtype=z0.dtype).view(-1, *([1] * z0.dim()))
    if method == "linear":
        return (1 - t) * z0 + t * z1
    a, b = z0.flatten(), z1.flatten()
    cos = (a @ b / (a.norm() * b.norm()).clamp_min(1e-12)).clamp(-1, 1)
    omega = torch.arccos(cos)
    if float(torch.sin(omega)) < 1e-6:  # parallel codes: the great circle is the line
        return (1 - t) * z0 + t * z1
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)


def code_size(model: torch.nn.Module) -> int:
    """The length of a generator's code: a VAE's ``latent_dim`` or a GAN generator's ``z_dim``."""
    if hasattr(model, "latent_dim"):
        return int(model.latent_dim)
    if hasattr(model, "generator") and hasattr(model.generator, "z_dim"):
        return int(model.generator.z_dim)
    raise TypeError(f"{type(model).__name__} has no code to interpolate: expected a VAE (latent_dim) or a GAN (generator.z_dim)")


@torch.no_grad()
def decode(model: torch.nn.Module, codes: Tensor) -> Tensor:
    """Images in ``[0, 1]`` from codes ``N x code_size(model)``: a VAE's decoder means, or a GAN generator's images (unconditional models)."""
    expected = code_size(model)
    if codes.dim() != 2 or codes.shape[1] != expected:
        raise ValueError(f"codes must have shape (N, {expected}), got {tuple(codes.shape)}")
    codes = codes.to(next(model.parameters()).device)
    if hasattr(model, "decode"):
        return model.decode(codes).cpu()
    return to_unit_range(model.generator(codes, None)).cpu()


def path_lengths(frames: Tensor, features: Callable[[Tensor], Tensor]) -> Tensor:
    r"""The terms :math:`\ell_k = \lVert \phi(x_{k+1}) - \phi(x_k) \rVert^2 / \varepsilon^2` of an animation, ``(K - 1,)``.

    ``frames``: ``K x C x H x W`` images in ``[0, 1]`` at equal steps of the path parameter from
    0 to 1, so :math:`\varepsilon = 1 / (K - 1)`; ``features``: a function from images to
    ``K x D`` features (e.g. a feature classifier's ``features``). Their mean is the path length
    of the animation; their largest share of the sum says how much of the change happens in one step.
    """
    check_images(frames, name="frames")
    if len(frames) < 2:
        raise ValueError(f"an animation needs at least 2 frames, got {len(frames)}")
    phi = features(frames).double()
    epsilon = 1.0 / (len(frames) - 1)
    return (phi[1:] - phi[:-1]).pow(2).sum(1) / epsilon**2


def save_gif(frames: Tensor | Sequence[Tensor], path: str | os.PathLike | None = None, *, fps: float = 12.0, scale: int = 4, loop: bool = True) -> bytes:
    """Write frames as an animated GIF (and return its bytes; ``path=None`` only returns them).

    ``frames``: ``K x C x H x W`` (``C`` 1 or 3) in ``[0, 1]``, or a list of ``C x H x W``
    images of one size. Each frame is enlarged ``scale`` times by pixel repetition (a 32 x 32
    sample is unreadable at its own size on a page) and shown for ``1 / fps`` seconds; with ``loop``
    the animation plays forwards then backwards forever (a "boomerang", so it has no jump at the end).
    """
    if not isinstance(frames, Tensor):
        frames = torch.stack(list(frames))
    check_images(frames, name="frames")
    if len(frames) < 2:
        raise ValueError(f"an animation needs at least 2 frames, got {len(frames)}")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be an integer >= 1, got {scale!r}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    from PIL import Image

    images = (frames.detach().cpu().float().clamp(0, 1) * 255).round().to(torch.uint8)
    images = images.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    mode = "L" if images.shape[1] == 1 else "RGB"
    pictures = [Image.fromarray(im.squeeze(0).numpy() if mode == "L" else im.permute(1, 2, 0).numpy(), mode) for im in images]
    if loop:
        pictures = pictures + pictures[-2:0:-1]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=round(1000 / fps), loop=0)
    data = buffer.getvalue()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(path).with_name(Path(path).name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return data


# ---------------------------------------------------------------- a stereo view


def stereo_motorcycle() -> tuple[Tensor, Tensor, Tensor]:
    """scikit-image's Middlebury stereo pair: ``(left, right, disparity)``.

    ``left`` and ``right`` are ``3 x 500 x 741`` in ``[0, 1]``; ``disparity`` is ``500 x 741``
    float32, the *left* view's disparity in pixels, with NaN (or infinity) where it is unknown:
    ``left[:, y, x]`` is seen at ``right[:, y, x - disparity[y, x]]``. (scikit-image's docstring
    writes ``x + disp``; the page measures both readings and the data agree with this one.)
    Ships with scikit-image: no download.
    """
    import skimage.data

    left, right, disparity = skimage.data.stereo_motorcycle()
    to_tensor = lambda image: torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255  # noqa: E731
    disparity = torch.from_numpy(np.asarray(disparity, dtype=np.float32))
    return to_tensor(left), to_tensor(right), torch.where(torch.isfinite(disparity), disparity, torch.full_like(disparity, float("nan")))


def render_view(image: Tensor, disparity: Tensor) -> tuple[Tensor, Tensor]:
    """Move every pixel of ``image`` (``C x H x W``) ``disparity`` columns to the left: the right camera's view.

    Returns ``(view, covered)``: ``view`` ``C x H x W`` with zeros where no pixel landed, and
    ``covered`` ``H x W`` bool, True where one did. Pixels of unknown (NaN) disparity, and those
    moved past the left edge, are left out; where several land on one pixel the one with the largest disparity (the nearest) wins,
    which is a z-buffer. Disparities are rounded to whole pixels.
    """
    check_images(image.unsqueeze(0), name="image")
    if disparity.shape != image.shape[-2:]:
        raise ValueError(f"disparity must be H x W = {tuple(image.shape[-2:])} like the image, got {tuple(disparity.shape)}")
    if bool((disparity[torch.isfinite(disparity)] < 0).any()):
        raise ValueError("disparity must be >= 0 (a point in front of the cameras); got negative values")
    c, h, w = image.shape
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    known = torch.isfinite(disparity)
    target = xs - torch.where(known, disparity, torch.zeros_like(disparity)).round().long()
    keep = known & (target >= 0)
    source_y, source_x, d = ys[keep], xs[keep], disparity[keep]
    flat = source_y * w + target[keep]  # where each kept pixel lands
    # The z-buffer: rank the kept pixels by disparity (ties by position, so every rank is unique),
    # and let each target pixel keep the highest rank that lands on it. A plain indexed assignment
    # with repeated targets would leave the winner unspecified, and possibly different per channel.
    order = torch.argsort(d, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order))
    best = torch.full((h * w,), -1, dtype=torch.long).scatter_reduce(0, flat, rank, reduce="amax")
    covered = best >= 0
    winner = order[best[covered]]  # the kept pixel that each covered target shows
    view = torch.zeros(c, h * w, dtype=image.dtype)
    view[:, covered] = image[:, source_y[winner], source_x[winner]]
    return view.view(c, h, w), covered.view(h, w)


def fill_holes(image: Tensor, holes: Tensor, *, radius: int = 3) -> Tensor:
    """Fill ``holes`` (``H x W`` bool) of ``image`` (``C x H x W`` in ``[0, 1]``) with OpenCV's Telea inpainting."""
    import cv2

    check_images(image.unsqueeze(0), name="image")
    if holes.shape != image.shape[-2:]:
        raise ValueError(f"holes must be H x W = {tuple(image.shape[-2:])} like the image, got {tuple(holes.shape)}")
    pixels = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    filled = cv2.inpaint(pixels, holes.numpy().astype(np.uint8), radius, cv2.INPAINT_TELEA)
    filled = filled.reshape(pixels.shape)  # cv2 drops the channel axis of a one-channel image
    return torch.from_numpy(filled).permute(2, 0, 1).float() / 255


def masked_psnr(image: Tensor, reference: Tensor, mask: Tensor) -> float:
    r"""PSNR (dB, peak 1) over the pixels where ``mask`` (``H x W`` bool) is True: :math:`10 \log_{10}(1 / \mathrm{MSE})`."""
    if image.shape != reference.shape or mask.shape != image.shape[-2:]:
        raise ValueError(f"image {tuple(image.shape)}, reference {tuple(reference.shape)} and mask {tuple(mask.shape)} must agree")
    if not bool(mask.any()):
        raise ValueError("the mask selects no pixel")
    mse = float((image - reference).pow(2)[..., mask].mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)
