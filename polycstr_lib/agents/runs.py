"""The run store: cached training of agents, one folder per run, and ensembles trained to a budget.

A trained agent (one seed) lives in ``artifact_dir()/agents/<algo>-<scenario>-<key>/`` where
``key`` is :func:`~polycstr_lib.toolkit.store.config_key` of a :class:`RunKey`: the (resolved)
:class:`TrainConfig` and the fingerprint of the data it was trained on, so a regenerated dataset
never reuses an agent trained on the old one:

- ``agent.pt``: the one-member agent's ``state_dict()`` (weights, seed, scalers, config);
- ``log.csv``: the mean losses of every logging interval;
- ``manifest.json``: the key (configuration and data fingerprint), each file's SHA-256, and
  as ``info`` the seeds trained together and the wall time. It is written last and
  marks the run as complete (an entry of :mod:`polycstr_lib.toolkit.cache`: a run whose files
  do not match it is moved aside and retrained, to the same bits).

Runs that differ only in seed are trained together as one batched model
(:func:`train_ensemble`; see :mod:`polycstr_lib.agents.layers`). No schedule depends on the
total number of steps, so the state after ``k`` steps of a longer run *is* the ``k``-step run:
snapshots are saved as the cached runs of the shorter budgets, which is what learning curves
read. :func:`train_many` spreads ensembles over Dask workers (a local cluster sized to the
machine, or an existing cluster given by its scheduler address).

An interrupted ensemble resumes: while it trains, its whole training state (weights,
optimiser moments, generators, the log so far) is written atomically to
``artifact_dir()/resume/`` every :data:`RESUME_EVERY_S` seconds and at every snapshot, and a
later call for the same seeds, settings and data continues from there, to the same bits as
an uninterrupted run. The file is removed when the ensemble reaches its budget, and the state
at the budget is kept in ``artifact_dir()/continue/`` instead: a later call that asks the same
ensemble for a *larger* budget (a learning curve extended by a checkpoint) continues from it
rather than retraining the steps it already has, again to the same bits.

Training is reproducible: the same configurations and data give bit-identical weights (one
torch thread per worker, private generators; the global torch and NumPy RNG states are left
untouched). A BC or IQL member of an ensemble equals the run of its seed trained alone bit
for bit (``tests/test_agents.py``; CQL to round-off), so a cached run does not depend on the
seeds it was trained with; the manifest records them anyway.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from polycstr_lib.agents import (
    Agent,
    agent_from_state,
    member_state,
)
from polycstr_lib.agents.config import AGENT_FORMAT, TrainConfig, group_key
from polycstr_lib.agents.data import (
    TrainingTensors,
    data_fingerprint,
    load_training_data,
    validate_offline_data,
)
from polycstr_lib.agents.loop import continuation_path, resume_path, train_members
from polycstr_lib.toolkit.cache import (
    CorruptEntry,
    entry_path,
    invalidate,
    move_aside,
    read_entry,
    write_entry,
)
from polycstr_lib.toolkit.ledger import record_task
from polycstr_lib.toolkit.offline import require_training
from polycstr_lib.toolkit.store import config_key


@dataclasses.dataclass(frozen=True)
class RunKey:
    """What a cached run is: its settings and the data it was trained on."""

    config: TrainConfig  # resolved
    data: str  # data_fingerprint of the training data


def run_key(config: TrainConfig, fingerprint: str) -> RunKey:
    if not isinstance(fingerprint, str) or not fingerprint:
        raise ValueError(f"a run needs the fingerprint of its training data; got {fingerprint!r}")
    return RunKey(config.resolved(), fingerprint)


def run_directory(config: TrainConfig, fingerprint: str) -> Path:
    """The cache folder of a configuration trained on the data with ``fingerprint``:
    ``artifact_dir()/agents/<algo>-<scenario>-<key>``."""
    key = run_key(config, fingerprint)
    return entry_path("agents", key, f"{key.config.algorithm}-{key.config.scenario}")


def _meta(manifest: dict[str, Any]) -> dict[str, Any]:
    key = manifest["config"]
    return {
        "train_config": key["config"],
        "data_fingerprint": key["data"],
        "key": manifest["key"],
        **manifest["info"],
    }


def load_trained(run_dir: str | Path) -> tuple[Agent, pd.DataFrame]:
    """Loads a finished run (agent and loss log) from its folder, every file verified.

    Args:
        run_dir: A folder written by :func:`train_agent`.

    Returns:
        The agent and the log; ``log.attrs`` holds ``run_dir``, ``cached`` and the metadata.

    Raises:
        CorruptEntry: no complete run there, or a file failed its check (the run is then moved
            aside with a warning naming the file; training it again rebuilds it).
    """
    run_dir = Path(run_dir)

    def decode(entry: Any) -> tuple[Agent, pd.DataFrame]:
        state = entry.load("agent.pt")
        try:
            agent = agent_from_state(state)
        except Exception as error:  # noqa: BLE001 - a state that does not make an agent
            raise CorruptEntry(f"agent.pt: not an agent state ({error})") from None
        log = entry.load("log.csv")
        log.attrs.update(run_dir=str(run_dir), cached=True, meta=_meta(entry.manifest))
        return agent, log

    entry = read_entry(run_dir)
    if entry is None:
        raise CorruptEntry(f"no usable run in {run_dir} (see the warning above, if any)")
    try:
        return decode(entry)
    except CorruptEntry as error:
        move_aside(run_dir, str(error))
        raise CorruptEntry(f"{run_dir.name}: {error}; moved aside") from None


def _cached_meta(run_dir: Path, key: RunKey) -> dict[str, Any] | None:
    """The metadata of a complete, verified run of ``key`` in ``run_dir``, or None."""
    entry = read_entry(run_dir, key)
    if entry is None or set(entry.files) != {"agent.pt", "log.csv"}:
        return None
    meta = _meta(entry.manifest)
    if meta.get("agent_format") != AGENT_FORMAT:
        return None
    return meta


def train_agent(
    config: TrainConfig,
    data: Any | None = None,
    progress: bool = True,
    force: bool = False,
    num_threads: int | None = 1,
) -> tuple[Agent, pd.DataFrame]:
    """Trains one agent (an ensemble of one), or loads it if it was trained before.

    Args:
        config: The run's configuration.
        data: Training data (``OfflineData``-like); None loads ``config.scenario``'s dataset.
            A run is cached per data fingerprint: other data means another run.
        progress: Show a tqdm progress bar.
        force: Retrain even if a cached run exists.
        num_threads: torch intra-op threads during training (restored afterwards); None
            leaves the setting alone.

    Returns:
        The agent and its loss log (one row per logging interval: ``step``, mean losses,
        ``time_s``); ``log.attrs['cached']`` says whether it was loaded.

    Raises:
        ValueError: Malformed data (wrong observation size, NaNs, ...) or configuration.
        FloatingPointError: A loss became non-finite during training.
    """
    return train_ensemble([config], data, progress, force, num_threads)[0]


def is_stale(config: TrainConfig, fingerprint: str, force: bool) -> bool:
    """Whether ``config`` on the data with ``fingerprint`` must be (re)trained: forced, or no
    complete, verified run of it is cached."""
    if force:
        return True
    return _cached_meta(run_directory(config, fingerprint), run_key(config, fingerprint)) is None


def unique_configs(configs: Sequence[TrainConfig]) -> list[TrainConfig]:
    return list({config_key(c): c for c in configs}.values())


def check_snapshot_steps(snapshot_steps: Sequence[int], budget: int) -> tuple[int, ...]:
    """The snapshot steps, sorted and unique.

    Raises:
        ValueError: a step below 1 or beyond ``budget`` (the most steps any run trains): it
            could never be saved.
    """
    steps = tuple(sorted({int(k) for k in snapshot_steps}))
    if any(k < 1 for k in steps):
        raise ValueError(f"snapshot steps must be positive; got {list(snapshot_steps)}")
    beyond = [k for k in steps if k > budget]
    if beyond:
        raise ValueError(
            f"snapshot steps {beyond} are beyond the training budget of {budget:,} steps; "
            "raise --steps or drop them"
        )
    return steps


def train_ensemble(
    configs: Sequence[TrainConfig],
    data: Any | None = None,
    progress: bool = True,
    force: bool = False,
    num_threads: int | None = 1,
    snapshot_steps: Sequence[int] = (),
) -> list[tuple[Agent, pd.DataFrame]]:
    """Trains runs that differ only in seed and budget as one batched model, or loads them.

    Every seed that has a run left to train becomes one member; all members train to the
    largest budget asked for, and each member's state is saved as a cached run at every
    budget in ``configs`` and at every step in ``snapshot_steps`` (a snapshot after ``k``
    steps is the ``k``-step run of that seed).

    Args:
        configs: The runs; equal but for ``seed`` and ``steps``.
        data: Training data (``OfflineData``-like), or None to load the scenario's dataset
            (checked against its checksums; loaded once per process while its files are
            unchanged). Runs are cached per data fingerprint.
        progress: Show a tqdm progress bar.
        force: Retrain even if cached.
        num_threads: torch intra-op threads while training (restored afterwards); None leaves
            the setting alone.
        snapshot_steps: Extra budgets at which every member's state is saved as a cached run.

    Returns:
        ``(agent, log)`` for each configuration, in order (one-member agents).

    Raises:
        ValueError: Configurations that differ in more than seed and steps, bad snapshot steps,
            malformed data or configuration.
        FloatingPointError: A loss became non-finite (the message names the seed).
    """
    resolved = [c.resolved() for c in configs]
    if not resolved:
        return []
    if len({group_key(c) for c in resolved}) > 1:
        raise ValueError(
            "train_ensemble trains runs that differ only in seed and steps; "
            "use train_many for other mixtures"
        )
    budget = max(c.steps for c in resolved)
    snapshots = check_snapshot_steps(snapshot_steps, budget)
    if data is None:
        data = load_training_data(resolved[0].scenario)
    validate_offline_data(data)
    fingerprint = data_fingerprint(data)
    pending = [c for c in unique_configs(resolved) if is_stale(c, fingerprint, force)]
    if pending:
        require_training("agent run", run_directory(pending[0], fingerprint))
        budget = max(c.steps for c in pending)
        save_at = {c.steps for c in pending} | {k for k in snapshots if k <= budget}
        seeds = sorted({c.seed for c in pending})
        pending_keys = {config_key(c) for c in pending}
        tensors = TrainingTensors.from_data(data)
        resume = resume_path(pending[0], seeds, fingerprint)
        if force:
            invalidate(resume)
            invalidate(continuation_path(resume))
        previous_threads = torch.get_num_threads()
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        started = time.perf_counter()
        try:
            for step, agent, logs, seconds in train_members(
                pending[0],
                seeds,
                budget,
                sorted(save_at),
                tensors,
                progress,
                resume,
                min(c.steps for c in pending),
            ):
                state = agent.state_dict()
                for k, seed in enumerate(seeds):
                    config = dataclasses.replace(pending[0], seed=seed, steps=step)
                    asked = config_key(config) in pending_keys
                    if asked or is_stale(config, fingerprint, force):
                        log = logs[k]
                        _save_run(
                            config,
                            member_state(state, k),
                            log,
                            fingerprint,
                            tensors,
                            seconds,
                            seeds,
                        )
        finally:
            torch.set_num_threads(previous_threads)
        record_task(
            "train",
            time.perf_counter() - started,
            algorithm=pending[0].algorithm,
            scenario=pending[0].scenario,
            seeds=seeds,
            steps=budget,
            members=len(seeds),
        )
    try:
        return load_runs(
            resolved, {resolved[0].scenario: fingerprint}, {config_key(c) for c in pending}
        )
    except CorruptEntry:
        # a run whose checked file does not decode (moved aside by load_trained): train again
        if force:
            raise
        return train_ensemble(configs, data, progress, True, num_threads, snapshot_steps)


def load_runs(
    configs: Sequence[TrainConfig], fingerprints: Mapping[str, str], trained: set[str]
) -> list[tuple[Agent, pd.DataFrame]]:
    """Loads finished runs, each of its scenario's data (``fingerprints``: scenario →
    fingerprint); ``log.attrs['cached']`` is False for those trained just now."""
    out = []
    for c in configs:
        agent, log = load_trained(run_directory(c, fingerprints[c.scenario]))
        log.attrs["cached"] = config_key(c) not in trained
        out.append((agent, log))
    return out


def _save_run(
    config: TrainConfig,
    state: dict[str, Any],
    log: pd.DataFrame,
    fingerprint: str,
    data: TrainingTensors,
    seconds: float,
    seeds: Sequence[int],
) -> None:
    """Writes one run's files atomically, the manifest last (it marks the run complete)."""
    meta = {
        "agent_format": AGENT_FORMAT,
        "n_transitions": int(data.observations.shape[0]),
        "ensemble_seeds": list(seeds),
        "train_seconds": seconds,
        "torch_version": torch.__version__,
    }
    # the log as bytes: read back by plain ``read_csv``, as it always was (float64 columns)
    files = {"agent.pt": state, "log.csv": log.to_csv(index=False).encode()}
    write_entry(run_directory(config, fingerprint), files, run_key(config, fingerprint), meta)
