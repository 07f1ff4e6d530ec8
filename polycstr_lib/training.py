"""Training loop of the offline agents, with an on-disk cache and a two-process runner.

A trained agent lives in ``artifact_dir()/agents/<algo>-<scenario>-<key>/`` where ``key`` is
:func:`~polycstr_lib.artifacts.config_key` of the (resolved) :class:`TrainConfig`:

- ``agent.pt``: the agent's ``state_dict()`` (weights, scalers, hyperparameters);
- ``log.csv``: the mean losses of every logging interval;
- ``config.json``: the configuration, a fingerprint of the training data and the wall time.
  It is written last and marks the run as complete.

Training is reproducible: the same configuration and data give bit-identical weights (one
torch thread, private generators; the global torch and NumPy RNG states are left untouched).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import multiprocessing
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from polycstr_lib.agents import (
    AGENTS,
    REWARD_SCALINGS,
    Agent,
    AgentConfig,
    Scalers,
    agent_from_state,
    make_agent,
    sample_batch,
)
from polycstr_lib.artifacts import (
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
    "train_many",
    "validate_offline_data",
]

OBS_DIM = 9  # [C_A, C_I, C_R, C_P, T, e_P, e_T, F_I, T_c]
ACT_DIM = 2  # changes of F_I and T_c, scaled to [-1, 1]

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
    """Trains an agent, or loads it if this configuration was trained before.

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
    config = config.resolved()
    run_dir = run_directory(config)
    if data is not None:
        validate_offline_data(data)
    fingerprint = data_fingerprint(data) if data is not None else None
    if not force:
        meta = _cached_meta(run_dir, config)
        if meta is not None:
            if fingerprint is None or meta.get("data_fingerprint") == fingerprint:
                return load_trained(run_dir)
            warnings.warn(
                f"cached run {run_dir.name} was trained on other data; retraining",
                stacklevel=2,
            )
    if data is None:
        data = _load_dataset(config.scenario)
        validate_offline_data(data)
        fingerprint = data_fingerprint(data)

    tensors = _TrainingTensors.from_data(data)
    previous_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        agent, log, seconds = _train(config, tensors, progress)
    finally:
        torch.set_num_threads(previous_threads)

    meta = {
        "train_config": config_to_dict(config),
        "key": config_key(config),
        "data_fingerprint": fingerprint,
        "n_transitions": int(tensors.observations.shape[0]),
        "train_seconds": seconds,
        "torch_version": torch.__version__,
    }
    atomic_torch_save(agent.state_dict(), run_dir / "agent.pt")
    atomic_write_bytes(run_dir / "log.csv", log.to_csv(index=False).encode())
    atomic_write_bytes(run_dir / "config.json", json.dumps(meta, indent=2).encode())
    log.attrs.update(run_dir=str(run_dir), cached=False, meta=meta)
    return agent, log


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


def _train(
    config: TrainConfig, data: _TrainingTensors, progress: bool
) -> tuple[Agent, pd.DataFrame, float]:
    """The gradient-step loop (no caching)."""
    # fork_rng: anything that would touch the global RNG is seeded and then rolled back.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        scalers = Scalers.from_data(data, config.reward_scaling)
        agent = make_agent(
            config.algorithm, OBS_DIM, ACT_DIM, config.agent, scalers, seed=config.seed
        )
        generator = torch.Generator().manual_seed(config.seed)
        rows: list[dict[str, float]] = []
        sums: dict[str, float] = {}
        count = 0
        start = time.perf_counter()
        bar = tqdm(
            range(1, config.steps + 1),
            desc=f"{config.algorithm} {config.scenario} seed {config.seed}",
            disable=not progress,
            mininterval=1.0,
        )
        for step in bar:
            batch = sample_batch(data, config.batch_size, generator)
            with precision_context(config.precision):
                losses = agent.update(batch)
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            if step % config.log_interval == 0 or step == config.steps:
                means = {k: v / count for k, v in sums.items()}
                if not all(np.isfinite(v) for v in means.values()):
                    raise FloatingPointError(f"non-finite loss at step {step}: {means}")
                rows.append({"step": step, **means, "time_s": time.perf_counter() - start})
                bar.set_postfix({k: f"{v:.3g}" for k, v in means.items()}, refresh=False)
                sums, count = {}, 0
        bar.close()
    return agent, pd.DataFrame(rows), time.perf_counter() - start


def _worker_init() -> None:
    """Pool initializer: one torch thread per child process."""
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass


def _worker(args: tuple[TrainConfig, _TrainingTensors | None, bool]) -> str:
    config, data, force = args
    train_agent(config, data=data, progress=False, force=force, num_threads=1)
    return str(run_directory(config))


def train_many(
    configs: Sequence[TrainConfig],
    processes: int = 2,
    data: Mapping[str, Any] | None = None,
    force: bool = False,
) -> list[tuple[Agent, pd.DataFrame]]:
    """Trains independent configurations in parallel processes (spawn, one thread each).

    Cached runs are loaded without starting a process; identical configurations are trained
    once.

    Args:
        configs: The runs.
        processes: Number of worker processes (1 trains in this process).
        data: Optional scenario → training data; scenarios not in it are loaded by the
            workers.
        force: Retrain even if cached.

    Returns:
        ``(agent, log)`` for each configuration, in order.
    """
    resolved = [c.resolved() for c in configs]
    tensors = {k: _TrainingTensors.from_data(v) for k, v in (data or {}).items()}
    for v in (data or {}).values():
        validate_offline_data(v)
    todo: dict[str, TrainConfig] = {}
    for c in resolved:
        d = tensors.get(c.scenario)
        meta = None if force else _cached_meta(run_directory(c), c)
        stale = meta is None or (d is not None and meta["data_fingerprint"] != data_fingerprint(d))
        if stale:
            todo[config_key(c)] = c
    jobs = [(c, tensors.get(c.scenario), force) for c in todo.values()]
    if processes <= 1 or len(jobs) <= 1:
        for job in jobs:
            _worker(job)
    else:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(min(processes, len(jobs)), initializer=_worker_init) as pool:
            for _ in pool.imap_unordered(_worker, jobs, chunksize=1):
                pass
    return [load_trained(run_directory(c)) for c in resolved]
