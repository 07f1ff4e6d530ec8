"""Evaluate every method of a results page on the same test episodes, oracle included.

:func:`evaluate_methods` scores the data, PI (one mid-range tuning), every agent and its
corrected "+" version over all training seeds on the scenario's test episodes;
:func:`add_oracle` adds the NMPC oracle and the optimality score of every episode, and
returns the numbers the page glues under stable names (:func:`correction_glue` and
:func:`header_glue` name the others).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from polycstr_lib.analysis.results import results_glue, results_table
from polycstr_lib.correction.task import ScenarioTask
from polycstr_lib.correction.tuning import CorrectionChoice, corrected_policy
from polycstr_lib.reactor.datasets import RUNAWAY_TEMPERATURE, eval_seeds
from polycstr_lib.reactor.metrics import (
    add_optimality,
    episode_metrics,
    evaluate_policy,
    optimality_references,
)
from polycstr_lib.reactor.nmpc import NMPCConfig, NMPCRun, run_nmpc
from polycstr_lib.reactor.pi import GainRanges, PIController
from polycstr_lib.reactor.scenarios import get_scenario

__all__ = [
    "ORACLE",
    "ResultsRuns",
    "add_oracle",
    "correction_glue",
    "evaluate_methods",
    "header_glue",
]

#: Row name of the NMPC oracle in the results table (glued under the prefix ``NMPC``).
ORACLE = "NMPC (oracle)"


@dataclass(frozen=True, eq=False)
class ResultsRuns:
    """Every method's runs of a results page."""

    per_seed: dict[str, dict[int, pd.DataFrame]]  # method → seed → per-episode metrics
    trajectories: dict[str, Any]  # method → test trajectories (the first seed's)
    table: pd.DataFrame | None = None  # results_table of per_seed (after add_oracle)
    glue: dict[str, Any] | None = None  # name → value of every number the page glues


def evaluate_methods(
    task: ScenarioTask,
    agents: Mapping[tuple[str, int], Any],
    cost_models: Mapping[str, nn.Module],
    choice: CorrectionChoice,
    algorithms: Sequence[str],
    seeds: Sequence[int],
    episodes: int,
) -> ResultsRuns:
    """Data, PI, every agent and its "+" version on the same ``episodes`` test episodes.

    Args:
        task: the scenario's task (its data trajectories score the *Data* row).
        agents: ``(algorithm, seed) → agent``.
        cost_models: model key → cost model of the correction.
        choice: the correction chosen on validation (:func:`choose_correction`).
        algorithms: algorithms in the table's order (``NAME`` then ``NAME+``).
        seeds: training seeds; the first seed's trajectories are kept for the figures.
        episodes: test episodes per method and seed.

    Returns:
        :class:`ResultsRuns` with ``per_seed`` (Data and PI under seed 0) and
        ``trajectories`` (every method, PI last).
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
        for plus in (False, True):
            name = algo.upper() + ("+" if plus else "")
            per_seed[name] = {}
            for seed in seeds:
                agent = agents[algo, seed]
                policy = corrected_policy(agent, cost_models, choice).act if plus else agent.act
                metrics, traj = evaluate_policy(policy, task.scenario, episodes, *bounds)
                per_seed[name][seed] = metrics
                if seed == seeds[0]:
                    trajs[name] = traj
    trajs["PI"] = pi_traj
    return ResultsRuns(per_seed, trajs)


def add_oracle(
    runs: ResultsRuns, task: ScenarioTask, test_episodes: int, nmpc_episodes: int, horizon: int
) -> ResultsRuns:
    """The runs with the NMPC oracle (first row) and every episode's optimality score.

    The oracle runs on the first ``nmpc_episodes`` test episodes; the table, and every number
    the page glues about it, come with the result (``table``, ``glue``).
    """
    oracle, stats = run_nmpc(
        NMPCRun(task.scenario, nmpc_episodes, nmpc=NMPCConfig(horizon=horizon))
    )
    references = optimality_references(oracle)
    test_seeds = eval_seeds(test_episodes)
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
    per_seed = {ORACLE: {0: add_optimality(oracle_metrics, oracle.seeds, references)}, **per_seed}
    trajs = {**runs.trajectories, ORACLE: oracle}
    table = results_table(per_seed)
    glue = dict(results_glue(per_seed, table, {ORACLE: "NMPC"}))
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
    return ResultsRuns(per_seed, trajs, table, glue)


def correction_glue(
    choice: CorrectionChoice, candidates: Sequence[str], steps: int, validation_episodes: int
) -> dict[str, Any]:
    """The glued numbers about a results page's chosen correction, by name."""
    return {
        "correction_variant": choice.variant,
        "correction_step": choice.step_text(),
        "correction_safe": choice.safe_text(),
        "correction_candidates": ", ".join(candidates),
        "correction_k": steps,
        "n_validation": validation_episodes,
    }


def header_glue(
    scenario: str, budgets: Mapping[str, int], sources: Mapping[str, str]
) -> dict[str, Any]:
    """The glued numbers of a results page's introduction: title, budgets and their sources."""
    values: dict[str, Any] = {"scenario_title": get_scenario(scenario).description}
    for algo, steps in budgets.items():
        values[f"steps_{algo}"] = f"{steps:,}"
        values[f"steps_source_{algo}"] = sources[algo]
    values["runaway_temperature"] = f"{RUNAWAY_TEMPERATURE:.0f}"
    return values
