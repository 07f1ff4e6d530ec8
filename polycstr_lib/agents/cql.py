"""Conservative Q-Learning for continuous actions (Kumar et al., 2020), after CORL and d3rlpy.

A SAC agent (tanh-Gaussian actor, twin critics with Polyak targets, automatic entropy tuning)
whose critic loss adds ``conservative_weight · (logsumexp_a Q(s, a) − Q(s, a_data))`` for each
critic. The logsumexp is estimated with importance sampling over uniform random actions and
actions of the current policy at s and s' (the CQL(H) estimator of CORL/d3rlpy). No
Lagrangian tuning of the conservative weight, no entropy term in the TD backup (CORL default).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from polycstr_lib.agents.nets import (
    Batch,
    QNetwork,
    Scalers,
    TanhGaussianActor,
    act_deterministic,
    adam,
    agent_state,
    load_agent_state,
    soft_update,
)

__all__ = ["CQL", "CQLConfig", "cql_penalty"]


@dataclass(frozen=True)
class CQLConfig:
    """Hyperparameters of continuous CQL (defaults from d3rlpy 2.x unless noted)."""

    hidden_dims: tuple[int, ...] = (256, 256)  # hidden sizes of the actor and both critics
    actor_lr: float = 1e-4  # Adam learning rate of the actor
    critic_lr: float = 3e-4  # Adam learning rate of the critics
    alpha_lr: float = 1e-4  # Adam learning rate of the log entropy temperature
    initial_alpha: float = 1.0  # initial entropy temperature α
    target_entropy: float | None = None  # entropy target of the α tuning; None → −act_dim
    gamma: float = 0.99  # discount factor
    polyak: float = 0.005  # target-critic update rate
    conservative_weight: float = 5.0  # weight of the CQL penalty (d3rlpy 5, CORL 10)
    n_action_samples: int = 10  # samples per state for each of random / π(s) / π(s') actions
    cql_temperature: float = 1.0  # temperature of the logsumexp


def cql_penalty(
    q_random: torch.Tensor,
    q_policy: torch.Tensor,
    log_prob_random: torch.Tensor | float,
    log_prob_policy: torch.Tensor,
    q_data: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """The CQL(H) penalty ``mean_s[T · logsumexp(cat(q − log p) / T) − Q(s, a_data)]``.

    Args:
        q_random: Q at uniform random actions, ``(B, N_r)``.
        q_policy: Q at policy actions, ``(B, N_p)``.
        log_prob_random: Log-density of the uniform proposal (scalar or broadcastable).
        log_prob_policy: Log-densities of the policy actions, ``(B, N_p)`` (detached).
        q_data: Q at the dataset actions, ``(B,)``.
        temperature: Temperature T of the logsumexp.

    Returns:
        The scalar penalty.
    """
    logits = torch.cat([q_random - log_prob_random, q_policy - log_prob_policy], dim=1)
    lse = temperature * torch.logsumexp(logits / temperature, dim=1)
    return (lse - q_data).mean()


class CQL:
    """Continuous CQL agent with a SAC actor.

    Args:
        obs_dim: Observation size.
        act_dim: Action size.
        config: Hyperparameters.
        scalers: Observation/reward scalers fitted on the data (identity if None).
        seed: Seed of the weight initialisation and of the agent's own sampling noise
            (a private ``torch.Generator``; the global torch RNG is left untouched).
    """

    name = "cql"

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        config: CQLConfig = CQLConfig(),  # noqa: B008 (frozen, hence safe as a default)
        scalers: Scalers | None = None,
        seed: int = 0,
    ) -> None:
        self.obs_dim, self.act_dim, self.config = obs_dim, act_dim, config
        self.scalers = scalers if scalers is not None else Scalers.identity(obs_dim)
        hidden = config.hidden_dims
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.actor = TanhGaussianActor(obs_dim, act_dim, hidden)
            self.q1 = QNetwork(obs_dim, act_dim, hidden)
            self.q2 = QNetwork(obs_dim, act_dim, hidden)
        self.q1_target = copy.deepcopy(self.q1).requires_grad_(False)
        self.q2_target = copy.deepcopy(self.q2).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(config.initial_alpha)))
        self.target_entropy = (
            float(-act_dim) if config.target_entropy is None else config.target_entropy
        )
        self.generator = torch.Generator().manual_seed(seed + 1_000_003)
        self._critic_params = [*self.q1.parameters(), *self.q2.parameters()]
        self.actor_optimizer = adam(self.actor.parameters(), lr=config.actor_lr)
        self.critic_optimizer = adam(self._critic_params, lr=config.critic_lr)
        self.alpha_optimizer = adam([self.log_alpha], lr=config.alpha_lr)

    def update(self, batch: Batch) -> dict[str, float]:
        """One gradient step of the actor, α and the critics on a raw batch."""
        cfg = self.config
        gen = self.generator
        obs = self.scalers.normalize_obs(batch.observations)
        next_obs = self.scalers.normalize_obs(batch.next_observations)
        rewards = self.scalers.scale_reward(batch.rewards)
        actions = batch.actions
        b, n = obs.shape[0], cfg.n_action_samples

        # Actor and entropy temperature (critics frozen so no gradient is computed for them).
        pi, log_pi = self.actor.sample(obs, gen)
        alpha = self.log_alpha.exp().detach()
        for p in self._critic_params:
            p.requires_grad_(False)
        q_pi = torch.minimum(self.q1(obs, pi), self.q2(obs, pi))
        for p in self._critic_params:
            p.requires_grad_(True)
        actor_loss = (alpha * log_pi - q_pi).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()
        alpha_loss = -(self.log_alpha * (log_pi.detach() + self.target_entropy)).mean()
        self.alpha_optimizer.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_optimizer.step()

        # Critics: TD target and the samples of the conservative penalty.
        with torch.no_grad():
            next_pi, _ = self.actor.sample(next_obs, gen)
            target_q = torch.minimum(
                self.q1_target(next_obs, next_pi), self.q2_target(next_obs, next_pi)
            )
            td_target = rewards + cfg.gamma * (1.0 - batch.dones) * target_q
            random_a = torch.rand((b, n, self.act_dim), generator=gen) * 2.0 - 1.0
            cur_a, cur_logp = self.actor.sample(obs.unsqueeze(1).expand(b, n, -1), gen)
            nxt_a, nxt_logp = self.actor.sample(next_obs.unsqueeze(1).expand(b, n, -1), gen)
            # All Q evaluations are at s (also for actions drawn at s'), as in CORL.
            all_actions = torch.cat([actions.unsqueeze(1), random_a, cur_a, nxt_a], dim=1)
            all_obs = obs.unsqueeze(1).expand(b, 1 + 3 * n, -1)
            log_prob_policy = torch.cat([cur_logp, nxt_logp], dim=1)
        log_prob_random = self.act_dim * math.log(0.5)

        critic_loss = torch.zeros(())
        penalties = []
        q_data_mean = 0.0
        for q_net in (self.q1, self.q2):
            q_all = q_net(all_obs, all_actions)  # (B, 1 + 3N)
            q_data = q_all[:, 0]
            penalty = cql_penalty(
                q_all[:, 1 : 1 + n],
                q_all[:, 1 + n :],
                log_prob_random,
                log_prob_policy,
                q_data,
                cfg.cql_temperature,
            )
            td = (q_data - td_target).pow(2).mean()
            critic_loss = critic_loss + td + cfg.conservative_weight * penalty
            penalties.append(penalty.detach())
            q_data_mean += 0.5 * q_data.detach().mean().item()
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        soft_update(self.q1_target, self.q1, cfg.polyak)
        soft_update(self.q2_target, self.q2, cfg.polyak)

        return {
            "critic_loss": critic_loss.item(),
            "actor_loss": actor_loss.item(),
            "alpha_loss": alpha_loss.item(),
            "alpha": alpha.item(),
            "cql_penalty": 0.5 * (penalties[0] + penalties[1]).item(),
            "mean_q": q_data_mean,
        }

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions tanh(μ(s)) in [-1, 1] for raw observations."""
        return act_deterministic(self.actor.deterministic, self.scalers, obs, self.obs_dim)

    def modules(self) -> dict[str, nn.Module]:
        """The networks by name (targets included)."""
        return {
            "actor": self.actor,
            "q1": self.q1,
            "q2": self.q2,
            "q1_target": self.q1_target,
            "q2_target": self.q2_target,
        }

    def state_dict(self) -> dict[str, Any]:
        """Weights, α, scalers and configuration (optimiser state is not included)."""
        return agent_state(self, log_alpha=self.log_alpha.detach().clone())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Loads the output of :meth:`state_dict` (same algorithm and sizes)."""
        load_agent_state(self, state)
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
