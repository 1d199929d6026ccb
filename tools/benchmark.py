"""Benchmark every model of the book: training images per second and time to sample 1000 images.

This is a measurement, not a test: it prints what this machine does, so that a later change (a
new layer, another PyTorch) can be compared with the figures of today. Run it on a quiet machine::

    python tools/benchmark.py                     # every registered model, on the best device
    python tools/benchmark.py --models vae ddpm   # some of them
    python tools/benchmark.py --device cpu --threads 2 --json bench.json

For each model it builds the model with its defaults for digits (1 x 8 x 8), trains it for
``--steps`` steps with the book's loop (:func:`aigc_lab.train.fit`, batch size ``--batch-size``)
after ``--warmup`` untimed steps, and reports ``steps * batch_size / seconds``; then it times
``model.sample(--n)`` (with each model's default sampler: e.g. all of a DDPM's steps) after one
untimed call on a small batch. Models train on the real digits, so their speed is the speed of
real work, but a handful of steps says nothing about quality: the chapters measure that.

``--overhead`` measures what the book's loop costs on top of the work itself: for each model it
times ``--steps`` steps of :func:`aigc_lab.train.fit` with the settings the book trains with (a
log every 25 steps, a checkpoint every 250, the run's provenance record with each) against a plain
loop that calls the same ``model.training_step`` on batches drawn the plain way, alternating the
two ``--repeats`` times on the same machine and reporting the median of each (the issue's target:
at most 5% overhead)::

    python tools/benchmark.py --overhead --models vae ddpm dcgan --steps 250
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("AIGC_LAB_PROGRESS", "0")


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
    elif device.type == "mps":
        torch.mps.synchronize()


def benchmark(name: str, *, steps: int, warmup: int, batch_size: int, n_samples: int, device) -> dict[str, object]:
    import torch

    from aigc_lab.data import load_dataset
    from aigc_lab.models import build_model
    from aigc_lab.train import TrainConfig, fit

    train = load_dataset("digits", "train")
    torch.manual_seed(0)
    model = build_model(name, image_shape=list(train.images.shape[1:]))
    params = sum(p.numel() for p in model.parameters())
    quiet = {"checkpoint_every": 10**9, "log_every": 10**9}
    with tempfile.TemporaryDirectory() as tmp:
        # Warm-up steps (memory allocation, autotuning, first-call overheads) in a run of their
        # own; the timed run starts afresh in another directory with the warmed-up model.
        if warmup:
            fit(model, train, Path(tmp) / "warmup", TrainConfig(steps=warmup, batch_size=batch_size, **quiet), device=device)
        _sync(device)
        history = fit(model, train, Path(tmp) / "timed", TrainConfig(steps=steps, batch_size=batch_size, **quiet), device=device)
        _sync(device)
        train_seconds = history.train_seconds
    model.eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.sample(min(8, n_samples), generator=generator)  # untimed first call
        _sync(device)
        start = time.perf_counter()
        model.sample(n_samples, generator=generator)
        _sync(device)
        sample_seconds = time.perf_counter() - start
    return {
        "model": name,
        "parameters": params,
        "train_images_per_second": steps * batch_size / train_seconds,
        "train_seconds_per_step": train_seconds / steps,
        f"seconds_to_sample_{n_samples}": sample_seconds,
    }


def overhead(name: str, *, steps: int, repeats: int, batch_size: int, device) -> dict[str, object]:
    """Median seconds per step of fit (the book's settings) and of a plain loop, alternated ``repeats`` times."""
    import statistics

    import torch

    from aigc_lab.contract import StepContext
    from aigc_lab.data import load_dataset
    from aigc_lab.models import build_model
    from aigc_lab.train import TrainConfig, fit

    train = load_dataset("digits", "train")
    torch.manual_seed(0)
    model = build_model(name, image_shape=list(train.images.shape[1:]))
    images, labels = train.images.to(device), train.labels.to(device)

    def plain() -> float:
        model.to(device).train()
        ctx = StepContext(model.configure_optimizers(), None, device)
        generator = torch.Generator().manual_seed(0)
        _sync(device)
        start = time.perf_counter()
        for step in range(steps):
            ctx.step = step
            index = torch.randint(len(images), (batch_size,), generator=generator).to(device)
            metrics = model.training_step((images[index], labels[index]), ctx)
            for value in metrics.values():  # the loop reads every metric too (a device sync), so this one does
                float(value)
        _sync(device)
        return (time.perf_counter() - start) / steps

    def book_loop(tmp: Path, k: int) -> float:
        config = TrainConfig(steps=steps, batch_size=batch_size)  # log every 25, checkpoint every 250
        history = fit(model, train, tmp / f"run{k}", config, device=device, resume=False)
        return history.train_seconds / steps

    with tempfile.TemporaryDirectory() as tmp:
        plain(), book_loop(Path(tmp), -1)  # warm-up of both
        fits, plains = [], []
        for k in range(repeats):
            fits.append(book_loop(Path(tmp), k))
            plains.append(plain())
    fit_s, plain_s = statistics.median(fits), statistics.median(plains)
    return {"model": name, "fit_s_per_step": fit_s, "plain_s_per_step": plain_s, "overhead": fit_s / plain_s - 1}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", help="registered model names (default: all)")
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per model (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed training steps first (default 3)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--n", type=int, default=1000, help="images to sample (default 1000)")
    parser.add_argument("--device", help="cpu, cuda or mps (default: the best available)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--overhead", action="store_true", help="time fit against a plain loop instead (see above)")
    parser.add_argument("--repeats", type=int, default=3, help="--overhead: alternations of the two loops (default 3)")
    args = parser.parse_args(argv)

    import torch

    from aigc_lab import runtime
    from aigc_lab.models import MODELS

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else runtime.device()
    names = args.models or sorted(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(sorted(MODELS))}")
    info = runtime.describe()
    print(f"# aigc_lab benchmark: device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    print(f"# load average before: {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "")
    if args.overhead:
        rows = []
        print(f"{'model':16s} {'fit s/step':>11s} {'plain s/step':>13s} {'overhead':>9s}")
        for name in names:
            row = overhead(name, steps=args.steps, repeats=args.repeats, batch_size=args.batch_size, device=device)
            rows.append(row)
            print(f"{name:16s} {row['fit_s_per_step']:11.4f} {row['plain_s_per_step']:13.4f} {row['overhead']:9.1%}", flush=True)
        if args.json:
            args.json.write_text(json.dumps({"runtime": info, "settings": vars(args) | {"json": str(args.json)}, "overhead": rows}, indent=2))
        return 0
    rows = []
    header = f"{'model':16s} {'params':>9s} {'train img/s':>12s} {'s/step':>8s} {'sample ' + str(args.n) + ' (s)':>16s}"
    print(header)
    print("-" * len(header))
    for name in names:
        row = benchmark(name, steps=args.steps, warmup=args.warmup, batch_size=args.batch_size, n_samples=args.n, device=device)
        rows.append(row)
        print(
            f"{name:16s} {row['parameters']:9d} {row['train_images_per_second']:12.0f} "
            f"{row['train_seconds_per_step']:8.4f} {row[f'seconds_to_sample_{args.n}']:16.3f}",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps({"runtime": info, "settings": vars(args) | {"json": str(args.json)}, "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
