"""Run a trained image-to-image model on a reader's own image files: what ``python -m aigc_lab apply`` does.

:func:`restore_image` adapts one image to the model (a gray model restores a colour photo one
channel at a time; a colour model restores a gray photo as three equal channels and averages
them back), so gray comes out gray and colour comes out colour whatever the model was trained
on; a translation model (pix2pix, gray in and colour out) gets the image in its input channels. :func:`apply_to_files` reads the files, checks them and the mask, and writes one restored
image per input, with the same file name, into a folder. :func:`evaluate_restoration` measures a
model on clean test images it damages with a fixed seed (what ``python -m aigc_lab eval`` prints
for these runs).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from aigc_lab import similarity
from aigc_lab.contract import ImageToImageModel
from aigc_lab.degradations import bicubic_upsample
from aigc_lab.images import read_image_file, write_image_file


def image_to_image_models() -> list[str]:
    """The registered names of the image-to-image models (for messages; imports every family)."""
    from aigc_lab.models import MODELS

    return [name for name, cls in MODELS.items() if issubclass(cls, ImageToImageModel)]



def read_mask_file(path: str | os.PathLike) -> Tensor:
    """A mask file as a ``1 x H x W`` tensor of 0 (kept) and 1 (missing): white (above mid-gray) = missing."""
    mask = read_image_file(path)
    return (mask.mean(0, keepdim=True) > 0.5).float()


@torch.no_grad()
def restore_image(model: ImageToImageModel, image: Tensor, mask: Tensor | None = None) -> Tensor:
    """Restore one ``C x H x W`` image in ``[0, 1]`` (``C`` = 1 or 3, any size) with ``model``; ``C`` is kept.

    ``mask`` is ``1 x H x W`` (1 = missing), for an inpainter. The result is
    ``C x (scale H) x (scale W)`` in ``[0, 1]``.
    """
    if not isinstance(model, ImageToImageModel):
        raise ValueError(f"model must be an image-to-image model ({', '.join(image_to_image_models())}), got {type(model).__name__}")
    if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"image must be C x H x W with 1 or 3 channels, got {getattr(image, 'shape', type(image).__name__)}")
    device = next(model.parameters()).device
    x = image.to(device).unsqueeze(0)
    if mask is not None:
        if mask.shape != (1, *image.shape[1:]):
            raise ValueError(f"the mask is {mask.shape[-2]} x {mask.shape[-1]} pixels but the image is {image.shape[1]} x {image.shape[2]}; a mask must have the image's size")
        mask = mask.to(device).unsqueeze(0)
    channels = image.shape[0]
    if model.output_channels != model.channels:  # a translation (gray to colour): the image in the model's input channels, in one pass
        if channels != model.channels:
            x = x.mean(1, keepdim=True) if model.channels == 1 else x.expand(1, model.channels, *x.shape[2:])
        out = model.restore(x, mask)
    elif channels == model.channels:
        out = model.restore(x, mask)
    elif model.channels == 1:  # gray model, colour image: each channel as a gray image
        out = model.restore(x.transpose(0, 1), mask).transpose(0, 1)
    else:  # colour model, gray image: a gray colour image, then back to one channel
        out = model.restore(x.expand(1, 3, *x.shape[2:]), mask).mean(1, keepdim=True)
    return out[0].cpu()


def apply_to_files(
    model: ImageToImageModel,
    images: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    mask: str | os.PathLike | None = None,
) -> list[Path]:
    """Restore each image file with ``model`` and write the result to ``out_dir`` under the same file name.

    Every input and the mask are read and checked before anything is written, so a bad file
    fails the whole call with one sentence naming it and leaves ``out_dir`` untouched.

    Raises:
        FileNotFoundError: an input or the mask does not exist.
        ValueError: an unreadable image, a mask of another size, a mask given to a model that
            takes none or missing for an inpainter, two inputs with the same file name, or an
            output that would overwrite its input.
    """
    if not images:
        raise ValueError("give at least one image file")
    if model.needs_mask and mask is None:
        raise ValueError(f"a {model.name} run needs --mask MASK.png (white = missing pixels)")
    if not model.needs_mask and mask is not None:
        raise ValueError(f"--mask is for an inpainter; this run is a {model.name!r} model")
    out_dir = Path(out_dir)
    paths = [Path(p) for p in images]
    names = [p.name for p in paths]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"two inputs are named {repeated[0]!r}; their outputs in {out_dir} would overwrite each other")
    for path in paths:
        if (out_dir / path.name).resolve() == path.resolve():
            raise ValueError(f"writing to {out_dir} would overwrite the input {path}; choose another --out folder")
    pixels = [read_image_file(p) for p in paths]
    mask_pixels = read_mask_file(mask) if mask is not None else None
    if mask_pixels is not None:
        for path, image in zip(paths, pixels):
            if image.shape[1:] != mask_pixels.shape[1:]:
                raise ValueError(
                    f"the mask {mask} is {mask_pixels.shape[1]} x {mask_pixels.shape[2]} pixels but {path} is "
                    f"{image.shape[1]} x {image.shape[2]}; a mask must have the image's size"
                )
    return [write_image_file(out_dir / path.name, restore_image(model, image, mask_pixels)) for path, image in zip(paths, pixels)]


@torch.no_grad()
def evaluate_restoration(model: ImageToImageModel, clean: Tensor, *, seed: int = 0, batch_size: int = 64) -> dict[str, float]:
    """PSNR and SSIM (:mod:`aigc_lab.similarity`) of ``model`` on clean images it damages itself with ``seed``.

    Returns the mean ``psnr`` and ``ssim`` of the restored images against ``clean`` (against
    ``model.target(clean)``: for paired data, the pairs' targets), and, where the input has the
    target's shape, ``input_psnr``: the damaged input's own PSNR (for super-resolution, bicubic upsampling's), the
    number a model must beat. An inpainter also gets ``hole_psnr``, the PSNR inside the masks.
    """
    expected = int(model.hparams["image_shape"][0])  # the training images' channels (a stacked pair's, for pix2pix)
    if not isinstance(clean, Tensor) or clean.dim() != 4 or clean.shape[1] != expected:
        raise ValueError(f"clean must be N x {expected} x H x W in [0, 1], got {getattr(clean, 'shape', type(clean).__name__)}")
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    restored, inputs, masks, targets = [], [], [], []
    for start in range(0, len(clean), batch_size):
        batch = clean[start : start + batch_size]
        targets.append(model.target(batch.cpu()))
        damaged, mask = model.damage(batch.cpu(), generator)
        restored.append(model.restore(damaged.to(device), None if mask is None else mask.to(device)).cpu())
        if model.scale > 1:
            damaged = bicubic_upsample(damaged, model.scale)
        elif mask is not None:
            damaged = damaged * (1 - mask)  # the input the network sees: holes filled with 0
        inputs.append(damaged.clamp(0, 1))
        masks.append(mask)
    out, given, clean = torch.cat(restored), torch.cat(inputs), torch.cat(targets)
    result = {
        "psnr": float(similarity.psnr(out, clean).mean()),
        "ssim": float(similarity.ssim(out, clean).mean()),
    }
    if given.shape == clean.shape:  # a translation's input (gray edges) is not an estimate of its target (a colour photo)
        result["input_psnr"] = float(similarity.psnr(given, clean).mean())
    if masks[0] is not None:
        mask = torch.cat(masks).expand_as(clean)
        result["hole_psnr"] = float(-10 * torch.log10(((out - clean) ** 2 * mask).sum() / mask.sum()))
    return result
