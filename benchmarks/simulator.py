"""Env-steps per second of the batched integrator against scipy's solve_ivp, one process.

Runs the same PI closed loop (scenario startup, mid-range gains) three ways: scipy
``solve_ivp`` (BDF, rtol 1e-6, atol 1e-8) one env at a time, and the batched integrator on
100 and 1000 reactors. Accuracy of each is measured against ``solve_ivp`` Radau at
rtol 1e-10 on the same closed loop for a few episodes. The last line is the speed ratio.

    python benchmarks/simulator.py [--steps 40] [--scipy-episodes 4]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.integrate import solve_ivp

from polycstr_lib.env import ACTION_SCALE, CONTROL_INTERVAL
from polycstr_lib.integrator import advance
from polycstr_lib.model import STATE_SCALE, ReactorParams, reactor_rhs
from polycstr_lib.pi import GainRanges, PIController
from polycstr_lib.scenarios import get_scenario

PARAMS = ReactorParams()


def scipy_stepper(method, rtol, atol):
    def step(states, inputs, guess):
        out = np.empty_like(states)
        for i in range(len(states)):
            sol = solve_ivp(
                lambda t, y, u=inputs[i]: reactor_rhs(y, u, PARAMS),
                (0.0, CONTROL_INTERVAL),
                states[i],
                method=method,
                rtol=rtol,
                atol=atol,
            )
            out[i] = sol.y[:, -1]
        return out, guess

    return step


def batched_step(states, inputs, guess):
    return advance(states, inputs, CONTROL_INTERVAL, PARAMS, guess)


def closed_loop(stepper, n, steps, seed=0):
    """PI closed loop on n startup episodes; returns (states (steps, n, 5), seconds)."""
    rng = np.random.default_rng(seed)
    scenario = get_scenario("startup")
    init = [scenario.sample_initial(rng, PARAMS) for _ in range(n)]
    states = np.array([s for s, _ in init])
    inputs = np.array([u for _, u in init])
    setpoint = scenario.setpoint
    ctrl = PIController(np.repeat(GainRanges().nominal()[None], n, axis=0), PARAMS)

    def obs():
        return np.concatenate([states, setpoint - states[:, [3, 4]], inputs], axis=1)

    ctrl.reset(obs())
    guess = np.full(n, CONTROL_INTERVAL)
    out = []
    start = time.perf_counter()
    for _ in range(steps):
        action = np.clip(ctrl.act(obs()), -1, 1)
        inputs = np.clip(inputs + action * ACTION_SCALE, PARAMS.input_low, PARAMS.input_high)
        states, guess = stepper(states, inputs, guess)
        out.append(states)
    return np.array(out), time.perf_counter() - start


def max_rel_error(x, ref):
    return float((np.abs(x - ref) / (np.abs(ref) + 1e-3 * STATE_SCALE)).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="closed-loop steps per episode")
    parser.add_argument("--scipy-episodes", type=int, default=4, help="episodes for scipy")
    args = parser.parse_args()
    advance(np.array([[440.0, 0, 0, 0, 350]]), np.array([[1.0, 345]]), 1.0)  # compile first

    ref_n = 2
    reference, _ = closed_loop(
        scipy_stepper("Radau", 1e-10, 1e-10 * 1e-3 * STATE_SCALE), ref_n, args.steps
    )
    rows = []
    bdf = scipy_stepper("BDF", 1e-6, 1e-8)
    traj, sec = closed_loop(bdf, args.scipy_episodes, args.steps)
    err = max_rel_error(traj[:, :ref_n], reference)
    rows.append(("scipy solve_ivp BDF, one env at a time", args.scipy_episodes, sec, err))
    for n in (100, 1000):
        traj, sec = closed_loop(batched_step, n, args.steps)
        rows.append(
            (f"batched integrator, {n} reactors", n, sec, max_rel_error(traj[:, :ref_n], reference))
        )

    print(f"{'method':44s} {'envs':>5s} {'env-steps/s':>12s} {'us/step':>9s} {'max rel err':>12s}")
    rates = []
    for name, n, sec, err in rows:
        rate = n * args.steps / sec
        rates.append(rate)
        print(f"{name:44s} {n:5d} {rate:12.0f} {1e6 / rate:9.1f} {err:12.2e}")
    print(f"speed ratio batched(100) / scipy: {rates[1] / rates[0]:.0f}x")
    print(f"speed ratio batched(1000) / scipy: {rates[2] / rates[0]:.0f}x")


if __name__ == "__main__":
    main()
