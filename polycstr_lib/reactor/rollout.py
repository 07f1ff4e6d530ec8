"""Closed-loop rollouts of any batched policy on the vector env."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from polycstr_lib.reactor.env import EPISODE_STEPS, PolyCSTRVectorEnv
from polycstr_lib.reactor.model import ReactorParams
from polycstr_lib.toolkit.ledger import record_task

#: A policy maps ``(N, 9)`` float32 observations to ``(N, 2)`` actions in [-1, 1]. It may
#: have a ``reset(observations)`` method, called once with the first observations.
Policy = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Trajectories:
    """E closed-loop episodes of T steps (arrays indexed ``[episode, time, ...]``)."""

    scenario: str  # scenario name
    seeds: np.ndarray  # (E,) env seeds of the episodes
    observations: np.ndarray  # (E, T+1, 9) float32, first observation included
    actions: np.ndarray  # (E, T, 2) float32 actions as given to the env (after clipping)
    rewards: np.ndarray  # (E, T) float64
    costs: np.ndarray  # (E, T) float64, |e_P| + |e_T| after each step
    violations: np.ndarray  # (E, T) bool, T > 370 K after the step
    states: np.ndarray  # (E, T+1, 5) float64 physical states
    inputs: np.ndarray  # (E, T+1, 2) float64; [0] the initial inputs, [t] those of step t
    setpoints: np.ndarray  # (E, 2) [C_P, T] setpoint

    @property
    def returns(self) -> np.ndarray:
        """(E,) undiscounted episode returns."""
        return self.rewards.sum(axis=1)

    @property
    def num_episodes(self) -> int:
        return int(self.rewards.shape[0])


def rollout(
    policy: Policy,
    scenario: str,
    seeds: Sequence[int],
    params: ReactorParams | None = None,
    steps: int = EPISODE_STEPS,
    progress: bool = False,
) -> Trajectories:
    """Run ``policy`` on ``len(seeds)`` episodes at once.

    Args:
        policy: batched policy, see :data:`Policy`.
        scenario: scenario name.
        seeds: one env seed per episode (episode ``i`` equals a single env reset with
            ``seeds[i]``).
        params: reactor constants.
        steps: steps per episode (at most the env's 200).
        progress: show a progress bar over steps.

    Returns:
        The trajectories.

    Raises:
        ValueError: if the policy returns actions of the wrong shape or non-finite values.
    """
    seeds = np.asarray(seeds, dtype=np.int64)
    n = len(seeds)
    if n == 0:
        raise ValueError("need at least one seed")
    if not 1 <= steps <= EPISODE_STEPS:
        raise ValueError(f"steps must be in [1, {EPISODE_STEPS}], got {steps}")
    started = time.perf_counter()
    env = PolyCSTRVectorEnv(n, scenario, params)
    obs, info = env.reset(seed=[int(s) for s in seeds])
    observations = np.empty((n, steps + 1, 9), dtype=np.float32)
    actions = np.empty((n, steps, 2), dtype=np.float32)
    rewards, costs = np.empty((n, steps)), np.empty((n, steps))
    violations = np.empty((n, steps), dtype=bool)
    states, inputs = np.empty((n, steps + 1, 5)), np.empty((n, steps + 1, 2))
    observations[:, 0], states[:, 0], inputs[:, 0] = obs, info["state"], info["inputs"]
    setpoints = info["setpoint"].copy()
    if hasattr(policy, "reset"):
        policy.reset(obs)
    for t in tqdm(range(steps), desc=f"rollout {scenario}", disable=not progress, leave=False):
        action = np.asarray(policy(obs))
        if action.shape != (n, 2):
            raise ValueError(f"policy returned actions of shape {action.shape}, need {(n, 2)}")
        action = np.clip(action, -1.0, 1.0)
        obs, reward, _, _, info = env.step(action)
        actions[:, t] = action
        observations[:, t + 1], rewards[:, t], costs[:, t] = obs, reward, info["cost"]
        violations[:, t] = info["constraint_violation"]
        states[:, t + 1], inputs[:, t + 1] = info["state"], info["inputs"]
    seconds = time.perf_counter() - started
    record_task("rollout", seconds, scenario=scenario, episodes=n, steps=steps)
    return Trajectories(
        scenario,
        seeds,
        observations,
        actions,
        rewards,
        costs,
        violations,
        states,
        inputs,
        setpoints,
    )


def rollout_side_by_side(
    policies: Sequence[Policy],
    scenario: str,
    seeds: Sequence[int],
    blocks: int = 1,
    params: ReactorParams | None = None,
) -> Trajectories:
    """Many policies on the same episodes, as one batched rollout.

    Policy ``i`` drives rows ``i * R`` to ``(i + 1) * R - 1`` of the batch, where
    ``R = blocks * len(seeds)``: its ``blocks`` copies of the episodes ``seeds``, block after
    block. A policy sees only its own ``(R, 9)`` observations, and its optional
    ``reset(observations)`` is called with them. A policy that compares settings on the same
    episodes (a sweep) takes ``blocks > 1`` and arranges its blocks itself.

    Args:
        policies: batched policies, see :data:`Policy`.
        scenario: scenario name.
        seeds: env seeds of the episodes every policy runs.
        blocks: copies of the episodes per policy.
        params: reactor constants.

    Returns:
        The trajectories of all rows: episode ``(i * blocks + b) * len(seeds) + e`` is policy
        ``i``, block ``b``, episode ``seeds[e]``.

    Raises:
        ValueError: no policy, no seed, or ``blocks < 1``.
    """
    if not policies:
        raise ValueError("need at least one policy")
    if blocks < 1:
        raise ValueError(f"blocks must be >= 1, got {blocks}")
    seeds = np.asarray(seeds, dtype=np.int64)
    n = len(policies)

    def rows(obs: np.ndarray) -> list[np.ndarray]:
        return list(obs.reshape(n, blocks * len(seeds), -1))

    def joint(obs: np.ndarray) -> np.ndarray:
        return np.concatenate([np.asarray(p(o)) for p, o in zip(policies, rows(obs), strict=True)])

    def reset(obs: np.ndarray) -> None:
        for p, o in zip(policies, rows(obs), strict=True):
            if hasattr(p, "reset"):
                p.reset(o)

    joint.reset = reset  # type: ignore[attr-defined]
    return rollout(joint, scenario, np.tile(seeds, n * blocks), params)
