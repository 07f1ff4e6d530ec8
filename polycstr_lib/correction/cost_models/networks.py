"""The cost-model networks: a partially input-convex network (PICNN) and a plain MLP.

Both map a raw observation ``s`` (9 values of very different scales, z-scored internally with
buffers fitted on the training split) and an action ``a`` in [-1, 1]^2 to a predicted cost. The
PICNN is convex in ``a`` for every ``s`` by construction; the MLP is the ordinary baseline of
the paper (same size, no structure).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polycstr_lib.correction.cost_models.conditioned import (
    ActionCost,
    AutogradActionCost,
    _PICNNActionCost,
)
from polycstr_lib.correction.cost_models.config import CostModelConfig

#: Activations allowed on the convex (action) path: convex and non-decreasing on all of R.
CONVEX_NONDECREASING_ACTIVATIONS = ("softplus", "relu")
_ACTIVATIONS = {"softplus": F.softplus, "relu": F.relu, "tanh": torch.tanh}
_POSITIVITY = ("softplus", "square", "none")


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------
class _CostModel(nn.Module):
    """Shared part: observation and target scalers (buffers) and input checks.

    The network computes a standardised cost ``p``; the returned cost is
    ``y_mean + y_std * p`` with ``y_std > 0`` (a positive affine map keeps convexity).
    """

    def __init__(self, obs_dim: int, action_dim: int) -> None:
        super().__init__()
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))
        self.register_buffer("y_mean", torch.zeros(()))
        self.register_buffer("y_std", torch.ones(()))
        # Which target the model was trained on (set by train_cost_model; used by r2_score).
        self.target = "one_step"
        self.gamma = 0.9

    @torch.no_grad()
    def set_normalization(self, observations: Tensor, targets: Tensor) -> None:
        """Fit the z-score scalers on training observations ``(N, obs_dim)`` and targets ``(N,)``.

        Constant features (std below 1e-12 or below 1e-6 of their mean magnitude) get std 1.
        """
        obs = torch.as_tensor(observations, dtype=torch.float64)
        y = torch.as_tensor(targets, dtype=torch.float64)
        mean = obs.mean(0)
        std = obs.std(0, unbiased=False)
        tiny = (std < 1e-12) | (std < 1e-6 * mean.abs())
        std = torch.where(tiny, torch.ones_like(std), std)
        y_std = y.std(unbiased=False)
        if not bool(y_std > 1e-12):
            y_std = torch.ones(())
        self.obs_mean.copy_(mean.to(self.obs_mean.dtype))
        self.obs_std.copy_(std.to(self.obs_std.dtype))
        self.y_mean.copy_(y.mean().to(self.y_mean.dtype))
        self.y_std.copy_(y_std.to(self.y_std.dtype))

    def normalize_obs(self, obs: Tensor) -> Tensor:
        """Z-scored observations (same leading shape)."""
        return (obs - self.obs_mean) / self.obs_std

    def _prepare(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor, bool]:
        dtype = self.obs_mean.dtype
        obs = torch.as_tensor(obs, dtype=dtype)
        action = torch.as_tensor(action, dtype=dtype)
        single = obs.dim() == 1
        if single:
            obs, action = obs.unsqueeze(0), action.unsqueeze(0)
        if obs.shape[-1] != self.obs_dim or action.shape[-1] != self.action_dim:
            raise ValueError(
                f"expected obs (B, {self.obs_dim}) and action (B, {self.action_dim}), "
                f"got {tuple(obs.shape)} and {tuple(action.shape)}"
            )
        return obs, action, single

    def conditioned(self, obs: Tensor) -> ActionCost:
        """The cost as a function of the action for fixed observations (autograd version)."""
        return AutogradActionCost(self, obs)


class MLPCost(_CostModel):
    """Plain MLP cost model ĉ(s, a) on the concatenation [z-scored s, a] (paper's NN baseline).

    Args:
        obs_dim: observation size.
        action_dim: action size.
        hidden: width of each hidden layer.
        layers: number of hidden layers.
    """

    def __init__(
        self, obs_dim: int = 9, action_dim: int = 2, hidden: int = 64, layers: int = 2
    ) -> None:
        super().__init__(obs_dim, action_dim)
        dims = [obs_dim + action_dim] + [hidden] * layers
        pairs = zip(dims[:-1], dims[1:], strict=True)
        self.hidden_layers = nn.ModuleList(nn.Linear(i, o) for i, o in pairs)
        self.out = nn.Linear(dims[-1], 1)

    def forward(self, obs: Tensor, action: Tensor) -> Tensor:
        """Predicted cost ``(B,)`` for raw observations ``(B, obs_dim)`` and actions ``(B, 2)``."""
        obs, action, single = self._prepare(obs, action)
        h = torch.cat([self.normalize_obs(obs), action], dim=-1)
        for layer in self.hidden_layers:
            h = F.softplus(layer(h))
        cost = self.y_mean + self.y_std * self.out(h).squeeze(-1)
        return cost[0] if single else cost


class PICNN(_CostModel):
    """Partially input-convex neural network (Amos, Xu & Kolter 2017): convex in the action.

    With ``u_0`` the z-scored state and ``a`` the action, for ``i = 0 .. L`` (``L`` hidden
    layers, layer ``L`` is the scalar output)::

        u_{i+1} = softplus(W̃_i u_i + b̃_i)                                   (state path)
        p_i     = W_z^(i)+ (z_i ∘ [W_zu^(i) u_i + b_zu^(i)]_+)
                  + W_y^(i) (a ∘ (W_yu^(i) u_i + b_yu^(i))) + W_u^(i) u_i + b^(i)
        z_{i+1} = softplus(p_i)  (i < L),      ĉ(s, a) = y_mean + y_std · p_L

    (layer 0 has no ``z`` term). Here ``W_z^(i)+ = softplus(V_i)`` (or ``V_i ** 2``) of a raw
    parameter ``V_i``, so every z-to-z weight is non-negative by construction.

    Why ĉ is convex in ``a`` for every fixed ``s``: with ``s`` fixed, every ``u_i`` and every
    bracket built from ``u_i`` alone is a constant. ``W_y (a ∘ v)`` is linear in ``a`` and
    ``W_u u + b`` is constant, so ``p_0`` is affine in ``a`` and ``z_1 = softplus(p_0)`` is
    convex. Inductively, if every entry of ``z_i`` is convex, then ``z_i ∘ g`` with a constant
    gate ``g = [·]_+ ≥ 0`` is convex, a non-negative combination ``W_z^+ (·)`` of convex functions
    is convex, adding an affine term keeps it convex, and a convex non-decreasing function
    (softplus) of a convex function is convex. The output ``p_L`` is therefore convex and
    ``y_mean + y_std p_L`` with ``y_std > 0`` too. The state path is unconstrained.

    Args:
        obs_dim: observation size.
        action_dim: action size.
        hidden: width of each hidden layer (both paths).
        layers: number of hidden layers ``L``.
        positivity: reparametrisation of the z-weights: 'softplus' (default), 'square', or
            'none' (unconstrained ablation; :func:`convexity_certificate` rejects it when a
            weight is negative).
    """

    activation = "softplus"  # activation of the convex path (checked by the certificate)

    def __init__(
        self,
        obs_dim: int = 9,
        action_dim: int = 2,
        hidden: int = 64,
        layers: int = 2,
        positivity: str = "softplus",
    ) -> None:
        super().__init__(obs_dim, action_dim)
        if positivity not in _POSITIVITY:
            raise ValueError(f"positivity must be one of {_POSITIVITY}, got {positivity!r}")
        self.positivity = positivity
        self.layers = layers
        u_dims = [obs_dim] + [hidden] * layers  # u_0 .. u_L
        z_out = [hidden] * layers + [1]  # size of p_i
        self.state_layers = nn.ModuleList(
            nn.Linear(u_dims[i], u_dims[i + 1]) for i in range(layers)
        )
        self.zu = nn.ModuleList()  # gates on z_i (layers 1..L)
        self.z_raw = nn.ParameterList()  # raw z-to-z weights V_i (layers 1..L)
        self.yu = nn.ModuleList(nn.Linear(u_dims[i], action_dim) for i in range(layers + 1))
        self.y = nn.ModuleList(
            nn.Linear(action_dim, z_out[i], bias=False) for i in range(layers + 1)
        )
        self.u = nn.ModuleList(nn.Linear(u_dims[i], z_out[i]) for i in range(layers + 1))
        for i in range(1, layers + 1):
            z_in = z_out[i - 1]
            self.zu.append(nn.Linear(u_dims[i], z_in))
            # Effective weights start small and positive, about U(0.2, 2) / fan_in.
            w0 = (0.2 + 1.8 * torch.rand(z_out[i], z_in)) / z_in
            self.z_raw.append(nn.Parameter(self._inverse_positive(w0)))
        with torch.no_grad():
            for lin in list(self.zu) + list(self.yu):
                lin.weight.mul_(0.1)
                lin.bias.fill_(1.0)  # gates start near 1

    def _inverse_positive(self, w: Tensor) -> Tensor:
        if self.positivity == "softplus":
            return torch.log(torch.expm1(w))
        if self.positivity == "square":
            return torch.sqrt(w)
        return w.clone()

    def _positive(self, raw: Tensor) -> Tensor:
        if self.positivity == "softplus":
            return F.softplus(raw)
        if self.positivity == "square":
            return raw * raw
        return raw

    def effective_z_weights(self) -> list[Tensor]:
        """The z-to-z weights ``W_z^(i)+`` actually used in the forward pass, layers 1..L."""
        return [self._positive(raw) for raw in self.z_raw]

    def _state_terms(self, obs: Tensor) -> list[tuple[Tensor | None, Tensor, Tensor]]:
        """Per layer: (z-gate ``(B, h_prev)`` or None, action gate ``(B, d)``, constant ``(B, n)``).

        All of them depend on the state only.
        """
        u = self.normalize_obs(obs)
        terms = []
        for i in range(self.layers + 1):
            gate_z = F.relu(self.zu[i - 1](u)) if i > 0 else None
            terms.append((gate_z, self.yu[i](u), self.u[i](u)))
            if i < self.layers:
                u = F.softplus(self.state_layers[i](u))
        return terms

    def forward(self, obs: Tensor, action: Tensor) -> Tensor:
        """Predicted cost ``(B,)`` for raw observations ``(B, obs_dim)`` and actions ``(B, 2)``."""
        obs, action, single = self._prepare(obs, action)
        terms = self._state_terms(obs)
        weights = self.effective_z_weights()
        z = None
        p = None
        for i, (gate_z, gate_y, const) in enumerate(terms):
            p = self.y[i](action * gate_y) + const
            if i > 0:
                p = p + (z * gate_z) @ weights[i - 1].T
            if i < self.layers:
                z = F.softplus(p)
        cost = self.y_mean + self.y_std * p.squeeze(-1)
        return cost[0] if single else cost

    def conditioned(self, obs: Tensor) -> ActionCost:
        """The cost as a function of the action for fixed ``obs``: closed-form derivatives."""
        return _PICNNActionCost(self, obs)


def build_cost_model(config: CostModelConfig, obs_dim: int = 9, action_dim: int = 2) -> _CostModel:
    """A fresh (untrained) cost model of ``config.kind`` (uses the global torch RNG)."""
    if config.kind == "picnn":
        return PICNN(obs_dim, action_dim, config.hidden, config.layers)
    return MLPCost(obs_dim, action_dim, config.hidden, config.layers)
