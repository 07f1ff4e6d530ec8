"""The simulator's own action gradient of the one-step cost, and gradient-stability metrics.

The paper's Figure 6 argues that an ordinary NN cost model gives unstable, directionally
inconsistent action gradients late in episodes while the PICNN's are stable. To check the
claim rather than look at it, this module compares ``∇_a ĉ(s, a)`` of a cost model along
closed-loop episodes with the true one-step gradient ``∇_a c(step(s, a))`` obtained by
central finite differences through the batched integrator.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from polycstr_lib.correction.cost_models import (
    action_gradients,
    direction_agreement,
    sign_flip_rate,
)
from polycstr_lib.reactor.env import ACTION_SCALE, CONTROL_INTERVAL
from polycstr_lib.reactor.integrator import advance
from polycstr_lib.reactor.model import ReactorParams
from polycstr_lib.reactor.rollout import Trajectories


def one_step_cost(
    states: np.ndarray,
    inputs: np.ndarray,
    actions: np.ndarray,
    setpoints: np.ndarray,
    params: ReactorParams | None = None,
) -> np.ndarray:
    """``|e_P| + |e_T|`` after one step from ``states`` with ``actions``, batched.

    Args:
        states: ``(B, 5)`` float64 states before the step.
        inputs: ``(B, 2)`` inputs applied in the previous step.
        actions: ``(B, 2)`` actions (clipped to [-1, 1] like the env does).
        setpoints: ``(B, 2)`` ``[C_P, T]`` setpoints.
        params: reactor constants.

    Returns:
        ``(B,)`` costs.
    """
    params = params or ReactorParams()
    new_inputs = np.clip(
        inputs + np.clip(actions, -1, 1) * ACTION_SCALE, params.input_low, params.input_high
    )
    after, _ = advance(states, new_inputs, CONTROL_INTERVAL, params)
    return np.abs(setpoints - after[:, [3, 4]]).sum(axis=1)


def simulator_action_gradient(
    states: np.ndarray,
    inputs: np.ndarray,
    actions: np.ndarray,
    setpoints: np.ndarray,
    eps: float = 1e-3,
    params: ReactorParams | None = None,
) -> np.ndarray:
    """Central finite-difference gradient of :func:`one_step_cost` in the action.

    All ``4 B`` perturbed steps run in one batch. Actions are kept ``eps`` inside the box so
    both sides of each difference are unclipped.

    Returns:
        ``(B, 2)`` gradients.
    """
    actions = np.clip(np.asarray(actions, dtype=np.float64), -1 + eps, 1 - eps)
    b = len(actions)
    shifts = np.array([[eps, 0], [-eps, 0], [0, eps], [0, -eps]])
    perturbed = (actions[:, None, :] + shifts[None]).reshape(4 * b, 2)
    rep = np.repeat
    cost = one_step_cost(
        rep(states, 4, axis=0), rep(inputs, 4, axis=0), perturbed, rep(setpoints, 4, axis=0), params
    ).reshape(b, 4)
    return np.column_stack([cost[:, 0] - cost[:, 1], cost[:, 2] - cost[:, 3]]) / (2 * eps)


def episode_gradients(traj: Trajectories, episode: int, models: dict) -> dict[str, np.ndarray]:
    """Action gradients along one episode for each cost model and for the simulator.

    Args:
        traj: closed-loop trajectories.
        episode: which episode.
        models: name -> cost model (``model(obs, action) -> cost``).

    Returns:
        name -> ``(T, 2)`` gradients; the simulator's under ``"simulator"``.
    """
    obs, act = traj.observations[episode, :-1], traj.actions[episode]
    out = {name: action_gradients(model, obs, act) for name, model in models.items()}
    steps = act.shape[0]
    out["simulator"] = simulator_action_gradient(
        traj.states[episode, :-1],
        traj.inputs[episode, :-1],
        act,
        np.repeat(traj.setpoints[episode][None], steps, axis=0),
    )
    return out


def gradient_stability(traj: Trajectories, models: dict, late_fraction: float = 0.5):
    """Stability metrics of each model's action gradients over all episodes of ``traj``.

    For each model and episode phase (``early``: the first ``1 - late_fraction`` of steps,
    ``late``: the rest, ``all``): the share of steps whose gradient points the same way as
    the simulator's (cosine > 0), and the share of consecutive steps whose gradient
    direction flips (cosine < 0).

    Returns:
        DataFrame indexed by (model, phase) with ``agree_with_simulator`` and ``flip_rate``,
        averaged over episodes; and the per-episode gradients (list of dicts).
    """
    rows, grads = [], []
    for e in range(traj.num_episodes):
        g = episode_gradients(traj, e, models)
        grads.append(g)
        steps = len(g["simulator"])
        split = int(round(steps * (1 - late_fraction)))
        phases = {"early": slice(0, split), "late": slice(split, steps), "all": slice(0, steps)}
        for name in models:
            for phase, sl in phases.items():
                rows.append(
                    {
                        "model": name,
                        "phase": phase,
                        "episode": e,
                        "agree_with_simulator": direction_agreement(
                            g[name][sl], g["simulator"][sl]
                        ),
                        "flip_rate": sign_flip_rate(g[name][sl]),
                    }
                )
        for phase, sl in phases.items():
            rows.append(
                {
                    "model": "simulator",
                    "phase": phase,
                    "episode": e,
                    "agree_with_simulator": 1.0,
                    "flip_rate": sign_flip_rate(g["simulator"][sl]),
                }
            )
    table = pd.DataFrame(rows).groupby(["model", "phase"])[["agree_with_simulator", "flip_rate"]]
    return table.mean(), grads
