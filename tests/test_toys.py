"""The toy problems of the IQL chapter."""

import numpy as np
import pytest

from polycstr_lib.agents.toys import (
    expectile,
    expectile_loss_curve,
    fitted_q_iteration,
    narrow_dataset,
)


def test_expectile_minimises_the_asymmetric_loss():
    values = np.random.default_rng(0).normal(size=500)
    for tau in (0.1, 0.5, 0.9):
        m = expectile(values, tau)
        grid = np.linspace(m - 0.05, m + 0.05, 101)
        losses = [expectile_loss_curve(values - g, tau).mean() for g in grid]
        assert abs(grid[int(np.argmin(losses))] - m) <= 1e-3
    assert expectile(values, 0.5) == pytest.approx(values.mean(), abs=1e-9)
    assert expectile(values, 0.1) < expectile(values, 0.5) < expectile(values, 0.9) < values.max()
    with pytest.raises(ValueError):
        expectile(values, 1.0)


def test_naive_max_backup_overestimates_and_expectile_does_not():
    actions, rewards = narrow_dataset(200, centre=-0.4, width=0.2, noise=0.05, seed=0)
    naive, _ = fitted_q_iteration(actions, rewards, 0.9, 30, "max")
    in_sample, _ = fitted_q_iteration(actions, rewards, 0.9, 30, "expectile")
    # the true value of the best action in the data support is negative; naive goes above the
    # true optimum (0) by extrapolating, the in-sample backup stays below it
    assert naive[-1] > 0.0
    assert in_sample[-1] < 0.0
