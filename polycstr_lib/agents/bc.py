"""Behaviour cloning: a deterministic MLP policy regressed on the dataset actions (MSE)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from polycstr_lib.agents.nets import (
    Batch,
    Scalers,
    act_deterministic,
    adam,
    agent_state,
    load_agent_state,
    mlp,
)

__all__ = ["BC", "BCConfig"]


@dataclass(frozen=True)
class BCConfig:
    """Hyperparameters of behaviour cloning (paper: MLP 2×256)."""

    hidden_dims: tuple[int, ...] = (256, 256)  # hidden layer sizes of the policy MLP (ReLU)
    lr: float = 3e-4  # Adam learning rate (CORL's BC default)


class BC:
    """Behaviour cloning with a tanh-bounded deterministic policy.

    Args:
        obs_dim: Observation size.
        act_dim: Action size.
        config: Hyperparameters.
        scalers: Observation/reward scalers fitted on the data (identity if None).
        seed: Seed of the weight initialisation (the global torch RNG is left untouched).
    """

    name = "bc"

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        config: BCConfig = BCConfig(),  # noqa: B008 (frozen, hence safe as a default)
        scalers: Scalers | None = None,
        seed: int = 0,
    ) -> None:
        self.obs_dim, self.act_dim, self.config = obs_dim, act_dim, config
        self.scalers = scalers if scalers is not None else Scalers.identity(obs_dim)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.actor = mlp(obs_dim, act_dim, config.hidden_dims, output_activation=nn.Tanh)
        self.optimizer = adam(self.actor.parameters(), lr=config.lr)

    def update(self, batch: Batch) -> dict[str, float]:
        """One gradient step on a raw batch; returns the losses."""
        obs = self.scalers.normalize_obs(batch.observations)
        loss = (self.actor(obs) - batch.actions).pow(2).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"actor_loss": loss.item()}

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions in [-1, 1] for raw observations ``(B, obs_dim)``."""
        return act_deterministic(self.actor, self.scalers, obs, self.obs_dim)

    def modules(self) -> dict[str, nn.Module]:
        """The networks by name."""
        return {"actor": self.actor}

    def state_dict(self) -> dict[str, Any]:
        """Weights, scalers and configuration (optimiser state is not included)."""
        return agent_state(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Loads the output of :meth:`state_dict` (same algorithm and sizes)."""
        load_agent_state(self, state)
