"""tools/book_times.py: the book's times against its budgets, and which times leave training out."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("book_times", ROOT / "tools" / "book_times.py")
book_times = importlib.util.module_from_spec(spec)
spec.loader.exec_module(book_times)


def test_a_page_that_loaded_its_own_runs_is_told_apart_from_one_that_loaded_another_pages():
    page = "book/04d_guidance.ipynb"
    meta = {
        "runs": {
            "book/runs/ch04-full/digits-cfg": {"event": "loaded", "trained_by": page},  # left by an earlier execution
            "book/runs/ch04-full/shapes-cfg": {"event": "trained", "trained_by": page},
            "book/runs/ch03-vae-full/vae": {"event": "loaded", "trained_by": "book/03a_vae.ipynb"},  # another page's: by design
        }
    }
    assert book_times.own_runs_loaded(meta, page) == 1
    assert book_times.own_runs_loaded({}, page) == 0


def test_every_page_of_the_toc_is_listed_with_its_time(capsys):
    rows = book_times.page_times()
    assert [r["page"] for r in rows][:2] == ["book/01_background.ipynb", "book/02_training_data.ipynb"]
    assert all(isinstance(r["own_runs_loaded"], int) for r in rows)
    assert book_times.main([]) == 0
    out = capsys.readouterr().out
    assert "chapters 1-4:" in out and "pages timed without (some of) their own training:" in out
