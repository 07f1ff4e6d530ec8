"""Speed and accuracy of the batched integrator against scipy, on one PI closed loop.

Used by ``benchmarks/simulator.py`` and by the environment chapter. Every method runs the
same loop (scenario startup, mid-range PI gains, same initial states); accuracy is the max
relative error ``|x - x_ref| / (|x_ref| + 1e-3 scale)`` against scipy's Radau at
rtol 1e-10 over the first episodes.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from scipy.integrate import solve_ivp

from polycstr_lib.reactor.env import ACTION_SCALE, CONTROL_INTERVAL
from polycstr_lib.reactor.integrator import advance
from polycstr_lib.reactor.model import STATE_SCALE, ReactorParams, reactor_rhs
from polycstr_lib.reactor.pi import GainRanges, PIController
from polycstr_lib.reactor.scenarios import get_scenario

REL_FLOOR = 1e-3  # floor of the relative error, times the typical scale of each state


def scipy_stepper(method: str, rtol: float, atol, params: ReactorParams):
    """A stepper calling ``solve_ivp`` once per reactor (the one-env-at-a-time baseline)."""

    def step(states, inputs, guess):
        out = np.empty_like(states)
        for i in range(len(states)):
            sol = solve_ivp(
                lambda t, y, u=inputs[i]: reactor_rhs(y, u, params),
                (0.0, CONTROL_INTERVAL),
                states[i],
                method=method,
                rtol=rtol,
                atol=atol,
            )
            out[i] = sol.y[:, -1]
        return out, guess

    return step


def batched_stepper(params: ReactorParams):
    """A stepper calling :func:`polycstr_lib.reactor.integrator.advance` on the whole batch."""

    def step(states, inputs, guess):
        return advance(states, inputs, CONTROL_INTERVAL, params, guess)

    return step


def closed_loop(stepper, n: int, steps: int, params: ReactorParams, seed: int = 0):
    """Mid-range PI startup on ``n`` reactors.

    Returns:
        ``(states (steps, n, 5), seconds spent in the loop)``.
    """
    rng = np.random.default_rng(seed)
    scenario = get_scenario("startup")
    init = [scenario.sample_initial(rng, params) for _ in range(n)]
    states = np.array([s for s, _ in init])
    inputs = np.array([u for _, u in init])
    setpoint = scenario.setpoint
    controller = PIController(GainRanges().nominal(), params)
    controller.reset(np.concatenate([states, setpoint - states[:, [3, 4]], inputs], axis=1))
    guess = np.full(n, CONTROL_INTERVAL)
    out = []
    start = time.perf_counter()
    for _ in range(steps):
        obs = np.concatenate([states, setpoint - states[:, [3, 4]], inputs], axis=1)
        action = np.clip(controller.act(obs), -1, 1)
        inputs = np.clip(inputs + action * ACTION_SCALE, params.input_low, params.input_high)
        states, guess = stepper(states, inputs, guess)
        out.append(states)
    return np.array(out), time.perf_counter() - start


def max_relative_error(x: np.ndarray, ref: np.ndarray) -> float:
    """Max over all entries of ``|x - ref| / (|ref| + REL_FLOOR * scale)``."""
    return float((np.abs(x - ref) / (np.abs(ref) + REL_FLOOR * STATE_SCALE)).max())


def compare_integrators(
    steps: int = 40,
    scipy_episodes: int = 4,
    batch_sizes: tuple[int, ...] = (100, 1000),
    reference_episodes: int = 2,
    params: ReactorParams | None = None,
) -> pd.DataFrame:
    """Env-steps per second and accuracy of scipy BDF (one env at a time) and the batch.

    Returns:
        DataFrame with one row per method: ``envs``, ``env_steps_per_s``, ``us_per_step``,
        ``max_rel_error`` and ``speedup`` (over scipy BDF, measured in this call).
    """
    params = params or ReactorParams()
    if min(scipy_episodes, *batch_sizes) < reference_episodes:
        raise ValueError("every run needs at least reference_episodes episodes")
    advance(np.array([[440.0, 0, 0, 0, 350]]), np.array([[1.0, 345]]), 1.0)  # compile first
    ref_atol = 1e-10 * REL_FLOOR * STATE_SCALE
    reference, _ = closed_loop(
        scipy_stepper("Radau", 1e-10, ref_atol, params), reference_episodes, steps, params
    )
    runs = [
        (
            "SciPy BDF integrator (rtol 1e-6), one reactor at a time",
            scipy_episodes,
            scipy_stepper("BDF", 1e-6, 1e-8, params),
        )
    ]
    runs += [(f"batched integrator, {n} reactors", n, batched_stepper(params)) for n in batch_sizes]
    rows = []
    for name, n, stepper in runs:
        traj, seconds = closed_loop(stepper, n, steps, params)
        rate = n * steps / seconds
        err = max_relative_error(traj[:, :reference_episodes], reference)
        rows.append(
            {
                "method": name,
                "envs": n,
                "env_steps_per_s": rate,
                "us_per_step": 1e6 / rate,
                "max_rel_error": err,
            }
        )
    table = pd.DataFrame(rows).set_index("method")
    table["speedup"] = table["env_steps_per_s"] / table["env_steps_per_s"].iloc[0]
    return table
