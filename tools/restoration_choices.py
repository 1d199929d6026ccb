"""The measurements behind chapter 6.1's settings: one change at a time, same data, steps and seed.

Each comparison trains a variant of one task of :data:`aigc_lab.restoration_study.TASKS` and
prints its score next to the variant's training time:

* ``denoiser``: the blind U-Net with and without group normalisation, with and without a cosine
  learning-rate decay (PSNR on the Set12 copy at sigma 15, 25 and 50; needs
  ``../shared/benchmarks/set12`` or ``$AIGC_LAB_SET12``);
* ``inpainter``: starting from black holes (``prefill="none"``) against correcting the harmonic
  fill, with the harmonic fill alone as the reference (PSNR inside the holes of 60 test crops);
* ``sr-x3``: ESPCN x3 for several step counts (gain over bicubic on the test photos and Set12).

::

    python tools/restoration_choices.py denoiser
    python tools/restoration_choices.py inpainter --steps 1200
    python tools/restoration_choices.py sr-x3 --steps 6000 16000 20000

It writes nothing; each variant takes one to five minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from aigc_lab import classical
from aigc_lab import restoration_study as study
from aigc_lab.data import load_dataset
from aigc_lab.models import build_model
from aigc_lab.models.inpainting import harmonic_fill
from aigc_lab.train import TrainConfig, fit


def train(task_name: str, overrides: dict, steps: int):
    """Task ``task_name`` with its hyperparameters updated by ``overrides``, trained for ``steps``; (model, seconds)."""
    task = study.TASKS[task_name]
    data = study.task_data(task_name)
    torch.manual_seed(0)
    model = build_model(task.model, image_shape=tuple(data.images.shape[1:]), **{**task.hparams, **overrides})
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        fit(model, data, Path(folder) / "run", TrainConfig(steps=steps, batch_size=task.batch_size, seed=0, checkpoint_every=10**6))
        seconds = time.perf_counter() - start
    return model.eval(), seconds


def compare_denoisers(steps: int) -> None:
    set12 = study.set12()
    if set12 is None:
        raise SystemExit("the denoiser comparison needs the Set12 copy: set AIGC_LAB_SET12 to its folder")
    cases = study.noisy_cases(set12, [15.0, 25.0, 50.0], seed=0)
    variants = {
        "group norm": {"norm": True},
        "group norm, cosine decay": {"norm": True, "decay_steps": steps},
        "no norm": {"norm": False},
        "no norm, cosine decay": {"norm": False, "decay_steps": steps},
    }
    for label, overrides in variants.items():
        model, seconds = train("denoiser", overrides, steps)
        rows, _ = study.measure({label: study.network(model)}, cases)
        scores = ", ".join(f"sigma {r['level']:g}: {r['PSNR (dB)']:.2f}" for r in rows)
        print(f"{label:28s} {steps} steps in {seconds:5.0f} s   {scores}", flush=True)


def compare_inpainters(steps: int) -> None:
    test = load_dataset("photos", "test", patch_size=64, n_patches=60, seed=1).images
    cases = study.masked_cases(test, ("strokes", "boxes"), seed=0)
    rows, _ = study.measure({"harmonic fill alone": lambda case: harmonic_fill(case.input, case.mask)}, cases)
    print("harmonic fill alone".ljust(28), "   ".join(f"{r['level']}: {r['PSNR in the holes (dB)']:.2f}" for r in rows), flush=True)
    for label, overrides in {"from black holes": {"prefill": "none"}, "correcting the harmonic fill": {"prefill": "harmonic"}}.items():
        model, seconds = train("inpainter", overrides, steps)
        rows, _ = study.measure({label: study.network(model, chunk=16)}, cases)
        holes = "   ".join(f"{r['level']}: {r['PSNR in the holes (dB)']:.2f}" for r in rows)
        print(f"{label:28s} {steps} steps in {seconds:5.0f} s   {holes}", flush=True)


def compare_super_resolution(step_counts: list[int]) -> None:
    test_sets = {"photos test": study.photo_test_images(1)}
    if (set12 := study.set12()) is not None:
        test_sets["Set12"] = set12
    for steps in step_counts:
        model, seconds = train("sr-x3", {}, steps)
        gains = []
        for name, images in test_sets.items():
            cases = study.low_resolution_cases(images, [3])
            methods = {"ESPCN": study.network(model), "bicubic": lambda case: classical.upsample(case.input, 3)}
            rows, _ = study.measure(methods, cases)
            gains.append(f"{name}: {study.value(rows, 'ESPCN', 3.0) - study.value(rows, 'bicubic', 3.0):+.2f} dB")
        print(f"ESPCN x3, {steps:6d} steps in {seconds:5.0f} s   gain over bicubic: {', '.join(gains)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("comparison", choices=["denoiser", "inpainter", "sr-x3"])
    parser.add_argument("--steps", type=int, nargs="+", help="training steps (several for sr-x3)")
    args = parser.parse_args(argv)
    if args.comparison == "denoiser":
        compare_denoisers((args.steps or [1500])[0])
    elif args.comparison == "inpainter":
        compare_inpainters((args.steps or [1200])[0])
    else:
        compare_super_resolution(args.steps or [6000, 16000, 20000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
