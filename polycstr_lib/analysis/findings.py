"""The sentence each page opens with: its finding, written from the page's own numbers.

Pure functions of a page's glued values (the same mapping ``read_glue`` returns for an
executed page), so the words of a verdict ("raises", "lowers", "holds") are computed, never
typed, and a reader finds them before any table or code toggle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import pyplot as plt

__all__ = [
    "LEARNED",
    "ablation_finding",
    "at_a_glance_figure",
    "claims_finding",
    "correction_effect",
    "dataset_finding",
    "results_finding",
    "support_finding",
]

#: The learned base policies of the results pages, in reading order.
LEARNED = ("BC", "IQL", "CQL")
#: Differences smaller than this share of the page's hold-to-oracle range (``scale_range``;
#: the 100 points of the data range where a page has none) read as "no change": 0.05 point
#: of the data range, 0.0025 point of startup's range of about 5.
UNCHANGED_BELOW = 0.0005


def _interval(values: Mapping[str, Any], method: str) -> str:
    seeds = values.get(f"{method}_seeds", [])
    if len(seeds) < 2:
        return "(one training seed, so no interval)"
    low, high = values[f"{method}_iqm_low"], values[f"{method}_iqm_high"]
    return f"[{low:.1f}, {high:.1f}] (95 % interval over {len(seeds)} seeds)"


def correction_effect(
    values: Mapping[str, Any], bases: Sequence[str] = LEARNED, suffix: str = "+"
) -> str:
    """How the "+" rows differ from their bases, in words.

    Args:
        values: a results page's glued values (``<METHOD>_iqm`` for base and "+" rows).
        bases: the base methods to compare.
        suffix: the corrected rows' suffix: "+" (the deployed correction) or "+0" (the
            correction fixed without tuning).

    Returns:
        e.g. ``"raises CQL by 1.3 points; lowers BC by 0.7 points; leaves IQL unchanged"``, or
        ``""`` when no base has a "+" row.
    """
    raised, lowered, same = [], [], []
    unchanged = UNCHANGED_BELOW * float(values.get("scale_range", 100.0))
    for base in bases:
        if f"{base}_iqm" not in values or f"{base}{suffix}_iqm" not in values:
            continue
        gap = float(values[f"{base}{suffix}_iqm"]) - float(values[f"{base}_iqm"])
        if abs(gap) < unchanged:
            same.append(base)
        elif gap > 0:
            raised.append((base, gap))
        else:
            lowered.append((base, -gap))
    parts = []
    for verb, items in (("raises", raised), ("lowers", lowered)):
        if items:
            words = [f"{name} by {gap:.1f}" for name, gap in items]
            parts.append(f"{verb} " + " and ".join(words) + " points")
    if same:
        parts.append(f"leaves {' and '.join(same)} unchanged")
    return "; ".join(parts)


def _listed(items: Sequence[str]) -> str:
    """``'a'``, ``'a and b'``, ``'a, b and c'``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _runaways(values: Mapping[str, Any], methods: Sequence[str]) -> str:
    counts = [
        (m, int(values[f"{m}_runaways"]), int(values[f"{m}_episodes"]))
        for m in methods
        if f"{m}_runaways" in values and f"{m}_episodes" in values
    ]
    failed = [f"{m} {k} of {n}" for m, k, n in counts if k > 0]
    if not counts:
        return ""
    if not failed:
        return "No controller ran the reactor away on the test episodes."
    return "Thermal runaways on the test episodes: " + ", ".join(failed) + " episodes."


def results_finding(values: Mapping[str, Any]) -> str:
    """The finding of a results page: the best learned controller with its interval, the
    references, what the correction does, and the runaways.

    Args:
        values: the page's glued values: ``<METHOD>_iqm``, ``_iqm_low``, ``_iqm_high``,
            ``_seeds``, ``_runaways`` and ``_episodes`` for each method row ("BC", "BC+", …,
            "PI", "NMPC", "HOLD").

    Returns:
        Two or three sentences.

    Raises:
        ValueError: when no learned controller has a row.
    """
    learned = [m for base in LEARNED for m in (base, f"{base}+") if f"{m}_iqm" in values]
    if not learned:
        raise ValueError("no learned controller on this page (no BC/IQL/CQL _iqm value)")
    best = max(learned, key=lambda m: float(values[f"{m}_iqm"]))
    references = []
    if "PI_iqm" in values:
        references.append(f"{float(values['PI_iqm']):.1f} for the PI controller")
    if "NMPC_iqm" in values:
        references.append(f"{float(values['NMPC_iqm']):.1f} for the NMPC oracle")
    if "HOLD_iqm" in values:
        references.append(f"{float(values['HOLD_iqm']):.1f} for holding the inputs")
    sentence = (
        f"The best learned controller here is {best}, at {float(values[f'{best}_iqm']):.1f} "
        f"{_interval(values, best)}"
        + (f", against {_listed(references)}" if references else "")
        + "."
    )
    effect = correction_effect(values)
    if effect:
        sentence += f" The safety-layer correction chosen on validation {effect}."
    untuned = correction_effect(values, suffix="+0")
    if untuned:
        sentence += f" The correction fixed without tuning {untuned}."
    runaways = _runaways(values, [*learned, "PI", "NMPC"])
    return f"{sentence} {runaways}".strip()


def dataset_finding(trajectories: Mapping[str, Any]) -> str:
    """The finding of the dataset page: which scenarios' data contain thermal runaways.

    Args:
        trajectories: scenario → its data episodes (``Trajectories``).

    Returns:
        e.g. ``"The startup data hold 3 thermal runaways in 100 episodes; the grade_down and
        grade_up data hold none. Those runaways set the bottom of startup's score scale."``
    """
    from polycstr_lib.reactor.datasets import runaway_episodes

    counts = {s: (int(runaway_episodes(t).sum()), len(t.returns)) for s, t in trajectories.items()}
    names = {s: s.replace("_", " ") for s in counts}
    if not any(k for k, _ in counts.values()):
        return "No data episode of any scenario runs away."
    failed = [f"{names[s]} {k} of {n} episodes" for s, (k, n) in counts.items() if k]
    calm = [names[s] for s, (k, _) in counts.items() if not k]
    text = "Thermal runaways in the data: " + ", ".join(failed)
    if calm:
        text += f"; none in {' or '.join(calm)}"
    lowest = [
        names[s]
        for s, t in trajectories.items()
        if runaway_episodes(t)[int(np.argmin(np.asarray(t.returns)))]
    ]
    if lowest:
        text += (
            f". On {' and '.join(lowest)}, a runaway is the lowest-return episode, so it sets "
            "the 0 of the score scale"
        )
    return text + "."


def ablation_finding(base_name: str, shown: Mapping[str, Any]) -> str:
    """The finding of the ablation page: do the settings chosen on validation beat the
    uncorrected base on the test episodes?

    Args:
        base_name: the base policy ("BC").
        shown: the page's glued validation and test values: ``test_base_iqm`` and, for each
            sweep (model, k, rho, newton), ``val_<sweep>_variant`` and ``test_<sweep>_iqm``.

    Returns:
        e.g. ``"On the test episodes, 0 of the 4 corrections chosen on validation score
        above the uncorrected BC (79.0): cost model PICNN -72.7, ..."``.
    """
    labels = {"model": "cost model", "k": "steps", "rho": "trust radius", "newton": "Newton"}
    chosen = {
        f"{label} {shown[f'val_{key}_variant']}": float(shown[f"test_{key}_iqm"])
        for key, label in labels.items()
        if f"test_{key}_iqm" in shown and f"val_{key}_variant" in shown
    }
    base = float(shown["test_base_iqm"])
    above = [k for k, v in chosen.items() if v > base + UNCHANGED_BELOW]
    scores = ", ".join(f"{k} {v:.1f}" for k, v in chosen.items())
    return (
        f"On the test episodes, {len(above)} of the {len(chosen)} corrections chosen on "
        f"validation score above the uncorrected {base_name} ({base:.1f}): {scores}."
    )


def support_finding(shown: Mapping[str, Any]) -> str:
    """The finding of the correction-support page: what validation deploys, and its test effect.

    Args:
        shown: the page's glued values: ``n_pairs``, ``n_corrected``, ``n_fallback``,
            ``deployed_variants`` (validation choices), and ``test_gain_low`` /
            ``test_gain_high`` (the test gains of the deployed corrections, in points).
    """
    pairs, corrected = int(shown["n_pairs"]), int(shown["n_corrected"])
    kept, fallback = pairs - corrected, int(shown["n_fallback"])
    why = f" ({fallback} because no setting was admissible)" if fallback else ""
    if corrected == 0:
        return (
            f"Chosen on validation episodes by the results pages' rule, no correction is "
            f"deployed for any of the {pairs} (scenario, algorithm) pairs{why}, so on the test "
            "episodes every corrected agent is its base."
        )
    low, high = float(shown["test_gain_low"]), float(shown["test_gain_high"])
    gain = f"{low:+.1f}" if abs(high - low) < UNCHANGED_BELOW else f"{low:+.1f} to {high:+.1f}"
    rest = f"; the other {kept} keep no correction{why}" if kept else ""
    return (
        f"Chosen on validation episodes by the results pages' rule, a correction is deployed "
        f"for {corrected} of {pairs} (scenario, algorithm) pairs ({shown['deployed_variants']})"
        f"{rest}. On the test episodes, run once for the deployed settings, the corrected "
        f"agents score {gain} points against their base (IQM over seeds)."
    )


def claims_finding(verdicts: pd.Series) -> str:
    """The finding of the claims page: how many claims hold, and which do not.

    Args:
        verdicts: claim id → verdict ("holds", "partly", "does not hold", "inconclusive",
            or another word for a claim that cannot be judged in this build).

    Returns:
        e.g. ``"Of 9 claims of the paper, 4 hold, 2 hold in part and 3 do not hold in this
        build (C2, C5, C8)."``
    """
    counts = verdicts.value_counts()
    held, partly, failed = (int(counts.get(k, 0)) for k in ("holds", "partly", "does not hold"))
    unclear = int(counts.get("inconclusive", 0))
    other = len(verdicts) - held - partly - failed - unclear
    text = (
        f"Of {len(verdicts)} claims of the paper, {held} {'holds' if held == 1 else 'hold'}, "
        f"{partly} {'holds' if partly == 1 else 'hold'} in part and {failed} "
        f"{'does' if failed == 1 else 'do'} not hold in this build"
    )
    if failed:
        text += " (" + ", ".join(str(c) for c in verdicts.index[verdicts == "does not hold"]) + ")"
    if unclear:
        text += f"; {unclear} {'is' if unclear == 1 else 'are'} inconclusive ("
        text += ", ".join(str(c) for c in verdicts.index[verdicts == "inconclusive"]) + ")"
    if other:
        text += f"; {other} cannot be judged with this build's seeds"
    return text + "."


def at_a_glance_figure(results: Mapping[str, Mapping[str, Any]]) -> plt.Figure:
    """Every method on every scenario: IQM across seeds with its 95 % interval.

    Args:
        results: scenario → the glued values of its results page.

    Returns:
        One panel per scenario, methods on the vertical axis, scores on a linear axis
        clipped to the band where the references lie; a method whose score falls below the
        band is drawn at its left edge with its value written beside it.
    """
    from polycstr_lib.analysis.style import FULL_WIDTH, book_style, finish_figure, method_colour

    scenarios = list(results)
    every = ["NMPC", "PI", *[m for b in LEARNED for m in (b, f"{b}+")]]
    methods = [m for m in every if any(f"{m}_iqm" in v for v in results.values())]
    with book_style():
        fig, axes = plt.subplots(
            1,
            len(scenarios),
            figsize=(FULL_WIDTH, 0.4 * len(methods) + 1.3),
            sharey=True,
            squeeze=False,
        )
    for ax, scenario in zip(axes[0], scenarios, strict=True):
        values = results[scenario]
        left = 0.0
        for y, m in enumerate(methods):
            if f"{m}_iqm" not in values:
                continue
            v = float(values[f"{m}_iqm"])
            lo = float(values.get(f"{m}_iqm_low", v))
            hi = float(values.get(f"{m}_iqm_high", v))
            colour = method_colour(m)
            if v < left:
                ax.plot(left, y, marker="<", color=colour, ms=8)
                ax.text(left + 2, y, f"{v:.0f}", va="center", fontsize=9)
                continue
            ax.errorbar(
                v,
                y,
                xerr=[[v - max(lo, left)], [hi - v]],
                fmt="o",
                color=colour,
                mfc="white" if m.endswith("+") else colour,
                ms=6,
                capsize=3,
            )
        ax.set_xlim(left, 105)
        ax.set_xticks([0, 50, 100])
        ax.set_yticks(range(len(methods)), [m.replace("NMPC", "NMPC (oracle)") for m in methods])
        ax.set_title(scenario.replace("_", " "))
        ax.grid(axis="x", alpha=0.4)
    axes[0][len(scenarios) // 2].set_xlabel("normalised reward (IQM over seeds)")
    axes[0][0].invert_yaxis()
    fig.tight_layout()
    return finish_figure(fig)
