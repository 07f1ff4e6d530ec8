"""Training speed of the offline agents: the job a reader runs, against d3rlpy, in one run.

The job: one algorithm, 5 seeds, one scenario, 2x256 nets, batch 256, on the whole machine.
Ours trains the seeds as seed ensembles (one batched model per process) split over two
single-thread processes (3 + 2 seeds), as ``train_many`` does on a two-core machine. d3rlpy
2.8.1 trains one seed per process, two processes at a time (its best use of two cores). The
figure is agent-steps per second (gradient steps times seeds), on a synthetic dataset of the
real shape (20,000 transitions, 9-dimensional observations, 2-dimensional actions). Also
printed: one seed in one process (ours and d3rlpy), and ours in bfloat16 autocast.

The d3rlpy environment is kept apart from the project's ``.venv`` (it must never be installed
there). Create it once with ``--install-d3rlpy`` or by hand::

    python3 -m venv .venv-d3rlpy
    .venv-d3rlpy/bin/pip install torch==2.13.0 d3rlpy==2.8.1

Usage::

    .venv/bin/python benchmarks/training.py [--seconds 5] [--algos bc iql cql] [--seeds 5]
        [--no-d3rlpy] [--install-d3rlpy]
    .venv/bin/python benchmarks/training.py --malloc [--seconds 5] [--algos ...] [--seeds 10]
    .venv/bin/python benchmarks/training.py --members [--seconds 10] [--algos cql] [--seeds 10]
    .venv/bin/python benchmarks/training.py --roofline [--seconds 5] [--algos bc iql cql]

The last line is ``IQL 5-seed job per machine, ours/d3rlpy (float32): R.RRx``.

The roofline: the same run measures this machine's float32 matmul ceiling (256x256 @ 256x256
products, one thread per process, two processes at once as the job runs) and counts each
algorithm's floating-point work per agent-step with ``torch.utils.flop_counter`` on one real
update (forward and backward matmuls). It prints agent-steps/s per core, GFLOP per
agent-step, and the fraction of the ceiling the job reaches. ``--roofline`` prints only that
table (no d3rlpy, no bfloat16); its last line is ``IQL roofline: F.FF of the float32 matmul
ceiling``.

``--malloc`` times one ensemble per algorithm in a process started as Dask's nanny starts its
workers (``MALLOC_TRIM_THRESHOLD_=65536``), with and without
:func:`polycstr_lib.agents.sweeps.generous_malloc`, which every training task calls; its last line
is ``IQL <n>-seed ensemble in a Dask-like worker, generous_malloc/as started: R.RRx``.

``--members`` times, in the same kind of worker with :func:`generous_malloc`, a ``--seeds``
ensemble whole against the ensembles of at most :func:`polycstr_lib.agents.sweeps.max_members`
seeds that ``plan_tasks`` makes of it; its last line is ``<ALGO> <n> seeds in ensembles of at
most <m>/one ensemble: R.RRx``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from polycstr_lib.reactor.datasets import OfflineData

REPO = Path(__file__).resolve().parent.parent
D3RLPY_VENV = REPO / ".venv-d3rlpy"
N, OBS_DIM, ACT_DIM, EPISODE_LENGTH = 20_000, 9, 2, 200
BATCH_SIZE = 256
#: d3rlpy 2.8.1 IQL steps/s measured earlier on this project's machines (SPEC.md §4); the
#: fallback reference when d3rlpy cannot be run here.
SPEC_D3RLPY_IQL = 69.0


def synthetic_data(seed: int = 0) -> OfflineData:
    """Builds the synthetic dataset (deterministic)."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor([450.0, 10.0, 1.5e-6, 100.0, 350.0, 10.0, 5.0, 1.5, 340.0])
    obs = scale * (1 + 0.1 * torch.randn(N, OBS_DIM, generator=g))
    next_obs = scale * (1 + 0.1 * torch.randn(N, OBS_DIM, generator=g))
    rewards = -(next_obs[:, 5] ** 2 + next_obs[:, 6] ** 2)
    timeouts = (torch.arange(N) % EPISODE_LENGTH == EPISODE_LENGTH - 1).float()
    returns = rewards.view(-1, EPISODE_LENGTH).sum(1)
    return OfflineData(
        scenario="synthetic",
        observations=obs.float().contiguous(),
        actions=torch.rand(N, ACT_DIM, generator=g) * 2 - 1,
        rewards=rewards.float(),
        next_observations=next_obs.float().contiguous(),
        costs=(next_obs[:, 5].abs() + next_obs[:, 6].abs()).float(),
        terminals=torch.zeros(N),
        timeouts=timeouts,
        episode_ids=torch.arange(N) // EPISODE_LENGTH,
        return_min=float(returns.min()),
        return_max=float(returns.max()),
    )


def measure(
    algo: str, seconds: float, barrier=None, precision: str = "float32", seeds: int = 1
) -> float:
    """Agent-steps per second of an ensemble of ``seeds`` members of ``algo``, one thread.

    Batch sampling is included; ``precision='bfloat16'`` runs each update under bfloat16
    autocast, exactly as the training loop does for ``TrainConfig(precision='bfloat16')``.
    """
    torch.set_num_threads(1)
    from polycstr_lib.agents import Scalers, make_agent, sample_batch
    from polycstr_lib.agents.config import precision_context

    data = synthetic_data()
    members = list(range(seeds))
    agent = make_agent(algo, OBS_DIM, ACT_DIM, None, Scalers.from_data(data), seed=members)
    generators = [torch.Generator().manual_seed(s) for s in members]
    for _ in range(3):  # warm-up
        with precision_context(precision):
            agent.update(sample_batch(data, BATCH_SIZE, generators))
    if barrier is not None:
        barrier.wait()
    steps, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        batch = sample_batch(data, BATCH_SIZE, generators)
        with precision_context(precision):
            agent.update(batch)
        steps += 1
    return seeds * steps / elapsed


def flops_per_agent_step(algo: str) -> float:
    """Floating-point operations of one agent-step of ``algo`` (one seed, one batch).

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` on one real update after a warm-up:
    the matrix products of the forward and backward passes (elementwise work is not counted,
    so the fraction of the matmul ceiling is the fraction of useful work).
    """
    from torch.utils.flop_counter import FlopCounterMode

    from polycstr_lib.agents import Scalers, make_agent, sample_batch

    data = synthetic_data()
    agent = make_agent(algo, OBS_DIM, ACT_DIM, None, Scalers.from_data(data), seed=[0])
    generators = [torch.Generator().manual_seed(0)]
    agent.update(sample_batch(data, BATCH_SIZE, generators))
    with FlopCounterMode(display=False) as counter:
        agent.update(sample_batch(data, BATCH_SIZE, generators))
    return float(counter.get_total_flops())


MATMUL_SIZE = 256


def _matmul_child(seconds: float, barrier, queue) -> None:
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(MATMUL_SIZE, MATMUL_SIZE, generator=g) for _ in range(2))
    out = torch.empty(MATMUL_SIZE, MATMUL_SIZE)
    for _ in range(20):  # warm-up
        torch.mm(a, b, out=out)
    barrier.wait()
    products, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(50):
            torch.mm(a, b, out=out)
        products += 50
    queue.put(2 * MATMUL_SIZE**3 * products / elapsed)


def matmul_ceiling(seconds: float, processes: int = 2) -> float:
    """This machine's float32 matmul ceiling per core, FLOP/s (256³ products).

    ``processes`` single-thread processes multiply at the same time (as the training job's
    processes do, sharing caches and memory bandwidth); the result is their mean.
    """
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(processes), ctx.Queue()
    procs = [
        ctx.Process(target=_matmul_child, args=(seconds, barrier, queue)) for _ in range(processes)
    ]
    for p in procs:
        p.start()
    rates = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(rates) / processes


def roofline(algos: list[str], seconds: float, n_seeds: int, processes: int = 2) -> dict:
    """Per algorithm: agent-steps/s per core of the job, FLOP per step, fraction of the ceiling.

    Returns:
        ``{"ceiling": FLOP/s per core, algo: {"steps_per_core", "flop_per_step",
        "flop_per_core", "fraction"}}``.
    """
    before = matmul_ceiling(seconds, processes)
    jobs = {algo: measure_job(algo, seconds, "float32", n_seeds, processes) for algo in algos}
    after = matmul_ceiling(seconds, processes)
    # the ceiling is measured on both sides of the jobs so a drifting load shows in the spread
    ceiling = (before + after) / 2
    out: dict = {"ceiling": ceiling, "ceiling_spread": abs(before - after) / ceiling}
    for algo in algos:
        per_core = jobs[algo] / processes
        flop = flops_per_agent_step(algo)
        out[algo] = {
            "steps_per_core": per_core,
            "flop_per_step": flop,
            "flop_per_core": per_core * flop,
            "fraction": per_core * flop / ceiling,
        }
    return out


def print_roofline(result: dict, n_seeds: int) -> None:
    """Prints :func:`roofline`'s table; the last line is IQL's fraction when IQL was measured."""
    ceiling = result["ceiling"]
    print(
        f"float32 matmul ceiling: {ceiling / 1e9:.1f} GFLOP/s per core "
        f"({MATMUL_SIZE}³ products, one thread per process, 2 processes at once; measured "
        f"before and after the jobs, which differ by {result['ceiling_spread']:.0%})"
    )
    header = (
        f"{'algo':<6}{'agent-steps/s per core':>24}{'GFLOP per step':>16}"
        f"{'GFLOP/s per core':>18}{'of ceiling':>12}"
    )
    print(f"{n_seeds}-seed job (float32), FLOPs counted by torch.utils.flop_counter:")
    print(header)
    print("-" * len(header))
    for algo, row in result.items():
        if algo.startswith("ceiling"):
            continue
        print(
            f"{algo:<6}{row['steps_per_core']:24.1f}{row['flop_per_step'] / 1e9:16.3f}"
            f"{row['flop_per_core'] / 1e9:18.1f}{row['fraction']:12.2f}"
        )
    for algo, row in result.items():
        if not algo.startswith("ceiling"):
            print(f"{algo.upper()} roofline: {row['fraction']:.2f} of the float32 matmul ceiling")


def _child(algo: str, seconds: float, barrier, queue, precision: str, seeds: int) -> None:
    queue.put(measure(algo, seconds, barrier, precision, seeds))


def _child_malloc(algo: str, seconds: float, seeds: int, fix: bool, queue) -> None:
    if fix:
        from polycstr_lib.agents.sweeps import generous_malloc

        generous_malloc()
    queue.put(measure(algo, seconds, seeds=seeds))


def measure_malloc(algo: str, seconds: float, seeds: int, fix: bool) -> float:
    """Agent-steps/s of one ensemble in a fresh process with Dask's worker malloc setting."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    previous = os.environ.get("MALLOC_TRIM_THRESHOLD_")
    os.environ["MALLOC_TRIM_THRESHOLD_"] = "65536"  # the child reads it when it starts
    try:
        proc = ctx.Process(target=_child_malloc, args=(algo, seconds, seeds, fix, queue))
        proc.start()
    finally:
        if previous is None:
            os.environ.pop("MALLOC_TRIM_THRESHOLD_")
        else:
            os.environ["MALLOC_TRIM_THRESHOLD_"] = previous
    rate = queue.get()
    proc.join()
    return rate


def members_job_rate(algo: str, seconds: float, seeds: int) -> tuple[float, int]:
    """Agent-steps/s of ``seeds`` seeds trained as ``plan_tasks`` groups them, and the cap.

    The groups (at most :func:`max_members` seeds each) run one after another on one core, so
    the job's rate is its agent-steps over the sum of the groups' times.
    """
    from polycstr_lib.agents.config import TrainConfig
    from polycstr_lib.agents.sweeps import max_members

    cap = max_members(TrainConfig(algorithm=algo, batch_size=BATCH_SIZE))
    sizes = [min(cap, seeds - start) for start in range(0, seeds, cap)]
    rates = {size: measure_malloc(algo, seconds, size, fix=True) for size in set(sizes)}
    return seeds / sum(size / rates[size] for size in sizes), cap


def split_seeds(n_seeds: int, processes: int) -> list[int]:
    """Ensemble sizes per process, as even as possible (5 over 2 → [3, 2])."""
    return [n_seeds // processes + (i < n_seeds % processes) for i in range(processes)]


def measure_job(
    algo: str, seconds: float, precision: str = "float32", n_seeds: int = 5, processes: int = 2
) -> float:
    """Agent-steps/s of ``n_seeds`` seeds as ensembles in simultaneous processes (spawn)."""
    sizes = [s for s in split_seeds(n_seeds, processes) if s > 0]
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(len(sizes)), ctx.Queue()
    procs = [
        ctx.Process(target=_child, args=(algo, seconds, barrier, queue, precision, size))
        for size in sizes
    ]
    for p in procs:
        p.start()
    rates = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(rates)


_D3RLPY_SCRIPT = r"""
import json, sys, time
import numpy as np, torch
torch.set_num_threads(1)
import d3rlpy
algos, seconds = sys.argv[1].split(","), float(sys.argv[2])
rng = np.random.default_rng(0)
n, length = 20000, 200
scale = np.array([450.0, 10.0, 1.5e-6, 100.0, 350.0, 10.0, 5.0, 1.5, 340.0], np.float32)
obs = (scale * (1 + 0.1 * rng.standard_normal((n, 9)))).astype(np.float32)
actions = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
rewards = -(obs[:, 5] ** 2 + obs[:, 6] ** 2).astype(np.float32)
timeouts = (np.arange(n) % length == length - 1).astype(np.float32)
dataset = d3rlpy.dataset.MDPDataset(obs, actions, rewards, np.zeros(n, np.float32), timeouts)
configs = {
    "bc": lambda: d3rlpy.algos.BCConfig(batch_size=256),
    "iql": lambda: d3rlpy.algos.IQLConfig(batch_size=256, expectile=0.9, weight_temp=3.0),
    "cql": lambda: d3rlpy.algos.CQLConfig(batch_size=256),
}
out = {"version": d3rlpy.__version__}
for name in algos:
    algo = configs[name]().create(device="cpu:0")
    algo.build_with_dataset(dataset)
    for _ in range(3):
        algo.update(dataset.sample_transition_batch(256))
    steps, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        algo.update(dataset.sample_transition_batch(256))
        steps += 1
    out[name] = steps / elapsed
print("RESULT " + json.dumps(out))
"""


def install_d3rlpy() -> None:
    """Creates ``.venv-d3rlpy`` with torch 2.13.0 (the pinned CPU build) and d3rlpy 2.8.1."""
    subprocess.run([sys.executable, "-m", "venv", str(D3RLPY_VENV)], check=True)
    pip = str(D3RLPY_VENV / "bin" / "pip")
    subprocess.run([pip, "install", "-q", "torch==2.13.0"], check=True)
    subprocess.run([pip, "install", "-q", "d3rlpy==2.8.1"], check=True)


def measure_d3rlpy(algos: list[str], seconds: float, processes: int = 1) -> dict[str, float] | str:
    """d3rlpy steps/s per algorithm, or a sentence saying why it could not be measured.

    With ``processes=2`` two copies run at the same time (one thread each) and their rates are
    summed, the same "per machine" figure as :func:`measure_job`.
    """
    python = D3RLPY_VENV / "bin" / "python"
    if not python.exists():
        return f"d3rlpy not measured: {D3RLPY_VENV} does not exist (see --install-d3rlpy)"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [str(python), "-c", _D3RLPY_SCRIPT, ",".join(algos), str(seconds)]
    procs = [
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for _ in range(processes)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=900)
        lines = [x for x in out.splitlines() if x.startswith("RESULT ")]
        if not lines:
            return f"d3rlpy run failed (exit {proc.returncode}): {err.strip()[-500:]}"
        results.append(json.loads(lines[-1][len("RESULT ") :]))
    total = {"version": results[0]["version"]}
    for algo in algos:
        total[algo] = sum(r[algo] for r in results)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="timing window per cell")
    parser.add_argument("--algos", nargs="+", default=["bc", "cql", "iql"])
    parser.add_argument("--seeds", type=int, default=5, help="seeds in the job")
    parser.add_argument("--no-d3rlpy", action="store_true")
    parser.add_argument("--install-d3rlpy", action="store_true")
    parser.add_argument(
        "--malloc", action="store_true", help="only the Dask worker malloc comparison"
    )
    parser.add_argument(
        "--members",
        action="store_true",
        help="only the ensemble-size comparison (one ensemble vs groups of max_members)",
    )
    parser.add_argument(
        "--roofline",
        action="store_true",
        help="only the roofline table: steps/s per core against the measured matmul ceiling",
    )
    args = parser.parse_args()
    if args.roofline:
        algos = sorted(args.algos, key=lambda a: a == "iql")  # IQL's fraction is the last line
        print_roofline(roofline(algos, args.seconds, args.seeds), args.seeds)
        return
    if args.members:
        print(
            f"agent-steps/s of a {args.seeds}-seed job, one thread, in a Dask-like worker with "
            "generous_malloc: one ensemble, or ensembles of at most max_members seeds in turn"
        )
        for algo in sorted(args.algos, key=lambda a: a == "cql"):
            whole = measure_malloc(algo, args.seconds, args.seeds, fix=True)
            grouped, cap = members_job_rate(algo, args.seconds, args.seeds)
            print(
                f"{algo.upper()} {args.seeds} seeds in ensembles of at most {cap}/one ensemble: "
                f"{grouped / whole:.2f}x ({grouped:.1f} vs {whole:.1f})"
            )
        return
    if args.malloc:
        algos = sorted(args.algos, key=lambda a: a == "iql")
        print(
            f"agent-steps/s of one {args.seeds}-seed ensemble, one thread, in a process "
            "started with MALLOC_TRIM_THRESHOLD_=65536 (as Dask's nanny starts workers)"
        )
        for algo in algos:
            slow = measure_malloc(algo, args.seconds, args.seeds, fix=False)
            fast = measure_malloc(algo, args.seconds, args.seeds, fix=True)
            print(
                f"{algo.upper()} {args.seeds}-seed ensemble in a Dask-like worker, "
                f"generous_malloc/as started: {fast / slow:.2f}x ({fast:.1f} vs {slow:.1f})"
            )
        return
    if args.install_d3rlpy and not (D3RLPY_VENV / "bin" / "python").exists():
        install_d3rlpy()
    algos = sorted(args.algos, key=lambda a: a == "iql")  # IQL's ratio is the last line
    n = args.seeds
    job = f"{n}-seed job"

    rows: dict[str, dict[str, float]] = {}
    for algo in algos:
        rows[algo] = {
            "ours 1 seed 1p": measure(algo, args.seconds),
            f"ours {job}": measure_job(algo, args.seconds, "float32", n),
            f"ours {job} bf16": measure_job(algo, args.seconds, "bfloat16", n),
        }
    d3: dict[str, dict[str, float] | str] = {}
    for procs in (1, 2):
        d3[f"d3rlpy {procs}p"] = (
            "d3rlpy not measured (--no-d3rlpy)"
            if args.no_d3rlpy
            else measure_d3rlpy(algos, args.seconds, processes=procs)
        )

    print(f"torch {torch.__version__}, 2x256 nets, batch {BATCH_SIZE}, {os.cpu_count()} CPUs")
    print(
        f"agent-steps/s; ours {job}: ensembles of {split_seeds(n, 2)} seeds in 2 processes; "
        "d3rlpy 2p: one seed per process, 2 processes (per machine)"
    )
    columns = [*next(iter(rows.values())), *d3]
    header = f"{'algo':<6}" + "".join(f"{c:>22}" for c in columns)
    print(header)
    print("-" * len(header))
    for algo, ours in rows.items():
        cells = [f"{v:22.1f}" for v in ours.values()]
        for res in d3.values():
            cells.append(f"{res[algo]:22.1f}" if isinstance(res, dict) else f"{'-':>22}")
        print(f"{algo:<6}" + "".join(cells))
    for name, res in d3.items():
        if isinstance(res, str):
            print(f"{name}: {res}")
    print_roofline(roofline(algos, args.seconds, n), n)
    ref = d3["d3rlpy 2p"]
    for algo in algos:
        if isinstance(ref, dict):
            base, what = ref[algo], "d3rlpy"
        elif algo == "iql":
            base, what = 2 * SPEC_D3RLPY_IQL, "d3rlpy (SPEC figure, not run here)"
        else:
            continue
        ours = rows[algo][f"ours {job}"]
        print(f"{algo.upper()} {job} per machine, ours/{what} (float32): {ours / base:.2f}x")


if __name__ == "__main__":
    main()
