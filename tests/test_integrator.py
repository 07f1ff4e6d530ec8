"""The batched integrator against scipy's Radau at tight tolerance, in closed loop."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from polycstr_lib.reactor.env import ACTION_SCALE, CONTROL_INTERVAL
from polycstr_lib.reactor.integrator import IntegrationError, advance
from polycstr_lib.reactor.model import STATE_SCALE, ReactorParams, reactor_rhs
from polycstr_lib.reactor.pi import GainRanges, PIController
from polycstr_lib.reactor.scenarios import get_scenario

#: relative error |x - x_ref| / (|x_ref| + REL_FLOOR * scale): states that start at zero
#: (initiator, radicals, polymer in a startup) need a floor; 1e-3 of their typical size.
REL_FLOOR = 1e-3


def relative_error(x, ref):
    return np.abs(x - ref) / (np.abs(ref) + REL_FLOOR * STATE_SCALE)


def radau_step(state, inputs, params):
    sol = solve_ivp(
        lambda t, y: reactor_rhs(y, inputs, params),
        (0.0, CONTROL_INTERVAL),
        state,
        method="Radau",
        rtol=1e-10,
        atol=1e-10 * REL_FLOOR * STATE_SCALE,
    )
    assert sol.success
    return sol.y[:, -1]


@pytest.mark.parametrize("scenario", ["startup", "grade_down", "grade_up"])
def test_closed_loop_trajectory_matches_radau(scenario):
    """200 steps under PI control: the PI sees each integrator's own states, so errors would
    compound through the loop; the max relative error must stay below 1e-4."""
    params = ReactorParams()
    rng = np.random.default_rng(11)
    state0, inputs0 = get_scenario(scenario).sample_initial(rng, params)
    setpoint = get_scenario(scenario).setpoint
    gains = GainRanges().nominal()[None]
    worst = 0.0
    runs = {}
    for name in ("batched", "radau"):
        ctrl = PIController(gains, params)
        state, inputs = state0.copy(), inputs0.copy()
        guess = None
        traj = []

        def obs(state, inputs):
            return np.concatenate([state, setpoint - state[[3, 4]], inputs])[None]

        ctrl.reset(obs(state, inputs))
        for _ in range(200):
            action = np.clip(ctrl.act(obs(state, inputs))[0], -1, 1)
            inputs = np.clip(inputs + action * ACTION_SCALE, params.input_low, params.input_high)
            if name == "batched":
                out, guess = advance(state[None], inputs[None], CONTROL_INTERVAL, params, guess)
                state = out[0]
            else:
                state = radau_step(state, inputs, params)
            traj.append(state)
        runs[name] = np.array(traj)
    worst = relative_error(runs["batched"], runs["radau"]).max()
    assert worst <= 1e-4, f"max relative error {worst:.2e}"


def test_runaway_is_integrated_accurately():
    """Full feed and a hot jacket run away past 450 K: the stiff radicals must not break it."""
    params = ReactorParams()
    state = np.array([450.0, 9.8, 1.5e-6, 100.0, 350.0])
    inputs = np.array([2.5, 350.0])
    ref = state.copy()
    for _ in range(10):
        state = advance(state[None], inputs[None], CONTROL_INTERVAL, params)[0][0]
        ref = radau_step(ref, inputs, params)
    assert ref[4] > 360.0
    assert relative_error(state, ref).max() < 1e-4


def test_batch_equals_single_runs_bit_for_bit():
    rng = np.random.default_rng(0)
    states = np.array([[440.0, 0, 0, 0, 350.0]]) * np.array(
        [rng.uniform(0.8, 1.2, 5) for _ in range(7)]
    )
    inputs = np.column_stack([rng.uniform(0, 2.5, 7), rng.uniform(300, 350, 7)])
    batched, _ = advance(states, inputs, CONTROL_INTERVAL)
    for i in range(7):
        single, _ = advance(states[i : i + 1], inputs[i : i + 1], CONTROL_INTERVAL)
        np.testing.assert_array_equal(batched[i], single[0])


def test_advance_rejects_bad_shapes_and_reports_failures():
    with pytest.raises(ValueError, match="shape"):
        advance(np.zeros((2, 4)), np.zeros((2, 2)), 10.0)
    with pytest.raises(ValueError, match="inputs"):
        advance(np.zeros((2, 5)), np.zeros((3, 2)), 10.0)
    with pytest.raises(IntegrationError, match="reactor"):
        advance(np.array([[np.nan, 1, 1e-6, 1, 350.0]]), np.array([[1.0, 340.0]]), 10.0)
