"""Tables and figures of the result pages (polycstr_lib.analysis.report)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from polycstr_lib.analysis.report import (
    drop_empty_columns,
    episode_scores,
    page_table,
    profile_figure,
    profile_thresholds,
    reward_figure,
    safe_range_phrase,
    step_range_text,
    trajectory_figure,
)
from polycstr_lib.reactor.rollout import Trajectories


def _metrics(rewards) -> pd.DataFrame:
    n = len(rewards)
    return pd.DataFrame(
        {
            "normalised_reward": np.asarray(rewards, float),
            "violations": np.zeros(n, int),
            "offset": np.ones(n),
            "settling_h": np.full(n, 5.0),
        }
    )


def test_drop_empty_columns():
    table = pd.DataFrame(
        {
            "a": [1.0, np.nan],
            "nan": [np.nan, np.nan],
            "none": [None, None],
            "blank": ["", " "],
            "text": ["x", ""],
        }
    )
    assert list(drop_empty_columns(table).columns) == ["a", "text"]
    assert list(table.columns) == ["a", "nan", "none", "blank", "text"]  # not modified


def test_page_table_merges_interval_columns_and_drops_all_nan_ones():
    table = pd.DataFrame(
        {"mean": [1.234, 35.0], "mean ± 95 %": [0.5, np.nan], "x": [np.nan, np.nan]},
        index=["A", "B"],
    )
    shown = page_table(table)
    assert list(shown.columns) == ["mean ± 95 %"]
    assert shown.loc["A", "mean ± 95 %"] == "1.23 ± 0.50"
    assert shown.loc["B", "mean ± 95 %"] == "35.00"  # no half-width: the value alone
    assert list(page_table(table.drop(columns="mean ± 95 %")).columns) == ["mean"]


def test_results_page_table_has_seven_readable_columns():
    # results_page_table returns a reader's table (polycstr_lib.analysis.tables): readable
    # headers, counts as "k of n", the interval only for a row with 2 seeds or more.
    from polycstr_lib.analysis.report import RESULTS_COLUMNS, results_page_table
    from polycstr_lib.analysis.results import results_table
    from polycstr_lib.analysis.tables import INTERVAL, header_text

    def metrics(rewards, runaway):
        return _metrics(rewards).assign(runaway=runaway, violations=[4 * r for r in runaway])

    per_seed = {
        "A": {0: metrics([10, 20], [False, True]), 1: metrics([30, 40], [False, False])},
        "B": {0: metrics([50, 60], [False, False])},
    }
    table = results_table(per_seed, reps=50)
    shown = results_page_table(table).frame
    headers = [header_text(c) for c in RESULTS_COLUMNS if c != "optimality"]
    headers[0] = f"{headers[0]} {INTERVAL}"  # A has two seeds: an interval
    assert list(shown.columns) == headers
    assert shown.loc["A", "Runaways (T > 450 K)"] == "1 of 4"
    assert shown.loc["A", "Episodes over 370 K"] == "1 of 4"
    assert shown.loc["B", "IQM [95 % CI]"] == "55.0"  # one seed: no interval
    assert shown.loc["A", "IQM [95 % CI]"].startswith("25.0 [")
    assert shown.loc["A", "Worst episode"] == "10.0"
    per_seed["A"][0] = per_seed["A"][0].assign(optimality=[80.0, 90.0])
    shown = results_page_table(results_table(per_seed, reps=50))
    assert len(shown.frame.columns) == len(RESULTS_COLUMNS) == 7
    assert shown.frame.loc["A", "Optimality (%)"] == "85.0"
    assert shown.frame.loc["B", "Optimality (%)"] == "—"  # no oracle episode: said why
    assert any("no NMPC oracle run" in note for note in shown.notes)
    assert any("4 for A, 2 for B" in note for note in shown.notes)  # mixed denominators
    # a deterministic row (one run) shows its interval over episodes, and a note says so
    over = results_page_table(results_table(per_seed, reps=50, over_episodes=("B",)))
    assert over.frame.loc["B", "IQM [95 % CI]"].startswith("55.0 [")
    assert any(n.startswith("B: deterministic") and "over those episodes" in n for n in over.notes)


def test_page_table_rounds_per_column():
    table = pd.DataFrame({"a": [1.23456], "b": [0.000123], "c": [np.nan]})
    shown = page_table(table, {"b": 5})
    assert list(shown.columns) == ["a", "b"]
    assert shown.loc[0, "a"] == 1.23 and shown.loc[0, "b"] == 0.00012
    assert page_table(table, 1).loc[0, "a"] == 1.2


def test_step_ranges_read_in_every_decade():
    assert step_range_text(1e-6, 1e-4) == "1e-06 to 0.0001"
    assert step_range_text(1e-5, 1e-5) == "1e-05"
    assert step_range_text(np.nan, np.nan) == "none"
    assert safe_range_phrase(1e-6, 1e-4) == "1e-06 to 0.0001 (2.0 decades)"
    assert safe_range_phrase(0.01, 0.03) == "0.01 to 0.03 (0.5 decades)"
    assert safe_range_phrase(1e-5, 1e-5) == "only 1e-05"
    assert safe_range_phrase(np.nan, np.nan) == "none of its grid"
    for low, high in ((1e-4, 1e-6), (np.nan, 1.0), (1.0, np.nan)):
        with pytest.raises(ValueError, match="not a step-size range"):
            step_range_text(low, high)


def test_reward_figure_draws_the_band_linearly_and_counts_the_failures():
    per_seed = {
        "Data": {0: _metrics([0, 50, 100])},
        "PI": {0: _metrics([60, 80])},
        "BC": {0: _metrics([-25_000, -3_000, 40])},
    }
    fig, numbers = reward_figure(per_seed)
    ax = fig.axes[0]
    assert ax.get_xscale() == "linear"
    low, high = ax.get_xlim()
    assert -30 < low <= -20 and 100 <= high < 110  # the 0-100 band, not -25000
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Data", "PI", "BC"]
    counts = fig.axes[1]  # the failures per method, on the right
    assert [t.get_text() for t in counts.get_yticklabels()] == ["–", "–", "2/3"]
    assert numbers["n_episodes"] == 8 and numbers["n_below_band"] == 2
    assert numbers["reward_floor"] == -20.0
    assert numbers["n_below_zero"] == 2 and numbers["n_off_linear"] == 2
    assert numbers["lowest_method"] == "BC" and numbers["lowest_reward"] == -25_000
    assert numbers["best_method"] == "PI" and numbers["best_mean"] == pytest.approx(70)
    plt.close(fig)
    calm = {"PI": {0: _metrics([60, 80])}}
    fig, numbers = reward_figure(calm)
    assert len(fig.axes) == 1 and numbers["n_below_band"] == 0  # no failures: no counts
    plt.close(fig)


def _traj(final_cp: float, peak_t: float, steps: int = 20) -> Trajectories:
    e, t = 1, steps
    states = np.zeros((e, t + 1, 5))
    states[0, :, 3] = np.linspace(20.0, final_cp, t + 1)
    states[0, :, 4] = np.linspace(340.0, peak_t, t + 1)
    inputs = np.ones((e, t + 1, 2))
    return Trajectories(
        scenario="startup",
        seeds=np.arange(e),
        observations=np.zeros((e, t + 1, 9), np.float32),
        actions=np.zeros((e, t, 2), np.float32),
        rewards=np.zeros((e, t)),
        costs=np.zeros((e, t)),
        violations=np.zeros((e, t), bool),
        states=states,
        inputs=inputs,
        setpoints=np.array([[100.0, 350.0]]),
    )


def test_trajectory_figure_zooms_near_the_setpoint():
    trajs = {"BC": _traj(101, 351), "BC+": _traj(99, 350), "PI": _traj(900, 700)}
    fig, numbers = trajectory_figure(trajs, control_interval=1800.0)
    axes = np.array(fig.axes[:6]).reshape(3, 2)
    assert axes[0, 1].get_ylim() == pytest.approx((75.0, 125.0))
    assert axes[1, 1].get_ylim() == pytest.approx((340.0, 360.0))
    assert axes[0, 0].get_ylim()[1] >= 900  # the full-range panel shows the runaway
    assert numbers["outside_zoom"] == "PI" and numbers["n_outside_zoom"] == 1
    assert numbers["zoom_cp"] == pytest.approx(25.0) and numbers["n_methods"] == 3
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["BC", "BC+", "PI"]
    plt.close(fig)
    with pytest.raises(ValueError):
        trajectory_figure({}, control_interval=1800.0)


def test_performance_profile_figure_reads_the_profiles_at_the_reference() -> None:
    from polycstr_lib.toolkit.stats import performance_profiles

    per_seed = {
        "PI": {0: _metrics([95.0, 96.0, 97.0, 98.0])},
        "IQL": {0: _metrics([99.0, 20.0, 95.0, -3000.0]), 1: _metrics([99.0, 98.0, 97.0, 91.0])},
    }
    scores = episode_scores(per_seed)
    assert scores["IQL"].shape == (2, 4) and scores["PI"].shape == (1, 4)
    taus = profile_thresholds(scores)
    assert taus.min() == -3000.0 and taus.max() == 99.0
    assert 90.0 in taus and -20.0 in taus and (np.diff(taus) > 0).all()
    assert (taus >= -20).sum() >= 121  # the band is resolved
    profiles = performance_profiles(scores, taus, reps=100)
    fig, numbers = profile_figure(profiles)
    assert numbers == {
        "profile_tau": 90.0,
        "profile_best": "PI",
        "profile_best_fraction": 1.0,
        "profile_worst": "IQL",
        "profile_worst_fraction": 6 / 8,
    }
    ax = fig.axes[0]
    assert ax.get_xscale() == "linear" and -30 < ax.get_xlim()[0] <= -20  # not -3000
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["PI", "IQL (12 % < −20)"]  # 1 of IQL's 8 episodes failed
    plt.close(fig)
    calm = episode_scores({"PI": per_seed["PI"]})
    fig, _ = profile_figure(performance_profiles(calm, profile_thresholds(calm), reps=10))
    assert fig.axes[0].get_xscale() == "linear" and fig.axes[0].get_xlim()[0] > -20
    plt.close(fig)
    awful = episode_scores({"BC": {0: _metrics([-900.0, -800.0, -700.0, 95.0])}})
    fig, _ = profile_figure(performance_profiles(awful, profile_thresholds(awful), reps=10))
    assert fig.axes[0].get_xlim()[0] <= -900  # most episodes fail: the axis reaches them
    plt.close(fig)
    with pytest.raises(ValueError, match="reference"):
        profile_figure(profiles, reference=42.0)
    with pytest.raises(ValueError, match="different numbers of episodes"):
        episode_scores({"BC": {0: _metrics([1.0, 2.0]), 1: _metrics([1.0])}})
