"""Env-steps per second of the batched integrator against scipy's solve_ivp, one process.

The same PI closed loop (startup, mid-range gains) runs with scipy ``solve_ivp`` (BDF,
rtol 1e-6, atol 1e-8) one env at a time, and with the batched integrator on 100 and 1000
reactors; accuracy of each against ``solve_ivp`` Radau at rtol 1e-10. The last line is the
speed ratio. See :mod:`polycstr_lib.reactor.simbench`.

    python benchmarks/simulator.py [--steps 40] [--scipy-episodes 4]
"""

from __future__ import annotations

import argparse

import pandas as pd

from polycstr_lib.reactor.simbench import compare_integrators


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="closed-loop steps per episode")
    parser.add_argument("--scipy-episodes", type=int, default=4, help="episodes for scipy")
    args = parser.parse_args()
    table = compare_integrators(steps=args.steps, scipy_episodes=args.scipy_episodes)
    with pd.option_context("display.float_format", "{:.3g}".format):
        print(table.to_string())
    best = table["speedup"].iloc[1:]
    worst_err = table["max_rel_error"].iloc[1:].max()
    print(
        f"speed ratio batched / scipy BDF: {best.iloc[0]:.0f}x (100 reactors), "
        f"{best.iloc[-1]:.0f}x ({table['envs'].iloc[-1]} reactors); "
        f"batched max rel error {worst_err:.1e}"
    )


if __name__ == "__main__":
    main()
