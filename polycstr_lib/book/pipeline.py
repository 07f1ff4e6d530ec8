"""The book pipeline: execute the notebooks with papermill into ``book/executed/``.

Each notebook's ``parameters`` cell holds the quick profile; a profile is a set of
parameter overrides per notebook run (:data:`PROFILES`). Executed copies are written to a
temporary file and renamed into place, so an interrupted build never leaves a half-written
page; a failed notebook keeps its partial output beside it as ``*.failed.ipynb``.

A build may have a deadline (:mod:`polycstr_lib.toolkit.deadline`): the pages' kernels get it
in their environment, so training stops at the end of its step with its state written; the
page stops there (kept only as ``*.failed.ipynb``), no later page starts, and
:class:`~polycstr_lib.toolkit.deadline.DeadlineReached` is raised after its message is
written to :data:`INCOMPLETE` beside the executed pages (a build that is not stopped removes
that file). Running the build again resumes the training where it stopped.
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
    PROFILES,
    REPO_ROOT,
    RUNS,
    NotebookRun,
    runs_for,
)
from polycstr_lib.toolkit.deadline import (
    DeadlineReached,
    build_deadline,
    deadline_in_environment,
    deadline_passed,
    format_deadline,
)
from polycstr_lib.toolkit.ledger import PAGE_ENV

#: The file beside the executed pages that says the last build stopped at its deadline.
INCOMPLETE = "incomplete.txt"


def execute_notebooks(
    profile: str = "quick",
    only: list[str] | None = None,
    kernel_name: str = "python3",
    executed_dir: Path | None = None,
    deadline: float | None = None,
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
        deadline: when training stops and no further page starts, in seconds since the
            epoch (default: ``POLYCSTR_DEADLINE``'s, or none).

    Returns:
        ``(page, seconds)`` per executed page.

    Raises:
        DeadlineReached: the deadline passed; the message (also in :data:`INCOMPLETE`) says
            where the build stopped.
    """
    pages = [run.page for run in runs_for(profile)]
    unknown = sorted(set(only or ()) - set(pages))
    if unknown:
        raise ValueError(f"no page {', '.join(unknown)} in the book; pages: {', '.join(pages)}")
    folder = Path(executed_dir).resolve() if executed_dir is not None else EXECUTED_DIR
    folder.mkdir(parents=True, exist_ok=True)
    deadline = build_deadline() if deadline is None else deadline
    (folder / INCOMPLETE).unlink(missing_ok=True)
    write_parameters_table(folder)
    write_training_table(folder)
    announce_plan(profile, folder, only)
    print("[book] training inside a page can be followed with `python -m polycstr_lib progress`")
    if deadline is not None:
        print(f"[book] deadline {format_deadline(deadline)}: training stops there, resumable")
    with task_ledger(folder, fresh=not only):
        timings = _execute(profile, only, kernel_name, folder, deadline)
    write_rates(folder)
    write_timings_table(folder)
    return timings


def _execute(
    profile: str, only: list[str] | None, kernel_name: str, folder: Path, deadline: float | None
) -> list[tuple[str, float]]:
    """Executes the pages (see :func:`execute_notebooks`)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    timings = []
    for run in runs_for(profile):
        if only and run.page not in only:
            continue
        if deadline_passed(deadline):
            _stop(folder, f"deadline {format_deadline(deadline)} reached before page {run.page}")
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
            with deadline_in_environment(deadline):  # the kernel inherits it
                papermill.execute_notebook(
                    str(source),
                    str(partial),
                    parameters=run.parameters,
                    kernel_name=kernel_name,
                    cwd=str(NOTEBOOK_DIR),
                    progress_bar=sys.stderr.isatty(),  # cells done, in a terminal (not CI logs)
                )
        except BaseException as error:
            if partial.exists():
                os.replace(partial, target.with_suffix(".failed.ipynb"))
            if isinstance(error, PapermillExecutionError) and error.ename == "DeadlineReached":
                _stop(folder, f"{error.evalue} in page {run.page}")
            raise
        os.replace(partial, target)
        timings.append((run.page, time.perf_counter() - start))
    return timings


def _stop(folder: Path, message: str) -> None:
    """Write ``message`` to :data:`INCOMPLETE` in ``folder`` and raise it as
    :class:`DeadlineReached`."""
    (folder / INCOMPLETE).write_text(message + "\n", encoding="utf-8")
    raise DeadlineReached(message)


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


def _write_if_changed(path: Path, text: str) -> Path:
    """Writes ``text`` to ``path`` unless it holds it already (Sphinx then keeps its pages)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path


def write_parameters_table(executed_dir: Path | None = None) -> Path:
    """Write ``parameters.md`` beside the executed pages (default ``book/executed/``): every
    notebook's parameters, with a column per profile beside the defaults (for the book)."""
    from polycstr_lib.book.provenance import parameters_markdown

    folder = executed_dir or EXECUTED_DIR
    stems = list(dict.fromkeys(r.notebook for r in RUNS))
    others = {
        name: {stem: {"profile": name, **overrides.get(stem, {})} for stem in stems}
        for name, overrides in PROFILES.items()
        if name != "quick"
    }
    sources = [NOTEBOOK_DIR / f"{stem}.ipynb" for stem in stems]
    return _write_if_changed(folder / "parameters.md", parameters_markdown(sources, others))


def write_training_table(executed_dir: Path | None = None, profile: str = "paper") -> Path:
    """Write ``profiles.md`` beside the executed pages (default ``book/executed/``): what
    ``profile`` trains and evaluates beside the quick profile
    (:func:`~polycstr_lib.book.summaries.training_markdown`), for the intro and rerun pages."""
    from polycstr_lib.book.summaries import training_markdown

    folder = executed_dir or EXECUTED_DIR
    return _write_if_changed(folder / "profiles.md", training_markdown(profile))
