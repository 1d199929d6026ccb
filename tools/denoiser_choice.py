"""Which network should chapter 6.1's blind denoiser be? DnCNN against a small U-Net, by measurement.

Issue 14 asks for one blind Gaussian denoiser (noise level drawn per image from [0, 55] on the 0-255
scale) and says to choose its network by measurement. This script trains both candidates, with
about the same number of parameters, on the same photo patches with the same steps, batch,
optimiser and seed, and prints their PSNR on held-out photo patches at three noise levels, next
to BM3D told the true level (the classical method the chapter holds them against) and the noisy
input::

    python tools/denoiser_choice.py                 # 600 steps each, gray patches
    python tools/denoiser_choice.py --steps 100     # a quick look
    python tools/denoiser_choice.py --unet-steps 2000   # the U-Net for more steps: equal time

It prints a table and the seconds each network trained; it writes nothing.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from aigc_lab import classical, degradations
from aigc_lab.data import load_dataset
from aigc_lab.models.image_unet import ImageUNet
from aigc_lab.models.restoration import DnCNN
from aigc_lab.similarity import psnr


class ResidualUNet(torch.nn.Module):
    """The shared image U-Net predicting the noise, as DnCNN does (output = input - predicted noise)."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.net = ImageUNet(channels, channels, width=width, levels=2)

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        return noisy - self.net(noisy)


def train(net: torch.nn.Module, clean: torch.Tensor, steps: int, batch: int, seed: int) -> float:
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(steps):
        x = clean[torch.randint(len(clean), (batch,), generator=generator)]
        sigma = degradations.random_sigmas(batch, generator=generator)
        loss = F.mse_loss(net(degradations.gaussian_noise(x, sigma, generator=generator)), x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--unet-steps", type=int, help="the U-Net's steps (default --steps), e.g. to compare at equal training time")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    clean = load_dataset("photos", "train", patch_size=48, n_patches=2000, seed=0).images.mean(1, keepdim=True)
    test = load_dataset("photos", "test", patch_size=48, n_patches=64, seed=0).images.mean(1, keepdim=True)
    torch.manual_seed(args.seed)
    candidates = {"DnCNN (width 48, depth 8)": DnCNN(1, width=48, depth=8), "U-Net (width 16, 2 levels)": ResidualUNet(1, 16)}
    seconds = {}
    for name, net in candidates.items():
        steps = args.unet_steps if isinstance(net, ResidualUNet) and args.unet_steps else args.steps
        seconds[name] = train(net, clean, steps, args.batch, args.seed)
        net.eval()
    levels = (15.0, 25.0, 50.0)
    print(f"steps: DnCNN {args.steps}, U-Net {args.unet_steps or args.steps}")
    print(f"{'method':28s} {'params':>8s} {'train s':>8s} " + " ".join(f"{'sigma ' + str(int(s)):>9s}" for s in levels))
    noisy = {s: degradations.gaussian_noise(test, s, generator=torch.Generator().manual_seed(1)) for s in levels}
    rows = {"noisy input": [psnr(noisy[s].clamp(0, 1), test).mean().item() for s in levels]}
    rows["BM3D (told sigma)"] = [psnr(classical.denoise(noisy[s], s, "bm3d"), test).mean().item() for s in levels]
    with torch.no_grad():
        for name, net in candidates.items():
            rows[name] = [psnr(net(noisy[s]).clamp(0, 1), test).mean().item() for s in levels]
    for name, values in rows.items():
        params = sum(p.numel() for p in candidates[name].parameters()) if name in candidates else 0
        train_s = f"{seconds[name]:8.1f}" if name in seconds else f"{'-':>8s}"
        print(f"{name:28s} {params:8d} {train_s} " + " ".join(f"{v:9.2f}" for v in values))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
