"""The paper's claims beside this build's numbers, with verdicts computed from them.

Values come from the executed notebooks' myst-nb ``glue`` outputs (read back from the
notebook files, never typed); :func:`assess_claims` turns them into verdicts with rules
stated in :data:`RULES`, so a reviewer can check each verdict against its inputs. A verdict
that rests on a probability of improvement across seeds (:data:`SEEDED_CLAIMS`) is
:data:`NEEDS_SEEDS` while the runs compared have one seed each: P(A > B) from one pair of
runs is 0, 0.5 or 1, not evidence. :func:`claims_page_table` is the table the page shows:
each rule named briefly (:data:`RULE_NAMES`), its full text in a list below.

A corrected policy and its base (``BC+`` and ``BC``, ``IQL+`` and ``IQL``) are the same agent
on the same training seeds and test episodes, so their claims (C2, C3, C5) read the *paired*
per-seed difference and its bootstrap interval (:func:`paired`), judged with a minimum
effect (:data:`MIN_EFFECT`) for "improves" and a margin (:data:`NON_INFERIORITY`) for "not
worse"; a verdict whose interval straddles the threshold is :data:`INCONCLUSIVE`. Worst-case
claims read the worst episodes themselves (each seed's minimum, and the single worst episode
over seeds), never an IQM of minima. Every row carries its interval in :data:`INTERVAL`;
:func:`sensitivity_table` recomputes each verdict with other thresholds.

Every threshold on a score (:data:`MARGIN`, :data:`MIN_EFFECT`, :data:`NON_INFERIORITY`) is a
*share of the scenario's hold-to-oracle range* (``scale_range``, glued by each results page:
the NMPC oracle's mean normalised reward minus that of holding the initial inputs, on the
oracle's test episodes), i.e. a distance on the optimality scale (0 = hold, 100 = oracle),
turned into data-range points per scenario by :func:`scale_points`. Holding the inputs scores
96 on startup but -143 on grade up, so one fixed point is a fifth of startup's range and
under 1 % of grade up's. A page without ``scale_range`` (built before it was glued) falls
back to :data:`FALLBACK_RANGE`, the 100 points of the data range.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from polycstr_lib.analysis.results import SEED_GLUE
from polycstr_lib.analysis.tables import ReaderTable, reader_table
from polycstr_lib.toolkit.stats import (
    Comparison,
    binomial_interval,
    compare_runs,
    iqm,
    paired_difference,
    unpaired_difference,
)

SCENARIO_NAMES = ("startup", "grade_down", "grade_up")
HOLDS, PARTLY, FAILS = "holds", "partly", "does not hold"
#: Verdict of a paired claim whose interval straddles its threshold: the seeds disagree.
INCONCLUSIVE = "inconclusive"
#: Verdict of a claim in :data:`SEEDED_CLAIMS` while the runs compared have one seed each.
NEEDS_SEEDS = "needs ≥ 2 seeds"
#: Key of :data:`NEEDS_SEEDS` in :func:`verdict_counts` (glued as ``count_needs_seeds``).
NEEDS_SEEDS_KEY = "needs seeds"
#: Claims whose rule reads P(A > B) across training seeds.
SEEDED_CLAIMS = ("C1", "C2", "C3", "C5", "C8", "C9")
MIN_SEEDS = 2  # seeds a P(A > B) verdict needs (on at least one side of the comparison)
#: IQM gap that makes "A >> B": 20 % of the scenario's hold-to-oracle range.
MARGIN = 0.2
P_HOLDS = 0.75  # P(A > B) across seeds that makes "A better than B" hold
#: Smallest paired gain that counts as "improves", 1 % of the scenario's hold-to-oracle range
#: (a correction that moves the score by 1e-5 improves nothing).
MIN_EFFECT = 0.01
#: Non-inferiority margin, 1 % of the scenario's hold-to-oracle range: "not worse" holds if
#: the paired interval's low end is above ``-NON_INFERIORITY`` of the range.
NON_INFERIORITY = 0.01
#: The range, data-range points, of a page that glued no ``scale_range``: the data range.
FALLBACK_RANGE = 100.0
CONFIDENCE = 0.95  # size of every interval the claims report
BOOT_REPS = 2000  # bootstrap replications of the paired intervals
BOOT_SEED = 0  # seed of the bootstrap: a rerun gives the same intervals
#: Column of :func:`assess_claims` with each verdict's interval.
INTERVAL = "Δ [95 % CI]"
#: Thresholds :func:`sensitivity_table` tries, shares of the hold-to-oracle range.
MIN_EFFECTS = (0.0, 0.01, 0.02)
NON_INFERIORITIES = (0.005, 0.01, 0.02)
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
_PAIRED = (
    "Δ is the mean over training seeds of the paired difference (corrected − base, same seeds "
    f"and test episodes), with a {CONFIDENCE:.0%} percentile bootstrap interval [low, high] "
    "over seeds"
)


def share_text(share: float) -> str:
    """A threshold as the pages print it: ``0.01`` → ``'1 % of the range'``."""
    return f"{100 * share:g} % of the range"


_RANGE = (
    "the range is the scenario's hold-to-oracle range (NMPC oracle minus holding the inputs, "
    "data-range points, on the oracle's test episodes)"
)
_IMPROVES = (
    f"'improves' holds if low > 0 and Δ >= {share_text(MIN_EFFECT)} (minimum effect), does "
    f"not hold if high < {share_text(MIN_EFFECT)}, else is inconclusive"
)
RULES = {
    "C1": f"holds if P(IQL > BC) >= {P_HOLDS:g}, IQL's IQM exceeds BC's by >= "
    f"{share_text(MARGIN)} and is >= 0 (no worse than the data's worst episode); partly if "
    f"P > 0.5 and the IQM gap > 0; {_RANGE}. {_BETTER}",
    "C2": f"on each seed's mean reward: holds if low > 0, Δ >= {share_text(MARGIN)} and BC+'s "
    "IQM is >= 0 (no worse than the data's worst episode); partly if BC+ only improves "
    f"({_IMPROVES}); does not hold or inconclusive as 'improves'; {_RANGE}. {_PAIRED}",
    "C3": "on each seed's worst test episode (its minimum): holds if IQL+ improves on IQL "
    f"({_IMPROVES}) and IQL+'s single worst episode over all seeds is >= "
    f"{share_text(MIN_EFFECT)} above IQL's; partly if it improves but the single worst "
    "episode is not that much higher; does not hold if it does not improve or IQL+'s worst "
    f"episode is more than {share_text(NON_INFERIORITY)} below IQL's; {_RANGE}. {_PAIRED}",
    "C4": f"holds if the PICNN's held-out R² is below the NN's by >= {R2_GAP:g} in every "
    f"scenario; partly if below by >= {R2_SMALL_GAP:g} in at least one",
    "C5": "per (algorithm, scenario) pair, the correction is better if it lifts the worst "
    "episode as in C3 (holds there) and its spread is not worse (per-seed std, paired: low of "
    f"base − corrected > −{share_text(NON_INFERIORITY)}, non-inferiority), worse if its worst "
    "episode does not improve (C3 does not hold) or its spread is clearly larger (high < "
    f"−{share_text(NON_INFERIORITY)}); holds if better in >= 2/3 of pairs, partly if in at "
    "least one, does not hold if worse in >= 2/3 and better in none, else inconclusive. "
    f"Runaway rates are reported with exact (Clopper–Pearson) {CONFIDENCE:.0%} intervals. "
    f"{_PAIRED}",
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


def scale_points(values: Mapping, share: float) -> float:
    """A threshold given as a share of a page's hold-to-oracle range, in data-range points.

    Args:
        values: glued values of a results page (``scale_range``, or :data:`FALLBACK_RANGE`
            where the page has none).
        share: the threshold as a share of the range (``0.01``: 1 %).

    Raises:
        ValueError: a negative or non-finite share, or a glued range that is not > 0.
    """
    if not (np.isfinite(share) and share >= 0):
        raise ValueError(f"a threshold share must be a finite number >= 0, got {share}")
    scale = float(values.get("scale_range", FALLBACK_RANGE))
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"the hold-to-oracle range must be > 0, got {scale}")
    return share * scale


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


def _much_better(c: Comparison, margin: float) -> str:
    """Verdict of "A ≫ B" across seeds, A's IQM ahead by at least ``margin`` points.

    A margin alone is not enough: two failing policies can differ by hundreds of points, so
    "≫" also needs A to be a working controller (IQM >= 0, i.e. no worse than the data's
    worst episode), and most pairs of seeds must agree (P(A > B) >= :data:`P_HOLDS`).
    """
    return _verdict(c.p >= P_HOLDS and c.gap >= margin and c.iqm_x >= 0, c.p > 0.5 and c.gap > 0)


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


@dataclass(frozen=True)
class Paired:
    """A paired per-seed difference ``a − b``: its mean, interval and number of seeds."""

    mean: float
    low: float
    high: float
    n: int

    def text(self) -> str:
        """``'+3.1 [+1.0, +5.2]'``."""
        return f"{self.mean:+.1f} [{self.low:+.1f}, {self.high:+.1f}]"


def paired_seed_values(
    values: Mapping, a: str, b: str, stat: str = "mean"
) -> tuple[list[float], list[float]]:
    """Per-seed values of ``a`` and ``b`` on their common training seeds, in one order.

    Seeds are matched by the glued seed lists (``<METHOD>_seeds``) where both methods have
    them; without them the lists are paired in their order (single runs pair as one seed).

    Args:
        values: Glued values of a results page.
        a: Method name, e.g. ``"IQL+"``.
        b: Method name, e.g. ``"IQL"``.
        stat: as in :func:`seed_values`.

    Returns:
        ``(a's values, b's values)``, both ``(S,)`` over the same seeds.

    Raises:
        ValueError: no common seed, or lists of different lengths without seed lists.
    """
    xa, xb = seed_values(values, a, stat), seed_values(values, b, stat)
    sa, sb = values.get(f"{a}_seeds"), values.get(f"{b}_seeds")
    if isinstance(sa, list) and isinstance(sb, list) and (len(sa), len(sb)) == (len(xa), len(xb)):
        where = {seed: j for j, seed in enumerate(sb)}
        common = [(i, where[seed]) for i, seed in enumerate(sa) if seed in where]
        if not common:
            raise ValueError(f"{a} and {b} share no training seed")
        return [xa[i] for i, _ in common], [xb[j] for _, j in common]
    if len(xa) != len(xb):
        raise ValueError(f"{a} has {len(xa)} seeds and {b} {len(xb)}, and no seed lists to pair")
    return xa, xb


def paired(values: Mapping, a: str, b: str, stat: str = "mean") -> Paired:
    """Paired difference ``a − b`` of ``stat`` over common seeds, with its bootstrap interval.

    :func:`~polycstr_lib.toolkit.stats.paired_difference` with :data:`BOOT_REPS`,
    :data:`BOOT_SEED` and :data:`CONFIDENCE`; ``n = 0`` (and NaN) when the seeds of ``a``
    and ``b`` cannot be paired (:func:`paired_seed_values`), which gates a verdict like one
    seed does.
    """
    try:
        xa, xb = paired_seed_values(values, a, b, stat)
    except ValueError:
        return Paired(float("nan"), float("nan"), float("nan"), 0)
    mean, low, high = paired_difference(
        xa, xb, reps=BOOT_REPS, seed=BOOT_SEED, confidence=CONFIDENCE
    )
    return Paired(mean, low, high, len(xa))


def improves(d: Paired, min_effect: float = MIN_EFFECT) -> str:
    """Verdict of "A improves on B" from their paired difference.

    :data:`HOLDS` if the interval's low end is above 0 and the mean gain is at least
    ``min_effect`` points; :data:`FAILS` if the high end is below ``min_effect`` (the gain is
    smaller than the minimum effect, or negative); else :data:`INCONCLUSIVE`. A no-op (every
    difference 0) never holds.
    """
    if d.low > 0 and d.mean >= min_effect:
        return HOLDS
    if d.high < min_effect:
        return FAILS
    return INCONCLUSIVE


def not_worse(d: Paired, margin: float = NON_INFERIORITY) -> str:
    """Verdict of "A is not worse than B" (non-inferiority) from their paired difference.

    :data:`HOLDS` if the interval's low end is above ``-margin``; :data:`FAILS` if its high
    end is below ``-margin`` (clearly worse); else :data:`INCONCLUSIVE`.
    """
    if d.low > -margin:
        return HOLDS
    if d.high < -margin:
        return FAILS
    return INCONCLUSIVE


def _gap_text(values: Mapping, a: str, b: str) -> str:
    """Unpaired difference of the seed means of ``a`` and ``b`` with its interval."""
    mean, low, high = unpaired_difference(
        seed_values(values, a), seed_values(values, b), BOOT_REPS, BOOT_SEED, CONFIDENCE
    )
    return f"{mean:+.1f} [{low:+.1f}, {high:+.1f}]"


def _worst_case(
    values: Mapping, plus: str, base: str, min_effect: float, margin: float
) -> tuple[str, Paired, float]:
    """Does ``plus`` lift the worst episodes of ``base``? (the rule of C3)

    ``min_effect`` and ``margin`` are shares of the page's range (:func:`scale_points`).

    Returns:
        ``(verdict, paired difference of the per-seed minima, gap of the single worst
        episodes)``; the single worst episode is the minimum over seeds of the per-seed
        minima.
    """
    effect, margin = scale_points(values, min_effect), scale_points(values, margin)
    d = paired(values, plus, base, "min")
    worst = min(seed_values(values, plus, "min")) - min(seed_values(values, base, "min"))
    lifted = improves(d, effect)
    if lifted == FAILS or worst < -margin:
        return FAILS, d, worst
    if lifted == HOLDS:
        return (HOLDS if worst >= effect else PARTLY), d, worst
    return INCONCLUSIVE, d, worst


def _runaways(results: Mapping[str, Mapping], method: str) -> str:
    """``'BC 3/60 [0.01, 0.14]'``: runaways over every page, with the exact interval."""
    pages = [v for v in results.values() if f"{method}_runaways" in v and f"{method}_episodes" in v]
    k = sum(int(v[f"{method}_runaways"]) for v in pages)
    n = sum(int(v[f"{method}_episodes"]) for v in pages)
    if not n:
        return ""
    low, high = binomial_interval(k, n, CONFIDENCE)
    return f"{method} {k}/{n} [{low:.2f}, {high:.2f}]"


def assess_claims(
    results: dict[str, dict],
    cost: dict,
    min_seeds: int = MIN_SEEDS,
    min_effect: float = MIN_EFFECT,
    non_inferiority: float = NON_INFERIORITY,
) -> pd.DataFrame:
    """Verdicts of claims C1-C9 by the rules of :data:`RULES`.

    A claim of :data:`SEEDED_CLAIMS` is :data:`NEEDS_SEEDS` when some comparison it rests
    on has fewer than ``min_seeds`` seeds (on both sides, or paired); its "this build" text
    then gives the values without the probability, and its interval is not shown.

    Args:
        results: scenario -> glued values of its results page: per method the per-seed
            lists ``<METHOD>_seed_means``, ``_seed_mins``, ``_seed_stds`` with their seeds
            ``<METHOD>_seeds`` (or, for a single run, ``<METHOD>_mean``, ``_min``, ``_std``),
            the means over seeds ``<METHOD>_offset``, and ``<METHOD>_runaways`` of
            ``<METHOD>_episodes`` where glued.
        cost: glued values of the cost-model page (``r2_mlp_<scenario>``,
            ``r2_picnn_<scenario>``, ``agree_<mlp|picnn>_late``, ``flip_<mlp|picnn>_late``).
        min_seeds: seeds a verdict across seeds needs (1: every verdict by its rule alone).
        min_effect: minimum effect of "improves", a share of each page's hold-to-oracle
            range (:data:`MIN_EFFECT`, :func:`scale_points`).
        non_inferiority: margin of "not worse", a share of that range
            (:data:`NON_INFERIORITY`).

    Returns:
        DataFrame indexed by claim: ``paper``, ``this build``, ``verdict``, :data:`INTERVAL`
        (the difference behind the verdict and its interval, ``—`` where none), ``rule``.
    """
    rows = {}
    gated = "— (too few seeds)"

    def seeded(verdict: str, *seeds: int) -> str:
        return NEEDS_SEEDS if min(seeds) < min_seeds else verdict

    def shown(text: str, *seeds: int) -> str:
        return gated if min(seeds) < min_seeds else text

    if "startup" in results:
        values = results["startup"]
        c, n = compare(values, "IQL", "BC"), _seeds(values, "IQL", "BC")
        rows["C1"] = (
            f"startup: IQM IQL {c.iqm_x:.1f} vs BC {c.iqm_y:.1f}; "
            + _p_text(c, "IQL", "BC", n, min_seeds),
            seeded(_much_better(c, scale_points(values, MARGIN)), n),
            shown(f"IQL − BC {_gap_text(values, 'IQL', 'BC')} (unpaired)", n),
        )
        verdict, d, worst = _worst_case(values, "IQL+", "IQL", min_effect, non_inferiority)
        rows["C3"] = (
            f"startup: worst episode IQL+ {min(seed_values(values, 'IQL+', 'min')):.1f} vs "
            f"IQL {min(seed_values(values, 'IQL', 'min')):.1f}; seeds' minima paired over "
            f"{d.n} seed{'s' if d.n > 1 else ''}",
            seeded(verdict, d.n),
            shown(f"minima {d.text()}; worst episode {worst:+.1f}", d.n),
        )
    if "grade_up" in results:
        values = results["grade_up"]
        d = paired(values, "BC+", "BC")
        plus = iqm(seed_values(values, "BC+"))
        gain = improves(d, scale_points(values, min_effect))
        if gain == HOLDS:
            much = d.low > 0 and d.mean >= scale_points(values, MARGIN) and plus >= 0
            verdict = HOLDS if much else PARTLY
        else:
            verdict = gain
        rows["C2"] = (
            f"grade up: IQM BC+ {plus:.1f} vs BC {iqm(seed_values(values, 'BC')):.1f}; paired "
            f"over {d.n} seed{'s' if d.n > 1 else ''}",
            seeded(verdict, d.n),
            shown(f"BC+ − BC {d.text()}", d.n),
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
            "—",
        )
    better, worse, seeds, intervals, algos = 0, 0, [], [], []
    for scenario, vals in results.items():
        for algo in ("BC", "IQL", "CQL"):
            if f"{algo}+_min" not in vals:
                continue
            verdict, d, _ = _worst_case(vals, f"{algo}+", algo, min_effect, non_inferiority)
            spread = not_worse(
                paired(vals, algo, f"{algo}+", "std"), scale_points(vals, non_inferiority)
            )
            better += verdict == HOLDS and spread == HOLDS
            worse += verdict == FAILS or spread == FAILS
            seeds.append(d.n)
            intervals.append(f"{scenario} {algo}+ {d.text()}")
            algos += [] if algo in algos else [algo]
    if seeds:
        pairs = len(seeds)
        if better:
            verdict = _verdict(better >= 2 * pairs / 3, True)
        else:
            verdict = FAILS if worse >= 2 * pairs / 3 else INCONCLUSIVE
        runaways = "; ".join(
            f"{base} → {plus}"
            for base, plus in ((_runaways(results, a), _runaways(results, a + "+")) for a in algos)
            if base and plus
        )
        rows["C5"] = (
            f"better in {better} of {pairs} pairs, worse in {worse}"
            + (f"; runaways ({CONFIDENCE:.0%} CI): {runaways}" if runaways else ""),
            seeded(verdict, *seeds),
            shown("minima " + "; ".join(intervals), *seeds),
        )
    if "agree_picnn_late" in cost:
        agree = cost["agree_picnn_late"] > cost["agree_mlp_late"]
        flips = cost["flip_picnn_late"] <= cost["flip_mlp_late"]
        rows["C6"] = (
            f"late agreement with the simulator PICNN {cost['agree_picnn_late']:.0%} vs NN "
            f"{cost['agree_mlp_late']:.0%}; flip rate PICNN {cost['flip_picnn_late']:.0%} vs NN "
            f"{cost['flip_mlp_late']:.0%}",
            _verdict(agree and flips, agree or flips),
            "—",
        )
    if results:
        n = len(results)
        worse = sum(v["BC_offset"] > max(v["IQL_offset"], v["PI_offset"]) for v in results.values())
        text = ", ".join(f"{s} {v['BC_offset']:.1f}" for s, v in results.items())
        rows["C7"] = (
            f"BC offset (kg/m³): {text}; worse than IQL and PI in {worse} of {n}",
            _verdict(worse >= 2, worse >= 1),
            "—",
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
        own = {m: {len(seed_values(v, m)) for v in results.values()} for m in ("CQL", "BC")}
        if own["CQL"] != own["BC"]:  # CQL may train fewer seeds (its cost): each side's own
            counts = {m: "/".join(str(k) for k in sorted(c)) for m, c in own.items()}
            text += f"; seeds: CQL {counts['CQL']}, BC {counts['BC']}"
        gaps = "; ".join(f"{s} {_gap_text(v, 'CQL', 'BC')}" for s, v in results.items())
        rows["C8"] = (
            text,
            seeded(_verdict(wins == n, wins > 0), *cql_seeds),
            shown(f"CQL − BC (unpaired): {gaps}", *cql_seeds),
        )
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
        gaps = "; ".join(f"{s} {_gap_text(v, 'IQL', 'PI')}" for s, v in results.items())
        rows["C9"] = (
            text,
            seeded(_verdict(beats_pi == n and best == n, beats_pi == n or best == n), *pi_seeds),
            shown(f"IQL − PI (unpaired): {gaps}", *pi_seeds),
        )
    columns = ["claim", "paper", "this build", "verdict", INTERVAL, "rule"]
    table = pd.DataFrame(
        [[c, PAPER[c], v[0], v[1], v[2], RULES[c]] for c, v in sorted(rows.items())],
        columns=columns,
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


#: Kinds of choice each half of the seeds makes again (:func:`half_choices`).
BUDGET, CORRECTION = "budget", "correction"
#: Algorithms whose budget each seeded claim's verdict rests on.
CLAIM_ALGORITHMS = {
    "C1": ("bc", "iql"),
    "C2": ("bc",),
    "C3": ("iql",),
    "C5": ("bc", "iql", "cql"),
    "C7": ("bc", "iql"),
    "C8": ("bc", "cql"),
    "C9": ("bc", "iql", "cql"),
}
#: Scenarios a claim reads (claims not listed read every results page).
CLAIM_SCENARIOS = {"C1": ("startup",), "C2": ("grade_up",), "C3": ("startup",)}
#: Claims that read a corrected ("+") row, so the correction choice matters too.
CORRECTED_CLAIMS = ("C2", "C3", "C5", "C9")
#: The ``half choices`` cell when both halves choose as all seeds did.
SAME_CHOICES = "as all seeds"
#: ... when the choices could not be rerun.
NOT_RERUN = "not rerun"
HALF_NAMES = ("first half", "second half")


def _split(seeds: list) -> tuple[list, list]:
    """Sorted seeds in two disjoint halves, as :func:`seed_halves` splits them."""
    order = sorted(seeds)
    cut = len(order) // 2
    return order[:cut], order[cut:]


def _half_rows(runs: pd.DataFrame) -> list[pd.DataFrame]:
    """The rows of ``runs`` (columns ``algorithm`` and ``seed``) on each half of the seeds,
    split per algorithm over its own seeds (an algorithm may train fewer, e.g. CQL); an
    algorithm with a single seed has no halves and is left out; empty when none has two."""
    halves = {a: _split(list(part["seed"].unique())) for a, part in runs.groupby("algorithm")}
    halves = {a: h for a, h in halves.items() if all(h)}
    if not halves:
        return []
    pairs = list(zip(runs["algorithm"], runs["seed"], strict=True))
    return [runs[[a in halves and seed in halves[a][half] for a, seed in pairs]] for half in (0, 1)]


def half_choices(results: dict[str, dict], curves: Mapping | None) -> pd.DataFrame:
    """The budget and correction choices made again on each half of the seeds.

    Budgets: the budget rule of the curves page
    (:class:`~polycstr_lib.analysis.curves.BudgetRule`, with its tolerance and ranges) on the
    learning curve's seeds of each half (each algorithm's own seeds, sorted, first ``n // 2``
    and the rest), compared
    with the budget the results page trained (glued ``budgets``; else the curve's all-seed
    budget). Corrections: the deployment rule
    (:func:`~polycstr_lib.correction.deployment.deploy_from_sweep`, with the page's margin)
    on each half's runs of the results page's validation sweep, compared with the glued
    all-seed deployment. Nothing is trained or rolled out: a half whose choice differs has
    no test-episode runs at its own choice (see :func:`seed_stability`).

    Args:
        results: scenario -> glued values of its results page (``correction_sweep`` and
            ``deploy_<algo>`` where the page glued them).
        curves: glued values of the learning-curves page (``curve_runs``, ``budget_rule``,
            ``curve_budgets``), or None.

    Returns:
        One row per (half, scenario, algorithm, kind): ``half`` (0 or 1), ``scenario``,
        ``algorithm``, ``kind`` (:data:`BUDGET` or :data:`CORRECTION`), ``all_seeds`` and
        ``chosen`` (the choices in words) and ``agrees``; empty when nothing can be rerun
        (one seed, or pages built before these values were glued).
    """
    # imported here: the deployment rule and the curves need torch, the claims alone do not
    from polycstr_lib.analysis.curves import aggregate_curve, curve_from_glue
    from polycstr_lib.analysis.results_page import sweep_from_glue
    from polycstr_lib.correction.deployment import deploy_from_sweep

    rows = []
    measured = curve_from_glue(curves or {})
    if measured is not None:
        curve, rule = measured
        table = (curves or {}).get("curve_budgets", {})
        for half, part in enumerate(_half_rows(curve)):  # one seed: no halves
            chosen = rule.choose(aggregate_curve(part, reps=100))
            for (algorithm, scenario), row in chosen.iterrows():
                if scenario not in results:
                    continue
                trained = results[scenario].get("budgets", {}).get(algorithm)
                if trained is None:
                    trained = table.get(algorithm, {}).get(scenario, {}).get("steps")
                if trained is None:
                    continue
                rows.append((half, scenario, algorithm, BUDGET, f"{int(trained):,} steps",
                             f"{int(row['budget']):,} steps"))  # fmt: skip
    for scenario, values in results.items():
        glued = values.get("correction_sweep")
        if not glued:
            continue
        sweep = sweep_from_glue(glued)
        variants: dict[str, Any] = dict.fromkeys(glued["variants"])  # names: settings unused
        for half, part in enumerate(_half_rows(sweep)):  # one seed: no halves
            chosen = deploy_from_sweep(
                part, variants, scenario, margin=glued["margin"],
                score_range=glued.get("score_range"),
            )  # fmt: skip
            for algorithm, deployment in chosen.items():
                full = values.get(f"deploy_{algorithm}")
                if full is not None:
                    rows.append((half, scenario, algorithm, CORRECTION, full, deployment.text()))
    columns = ["half", "scenario", "algorithm", "kind", "all_seeds", "chosen"]
    out = pd.DataFrame(rows, columns=columns)
    return out.assign(agrees=out["all_seeds"] == out["chosen"])


def _choices_text(choices: pd.DataFrame, claim: str, scenarios: list[str]) -> str:
    """The ``half choices`` cell of one claim: whether each half chose as all seeds did."""
    algorithms = CLAIM_ALGORITHMS.get(claim)
    if algorithms is None:
        return "—"
    kinds = (BUDGET, CORRECTION) if claim in CORRECTED_CLAIMS else (BUDGET,)
    read = CLAIM_SCENARIOS.get(claim, tuple(scenarios))
    mine = choices[
        choices["algorithm"].isin(algorithms)
        & choices["scenario"].isin(read)
        & choices["kind"].isin(kinds)
    ]
    missing = [k for k in kinds if not (mine["kind"] == k).any()]
    if mine.empty:
        return f"{NOT_RERUN} (no per-seed curve or sweep on the pages read)"
    differ = mine[~mine["agrees"]]
    text = SAME_CHOICES if differ.empty else "differ: " + "; ".join(
        f"{HALF_NAMES[r.half]} {r.algorithm.upper()} {r.scenario} {r.kind} {r.chosen} "
        f"(all seeds {r.all_seeds})"
        for r in differ.itertuples()
    )  # fmt: skip
    if missing:
        text += f" ({', '.join(missing)} {NOT_RERUN})"
    return text


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


def choice_stability(
    results: dict[str, dict], cost: dict, curves: Mapping | None = None
) -> pd.Series:
    """Per claim, whether each half of the seeds makes the budget and correction choices
    that all seeds made (:func:`half_choices`): the ``half choices`` column.

    A half's verdict (:func:`seed_stability`) is computed from its seeds' test-episode runs,
    which exist only at the all-seed choices (the results pages train one budget and deploy
    one correction per algorithm; the halves never retrain). Where a half would choose
    otherwise, its verdict is therefore the one at the all-seed choice, the nearest choice
    that was trained, and this column names the choice it would have made.

    Returns:
        Claim -> :data:`SAME_CHOICES`, ``"differ: ..."`` (each differing choice, by half),
        :data:`NOT_RERUN` with why, or ``"—"`` (claims read from the cost-model page).
    """
    full = assess_claims(results, cost)
    choices = half_choices(results, curves)
    return pd.Series(
        {claim: _choices_text(choices, claim, list(results)) for claim in full.index},
        name="half choices",
        dtype=object,
    )


def half_choices_page_table(choices: pd.DataFrame) -> ReaderTable:
    """:func:`half_choices` as the claims page shows it: one row per (scenario, algorithm,
    choice, half), the all-seed choice beside the half's and whether they agree."""
    shown = choices.assign(
        half=[HALF_NAMES[h] for h in choices["half"]],
        algorithm=choices["algorithm"].str.upper(),
    ).set_index(["scenario", "algorithm", "kind", "half"])
    return reader_table(
        shown,
        headers={"all_seeds": "All seeds", "chosen": "This half", "agrees": "Same"},
        index_header=["Scenario", "Algorithm", "Choice", "Half"],
        caption="Budget and correction chosen again on each half of the seeds",
    )


def choice_counts(table: pd.DataFrame) -> dict[str, int]:
    """How many verdicts of a :func:`claims_table` rest on half choices that are the same as
    all seeds', that differ, or that could not be rerun (claims with a ``half choices``)."""
    col = table["half choices"]
    return {
        "choices_same": int((col == SAME_CHOICES).sum()),
        "choices_differ": int(col.str.startswith("differ").sum()),
        "choices_not_rerun": int(col.str.contains(NOT_RERUN, regex=False).sum()),
    }


def claims_table(
    results: dict[str, dict],
    cost: dict,
    min_seeds: int = MIN_SEEDS,
    curves: Mapping | None = None,
) -> pd.DataFrame:
    """:func:`assess_claims` with the ``seed halves`` column of :func:`seed_stability` and
    the ``half choices`` column of :func:`choice_stability` beside each verdict.

    Args:
        results: scenario -> glued values of its results page.
        cost: glued values of the cost-model page.
        min_seeds: as in :func:`assess_claims`.
        curves: glued values of the learning-curves page (None: budgets not rerun).
    """
    table = assess_claims(results, cost, min_seeds)
    where = table.columns.get_loc("verdict") + 1
    table.insert(
        where, "seed halves", seed_stability(results, cost, min_seeds).reindex(table.index)
    )
    table.insert(
        where + 1, "half choices", choice_stability(results, cost, curves).reindex(table.index)
    )
    return table


def sensitivity_table(results: dict[str, dict], cost: dict) -> pd.DataFrame:
    """Each verdict of :func:`assess_claims` under other thresholds (no new rollouts).

    The minimum effect of "improves" is varied over :data:`MIN_EFFECTS` (the margin held at
    :data:`NON_INFERIORITY`), then the non-inferiority margin over
    :data:`NON_INFERIORITIES` (the minimum effect held at :data:`MIN_EFFECT`). Only the
    paired claims (C2, C3, C5) read these thresholds; the others repeat their verdict.
    Budgets and correction choices are not varied (that would need new training).

    Args:
        results: scenario -> glued values of its results page.
        cost: glued values of the cost-model page.

    Returns:
        DataFrame indexed by claim, one column per rule: ``"min effect 0 %"``, ...,
        ``"non-inferiority 0.5 %"``, ... (shares of each scenario's hold-to-oracle range),
        each cell the verdict under that rule.
    """
    columns = {}
    for effect in MIN_EFFECTS:
        columns[f"min effect {100 * effect:g} %"] = assess_claims(results, cost, min_effect=effect)[
            "verdict"
        ]
    for margin in NON_INFERIORITIES:
        columns[f"non-inferiority {100 * margin:g} %"] = assess_claims(
            results, cost, non_inferiority=margin
        )["verdict"]
    return pd.DataFrame(columns)


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
    if (table["verdict"] == INCONCLUSIVE).any():
        notes.append(
            f"{INCONCLUSIVE}: the {CONFIDENCE:.0%} interval of the paired difference "
            f"straddles the rule's threshold (minimum effect {share_text(MIN_EFFECT)}, or "
            f"non-inferiority margin {share_text(NON_INFERIORITY)}, the range being each "
            "scenario's hold-to-oracle range): the seeds disagree."
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
    """How many claims hold, partly hold, do not hold, are inconclusive, need more seeds.

    Returns:
        ``{HOLDS: k, PARTLY: k, FAILS: k, INCONCLUSIVE: k, NEEDS_SEEDS_KEY: k}`` (the last
        keyed ``"needs seeds"``, so that the page glues it as ``count_needs_seeds``).
    """
    counts = table["verdict"].value_counts()
    out = {k: int(counts.get(k, 0)) for k in (HOLDS, PARTLY, FAILS, INCONCLUSIVE)}
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
