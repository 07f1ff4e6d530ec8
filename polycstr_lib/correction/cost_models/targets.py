"""Training targets (one-step cost, discounted cost-to-go), action windows, episode split."""

from __future__ import annotations

import copy
import dataclasses
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


def check_horizon(horizon: Any) -> int:
    """``horizon`` as an int, or ValueError unless it is an integer >= 1 (bool is not)."""
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
        raise ValueError(f"horizon must be an integer >= 1, got {horizon!r}")
    return int(horizon)


def action_windows(data: Any, horizon: int) -> Any:
    """The dataset with each row's action replaced by the next ``horizon`` actions.

    Row t gets ``(a_t, a_{t+1}, …, a_{t+H−1})`` side by side, ``(N, H * action_dim)``; an
    action past its episode's end is 0 (that episode's cost-to-go does not depend on it). The
    rows, costs and episode ids are unchanged, so the cost-to-go target of row t is exact: a
    cost model trained on the result with ``target='cost_to_go'`` predicts the cost of an
    action *sequence* (multi-step correction, :mod:`polycstr_lib.correction.safety`). The scenario
    label
    becomes ``'<scenario>_h<H>'`` so that the artifact cache tells the models apart.

    Args:
        data: :class:`~polycstr_lib.reactor.datasets.OfflineData` or a namespace like it
        (``actions``
            ``(N, action_dim)``, ``episode_ids`` ``(N,)`` with each episode's rows in time
            order, ``scenario``).
        horizon: H >= 1; 1 returns ``data`` itself.

    Returns:
        A copy of ``data`` with the windowed float32 actions and the new label.

    Raises:
        ValueError: ``horizon`` not an integer >= 1, or actions and episode ids of different
            lengths.
    """
    if check_horizon(horizon) == 1:
        return data
    actions = torch.as_tensor(data.actions, dtype=torch.float32)
    ids = torch.as_tensor(_np(data.episode_ids)).reshape(-1)
    if actions.dim() != 2 or len(actions) != len(ids):
        raise ValueError(
            f"actions {tuple(actions.shape)} and episode_ids {tuple(ids.shape)} do not match"
        )
    n = len(actions)
    blocks = [actions]
    for k in range(1, horizon):
        shifted = torch.zeros_like(actions)
        if k < n:
            # rows of one episode are contiguous and in order, so t+k lies in t's episode
            # iff the ids at t and t+k agree
            same = (ids[k:] == ids[:-k]).unsqueeze(-1)
            shifted[: n - k] = torch.where(same, actions[k:], 0.0)
        blocks.append(shifted)
    changes = {
        "actions": torch.cat(blocks, dim=1),
        "scenario": f"{getattr(data, 'scenario', 'unknown')}_h{horizon}",
    }
    if dataclasses.is_dataclass(data):
        return dataclasses.replace(data, **changes)
    out = copy.copy(data)  # a namespace-like object
    for name, value in changes.items():
        setattr(out, name, value)
    return out


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
