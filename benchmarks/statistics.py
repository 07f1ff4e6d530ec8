"""Seconds of a results table's bootstrap with our IQM against rliable's, the same draws.

``interval_estimates`` (rliable's stratified bootstrap, 2,000 replicates) on a results table's
shape of scores: 13 methods of 10 seeds each, as on a paper-profile results page. Run once
with rliable's ``aggregate_iqm`` (SciPy's ``trim_mean`` behind its argument-checking
wrapper) and once with :func:`polycstr_lib.toolkit.stats._trimmed_iqm` (SciPy's operations
without the wrapper); the two tables must be equal to the bit. The last line is the ratio.

    python benchmarks/statistics.py [--methods 13] [--seeds 10] [--reps 2000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from rliable import metrics

from polycstr_lib.toolkit import stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", type=int, default=13, help="methods in the table")
    parser.add_argument("--seeds", type=int, default=10, help="training seeds per method")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap replicates")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    scores = {f"m{i}": rng.normal(80, 10, (args.seeds, 1)) for i in range(args.methods)}
    seconds, tables = {}, {}
    ours = stats._trimmed_iqm
    for name, iqm in (("rliable aggregate_iqm", metrics.aggregate_iqm), ("ours", ours)):
        stats._trimmed_iqm = iqm
        try:
            start = time.perf_counter()
            tables[name] = stats.interval_estimates(scores, reps=args.reps, seed=0)
            seconds[name] = time.perf_counter() - start
        finally:
            stats._trimmed_iqm = ours
        print(f"{name:>22}: {seconds[name]:6.2f} s")
    same = tables["ours"].equals(tables["rliable aggregate_iqm"])
    ratio = seconds["rliable aggregate_iqm"] / seconds["ours"]
    print(f"speed ratio ours / rliable's IQM: {ratio:.1f}x; tables equal to the bit: {same}")


if __name__ == "__main__":
    main()
