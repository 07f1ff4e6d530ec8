"""The paper's claims beside this build's numbers, with verdicts computed from them.

Values come from the executed notebooks' myst-nb ``glue`` outputs (read back from the
notebook files, never typed); :func:`assess_claims` turns them into verdicts with rules
stated in :data:`RULES`, so a reviewer can check each verdict against its inputs. A verdict
that rests on a probability of improvement across seeds (:data:`SEEDED_CLAIMS`) is
:data:`NEEDS_SEEDS` while the runs compared have one seed each: P(A > B) from one pair of
runs is 0, 0.5 or 1, not evidence. :func:`claims_page_table` is the table the page shows:
each rule named briefly (:data:`RULE_NAMES`), its full text in a list below.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from polycstr_lib.analysis.results import SEED_GLUE
from polycstr_lib.analysis.tables import ReaderTable, reader_table
from polycstr_lib.toolkit.stats import Comparison, compare_runs, iqm

SCENARIO_NAMES = ("startup", "grade_down", "grade_up")
HOLDS, PARTLY, FAILS = "holds", "partly", "does not hold"
#: Verdict of a claim in :data:`SEEDED_CLAIMS` while the runs compared have one seed each.
NEEDS_SEEDS = "needs ≥ 2 seeds"
#: Key of :data:`NEEDS_SEEDS` in :func:`verdict_counts` (glued as ``count_needs_seeds``).
NEEDS_SEEDS_KEY = "needs seeds"
#: Claims whose rule reads P(A > B) across training seeds.
SEEDED_CLAIMS = ("C1", "C2", "C3", "C8", "C9")
MIN_SEEDS = 2  # seeds a P(A > B) verdict needs (on at least one side of the comparison)
MARGIN = 20.0  # IQM gap, normalised-reward points, that makes "A >> B"
P_HOLDS = 0.75  # P(A > B) across seeds that makes "A better than B" hold
R2_GAP = 0.1  # R² gap that makes "PICNN clearly below NN"
R2_SMALL_GAP = 0.01  # smaller gaps are noise between two training runs
STABLE = "stable"
NOT_ASSESSABLE = "not assessable (one seed)"
HALVES_TOO_SMALL = "not assessable (one seed per half)"
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


#: A short name of each claim's rule, for the table's "Rule" column (the full text,
#: :data:`RULES`, is listed below the table).
RULE_NAMES = {
    "C1": "IQL ≫ BC (startup)",
    "C2": "BC+ ≫ BC (grade up)",
    "C3": "IQL+ lifts the worst episode",
    "C4": "PICNN R² below the NN's",
    "C5": "higher minimum, less spread",
    "C6": "PICNN gradients stable late",
    "C7": "BC has the largest offset",
    "C8": "CQL beats BC",
    "C9": "IQL beats PI, IQL+ best",
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


def _seeds(values: Mapping, a: str, b: str, stat: str = "mean") -> int:
    """The larger number of seeds of ``a`` and ``b`` (a single run counts as one)."""
    return max(len(seed_values(values, a, stat)), len(seed_values(values, b, stat)))


def _p_text(c: Comparison, a: str, b: str, seeds: int, min_seeds: int) -> str:
    """``'P(A > B) = 0.75'``, or that one seed each gives no such probability."""
    if seeds < min_seeds:
        return f"P({a} > {b}) needs ≥ {min_seeds} seeds (one each here)"
    return f"P({a} > {b}) = {c.p:.2f}"


def assess_claims(results: dict[str, dict], cost: dict, min_seeds: int = MIN_SEEDS) -> pd.DataFrame:
    """Verdicts of claims C1-C9 by the rules of :data:`RULES`.

    A claim of :data:`SEEDED_CLAIMS` is :data:`NEEDS_SEEDS` when some comparison it rests
    on has fewer than ``min_seeds`` seeds on both sides (its P(A > B) would come from one
    pair of runs); its "this build" text then gives the IQMs without the probability.

    Args:
        results: scenario -> glued values of its results page: per method the per-seed
            lists ``<METHOD>_seed_means`` and ``<METHOD>_seed_mins`` (or, for a single run,
            ``<METHOD>_mean`` and ``<METHOD>_min``), and the means over seeds
            ``<METHOD>_min``, ``<METHOD>_std``, ``<METHOD>_offset``.
        cost: glued values of the cost-model page (``r2_mlp_<scenario>``,
            ``r2_picnn_<scenario>``, ``agree_<mlp|picnn>_late``, ``flip_<mlp|picnn>_late``).
        min_seeds: seeds a probability of improvement needs (1: every verdict by its rule
            alone, as with several seeds).

    Returns:
        DataFrame indexed by claim: ``paper``, ``this build``, ``verdict``, ``rule``.
    """
    rows = {}

    def seeded(verdict: str, *seeds: int) -> str:
        return NEEDS_SEEDS if min(seeds) < min_seeds else verdict

    if "startup" in results:
        values = results["startup"]
        c, n = compare(values, "IQL", "BC"), _seeds(values, "IQL", "BC")
        rows["C1"] = (
            f"startup: IQM IQL {c.iqm_x:.1f} vs BC {c.iqm_y:.1f}; "
            + _p_text(c, "IQL", "BC", n, min_seeds),
            seeded(_much_better(c), n),
        )
        c, n = compare(values, "IQL+", "IQL", "min"), _seeds(values, "IQL+", "IQL", "min")
        rows["C3"] = (
            f"startup: IQM of seed minima IQL+ {c.iqm_x:.1f} vs IQL {c.iqm_y:.1f}; "
            + _p_text(c, "IQL+", "IQL", n, min_seeds),
            seeded(_verdict(c.p >= P_HOLDS and c.gap > 1, c.gap >= -1), n),
        )
    if "grade_up" in results:
        values = results["grade_up"]
        c, n = compare(values, "BC+", "BC"), _seeds(values, "BC+", "BC")
        rows["C2"] = (
            f"grade up: IQM BC+ {c.iqm_x:.1f} vs BC {c.iqm_y:.1f}; "
            + _p_text(c, "BC+", "BC", n, min_seeds),
            seeded(_much_better(c), n),
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
        cql_seeds = [_seeds(v, "CQL", "BC") for v in results.values()]
        wins = sum(_beats(c) for c in cql.values())
        if min(cql_seeds) < min_seeds:
            text = f"CQL's IQM above BC's in {sum(c.gap > 0 for c in cql.values())} of {n} "
            text += f"scenarios; P(CQL > BC) needs ≥ {min_seeds} seeds (one each here)"
        else:
            probabilities = ", ".join(f"{s} {c.p:.2f}" for s, c in cql.items())
            text = f"CQL beats BC in {wins} of {n} scenarios (P(CQL > BC): {probabilities})"
        rows["C8"] = (text, seeded(_verdict(wins == n, wins > 0), *cql_seeds))
        beats_pi = sum(_beats(compare(v, "IQL", "PI")) for v in results.values())
        pi_seeds = [_seeds(v, "IQL", "PI") for v in results.values()]
        agents = ("BC", "BC+", "IQL", "IQL+", "CQL", "CQL+")
        best = 0
        for v in results.values():
            iqms = {a: iqm(seed_values(v, a)) for a in agents}
            best += iqms["IQL+"] >= max(iqms.values())
        if min(pi_seeds) < min_seeds:
            above = sum(compare(v, "IQL", "PI").gap > 0 for v in results.values())
            text = f"IQL's IQM above PI's in {above} of {n} (P(IQL > PI) needs ≥ {min_seeds} "
            text += f"seeds); IQL+ highest IQM in {best} of {n}"
        else:
            text = f"IQL beats PI in {beats_pi} of {n}; IQL+ highest IQM in {best} of {n}"
        rows["C9"] = (
            text,
            seeded(_verdict(beats_pi == n and best == n, beats_pi == n or best == n), *pi_seeds),
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


def seed_stability(results: dict[str, dict], cost: dict, min_seeds: int = MIN_SEEDS) -> pd.Series:
    """Whether each verdict survives splitting the seeds into two disjoint halves.

    Every verdict of :func:`assess_claims` is recomputed on each half of
    :func:`seed_halves`.

    Args:
        results: scenario -> glued values of its results page.
        cost: glued values of the cost-model page.
        min_seeds: as in :func:`assess_claims`.

    Returns:
        Claim -> ``"stable"`` (both halves give the full set's verdict), ``"flips (first
        half: A, second half: B)"``, :data:`NOT_ASSESSABLE` (one seed, or a verdict that
        needs more seeds), :data:`HALVES_TOO_SMALL` (a half too small for the verdict's
        P(A > B)) or :data:`NO_SEEDS` (claims read from the cost-model page only).
    """
    full = assess_claims(results, cost, min_seeds)["verdict"]
    halves = seed_halves(results)
    out = {}
    if halves is not None:
        first = assess_claims(halves[0], cost, min_seeds)["verdict"]
        second = assess_claims(halves[1], cost, min_seeds)["verdict"]
    for claim, verdict in full.items():
        if claim in SEEDLESS_CLAIMS:
            out[claim] = NO_SEEDS
        elif halves is None or verdict == NEEDS_SEEDS:
            out[claim] = NOT_ASSESSABLE
        elif NEEDS_SEEDS in (first[claim], second[claim]):
            out[claim] = HALVES_TOO_SMALL
        elif first[claim] == second[claim] == verdict:
            out[claim] = STABLE
        else:
            out[claim] = f"flips (first half: {first[claim]}, second half: {second[claim]})"
    return pd.Series(out, name="seed halves", dtype=object)


def claims_table(results: dict[str, dict], cost: dict, min_seeds: int = MIN_SEEDS) -> pd.DataFrame:
    """:func:`assess_claims` with the ``seed halves`` column of :func:`seed_stability`
    beside each verdict."""
    table = assess_claims(results, cost, min_seeds)
    table.insert(
        table.columns.get_loc("verdict") + 1,
        "seed halves",
        seed_stability(results, cost, min_seeds).reindex(table.index),
    )
    return table


def claims_page_table(table: pd.DataFrame) -> ReaderTable:
    """A :func:`claims_table` as the claims page shows it: each rule by its short name
    (:data:`RULE_NAMES`), the full rules (:data:`RULES`) in a collapsible list below.

    Args:
        table: :func:`claims_table` (or :func:`assess_claims`).

    Returns:
        A :func:`~polycstr_lib.analysis.tables.reader_table` with the columns Paper, This
        build, Verdict, Seed halves (where the table has it) and Rule.
    """
    shown = table.assign(rule=[RULE_NAMES[c] for c in table.index])
    notes = []
    if (table["verdict"] == NEEDS_SEEDS).any():
        notes.append(
            f"{NEEDS_SEEDS}: the rule reads the probability of improvement P(A > B) across "
            "training seeds, which one seed of each method cannot give (it would be 0, 0.5 "
            "or 1 from a single pair of runs)."
        )
    return reader_table(
        shown,
        index_header="Claim",
        notes=notes,
        definitions={f"{c} · {RULE_NAMES[c]}": RULES[c] for c in table.index},
        definitions_title="Rules in full",
    )


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
    """How many claims hold, partly hold, do not hold, and need more seeds.

    Returns:
        ``{HOLDS: k, PARTLY: k, FAILS: k, NEEDS_SEEDS_KEY: k}`` (the last keyed
        ``"needs seeds"``, so that the page glues it as ``count_needs_seeds``).
    """
    counts = table["verdict"].value_counts()
    out = {k: int(counts.get(k, 0)) for k in (HOLDS, PARTLY, FAILS)}
    out[NEEDS_SEEDS_KEY] = int(counts.get(NEEDS_SEEDS, 0))
    return out


def oracle_gaps_page_table(gaps: pd.DataFrame) -> ReaderTable:
    """:func:`oracle_gaps` as the claims page shows it: one header row (scenario · score),
    one decimal, ``—`` with a footnote where a page scored no optimality."""
    return reader_table(
        gaps,
        digits=1,
        index_header="Method",
        missing={
            "optimality": "the page scored no optimality for this method",
            "gap": "the page has no mean for this method",
        },
    )
