"""Draw the ablations page's figures (validation sweeps, K and ρ, Pareto front, expectiles)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import FuncFormatter, NullFormatter, SymmetricalLogLocator

from polycstr_lib.correction.ablations import pareto_front

__all__ = [
    "expectile_figure",
    "pareto_figure",
    "reward_scale",
    "steps_and_radius_figure",
    "step_size_figure",
]


def reward_scale(ax: Any, xticks: Sequence[float] | None = None) -> None:
    """Symlog reward axis (linear within ±100) with labelled ticks; grid values as x ticks."""
    ax.set_yscale("symlog", linthresh=100)
    ax.yaxis.set_major_locator(
        SymmetricalLogLocator(linthresh=100, base=10, subs=[1, 1.5, 2, 3, 5, 7])
    )
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    if xticks is not None:
        ax.set_xticks(sorted(set(xticks)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())


def _base_iqm(summary: pd.DataFrame) -> float:
    return float(summary[summary["variant"] == "none"].iloc[0]["iqm"])


def step_size_figure(summary: pd.DataFrame, base_label: str) -> plt.Figure:
    """Validation IQM (solid) and worst episode (dashed) against η per cost model, and α."""
    base = _base_iqm(summary)
    first = summary[summary["sweep"].isin(["cost model", "Newton"])]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [2, 1]})
    panels = ((axes[0], "cost model", "step size η (data spreads)"),
              (axes[1], "Newton", "Newton step α"))  # fmt: skip
    for ax, sweep_name, xlabel in panels:
        for name, part in first[first["sweep"] == sweep_name].groupby("variant", sort=False):
            (line,) = ax.plot(part["step_size"], part["iqm"], marker="o", label=name)
            ax.plot(part["step_size"], part["worst"], marker="o", ls="--", alpha=0.5,
                    color=line.get_color())  # fmt: skip
        ax.axhline(base, color="k", lw=1, ls=":", label=f"{base_label} uncorrected")
        ax.set(xscale="log", xlabel=xlabel, ylabel="validation IQM (normalised reward)",
               title=sweep_name)  # fmt: skip
        reward_scale(ax, first.loc[first["sweep"] == sweep_name, "step_size"])
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def steps_and_radius_figure(summary: pd.DataFrame, base_label: str) -> plt.Figure:
    """Reward against K, correction time against K, reward against ρ (needs ``latency_ms``)."""
    base = _base_iqm(summary)
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    k_part = summary[summary["sweep"] == "K"].sort_values("K")
    rho_part = summary[summary["sweep"] == "trust radius"].sort_values("rho")
    panels = ((axes[0], k_part, "K", "correction steps K"),
              (axes[2], rho_part, "rho", "trust radius ρ (data spreads)"))  # fmt: skip
    for ax, part, x, xlabel in panels:
        ax.plot(part[x], part["iqm"], marker="o", label="IQM")
        ax.plot(part[x], part["worst"], marker="o", ls="--", alpha=0.6, label="worst episode")
        ax.axhline(base, color="k", lw=1, ls=":", label=f"{base_label} uncorrected")
        ax.set(xlabel=xlabel, ylabel="validation normalised reward")
        if x == "rho":
            ax.set_xscale("log")
        reward_scale(ax, part[x])
        ax.legend(fontsize=8)
    axes[1].plot(k_part["K"], k_part["latency_ms"], marker="o")
    axes[1].set(xlabel="correction steps K", ylabel="ms per action",
                title="Correction time against K")  # fmt: skip
    axes[0].set_title("Reward against K")
    axes[2].set_title("Reward against the trust radius")
    fig.tight_layout()
    return fig


def pareto_figure(summary: pd.DataFrame) -> tuple[plt.Figure, np.ndarray]:
    """Every setting's IQM against its correction time, and the Pareto front's rows."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    sns.scatterplot(summary, x="latency_ms", y="iqm", hue="sweep", style="sweep", s=60, ax=ax)
    front = pareto_front(summary["latency_ms"], summary["iqm"])
    ax.plot(summary["latency_ms"].iloc[front], summary["iqm"].iloc[front], color="k", lw=1,
            zorder=0, label="Pareto front")  # fmt: skip
    ax.set(xlabel="correction time per action (ms, this machine)",
           ylabel="validation IQM (normalised reward)")  # fmt: skip
    reward_scale(ax)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig, front


def expectile_figure(tau_table: pd.DataFrame) -> plt.Figure:
    """IQL's validation IQM and worst episode against τ, with and without correction."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for method, part in tau_table.groupby("method"):
        (line,) = ax.plot(part["tau"], part["iqm"], marker="o", label=f"{method}: IQM")
        ax.plot(part["tau"], part["worst"], marker="o", ls="--", alpha=0.5,
                color=line.get_color(), label=f"{method}: worst episode")  # fmt: skip
    ax.set(xlabel="expectile τ", ylabel="validation normalised reward",
           title="IQL against its expectile")  # fmt: skip
    reward_scale(ax, tau_table["tau"])
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
