"""The numbers the ablations page glues, under stable names that do not follow legend labels.

A sweep or a variant is renamed in a figure's legend without touching the prose: the glue
names come from :data:`SWEEP_KEYS` and :data:`VARIANT_KEYS` (keyed by what the library calls
the sweep, and by the cost model's key, never by the label shown).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from polycstr_lib.correction.ablations import COST_MODEL_LABELS, NEWTON_VARIANT, AblationResult

__all__ = [
    "SWEEP_KEYS",
    "VARIANT_KEYS",
    "expectile_glue",
    "test_glue",
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


def _finite_or_none(value: float) -> float | str:
    return float(value) if np.isfinite(value) else "none"
