"""Train several small models at once, each in a process of one CPU thread (chapter 8.2's learning curves).

The book's small models use a second CPU thread poorly. Measured on 2 cores with 300 steps on 300
digits (a script outside the book, the runs of :mod:`aigc_lab.trends_study`): one DCGAN trained in
7.5 s on two threads, while two one-thread processes trained one each in 8.5 s, 1.76 times the
throughput; for the VAE, 5.5 s against 8.1 s for two, 1.36 times. A page that trains six such
runs one after the other therefore finishes sooner when it trains them two at a time: chapter
8.2's six digits runs took 128 s against 185 s one after the other. Not every model gains as
much: section 8.2's DCGAN on 16 x 16 colour shapes trained in 83-88 s on one thread beside
another run against 51-56 s alone on two (1.2 times the throughput), so that page trains its
shapes runs in the same pool as its digits runs, longest first, rather than three of them alone.

:func:`train_in_processes` makes each call (a module-level training function of the package
with its arguments, as a :func:`functools.partial`) in ``workers`` processes started fresh
(``spawn``: a forked copy of a process that has already used torch's thread pool can hang), each
limited to one thread. The function trains into a run directory and the caller then calls it
again in its own process, which loads the finished run (every training function of the book
does: an interrupted run resumes, a finished one loads). On a GPU, or with one worker, the calls
run here, one after the other: the device does the work and separate processes would only
compete for it.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from aigc_lab import runtime


def _start_worker(threads: int) -> None:
    os.environ[runtime.THREADS_ENV] = str(threads)
    os.environ["AIGC_LAB_PROGRESS"] = "0"  # two progress bars on one output would interleave
    runtime.cpu_threads()


def _call(call: Callable[[], Any]) -> None:
    call()  # its result (a model) stays in the worker: the caller loads the run from disk


def _module_level(call: Callable[[], Any]) -> bool:
    function = call.func if isinstance(call, functools.partial) else call
    return callable(function) and "<" not in getattr(function, "__qualname__", "<")


def train_in_processes(calls: Iterable[Callable[[], Any]], *, workers: int = 2) -> None:
    """Make every call, ``workers`` at a time, in processes of one CPU thread, in the order given.

    Each call is a module-level function of the package or a :func:`functools.partial` of one,
    ``functools.partial(trends_study.train_on_subset, "vae", 100, runs_dir)``, with picklable
    arguments (a new process imports the function by name). Put the longest first: the two
    workers then finish together. Where the device is not the CPU, or with one worker, the calls
    run here, in order. An exception in any call is raised here after the others finish.
    """
    calls = list(calls)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    for call in calls:
        if not _module_level(call):
            raise ValueError(f"each call must be a module-level function, or a functools.partial of one, that a new process can import; got {call!r}")
    if workers == 1 or len(calls) < 2 or runtime.device().type != "cpu":
        for call in calls:
            _call(call)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(calls)), mp_context=context, initializer=_start_worker, initargs=(1,)) as pool:
        futures = [pool.submit(_call, call) for call in calls]
        errors = [future.exception() for future in futures]
    for error in errors:
        if error is not None:
            raise error


__all__ = ["train_in_processes"]
