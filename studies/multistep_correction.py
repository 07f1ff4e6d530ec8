"""Multi-step correction (the paper's second open question), measured as chapter 08 measures.

The one-step safety layer corrects a_t alone. A multi-step correction corrects the plan of
the next H actions jointly on a cost-to-go PICNN over H actions (trained on the data's action
windows, :func:`polycstr_lib.correction.cost_models.action_windows`; convex in the whole plan) and
applies the plan's first action (:mod:`polycstr_lib.correction.safety`, ``horizon``). H = 1 is
chapter
08's "normalised, cost-to-go" variant, the baseline.

Per scenario: the base agents (cached training runs), one cost-to-go PICNN per horizon, and
the normalised correction (K steps) at every step size of the grid for every horizon. As in
chapter 08, the step size of each horizon is chosen on *validation* episodes
(:func:`~polycstr_lib.correction.tuning.choose_correction`: safe = no run made worse) and the
*test* episodes are run once, at the chosen steps. Prints per scenario: the validation
choice per horizon with its safe range, the safe range per algorithm, and the test table
(IQM over runs of the mean normalised reward, worst episode, runaway episodes).

Run (agents, cost models and sweeps are cached in the artifact directory):

    python studies/multistep_correction.py [--scenarios startup grade_down grade_up]
        [--horizons 1 2 4] [--algorithms bc iql cql] [--seeds 0 1 2] [--bc-steps 2000]
        [--iql-steps 2000] [--cql-steps 500] [--cost-steps 2000] [--validation-episodes 10]
        [--test-episodes 20] [--csv runs.csv]
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from polycstr_lib.agents.config import TrainConfig
from polycstr_lib.agents.sweeps import train_many
from polycstr_lib.correction.cost_models import CostModelConfig, action_windows, train_cost_model
from polycstr_lib.correction.safety import action_spread
from polycstr_lib.correction.sweep import summarise_runs, sweep_corrections
from polycstr_lib.correction.task import CorrectionSetup, ScenarioTask
from polycstr_lib.correction.tuning import choose_correction, safe_ranges
from polycstr_lib.correction.variants import CorrectionVariant
from polycstr_lib.reactor.datasets import ensure_dataset, load_offline_data
from polycstr_lib.reactor.scenarios import get_scenario

NORMALISED_STEPS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)  # chapter 08's paper grid (σ_a)


def variant_name(horizon: int) -> str:
    return f"H={horizon}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", default=["startup", "grade_down", "grade_up"])
    parser.add_argument("--horizons", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--algorithms", nargs="+", default=["bc", "iql", "cql"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--bc-steps", type=int, default=2000)
    parser.add_argument("--iql-steps", type=int, default=2000)
    parser.add_argument("--cql-steps", type=int, default=500)
    parser.add_argument("--cost-steps", type=int, default=2000)
    parser.add_argument("--correction-steps", type=int, default=3, help="K")
    parser.add_argument("--step-sizes", nargs="+", type=float, default=list(NORMALISED_STEPS))
    parser.add_argument("--validation-episodes", type=int, default=10)
    parser.add_argument("--test-episodes", type=int, default=20)
    parser.add_argument("--tol", type=float, default=1.0)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--csv", default=None, help="also write every run (both splits) here")
    args = parser.parse_args()
    for scenario in args.scenarios:
        get_scenario(scenario)  # a clear error for an unknown name
    if not set(args.algorithms) <= {"bc", "iql", "cql"}:
        parser.error(f"algorithms must be among bc, iql, cql, got {args.algorithms}")
    if min(args.horizons) < 1 or len(set(args.horizons)) != len(args.horizons):
        parser.error(f"horizons must be distinct integers >= 1, got {args.horizons}")
    if min(args.bc_steps, args.iql_steps, args.cql_steps, args.cost_steps) < 1:
        parser.error("training budgets must be >= 1")
    if min(args.correction_steps, args.validation_episodes, args.test_episodes) < 1:
        parser.error("correction steps and episode counts must be >= 1")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    budgets = {"bc": args.bc_steps, "iql": args.iql_steps, "cql": args.cql_steps}
    configs = [
        TrainConfig(algorithm=a, scenario=s, steps=budgets[a], seed=seed)
        for s in args.scenarios
        for a in args.algorithms
        for seed in args.seeds
    ]
    trained = train_many(configs, processes=args.processes, progress=True)
    agents: dict[str, dict] = {s: {} for s in args.scenarios}
    for config, (agent, _) in zip(configs, trained, strict=True):
        agents[config.scenario][(config.algorithm, config.seed)] = agent
    variants = {
        variant_name(h): CorrectionVariant(
            "normalised", model=variant_name(h), steps=args.correction_steps, horizon=h
        )
        for h in args.horizons
    }
    grids = {name: tuple(args.step_sizes) for name in variants}
    runs = []
    for scenario in args.scenarios:
        ensure_dataset(scenario)
        data = load_offline_data(scenario)
        task = ScenarioTask(scenario, data.return_min, data.return_max, action_spread(data), data)
        models, r2 = {}, {}
        for h in args.horizons:
            config = CostModelConfig(kind="picnn", steps=args.cost_steps, target="cost_to_go")
            model, log = train_cost_model(action_windows(data, h), config, progress=False)
            models[variant_name(h)], r2[variant_name(h)] = model, log["heldout_r2"]
        setup = CorrectionSetup(agents[scenario], models, task)
        sweep = sweep_corrections(setup, args.validation_episodes, variants, grids, tol=args.tol)
        choice = choose_correction(sweep, variants, task.action_scale)
        chosen = {n: (float(row["step_size"]),) for n, row in choice.per_variant.iterrows()}
        test = sweep_corrections(
            setup, args.test_episodes, variants, chosen, split="test", tol=args.tol
        )
        runs += [
            sweep.assign(scenario=scenario, split="validation"),
            test.assign(scenario=scenario, split="test"),
        ]
        per_variant = choice.per_variant.assign(heldout_r2=pd.Series(r2))
        per_agent = safe_ranges(sweep)
        table = summarise_runs(test, by=("algorithm", "variant"))
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            print(f"\n=== {scenario}: validation ({args.validation_episodes} episodes per run)")
            print(per_variant.round(3).to_string())
            print("\nsafe step range per algorithm (validation)")
            print(per_agent.round(2).to_string())
            print(f"\ntest ({args.test_episodes} episodes per run, at the chosen steps)")
            print(table.round(1).to_string(index=False))
    if args.csv:
        pd.concat(runs, ignore_index=True).to_csv(args.csv, index=False)
    print(f"\n{len(configs)} agents, horizons {args.horizons}, {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
