"""The paper's claims beside this build's numbers, with verdicts computed from them.

Values come from the executed notebooks' myst-nb ``glue`` outputs (read back from the
notebook files, never typed); :func:`assess_claims` turns them into verdicts with rules
stated in :data:`RULES`, so a reviewer can check each verdict against its inputs.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from polycstr_lib.analysis.results import SEED_GLUE
from polycstr_lib.toolkit.stats import Comparison, compare_runs, iqm

SCENARIO_NAMES = ("startup", "grade_down", "grade_up")
HOLDS, PARTLY, FAILS = "holds", "partly", "does not hold"
MARGIN = 20.0  # IQM gap, normalised-reward points, that makes "A >> B"
P_HOLDS = 0.75  # P(A > B) across seeds that makes "A better than B" hold
R2_GAP = 0.1  # R² gap that makes "PICNN clearly below NN"
R2_SMALL_GAP = 0.01  # smaller gaps are noise between two training runs
STABLE = "stable"
NOT_ASSESSABLE = "not assessable (one seed)"
NO_SEEDS = "not assessable (one cost-model run)"
SEEDLESS_CLAIMS = ("C4", "C6")  # read from the cost-model page only

_BETTER = (
    "IQM and P(A > B) are across training seeds, of each seed's mean normalised reward over "
    "the test episodes (rliable)"
)
RULES = {
    "C1": f"holds if P(IQL > BC) >= {P_HOLDS:g}, IQL's IQM exceeds BC's by >= {MARGIN:g} "
    "points and is >= 0 (no worse than the data's worst episode); partly if P > 0.5 and the "
    f"IQM gap > 0. {_BETTER}",
    "C2": f"holds if P(BC+ > BC) >= {P_HOLDS:g}, BC+'s IQM exceeds BC's by >= {MARGIN:g} "
    "points and is >= 0 (no worse than the data's worst episode); partly if P > 0.5 and the "
    f"IQM gap > 0. {_BETTER}",
    "C3": f"on each seed's worst test episode: holds if P(IQL+ > IQL) >= {P_HOLDS:g} and the "
    "IQM of IQL+'s minima exceeds IQL's by > 1 point; partly if it is no more than 1 point "
    "below",
    "C4": f"holds if the PICNN's held-out R² is below the NN's by >= {R2_GAP:g} in every "
    f"scenario; partly if below by >= {R2_SMALL_GAP:g} in at least one",
    "C5": "holds if the corrected policy's minimum is >= the base policy's and its std is <= "
    "the base's (means over seeds) in at least 2/3 of (algorithm, scenario) pairs; partly if "
    "in at least one",
    "C6": "holds if, late in episodes, the PICNN agrees with the simulator's gradient more "
    "often than the NN and flips no more often; partly if one of the two",
    "C7": "holds if BC's steady-state offset (mean over seeds) exceeds IQL's and PI's in at "
    "least 2 of 3 scenarios; partly if in one",
    "C8": f"CQL beats BC in a scenario if P(CQL > BC) >= {P_HOLDS:g} and its IQM is higher; "
    "holds if in every scenario, partly if in at least one",
    "C9": f"IQL beats PI as in C8 (P >= {P_HOLDS:g}, higher IQM) in every scenario, and IQL+ "
    "has the highest IQM of all agents in every scenario: holds if both, partly if one",
}
PAPER = {
    "C1": "startup: IQL 98.6 vs BC 41.2",
    "C2": "grade up: BC+ 66.9 vs BC 4.7",
    "C3": "startup: IQL+ min 81.1 vs IQL min 72.7",
    "C4": "R² PICNN 0.73 vs NN 0.99",
    "C5": "correction reduces variance and worst-case failures",
    "C6": "NN cost gradients unstable late in episodes, PICNN stable",
    "C7": "BC: sluggish convergence and steady-state offset",
    "C8": "CQL beats BC by 25 % mean return (second source, another task)",
    "C9": "IQL beats PI everywhere; IQL+ best mean everywhere",
}


def _verdict(full: bool, some: bool) -> str:
    return HOLDS if full else PARTLY if some else FAILS


def seed_values(values: Mapping, method: str, stat: str = "mean") -> list[float]:
    """Per-seed values of ``method``'s ``stat`` on one results page.

    Args:
        values: Glued values of a results page.
        method: Method name, e.g. ``"IQL+"``.
        stat: ``mean``, ``min``, ``std`` or ``offset``.

    Returns:
        ``<method>_seed_<stat>s`` when glued, else the one value ``[<method>_<stat>]``
        (pages without per-seed lists, and single-run rows such as PI).

    Raises:
        KeyError: neither is glued.
    """
    plural = {v: k for k, v in SEED_GLUE.items()}[stat]
    runs = values.get(f"{method}_seed_{plural}")
    if runs is None:
        return [float(values[f"{method}_{stat}"])]
    return [float(v) for v in runs]


def compare(values: Mapping, a: str, b: str, stat: str = "mean") -> Comparison:
    """IQMs of ``a`` and ``b`` across seeds and P(a > b), from a page's per-seed values."""
    return compare_runs(seed_values(values, a, stat), seed_values(values, b, stat))


def _much_better(c: Comparison) -> str:
    """Verdict of "A ≫ B" across seeds.

    A margin alone is not enough: two failing policies can differ by hundreds of points, so
    "≫" also needs A to be a working controller (IQM >= 0, i.e. no worse than the data's
    worst episode), and most pairs of seeds must agree (P(A > B) >= :data:`P_HOLDS`).
    """
    return _verdict(c.p >= P_HOLDS and c.gap >= MARGIN and c.iqm_x >= 0, c.p > 0.5 and c.gap > 0)


def _beats(c: Comparison) -> bool:
    return c.p >= P_HOLDS and c.gap > 0


def assess_claims(results: dict[str, dict], cost: dict) -> pd.DataFrame:
    """Verdicts of claims C1-C9 by the rules of :data:`RULES`.

    Args:
        results: scenario -> glued values of its results page: per method the per-seed
            lists ``<METHOD>_seed_means`` and ``<METHOD>_seed_mins`` (or, for a single run,
            ``<METHOD>_mean`` and ``<METHOD>_min``), and the means over seeds
            ``<METHOD>_min``, ``<METHOD>_std``, ``<METHOD>_offset``.
        cost: glued values of the cost-model page (``r2_mlp_<scenario>``,
            ``r2_picnn_<scenario>``, ``agree_<mlp|picnn>_late``, ``flip_<mlp|picnn>_late``).

    Returns:
        DataFrame indexed by claim: ``paper``, ``this build``, ``verdict``, ``rule``.
    """
    rows = {}

    if "startup" in results:
        c = compare(results["startup"], "IQL", "BC")
        rows["C1"] = (
            f"startup: IQM IQL {c.iqm_x:.1f} vs BC {c.iqm_y:.1f}; P(IQL > BC) = {c.p:.2f}",
            _much_better(c),
        )
        c = compare(results["startup"], "IQL+", "IQL", "min")
        rows["C3"] = (
            f"startup: IQM of seed minima IQL+ {c.iqm_x:.1f} vs IQL {c.iqm_y:.1f}; "
            f"P(IQL+ > IQL) = {c.p:.2f}",
            _verdict(c.p >= P_HOLDS and c.gap > 1, c.gap >= -1),
        )
    if "grade_up" in results:
        c = compare(results["grade_up"], "BC+", "BC")
        rows["C2"] = (
            f"grade up: IQM BC+ {c.iqm_x:.1f} vs BC {c.iqm_y:.1f}; P(BC+ > BC) = {c.p:.2f}",
            _much_better(c),
        )
    scen = [s for s in SCENARIO_NAMES if f"r2_picnn_{s}" in cost]
    if scen:
        gaps = [cost[f"r2_mlp_{s}"] - cost[f"r2_picnn_{s}"] for s in scen]
        text = ", ".join(
            f"{s} {cost[f'r2_picnn_{s}']:.3f} vs {cost[f'r2_mlp_{s}']:.3f}" for s in scen
        )
        rows["C4"] = (
            f"R² PICNN vs NN: {text}",
            _verdict(all(g >= R2_GAP for g in gaps), any(g >= R2_SMALL_GAP for g in gaps)),
        )
    pairs, better = 0, 0
    for vals in results.values():
        for algo in ("BC", "IQL", "CQL"):
            if f"{algo}+_min" in vals:
                pairs += 1
                better += (
                    vals[f"{algo}+_min"] >= vals[f"{algo}_min"]
                    and vals[f"{algo}+_std"] <= vals[f"{algo}_std"]
                )
    if pairs:
        rows["C5"] = (
            f"min and spread improved in {better} of {pairs} pairs",
            _verdict(better >= 2 * pairs / 3, better > 0),
        )
    if "agree_picnn_late" in cost:
        agree = cost["agree_picnn_late"] > cost["agree_mlp_late"]
        flips = cost["flip_picnn_late"] <= cost["flip_mlp_late"]
        rows["C6"] = (
            f"late agreement with the simulator PICNN {cost['agree_picnn_late']:.0%} vs NN "
            f"{cost['agree_mlp_late']:.0%}; flip rate PICNN {cost['flip_picnn_late']:.0%} vs NN "
            f"{cost['flip_mlp_late']:.0%}",
            _verdict(agree and flips, agree or flips),
        )
    if results:
        n = len(results)
        worse = sum(v["BC_offset"] > max(v["IQL_offset"], v["PI_offset"]) for v in results.values())
        text = ", ".join(f"{s} {v['BC_offset']:.1f}" for s, v in results.items())
        rows["C7"] = (
            f"BC offset (kg/m³): {text}; worse than IQL and PI in {worse} of {n}",
            _verdict(worse >= 2, worse >= 1),
        )
        cql = {s: compare(v, "CQL", "BC") for s, v in results.items()}
        wins = sum(_beats(c) for c in cql.values())
        text = ", ".join(f"{s} {c.p:.2f}" for s, c in cql.items())
        rows["C8"] = (
            f"CQL beats BC in {wins} of {n} scenarios (P(CQL > BC): {text})",
            _verdict(wins == n, wins > 0),
        )
        beats_pi = sum(_beats(compare(v, "IQL", "PI")) for v in results.values())
        agents = ("BC", "BC+", "IQL", "IQL+", "CQL", "CQL+")
        best = 0
        for v in results.values():
            iqms = {a: iqm(seed_values(v, a)) for a in agents}
            best += iqms["IQL+"] >= max(iqms.values())
        rows["C9"] = (
            f"IQL beats PI in {beats_pi} of {n}; IQL+ highest IQM in {best} of {n}",
            _verdict(beats_pi == n and best == n, beats_pi == n or best == n),
        )
    columns = ["claim", "paper", "this build", "verdict", "rule"]
    table = pd.DataFrame(
        [[c, PAPER[c], v[0], v[1], RULES[c]] for c, v in sorted(rows.items())], columns=columns
    ).set_index("claim")
    return table


def seed_halves(results: dict[str, dict]) -> tuple[dict[str, dict], dict[str, dict]] | None:
    """The results pages' glued values recomputed on two disjoint halves of the seeds.

    Per method, its seeds (``<METHOD>_seeds``) are sorted; the first half is the first
    ``n // 2`` of them, the second half the rest. Each half keeps those seeds' entries of
    every per-seed list (:data:`SEED_GLUE`) and replaces the means over seeds
    (``<METHOD>_mean``, ``_min``, ``_std``, ``_offset``) by the half's means. Single-run
    rows (Data, PI, the oracle) are the same in both halves.

    Args:
        results: scenario -> glued values of its results page.

    Returns:
        ``(first, second)`` in the form of ``results``, or None when no method of any page
        has two seeds (nothing to split).
    """
    halves: tuple[dict[str, dict], dict[str, dict]] = ({}, {})
    split = False
    for scenario, values in results.items():
        first, second = dict(values), dict(values)
        for key, seeds in values.items():
            if not key.endswith("_seeds") or not isinstance(seeds, list) or len(seeds) < 2:
                continue
            method = key[: -len("_seeds")]
            order = sorted(range(len(seeds)), key=lambda i: seeds[i])
            cut = len(order) // 2
            for half, index in ((first, order[:cut]), (second, order[cut:])):
                half[key] = [seeds[i] for i in index]
                for plural, stat in SEED_GLUE.items():
                    runs = values.get(f"{method}_seed_{plural}")
                    if runs is None:
                        continue
                    chosen = [float(runs[i]) for i in index]
                    half[f"{method}_seed_{plural}"] = chosen
                    half[f"{method}_{stat}"] = float(np.mean(chosen))
            split = True
        halves[0][scenario], halves[1][scenario] = first, second
    return halves if split else None


def seed_stability(results: dict[str, dict], cost: dict) -> pd.Series:
    """Whether each verdict survives splitting the seeds into two disjoint halves.

    Every verdict of :func:`assess_claims` is recomputed on each half of
    :func:`seed_halves`.

    Args:
        results: scenario -> glued values of its results page.
        cost: glued values of the cost-model page.

    Returns:
        Claim -> ``"stable"`` (both halves give the full set's verdict), ``"flips (first
        half: A, second half: B)"``, :data:`NOT_ASSESSABLE` (one seed) or :data:`NO_SEEDS`
        (claims read from the cost-model page only).
    """
    full = assess_claims(results, cost)["verdict"]
    halves = seed_halves(results)
    out = {}
    if halves is not None:
        first = assess_claims(halves[0], cost)["verdict"]
        second = assess_claims(halves[1], cost)["verdict"]
    for claim, verdict in full.items():
        if claim in SEEDLESS_CLAIMS:
            out[claim] = NO_SEEDS
        elif halves is None:
            out[claim] = NOT_ASSESSABLE
        elif first[claim] == second[claim] == verdict:
            out[claim] = STABLE
        else:
            out[claim] = f"flips (first half: {first[claim]}, second half: {second[claim]})"
    return pd.Series(out, name="seed halves", dtype=object)


def claims_table(results: dict[str, dict], cost: dict) -> pd.DataFrame:
    """:func:`assess_claims` with the ``seed halves`` column of :func:`seed_stability`
    beside each verdict."""
    table = assess_claims(results, cost)
    table.insert(
        table.columns.get_loc("verdict") + 1,
        "seed halves",
        seed_stability(results, cost).reindex(table.index),
    )
    return table


def stability_counts(table: pd.DataFrame) -> dict[str, int]:
    """How many verdicts of a :func:`claims_table` are stable, flip, or cannot be assessed."""
    col = table["seed halves"]
    return {
        "stable": int((col == STABLE).sum()),
        "flips": int(col.str.startswith("flips").sum()),
        "not_assessable": int(col.str.startswith("not assessable").sum()),
    }


ORACLE = "NMPC"  # glue prefix of the NMPC oracle's row on the results pages
GAP_METHODS = ("PI", "BC", "BC+", "IQL", "IQL+", "CQL", "CQL+")


def oracle_gaps(results: dict[str, dict]) -> pd.DataFrame:
    """How far each method is from the NMPC oracle, per scenario.

    Args:
        results: scenario -> glued values of its results page (``NMPC_mean`` and, per
            method, ``<METHOD>_mean`` and ``<METHOD>_optimality``). Pages without the
            oracle's values are skipped.

    Returns:
        DataFrame indexed by method with two columns per scenario: ``(scenario,
        'optimality')`` (0 = holding the initial inputs, 100 = the oracle) and
        ``(scenario, 'gap')`` (the oracle's mean data-range score minus the method's, in
        points); empty when no page has the oracle.
    """
    columns = {}
    for scenario, vals in results.items():
        if f"{ORACLE}_mean" not in vals:
            continue
        oracle = float(vals[f"{ORACLE}_mean"])
        methods = [m for m in GAP_METHODS if f"{m}_mean" in vals]
        columns[(scenario, "optimality")] = {
            m: float(vals.get(f"{m}_optimality", float("nan"))) for m in methods
        }
        columns[(scenario, "gap")] = {m: oracle - float(vals[f"{m}_mean"]) for m in methods}
    if not columns:
        return pd.DataFrame()
    table = pd.DataFrame(columns)
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["scenario", "score"])
    return table.reindex([m for m in GAP_METHODS if m in table.index])


def verdict_counts(table: pd.DataFrame) -> dict[str, int]:
    """How many claims hold, partly hold and do not hold."""
    counts = table["verdict"].value_counts()
    return {k: int(counts.get(k, 0)) for k in (HOLDS, PARTLY, FAILS)}
