"""Pieces shared by the offline agents: batches, scalers, MLPs, actor heads, Polyak updates.

Agents receive *raw* batches (physical observations, rewards as stored in the dataset) and
normalise them internally with their :class:`Scalers`, so that :meth:`act` takes the same raw
observations the environment returns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch
from torch import nn

__all__ = [
    "REWARD_SCALINGS",
    "Batch",
    "GaussianActor",
    "QNetwork",
    "Scalers",
    "TanhGaussianActor",
    "TransitionData",
    "adam",
    "as_obs_tensor",
    "check_state",
    "mlp",
    "sample_batch",
    "soft_update",
]


#: Accepted values of ``Scalers.from_data(..., reward_scaling=...)``.
REWARD_SCALINGS = ("return_range", "std", "none")


class TransitionData(Protocol):
    """What the agents need from a dataset (``polycstr_lib.datasets.OfflineData`` fits)."""

    observations: torch.Tensor  # (N, obs_dim) float32
    actions: torch.Tensor  # (N, act_dim) float32 in [-1, 1]
    rewards: torch.Tensor  # (N,)
    next_observations: torch.Tensor  # (N, obs_dim)
    terminals: torch.Tensor  # (N,) 1 where the episode really ended (never here)
    timeouts: torch.Tensor  # (N,) 1 on each episode's last (truncated) step
    return_min: float  # worst episode return in the data
    return_max: float  # best episode return in the data


class Batch(NamedTuple):
    """A minibatch of transitions (raw units, float32)."""

    observations: torch.Tensor  # (B, obs_dim)
    actions: torch.Tensor  # (B, act_dim)
    rewards: torch.Tensor  # (B,)
    next_observations: torch.Tensor  # (B, obs_dim)
    dones: torch.Tensor  # (B,) 1.0 on true terminals only; truncations still bootstrap


def sample_batch(data: TransitionData, batch_size: int, generator: torch.Generator) -> Batch:
    """Draws ``batch_size`` transitions uniformly with replacement.

    Args:
        data: The offline dataset.
        batch_size: Number of transitions.
        generator: The private random generator (the global torch RNG is not used).

    Returns:
        A :class:`Batch` of float32 tensors.
    """
    n = data.observations.shape[0]
    idx = torch.randint(n, (batch_size,), generator=generator)
    return Batch(
        observations=data.observations.index_select(0, idx).float(),
        actions=data.actions.index_select(0, idx).float(),
        rewards=data.rewards.index_select(0, idx).float(),
        next_observations=data.next_observations.index_select(0, idx).float(),
        dones=data.terminals.index_select(0, idx).float(),
    )


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
    """

    obs_mean: torch.Tensor  # (obs_dim,) float32 dataset mean of the observations
    obs_std: torch.Tensor  # (obs_dim,) float32 dataset std of the observations (0 → 1)
    reward_scale: float  # multiplier applied to raw rewards before any learning

    @classmethod
    def from_data(cls, data: TransitionData, reward_scaling: str = "return_range") -> Scalers:
        """Fits the scalers on a dataset.

        Args:
            data: The offline dataset (observations, rewards, timeouts, return range).
            reward_scaling: 'return_range', 'std' or 'none' (see the class docstring).

        Returns:
            The fitted scalers.

        Raises:
            ValueError: Unknown ``reward_scaling``.
        """
        if reward_scaling not in REWARD_SCALINGS:
            raise ValueError(
                f"unknown reward_scaling {reward_scaling!r}; expected one of {REWARD_SCALINGS}"
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
        return cls(obs_mean=mean.float(), obs_std=std.float(), reward_scale=float(scale))

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

    def state_dict(self) -> dict[str, Any]:
        """Returns the scalers as a plain dict (tensors cloned)."""
        return {
            "obs_mean": self.obs_mean.clone(),
            "obs_std": self.obs_std.clone(),
            "reward_scale": self.reward_scale,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Scalers:
        """Rebuilds scalers from :meth:`state_dict` output."""
        return cls(
            obs_mean=torch.as_tensor(state["obs_mean"], dtype=torch.float32).clone(),
            obs_std=torch.as_tensor(state["obs_std"], dtype=torch.float32).clone(),
            reward_scale=float(state["reward_scale"]),
        )


def as_obs_tensor(obs: np.ndarray, obs_dim: int) -> tuple[torch.Tensor, bool]:
    """Checks and converts observations for ``act``.

    Args:
        obs: Array of shape ``(B, obs_dim)`` or ``(obs_dim,)``.
        obs_dim: Expected observation size.

    Returns:
        A float32 tensor of shape ``(B, obs_dim)`` and whether the input was a single vector.

    Raises:
        ValueError: If the last dimension is not ``obs_dim`` or the array is not 1-D/2-D.
    """
    arr = np.asarray(obs, dtype=np.float32)
    if arr.ndim not in (1, 2) or arr.shape[-1] != obs_dim:
        raise ValueError(f"observations must have shape (B, {obs_dim}); got {arr.shape}")
    single = arr.ndim == 1
    return torch.from_numpy(np.ascontiguousarray(arr.reshape(-1, obs_dim))), single


def mlp(
    in_dim: int,
    out_dim: int,
    hidden_dims: Sequence[int] = (256, 256),
    output_activation: type[nn.Module] | None = None,
) -> nn.Sequential:
    """Builds a ReLU multilayer perceptron.

    Args:
        in_dim: Input size.
        out_dim: Output size.
        hidden_dims: Sizes of the hidden layers.
        output_activation: Optional activation class applied to the output (e.g. ``nn.Tanh``).

    Returns:
        The network.
    """
    layers: list[nn.Module] = []
    prev = in_dim
    for h in hidden_dims:
        layers += [nn.Linear(prev, h), nn.ReLU()]
        prev = h
    layers.append(nn.Linear(prev, out_dim))
    if output_activation is not None:
        layers.append(output_activation())
    return nn.Sequential(*layers)


class QNetwork(nn.Module):
    """State-action value Q(s, a): an MLP on the concatenated inputs."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dims: Sequence[int]) -> None:
        super().__init__()
        self.net = mlp(obs_dim + act_dim, 1, hidden_dims)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Returns Q values of shape ``obs.shape[:-1]``."""
        return self.net(torch.cat([obs, action], dim=-1)).squeeze(-1)


def adam(params: Any, lr: float) -> torch.optim.Adam:
    """The agents' optimiser: Adam with PyTorch's fused CPU kernel.

    The fused kernel updates all tensors in one call instead of a dozen small ops per tensor;
    on the 2x256 networks it removes about a quarter of an IQL step's time in bfloat16
    training (``benchmarks/training.py``). It is deterministic on the CPU.
    """
    return torch.optim.Adam(params, lr=lr, fused=True)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging: ``target ← (1 − tau) · target + tau · source``."""
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        t.lerp_(s, tau)


class GaussianActor(nn.Module):
    """IQL's actor: Normal(tanh(MLP(s)), exp(log_std)) with a state-independent log-std.

    The deterministic action is the tanh-squashed mean; the log-likelihood of dataset actions
    is that of the (unsquashed) Normal, as in the IQL paper and CORL.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_dims: Sequence[int],
        log_std_min: float = -20.0,
        log_std_max: float = 2.0,
    ) -> None:
        super().__init__()
        self.net = mlp(obs_dim, act_dim, hidden_dims, output_activation=nn.Tanh)
        self.log_std = nn.Parameter(torch.zeros(act_dim))
        self.log_std_min = log_std_min
        self.log_std_max = log_std_max

    def forward(self, obs: torch.Tensor) -> torch.distributions.Normal:
        """Returns the action distribution at ``obs``."""
        mean = self.net(obs)
        std = self.log_std.clamp(self.log_std_min, self.log_std_max).exp()
        return torch.distributions.Normal(mean, std.expand_as(mean))

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Log-likelihood of ``action`` at ``obs``, summed over action dimensions."""
        return self(obs).log_prob(action).sum(-1)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        """The mean action (already in [-1, 1])."""
        return self.net(obs)


class TanhGaussianActor(nn.Module):
    """SAC's actor: a = tanh(u), u ~ Normal(μ(s), σ(s)); the MLP outputs μ and log σ."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_dims: Sequence[int],
        log_std_min: float = -5.0,
        log_std_max: float = 2.0,
    ) -> None:
        super().__init__()
        self.act_dim = act_dim
        self.net = mlp(obs_dim, 2 * act_dim, hidden_dims)
        self.log_std_min = log_std_min
        self.log_std_max = log_std_max

    def _mean_log_std(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(obs).split(self.act_dim, dim=-1)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)

    def sample(
        self, obs: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draws reparameterised actions and their log-densities.

        Args:
            obs: Normalised observations ``(..., obs_dim)``.
            generator: Random generator for the noise (keeps the global RNG untouched).

        Returns:
            Actions in (-1, 1) of shape ``(..., act_dim)`` and log-densities ``(...)``
            (tanh change of variables included).
        """
        mean, log_std = self._mean_log_std(obs)
        std = log_std.exp()
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        u = mean + std * eps
        action = torch.tanh(u)
        # log N(u; mean, std) with (u - mean)/std = eps, then the tanh Jacobian in the stable
        # form log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)).
        log_normal = -0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)
        log_jac = 2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))
        return action, (log_normal - log_jac).sum(-1)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        """The squashed mean action tanh(μ(s))."""
        mean, _ = self._mean_log_std(obs)
        return torch.tanh(mean)


def check_state(state: dict[str, Any], name: str, obs_dim: int, act_dim: int) -> None:
    """Raises ValueError if a saved agent state is not for this algorithm and these sizes."""
    got = (state.get("algorithm"), state.get("obs_dim"), state.get("act_dim"))
    if got != (name, obs_dim, act_dim):
        raise ValueError(
            f"state is for (algorithm, obs_dim, act_dim) = {got}, not {(name, obs_dim, act_dim)}"
        )


@torch.no_grad()
def act_deterministic(policy: nn.Module | Any, scalers: Scalers, obs: Any, obs_dim: int):
    """Shared ``act``: z-score raw observations, apply ``policy``, clamp to [-1, 1].

    Args:
        policy: callable mapping normalised ``(B, obs_dim)`` tensors to actions.
        scalers: the agent's scalers.
        obs: ``(B, obs_dim)`` or ``(obs_dim,)`` raw observations.
        obs_dim: expected observation size.

    Returns:
        float32 NumPy actions of shape ``(B, act_dim)`` or ``(act_dim,)``.
    """
    x, single = as_obs_tensor(obs, obs_dim)
    action = policy(scalers.normalize_obs(x)).clamp(-1.0, 1.0).numpy()
    return action[0] if single else action


def agent_state(agent: Any, **extra: Any) -> dict[str, Any]:
    """Shared ``state_dict``: algorithm, sizes, config, scalers and every network's weights
    (``agent.modules()``), plus ``extra`` entries (optimiser state is not included)."""
    import dataclasses

    return {
        "algorithm": agent.name,
        "obs_dim": agent.obs_dim,
        "act_dim": agent.act_dim,
        "config": dataclasses.asdict(agent.config),
        "scalers": agent.scalers.state_dict(),
        "nets": {k: m.state_dict() for k, m in agent.modules().items()},
        **extra,
    }


def load_agent_state(agent: Any, state: dict[str, Any]) -> None:
    """Shared ``load_state_dict`` for the output of :func:`agent_state`.

    Raises:
        ValueError: if the state is for another algorithm or other sizes.
    """
    check_state(state, agent.name, agent.obs_dim, agent.act_dim)
    agent.scalers = Scalers.from_state_dict(state["scalers"])
    for k, m in agent.modules().items():
        m.load_state_dict(state["nets"][k])
