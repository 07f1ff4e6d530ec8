"""Draw the correction-support chapter's figures (data cover, model paths, step sweeps).

Sized for the book's text column and a phone (:mod:`polycstr_lib.analysis.style`): at most
two or three panels side by side, type ≥ 9 pt, algorithms in their book-wide colours, the
reward axis linear over the 0–100 band with failures in a shaded strip at its lower edge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from polycstr_lib.analysis.style import (
    FULL_WIDTH,
    book_style,
    failure_strip,
    finish_figure,
    grid_ticks,
    method_colour,
    number_text,
    pin_below,
    reward_band,
    series_colour,
    set_reward_axis,
    tidy_axis,
)
from polycstr_lib.correction.sweep import summarise_runs
from polycstr_lib.correction.task import ScenarioTask

__all__ = ["action_cover_figure", "path_figure", "step_sweep_figure"]


def action_cover_figure(tasks: Mapping[str, ScenarioTask], n_points: int = 3000) -> plt.Figure:
    """Each scenario's data actions (a random subset) and a box of one σ_a around their mean."""
    n = len(tasks)
    width = min(FULL_WIDTH, 1.2 + 2.3 * n)
    with book_style():
        fig, axes = plt.subplots(
            1,
            n,
            figsize=(width, 0.9 + (width - 1.2) / n),
            squeeze=False,
            sharey=True,
            layout="constrained",
        )
        for ax, (scenario, task) in zip(axes[0], tasks.items(), strict=True):
            actions = task.data.actions.numpy()
            rows = np.random.default_rng(0).choice(
                len(actions), size=min(n_points, len(actions)), replace=False
            )
            ax.scatter(
                actions[rows, 0],
                actions[rows, 1],
                s=2,
                alpha=0.3,
                lw=0,
                color=method_colour("Data"),
            )
            centre, s = actions.mean(0), task.action_scale
            ax.add_patch(
                plt.Rectangle(centre - s, 2 * s[0], 2 * s[1], fill=False, color="k", lw=1.2)
            )
            ax.set(xlim=(-1, 1), ylim=(-1, 1), title=scenario, aspect="equal")
            ax.set(xticks=[-0.5, 0.0, 0.5], yticks=[-0.5, 0.0, 0.5])  # none at the edges
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: number_text(v)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: number_text(v)))
        fig.supxlabel("initiator change (action units)")
        fig.supylabel("coolant change (action units)")
    return finish_figure(fig)


def path_figure(paths: pd.DataFrame, by_k: pd.DataFrame, scenario: str) -> plt.Figure:
    """Simulator and PICNN cost along the correction paths, and the median error against k."""
    simulator, model = "0.2", series_colour(0)
    with book_style():
        fig, axes = plt.subplots(1, 2, figsize=(FULL_WIDTH, 3.4), layout="constrained")
        for _, path in paths.groupby("path"):
            axes[0].plot(path["distance"], path["simulator"], color=simulator, alpha=0.3, lw=1)
            axes[0].plot(path["distance"], path["predicted"], color=model, alpha=0.4, lw=1)
        axes[0].plot([], [], color=simulator, label="simulator")
        axes[0].plot([], [], color=model, label="PICNN prediction")
        axes[0].set(
            xlabel="distance from the data (spreads)",
            ylabel="one-step cost",
            title=f"Correction paths, {scenario}",
        )
        axes[0].legend()
        axes[1].plot(by_k["distance"], by_k["abs_error"], marker="o", color=model)
        axes[1].set(
            xlabel="median distance (spreads)",
            ylabel="median |prediction − simulator|",
            title="Model error along the paths",
        )
        for ax in axes:
            tidy_axis(ax, "x")
            tidy_axis(ax, "y")
    return finish_figure(fig)


def step_sweep_figure(
    sweeps: Mapping[str, pd.DataFrame], names: Sequence[str], algorithms: Sequence[str]
) -> plt.Figure:
    """Validation IQM per algorithm against every variant's step size (dotted: uncorrected).

    One panel per (scenario, variant): with one scenario the variants fill two columns; with
    several, a row per variant and a column per scenario. All panels share the reward axis
    (linear over the 0–100 band, IQMs below it in the shaded strip at its edge).
    """
    summaries = {scenario: summarise_runs(sweep) for scenario, sweep in sweeps.items()}
    band = reward_band(np.concatenate([s["iqm"].to_numpy(float) for s in summaries.values()]))
    single = len(summaries) == 1
    if single:
        ncols = min(2, len(names))
        nrows = -(-len(names) // ncols)
    else:
        nrows, ncols = len(names), len(summaries)
    pinned = False
    with book_style():
        fig, axes = plt.subplots(
            nrows,
            ncols,
            sharey=True,
            squeeze=False,
            layout="constrained",
            figsize=(FULL_WIDTH, 0.9 + 2.2 * nrows),
        )
        panels = []
        for j, (scenario, summary) in enumerate(summaries.items()):
            for i, name in enumerate(names):
                ax = axes.flat[i] if single else axes[i, j]
                panels.append((ax, scenario, summary, name, i, j))
        for extra in axes.flat[len(panels) :]:
            extra.remove()
        for ax, scenario, summary, name, i, j in panels:
            edge = set_reward_axis(ax, band, label=None)
            steps = []
            for algorithm in algorithms:
                mine = summary["algorithm"] == algorithm
                part = summary[mine & (summary["variant"] == name)].sort_values("step_size")
                base = summary[mine & (summary["variant"] == "none")]
                colour = method_colour(algorithm)
                iqm = part["iqm"].to_numpy(float)
                base_iqm = float(base["iqm"].iloc[0])
                pinned |= bool((iqm < band[0]).any() or base_iqm < band[0])
                ax.plot(
                    part["step_size"],
                    pin_below(iqm, band[0], edge),
                    marker="o",
                    ms=4,
                    color=colour,
                    lw=1.6,
                    label=algorithm.upper(),
                )
                ax.axhline(pin_below([base_iqm], band[0], edge)[0], color=colour, ls=":", lw=1.2)
                steps += list(part["step_size"])
            grid_ticks(ax, "x", steps, log=True)
            if single:
                ax.set_title(f"{scenario}: {name}")
            else:
                if i == 0:
                    ax.set_title(scenario)
                if j == 0:
                    ax.set_ylabel(name)
            if single or i == len(names) - 1:
                ax.set_xlabel("step size")
        handles, labels = panels[0][0].get_legend_handles_labels()
        handles.append(Line2D([], [], color="0.3", ls=":", lw=1.2))
        labels.append("uncorrected (dotted)")
        if pinned:
            for ax, *_ in panels:
                failure_strip(ax, band)
            handles.append(plt.Rectangle((0, 0), 1, 1, color="0.88"))
            labels.append(f"shaded: below {number_text(band[0])}")
        fig.supylabel("validation IQM (normalised reward)")
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4))
    return finish_figure(fig)
