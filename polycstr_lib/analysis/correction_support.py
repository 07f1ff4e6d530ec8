"""The tables and glued numbers of the correction-support chapter (08), under stable names.

The chapter studies the correction the results pages deploy: the same variants, grids, cost
models and rule (:func:`~polycstr_lib.correction.choice.deploy_results_correction`, per
(scenario, algorithm), on validation episodes only). Every count of the chapter ("deployed
for k of n pairs", admissible ranges) is read from those validation choices; the test
episodes are run once, for the deployed setting of each (scenario, algorithm) and its base
only (:func:`test_deployed`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from polycstr_lib.analysis.report import step_range_text
from polycstr_lib.analysis.tables import ReaderTable, reader_table
from polycstr_lib.correction.choice import deploy_results_correction
from polycstr_lib.correction.deployment import (
    NO_CORRECTION,
    TAIL_FRACTION,
    Deployment,
    deployed_policy,
    settings_table,
)
from polycstr_lib.correction.task import ScenarioTask
from polycstr_lib.correction.variants import DEFAULT_VARIANTS
from polycstr_lib.reactor.metrics import evaluate_policy, score_scale
from polycstr_lib.toolkit.stats import iqm

__all__ = [
    "RANGE_LABELS",
    "SupportDeployments",
    "admissible_ranges",
    "deploy_scenarios",
    "deployment_glue",
    "deployment_page_table",
    "page_finding",
    "path_error_glue",
    "path_errors",
    "r2_page_table",
    "ranges_page_table",
    "test_deployed",
    "test_glue",
    "test_page_table",
    "variant_names_text",
]

#: Variants whose admissible range is set against the plain step's (same grid units), and
#: how the prose names them.
RANGE_LABELS = {"trust region": "the trust region", "uncertainty": "the uncertainty-aware step"}


@dataclass(frozen=True, eq=False)
class SupportDeployments:
    """The deployment of every (scenario, algorithm), with what it was chosen from."""

    deployments: dict[str, dict[str, Deployment]]  # scenario → algorithm → deployment
    cost_models: dict[str, dict[str, nn.Module]]  # scenario → model key → cost model
    sweeps: dict[str, pd.DataFrame]  # scenario → its validation sweep


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


def deploy_scenarios(
    agents: Mapping[str, Mapping[tuple[str, int], Any]],
    tasks: Mapping[str, ScenarioTask],
    variant_names: Sequence[str],
    correction_steps: int,
    cost_steps: int,
    validation_episodes: int,
    nmpc_horizon: int,
) -> SupportDeployments:
    """Every scenario's correction, chosen as its results page chooses it.

    Args:
        agents: scenario → ``(algorithm, seed) → agent``.
        tasks: scenario → its task (the order of the pages' tables).
        variant_names, correction_steps, cost_steps, validation_episodes, nmpc_horizon: as
            the results pages' parameters of the same names (the tolerances are shares of
            the hold-to-oracle range on the validation episodes, as there).

    Returns:
        The :class:`SupportDeployments` of
        :func:`~polycstr_lib.correction.choice.deploy_results_correction` on every scenario.
    """
    deployments, models, sweeps = {}, {}, {}
    for scenario, task in tasks.items():
        scale = score_scale(scenario, validation_episodes, *task.return_bounds, nmpc_horizon)
        deployments[scenario], models[scenario], sweeps[scenario] = deploy_results_correction(
            agents[scenario],
            task,
            variant_names,
            correction_steps,
            cost_steps,
            validation_episodes,
            scale,
        )
    return SupportDeployments(deployments, models, sweeps)


def _rows(deployments: Mapping[str, Mapping[str, Deployment]]) -> list[Deployment]:
    return [d for per in deployments.values() for d in per.values()]


def deployment_page_table(deployments: Mapping[str, Mapping[str, Deployment]]) -> ReaderTable:
    """What each (scenario, algorithm) deploys, chosen on validation, and why."""
    table = pd.DataFrame(
        [
            {
                "scenario": d.scenario,
                "algorithm": d.algorithm.upper(),
                "deployed": d.text(),
                "validation_mean": d.mean,
                "base_mean": d.base_mean,
                "admissible": f"{d.admissible} of {d.candidates}",
                "runaways": f"{d.runaways} of {d.episodes}",
                "bound": d.runaway_bound,
                "why": d.reason,
            }
            for d in _rows(deployments)
        ]
    ).set_index(["scenario", "algorithm"])
    return reader_table(
        table,
        # short headers: with the scenario column, the longer ones overflowed a 1280-px page
        headers={
            "deployed": "Deployed",
            "validation_mean": "Mean",
            "base_mean": "Base mean",
            "admissible": "Admissible",
            "runaways": "Runaways",
            "bound": "Runaway rate ≤ (95 %)",
            "why": "Why",
        },
        digits={"validation_mean": 1, "base_mean": 1, "bound": 3},
        caption="Chosen on validation episodes: every mean, count and bound here is validation's",
    )


def deployment_glue(deployments: Mapping[str, Mapping[str, Deployment]]) -> dict[str, Any]:
    """Counts over the (scenario, algorithm) pairs, all read from the validation choices.

    Returns:
        ``n_pairs``, ``n_corrected`` (a correction deployed), ``n_kept`` (η = 0),
        ``n_fallback`` (η = 0 because none was admissible), ``deployed_variants`` (each
        deployed variant with its count, most often first: ``'normalised in 2, plain in
        1'``, or ``'none'``), ``deploy_tail`` (``'10 %'``) and ``deploy_margin`` (points).
    """
    rows = _rows(deployments)
    if not rows:
        raise ValueError("no deployments: need at least one (scenario, algorithm)")
    corrected = [d.variant for d in rows if d.corrected]
    counts = pd.Series(corrected, dtype=object).value_counts(sort=False)
    counts = counts.iloc[np.argsort(-counts.to_numpy(), kind="stable")]
    return {
        "n_pairs": len(rows),
        "n_corrected": len(corrected),
        "n_kept": len(rows) - len(corrected),
        "n_fallback": sum(d.fallback for d in rows),
        "deployed_variants": ", ".join(f"{v} in {n}" for v, n in counts.items()) or "none",
        "deploy_tail": f"{100 * TAIL_FRACTION:g} %",
        "deploy_margin": ", ".join(dict.fromkeys(f"{d.margin:g}" for d in rows)),
    }


def _longest_run(steps: np.ndarray, ok: np.ndarray) -> tuple[float, float]:
    """Ends of the longest run of consecutive ``ok`` grid points (NaN, NaN when none)."""
    best, start, span = (np.nan, np.nan), None, 0
    for i, good in enumerate(ok):
        start = (i if start is None else start) if good else None
        if start is not None and i - start + 1 > span:
            span, best = i - start + 1, (float(steps[start]), float(steps[i]))
    return best


def admissible_ranges(
    sweeps: Mapping[str, pd.DataFrame], deployments: Mapping[str, Mapping[str, Deployment]]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per (scenario, algorithm, variant), which step sizes the deployment rule admits.

    Each scenario's settings are judged by
    :func:`~polycstr_lib.correction.deployment.settings_table` with the margin its deployments
    used, so a step size is admissible here exactly when the rule could have deployed it.

    Returns:
        ``(table, glue)``: the table (``admissible`` ``'k of n'`` step sizes, ``range``: the
        longest run of consecutive admissible step sizes, ``decades``: log10 of its ends'
        ratio, NaN when none, ``worst_mean``: the lowest validation mean over the grid) and
        ``range_comparison``: for each variant of :data:`RANGE_LABELS` in the sweeps, in how
        many pairs its range is wider or narrower than the plain step's (no admissible step
        size counts below one).
    """
    rows = []
    for scenario, sweep in sweeps.items():
        margin = next(iter(deployments[scenario].values())).margin
        table = settings_table(sweep, TAIL_FRACTION, margin)
        table = table[table["variant"] != NO_CORRECTION]
        for (algorithm, variant), part in table.groupby(["algorithm", "variant"], sort=False):
            part = part.sort_values("step_size")
            ok = part["admissible"].to_numpy(bool)
            low, high = _longest_run(part["step_size"].to_numpy(float), ok)
            rows.append(
                {
                    "scenario": scenario,
                    "algorithm": str(algorithm).upper(),
                    "variant": variant,
                    "admissible": f"{int(ok.sum())} of {len(ok)}",
                    "range": step_range_text(low, high),
                    "decades": np.log10(high / low) if np.isfinite(low) else np.nan,
                    "worst_mean": float(part["mean"].min()),
                }
            )
    table = pd.DataFrame(rows).set_index(["scenario", "algorithm", "variant"])
    return table, {"range_comparison": _range_comparison(table)}


def _range_comparison(table: pd.DataFrame) -> str:
    variants = set(table.index.get_level_values("variant"))
    compared = [v for v in RANGE_LABELS if v in variants]
    if "plain" not in variants or not compared:
        return "no variant on the plain step's grid is in this build's set, so none is compared"
    width = table["decades"].fillna(-1.0)
    plain = width.xs("plain", level="variant")
    parts = []
    for name in compared:
        diff = width.xs(name, level="variant").reindex(plain.index) - plain
        parts.append(
            f"{RANGE_LABELS[name]} is admissible over a wider range than the plain step in "
            f"{int((diff > 0).sum())} of {len(plain)} pairs and over a narrower one in "
            f"{int((diff < 0).sum())}"
        )
    return "; ".join(parts)


def ranges_page_table(table: pd.DataFrame) -> ReaderTable:
    """The table of :func:`admissible_ranges` as chapter 08 shows it."""
    return reader_table(
        table,
        headers={
            "admissible": "Admissible step sizes",
            "range": "Admissible range",
            "decades": "Admissible range (decades)",
            "worst_mean": "Worst validation mean on the grid",
        },
        digits={"decades": 1, "worst_mean": 1},
        missing={"decades": "no admissible step size, so no range"},
    )


def r2_page_table(r2: Mapping[str, Mapping[str, float]]) -> ReaderTable:
    """Held-out R² of every cost model (columns) per scenario (rows), saying so."""
    return reader_table(
        pd.DataFrame(dict(r2)).T,
        digits=3,
        index_header="Scenario",
        caption="Held-out R² of each cost model (1 = a perfect fit on held-out episodes)",
    )


def test_deployed(
    tasks: Mapping[str, ScenarioTask],
    agents: Mapping[str, Mapping[tuple[str, int], Any]],
    support: SupportDeployments,
    seeds: Sequence[int],
    episodes: int,
) -> pd.DataFrame:
    """Every (scenario, algorithm) on the test episodes, run once: its base and, where a
    correction is deployed, its deployed setting (nothing else). Where η = 0 is deployed the
    "+" runs are the base's own runs.

    Returns:
        One row per (scenario, algorithm): ``deployed`` (in words), ``corrected``,
        ``base_iqm`` and ``plus_iqm`` (IQM over seeds of each seed's mean normalised reward),
        ``plus_worst`` (the worst episode of any seed), ``base_runaways``,
        ``plus_runaways``, ``seeds`` (the algorithm's own: those of ``seeds`` that
        ``agents`` holds) and ``episodes`` (every seed).
    """
    rows = []
    for scenario, task in tasks.items():
        bounds = task.return_bounds
        for algorithm, deployment in support.deployments[scenario].items():
            base, plus = [], []
            own = [seed for seed in seeds if (algorithm, seed) in agents[scenario]]
            for seed in own:
                agent = agents[scenario][algorithm, seed]
                metrics, _ = evaluate_policy(agent.act, scenario, episodes, *bounds)
                base.append(metrics)
                if deployment.corrected:
                    policy = deployed_policy(
                        agent, support.cost_models[scenario], deployment, task.action_scale
                    )
                    metrics, _ = evaluate_policy(policy.act, scenario, episodes, *bounds)
                plus.append(metrics)
            rows.append(
                {
                    "scenario": scenario,
                    "algorithm": algorithm,
                    "deployed": deployment.text(),
                    "corrected": deployment.corrected,
                    "base_iqm": iqm([m["normalised_reward"].mean() for m in base]),
                    "plus_iqm": iqm([m["normalised_reward"].mean() for m in plus]),
                    "plus_worst": min(float(m["normalised_reward"].min()) for m in plus),
                    "base_runaways": sum(int(m["runaway"].sum()) for m in base),
                    "plus_runaways": sum(int(m["runaway"].sum()) for m in plus),
                    "seeds": len(own),
                    "episodes": episodes * len(own),
                }
            )
    return pd.DataFrame(rows)


test_deployed.__test__ = False  # not a pytest test despite its name


def test_page_table(table: pd.DataFrame) -> ReaderTable:
    """The table of :func:`test_deployed` as chapter 08 shows it, with a ``Seeds`` column
    where the algorithms train different numbers of seeds."""
    shown = table.assign(algorithm=table["algorithm"].str.upper()).set_index(
        ["scenario", "algorithm"]
    )
    own_seeds = "seeds" in table and table["seeds"].nunique() > 1
    return reader_table(
        shown,
        columns=[
            *(["seeds"] if own_seeds else []),
            "deployed",
            "base_iqm",
            "plus_iqm",
            "plus_worst",
            "base_runaways",
            "plus_runaways",
        ],
        headers={
            "deployed": "Deployed (validation)",
            "base_iqm": "Base IQM",
            "plus_iqm": "+ IQM",
            "plus_worst": "+ worst episode",
            "base_runaways": "Base runaways",
            "plus_runaways": "+ runaways",
        },
        digits={"base_iqm": 1, "plus_iqm": 1, "plus_worst": 1},
        counts={"base_runaways": "episodes", "plus_runaways": "episodes"},
    )


test_page_table.__test__ = False  # not a pytest test despite its name


def test_glue(table: pd.DataFrame, lead: str) -> dict[str, Any]:
    """The test numbers the prose quotes: per algorithm of the lead scenario ``deploy_<a>``,
    ``test_<a>_base`` and ``test_<a>_plus``; over every pair with a correction deployed the
    lowest and highest test gain ``test_gain_low`` / ``test_gain_high`` ("+" IQM minus base
    IQM; NaN when no correction is deployed anywhere)."""
    values: dict[str, Any] = {}
    for row in table[table["scenario"] == lead].itertuples():
        values[f"deploy_{row.algorithm}"] = row.deployed
        values[f"test_{row.algorithm}_base"] = float(row.base_iqm)
        values[f"test_{row.algorithm}_plus"] = float(row.plus_iqm)
    gains = (table["plus_iqm"] - table["base_iqm"])[table["corrected"].astype(bool)]
    values["test_gain_low"] = float(gains.min()) if len(gains) else float("nan")
    values["test_gain_high"] = float(gains.max()) if len(gains) else float("nan")
    return values


test_glue.__test__ = False  # not a pytest test despite its name


def page_finding(shown: Mapping[str, Any]) -> str:
    """The page's opening finding (:func:`polycstr_lib.analysis.findings.support_finding`) from
    the glue of :func:`deployment_glue` and :func:`test_glue`."""
    from polycstr_lib.analysis.findings import support_finding

    return support_finding(shown)


def variant_names_text(names: Sequence[str]) -> str:
    """The candidate variants in words, each with its units: ``'plain (cost units), …'``."""
    unknown = [n for n in names if n not in DEFAULT_VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; known: {sorted(DEFAULT_VARIANTS)}")
    units = {n: "data spreads" if DEFAULT_VARIANTS[n].method == "normalised" else "cost units"
             for n in names}  # fmt: skip
    return ", ".join(f"{n} ({units[n]})" for n in names)
