"""The actions a correction visits, one step at a time (to draw correction paths)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from polycstr_lib.correction.safety import correct_actions

__all__ = ["correction_path"]


def correction_path(
    model: nn.Module,
    observation: torch.Tensor,
    action: torch.Tensor,
    method: str,
    steps: int,
    step_size: float,
) -> np.ndarray:
    """The start action and the action after each of ``steps`` single correction steps.

    Args:
        model: the cost model.
        observation: one observation ``(obs_dim,)``.
        action: the start action ``(action_dim,)``.
        method: ``'gradient'`` (steps of ``step_size``) or ``'newton'`` (undamped step size).
        steps: K, the number of steps.
        step_size: η of the gradient steps (ignored by Newton).

    Returns:
        ``(steps + 1, action_dim)`` float array, the start action first.
    """
    points = [action.numpy()]
    a = action[None]
    for _ in range(steps):
        a, _ = correct_actions(model, observation[None], a, method=method, steps=1,
                               step_size=step_size if method == "gradient" else None)  # fmt: skip
        points.append(a[0].numpy())
    return np.array(points)
