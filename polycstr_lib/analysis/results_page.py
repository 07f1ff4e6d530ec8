"""Evaluate every method of a results page on the same test episodes, oracle included.

:func:`evaluate_methods` scores the data, PI (one mid-range tuning), every agent, its "+"
version (the correction deployed for its algorithm on validation,
:mod:`polycstr_lib.correction.deployment`) and its zero-tuning version (the correction fixed
before any rollout, :data:`~polycstr_lib.correction.variants.ZERO_TUNING`) over all training
seeds on the scenario's test episodes; :func:`add_oracle` adds the two references, the NMPC
oracle and holding the initial inputs (on the same test episodes, env seed for env seed), the
optimality score of every episode and the page's :class:`~polycstr_lib.reactor.metrics.ScoreScale`,
and returns the numbers the page glues under stable names (:func:`correction_glue` and
:func:`header_glue` name the others).

Rows and glue prefixes: ``BC`` and ``BC+`` are glued as ``BC_<stat>`` and ``BC+_<stat>``; the
zero-tuning row ``BC+ (no tuning)`` (:func:`zero_tuning_row`) as ``BC+0_<stat>``
(:func:`glue_prefix`: a row name with a space and brackets is no glue key; ``+0`` reads "+
with zero tuning"); the oracle as ``NMPC_<stat>``; holding the inputs as ``HOLD_<stat>``.
The oracle and holding the inputs are deterministic, one run each: their interval is over
episodes (:func:`~polycstr_lib.analysis.results.results_table`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from polycstr_lib.analysis.results import results_glue, results_table
from polycstr_lib.correction.deployment import (
    TAIL_FRACTION,
    Deployment,
    deployed_policy,
    zero_tuning_policy,
)
from polycstr_lib.correction.sweep import SCORE_PREFIX, episode_scores
from polycstr_lib.correction.task import ScenarioTask
from polycstr_lib.correction.variants import ZERO_TUNING
from polycstr_lib.reactor.datasets import RUNAWAY_TEMPERATURE, eval_seeds
from polycstr_lib.reactor.metrics import (
    ScoreScale,
    add_optimality,
    episode_metrics,
    evaluate_policy,
    optimality_references,
    scale_from_references,
)
from polycstr_lib.reactor.nmpc import NMPCConfig, NMPCRun, hold_policy, run_nmpc
from polycstr_lib.reactor.pi import GainRanges, PIController
from polycstr_lib.reactor.scenarios import get_scenario

__all__ = [
    "HOLD",
    "ORACLE",
    "ZERO_TUNING_SUFFIX",
    "ResultsRuns",
    "add_oracle",
    "correction_glue",
    "deployment_table",
    "evaluate_methods",
    "glue_prefix",
    "header_glue",
    "seeds_glue",
    "sweep_from_glue",
    "sweep_glue",
    "tolerance_text",
    "zero_tuning_row",
]

#: Row name of the NMPC oracle in the results table (glued under the prefix ``NMPC``).
ORACLE = "NMPC (oracle)"
#: Row name of holding the initial inputs (a = 0 every step; glued under the prefix ``HOLD``).
HOLD = "hold inputs"
#: Tail of the zero-tuning rows' names: ``"BC+ (no tuning)"``.
ZERO_TUNING_SUFFIX = "+ (no tuning)"


def zero_tuning_row(algorithm: str) -> str:
    """The results table's row of an algorithm's zero-tuning correction: ``'BC+ (no tuning)'``."""
    return f"{algorithm.upper()}{ZERO_TUNING_SUFFIX}"


def glue_prefix(method: str) -> str:
    """The prefix of a row's glued values: ``'NMPC'`` for the oracle, ``'HOLD'`` for holding
    the inputs, ``'BC+0'`` for ``'BC+ (no tuning)'``, else the row's name (``'BC'``, ``'BC+'``,
    ``'PI'``, …)."""
    if method == ORACLE:
        return "NMPC"
    if method == HOLD:
        return "HOLD"
    if method.endswith(ZERO_TUNING_SUFFIX):
        return f"{method.removesuffix(ZERO_TUNING_SUFFIX)}+0"
    return method


@dataclass(frozen=True, eq=False)
class ResultsRuns:
    """Every method's runs of a results page."""

    per_seed: dict[str, dict[int, pd.DataFrame]]  # method → seed → per-episode metrics
    trajectories: dict[str, Any]  # method → test trajectories (the first seed's)
    table: pd.DataFrame | None = None  # results_table of per_seed (after add_oracle)
    glue: dict[str, Any] | None = None  # name → value of every number the page glues
    scale: ScoreScale | None = None  # hold-to-oracle scale on the oracle's test episodes


def evaluate_methods(
    task: ScenarioTask,
    agents: Mapping[tuple[str, int], Any],
    cost_models: Mapping[str, nn.Module],
    deployments: Mapping[str, Deployment],
    algorithms: Sequence[str],
    seeds: Sequence[int],
    episodes: int,
    zero_tuning: bool = True,
) -> ResultsRuns:
    """Data, PI, every agent, its "+" and its zero-tuning version on the same test episodes.

    Args:
        task: the scenario's task (its data trajectories score the *Data* row; its σ_a scales
            the corrections).
        agents: ``(algorithm, seed) → agent``.
        cost_models: model key → cost model of the corrections.
        deployments: algorithm → the correction deployed on validation
            (:func:`~polycstr_lib.correction.deployment.deploy_from_sweep`). Where it is η = 0
            the "+" row is the base row itself, bit for bit (the same runs, not rerun).
        algorithms: algorithms in the table's order (``NAME``, ``NAME+``, then
            ``NAME+ (no tuning)``).
        seeds: training seeds; an algorithm is run at those of its seeds that ``agents``
            holds (an algorithm may have fewer, :func:`~polycstr_lib.agents.sweeps.seeds_of`),
            and its first seed's trajectories are kept for the figures.
        episodes: test episodes per method and seed.
        zero_tuning: add the rows of :data:`~polycstr_lib.correction.variants.ZERO_TUNING`.

    Returns:
        :class:`ResultsRuns` with ``per_seed`` (Data and PI under seed 0) and
        ``trajectories`` (every agent and its "+" version, PI last; the zero-tuning rows,
        which are in ``per_seed``, are left out of the trajectory figure).

    Raises:
        KeyError: an algorithm without a deployment.
        ValueError: an algorithm with no agent at any of ``seeds``.
    """
    bounds = task.return_bounds
    per_seed: dict[str, dict[int, pd.DataFrame]] = {}
    trajs: dict[str, Any] = {}
    per_seed["Data"] = {0: episode_metrics(task.trajectories, *bounds)}
    pi_metrics, pi_traj = evaluate_policy(
        PIController(GainRanges().nominal()), task.scenario, episodes, *bounds
    )
    per_seed["PI"] = {0: pi_metrics}
    for algo in algorithms:
        deployment = deployments[algo]
        base, plus, fixed = algo.upper(), f"{algo.upper()}+", zero_tuning_row(algo)
        per_seed[base], per_seed[plus] = {}, {}
        if zero_tuning:
            per_seed[fixed] = {}
        own = [seed for seed in seeds if (algo, seed) in agents]
        if not own:
            raise ValueError(f"no {algo} agent at any of the seeds {list(seeds)}")
        for seed in own:
            agent = agents[algo, seed]
            policies = {base: agent}
            if deployment.corrected:
                policies[plus] = deployed_policy(agent, cost_models, deployment, task.action_scale)
            if zero_tuning:
                policies[fixed] = zero_tuning_policy(agent, cost_models, task)
            for name, policy in policies.items():
                metrics, traj = evaluate_policy(policy.act, task.scenario, episodes, *bounds)
                per_seed[name][seed] = metrics
                if seed == own[0] and name != fixed:
                    trajs[name] = traj
            if not deployment.corrected:  # η = 0: the base's own runs, bit for bit
                per_seed[plus][seed] = per_seed[base][seed].copy()
                if seed == own[0]:
                    trajs[plus] = trajs[base]
    trajs["PI"] = pi_traj
    return ResultsRuns(per_seed, trajs)


def add_oracle(
    runs: ResultsRuns, task: ScenarioTask, test_episodes: int, nmpc_episodes: int, horizon: int
) -> ResultsRuns:
    """The runs with the two references, the NMPC oracle and holding the initial inputs (the
    first two rows), and every episode's optimality score.

    The oracle runs on the first ``nmpc_episodes`` test episodes, holding the inputs on all
    ``test_episodes`` (the agents' env seeds); both are single deterministic runs whose
    interval is over episodes. The table, every number the page glues about it and the
    page's score scale (hold and oracle on the oracle's episodes) come with the result
    (``table``, ``glue``, ``scale``). Beyond :func:`results_glue`'s ``NMPC_<stat>`` and
    ``HOLD_<stat>``, the glue has ``scale_hold``, ``scale_oracle`` and ``scale_range`` (data-
    range points on the oracle's episodes) and ``scale_episodes``.

    Raises:
        ValueError: ``runs`` already has a row named :data:`ORACLE` or :data:`HOLD`.
    """
    clash = sorted({ORACLE, HOLD} & set(runs.per_seed))
    if clash:
        raise ValueError(f"the runs already have the reference row(s) {clash}")
    oracle, stats = run_nmpc(
        NMPCRun(task.scenario, nmpc_episodes, nmpc=NMPCConfig(horizon=horizon))
    )
    references = optimality_references(oracle)
    scale = scale_from_references(references, task.scenario, *task.return_bounds)
    test_seeds = eval_seeds(test_episodes)
    hold_metrics, _ = evaluate_policy(
        hold_policy, task.scenario, test_episodes, *task.return_bounds
    )
    per_seed = {
        name: {
            seed: add_optimality(
                m, task.trajectories.seeds if name == "Data" else test_seeds, references
            )
            for seed, m in seeds.items()
        }
        for name, seeds in runs.per_seed.items()
    }
    oracle_metrics = episode_metrics(oracle, *task.return_bounds)
    per_seed = {
        ORACLE: {0: add_optimality(oracle_metrics, oracle.seeds, references)},
        HOLD: {0: add_optimality(hold_metrics, test_seeds, references)},
        **per_seed,
    }
    trajs = {**runs.trajectories, ORACLE: oracle}
    table = results_table(per_seed, over_episodes=(ORACLE, HOLD))
    glue = dict(results_glue(per_seed, table, {m: glue_prefix(m) for m in per_seed}))
    glue.update(
        scale_hold=scale.hold,
        scale_oracle=scale.oracle,
        scale_range=scale.range,
        scale_episodes=len(scale.seeds),
    )
    solve = stats["solve_seconds"]
    glue.update(
        PI_mean_oracle_episodes=float(
            per_seed["PI"][0]["normalised_reward"].iloc[:nmpc_episodes].mean()
        ),
        nmpc_episodes_run=oracle.num_episodes,
        nmpc_horizon=horizon,
        nmpc_median_ms=1e3 * float(np.median(solve)),
        nmpc_p95_ms=1e3 * float(np.percentile(solve, 95)),
        nmpc_failures=int(stats["failures"]),
    )
    return ResultsRuns(per_seed, trajs, table, glue, scale)


def correction_glue(
    deployments: Mapping[str, Deployment],
    candidates: Sequence[str],
    steps: int,
    validation_episodes: int,
    sweep: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """The glued numbers about a results page's corrections, by name.

    Per algorithm (``bc`` …): ``deploy_bc`` (what its "+" row deploys, in words:
    ``'normalised, step size 0.3'``, ``'no correction'`` or ``'no correction: none
    admissible'``), ``deploy_bc_step`` (``'0'`` for none), ``deploy_bc_reason``,
    ``deploy_bc_admissible`` (admissible settings, η = 0 included) of
    ``deploy_bc_candidates``, ``deploy_bc_runaways`` of ``deploy_bc_episodes`` validation
    episodes and ``deploy_bc_bound`` (the 95 % upper bound on its runaway rate). Then
    ``correction_candidates``, ``correction_k``, ``n_validation``, ``n_fallback``
    (algorithms with none admissible), ``deploy_tail`` (``'10 %'``), ``deploy_margin`` (the
    tail test's margin in points, two significant digits, ``'2.5'``), ``deploy_tolerance``
    (the margin in words: ``'1 % of the hold-to-oracle range on validation (2.5 points)'``,
    or ``'1 point'`` without a scale), ``deploy_range`` (that range in points; absent
    without) and ``zero_tuning`` (the fixed setting in words).
    With the validation ``sweep``, also ``correction_sweep`` (:func:`sweep_glue`), from which
    the claims page reruns the choice on half of the seeds.
    """
    values: dict[str, Any] = {}
    for algo, d in deployments.items():
        key = f"deploy_{algo}"
        values[key] = d.text()
        values[f"{key}_step"] = d.step_text()
        values[f"{key}_reason"] = d.reason
        values[f"{key}_admissible"] = d.admissible
        values[f"{key}_candidates"] = d.candidates
        values[f"{key}_runaways"] = d.runaways
        values[f"{key}_episodes"] = d.episodes
        values[f"{key}_bound"] = float(d.runaway_bound)
    values.update(
        correction_candidates=", ".join(candidates),
        correction_k=steps,
        n_validation=validation_episodes,
        n_fallback=sum(d.fallback for d in deployments.values()),
        deploy_tail=f"{100 * TAIL_FRACTION:g} %",
        deploy_margin=", ".join(dict.fromkeys(f"{d.margin:.2g}" for d in deployments.values())),
        deploy_tolerance="; ".join(dict.fromkeys(tolerance_text(d) for d in deployments.values())),
        zero_tuning=ZERO_TUNING.text(),
    )
    ranges = [d.score_range for d in deployments.values() if d.score_range]
    if ranges:
        values["deploy_range"] = float(ranges[0])
    if sweep is not None:
        margins = {float(d.margin) for d in deployments.values()}
        values["correction_sweep"] = sweep_glue(
            sweep, candidates, steps, margins.pop(), ranges[0] if ranges else None
        )
    return values


def sweep_glue(
    sweep: pd.DataFrame,
    variants: Sequence[str],
    steps: int,
    margin: float,
    score_range: float | None = None,
) -> dict[str, Any]:
    """A validation sweep as plain values: what the deployment rule needs to run again.

    Returns:
        ``variants`` (names), ``steps`` (K), ``margin`` (points), ``score_range`` (the
        hold-to-oracle range the tie tolerance is a share of; None without a scale) and
        ``rows``: per run ``[algorithm, seed, variant, step_size, runaways, [score per
        episode]]``.
    """
    scores = episode_scores(sweep)
    rows = [
        [str(r.algorithm), int(r.seed), str(r.variant), float(r.step_size), int(r.runaways),
         [float(x) for x in scores[i]]]
        for i, r in enumerate(sweep.itertuples(index=False))
    ]  # fmt: skip
    return {
        "variants": list(variants),
        "steps": int(steps),
        "margin": margin,
        "score_range": score_range,
        "rows": rows,
    }


def sweep_from_glue(values: Mapping[str, Any]) -> pd.DataFrame:
    """The sweep of :func:`sweep_glue` as a table :func:`deploy_from_sweep` reads.

    Returns:
        Columns ``algorithm``, ``seed``, ``variant``, ``step_size``, ``mean``, ``runaways``,
        ``episodes`` and ``score_0`` … (one per episode).
    """
    table = []
    for algorithm, seed, variant, step, runaways, scores in values["rows"]:
        row = {
            "algorithm": algorithm,
            "seed": seed,
            "variant": variant,
            "step_size": step,
            "mean": float(np.mean(scores)),
            "runaways": runaways,
            "episodes": len(scores),
        }
        row.update({f"{SCORE_PREFIX}{e}": float(x) for e, x in enumerate(scores)})
        table.append(row)
    return pd.DataFrame(table)


def tolerance_text(deployment: Deployment) -> str:
    """The tail test's margin in words: ``'1 % of the hold-to-oracle range on validation
    (2.5 points)'``, or ``'1 point'`` for a deployment without a scale."""
    points = f"{deployment.margin:.2g} point{'s' if deployment.margin != 1 else ''}"
    if not deployment.score_range:
        return points
    share = 100 * deployment.margin / abs(deployment.score_range)
    return f"{share:.2g} % of the hold-to-oracle range on validation ({points})"


def deployment_table(deployments: Mapping[str, Deployment]) -> pd.DataFrame:
    """What each "+" row deploys, as the results pages show it: one row per "+" row.

    Returns:
        Indexed by row (``'BC+'`` …), with headers for readers: ``Correction deployed``
        (:meth:`Deployment.text`), ``Admissible settings`` (``'k of n'``, η = 0 included),
        ``Validation runaways`` (``'k of n'`` episodes), ``Runaway rate at most`` (the
        bound at the deployments' confidence, e.g. ``'0.139 (95 %)'``) and ``Why``.
    """
    rows = {
        f"{algo.upper()}+": {
            "Correction deployed": d.text(),
            "Admissible settings": f"{d.admissible} of {d.candidates}",
            "Validation runaways": f"{d.runaways} of {d.episodes}",
            "Runaway rate at most": f"{d.runaway_bound:.3f} ({100 * d.confidence:g} %)",
            "Why": d.reason,
        }
        for algo, d in deployments.items()
    }
    return pd.DataFrame.from_dict(rows, orient="index")


def header_glue(
    scenario: str, budgets: Mapping[str, int], sources: Mapping[str, str]
) -> dict[str, Any]:
    """The glued numbers of a results page's introduction: title, budgets and their sources."""
    values: dict[str, Any] = {"scenario_title": get_scenario(scenario).description}
    for algo, steps in budgets.items():
        values[f"steps_{algo}"] = f"{steps:,}"
        values[f"steps_source_{algo}"] = sources[algo]
    values["budgets"] = {str(algo): int(steps) for algo, steps in budgets.items()}
    values["runaway_temperature"] = f"{RUNAWAY_TEMPERATURE:.0f}"
    return values


def seeds_glue(
    algorithms: Sequence[str], seeds: Sequence[int], algorithm_seeds: Mapping[str, int]
) -> dict[str, Any]:
    """How many training seeds each agent has, for a page's prose.

    Returns:
        ``n_seeds`` (the page's seeds), ``n_seeds_<algo>`` per algorithm (its own count,
        :func:`~polycstr_lib.agents.sweeps.seeds_of`) and ``seeds_note``: one sentence, that
        every agent has every seed, or which algorithms train only the first N of them and
        why (CQL's cost).
    """
    from polycstr_lib.agents.sweeps import seeds_of

    n = len(seeds)
    own = {a: len(seeds_of(a, seeds, algorithm_seeds)) for a in algorithms}
    values: dict[str, Any] = {"n_seeds": n, **{f"n_seeds_{a}": k for a, k in own.items()}}
    fewer = {a: k for a, k in own.items() if k < n}
    if not fewer:
        values["seeds_note"] = (
            "Every agent has this one training seed." if n == 1
            else f"Every agent has all {n} training seeds."
        )  # fmt: skip
        return values
    names = " and ".join(a.upper() for a in fewer)
    counts = ", ".join(f"{a.upper()} the first {k}" for a, k in fewer.items())
    why = (
        "a CQL gradient step costs far more than a BC or IQL step (its critics score sampled "
        "actions at every step), and every seed on every scenario would not fit the build's time"
        if "cql" in fewer
        else "to fit the build's time"
    )
    if len(fewer) == 1:
        (k,) = fewer.values()
        trains = f"{names} trains only the first {k} of the {n} seeds, and its rows are"
    else:
        trains = f"{names} train fewer of the {n} seeds ({counts}), and their rows are"
    values["seeds_note"] = (
        f"{trains} across those seeds only: {why}; the other agents have all of them."
    )
    return values
