"""The correction a page uses: its variants, its cost models and the choice on validation.

The results pages (chapter 05) and the support chapter (08) build their correction variants
from :data:`~polycstr_lib.correction.variants.DEFAULT_VARIANTS` (only K, ρ and κ set by the
page's parameters) and train the cost models those variants name. The results pages deploy,
per algorithm, the setting of the deployment rule
(:func:`~polycstr_lib.correction.deployment.deploy_from_sweep`: no seed's tail made worse,
η = 0 the fallback); the support chapter compares the variants by the pooled rule of
:func:`~polycstr_lib.correction.tuning.choose_correction`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from torch import nn

from polycstr_lib.correction.cost_models import (
    CostModelConfig,
    train_cost_ensemble,
    train_cost_model,
)
from polycstr_lib.correction.deployment import Deployment, deploy_from_sweep
from polycstr_lib.correction.sweep import summarise_runs, sweep_corrections
from polycstr_lib.correction.task import CorrectionSetup, ScenarioTask
from polycstr_lib.correction.tuning import CorrectionChoice, choose_correction
from polycstr_lib.correction.variants import (
    DEFAULT_STEP_SIZES,
    DEFAULT_VARIANTS,
    CorrectionVariant,
)
from polycstr_lib.reactor.metrics import ScoreScale

__all__ = [
    "COST_TO_GO_VARIANT",
    "choose_per_scenario",
    "deploy_results_correction",
    "results_cost_models",
    "results_variants",
    "setups_by_scenario",
    "support_cost_models",
    "support_grids",
    "support_variants",
    "test_choices",
]

#: The normalised step on the cost-to-go PICNN (model key ``"picnn_ctg"``), chapter 08's fifth.
COST_TO_GO_VARIANT = "normalised, cost-to-go"


def results_variants(names: Sequence[str], steps: int) -> dict[str, CorrectionVariant]:
    """The named :data:`DEFAULT_VARIANTS`, each with K = ``steps``.

    Raises:
        ValueError: a name that is not a default variant.
    """
    unknown = [n for n in names if n not in DEFAULT_VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; known: {sorted(DEFAULT_VARIANTS)}")
    return {name: dataclasses.replace(DEFAULT_VARIANTS[name], steps=steps) for name in names}


def support_variants(
    steps: int, trust_radius: float, pessimism: float
) -> dict[str, CorrectionVariant]:
    """Chapter 08's variants: the four defaults with K, ρ and κ set, and the cost-to-go one."""
    variants = {
        "plain": dataclasses.replace(DEFAULT_VARIANTS["plain"], steps=steps),
        "normalised": dataclasses.replace(DEFAULT_VARIANTS["normalised"], steps=steps),
        "trust region": dataclasses.replace(
            DEFAULT_VARIANTS["trust region"], steps=steps, trust_radius=trust_radius
        ),
        "uncertainty": dataclasses.replace(
            DEFAULT_VARIANTS["uncertainty"], steps=steps, pessimism=pessimism
        ),
    }
    variants[COST_TO_GO_VARIANT] = dataclasses.replace(variants["normalised"], model="picnn_ctg")
    return variants


def results_cost_models(
    task: ScenarioTask, cost_steps: int, ensemble: bool
) -> tuple[dict[str, nn.Module], pd.DataFrame]:
    """The one-step PICNN (``"picnn"``) and, if asked, a 3-member ensemble (``"ensemble"``).

    Returns:
        ``(models, log)``: the models by key and the PICNN's training log.
    """
    config = CostModelConfig(kind="picnn", steps=cost_steps)
    model, log = train_cost_model(task.data, config, progress=False)
    models: dict[str, nn.Module] = {"picnn": model}
    if ensemble:  # its member 0 is the PICNN, bit for bit
        models["ensemble"] = train_cost_ensemble(
            task.data, config, seeds=(0, 1, 2), progress=False
        )[0]
    return models, log


def support_cost_models(
    task: ScenarioTask, cost_steps: int, ensemble_seeds: Sequence[int]
) -> tuple[dict[str, nn.Module], dict[str, float]]:
    """Chapter 08's models: an ensemble (member 0 as ``"picnn"``) and a cost-to-go PICNN.

    Returns:
        ``(models, r2)``: models by key (``picnn``, ``ensemble``, ``picnn_ctg``) and the held-out
        R² of the one-step PICNN, the ensemble's worst member and the cost-to-go PICNN.
    """
    base = CostModelConfig(kind="picnn", steps=cost_steps)
    ensemble, log = train_cost_ensemble(
        task.data, base, seeds=tuple(ensemble_seeds), progress=False
    )
    ctg_config = CostModelConfig(
        kind="picnn", steps=cost_steps, seed=ensemble_seeds[0], target="cost_to_go"
    )
    ctg, ctg_log = train_cost_model(task.data, ctg_config, progress=False)
    models = {"picnn": ensemble.member(0), "ensemble": ensemble, "picnn_ctg": ctg}
    r2 = {
        "one-step PICNN": log["heldout_r2"][0],
        "ensemble (min)": min(log["heldout_r2"]),
        "cost-to-go PICNN": ctg_log["heldout_r2"],
    }
    return models, r2


def deploy_results_correction(
    agents: Mapping[tuple[str, int], Any],
    task: ScenarioTask,
    variant_names: Sequence[str],
    correction_steps: int,
    cost_steps: int,
    validation_episodes: int,
    scale: ScoreScale | None = None,
    margin: float | None = None,
) -> tuple[dict[str, Deployment], dict[str, nn.Module], pd.DataFrame]:
    """A results page's correction: its cost models, the validation sweep, and per algorithm
    the setting the deployment rule of :mod:`polycstr_lib.correction.deployment` deploys.

    Args:
        agents: ``(algorithm, seed) → agent``, the base policies.
        task: the scenario's task.
        variant_names: names of :data:`DEFAULT_VARIANTS` to choose from (their default grids).
        correction_steps: K of every variant.
        cost_steps: optimiser steps of the PICNN (and its ensemble for ``"uncertainty"``).
        validation_episodes: validation episodes per agent and setting.
        scale: the scenario's hold-to-oracle scale on validation episodes
            (:func:`~polycstr_lib.reactor.metrics.score_scale`): the tail margin and the tie
            tolerance are shares of its range (1 % and 0.5 %); without it, fixed points.
        margin: points of normalised reward a seed's worst-10 % mean may lose; wins over
            the scale's (:func:`~polycstr_lib.correction.deployment.tail_margin`).

    Returns:
        ``(deployments, cost_models, sweep)``: algorithm → :class:`Deployment`, the models by
        key, and the validation sweep.
    """
    cost_models, _ = results_cost_models(task, cost_steps, "uncertainty" in variant_names)
    variants = results_variants(variant_names, correction_steps)
    grids = {name: DEFAULT_STEP_SIZES[name] for name in variant_names}
    setup = CorrectionSetup(agents, cost_models, task)
    sweep = sweep_corrections(setup, validation_episodes, variants, grids)
    if scale is not None and scale.scenario != task.scenario:
        raise ValueError(f"the score scale is {scale.scenario!r}'s, the task {task.scenario!r}'s")
    score_range = None if scale is None else scale.range
    deployments = deploy_from_sweep(
        sweep, variants, task.scenario, margin=margin, score_range=score_range
    )
    return deployments, cost_models, sweep


def support_grids(
    variants: Mapping[str, CorrectionVariant],
    raw_step_sizes: Sequence[float],
    normalised_step_sizes: Sequence[float],
) -> dict[str, Sequence[float]]:
    """Each variant's step-size grid: data spreads for normalised steps, else cost units."""
    return {
        name: normalised_step_sizes if v.method == "normalised" else raw_step_sizes
        for name, v in variants.items()
    }


def setups_by_scenario(
    agents: Mapping[str, Mapping[tuple[str, int], Any]],
    cost_models: Mapping[str, Mapping[str, nn.Module]],
    tasks: Mapping[str, ScenarioTask],
) -> dict[str, CorrectionSetup]:
    """Scenario → its :class:`CorrectionSetup`, in the order of ``tasks``."""
    return {s: CorrectionSetup(agents[s], cost_models[s], task) for s, task in tasks.items()}


def choose_per_scenario(
    setups: Mapping[str, CorrectionSetup],
    episodes: int,
    variants: Mapping[str, CorrectionVariant],
    grids: Mapping[str, Sequence[float]],
    tol: float = 1.0,
) -> tuple[dict[str, CorrectionChoice], dict[str, pd.DataFrame]]:
    """:func:`sweep_corrections` and :func:`choose_correction` on every scenario of ``setups``.

    Returns:
        ``(choices, sweeps)``, both by scenario.
    """
    choices, sweeps = {}, {}
    for scenario, setup in setups.items():
        sweeps[scenario] = sweep_corrections(setup, episodes, variants, grids, tol=tol)
        scale = setup.task.action_scale
        choices[scenario] = choose_correction(sweeps[scenario], variants, scale)
    return choices, sweeps


def test_choices(
    setups: Mapping[str, CorrectionSetup],
    choices: Mapping[str, CorrectionChoice],
    variants: Mapping[str, CorrectionVariant],
    episodes: int,
    tol: float = 1.0,
) -> pd.DataFrame:
    """Every variant at its validation-chosen step size, run once on *test* episodes.

    Returns:
        :func:`summarise_runs` by (algorithm, variant) with a ``scenario`` column, the
        scenarios in the order of ``setups``.
    """
    tables = []
    for scenario, setup in setups.items():
        chosen = {
            name: (float(row["step_size"]),)
            for name, row in choices[scenario].per_variant.iterrows()
        }
        test = sweep_corrections(setup, episodes, variants, chosen, split="test", tol=tol)
        tables.append(summarise_runs(test, by=("algorithm", "variant")).assign(scenario=scenario))
    return pd.concat(tables)


test_choices.__test__ = False  # not a pytest test despite its name
