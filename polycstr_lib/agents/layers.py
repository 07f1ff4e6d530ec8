"""Ensemble layers: S members' networks applied side by side, each member its own parameters.

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

Shapes: ``S`` members, ``B`` transitions per member, ``N`` sampled actions per state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn


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
