"""The book pipeline: execute the notebooks with papermill into ``book/executed/``.

Each notebook's ``parameters`` cell holds the quick profile; a profile is a set of
parameter overrides per notebook run (:data:`PROFILES`). Executed copies are written to a
temporary file and renamed into place, so an interrupted build never leaves a half-written
page; a failed notebook keeps its partial output beside it as ``*.failed.ipynb``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from polycstr_lib.book.budgets import with_curve_budgets
from polycstr_lib.book.profiles import (
    EXECUTED_DIR,
    NOTEBOOK_DIR,
    REPO_ROOT,
    RUNS,
    NotebookRun,
    runs_for,
)
from polycstr_lib.toolkit.ledger import PAGE_ENV


def execute_notebooks(
    profile: str = "quick",
    only: list[str] | None = None,
    kernel_name: str = "python3",
    executed_dir: Path | None = None,
) -> list[tuple[str, float]]:
    """Execute the book's notebooks with papermill.

    Args:
        profile: parameter profile (see :data:`PROFILES`).
        only: page stems to execute (default: all).
        kernel_name: Jupyter kernel to run them with.
        executed_dir: where the executed pages go (default :data:`EXECUTED_DIR`, the
            book's). Another folder (``make verify``'s) is a build of its own: the results
            pages take their budgets from the curves page there, and a notebook that reads
            other executed pages (its ``executed_dir`` parameter) reads them there.

    Returns:
        ``(page, seconds)`` per executed page.
    """
    pages = [run.page for run in runs_for(profile)]
    unknown = sorted(set(only or ()) - set(pages))
    if unknown:
        raise ValueError(f"no page {', '.join(unknown)} in the book; pages: {', '.join(pages)}")
    folder = Path(executed_dir).resolve() if executed_dir is not None else EXECUTED_DIR
    folder.mkdir(parents=True, exist_ok=True)
    write_parameters_table(folder)
    announce_plan(profile, folder, only)
    print("[book] training inside a page can be followed with `python -m polycstr_lib progress`")
    with task_ledger(folder, fresh=not only):
        timings = _execute(profile, only, kernel_name, folder)
    write_rates(folder)
    write_timings_table(folder)
    return timings


def _execute(
    profile: str, only: list[str] | None, kernel_name: str, folder: Path
) -> list[tuple[str, float]]:
    """Executes the pages (see :func:`execute_notebooks`)."""
    import papermill

    timings = []
    for run in runs_for(profile):
        if only and run.page not in only:
            continue
        os.environ[PAGE_ENV] = run.page  # the ledger's records name their page
        run = with_curve_budgets(run, profile, folder)  # after the curves page ran, if it did
        source = NOTEBOOK_DIR / f"{run.notebook}.ipynb"
        if folder != EXECUTED_DIR and _reads_executed_pages(source):
            run = NotebookRun(
                run.notebook, run.page, {**run.parameters, "executed_dir": str(folder)}
            )
        target = folder / f"{run.page}.ipynb"
        partial = target.with_suffix(".partial.ipynb")
        start = time.perf_counter()
        print(f"[book] executing {source.name} -> {_shown(target)} {run.parameters}")
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
    return timings


def announce_plan(profile: str, folder: Path, only: list[str] | None = None) -> None:
    """Prints the build's plan (:mod:`polycstr_lib.book.plan`) and writes it beside the pages;
    a plan that cannot be made is one line, never a reason not to build."""
    from polycstr_lib.book.plan import build_plan, plan_text, write_plan

    try:
        plan = build_plan(profile, executed_dir=folder, only=only)
    except Exception as error:  # noqa: BLE001 - the plan only informs; the build goes on
        print(f"[book] no plan ({type(error).__name__}: {error})")
        return
    print(plan_text(plan))
    write_plan(plan, folder)


@contextlib.contextmanager
def task_ledger(folder: Path, fresh: bool) -> Iterator[Path]:
    """Records the tasks the build runs into ``tasks.jsonl`` beside the pages (unless a ledger
    is set already); a build of every page starts it afresh, one of some pages adds to it."""
    from polycstr_lib.book.plan import LEDGER_FILE
    from polycstr_lib.toolkit.ledger import LEDGER_ENV

    given = os.environ.get(LEDGER_ENV)
    path = Path(given) if given else folder / LEDGER_FILE
    if not given and fresh:
        path.unlink(missing_ok=True)
    previous = {name: os.environ.get(name) for name in (LEDGER_ENV, PAGE_ENV)}
    os.environ[LEDGER_ENV] = str(path)
    try:
        yield path
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def write_rates(folder: Path) -> Path | None:
    """Writes ``rates.json`` beside the pages: the speeds measured by the build's ledger (the
    store's, then assumed ones, for what it did not run), which the next plan estimates with."""
    from polycstr_lib.book.plan import LEDGER_FILE, RATES_FILE, rates_from_ledger, rates_from_store
    from polycstr_lib.toolkit.ledger import read_ledger

    try:
        records = read_ledger(folder / LEDGER_FILE)
    except ValueError as error:
        print(f"[book] rates not measured: {error}")
        return None
    rates = rates_from_ledger(records, rates_from_store())
    overhead = _page_overhead(folder, records)
    if overhead is not None:
        sources = {**rates.sources, "page": f"build ({len(records)} tasks)"}
        rates = dataclasses.replace(rates, page=overhead, sources=sources)
    path = folder / RATES_FILE
    path.write_text(json.dumps(rates.to_json(), indent=1), encoding="utf-8")
    return path


def _page_overhead(folder: Path, records: list[dict]) -> float | None:
    """Median over the executed pages of their time beyond their recorded tasks (kernel start,
    imports, loading, figures), or None without pages."""
    spent: dict[str, float] = {}
    for r in records:
        if r.get("within") is None and r.get("page"):
            spent[r["page"]] = spent.get(r["page"], 0.0) + float(r.get("seconds") or 0.0)
    rest = []
    for page, seconds in _durations(folder).items():
        rest.append(max(0.0, seconds - spent.get(page, 0.0)))
    return statistics.median(rest) if rest else None


def _durations(folder: Path) -> dict[str, float]:
    """Page → seconds of its execution, from papermill's metadata of the executed pages."""
    out = {}
    for run in RUNS:
        page = folder / f"{run.page}.ipynb"
        if page.is_file():
            meta = json.loads(page.read_text(encoding="utf-8"))["metadata"].get("papermill", {})
            out[run.page] = float(meta.get("duration") or 0.0)
    return out


def _reads_executed_pages(source: Path) -> bool:
    """Whether the notebook's parameters cell has ``executed_dir`` (it reads other pages)."""
    from polycstr_lib.book.provenance import notebook_parameters

    return any(row["name"] == "executed_dir" for row in notebook_parameters(source))


def _shown(path: Path) -> str:
    """``path`` relative to the checkout when it is inside it."""
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


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
    from polycstr_lib.book.plan import planned_seconds

    folder = executed_dir or EXECUTED_DIR
    folder.mkdir(parents=True, exist_ok=True)
    planned = planned_seconds(folder)
    lines = [
        "| Page | Profile | Execution (min) | Plan (min) | Finished (UTC) |",
        "|---|---|---:|---:|---|",
    ]
    total = 0.0
    for run in RUNS:
        page = folder / f"{run.page}.ipynb"
        plan = f"{planned[run.page] / 60:.1f}" if run.page in planned else ""
        if not page.is_file():
            lines.append(f"| `{run.page}` | not executed | | {plan} | |")
            continue
        meta = json.loads(page.read_text(encoding="utf-8"))["metadata"].get("papermill", {})
        seconds = float(meta.get("duration") or 0.0)
        total += seconds
        profile = meta.get("parameters", {}).get("profile", "unknown")
        finished = str(meta.get("end_time") or "")[:16].replace("T", " ")
        lines.append(f"| `{run.page}` | {profile} | {seconds / 60:.1f} | {plan} | {finished} |")
    estimate = f"{sum(planned.values()) / 60:.1f}" if planned else ""
    lines.append(f"| all pages | | {total / 60:.1f} | {estimate} | |")
    path = folder / "timings.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_parameters_table(executed_dir: Path | None = None) -> Path:
    """Write ``parameters.md`` beside the executed pages (default ``book/executed/``): every
    notebook's parameters (for the book)."""
    from polycstr_lib.book.provenance import parameters_markdown

    folder = executed_dir or EXECUTED_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "parameters.md"
    sources = [NOTEBOOK_DIR / f"{stem}.ipynb" for stem in dict.fromkeys(r.notebook for r in RUNS)]
    path.write_text(parameters_markdown(sources))
    return path
