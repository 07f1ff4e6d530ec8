"""Ablations of the safety layer: which correction settings buy how much reward for how much time.

A :class:`CorrectionSetting` names one configuration of the layer (cost model, descent method,
number of steps K, step size). :func:`correction_grid` builds the book's sweeps,
:func:`correction_latency` times one setting on single actions, and
:func:`evaluate_corrections` runs a base policy corrected by every setting on the same test
episodes and returns one row per setting. Everything is a pure function of its arguments (the
latency column aside, which is a measurement of this machine).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from polycstr_lib.evaluation import evaluate_policy, summary_table
from polycstr_lib.safety import CorrectedPolicy, correct_actions, default_step_size

__all__ = [
    "CorrectionSetting",
    "correction_grid",
    "correction_latency",
    "evaluate_corrections",
    "pareto_front",
]


@dataclass(frozen=True)
class CorrectionSetting:
    """One configuration of the safety layer in an ablation."""

    sweep: str  # which sweep the setting belongs to (a plot legend), e.g. "K"
    model: str  # key of the cost model in the ``models`` mapping, e.g. "picnn"
    method: str = "gradient"  # 'gradient' or 'newton'
    steps: int = 3  # correction steps K (0 leaves the base action unchanged)
    step_size: float | None = None  # η (gradient) or α (Newton); None → the method's default

    def resolved_step_size(self) -> float:
        """The step size actually used."""
        return default_step_size(self.method) if self.step_size is None else float(self.step_size)


def correction_grid(
    steps_grid: Sequence[int],
    step_size_grid: Sequence[float],
    base_steps: int,
    base_step_size: float,
    newton_steps: Sequence[int] = (1, 3, 5),
    newton_step_size: float = 1.0,
    model_sweeps: Mapping[str, str] | None = None,
) -> list[CorrectionSetting]:
    """The sweeps of the ablation page.

    Args:
        steps_grid: K values of the "K" sweep (PICNN, gradient, η = ``base_step_size``).
        step_size_grid: η values of the "η" sweeps, each at K = ``base_steps``.
        base_steps: K of the η sweeps.
        base_step_size: η of the K sweep.
        newton_steps: K values of the Newton sweep (PICNN, α = ``newton_step_size``).
        newton_step_size: Newton's α.
        model_sweeps: sweep label → model key of every η sweep; default one sweep per model:
            ``{"η, PICNN one-step": "picnn", "η, NN one-step": "mlp",
            "η, PICNN cost-to-go": "picnn_ctg"}``.

    Returns:
        The settings, in sweep order.

    Raises:
        ValueError: a negative K or a non-positive step size.
    """
    if min([*steps_grid, *newton_steps, base_steps]) < 0:
        raise ValueError("correction steps K must be >= 0")
    if min([*step_size_grid, base_step_size, newton_step_size]) <= 0:
        raise ValueError("step sizes must be > 0")
    if model_sweeps is None:
        model_sweeps = {
            "η, PICNN one-step": "picnn",
            "η, NN one-step": "mlp",
            "η, PICNN cost-to-go": "picnn_ctg",
        }
    settings = [
        CorrectionSetting("K, gradient", "picnn", "gradient", k, base_step_size) for k in steps_grid
    ]
    settings += [
        CorrectionSetting("K, Newton", "picnn", "newton", k, newton_step_size) for k in newton_steps
    ]
    for label, model in model_sweeps.items():
        settings += [
            CorrectionSetting(label, model, "gradient", base_steps, eta) for eta in step_size_grid
        ]
    return settings


def correction_latency(
    cost_model: nn.Module,
    observations: Any,
    actions: Any,
    setting: CorrectionSetting,
    repeats: int = 30,
) -> float:
    """Median wall time of correcting *one* action, in milliseconds.

    Each repeat corrects one (observation, action) pair taken in turn from the arrays, as a
    controller would at every control interval. Measured in this process with its current
    torch thread setting.

    Args:
        cost_model: the cost model.
        observations: ``(N, obs_dim)`` raw observations (N >= 1).
        actions: ``(N, act_dim)`` base actions.
        setting: the correction to time.
        repeats: number of timed calls (after one warm-up call).

    Returns:
        Milliseconds per action (0.0 when K = 0: nothing is computed).
    """
    if setting.steps == 0:
        return 0.0
    obs = np.asarray(observations, dtype=np.float32)
    act = np.asarray(actions, dtype=np.float32)
    if obs.ndim != 2 or act.ndim != 2 or len(obs) != len(act) or len(obs) == 0:
        raise ValueError("observations and actions must be (N, d) arrays with the same N >= 1")
    kwargs = {
        "method": setting.method,
        "steps": setting.steps,
        "step_size": setting.resolved_step_size(),
    }
    correct_actions(cost_model, obs[0], act[0], **kwargs)  # warm-up
    times = []
    for i in range(repeats):
        j = i % len(obs)
        start = time.perf_counter()
        correct_actions(cost_model, obs[j], act[j], **kwargs)
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def evaluate_corrections(
    policy: Any,
    models: Mapping[str, nn.Module],
    settings: Iterable[CorrectionSetting],
    scenario: str,
    episodes: int,
    return_min: float,
    return_max: float,
    latency_states: tuple[np.ndarray, np.ndarray] | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Closed-loop results of ``policy`` corrected by every setting, on the same test episodes.

    Args:
        policy: object with ``act(obs) -> action`` (an agent).
        models: model key → cost model, covering every ``setting.model``.
        settings: the correction settings.
        scenario: scenario name.
        episodes: test episodes per setting (the same seeds for all settings).
        return_min: worst data return (normalisation).
        return_max: best data return (normalisation).
        latency_states: ``(observations, actions)`` used to time each setting on single
            actions; None leaves ``latency_ms`` as NaN.
        progress: show a progress bar over the settings.

    Returns:
        One row per setting: the setting's fields, ``step_size`` resolved, the columns of
        :func:`~polycstr_lib.evaluation.summary_table` (normalised reward ``mean``, ``min``,
        ``max``, ``std``; ``violations`` summed over the episodes; ``offset``, ``settled %``,
        ``settling h``), and ``latency_ms``.

    Raises:
        KeyError: a setting names a model that is not in ``models``.
    """
    settings = list(settings)
    missing = sorted({s.model for s in settings} - set(models))
    if missing:
        raise KeyError(f"no cost model for {missing}; available: {sorted(models)}")
    rows = []
    for setting in tqdm(settings, desc="corrections", disable=not progress):
        model = models[setting.model]
        corrected = CorrectedPolicy(
            policy,
            model,
            method=setting.method,
            steps=setting.steps,
            step_size=setting.resolved_step_size(),
        )
        metrics, _ = evaluate_policy(corrected.act, scenario, episodes, return_min, return_max)
        latency = float("nan")
        if latency_states is not None:
            with torch.no_grad():
                latency = correction_latency(model, *latency_states, setting)
        summary = summary_table({setting.sweep: metrics}).iloc[0].to_dict()
        rows.append(
            {
                **asdict(setting),
                "step_size": setting.resolved_step_size(),
                **summary,
                "latency_ms": latency,
            }
        )
    return pd.DataFrame(rows)


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
