"""rliable-based aggregates: oracles on small matrices, seeding, errors."""

from __future__ import annotations

import numpy as np
import pytest

from polycstr_lib.toolkit.stats import (
    interval_estimates,
    iqm,
    performance_profiles,
    probability_of_improvement,
    runaway_rate_upper_bound,
    score_matrix,
)


def test_iqm_is_the_mean_of_the_middle_half() -> None:
    scores = np.array([-1000.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 1e6])
    # scipy's trim_mean(0.25) on 10 values cuts int(2.5) = 2 values at each end.
    assert iqm(scores) == pytest.approx(np.mean([2, 3, 4, 5, 6, 7]))


def test_iqm_has_the_bits_of_rliables_aggregate_iqm() -> None:
    """Our IQM skips SciPy's wrapper, not its arithmetic: every value equals rliable's."""
    from rliable import metrics

    rng = np.random.default_rng(3)
    for runs in (1, 2, 3, 5, 10, 23):
        for tasks in (1, 2, 7, 50):
            scores = rng.normal(0, 100, (runs, tasks))
            scores[:, ::3] = np.round(scores[:, ::3])  # ties
            assert iqm(scores) == float(metrics.aggregate_iqm(scores))
            resample = scores[rng.integers(0, runs, runs)]  # a bootstrap replicate
            assert iqm(resample) == float(metrics.aggregate_iqm(resample))


def test_interval_estimates_equal_those_with_rliables_iqm(monkeypatch) -> None:
    """The whole bootstrap table, to the bit, with rliable's own IQM in its place."""
    from rliable import metrics

    from polycstr_lib.toolkit import stats

    rng = np.random.default_rng(4)
    scores = {"a": rng.normal(50, 5, (10, 1)), "b": rng.normal(80, 9, (3, 50)), "c": [[7.0]]}
    fast = interval_estimates(scores, reps=200, seed=2)
    monkeypatch.setattr(stats, "_trimmed_iqm", metrics.aggregate_iqm)
    assert fast.equals(interval_estimates(scores, reps=200, seed=2))


def test_interval_estimates_bracket_the_point_and_are_seeded() -> None:
    rng = np.random.default_rng(0)
    scores = {"a": rng.normal(50, 5, (10, 1)), "b": rng.normal(80, 1, (12, 1))}
    state = np.random.get_state()  # noqa: NPY002
    table = interval_estimates(scores, reps=300, seed=1)
    assert np.array_equal(np.random.get_state()[1], state[1])  # noqa: NPY002 (untouched)
    np.random.random(7)  # noqa: NPY002 (another global state must not change the result)
    assert table.equals(interval_estimates(scores, reps=300, seed=1))
    for k in scores:
        row = table.loc[k]
        assert row.iqm_low <= row.iqm <= row.iqm_high
        assert row["mean"] == pytest.approx(scores[k].mean())
        assert row["median"] == pytest.approx(np.median(scores[k]))
    assert table.loc["b", "runs"] == 12
    assert table.loc["a", "iqm_high"] < table.loc["b", "iqm_low"]  # clearly separated


def test_probability_of_improvement_oracles() -> None:
    low = np.arange(5.0)[:, None]
    high = low + 100.0
    p, lo, hi = probability_of_improvement(high, low, reps=200)
    assert (p, lo, hi) == (1.0, 1.0, 1.0)
    assert probability_of_improvement(low, high, reps=200)[0] == 0.0
    assert probability_of_improvement(low, low, reps=200)[0] == 0.5
    # Interleaved: P(x > y) counted by hand.
    x, y = np.array([1.0, 3.0, 5.0]), np.array([2.0, 4.0])
    wins = sum(a > b for a in x for b in y) / (len(x) * len(y))
    assert probability_of_improvement(x, y, reps=200)[0] == pytest.approx(wins)


def test_bad_scores_are_rejected() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        score_matrix([])
    with pytest.raises(ValueError, match="finite"):
        iqm([1.0, np.nan])
    with pytest.raises(ValueError, match="tasks"):
        probability_of_improvement(np.zeros((3, 2)), np.zeros((3, 1)))


def test_improvement_probability_point_estimates() -> None:
    from polycstr_lib.toolkit.stats import improvement_probability

    assert improvement_probability([10.0, 11.0, 12.0], [1.0, 2.0]) == 1.0  # disjoint
    assert improvement_probability([1.0, 2.0], [10.0, 11.0, 12.0]) == 0.0
    assert improvement_probability([5.0], [5.0]) == 0.5  # ties count one half
    # 3 of the 4 pairs won: (3 > 2), (3 > 1), (1 > 0.5)... counted by hand
    assert improvement_probability([1.0, 3.0], [0.5, 2.0]) == pytest.approx(3 / 4)
    state = np.random.get_state()  # noqa: NPY002
    improvement_probability([1.0, 3.0], [0.5, 2.0])
    assert np.array_equal(np.random.get_state()[1], state[1])  # noqa: NPY002
    with pytest.raises(ValueError, match="tasks"):
        improvement_probability(np.zeros((2, 2)), np.zeros((2, 1)))


def test_compare_runs_gives_iqms_gap_and_probability() -> None:
    from polycstr_lib.toolkit.stats import compare_runs

    # four runs: the IQM keeps the middle two (trim int(1) at each end)
    c = compare_runs([0.0, 10.0, 20.0, 100.0], [1.0, 2.0, 3.0, 4.0])
    assert c.iqm_x == pytest.approx(15.0) and c.iqm_y == pytest.approx(2.5)
    assert c.gap == pytest.approx(12.5)
    # x beats y in 12 of 16 pairs (0 loses to all four)
    assert c.p == pytest.approx(12 / 16)


def test_performance_profiles_are_rliables_score_distributions_with_seeded_bands() -> None:
    from rliable import library

    rng = np.random.default_rng(3)
    scores = {"a": rng.normal(50, 30, (6, 20)), "b": np.full((1, 4), 10.0)}
    taus = np.array([-50.0, 0.0, 10.0, 50.0, 90.0])
    state = np.random.get_state()  # noqa: NPY002
    table = performance_profiles(scores, taus, reps=200, seed=2)
    assert np.array_equal(np.random.get_state()[1], state[1])  # noqa: NPY002 (untouched)
    assert table.equals(performance_profiles(scores, taus, reps=200, seed=2))
    a = table[table["method"] == "a"]
    assert np.allclose(a["fraction"], library.score_distributions(scores["a"], taus))
    assert np.allclose(a["fraction"], [(scores["a"] > t).mean() for t in taus])  # oracle
    assert (a["low"] <= a["fraction"] + 1e-12).all() and (a["fraction"] <= a["high"] + 1e-12).all()
    assert (np.diff(a["fraction"]) <= 0).all()  # never rises with the threshold
    b = table[table["method"] == "b"]
    assert list(b["fraction"]) == [1.0, 1.0, 0.0, 0.0, 0.0]  # strictly above: 10 > 10 is false
    assert list(b["low"]) == list(b["high"]) == list(b["fraction"])  # one run: no spread
    with pytest.raises(ValueError, match="increasing"):
        performance_profiles(scores, [1.0, 0.0])
    with pytest.raises(ValueError, match="increasing"):
        performance_profiles(scores, [])


def test_runaway_rate_upper_bound_is_clopper_pearson() -> None:
    assert runaway_rate_upper_bound(0, 20) == pytest.approx(1 - 0.05 ** (1 / 20))
    assert runaway_rate_upper_bound(0, 20) == pytest.approx(0.139, abs=5e-4)
    for n in (300, 1000, 5000):  # rule of three: about 3/n without a runaway
        assert runaway_rate_upper_bound(0, n) == pytest.approx(3 / n, rel=0.01)
    # with runaways: the bound is above the observed rate and falls with more episodes
    assert 0.1 < runaway_rate_upper_bound(2, 20) < runaway_rate_upper_bound(3, 20) < 1
    assert runaway_rate_upper_bound(10, 100) < runaway_rate_upper_bound(1, 10)
    assert runaway_rate_upper_bound(5, 5) == 1.0
    assert runaway_rate_upper_bound(0, 20, confidence=0.99) > runaway_rate_upper_bound(0, 20)
    for bad in ((1, 0), (-1, 5), (6, 5), (0.5, 5)):
        with pytest.raises(ValueError):
            runaway_rate_upper_bound(*bad)
    with pytest.raises(ValueError, match="confidence"):
        runaway_rate_upper_bound(0, 5, confidence=1.0)


def test_paired_difference_of_a_constant_shift_is_degenerate_at_the_shift() -> None:
    from polycstr_lib.toolkit.stats import paired_difference

    base = np.array([10.0, 40.0, -5.0, 70.0])
    mean, low, high = paired_difference(base + 3.0, base)
    assert mean == low == high == pytest.approx(3.0)
    assert paired_difference([5.0], [2.0]) == pytest.approx((3.0, 3.0, 3.0))  # one seed


def test_paired_difference_of_a_sign_flip_contains_zero_and_is_seeded() -> None:
    from polycstr_lib.toolkit.stats import paired_difference

    a, b = np.array([15.0, 14.0, 5.0, 6.0]), np.array([10.0, 10.0, 10.0, 10.0])
    state = np.random.get_state()  # noqa: NPY002
    mean, low, high = paired_difference(a, b, reps=500, seed=3)
    assert np.array_equal(np.random.get_state()[1], state[1])  # noqa: NPY002 (untouched)
    assert mean == pytest.approx(0.0) and low < 0.0 < high
    assert paired_difference(a, b, reps=500, seed=3) == (mean, low, high)
    # pairing matters: the same values with a common per-seed offset stay degenerate
    shifted = paired_difference(a + 100 * np.arange(4), a - 1 + 100 * np.arange(4))
    assert shifted == pytest.approx((1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="shape"):
        paired_difference([1.0, 2.0], [1.0])


def test_unpaired_difference_brackets_the_gap() -> None:
    from polycstr_lib.toolkit.stats import unpaired_difference

    mean, low, high = unpaired_difference([10.0, 12.0, 14.0], [1.0, 2.0], reps=500, seed=1)
    assert mean == pytest.approx(10.5) and low <= mean <= high
    assert unpaired_difference([10.0, 12.0, 14.0], [1.0, 2.0], reps=500, seed=1) == (
        mean,
        low,
        high,
    )


def test_binomial_interval_is_clopper_pearson() -> None:
    from scipy.stats import beta

    from polycstr_lib.toolkit.stats import binomial_interval

    low, high = binomial_interval(0, 20)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 20))  # 0.168
    assert binomial_interval(20, 20) == (pytest.approx(0.025 ** (1 / 20)), 1.0)
    low, high = binomial_interval(3, 20)
    assert low == pytest.approx(beta.ppf(0.025, 3, 18))
    assert high == pytest.approx(beta.ppf(0.975, 4, 17))
    assert low < 3 / 20 < high
    with pytest.raises(ValueError):
        binomial_interval(3, 2)
    with pytest.raises(ValueError):
        binomial_interval(1, 2, confidence=1.0)
