"""The book's leaderboard: every model the book trains, on the same data, CPU and budget, with several seeds.

``make leaderboard`` (``python -m aigc_lab.leaderboard``) trains every recipe of
:data:`aigc_lab.recipes.RECIPES` (chapter 3's six families on the digits, chapter 4's conditional
models on the digits and the shapes) once per seed, each with its recipe's settings and number of
steps (the budget the book trains it with), two runs at a time in processes of one CPU thread each,
and measures every run the way its chapter does:

* unconditional models: the Frechet distance of 1,000 samples to the test split
  (:func:`aigc_lab.metrics.frechet_distance_to_test`), how many of the ten digits the samples
  cover, and the test negative log-likelihood in nats per image where the model has one
  (``model.evaluate``: exact for the autoregressive models, ``nll_nats``; the VAE's
  importance-weighted upper bound, ``nll_bound_nats``);
* conditional models: :func:`aigc_lab.recipes.measure_conditional` (accuracy of the asked-for
  label, its worst label, the mean per-class Frechet distance);
* every model: parameters, training FLOPs (one training step counted by
  :class:`torch.utils.flop_counter.FlopCounterMode`, forward and backward, times the steps),
  sampling FLOPs per image, training seconds (:attr:`aigc_lab.train.History.train_seconds`) and
  seconds to sample 1,000 images with the recipe's sampler.

Rows for the baselines (a single Gaussian and a Gaussian per class, fitted in closed form) and
for real data (the floor each distance can reach at these sample sizes) are measured the same way.
Every row holds each seed's numbers and their mean and standard deviation.

The results go to :data:`LEADERBOARD_FILE` with their provenance: the hash of every package file
the measurement depends on (:func:`measured_code`), the command, the machine,
the date and the wall-clock time. ``tests/test_leaderboard.py`` fails when that code changed since
(run ``make leaderboard`` again); chapter 8 reads the file with :func:`load`, which records the
file's hash in the page's provenance, so the page is stale when the leaderboard is re-run.

Run with ``AIGC_LAB_QUICK=1`` the recipes train for their quick steps and fewer samples are
measured; such a file is marked ``"mode": "quick"`` and chapter 8 refuses it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aigc_lab import provenance, runtime
from aigc_lab.recipes import DATASETS, RECIPES, measure_conditional, recipe_data, train_recipe

REPO = Path(__file__).resolve().parent.parent
LEADERBOARD_FILE = REPO / "book" / "leaderboard.json"
DEFAULT_RUNS_DIR = REPO / "runs" / "leaderboard"
DEFAULT_SEEDS = 3
# By name, not __name__: run as `python -m aigc_lab.leaderboard` this module is __main__, whose
# closure would be empty (a first run recorded no code at all and kept rows measured by older code).
MODULE = "aigc_lab.leaderboard"
#: the year each family was published, for the plot of quality against time (chapter 8)
FAMILY_YEAR = {"vae": 2013, "dcgan": 2015, "row-rnn": 2016, "pixelcnn": 2016, "wgan": 2017, "ddpm": 2020}


def measured_code() -> dict[str, str]:
    """The package files the leaderboard's numbers depend on, with their hashes.

    :func:`aigc_lab.provenance.code_closure` of this module and of every recipe's model family:
    the registry imports a family's file by name only when it is asked for, so reading the
    imports alone would leave the models out.
    """
    from aigc_lab.models import describe_models

    families = sorted({describe_models()[recipe.model].module for recipe in RECIPES.values()})
    return provenance.code_closure([MODULE, *families])


def _check_recipes(names: Sequence[str]) -> list[str]:
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        raise ValueError(f"unknown recipe(s) {', '.join(unknown)}; known recipes: {', '.join(RECIPES)}")
    return list(names)


class _WholeProgram:
    """Stands in for :class:`FlopCounterMode`'s module tracker: every FLOP is counted once, under "Global".

    The tracker's backward hooks fail inside ``torch.autograd.grad`` (the gradient penalty of the
    WGAN-GP: "A leaf node was passed to _will_engine_execute_node ..."), and the leaderboard needs
    only the total, not the per-module breakdown.
    """

    parents = frozenset({"Global"})

    def __enter__(self) -> _WholeProgram:
        return self

    def __exit__(self, *args: object) -> None:
        return None


def flop_counter():
    """A :class:`torch.utils.flop_counter.FlopCounterMode` that counts totals only, and works under ``autograd.grad``."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    if hasattr(counter, "mod_tracker"):  # PyTorch >= 2.3 tracks modules; older versions count totals already
        counter.mod_tracker = _WholeProgram()
    return counter


def training_flops_per_step(model: Any, train: Any, *, batch_size: int = 64, seed: int = 0) -> int:
    """FLOPs of one training step of ``model`` on a batch of ``train`` (forward and backward, every optimizer the step uses).

    Counted by :func:`flop_counter` (PyTorch's :class:`torch.utils.flop_counter.FlopCounterMode`:
    matrix products and convolutions; element-wise work is not counted) around ``model.training_step``, the call the training loop
    makes each step, on a copy of the model (``model`` itself is not trained), on the CPU. The
    first step is not counted: it only differs by building the optimizers' state.
    """
    import copy

    import torch

    from aigc_lab.contract import StepContext

    model = copy.deepcopy(model).cpu().train()
    index = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:batch_size]
    batch = (train.images[index], train.labels[index])
    ctx = StepContext(model.configure_optimizers(), None, torch.device("cpu"))
    model.training_step(batch, ctx)
    ctx.step = 1
    with flop_counter() as counter:
        model.training_step(batch, ctx)
    return int(counter.get_total_flops())


def recipe_training_flops_per_step(name: str, *, seed: int = 0) -> int:
    """:func:`training_flops_per_step` of recipe ``name``'s fresh model on its data, with its batch size."""
    import torch

    from aigc_lab.recipes import build_recipe_model

    recipe = RECIPES[name]
    torch.manual_seed(seed)
    return training_flops_per_step(build_recipe_model(name), recipe_data(recipe), batch_size=recipe.batch_size, seed=seed)


def sampling_flops_per_image(model: Any, name: str, n: int = 4) -> float:
    """FLOPs to draw one image with the recipe's sampler (mean over ``n`` images)."""
    import torch

    recipe = RECIPES[name]
    labels = (torch.arange(n) % model.num_classes) if recipe.conditional else None
    extra = {"labels": labels} if labels is not None else {}
    with torch.no_grad(), flop_counter() as counter:
        model.sample(n, generator=torch.Generator().manual_seed(0), **extra, **recipe.sample_options())
    return counter.get_total_flops() / n


def measure_run(name: str, seed: int, runs_dir: str | os.PathLike) -> dict[str, Any]:
    """Train (or load) recipe ``name`` with ``seed`` into ``runs_dir/seed{seed}/name`` and measure it."""
    import torch

    from aigc_lab.metrics import class_coverage, frechet_distance_to_test

    recipe = RECIPES[name]
    model, history = train_recipe(name, Path(runs_dir) / f"seed{seed}", seed=seed)
    row: dict[str, Any] = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": int(runtime.budget(recipe.steps, recipe.quick_steps)),
        "train_s": float(history.train_seconds),
    }
    row["train_flops"] = float(recipe_training_flops_per_step(name, seed=seed)) * row["steps"]
    row["sample_flops_per_image"] = float(sampling_flops_per_image(model, name))
    if recipe.conditional:
        measured = measure_conditional(model, recipe, seed=seed)
        for key in ("accuracy", "worst_label_accuracy", "fd_per_class", "diversity", "sample_s_per_1000"):
            row[key] = float(measured[key])
        for key in ("shape_accuracy", "colour_accuracy"):
            if key in measured:
                row[key] = float(measured[key])
    else:
        n = runtime.budget(1000, 100)
        start = time.perf_counter()
        with torch.no_grad():
            samples = model.sample(n, generator=torch.Generator().manual_seed(seed), **recipe.sample_options()).cpu()
        row["sample_s_per_1000"] = (time.perf_counter() - start) * 1000 / n
        row["fd"] = frechet_distance_to_test(samples, recipe.data)
        row["classes_covered"] = int(class_coverage(samples, classifier=_classifier(recipe.data))["classes_covered"])
        evaluated = model.evaluate(recipe_data(recipe, "test"))
        if "nll_nats" in evaluated:  # exact (the autoregressive models)
            row["nll_nats"] = float(evaluated["nll_nats"])
        if "iw_nll_nats" in evaluated:  # an upper bound (the VAE's importance-weighted bound)
            row["nll_bound_nats"] = float(evaluated["iw_nll_nats"])
    return row


def _classifier(data: str):
    from aigc_lab.recipes import dataset_classifier

    return dataset_classifier(data)


def baseline_rows(seeds: Sequence[int]) -> list[dict[str, Any]]:
    """The rows of the closed-form baselines and of real data, measured like the models (each seed draws new samples)."""
    import torch

    from aigc_lab.baselines import ClassGaussianMixture, GaussianBaseline
    from aigc_lab.metrics import (
        class_coverage,
        classifier_accuracy,
        frechet_distance_per_class,
        frechet_distance_to_test,
        real_vs_real_frechet,
    )

    rows = []
    digits, digits_test = recipe_data("vae"), recipe_data("vae", "test")
    n = runtime.budget(1000, 100)
    single = GaussianBaseline().fit(digits.images)
    mixture = ClassGaussianMixture().fit(digits.images, digits.labels)
    gaussian_parameters = 64 + 64 * 65 // 2  # mean and covariance of 64 pixels
    # The mixture of class Gaussians draws a class with its training frequency, then an image of it:
    # an unconditional model with no deep learning in it, next to the single Gaussian.
    unconditional = {"single Gaussian": (single, 1), "mixture of class Gaussians": (mixture, len(digits.classes))}
    per_seed: dict[str, list[dict[str, Any]]] = {label: [] for label in unconditional}
    for seed in seeds:
        for label, (baseline, classes) in unconditional.items():
            start = time.perf_counter()
            samples = baseline.sample(n, generator=torch.Generator().manual_seed(seed))
            seconds = time.perf_counter() - start
            per_seed[label].append({
                "fd": frechet_distance_to_test(samples, "digits"),
                "classes_covered": int(class_coverage(samples, classifier=_classifier("digits"))["classes_covered"]),
                "nll_nats": float(baseline.nll_nats(digits_test.to_levels())),
                "parameters": gaussian_parameters * classes,
                "sample_s_per_1000": seconds * 1000 / n,
            })
    rows += [_summary(label, "baseline", "digits", False, per_seed[label]) for label in unconditional]
    # The Gaussian per class as a conditional model of the digits and of the shapes.
    for data, recipe in (("digits", "digits-cgan-projection"), ("shapes", "shapes-cvae")):
        train = recipe_data(recipe)
        spec = {key: value for key, value in DATASETS[data].items() if key != "name"}  # the loader options
        k = len(train.classes)
        fitted = ClassGaussianMixture().fit(train.images, train.labels)
        dims = math.prod(train.images.shape[1:])
        seeds_rows = []
        for seed in seeds:
            labels = torch.arange(k).repeat(max(2, round(n / k)))
            samples = fitted.sample(len(labels), generator=torch.Generator().manual_seed(seed), labels=labels)
            classifier = _classifier(data)
            seeds_rows.append({
                "accuracy": classifier_accuracy(samples, labels, classifier=classifier),
                "fd_per_class": frechet_distance_per_class(samples, labels, data, classifier=classifier, **spec)["mean"],
                "parameters": k * (dims + dims * (dims + 1) // 2),
            })
        rows.append(_summary("Gaussian per class", "baseline", data, True, seeds_rows))
        # Real data: the training images with their own labels (the floor of the per-class distance).
        classifier = _classifier(data)
        real = {
            "accuracy": classifier_accuracy(train.images, train.labels, classifier=classifier),
            "fd_per_class": frechet_distance_per_class(train.images, train.labels, data, classifier=classifier, **spec)["mean"],
        }
        rows.append(_summary("real training images", "real data", data, True, [real]))
    floor = {"fd": real_vs_real_frechet("digits", n if n < len(digits) else None)}
    rows.append(_summary("real training images", "real data", "digits", False, [floor]))
    return rows


def _summary(label: str, family: str, data: str, conditional: bool, per_seed: list[dict[str, Any]], recipe: str | None = None) -> dict[str, Any]:
    """A row: the seeds' numbers, and the mean and standard deviation (n - 1 in the denominator) of each."""
    keys = sorted({k for r in per_seed for k in r})
    mean, sd = {}, {}
    for key in keys:
        values = [float(r[key]) for r in per_seed if key in r]
        mean[key] = sum(values) / len(values)
        sd[key] = math.sqrt(sum((v - mean[key]) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
    return {
        "recipe": recipe, "label": label, "family": family, "data": data, "conditional": conditional,
        "seeds": len(per_seed), "mean": mean, "sd": sd, "per_seed": per_seed,
    }


def _run_one(name: str, seed: int, runs_dir: Path) -> tuple[float, str | None]:
    """Measure one (recipe, seed) in a process of one CPU thread; its row goes to ``runs_dir/NAME-seedS.json``."""
    env = {**os.environ, runtime.THREADS_ENV: "1", "AIGC_LAB_PROGRESS": "0"}
    start = time.perf_counter()
    command = [sys.executable, "-m", "aigc_lab.leaderboard", "one", name, str(seed), "--runs-dir", str(runs_dir)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    error = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1] if done.returncode else None
    return time.perf_counter() - start, error


def _row_file(runs_dir: Path, name: str, seed: int) -> Path:
    return runs_dir / f"{name}-seed{seed}.json"


def run(
    names: Sequence[str] | None = None,
    *,
    seeds: int = DEFAULT_SEEDS,
    workers: int = 2,
    runs_dir: str | os.PathLike = DEFAULT_RUNS_DIR,
    out: str | os.PathLike | None = LEADERBOARD_FILE,
    command: str = "make leaderboard",
) -> dict[str, Any]:
    """Train and measure every recipe ``seeds`` times, add the baselines, write ``out`` (None: don't) and return it.

    Rows already measured in ``runs_dir`` by the same code are reused (a run that was interrupted
    resumes); a row whose code changed is measured again.
    """
    from concurrent.futures import ThreadPoolExecutor

    names = _check_recipes(list(RECIPES) if names is None else names)
    if not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be an integer >= 1, got {seeds!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    runs_dir = Path(runs_dir) / runtime.mode()
    runs_dir.mkdir(parents=True, exist_ok=True)
    code = measured_code()
    start = time.perf_counter()
    jobs = [(name, seed) for seed in range(seeds) for name in names]

    def fresh(job: tuple[str, int]) -> bool:
        path = _row_file(runs_dir, *job)
        if not path.is_file():
            return False
        return json.loads(path.read_text(encoding="utf-8")).get("code") == code

    pending = [job for job in jobs if not fresh(job)]
    # The longest jobs first, so that the two workers finish together.
    pending.sort(key=lambda job: -RECIPES[job[0]].steps)
    with ThreadPoolExecutor(max_workers=workers) as pool:  # threads only wait: the work is in the processes
        outcomes = dict(zip(pending, pool.map(lambda job: _run_one(*job, runs_dir), pending)))
    failures = [f"{name} seed {seed}: {error}" for (name, seed), (_, error) in outcomes.items() if error]
    if failures:
        raise RuntimeError("the leaderboard could not measure " + "; ".join(failures))
    rows = []
    for name in names:
        recipe = RECIPES[name]
        per_seed = [json.loads(_row_file(runs_dir, name, seed).read_text(encoding="utf-8"))["row"] for seed in range(seeds)]
        rows.append(_summary(recipe.label, recipe.model, recipe.data, recipe.conditional, per_seed, recipe=name))
    rows += baseline_rows(list(range(seeds)))
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


def load(path: str | os.PathLike = LEADERBOARD_FILE, *, allow_quick: bool = False) -> dict[str, Any]:
    """Read the leaderboard file and record its hash in the executing notebook's provenance.

    Raises ``FileNotFoundError`` naming ``make leaderboard`` when the file is missing, and
    ``ValueError`` when it was made in quick mode (unless ``allow_quick``) or is not a leaderboard.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `make leaderboard` (about an hour on 2 CPU cores) to measure every model of the book")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); run `make leaderboard` again") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list) or not isinstance(data.get("provenance"), dict):
        raise ValueError(f"{path} is not a leaderboard file (expected 'provenance' and 'rows'); run `make leaderboard`")
    if data["provenance"].get("mode") != "full" and not allow_quick:
        raise ValueError(f"{path} was made in {data['provenance'].get('mode')!r} mode, not 'full': run `make leaderboard` without AIGC_LAB_QUICK")
    resolved = path.resolve()
    if resolved.is_relative_to(REPO):
        # The page that reads it is stale when the file changes, like a page whose package code changed.
        provenance.log("imports", files={resolved.relative_to(REPO).as_posix(): provenance.file_hash(resolved)})
    return data


def stale_files(data: dict[str, Any], root: str | os.PathLike | None = None) -> list[str]:
    """The package files the leaderboard was measured with that differ from ``root``'s now."""
    return provenance.changed_files(data["provenance"]["package_code"], root)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aigc_lab.leaderboard", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    run_parser = sub.add_parser("run", help="train and measure every recipe (the default)")
    for p in (parser, run_parser):
        p.add_argument("--recipes", nargs="+", help="only these recipes (default: all)")
        p.add_argument("--seeds", type=int, default=DEFAULT_SEEDS)
        p.add_argument("--workers", type=int, default=2)
        p.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR)
        p.add_argument("--out", type=Path, default=None, help=f"default {LEADERBOARD_FILE.relative_to(REPO)} in full mode; none in quick mode")
    one = sub.add_parser("one", help="measure one recipe with one seed (what run's workers do)")
    one.add_argument("name")
    one.add_argument("seed", type=int)
    one.add_argument("--runs-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "one":
        runtime.cpu_threads()
        row = measure_run(args.name, args.seed, args.runs_dir)
        path = _row_file(args.runs_dir, args.name, args.seed)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps({"code": measured_code(), "row": row}, indent=1), encoding="utf-8")
        os.replace(tmp, path)
        return 0
    out = args.out if args.out is not None else (None if runtime.is_quick() else LEADERBOARD_FILE)
    result = run(args.recipes, seeds=args.seeds, workers=args.workers, runs_dir=args.runs_dir, out=out, command="python -m aigc_lab.leaderboard " + " ".join(argv if argv is not None else sys.argv[1:]))
    for row in result["rows"]:
        shown = {k: f"{v:.4g}" for k, v in row["mean"].items() if k in ("fd", "nll_nats", "accuracy", "fd_per_class", "train_s")}
        print(f"{row['label']:40s} {row['data']:7s} {shown}")
    print(f"{result['provenance']['seconds']:.0f} s; written to {out}" if out else f"{result['provenance']['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
