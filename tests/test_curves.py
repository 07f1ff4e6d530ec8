"""Learning curves: snapshots scored on validation episodes, the budget rule, the batched
evaluation of several policies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from polycstr_lib.analysis.curves import (
    CONVERGED,
    FALLING,
    UNCONFIRMED,
    BudgetRule,
    aggregate_curve,
    evaluate_agents,
    learning_curve,
)
from polycstr_lib.reactor.metrics import evaluate_policy
from polycstr_lib.reactor.pi import GainRanges, PIController


def _aggregate(**curves: list[tuple[int, float, float, int]]) -> pd.DataFrame:
    """An aggregate table from algorithm -> [(steps, iqm, worst seed, runaways), ...]."""
    rows = [
        {"algorithm": a, "scenario": "startup", "steps": k, "iqm": v, "worst_seed": w,
         "runaways": r}
        for a, points in curves.items()
        for k, v, w, r in points
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_budget_rule_needs_two_confirming_checkpoints() -> None:
    aggregate = _aggregate(
        iql=[(1000, 40.0, 30.0, 0), (2000, 97.0, 96.0, 0), (5000, 99.0, 98.0, 0),
             (10000, 98.5, 97.0, 0)],
        bc=[(1000, 60.0, 50.0, 0), (2000, 99.0, 98.0, 0), (5000, 98.0, 97.0, 0)],
        cql=[(100, 90.0, 88.0, 0), (200, 50.0, 40.0, 0), (300, 10.0, 5.0, 0)],
    )  # fmt: skip
    budgets = BudgetRule(tolerance=2.0).choose(aggregate)
    # IQL: 2000 is confirmed by 5000 and 10000 (both within 2 points of 97)
    assert budgets.loc[("iql", "startup"), "budget"] == 2000
    assert budgets.loc[("iql", "startup"), "status"] == CONVERGED
    assert budgets.loc[("iql", "startup"), "converged"]
    # BC: 2000 has one later checkpoint only; one confirmation is not enough
    assert budgets.loc[("bc", "startup"), "budget"] == 2000
    assert budgets.loc[("bc", "startup"), "status"] == UNCONFIRMED
    assert not budgets.loc[("bc", "startup"), "converged"]
    # CQL: best at the first checkpoint, then falls for good: early stopping
    assert budgets.loc[("cql", "startup"), "budget"] == 100
    assert budgets.loc[("cql", "startup"), "status"] == FALLING
    # a tighter tolerance: 5000 (99) beats 2000 (97) by more than 1 point, so 2000 is not
    # confirmed and nothing later has two checkpoints after it
    strict = BudgetRule(tolerance=1.0).choose(aggregate)
    assert strict.loc[("iql", "startup"), "budget"] == 5000
    assert strict.loc[("iql", "startup"), "status"] == UNCONFIRMED
    with pytest.raises(ValueError, match="tolerance"):
        BudgetRule(tolerance=-1).choose(aggregate)
    with pytest.raises(ValueError, match="runaways"):
        BudgetRule().choose(aggregate.drop(columns="runaways"))


def test_budget_rule_skips_a_checkpoint_with_runaways_that_later_ones_lose() -> None:
    """The IQM of four seeds trims the one that runs away; the runaways do not."""
    aggregate = _aggregate(
        iql=[(250, 60.0, 55.0, 0), (500, 99.0, -300.0, 4), (1000, 98.5, 97.0, 0),
             (2000, 98.8, 97.5, 0), (4000, 98.6, 97.2, 0)],
    )  # fmt: skip
    budgets = BudgetRule(tolerance=2.0).choose(aggregate)
    assert budgets.loc[("iql", "startup"), "budget"] == 1000
    assert budgets.loc[("iql", "startup"), "status"] == CONVERGED
    # the same curve without the runaways: 500 is the budget
    calm = aggregate.assign(runaways=0, worst_seed=aggregate["iqm"] - 1)
    assert BudgetRule(tolerance=2.0).choose(calm).loc[("iql", "startup"), "budget"] == 500


def test_budget_rule_keeps_an_early_budget_before_a_runaway_heavy_late_checkpoint() -> None:
    aggregate = _aggregate(
        bc=[(250, 99.0, 98.0, 0), (500, 98.5, 97.5, 0), (1000, 98.8, 98.0, 0),
            (2000, 97.0, -400.0, 6)],
    )  # fmt: skip
    budgets = BudgetRule(tolerance=2.0).choose(aggregate)
    assert budgets.loc[("bc", "startup"), "budget"] == 250  # fewer runaways than later
    assert budgets.loc[("bc", "startup"), "status"] == CONVERGED


def _old_rule(values: pd.Series, tolerance: float) -> int:
    """The previous rule: the smallest checkpoint from which the IQM stays within the
    tolerance of the best (one later checkpoint confirmed it)."""
    good = values >= values.max() - tolerance
    stays = good[::-1].cummin()[::-1]
    return int(stays[stays].index.min())


def test_budget_rule_rejects_a_noisy_budget_the_old_rule_accepted() -> None:
    """A noisy curve: 500 and 1000 are within 2 points of the best, so the old rule took
    500; its worst seed is far below later ones and the next checkpoint dips, so the new
    rule does not, and nothing is confirmed."""
    aggregate = _aggregate(
        iql=[(250, 70.0, 60.0, 0), (500, 98.0, 40.0, 1), (1000, 99.5, 98.0, 0),
             (2000, 97.6, 96.0, 0)],
    )  # fmt: skip
    old = _old_rule(aggregate.set_index("steps")["iqm"], 2.0)
    assert old == 500
    budgets = BudgetRule(tolerance=2.0).choose(aggregate)
    assert budgets.loc[("iql", "startup"), "budget"] == 1000
    assert budgets.loc[("iql", "startup"), "status"] == UNCONFIRMED


def test_budget_rule_tolerance_is_relative_to_the_hold_to_oracle_range() -> None:
    aggregate = _aggregate(
        iql=[(250, 90.0, 89.0, 0), (500, 93.0, 92.0, 0), (1000, 93.5, 92.5, 0),
             (2000, 93.2, 92.0, 0)],
    )  # fmt: skip
    wide = BudgetRule(relative_tolerance=0.05, ranges={"startup": 100.0}).choose(aggregate)
    assert wide.loc[("iql", "startup"), "tolerance"] == pytest.approx(5.0)
    assert wide.loc[("iql", "startup"), "budget"] == 250  # 93.0 and 93.5 are within 5 of 90
    narrow = BudgetRule(relative_tolerance=0.05, ranges={"startup": 10.0}).choose(aggregate)
    assert narrow.loc[("iql", "startup"), "tolerance"] == pytest.approx(0.5)
    assert narrow.loc[("iql", "startup"), "budget"] == 500
    assert narrow.loc[("iql", "startup"), "status"] == CONVERGED
    with pytest.raises(ValueError, match="range"):
        BudgetRule(ranges={"startup": -3.0}).choose(aggregate)


def test_aggregate_curve_reports_iqm_interval_and_worst_seed() -> None:
    curve = pd.DataFrame(
        {
            "algorithm": "bc",
            "scenario": "grade_up",
            "seed": [0, 1, 2, 3] * 2,
            "steps": [10] * 4 + [20] * 4,
            "mean": [90.0, 92.0, 94.0, -500.0, 95.0, 96.0, 97.0, 98.0],
            "runaways": [0, 0, 0, 3, 0, 0, 0, 0],
        }
    )
    agg = aggregate_curve(curve, reps=200).set_index("steps")
    assert agg.loc[10, "worst_seed"] == -500.0 and agg.loc[10, "runaways"] == 3
    assert agg.loc[10, "iqm"] == pytest.approx(np.mean([90.0, 92.0]))  # middle half of 4
    assert (agg["iqm_low"] <= agg["iqm"]).all() and (agg["iqm"] <= agg["iqm_high"]).all()


def test_evaluate_agents_matches_one_rollout_per_policy(minari_store) -> None:
    # PI controllers are stateful (reset with their own first observations).
    pis = [PIController(GainRanges().nominal()), PIController(GainRanges().nominal())]
    joint = evaluate_agents(pis, "grade_up", 3, -1e6, 0.0)
    alone, _ = evaluate_policy(
        PIController(GainRanges().nominal()), "grade_up", 3, -1e6, 0.0, split="validation"
    )
    for metrics in joint:
        np.testing.assert_allclose(metrics["return"], alone["return"], rtol=1e-12)
        assert not metrics["runaway"].any()


def test_learning_curve_scores_every_snapshot(minari_store, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path))
    refs = {"grade_up": (-1e6, 0.0)}
    kwargs = {"episodes": 2, "references": refs, "processes": 1, "progress": False}
    curve = learning_curve("bc", "grade_up", [0, 1], [2, 4], **kwargs)
    assert list(curve["steps"]) == [2, 2, 4, 4] and list(curve["seed"]) == [0, 1, 0, 1]
    assert np.isfinite(curve[["mean", "median", "min"]].to_numpy()).all()
    assert (curve["episodes"] == 2).all()
    # The 2-step snapshots are the cached 2-step runs: a second call trains nothing.
    again = learning_curve(["bc"], ["grade_up"], [0, 1], {"bc": [4, 2]}, **kwargs)
    pd.testing.assert_frame_equal(curve, again)
    with pytest.raises(ValueError, match="checkpoints"):
        learning_curve("bc", "grade_up", [0], [0], 2, refs)
    with pytest.raises(ValueError, match="references"):
        learning_curve("bc", "startup", [0], [2], 2, refs)


class _AlwaysUnconfirmed(BudgetRule):
    """A rule that never sees a curve confirmed: every curve is extended up to its cap."""

    def choose(self, aggregate: pd.DataFrame) -> pd.DataFrame:
        out = super().choose(aggregate)
        return out.assign(status=UNCONFIRMED, converged=False)


def test_an_unconfirmed_curve_is_extended_by_doubling_up_to_its_cap(
    minari_store, tmp_path, monkeypatch
) -> None:
    """Extension adds checkpoints 8 and 16 to BC (cap 20, so not 32) and none to IQL (no
    cap); the extended curve equals one measured with those checkpoints from the start."""
    import polycstr_lib.agents.loop as loop

    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path / "a"))
    refs = {"grade_up": (-1e6, 0.0)}
    kwargs = {"episodes": 2, "references": refs, "processes": 1, "progress": False}
    real, calls = loop.sample_batch, {"n": 0}

    def counting(*args, **kw):
        calls["n"] += 1
        return real(*args, **kw)

    monkeypatch.setattr(loop, "sample_batch", counting)
    extended = learning_curve(
        ["bc", "iql"], "grade_up", [0], [2, 4], **kwargs,
        extend_to={"bc": 20}, rule=_AlwaysUnconfirmed(),
    )  # fmt: skip
    assert calls["n"] == 16 + 4  # BC trained 4 + 4 + 8 steps, continuing each time; IQL 4
    bc = extended[extended["algorithm"] == "bc"]
    assert list(bc["steps"]) == [2, 4, 8, 16]
    assert list(bc["extension"]) == [False, False, True, True]
    assert list(extended.loc[extended["algorithm"] == "iql", "steps"]) == [2, 4]

    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path / "b"))
    straight = learning_curve(
        ["bc", "iql"], "grade_up", [0], {"bc": [2, 4, 8, 16], "iql": [2, 4]}, **kwargs
    )
    pd.testing.assert_frame_equal(
        extended.drop(columns="extension"), straight.drop(columns="extension")
    )
    with pytest.raises(ValueError, match="caps"):
        learning_curve("bc", "grade_up", [0], [2], extend_to={"bc": 0}, **kwargs)


def test_summarise_variants_compares_with_the_baseline() -> None:
    from polycstr_lib.analysis.curves import summarise_variants

    rows = []
    for seed in range(4):
        for scenario in ("startup", "grade_up"):
            rows.append(("none", scenario, seed, 50.0 + seed, 10.0, 0))
            rows.append(("minmax", scenario, seed, 90.0 + seed, 80.0, 0))
    table = pd.DataFrame(rows, columns=["variant", "scenario", "seed", "mean", "min", "runaways"])
    table["algorithm"] = "iql"
    summary = summarise_variants(table, baseline="none", reps=200).set_index("variant")
    assert summary.loc["minmax", "P(> none)"] == 1.0
    assert summary.loc["none", "P(> none)"] == 0.5
    assert summary.loc["minmax", "iqm"] == pytest.approx(91.5)
    assert summary.loc["none", "worst_episode"] == 10.0


def test_compare_variants_trains_each_variant(minari_store, tmp_path, monkeypatch) -> None:
    from polycstr_lib.analysis.curves import compare_variants

    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path))
    refs = {"grade_up": (-1e6, 0.0)}
    variants = {"none": {"action_scaling": "none"}, "minmax": {}}
    table = compare_variants(
        variants, ["bc"], ["grade_up"], [0, 1], 3, 2, refs, processes=1, progress=False
    )
    assert len(table) == 4 and set(table["variant"]) == {"none", "minmax"}
    assert table.groupby("variant")["mean"].nunique().min() >= 1
    # Different action units give different policies.
    none, minmax = (table[table.variant == v]["mean"].to_numpy() for v in ("none", "minmax"))
    assert not np.array_equal(none, minmax)
    with pytest.raises(ValueError, match="unknown fields"):
        compare_variants({"bad": {"lr": 1.0}}, ["bc"], ["grade_up"], [0], 3, 2, refs)


def test_with_interval_merges_three_columns() -> None:
    from polycstr_lib.analysis.curves import with_interval

    table = pd.DataFrame({"a": ["x"], "iqm": [97.06], "lo": [95.0], "hi": [98.81], "b": [1]})
    out = with_interval(table, "iqm", "lo", "hi")
    assert list(out.columns) == ["a", "iqm [95 % CI]", "b"]
    assert out.iloc[0, 1] == "97.1 [95.0, 98.8]"


def test_plot_learning_curves_draws_seeds_aggregate_and_budgets() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from polycstr_lib.analysis.curves import plot_learning_curves

    curve = pd.DataFrame(
        {
            "algorithm": "iql",
            "scenario": ["startup"] * 4 + ["grade_up"] * 4,
            "seed": [0, 1, 0, 1] * 2,
            "steps": [10, 10, 20, 20] * 2,
            "mean": [50.0, -900.0, 97.0, 98.0, 80.0, 85.0, 90.0, 91.0],
            "runaways": 0,
        }
    )
    aggregate = aggregate_curve(curve, reps=100)
    budgets = BudgetRule().choose(aggregate)
    fig = plot_learning_curves(curve, aggregate, budgets)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["startup", "grade_up"]
    assert axes[0].get_yscale() == "linear"
    # two thin seed lines, the bold IQM line, the budget line, the 0 and 100 guides
    assert len(axes[0].lines) == 2 + 1 + 1 + 2
    low = min(axes[0].get_ylim())
    assert -30 < low <= -20  # the 0-100 band, not the failed seed's -900...
    (pinned,) = axes[0].collections[:1]  # ...which is a marker at the band's lower edge
    assert pinned.get_offsets()[0][1] < -20
    assert "seed below −20" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_hold_to_oracle_range_is_the_oracle_minus_holding(monkeypatch) -> None:
    """With a PI controller standing in for the (slow) NMPC oracle, the range is PI's mean
    normalised reward minus holding's, on the same validation episodes."""
    import polycstr_lib.analysis.curves as curves
    from polycstr_lib.reactor.datasets import episode_seeds
    from polycstr_lib.reactor.nmpc import hold_policy
    from polycstr_lib.reactor.rollout import rollout

    refs = (-2000.0, 0.0)
    seen = []

    def fake_nmpc(run):
        seen.append(run)
        pi = PIController(GainRanges().nominal())
        return rollout(pi, run.scenario, episode_seeds(run.split, run.episodes)), {}

    import polycstr_lib.reactor.nmpc as nmpc

    monkeypatch.setattr(nmpc, "run_nmpc", fake_nmpc)
    span = curves.hold_to_oracle_range("startup", 2, refs)
    pi, _ = evaluate_policy(PIController(GainRanges().nominal()), "startup", 2, *refs,
                            split="validation")  # fmt: skip
    hold, _ = evaluate_policy(hold_policy, "startup", 2, *refs, split="validation")
    expected = pi["normalised_reward"].mean() - hold["normalised_reward"].mean()
    assert span == pytest.approx(expected) and span > 0
    assert seen[0].split == "validation" and seen[0].episodes == 2

    def holding(run):
        return rollout(hold_policy, run.scenario, episode_seeds(run.split, run.episodes)), {}

    monkeypatch.setattr(nmpc, "run_nmpc", holding)
    with pytest.raises(ValueError, match="does not beat holding"):
        curves.hold_to_oracle_range("startup", 1, refs)
    with pytest.raises(ValueError, match="episodes"):
        curves.hold_to_oracle_range("startup", 0, refs)


def test_curve_glue_round_trips_the_curve_and_the_rule() -> None:
    from polycstr_lib.analysis.curves import curve_from_glue, curve_glue

    curve = pd.DataFrame(
        {
            "algorithm": "bc",
            "scenario": "startup",
            "seed": np.array([0, 1, 0, 1], dtype=np.int64),
            "steps": [10, 10, 20, 20],
            "mean": np.array([90.0, 80.0, 95.0, 96.0], dtype=np.float32),
            "median": 0.0,
            "min": [50.0, 40.0, 60.0, 70.0],
            "runaways": np.array([1, 0, 0, 0], dtype=np.int64),
        }
    )
    rule = BudgetRule(relative_tolerance=0.1, ranges={"startup": np.float64(12.5)})
    values = curve_glue(curve, rule)
    assert all(type(x) in (str, int, float) for row in values["curve_runs"] for x in row)
    back, again = curve_from_glue(values)
    assert again == BudgetRule(relative_tolerance=0.1, ranges={"startup": 12.5})
    pd.testing.assert_frame_equal(
        back, curve[list(back.columns)].astype(back.dtypes.to_dict()), check_dtype=False
    )
    assert curve_from_glue({}) is None
