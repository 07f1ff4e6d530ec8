"""Summarise the scenario datasets: size, returns, runaways, violations, clipped increments.

Each function returns the table a page shows and the numbers its prose cites, by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from polycstr_lib.reactor.datasets import (
    RUNAWAY_TEMPERATURE,
    dataset_id,
    normalised_reward,
    reference_comparison,
)
from polycstr_lib.reactor.rollout import Trajectories

__all__ = ["dataset_table", "reference_table"]

_REFERENCE_KEYS = ("stretch", "p10_all", "p10_without", "median_all", "median_without")


def dataset_table(
    data: Mapping[str, tuple[Trajectories, dict]],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One row per scenario dataset (``scenario → (trajectories, sidecar)``), and its glue.

    Returns:
        ``(table, values)``: the table indexed by scenario, and ``<scenario>_runaways``,
        ``_violating``, ``_clip_feed``, ``_clip_coolant`` (percent) and ``clip_max``.
    """
    rows, values = [], {}
    for name, (traj, side) in data.items():
        norm = normalised_reward(traj.returns, side["return_min"], side["return_max"])
        runaways = int((traj.states[:, :, 4] > RUNAWAY_TEMPERATURE).any(axis=1).sum())
        violating = int(traj.violations.any(axis=1).sum())
        clipped = side["rate_limited_fraction"]
        rows.append({
            "scenario": name, "dataset id": dataset_id(name), "episodes": traj.num_episodes,
            "transitions": traj.rewards.size, "R_min": side["return_min"],
            "R_max": side["return_max"], "median normalised reward": float(np.median(norm)),
            "runaway episodes (T > 450 K)": runaways,
            "episodes with a violation (T > 370 K)": violating,
            "F_I increments clipped (%)": 100 * clipped[0],
            "T_c increments clipped (%)": 100 * clipped[1],
        })  # fmt: skip
        values[f"{name}_runaways"] = runaways
        values[f"{name}_violating"] = violating
        values[f"{name}_clip_feed"] = 100 * clipped[0]
        values[f"{name}_clip_coolant"] = 100 * clipped[1]
    values["clip_max"] = float(max(max(s["rate_limited_fraction"]) for _, s in data.values()) * 100)
    return pd.DataFrame(rows).set_index("scenario"), values


def reference_table(
    data: Mapping[str, tuple[Trajectories, dict]],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """How the runaway episodes stretch each dataset's reward scale (:func:`reference_comparison`).

    Returns:
        ``(table, values)``: the table indexed by scenario, and ``<key>_<scenario>`` for the
        stretch, the 10th percentiles and the medians with and without runaways.
    """
    rows, values = [], {}
    for name, (traj, _) in data.items():
        cmp = reference_comparison(traj)
        for key in _REFERENCE_KEYS:
            values[f"{key}_{name}"] = cmp[key]
        p10 = f"{cmp['p10_all']:.1f} / {cmp['p10_without']:.1f}"
        rows.append({"scenario": name, "runaways": cmp["runaways"],
                     "R_min (all)": cmp["return_min"],
                     "R_min (no runaways)": cmp["return_min_without_runaways"],
                     "stretch": cmp["stretch"],
                     "p10 score (all / no runaways)": p10})  # fmt: skip
    return pd.DataFrame(rows).set_index("scenario"), values
