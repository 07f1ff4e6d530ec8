"""Evaluation as pure functions over arrays (shapes documented), plus a batched runner.

Shapes: ``E`` episodes, ``T`` steps. All metrics are per episode, so tables and intervals
are computed from them by the caller (or :func:`summary_table`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from polycstr_lib.datasets import RUNAWAY_TEMPERATURE, episode_seeds, normalised_reward
from polycstr_lib.env import CONTROL_INTERVAL
from polycstr_lib.rollout import Policy, Trajectories, rollout

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
        :data:`~polycstr_lib.datasets.RUNAWAY_TEMPERATURE`), ``offset`` (kg/m^3),
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
    from polycstr_lib.nmpc import hold_policy

    steps = oracle.rewards.shape[1]
    hold = rollout(hold_policy, oracle.scenario, oracle.seeds, steps=steps)
    return pd.DataFrame(
        {"hold": hold.returns, "oracle": oracle.returns},
        index=pd.Index(oracle.seeds, name="seed"),
    )


def summary_table(metrics: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per method: mean/min/max normalised reward, violations, offset, settling.

    Args:
        metrics: method name -> per-episode metrics.

    Returns:
        DataFrame indexed by method (normalised reward ``mean``, ``min``, ``max``,
        ``std`` over episodes, then the other metrics). ``settled %`` is the share of
        episodes that settle; ``settling h`` the median settling time of those that do.
        Where some method's metrics have an ``optimality`` column (:func:`add_optimality`),
        the table has an ``optimality`` column too: its mean over the episodes that have
        one (NaN for a method without).
    """
    with_optimality = any("optimality" in m for m in metrics.values())
    rows = {}
    for name, m in metrics.items():
        settled = np.isfinite(m["settling_h"])
        rows[name] = {
            "mean": m["normalised_reward"].mean(),
            "min": m["normalised_reward"].min(),
            "max": m["normalised_reward"].max(),
            "std": m["normalised_reward"].std(ddof=0),
            "violations": int(m["violations"].sum()),
            "offset": m["offset"].mean(),
            "settled %": 100.0 * settled.mean(),
            "settling h": float(np.median(m["settling_h"][settled])) if settled.any() else np.inf,
        }
        if with_optimality:
            score = m["optimality"].dropna() if "optimality" in m else pd.Series(dtype=float)
            rows[name]["optimality"] = float(score.mean()) if len(score) else np.nan
    return pd.DataFrame.from_dict(rows, orient="index")


def seed_summary(per_seed: Mapping[str, Mapping[int, pd.DataFrame]]) -> pd.DataFrame:
    """Each seed's :func:`summary_table` row, averaged over training seeds.

    Intervals across seeds are :func:`results_table`'s (rliable IQM with a stratified
    bootstrap); this table only averages, for the glued ``<METHOD>_mean``-style values.

    Args:
        per_seed: method -> seed -> per-episode metrics.

    Returns:
        DataFrame indexed by method with ``mean``, ``min``, ``max``, ``std``, ``violations``,
        ``offset``, ``settled %``, ``settling h`` (and ``optimality`` where present): means
        over seeds; and ``seeds``.
    """
    rows = {}
    for method, runs in per_seed.items():
        table = summary_table({seed: m for seed, m in runs.items()})
        row = table.mean(axis=0).to_dict()
        row["seeds"] = len(table)
        rows[method] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def results_table(
    per_seed: Mapping[str, Mapping[int, pd.DataFrame]], reps: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """The results pages' table: across-seed aggregates (rliable) and per-episode extremes.

    A run's score is its mean normalised reward over its test episodes; across runs
    (training seeds) each method gets the interquartile mean with a 95 % stratified-bootstrap
    interval and the median (:func:`~polycstr_lib.stats.interval_estimates`). The other
    columns pool the episodes of every seed.

    Args:
        per_seed: method -> seed -> per-episode metrics (:func:`episode_metrics`, optionally
            with ``optimality`` from :func:`add_optimality`).
        reps: Bootstrap replications.
        seed: Seed of the bootstrap (the global NumPy RNG is not used).

    Returns:
        DataFrame indexed by method: ``iqm``, ``iqm_low``, ``iqm_high``, ``median`` (of the
        seeds' means), ``worst`` (lowest episode of any seed), ``violating`` (episodes with a
        step above the 370 K limit), ``runaways`` (episodes past the runaway temperature),
        ``episodes`` (all seeds), ``offset`` (mean over episodes, kg/m^3), ``optimality``
        (mean over the episodes that have one; only where some method has the column) and
        ``seeds``. With one seed the interval is that seed's mean.
    """
    from polycstr_lib.stats import interval_estimates

    scores = {
        m: np.array([runs[s]["normalised_reward"].mean() for s in runs])
        for m, runs in per_seed.items()
    }
    est = interval_estimates(scores, reps=reps, seed=seed)
    with_optimality = any("optimality" in m for runs in per_seed.values() for m in runs.values())
    rows = {}
    for method, runs in per_seed.items():
        pooled = pd.concat(list(runs.values()), ignore_index=True)
        row = {
            "iqm": float(est.loc[method, "iqm"]),
            "iqm_low": float(est.loc[method, "iqm_low"]),
            "iqm_high": float(est.loc[method, "iqm_high"]),
            "median": float(est.loc[method, "median"]),
            "worst": float(pooled["normalised_reward"].min()),
            "violating": int((pooled["violations"] > 0).sum()),
            "runaways": int(pooled["runaway"].sum()) if "runaway" in pooled else 0,
            "episodes": len(pooled),
            "offset": float(pooled["offset"].mean()),
        }
        if with_optimality:
            score = (
                pooled["optimality"].dropna() if "optimality" in pooled else pd.Series(dtype=float)
            )
            row["optimality"] = float(score.mean()) if len(score) else np.nan
        row["seeds"] = len(runs)
        rows[method] = row
    return pd.DataFrame.from_dict(rows, orient="index")


#: Per-seed statistics glued as lists (``<METHOD>_seed_<name>``), in the order of the seeds.
SEED_GLUE = {"means": "mean", "mins": "min", "stds": "std", "offsets": "offset"}


def results_glue(
    per_seed: Mapping[str, Mapping[int, pd.DataFrame]],
    table: pd.DataFrame,
    names: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """The values a results page glues, as plain Python numbers and lists.

    Names are ``<PREFIX>_<stat>``; the prefix is the method's name, or ``names[method]``.

    - from :func:`results_table`: ``iqm``, ``iqm_low``, ``iqm_high``, ``median``,
      ``worst`` (lowest episode), ``runaways``, ``violating``, ``episodes``, and
      ``optimality`` where the table has it;
    - means over seeds of each seed's :func:`summary_table` row: ``mean``, ``min``, ``max``,
      ``std``, ``violations`` (steps above 370 K per seed), ``offset``;
    - per seed, in the order of ``per_seed[method]``: ``seed_means``, ``seed_mins``,
      ``seed_stds``, ``seed_offsets`` (lists, for probabilities of improvement and seed
      halves on the claims page) and ``seeds`` (the seeds themselves).

    Args:
        per_seed: method -> seed -> per-episode metrics.
        table: :func:`results_table` of ``per_seed``.
        names: method -> glue prefix (e.g. ``{"NMPC (oracle)": "NMPC"}``).

    Returns:
        Glue name -> value.
    """
    names = dict(names or {})
    out: dict[str, object] = {}
    for method, runs in per_seed.items():
        prefix = names.get(method, method)
        rows = summary_table(dict(runs))
        for col in ("iqm", "iqm_low", "iqm_high", "median", "worst"):
            out[f"{prefix}_{col}"] = float(table.loc[method, col])
        for col in ("runaways", "violating", "episodes"):
            out[f"{prefix}_{col}"] = int(table.loc[method, col])
        if "optimality" in table.columns:
            out[f"{prefix}_optimality"] = float(table.loc[method, "optimality"])
        for col in ("mean", "min", "max", "std", "violations", "offset"):
            out[f"{prefix}_{col}"] = float(rows[col].mean())
        for plural, col in SEED_GLUE.items():
            out[f"{prefix}_seed_{plural}"] = [float(v) for v in rows[col]]
        out[f"{prefix}_seeds"] = [int(s) for s in runs]
    return out
