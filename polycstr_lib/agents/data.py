"""Offline data as the agents take it: checks, a fingerprint, batches and scalers.

Agents receive *raw* batches (physical observations, rewards as stored in the dataset) and
normalise them internally with their :class:`Scalers`, so that :meth:`act` takes the same raw
observations the environment returns.

Shapes: ``S`` members, ``B`` transitions per member.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch

from polycstr_lib.reactor.env import ACT_DIM, OBS_DIM
from polycstr_lib.toolkit.cache import array_fingerprint

#: Accepted values of ``Scalers.from_data(..., reward_scaling=...)``.
REWARD_SCALINGS = ("return_range", "std", "none")


#: Accepted values of ``Scalers.from_data(..., action_scaling=...)``.
ACTION_SCALINGS = ("none", "minmax", "std")


#: In ``'std'`` action scaling, one unit of the agent's action is this many data standard
#: deviations (so the tanh-bounded policies reach ±3σ of the data's actions).
ACTION_STD_UNITS = 3.0


class TransitionData(Protocol):
    """What the agents need from a dataset (``polycstr_lib.reactor.datasets.OfflineData`` fits)."""

    observations: torch.Tensor  # (N, obs_dim) float32
    actions: torch.Tensor  # (N, act_dim) float32 in [-1, 1]
    rewards: torch.Tensor  # (N,)
    next_observations: torch.Tensor  # (N, obs_dim)
    terminals: torch.Tensor  # (N,) 1 where the episode really ended (never here)
    timeouts: torch.Tensor  # (N,) 1 on each episode's last (truncated) step
    return_min: float  # worst episode return in the data
    return_max: float  # best episode return in the data


class Batch(NamedTuple):
    """A minibatch of transitions (raw units, float32).

    With a member axis (``(S, B, ...)``) member ``s`` learns from row ``s``; without one
    (``(B, ...)``) every member learns from the same transitions.
    """

    observations: torch.Tensor  # ([S,] B, obs_dim)
    actions: torch.Tensor  # ([S,] B, act_dim)
    rewards: torch.Tensor  # ([S,] B)
    next_observations: torch.Tensor  # ([S,] B, obs_dim)
    dones: torch.Tensor  # ([S,] B) 1.0 on true terminals only; truncations still bootstrap


def sample_batch(
    data: TransitionData,
    batch_size: int,
    generator: torch.Generator | Sequence[torch.Generator],
) -> Batch:
    """Draws ``batch_size`` transitions uniformly with replacement, per member.

    Args:
        data: The offline dataset.
        batch_size: Number of transitions per member.
        generator: One private generator (a batch without member axis), or one per member
            (a batch with member axis; member ``s`` draws from ``generator[s]`` exactly what a
            single generator would). The global torch RNG is not used.

    Returns:
        A :class:`Batch` of float32 tensors, ``(B, ...)`` or ``(S, B, ...)``.
    """
    n = data.observations.shape[0]
    if isinstance(generator, torch.Generator):
        idx = torch.randint(n, (batch_size,), generator=generator)
    else:
        idx = torch.stack([torch.randint(n, (batch_size,), generator=g) for g in generator])
    flat = idx.reshape(-1)

    def take(x: torch.Tensor) -> torch.Tensor:
        return x.index_select(0, flat).float().reshape(*idx.shape, *x.shape[1:])

    return Batch(
        observations=take(data.observations),
        actions=take(data.actions),
        rewards=take(data.rewards),
        next_observations=take(data.next_observations),
        dones=take(data.terminals),
    )


def member_noise(
    kind: str, shape: Sequence[int], generators: Sequence[torch.Generator]
) -> torch.Tensor:
    """Per-member random draws: member ``s`` draws ``shape`` from ``generators[s]``.

    Args:
        kind: ``'normal'`` (standard normal) or ``'uniform'`` (on [0, 1)).
        shape: The shape each member draws.
        generators: One private generator per member.

    Returns:
        A float32 tensor of shape ``(S, *shape)``.
    """
    draw = {"normal": torch.randn, "uniform": torch.rand}[kind]
    return torch.stack([draw(tuple(shape), generator=g) for g in generators])


@dataclass(frozen=True, eq=False)
class Scalers:
    """Observation z-scoring and reward scaling, fitted on the training data.

    Observations are z-scored per dimension with the dataset mean and standard deviation
    (computed in float64; a dimension with zero spread keeps std 1). Rewards are multiplied by
    ``reward_scale``, chosen by ``reward_scaling`` in :meth:`from_data`:

    - ``'return_range'`` (default): ``episode_length / (return_max - return_min)``, so that
      the spread of the data's episode returns becomes one unit per step on average (CORL's
      IQL uses 1000 / (return_max - return_min) on 1000-step episodes). If the returns have
      no spread it falls back to ``'std'``.
    - ``'std'``: ``1 / std(rewards)`` (1 if the rewards are constant).
    - ``'none'``: 1.

    Actions: the agents learn and act in their own units ``u = (a − center) / scale`` and
    map back with ``a = center + scale · u`` (then clipped to the env's [−1, 1]); the env's
    action space is unchanged. ``action_scaling`` chooses the units:

    - ``'none'`` (default): the env's units (center 0, scale 1).
    - ``'minmax'``: the data's range per dimension maps to [−1, 1] (the authors' early code).
    - ``'std'``: center the data mean, one unit = :data:`ACTION_STD_UNITS` data standard
      deviations.

    A dimension without spread keeps scale 1.
    """

    obs_mean: torch.Tensor  # (obs_dim,) float32 dataset mean of the observations
    obs_std: torch.Tensor  # (obs_dim,) float32 dataset std of the observations (0 → 1)
    reward_scale: float  # multiplier applied to raw rewards before any learning
    action_center: torch.Tensor | None = None  # (act_dim,) env action of agent action 0
    action_scale: torch.Tensor | None = None  # (act_dim,) env units per agent unit

    @classmethod
    def from_data(
        cls,
        data: TransitionData,
        reward_scaling: str = "return_range",
        action_scaling: str = "none",
    ) -> Scalers:
        """Fits the scalers on a dataset.

        Args:
            data: The offline dataset (observations, actions, rewards, timeouts, returns).
            reward_scaling: 'return_range', 'std' or 'none' (see the class docstring).
            action_scaling: 'none', 'minmax' or 'std' (see the class docstring).

        Returns:
            The fitted scalers.

        Raises:
            ValueError: Unknown ``reward_scaling`` or ``action_scaling``.
        """
        if reward_scaling not in REWARD_SCALINGS:
            raise ValueError(
                f"unknown reward_scaling {reward_scaling!r}; expected one of {REWARD_SCALINGS}"
            )
        if action_scaling not in ACTION_SCALINGS:
            raise ValueError(
                f"unknown action_scaling {action_scaling!r}; expected one of {ACTION_SCALINGS}"
            )
        obs = data.observations.double()
        mean = obs.mean(0)
        std = obs.std(0, correction=0)
        std = torch.where(std > 0, std, torch.ones_like(std))
        n = obs.shape[0]
        n_episodes = int(data.timeouts.sum().item()) + int(data.terminals.sum().item())
        episode_length = n / max(n_episodes, 1)
        spread = float(data.return_max) - float(data.return_min)
        if reward_scaling == "none":
            scale = 1.0
        elif reward_scaling == "return_range" and math.isfinite(spread) and spread > 0:
            scale = episode_length / spread
        else:
            r_std = float(data.rewards.double().std(correction=0).item()) if n > 1 else 0.0
            scale = 1.0 / r_std if r_std > 0 else 1.0
        center, half = _action_units(data.actions.double(), action_scaling)
        return cls(
            obs_mean=mean.float(),
            obs_std=std.float(),
            reward_scale=float(scale),
            action_center=center,
            action_scale=half,
        )

    @classmethod
    def identity(cls, obs_dim: int) -> Scalers:
        """Scalers that leave observations and rewards unchanged."""
        return cls(torch.zeros(obs_dim), torch.ones(obs_dim), 1.0)

    def normalize_obs(self, obs: torch.Tensor) -> torch.Tensor:
        """Z-scores raw observations (any leading shape)."""
        return (obs - self.obs_mean) / self.obs_std

    def scale_reward(self, reward: torch.Tensor) -> torch.Tensor:
        """Scales raw rewards."""
        return reward * self.reward_scale

    def to_agent_actions(self, action: torch.Tensor) -> torch.Tensor:
        """Env actions → the agent's action units."""
        if self.action_center is None:
            return action
        return (action - self.action_center) / self.action_scale

    def to_env_actions(self, action: torch.Tensor) -> torch.Tensor:
        """The agent's action units → env actions (not clipped)."""
        if self.action_center is None:
            return action
        return self.action_center + self.action_scale * action

    def state_dict(self) -> dict[str, Any]:
        """Returns the scalers as a plain dict (tensors cloned)."""
        state: dict[str, Any] = {
            "obs_mean": self.obs_mean.clone(),
            "obs_std": self.obs_std.clone(),
            "reward_scale": self.reward_scale,
        }
        if self.action_center is not None:
            state["action_center"] = self.action_center.clone()
            state["action_scale"] = self.action_scale.clone()
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Scalers:
        """Rebuilds scalers from :meth:`state_dict` output."""

        def tensor(key: str) -> torch.Tensor | None:
            if state.get(key) is None:
                return None
            return torch.as_tensor(state[key], dtype=torch.float32).clone()

        return cls(
            obs_mean=tensor("obs_mean"),
            obs_std=tensor("obs_std"),
            reward_scale=float(state["reward_scale"]),
            action_center=tensor("action_center"),
            action_scale=tensor("action_scale"),
        )


def _action_units(actions: torch.Tensor, mode: str) -> tuple[torch.Tensor | None, ...]:
    """Center and scale of the agent's action units (None, None for ``'none'``)."""
    if mode == "none":
        return None, None
    if mode == "minmax":
        low, high = actions.min(0).values, actions.max(0).values
        center, half = 0.5 * (high + low), 0.5 * (high - low)
    else:
        center, half = actions.mean(0), ACTION_STD_UNITS * actions.std(0, correction=0)
    half = torch.where(half > 0, half, torch.ones_like(half))
    return center.float(), half.float()


def expand_members(batch: Batch, n_members: int, scalers: Scalers | None = None) -> Batch:
    """Gives a batch without member axis one (shared by every member); checks sizes; with
    ``scalers``, puts its actions in the agent's action units."""
    if batch.observations.ndim == 2:
        batch = Batch(*(x.unsqueeze(0).expand(n_members, *x.shape) for x in batch))
    elif batch.observations.shape[0] != n_members:
        raise ValueError(
            f"batch has {batch.observations.shape[0]} members on its first axis; "
            f"the agent has {n_members}"
        )
    if scalers is not None:
        batch = batch._replace(actions=scalers.to_agent_actions(batch.actions))
    return batch


_TENSOR_FIELDS = (
    "observations",
    "actions",
    "rewards",
    "next_observations",
    "terminals",
    "timeouts",
)


@dataclass(frozen=True)
class TrainingTensors:
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
    def from_data(cls, data: Any) -> TrainingTensors:
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


def discounted_returns(data: TransitionData, gamma: float, reward_scale: float = 1.0) -> np.ndarray:
    """The data's true discounted return from every transition to the end of its episode.

    Monte-Carlo over each episode, ``G_t = scale · Σ_k γ^k r_{t+k}`` up to the episode's last
    transition (a timeout or a terminal), with nothing bootstrapped after it: the target a
    critic's Q on the dataset actions should approach (a truncated episode's last steps are
    lower than an infinite-horizon value by at most ``γ^(T−t)`` of it).

    Args:
        data: Transitions in episode order (each episode's last one flagged in ``timeouts``
            or ``terminals``).
        gamma: The agent's discount factor, in [0, 1].
        reward_scale: The agent's reward scale (``Scalers.reward_scale``), so that the
            returns are in the units the critic learns.

    Returns:
        ``(N,)`` float64.

    Raises:
        ValueError: ``gamma`` outside [0, 1], or a last transition that ends no episode.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1]; got {gamma}")
    rewards = torch.as_tensor(data.rewards).double().numpy() * float(reward_scale)
    ends = (torch.as_tensor(data.timeouts) > 0) | (torch.as_tensor(data.terminals) > 0)
    ends = ends.numpy()
    if len(rewards) and not ends[-1]:
        raise ValueError("the last transition ends no episode (no timeout or terminal flag)")
    out = np.empty_like(rewards)
    running = 0.0
    for i in range(len(rewards) - 1, -1, -1):
        running = rewards[i] + (0.0 if ends[i] else gamma * running)
        out[i] = running
    return out


def data_fingerprint(data: Any) -> str:
    """Short SHA-256 of the training tensors (as float32), to detect a changed dataset."""
    return array_fingerprint(
        (k, torch.as_tensor(getattr(data, k)).to(torch.float32).contiguous().numpy())
        for k in _TENSOR_FIELDS
    )


_LOADED: dict[tuple[str, str], tuple[tuple, Any]] = {}


def load_training_data(scenario: str) -> Any:
    """A scenario's dataset, verified against its checksums; loaded once per process while
    its files are unchanged (same names, sizes and modification times)."""
    from polycstr_lib.reactor.datasets import dataset_path, load_offline_data

    folder = dataset_path(scenario)
    files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    signature = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    key = (scenario, str(folder))
    known = _LOADED.get(key)
    if known is not None and known[0] == signature and signature:
        return known[1]
    data = load_offline_data(scenario)
    _LOADED[key] = (signature, data)
    return data
