"""Draw the correction-support chapter's figures (data cover, model paths, step sweeps)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from polycstr_lib.correction.sweep import summarise_runs
from polycstr_lib.correction.task import ScenarioTask

__all__ = ["action_cover_figure", "path_figure", "step_sweep_figure"]


def action_cover_figure(tasks: Mapping[str, ScenarioTask], n_points: int = 3000) -> plt.Figure:
    """Each scenario's data actions (a random subset) and a box of one σ_a around their mean."""
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.8), squeeze=False)
    for ax, (scenario, task) in zip(axes[0], tasks.items(), strict=True):
        actions = task.data.actions.numpy()
        rows = np.random.default_rng(0).choice(
            len(actions), size=min(n_points, len(actions)), replace=False
        )
        ax.scatter(actions[rows, 0], actions[rows, 1], s=2, alpha=0.3)
        centre, s = actions.mean(0), task.action_scale
        ax.add_patch(plt.Rectangle(centre - s, 2 * s[0], 2 * s[1], fill=False, color="k", lw=1))
        ax.set(xlim=(-1, 1), ylim=(-1, 1), xlabel="initiator change (action units)",
               ylabel="coolant change (action units)", title=scenario)  # fmt: skip
    fig.tight_layout()
    return fig


def path_figure(paths: pd.DataFrame, by_k: pd.DataFrame, scenario: str) -> plt.Figure:
    """Simulator and PICNN cost along the correction paths, and the median error against k."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for _, path in paths.groupby("path"):
        axes[0].plot(path["distance"], path["simulator"], color="C0", alpha=0.3, lw=1)
        axes[0].plot(path["distance"], path["predicted"], color="C1", alpha=0.3, lw=1)
    axes[0].plot([], [], color="C0", label="simulator")
    axes[0].plot([], [], color="C1", label="PICNN prediction")
    axes[0].set(xlabel="distance from the data's action (data spreads)", ylabel="one-step cost",
                title=f"Correction paths, {scenario}")  # fmt: skip
    axes[0].legend(fontsize=8)
    axes[1].plot(by_k["distance"], by_k["abs_error"], marker="o")
    axes[1].set(xlabel="median distance (data spreads)", ylabel="median |prediction - simulator|",
                title="Model error along the paths")  # fmt: skip
    fig.tight_layout()
    return fig


def step_sweep_figure(
    sweeps: Mapping[str, pd.DataFrame], names: Sequence[str], algorithms: Sequence[str]
) -> plt.Figure:
    """Validation IQM per algorithm against every variant's step size (dotted: uncorrected)."""
    fig, axes = plt.subplots(len(sweeps), len(names), sharey="row", squeeze=False,
                             figsize=(3.3 * len(names), 3.2 * len(sweeps)))  # fmt: skip
    for row, (scenario, sweep) in zip(axes, sweeps.items(), strict=True):
        summary = summarise_runs(sweep)
        for ax, name in zip(row, names, strict=True):
            for i, algorithm in enumerate(algorithms):
                mine = summary["algorithm"] == algorithm
                part = summary[mine & (summary["variant"] == name)]
                base = summary[mine & (summary["variant"] == "none")]
                ax.plot(part["step_size"], part["iqm"], marker="o", color=f"C{i}",
                        label=algorithm.upper())  # fmt: skip
                ax.axhline(float(base["iqm"].iloc[0]), color=f"C{i}", ls=":", lw=1)
            ax.set(xscale="log", title=f"{scenario}: {name}", xlabel="step size")
            ax.set_yscale("symlog", linthresh=100)
        row[0].set_ylabel("validation IQM (normalised reward)")
        row[0].legend(fontsize=8)
    fig.tight_layout()
    return fig
