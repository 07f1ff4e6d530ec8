"""Solve time of the NMPC oracle per control step (do-mpc, CasADi, IPOPT with MUMPS).

Runs closed-loop NMPC episodes (never from the cache) and prints, per scenario and horizon,
the median and 95th-percentile wall time of one solve (one control step, warm-started from
the previous step's shifted solution), the IPOPT iterations and the closed-loop return.

Run: ``python benchmarks/nmpc.py [--scenario startup] [--horizon 10] [--steps 200]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from polycstr_lib.reactor.datasets import eval_seeds
from polycstr_lib.reactor.nmpc import NMPCConfig, NMPCPolicy
from polycstr_lib.reactor.rollout import rollout
from polycstr_lib.reactor.scenarios import SCENARIOS


def measure(scenario: str, horizon: int, episodes: int, steps: int) -> dict:
    """Solve-time statistics of ``episodes`` closed-loop NMPC episodes."""
    start = time.perf_counter()
    policy = NMPCPolicy(scenario, NMPCConfig(horizon=horizon))
    setup = time.perf_counter() - start
    traj = rollout(policy, scenario, eval_seeds(episodes), steps=steps)
    ms = 1e3 * np.asarray(policy.solve_seconds)
    return {
        "scenario": scenario,
        "horizon": horizon,
        "solves": len(ms),
        "median_ms": float(np.median(ms)),
        "p95_ms": float(np.percentile(ms, 95)),
        "max_ms": float(ms.max()),
        "iterations_median": float(np.median(policy.iterations)),
        "failures": policy.failures,
        "setup_s": setup,
        "return": float(traj.returns.mean()),
        "violations": int(traj.violations.sum()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", action="append", choices=list(SCENARIOS))
    parser.add_argument("--horizon", type=int, action="append", help="repeatable (default 10)")
    parser.add_argument("--episodes", type=int, default=1, help="episodes per scenario")
    parser.add_argument("--steps", type=int, default=200, help="steps per episode")
    args = parser.parse_args(argv)
    if args.episodes < 1 or not 1 <= args.steps <= 200:
        parser.error("need --episodes >= 1 and --steps in [1, 200]")
    horizons = args.horizon or [NMPCConfig().horizon]
    if min(horizons) < 1:
        parser.error("horizons must be >= 1")
    header = (
        f"{'scenario':<11} {'N':>3} {'solves':>6} {'median ms':>9} {'p95 ms':>7} {'max ms':>7} "
        f"{'iters':>5} {'failed':>6} {'setup s':>7} {'return':>10} {'viol':>4}"
    )
    print(header)
    for scenario in args.scenario or list(SCENARIOS):
        for horizon in horizons:
            r = measure(scenario, horizon, args.episodes, args.steps)
            print(
                f"{r['scenario']:<11} {r['horizon']:>3} {r['solves']:>6} {r['median_ms']:>9.1f} "
                f"{r['p95_ms']:>7.1f} {r['max_ms']:>7.1f} {r['iterations_median']:>5.0f} "
                f"{r['failures']:>6} {r['setup_s']:>7.1f} {r['return']:>10.1f} "
                f"{r['violations']:>4}",
                flush=True,
            )


if __name__ == "__main__":
    main()
