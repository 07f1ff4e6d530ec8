"""Learning curves on validation episodes, and the rule that turns them into budgets.

Each seed of an algorithm is trained once to the largest checkpoint; the training loop saves
its state at every checkpoint as the cached run of that budget (a snapshot *is* the shorter
run, :mod:`polycstr_lib.agents.runs`). Every snapshot is evaluated on *validation* episodes
(never on the test episodes that fill the tables), and the budget of an algorithm is the
earliest checkpoint that no later one beats in runaways or worst seed, confirmed by its next
two checkpoints within a tolerance relative to the scenario's hold-to-oracle range
(:class:`BudgetRule`).

Shapes: a curve is a long table with one row per (algorithm, scenario, seed, steps).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from polycstr_lib.agents.config import TrainConfig
from polycstr_lib.agents.runs import train_agent
from polycstr_lib.agents.sweeps import seeds_of, train_many
from polycstr_lib.analysis.report import with_interval
from polycstr_lib.analysis.style import (
    FULL_WIDTH,
    book_style,
    failure_strip,
    finish_figure,
    log_ticks,
    method_colour,
    number_text,
    reward_band,
    set_reward_axis,
)
from polycstr_lib.reactor.datasets import episode_seeds
from polycstr_lib.reactor.metrics import episode_metrics, score_scale
from polycstr_lib.reactor.nmpc import NMPCConfig
from polycstr_lib.reactor.rollout import rollout_side_by_side
from polycstr_lib.toolkit.stats import interval_estimates, probability_of_improvement

__all__ = [
    "BudgetRule",
    "curve_from_glue",
    "curve_glue",
    "hold_to_oracle_range",
    "with_interval",
    "aggregate_curve",
    "compare_variants",
    "summarise_variants",
    "evaluate_agents",
    "learning_curve",
    "plot_learning_curves",
]


#: Budget-rule outcomes: the budget is confirmed by its next two checkpoints; no checkpoint is
#: confirmed yet (the curve may still rise or settle, so it is extended); no checkpoint is
#: confirmed and the curve falls off the budget for good.
CONVERGED, UNCONFIRMED, FALLING = "converged", "unconfirmed", "falling"

#: Checkpoints after a budget that must confirm it.
CONFIRMING = 2


@dataclass(frozen=True)
class BudgetRule:
    """The earliest admissible checkpoint whose next two checkpoints confirm it.

    The tolerance ``t`` of a scenario, in normalised-reward points, is ``relative_tolerance``
    times the scenario's hold-to-oracle range (``ranges``: the NMPC oracle's mean normalised
    reward minus that of holding the initial inputs, on validation episodes), or ``tolerance``
    points for a scenario without a range. Per (algorithm, scenario), over the checkpoints in
    order:

    - *admissible*: no later checkpoint has fewer runaways, and none has a worst seed better
      by more than ``t`` (the IQM trims a diverging seed; the runaways and the worst seed do
      not). The last checkpoint is admissible.
    - *confirmed*: the next two checkpoints are within ``t`` of its IQM (neither better by
      more than ``t``, which would leave steps on the table, nor worse, which is a curve
      that has not settled).

    The budget is the earliest admissible confirmed checkpoint (status :data:`CONVERGED`).
    With none, the budget is the earliest admissible checkpoint that no later one beats by
    more than ``t`` (the last one qualifies): :data:`FALLING` when the last checkpoint is
    below it by more than ``t`` or has more runaways (the curve falls off it for good: the
    budget is early stopping on validation episodes), else :data:`UNCONFIRMED` (no two
    checkpoints in a row confirm it yet; such a curve is extended).
    """

    relative_tolerance: float = 0.05  # share of the hold-to-oracle range
    tolerance: float = 2.0  # points, for a scenario without a range
    ranges: Mapping[str, float] | None = None  # scenario -> hold-to-oracle range, points
    statistic: str = "iqm"  # column of :func:`aggregate_curve` the rule reads

    def points(self, scenario: str) -> float:
        """The tolerance on ``scenario`` in normalised-reward points.

        Raises:
            ValueError: A negative tolerance, or a range that is not finite and positive.
        """
        if self.tolerance < 0 or self.relative_tolerance < 0:
            raise ValueError(
                f"tolerance must be >= 0; got {self.tolerance} points, "
                f"{self.relative_tolerance} of the range"
            )
        if self.ranges is None or scenario not in self.ranges:
            return float(self.tolerance)
        span = float(self.ranges[scenario])
        if not (np.isfinite(span) and span > 0):
            raise ValueError(f"the hold-to-oracle range of {scenario} must be > 0; got {span}")
        return self.relative_tolerance * span

    def choose(self, aggregate: pd.DataFrame) -> pd.DataFrame:
        """Budget per (algorithm, scenario) from an :func:`aggregate_curve` table.

        Returns:
            Indexed by (algorithm, scenario): ``budget`` (steps), ``converged`` (bool: the
            budget is confirmed by its next two checkpoints), ``status`` (:data:`CONVERGED`,
            :data:`UNCONFIRMED` or :data:`FALLING`), ``best`` (the best checkpoint's
            aggregate) and ``tolerance`` (points).

        Raises:
            ValueError: A negative tolerance, a bad range, or an aggregate without the
                ``runaways`` and ``worst_seed`` columns.
        """
        missing = {self.statistic, "runaways", "worst_seed"} - set(aggregate.columns)
        if missing:
            raise ValueError(f"the aggregate lacks the columns {sorted(missing)}")
        rows = {}
        for key, group in aggregate.groupby(["algorithm", "scenario"], sort=True):
            t = self.points(str(key[1]))
            group = group.sort_values("steps")
            budget, status = _budget(
                group[self.statistic].to_numpy(float),
                group["runaways"].to_numpy(float),
                group["worst_seed"].to_numpy(float),
                t,
            )
            rows[key] = {
                "budget": int(group["steps"].iloc[budget]),
                "converged": status == CONVERGED,
                "status": status,
                "best": float(group[self.statistic].max()),
                "tolerance": t,
            }
        out = pd.DataFrame.from_dict(rows, orient="index")
        out.index = pd.MultiIndex.from_tuples(out.index, names=["algorithm", "scenario"])
        return out


def _budget(
    score: np.ndarray, runaways: np.ndarray, worst: np.ndarray, t: float
) -> tuple[int, str]:
    """Index of the budget among checkpoints in order, and its status (:class:`BudgetRule`)."""
    n = len(score)
    admissible = [
        i == n - 1
        or (runaways[i] <= runaways[i + 1 :].min() and worst[i] >= worst[i + 1 :].max() - t)
        for i in range(n)
    ]
    for i in range(n - CONFIRMING):
        later = score[i + 1 : i + 1 + CONFIRMING]
        if admissible[i] and bool(np.all(np.abs(later - score[i]) <= t)):
            return i, CONVERGED
    i = next(i for i in range(n) if admissible[i] and np.all(score[i + 1 :] <= score[i] + t))
    falls = score[-1] < score[i] - t or runaways[-1] > runaways[i]
    return i, FALLING if falls and i < n - 1 else UNCONFIRMED


def hold_to_oracle_range(
    scenario: str, episodes: int, references: tuple[float, float], split: str = "validation"
) -> float:
    """The scenario's hold-to-oracle range in normalised-reward points, on ``split`` episodes.

    :attr:`~polycstr_lib.reactor.metrics.ScoreScale.range` of the first ``episodes`` episodes
    of ``split``, with the oracle at its default horizon (its runs are cached).

    Raises:
        ValueError: ``episodes < 1``, or an oracle that does not beat holding on average.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1; got {episodes}")
    horizon = NMPCConfig().horizon
    return score_scale(scenario, episodes, *references, horizon=horizon, split=split).range


#: Columns of a curve that :func:`curve_glue` keeps (what the budget rule reads, per seed).
GLUED_COLUMNS = ("algorithm", "scenario", "seed", "steps", "mean", "min", "runaways")


def curve_glue(curve: pd.DataFrame, rule: BudgetRule) -> dict[str, Any]:
    """A learning curve and its rule as glued values, so that a later page can rerun the rule
    on a subset of the seeds (:func:`curve_from_glue`).

    Returns:
        ``curve_runs`` (one list per row of :data:`GLUED_COLUMNS`, plain Python values) and
        ``budget_rule`` (``relative_tolerance``, ``tolerance``, ``ranges``).
    """
    runs = [
        [str(a), str(sc), int(seed), int(k), float(mean), float(low), int(r)]
        for a, sc, seed, k, mean, low, r in curve[list(GLUED_COLUMNS)].itertuples(index=False)
    ]
    ranges = {str(k): float(v) for k, v in (rule.ranges or {}).items()}
    return {
        "curve_runs": runs,
        "budget_rule": {
            "relative_tolerance": float(rule.relative_tolerance),
            "tolerance": float(rule.tolerance),
            "ranges": ranges,
        },
    }


def curve_from_glue(values: Mapping[str, Any]) -> tuple[pd.DataFrame, BudgetRule] | None:
    """The curve and rule of :func:`curve_glue` from a page's glued values (None: not glued,
    e.g. a page built by an older version)."""
    if "curve_runs" not in values or "budget_rule" not in values:
        return None
    curve = pd.DataFrame(values["curve_runs"], columns=list(GLUED_COLUMNS))
    spec = values["budget_rule"]
    rule = BudgetRule(
        relative_tolerance=float(spec["relative_tolerance"]),
        tolerance=float(spec["tolerance"]),
        ranges=dict(spec.get("ranges") or {}),
    )
    return curve, rule


def evaluate_agents(
    policies: Sequence[Any],
    scenario: str,
    episodes: int,
    return_min: float,
    return_max: float,
    split: str = "validation",
) -> list[pd.DataFrame]:
    """Evaluates several policies on the same episodes in one batched rollout.

    Args:
        policies: Batched policies (``(B, 9) → (B, 2)``, an optional ``reset(obs)`` is
            called with the policy's own first observations), e.g. one-member agents' ``act``.
        scenario: Scenario name.
        episodes: Episodes per policy (the same env seeds for every policy).
        return_min: Worst data return (0 of the normalised reward).
        return_max: Best data return (100).
        split: 'validation' or 'test'.

    Returns:
        Per policy, the per-episode metrics of :func:`~polycstr_lib.reactor.metrics.episode_metrics`
        (``runaway`` among them: the temperature passed the runaway threshold).
    """
    traj = rollout_side_by_side(policies, scenario, episode_seeds(split, episodes))
    n = len(policies)
    metrics = episode_metrics(traj, return_min, return_max)
    return [
        metrics.iloc[i * episodes : (i + 1) * episodes].reset_index(drop=True) for i in range(n)
    ]


def _seed_row(metrics: pd.DataFrame, **keys: Any) -> dict[str, Any]:
    """One run's validation statistics (from :func:`evaluate_agents` metrics) with its keys."""
    score = metrics["normalised_reward"]
    return {
        **keys,
        "mean": float(score.mean()),
        "median": float(score.median()),
        "min": float(score.min()),
        "runaways": int(metrics["runaway"].sum()),
        "violation_episodes": int((metrics["violations"] > 0).sum()),
        "episodes": len(metrics),
    }


def learning_curve(
    algorithms: str | Sequence[str],
    scenarios: str | Sequence[str],
    seeds: Sequence[int],
    checkpoints: Sequence[int] | Mapping[str, Sequence[int]],
    episodes: int,
    references: Mapping[str, tuple[float, float]],
    processes: int | None = None,
    scheduler: str | None = None,
    precision: str = "float32",
    data: Mapping[str, Any] | None = None,
    progress: bool = True,
    extend_to: Mapping[str, int] | None = None,
    rule: BudgetRule | None = None,
    algorithm_seeds: Mapping[str, int] | None = None,
) -> pd.DataFrame:
    """Trains every seed once to its last checkpoint and scores every snapshot on validation.

    All runs are trained in one :func:`~polycstr_lib.agents.sweeps.train_many` call (seed
    ensembles on Dask workers), with a snapshot at every checkpoint; then each checkpoint's
    agents are evaluated together on the same validation episodes.

    A curve the ``rule`` leaves *unconfirmed* (no checkpoint has two later ones confirming
    it: it may still be rising or settling) is extended, on its own scenario only, by a checkpoint
    at twice its last one, as long as that stays within the algorithm's ``extend_to`` cap;
    the rule is applied again after every extension. An extension continues each ensemble
    from its kept final state (:mod:`polycstr_lib.agents.runs`), so it costs only the new steps.

    Args:
        algorithms: 'bc', 'iql', 'cql', or several.
        scenarios: Scenario name, or several.
        seeds: Training seeds.
        checkpoints: Budgets (gradient steps) at which each seed is evaluated, for every
            algorithm or per algorithm.
        episodes: Validation episodes per seed and checkpoint.
        references: Scenario → (worst, best) data return, the 0 and 100 of the score.
        processes: Local Dask workers (see :func:`~polycstr_lib.agents.sweeps.train_many`).
        scheduler: Address of an existing Dask scheduler.
        precision: Training precision.
        data: Scenario → training data (None: load the datasets).
        progress: Progress bars.
        extend_to: Algorithm → largest checkpoint an unconfirmed curve may be extended to
            (None or a missing algorithm: no extension).
        rule: The budget rule that decides which curves are unconfirmed (default
            :class:`BudgetRule`).
        algorithm_seeds: Algorithm → measure only the first N of ``seeds``
            (:func:`~polycstr_lib.agents.sweeps.seeds_of`; absent: all). The budget rule
            reads each curve over its own seeds.

    Returns:
        One row per (algorithm, scenario, seed, checkpoint): ``algorithm``, ``scenario``,
        ``seed``, ``steps``, ``mean``, ``median`` and ``min`` normalised reward over the
        episodes, ``runaways`` and ``violation_episodes`` (counts of episodes), ``episodes``,
        and ``extension`` (True for a checkpoint added because the curve was unconfirmed).

    Raises:
        ValueError: Empty or non-positive checkpoints, no seeds, no episodes, a scenario
            without references, a non-positive cap, or a seed count out of range.
    """
    algorithms = [algorithms] if isinstance(algorithms, str) else list(algorithms)
    scenarios = [scenarios] if isinstance(scenarios, str) else list(scenarios)
    per_algorithm = {
        a: sorted(
            {int(k) for k in (checkpoints[a] if isinstance(checkpoints, Mapping) else checkpoints)}
        )
        for a in algorithms
    }
    if any(not ks or ks[0] < 1 for ks in per_algorithm.values()) or not seeds or episodes < 1:
        raise ValueError("need positive checkpoints, at least one seed and one episode")
    missing = [s for s in scenarios if s not in references]
    if missing:
        raise ValueError(f"no (return_min, return_max) references for {missing}")
    caps = {a: int(k) for a, k in (extend_to or {}).items() if a in algorithms}
    if any(k < 1 for k in caps.values()):
        raise ValueError(f"extend_to caps must be positive; got {dict(extend_to or {})}")
    for a in algorithms:
        seeds_of(a, seeds, algorithm_seeds)  # a count out of range fails before any training
    rule = rule or BudgetRule()
    measure = {(a, sc): per_algorithm[a] for a in algorithms for sc in scenarios}
    train = (seeds, episodes, references, processes, scheduler, precision, data, progress)
    rows = _measure_curves(measure, *train, algorithm_seeds=algorithm_seeds)
    curve = pd.DataFrame(rows).assign(extension=False)
    while caps:
        budgets = rule.choose(aggregate_curve(curve))
        grow = {}
        for (a, sc), row in budgets.iterrows():
            last = int(curve.loc[(curve.algorithm == a) & (curve.scenario == sc), "steps"].max())
            if row["status"] == UNCONFIRMED and a in caps and 2 * last <= caps[a]:
                grow[(a, sc)] = [2 * last]
        if not grow:
            break
        rows = _measure_curves(grow, *train, algorithm_seeds=algorithm_seeds)
        curve = pd.concat([curve, pd.DataFrame(rows).assign(extension=True)], ignore_index=True)
    order = {a: i for i, a in enumerate(algorithms)}, {sc: i for i, sc in enumerate(scenarios)}
    rank = curve["algorithm"].map(order[0]) * len(scenarios) + curve["scenario"].map(order[1])
    return (
        curve.assign(_rank=rank)
        .sort_values(["_rank", "steps"], kind="stable")
        .drop(columns="_rank")
        .reset_index(drop=True)
    )


def curve_runs(
    measure: Mapping[tuple[str, str], Sequence[int]],
    seeds: Sequence[int],
    precision: str,
    algorithm_seeds: Mapping[str, int] | None = None,
) -> tuple[list[TrainConfig], list[int]]:
    """What measuring curves trains: every seed to its curve's last checkpoint, and the
    snapshot steps (the shorter checkpoints are snapshots of those runs, not runs of their own).

    Args:
        measure: (algorithm, scenario) → checkpoints.
        seeds: Training seeds.
        precision: Training precision.
        algorithm_seeds: Algorithm → only the first N of ``seeds`` (absent: all).
    """
    longest = [
        TrainConfig(a, sc, steps=max(ks), seed=s, precision=precision)
        for (a, sc), ks in measure.items()
        for s in seeds_of(a, seeds, algorithm_seeds)
    ]
    return longest, sorted({int(k) for ks in measure.values() for k in ks})


def _measure_curves(
    measure: Mapping[tuple[str, str], Sequence[int]],
    seeds: Sequence[int],
    episodes: int,
    references: Mapping[str, tuple[float, float]],
    processes: int | None,
    scheduler: str | None,
    precision: str,
    data: Mapping[str, Any] | None,
    progress: bool,
    algorithm_seeds: Mapping[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Trains (algorithm, scenario) → checkpoints in one sweep and scores every snapshot."""

    def config(a: str, scenario: str, seed: int, steps: int) -> TrainConfig:
        return TrainConfig(a, scenario, steps=steps, seed=seed, precision=precision)

    longest, snapshots = curve_runs(measure, seeds, precision, algorithm_seeds)
    train_many(
        longest,
        processes=processes,
        data=data,
        scheduler=scheduler,
        snapshot_steps=snapshots,
        progress=progress,
    )
    rows = []
    for (a, scenario), ks in measure.items():
        scenario_data = None if data is None else data.get(scenario)
        own = seeds_of(a, seeds, algorithm_seeds)
        for k in sorted(ks):
            agents = [
                train_agent(config(a, scenario, s, k), data=scenario_data, progress=False)[0]
                for s in own
            ]
            metrics = evaluate_agents(
                [x.act for x in agents], scenario, episodes, *references[scenario]
            )
            for s, m in zip(own, metrics, strict=True):
                rows.append(_seed_row(m, algorithm=a, scenario=scenario, seed=int(s), steps=k))
    return rows


def aggregate_curve(curve: pd.DataFrame, reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Across seeds, per (algorithm, scenario, steps): IQM of the seeds' mean normalised
    reward with a stratified-bootstrap 95 % interval, the worst seed and the runaways.

    Returns:
        Columns ``algorithm``, ``scenario``, ``steps``, ``iqm``, ``iqm_low``, ``iqm_high``,
        ``median``, ``worst_seed``, ``runaways``, ``seeds``.
    """
    rows = []
    for (algorithm, scenario, steps), group in curve.groupby(
        ["algorithm", "scenario", "steps"], sort=True
    ):
        est = interval_estimates({"x": group["mean"].to_numpy()}, reps=reps, seed=seed).loc["x"]
        rows.append(
            {
                "algorithm": algorithm,
                "scenario": scenario,
                "steps": int(steps),
                "iqm": est["iqm"],
                "iqm_low": est["iqm_low"],
                "iqm_high": est["iqm_high"],
                "median": est["median"],
                "worst_seed": float(group["mean"].min()),
                "runaways": int(group["runaways"].sum()),
                "seeds": int(len(group)),
            }
        )
    return pd.DataFrame(rows)


def plot_learning_curves(
    curve: pd.DataFrame,
    aggregate: pd.DataFrame,
    budgets: pd.DataFrame | None = None,
):
    """One panel per scenario (two columns): seeds thin, IQM bold with its interval, budgets
    dashed, each algorithm in its colour of :func:`~polycstr_lib.analysis.style.method_colour`.

    The reward axis is linear over the 0–100 band
    (:func:`~polycstr_lib.analysis.style.reward_band`); a seed's checkpoint that fails below
    it (normalised reward in the thousands below zero) is drawn as ▼ in the shaded strip at
    the axis's lower edge, so failed seeds stay visible without squeezing the others. Gradient
    steps are on a log axis with a few plain labels (``500``, ``1000``, ``20k``).

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    scenarios = list(dict.fromkeys(curve["scenario"]))
    algorithms = list(dict.fromkeys(curve["algorithm"]))
    band = reward_band(curve["mean"])
    ncols = 1 if len(scenarios) == 1 else 2
    nrows = -(-len(scenarios) // ncols)
    width = 4.6 if ncols == 1 else FULL_WIDTH
    with book_style():
        fig, axes = plt.subplots(
            nrows,
            ncols,
            figsize=(width, 0.6 + 2.9 * nrows),
            squeeze=False,
            sharey=True,
            layout="constrained",
        )
        flat = list(axes.flat)
        for extra in flat[len(scenarios) :]:
            extra.remove()
        pinned = False
        for ax, scenario in zip(flat, scenarios, strict=False):
            edge = set_reward_axis(ax, band, label=None)
            for algorithm in algorithms:
                runs = curve[(curve.scenario == scenario) & (curve.algorithm == algorithm)]
                if runs.empty:
                    continue
                color = method_colour(algorithm)
                for _, seed_run in runs.groupby("seed"):
                    seed_run = seed_run.sort_values("steps")
                    ax.plot(seed_run["steps"], seed_run["mean"], color=color, lw=0.8, alpha=0.5)
                off = runs[runs["mean"] < band[0]]
                if not off.empty:
                    pinned = True
                    ax.scatter(
                        off["steps"],
                        np.full(len(off), edge),
                        marker="v",
                        s=30,
                        color=color,
                        edgecolor="0.15",
                        lw=0.5,
                        zorder=4,
                        clip_on=False,
                    )
                agg = aggregate[
                    (aggregate.scenario == scenario) & (aggregate.algorithm == algorithm)
                ].sort_values("steps")
                ax.plot(
                    agg["steps"],
                    agg["iqm"],
                    color=color,
                    lw=2.2,
                    marker="o",
                    ms=4,
                    label=algorithm.upper(),
                )
                ax.fill_between(
                    agg["steps"], agg["iqm_low"], agg["iqm_high"], color=color, alpha=0.15, lw=0
                )
                if budgets is not None and (algorithm, scenario) in budgets.index:
                    ax.axvline(
                        budgets.loc[(algorithm, scenario), "budget"], color=color, ls="--", lw=1.2
                    )
            ax.set_xscale("log")
            steps = curve.loc[curve.scenario == scenario, "steps"]
            log_ticks(ax, "x", float(steps.min()), float(steps.max()), max_ticks=5)
            ax.set_title(scenario)
            ax.set_xlabel("gradient steps")
        for row in axes:
            row[0].set_ylabel("normalised reward (validation)")
        legend = {}
        for ax in flat[: len(scenarios)]:
            if pinned:
                failure_strip(ax, band)
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                legend.setdefault(label, handle)
        handles, labels = list(legend.values()), list(legend)
        if pinned:
            handles.append(
                plt.Line2D([], [], marker="v", ls="", color="0.4", markeredgecolor="0.15")
            )
            labels.append(f"seed below {number_text(band[0])}")
        fig.legend(handles, labels, loc="outside lower center", ncol=len(labels))
    return finish_figure(fig)


def compare_variants(
    variants: Mapping[str, Mapping[str, Any]],
    algorithms: Sequence[str],
    scenarios: Sequence[str],
    seeds: Sequence[int],
    steps: int,
    episodes: int,
    references: Mapping[str, tuple[float, float]],
    processes: int | None = None,
    scheduler: str | None = None,
    data: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Scores training variants (TrainConfig overrides) on validation episodes, per seed.

    Args:
        variants: Name → fields of :class:`~polycstr_lib.agents.config.TrainConfig` to override
            (e.g. ``{"minmax": {"action_scaling": "minmax"}}``; ``{}`` is the default).
        algorithms: Agents to train.
        scenarios: Scenarios.
        seeds: Training seeds.
        steps: Gradient steps of every run.
        episodes: Validation episodes per run.
        references: Scenario → (worst, best) data return.
        processes: Local Dask workers.
        scheduler: Address of an existing Dask scheduler.
        data: Scenario → training data (None: load the datasets).
        progress: Progress bars.

    Returns:
        One row per (variant, algorithm, scenario, seed) with the columns of
        :func:`learning_curve` plus ``variant``.

    Raises:
        ValueError: An override that is not a TrainConfig field, or missing references.
    """
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {
        "algorithm",
        "scenario",
        "seed",
        "steps",
    }
    for name, overrides in variants.items():
        unknown = set(overrides) - fields
        if unknown:
            raise ValueError(f"variant {name!r} overrides unknown fields {sorted(unknown)}")
    missing = [sc for sc in scenarios if sc not in references]
    if missing:
        raise ValueError(f"no (return_min, return_max) references for {missing}")
    configs = variant_runs(variants, algorithms, scenarios, seeds, steps)
    train_many(
        list(configs.values()),
        processes=processes,
        data=data,
        scheduler=scheduler,
        progress=progress,
    )
    rows = []
    for a in algorithms:
        for sc in scenarios:
            keys = [(v, s) for v in variants for s in seeds]
            agents = [
                train_agent(
                    configs[v, a, sc, s],
                    data=None if data is None else data.get(sc),
                    progress=False,
                )[0]
                for v, s in keys
            ]
            metrics = evaluate_agents([x.act for x in agents], sc, episodes, *references[sc])
            for (v, s), m in zip(keys, metrics, strict=True):
                rows.append(
                    _seed_row(m, variant=v, algorithm=a, scenario=sc, seed=int(s), steps=steps)
                )
    return pd.DataFrame(rows)


def variant_runs(
    variants: Mapping[str, Mapping[str, Any]],
    algorithms: Sequence[str],
    scenarios: Sequence[str],
    seeds: Sequence[int],
    steps: int,
) -> dict[tuple[str, str, str, int], TrainConfig]:
    """(variant, algorithm, scenario, seed) → the run :func:`compare_variants` trains."""
    return {
        (v, a, sc, s): TrainConfig(a, sc, steps=steps, seed=s, **overrides).resolved()
        for v, overrides in variants.items()
        for a in algorithms
        for sc in scenarios
        for s in seeds
    }


#: The training choices the curves page compares (name → TrainConfig overrides).
TRAINING_VARIANTS: dict[str, dict[str, str]] = {
    "min-max units": {},
    "env units": {"action_scaling": "none"},
    "std units": {"action_scaling": "std"},
    "reward std": {"reward_scaling": "std"},
}


def summarise_variants(
    table: pd.DataFrame, baseline: str, reps: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Per (algorithm, variant): IQM across seeds and scenarios with its interval, the worst
    seed, the runaways, and the probability that a run of the variant beats a run of the
    baseline (scenarios as tasks).

    Args:
        table: Output of :func:`compare_variants`.
        baseline: The variant the others are compared with.
        reps: Bootstrap replications.
        seed: Seed of the bootstrap.

    Returns:
        One row per (algorithm, variant).
    """
    rows = []
    for algorithm, part in table.groupby("algorithm", sort=True):
        matrices = {
            v: g.pivot(index="seed", columns="scenario", values="mean").to_numpy()
            for v, g in part.groupby("variant", sort=False)
        }
        est = interval_estimates(matrices, reps=reps, seed=seed)
        for v, g in part.groupby("variant", sort=False):
            p, low, high = probability_of_improvement(
                matrices[v], matrices[baseline], reps=reps, seed=seed
            )
            rows.append(
                {
                    "algorithm": algorithm,
                    "variant": v,
                    "iqm": est.loc[v, "iqm"],
                    "iqm_low": est.loc[v, "iqm_low"],
                    "iqm_high": est.loc[v, "iqm_high"],
                    "worst_seed": float(g["mean"].min()),
                    "worst_episode": float(g["min"].min()),
                    "runaways": int(g["runaways"].sum()),
                    f"P(> {baseline})": p,
                    "P low": low,
                    "P high": high,
                }
            )
    return pd.DataFrame(rows)
