"""Evaluation metrics on hand-made arrays, and the batched runner."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from polycstr_lib.analysis.results import summary_table
from polycstr_lib.reactor.metrics import (
    episode_metrics,
    evaluate_policy,
    settling_time,
    steady_state_offset,
)
from polycstr_lib.reactor.pi import GainRanges, PIController


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
    from polycstr_lib.reactor.datasets import read_sidecar

    side = read_sidecar("grade_up")
    metrics, traj = evaluate_policy(
        PIController(GainRanges().nominal()), "grade_up", 4, side["return_min"], side["return_max"]
    )
    assert len(metrics) == 4 and traj.states.shape == (4, 201, 5)
    again = episode_metrics(traj, side["return_min"], side["return_max"])
    np.testing.assert_array_equal(metrics.to_numpy(), again.to_numpy())
    assert not metrics["runaway"].any()
    hot = traj.states.copy()
    hot[1, 50, 4] = 451.0  # one step past the runaway temperature in episode 1
    runaway = episode_metrics(
        dataclasses.replace(traj, states=hot), side["return_min"], side["return_max"]
    )["runaway"]
    assert runaway.tolist() == [False, True, False, False]
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


def _metrics(values, violations=None, runaway=None, offset=1.0):
    n = len(values)
    return pd.DataFrame(
        {
            "return": values,
            "normalised_reward": values,
            "violations": violations if violations is not None else [0] * n,
            "runaway": runaway if runaway is not None else [False] * n,
            "offset": [offset] * n,
            "settling_h": [2.0] * n,
        }
    )


def test_seed_summary_averages_seeds():
    from polycstr_lib.analysis.results import seed_summary

    per_seed = {
        "A": {0: _metrics([10.0, 20.0]), 1: _metrics([30.0, 40.0])},
        "B": {0: _metrics([5.0])},
    }
    table = seed_summary(per_seed)
    assert table.loc["A", "mean"] == pytest.approx(25.0)  # seed means 15 and 35
    assert table.loc["A", "min"] == pytest.approx(20.0)  # seed minima 10 and 30
    assert table.loc["B", "seeds"] == 1 and table.loc["A", "seeds"] == 2
    assert not any("±" in c for c in table.columns)  # no Student-t intervals


def test_results_table_aggregates_seeds_with_rliable_and_pools_episodes():
    from polycstr_lib.analysis.results import results_table

    # seed means 1, 2, 3, 100: the IQM of four runs keeps the middle two -> 2.5
    per_seed = {
        "A": {
            0: _metrics([0.0, 2.0], violations=[0, 3]),
            1: _metrics([2.0, 2.0]),
            2: _metrics([3.0, 3.0], runaway=[True, False], violations=[5, 0]),
            3: _metrics([100.0, 100.0], offset=5.0),
        },
        "B": {0: _metrics([7.0, -4.0])},
    }
    state = np.random.get_state()  # noqa: NPY002
    table = results_table(per_seed, reps=200, seed=3)
    assert np.array_equal(np.random.get_state()[1], state[1])  # noqa: NPY002
    a, b = table.loc["A"], table.loc["B"]
    assert a["iqm"] == pytest.approx(2.5) and a["median"] == pytest.approx(2.5)
    assert a["iqm_low"] <= a["iqm"] <= a["iqm_high"]
    assert a["worst"] == 0.0 and a["violating"] == 2 and a["runaways"] == 1
    assert a["episodes"] == 8 and a["seeds"] == 4
    assert a["offset"] == pytest.approx((6 * 1.0 + 2 * 5.0) / 8)
    # one seed: the interval is the point
    assert b["iqm"] == b["iqm_low"] == b["iqm_high"] == pytest.approx(1.5)
    assert b["worst"] == -4.0
    assert "optimality" not in table.columns
    per_seed["A"][0] = per_seed["A"][0].assign(optimality=[50.0, np.nan])
    with_opt = results_table(per_seed, reps=50)
    assert with_opt.loc["A", "optimality"] == 50.0 and np.isnan(with_opt.loc["B", "optimality"])


def test_results_glue_names_and_plain_types():
    from polycstr_lib.analysis.results import results_glue, results_table

    per_seed = {
        "NMPC (oracle)": {0: _metrics([90.0])},
        "BC": {3: _metrics([10.0, 20.0]), 1: _metrics([30.0, 50.0])},
    }
    glued = results_glue(per_seed, results_table(per_seed, reps=50), {"NMPC (oracle)": "NMPC"})
    assert glued["BC_seed_means"] == [15.0, 40.0] and glued["BC_seeds"] == [3, 1]
    assert glued["BC_seed_mins"] == [10.0, 30.0] and glued["BC_seed_stds"] == [5.0, 10.0]
    assert glued["BC_mean"] == pytest.approx(27.5) and glued["BC_min"] == pytest.approx(20.0)
    assert glued["BC_worst"] == 10.0 and glued["BC_runaways"] == 0
    assert glued["NMPC_iqm"] == 90.0 and "NMPC (oracle)_iqm" not in glued
    for key in ("iqm", "iqm_low", "iqm_high", "median", "worst", "runaways", "violating"):
        assert f"BC_{key}" in glued
    for value in glued.values():  # repr() of every value is a Python literal
        assert type(value) in (int, float, list)
        if isinstance(value, list):
            assert all(type(v) in (int, float) for v in value)


def test_a_deterministic_rows_interval_is_over_its_episodes():
    from polycstr_lib.analysis.results import results_table
    from polycstr_lib.toolkit.stats import mean_interval

    per_seed = {
        "hold": {0: _metrics([10.0, 20.0, 30.0, 40.0])},
        "A": {0: _metrics([1.0, 2.0]), 1: _metrics([3.0, 4.0])},
    }
    table = results_table(per_seed, reps=300, seed=1, over_episodes=("hold",))
    row = table.loc["hold"]
    assert row["iqm"] == pytest.approx(25.0) and row["interval"] == "episodes"
    mean, low, high = mean_interval([10.0, 20.0, 30.0, 40.0], 300, 1)
    assert (row["iqm_low"], row["iqm_high"]) == pytest.approx((low, high))
    assert low < mean == 25.0 < high
    assert table.loc["A", "interval"] == "seeds"
    # without the option a single run's interval is its point
    plain = results_table(per_seed, reps=300, seed=1)
    assert plain.loc["hold", "iqm_low"] == plain.loc["hold", "iqm_high"] == 25.0
    with pytest.raises(ValueError, match="exactly one run"):
        results_table(per_seed, reps=10, over_episodes=("A",))
    with pytest.raises(ValueError, match="exactly one run"):
        results_table(per_seed, reps=10, over_episodes=("missing",))
