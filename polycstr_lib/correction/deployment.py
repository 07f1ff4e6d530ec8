"""Which correction to deploy, per (scenario, algorithm), from a validation sweep.

The deployment rule (:func:`deploy_from_sweep`) is a pure function of one scenario's
:func:`~polycstr_lib.correction.sweep.sweep_corrections` table (validation episodes, every
episode's score kept). It judges every algorithm on its own runs, and every setting by the
tail of each run, not by an aggregate that may trim the runs a bad setting wrecks.

*Candidates*: every (variant, step size) of the sweep, and η = 0 (variant ``'none'``: the base
policy, uncorrected), which is always admissible and is the fallback.

*Admissible*: a setting is admissible for an algorithm when, for **every** training seed of
that algorithm, paired with the base run of the same seed on the same validation episodes,

(a) it has no more runaways than the base: ``runaways ≤ base runaways``;
(b) its tail is not worse than the base's by more than ``margin``: ``tail ≥ base tail −
    margin``, where a run's *tail* is the mean normalised reward of its worst
    ``k = max(1, ⌊tail_fraction · n⌋)`` of ``n`` episodes (the worst 10 %, at least one
    episode).

*Margin* (:func:`tail_margin`), in points of normalised reward: ``margin`` when given; else
``RELATIVE_MARGIN`` (1 %) of ``score_range``, the scenario's hold-to-oracle range on the
validation episodes (the oracle's normalised reward minus that of holding the initial inputs,
:class:`~polycstr_lib.reactor.metrics.ScoreScale`), when that is given; else
``MARGIN_POINTS`` (1 point, for a sweep without a scale). A fixed point means little: holding
the inputs scores 96 on startup and -143 on grade up, so 1 point is a fifth of startup's
range and under 1 % of grade up's.

*Choice*: among the admissible settings the best *mean* wins, the mean over seeds of each
seed's mean score. Corrected settings within the tie tolerance of the best corrected mean
are ties (:func:`tie_tolerance`: ``tie_tol`` points when given, else ``RELATIVE_TIE``
(0.5 %) of ``score_range``, else ``TIE_POINTS``, 0.5 point); they go to the smaller step
size (less intervention); as step sizes of different variants are in different units, a tie
between variants goes to the earlier variant of the sweep, then to its smallest tied step.
The correction is deployed only where its mean is strictly above the base's (by more than
``min_gain``, default 0): η = 0 wins exact ties.
With no admissible corrected setting the fallback η = 0 is deployed.

Every :class:`Deployment` carries the exact (Clopper–Pearson) upper bound on the runaway rate
implied by the deployed setting's validation episodes, every seed pooled
(:func:`~polycstr_lib.toolkit.stats.runaway_rate_upper_bound`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from polycstr_lib.correction.safety import CorrectedPolicy
from polycstr_lib.correction.sweep import episode_scores
from polycstr_lib.correction.task import ScenarioTask
from polycstr_lib.correction.variants import ZERO_TUNING, CorrectionVariant, zero_tuning
from polycstr_lib.toolkit.stats import runaway_rate_upper_bound

__all__ = [
    "MARGIN_POINTS",
    "NO_CORRECTION",
    "RELATIVE_MARGIN",
    "RELATIVE_TIE",
    "TAIL_FRACTION",
    "TIE_POINTS",
    "Deployment",
    "deploy_from_sweep",
    "deployed_policy",
    "settings_table",
    "tail_margin",
    "tail_means",
    "tail_size",
    "tie_tolerance",
    "zero_tuning_policy",
]

#: Variant name of η = 0 (no correction), as in the sweep's base rows.
NO_CORRECTION = "none"
#: Share of a run's episodes that make its tail (the worst 10 %, at least one episode).
TAIL_FRACTION = 0.1
#: Default margin of the tail test, as a share of the scenario's hold-to-oracle range.
RELATIVE_MARGIN = 0.01
#: Default margin of the tail test, in points of normalised reward, when no range is given.
MARGIN_POINTS = 1.0
#: Default tie tolerance of the choice, as a share of the scenario's hold-to-oracle range.
RELATIVE_TIE = 0.005
#: Default tie tolerance of the choice, in points of normalised reward, when no range is given.
TIE_POINTS = 0.5


@dataclass(frozen=True)
class Deployment:
    """The correction deployed for one (scenario, algorithm), chosen on validation episodes."""

    scenario: str  # the scenario
    algorithm: str  # the base algorithm (as in the sweep, e.g. 'bc')
    variant: str  # name of the deployed variant; NO_CORRECTION ('none') for η = 0
    step_size: float  # its step size; 0.0 for no correction
    fallback: bool  # no corrected setting was admissible: η = 0 deployed by default
    reason: str  # why, in words
    mean: float  # validation mean of the deployed setting (mean over seeds of the seed means)
    base_mean: float  # the same for the base (η = 0)
    runaways: int  # validation runaways of the deployed setting, every seed
    episodes: int  # its validation episodes, every seed
    runaway_bound: float  # upper bound on its runaway rate (Clopper–Pearson, ``confidence``)
    confidence: float  # one-sided confidence of the bound
    admissible: int  # admissible settings, η = 0 included
    candidates: int  # settings judged, η = 0 included
    setting: CorrectionVariant | None = None  # the deployed variant (None for η = 0)
    margin: float = MARGIN_POINTS  # points a seed's tail could lose and stay admissible
    score_range: float | None = None  # hold-to-oracle range (points) the tolerances scale with
    tie_tol: float = TIE_POINTS  # points within the best corrected mean that tie

    @property
    def corrected(self) -> bool:
        """Whether a correction is deployed (step size > 0)."""
        return self.step_size > 0

    def step_text(self) -> str:
        """The step size as the pages print it (``'0'`` for no correction)."""
        return f"{self.step_size:g}"

    def text(self) -> str:
        """What is deployed, in words: ``'normalised, step size 0.3'``, ``'no correction'`` or
        ``'no correction: none admissible'``."""
        if self.corrected:
            return f"{self.variant}, step size {self.step_text()}"
        return "no correction: none admissible" if self.fallback else "no correction"


def tail_size(episodes: int, fraction: float = TAIL_FRACTION) -> int:
    """Episodes in a run's tail: ``max(1, ⌊fraction · episodes⌋)``.

    Raises:
        ValueError: ``episodes < 1`` or ``fraction`` outside (0, 1].
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"the tail fraction must lie in (0, 1], got {fraction}")
    return max(1, math.floor(fraction * episodes + 1e-9))  # 0.1 · 30 is 3.0000000000000004


def tail_means(scores: np.ndarray, fraction: float = TAIL_FRACTION) -> np.ndarray:
    """Each run's tail: the mean of its worst :func:`tail_size` episodes.

    Args:
        scores: ``(runs, episodes)`` normalised rewards.
        fraction: share of the episodes in the tail.

    Returns:
        ``(runs,)`` float array.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (runs, episodes), got shape {scores.shape}")
    k = tail_size(scores.shape[1], fraction)
    return np.sort(scores, axis=1)[:, :k].mean(axis=1)


def tail_margin(margin: float | None = None, score_range: float | None = None) -> float:
    """The margin of the tail test, in points of normalised reward (module docstring).

    Args:
        margin: the margin itself (points); wins over the defaults.
        score_range: the scenario's hold-to-oracle range in points (oracle minus held inputs).

    Returns:
        ``margin``; else ``RELATIVE_MARGIN · |score_range|``; else ``MARGIN_POINTS``.

    Raises:
        ValueError: a negative or non-finite margin, or a non-finite or zero range.
    """
    if margin is not None:
        if not (np.isfinite(margin) and margin >= 0):
            raise ValueError(f"margin must be a finite number >= 0, got {margin}")
        return float(margin)
    if score_range is not None:
        if not (np.isfinite(score_range) and score_range != 0):
            raise ValueError(f"score_range must be finite and non-zero, got {score_range}")
        return RELATIVE_MARGIN * abs(float(score_range))
    return MARGIN_POINTS


def tie_tolerance(tie_tol: float | None = None, score_range: float | None = None) -> float:
    """The tie tolerance of the choice, in points of normalised reward (module docstring).

    Returns:
        ``tie_tol``; else ``RELATIVE_TIE · |score_range|``; else ``TIE_POINTS``.

    Raises:
        ValueError: a negative or non-finite ``tie_tol``, or a non-finite or zero range.
    """
    if tie_tol is not None:
        if not (np.isfinite(tie_tol) and tie_tol >= 0):
            raise ValueError(f"tie_tol must be a finite number >= 0, got {tie_tol}")
        return float(tie_tol)
    if score_range is not None:
        if not (np.isfinite(score_range) and score_range != 0):
            raise ValueError(f"score_range must be finite and non-zero, got {score_range}")
        return RELATIVE_TIE * abs(float(score_range))
    return TIE_POINTS


def settings_table(
    sweep: pd.DataFrame, tail_fraction: float = TAIL_FRACTION, margin: float = MARGIN_POINTS
) -> pd.DataFrame:
    """Every (algorithm, setting) of a sweep with the tests of the deployment rule.

    Args:
        sweep: a :func:`~polycstr_lib.correction.sweep.sweep_corrections` table with its
            per-episode scores.
        tail_fraction: share of a run's episodes in its tail.
        margin: points by which a run's tail may fall below its base's.

    Returns:
        One row per (``algorithm``, ``variant``, ``step_size``), in the sweep's order, the
        base as variant ``'none'``: ``mean`` (over seeds of the seed means), ``seeds``,
        ``runaways`` and ``episodes`` (summed over seeds), ``extra_runaways`` (the most
        runaways above the base's of any seed), ``tail_gap`` (the lowest over seeds of the
        run's tail minus its base's), ``runaways_ok`` (a), ``tail_ok`` (b) and ``admissible``.

    Raises:
        ValueError: no per-episode scores, a run without its base run, or a setting that was
            not run for every seed of its algorithm.
    """
    runs = sweep[["algorithm", "seed", "variant", "step_size", "mean", "runaways", "episodes"]]
    runs = runs.assign(tail=tail_means(episode_scores(sweep), tail_fraction))
    base = runs[runs["variant"] == NO_CORRECTION].set_index(["algorithm", "seed"])
    if base.empty:
        raise ValueError(f"the sweep has no base rows (variant {NO_CORRECTION!r})")
    if base.index.duplicated().any():
        raise ValueError("the sweep has more than one base row for some (algorithm, seed)")
    paired = runs.join(
        base[["runaways", "tail"]].rename(columns=lambda c: f"base_{c}"), on=["algorithm", "seed"]
    )
    if paired["base_tail"].isna().any():
        raise ValueError("some runs have no base run of the same (algorithm, seed)")
    paired["extra_runaways"] = paired["runaways"] - paired["base_runaways"]
    paired["tail_gap"] = paired["tail"] - paired["base_tail"]
    table = (
        paired.groupby(["algorithm", "variant", "step_size"], sort=False)
        .agg(
            mean=("mean", "mean"),
            seeds=("seed", "nunique"),
            runs=("seed", "size"),
            runaways=("runaways", "sum"),
            episodes=("episodes", "sum"),
            extra_runaways=("extra_runaways", "max"),
            tail_gap=("tail_gap", "min"),
        )
        .reset_index()
    )
    seeds = base.reset_index().groupby("algorithm")["seed"].nunique()
    short = table[
        (table["runs"] != table["seeds"]) | (table["seeds"] != table["algorithm"].map(seeds))
    ]
    if not short.empty:
        first = short.iloc[0]
        raise ValueError(
            f"{first['algorithm']}: setting ({first['variant']}, {first['step_size']:g}) was "
            "not run exactly once for every seed of its base"
        )
    table["runaways_ok"] = table["extra_runaways"] <= 0
    table["tail_ok"] = table["tail_gap"] >= -margin
    table["admissible"] = table["runaways_ok"] & table["tail_ok"]
    return table.drop(columns="runs")


def _none_admissible_reason(tail_fraction: float) -> str:
    return (
        "no correction: none admissible (every step raised runaways or worsened the worst "
        f"{100 * tail_fraction:g} % for at least one seed)"
    )


def deploy_from_sweep(
    sweep: pd.DataFrame,
    variants: Mapping[str, CorrectionVariant],
    scenario: str,
    tail_fraction: float = TAIL_FRACTION,
    margin: float | None = None,
    score_range: float | None = None,
    tie_tol: float | None = None,
    min_gain: float = 0.0,
    confidence: float = 0.95,
) -> dict[str, Deployment]:
    """The deployment rule of the module docstring, for every algorithm of a sweep.

    A pure function of the sweep: run
    :func:`~polycstr_lib.correction.sweep.sweep_corrections` on validation episodes first.

    Args:
        sweep: the validation sweep of one scenario (its per-episode scores kept).
        variants: name → variant, the variants the sweep ran (the deployed one is kept).
        scenario: the scenario's name (recorded in each :class:`Deployment`).
        tail_fraction: share of a run's episodes in its tail (10 %).
        margin: points of normalised reward a seed's tail may lose (:func:`tail_margin`).
        score_range: the scenario's hold-to-oracle range in points (on validation
            episodes), for the default margin and tie tolerance.
        tie_tol: corrected settings within this many points of the best corrected mean tie
            (→ the earlier variant, then the smaller step size); default
            :func:`tie_tolerance`.
        min_gain: a correction is deployed only if its mean beats the base's by more than
            this (0: η = 0 wins exact ties).
        confidence: one-sided confidence of the runaway-rate bound.

    Returns:
        Algorithm → :class:`Deployment`, in the sweep's order.

    Raises:
        ValueError: a sweep without base rows or per-episode scores, unpaired runs, a variant
            missing from ``variants``, or a negative ``tie_tol`` or ``min_gain``.
    """
    if not min_gain >= 0:
        raise ValueError(f"min_gain must be >= 0, got {min_gain}")
    ties = tie_tolerance(tie_tol, score_range)
    points = tail_margin(margin, score_range)
    table = settings_table(sweep, tail_fraction, points)
    unknown = sorted(set(table["variant"]) - {NO_CORRECTION} - set(variants))
    if unknown:
        raise ValueError(f"variants {unknown} of the sweep are not in `variants`")
    out = {}
    for algorithm, part in table.groupby("algorithm", sort=False):
        base = part[part["variant"] == NO_CORRECTION].iloc[0]
        corrected = part[part["variant"] != NO_CORRECTION]
        admissible = corrected[corrected["admissible"]]
        chosen, reason = base, _none_admissible_reason(tail_fraction)
        if not admissible.empty:
            n = len(admissible) + 1
            reason = f"no correction: best mean among {n} admissible settings"
            pool = admissible[
                (admissible["mean"] >= admissible["mean"].max() - ties)
                & (admissible["mean"] > base["mean"] + min_gain)
            ]
            if not pool.empty:
                first = pool[pool["variant"] == pool["variant"].iloc[0]]
                chosen = first.loc[first["step_size"].idxmin()]
                reason = f"best mean among {n} admissible settings"
        name = str(chosen["variant"])
        runaways, episodes = int(chosen["runaways"]), int(chosen["episodes"])
        out[str(algorithm)] = Deployment(
            scenario=scenario,
            algorithm=str(algorithm),
            variant=name,
            step_size=float(chosen["step_size"]) if name != NO_CORRECTION else 0.0,
            fallback=admissible.empty,
            reason=reason,
            mean=float(chosen["mean"]),
            base_mean=float(base["mean"]),
            runaways=runaways,
            episodes=episodes,
            runaway_bound=runaway_rate_upper_bound(runaways, episodes, confidence),
            confidence=confidence,
            admissible=len(admissible) + 1,
            candidates=len(corrected) + 1,
            setting=None if name == NO_CORRECTION else variants[name],
            margin=points,
            score_range=None if score_range is None else float(score_range),
            tie_tol=ties,
        )
    return out


def deployed_policy(
    agent: Any, cost_models: Mapping[str, nn.Module], deployment: Deployment, action_scale: Any
) -> Any:
    """The "+" version of ``agent`` as deployed: the agent itself for η = 0 (its actions bit for
    bit), else a :class:`~polycstr_lib.correction.safety.CorrectedPolicy`.

    Args:
        agent: the base policy (``act(obs) → action``).
        cost_models: model key → cost model.
        deployment: what :func:`deploy_from_sweep` chose for the agent's algorithm.
        action_scale: σ_a of the scenario's data.
    """
    if not deployment.corrected or deployment.setting is None:
        return agent
    kwargs = deployment.setting.policy_kwargs(deployment.step_size, action_scale)
    return CorrectedPolicy(agent, cost_models[deployment.setting.model], **kwargs)


def zero_tuning_policy(
    agent: Any, cost_models: Mapping[str, nn.Module], task: ScenarioTask
) -> CorrectedPolicy:
    """``agent`` corrected by :data:`~polycstr_lib.correction.variants.ZERO_TUNING` (fixed
    before any rollout; σ_a from the task's data)."""
    return CorrectedPolicy(agent, cost_models[ZERO_TUNING.variant.model], **zero_tuning(task))
