"""Claims: glue values are read back from notebooks and verdicts follow the stated rules."""

import json

import pytest

from polycstr_lib.analysis.claims import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    INTERVAL,
    MIN_EFFECT,
    NEEDS_SEEDS,
    NEEDS_SEEDS_KEY,
    PARTLY,
    assess_claims,
    verdict_counts,
)
from polycstr_lib.book.glue import read_glue

AGENTS = ("Data", "PI", "BC", "BC+", "IQL", "IQL+", "CQL", "CQL+")


def scenario_values(**overrides):
    values = {}
    for i, method in enumerate(AGENTS):
        values.update(
            {
                f"{method}_mean": 50.0 + i,
                f"{method}_min": 20.0 + i,
                f"{method}_std": 10.0,
                f"{method}_offset": 1.0,
            }
        )
    values.update(overrides)
    return values


COST = {
    "r2_mlp_startup": 0.99,
    "r2_picnn_startup": 0.73,
    "agree_mlp_late": 0.4,
    "agree_picnn_late": 0.9,
    "flip_mlp_late": 0.3,
    "flip_picnn_late": 0.05,
}


def test_verdicts_follow_the_numbers():
    # Single-run pages (no per-seed lists): the rules alone, with the seed gate off
    # (min_seeds=1); test_one_seed_verdicts_need_seeds covers the gate.
    results = {
        "startup": scenario_values(
            **{
                "IQL_mean": 98.6,
                "BC_mean": 41.2,
                "IQL+_min": 81.1,
                "IQL_min": 72.7,
                "BC_offset": 9.0,
            }
        ),
        "grade_down": scenario_values(BC_offset=5.0),
        "grade_up": scenario_values(**{"BC+_mean": 66.9, "BC_mean": 4.7}),
    }
    table = assess_claims(results, COST, min_seeds=1)
    assert table.loc["C1", "verdict"] == HOLDS
    assert table.loc["C2", "verdict"] == HOLDS
    assert table.loc["C3", "verdict"] == HOLDS
    assert table.loc["C4", "verdict"] == HOLDS
    assert table.loc["C6", "verdict"] == HOLDS
    assert table.loc["C7", "verdict"] == HOLDS  # BC offset worst in 2 of 3
    assert "98.6" in table.loc["C1", "this build"]

    results["startup"]["IQL_mean"] = 45.0  # only 3.8 points above BC
    results["grade_up"]["BC+_mean"] = 1.0  # below BC
    cost = dict(COST, r2_picnn_startup=0.995)  # PICNN fits better than the NN
    table = assess_claims(results, cost, min_seeds=1)
    assert table.loc["C1", "verdict"] == PARTLY
    assert table.loc["C2", "verdict"] == FAILS
    assert table.loc["C4", "verdict"] == FAILS
    assert sum(verdict_counts(table).values()) == len(table) == 9


def test_a_large_gap_between_two_failing_policies_is_only_partly():
    # Both fail (means far below the data's worst episode): 157 points apart is not "≫".
    results = {"grade_up": scenario_values(**{"BC+_mean": -837.8, "BC_mean": -995.0})}
    results["startup"] = scenario_values(**{"IQL_mean": -10.0, "BC_mean": -500.0})
    table = assess_claims(results, COST, min_seeds=1)
    assert table.loc["C2", "verdict"] == PARTLY
    assert table.loc["C1", "verdict"] == PARTLY
    results["grade_up"]["BC+_mean"] = 0.0  # a working controller 995 points above BC
    assert assess_claims(results, COST, min_seeds=1).loc["C2", "verdict"] == HOLDS


def test_iql_plus_best_everywhere_and_cql_rules():
    results = {s: scenario_values() for s in ("startup", "grade_down", "grade_up")}
    table = assess_claims(results, COST, min_seeds=1)
    # IQL (54) beats PI (51) everywhere but CQL+ (57) has the best mean: partly
    assert table.loc["C9", "verdict"] == PARTLY
    assert table.loc["C8", "verdict"] == HOLDS  # CQL 56 > BC 52 everywhere
    for s in results:
        results[s]["IQL+_mean"] = 99.0
    assert assess_claims(results, COST, min_seeds=1).loc["C9", "verdict"] == HOLDS


def test_read_glue_parses_myst_nb_outputs(tmp_path):
    def glued(name, text):
        return {
            "output_type": "display_data",
            "metadata": {
                "scrapbook": {"name": name, "mime_prefix": "application/papermill.record/"}
            },
            "data": {"application/papermill.record/text/plain": text},
        }

    nb = {
        "cells": [
            {
                "cell_type": "code",
                "outputs": [
                    glued("a", "1.5"),
                    glued("b", "'yes'"),
                    glued("c", "nan"),
                    {"output_type": "stream", "text": "noise"},
                ],
            }
        ]
    }
    path = tmp_path / "x.ipynb"
    path.write_text(json.dumps(nb))
    values = read_glue(path)
    assert values["a"] == 1.5 and values["b"] == "yes" and values["c"] != values["c"]
    figure = glued("fig", "<Figure size 680x450 with 3 Axes>")
    figure["data"]["application/papermill.record/image/png"] = "iVBORw0KGgo="
    nb["cells"][0]["outputs"].append(figure)
    path.write_text(json.dumps(nb))
    assert "fig" not in read_glue(path)  # a glued figure is an image, not a number
    nb["cells"][0]["outputs"].append(glued("d", "np.float64(2.0)"))
    path.write_text(json.dumps(nb))
    with pytest.raises(ValueError, match="cannot parse glued d"):
        read_glue(path)


def test_small_r2_gaps_are_not_a_partial_reproduction():
    base = {"r2_mlp_startup": 0.99, "r2_mlp_grade_up": 0.99}
    noise = dict(base, r2_picnn_startup=0.9895, r2_picnn_grade_up=0.995)
    assert assess_claims({}, noise).loc["C4", "verdict"] == FAILS
    some = dict(base, r2_picnn_startup=0.97, r2_picnn_grade_up=0.995)
    assert assess_claims({}, some).loc["C4", "verdict"] == PARTLY


def test_no_result_pages_give_an_empty_table():
    table = assess_claims({}, {})
    assert table.empty
    assert list(table.columns) == ["paper", "this build", "verdict", INTERVAL, "rule"]
    assert verdict_counts(table) == {
        HOLDS: 0,
        PARTLY: 0,
        FAILS: 0,
        INCONCLUSIVE: 0,
        NEEDS_SEEDS_KEY: 0,
    }


def seeded(values, method, means, seeds=None, mins=None):
    """``values`` with per-seed lists for ``method`` (means over seeds kept consistent)."""
    seeds = list(range(len(means))) if seeds is None else seeds
    mins = [m - 10.0 for m in means] if mins is None else mins
    values.update(
        {
            f"{method}_seeds": seeds,
            f"{method}_seed_means": means,
            f"{method}_seed_mins": mins,
            f"{method}_seed_stds": [10.0] * len(means),
            f"{method}_seed_offsets": [1.0] * len(means),
            f"{method}_mean": sum(means) / len(means),
            f"{method}_min": sum(mins) / len(mins),
        }
    )
    return values


def test_better_than_claims_need_probability_of_improvement_across_seeds():
    bc = [30.0, 30.0, 30.0, 30.0]
    # IQM of [10, 70, 70, 70] keeps the middle two: 70; P(IQL > BC) = 3/4
    startup = seeded(seeded(scenario_values(), "BC", bc), "IQL", [70.0, 70.0, 70.0, 10.0])
    table = assess_claims({"startup": startup}, {})
    assert table.loc["C1", "verdict"] == HOLDS
    assert "IQM IQL 70.0 vs BC 30.0" in table.loc["C1", "this build"]
    assert "P(IQL > BC) = 0.75" in table.loc["C1", "this build"]
    # half the seeds fail: P = 0.5, IQM 40 -> not even partly
    seeded(startup, "IQL", [70.0, 70.0, 10.0, 10.0])
    assert assess_claims({"startup": startup}, {}).loc["C1", "verdict"] == FAILS
    # C8: P(CQL > BC) = 0.5 with equal IQMs does not count as a win
    down = seeded(seeded(scenario_values(), "BC", [50.0, 70.0]), "CQL", [60.0, 60.0])
    assert assess_claims({"grade_down": down}, {}).loc["C8", "verdict"] == FAILS
    seeded(down, "CQL", [71.0, 75.0])  # P = 1
    assert assess_claims({"grade_down": down}, {}).loc["C8", "verdict"] == HOLDS


def test_c3_compares_the_seeds_worst_episodes():
    startup = seeded(scenario_values(), "IQL", [90.0, 90.0], mins=[70.0, 72.0])
    seeded(startup, "IQL+", [90.0, 90.0], mins=[80.0, 81.0])
    table = assess_claims({"startup": startup}, {})
    assert table.loc["C3", "verdict"] == HOLDS
    assert "worst episode IQL+ 80.0 vs IQL 70.0" in table.loc["C3", "this build"]
    assert table.loc["C3", INTERVAL] == "minima +9.5 [+9.0, +10.0]; worst episode +10.0"
    # 0.25 below on average: once "partly" (within a point), now it does not hold
    seeded(startup, "IQL+", [90.0, 90.0], mins=[70.5, 71.0])
    assert assess_claims({"startup": startup}, {}).loc["C3", "verdict"] == FAILS


def test_seed_halves_split_the_sorted_seeds():
    from polycstr_lib.analysis.claims import seed_halves

    values = seeded(scenario_values(), "BC", [30.0, 10.0, 20.0, 0.0], seeds=[3, 1, 2, 0])
    first, second = seed_halves({"startup": values})
    assert first["startup"]["BC_seeds"] == [0, 1] and second["startup"]["BC_seeds"] == [2, 3]
    assert first["startup"]["BC_seed_means"] == [0.0, 10.0]
    assert first["startup"]["BC_mean"] == 5.0 and second["startup"]["BC_mean"] == 25.0
    assert second["startup"]["BC_min"] == 15.0  # mins are means - 10
    assert first["startup"]["PI_mean"] == second["startup"]["PI_mean"] == values["PI_mean"]
    odd = seeded(scenario_values(), "BC", [1.0, 2.0, 3.0])
    first, second = seed_halves({"startup": odd})
    assert first["startup"]["BC_seeds"] == [0] and second["startup"]["BC_seeds"] == [1, 2]
    assert seed_halves({"startup": seeded(scenario_values(), "BC", [1.0])}) is None
    assert seed_halves({"startup": scenario_values()}) is None  # no per-seed lists at all


def test_seed_stability_says_stable_or_flips():
    from polycstr_lib.analysis.claims import (
        NO_SEEDS,
        NOT_ASSESSABLE,
        STABLE,
        claims_table,
        seed_stability,
        stability_counts,
    )

    bc = [40.0, 41.0, 42.0, 43.0]
    agree = seeded(seeded(scenario_values(), "BC", bc), "IQL", [95.0, 96.0, 97.0, 98.0])
    stability = seed_stability({"startup": agree}, COST)
    assert stability["C1"] == STABLE
    assert stability["C4"] == stability["C6"] == NO_SEEDS
    # seeds 0 and 1 of IQL work, seeds 2 and 3 fail: the halves disagree
    disagree = seeded(seeded(scenario_values(), "BC", bc), "IQL", [95.0, 96.0, 30.0, 31.0])
    stability = seed_stability({"startup": disagree}, COST)
    assert stability["C1"] == "flips (first half: holds, second half: does not hold)"
    table = claims_table({"startup": disagree}, COST)
    assert list(table.columns) == [
        "paper",
        "this build",
        "verdict",
        "seed halves",
        "half choices",
        INTERVAL,
        "rule",
    ]
    assert table.loc["C1", "verdict"] == FAILS  # P(IQL > BC) = 8/16 over all seeds
    counts = stability_counts(table)
    assert counts["flips"] >= 1 and sum(counts.values()) == len(table)
    one_seed = {"startup": scenario_values()}
    stability = seed_stability(one_seed, COST)
    assert stability["C1"] == NOT_ASSESSABLE and stability["C4"] == NO_SEEDS
    assert claims_table({}, {}).empty


def test_one_seed_verdicts_need_seeds():
    """With one seed per method, a verdict that reads P(A > B) says it needs seeds."""
    startup = seeded(seeded(scenario_values(), "BC", [41.2]), "IQL", [98.6])
    seeded(seeded(startup, "IQL+", [98.7], mins=[96.7]), "IQL", [98.6], mins=[96.5])
    results = {"startup": startup, "grade_up": scenario_values(), "grade_down": scenario_values()}
    table = assess_claims(results, COST)
    for claim in ("C1", "C2", "C3", "C5", "C8", "C9"):
        assert table.loc[claim, "verdict"] == NEEDS_SEEDS, claim
        assert table.loc[claim, INTERVAL].startswith("— "), claim  # no interval from one seed
    assert "P(IQL > BC) needs ≥ 2 seeds" in table.loc["C1", "this build"]
    assert "= 1.00" not in table.loc["C1", "this build"]  # no probability from one pair
    assert table.loc["C4", "verdict"] == HOLDS  # cost-model claims need no seeds
    counts = verdict_counts(table)
    assert counts[NEEDS_SEEDS_KEY] == 6 and sum(counts.values()) == len(table)
    # two seeds of IQL: C1 is judged by its rule again
    seeded(startup, "IQL", [98.6, 97.0])
    assert assess_claims(results, COST).loc["C1", "verdict"] == HOLDS
    assert assess_claims(results, COST, min_seeds=1).loc["C2", "verdict"] != NEEDS_SEEDS


def test_claims_page_table_names_rules_briefly():
    from polycstr_lib.analysis.claims import RULE_NAMES, RULES, claims_page_table, claims_table

    table = claims_table({"startup": scenario_values()}, COST)
    shown = claims_page_table(table)
    assert shown.headers == [
        "Claim",
        "Paper",
        "This build",
        "Verdict",
        "Seed halves",
        "Half choices",
        INTERVAL,
        "Rule",
    ]
    assert shown.frame.loc["C1", "Rule"] == RULE_NAMES["C1"]
    assert all(len(name) <= 30 for name in RULE_NAMES.values())
    assert dict(shown.definitions)[f"C1 · {RULE_NAMES['C1']}"] == RULES["C1"]
    assert shown.frame.loc["C1", "Verdict"] == NEEDS_SEEDS
    assert any(note.startswith(NEEDS_SEEDS) for note in shown.notes)
    html = shown.to_html()
    assert "<details" in html and RULES["C4"].split(" ")[0] in html


# Paired claims: a corrected policy (X+) and its base (X) on the same seeds and episodes.

SEEDS = [0, 1, 2, 3]
BASE = [10.0, 20.0, 30.0, 40.0]


def paired_page(gains, algos=("BC", "IQL", "CQL"), min_gains=None, std_gains=None):
    """A page whose corrected agents score ``base + gain`` per seed (means and minima)."""
    values = scenario_values()
    min_gains = gains if min_gains is None else min_gains
    std_gains = [0.0] * len(SEEDS) if std_gains is None else std_gains
    for algo in algos:
        seeded(values, algo, BASE, seeds=SEEDS, mins=[b - 10.0 for b in BASE])
        seeded(
            values,
            f"{algo}+",
            [b + g for b, g in zip(BASE, gains, strict=True)],
            seeds=SEEDS,
            mins=[b - 10.0 + g for b, g in zip(BASE, min_gains, strict=True)],
        )
        values[f"{algo}+_seed_stds"] = [10.0 + g for g in std_gains]
    return values


def paired_results(gains, **kwargs):
    page = paired_page(gains, **kwargs)
    return {"startup": page, "grade_up": dict(page)}


def test_a_consistent_gain_above_the_minimum_effect_holds():
    table = assess_claims(paired_results([25.0, 26.0, 25.0, 26.0]), {})
    assert table.loc["C2", "verdict"] == HOLDS  # >= MARGIN (20) and BC+ a working controller
    assert table.loc["C2", INTERVAL] == "BC+ − BC +25.5 [+25.0, +26.0]"
    assert table.loc["C3", "verdict"] == HOLDS and table.loc["C5", "verdict"] == HOLDS
    # above the minimum effect but short of the margin: BC+ improves on BC, not "≫"
    table = assess_claims(paired_results([5.0, 6.0, 5.0, 6.0]), {})
    assert table.loc["C2", "verdict"] == PARTLY
    assert table.loc["C3", "verdict"] == HOLDS


def test_a_consistent_loss_does_not_hold():
    table = assess_claims(paired_results([-5.0, -6.0, -5.0, -6.0]), {})
    for claim in ("C2", "C3", "C5"):
        assert table.loc[claim, "verdict"] == FAILS, claim
    assert "−" in table.loc["C2", INTERVAL] and "-5.5 [-6.0, -5.0]" in table.loc["C2", INTERVAL]


def test_a_gain_in_half_the_seeds_and_a_loss_in_the_other_is_inconclusive():
    table = assess_claims(paired_results([5.0, -5.0, 5.0, -5.0]), {})
    for claim in ("C2", "C3", "C5"):
        assert table.loc[claim, "verdict"] == INCONCLUSIVE, claim
    assert verdict_counts(table)[INCONCLUSIVE] == 3


def test_a_paired_verdict_that_flips_between_seed_halves():
    from polycstr_lib.analysis.claims import seed_stability

    results = paired_results([30.0, 30.0, -5.0, -5.0])  # seeds 0, 1 gain; 2, 3 lose
    assert assess_claims(results, {}).loc["C2", "verdict"] == INCONCLUSIVE
    stability = seed_stability(results, {})
    assert stability["C2"] == "flips (first half: holds, second half: does not hold)"


@pytest.mark.parametrize("gain", [0.0, 1e-5])
def test_a_no_op_or_tiny_correction_never_holds(gain):
    from polycstr_lib.analysis.claims import sensitivity_table

    results = paired_results([gain] * 4)
    table = assess_claims(results, {})
    for claim in ("C2", "C3", "C5"):
        assert table.loc[claim, "verdict"] == FAILS, claim  # below the minimum effect
    sensitivity = sensitivity_table(results, {})
    # a minimum effect of 0 counts any consistent gain, 1e-5 included: that is what the
    # minimum effect is for; a no-op earns nothing even then
    rules = sensitivity.columns if gain == 0 else sensitivity.columns.drop("min effect 0 %")
    for claim in ("C2", "C3", "C5"):
        assert not {HOLDS, PARTLY} & set(sensitivity.loc[claim, rules]), claim


def test_the_worst_case_claim_reads_the_single_worst_episode():
    # An IQM of the seeds' minima (80 vs 70) would drop seed 3, whose worst episode fell.
    page = scenario_values()
    seeded(page, "IQL", [90.0] * 4, seeds=SEEDS, mins=[70.0, 70.0, 70.0, 70.0])
    seeded(page, "IQL+", [90.0] * 4, seeds=SEEDS, mins=[80.0, 80.0, 80.0, 50.0])
    table = assess_claims({"startup": page}, {})
    assert table.loc["C3", "verdict"] == FAILS
    assert "worst episode IQL+ 50.0 vs IQL 70.0" in table.loc["C3", "this build"]
    assert table.loc["C3", INTERVAL].endswith("worst episode -20.0")
    # the seeds' minima rise, but the single worst episode does not: partly
    seeded(page, "IQL", [90.0] * 4, seeds=SEEDS, mins=[50.0, 70.0, 70.0, 70.0])
    seeded(page, "IQL+", [90.0] * 4, seeds=SEEDS, mins=[50.0, 75.0, 75.0, 75.0])
    assert assess_claims({"startup": page}, {}).loc["C3", "verdict"] == PARTLY


def test_seeds_are_paired_by_their_ids():
    from polycstr_lib.analysis.claims import paired

    page = scenario_values()
    seeded(page, "BC", [10.0, 20.0, 30.0], seeds=[2, 0, 1])
    # BC scores 20, 30, 10 on seeds 0, 1, 2; BC+ two points more on each; seed 7 has no partner
    seeded(page, "BC+", [22.0, 32.0, 12.0, 99.0], seeds=[0, 1, 2, 7])
    d = paired(page, "BC+", "BC")
    assert d.n == 3 and d.mean == d.low == d.high == pytest.approx(2.0)  # seed by seed


def test_sensitivity_table_varies_the_thresholds():
    from polycstr_lib.analysis.claims import sensitivity_table

    # C2: a constant gain of 1.5 points; C5: minima +5, spread 1.5 points wider
    results = paired_results([1.5] * 4, min_gains=[5.0] * 4, std_gains=[1.5] * 4)
    table = sensitivity_table(results, {})
    assert list(table.columns) == [
        "min effect 0 %",
        "min effect 1 %",
        "min effect 2 %",
        "non-inferiority 0.5 %",
        "non-inferiority 1 %",
        "non-inferiority 2 %",
    ]
    assert list(table.loc["C2"][:3]) == [PARTLY, PARTLY, FAILS]
    assert list(table.loc["C5"][3:]) == [FAILS, FAILS, HOLDS]
    assert assess_claims(results, {}).loc["C5", "verdict"] == table.loc["C5", "min effect 1 %"]
    assert MIN_EFFECT == 0.01  # of the hold-to-oracle range; 100 points without one: 1 point


def test_thresholds_are_shares_of_each_scenarios_hold_to_oracle_range():
    from polycstr_lib.analysis.claims import FALLBACK_RANGE, scale_points

    # A gain of 1.5 points: under a fixed 1-point minimum effect it "improves" everywhere.
    fixed = paired_results([1.5] * 4)
    assert assess_claims(fixed, {}).loc["C2", "verdict"] == PARTLY  # improves, not >>
    # grade up's range is ~250 points (hold -143, oracle 110): 1 % is 2.5 points, and 1.5
    # points is below the minimum effect
    wide = paired_results([1.5] * 4)
    wide["grade_up"]["scale_range"] = 250.0
    assert scale_points(wide["grade_up"], 0.01) == pytest.approx(2.5)
    assert assess_claims(wide, {}).loc["C2", "verdict"] == FAILS
    # a gain of 0.2 points: nothing under 1 point, but 4 % of a 5-point range (startup's)
    small = paired_results([0.2] * 4)
    assert assess_claims(small, {}).loc["C2", "verdict"] == FAILS
    small["grade_up"]["scale_range"] = 5.0
    assert assess_claims(small, {}).loc["C2", "verdict"] == PARTLY
    # ">>" is 20 % of the range: 0.2 points is ">>" on a range of 0.9 (0.18 points)
    small["grade_up"]["scale_range"] = 0.9
    assert assess_claims(small, {}).loc["C2", "verdict"] == HOLDS
    assert scale_points({}, 0.01) == 0.01 * FALLBACK_RANGE == 1.0
    with pytest.raises(ValueError, match="range must be > 0"):
        scale_points({"scale_range": -3.0}, 0.01)
    with pytest.raises(ValueError, match="share"):
        scale_points({}, -0.01)


def test_runaway_rates_carry_exact_intervals():
    from polycstr_lib.toolkit.stats import binomial_interval

    page = paired_page([5.0] * 4)
    page.update({"BC_runaways": 3, "BC_episodes": 20, "BC+_runaways": 0, "BC+_episodes": 20})
    text = assess_claims({"startup": page}, {}).loc["C5", "this build"]
    low, high = binomial_interval(3, 20)
    assert f"BC 3/20 [{low:.2f}, {high:.2f}] → BC+ 0/20 [0.00, 0.17]" in text


def _curve_glue(late_half_runaways: int) -> dict:
    """The curves page's glue for IQL on startup, seeds 0-3, checkpoints 100-400: flat at
    99 for every seed, except that seeds 2 and 3 (the second half) run away at 100 and 200
    ``late_half_runaways`` times, so that half's rule skips those checkpoints."""
    runs = []
    for seed in range(4):
        for steps in (100, 200, 300, 400):
            bad = seed >= 2 and steps <= 200 and late_half_runaways > 0
            runs.append(["iql", "startup", seed, steps, 99.0, 98.0, late_half_runaways * bad])
    return {
        "curve_runs": runs,
        "budget_rule": {"relative_tolerance": 0.05, "tolerance": 2.0, "ranges": {"startup": 20.0}},
        "curve_budgets": {"iql": {"startup": {"steps": 100, "converged": True}}},
    }


def _sweep_glue(second_half_runaways: int) -> dict:
    """A validation sweep of IQL, seeds 0-3, η = 0 and 'plain' at 0.1: the correction gains
    5 points on every episode; on seeds 2 and 3 it also adds ``second_half_runaways``."""
    rows = []
    for seed in range(4):
        base = [90.0, 91.0, 92.0, 93.0]
        rows.append(["iql", seed, "none", 0.0, 0, base])
        extra = second_half_runaways if seed >= 2 else 0
        rows.append(["iql", seed, "plain", 0.1, extra, [x + 5.0 for x in base]])
    return {"variants": ["plain"], "steps": 3, "margin": 1.0, "rows": rows}


def _choice_page(sweep: dict) -> dict:
    """A startup results page with four IQL seeds, its budget and its all-seed deployment."""
    from polycstr_lib.analysis.results_page import sweep_from_glue
    from polycstr_lib.correction.deployment import deploy_from_sweep

    page = seeded(seeded(scenario_values(), "BC", [40.0, 41.0, 42.0, 43.0]), "IQL", [95.0] * 4)
    deployed = deploy_from_sweep(sweep_from_glue(sweep), {"plain": None}, "startup", margin=1.0)
    page.update(budgets={"iql": 100}, correction_sweep=sweep, deploy_iql=deployed["iql"].text())
    return page


def test_half_choices_agree_when_each_half_chooses_as_all_seeds():
    from polycstr_lib.analysis.claims import SAME_CHOICES, choice_stability, half_choices

    results = {"startup": _choice_page(_sweep_glue(0))}
    choices = half_choices(results, _curve_glue(0))
    assert set(choices["kind"]) == {"budget", "correction"} and set(choices["half"]) == {0, 1}
    assert choices["agrees"].all()
    assert (choices.loc[choices["kind"] == "budget", "chosen"] == "100 steps").all()
    assert (choices.loc[choices["kind"] == "correction", "chosen"] == "plain, step size 0.1").all()
    column = choice_stability(results, COST, _curve_glue(0))
    assert column["C3"] == SAME_CHOICES and column["C4"] == "—"


def test_half_choices_that_flip_are_named_with_the_all_seed_choice():
    from polycstr_lib.analysis.claims import NOT_RERUN, choice_stability, half_choices

    # seeds 2 and 3 gain a runaway with the correction: the second half deploys none, and
    # all seeds together (a seed's runaways count) deploy none either; the first half
    # still deploys 'plain'. Seeds 2 and 3 run away early: that half's budget is later.
    results = {"startup": _choice_page(_sweep_glue(1))}
    choices = half_choices(results, _curve_glue(3)).set_index(["half", "kind"])
    assert choices.loc[(0, "budget"), "chosen"] == "100 steps"
    assert choices.loc[(1, "budget"), "chosen"] == "300 steps"
    assert not choices.loc[(1, "budget"), "agrees"]
    assert choices.loc[(0, "correction"), "chosen"] == "plain, step size 0.1"
    assert choices.loc[(1, "correction"), "chosen"].startswith("no correction")
    assert choices.loc[(0, "correction"), "all_seeds"].startswith("no correction")
    column = choice_stability(results, COST, _curve_glue(3))
    assert column["C3"].startswith("differ: ")
    assert "second half IQL startup budget 300 steps (all seeds 100 steps)" in column["C3"]
    assert "first half IQL startup correction plain, step size 0.1" in column["C3"]
    assert "correction" not in column["C1"]  # C1 reads no corrected row
    # pages without the per-seed values: the choices are not rerun, and the page says so
    one = _sweep_glue(0)
    one["rows"] = [r for r in one["rows"] if r[1] == 0]  # one seed: no halves to choose
    page = _choice_page(_sweep_glue(0)) | {"correction_sweep": one}
    assert half_choices({"startup": page}, None).empty
    plain = {"startup": seeded(scenario_values(), "IQL", [95.0] * 4)}
    assert half_choices(plain, None).empty
    assert choice_stability(plain, COST, None)["C3"].startswith(NOT_RERUN)


def test_half_choices_page_table_and_counts():
    from polycstr_lib.analysis.claims import (
        choice_counts,
        claims_table,
        half_choices,
        half_choices_page_table,
    )

    results = {"startup": _choice_page(_sweep_glue(1))}
    shown = half_choices_page_table(half_choices(results, _curve_glue(3)))
    assert shown.headers[:4] == ["Scenario", "Algorithm", "Choice", "Half"]
    assert "All seeds" in shown.headers and "This half" in shown.headers
    table = claims_table(results, COST, curves=_curve_glue(3))
    counts = choice_counts(table)
    assert counts["choices_differ"] >= 1
    assert counts["choices_differ"] == sum(table["half choices"].str.startswith("differ"))
    same = claims_table({"startup": _choice_page(_sweep_glue(0))}, COST, curves=_curve_glue(0))
    assert choice_counts(same)["choices_differ"] == 0 and choice_counts(same)["choices_same"] > 0
