"""The ablations page's glued numbers and tables; glue names stable, not legend labels.

A sweep or a variant is renamed in a figure's legend without touching the prose: the glue
names come from :data:`SWEEP_KEYS` and :data:`VARIANT_KEYS` (keyed by what the library calls
the sweep, and by the cost model's key, never by the label shown).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from polycstr_lib.analysis.tables import ReaderTable, reader_table
from polycstr_lib.correction.ablations import COST_MODEL_LABELS, NEWTON_VARIANT, AblationResult
from polycstr_lib.reactor.scenarios import get_scenario

__all__ = [
    "SWEEP_KEYS",
    "VARIANT_KEYS",
    "expectile_glue",
    "expectile_table",
    "front_table",
    "header_glue",
    "settings_table",
    "test_glue",
    "test_table",
    "validation_glue",
]

#: Sweep of :func:`~polycstr_lib.correction.ablations.run_ablations` → glue key.
SWEEP_KEYS = {"cost model": "model", "Newton": "newton", "K": "k", "trust radius": "rho"}

_MODEL_KEYS = {
    "picnn": "picnn_one_step",
    "mlp": "nn_one_step",
    "picnn_ctg": "picnn_cost_to_go",
    "ensemble": "picnn_ensemble",
}
#: First-stage variant name → glue key (``pv_<key>_step`` etc.).
VARIANT_KEYS = {
    **{COST_MODEL_LABELS[model]: key for model, key in _MODEL_KEYS.items()},
    NEWTON_VARIANT: "newton",
}


def validation_glue(result: AblationResult) -> dict[str, Any]:
    """The validation numbers: the base, the overall choice, each sweep's and variant's."""
    summary = result.summary
    base = summary[summary["variant"] == "none"].iloc[0]
    values: dict[str, Any] = {
        "val_base_iqm": float(base["iqm"]),
        "overall": result.overall,
        "overall_step": f"{result.per_variant.loc[result.overall, 'step_size']:g}",
    }
    for sweep_name, row in result.chosen.iterrows():
        key = SWEEP_KEYS[sweep_name]
        values[f"val_{key}_variant"] = row["variant"]
        values[f"val_{key}_step"] = f"{row['step_size']:g}"
        values[f"val_{key}_iqm"] = float(row["iqm"])
        values[f"val_{key}_safe"] = "safe" if row["safe"] else "not safe"
    for name, row in result.per_variant.iterrows():
        key = VARIANT_KEYS[name]
        values[f"pv_{key}_step"] = f"{row['step_size']:g}"
        values[f"pv_{key}_iqm"] = float(row["iqm"])
        values[f"pv_{key}_worst"] = float(row["worst_iqm"])
    return values


def expectile_glue(tau_table: pd.DataFrame) -> dict[str, Any]:
    """Every τ's IQM with and without correction, and the best τ uncorrected."""
    values: dict[str, Any] = {
        f"tau_{row.tau:g}_{row.method}_iqm": float(row.iqm) for row in tau_table.itertuples()
    }
    plain = tau_table.loc[tau_table["method"] == "IQL", :].sort_values("iqm")
    values["tau_best"] = f"{plain.iloc[-1]['tau']:g}"
    return values


def test_glue(test: pd.DataFrame) -> dict[str, Any]:
    """The test numbers of :func:`~polycstr_lib.correction.ablations.test_chosen`."""
    values: dict[str, Any] = {}
    for row in test.itertuples():
        key = "base" if row.sweep == "base" else SWEEP_KEYS[row.sweep]
        values[f"test_{key}_iqm"] = float(row.iqm)
        values[f"test_{key}_worst"] = float(row.worst)
    return values


test_glue.__test__ = False  # not a pytest test despite its name


def header_glue(
    scenario: str, base_algorithm: str, n_seeds: int, n_val: int, n_test: int, tol: float
) -> dict[str, Any]:
    """The introduction's numbers: scenario, base algorithm, seeds, episodes and tolerance."""
    return {
        "scenario_title": get_scenario(scenario).description,
        "base_name": base_algorithm.upper(),
        "n_seeds": n_seeds,
        "n_val": n_val,
        "n_test": n_test,
        "tol": f"{tol:g}",
    }


def _settings(summary: pd.DataFrame) -> pd.DataFrame:
    return (
        summary.replace({"variant": {"none": "uncorrected"}})
        .set_index(["sweep", "variant"])
        .rename_axis(["sweep", "setting"])
    )


#: Digits of the ablation tables' numbers (step sizes span decades: ``%g``).
DIGITS = {"step_size": "g", "iqm": 1, "worst": 1, "latency_ms": 3}


def _counts(table: pd.DataFrame, episodes: int | None) -> tuple[pd.DataFrame, dict[str, str]]:
    """``table`` with the denominators of its counts: runaways of ``runs × episodes``
    episodes (when ``episodes`` is known), runs not worse of ``runs``."""
    counts = {}
    if episodes is not None and "runaways" in table:
        table = table.assign(run_episodes=table["runs"] * episodes)
        counts["runaways"] = "run_episodes"
    if "not_worse" in table:
        counts["not_worse"] = "runs"
    return table, counts


def settings_table(summary: pd.DataFrame, episodes: int | None = None) -> ReaderTable:
    """Every validation setting: step size, IQM over seeds, worst episode, runaways (of the
    ``runs × episodes`` validation episodes when ``episodes`` is given), runs not worse than
    the base."""
    table, counts = _counts(_settings(summary), episodes)
    columns = ["step_size", "iqm", "worst", "runaways", "not_worse"]
    return reader_table(table, columns=columns, digits=DIGITS, counts=counts)


def front_table(summary: pd.DataFrame, front: np.ndarray) -> ReaderTable:
    """The settings on the Pareto front of IQM against correction time."""
    columns = ["step_size", "iqm", "worst", "latency_ms"]
    return reader_table(_settings(summary.iloc[front]), columns=columns, digits=DIGITS)


def expectile_table(tau_table: pd.DataFrame, episodes: int | None = None) -> ReaderTable:
    """IQL at every τ, uncorrected and corrected, on validation."""
    table, counts = _counts(tau_table.set_index(["tau", "method"]), episodes)
    columns = ["iqm", "worst", "runaways", "not_worse"]
    return reader_table(table, columns=columns, digits=DIGITS, counts=counts)


def test_table(test: pd.DataFrame, episodes: int | None = None) -> ReaderTable:
    """The base and every sweep's preferred setting on the test episodes (runaways of the
    ``runs × episodes`` test episodes when ``episodes`` is given)."""
    table = test.replace({"variant": {"none": "uncorrected"}}).set_index("sweep")
    table, counts = _counts(table.rename(columns={"variant": "setting"}), episodes)
    columns = ["setting", "step_size", "iqm", "worst", "runaways", "runs"]
    return reader_table(table, columns=columns, digits=DIGITS, counts=counts)


test_table.__test__ = False  # not a pytest test despite its name


def finding(base_name: str, result: AblationResult, test: pd.DataFrame) -> str:
    """The page's opening finding (:func:`polycstr_lib.analysis.findings.ablation_finding`)."""
    from polycstr_lib.analysis.findings import ablation_finding

    return ablation_finding(base_name, {**validation_glue(result), **test_glue(test)})
