"""The results tables: per-method summaries over episodes and seeds, and their glue names."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
import pandas as pd


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
    per_seed: Mapping[str, Mapping[int, pd.DataFrame]],
    reps: int = 2000,
    seed: int = 0,
    over_episodes: Collection[str] = (),
) -> pd.DataFrame:
    """The results pages' table: across-seed aggregates (rliable) and per-episode extremes.

    A run's score is its mean normalised reward over its test episodes; across runs
    (training seeds) each method gets the interquartile mean with a 95 % stratified-bootstrap
    interval and the median (:func:`~polycstr_lib.toolkit.stats.interval_estimates`). The other
    columns pool the episodes of every seed.

    A deterministic policy run once (holding the inputs, the NMPC oracle) has no seeds to
    vary: for the methods of ``over_episodes`` (one run each) the score is, as for any run,
    the mean over its episodes, and the interval is a 95 % percentile bootstrap of that mean
    over the episodes (:func:`~polycstr_lib.toolkit.stats.mean_interval`); ``interval`` says
    which (``'seeds'`` or ``'episodes'``).

    Args:
        per_seed: method -> seed -> per-episode metrics (:func:`episode_metrics`, optionally
            with ``optimality`` from :func:`add_optimality`).
        reps: Bootstrap replications.
        seed: Seed of the bootstrap (the global NumPy RNG is not used).
        over_episodes: methods of one run whose interval is over episodes.

    Returns:
        DataFrame indexed by method: ``iqm``, ``iqm_low``, ``iqm_high``, ``median`` (of the
        seeds' means), ``worst`` (lowest episode of any seed), ``violating`` (episodes with a
        step above the 370 K limit), ``runaways`` (episodes past the runaway temperature),
        ``episodes`` (all seeds), ``offset`` (mean over episodes, kg/m^3), ``optimality``
        (mean over the episodes that have one; only where some method has the column),
        ``seeds`` and ``interval``. With one seed the interval is that seed's mean, except
        for the methods of ``over_episodes``.

    Raises:
        ValueError: a method of ``over_episodes`` with more than one run, or not in
            ``per_seed``.
    """
    from polycstr_lib.toolkit.stats import interval_estimates, mean_interval

    for method in over_episodes:
        if method not in per_seed or len(per_seed[method]) != 1:
            raise ValueError(f"{method!r}: an interval over episodes needs exactly one run")

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
        row["interval"] = "seeds"
        if method in over_episodes:
            episode_scores = pooled["normalised_reward"].to_numpy()
            _, row["iqm_low"], row["iqm_high"] = mean_interval(episode_scores, reps, seed)
            row["interval"] = "episodes"
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
