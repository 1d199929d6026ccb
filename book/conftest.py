"""Run the book's notebooks two at a time (``pytest book --nbmake -n 2 --dist loadgroup``).

Some pages load runs that another page trains: section 3.5 loads those of 3.1-3.4, 6.4.1 those of
6.3.1, and so on. Two such pages must not run at once, or both would train the same run into the
same directory, and the loading page must run after the training one. Every executed notebook
records the runs it used and the page that trained each (``metadata.aigc_lab.runs``, written by
``python -m aigc_lab.notebooks execute``). Here the pages joined by those records form one
pytest-xdist group, which a single worker runs in the book's order (the file names' order, which
is the table of contents'); every other page is a group of its own and goes to whichever worker
is free. A page that finds a run missing trains it itself, so the grouping costs time when it is
wrong, never correctness.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _runs(notebook: Path) -> dict:
    try:
        meta = json.loads(notebook.read_text(encoding="utf-8")).get("metadata", {}).get("aigc_lab", {})
    except (OSError, ValueError):
        return {}
    return meta.get("runs", {})


def run_trainers(notebooks: list[Path]) -> dict[str, str]:
    """``{run directory: file name}`` of the page that trained each run when it was last executed."""
    return {run: nb.name for nb in notebooks for run, record in _runs(nb).items() if record.get("event") == "trained"}


def run_dependencies(notebook: Path, trainers: dict[str, str] | None = None) -> set[str]:
    """The notebook file names whose runs ``notebook`` loaded when it was last executed.

    A run trained outside any page (``python -m aigc_lab train --recipe ...``) records no
    ``trained_by``; with ``trainers`` (:func:`run_trainers`) it counts as the run of the page that
    trains that directory when the book runs, since that is whose run the page loads then.
    """
    found = set()
    for run, record in _runs(notebook).items():
        if record.get("event") != "loaded":
            continue
        trainer = record.get("trained_by") or (trainers or {}).get(run)
        if trainer:
            found.add(Path(str(trainer)).name)
    return found - {notebook.name}


def notebook_groups(notebooks: list[Path]) -> dict[str, str]:
    """``{file name: group}``: pages joined by loaded runs share a group, named after its first page."""
    parent = {nb.name: nb.name for nb in notebooks}
    trainers = run_trainers(notebooks)

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for nb in notebooks:
        for trainer in run_dependencies(nb, trainers):
            if trainer not in parent:
                continue  # a page outside this collection: the loader trains the run itself
            if trainer > nb.name:
                raise pytest.UsageError(f"{nb.name} loads runs that {trainer} trains, which comes after it in the book; rename or reorder them")
            a, b = sorted((root(nb.name), root(trainer)))
            parent[b] = a
    return {name: root(name) for name in parent}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    notebooks = sorted({Path(item.path) for item in items if Path(item.path).suffix == ".ipynb"})
    groups = notebook_groups(notebooks)
    for item in items:
        path = Path(item.path)
        if path.suffix == ".ipynb":
            item.add_marker(pytest.mark.xdist_group(name=groups[path.name]))
