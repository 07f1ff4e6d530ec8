"""Pieces shared by the offline agents: batches, scalers, ensemble layers, actors, Polyak updates.

Every agent is an *ensemble*: ``S`` independent members (one per training seed) trained side
by side as one batched model. Each network applies its members' layers side by side on a
leading member axis (:class:`EnsembleLinear`), so that one optimiser step, one loss and one
autograd pass serve all ``S`` seeds; each member's parameters are nevertheless their own
tensors of the single run's shapes (:class:`MemberParameters`), so member ``k`` trains bit
for bit like the single run of its seed, whatever ``S``. Members never share
anything that learns: each has its own initialisation (built exactly as a single network
under its seed), its own batch indices and noise (private generators), and its own optimiser
state (Adam is elementwise); the loss that is differentiated is the *sum* of the members'
losses, so a member's gradient is its own loss's gradient. A single-seed agent is the
ensemble of one.

Agents receive *raw* batches (physical observations, rewards as stored in the dataset) and
normalise them internally with their :class:`Scalers`, so that :meth:`act` takes the same raw
observations the environment returns.

Shapes: ``S`` members, ``B`` transitions per member, ``N`` sampled actions per state.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch
from torch import nn

__all__ = [
    "ACTION_SCALINGS",
    "REWARD_SCALINGS",
    "Batch",
    "EnsembleGaussianActor",
    "EnsembleLinear",
    "EnsembleMLP",
    "EnsembleQ",
    "EnsembleTanhGaussianActor",
    "MemberParameters",
    "Scalers",
    "Temperature",
    "TransitionData",
    "adam",
    "as_obs_tensor",
    "as_seeds",
    "build_members",
    "check_state",
    "member_agent",
    "member_noise",
    "member_state",
    "mlp",
    "sample_batch",
    "soft_update",
]


#: Accepted values of ``Scalers.from_data(..., reward_scaling=...)``.
REWARD_SCALINGS = ("return_range", "std", "none")

#: Accepted values of ``Scalers.from_data(..., action_scaling=...)``.
ACTION_SCALINGS = ("none", "minmax", "std")

#: In ``'std'`` action scaling, one unit of the agent's action is this many data standard
#: deviations (so the tanh-bounded policies reach ±3σ of the data's actions).
ACTION_STD_UNITS = 3.0


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


def as_seeds(seed: int | Sequence[int]) -> tuple[int, ...]:
    """The members' seeds: one int (an ensemble of one) or a non-empty sequence of ints.

    Raises:
        ValueError: An empty sequence, repeated seeds or a non-integer seed.
    """
    seeds = (seed,) if isinstance(seed, int | np.integer) else tuple(seed)
    if not seeds:
        raise ValueError("an ensemble needs at least one seed")
    if not all(isinstance(s, int | np.integer) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"seeds must be integers; got {seeds}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct; got {seeds}")
    return tuple(int(s) for s in seeds)


def mlp(
    in_dim: int,
    out_dim: int,
    hidden_dims: Sequence[int] = (256, 256),
    output_activation: type[nn.Module] | None = None,
) -> nn.Sequential:
    """Builds a ReLU multilayer perceptron (one member; see :meth:`EnsembleMLP.stack`).

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


def build_members(
    seeds: Sequence[int], build: Callable[[], dict[str, nn.Module]]
) -> dict[str, list[nn.Module]]:
    """Builds each member's plain networks under its own seed (global RNG rolled back).

    Member ``s`` gets exactly the weights a single agent seeded with ``seeds[s]`` would get,
    because ``build`` runs right after ``torch.manual_seed(seeds[s])``.

    Returns:
        Network name → list of the members' networks.
    """
    out: dict[str, list[nn.Module]] = {}
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for name, module in build().items():
                out.setdefault(name, []).append(module)
    return out


class MemberParameters(nn.Module):
    """A module whose parameters have a member axis but are stored one tensor per member.

    A stacked parameter ``name`` of shape ``(S, *shape)`` is held as ``S`` parameters
    ``name_0 … name_{S-1}`` of exactly the shape a one-member agent's has, so that the
    optimiser (PyTorch's fused Adam), the Polyak update and every other elementwise kernel see
    the same tensor sizes as in the single run of that seed. They must: these kernels run a
    vectorised loop over whole vector widths and a scalar loop over the tail, which round
    differently, so in one stacked tensor member ``k`` would be updated by a different path
    depending on ``S`` (measured: fused Adam on a ``(4, 1, 2)`` bias differs from the
    ``(1, 1, 2)`` run in the last bit after a few steps). :meth:`stacked` gives the
    ``(S, *shape)`` view for the forward pass, and ``state_dict`` keeps the stacked layout
    (one ``(S, *shape)`` tensor per name).
    """

    def __init__(self, n_members: int) -> None:
        super().__init__()
        self.n_members = n_members
        self._stacked_names: tuple[str, ...] = ()

    def register_members(self, name: str, stacked: torch.Tensor) -> None:
        """Registers ``stacked`` (``(S, *shape)``) as ``S`` per-member parameters."""
        if stacked.shape[0] != self.n_members:
            raise ValueError(f"{name} has {stacked.shape[0]} members, not {self.n_members}")
        for i, value in enumerate(stacked.detach().unbind(0)):
            self.register_parameter(f"{name}_{i}", nn.Parameter(value.clone().contiguous()))
        self._stacked_names = (*self._stacked_names, name)

    def members(self, name: str) -> list[nn.Parameter]:
        """The per-member parameters of ``name``, member order."""
        return [self._parameters[f"{name}_{i}"] for i in range(self.n_members)]

    def stacked(self, name: str) -> torch.Tensor:
        """The members' parameters of ``name`` stacked along a leading member axis."""
        return torch.stack(self.members(name))

    def _save_to_state_dict(self, destination: Any, prefix: str, keep_vars: bool) -> None:
        for name in self._stacked_names:
            value = self.stacked(name)
            destination[prefix + name] = value if keep_vars else value.detach()

    def _load_from_state_dict(
        self,
        state_dict: Any,
        prefix: str,
        local_metadata: Any,
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        for name in self._stacked_names:
            key = prefix + name
            if key not in state_dict:
                missing_keys.append(key)
                continue
            value, params = state_dict[key], self.members(name)
            want = (len(params), *params[0].shape)
            if tuple(value.shape) != want:
                error_msgs.append(
                    f"size mismatch for {key}: copying a param with shape "
                    f"{tuple(value.shape)}, the shape in current model is {want}"
                )
                continue
            with torch.no_grad():
                for param, member in zip(params, value.unbind(0), strict=True):
                    param.copy_(member)
        if strict:
            for key in state_dict:
                if key.startswith(prefix):
                    head = key[len(prefix) :].split(".", 1)[0]
                    if head not in self._modules and head not in self._stacked_names:
                        unexpected_keys.append(key)


class EnsembleLinear(MemberParameters):
    """``S`` independent affine maps applied side by side: ``(S, ..., in) → (S, ..., out)``.

    Member ``s`` has its own ``weight_s`` ``(in, out)`` (the transpose of ``nn.Linear``'s, so
    the product needs no transposed view) and ``bias_s`` ``(1, out)``; ``state_dict`` holds
    them stacked as ``weight`` ``(S, in, out)`` and ``bias`` ``(S, 1, out)``. Each member's
    product is its own ``addmm`` on its own rows, exactly the call an ensemble of one makes,
    and each member's parameters are their own tensors (see :class:`MemberParameters`), so a
    member's numbers do not depend on how many members it is trained with. (One batched
    ``baddbmm`` is 10-30 % faster on this CPU but rounds differently for different ``S``; one
    stacked parameter tensor makes the fused Adam step round differently once ``S`` times a
    row reaches the kernel's vector width, e.g. a 2-wide output bias from ``S = 4``.)
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__(weight.shape[0])
        self.register_members("weight", weight)
        self.register_members("bias", bias)

    @property
    def weight(self) -> torch.Tensor:
        """The members' weights stacked: ``(S, in, out)``."""
        return self.stacked("weight")

    @property
    def bias(self) -> torch.Tensor:
        """The members' biases stacked: ``(S, 1, out)``."""
        return self.stacked("bias")

    @classmethod
    def stack(cls, layers: Sequence[nn.Linear]) -> EnsembleLinear:
        """Stacks the members' ``nn.Linear`` layers (weights copied)."""
        weight = torch.stack([layer.weight.detach().t() for layer in layers])
        bias = torch.stack([layer.bias.detach().unsqueeze(0) for layer in layers])
        return cls(weight, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Applies member ``s``'s map to ``x[s]`` (any middle dimensions)."""
        s, d = x.shape[0], x.shape[-1]
        flat = x.reshape(s, -1, d)
        weights, biases = self.members("weight"), self.members("bias")
        y = torch.stack([torch.addmm(biases[i], flat[i], weights[i]) for i in range(s)])
        return y.reshape(*x.shape[:-1], y.shape[-1])


class EnsembleMLP(nn.Module):
    """A ReLU MLP per member, applied as one batched model (optional tanh output)."""

    def __init__(self, layers: Sequence[EnsembleLinear], tanh_output: bool = False) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.tanh_output = tanh_output

    @classmethod
    def stack(cls, members: Sequence[nn.Sequential]) -> EnsembleMLP:
        """Stacks the members' plain MLPs (as built by :func:`mlp`)."""
        linears = [[m for m in member if isinstance(m, nn.Linear)] for member in members]
        tanh = isinstance(members[0][-1], nn.Tanh)
        layers = [EnsembleLinear.stack(group) for group in zip(*linears, strict=True)]
        return cls(layers, tanh_output=tanh)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(S, ..., in) → (S, ..., out)``."""
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        x = self.layers[-1](x)
        return torch.tanh(x) if self.tanh_output else x


class EnsembleQ(nn.Module):
    """State-action values Q_s(s, a) of every member: an MLP on the concatenated inputs."""

    def __init__(self, net: EnsembleMLP) -> None:
        super().__init__()
        self.net = net

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``(S, ..., obs_dim), (S, ..., act_dim) → (S, ...)``."""
        return self.net(torch.cat([obs, action], dim=-1)).squeeze(-1)


class EnsembleGaussianActor(MemberParameters):
    """IQL's actor: Normal(tanh(MLP(s)), exp(log_std)) with a state-independent log-std.

    The deterministic action is the tanh-squashed mean; the log-likelihood of dataset actions
    is that of the (unsquashed) Normal, as in the IQL paper and CORL.
    """

    def __init__(
        self,
        net: EnsembleMLP,
        act_dim: int,
        log_std_min: float = -20.0,
        log_std_max: float = 2.0,
    ) -> None:
        n_members = net.layers[0].n_members
        super().__init__(n_members)
        self.net = net
        self.register_members("log_std", torch.zeros(n_members, 1, act_dim))
        self.log_std_min = log_std_min
        self.log_std_max = log_std_max

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Log-likelihood of ``action`` at ``obs``, summed over action dims: ``(S, B)``."""
        mean = self.net(obs)
        log_std = self.log_std.clamp(self.log_std_min, self.log_std_max)
        z = (action - mean) * torch.exp(-log_std)
        return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    @property
    def log_std(self) -> torch.Tensor:
        """The members' log-std stacked: ``(S, 1, act_dim)`` (one parameter per member)."""
        return self.stacked("log_std")

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        """The mean action (already in [-1, 1])."""
        return self.net(obs)


class EnsembleTanhGaussianActor(nn.Module):
    """SAC's actor: a = tanh(u), u ~ Normal(μ(s), σ(s)); the MLP outputs μ and log σ."""

    def __init__(
        self,
        net: EnsembleMLP,
        act_dim: int,
        log_std_min: float = -5.0,
        log_std_max: float = 2.0,
    ) -> None:
        super().__init__()
        self.net = net
        self.act_dim = act_dim
        self.log_std_min = log_std_min
        self.log_std_max = log_std_max

    def mean_log_std(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """μ(s) and the clamped log σ(s), each ``(S, ..., act_dim)``."""
        mean, log_std = self.net(obs).split(self.act_dim, dim=-1)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)

    @staticmethod
    def sample_from(
        mean: torch.Tensor, log_std: torch.Tensor, eps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised actions ``tanh(μ + σ ε)`` and their log-densities.

        Args:
            mean: μ, broadcastable to ``eps``.
            log_std: log σ, broadcastable to ``eps``.
            eps: Standard normal noise ``(..., act_dim)``.

        Returns:
            Actions in (-1, 1) of ``eps``'s shape and log-densities ``eps.shape[:-1]``
            (tanh change of variables included).
        """
        u = mean + log_std.exp() * eps
        action = torch.tanh(u)
        # log N(u; mean, std) with (u - mean)/std = eps, then the tanh Jacobian in the stable
        # form log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)).
        log_normal = -0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)
        log_jac = 2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))
        return action, (log_normal - log_jac).sum(-1)

    def sample(self, obs: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions and log-densities at ``obs`` for the given noise (same shape as the mean)."""
        mean, log_std = self.mean_log_std(obs)
        return self.sample_from(mean, log_std, eps)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        """The squashed mean action tanh(μ(s))."""
        mean, _ = self.mean_log_std(obs)
        return torch.tanh(mean)


class Temperature(MemberParameters):
    """A learnable log-temperature per member (SAC's entropy weight α = exp(log_alpha))."""

    def __init__(self, n_members: int, initial: float) -> None:
        super().__init__(n_members)
        self.register_members("log_alpha", torch.full((n_members,), math.log(initial)))

    @property
    def log_alpha(self) -> torch.Tensor:
        """The members' log α stacked: ``(S,)`` (one parameter per member)."""
        return self.stacked("log_alpha")


def adam(params: Any, lr: float) -> torch.optim.Adam:
    """The agents' optimiser: Adam with PyTorch's fused CPU kernel.

    Adam is elementwise, and each member's parameters are their own tensors (see
    :class:`MemberParameters`), so one optimiser over all members updates each member exactly
    as its own optimiser would. The fused kernel updates all tensors in one call instead of a
    dozen small ops per tensor, and is deterministic on the CPU.
    """
    return torch.optim.Adam(params, lr=lr, fused=True)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging: ``target ← (1 − tau) · target + tau · source``."""
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


def check_state(state: dict[str, Any], name: str, obs_dim: int, act_dim: int) -> None:
    """Raises ValueError if a saved agent state is not for this algorithm and these sizes."""
    got = (state.get("algorithm"), state.get("obs_dim"), state.get("act_dim"))
    if got != (name, obs_dim, act_dim):
        raise ValueError(
            f"state is for (algorithm, obs_dim, act_dim) = {got}, not {(name, obs_dim, act_dim)}"
        )


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


def losses_to_numpy(losses: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Per-member losses as float64 arrays of shape ``(S,)``."""
    return {k: v.detach().double().reshape(-1).numpy() for k, v in losses.items()}


@torch.no_grad()
def act_deterministic(agent: Any, obs: Any) -> np.ndarray:
    """Shared ``act`` of a one-member agent: z-score, ``agent.policy``, clamp to [-1, 1].

    Args:
        agent: An agent with ``policy(normalised (S, B, obs_dim)) → (S, B, act_dim)``.
        obs: ``(B, obs_dim)`` or ``(obs_dim,)`` raw observations.

    Returns:
        float32 NumPy actions of shape ``(B, act_dim)`` or ``(act_dim,)``.

    Raises:
        ValueError: Wrong observation shape, or an agent with several members (use
            ``act_members`` or ``member(k)``).
    """
    if agent.n_members != 1:
        raise ValueError(
            f"act() needs a one-member agent; this one has {agent.n_members} "
            "(use act_members(obs) or member(k))"
        )
    return act_members(agent, obs)[0]


@torch.no_grad()
def act_members(agent: Any, obs: Any) -> np.ndarray:
    """Every member's deterministic action: ``(S, B, act_dim)`` (or ``(S, act_dim)``)."""
    x, single = as_obs_tensor(obs, agent.obs_dim)
    z = agent.scalers.normalize_obs(x).unsqueeze(0).expand(agent.n_members, *x.shape)
    action = agent.scalers.to_env_actions(agent.policy(z)).clamp(-1.0, 1.0).numpy()
    return action[:, 0] if single else action


def agent_state(agent: Any) -> dict[str, Any]:
    """Shared ``state_dict``: algorithm, sizes, seeds, config, scalers and every network's
    weights (``agent.modules()``, member axis first). Optimiser state is not included."""
    return {
        "algorithm": agent.name,
        "obs_dim": agent.obs_dim,
        "act_dim": agent.act_dim,
        "seeds": list(agent.seeds),
        "config": dataclasses.asdict(agent.config),
        "scalers": agent.scalers.state_dict(),
        "nets": {k: m.state_dict() for k, m in agent.modules().items()},
    }


def member_state(state: dict[str, Any], index: int) -> dict[str, Any]:
    """The one-member state of member ``index`` of an :func:`agent_state` output."""
    seeds = state["seeds"]
    if not -len(seeds) <= index < len(seeds):
        raise IndexError(f"member {index} of an ensemble of {len(seeds)}")
    index %= len(seeds)
    nets = {
        name: {k: v[index : index + 1].clone() for k, v in net.items()}
        for name, net in state["nets"].items()
    }
    return {**state, "seeds": [seeds[index]], "nets": nets}


def load_agent_state(agent: Any, state: dict[str, Any]) -> None:
    """Shared ``load_state_dict`` for the output of :func:`agent_state`.

    Raises:
        ValueError: if the state is for another algorithm, other sizes or another number of
            members (or an older format without the member axis).
    """
    check_state(state, agent.name, agent.obs_dim, agent.act_dim)
    if "seeds" not in state:
        raise ValueError("state has no member axis (saved by an older version); retrain")
    if len(state["seeds"]) != agent.n_members:
        raise ValueError(
            f"state has {len(state['seeds'])} members; the agent has {agent.n_members}"
        )
    agent.scalers = Scalers.from_state_dict(state["scalers"])
    agent.seeds = tuple(int(s) for s in state["seeds"])
    for k, m in agent.modules().items():
        m.load_state_dict(state["nets"][k])


def member_agent(agent: Any, index: int) -> Any:
    """A new one-member agent holding a copy of member ``index`` of ``agent``."""
    state = member_state(agent.state_dict(), index)
    one = type(agent)(agent.obs_dim, agent.act_dim, agent.config, agent.scalers, state["seeds"])
    one.load_state_dict(state)
    return one
