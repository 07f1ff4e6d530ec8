"""Correction paths: the actions a correction visits, and the simulator's cost along them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from polycstr_lib.correction.safety import correct_actions

__all__ = ["correction_path", "correction_path_costs"]


def correction_path(
    model: nn.Module,
    observation: torch.Tensor,
    action: torch.Tensor,
    method: str,
    steps: int,
    step_size: float,
) -> np.ndarray:
    """The start action and the action after each of ``steps`` single correction steps.

    Args:
        model: the cost model.
        observation: one observation ``(obs_dim,)``.
        action: the start action ``(action_dim,)``.
        method: ``'gradient'`` (steps of ``step_size``) or ``'newton'`` (undamped step size).
        steps: K, the number of steps.
        step_size: η of the gradient steps (ignored by Newton).

    Returns:
        ``(steps + 1, action_dim)`` float array, the start action first.
    """
    points = [action.numpy()]
    a = action[None]
    for _ in range(steps):
        a, _ = correct_actions(model, observation[None], a, method=method, steps=1,
                               step_size=step_size if method == "gradient" else None)  # fmt: skip
        points.append(a[0].numpy())
    return np.array(points)


def correction_path_costs(
    cost_model: nn.Module,
    traj: Any,
    action_scale: Any,
    n_states: int = 20,
    steps: int = 12,
    step_size: float = 0.5,
    seed: int = 0,
) -> pd.DataFrame:
    """Predicted and simulator one-step cost along correction paths that leave the data.

    From ``n_states`` random (episode, step) pairs of the data, the data's action is moved by
    ``steps`` normalised steps of ``step_size`` data spreads down ``ĉ`` (the direction of the
    safety layer's steepest descent in whitened action units), and at every point of the path
    the model's prediction is compared with the simulator's cost of that action
    (:func:`polycstr_lib.correction.gradients.one_step_cost`, float64 physics).

    Args:
        cost_model: a one-step cost model (its prediction is compared with the one-step cost).
        traj: the data's :class:`~polycstr_lib.reactor.rollout.Trajectories`.
        action_scale: σ_a of the data.
        n_states: number of start points.
        steps: points per path after the start.
        step_size: data spreads per step.
        seed: seed of the start points (private generator).

    Returns:
        One row per (path, k): ``path``, ``k``, ``distance`` (‖(a_k − a_0) / σ_a‖, data
        spreads), ``predicted``, ``simulator``.
    """
    from polycstr_lib.correction.gradients import one_step_cost

    scale = np.asarray(action_scale, dtype=np.float64)
    rng = np.random.default_rng(seed)
    n_ep, n_t = traj.actions.shape[:2]
    ep = rng.integers(0, n_ep, n_states)
    t = rng.integers(0, n_t, n_states)
    obs = np.asarray(traj.observations[ep, t], dtype=np.float32)
    a0 = np.asarray(traj.actions[ep, t], dtype=np.float64)
    states, inputs, setpoints = traj.states[ep, t], traj.inputs[ep, t], traj.setpoints[ep]
    rows = []
    a = a0.copy()
    for k in range(steps + 1):
        if k:
            a, _ = correct_actions(
                cost_model, obs, a.astype(np.float32), "normalised", 1, step_size,
                action_scale=scale,
            )  # fmt: skip
            a = np.asarray(a, dtype=np.float64)
        with torch.no_grad():
            pred = cost_model(torch.as_tensor(obs), torch.as_tensor(a, dtype=torch.float32))
        sim = one_step_cost(states, inputs, a, setpoints)
        dist = np.linalg.norm((a - a0) / scale, axis=1)
        for i in range(n_states):
            rows.append(
                {
                    "path": i,
                    "k": k,
                    "distance": float(dist[i]),
                    "predicted": float(pred[i]),
                    "simulator": float(sim[i]),
                }
            )
    return pd.DataFrame(rows)
