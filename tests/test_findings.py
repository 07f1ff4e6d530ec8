"""The pages' opening findings: verdict words computed from the numbers, on hand-made values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from polycstr_lib.analysis.findings import (
    ablation_finding,
    claims_finding,
    correction_effect,
    dataset_finding,
    results_finding,
    support_finding,
)


def page(**iqm: float) -> dict:
    """Glued values of a results page with one seed per method and no runaway."""
    values = {}
    for name, value in iqm.items():
        method = name.replace("_plus", "+")
        values.update(
            {
                f"{method}_iqm": value,
                f"{method}_iqm_low": value,
                f"{method}_iqm_high": value,
                f"{method}_seeds": [0],
                f"{method}_runaways": 0,
                f"{method}_episodes": 20,
            }
        )
    return values


def test_the_best_learned_controller_is_named_with_why_it_has_no_interval() -> None:
    text = results_finding(page(PI=90.0, NMPC=101.0, BC=60.0, BC_plus=70.0, IQL=95.0))
    assert text.startswith("The best learned controller here is IQL, at 95.0 (one training seed")
    assert "against 90.0 for the PI controller and 101.0 for the NMPC oracle" in text
    assert "correction chosen on validation raises BC by 10.0 points" in text
    assert "No controller ran the reactor away" in text
    with_hold = results_finding(page(PI=90.0, NMPC=101.0, HOLD=96.0, IQL=95.0))
    assert (
        "against 90.0 for the PI controller, 101.0 for the NMPC oracle and 96.0 for " in with_hold
    )
    assert "96.0 for holding the inputs." in with_hold


def test_with_seeds_the_interval_is_given_and_runaways_are_counted_k_of_n() -> None:
    values = page(BC=60.0, BC_plus=59.0)
    values.update({"BC_seeds": [0, 1, 2], "BC_iqm_low": 55.0, "BC_iqm_high": 64.5})
    values["BC+_runaways"] = 3
    text = results_finding(values)
    assert "BC, at 60.0 [55.0, 64.5] (95 % interval over 3 seeds)" in text
    assert "lowers BC by 1.0 points" in text
    assert "Thermal runaways on the test episodes: BC+ 3 of 20 episodes." in text


def test_correction_effect_groups_raised_lowered_and_unchanged() -> None:
    values = page(BC=60.0, BC_plus=61.0, IQL=90.0, IQL_plus=89.0, CQL=80.0, CQL_plus=80.01)
    assert correction_effect(values) == (
        "raises BC by 1.0 points; lowers IQL by 1.0 points; leaves CQL unchanged"
    )
    assert correction_effect(page(BC=1.0)) == ""
    # "unchanged" is a share of the hold-to-oracle range: 0.01 point is a change on a
    # 5-point range (0.0025 point), not on the data range (0.05 point)
    narrow = {**page(CQL=80.0, CQL_plus=80.01), "scale_range": 5.0}
    assert correction_effect(narrow) == "raises CQL by 0.0 points"
    untuned = page(BC=60.0, BC_plus0=20.0)
    assert correction_effect(untuned, suffix="+0") == "lowers BC by 40.0 points"


def test_a_page_without_learned_controllers_is_an_error() -> None:
    with pytest.raises(ValueError, match="no learned controller"):
        results_finding(page(PI=90.0))


def test_claims_finding_counts_and_names_what_fails() -> None:
    verdicts = pd.Series(
        ["holds", "does not hold", "partly", "holds", "does not hold", "needs seeds"],
        index=["C1", "C2", "C3", "C4", "C5", "C6"],
    )
    assert claims_finding(verdicts) == (
        "Of 6 claims of the paper, 2 hold, 1 holds in part and 2 do not hold in this build "
        "(C2, C5); 1 cannot be judged with this build's seeds."
    )
    one = pd.Series(["holds", "does not hold"], index=["C1", "C2"])
    assert claims_finding(one).startswith("Of 2 claims of the paper, 1 holds, 0 hold in part")
    assert "and 1 does not hold in this build (C2)." in claims_finding(one)
    unclear = pd.Series(["holds", "inconclusive", "needs seeds"], index=["C1", "C3", "C5"])
    assert claims_finding(unclear).endswith(
        "; 1 is inconclusive (C3); 1 cannot be judged with this build's seeds."
    )


class Toy:
    def __init__(self, peaks: list[float], returns: list[float]):
        states = np.full((len(peaks), 3, 5), 350.0)
        states[:, 1, 4] = peaks
        self.states, self.returns = states, np.asarray(returns)


def test_dataset_finding_counts_runaways_and_says_when_one_sets_the_scale() -> None:
    text = dataset_finding(
        {"startup": Toy([600.0, 350.0, 351.0], [-1e6, -3.0, -2.0]), "grade_up": Toy([350.0], [-1])}
    )
    assert text == (
        "Thermal runaways in the data: startup 1 of 3 episodes; none in grade up. On startup, "
        "a runaway is the lowest-return episode, so it sets the 0 of the score scale."
    )
    assert dataset_finding({"grade_up": Toy([350.0], [-1])}) == (
        "No data episode of any scenario runs away."
    )


def test_ablation_and_support_findings_compare_with_the_base() -> None:
    shown = {
        "test_base_iqm": 79.0,
        "val_k_variant": "K = 1",
        "test_k_iqm": -6.0,
        "val_rho_variant": "ρ = 0.3",
        "test_rho_iqm": 80.0,
    }
    text = ablation_finding("BC", shown)
    assert text.startswith("On the test episodes, 1 of the 2 corrections chosen on validation")
    assert text.endswith("(79.0): steps K = 1 -6.0, trust radius ρ = 0.3 80.0.")
    shown = {"n_pairs": 6, "n_corrected": 2, "n_fallback": 3,
             "deployed_variants": "normalised in 2", "test_gain_low": -1.24,
             "test_gain_high": 3.0}  # fmt: skip
    assert support_finding(shown) == (
        "Chosen on validation episodes by the results pages' rule, a correction is deployed "
        "for 2 of 6 (scenario, algorithm) pairs (normalised in 2); the other 4 keep no "
        "correction (3 because no setting was admissible). On the test episodes, run once for "
        "the deployed settings, the corrected agents score -1.2 to +3.0 points against their "
        "base (IQM over seeds)."
    )
    one = {**shown, "n_corrected": 6, "n_fallback": 0, "test_gain_low": 0.5, "test_gain_high": 0.5}
    assert "6 of 6" in support_finding(one) and "keep" not in support_finding(one)
    assert support_finding(one).endswith("score +0.5 points against their base (IQM over seeds).")
    none = {**shown, "n_corrected": 0, "test_gain_low": np.nan, "test_gain_high": np.nan}
    assert support_finding(none) == (
        "Chosen on validation episodes by the results pages' rule, no correction is deployed "
        "for any of the 6 (scenario, algorithm) pairs (3 because no setting was admissible), "
        "so on the test episodes every corrected agent is its base."
    )


def test_the_at_a_glance_figure_has_a_panel_per_scenario_and_legible_text() -> None:
    from polycstr_lib.analysis.findings import at_a_glance_figure
    from polycstr_lib.analysis.style import MIN_FONT_PT, method_colour

    pages = {
        "startup": page(PI=99.0, NMPC=101.0, BC=66.0, BC_plus=-500.0, IQL=98.6),
        "grade_up": page(PI=90.0, BC=30.0, BC_plus=40.0, IQL=95.0),
    }
    fig = at_a_glance_figure(pages)
    axes = fig.axes
    assert len(axes) == 2 and all(ax.get_xscale() == "linear" for ax in axes)
    labels = [t.get_text() for t in axes[0].get_yticklabels()]
    assert labels == ["NMPC (oracle)", "PI", "BC", "BC+", "IQL"]
    # BC+ at -500 on startup: a marker at the left edge with its value written beside it
    assert any(t.get_text() == "-500" for t in axes[0].texts)
    fig.canvas.draw()
    sizes = [t.get_fontsize() for ax in axes for t in [*ax.texts, *ax.get_yticklabels()]]
    assert min(sizes) >= MIN_FONT_PT
    colours = {line.get_color() for line in axes[1].lines}
    assert method_colour("IQL") in colours or any(method_colour("IQL") in str(c) for c in colours)
