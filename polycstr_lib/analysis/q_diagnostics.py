"""CQL's critics against the data's true returns, from the training logs of the curve runs.

CQL's critic loss is a TD term plus ``weight · penalty`` (logsumexp of Q over sampled actions
minus Q at the dataset actions). Its update logs, per interval of steps, the mean Q at the
dataset actions (``q_data_mean``), the TD loss, the unweighted penalty and the weight
(:mod:`polycstr_lib.agents.cql`). Two questions show on them: is Q at the data's own actions
near the data's true discounted return (Monte-Carlo, in the same reward scale), or pushed
below it; and does the penalty term, not the TD term, drive the critic.

Shapes: a diagnostics table has one row per (scenario, seed, logged step).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from polycstr_lib.agents import CQLConfig, Scalers
from polycstr_lib.agents.config import TrainConfig
from polycstr_lib.agents.data import TrainingTensors, discounted_returns
from polycstr_lib.agents.runs import train_agent
from polycstr_lib.analysis.style import FULL_WIDTH, book_style, finish_figure, log_ticks

__all__ = [
    "cql_diagnostics",
    "data_value",
    "diagnostics_finding",
    "diagnostics_summary",
    "plot_q_diagnostics",
]

#: Log columns written before the diagnostics had their present names.
_OLD_NAMES = {"cql_penalty": "conservative_penalty", "mean_q": "q_data_mean"}

COLUMNS = ["q_data_mean", "td_loss", "conservative_penalty", "conservative_weight"]


def data_value(data: Any, config: TrainConfig | None = None) -> float:
    """Mean over the data's transitions of their true discounted return, in the reward scale
    and with the γ of ``config`` (default: CQL's defaults): what the mean Q at the dataset
    actions estimates when the critic is right (batches are drawn uniformly)."""
    config = (config or TrainConfig("cql")).resolved()
    tensors = TrainingTensors.from_data(data)
    scalers = Scalers.from_data(tensors, config.reward_scaling, config.action_scaling)
    return float(discounted_returns(tensors, config.agent.gamma, scalers.reward_scale).mean())


def cql_diagnostics(
    curve: pd.DataFrame,
    data: Mapping[str, Any],
    precision: str = "float32",
) -> pd.DataFrame:
    """The logged critic diagnostics of every CQL run of a learning curve (cached runs, read
    back), with the data's true value beside them.

    The runs of one seed share their first steps bit for bit (a shorter run is a snapshot of
    the longer), so their logs are merged: each row is the mean over the logging interval that
    ends at its step (the interval since the last multiple of ``log_interval``).

    Args:
        curve: Output of :func:`~polycstr_lib.analysis.curves.learning_curve`.
        data: Scenario → training data (as passed to it).
        precision: The curve's training precision.

    Returns:
        Columns ``scenario``, ``seed``, ``step``, :data:`COLUMNS` (NaN where an older log
        lacks one) and ``true_value`` (:func:`data_value`); empty when the curve has no CQL.
    """
    runs = curve.loc[curve["algorithm"] == "cql", ["scenario", "seed", "steps"]]
    frames = []
    values: dict[str, float] = {}
    for scenario, seed, steps in runs.drop_duplicates().itertuples(index=False):
        config = TrainConfig("cql", scenario, steps=int(steps), seed=int(seed), precision=precision)
        _, log = train_agent(config, data=data.get(scenario), progress=False)
        log = log.rename(columns=_OLD_NAMES)
        if "conservative_weight" not in log:
            log["conservative_weight"] = CQLConfig().conservative_weight
        if scenario not in values:
            values[scenario] = data_value(data[scenario], config)
        frames.append(log.reindex(columns=["step", *COLUMNS]).assign(scenario=scenario, seed=seed))
    columns = ["scenario", "seed", "step", *COLUMNS, "true_value"]
    if not frames:
        return pd.DataFrame(columns=columns)
    table = pd.concat(frames, ignore_index=True).drop_duplicates(["scenario", "seed", "step"])
    table["true_value"] = table["scenario"].map(values)
    return table.sort_values(["scenario", "seed", "step"]).reset_index(drop=True)[columns]


def plot_q_diagnostics(table: pd.DataFrame):
    """Two panels per scenario (one row each): mean Q at the dataset actions per seed with the
    data's true discounted value dashed; and the TD loss against the weighted penalty
    (``weight · penalty``) per seed, on a symmetric log axis (the penalty's sampled
    logsumexp can fall below Q at the data's actions, so the term can be negative).

    Returns:
        The matplotlib figure.

    Raises:
        ValueError: An empty table (no CQL runs).
    """
    import matplotlib.pyplot as plt

    if table.empty:
        raise ValueError("no CQL runs to show: the curve has no CQL checkpoint")
    scenarios = list(dict.fromkeys(table["scenario"]))
    with book_style():
        fig, axes = plt.subplots(
            len(scenarios),
            2,
            figsize=(FULL_WIDTH, 0.6 + 2.6 * len(scenarios)),
            squeeze=False,
            layout="constrained",
        )
        for (ax_q, ax_loss), scenario in zip(axes, scenarios, strict=True):
            part = table[table["scenario"] == scenario]
            for _, run in part.groupby("seed"):
                ax_q.plot(run["step"], run["q_data_mean"], color="C0", lw=1, marker="o", ms=3)
                ax_loss.plot(run["step"], run["td_loss"], color="C1", lw=1, marker="o", ms=3)
                weighted = run["conservative_weight"] * run["conservative_penalty"]
                ax_loss.plot(run["step"], weighted, color="C3", lw=1, marker="s", ms=3)
            ax_q.axhline(part["true_value"].iloc[0], color="0.3", ls="--", lw=1.2)
            ax_q.set_ylabel("mean Q at data actions")
            ax_loss.set_yscale("symlog", linthresh=0.1)
            ax_loss.axhline(0.0, color="0.6", lw=0.8)
            ax_loss.set_ylabel("loss term")
            ax_q.set_title(f"{scenario}: Q against the true value")
            ax_loss.set_title(f"{scenario}: TD against weighted penalty")
            steps = part["step"].astype(float)
            for ax in (ax_q, ax_loss):
                ax.set_xscale("log")
                log_ticks(ax, "x", float(steps.min()), float(steps.max()), max_ticks=5)
                ax.set_xlabel("gradient steps")
        handles = [
            plt.Line2D([], [], color="C0", marker="o", label="mean Q at data actions"),
            plt.Line2D([], [], color="0.3", ls="--", label="data's true discounted return"),
            plt.Line2D([], [], color="C1", marker="o", label="TD loss"),
            plt.Line2D([], [], color="C3", marker="s", label="weight × penalty"),
        ]
        fig.legend(handles=handles, loc="outside lower center", ncol=2)
    return finish_figure(fig)


def diagnostics_summary(table: pd.DataFrame) -> dict[str, float]:
    """At each run's last logged step, means over seeds and scenarios: Q at the data's
    actions, the true value, the TD loss, the weighted penalty and the ratio of the weighted
    penalty's size to the TD loss (NaN where the log has no TD loss), for the page's prose."""
    last = table[table["step"] == table.groupby(["scenario", "seed"])["step"].transform("max")]
    weighted = last["conservative_weight"] * last["conservative_penalty"]
    ratio = weighted.abs() / last["td_loss"]
    return {
        "step": int(last["step"].max()),
        "q_data_mean": float(last["q_data_mean"].mean()),
        "true_value": float(last["true_value"].mean()),
        "td_loss": float(last["td_loss"].mean()),
        "weighted_penalty": float(weighted.mean()),
        "penalty_to_td": float(np.nanmean(ratio)) if ratio.notna().any() else float("nan"),
    }


def diagnostics_finding(table: pd.DataFrame, profile: str) -> str:
    """The page's sentence on CQL's critics (its numbers from :func:`diagnostics_summary`),
    or why there is no figure."""
    if table.empty:
        return f"CQL is not trained in the {profile} profile, so this section has no figure."
    s = diagnostics_summary(table)
    ratio = (
        "" if np.isnan(s["penalty_to_td"])
        else f"; the weighted penalty is {s['weighted_penalty']:.2f} against a TD loss of "
        f"{s['td_loss']:.2f} ({s['penalty_to_td']:.1f} times its size)"
    )  # fmt: skip
    return (
        f"At {s['step']:,} steps the critics' mean Q at the data's own actions is "
        f"{s['q_data_mean']:.2f}, against a true discounted return of {s['true_value']:.2f} "
        f"on the same transitions{ratio}."
    )
