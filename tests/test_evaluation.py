"""Evaluation metrics on hand-made arrays, and the batched runner."""

import numpy as np
import pytest

from polycstr_lib.evaluation import (
    episode_metrics,
    evaluate_policy,
    settling_time,
    steady_state_offset,
    summary_table,
)
from polycstr_lib.pi import GainRanges, PIController


def test_steady_state_offset_averages_the_last_ten_hours():
    err = np.zeros((2, 200))
    err[0, -20:] = -3.0
    err[1, -21] = 100.0  # just outside the window
    np.testing.assert_allclose(steady_state_offset(err), [3.0, 0.0])


def test_settling_time_finds_the_last_exit_from_the_band():
    err = np.full((3, 10), 10.0)
    err[0, 4:] = 0.5  # inside from index 4: settled after step 5 -> 2.5 h
    err[1, :] = 0.1  # always inside -> after step 1 -> 0.5 h
    err[2, :-1] = 0.1  # leaves at the very end -> never
    np.testing.assert_allclose(settling_time(err, 1.0), [2.5, 0.5, np.inf])


def test_metrics_and_table_for_pi(minari_store):
    from polycstr_lib.datasets import read_sidecar

    side = read_sidecar("grade_up")
    metrics, traj = evaluate_policy(
        PIController(GainRanges().nominal()), "grade_up", 4, side["return_min"], side["return_max"]
    )
    assert len(metrics) == 4 and traj.states.shape == (4, 201, 5)
    again = episode_metrics(traj, side["return_min"], side["return_max"])
    np.testing.assert_array_equal(metrics.to_numpy(), again.to_numpy())
    table = summary_table({"PI": metrics})
    assert table.loc["PI", "mean"] == pytest.approx(metrics["normalised_reward"].mean())
    assert list(table.columns) == [
        "mean",
        "min",
        "max",
        "std",
        "violations",
        "offset",
        "settled %",
        "settling h",
    ]


def test_seed_summary_averages_seeds_with_t_intervals():
    import pandas as pd
    from scipy import stats

    from polycstr_lib.evaluation import seed_summary

    def metrics(values):
        n = len(values)
        return pd.DataFrame(
            {
                "return": values,
                "normalised_reward": values,
                "violations": [0] * n,
                "offset": [1.0] * n,
                "settling_h": [2.0] * n,
            }
        )

    per_seed = {"A": {0: metrics([10.0, 20.0]), 1: metrics([30.0, 40.0])}, "B": {0: metrics([5.0])}}
    table = seed_summary(per_seed)
    assert table.loc["A", "mean"] == pytest.approx(25.0)  # seed means 15 and 35
    assert table.loc["A", "min"] == pytest.approx(20.0)
    half = stats.t.ppf(0.975, 1) * np.std([15.0, 35.0], ddof=1) / np.sqrt(2)
    assert table.loc["A", "mean ± 95 %"] == pytest.approx(half)
    assert np.isnan(table.loc["B", "mean ± 95 %"]) and table.loc["B", "seeds"] == 1
