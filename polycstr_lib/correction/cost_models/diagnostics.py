"""Regression and gradient diagnostics: R², action gradients, direction agreement, sign flips."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from polycstr_lib.correction.cost_models.conditioned import AutogradActionCost
from polycstr_lib.correction.cost_models.targets import _np, _rows, cost_targets


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
