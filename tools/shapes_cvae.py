"""Side runs for section 4.3's conditional VAE on ``shapes``: train variants and print what each reaches.

A measurement, not a test. Each variant is the book's ``shapes-cvae`` recipe with another model
or other settings, trained through the book's own path (:func:`aigc_lab.recipes.train_recipe`:
the same data, batch, seed and loop) and measured as chapter 4's tables measure it
(:func:`aigc_lab.recipes.measure_conditional`: the share of samples the shapes classifier reads as
the asked-for shape and colour, and each on its own), on ``--per-class`` samples of each of the
30 labels. Variants run side by side, one process and one CPU thread each (``--workers``), as
the book's pages train their models::

    python tools/shapes_cvae.py                                   # the plain VAE and the rotation VAE
    python tools/shapes_cvae.py --variants rotation-vae --steps 1200
    python tools/shapes_cvae.py --variants 'rotation-vae:{"rotations": 8}' --json out.json

A variant is a name of :data:`VARIANTS` or ``MODEL:JSON`` (a registered model and its settings,
``levels`` set to the data's 256). The runs go to ``--runs-dir`` (default ``runs/shapes-cvae``):
delete it to train again.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

VARIANTS = {
    # the recipe shapes-cvae-plain: the fully connected VAE of chapter 3 with a label
    "plain": ("vae", {"levels": 256}),
    # the recipe shapes-cvae: the angle a discrete latent summed out exactly (aigc_lab.models.rotation_vae.RotationVAE)
    "rotation-vae": ("rotation-vae", {"levels": 256}),
}


def parse_variant(text: str) -> tuple[str, str, dict]:
    """``NAME`` of :data:`VARIANTS` or ``MODEL:JSON`` to ``(label, model, hparams)``."""
    if text in VARIANTS:
        return (text, *VARIANTS[text])
    model, _, settings = text.partition(":")
    try:
        hparams = json.loads(settings) if settings else {}
    except json.JSONDecodeError as error:
        raise SystemExit(f"variant {text!r}: the settings after ':' must be JSON, e.g. 'rotation-vae:{{\"rotations\": 8}}' ({error})") from None
    return text, model, {"levels": 256, **hparams}


def run_one(model: str, hparams: dict, steps: int, runs_dir: Path, per_class: int) -> dict:
    """Train one variant in this process and measure it (the worker's job)."""
    import torch

    from aigc_lab import recipes

    torch.set_num_threads(int(os.environ.get("AIGC_LAB_THREADS", "1")))
    name = f"shapes-cvae-{model}-{hashlib.sha1(json.dumps(hparams, sort_keys=True).encode()).hexdigest()[:8]}"  # one run directory per variant
    recipes.RECIPES[name] = dataclasses.replace(recipes.CONDITIONAL_RECIPES["shapes-cvae"], model=model, hparams=hparams, steps=steps)
    trained, history = recipes.train_recipe(name, runs_dir)
    m = recipes.measure_conditional(trained, name, per_class=per_class)
    return {
        "model": model, "hparams": hparams, "steps": history.steps, "train_s": round(history.train_seconds, 1),
        "accuracy": round(m["accuracy"], 4), "shape_right": round(m["shape_accuracy"], 4), "colour_right": round(m["colour_accuracy"], 4),
        "worst_label": round(m["worst_label_accuracy"], 4), "diversity": round(m["diversity"], 4), "real_diversity": round(m["real_diversity"], 4),
        "sample_s_per_1000": round(m["sample_s_per_1000"], 2), "samples": per_class * 30,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--per-class", type=int, default=10, help="samples of each of the 30 labels (default 10: 300 samples)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs-dir", type=Path, default=Path("runs") / "shapes-cvae")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a worker: MODEL:JSON
    args = parser.parse_args(argv)
    if args.one:
        _, model, hparams = parse_variant(args.one)
        print(json.dumps(run_one(model, hparams, args.steps, args.runs_dir, args.per_class)))
        return 0

    variants = [parse_variant(v) for v in args.variants]
    env = {**os.environ, "AIGC_LAB_THREADS": "1", "OMP_NUM_THREADS": "1", "AIGC_LAB_PROGRESS": "0"}

    def work(variant: tuple[str, str, dict]) -> dict:
        label, model, hparams = variant
        start = time.perf_counter()
        command = [sys.executable, __file__, "--one", f"{model}:{json.dumps(hparams)}", "--steps", str(args.steps),
                   "--per-class", str(args.per_class), "--runs-dir", str(args.runs_dir)]
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode:
            return {"variant": label, "error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
        return {"variant": label, **json.loads(done.stdout.strip().splitlines()[-1]), "wall_s": round(time.perf_counter() - start, 1)}

    with ThreadPoolExecutor(max_workers=max(1, args.workers)) as pool:
        results = list(pool.map(work, variants))
    for r in results:
        print(json.dumps(r))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
