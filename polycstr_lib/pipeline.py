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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
EXECUTED_DIR = REPO_ROOT / "book" / "executed"


@dataclass(frozen=True)
class NotebookRun:
    """One execution of a notebook into one page of the book."""

    notebook: str  # stem of the source in notebooks/, e.g. "02_dataset"
    page: str  # stem of the executed copy in book/executed/
    parameters: dict = field(default_factory=dict)  # overrides of the parameters cell


#: Pages of the book in reading order, with the parameters that make each page.
RUNS: tuple[NotebookRun, ...] = (
    NotebookRun("01_environment", "01_environment"),
    NotebookRun("02_dataset", "02_dataset"),
    NotebookRun("03_iql_theory", "03_iql_theory"),
    NotebookRun("04_cost_models", "04_cost_models"),
    NotebookRun("04b_learning_curves", "04b_learning_curves"),
    *(
        NotebookRun("05_results", f"05_results_{scenario}", {"scenario": scenario})
        for scenario in ("startup", "grade_down", "grade_up")
    ),
    NotebookRun("06_ablations", "06_ablations"),
    NotebookRun("08_correction_support", "08_correction_support"),
    NotebookRun("07_claims", "07_claims"),
)

#: Overrides per profile and notebook. "quick" is every notebook's own defaults.
PROFILES: dict[str, dict[str, dict]] = {
    "quick": {},
    "paper": {
        "01_environment": {
            "grade_points": 41,
            "nmpc_horizons": [5, 10, 20, 40],
            "nmpc_study_scenarios": ["startup", "grade_down", "grade_up"],
            "nmpc_study_episodes": 2,
            "nmpc_study_steps": 200,
        },
        "02_dataset": {},
        "03_iql_theory": {"bc_steps": 10_000, "iql_steps": 10_000, "test_episodes": 50},
        "04_cost_models": {"train_steps": 10_000, "gradient_episodes": 10},
        "04b_learning_curves": {
            "scenarios": ["startup", "grade_down", "grade_up"],
            "algorithms": ["bc", "iql", "cql"],
            "seeds": list(range(10)),
            "checkpoints": {
                "bc": [1000, 2500, 5000, 10_000, 20_000],
                "iql": [1000, 2500, 5000, 10_000, 20_000],
                "cql": [250, 500, 1000, 2000],
            },
            "extend_to": {"bc": 40_000, "iql": 40_000},
            "validation_episodes": 20,
            "variant_scenarios": ["startup", "grade_up"],
            "variant_seeds": list(range(5)),
            "variant_steps": 5000,
        },
        "05_results": {
            "seeds": list(range(10)),
            "bc_steps": 5000,
            "iql_steps": 5000,
            "cql_steps": 500,
            "cost_steps": 10_000,
            "test_episodes": 50,
            "nmpc_episodes": 50,
            "correction_variants": ["plain", "normalised", "trust region", "uncertainty"],
            "validation_episodes": 20,
        },
        "06_ablations": {
            "seeds": [0, 1, 2, 3, 4],
            "agent_steps": 5000,
            "cost_steps": 10_000,
            "ensemble_seeds": [0, 1, 2, 3, 4],
            "step_sizes": [0.03, 0.1, 0.3, 1.0, 3.0],
            "newton_step_sizes": [0.1, 0.3, 1.0],
            "steps_grid": [1, 2, 3, 5, 10],
            "trust_radii": [0.3, 1.0, 3.0, 10.0],
            "expectiles": [0.5, 0.7, 0.9, 0.95],
            "validation_episodes": 20,
            "test_episodes": 50,
        },
        "08_correction_support": {
            "scenarios": ["startup", "grade_down", "grade_up"],
            "algorithms": ["bc", "iql", "cql"],
            "seeds": [0, 1, 2, 3, 4],
            "agent_steps": {"bc": 5000, "iql": 5000, "cql": 500},
            "cost_steps": 10_000,
            "ensemble_seeds": [0, 1, 2, 3, 4],
            "validation_episodes": 20,
            "test_episodes": 50,
            "raw_step_sizes": [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0],
            "normalised_step_sizes": [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0],
        },
    },
}


#: Profiles whose results pages train at the budgets the learning curves justify
#: (:func:`curve_budgets`); the others use their fixed ``<algo>_steps``.
BUDGETS_FROM_CURVES: dict[str, bool] = {"quick": True, "paper": True}

#: The page whose glued ``curve_budgets`` set the results pages' budgets.
CURVES_PAGE = "04b_learning_curves"
ALGORITHMS = ("bc", "iql", "cql")
FROM_CURVES = "learning curves"
#: What a results page says of a budget from a curve that has not converged, by the status
#: of :class:`polycstr_lib.curves.BudgetRule` (spelled out: importing curves needs torch).
NOT_CONVERGED = {
    "unconfirmed": " (last checkpoint: no later checkpoint on {scenario} confirms it)",
    "falling": " (best checkpoint: the curve on {scenario} falls off after it)",
}
#: ... and of one whose status this version does not know (a page built by another version).
UNKNOWN_STATUS = " (the curve on {scenario} has status {status!r}: rerun the curves page)"


def curve_budgets(parameters: dict, curves: dict | None, enabled: bool = True) -> dict:
    """The ``<algo>_steps`` and ``budget_sources`` of a results run, from the curves page.

    An algorithm trains at its learning-curve budget on the run's scenario whenever the
    curves page measured it there: the budget the rule confirmed, or, for a curve that has not
    converged, the last checkpoint (unconfirmed) or the best one (falling off after it), and
    ``budget_sources`` says which. An algorithm without a curve on the scenario trains at the
    profile's fixed budget, and ``budget_sources`` says why.

    Args:
        parameters: The run's parameters (``scenario``, ``profile`` and the profile's
            ``<algo>_steps``; a missing ``<algo>_steps`` keeps the notebook's default).
        curves: Glued values of the executed curves page (``curve_budgets``: algorithm ->
            scenario -> ``{"steps": int, "converged": bool, "status": str}``, with
            ``status`` ``"converged"``, ``"unconfirmed"`` or ``"falling"``
            (:class:`~polycstr_lib.curves.BudgetRule`); and ``curves_profile``), or
            None when it is missing. A page built with another profile than
            ``parameters["profile"]`` is not used.
        enabled: Whether the profile takes budgets from the curves.

    Returns:
        Overrides for the run: ``<algo>_steps`` for every algorithm whose budget comes from
        the curves, and ``budget_sources`` (algorithm -> ``"learning curves"``, ``"learning
        curves (...)"`` for a curve that has not converged, or ``"profile (...)"``, each with
        the reason).
    """
    scenario = parameters.get("scenario", "startup")
    profile = parameters.get("profile")
    stale = curves is not None and profile is not None and curves.get("curves_profile") != profile
    table = (curves or {}).get("curve_budgets", {})
    out: dict = {}
    sources = {}
    for algo in ALGORITHMS:
        entry = table.get(algo, {}).get(scenario)
        if not enabled:
            sources[algo] = "profile (this profile does not take budgets from the curves)"
        elif curves is None:
            sources[algo] = "profile (no executed learning-curve page)"
        elif stale:
            sources[algo] = "profile (the learning-curve page was built with another profile)"
        elif entry is None:
            sources[algo] = f"profile (no learning curve on {scenario})"
        else:
            out[f"{algo}_steps"] = int(entry["steps"])
            status = entry.get("status", "converged" if entry["converged"] else "unconfirmed")
            note = "" if status == "converged" else NOT_CONVERGED.get(status, UNKNOWN_STATUS)
            sources[algo] = FROM_CURVES + note.format(scenario=scenario, status=status)
    out["budget_sources"] = sources
    return out


def with_curve_budgets(
    run: NotebookRun, profile: str, executed_dir: Path | None = None
) -> NotebookRun:
    """``run`` with the budgets of :func:`curve_budgets` when it is a results page, and of
    :func:`support_budgets` when it is the correction-support chapter.

    Args:
        run: A run of :func:`runs_for`.
        profile: Its profile (:data:`BUDGETS_FROM_CURVES` says whether curves are used).
        executed_dir: Where the executed curves page is (default :data:`EXECUTED_DIR`).

    Returns:
        The run with updated parameters (other runs unchanged).
    """
    if run.notebook not in ("05_results", SUPPORT_NOTEBOOK):
        return run
    from polycstr_lib.claims import read_glue

    page = (executed_dir or EXECUTED_DIR) / f"{CURVES_PAGE}.ipynb"
    curves = read_glue(page) if page.is_file() else None
    enabled = BUDGETS_FROM_CURVES.get(profile, False)
    if run.notebook == SUPPORT_NOTEBOOK:
        parameters = {**effective_parameters(run.notebook, profile), **run.parameters}
        overrides = support_budgets(parameters, curves, enabled)
    else:
        overrides = curve_budgets(run.parameters, curves, enabled)
    return NotebookRun(run.notebook, run.page, {**run.parameters, **overrides})


#: The chapter on the correction's support, whose agents also train at the curves' budgets.
SUPPORT_NOTEBOOK = "08_correction_support"


def support_budgets(parameters: dict, curves: dict | None, enabled: bool = True) -> dict:
    """``agent_steps`` and ``budget_sources`` of the correction-support chapter.

    Each algorithm trains on each of the chapter's scenarios at the budget its learning curve
    picks *on that scenario* (as a results page of that scenario does, :func:`curve_budgets`),
    and at the chapter's fixed ``agent_steps`` where no curve was measured there: a budget
    measured on one scenario is not carried over to another.

    Args:
        parameters: The chapter's full parameters (``scenarios``, ``agent_steps``: algorithm
            -> steps, or algorithm -> scenario -> steps; ``profile``).
        curves: As for :func:`curve_budgets`.
        enabled: Whether the profile takes budgets from the curves.

    Returns:
        ``agent_steps`` (every algorithm of the given ``agent_steps`` -> scenario -> steps)
        and ``budget_sources`` (algorithm -> text: the source when every scenario has the
        same one, else ``"<scenario>: <source>"`` joined by "; ").
    """
    scenarios = list(parameters["scenarios"])
    per_scenario = {
        s: curve_budgets({**parameters, "scenario": s}, curves, enabled) for s in scenarios
    }
    steps, sources = {}, {}
    for algo, fixed in dict(parameters["agent_steps"]).items():
        steps[algo], texts = {}, {}
        for s in scenarios:
            default = fixed[s] if isinstance(fixed, Mapping) else fixed
            steps[algo][s] = int(per_scenario[s].get(f"{algo}_steps", default))
            texts[s] = per_scenario[s]["budget_sources"].get(algo, "profile")
        if len(set(texts.values())) == 1:
            sources[algo] = texts[scenarios[0]]
        else:
            sources[algo] = "; ".join(f"{s}: {text}" for s, text in texts.items())
    return {"agent_steps": steps, "budget_sources": sources}


def budget_text(algorithm: str, steps: int | Mapping[str, int], source: str) -> str:
    """One algorithm's budgets as a page states them, e.g. ``"BC 2,000 steps (profile)"`` or
    ``"BC startup 10,000 / grade_up 40,000 steps (...)"`` when they differ by scenario."""
    if isinstance(steps, Mapping):
        values = set(steps.values())
        if len(values) == 1:
            steps = values.pop()
        else:
            each = " / ".join(f"{s} {k:,}" for s, k in steps.items())
            return f"{algorithm.upper()} {each} steps ({source})"
    return f"{algorithm.upper()} {steps:,} steps ({source})"


def runs_for(profile: str) -> list[NotebookRun]:
    """The notebook runs of ``profile``, each with its full parameter set.

    Raises:
        ValueError: for an unknown profile (the message lists the valid ones).
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    out = []
    for run in RUNS:
        params = {"profile": profile, **PROFILES[profile].get(run.notebook, {}), **run.parameters}
        out.append(NotebookRun(run.notebook, run.page, params))
    return out


def effective_parameters(notebook: str, profile: str) -> dict:
    """The parameters a notebook runs with in ``profile``: its defaults, then the overrides.

    Args:
        notebook: Stem of the source in ``notebooks/`` (e.g. ``"05_results"``).
        profile: A profile of :data:`PROFILES`.

    Raises:
        ValueError: An unknown profile or notebook.
    """
    from polycstr_lib.provenance import notebook_parameters

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    path = NOTEBOOK_DIR / f"{notebook}.ipynb"
    if not path.is_file():
        raise ValueError(f"no notebook {notebook!r} in {NOTEBOOK_DIR}")
    defaults = {row["name"]: row["default"] for row in notebook_parameters(path)}
    return {**defaults, **PROFILES[profile].get(notebook, {}), "profile": profile}


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
        "| page | profile | execution (min) | finished (UTC) |",
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
    from polycstr_lib.provenance import parameters_markdown

    EXECUTED_DIR.mkdir(parents=True, exist_ok=True)
    path = EXECUTED_DIR / "parameters.md"
    sources = [NOTEBOOK_DIR / f"{stem}.ipynb" for stem in dict.fromkeys(r.notebook for r in RUNS)]
    path.write_text(parameters_markdown(sources))
    return path


def glued_numbers(executed_dir: Path | None = None) -> dict[str, dict]:
    """Every value glued into the prose, per executed page in the book's order.

    What a reviewer checks against the paper, and what two builds of one commit must agree
    on bit for bit (:func:`differing_numbers`). Pages not executed are left out.

    Args:
        executed_dir: Where the executed pages are (default :data:`EXECUTED_DIR`).

    Returns:
        ``{page stem: {glue name: value}}``, values parsed as Python literals.

    Raises:
        FileNotFoundError: when the folder does not exist.
        ValueError: when a page holds a glued value that is not a Python literal.
    """
    from polycstr_lib.claims import read_glue

    folder = executed_dir or EXECUTED_DIR
    if not folder.is_dir():
        raise FileNotFoundError(f"no executed pages at {folder}: run `make book` first")
    pages = [folder / f"{run.page}.ipynb" for run in RUNS]
    return {page.stem: read_glue(page) for page in pages if page.is_file()}


def _same_value(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True  # NaN on both sides
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_value(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b, strict=True))
    return a == b


MISSING = "(missing)"


def differing_numbers(
    first: Mapping[str, Mapping], second: Mapping[str, Mapping]
) -> list[tuple[str, str, object, object]]:
    """The glued values two builds disagree on, as ``(page, name, first, second)``.

    Values compare exactly (floats bit for bit, NaN equal to NaN, containers element by
    element); a page or value present on one side only differs, shown as :data:`MISSING`.
    """
    differences = []
    for page in dict.fromkeys([*first, *second]):
        a, b = first.get(page, {}), second.get(page, {})
        for name in dict.fromkeys([*a, *b]):
            left, right = a.get(name, MISSING), b.get(name, MISSING)
            if not _same_value(left, right):
                differences.append((page, name, left, right))
    return differences
