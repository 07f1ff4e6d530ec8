"""Behaviour cloning: a deterministic MLP policy regressed on the dataset actions (MSE)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from polycstr_lib.agents.data import Batch, Scalers, expand_members
from polycstr_lib.agents.layers import (
    EnsembleMLP,
    adam,
    build_members,
    mlp,
)
from polycstr_lib.agents.members import (
    act_deterministic,
    act_members,
    agent_state,
    as_seeds,
    load_agent_state,
    losses_to_numpy,
    member_agent,
)

__all__ = ["BC", "BCConfig"]


@dataclass(frozen=True)
class BCConfig:
    """Hyperparameters of behaviour cloning (paper: MLP 2×256)."""

    hidden_dims: tuple[int, ...] = (256, 256)  # hidden layer sizes of the policy MLP (ReLU)
    lr: float = 3e-4  # Adam learning rate (CORL's BC default)


class BC:
    """Behaviour cloning with a tanh-bounded deterministic policy, one member per seed.

    Args:
        obs_dim: Observation size.
        act_dim: Action size.
        config: Hyperparameters.
        scalers: Observation/reward scalers fitted on the data (identity if None).
        seed: Seed of the weight initialisation, or one seed per ensemble member (the
            global torch RNG is left untouched).
    """

    name = "bc"

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        config: BCConfig = BCConfig(),  # noqa: B008 (frozen, hence safe as a default)
        scalers: Scalers | None = None,
        seed: int | Sequence[int] = 0,
    ) -> None:
        self.obs_dim, self.act_dim, self.config = obs_dim, act_dim, config
        self.scalers = scalers if scalers is not None else Scalers.identity(obs_dim)
        self.seeds = as_seeds(seed)
        members = build_members(
            self.seeds,
            lambda: {"actor": mlp(obs_dim, act_dim, config.hidden_dims, nn.Tanh)},
        )
        self.actor = EnsembleMLP.stack(members["actor"])
        self.optimizer = adam(self.actor.parameters(), lr=config.lr)

    @property
    def n_members(self) -> int:
        """Number of ensemble members (seeds)."""
        return len(self.seeds)

    def update(self, batch: Batch) -> dict[str, np.ndarray]:
        """One gradient step of every member on a raw batch; returns ``(S,)`` losses."""
        batch = expand_members(batch, self.n_members, self.scalers)
        obs = self.scalers.normalize_obs(batch.observations)
        loss = (self.actor(obs) - batch.actions).pow(2).mean((-2, -1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        self.optimizer.step()
        return losses_to_numpy({"actor_loss": loss})

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic actions of every member for normalised ``(S, B, obs_dim)``."""
        return self.actor(obs)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions in [-1, 1] for raw observations (one-member agents)."""
        return act_deterministic(self, obs)

    def act_members(self, obs: np.ndarray) -> np.ndarray:
        """Every member's actions for raw observations: ``(S, B, act_dim)``."""
        return act_members(self, obs)

    def member(self, index: int) -> BC:
        """A one-member copy of member ``index``."""
        return member_agent(self, index)

    def modules(self) -> dict[str, nn.Module]:
        """The networks by name."""
        return {"actor": self.actor}

    def state_dict(self) -> dict[str, Any]:
        """Weights, seeds, scalers and configuration (optimiser state is not included)."""
        return agent_state(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Loads the output of :meth:`state_dict` (same algorithm, sizes and members)."""
        load_agent_state(self, state)
