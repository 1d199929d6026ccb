"""aigc_lab.workers: runs trained in other processes are the runs the caller then loads; errors come back."""

from __future__ import annotations

import pytest

from functools import partial

from aigc_lab import trends_study, workers


def test_runs_trained_in_two_processes_are_loaded_here_without_training_again(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AIGC_LAB_QUICK", "1")  # inherited by the new processes
    runs = [("vae", 100), ("dcgan", 100)]
    workers.train_in_processes([partial(trends_study.train_on_subset, family, n, tmp_path) for family, n in runs], workers=2)
    for family, n in runs:
        run = tmp_path / f"{family}-n{n}"
        assert (run / "checkpoint.pt").is_file(), sorted(p.name for p in run.iterdir())
        before = (run / "checkpoint.pt").stat().st_mtime_ns
        model, history = trends_study.train_on_subset(family, n, tmp_path)
        assert (run / "checkpoint.pt").stat().st_mtime_ns == before  # loaded, not trained again
        assert history.steps == trends_study.FAMILIES[family].quick_steps and history.train_seconds > 0


def test_an_error_in_a_worker_is_raised_in_the_caller(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AIGC_LAB_QUICK", "1")
    with pytest.raises(ValueError, match="unknown family 'gpt'"):
        workers.train_in_processes([partial(trends_study.train_on_subset, family, 100, tmp_path) for family in ("vae", "gpt")], workers=2)


def test_one_worker_calls_here_in_order_and_bad_arguments_are_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown family 'gpt'"):
        workers.train_in_processes([partial(trends_study.train_on_subset, "gpt", 100, tmp_path)], workers=1)
    with pytest.raises(ValueError, match="workers must be an integer"):
        workers.train_in_processes([], workers=0)
    with pytest.raises(ValueError, match="module-level function"):
        workers.train_in_processes([lambda: None, lambda: None])
    with pytest.raises(ValueError, match="module-level function"):
        workers.train_in_processes([partial(lambda n: n, 1)])
    workers.train_in_processes([])
