"""The book's pages and the parameter profiles that make them (quick, paper)."""

from __future__ import annotations

from dataclasses import dataclass, field

from polycstr_lib.toolkit.store import REPO_ROOT

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


#: Notebooks that read another page's executed copy (the results pages and chapter 08 take
#: their budgets from the curves page, the claims page reads the results pages and the cost
#: models page), with the pages they read: a verification executes them together, in book
#: order. The other pages read only the store, so they can be verified apart, at once.
CHAINED_NOTEBOOKS = (
    "04_cost_models",
    "04b_learning_curves",
    "05_results",
    "08_correction_support",
    "07_claims",
)
#: The two groups of pages a verification may execute apart (:func:`page_group`).
PAGE_GROUPS = ("chained", "independent")


def page_group(group: str) -> list[str]:
    """The pages of ``group`` in book order: ``"chained"`` (:data:`CHAINED_NOTEBOOKS`) or
    ``"independent"`` (every other page).

    Raises:
        ValueError: an unknown group (the message lists the valid ones).
    """
    if group not in PAGE_GROUPS:
        raise ValueError(f"unknown page group {group!r}; valid groups: {', '.join(PAGE_GROUPS)}")
    chained = group == "chained"
    return [run.page for run in RUNS if (run.notebook in CHAINED_NOTEBOOKS) == chained]


#: The parameters the results pages (05) and the correction-support chapter (08) share, so
#: that the chapter studies the correction the results pages deploy: the training seeds (and
#: each algorithm's share of them, ``algorithm_seeds``), the variant set, K, the validation
#: episodes, the cost models' steps and the oracle's horizon (the deployment rule's
#: tolerances are shares of the hold-to-oracle range). Both pages take the
#: step-size grids (``DEFAULT_STEP_SIZES``) and the ensemble (``ENSEMBLE_SEEDS`` of
#: ``polycstr_lib.correction.choice``) from the library, not from their parameters.
SHARED_CORRECTION_KEYS = (
    "seeds",
    "algorithm_seeds",
    "correction_variants",
    "correction_steps",
    "validation_episodes",
    "cost_steps",
    "nmpc_horizon",
)
#: CQL's training seeds in the paper profile (the first of ``seeds``), on the curves page, the
#: results pages and chapter 08 alike, so that the results pages' CQL runs are the curves'
#: snapshots: a CQL step costs about 20 IQL steps, and ten CQL seeds on three scenarios would
#: take most of the paper build's two hours (``python -m polycstr_lib plan --profile paper``).
CQL_SEEDS = 3
#: Their values in the paper profile; the quick profile is both notebooks' own defaults.
PAPER_CORRECTION: dict = {
    "seeds": list(range(10)),
    "algorithm_seeds": {"cql": CQL_SEEDS},
    "correction_variants": ["plain", "normalised", "trust region", "uncertainty"],
    "correction_steps": 3,
    "validation_episodes": 20,
    "cost_steps": 10_000,
    "nmpc_horizon": 10,
}

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
        "03_iql_theory": {"bc_steps": 5000, "iql_steps": 5000, "test_episodes": 50},
        "04_cost_models": {"train_steps": 10_000, "gradient_episodes": 10},
        "04b_learning_curves": {
            "scenarios": ["startup", "grade_down", "grade_up"],
            "algorithms": ["bc", "iql", "cql"],
            "seeds": list(range(10)),
            "algorithm_seeds": {"cql": CQL_SEEDS},
            # sized with ``python -m polycstr_lib plan --profile paper --calibrate`` at this
            # machine's measured rates (IQL 55 agent-steps/s per core, CQL 5) toward two hours
            "checkpoints": {
                "bc": [500, 1000, 2500],
                "iql": [500, 1000, 2500],
                "cql": [125, 250, 500],
            },
            # a curve still unconfirmed at its last checkpoint is extended by doubling, up to
            # 5,000 steps (BC, IQL) or 1,000 (CQL, whose step costs about 13 IQL steps)
            "extend_to": {"bc": 5000, "iql": 5000, "cql": 1000},
            "validation_episodes": 20,
            "range_episodes": 2,
            "variant_scenarios": ["startup", "grade_up"],
            "variant_seeds": list(range(5)),
            # at a checkpoint of the curves, so the default variant's runs are theirs
            "variant_steps": 1000,
        },
        "05_results": {
            **PAPER_CORRECTION,
            "bc_steps": 5000,
            "iql_steps": 5000,
            "cql_steps": 500,
            "test_episodes": 50,
            "nmpc_episodes": 50,
        },
        "06_ablations": {
            # three seeds at a checkpoint of the curves (their runs reused), and the results
            # pages' ensemble of three cost models: the ablations ask which parts matter, not
            # how well each method scores
            "seeds": [0, 1, 2],
            "agent_steps": 2500,
            "cost_steps": 10_000,
            "ensemble_seeds": [0, 1, 2],
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
            **PAPER_CORRECTION,
            "agent_steps": {"bc": 5000, "iql": 5000, "cql": 500},
            "test_episodes": 50,
        },
    },
}


#: Profiles whose results pages train at the budgets the learning curves justify
#: (:func:`curve_budgets`); the others use their fixed ``<algo>_steps``.
BUDGETS_FROM_CURVES: dict[str, bool] = {"quick": True, "paper": True}


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
    from polycstr_lib.book.provenance import notebook_parameters

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    path = NOTEBOOK_DIR / f"{notebook}.ipynb"
    if not path.is_file():
        raise ValueError(f"no notebook {notebook!r} in {NOTEBOOK_DIR}")
    defaults = {row["name"]: row["default"] for row in notebook_parameters(path)}
    return {**defaults, **PROFILES[profile].get(notebook, {}), "profile": profile}
