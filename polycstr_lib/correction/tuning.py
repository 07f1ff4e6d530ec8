"""The pooled selection rule of the ablations and the multi-step study (not of a "+" row).

A :class:`CorrectionVariant` names one kind of correction (descent method, cost model, K,
trust region, pessimism); its step size is swept over a grid. :func:`sweep_corrections` runs
every base agent uncorrected and corrected by every (variant, step size) on the same
*validation* episodes in one batched rollout and returns a tidy table;
:func:`choose_from_sweep` applies the selection rule to such a table and
:func:`choose_correction` turns its pick into a :class:`CorrectionChoice`. The results pages
and the correction-support chapter deploy by another rule, per (scenario, algorithm)
(:mod:`polycstr_lib.correction.deployment`); this one remains the rule of the ablations page
(:mod:`polycstr_lib.correction.ablations`) and of ``studies/multistep_correction.py``.

Selection rule (per variant): a step size is *safe* when no base run (algorithm, seed) is
made worse by it on validation: its mean and its worst-episode normalised reward are not
below the base's by more than ``tol`` points and it has no more runaways. Among the safe step
sizes the one with the largest interquartile mean (IQM) of the runs' validation means is
chosen; step sizes within ``tie_tol`` of the best count as ties and the smallest of them
wins (the least intervention). When no step size is safe, the largest IQM is chosen and
flagged ``safe = False``. The overall choice is the variant whose chosen setting has the
largest IQM among the safe ones (the same tie rule, ties going to the earlier variant).
The *safe range* of a variant is the longest run of consecutive safe step sizes of its grid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from polycstr_lib.correction.variants import CorrectionVariant
from polycstr_lib.toolkit.stats import iqm


@dataclass(frozen=True, eq=False)
class CorrectionChoice:
    """The setting :func:`choose_correction` chose on validation episodes."""

    variant: str  # name of the chosen variant
    step_size: float  # its chosen step size
    iqm: float  # IQM over the runs of their validation means at that setting
    safe: bool  # no run made worse by it (False: no step size of the grid was safe)
    setting: CorrectionVariant  # the chosen variant itself
    model: str  # key of its cost model
    policy_kwargs: dict[str, Any]  # keyword arguments of CorrectedPolicy (model aside)
    per_variant: pd.DataFrame  # choose_from_sweep's table: the chosen step of every variant

    def step_text(self) -> str:
        """The step size as the pages print it (``f"{step_size:g}"``)."""
        return f"{self.step_size:g}"

    def safe_text(self) -> str:
        """``'safe'``, or why not, as the pages print it."""
        return "safe" if self.safe else "not safe (no step size of its grid was)"


def _longest_safe_run(steps: np.ndarray, safe: np.ndarray) -> tuple[float, float]:
    best, run, best_span = (np.nan, np.nan), [], 0
    for eta, ok in zip(steps, safe, strict=True):
        run = [*run, eta] if ok else []
        if len(run) > best_span:
            best_span, best = len(run), (run[0], run[-1])
    return best


def _pick(table: pd.DataFrame, tie_tol: float) -> Any:
    """Index of the row chosen by the rule (safe first, largest IQM, ties → first row)."""
    pool = table[table["safe"]] if table["safe"].any() else table
    pool = pool[np.isfinite(pool["iqm"])]
    if pool.empty:
        return table.index[0]
    top = pool["iqm"].max()
    return pool[pool["iqm"] >= top - tie_tol].index[0]


def choose_from_sweep(
    sweep: pd.DataFrame, tie_tol: float = 0.5
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Apply the selection rule of the module docstring to a :func:`sweep_corrections` table.

    Args:
        sweep: the sweep (validation episodes).
        tie_tol: IQM differences up to this many points count as ties (→ smaller step size).

    Returns:
        ``(choice, per_variant)``: ``choice`` has ``variant``, ``step_size``, ``iqm``,
        ``safe`` of the overall choice; ``per_variant`` has one row per variant (index) with
        the chosen ``step_size``, its ``iqm``, ``safe``, ``runs_not_worse`` (of ``runs``), and
        the safe range ``safe_low``, ``safe_high`` (NaN when no step size is safe) and
        ``safe_decades`` (log10 of high / low; 0 for a single safe step), and ``worst_iqm``
        (the lowest IQM over the whole grid: how badly the variant can fail).

    Raises:
        ValueError: a table without base rows or corrected rows.
    """
    if not (sweep["variant"] == "none").any():
        raise ValueError("the sweep has no base rows (variant 'none')")
    corrected = sweep[sweep["variant"] != "none"]
    if corrected.empty:
        raise ValueError("the sweep has no corrected rows")
    rows = {}
    for name in dict.fromkeys(corrected["variant"]):
        part = corrected[corrected["variant"] == name]
        grid = (
            part.groupby("step_size", sort=True)
            .agg(
                iqm=("mean", iqm),
                runs_not_worse=("not_worse", "sum"),
                runs=("not_worse", "size"),
            )
            .reset_index()
        )
        grid["safe"] = grid["runs_not_worse"] == grid["runs"]
        chosen = grid.loc[_pick(grid, tie_tol)]
        low, high = _longest_safe_run(grid["step_size"].to_numpy(), grid["safe"].to_numpy())
        rows[name] = {
            "step_size": float(chosen["step_size"]),
            "iqm": float(chosen["iqm"]),
            "safe": bool(chosen["safe"]),
            "runs_not_worse": int(chosen["runs_not_worse"]),
            "runs": int(chosen["runs"]),
            "safe_low": float(low),
            "safe_high": float(high),
            "safe_decades": float(np.log10(high / low)) if np.isfinite(low) else float("nan"),
            "worst_iqm": float(grid["iqm"].min()),
        }
    per_variant = pd.DataFrame.from_dict(rows, orient="index")
    per_variant.index.name = "variant"
    best = per_variant.loc[_pick(per_variant, tie_tol)]
    choice = {
        "variant": str(best.name),
        "step_size": float(best["step_size"]),
        "iqm": float(best["iqm"]),
        "safe": bool(best["safe"]),
    }
    return choice, per_variant


def safe_ranges(sweep: pd.DataFrame, by: str = "algorithm") -> pd.DataFrame:
    """The safe step-size range of every variant, for each value of ``by`` on its own.

    :func:`choose_from_sweep` on the rows of one algorithm (or another column of the sweep):
    a step size is safe for that algorithm when none of *its* runs is made worse. A variant
    can thus be safe over a wide range for one base agent and nowhere for another.

    Args:
        sweep: a :func:`sweep_corrections` table (validation episodes).
        by: the column to split by.

    Returns:
        Indexed by (``by``, ``variant``): ``safe_low``, ``safe_high``, ``safe_decades`` (as
        in :func:`choose_from_sweep`; NaN when no step size is safe) and ``worst_iqm``.

    Raises:
        ValueError: ``by`` is not a column of the sweep.
    """
    if by not in sweep.columns:
        raise ValueError(f"the sweep has no column {by!r}")
    columns = ["safe_low", "safe_high", "safe_decades", "worst_iqm"]
    parts = {
        value: choose_from_sweep(part)[1][columns] for value, part in sweep.groupby(by, sort=False)
    }
    return pd.concat(parts, names=[by, "variant"])


def choose_correction(
    sweep: pd.DataFrame,
    variants: Mapping[str, CorrectionVariant],
    action_scale: Any,
    tie_tol: float = 0.5,
) -> CorrectionChoice:
    """The setting the selection rule picks from a validation sweep (module docstring).

    A pure function of the sweep: run :func:`sweep_corrections` on validation episodes first.

    Args:
        sweep: the validation table of :func:`sweep_corrections`.
        variants: name → variant, the variants the sweep ran.
        action_scale: σ_a of the scenario's data (:attr:`ScenarioTask.action_scale`).
        tie_tol: IQM ties (→ smaller step; between variants → the earlier one).

    Returns:
        The :class:`CorrectionChoice`.
    """
    picked, per_variant = choose_from_sweep(sweep, tie_tol)
    setting = variants[picked["variant"]]
    return CorrectionChoice(
        variant=picked["variant"],
        step_size=picked["step_size"],
        iqm=picked["iqm"],
        safe=picked["safe"],
        setting=setting,
        model=setting.model,
        policy_kwargs=setting.policy_kwargs(picked["step_size"], action_scale),
        per_variant=per_variant,
    )
