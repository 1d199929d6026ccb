"""book/conftest.py: the notebooks that share runs run in one pytest-xdist group, in the book's order."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def book_conftest():
    spec = importlib.util.spec_from_file_location("book_conftest", ROOT / "book" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_notebook(path: Path, loaded_from: list[str]) -> Path:
    runs = {f"runs/{i}": {"event": "loaded", "trained_by": f"book/{trainer}"} for i, trainer in enumerate(loaded_from)}
    runs["runs/own"] = {"event": "trained", "trained_by": f"book/{path.name}"}
    path.write_text(json.dumps({"cells": [], "metadata": {"aigc_lab": {"runs": runs}}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def test_pages_joined_by_loaded_runs_share_a_group_and_others_stand_alone(tmp_path):
    groups = book_conftest().notebook_groups(
        [
            write_notebook(tmp_path / "03a.ipynb", []),
            write_notebook(tmp_path / "03b.ipynb", []),
            write_notebook(tmp_path / "03e.ipynb", ["03a.ipynb", "03b.ipynb"]),
            write_notebook(tmp_path / "05a.ipynb", []),
            write_notebook(tmp_path / "06a3.ipynb", ["03b.ipynb"]),
            write_notebook(tmp_path / "07a.ipynb", ["outside.ipynb"]),  # a page not collected: no group to join
        ]
    )
    assert groups["03a.ipynb"] == groups["03b.ipynb"] == groups["03e.ipynb"] == groups["06a3.ipynb"] == "03a.ipynb"
    assert groups["05a.ipynb"] == "05a.ipynb"
    assert groups["07a.ipynb"] == "07a.ipynb"


def test_a_run_trained_outside_any_page_counts_as_the_run_of_the_page_that_trains_it(tmp_path):
    trainer = write_notebook(tmp_path / "03d.ipynb", [])
    loader = tmp_path / "06a3.ipynb"  # loaded runs/own, which a command (not a page) trained this time
    loader.write_text(json.dumps({"cells": [], "metadata": {"aigc_lab": {"runs": {"runs/own": {"event": "loaded", "trained_by": None}}}}, "nbformat": 4, "nbformat_minor": 5}))
    module = book_conftest()
    assert module.run_dependencies(loader) == set()  # no page named: on its own, no dependency ...
    assert module.run_dependencies(loader, module.run_trainers([trainer, loader])) == {"03d.ipynb"}  # ... the book's trainer
    groups = module.notebook_groups([trainer, loader])
    assert groups["06a3.ipynb"] == groups["03d.ipynb"] == "03d.ipynb"


def test_a_page_that_loads_runs_of_a_later_page_is_refused_by_name(tmp_path):
    notebooks = [write_notebook(tmp_path / "03a.ipynb", ["03e.ipynb"]), write_notebook(tmp_path / "03e.ipynb", [])]
    with pytest.raises(pytest.UsageError, match="03a.ipynb loads runs that 03e.ipynb trains"):
        book_conftest().notebook_groups(notebooks)


def test_the_books_own_groups_put_every_trainer_before_its_loaders():
    module = book_conftest()
    notebooks = sorted((ROOT / "book").glob("*.ipynb"))
    groups = module.notebook_groups(notebooks)  # raises if a page loads a later page's runs
    trainers = module.run_trainers(notebooks)
    for notebook in notebooks:
        for trainer in module.run_dependencies(notebook, trainers):
            assert groups[trainer] == groups[notebook.name], (notebook.name, trainer)
    assert groups["03e_comparison.ipynb"] == groups["03a_vae.ipynb"]  # 3.5 loads the runs of 3.1-3.4
