"""Training budgets injected into pages from the learning-curves page, and how pages state them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from polycstr_lib.book.profiles import (
    BUDGETS_FROM_CURVES,
    EXECUTED_DIR,
    NotebookRun,
    effective_parameters,
)

#: The page whose glued ``curve_budgets`` set the results pages' budgets.
CURVES_PAGE = "04b_learning_curves"


ALGORITHMS = ("bc", "iql", "cql")


FROM_CURVES = "learning curves"


#: What a results page says of a budget from a curve that has not converged, by the status
#: of :class:`polycstr_lib.analysis.curves.BudgetRule` (spelled out: importing curves needs torch).
NOT_CONVERGED = {
    "unconfirmed": " (unconfirmed: no checkpoint on {scenario} has two later ones confirming it)",
    "falling": " (early stopping: the curve on {scenario} falls off after it)",
}


#: ... and of one whose status this version does not know (a page built by another version).
UNKNOWN_STATUS = " (the curve on {scenario} has status {status!r}: rerun the curves page)"


def curve_budgets(parameters: dict, curves: dict | None, enabled: bool = True) -> dict:
    """The ``<algo>_steps`` and ``budget_sources`` of a results run, from the curves page.

    An algorithm trains at its learning-curve budget on the run's scenario whenever the
    curves page measured it there: the budget two later checkpoints confirmed, or, for a
    curve that has not converged, the rule's unconfirmed budget or its early-stopping one
    (the curve falls off after it), and ``budget_sources`` says which. An algorithm without
    a curve on the scenario trains at the profile's fixed budget, and ``budget_sources``
    says why.

    Args:
        parameters: The run's parameters (``scenario``, ``profile`` and the profile's
            ``<algo>_steps``; a missing ``<algo>_steps`` keeps the notebook's default).
        curves: Glued values of the executed curves page (``curve_budgets``: algorithm ->
            scenario -> ``{"steps": int, "converged": bool, "status": str}``, with
            ``status`` ``"converged"``, ``"unconfirmed"`` or ``"falling"``
            (:class:`~polycstr_lib.analysis.curves.BudgetRule`); and ``curves_profile``), or
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
    from polycstr_lib.book.glue import read_glue

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
