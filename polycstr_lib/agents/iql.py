"""Implicit Q-Learning (Kostrikov, Nair & Levine, 2021), following CORL's single-file version.

V is fitted by expectile regression on min(Q1', Q2') (target critics), the twin Q by TD on
r + γ V(s'), and the actor by advantage-weighted regression with weights
min(exp(β (Q − V)), max_weight). Unlike CORL, the actor learning rate is constant (no cosine
schedule), so that the agent does not depend on the total number of steps.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from polycstr_lib.agents.data import Batch, Scalers, expand_members
from polycstr_lib.agents.layers import (
    EnsembleGaussianActor,
    EnsembleMLP,
    EnsembleQ,
    adam,
    build_members,
    mlp,
    soft_update,
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

__all__ = ["IQL", "IQLConfig", "advantage_weights", "expectile_loss"]


@dataclass(frozen=True)
class IQLConfig:
    """Hyperparameters of IQL (defaults: the paper's and CORL's)."""

    hidden_dims: tuple[int, ...] = (256, 256)  # hidden sizes of Q1, Q2, V and the actor
    lr: float = 3e-4  # Adam learning rate of the critics, the value net and the actor
    expectile: float = 0.9  # τ of the expectile regression of V on Q
    beta: float = 3.0  # inverse temperature of the advantage weights
    max_weight: float = 100.0  # clip of the exponentiated advantage
    gamma: float = 0.99  # discount factor
    polyak: float = 0.005  # target-critic update rate


def expectile_loss(diff: torch.Tensor, tau: float) -> torch.Tensor:
    """Asymmetric squared loss ``mean(|τ − 1[diff < 0]| · diff²)`` over the last axis.

    Args:
        diff: Residuals ``target − prediction``, ``(..., B)``.
        tau: Expectile in (0, 1); τ > 0.5 penalises under-estimation more.

    Returns:
        The mean loss per leading index (a scalar for 1-D ``diff``).
    """
    weight = torch.abs(tau - (diff < 0).to(diff.dtype))
    return (weight * diff.pow(2)).mean(-1)


def advantage_weights(adv: torch.Tensor, beta: float, max_weight: float) -> torch.Tensor:
    """Advantage-weighted-regression weights ``min(exp(β · adv), max_weight)``.

    Args:
        adv: Advantages (no gradient needed).
        beta: Inverse temperature.
        max_weight: Upper clip of the weights.

    Returns:
        Weights with the shape of ``adv``.
    """
    return torch.exp(beta * adv).clamp(max=max_weight)


class IQL:
    """Implicit Q-Learning agent, one member per seed.

    Args:
        obs_dim: Observation size.
        act_dim: Action size.
        config: Hyperparameters.
        scalers: Observation/reward scalers fitted on the data (identity if None).
        seed: Seed of the weight initialisation, or one seed per ensemble member (the
            global torch RNG is left untouched).
    """

    name = "iql"

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        config: IQLConfig = IQLConfig(),  # noqa: B008 (frozen, hence safe as a default)
        scalers: Scalers | None = None,
        seed: int | Sequence[int] = 0,
    ) -> None:
        self.obs_dim, self.act_dim, self.config = obs_dim, act_dim, config
        self.scalers = scalers if scalers is not None else Scalers.identity(obs_dim)
        self.seeds = as_seeds(seed)
        hidden = config.hidden_dims
        members = build_members(
            self.seeds,
            lambda: {
                "q1": mlp(obs_dim + act_dim, 1, hidden),
                "q2": mlp(obs_dim + act_dim, 1, hidden),
                "v": mlp(obs_dim, 1, hidden),
                "actor": mlp(obs_dim, act_dim, hidden, nn.Tanh),
            },
        )
        self.q1 = EnsembleQ(EnsembleMLP.stack(members["q1"]))
        self.q2 = EnsembleQ(EnsembleMLP.stack(members["q2"]))
        self.v = EnsembleMLP.stack(members["v"])
        self.actor = EnsembleGaussianActor(EnsembleMLP.stack(members["actor"]), act_dim)
        self.q1_target = copy.deepcopy(self.q1).requires_grad_(False)
        self.q2_target = copy.deepcopy(self.q2).requires_grad_(False)
        self.q_optimizer = adam([*self.q1.parameters(), *self.q2.parameters()], lr=config.lr)
        self.v_optimizer = adam(self.v.parameters(), lr=config.lr)
        self.actor_optimizer = adam(self.actor.parameters(), lr=config.lr)

    @property
    def n_members(self) -> int:
        """Number of ensemble members (seeds)."""
        return len(self.seeds)

    def update(self, batch: Batch) -> dict[str, np.ndarray]:
        """One gradient step of V, Q and the actor of every member; returns ``(S,)`` losses."""
        cfg = self.config
        batch = expand_members(batch, self.n_members, self.scalers)
        obs = self.scalers.normalize_obs(batch.observations)
        next_obs = self.scalers.normalize_obs(batch.next_observations)
        rewards = self.scalers.scale_reward(batch.rewards)
        actions = batch.actions

        with torch.no_grad():
            target_q = torch.minimum(self.q1_target(obs, actions), self.q2_target(obs, actions))
            next_v = self.v(next_obs).squeeze(-1)
            td_target = rewards + cfg.gamma * (1.0 - batch.dones) * next_v

        # Value: expectile regression towards the target critics.
        v = self.v(obs).squeeze(-1)
        adv = target_q - v
        v_loss = expectile_loss(adv, cfg.expectile)
        self.v_optimizer.zero_grad(set_to_none=True)
        v_loss.sum().backward()
        self.v_optimizer.step()

        # Critics: TD towards r + γ V(s').
        q1, q2 = self.q1(obs, actions), self.q2(obs, actions)
        q_loss = 0.5 * ((q1 - td_target).pow(2).mean(-1) + (q2 - td_target).pow(2).mean(-1))
        self.q_optimizer.zero_grad(set_to_none=True)
        q_loss.sum().backward()
        self.q_optimizer.step()
        soft_update(self.q1_target, self.q1, cfg.polyak)
        soft_update(self.q2_target, self.q2, cfg.polyak)

        # Actor: advantage-weighted regression (advantage from the V before its step, as CORL).
        weights = advantage_weights(adv.detach(), cfg.beta, cfg.max_weight)
        actor_loss = -(weights * self.actor.log_prob(obs, actions)).mean(-1)
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.sum().backward()
        self.actor_optimizer.step()

        return losses_to_numpy(
            {
                "v_loss": v_loss,
                "q_loss": q_loss,
                "actor_loss": actor_loss,
                "mean_q": q1.mean(-1),
                "mean_adv": adv.mean(-1),
            }
        )

    @torch.no_grad()
    def advantage_weights(self, observations: Any, actions: Any) -> np.ndarray:
        """The actor's AWR weights ``min(exp(β (Q − V)), max_weight)`` on raw transitions.

        Args:
            observations: ``(B, obs_dim)`` raw observations.
            actions: ``(B, act_dim)`` actions.

        Returns:
            ``(B,)`` float64 weights for a one-member agent, ``(S, B)`` otherwise (target
            critics, as in :meth:`update`).
        """
        s = self.n_members
        obs = self.scalers.normalize_obs(torch.as_tensor(observations, dtype=torch.float32))
        act = self.scalers.to_agent_actions(torch.as_tensor(actions, dtype=torch.float32))
        obs, act = obs.expand(s, *obs.shape), act.expand(s, *act.shape)
        q = torch.minimum(self.q1_target(obs, act), self.q2_target(obs, act))
        adv = q - self.v(obs).squeeze(-1)
        cfg = self.config
        weights = advantage_weights(adv, cfg.beta, cfg.max_weight).double().numpy()
        return weights[0] if s == 1 else weights

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic actions of every member for normalised ``(S, B, obs_dim)``."""
        return self.actor.deterministic(obs)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions (tanh-squashed mean) in [-1, 1] for raw observations."""
        return act_deterministic(self, obs)

    def act_members(self, obs: np.ndarray) -> np.ndarray:
        """Every member's actions for raw observations: ``(S, B, act_dim)``."""
        return act_members(self, obs)

    def member(self, index: int) -> IQL:
        """A one-member copy of member ``index``."""
        return member_agent(self, index)

    def modules(self) -> dict[str, nn.Module]:
        """The networks by name (targets included)."""
        return {
            "q1": self.q1,
            "q2": self.q2,
            "q1_target": self.q1_target,
            "q2_target": self.q2_target,
            "v": self.v,
            "actor": self.actor,
        }

    def state_dict(self) -> dict[str, Any]:
        """Weights, seeds, scalers and configuration (optimiser state is not included)."""
        return agent_state(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Loads the output of :meth:`state_dict` (same algorithm, sizes and members)."""
        load_agent_state(self, state)
