"""How many faces a generator needs (``make data-needs``): chapter 8.2's learning curve on real faces.

Section 8.2 trains two families of chapter 3 on 100, 300 and 1,000 digits. Real faces are the
harder case: scikit-image ships only 100 of them (chapter 6.3.1), 80 to train on. This script
trains chapter 6.3.1's two families (:data:`aigc_lab.face_study.MODELS`: the DCGAN for 750 steps,
the VAE for 400, their settings) on the first 20, 40 and all 80 train faces of a fixed shuffle
(:data:`SIZES`; each with its mirror images, as in 6.3.1), with :data:`DEFAULT_SEEDS` seeds, two
runs at a time in processes of one CPU thread, and measures every run the way 6.3.1 does:

* ``fd``: the mean Frechet distance of :data:`N_DRAWS` sets of 80 samples to the 20 held-out faces,
  in the features of 6.3.1's face-or-not judge (:func:`aigc_lab.face_study.frechet_draws`);
* memorisation (:func:`aigc_lab.trends_study.memorisation`): each sample's distance to its nearest
  training face (among the faces that run trained on, mirrors included) against the same distance
  for the 20 held-out faces, their ``ratio`` (below 1: nearer than new real faces, the sign of
  copying) and the share ``nearer_than_any_held_out``;
* the same question asked so that blur cannot answer it (:func:`nearest_side`): is each sample's
  nearest face one of 20 training faces or one of the 20 held-out faces (mirrors on both sides)?
  A blurred average face sits near every face, so it lowers the first check's ratio without
  copying anything (section 6.3.1 saw this in its VAE's pairs); against two equal sets from one
  distribution, a model that makes new faces picks each side half the time.

At a fixed number of steps a smaller set is seen more times, so size and training length move
together. :data:`EQUAL_EPOCHS` names the families that also train on all 80 faces for as many
epochs as their 20-face run (:func:`equal_epoch_steps`): the control that separates the two.

It is a script, not a page, because 21 runs of up to four minutes do not fit a page's five; the
results go to :data:`DATA_NEEDS_FILE` with their provenance (the hash of every package file they
depend on, the command, the machine, the date, the wall time), chapter 8.2 reads the file with
:func:`load`, and ``tests/test_data_needs.py`` fails when the code changed since it was written.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from aigc_lab import face_study, metrics, provenance, runtime
from aigc_lab.data import ImageDataset
from aigc_lab.trends_study import memorisation, train_on

REPO = Path(__file__).resolve().parent.parent
DATA_NEEDS_FILE = REPO / "book" / "data_needs.json"
DEFAULT_RUNS_DIR = REPO / "runs" / "data_needs"
DEFAULT_SEEDS = 3
SIZES = (20, 40, 80)
EQUAL_EPOCHS = ("faces-vae",)  # also trained on max(SIZES) faces for the epochs of its min(SIZES)-face run
BATCH_SIZE = 64  # trends_study.train_on's batch, capped at the set's size
SUBSET_SEED = 0  # the shuffle the subsets are the first n of: every smaller set is inside every larger one
N_DRAWS = 5  # sets of 80 samples per Frechet distance (400 samples)
MODULE = "aigc_lab.data_needs"  # by name: run with -m this module is __main__


def face_subset(n: int) -> ImageDataset:
    """The first ``n`` of the 80 train faces in a fixed shuffled order, followed by their mirror images (``2 n`` images)."""
    faces = face_study.face_data("train-only")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(faces):
        raise ValueError(f"n must be an integer between 1 and the {len(faces)} train faces, got {n!r}")
    index = torch.randperm(len(faces), generator=torch.Generator().manual_seed(SUBSET_SEED))[:n]
    images = faces.images[index]
    images = torch.cat([images, images.flip(-1)])
    labels = faces.labels[index].repeat(2)
    return ImageDataset(images, labels, faces.classes, name="faces", split=f"train[:{n}] + mirrors", levels=faces.levels)


def epochs(steps: int, n: int) -> float:
    """How many times a run of ``steps`` sees each of the ``2 n`` images of :func:`face_subset` ``(n)``."""
    return steps * min(BATCH_SIZE, 2 * n) / (2 * n)


def equal_epoch_steps(family: str) -> int:
    """The steps that give ``family``'s run on ``max(SIZES)`` faces the epochs of its run on ``min(SIZES)`` (the control)."""
    spec = face_study.MODELS[family]
    small, large = min(SIZES), max(SIZES)
    return round(epochs(runtime.budget(spec.steps, spec.quick_steps), small) * 2 * large / min(BATCH_SIZE, 2 * large))


def _steps(family: str, control: bool) -> int:
    spec = face_study.MODELS[family]
    return equal_epoch_steps(family) if control else runtime.budget(spec.steps, spec.quick_steps)


def _name(family: str, n: int, seed: int, control: bool) -> str:
    return f"{family}-n{n}-seed{seed}" + ("-equal-epochs" if control else "")


def measure_run(family: str, n: int, seed: int, runs_dir: str | os.PathLike, *, control: bool = False) -> dict[str, Any]:
    """Train (or load) ``face_study.MODELS[family]`` on :func:`face_subset` ``(n)`` with ``seed`` and measure it.

    ``control``: train for :func:`equal_epoch_steps` instead of the family's steps.
    """
    if family not in face_study.MODELS:
        raise ValueError(f"unknown face model {family!r}; expected one of {', '.join(face_study.MODELS)}")
    spec = face_study.MODELS[family]
    data = face_subset(n)
    steps = _steps(family, control)
    model, history = train_on(spec.model, spec.hparams, data, Path(runs_dir) / _name(family, n, seed, control), steps, seed)
    samples = face_study.draw(model, face_study.FRECHET_SAMPLES * runtime.budget(N_DRAWS, 1), seed=seed + 1)
    fds = face_study.frechet_draws(samples, judge=face_study.face_judge())
    held_out = face_study.face_data("test").images
    return {
        "fd": sum(fds) / len(fds), **memorisation(samples, data.images, held_out), **nearest_side(samples, *equal_sets()),
        "steps": steps, "train_s": history.train_seconds,
    }


def nearest_side(samples: Tensor, train: Tensor, held_out: Tensor) -> dict[str, float]:
    """Which of two equal-sized sets of real images holds each sample's nearest image: a copying check that blur cannot pass.

    ``train`` and ``held_out`` must hold the same number of images from one distribution; a
    model that copies its training images puts more than half of its samples on the training
    side (``train_side_share`` above 0.5) and nearer it (``equal_sets_ratio``, the median
    distance to ``train`` over that to ``held_out``, below 1). A blurred face moves nearer both
    sets alike. (:func:`aigc_lab.trends_study.memorisation` asks how near samples and held-out
    images come to the training set, as Meehan, Chaudhuri & Dasgupta (2020) do; this check asks
    how near each sample comes to training and to held-out images.)
    """
    if train.shape != held_out.shape:
        raise ValueError(f"train and held_out must be equal-sized sets of the same shape, got {tuple(train.shape)} and {tuple(held_out.shape)}")
    to_train = metrics.nearest_neighbor_distance(samples, train)
    to_held_out = metrics.nearest_neighbor_distance(samples, held_out)
    return {
        "train_side_share": float((to_train < to_held_out).double().mean()),
        "equal_sets_ratio": float(to_train.median() / to_held_out.median()),
    }


def equal_sets() -> tuple[Tensor, Tensor]:
    """The two sides of :func:`nearest_side`: the held-out faces and as many training faces (the first 20, in every subset), each with their mirrors."""
    held_out = face_study.face_data("test").images
    return face_subset(len(held_out)).images, torch.cat([held_out, held_out.flip(-1)])


def measured_code() -> dict[str, str]:
    """The hash of every package file the measurement depends on: this module's import closure, the faces' loader and the two families'."""
    from aigc_lab.models import describe_models

    # The registries import a family's (and a dataset's) file only when asked for it, so the
    # imports alone miss them.
    families = sorted({describe_models()[spec.model].module for spec in face_study.MODELS.values()})
    return provenance.code_closure([MODULE, "aigc_lab.data.faces", *families])


def _row_file(runs_dir: Path, family: str, n: int, seed: int, control: bool = False) -> Path:
    return runs_dir / f"{_name(family, n, seed, control)}.json"


def _run_one(family: str, n: int, seed: int, control: bool, runs_dir: Path) -> str | None:
    """Measure one (family, size, seed, control) in a process of one CPU thread; returns its error, if any."""
    env = {**os.environ, runtime.THREADS_ENV: "1", "AIGC_LAB_PROGRESS": "0"}
    command = [sys.executable, "-m", MODULE, "one", family, str(n), str(seed), "--runs-dir", str(runs_dir)] + (["--equal-epochs"] if control else [])
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    return (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1] if done.returncode else None


def summarise(family: str, n: int, per_seed: list[dict[str, Any]], *, control: bool = False) -> dict[str, Any]:
    """A row: each seed's numbers, and their mean and standard deviation (None for one seed)."""
    keys = sorted({k for row in per_seed for k in row})
    values = {k: [float(row[k]) for row in per_seed if k in row] for k in keys}
    return {
        "family": family, "label": face_study.MODELS[family].label, "n_faces": n, "control": control, "seeds": len(per_seed),
        "mean": {k: statistics.fmean(v) for k, v in values.items()},
        "sd": {k: statistics.stdev(v) if len(v) > 1 else None for k, v in values.items()},
        "per_seed": per_seed,
    }


def run(
    *,
    seeds: int = DEFAULT_SEEDS,
    workers: int = 2,
    runs_dir: str | os.PathLike = DEFAULT_RUNS_DIR,
    out: str | os.PathLike | None = DATA_NEEDS_FILE,
    command: str = "make data-needs",
) -> dict[str, Any]:
    """Train and measure every (family, size) ``seeds`` times, write ``out`` atomically (None: don't) and return it.

    A run measured before by the same code is reused, so an interrupted run resumes.
    """
    from concurrent.futures import ThreadPoolExecutor

    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be an integer >= 1, got {seeds!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    runs_dir = Path(runs_dir) / runtime.mode()
    runs_dir.mkdir(parents=True, exist_ok=True)
    code = measured_code()
    start = time.perf_counter()
    face_study.face_judge()  # trained (or loaded from the cache) once, before the workers need it
    groups = [(family, n, False) for family in face_study.MODELS for n in SIZES] + [(family, max(SIZES), True) for family in EQUAL_EPOCHS]
    jobs = [(family, n, seed, control) for seed in range(seeds) for family, n, control in groups]

    def fresh(job: tuple[str, int, int, bool]) -> bool:
        path = _row_file(runs_dir, *job)
        return path.is_file() and json.loads(path.read_text(encoding="utf-8")).get("code") == code

    # Longest first, so that the workers finish together: the DCGAN's steps are the longer (more of
    # them, each about three times a VAE step), then each family's longer runs.
    pending = sorted((job for job in jobs if not fresh(job)), key=lambda job: (-face_study.MODELS[job[0]].steps, -_steps(job[0], job[3])))
    with ThreadPoolExecutor(max_workers=workers) as pool:  # the threads only wait: the work is in the processes
        errors = dict(zip(pending, pool.map(lambda job: _run_one(*job, runs_dir), pending)))
    failures = [f"{family} on {n} faces, seed {seed}{' (equal epochs)' if control else ''}: {error}" for (family, n, seed, control), error in errors.items() if error]
    if failures:
        raise RuntimeError("could not measure " + "; ".join(failures))
    rows = [
        summarise(family, n, [json.loads(_row_file(runs_dir, family, n, seed, control).read_text(encoding="utf-8"))["row"] for seed in range(seeds)], control=control)
        for family, n, control in groups
    ]
    result = {
        "provenance": {
            "package_code": code,
            "command": command,
            "mode": runtime.mode(),
            "machine": {**runtime.describe(), "platform": platform.platform(), "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()},
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "seconds": time.perf_counter() - start,
            "workers": workers,
            "seeds": seeds,
        },
        "rows": rows,
    }
    if out is not None:
        out = Path(out)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, out)  # atomic: an interrupted run leaves the old file whole
    return result


def load(path: str | os.PathLike = DATA_NEEDS_FILE, *, allow_quick: bool = False) -> dict[str, Any]:
    """Read the file and record its hash in the executing notebook's provenance (the page is stale when it changes).

    Raises ``FileNotFoundError`` naming ``make data-needs`` when the file is missing, and
    ``ValueError`` when it is not such a file or was made in quick mode (unless ``allow_quick``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `make data-needs` (about 25 minutes on 2 CPU cores) to train and measure the faces runs")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); run `make data-needs` again") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list) or not isinstance(data.get("provenance"), dict):
        raise ValueError(f"{path} is not a data-needs file (expected 'provenance' and 'rows'); run `make data-needs`")
    if data["provenance"].get("mode") != "full" and not allow_quick:
        raise ValueError(f"{path} was made in {data['provenance'].get('mode')!r} mode, not 'full': run `make data-needs` without AIGC_LAB_QUICK")
    resolved = path.resolve()
    if resolved.is_relative_to(REPO):
        provenance.log("imports", files={resolved.relative_to(REPO).as_posix(): provenance.file_hash(resolved)})
    return data


def stale_files(data: dict[str, Any], root: str | os.PathLike | None = None) -> list[str]:
    """The package files the file was measured with that differ from ``root``'s now."""
    return provenance.changed_files(data["provenance"]["package_code"], root)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aigc_lab.data_needs", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    run_parser = sub.add_parser("run", help="train and measure every family on every size (the default)")
    for p in (parser, run_parser):
        p.add_argument("--seeds", type=int, default=DEFAULT_SEEDS)
        p.add_argument("--workers", type=int, default=2)
        p.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR)
        p.add_argument("--out", type=Path, default=None, help=f"default {DATA_NEEDS_FILE.relative_to(REPO)} in full mode; none in quick mode")
    one = sub.add_parser("one", help="measure one family on one size with one seed (what run's workers do)")
    one.add_argument("family", choices=list(face_study.MODELS))
    one.add_argument("n", type=int)
    one.add_argument("seed", type=int)
    one.add_argument("--runs-dir", type=Path, required=True)
    one.add_argument("--equal-epochs", action="store_true", help="train for the epochs of the family's smallest-set run (the control)")
    args = parser.parse_args(argv)
    if args.command == "one":
        runtime.cpu_threads()
        row = measure_run(args.family, args.n, args.seed, args.runs_dir, control=args.equal_epochs)
        path = _row_file(args.runs_dir, args.family, args.n, args.seed, args.equal_epochs)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps({"code": measured_code(), "row": row}, indent=1), encoding="utf-8")
        os.replace(tmp, path)
        return 0
    out = args.out if args.out is not None else (None if runtime.is_quick() else DATA_NEEDS_FILE)
    result = run(seeds=args.seeds, workers=args.workers, runs_dir=args.runs_dir, out=out,
                 command="python -m aigc_lab.data_needs " + " ".join(argv if argv is not None else sys.argv[1:]))
    for row in result["rows"]:
        m = row["mean"]
        print(f"{row['label']:6s} {row['n_faces']:3d} faces{' (equal epochs)' if row['control'] else ''}: FD {m['fd']:.3g}, nearest-train ratio {m['ratio']:.3g}, training side {m['train_side_share']:.3g}, train {m['train_s']:.0f} s")
    print(f"{result['provenance']['seconds']:.0f} s" + (f"; written to {out}" if out else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
