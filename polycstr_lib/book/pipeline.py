"""The book pipeline: execute the notebooks with papermill into ``book/executed/``.

Each notebook's ``parameters`` cell holds the quick profile; a profile is a set of
parameter overrides per notebook run (:data:`PROFILES`). Executed copies are written to a
temporary file and renamed into place, so an interrupted build never leaves a half-written
page; a failed notebook keeps its partial output beside it as ``*.failed.ipynb``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from polycstr_lib.book.budgets import with_curve_budgets
from polycstr_lib.book.profiles import (
    EXECUTED_DIR,
    NOTEBOOK_DIR,
    REPO_ROOT,
    RUNS,
    runs_for,
)


def execute_notebooks(
    profile: str = "quick", only: list[str] | None = None, kernel_name: str = "python3"
) -> list[tuple[str, float]]:
    """Execute the book's notebooks with papermill.

    Args:
        profile: parameter profile (see :data:`PROFILES`).
        only: page stems to execute (default: all).
        kernel_name: Jupyter kernel to run them with.

    Returns:
        ``(page, seconds)`` per executed page.
    """
    import papermill

    pages = [run.page for run in runs_for(profile)]
    unknown = sorted(set(only or ()) - set(pages))
    if unknown:
        raise ValueError(f"no page {', '.join(unknown)} in the book; pages: {', '.join(pages)}")
    EXECUTED_DIR.mkdir(parents=True, exist_ok=True)
    write_parameters_table()
    print("[book] training inside a page can be followed with `python -m polycstr_lib progress`")
    timings = []
    for run in runs_for(profile):
        if only and run.page not in only:
            continue
        run = with_curve_budgets(run, profile)  # after the curves page ran, if it did
        source = NOTEBOOK_DIR / f"{run.notebook}.ipynb"
        target = EXECUTED_DIR / f"{run.page}.ipynb"
        partial = target.with_suffix(".partial.ipynb")
        start = time.perf_counter()
        print(f"[book] executing {source.name} -> {target.relative_to(REPO_ROOT)} {run.parameters}")
        try:
            papermill.execute_notebook(
                str(source),
                str(partial),
                parameters=run.parameters,
                kernel_name=kernel_name,
                cwd=str(NOTEBOOK_DIR),
                progress_bar=sys.stderr.isatty(),  # cells done, in a terminal (not in CI logs)
            )
        except BaseException:
            if partial.exists():
                os.replace(partial, target.with_suffix(".failed.ipynb"))
            raise
        os.replace(partial, target)
        timings.append((run.page, time.perf_counter() - start))
    write_timings_table()
    return timings


def write_timings_table(executed_dir: Path | None = None) -> Path:
    """Write ``timings.md`` beside the executed pages: how long each page's execution took.

    Read from the papermill metadata of every executed page in the book's order, so the
    table describes the pages as they are, also when only some were re-executed. A page
    whose training runs were cached executes in a fraction of its cold time.

    Args:
        executed_dir: Where the executed pages are (default :data:`EXECUTED_DIR`).

    Returns:
        The path of the table.
    """
    import json

    folder = executed_dir or EXECUTED_DIR
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        "| Page | Profile | Execution (min) | Finished (UTC) |",
        "|---|---|---:|---|",
    ]
    total = 0.0
    for run in RUNS:
        page = folder / f"{run.page}.ipynb"
        if not page.is_file():
            lines.append(f"| `{run.page}` | not executed | | |")
            continue
        meta = json.loads(page.read_text(encoding="utf-8"))["metadata"].get("papermill", {})
        seconds = float(meta.get("duration") or 0.0)
        total += seconds
        profile = meta.get("parameters", {}).get("profile", "unknown")
        finished = str(meta.get("end_time") or "")[:16].replace("T", " ")
        lines.append(f"| `{run.page}` | {profile} | {seconds / 60:.1f} | {finished} |")
    lines.append(f"| all pages | | {total / 60:.1f} | |")
    path = folder / "timings.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_parameters_table() -> Path:
    """Write ``book/executed/parameters.md``: every notebook's parameters (for the book)."""
    from polycstr_lib.book.provenance import parameters_markdown

    EXECUTED_DIR.mkdir(parents=True, exist_ok=True)
    path = EXECUTED_DIR / "parameters.md"
    sources = [NOTEBOOK_DIR / f"{stem}.ipynb" for stem in dict.fromkeys(r.notebook for r in RUNS)]
    path.write_text(parameters_markdown(sources))
    return path
