"""Aggregate statistics across training seeds, computed with rliable (Agarwal et al., 2021).

Pure functions over score matrices. Shapes: a score matrix is ``(R, T)``: ``R`` runs
(training seeds) by ``T`` tasks (scenarios, or one task); a score is a run's mean normalised
reward over its evaluation episodes. Confidence intervals are percentile intervals of
rliable's stratified bootstrap (runs resampled within each task), seeded by the caller so
that a rerun gives the same interval; the global NumPy RNG is never used.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "Comparison",
    "binomial_interval",
    "compare_runs",
    "improvement_probability",
    "interval_estimates",
    "iqm",
    "mean_interval",
    "paired_difference",
    "performance_profiles",
    "probability_of_improvement",
    "runaway_rate_upper_bound",
    "score_matrix",
    "unpaired_difference",
]


def score_matrix(scores: np.ndarray | list[float]) -> np.ndarray:
    """Checks a score matrix; a 1-D array becomes ``(R, 1)`` (one task).

    Raises:
        ValueError: Empty, more than 2-D, or non-finite scores.
    """
    arr = np.asarray(scores, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"scores must be a non-empty (runs, tasks) matrix; got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("scores must be finite")
    return arr


def iqm(scores: np.ndarray | list[float]) -> float:
    """Interquartile mean of all scores of an ``(R, T)`` matrix (rliable's aggregate_iqm)."""
    return float(_trimmed_iqm(score_matrix(scores)))


def _trimmed_iqm(scores: np.ndarray) -> np.floating:
    """rliable's ``aggregate_iqm`` (SciPy's ``trim_mean(scores, 0.25, axis=None)``), the same
    operations on the same array, so the same bits, without SciPy's argument-checking wrapper,
    which costs about 0.6 ms a call: 2,000 bootstrap replicates of 13 methods spent 18 s of a
    results page there (tests/test_stats.py compares both on many matrices)."""
    flat = np.ravel(scores)
    lowercut = int(0.25 * flat.size)
    uppercut = flat.size - lowercut
    return np.mean(np.partition(flat, (lowercut, uppercut - 1))[lowercut:uppercut])


def _bootstrap(score_dict, func, reps: int, seed: int, confidence: float):
    from rliable import library

    # rliable 1.2 draws from the global NumPy RNG besides the RandomState it is given: the
    # global state is saved and restored around the call (tests/test_stats.py checks both).
    global_state = np.random.get_state()  # noqa: NPY002
    try:
        with warnings.catch_warnings():
            # arch 7 deprecates random_state in favour of generator; rliable passes the former.
            warnings.simplefilter("ignore", FutureWarning)
            np.random.seed(seed)  # noqa: NPY002
            return library.get_interval_estimates(
                score_dict,
                func,
                reps=reps,
                confidence_interval_size=confidence,
                random_state=np.random.RandomState(seed),
            )
    finally:
        np.random.set_state(global_state)  # noqa: NPY002


def interval_estimates(
    scores: Mapping[str, np.ndarray],
    reps: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """IQM, median and mean of each method with stratified-bootstrap confidence intervals.

    Args:
        scores: Method → ``(R, T)`` score matrix (methods may have different ``R``).
        reps: Bootstrap replications.
        seed: Seed of the bootstrap.
        confidence: Size of the intervals.

    Returns:
        One row per method: ``iqm``, ``iqm_low``, ``iqm_high``, ``median``, ``mean``, ``runs``.
        With one run the interval is that run's score.
    """
    matrices = {k: score_matrix(v) for k, v in scores.items()}

    def aggregate(x: np.ndarray) -> np.ndarray:
        # rliable's aggregate_median is a median across tasks of run means; here the median
        # of all scores is wanted (one task is the common case).
        return np.array([_trimmed_iqm(x), np.median(x), np.mean(x)])

    point, interval = _bootstrap(matrices, aggregate, reps, seed, confidence)
    rows = {
        k: {
            "iqm": point[k][0],
            "iqm_low": interval[k][0, 0],
            "iqm_high": interval[k][1, 0],
            "median": point[k][1],
            "mean": point[k][2],
            "runs": matrices[k].shape[0],
        }
        for k in matrices
    }
    return pd.DataFrame.from_dict(rows, orient="index")


def performance_profiles(
    scores: Mapping[str, np.ndarray],
    thresholds: np.ndarray | list[float],
    reps: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Performance profiles: the fraction of scores above each threshold τ, per method.

    rliable's score distribution (``library.score_distributions``, vectorised here, with the
    same values) and its stratified-bootstrap interval, runs resampled within each task. With
    per-episode scores as the tasks (runs = training seeds, tasks = test episodes), the
    profile shows the whole distribution of episodes, tails included, which an IQM hides.

    Args:
        scores: Method → ``(R, T)`` score matrix (methods may differ in ``R`` and ``T``).
        thresholds: ``(K,)`` increasing thresholds τ.
        reps: Bootstrap replications.
        seed: Seed of the bootstrap.
        confidence: Size of the intervals.

    Returns:
        ``K`` rows per method, in the order of ``scores``: ``method``, ``tau``, ``fraction``
        (of the method's scores above τ), ``low`` and ``high``.

    Raises:
        ValueError: thresholds not a non-empty, finite, increasing 1-D array.
    """
    taus = np.asarray(thresholds, dtype=float)
    if (
        taus.ndim != 1
        or taus.size == 0
        or not np.isfinite(taus).all()
        or (np.diff(taus) <= 0).any()
    ):
        raise ValueError("thresholds must be a non-empty, finite, increasing 1-D array")
    matrices = {k: score_matrix(v) for k, v in scores.items()}

    def fraction_above(x: np.ndarray) -> np.ndarray:
        return (x[..., None] > taus).mean(axis=(0, 1))

    point, interval = _bootstrap(matrices, fraction_above, reps, seed, confidence)
    frames = [
        pd.DataFrame(
            {
                "method": k,
                "tau": taus,
                "fraction": point[k],
                "low": interval[k][0],
                "high": interval[k][1],
            }
        )
        for k in matrices
    ]
    return pd.concat(frames, ignore_index=True)


def probability_of_improvement(
    scores_x: np.ndarray,
    scores_y: np.ndarray,
    reps: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """P(X > Y): the probability that a run of X beats a run of Y, averaged over tasks.

    Args:
        scores_x: ``(R_x, T)`` scores of X.
        scores_y: ``(R_y, T)`` scores of Y (same tasks).
        reps: Bootstrap replications.
        seed: Seed of the bootstrap.
        confidence: Size of the interval.

    Returns:
        The estimate and its confidence interval ``(p, low, high)``.

    Raises:
        ValueError: Different numbers of tasks.
    """
    from rliable import metrics

    x, y = score_matrix(scores_x), score_matrix(scores_y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"X has {x.shape[1]} tasks and Y {y.shape[1]}")

    def func(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.array([metrics.probability_of_improvement(a, b)])

    point, interval = _bootstrap({"x,y": (x, y)}, func, reps, seed, confidence)
    return float(point["x,y"][0]), float(interval["x,y"][0, 0]), float(interval["x,y"][1, 0])


def improvement_probability(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """Point estimate of P(X > Y) (rliable's probability of improvement), no bootstrap.

    The probability that a run of X scores above a run of Y (ties count one half),
    averaged over tasks; deterministic, so verdicts need no bootstrap seed.

    Args:
        scores_x: ``(R_x, T)`` scores of X (a 1-D array is one task).
        scores_y: ``(R_y, T)`` scores of Y (same tasks).

    Returns:
        P(X > Y) in [0, 1].

    Raises:
        ValueError: Different numbers of tasks, or bad scores (:func:`score_matrix`).
    """
    from rliable import metrics

    x, y = score_matrix(scores_x), score_matrix(scores_y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"X has {x.shape[1]} tasks and Y {y.shape[1]}")
    return float(metrics.probability_of_improvement(x, y))


@dataclass(frozen=True)
class Comparison:
    """IQMs of two sets of runs, their gap and the probability that X beats Y."""

    iqm_x: float
    iqm_y: float
    p: float  # P(X > Y), :func:`improvement_probability`

    @property
    def gap(self) -> float:
        """``iqm_x - iqm_y``."""
        return self.iqm_x - self.iqm_y


def compare_runs(
    scores_x: np.ndarray | list[float], scores_y: np.ndarray | list[float]
) -> Comparison:
    """IQM of X, IQM of Y and P(X > Y) of two sets of per-run scores.

    Args:
        scores_x: Scores of X's runs (e.g. per training seed), ``(R_x,)`` or ``(R_x, T)``.
        scores_y: Scores of Y's runs, same tasks.

    Returns:
        A :class:`Comparison`.
    """
    return Comparison(iqm(scores_x), iqm(scores_y), improvement_probability(scores_x, scores_y))


def runaway_rate_upper_bound(runaways: int, episodes: int, confidence: float = 0.95) -> float:
    """Exact one-sided (Clopper–Pearson) upper confidence bound on a runaway rate.

    With ``runaways`` of ``episodes`` independent episodes running away, the rate ``p`` lies
    below the returned bound with probability ``confidence``: the ``confidence`` quantile of
    ``Beta(runaways + 1, episodes − runaways)`` (1 when every episode ran away). With no
    runaway it is ``1 − (1 − confidence)^(1/episodes)``: 0.139 for 0 of 20 episodes, close to
    the "rule of three" ``3 / episodes`` for many episodes at 95 %.

    Args:
        runaways: episodes that ran away, ``0 <= runaways <= episodes``.
        episodes: episodes observed, ``>= 1``.
        confidence: one-sided confidence level in (0, 1).

    Returns:
        The upper bound on the runaway rate, in (0, 1].

    Raises:
        ValueError: counts that are not integers with ``0 <= runaways <= episodes``,
            ``episodes >= 1``, or a confidence outside (0, 1).
    """
    from scipy.stats import beta

    if not (isinstance(runaways, int | np.integer) and isinstance(episodes, int | np.integer)):
        raise ValueError(f"counts must be integers, got {runaways!r} of {episodes!r}")
    if episodes < 1 or not 0 <= runaways <= episodes:
        raise ValueError(
            f"need 0 <= runaways <= episodes and episodes >= 1, got {runaways} of {episodes}"
        )
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if runaways == episodes:
        return 1.0
    return float(beta.ppf(confidence, runaways + 1, episodes - runaways))


def _paired_arrays(a: np.ndarray | list[float], b: np.ndarray | list[float]):
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.ndim != 1 or x.shape != y.shape or x.size == 0:
        raise ValueError(f"need two non-empty (S,) arrays of one shape; got {x.shape}, {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("scores must be finite")
    return x, y


def _check_bootstrap(reps: int, confidence: float) -> None:
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")


def paired_difference(
    a: np.ndarray | list[float],
    b: np.ndarray | list[float],
    reps: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """Mean of the per-seed differences ``a - b`` with a percentile bootstrap interval.

    For two methods scored on the same seeds (and episodes), e.g. a policy and its corrected
    version: the seeds are resampled with replacement (one generator seeded by ``seed``; the
    global NumPy RNG is never used) and the interval is the percentile interval of the
    resampled means. A constant difference gives the degenerate interval at it; one seed gives
    its difference as the estimate and both ends.

    Args:
        a: ``(S,)`` scores of A, one per seed.
        b: ``(S,)`` scores of B on the same seeds, in the same order.
        reps: Bootstrap replications.
        seed: Seed of the bootstrap.
        confidence: Size of the two-sided interval.

    Returns:
        ``(mean, low, high)`` of ``a - b``.

    Raises:
        ValueError: arrays not 1-D of one non-empty shape, non-finite scores, ``reps < 1``
            or a confidence outside (0, 1).
    """
    x, y = _paired_arrays(a, b)
    _check_bootstrap(reps, confidence)
    diff = x - y
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(reps, diff.size))].mean(axis=1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    mean = float(diff.mean())
    # the percentile interval of a constant difference is that constant up to rounding
    return mean, float(min(low, mean)), float(max(high, mean))


def mean_interval(
    values: np.ndarray | list[float], reps: int = 2000, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float, float]:
    """Mean of ``values`` with a percentile bootstrap interval (the values resampled).

    For a deterministic policy run once (no seeds to vary), its interval over episodes: the
    same bootstrap as :func:`paired_difference` against zero.

    Returns:
        ``(mean, low, high)``.

    Raises:
        ValueError: as :func:`paired_difference`.
    """
    x = np.asarray(values, dtype=float)
    return paired_difference(x, np.zeros_like(x), reps=reps, seed=seed, confidence=confidence)


def unpaired_difference(
    a: np.ndarray | list[float],
    b: np.ndarray | list[float],
    reps: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """Difference of the means of two independent sets of runs, with a bootstrap interval.

    Each side's runs are resampled with replacement, independently (stratified by method;
    seeded generator, no global RNG); for methods that do not share seeds.

    Args:
        a: ``(R_a,)`` scores of A.
        b: ``(R_b,)`` scores of B.
        reps: Bootstrap replications.
        seed: Seed of the bootstrap.
        confidence: Size of the two-sided interval.

    Returns:
        ``(mean(a) - mean(b), low, high)``.

    Raises:
        ValueError: an empty, non-1-D or non-finite array, ``reps < 1`` or a confidence
            outside (0, 1).
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.ndim != 1 or y.ndim != 1 or x.size == 0 or y.size == 0:
        raise ValueError(f"need two non-empty 1-D arrays; got {x.shape}, {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("scores must be finite")
    _check_bootstrap(reps, confidence)
    rng = np.random.default_rng(seed)
    mx = x[rng.integers(0, x.size, size=(reps, x.size))].mean(axis=1)
    my = y[rng.integers(0, y.size, size=(reps, y.size))].mean(axis=1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(mx - my, [tail, 100 - tail])
    mean = float(x.mean() - y.mean())
    return mean, float(min(low, mean)), float(max(high, mean))


def binomial_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided (Clopper–Pearson) confidence interval of a rate, ``k`` of ``n``.

    ``low`` is the ``(1 - confidence) / 2`` quantile of ``Beta(k, n - k + 1)`` (0 when
    ``k = 0``), ``high`` the ``(1 + confidence) / 2`` quantile of ``Beta(k + 1, n - k)`` (1
    when ``k = n``). For 0 of 20 at 95 %: ``(0, 0.168)``.

    Args:
        k: events (e.g. runaway episodes), ``0 <= k <= n``.
        n: trials (episodes), ``>= 1``.
        confidence: two-sided confidence level in (0, 1).

    Returns:
        ``(low, high)`` in [0, 1].

    Raises:
        ValueError: counts that are not integers with ``0 <= k <= n``, ``n >= 1``, or a
            confidence outside (0, 1).
    """
    from scipy.stats import beta

    if not (isinstance(k, int | np.integer) and isinstance(n, int | np.integer)):
        raise ValueError(f"counts must be integers, got {k!r} of {n!r}")
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got {k} of {n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    alpha = 1 - confidence
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high
