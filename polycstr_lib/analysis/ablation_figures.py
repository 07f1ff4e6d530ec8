"""Draw the ablations page's figures (validation sweeps, K and ρ, Pareto front, expectiles).

Every reward axis is linear over the 0–100 band (:func:`~polycstr_lib.analysis.style.
reward_band`): a value below it is drawn in the shaded strip at the axis's lower edge, so that
a failure thousands of points down does not squeeze the differences near 100; when most
values fail, the band reaches down to the lowest. Methods keep their book-wide colours
(:func:`~polycstr_lib.analysis.style.method_colour`); sweeps and variants take the series
colours.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from polycstr_lib.analysis.style import (
    FULL_WIDTH,
    book_style,
    failure_strip,
    finish_figure,
    grid_ticks,
    method_colour,
    method_linestyle,
    number_text,
    pin_below,
    reward_band,
    series_colour,
    set_reward_axis,
    tidy_axis,
)
from polycstr_lib.correction.ablations import pareto_front

__all__ = [
    "expectile_figure",
    "pareto_figure",
    "reward_scale",
    "steps_and_radius_figure",
    "step_size_figure",
]

_MARKERS = ("o", "s", "D", "^", "P", "X", "v", "*")


def reward_scale(
    ax: Any,
    band: tuple[float, float],
    xticks: Sequence[float] | None = None,
    log: bool = False,
    label: str | None = "validation normalised reward",
) -> float:
    """Linear reward y axis on ``band`` with round ticks; a sweep's grid values as x ticks
    (on a log x axis when ``log``).

    Returns:
        The y where values below the band are drawn (:func:`~polycstr_lib.analysis.style.
        pin_below`).
    """
    edge = set_reward_axis(ax, band, label=label)
    if xticks is not None:
        grid_ticks(ax, "x", xticks, log=log)
    return edge


def _band(values: Iterable[Any]) -> tuple[float, float]:
    return reward_band(np.concatenate([np.ravel(np.asarray(v, float)) for v in values]))


def _pinned(values: Any, band: tuple[float, float], edge: float) -> tuple[np.ndarray, bool]:
    """``values`` with those below the band at ``edge``, and whether any was."""
    raw = np.asarray(values, float)
    return pin_below(raw, band[0], edge), bool((raw < band[0]).any())


def _strip_entry(band: tuple[float, float]) -> tuple[Any, str]:
    patch = plt.Rectangle((0, 0), 1, 1, color="0.88")
    return patch, f"shaded: below {number_text(band[0])}"


def _mark_failures(
    axes: Sequence[Any], band: tuple[float, float], handles: list, labels: list
) -> None:
    """Shades the strip below the band on ``axes`` and adds its legend entry."""
    for ax in axes:
        failure_strip(ax, band)
    handle, label = _strip_entry(band)
    handles.append(handle)
    labels.append(label)


def _base_summary(summary: pd.DataFrame) -> float:
    return float(summary[summary["variant"] == "none"].iloc[0]["iqm"])


def step_size_figure(summary: pd.DataFrame, base_label: str) -> plt.Figure:
    """Validation IQM (solid) and worst episode (dashed) against η per cost model, and α."""
    base = _base_summary(summary)
    first = summary[summary["sweep"].isin(["cost model", "Newton"])]
    band = _band([first["iqm"], [base]])
    variants = list(dict.fromkeys(first["variant"]))
    pinned = False
    with book_style():
        fig, axes = plt.subplots(
            1, 2, figsize=(FULL_WIDTH, 3.9), sharey=True, width_ratios=[2, 1], layout="constrained"
        )
        panels = (
            (axes[0], "cost model", "step size η (data spreads)"),
            (axes[1], "Newton", "Newton step α"),
        )
        for ax, sweep_name, xlabel in panels:
            part_of = first[first["sweep"] == sweep_name]
            edge = reward_scale(
                ax,
                band,
                part_of["step_size"],
                log=True,
                label="validation normalised reward" if ax is axes[0] else None,
            )
            for name, part in part_of.groupby("variant", sort=False):
                colour = series_colour(variants.index(name))
                iqm, low_iqm = _pinned(part["iqm"], band, edge)
                worst, low_worst = _pinned(part["worst"], band, edge)
                pinned |= low_iqm or low_worst
                ax.plot(part["step_size"], iqm, marker="o", color=colour, lw=1.8, label=name)
                ax.plot(
                    part["step_size"], worst, marker="v", ls="--", lw=1.0, alpha=0.7, color=colour
                )
            base_y, low_base = _pinned([base], band, edge)
            pinned |= low_base
            ax.axhline(base_y[0], color="k", lw=1.2, ls=":")
            ax.set(xlabel=xlabel, title=sweep_name)
        handles, labels = [], []
        for ax in axes:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                if label not in labels:
                    handles.append(handle)
                    labels.append(label)
        handles += [
            Line2D([], [], color="0.3", marker="o", lw=1.8),
            Line2D([], [], color="0.3", marker="v", ls="--", lw=1.0),
            Line2D([], [], color="k", ls=":", lw=1.2),
        ]
        labels += ["IQM", "worst episode", f"{base_label} uncorrected"]
        if pinned:
            _mark_failures(axes, band, handles, labels)
        fig.legend(handles, labels, loc="outside lower center", ncol=3)
    return finish_figure(fig)


def steps_and_radius_figure(summary: pd.DataFrame, base_label: str) -> plt.Figure:
    """Reward against K, reward against ρ, correction time against K (needs ``latency_ms``)."""
    base = _base_summary(summary)
    k_part = summary[summary["sweep"] == "K"].sort_values("K")
    rho_part = summary[summary["sweep"] == "trust radius"].sort_values("rho")
    band = _band([k_part["iqm"], rho_part["iqm"], [base]])
    colour = method_colour(base_label)
    pinned = False
    with book_style():
        fig, axes = plt.subplots(2, 2, figsize=(FULL_WIDTH, 6.0), layout="constrained")
        axes[1, 1].remove()
        panels = (
            (axes[0, 0], k_part, "K", "correction steps K", "Reward against K"),
            (
                axes[0, 1],
                rho_part,
                "rho",
                "trust radius ρ (data spreads)",
                "Reward against the trust radius",
            ),
        )
        for ax, part, x, xlabel, title in panels:
            edge = reward_scale(ax, band, part[x], log=x == "rho")
            iqm, low_iqm = _pinned(part["iqm"], band, edge)
            worst, low_worst = _pinned(part["worst"], band, edge)
            base_y, low_base = _pinned([base], band, edge)
            pinned |= low_iqm or low_worst or low_base
            ax.plot(part[x], iqm, marker="o", lw=1.8, color=colour, label="IQM")
            ax.plot(
                part[x],
                worst,
                marker="v",
                ls="--",
                lw=1.0,
                alpha=0.7,
                color=colour,
                label="worst episode",
            )
            ax.axhline(base_y[0], color="k", lw=1.2, ls=":", label=f"{base_label} uncorrected")
            ax.set(xlabel=xlabel, title=title)
        time_ax = axes[1, 0]
        time_ax.plot(k_part["K"], k_part["latency_ms"], marker="o", color=colour)
        time_ax.set(
            xlabel="correction steps K", ylabel="ms per action", title="Correction time against K"
        )
        grid_ticks(time_ax, "x", k_part["K"])
        tidy_axis(time_ax, "y")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        if pinned:
            _mark_failures((axes[0, 0], axes[0, 1]), band, handles, labels)
        # in the free cell, right of the time panel
        fig.legend(handles, labels, loc="center", bbox_to_anchor=(0.76, 0.27))
    return finish_figure(fig)


def pareto_figure(summary: pd.DataFrame) -> tuple[plt.Figure, np.ndarray]:
    """Every setting's IQM against its correction time, and the Pareto front's rows."""
    front = pareto_front(summary["latency_ms"], summary["iqm"])
    band = _band([summary["iqm"]])
    sweeps = list(dict.fromkeys(summary["sweep"]))
    with book_style():
        fig, ax = plt.subplots(figsize=(FULL_WIDTH, 4.2), layout="constrained")
        edge = reward_scale(ax, band, label="validation IQM (normalised reward)")
        iqm, pinned = _pinned(summary["iqm"], band, edge)
        for i, sweep in enumerate(sweeps):
            mine = (summary["sweep"] == sweep).to_numpy()
            ax.scatter(
                summary["latency_ms"][mine],
                iqm[mine],
                s=45,
                label=sweep,
                color=series_colour(i),
                marker=_MARKERS[i % len(_MARKERS)],
                edgecolor="white",
                lw=0.5,
                zorder=3,
            )
        ax.plot(
            summary["latency_ms"].iloc[front],
            iqm[front],
            color="k",
            lw=1,
            zorder=2,
            label="Pareto front",
        )
        ax.set_xlabel("correction time per action (ms, this machine)")
        tidy_axis(ax, "x")
        handles, labels = ax.get_legend_handles_labels()
        if pinned:
            _mark_failures([ax], band, handles, labels)
        fig.legend(handles, labels, loc="outside lower center", ncol=4)
    return finish_figure(fig), front


def expectile_figure(tau_table: pd.DataFrame) -> plt.Figure:
    """IQL's validation IQM and worst episode against τ, with and without correction."""
    band = _band([tau_table["iqm"]])
    pinned = False
    with book_style():
        fig, ax = plt.subplots(figsize=(5.6, 3.9), layout="constrained")
        edge = reward_scale(ax, band, tau_table["tau"])
        for method, part in tau_table.groupby("method"):
            part = part.sort_values("tau")
            style = {"color": method_colour(method), "ls": method_linestyle(method)}
            iqm, low_iqm = _pinned(part["iqm"], band, edge)
            worst, low_worst = _pinned(part["worst"], band, edge)
            pinned |= low_iqm or low_worst
            ax.plot(part["tau"], iqm, marker="o", lw=2.0, label=f"{method}: IQM", **style)
            ax.plot(
                part["tau"],
                worst,
                marker="v",
                lw=1.0,
                alpha=0.7,
                label=f"{method}: worst episode",
                **style,
            )
        ax.set(xlabel="expectile τ", title="IQL against its expectile")
        handles, labels = ax.get_legend_handles_labels()
        if pinned:
            _mark_failures([ax], band, handles, labels)
        fig.legend(handles, labels, loc="outside lower center", ncol=2)
    return finish_figure(fig)
