"""Learned cost models ĉ(s, a): a partially input-convex network and a plain MLP.

Both models map a raw observation ``s`` (9 values of very different scales, z-scored
internally with buffers fitted on the training split) and an action ``a`` in [-1, 1]^2 to a
predicted cost. The PICNN is convex in ``a`` for every ``s`` by construction; the MLP is the
ordinary baseline of the paper (same size, no structure).

Besides the models this module holds the training loop (:func:`train_cost_model`, cached
through :mod:`polycstr_lib.artifacts`), the regression metric (:func:`r2_score`), the cost-to-go
target (:func:`discounted_cost_to_go`), the convexity certificate
(:func:`convexity_certificate`) and gradient-stability helpers (:func:`action_gradients`,
:func:`direction_agreement`, :func:`sign_flip_rate`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "CONVEX_NONDECREASING_ACTIVATIONS",
    "MLPCost",
    "PICNN",
    "ActionCost",
    "CostModelConfig",
    "action_gradients",
    "build_cost_model",
    "convexity_certificate",
    "cost_targets",
    "direction_agreement",
    "discounted_cost_to_go",
    "r2_score",
    "sign_flip_rate",
    "split_episodes",
    "train_cost_model",
]

#: Activations allowed on the convex (action) path: convex and non-decreasing on all of R.
CONVEX_NONDECREASING_ACTIVATIONS = ("softplus", "relu")
_ACTIVATIONS = {"softplus": F.softplus, "relu": F.relu, "tanh": torch.tanh}
_POSITIVITY = ("softplus", "square", "none")


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CostModelConfig:
    """How a cost model is built and trained (hashed into the artifact cache key)."""

    kind: str = "picnn"  # 'picnn' (convex in the action) or 'mlp' (plain NN baseline)
    hidden: int = 64  # width of every hidden layer (paper: 64)
    layers: int = 2  # number of hidden layers (paper: 2)
    lr: float = 1e-3  # Adam learning rate (cosine-decayed to lr_final_ratio * lr)
    lr_final_ratio: float = 0.1  # learning rate at the last step, relative to lr
    steps: int = 10_000  # optimiser steps (minibatches drawn with replacement)
    batch: int = 256  # minibatch size
    weight_decay: float = 0.0  # Adam L2 penalty
    seed: int = 0  # seeds the initial weights, the episode split and the minibatches
    target: str = "one_step"  # 'one_step': c_t; 'cost_to_go': discounted sum to episode end
    gamma: float = 0.9  # discount of the cost-to-go target (unused for 'one_step')
    holdout_fraction: float = 0.2  # share of episodes held out for R² (split by episode)
    eval_every: int = 1000  # steps between logged held-out losses

    def __post_init__(self) -> None:
        if self.kind not in ("picnn", "mlp"):
            raise ValueError(f"kind must be 'picnn' or 'mlp', got {self.kind!r}")
        if self.target not in ("one_step", "cost_to_go"):
            raise ValueError(f"target must be 'one_step' or 'cost_to_go', got {self.target!r}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {self.gamma}")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must lie in [0, 1), got {self.holdout_fraction}")
        for name in ("hidden", "layers", "steps", "batch", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


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


# ----------------------------------------------------------------------------------------------
# Cost as a function of the action (used by the safety layer)
# ----------------------------------------------------------------------------------------------
class ActionCost:
    """``a -> ĉ(s, a)`` for a fixed batch of observations, with first and second derivatives.

    All methods take actions ``(B, action_dim)`` and return costs ``(B,)``, gradients
    ``(B, action_dim)`` and Hessians ``(B, action_dim, action_dim)``, all detached.
    """

    def value(self, action: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def value_and_grad(self, action: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def value_grad_hess(self, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError


class AutogradActionCost(ActionCost):
    """Generic :class:`ActionCost` of any module ``model(obs, action) -> (B,)`` via autograd.

    Samples are independent, so the gradient of the summed cost is the per-sample gradient and
    one more backward pass per action coordinate gives the per-sample Hessian rows.
    """

    def __init__(self, model: nn.Module, obs: Tensor) -> None:
        self.model = model
        self.obs = obs

    def value(self, action: Tensor) -> Tensor:
        with torch.no_grad():
            return self.model(self.obs, action)

    def value_and_grad(self, action: Tensor) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            a = action.detach().requires_grad_(True)
            cost = self.model(self.obs, a)
            (grad,) = torch.autograd.grad(cost.sum(), a)
        return cost.detach(), grad

    def value_grad_hess(self, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        with torch.enable_grad():
            a = action.detach().requires_grad_(True)
            cost = self.model(self.obs, a)
            (grad,) = torch.autograd.grad(cost.sum(), a, create_graph=True)
            d = a.shape[-1]
            rows = []
            for j in range(d):
                (row,) = torch.autograd.grad(
                    grad[:, j].sum(), a, retain_graph=j < d - 1, allow_unused=True
                )
                rows.append(torch.zeros_like(a) if row is None else row)
        return cost.detach(), grad.detach(), torch.stack(rows, dim=1).detach()


class _PICNNActionCost(ActionCost):
    """Closed-form forward-mode derivatives of a :class:`PICNN` in the action.

    The state path and every state-only bracket are evaluated once in ``__init__``; each call
    then runs only the action path, carrying per unit the packed vector
    ``[p, dp/da (d values), d²p/da² (d² values)]`` through the layers. Every z-to-z layer is
    linear in that packed vector, so one matmul per layer propagates value, Jacobian and
    Hessian together, without autograd.
    """

    def __init__(self, model: PICNN, obs: Tensor) -> None:
        with torch.no_grad():
            obs = torch.as_tensor(obs, dtype=model.obs_mean.dtype)
            terms = model._state_terms(obs)
            weights = model.effective_z_weights()
            # Per layer, unit index last: A_i^T = (W_y diag(gate_y))^T as (B, d, n), the
            # constant (B, 1, n), the z-gate (B, 1, h) and (W_z^+)^T as (h, n).
            self.At = [
                (model.y[i].weight * g[:, None, :]).transpose(1, 2).contiguous()
                for i, (_, g, _) in enumerate(terms)
            ]
            self.c = [c.unsqueeze(1) for _, _, c in terms]
            self.gz = [None] + [gz.unsqueeze(1) for gz, _, _ in terms[1:]]
            self.WzT = [None] + [w.detach().T.contiguous() for w in weights]
            self.y_mean = model.y_mean
            self.y_std = model.y_std
        self.n_layers = len(terms)
        self.d = self.At[0].shape[1]

    def _run(self, action: Tensor, order: int) -> Tensor:
        """Packed ``(B, 1 + d + d²)`` (order 2), ``(B, 1 + d)`` (order 1) or ``(B, 1)`` output."""
        d = self.d
        a = action.unsqueeze(1)  # (B, 1, d)
        t = x = None
        for i in range(self.n_layers):
            lin = torch.baddbmm(self.c[i], a, self.At[i])  # (B, 1, n): constant + affine part
            if i == 0:
                parts = [lin]
                if order >= 1:
                    parts.append(self.At[0])
                if order >= 2:
                    parts.append(lin.new_zeros(lin.shape[0], d * d, lin.shape[2]))
                t = torch.cat(parts, dim=1) if order else lin
            else:
                t = x @ self.WzT[i]  # (B, m, n): one matmul for value, Jacobian, Hessian
                t[:, :1] += lin
                if order >= 1:
                    t[:, 1 : 1 + d] += self.At[i]
            if i == self.n_layers - 1:
                break
            p = t[:, :1]
            z = torch.nn.functional.softplus(p)
            if order == 0:
                x = z * self.gz[i + 1]
                continue
            sig = torch.sigmoid(p)
            dp = t[:, 1 : 1 + d]
            parts = [z, sig * dp]
            if order >= 2:
                outer = (dp.unsqueeze(2) * dp.unsqueeze(1)).flatten(1, 2)  # (B, d², n)
                parts.append(sig * (1.0 - sig) * outer + sig * t[:, 1 + d :])
            x = torch.cat(parts, dim=1) * self.gz[i + 1]  # gated z_{i+1} and its derivatives
        return t.squeeze(-1)

    def value(self, action: Tensor) -> Tensor:
        with torch.no_grad():
            return self.y_mean + self.y_std * self._run(action, 0)[:, 0]

    def value_and_grad(self, action: Tensor) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            t = self._run(action, 1)
            return self.y_mean + self.y_std * t[:, 0], self.y_std * t[:, 1:]

    def value_grad_hess(self, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        with torch.no_grad():
            t = self._run(action, 2)
            d = self.d
            hess = (self.y_std * t[:, 1 + d :]).reshape(-1, d, d)
            return self.y_mean + self.y_std * t[:, 0], self.y_std * t[:, 1 : 1 + d], hess


# ----------------------------------------------------------------------------------------------
# Targets, split, metric
# ----------------------------------------------------------------------------------------------
def _np(x: Any) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def discounted_cost_to_go(costs: Any, episode_ids: Any, gamma: float) -> np.ndarray:
    """Discounted cost-to-go ``G_t = sum_{k>=0} gamma^k c_{t+k}``, truncated at episode ends.

    Args:
        costs: ``(N,)`` per-step costs; rows of one episode are in time order.
        episode_ids: ``(N,)`` episode index of each row; an episode ends where the id changes
            (or at the last row).
        gamma: discount in [0, 1].

    Returns:
        ``(N,)`` float64 array.
    """
    c = _np(costs).astype(np.float64).ravel()
    ids = _np(episode_ids).ravel()
    if c.shape != ids.shape:
        raise ValueError(f"costs {c.shape} and episode_ids {ids.shape} differ in shape")
    out = np.empty_like(c)
    n = len(c)
    # Backward recursion, restarted where the episode id changes.
    ends = np.ones(n, dtype=bool)
    ends[:-1] = ids[1:] != ids[:-1]
    acc = 0.0
    for t in range(n - 1, -1, -1):
        if ends[t]:
            acc = 0.0
        acc = c[t] + gamma * acc
        out[t] = acc
    return out


def cost_targets(data: Any, target: str = "one_step", gamma: float = 0.9) -> Tensor:
    """Training targets ``(N,)`` float32: the one-step cost or its discounted cost-to-go."""
    if target == "one_step":
        return torch.as_tensor(_np(data.costs), dtype=torch.float32).reshape(-1)
    if target == "cost_to_go":
        g = discounted_cost_to_go(data.costs, data.episode_ids, gamma)
        return torch.as_tensor(g, dtype=torch.float32)
    raise ValueError(f"target must be 'one_step' or 'cost_to_go', got {target!r}")


def split_episodes(
    episode_ids: Any, holdout_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Random split of the distinct episode ids into (train, held-out), both sorted.

    At least one episode is held out when ``holdout_fraction > 0`` and there are two or more.
    """
    episodes = np.unique(_np(episode_ids))
    rng = np.random.default_rng(seed)
    perm = rng.permutation(episodes)
    n_hold = int(round(holdout_fraction * len(episodes)))
    if holdout_fraction > 0 and len(episodes) > 1:
        n_hold = min(max(n_hold, 1), len(episodes) - 1)
    return np.sort(perm[n_hold:]), np.sort(perm[:n_hold])


def _rows(data: Any, episodes: Sequence[int] | np.ndarray | None) -> np.ndarray:
    ids = _np(data.episode_ids).ravel()
    if episodes is None:
        return np.arange(len(ids))
    return np.flatnonzero(np.isin(ids, np.asarray(episodes)))


@torch.no_grad()
def _predict(model: nn.Module, obs: Tensor, actions: Tensor, chunk: int = 8192) -> Tensor:
    outs = [model(obs[i : i + chunk], actions[i : i + chunk]) for i in range(0, len(obs), chunk)]
    return torch.cat(outs) if outs else torch.zeros(0)


def r2_score(
    model: nn.Module,
    data: Any,
    episodes: Sequence[int] | np.ndarray | None = None,
    targets: Tensor | None = None,
) -> float:
    """Coefficient of determination of ``model`` on the rows of ``episodes`` (all if None).

    Args:
        model: a cost model ``model(obs, action) -> (B,)``.
        data: object with ``observations``, ``actions``, ``costs``, ``episode_ids``.
        episodes: episode ids to score on, e.g. the held-out ones from the training log.
        targets: ``(N,)`` targets for all rows; default: the model's training target
            (``model.target``, ``model.gamma``; one-step cost if absent).

    Returns:
        ``1 - SS_res / SS_tot`` (``nan`` for fewer than two rows or constant targets).
    """
    if targets is None:
        targets = cost_targets(
            data, getattr(model, "target", "one_step"), getattr(model, "gamma", 0.9)
        )
    rows = torch.as_tensor(_rows(data, episodes))
    if len(rows) < 2:
        return float("nan")
    dtype = next(model.buffers()).dtype if any(True for _ in model.buffers()) else torch.float32
    obs = torch.as_tensor(data.observations)[rows].to(dtype)
    act = torch.as_tensor(data.actions)[rows].to(dtype)
    y = torch.as_tensor(targets)[rows].to(torch.float64)
    pred = _predict(model, obs, act).to(torch.float64)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    if ss_tot <= 0.0:
        return float("nan")
    return 1.0 - float(((y - pred) ** 2).sum()) / ss_tot


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
def _cache_path(data: Any, config: CostModelConfig, cache_dir: str | Path | None) -> Path:
    from polycstr_lib.artifacts import artifact_dir, config_key

    root = Path(cache_dir) if cache_dir is not None else Path(artifact_dir())
    scenario = str(getattr(data, "scenario", "unknown"))
    n = len(_np(data.episode_ids))
    return root / "cost_models" / f"{scenario}_n{n}_{config.kind}_{config_key(config)}.pt"


def train_cost_model(
    data: Any,
    config: CostModelConfig = CostModelConfig(),  # noqa: B008 - frozen, safe default
    progress: bool = True,
    cache: bool = True,
    cache_dir: str | Path | None = None,
) -> tuple[_CostModel, dict[str, Any]]:
    """Train a cost model by MSE on one scenario's offline data (or load it from the cache).

    Episodes are split into train / held-out (``config.holdout_fraction``); scalers are fitted
    on the training rows; minibatches come from a private ``torch.Generator`` and the initial
    weights are drawn inside ``torch.random.fork_rng``, so the global RNG state is untouched.

    Args:
        data: :class:`~polycstr_lib.datasets.OfflineData`-like object (``observations (N, 9)``,
            ``actions (N, 2)``, ``costs (N,)``, ``episode_ids (N,)``, ``scenario``).
        config: model and training settings.
        progress: show a progress bar.
        cache: load from / save to the artifact cache (key: scenario, N, config).
        cache_dir: cache root; default :func:`polycstr_lib.artifacts.artifact_dir`.

    Returns:
        ``(model, log)``: the model in eval mode (float32) and a dict with ``train_episodes``,
        ``heldout_episodes``, ``train_r2``, ``heldout_r2``, ``history`` (step, train loss,
        held-out loss), ``seconds`` and ``cached`` (True when loaded).
    """
    obs_all = torch.as_tensor(data.observations, dtype=torch.float32)
    act_all = torch.as_tensor(data.actions, dtype=torch.float32)
    obs_dim, action_dim = obs_all.shape[-1], act_all.shape[-1]

    path = _cache_path(data, config, cache_dir) if cache else None
    if path is not None and path.exists():
        blob = torch.load(path, weights_only=True)
        with torch.random.fork_rng(devices=[]):
            model = build_cost_model(config, obs_dim, action_dim)
        model.load_state_dict(blob["state_dict"])
        model.target, model.gamma = config.target, config.gamma
        log = dict(blob["log"])
        log["cached"] = True
        log["cache_path"] = str(path)
        return model.eval(), log

    t0 = time.perf_counter()
    y_all = cost_targets(data, config.target, config.gamma)
    train_eps, held_eps = split_episodes(data.episode_ids, config.holdout_fraction, config.seed)
    tr = torch.as_tensor(_rows(data, train_eps))
    ho = torch.as_tensor(_rows(data, held_eps))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = build_cost_model(config, obs_dim, action_dim)
    model.target, model.gamma = config.target, config.gamma
    model.set_normalization(obs_all[tr], y_all[tr])
    y_std = float(model.y_std)

    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    ratio = config.lr_final_ratio

    def lr_at(step: int) -> float:
        frac = step / max(config.steps - 1, 1)
        return config.lr * (ratio + (1.0 - ratio) * 0.5 * (1.0 + math.cos(math.pi * frac)))

    def heldout_loss() -> float:
        if len(ho) == 0:
            return float("nan")
        pred = _predict(model, obs_all[ho], act_all[ho])
        return float((((pred - y_all[ho]) / y_std) ** 2).mean())

    history: list[list[float]] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.steps, desc=f"cost model ({config.kind})", leave=False)
    model.train()
    running = 0.0
    for step in range(config.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        idx = tr[torch.randint(len(tr), (config.batch,), generator=gen)]
        pred = model(obs_all[idx], act_all[idx])
        loss = (((pred - y_all[idx]) / y_std) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        value = loss.detach().item()
        running = 0.98 * running + 0.02 * value if step else value
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
            model.eval()
            history.append([step + 1, running, heldout_loss()])
            model.train()
            if bar is not None:
                bar.set_postfix(train=f"{running:.4f}", heldout=f"{history[-1][2]:.4f}")
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    model.eval()

    log: dict[str, Any] = {
        "config": asdict(config),
        "scenario": str(getattr(data, "scenario", "unknown")),
        "train_episodes": [int(e) for e in train_eps],
        "heldout_episodes": [int(e) for e in held_eps],
        "train_r2": r2_score(model, data, train_eps, y_all),
        "heldout_r2": r2_score(model, data, held_eps, y_all) if len(held_eps) else float("nan"),
        "history": history,
        "seconds": time.perf_counter() - t0,
        "cached": False,
    }
    if path is not None:
        from polycstr_lib.artifacts import atomic_torch_save

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save({"state_dict": model.state_dict(), "log": log}, path)
        log["cache_path"] = str(path)
    return model, log


# ----------------------------------------------------------------------------------------------
# Convexity certificate
# ----------------------------------------------------------------------------------------------
def _activation_is_convex_nondecreasing(name: str, tol: float = 1e-10) -> bool:
    """Allow-listed name and a numerical check (first and second differences) on a grid."""
    if name not in CONVEX_NONDECREASING_ACTIVATIONS:
        return False
    x = torch.linspace(-15.0, 15.0, 3001, dtype=torch.float64)
    y = _ACTIVATIONS[name](x)
    d1 = y[1:] - y[:-1]
    d2 = y[2:] - 2.0 * y[1:-1] + y[:-2]
    return bool((d1 >= -tol).all() and (d2 >= -tol).all())


def convexity_certificate(
    model: nn.Module,
    n_states: int = 64,
    n_pairs: int = 64,
    seed: int = 0,
    observations: Tensor | None = None,
    action_range: float = 1.5,
    tol: float = 1e-8,
) -> dict[str, Any]:
    """Check that ``model`` is convex in the action, structurally and numerically.

    Structural (PICNN only): every effective z-to-z weight (after the reparametrisation) is
    >= 0, the convex-path activation is convex and non-decreasing (allow-list plus a numerical
    check), and the output scale ``y_std`` is positive. A model without this structure (the
    MLP) fails the structural part.

    Numerical, on a float64 copy: for ``n_states`` random states (drawn from
    ``observations`` if given, else ``obs_mean + obs_std * N(0, 1)``) and ``n_pairs`` random
    action pairs each in ``[-action_range, action_range]^2``, the midpoint gap
    ``(ĉ(a) + ĉ(b)) / 2 - ĉ((a + b) / 2)`` (must be >= -tol · scale), and the smallest
    eigenvalue of the action Hessian (autograd) at the pair's endpoints (must be >= -tol).

    Returns:
        dict with ``structural_ok``, ``min_z_weight``, ``activation_ok``, ``output_scale_ok``,
        ``min_midpoint_gap``, ``midpoint_violations``, ``min_hessian_eig``, ``n_checks``,
        ``numerical_ok`` and ``convex`` (structural and numerical both pass).
    """
    m = copy.deepcopy(model).double().eval()
    gen = torch.Generator().manual_seed(seed)
    # --- structural
    if isinstance(m, PICNN):
        weights = m.effective_z_weights()
        min_w = min(float(w.detach().min()) for w in weights) if weights else float("inf")
        act_ok = _activation_is_convex_nondecreasing(type(m).activation)
        scale_ok = bool(m.y_std > 0)
        structural = min_w >= 0.0 and act_ok and scale_ok
    else:
        min_w, act_ok, scale_ok, structural = float("nan"), False, False, False
    # --- numerical
    obs_dim = m.obs_mean.shape[0]
    act_dim = getattr(m, "action_dim", 2)
    if observations is not None:
        pool = torch.as_tensor(observations, dtype=torch.float64)
        states = pool[torch.randint(len(pool), (n_states,), generator=gen)]
    else:
        eps = torch.randn(n_states, obs_dim, generator=gen, dtype=torch.float64)
        states = m.obs_mean + m.obs_std * eps
    s = states.repeat_interleave(n_pairs, dim=0)
    n = len(s)
    lo = -action_range
    a = lo + 2 * action_range * torch.rand(n, act_dim, generator=gen, dtype=torch.float64)
    b = lo + 2 * action_range * torch.rand(n, act_dim, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        fa, fb, fm = m(s, a), m(s, b), m(s, 0.5 * (a + b))
    gap = 0.5 * (fa + fb) - fm
    scale = 1.0 + torch.maximum(fa.abs(), fb.abs())
    violations = int((gap < -tol * scale).sum())
    _, _, hess_a = AutogradActionCost(m, s).value_grad_hess(a)
    _, _, hess_b = AutogradActionCost(m, s).value_grad_hess(b)
    hess = torch.cat([hess_a, hess_b])
    eig_min = float(torch.linalg.eigvalsh(0.5 * (hess + hess.transpose(-1, -2))).min())
    numerical = violations == 0 and eig_min >= -tol
    return {
        "structural_ok": bool(structural),
        "min_z_weight": min_w,
        "activation_ok": bool(act_ok),
        "output_scale_ok": bool(scale_ok),
        "min_midpoint_gap": float(gap.min()),
        "midpoint_violations": violations,
        "min_hessian_eig": eig_min,
        "n_checks": n,
        "numerical_ok": bool(numerical),
        "convex": bool(structural and numerical),
    }


# ----------------------------------------------------------------------------------------------
# Gradient-stability analysis
# ----------------------------------------------------------------------------------------------
def action_gradients(model: nn.Module, observations: Any, actions: Any) -> np.ndarray:
    """∇_a ĉ(s_t, a_t) along an episode.

    Args:
        model: cost model ``model(obs, action) -> (B,)``.
        observations: ``(T, obs_dim)`` raw observations.
        actions: ``(T, action_dim)`` actions.

    Returns:
        ``(T, action_dim)`` float64 gradients.
    """
    dtype = next(model.buffers()).dtype
    obs = torch.as_tensor(np.asarray(_np(observations)), dtype=dtype)
    act = torch.as_tensor(np.asarray(_np(actions)), dtype=dtype)
    _, grad = AutogradActionCost(model, obs).value_and_grad(act)
    return grad.double().numpy()


def _cosines(x: np.ndarray, y: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"expected two (T, d) arrays of one shape, got {x.shape} and {y.shape}")
    nx = np.linalg.norm(x, axis=1)
    ny = np.linalg.norm(y, axis=1)
    return np.sum(x * y, axis=1) / np.maximum(nx * ny, eps)


def direction_agreement(grads_a: Any, grads_b: Any) -> float:
    """Share of steps where two gradient sequences point the same way (cosine > 0).

    Args:
        grads_a: ``(T, d)`` gradients, e.g. of a learned cost model.
        grads_b: ``(T, d)`` gradients, e.g. finite differences of the simulator's cost.

    Returns:
        Fraction in [0, 1] (a zero gradient counts as disagreement); ``nan`` if ``T == 0``.
    """
    cos = _cosines(grads_a, grads_b)
    return float(np.mean(cos > 0.0)) if len(cos) else float("nan")


def sign_flip_rate(grads: Any) -> float:
    """Share of consecutive steps whose gradient direction flips (cosine < 0).

    Args:
        grads: ``(T, d)`` gradients along an episode.

    Returns:
        Fraction of the ``T - 1`` consecutive pairs with negative cosine; ``nan`` if ``T < 2``.
    """
    g = np.asarray(grads, dtype=np.float64)
    if len(g) < 2:
        return float("nan")
    return float(np.mean(_cosines(g[1:], g[:-1]) < 0.0))
