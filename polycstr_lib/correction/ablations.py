"""Ablations of the safety layer: which correction settings buy how much reward for how much time.

The ablation page runs in the scale-free parametrisation of :mod:`polycstr_lib.correction.safety`
and
makes every choice on *validation* episodes, over a seed ensemble of base agents:

1. :func:`run_ablations`, stage one (one batched validation rollout,
   :func:`~polycstr_lib.correction.sweep.sweep_corrections`): the cost-model sweep (normalised
   steps of η data spreads σ_a on the one-step PICNN, the NN, the cost-to-go PICNN and the
   pessimistic PICNN ensemble, η over a grid) and the Newton sweep (α over a grid).
   Every variant's step size and the overall variant are chosen by
   :func:`~polycstr_lib.correction.tuning.choose_from_sweep`.
2. Stage two (a second batched rollout) varies the chosen variant at its chosen step size:
   the number of steps K, and a trust region of ρ data spreads around the policy's action.
3. :func:`test_chosen` runs the base and the setting each sweep prefers once on *test*
   episodes.

:func:`variant_latency` times a variant on single actions (the reward–time plot). Everything
is a pure function of its arguments (latency aside, which is a measurement of this machine).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from polycstr_lib.correction.safety import correct_actions
from polycstr_lib.correction.sweep import summarise_runs, sweep_corrections
from polycstr_lib.correction.task import CorrectionSetup, ScenarioTask
from polycstr_lib.correction.tuning import choose_from_sweep
from polycstr_lib.correction.variants import CorrectionVariant

__all__ = [
    "COST_MODEL_LABELS",
    "NEWTON_VARIANT",
    "AblationGrid",
    "AblationResult",
    "ablation_cost_models",
    "expectile_sweep",
    "latency_columns",
    "pareto_front",
    "run_ablations",
    "stage_one_variants",
    "test_chosen",
    "variant_latency",
]


def _median_correction_ms(
    cost_model: nn.Module, obs: np.ndarray, act: np.ndarray, kwargs: dict, repeats: int
) -> float:
    """Median time (ms) of one ``correct_actions`` call on a single action, after a warm-up;
    the calls cycle through the rows of ``obs``/``act``."""
    correct_actions(cost_model, obs[0], act[0], **kwargs)  # warm-up
    times = []
    for i in range(repeats):
        j = i % len(obs)
        start = time.perf_counter()
        correct_actions(cost_model, obs[j], act[j], **kwargs)
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def pareto_front(cost: Any, value: Any) -> np.ndarray:
    """Indices of the points not dominated in (lower ``cost``, higher ``value``), by cost.

    Args:
        cost: ``(N,)`` costs (e.g. latency).
        value: ``(N,)`` values (e.g. mean reward); NaNs are never on the front.

    Returns:
        Sorted-by-cost integer indices of the front.
    """
    cost = np.asarray(cost, dtype=float)
    value = np.asarray(value, dtype=float)
    if cost.shape != value.shape or cost.ndim != 1:
        raise ValueError("cost and value must be 1-D arrays of the same length")
    order = np.lexsort((-value, cost))
    front, best = [], -np.inf
    for i in order:
        if np.isfinite(value[i]) and np.isfinite(cost[i]) and value[i] > best:
            front.append(int(i))
            best = value[i]
    return np.asarray(front, dtype=int)


#: Cost-model key → label of the cost-model sweep's variant (normalised steps on each model).
#: Name of the Newton variant of stage one (Newton steps on the one-step PICNN).
NEWTON_VARIANT = "Newton, PICNN one-step"

COST_MODEL_LABELS: dict[str, str] = {
    "picnn": "PICNN one-step",
    "mlp": "NN one-step",
    "picnn_ctg": "PICNN cost-to-go",
    "ensemble": "PICNN ensemble",
}


def stage_one_variants(
    models: Sequence[str],
    steps: int = 3,
    step_sizes: Sequence[float] = (0.1, 0.3, 1.0),
    newton_step_sizes: Sequence[float] = (0.3, 1.0),
    pessimism: float = 0.5,
) -> tuple[dict[str, CorrectionVariant], dict[str, tuple[float, ...]], dict[str, str]]:
    """The first-stage variants: one normalised variant per cost model, and Newton.

    Args:
        models: cost-model keys, among :data:`COST_MODEL_LABELS`; ``"ensemble"`` descends the
            pessimistic cost of a :class:`~polycstr_lib.correction.cost_models.CostEnsemble` with κ
            =
            ``pessimism``. Newton runs on ``"picnn"`` (which must be listed).
        steps: K of every first-stage variant.
        step_sizes: η grid of the normalised steps, in data spreads σ_a.
        newton_step_sizes: α grid of the Newton steps (dimensionless); empty: no Newton sweep.
        pessimism: κ of the ensemble variant.

    Returns:
        ``(variants, grids, sweep_of)``: name → variant, name → step-size grid, name → sweep
        label (``"cost model"`` or ``"Newton"``).

    Raises:
        ValueError: an unknown model key, no models, or Newton without ``"picnn"``.
    """
    unknown = sorted(set(models) - set(COST_MODEL_LABELS))
    if unknown or not models:
        raise ValueError(f"models must be among {sorted(COST_MODEL_LABELS)}, got {list(models)}")
    variants: dict[str, CorrectionVariant] = {}
    grids: dict[str, tuple[float, ...]] = {}
    sweep_of: dict[str, str] = {}
    for key in models:
        name = COST_MODEL_LABELS[key]
        variants[name] = CorrectionVariant(
            "normalised", model=key, steps=steps, pessimism=pessimism if key == "ensemble" else 0.0
        )
        grids[name] = tuple(float(x) for x in step_sizes)
        sweep_of[name] = "cost model"
    if len(newton_step_sizes):
        if "picnn" not in models:
            raise ValueError("the Newton sweep runs on 'picnn', which is not among the models")
        variants[NEWTON_VARIANT] = CorrectionVariant("newton", model="picnn", steps=steps)
        grids[NEWTON_VARIANT] = tuple(float(x) for x in newton_step_sizes)
        sweep_of[NEWTON_VARIANT] = "Newton"
    return variants, grids, sweep_of


@dataclass
class AblationResult:
    """What :func:`run_ablations` measured and chose (all on validation episodes)."""

    sweep: pd.DataFrame  # every run: sweep_corrections rows of both stages + a 'sweep' column
    summary: pd.DataFrame  # per (sweep, variant, step size): IQM over seeds, worst, runaways
    chosen: pd.DataFrame  # per sweep (index): the preferred variant, step_size, iqm, safe
    per_variant: pd.DataFrame  # first stage: choose_from_sweep's table (chosen η per variant)
    variants: dict[str, CorrectionVariant]  # every variant of both stages, by name
    overall: str  # the first-stage variant that stage two varies


@dataclass(frozen=True)
class AblationGrid:
    """What the ablation page sweeps on validation episodes, and how it chooses."""

    steps: int = 3  # K of the first stage
    step_sizes: tuple[float, ...] = (0.1, 0.3, 1.0)  # η of the normalised steps (data spreads)
    newton_step_sizes: tuple[float, ...] = (0.3, 1.0)  # α of Newton (empty: no Newton sweep)
    steps_grid: tuple[int, ...] = (1, 3, 10)  # K of the second stage (empty: no K sweep)
    trust_radii: tuple[float, ...] = (0.3, 1.0, 3.0)  # ρ of stage two in data spreads
    pessimism: float = 0.5  # κ of the ensemble's pessimistic cost
    tol: float = 1.0  # points a run may lose against its base and still count as not worse
    tie_tol: float = 0.5  # IQM ties

    def __post_init__(self) -> None:
        if any(int(k) < 1 for k in self.steps_grid) or any(not r > 0 for r in self.trust_radii):
            raise ValueError("steps_grid must hold K >= 1 and trust_radii positive radii")


def _choose_within(sweep: pd.DataFrame, names: Sequence[str], tie_tol: float) -> dict[str, Any]:
    part = sweep[sweep["variant"].isin(["none", *names])]
    choice, _ = choose_from_sweep(part, tie_tol)
    return choice


def run_ablations(
    setup: CorrectionSetup,
    episodes: int,
    grid: AblationGrid | None = None,
    cache: bool = True,
    cache_dir: Any = None,
) -> AblationResult:
    """The ablation sweeps on *validation* episodes, and the setting each sweep prefers.

    Stage one sweeps η (normalised steps, data spreads) for every cost model in
    ``cost_models`` among :data:`COST_MODEL_LABELS` and α for Newton on the one-step PICNN
    (:func:`stage_one_variants`); stage two varies the overall first-stage choice at its
    chosen step size: K over ``steps_grid`` (sweep ``"K"``) and a trust region of ρ data
    spreads over ``trust_radii`` (sweep ``"trust radius"``). The preferred setting of a sweep
    is :func:`~polycstr_lib.correction.tuning.choose_from_sweep`'s choice among its variants
    (safe first, largest IQM over the runs, ties → the smaller step / earlier variant).

    Args:
        setup: the base agents (``(algorithm, seed) → agent``, a seed ensemble), the cost
            models (``"ensemble"`` must be a ``CostEnsemble``) and the scenario's task (name,
            return bounds, σ_a).
        episodes: validation episodes per run and setting.
        grid: what the two stages sweep (:class:`AblationGrid`; default its defaults).
        cache: cache the sweeps (content-addressed, see ``sweep_corrections``).
        cache_dir: cache root; default the artifact directory.

    Returns:
        An :class:`AblationResult`.

    Raises:
        ValueError: inputs of ``sweep_corrections``.
    """
    grid = AblationGrid() if grid is None else grid
    steps, step_sizes, newton_step_sizes = grid.steps, grid.step_sizes, grid.newton_step_sizes
    steps_grid, trust_radii, pessimism = grid.steps_grid, grid.trust_radii, grid.pessimism
    tol, tie_tol = grid.tol, grid.tie_tol
    models = [k for k in COST_MODEL_LABELS if k in setup.cost_models]
    variants, grids, sweep_of = stage_one_variants(
        models, steps, step_sizes, newton_step_sizes, pessimism
    )
    common = dict(split="validation", tol=tol, cache=cache, cache_dir=cache_dir)
    first = sweep_corrections(setup, episodes, variants, grids, **common)
    choice, per_variant = choose_from_sweep(first, tie_tol)
    chosen = {
        label: _choose_within(first, [n for n, s in sweep_of.items() if s == label], tie_tol)
        for label in dict.fromkeys(sweep_of.values())
    }
    overall = choice["variant"]
    best, eta = variants[overall], choice["step_size"]
    second_variants: dict[str, CorrectionVariant] = {}
    second_sweep: dict[str, str] = {}
    for k in steps_grid:
        second_variants[f"K = {int(k)}"] = replace(best, steps=int(k))
        second_sweep[f"K = {int(k)}"] = "K"
    for rho in trust_radii:
        second_variants[f"ρ = {float(rho):g}"] = replace(best, trust_radius=float(rho))
        second_sweep[f"ρ = {float(rho):g}"] = "trust radius"
    tables = [first.assign(sweep=first["variant"].map(sweep_of).fillna("base"))]
    if second_variants:
        second = sweep_corrections(
            setup, episodes, second_variants, {n: (eta,) for n in second_variants}, **common
        )
        for label in dict.fromkeys(second_sweep.values()):
            names = [n for n, s in second_sweep.items() if s == label]
            chosen[label] = _choose_within(second, names, tie_tol)
        second = second[second["variant"] != "none"]
        tables.append(second.assign(sweep=second["variant"].map(second_sweep)))
    sweep = pd.concat(tables, ignore_index=True)
    summary = summarise_runs(sweep, by=("sweep", "variant", "step_size"))
    chosen_table = pd.DataFrame.from_dict(chosen, orient="index")
    chosen_table.index.name = "sweep"
    return AblationResult(
        sweep=sweep,
        summary=summary,
        chosen=chosen_table,
        per_variant=per_variant,
        variants={**variants, **second_variants},
        overall=overall,
    )


def test_chosen(
    setup: CorrectionSetup,
    result: AblationResult,
    episodes: int,
    tol: float = 1.0,
    cache: bool = True,
    cache_dir: Any = None,
) -> pd.DataFrame:
    """The base and every sweep's preferred setting, run once on *test* episodes.

    Returns:
        One row per (algorithm, sweep): ``sweep`` (``"base"`` for the uncorrected agent),
        ``variant``, ``step_size``, ``iqm`` (over seeds of the runs' mean normalised
        reward), ``worst`` (worst episode), ``runaways`` and ``runs``.
    """
    picks = {row["variant"]: float(row["step_size"]) for _, row in result.chosen.iterrows()}
    variants = {name: result.variants[name] for name in picks}
    test = sweep_corrections(
        setup, episodes, variants, {n: (eta,) for n, eta in picks.items()}, split="test",
        tol=tol, cache=cache, cache_dir=cache_dir,
    )  # fmt: skip
    summary = summarise_runs(test, by=("algorithm", "variant", "step_size"))
    rows = []
    for sweep_label, row in result.chosen.iterrows():
        part = summary[summary["variant"] == row["variant"]].assign(sweep=sweep_label)
        rows.append(part)
    base = summary[summary["variant"] == "none"].assign(sweep="base")
    out = pd.concat([base, *rows], ignore_index=True)
    columns = ["algorithm", "sweep", "variant", "step_size", "iqm", "worst", "runaways", "runs"]
    return out[columns]


test_chosen.__test__ = False  # not a pytest test despite its name


def variant_latency(
    cost_model: nn.Module,
    observations: Any,
    actions: Any,
    variant: CorrectionVariant,
    step_size: float,
    action_scale: Any,
    repeats: int = 30,
) -> float:
    """Median wall time of correcting *one* action with ``variant``, in milliseconds.

    The variant is a :class:`~polycstr_lib.correction.variants.CorrectionVariant` at
    ``step_size`` (trust region and pessimism included); after a warm-up call, ``repeats``
    single-action corrections cycle through the rows of ``observations`` and ``actions``.

    Raises:
        ValueError: observations and actions are not ``(N, d)`` arrays of the same N >= 1.
    """
    obs = np.asarray(observations, dtype=np.float32)
    act = np.asarray(actions, dtype=np.float32)
    if obs.ndim != 2 or act.ndim != 2 or len(obs) != len(act) or len(obs) == 0:
        raise ValueError("observations and actions must be (N, d) arrays with the same N >= 1")
    kwargs = variant.policy_kwargs(step_size, action_scale)
    with torch.no_grad():
        return _median_correction_ms(cost_model, obs, act, kwargs, repeats)


def ablation_cost_models(
    task: ScenarioTask, cost_steps: int, ensemble_seeds: Sequence[int]
) -> tuple[dict[str, nn.Module], dict[str, float]]:
    """The ablations' cost models and their held-out R².

    A PICNN ensemble on the one-step cost (its first member is the single PICNN), an NN of
    the same size and a PICNN on the discounted cost-to-go (cached).

    Returns:
        ``(models, r2)``: models by key (``picnn``, ``mlp``, ``picnn_ctg``, ``ensemble``) and
        the held-out R² of each, by the label the page's table shows.
    """
    from polycstr_lib.correction.cost_models import (
        CostModelConfig,
        train_cost_ensemble,
        train_cost_model,
    )

    first = ensemble_seeds[0]
    ensemble, ens_log = train_cost_ensemble(
        task.data, CostModelConfig(kind="picnn", steps=cost_steps),
        seeds=tuple(ensemble_seeds), progress=False,
    )  # fmt: skip
    mlp, mlp_log = train_cost_model(
        task.data, CostModelConfig(kind="mlp", steps=cost_steps, seed=first), progress=False
    )
    ctg_config = CostModelConfig(kind="picnn", steps=cost_steps, seed=first, target="cost_to_go")
    ctg, ctg_log = train_cost_model(task.data, ctg_config, progress=False)
    models = {"picnn": ensemble.member(0), "mlp": mlp, "picnn_ctg": ctg, "ensemble": ensemble}
    r2 = {
        "PICNN one-step": ens_log["heldout_r2"][0],
        "NN one-step": mlp_log["heldout_r2"],
        "PICNN cost-to-go": ctg_log["heldout_r2"],
        "PICNN ensemble (min)": min(ens_log["heldout_r2"]),
    }
    return models, r2


def latency_columns(
    result: AblationResult,
    cost_models: Mapping[str, nn.Module],
    task: ScenarioTask,
    agent: Any,
    seed: int,
    n_states: int = 64,
) -> pd.DataFrame:
    """``result.summary`` with each setting's correction time, K and ρ.

    The time (``latency_ms``, :func:`variant_latency`) is measured on ``n_states`` random
    states of the data (drawn with ``seed``) and ``agent``'s actions there, at the median step
    size of the variant's rows; the uncorrected rows take 0 ms, K = 0 and ρ = None.
    """
    rows = np.random.default_rng(seed).choice(
        len(task.data.observations), size=n_states, replace=False
    )
    observations = task.data.observations[rows].numpy()
    actions = agent.act(observations)
    summary = result.summary.copy()
    steps = summary.groupby("variant", sort=False)["step_size"].median()
    latency = {
        name: variant_latency(
            cost_models[v.model], observations, actions, v, float(steps[name]), task.action_scale
        )
        for name, v in result.variants.items()
    }
    latency["none"] = 0.0
    variants = result.variants
    summary["latency_ms"] = summary["variant"].map(latency)
    summary["K"] = summary["variant"].map(lambda n: variants[n].steps if n in variants else 0)
    summary["rho"] = summary["variant"].map(
        lambda n: variants[n].trust_radius if n in variants else None
    )
    return summary


def expectile_sweep(
    setup: CorrectionSetup,
    result: AblationResult,
    episodes: int,
    tol: float = 1.0,
) -> pd.DataFrame:
    """IQL at every expectile τ, uncorrected and with the preferred setting, on validation.

    Args:
        setup: as :func:`run_ablations`, its agents ``("τ = <τ>", seed) → agent``.
        tol: as :func:`run_ablations`.
        result: the ablations whose overall choice (variant, step size) corrects the agents.
        episodes: validation episodes per run.

    Returns:
        One row per (τ, method): ``algorithm``, ``variant``, ``iqm``, ``worst``, ``runaways``,
        ``not_worse``, ``runs`` (:func:`summarise_runs`), ``tau`` and ``method``
        (``'IQL'`` or ``'IQL+'``).
    """
    overall = result.overall
    step = float(result.per_variant.loc[overall, "step_size"])
    sweep = sweep_corrections(
        setup, episodes, {overall: result.variants[overall]}, {overall: (step,)},
        split="validation", tol=tol,
    )  # fmt: skip
    table = summarise_runs(sweep, by=("algorithm", "variant"))
    table["tau"] = table["algorithm"].str.removeprefix("τ = ").astype(float)
    table["method"] = np.where(table["variant"] == "none", "IQL", "IQL+")
    return table
