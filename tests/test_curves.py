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


def test_budget_rule_takes_the_smallest_budget_from_which_the_curve_stays_good() -> None:
    aggregate = pd.DataFrame(
        {
            "algorithm": ["iql"] * 4 + ["bc"] * 3 + ["cql"] * 3,
            "scenario": ["startup"] * 10,
            "steps": [1000, 2000, 5000, 10000, 1000, 2000, 5000, 100, 200, 300],
            "iqm": [40.0, 97.0, 99.0, 98.5, 80.0, -500.0, 79.0, 90.0, 50.0, 10.0],
        }
    )
    budgets = BudgetRule(tolerance=2.0).choose(aggregate)
    assert budgets.loc[("iql", "startup"), "budget"] == 2000  # 97, 99, 98.5 >= 99 - 2
    assert budgets.loc[("iql", "startup"), "converged"]  # confirmed by 5000 and 10000
    assert budgets.loc[("iql", "startup"), "status"] == CONVERGED
    # BC is good at 1000 but collapses at 2000: only the last checkpoint qualifies, and
    # nothing after it shows that BC stays there.
    assert budgets.loc[("bc", "startup"), "budget"] == 5000
    assert not budgets.loc[("bc", "startup"), "converged"]
    assert budgets.loc[("bc", "startup"), "status"] == UNCONFIRMED
    # CQL's best point is the first and it never comes back: the best checkpoint.
    assert budgets.loc[("cql", "startup"), "budget"] == 100
    assert not budgets.loc[("cql", "startup"), "converged"]
    assert budgets.loc[("cql", "startup"), "status"] == FALLING
    strict = BudgetRule(tolerance=0.0).choose(aggregate)
    # With no tolerance the later dip (98.5 < 99) means IQL falls off its best at 5000.
    assert strict.loc[("iql", "startup"), "budget"] == 5000
    assert strict.loc[("iql", "startup"), "status"] == FALLING
    with pytest.raises(ValueError, match="tolerance"):
        BudgetRule(tolerance=-1).choose(aggregate)


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
