"""The correction a page uses: its variants, its cost models and the choice on validation.

The results pages (chapter 05) and the support chapter (08) build the same correction
variants from :data:`~polycstr_lib.correction.variants.DEFAULT_VARIANTS` (only K set by the
page's parameters), sweep them over the same grids
(:data:`~polycstr_lib.correction.variants.DEFAULT_STEP_SIZES`), train the same cost models
(a PICNN and, for the ``"uncertainty"`` variant, an ensemble of :data:`ENSEMBLE_SEEDS`) and
deploy, per (scenario, algorithm), the setting of the deployment rule
(:func:`~polycstr_lib.correction.deployment.deploy_from_sweep`: no seed's tail made worse,
η = 0 the fallback) through one function, :func:`deploy_results_correction`.
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
from polycstr_lib.correction.sweep import sweep_corrections
from polycstr_lib.correction.task import CorrectionSetup, ScenarioTask
from polycstr_lib.correction.variants import (
    DEFAULT_STEP_SIZES,
    DEFAULT_VARIANTS,
    CorrectionVariant,
)
from polycstr_lib.reactor.metrics import ScoreScale

__all__ = [
    "ENSEMBLE_SEEDS",
    "deploy_results_correction",
    "results_cost_models",
    "results_variants",
    "support_cost_models",
]

#: Seeds of the PICNN ensemble of the ``"uncertainty"`` variant (member 0 is the PICNN).
ENSEMBLE_SEEDS = (0, 1, 2)


def results_variants(names: Sequence[str], steps: int) -> dict[str, CorrectionVariant]:
    """The named :data:`DEFAULT_VARIANTS`, each with K = ``steps``.

    Raises:
        ValueError: a name that is not a default variant.
    """
    unknown = [n for n in names if n not in DEFAULT_VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; known: {sorted(DEFAULT_VARIANTS)}")
    return {name: dataclasses.replace(DEFAULT_VARIANTS[name], steps=steps) for name in names}


def results_cost_models(
    task: ScenarioTask, cost_steps: int, ensemble: bool
) -> tuple[dict[str, nn.Module], pd.DataFrame]:
    """The one-step PICNN (``"picnn"``) and, if asked, the ensemble of :data:`ENSEMBLE_SEEDS`
    (``"ensemble"``).

    Returns:
        ``(models, log)``: the models by key and the PICNN's training log.
    """
    config = CostModelConfig(kind="picnn", steps=cost_steps)
    model, log = train_cost_model(task.data, config, progress=False)
    models: dict[str, nn.Module] = {"picnn": model}
    if ensemble:  # its member 0 is the PICNN, bit for bit
        models["ensemble"] = train_cost_ensemble(
            task.data, config, seeds=ENSEMBLE_SEEDS, progress=False
        )[0]
    return models, log


def support_cost_models(
    task: ScenarioTask, cost_steps: int, ensemble: bool
) -> tuple[dict[str, nn.Module], dict[str, float]]:
    """The models of :func:`results_cost_models` with their held-out R² (both from the cache
    when a results page trained them).

    Returns:
        ``(models, r2)``: the models by key, and the held-out R² of the one-step PICNN and,
        with the ensemble, of its worst member.
    """
    models, log = results_cost_models(task, cost_steps, ensemble)
    r2 = {"one-step PICNN": float(log["heldout_r2"])}
    if ensemble:
        config = CostModelConfig(kind="picnn", steps=cost_steps)
        _, members = train_cost_ensemble(task.data, config, seeds=ENSEMBLE_SEEDS, progress=False)
        r2["ensemble (worst member)"] = float(min(members["heldout_r2"]))
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
