"""Training choices decided on validation episodes: action units (D29) and precision (D21).

``--study units`` trains BC and IQL in four variants (the default min-max action units, the
env's own units, standardised units, and rewards scaled by their std); ``--study precision``
in float32 (the default) and bfloat16 mixed precision. Every run is scored on validation
episodes (never test episodes). Prints, per algorithm, the IQM across seeds and scenarios
with its 95 % bootstrap interval and the probability that a run of each variant beats a run
of the default (rliable), and per scenario the IQM.

BC ignores rewards, so in the units study its "reward std" row repeats its default row bit
for bit: a check that a variant's difference is the variant's and not the training's.

Run (trained agents are cached in the artifact directory; about 20 minutes for the units
study and 8 for the precision study on one core):

    python studies/training_choices.py --study units [--seeds 0 1 2 3] [--steps 2000]
    python studies/training_choices.py --study precision
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from polycstr_lib.analysis.curves import compare_variants, summarise_variants
from polycstr_lib.reactor.datasets import ensure_dataset, read_sidecar
from polycstr_lib.toolkit.stats import iqm

#: study → variant name → TrainConfig overrides; the first variant of each is the default.
STUDIES = {
    "units": {
        "min-max units": {},
        "env units": {"action_scaling": "none"},
        "std units": {"action_scaling": "std"},
        "reward std": {"reward_scaling": "std"},
    },
    "precision": {
        "float32": {},
        "bfloat16": {"precision": "bfloat16"},
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", choices=sorted(STUDIES), default="units")
    parser.add_argument("--scenarios", nargs="+", default=["startup", "grade_up"])
    parser.add_argument("--algorithms", nargs="+", default=["bc", "iql"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--csv", default=None, help="also write the per-run table here")
    args = parser.parse_args()
    references = {}
    for scenario in args.scenarios:
        ensure_dataset(scenario)
        side = read_sidecar(scenario)
        references[scenario] = (side["return_min"], side["return_max"])
    start = time.perf_counter()
    variants = STUDIES[args.study]
    runs = compare_variants(
        variants,
        args.algorithms,
        args.scenarios,
        args.seeds,
        args.steps,
        args.episodes,
        references,
        processes=args.processes,
        progress=True,
    )
    if args.csv:
        runs.to_csv(args.csv, index=False)
    summary = summarise_variants(runs, baseline=next(iter(variants)))
    per_scenario = (
        runs.groupby(["algorithm", "variant", "scenario"])["mean"]
        .apply(lambda x: iqm(x.to_numpy()))
        .unstack("scenario")
    )
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(summary.round(2).to_string(index=False))
        print("\nIQM per scenario")
        print(per_scenario.round(1).to_string())
    print(
        f"\n{len(runs)} runs, {args.steps} steps each, {args.episodes} validation episodes "
        f"per run, {time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
