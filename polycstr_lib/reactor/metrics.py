"""Per-episode metrics of closed-loop runs: pure functions over arrays, and a batched runner.

The optimality score (0 = hold the inputs, 100 = the NMPC oracle) is one of them, and
:class:`ScoreScale` (a scenario's hold-to-oracle range on given episodes,
:func:`score_scale`) is the decision scale: tolerances of the deployment rule and of the
claims are shares of that range, converted to data-range points by :meth:`ScoreScale.points`.

Shapes: ``E`` episodes, ``T`` steps. All metrics are per episode, so tables and intervals
are computed from them by the caller (:mod:`polycstr_lib.analysis.results`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from polycstr_lib.reactor.datasets import RUNAWAY_TEMPERATURE, episode_seeds, normalised_reward
from polycstr_lib.reactor.env import CONTROL_INTERVAL
from polycstr_lib.reactor.rollout import Policy, Trajectories, rollout

STEADY_WINDOW_HOURS = 10.0  # the steady-state offset is the mean |e_P| over the last 10 h


SETTLING_BAND = 0.05  # settled: |e_P| within 5 % of the polymer setpoint for good


def steady_state_offset(polymer_error: np.ndarray, window_hours: float = STEADY_WINDOW_HOURS):
    """Mean ``|e_P|`` over the last ``window_hours``.

    Args:
        polymer_error: ``(E, T)`` polymer errors after each step, kg/m^3.
        window_hours: length of the final window, h.

    Returns:
        ``(E,)`` offsets, kg/m^3.
    """
    steps = max(1, int(round(window_hours * 3600 / CONTROL_INTERVAL)))
    return np.abs(np.asarray(polymer_error)[:, -steps:]).mean(axis=1)


def settling_time(polymer_error: np.ndarray, band: np.ndarray | float) -> np.ndarray:
    """Hours until ``|e_P|`` enters ``band`` and stays there to the end of the episode.

    Args:
        polymer_error: ``(E, T)`` polymer errors after steps 1..T.
        band: half-width of the band, kg/m^3, scalar or ``(E,)``.

    Returns:
        ``(E,)`` settling times in hours; ``inf`` where an episode never settles.
    """
    err = np.abs(np.asarray(polymer_error))
    inside = err <= np.broadcast_to(np.asarray(band, dtype=float), err.shape[:1])[:, None]
    # last step outside the band; settled from the step after it
    outside_any = ~inside
    last_out = np.where(
        outside_any.any(axis=1), err.shape[1] - 1 - np.argmax(outside_any[:, ::-1], axis=1), -1
    )
    hours = (last_out + 2) * CONTROL_INTERVAL / 3600  # step k (0-based) ends at (k+1) dt
    hours = hours.astype(float)
    hours[last_out == err.shape[1] - 1] = np.inf
    return hours


def episode_metrics(traj: Trajectories, return_min: float, return_max: float) -> pd.DataFrame:
    """Per-episode metrics of ``traj``.

    Returns:
        DataFrame with E rows: ``return``, ``normalised_reward``, ``violations`` (steps
        above the 370 K limit), ``runaway`` (the temperature passed
        :data:`~polycstr_lib.reactor.datasets.RUNAWAY_TEMPERATURE`), ``offset`` (kg/m^3),
        ``settling_h`` (h, inf if never).
    """
    polymer_error = traj.setpoints[:, None, 0] - traj.states[:, 1:, 3]
    returns = traj.returns
    return pd.DataFrame(
        {
            "return": returns,
            "normalised_reward": normalised_reward(returns, return_min, return_max),
            "violations": traj.violations.sum(axis=1),
            "runaway": (traj.states[:, :, 4] > RUNAWAY_TEMPERATURE).any(axis=1),
            "offset": steady_state_offset(polymer_error),
            "settling_h": settling_time(polymer_error, SETTLING_BAND * traj.setpoints[:, 0]),
        }
    )


def evaluate_policy(
    policy: Policy,
    scenario: str,
    episodes: int,
    return_min: float,
    return_max: float,
    seed_offset: int = 0,
    progress: bool = False,
    split: str = "test",
) -> tuple[pd.DataFrame, Trajectories]:
    """Run ``policy`` on ``episodes`` episodes of ``split`` (seeds disjoint from the data).

    Args:
        policy: Batched policy.
        scenario: Scenario name.
        episodes: Number of episodes.
        return_min: Worst data return (0 of the normalised reward).
        return_max: Best data return (100 of the normalised reward).
        seed_offset: Offset into the split's seed range.
        progress: Show a progress bar over steps.
        split: 'test' (the tables) or 'validation' (every tuned choice).

    Returns:
        The per-episode metrics (:func:`episode_metrics`) and the trajectories.
    """
    seeds = episode_seeds(split, episodes, seed_offset)
    traj = rollout(policy, scenario, seeds, progress=progress)
    return episode_metrics(traj, return_min, return_max), traj


def evaluate_policies(
    policies: Mapping[str, Policy],
    scenario: str,
    episodes: int,
    return_min: float,
    return_max: float,
) -> tuple[dict[str, pd.DataFrame], dict[str, Trajectories]]:
    """:func:`evaluate_policy` of every policy on the same ``episodes`` test episodes.

    Returns:
        ``(metrics, trajectories)``, both by the policies' names, in their order.
    """
    metrics, trajs = {}, {}
    for name, policy in policies.items():
        metrics[name], trajs[name] = evaluate_policy(
            policy, scenario, episodes, return_min, return_max
        )
    return metrics, trajs


def optimality_score(returns, hold_returns, oracle_returns) -> np.ndarray:
    """Optimality-normalised score: ``100 (R - R_hold) / (R_oracle - R_hold)`` per episode.

    0 is holding the initial inputs for the whole episode, 100 is the NMPC oracle on the same
    initial state; values above 100 (better than the oracle's finite horizon) and below 0
    are kept.

    Args:
        returns: ``(E,)`` episode returns of the method.
        hold_returns: ``(E,)`` returns of holding the initial inputs from the same states.
        oracle_returns: ``(E,)`` returns of the NMPC oracle from the same states.

    Returns:
        ``(E,)`` scores.

    Raises:
        ValueError: if the shapes differ or the oracle does not beat holding on an episode.
    """
    r, h, o = (np.asarray(x, dtype=np.float64) for x in (returns, hold_returns, oracle_returns))
    if not r.shape == h.shape == o.shape:
        raise ValueError(f"shapes differ: returns {r.shape}, hold {h.shape}, oracle {o.shape}")
    if np.any(o <= h):
        bad = np.flatnonzero(o <= h)
        raise ValueError(
            f"the oracle does not beat holding the inputs on episode(s) {bad.tolist()}"
        )
    return 100.0 * (r - h) / (o - h)


def add_optimality(
    metrics: pd.DataFrame, seeds: np.ndarray, references: pd.DataFrame
) -> pd.DataFrame:
    """A copy of ``metrics`` with an ``optimality`` column.

    Args:
        metrics: per-episode metrics (:func:`episode_metrics`), one row per seed of ``seeds``.
        seeds: ``(E,)`` env seeds of the episodes, in the rows' order.
        references: indexed by env seed, columns ``hold`` and ``oracle`` (returns), e.g. from
            :func:`optimality_references`.

    Returns:
        The metrics with ``optimality`` (:func:`optimality_score`) where the seed has a
        reference and NaN elsewhere.

    Raises:
        ValueError: if ``seeds`` does not match the number of rows.
    """
    seeds = np.asarray(seeds)
    if seeds.shape != (len(metrics),):
        raise ValueError(f"need one seed per row: {len(metrics)} rows, seeds {seeds.shape}")
    out = metrics.copy()
    known = np.isin(seeds, references.index.to_numpy())
    score = np.full(len(metrics), np.nan)
    if known.any():
        ref = references.loc[seeds[known]]
        score[known] = optimality_score(
            out["return"].to_numpy()[known], ref["hold"].to_numpy(), ref["oracle"].to_numpy()
        )
    out["optimality"] = score
    return out


def optimality_references(oracle: Trajectories) -> pd.DataFrame:
    """Returns of the oracle and of holding the initial inputs, per env seed.

    Args:
        oracle: the NMPC oracle's trajectories (its seeds are replayed with zero actions).

    Returns:
        DataFrame indexed by ``seed`` with ``hold`` and ``oracle`` returns.
    """
    from polycstr_lib.reactor.nmpc import hold_policy

    steps = oracle.rewards.shape[1]
    hold = rollout(hold_policy, oracle.scenario, oracle.seeds, steps=steps)
    return pd.DataFrame(
        {"hold": hold.returns, "oracle": oracle.returns},
        index=pd.Index(oracle.seeds, name="seed"),
    )


@dataclass(frozen=True)
class ScoreScale:
    """A scenario's hold-to-oracle reference on given episodes, on the data-range scale.

    ``hold`` and ``oracle`` are the mean normalised rewards (0 = worst, 100 = best data
    episode) of holding the initial inputs and of the NMPC oracle on the same episodes;
    ``range = oracle - hold`` is the scale of every decision tolerance: a tolerance of 1 %
    is ``0.01 * range`` points (:meth:`points`). Holding scores 96 on startup but -143 on
    grade up, so a fixed tolerance in points means different things per scenario.
    """

    scenario: str  # the scenario
    split: str  # 'test' or 'validation': the episodes' split
    seeds: tuple[int, ...]  # env seeds of the episodes
    hold: float  # mean normalised reward of holding the initial inputs on them
    oracle: float  # mean normalised reward of the NMPC oracle on them

    def __post_init__(self) -> None:
        if not (np.isfinite(self.hold) and np.isfinite(self.oracle)):
            raise ValueError(f"hold and oracle must be finite, got {self.hold}, {self.oracle}")
        if self.oracle <= self.hold:
            raise ValueError(
                f"{self.scenario}: the oracle ({self.oracle:.4g}) does not beat holding the "
                f"inputs ({self.hold:.4g}) on these episodes"
            )

    @property
    def range(self) -> float:
        """The hold-to-oracle range in data-range points (``oracle - hold`` > 0)."""
        return self.oracle - self.hold

    def points(self, fraction: float) -> float:
        """A tolerance given as a share of the range (``0.01``: 1 %), in data-range points.

        Raises:
            ValueError: a negative or non-finite share.
        """
        if not (np.isfinite(fraction) and fraction >= 0):
            raise ValueError(f"a tolerance share must be a finite number >= 0, got {fraction}")
        return float(fraction) * self.range

    def optimality(self, score: float) -> float:
        """A data-range score on this scale: ``100 (score - hold) / range`` (0 = hold, 100 =
        oracle), for means; per episode, :func:`optimality_score` uses each episode's own
        references."""
        return 100.0 * (float(score) - self.hold) / self.range


def scale_from_references(
    references: pd.DataFrame,
    scenario: str,
    return_min: float,
    return_max: float,
    split: str = "test",
) -> ScoreScale:
    """The :class:`ScoreScale` of :func:`optimality_references` (hold and oracle returns per
    env seed), on the data-range scale of ``return_min`` and ``return_max``.

    Raises:
        ValueError: no references, or the oracle not above holding on average.
    """
    if references.empty:
        raise ValueError(f"{scenario}: no reference episodes to make a score scale from")
    hold = normalised_reward(references["hold"].to_numpy(), return_min, return_max)
    oracle = normalised_reward(references["oracle"].to_numpy(), return_min, return_max)
    return ScoreScale(
        scenario=scenario,
        split=split,
        seeds=tuple(int(s) for s in references.index),
        hold=float(np.mean(hold)),
        oracle=float(np.mean(oracle)),
    )


def score_scale(
    scenario: str,
    episodes: int,
    return_min: float,
    return_max: float,
    horizon: int,
    split: str = "validation",
) -> ScoreScale:
    """Run (or read from the cache) the NMPC oracle and holding the inputs on the first
    ``episodes`` episodes of ``split``, and return their :class:`ScoreScale`.

    The deployment rule uses the validation episodes (its tolerances may not read the test
    episodes); the results pages' glued scale is :func:`scale_from_references` of the
    test references of the table itself.
    """
    from polycstr_lib.reactor.nmpc import NMPCConfig, NMPCRun, run_nmpc

    oracle, _ = run_nmpc(NMPCRun(scenario, episodes, nmpc=NMPCConfig(horizon=horizon), split=split))
    return scale_from_references(
        optimality_references(oracle), scenario, return_min, return_max, split
    )
