"""The tables and glued numbers of the correction-support chapter (08), under stable names.

Each variant's glue key comes from :data:`VARIANT_KEYS` (not from the label a table or a
legend shows), so renaming a variant in a figure does not break the prose.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from polycstr_lib.analysis.report import safe_range_phrase, step_range_text
from polycstr_lib.analysis.tables import ReaderTable, reader_table
from polycstr_lib.correction.choice import COST_TO_GO_VARIANT
from polycstr_lib.correction.tuning import CorrectionChoice, preferred_model, safe_ranges

__all__ = [
    "VARIANT_KEYS",
    "choice_glue",
    "choice_page_table",
    "choice_table",
    "path_error_glue",
    "path_errors",
    "per_agent_ranges",
    "r2_page_table",
    "ranges_page_table",
    "test_page_table",
    "test_table_glue",
]

#: Variant → glue key of the prose (``<key>_step``, ``<key>_worst``, ...).
VARIANT_KEYS = {
    "plain": "plain",
    "normalised": "norm",
    "trust region": "trust",
    "uncertainty": "unc",
}
#: Variants whose safe range the per-agent comparison sets against the plain step's.
WIDER_KEYS = {"trust region": "trust", "uncertainty": "unc"}


def path_errors(paths: pd.DataFrame) -> pd.DataFrame:
    """Median distance and median |prediction − simulator| at every step k of the paths."""
    paths = paths.assign(abs_error=(paths["predicted"] - paths["simulator"]).abs())
    return paths.groupby("k").agg(
        distance=("distance", "median"), abs_error=("abs_error", "median")
    )


def path_error_glue(by_k: pd.DataFrame) -> dict[str, float]:
    """The model's error at the data (k = 0), at the farthest step, and that distance."""
    return {
        "path_err_0": float(by_k["abs_error"].iloc[0]),
        "path_err_far": float(by_k["abs_error"].iloc[-1]),
        "path_far": float(by_k["distance"].iloc[-1]),
    }


def choice_table(choices: Mapping[str, CorrectionChoice]) -> pd.DataFrame:
    """Every scenario's per-variant choice: step, IQM, safe, safe range and worst IQM."""
    tables = []
    for scenario, choice in choices.items():
        per = choice.per_variant
        table = per.assign(
            step=[f"{x:g}" for x in per["step_size"]],
            safe_range=[
                step_range_text(lo, hi)
                for lo, hi in zip(per["safe_low"], per["safe_high"], strict=True)
            ],
        )[["step", "iqm", "safe", "safe_range", "worst_iqm"]]
        table = table.rename(columns={"safe_range": "safe range"})
        tables.append(
            table.assign(scenario=scenario).reset_index().set_index(["scenario", "variant"])
        )
    return pd.concat(tables).rename_axis(["scenario", "variant"])


def choice_page_table(choices: Mapping[str, CorrectionChoice]) -> ReaderTable:
    """:func:`choice_table` as chapter 08 shows it: a safe step as ✓ / ✗, IQMs to 0.1."""
    return reader_table(
        choice_table(choices),
        digits={"iqm": 1, "worst_iqm": 1},
        headers={"iqm": "IQM at the chosen step"},
    )


def choice_glue(choice: CorrectionChoice) -> dict[str, Any]:
    """The lead scenario's choice: each variant's step, worst IQM and safe range, the winner."""
    table = choice.per_variant
    values: dict[str, Any] = {}
    for name, key in VARIANT_KEYS.items():
        row = table.loc[name]
        decades = row["safe_decades"]
        values[f"{key}_step"] = f"{row['step_size']:g}"
        values[f"{key}_worst"] = float(row["worst_iqm"])
        values[f"{key}_decades"] = float(decades) if np.isfinite(decades) else "none"
        values[f"{key}_range"] = safe_range_phrase(row["safe_low"], row["safe_high"])
    values["chosen_variant"] = choice.variant
    values["chosen_step"] = choice.step_text()
    values["chosen_target"] = preferred_model(
        table, {"one-step": "normalised", "cost-to-go": COST_TO_GO_VARIANT}
    )
    return values


def per_agent_ranges(sweeps: Mapping[str, pd.DataFrame]) -> tuple[pd.DataFrame, dict[str, int]]:
    """Safe step-size ranges per (scenario, algorithm, variant), and how many got wider.

    Returns:
        ``(table, glue)``: the table the page shows (``safe range``, ``decades``,
        ``worst_iqm``) and the counts of (scenario, algorithm) pairs whose range is wider or
        narrower than the plain step's (no safe step size counts below one safe step size).
    """
    per_agent = pd.concat(
        {s: safe_ranges(sweep) for s, sweep in sweeps.items()}, names=["scenario"]
    )
    width = per_agent["safe_decades"].fillna(-1.0)
    pairs = per_agent.xs("plain", level="variant").index
    values = {"n_agent_pairs": len(pairs)}
    plain = width.xs("plain", level="variant").loc[pairs]
    for name, key in WIDER_KEYS.items():
        diff = width.xs(name, level="variant").loc[pairs] - plain
        values[f"n_{key}_wider"] = int((diff > 0).sum())
        values[f"n_{key}_narrower"] = int((diff < 0).sum())
    per_agent["safe range"] = [
        step_range_text(lo, hi)
        for lo, hi in zip(per_agent["safe_low"], per_agent["safe_high"], strict=True)
    ]
    table = per_agent[["safe range", "safe_decades", "worst_iqm"]].rename(
        columns={"safe_decades": "decades"}
    )
    return table, values


def ranges_page_table(table: pd.DataFrame) -> ReaderTable:
    """The per-agent table of :func:`per_agent_ranges` as chapter 08 shows it."""
    return reader_table(
        table,
        digits={"decades": 1, "worst_iqm": 1},
        missing={"decades": "no safe step size, so no range"},
    )


def r2_page_table(r2: Mapping[str, Mapping[str, float]]) -> ReaderTable:
    """Held-out R² of every cost model (columns) per scenario (rows), saying so."""
    return reader_table(
        pd.DataFrame(dict(r2)).T,
        digits=3,
        index_header="Scenario",
        caption="Held-out R² of each cost model (1 = a perfect fit on held-out episodes)",
    )


def test_page_table(test_table: pd.DataFrame, episodes: int | None = None) -> ReaderTable:
    """The test episodes' table of :func:`~polycstr_lib.correction.choice.test_choices`:
    per (scenario, algorithm, variant) the IQM, the worst episode, the runaways (of the
    ``runs × episodes`` test episodes when ``episodes`` is given) and the runs."""
    table = test_table.set_index(["scenario", "algorithm", "variant"])
    counts = {}
    if episodes is not None:
        table = table.assign(run_episodes=table["runs"] * episodes)
        counts["runaways"] = "run_episodes"
    return reader_table(
        table,
        columns=["iqm", "worst", "runaways", "runs"],
        digits={"iqm": 1, "worst": 1},
        counts=counts,
        labels={"none": "Uncorrected"},
    )


test_page_table.__test__ = False  # not a pytest test despite its name


def test_table_glue(
    test_table: pd.DataFrame, lead: str, algorithms: Sequence[str], chosen_variant: str
) -> dict[str, float]:
    """Each algorithm's test IQM on the lead scenario, uncorrected and with the chosen variant."""
    lead_test = test_table[test_table["scenario"] == lead].set_index(["algorithm", "variant"])
    values = {}
    for algorithm in algorithms:
        values[f"test_{algorithm}_base"] = float(lead_test.loc[(algorithm, "none"), "iqm"])
        values[f"test_{algorithm}_chosen"] = float(
            lead_test.loc[(algorithm, chosen_variant), "iqm"]
        )
    return values


test_table_glue.__test__ = False  # not a pytest test despite its name


def page_finding(
    choice: CorrectionChoice, test_table: pd.DataFrame, lead: str, algorithms: Sequence[str]
) -> str:
    """The page's opening finding (:func:`polycstr_lib.analysis.findings.support_finding`)."""
    from polycstr_lib.analysis.findings import support_finding

    shown = {**choice_glue(choice), **test_table_glue(test_table, lead, algorithms, choice.variant)}
    return support_finding(shown, algorithms)
