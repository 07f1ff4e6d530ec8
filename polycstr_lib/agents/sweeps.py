"""Many training runs at once: ensembles planned into tasks and spread over Dask workers."""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from polycstr_lib.agents import (
    Agent,
    IQLConfig,
)
from polycstr_lib.agents.config import TrainConfig
from polycstr_lib.agents.data import (
    TrainingTensors,
    data_fingerprint,
    load_training_data,
    validate_offline_data,
)
from polycstr_lib.agents.loop import resume_path
from polycstr_lib.agents.runs import (
    check_snapshot_steps,
    group_key,
    is_stale,
    load_runs,
    run_directory,
    train_ensemble,
    unique_configs,
)
from polycstr_lib.toolkit.cache import is_complete
from polycstr_lib.toolkit.deadline import DeadlineReached
from polycstr_lib.toolkit.processes import worker_count
from polycstr_lib.toolkit.store import (
    ARTIFACTS_ENV,
    artifact_dir,
    config_key,
)

#: Seconds to wait for an existing Dask scheduler before giving up.
SCHEDULER_TIMEOUT_S = 10

#: Relative cost of one gradient step per algorithm (2x256 nets), to balance Dask tasks.
_STEP_COST = {"bc": 1.0, "iql": 5.0, "cql": 25.0}


@dataclass(frozen=True)
class _Task:
    """One ensemble to train on a worker: runs equal but for seed and steps."""

    configs: tuple[TrainConfig, ...]  # the runs (resolved)
    data: TrainingTensors  # the scenario's training tensors
    force: bool  # retrain even if cached
    snapshot_steps: tuple[int, ...]  # extra budgets saved as cached runs
    artifact_root: str  # the artifact directory (shared by every worker)

    @property
    def seeds(self) -> list[int]:
        return sorted({c.seed for c in self.configs})

    @property
    def cost(self) -> float:
        c = self.configs[0]
        return len(self.seeds) * max(x.steps for x in self.configs) * _STEP_COST[c.algorithm]

    def split(self) -> tuple[_Task, _Task]:
        """Two tasks with the lower and upper half of the seeds."""
        half = set(self.seeds[: len(self.seeds) // 2])
        low = tuple(c for c in self.configs if c.seed in half)
        high = tuple(c for c in self.configs if c.seed not in half)
        return dataclasses.replace(self, configs=low), dataclasses.replace(self, configs=high)


def generous_malloc() -> bool:
    """Lets glibc keep freed memory of this process for reuse instead of returning it at once.

    Dask's nanny starts every worker with ``MALLOC_TRIM_THRESHOLD_=65536`` (so that workers
    hand memory back to the OS). Setting it also freezes glibc's mmap threshold at 128 KiB,
    so every batch-sized tensor of an ensemble update is mapped, zero-filled by the kernel
    and unmapped again at each step: training then runs about 2.7 times slower, with more
    system time than user time (``benchmarks/training.py --malloc`` measures it). A trim
    threshold of 256 MiB and an mmap threshold of 32 MiB (glibc's largest dynamic value)
    restore what an ordinary process does. It changes no number, only where memory comes
    from.

    Returns:
        Whether the thresholds were set (False where the C library is not glibc).
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h> parameter numbers
    return bool(mallopt(m_trim_threshold, 256 << 20)) and bool(mallopt(m_mmap_threshold, 32 << 20))


def _run_task(task: _Task) -> list[str]:
    """Trains one ensemble (in a worker process: one torch thread); returns its run folders."""
    torch.set_num_threads(1)
    generous_malloc()  # on any Dask worker, local or remote (see its docstring)
    previous = os.environ.get(ARTIFACTS_ENV)
    os.environ[ARTIFACTS_ENV] = task.artifact_root
    try:
        train_ensemble(
            task.configs,
            data=task.data,
            progress=False,
            force=task.force,
            num_threads=1,
            snapshot_steps=task.snapshot_steps,
        )
        fingerprint = data_fingerprint(task.data)
        return [str(run_directory(c, fingerprint)) for c in task.configs]
    finally:
        if previous is None:
            os.environ.pop(ARTIFACTS_ENV, None)
        else:
            os.environ[ARTIFACTS_ENV] = previous


#: generous_malloc's mmap threshold: a block at least this large is mapped, zero-filled and
#: unmapped afresh at every allocation, whatever the malloc settings.
_MMAP_THRESHOLD = 32 << 20


def max_members(config: TrainConfig) -> int:
    """The most seeds one ensemble of ``config`` trains at once.

    An ensemble's largest activation grows with its members. Past the mmap threshold every
    allocation of it costs fresh pages, and a 10-seed CQL (whose critics see 31 actions per
    state) then spends as much time in the kernel as in its own work, at less than half the
    per-seed speed of three seeds (``benchmarks/training.py --malloc``). So seeds are grouped
    such that the largest activation stays below the threshold. Members are exact whatever
    their number, so the grouping changes no number.
    """
    config = config.resolved()
    rows = 1 + 3 * config.agent.n_action_samples if config.algorithm == "cql" else 1
    per_member = config.batch_size * rows * max(config.agent.hidden_dims) * 4  # float32 bytes
    return max(1, _MMAP_THRESHOLD // per_member)


def plan_tasks(
    configs: Sequence[TrainConfig],
    data: Mapping[str, Any],
    workers: int,
    force: bool = False,
    snapshot_steps: Sequence[int] = (),
) -> list[_Task]:
    """Groups the runs left to train into ensembles, split so that every worker has work.

    Runs that differ only in seed and steps form one ensemble of at most
    :func:`max_members` seeds; while there are fewer ensembles than workers, the costliest
    one with several seeds is split in two, unless an interrupted run of it left a resume
    state (continuing beats restarting in halves).

    Returns:
        The tasks, costliest first.
    """
    resolved = unique_configs([c.resolved() for c in configs])
    if not resolved:
        return []
    snapshots = check_snapshot_steps(snapshot_steps, max(c.steps for c in resolved))
    tensors = {k: TrainingTensors.from_data(v) for k, v in data.items()}
    prints = {k: data_fingerprint(v) for k, v in tensors.items()}
    groups: dict[str, list[TrainConfig]] = {}
    for c in resolved:
        if is_stale(c, prints[c.scenario], force):
            groups.setdefault(group_key(c), []).append(c)
    root = str(artifact_dir().resolve())
    tasks = []
    for group in groups.values():
        seeds = sorted({c.seed for c in group})
        cap = max_members(group[0])
        # the snapshots this ensemble can save (the check above covers the whole call)
        within = tuple(k for k in snapshots if k <= max(c.steps for c in group))
        for start in range(0, len(seeds), cap):
            part = set(seeds[start : start + cap])
            chunk = tuple(c for c in group if c.seed in part)
            tasks.append(_Task(chunk, tensors[group[0].scenario], force, within, root))

    def resumable(task: _Task) -> bool:
        pending = [c for c in task.configs if is_stale(c, prints[c.scenario], force)]
        fingerprint = prints[task.configs[0].scenario]
        seeds = sorted({c.seed for c in pending})
        return not force and is_complete(resume_path(task.configs[0], seeds, fingerprint))

    while len(tasks) < workers:
        splittable = [t for t in tasks if len(t.seeds) > 1 and not resumable(t)]
        if not splittable:
            break
        biggest = max(splittable, key=lambda t: t.cost)
        tasks.remove(biggest)
        tasks.extend(biggest.split())
    return sorted(tasks, key=lambda t: -t.cost)


def default_workers() -> int:
    """Worker processes of the local cluster: one per CPU core."""
    return max(1, os.cpu_count() or 1)


#: Seconds of one BC gradient step of one member in one process on this machine (266
#: agent-steps/s per core, ``benchmarks/training.py``): the unit of ``_STEP_COST``.
BC_STEP_SECONDS = 0.004
#: The training a local Dask cluster must have to repay starting it: its two worker processes
#: cost about 40 s of CPU to start and warm up (the quick curves page: 113 s of CPU with two
#: workers, 74 s in this process, the same wall time), which on a machine whose other core
#: runs other work (``make test``: the unit tests) is time lost.
MIN_PARALLEL_SECONDS = 120.0


def training_processes(tasks: Sequence[_Task], workers: int) -> int:
    """How many local worker processes train ``tasks``: 1 (this process) when their estimated
    single-process time (``_STEP_COST`` × :data:`BC_STEP_SECONDS`) is under
    :data:`MIN_PARALLEL_SECONDS`, else at most ``workers`` and one per ensemble
    (:func:`~polycstr_lib.toolkit.processes.worker_count`). Which process trains an ensemble
    does not change its numbers."""
    seconds = BC_STEP_SECONDS * sum(task.cost for task in tasks)
    return worker_count(workers, len(tasks), seconds >= MIN_PARALLEL_SECONDS)


def train_many(
    configs: Sequence[TrainConfig],
    processes: int | None = None,
    data: Mapping[str, Any] | None = None,
    force: bool = False,
    scheduler: str | None = None,
    snapshot_steps: Sequence[int] = (),
    progress: bool = True,
) -> list[tuple[Agent, pd.DataFrame]]:
    """Trains many configurations as seed ensembles spread over Dask workers.

    Cached runs are loaded without training; identical configurations are trained once; runs
    that differ only in seed (and budget) share one batched model (:func:`train_ensemble`).

    Args:
        configs: The runs.
        processes: Worker processes of the local Dask cluster (one thread each); None → one
            per CPU core. With 1 (and no ``scheduler``), a single ensemble to train, or too
            little training to repay starting the cluster (:func:`training_processes`), the
            work runs in this process.
        data: Optional scenario → training data; other scenarios are loaded from their
            datasets here and sent to the workers (which need no dataset files).
        force: Retrain even if cached.
        scheduler: Address of an existing Dask scheduler (e.g. ``tcp://10.0.0.5:8786``);
            its workers must import ``polycstr_lib`` and write to this artifact directory
            (a path shared by all machines, see ``POLYCSTR_ARTIFACTS``).
        snapshot_steps: Extra budgets saved as cached runs of every seed (learning curves).
        progress: Show a progress bar over the ensembles.

    Returns:
        ``(agent, log)`` for each configuration, in order.

    Raises:
        ValueError: Bad configuration, data or ``processes``.
    """
    workers = default_workers() if processes is None else int(processes)
    if workers < 1:
        raise ValueError(f"processes must be >= 1; got {processes}")
    resolved = [c.resolved() for c in configs]
    if not resolved:
        return []
    check_snapshot_steps(snapshot_steps, max(c.steps for c in resolved))
    given = dict(data or {})
    for v in given.values():
        validate_offline_data(v)
    for scenario in sorted({c.scenario for c in resolved} - set(given)):
        given[scenario] = load_training_data(scenario)
        validate_offline_data(given[scenario])
    tasks = plan_tasks(
        resolved, given, 1 if scheduler is None and workers == 1 else workers, force, snapshot_steps
    )
    if tasks and scheduler is None and workers > 1 and training_processes(tasks, workers) == 1:
        tasks = plan_tasks(resolved, given, 1, force, snapshot_steps)  # whole ensembles, here
        workers = 1
    if tasks:
        if scheduler is None and (workers == 1 or len(tasks) == 1):
            for task in tasks:
                train_ensemble(
                    task.configs, task.data, progress, task.force, 1, task.snapshot_steps
                )
        else:
            _run_on_dask(tasks, workers, scheduler, progress)
    prints = {k: data_fingerprint(v) for k, v in given.items()}
    return load_runs(resolved, prints, {config_key(c) for t in tasks for c in t.configs})


def _run_on_dask(
    tasks: Sequence[_Task], workers: int, scheduler: str | None, progress: bool
) -> None:
    """Runs the tasks on an existing scheduler, or on a local cluster of ``workers``."""
    from distributed import Client, LocalCluster, as_completed

    with contextlib.ExitStack() as stack:
        if scheduler is None:
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=min(workers, len(tasks)),
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.WARNING,
                )
            )
            client = stack.enter_context(Client(cluster))
        else:
            # an unreachable scheduler is reported after this long, not Dask's default 30 s
            client = stack.enter_context(Client(scheduler, timeout=SCHEDULER_TIMEOUT_S))
        futures = [
            client.submit(_run_task, t, pure=False, priority=-i) for i, t in enumerate(tasks)
        ]
        n_agents = sum(len(t.configs) for t in tasks)
        desc = f"training {n_agents} runs as {len(tasks)} ensembles"
        with tqdm(total=len(tasks), desc=desc, disable=not progress) as bar:
            stopped: DeadlineReached | None = None
            for future in as_completed(futures):
                try:
                    future.result()  # re-raises a worker's exception here
                except DeadlineReached as error:
                    # the other workers stop at the end of their step too: wait for their states
                    stopped = stopped or error
                    continue
                bar.update(1)
            if stopped is not None:
                raise stopped


def seeds_of(
    algorithm: str, seeds: Sequence[int], algorithm_seeds: Mapping[str, int] | None = None
) -> list[int]:
    """The training seeds of ``algorithm``: the first ``algorithm_seeds[algorithm]`` of
    ``seeds``, or all of them when the algorithm is not in ``algorithm_seeds``.

    A costly algorithm (CQL) can so train fewer seeds than the others; its seeds are always a
    prefix of the others', so its runs are the same runs (and cache entries) on every page.

    Raises:
        ValueError: a count below 1 or above ``len(seeds)``.
    """
    n = (algorithm_seeds or {}).get(algorithm)
    if n is None:
        return list(seeds)
    if not 1 <= n <= len(seeds):
        raise ValueError(
            f"algorithm_seeds[{algorithm!r}] must lie in [1, {len(seeds)}] (the seeds given), "
            f"got {n}"
        )
    return list(seeds)[:n]


def train_seed_ensembles(
    scenario: str,
    steps: Mapping[str, int],
    seeds: Sequence[int],
    precision: str = "float32",
    processes: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    algorithm_seeds: Mapping[str, int] | None = None,
) -> dict[tuple[str, int], Agent]:
    """Every algorithm of ``steps`` trained on ``scenario`` at its seeds (:func:`train_many`).

    Args:
        scenario: the scenario whose dataset the agents learn from.
        steps: algorithm → gradient steps.
        seeds: training seeds of every algorithm.
        precision: ``'float32'`` or ``'bfloat16'``.
        processes, scheduler, progress: as :func:`train_many`.
        algorithm_seeds: algorithm → train only the first N of ``seeds`` (:func:`seeds_of`;
            absent: all).

    Returns:
        ``(algorithm, seed) → agent``, seeds outer, algorithms inner (the order of ``steps``);
        an algorithm with fewer seeds has no key for the others.
    """
    configs = seed_ensemble_configs(scenario, steps, seeds, precision, algorithm_seeds)
    trained = train_many(configs, processes=processes, scheduler=scheduler, progress=progress)
    return {(c.algorithm, c.seed): agent for c, (agent, _) in zip(configs, trained, strict=True)}


def seed_ensemble_configs(
    scenario: str,
    steps: Mapping[str, int],
    seeds: Sequence[int],
    precision: str = "float32",
    algorithm_seeds: Mapping[str, int] | None = None,
) -> list[TrainConfig]:
    """The runs :func:`train_seed_ensembles` trains (also what a build's plan counts)."""
    own = {a: set(seeds_of(a, seeds, algorithm_seeds)) for a in steps}
    return [
        TrainConfig(algorithm=a, scenario=scenario, steps=s, seed=seed, precision=precision)
        for seed in seeds
        for a, s in steps.items()
        if seed in own[a]
    ]


def train_expectile_sweep(
    scenario: str,
    base_algorithm: str,
    expectiles: Sequence[float],
    seeds: Sequence[int],
    steps: int,
    precision: str = "float32",
    processes: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
) -> tuple[dict[tuple[str, int], Agent], dict[tuple[str, int], Agent]]:
    """The base agents of the ablations and one IQL per expectile τ, in one :func:`train_many`.

    Returns:
        ``(base, iql)``: ``(base_algorithm, seed) → agent`` and ``("τ = <τ>", seed) → agent``.
    """
    base_configs, tau_configs = expectile_sweep_configs(
        scenario, base_algorithm, expectiles, seeds, steps, precision
    )
    trained = train_many(
        [*base_configs, *tau_configs], processes=processes, scheduler=scheduler, progress=progress
    )
    base = {(base_algorithm, c.seed): a for c, (a, _) in zip(base_configs, trained, strict=False)}
    iql = {
        (f"τ = {c.agent.expectile:g}", c.seed): agent
        for c, (agent, _) in zip(tau_configs, trained[len(base_configs) :], strict=True)
    }
    return base, iql


def expectile_sweep_configs(
    scenario: str,
    base_algorithm: str,
    expectiles: Sequence[float],
    seeds: Sequence[int],
    steps: int,
    precision: str = "float32",
) -> tuple[list[TrainConfig], list[TrainConfig]]:
    """The base runs and the IQL runs per expectile of :func:`train_expectile_sweep`."""
    base_configs = [
        TrainConfig(
            algorithm=base_algorithm, scenario=scenario, steps=steps, seed=s, precision=precision
        )
        for s in seeds
    ]
    tau_configs = [
        TrainConfig(
            algorithm="iql",
            scenario=scenario,
            steps=steps,
            seed=s,
            agent=IQLConfig(expectile=float(t)),
            precision=precision,
        )
        for t in expectiles
        for s in seeds
    ]
    return base_configs, tau_configs


def train_per_scenario(
    scenarios: Sequence[str],
    steps: Mapping[str, Mapping[str, int]],
    seeds: Sequence[int],
    precision: str = "float32",
    processes: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    algorithm_seeds: Mapping[str, int] | None = None,
) -> dict[str, dict[tuple[str, int], Agent]]:
    """Every algorithm at its seeds on every scenario, in one :func:`train_many`.

    Args:
        scenarios: the scenarios.
        steps: algorithm → scenario → gradient steps (the algorithms trained).
        seeds, precision, processes, scheduler, progress, algorithm_seeds: as
            :func:`train_seed_ensembles`.

    Returns:
        scenario → ``(algorithm, seed) → agent``, in :func:`train_seed_ensembles`' order (seeds
        outer, algorithms inner), so that a results page and this function hand the same
        agents to a sweep in the same order and the sweep's cache entry is shared.
    """
    configs = per_scenario_configs(scenarios, steps, seeds, precision, algorithm_seeds)
    trained = train_many(configs, processes=processes, scheduler=scheduler, progress=progress)
    by_key = {
        (c.scenario, c.algorithm, c.seed): agent
        for c, (agent, _) in zip(configs, trained, strict=True)
    }
    return {
        s: {
            (a, seed): by_key[(s, a, seed)]
            for seed in seeds
            for a in steps
            if (s, a, seed) in by_key
        }
        for s in scenarios
    }


def per_scenario_configs(
    scenarios: Sequence[str],
    steps: Mapping[str, Mapping[str, int]],
    seeds: Sequence[int],
    precision: str = "float32",
    algorithm_seeds: Mapping[str, int] | None = None,
) -> list[TrainConfig]:
    """The runs :func:`train_per_scenario` trains."""
    return [
        TrainConfig(algorithm=a, scenario=s, steps=steps[a][s], seed=seed, precision=precision)
        for s in scenarios
        for a in steps
        for seed in seeds_of(a, seeds, algorithm_seeds)
    ]
