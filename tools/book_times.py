"""How long the book takes to execute, read from what each notebook recorded when it was executed.

``python -m aigc_lab.notebooks execute`` stores each notebook's mode, device and wall time in its
metadata (``metadata.aigc_lab``). This script prints them page by page against the book's budgets
(``../shared/DESIGN.md``: at most 5 minutes a page in full mode, chapters 1-4 at most 40 minutes,
the whole book at most 90), and says which pages miss them. It measures nothing itself: the times
are those of the executions that made the committed outputs, on whatever machine ran them (the
device is printed with them)::

    python tools/book_times.py            # the table
    python tools/book_times.py --json     # the same as JSON

A page's time includes training only for the runs it trained in that execution. When it loaded a
run that it trains itself (one left by an earlier execution of the same page, in ``book/runs``),
its time leaves that training out; the table marks such a page ``PARTIAL`` and names how many of
its own runs it loaded. Runs loaded from *other* pages are the book working as designed (each
model is trained once per execution of the book) and are not flagged.

Exit status 0 always: a budget missed is a finding to read, not a crash.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
PAGE_BUDGET_S = 300
CHAPTERS_1_4_BUDGET_S = 40 * 60
BOOK_BUDGET_S = 90 * 60


def toc_notebooks(root: Path = ROOT) -> list[Path]:
    """The book's notebooks in the order of ``_toc.yml`` (the entries ``aigc_lab.notebooks`` reads)."""
    from aigc_lab.notebooks import resolve_entry, toc_entries

    pages = [resolve_entry(root, entry) for entry in toc_entries(root)]
    return [page for page in pages if page.suffix == ".ipynb"]


def own_runs_loaded(meta: dict, page: str) -> int:
    """How many runs that ``page`` trains it loaded instead (left by an earlier execution of it), from its ``metadata.aigc_lab``."""
    runs = meta.get("runs", {}).values()
    return sum(1 for r in runs if r.get("event") == "loaded" and r.get("trained_by") == page)


def page_times(root: Path = ROOT) -> list[dict[str, object]]:
    rows = []
    for path in toc_notebooks(root):
        meta = nbformat.read(path, as_version=4).metadata.get("aigc_lab", {})
        page = str(path.relative_to(root))
        own_loaded = own_runs_loaded(meta, page)
        rows.append(
            {
                "page": page,
                "chapter": int(path.name[:2]) if path.name[:2].isdigit() else None,
                "mode": meta.get("mode"),
                "wall_s": meta.get("wall_time_s"),
                "device": meta.get("device"),
                "executed_at": meta.get("executed_at"),
                "own_runs_loaded": own_loaded,  # its own runs, left by an earlier execution: training not timed
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    rows = page_times()
    timed = [r for r in rows if isinstance(r["wall_s"], (int, float))]
    total = sum(r["wall_s"] for r in timed)
    ch1_4 = sum(r["wall_s"] for r in timed if r["chapter"] is not None and r["chapter"] <= 4)
    summary = {
        "pages": len(rows),
        "pages_timed": len(timed),
        "pages_over_5_min": [r["page"] for r in timed if r["wall_s"] > PAGE_BUDGET_S],
        "pages_timed_without_their_training": [r["page"] for r in timed if r["own_runs_loaded"]],
        "chapters_1_4_s": round(ch1_4, 1),
        "book_s": round(total, 1),
    }
    if args.json:
        json.dump({"pages": rows, "summary": summary}, sys.stdout, indent=1)
        print()
        return 0
    print(f"{'page':40s} {'mode':5s} {'wall s':>8s}  {'budget':8s} executed at")
    for r in rows:
        wall = r["wall_s"]
        verdict = "" if not isinstance(wall, (int, float)) else ("ok" if wall <= PAGE_BUDGET_S else "OVER")
        if r["own_runs_loaded"]:
            verdict = f"PARTIAL ({r['own_runs_loaded']} of its runs loaded)" if verdict == "ok" else verdict + ", PARTIAL"
        wall_text = f"{wall:8.1f}" if isinstance(wall, (int, float)) else f"{'-':>8s}"
        print(f"{r['page']:40s} {str(r['mode']):5s} {wall_text}  {verdict:8s} {r['executed_at']} ({r['device']})")
    print()
    print(f"chapters 1-4: {ch1_4 / 60:6.1f} min (budget {CHAPTERS_1_4_BUDGET_S // 60})")
    print(f"whole book:   {total / 60:6.1f} min (budget {BOOK_BUDGET_S // 60}), {len(timed)} of {len(rows)} pages timed")
    print(f"pages over {PAGE_BUDGET_S // 60} minutes: {', '.join(summary['pages_over_5_min']) or 'none'}")
    partial = summary["pages_timed_without_their_training"]
    print(f"pages timed without (some of) their own training: {', '.join(partial) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
