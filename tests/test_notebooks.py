"""Notebook hygiene: every page is in the table of contents, and every chapter's committed outputs
are full-mode outputs of its current code (see aigc_lab/notebooks.py and DESIGN.md section 4)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from conftest import AWAITING_REEXECUTION

from aigc_lab import notebooks, provenance
from aigc_lab.notebooks import (
    NO_PROVENANCE_MESSAGE,
    STALE_MESSAGE,
    STALE_PACKAGE_MESSAGE,
    STALE_RUN_MESSAGE,
    check,
    code_hash,
)

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
# Pages in book/ that are deliberately not part of the book (paths relative to ROOT).
NOT_IN_TOC: set[str] = set()


def _toc_pages_that_may_be_notebooks() -> list[str]:
    """Toc entries that are not Markdown pages: the notebooks, and any entry whose file is missing."""
    return [e for e in notebooks.toc_entries(ROOT) if not (ROOT / f"{e}.md").is_file()]


# ----------------------------------------------------------------------------- the real book


@pytest.mark.parametrize("entry", notebooks.toc_entries(ROOT))
def test_toc_entry_exists(entry: str) -> None:
    try:
        notebooks.resolve_entry(ROOT, entry)
    except (FileNotFoundError, ValueError) as error:
        pytest.fail(str(error), pytrace=False)


def test_every_page_is_in_the_toc() -> None:
    listed = {f"{e}{suffix}" for e in notebooks.toc_entries(ROOT) for suffix in notebooks.PAGE_SUFFIXES}
    pages = [*BOOK.glob("*.md"), *BOOK.rglob("*.ipynb")]
    pages = {
        str(p.relative_to(ROOT))
        for p in pages
        if ".ipynb_checkpoints" not in p.parts and "runs" not in p.relative_to(BOOK).parts
    }
    missing = sorted(pages - listed - NOT_IN_TOC)
    assert not missing, f"pages not listed in _toc.yml (add them, or to NOT_IN_TOC here): {missing}"




@pytest.mark.parametrize("entry", _toc_pages_that_may_be_notebooks())
def test_committed_outputs_are_current_and_full(entry: str) -> None:
    try:
        path = notebooks.resolve_entry(ROOT, entry)
    except FileNotFoundError as error:
        pytest.fail(str(error), pytrace=False)
    problems = check(path)
    waiting = AWAITING_REEXECUTION.get(entry)
    if waiting is not None:
        if not problems:
            pytest.fail(f"{entry} is current: remove it from AWAITING_REEXECUTION", pytrace=False)
        pytest.xfail(f"{entry} awaits re-execution ({waiting}): " + "; ".join(problems))
    if problems:
        pytest.fail(f"{path.relative_to(ROOT)}:\n  " + "\n  ".join(problems), pytrace=False)


# ----------------------------------------------------------------------------- code_hash


def _notebook() -> nbformat.NotebookNode:
    return new_notebook(
        cells=[
            new_markdown_cell("# Title\n\nSome prose."),
            new_code_cell("import math", execution_count=1),
            new_code_cell(
                "print(math.pi)",
                execution_count=2,
                outputs=[new_output("stream", name="stdout", text="3.14159\n")],
            ),
        ]
    )


def test_code_hash_ignores_markdown_outputs_and_trailing_whitespace() -> None:
    nb = _notebook()
    before = code_hash(nb)
    assert before.startswith("sha256:") and len(before) == len("sha256:") + 64
    nb.cells[0].source = "# A new title\n\nRewritten prose."
    nb.cells.append(new_markdown_cell("More prose."))
    nb.cells[2].outputs = []
    nb.cells[1].source = "import math   \n\n"
    nb.cells.append(new_code_cell(""))
    assert code_hash(nb) == before


def test_code_hash_changes_with_code() -> None:
    nb = _notebook()
    before = code_hash(nb)
    nb.cells[2].source = "print(math.e)"
    assert code_hash(nb) != before
    nb = _notebook()
    nb.cells[1], nb.cells[2] = nb.cells[2], nb.cells[1]
    assert code_hash(nb) != before
    nb = _notebook()
    nb.cells[1].source, nb.cells[2].source = "import math\nprint(math.pi)", ""
    assert code_hash(nb) != before, "moving code across a cell boundary changes the hash"


# ----------------------------------------------------------------------------- check() on small notebooks


def _write(tmp_path: Path, nb: nbformat.NotebookNode, *, mode: str | None = "full") -> Path:
    if mode is not None and "aigc_lab" not in nb.metadata:
        nb.metadata["aigc_lab"] = {
            "mode": mode,
            "device": "cpu",
            "code_hash": code_hash(nb),
            "package_code": provenance.imported_files({"aigc_lab.runtime": None}),
        }
    path = tmp_path / "chapter.ipynb"
    nbformat.write(nb, path)
    return path


def _one_problem(path: Path, expected: str) -> None:
    problems = check(path)
    assert len(problems) == 1 and expected in problems[0], problems


def test_check_accepts_a_good_notebook(tmp_path: Path) -> None:
    assert check(_write(tmp_path, _notebook())) == []


def test_check_missing_metadata(tmp_path: Path) -> None:
    _one_problem(_write(tmp_path, _notebook(), mode=None), "no 'aigc_lab' metadata")


def test_check_quick_mode(tmp_path: Path) -> None:
    _one_problem(_write(tmp_path, _notebook(), mode="quick"), "'quick' mode")


def test_check_a_table_built_but_not_shown(tmp_path: Path) -> None:
    nb = _notebook()
    shown = new_output("display_data", data={"text/html": '<table class="table aigc-lab-table"></table>', "text/plain": "<Table>"})
    nb.cells.append(new_code_cell("t = viz.show_table(rows)\ndisplay(t)", execution_count=3, outputs=[shown]))
    assert check(_write(tmp_path, nb)) == []
    nb = _notebook()
    printed = new_output("stream", name="stdout", text="done\n")
    nb.cells.append(new_code_cell("viz.show_table(rows)\nprint('done')", execution_count=3, outputs=[printed]))
    _one_problem(_write(tmp_path, nb), "cell 3 builds a table (show_table) but shows none")


def test_check_stale_hash(tmp_path: Path) -> None:
    nb = _notebook()
    path = _write(tmp_path, nb)
    nb.cells[2].source = "print(math.tau)"
    nbformat.write(nb, path)
    _one_problem(path, STALE_MESSAGE)


def test_check_no_provenance(tmp_path: Path) -> None:
    nb = _notebook()
    nb.metadata["aigc_lab"] = {"mode": "full", "device": "cpu", "code_hash": code_hash(nb)}
    _one_problem(_write(tmp_path, nb), NO_PROVENANCE_MESSAGE)


def _recorded(files: dict[str, str]) -> dict[str, str]:
    return {name: provenance.file_hash(provenance.PACKAGE_DIR.parent / name) for name in files}


def test_check_changed_package_file(tmp_path: Path) -> None:
    """A planted defect: the notebook ran with a version of a package file that is not the branch's."""
    nb = _notebook()
    path = _write(tmp_path, nb)
    assert check(path) == []
    record = nb.metadata["aigc_lab"]
    record["package_code"] = _recorded({"aigc_lab/runtime.py": "", "aigc_lab/images.py": ""})
    record["package_code"]["aigc_lab/images.py"] = "sha256:" + "0" * 64  # made by another version of images.py
    nbformat.write(nb, path)
    _one_problem(path, f"{STALE_PACKAGE_MESSAGE}: aigc_lab/images.py;")
    record["package_code"]["aigc_lab/gone.py"] = "sha256:" + "1" * 64
    nbformat.write(nb, path)
    _one_problem(path, "aigc_lab/gone.py (deleted), aigc_lab/images.py")


def test_check_stale_and_unrecorded_runs(tmp_path: Path) -> None:
    nb = _notebook()
    path = _write(tmp_path, nb)
    code = _recorded({"aigc_lab/train.py": ""})
    nb.metadata["aigc_lab"]["runs"] = {"book/runs/a": {"event": "loaded", "trained_by": "book/a.ipynb", "code": code}}
    runs = nb.metadata["aigc_lab"]["runs"]  # the notebook holds a copy of what was assigned
    nbformat.write(nb, path)
    assert check(path) == []
    runs["book/runs/a"]["code"] = {"aigc_lab/train.py": "sha256:" + "2" * 64}
    runs["book/runs/b"] = {"event": "loaded", "trained_by": None, "code": None}
    nbformat.write(nb, path)
    problems = check(path)
    assert len(problems) == 2, problems
    assert f"run book/runs/a (trained by book/a.ipynb) {STALE_RUN_MESSAGE}: aigc_lab/train.py" in problems[0]
    assert "run book/runs/b has no record of the code that trained it" in problems[1]


def test_check_error_output(tmp_path: Path) -> None:
    nb = _notebook()
    error = new_output("error", ename="ValueError", evalue="optimizer got an empty parameter list", traceback=[])
    nb.cells[2].outputs.append(error)
    _one_problem(_write(tmp_path, nb), "error output (ValueError")
    nb.cells[2].metadata["tags"] = ["raises-exception"]
    assert check(_write(tmp_path, nb)) == [], "an expected error is fine"


def test_check_outputs_cleared(tmp_path: Path) -> None:
    nb = _notebook()
    for cell in nb.cells[1:]:
        cell.outputs, cell.execution_count = [], None
    problems = check(_write(tmp_path, nb))
    assert any("no code cell has any output" in p for p in problems), problems
    assert any("code cell(s) 1, 2 were not executed" in p for p in problems), problems


def test_check_cell_not_executed(tmp_path: Path) -> None:
    nb = _notebook()
    nb.cells.append(new_code_cell("print('added later')"))
    _one_problem(_write(tmp_path, nb), "code cell(s) 3 were not executed")


def test_check_out_of_order(tmp_path: Path) -> None:
    nb = _notebook()
    nb.cells[1].execution_count = 5
    _one_problem(_write(tmp_path, nb), "out of order")


@pytest.mark.parametrize(
    "text", ["/work/main/book/runs/gan", "/root/.cache/torch", "UserWarning in /usr/lib/python3/site-packages/x.py"]
)
def test_check_machine_paths(tmp_path: Path, text: str) -> None:
    nb = _notebook()
    nb.cells[2].outputs.append(new_output("stream", name="stderr", text=text))
    _one_problem(_write(tmp_path, nb), "path of this machine")


def test_check_ignores_paths_inside_images(tmp_path: Path) -> None:
    nb = _notebook()
    image = new_output("display_data", data={"image/png": "iVBOR/root/home/x/AAAA", "text/plain": "<Figure>"})
    nb.cells[2].outputs.append(image)
    assert check(_write(tmp_path, nb)) == []


# ----------------------------------------------------------------------------- the table of contents


def test_toc_entries_and_resolution(tmp_path: Path) -> None:
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nparts:\n  - caption: A\n    chapters:\n"
        "      - file: book/one\n        sections:\n          - file: book/two\n"
    )
    (tmp_path / "book").mkdir()
    (tmp_path / "book/intro.md").write_text("# Intro\n")
    nbformat.write(_notebook(), tmp_path / "book/one.ipynb")
    assert notebooks.toc_entries(tmp_path) == ["book/intro", "book/one", "book/two"]
    with pytest.raises(FileNotFoundError, match="book/two"):
        notebooks.toc_files(tmp_path)
    nbformat.write(_notebook(), tmp_path / "book/two.ipynb")
    assert [p.name for p in notebooks.toc_notebooks(tmp_path)] == ["one.ipynb", "two.ipynb"]
    (tmp_path / "book/two.md").write_text("# Two\n")
    with pytest.raises(ValueError, match="ambiguous"):
        notebooks.toc_files(tmp_path)


# ----------------------------------------------------------------------------- execute()


def test_execute_records_full_mode_and_refuses_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIGC_LAB_QUICK", "1")  # as under `make test`: the kernel must not inherit it
    good = tmp_path / "good.ipynb"
    nbformat.write(
        new_notebook(cells=[new_markdown_cell("# Good"), new_code_cell("from aigc_lab import runtime\nruntime.mode()")]),
        good,
    )
    bad = tmp_path / "bad.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("1 / 0"), new_code_cell("print('unreached')")]), bad)
    bad_before = bad.read_bytes()

    with pytest.raises(notebooks.NotebookExecutionError, match=r"bad\.ipynb: cell 0 failed"):
        notebooks.execute([good, bad], timeout=120)

    assert bad.read_bytes() == bad_before, "a failed notebook must not be written"
    nb = nbformat.read(good, as_version=4)
    record = nb.metadata["aigc_lab"]
    assert record["mode"] == "full" and nb.cells[1].outputs[0]["data"]["text/plain"] == "'full'"
    assert record["code_hash"] == code_hash(nb)
    assert set(record) >= {"device", "device_name", "wall_time_s", "aigc_lab_version", "torch", "executed_at"}
    assert check(good) == []


def test_execute_records_package_code_and_runs_and_retrains_stale_runs(tmp_path: Path) -> None:
    import json

    page = tmp_path / "page.ipynb"
    trains = (
        "from aigc_lab.data import load_dataset\n"
        "from aigc_lab.models import MSEGenerator\n"
        "from aigc_lab.train import TrainConfig, fit\n"
        "model = MSEGenerator(image_shape=(1, 8, 8))\n"
        "print(fit(model, load_dataset('digits', 'train'), 'runs/tiny', TrainConfig(steps=2)).steps)"
    )
    nbformat.write(new_notebook(cells=[new_code_cell(trains)]), page)
    record = notebooks.execute_one(page, timeout=300)
    assert {"aigc_lab/models/mlp.py", "aigc_lab/train.py", "aigc_lab/provenance.py"} <= set(record["package_code"])
    assert "aigc_lab/models/vae.py" not in record["package_code"], "the registry imported a family nobody asked for"
    run = (tmp_path / "runs/tiny").resolve().as_posix()
    assert record["runs"][run]["event"] == "trained"
    assert record["runs"][run]["trained_by"] == page.resolve().as_posix()
    assert "aigc_lab/models/mlp.py" in record["runs"][run]["code"]
    assert check(page) == []

    # The code that trained the run changes: executing the page again trains it again.
    stored = tmp_path / "runs/tiny" / provenance.RUN_FILE
    outdated = json.loads(stored.read_text())
    outdated["code"]["aigc_lab/models/mlp.py"] = "sha256:" + "0" * 64
    stored.write_text(json.dumps(outdated))
    record = notebooks.execute_one(page, timeout=300)
    assert record["runs"][run]["event"] == "trained" and not provenance.run_is_stale(tmp_path / "runs/tiny")

    # A page that only loads a run trained by outdated code is not written.
    loader = tmp_path / "loader.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("from aigc_lab.runs import load_run\nload_run('runs/tiny')")]), loader)
    stored.write_text(json.dumps(outdated))
    before = loader.read_bytes()
    with pytest.raises(notebooks.NotebookExecutionError, match="loaded run.*trained by package code that changed since"):
        notebooks.execute_one(loader, timeout=300)
    assert loader.read_bytes() == before
