"""Training of the offline agents: seed ensembles, snapshots, an on-disk cache, Dask sweeps.

A trained agent (one seed) lives in ``artifact_dir()/agents/<algo>-<scenario>-<key>/`` where
``key`` is :func:`~polycstr_lib.artifacts.config_key` of the (resolved) :class:`TrainConfig`:

- ``agent.pt``: the one-member agent's ``state_dict()`` (weights, seed, scalers, config);
- ``log.csv``: the mean losses of every logging interval;
- ``config.json``: the configuration, a fingerprint of the training data, the seeds trained
  together and the wall time. It is written last and marks the run as complete.

Runs that differ only in seed are trained together as one batched model
(:func:`train_ensemble`; see :mod:`polycstr_lib.agents.nets`). No schedule depends on the
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
seeds it was trained with; ``config.json`` records them anyway.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import hashlib
import json
import logging
import os
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from polycstr_lib.agents import (
    ACTION_SCALINGS,
    AGENTS,
    REWARD_SCALINGS,
    Agent,
    AgentConfig,
    Scalers,
    agent_from_state,
    make_agent,
    member_state,
    sample_batch,
)
from polycstr_lib.artifacts import (
    ARTIFACTS_ENV,
    artifact_dir,
    atomic_torch_save,
    atomic_write_bytes,
    config_key,
    config_to_dict,
)

__all__ = [
    "ACT_DIM",
    "OBS_DIM",
    "PRECISIONS",
    "TrainConfig",
    "data_fingerprint",
    "precision_context",
    "load_trained",
    "run_directory",
    "train_agent",
    "train_ensemble",
    "train_many",
    "training_in_progress",
    "validate_offline_data",
]

OBS_DIM = 9  # [C_A, C_I, C_R, C_P, T, e_P, e_T, F_I, T_c]
ACT_DIM = 2  # changes of F_I and T_c, scaled to [-1, 1]

#: Format of a saved agent (2: every tensor has the member axis first; 3: the same layout,
#: but members of an ensemble are trained with their own parameter tensors, so that a member
#: equals its seed's single run bit for bit; format-2 runs from ensembles of several seeds
#: could differ from it). Cached runs of another format are retrained.
AGENT_FORMAT = 3

#: Relative cost of one gradient step per algorithm (2x256 nets), to balance Dask tasks.
_STEP_COST = {"bc": 1.0, "iql": 5.0, "cql": 25.0}

#: Seconds of training between two writes of an ensemble's resume state (the state is also
#: written at every snapshot). One write of a 10-seed IQL state is about 50 MB.
RESUME_EVERY_S = 120.0

#: Accepted values of ``TrainConfig.precision``.
PRECISIONS = ("float32", "bfloat16")

_TENSOR_FIELDS = (
    "observations",
    "actions",
    "rewards",
    "next_observations",
    "terminals",
    "timeouts",
)


@dataclass(frozen=True)
class TrainConfig:
    """One offline training run."""

    algorithm: str = "iql"  # 'bc', 'iql' or 'cql'
    scenario: str = "startup"  # dataset scenario: 'startup', 'grade_down' or 'grade_up'
    steps: int = 50_000  # gradient steps (CORL uses 1e6; kept CPU-sized here)
    seed: int = 0  # seed of the weight initialisation, batch sampling and agent noise
    batch_size: int = 256  # transitions per gradient step
    agent: AgentConfig | None = None  # algorithm hyperparameters; None → its defaults
    log_interval: int = 1000  # the log holds the mean losses of every this many steps
    reward_scaling: str = "return_range"  # 'return_range' | 'std' | 'none' (see Scalers)
    # the agent's action units: 'minmax' (the data's range → [-1, 1], as the authors' early
    # code; the default, chosen on validation episodes: deviation D29), 'none' (the env's) or
    # 'std' (data mean, 3 data std per unit); see Scalers
    action_scaling: str = "minmax"
    # 'float32', or 'bfloat16': mixed precision (matmuls in bfloat16 under torch.autocast;
    # weights, optimiser state and evaluation stay float32). Faster only on CPUs with native
    # bfloat16 (AVX512-BF16 or AMX); elsewhere slower. See PRECISIONS.
    precision: str = "float32"

    def resolved(self) -> TrainConfig:
        """Returns a checked copy with the agent config filled in (used for the cache key).

        Raises:
            ValueError: Unknown algorithm or reward scaling, or non-positive sizes.
            TypeError: Agent config of the wrong class.
        """
        if self.algorithm not in AGENTS:
            raise ValueError(
                f"unknown algorithm {self.algorithm!r}; expected one of {sorted(AGENTS)}"
            )
        if self.steps < 1 or self.batch_size < 1 or self.log_interval < 1:
            raise ValueError("steps, batch_size and log_interval must be positive")
        if self.reward_scaling not in REWARD_SCALINGS:
            raise ValueError(
                f"unknown reward_scaling {self.reward_scaling!r}; expected one of {REWARD_SCALINGS}"
            )
        if self.action_scaling not in ACTION_SCALINGS:
            raise ValueError(
                f"unknown action_scaling {self.action_scaling!r}; expected one of {ACTION_SCALINGS}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; expected one of {PRECISIONS}")
        config_cls = AGENTS[self.algorithm][1]
        agent = config_cls() if self.agent is None else self.agent
        if not isinstance(agent, config_cls):
            raise TypeError(
                f"{self.algorithm} needs a {config_cls.__name__}, got {type(agent).__name__}"
            )
        return dataclasses.replace(self, agent=agent)


@dataclass(frozen=True)
class _TrainingTensors:
    """Float32 contiguous copies of the fields used in training (picklable, library-owned)."""

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_observations: torch.Tensor
    terminals: torch.Tensor
    timeouts: torch.Tensor
    return_min: float
    return_max: float

    @classmethod
    def from_data(cls, data: Any) -> _TrainingTensors:
        fields = {
            k: torch.as_tensor(getattr(data, k)).to(torch.float32).contiguous()
            for k in _TENSOR_FIELDS
        }
        return cls(**fields, return_min=float(data.return_min), return_max=float(data.return_max))


def validate_offline_data(data: Any, obs_dim: int = OBS_DIM, act_dim: int = ACT_DIM) -> None:
    """Checks shapes, finiteness and action bounds of a training dataset.

    Args:
        data: An ``OfflineData``-like object.
        obs_dim: Expected observation size.
        act_dim: Expected action size.

    Raises:
        ValueError: With a message naming the offending field.
    """
    missing = [k for k in (*_TENSOR_FIELDS, "return_min", "return_max") if not hasattr(data, k)]
    if missing:
        raise ValueError(f"training data lacks the fields {missing}")
    t = {k: torch.as_tensor(getattr(data, k)) for k in _TENSOR_FIELDS}
    obs = t["observations"]
    if obs.ndim != 2 or obs.shape[1] != obs_dim:
        raise ValueError(f"observations must have shape (N, {obs_dim}); got {tuple(obs.shape)}")
    n = obs.shape[0]
    if n == 0:
        raise ValueError("training data is empty")
    expected = {
        "actions": (n, act_dim),
        "next_observations": (n, obs_dim),
        "rewards": (n,),
        "terminals": (n,),
        "timeouts": (n,),
    }
    for k, shape in expected.items():
        if tuple(t[k].shape) != shape:
            raise ValueError(f"{k} must have shape {shape}; got {tuple(t[k].shape)}")
    for k, x in t.items():
        if x.is_floating_point():
            bad = int((~torch.isfinite(x)).sum().item())
            if bad:
                raise ValueError(f"{k} contain {bad} non-finite values (NaN or inf)")
    if t["actions"].abs().max().item() > 1.0 + 1e-5:
        raise ValueError("actions must lie in [-1, 1]")
    for k in ("return_min", "return_max"):
        if not np.isfinite(float(getattr(data, k))):
            raise ValueError(f"{k} is not finite")


def data_fingerprint(data: Any) -> str:
    """Short SHA-256 of the training tensors (as float32), to detect a changed dataset."""
    h = hashlib.sha256()
    for k in _TENSOR_FIELDS:
        arr = torch.as_tensor(getattr(data, k)).to(torch.float32).contiguous().numpy()
        h.update(k.encode())
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:16]


def run_directory(config: TrainConfig) -> Path:
    """The cache folder of a configuration: ``artifact_dir()/agents/<algo>-<scenario>-<key>``."""
    config = config.resolved()
    return artifact_dir() / "agents" / f"{config.algorithm}-{config.scenario}-{config_key(config)}"


def load_trained(run_dir: str | Path) -> tuple[Agent, pd.DataFrame]:
    """Loads a finished run (agent and loss log) from its folder.

    Args:
        run_dir: A folder written by :func:`train_agent`.

    Returns:
        The agent and the log; ``log.attrs`` holds ``run_dir``, ``cached`` and the metadata.
    """
    run_dir = Path(run_dir)
    state = torch.load(run_dir / "agent.pt", map_location="cpu", weights_only=True)
    agent = agent_from_state(state)
    log = pd.read_csv(run_dir / "log.csv")
    meta = json.loads((run_dir / "config.json").read_text())
    log.attrs.update(run_dir=str(run_dir), cached=True, meta=meta)
    return agent, log


def _cached_meta(run_dir: Path, config: TrainConfig) -> dict[str, Any] | None:
    """The metadata of a complete run of ``config`` in ``run_dir``, or None."""
    meta_path = run_dir / "config.json"
    if not (meta_path.is_file() and (run_dir / "agent.pt").is_file()):
        return None
    if not (run_dir / "log.csv").is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if meta.get("train_config") != config_to_dict(config):
        return None
    if meta.get("agent_format") != AGENT_FORMAT:
        return None
    return meta


def _load_dataset(scenario: str) -> Any:
    from polycstr_lib.datasets import load_offline_data  # local: the datasets need h5py/minari

    return load_offline_data(scenario)


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
        data: Training data (``OfflineData``-like); None loads ``config.scenario``'s dataset
            (only when there is no cached run). If given and a cached run was trained on
            different data (fingerprint), the agent is retrained.
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


def _group_key(config: TrainConfig) -> str:
    """Runs with equal group keys differ only in seed and steps: one ensemble can train them."""
    return config_key(dataclasses.replace(config, seed=0, steps=1))


def _stale(config: TrainConfig, fingerprint: str | None, force: bool, warn: bool = True) -> bool:
    """Whether ``config`` must be (re)trained: forced, not cached, or cached on other data."""
    if force:
        return True
    meta = _cached_meta(run_directory(config), config)
    if meta is None:
        return True
    if fingerprint is not None and meta.get("data_fingerprint") != fingerprint:
        if not warn:
            return True
        warnings.warn(
            f"cached run {run_directory(config).name} was trained on other data; retraining",
            stacklevel=3,
        )
        return True
    return False


def _unique(configs: Sequence[TrainConfig]) -> list[TrainConfig]:
    return list({config_key(c): c for c in configs}.values())


def _check_snapshot_steps(snapshot_steps: Sequence[int]) -> tuple[int, ...]:
    steps = tuple(sorted({int(k) for k in snapshot_steps}))
    if any(k < 1 for k in steps):
        raise ValueError(f"snapshot steps must be positive; got {list(snapshot_steps)}")
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
            (only if something is left to train). Cached runs trained on other data are
            retrained.
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
    if len({_group_key(c) for c in resolved}) > 1:
        raise ValueError(
            "train_ensemble trains runs that differ only in seed and steps; "
            "use train_many for other mixtures"
        )
    snapshots = _check_snapshot_steps(snapshot_steps)
    fingerprint = None
    if data is not None:
        validate_offline_data(data)
        fingerprint = data_fingerprint(data)
    pending = [c for c in _unique(resolved) if _stale(c, fingerprint, force)]
    if pending:
        if data is None:
            data = _load_dataset(pending[0].scenario)
            validate_offline_data(data)
            fingerprint = data_fingerprint(data)
        budget = max(c.steps for c in pending)
        save_at = {c.steps for c in pending} | {k for k in snapshots if k <= budget}
        seeds = sorted({c.seed for c in pending})
        pending_keys = {config_key(c) for c in pending}
        tensors = _TrainingTensors.from_data(data)
        resume = resume_path(pending[0], seeds, fingerprint)
        if force:
            resume.unlink(missing_ok=True)
            continuation_path(resume).unlink(missing_ok=True)
        previous_threads = torch.get_num_threads()
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        try:
            for step, agent, logs, seconds in _train_members(
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
                    if asked or _stale(config, fingerprint, force, warn=False):
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
    return _load_all(resolved, trained={config_key(c) for c in pending})


def _load_all(
    configs: Sequence[TrainConfig], trained: set[str]
) -> list[tuple[Agent, pd.DataFrame]]:
    """Loads finished runs; ``log.attrs['cached']`` is False for those trained just now."""
    out = []
    for c in configs:
        agent, log = load_trained(run_directory(c))
        log.attrs["cached"] = config_key(c) not in trained
        out.append((agent, log))
    return out


def _save_run(
    config: TrainConfig,
    state: dict[str, Any],
    log: pd.DataFrame,
    fingerprint: str,
    data: _TrainingTensors,
    seconds: float,
    seeds: Sequence[int],
) -> None:
    """Writes one run's files atomically, ``config.json`` last (it marks the run complete)."""
    run_dir = run_directory(config)
    meta = {
        "train_config": config_to_dict(config),
        "key": config_key(config),
        "agent_format": AGENT_FORMAT,
        "data_fingerprint": fingerprint,
        "n_transitions": int(data.observations.shape[0]),
        "ensemble_seeds": list(seeds),
        "train_seconds": seconds,
        "torch_version": torch.__version__,
    }
    atomic_torch_save(state, run_dir / "agent.pt")
    atomic_write_bytes(run_dir / "log.csv", log.to_csv(index=False).encode())
    atomic_write_bytes(run_dir / "config.json", json.dumps(meta, indent=2).encode())


def precision_context(precision: str) -> contextlib.AbstractContextManager:
    """The context one gradient step runs in: bfloat16 CPU autocast, or nothing for float32.

    Raises:
        ValueError: for a precision not in :data:`PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=torch.bfloat16)


def resume_path(config: TrainConfig, seeds: Sequence[int], fingerprint: str | None) -> Path:
    """Where the resume state of an ensemble lives: one file per settings, seeds and data."""
    config = config.resolved()
    tag = json.dumps([_group_key(config), sorted(int(s) for s in seeds), fingerprint])
    key = hashlib.sha256(tag.encode()).hexdigest()[:16]
    return artifact_dir() / "resume" / f"{config.algorithm}-{config.scenario}-{key}.pt"


def continuation_path(resume: Path) -> Path:
    """Where the final state of the ensemble whose resume state is ``resume`` is kept."""
    return resume.parent.parent / "continue" / resume.name


def _optimizers(agent: Agent) -> dict[str, torch.optim.Optimizer]:
    return {k: v for k, v in vars(agent).items() if isinstance(v, torch.optim.Optimizer)}


def _training_state(
    agent: Agent,
    generators: Sequence[torch.Generator],
    step: int,
    log: tuple[list[dict[str, Any]], dict[str, np.ndarray], int],
    seconds: float,
    budget: int,
) -> dict[str, Any]:
    """Everything the loop needs to continue after ``step`` to the same bits (and, for
    :func:`training_in_progress`, the ``budget`` it runs to)."""
    rows, sums, count = log
    return {
        "step": step,
        "budget": budget,
        "agent": agent.state_dict(),
        "optimizers": {k: o.state_dict() for k, o in _optimizers(agent).items()},
        "agent_generators": [g.get_state() for g in getattr(agent, "generators", [])],
        "generators": [g.get_state() for g in generators],
        "torch_rng": torch.get_rng_state(),
        "rows": rows,
        "sums": sums,
        "count": count,
        "seconds": seconds,
    }


def training_in_progress(directory: Path | None = None) -> pd.DataFrame:
    """The ensembles whose training was interrupted or is running now, from their resume states.

    A long build (the paper profile trains for hours inside a notebook cell) can be followed
    from another terminal with ``python -m polycstr_lib progress``.

    Args:
        directory: the resume folder (default ``artifact_dir() / "resume"``).

    Returns:
        One row per resume state, sorted by file name: ``algorithm``, ``scenario``, ``seeds``
        (count), ``step``, ``budget`` (0 when the state predates this field), ``seconds`` of
        training so far, ``steps_per_s``, ``eta_s`` (NaN without a budget) and ``age_s`` (since
        the state was written: a state not rewritten for much longer than
        :data:`RESUME_EVERY_S` belongs to a stopped run, which the next call resumes).
        Unreadable files are skipped with a warning.
    """
    folder = directory or artifact_dir() / "resume"
    rows = []
    for path in sorted(folder.glob("*.pt")) if folder.is_dir() else []:
        try:
            state = torch.load(path, weights_only=False, map_location="cpu")
        except Exception as error:  # noqa: BLE001 - one bad file must not hide the others
            warnings.warn(f"skipping unreadable resume state {path.name}: {error}", stacklevel=2)
            continue
        algorithm, scenario = path.stem.rsplit("-", 1)[0].split("-", 1)
        step, seconds, budget = int(state["step"]), float(state["seconds"]), state.get("budget", 0)
        rate = step / seconds if seconds > 0 else float("nan")
        rows.append(
            {
                "algorithm": algorithm,
                "scenario": scenario,
                "seeds": len(state["agent"]["seeds"]),
                "step": step,
                "budget": int(budget),
                "seconds": seconds,
                "steps_per_s": rate,
                "eta_s": (budget - step) / rate if budget and rate > 0 else float("nan"),
                "age_s": time.time() - path.stat().st_mtime,
            }
        )
    columns = ["algorithm", "scenario", "seeds", "step", "budget", "seconds", "steps_per_s"]
    return pd.DataFrame(rows, columns=[*columns, "eta_s", "age_s"])


def _load_start(resume: Path | None, seeds: Sequence[int], not_after: int) -> dict[str, Any] | None:
    """The state to start from: the resume state or the kept final state of a shorter run
    (:func:`continuation_path`), whichever is further along while still *before* step
    ``not_after`` (the loop must pass every budget it is asked to save)."""
    if resume is None:
        return None
    paths = (resume, continuation_path(resume))
    states = [_load_resume(p, seeds, not_after - 1) for p in paths]
    states = [s for s in states if s is not None]
    return max(states, key=lambda s: s["step"]) if states else None


def _load_resume(path: Path | None, seeds: Sequence[int], not_after: int) -> dict[str, Any] | None:
    """The resume state at ``path`` if it is for ``seeds`` and at most ``not_after`` steps."""
    if path is None or not path.is_file():
        return None
    try:
        # our own artifact: NumPy arrays in the log need the full unpickler
        state = torch.load(path, weights_only=False)
    except Exception as error:  # noqa: BLE001 - a corrupted file only costs the time it saved
        warnings.warn(f"ignoring unreadable resume state {path.name}: {error}", stacklevel=3)
        return None
    if list(state["agent"]["seeds"]) != list(seeds) or state["step"] > not_after:
        return None
    return state


def _train_members(
    config: TrainConfig,
    seeds: Sequence[int],
    budget: int,
    save_at: Sequence[int],
    data: _TrainingTensors,
    progress: bool,
    resume: Path | None = None,
    resume_not_after: int = 0,
) -> Iterator[tuple[int, Agent, list[pd.DataFrame], float]]:
    """The gradient-step loop of one ensemble (no caching of runs).

    Yields ``(step, agent, logs, seconds)`` at every step in ``save_at``: the ensemble, each
    member's log as a shorter run would have written it, and the wall time so far. With a
    ``resume`` path, the loop starts from the state saved there when it is at most
    ``resume_not_after`` steps in (no run asked for ends before it), writes its state there
    every :data:`RESUME_EVERY_S` seconds and at every step of ``save_at``, and removes it at
    the end.
    """
    # fork_rng: anything that would touch the global RNG is seeded and then rolled back.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seeds[0])
        scalers = Scalers.from_data(data, config.reward_scaling, config.action_scaling)
        agent = make_agent(config.algorithm, OBS_DIM, ACT_DIM, config.agent, scalers, seeds)
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        rows: list[dict[str, Any]] = []  # one per logging interval, values of shape (S,)
        sums: dict[str, np.ndarray] = {}
        count = 0
        first = 1
        elapsed = 0.0
        state = _load_start(resume, seeds, resume_not_after)
        if state is not None:
            agent.load_state_dict(state["agent"])
            for name, optimizer in _optimizers(agent).items():
                optimizer.load_state_dict(state["optimizers"][name])
            for g, g_state in zip(
                getattr(agent, "generators", []), state["agent_generators"], strict=True
            ):
                g.set_state(g_state)
            for g, g_state in zip(generators, state["generators"], strict=True):
                g.set_state(g_state)
            torch.set_rng_state(state["torch_rng"])
            rows, sums, count = state["rows"], state["sums"], state["count"]
            first, elapsed = state["step"] + 1, state["seconds"]
        start = time.perf_counter() - elapsed
        last_write = time.perf_counter()
        save = set(save_at)
        label = f"seeds {seeds[0]}" if len(seeds) == 1 else f"{len(seeds)} seeds"
        bar = tqdm(
            range(first, budget + 1),
            desc=f"{config.algorithm} {config.scenario} {label}",
            disable=not progress,
            mininterval=1.0,
            initial=first - 1,
            total=budget,
        )
        for step in bar:
            batch = sample_batch(data, config.batch_size, generators)
            with precision_context(config.precision):
                losses = agent.update(batch)
            for k, v in losses.items():
                sums[k] = sums[k] + v if k in sums else v.copy()
            count += 1
            boundary = step % config.log_interval == 0
            if boundary or step in save:
                means = {k: v / count for k, v in sums.items()}
                bad = [
                    s
                    for i, s in enumerate(seeds)
                    if not all(np.isfinite(v[i]) for v in means.values())
                ]
                if bad:
                    raise FloatingPointError(
                        f"non-finite loss at step {step} for seeds {bad}: {means}"
                    )
                row = {"step": step, **means, "time_s": time.perf_counter() - start}
                if boundary:
                    rows.append(row)
                    bar.set_postfix({k: f"{v.mean():.3g}" for k, v in means.items()}, refresh=False)
                    sums, count = {}, 0
                if step in save:
                    members = rows if boundary else [*rows, row]
                    logs = [_member_log(members, i) for i in range(len(seeds))]
                    yield step, agent, logs, time.perf_counter() - start
            due = step in save or time.perf_counter() - last_write >= RESUME_EVERY_S
            if resume is not None and step < budget and due:
                seconds = time.perf_counter() - start
                log = (rows, sums, count)
                state = _training_state(agent, generators, step, log, seconds, budget)
                resume.parent.mkdir(parents=True, exist_ok=True)
                atomic_torch_save(state, resume)
                last_write = time.perf_counter()
        bar.close()
        if resume is not None:
            _keep_final_state(agent, generators, budget, (rows, sums, count), start, resume)
            resume.unlink(missing_ok=True)


def _keep_final_state(
    agent: Agent,
    generators: Sequence[torch.Generator],
    budget: int,
    log: tuple[list[dict[str, Any]], dict[str, np.ndarray], int],
    start: float,
    resume: Path,
) -> None:
    """Keeps the state at ``budget`` for a later, longer run of the same ensemble, unless a
    state further along is kept already (a shorter run must not undo a longer one's work)."""
    path = continuation_path(resume)
    with contextlib.suppress(Exception):  # unreadable: replaced below
        if torch.load(path, weights_only=False)["step"] >= budget:
            return
    seconds = time.perf_counter() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(_training_state(agent, generators, budget, log, seconds, budget), path)


def _member_log(rows: Sequence[dict[str, Any]], index: int) -> pd.DataFrame:
    """Member ``index``'s columns of the ensemble's log rows."""
    return pd.DataFrame(
        [
            {k: (v[index] if isinstance(v, np.ndarray) else v) for k, v in row.items()}
            for row in rows
        ]
    )


@dataclass(frozen=True)
class _Task:
    """One ensemble to train on a worker: runs equal but for seed and steps."""

    configs: tuple[TrainConfig, ...]  # the runs (resolved)
    data: _TrainingTensors  # the scenario's training tensors
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
        return [str(run_directory(c)) for c in task.configs]
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
    tensors = {k: _TrainingTensors.from_data(v) for k, v in data.items()}
    prints = {k: data_fingerprint(v) for k, v in tensors.items()}
    groups: dict[str, list[TrainConfig]] = {}
    for c in _unique([c.resolved() for c in configs]):
        if _stale(c, prints.get(c.scenario), force):
            groups.setdefault(_group_key(c), []).append(c)
    snapshots = _check_snapshot_steps(snapshot_steps)
    root = str(artifact_dir().resolve())
    tasks = []
    for group in groups.values():
        seeds = sorted({c.seed for c in group})
        cap = max_members(group[0])
        for start in range(0, len(seeds), cap):
            part = set(seeds[start : start + cap])
            chunk = tuple(c for c in group if c.seed in part)
            tasks.append(_Task(chunk, tensors[group[0].scenario], force, snapshots, root))

    def resumable(task: _Task) -> bool:
        pending = [c for c in task.configs if _stale(c, prints.get(c.scenario), force, False)]
        fingerprint = prints.get(task.configs[0].scenario)
        seeds = sorted({c.seed for c in pending})
        return not force and resume_path(task.configs[0], seeds, fingerprint).is_file()

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
            per CPU core. With 1 (and no ``scheduler``), or a single ensemble to train, the
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
    _check_snapshot_steps(snapshot_steps)
    given = dict(data or {})
    for v in given.values():
        validate_offline_data(v)
    needed = {c.scenario for c in resolved if c.scenario not in given and _stale(c, None, force)}
    for scenario in sorted(needed):
        given[scenario] = _load_dataset(scenario)
        validate_offline_data(given[scenario])
    tasks = plan_tasks(
        resolved, given, 1 if scheduler is None and workers == 1 else workers, force, snapshot_steps
    )
    if tasks:
        if scheduler is None and (workers == 1 or len(tasks) == 1):
            for task in tasks:
                train_ensemble(
                    task.configs, task.data, progress, task.force, 1, task.snapshot_steps
                )
        else:
            _run_on_dask(tasks, workers, scheduler, progress)
    return _load_all(resolved, trained={config_key(c) for t in tasks for c in t.configs})


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
            client = stack.enter_context(Client(scheduler))
        futures = [
            client.submit(_run_task, t, pure=False, priority=-i) for i, t in enumerate(tasks)
        ]
        n_agents = sum(len(t.configs) for t in tasks)
        desc = f"training {n_agents} runs as {len(tasks)} ensembles"
        with tqdm(total=len(tasks), desc=desc, disable=not progress) as bar:
            for future in as_completed(futures):
                future.result()  # re-raises a worker's exception here
                bar.update(1)
