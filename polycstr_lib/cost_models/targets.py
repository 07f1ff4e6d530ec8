"""Training targets (one-step cost, discounted cost-to-go) and the split by episode."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor


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
