"""The paper's claims beside this build's numbers, with verdicts computed from them.

Values come from the executed notebooks' myst-nb ``glue`` outputs (read back from the
notebook files, never typed); :func:`assess_claims` turns them into verdicts with rules
stated in :data:`RULES`, so a reviewer can check each verdict against its inputs.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pandas as pd

SCENARIO_NAMES = ("startup", "grade_down", "grade_up")
HOLDS, PARTLY, FAILS = "holds", "partly", "does not hold"
MARGIN = 20.0  # normalised-reward points that make "A >> B"
R2_GAP = 0.1  # R² gap that makes "PICNN clearly below NN"
R2_SMALL_GAP = 0.01  # smaller gaps are noise between two training runs

RULES = {
    "C1": f"holds if IQL's mean exceeds BC's by >= {MARGIN:g} points and is >= 0 (no worse "
    "than the data's worst episode); partly if it exceeds BC's at all",
    "C2": f"holds if BC+'s mean exceeds BC's by >= {MARGIN:g} points and is >= 0 (no worse "
    "than the data's worst episode); partly if it exceeds BC's at all",
    "C3": "holds if IQL+'s minimum exceeds IQL's by > 1 point; partly if within 1 point",
    "C4": f"holds if the PICNN's held-out R² is below the NN's by >= {R2_GAP:g} in every "
    f"scenario; partly if below by >= {R2_SMALL_GAP:g} in at least one",
    "C5": "holds if the corrected policy's minimum is >= the base policy's and its std is <= "
    "the base's in at least 2/3 of (algorithm, scenario) pairs; partly if in at least one",
    "C6": "holds if, late in episodes, the PICNN agrees with the simulator's gradient more "
    "often than the NN and flips no more often; partly if one of the two",
    "C7": "holds if BC's steady-state offset exceeds IQL's and PI's in at least 2 of 3 "
    "scenarios; partly if in one",
    "C8": "holds if CQL's mean exceeds BC's in every scenario; partly if in at least one",
    "C9": "holds if IQL's mean beats PI's in every scenario and IQL+ has the best mean of all "
    "agents in every scenario; partly if one of the two",
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


def read_glue(path: str | Path) -> dict:
    """All values glued (myst-nb ``glue``) in an executed notebook, by name.

    Raises:
        FileNotFoundError: when the notebook is missing.
        ValueError: when a glued value cannot be parsed as a Python literal.
    """
    nb = json.loads(Path(path).read_text())
    values = {}
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook")
            if not meta:
                continue
            data = out.get("data", {})
            text = data.get(meta.get("mime_prefix", "") + "text/plain", data.get("text/plain"))
            if isinstance(text, list):
                text = "".join(text)
            try:
                values[meta["name"]] = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                if text in ("nan", "inf", "-inf"):
                    values[meta["name"]] = float(text)
                else:
                    raise ValueError(
                        f"{path}: cannot parse glued {meta['name']}={text!r}"
                    ) from None
    return values


def _verdict(full: bool, some: bool) -> str:
    return HOLDS if full else PARTLY if some else FAILS


def _much_better(better: float, worse: float) -> str:
    """Verdict of "better ≫ worse" on mean normalised rewards.

    A margin alone is not enough: two failing policies can differ by hundreds of points, so
    "≫" also needs the better one to be a working controller (mean >= 0, i.e. no worse than
    the data's worst episode).
    """
    gap = better - worse
    return _verdict(gap >= MARGIN and better >= 0, gap > 0)


def assess_claims(results: dict[str, dict], cost: dict) -> pd.DataFrame:
    """Verdicts of claims C1-C9.

    Args:
        results: scenario -> glued values of its results page (``<METHOD>_mean``,
            ``<METHOD>_min``, ``<METHOD>_std``, ``<METHOD>_offset``).
        cost: glued values of the cost-model page (``r2_mlp_<scenario>``,
            ``r2_picnn_<scenario>``, ``agree_<mlp|picnn>_late``, ``flip_<mlp|picnn>_late``).

    Returns:
        DataFrame indexed by claim: ``paper``, ``this build``, ``verdict``, ``rule``.
    """
    rows = {}

    def get(scenario, key):
        return float(results[scenario][key])

    if "startup" in results:
        rows["C1"] = (
            f"startup: IQL {get('startup', 'IQL_mean'):.1f} vs BC {get('startup', 'BC_mean'):.1f}",
            _much_better(get("startup", "IQL_mean"), get("startup", "BC_mean")),
        )
        d = get("startup", "IQL+_min") - get("startup", "IQL_min")
        rows["C3"] = (
            f"startup: IQL+ min {get('startup', 'IQL+_min'):.1f} vs IQL min "
            f"{get('startup', 'IQL_min'):.1f}",
            _verdict(d > 1, d >= -1),
        )
    if "grade_up" in results:
        rows["C2"] = (
            f"grade up: BC+ {get('grade_up', 'BC+_mean'):.1f} vs BC "
            f"{get('grade_up', 'BC_mean'):.1f}",
            _much_better(get("grade_up", "BC+_mean"), get("grade_up", "BC_mean")),
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
        worse = sum(v["BC_offset"] > max(v["IQL_offset"], v["PI_offset"]) for v in results.values())
        text = ", ".join(f"{s} {v['BC_offset']:.1f}" for s, v in results.items())
        rows["C7"] = (
            f"BC offset (kg/m³): {text}; worse than IQL and PI in {worse} of {len(results)}",
            _verdict(worse >= 2, worse >= 1),
        )
        wins = sum(v["CQL_mean"] > v["BC_mean"] for v in results.values())
        rows["C8"] = (
            f"CQL mean above BC's in {wins} of {len(results)} scenarios",
            _verdict(wins == len(results), wins > 0),
        )
        beats_pi = sum(v["IQL_mean"] > v["PI_mean"] for v in results.values())
        agents = ("BC", "BC+", "IQL", "IQL+", "CQL", "CQL+")
        best = sum(v["IQL+_mean"] >= max(v[f"{a}_mean"] for a in agents) for v in results.values())
        n = len(results)
        rows["C9"] = (
            f"IQL beats PI in {beats_pi} of {n}; IQL+ best in {best} of {n}",
            _verdict(beats_pi == n and best == n, beats_pi == n or best == n),
        )
    columns = ["claim", "paper", "this build", "verdict", "rule"]
    table = pd.DataFrame(
        [[c, PAPER[c], v[0], v[1], RULES[c]] for c, v in sorted(rows.items())], columns=columns
    ).set_index("claim")
    return table


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
