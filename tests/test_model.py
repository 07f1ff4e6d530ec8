"""Physics: steady states, right-hand side, and the compiled kernel's consistency."""

import numpy as np
import pytest

from polycstr_lib.reactor.integrator import rhs_compiled
from polycstr_lib.reactor.model import (
    STATE_SCALE,
    ReactorParams,
    reactor_rhs,
    steady_state,
)


@pytest.mark.parametrize(
    ("grade", "feed", "coolant", "c_a", "c_i", "c_r"),
    [(100.0, 1.788, 339.90, 450.0, 9.84, 1.5e-6), (60.0, 0.523, 343.98, None, None, None)],
)
def test_steady_state_matches_known_operating_points(grade, feed, coolant, c_a, c_i, c_r):
    ss = steady_state(grade)
    assert ss.inputs[0] == pytest.approx(feed, abs=1e-3)
    assert ss.inputs[1] == pytest.approx(coolant, abs=1e-2)
    if c_a is not None:
        assert ss.state[0] == pytest.approx(c_a, rel=1e-3)
        assert ss.state[1] == pytest.approx(c_i, rel=1e-3)
        assert ss.state[2] == pytest.approx(c_r, rel=2e-2)
    residual = reactor_rhs(ss.state, ss.inputs, ReactorParams()) / STATE_SCALE
    assert np.max(np.abs(residual)) < 1e-12


def test_steady_state_rejects_bad_grade():
    with pytest.raises(ValueError, match="positive"):
        steady_state(-5.0)
    with pytest.raises(ValueError):
        steady_state(1e4)


def test_rhs_broadcasts_and_is_float64():
    ss = steady_state(100.0)
    states = np.stack([ss.state, ss.state * 1.01])
    out = reactor_rhs(states, ss.inputs, ReactorParams())
    assert out.shape == (2, 5) and out.dtype == np.float64
    np.testing.assert_array_equal(out[1], reactor_rhs(states[1], ss.inputs, ReactorParams()))


def test_compiled_rhs_and_jacobian_agree_with_reference():
    rng = np.random.default_rng(3)
    params = ReactorParams()
    for _ in range(20):
        state = np.array([440, 5, 1e-6, 80, 350]) * rng.uniform(0.5, 1.5, 5)
        inputs = np.array([rng.uniform(0, 2.5), rng.uniform(300, 350)])
        f, jac = rhs_compiled(state, inputs, params)
        ref = reactor_rhs(state, inputs, params)
        np.testing.assert_allclose(f, ref, rtol=1e-12, atol=1e-300)
        # central finite differences, scaled per state
        fd = np.empty((5, 5))
        for j in range(5):
            h = 1e-6 * STATE_SCALE[j]
            e = np.zeros(5)
            e[j] = h
            fd[:, j] = (
                reactor_rhs(state + e, inputs, params) - reactor_rhs(state - e, inputs, params)
            ) / (2 * h)
        scale = np.abs(fd) + 1e-8 * np.abs(fd).max(axis=1, keepdims=True)
        assert np.max(np.abs(jac - fd) / scale) < 1e-4  # an error in a term would be O(1)
