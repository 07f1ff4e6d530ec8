"""Conservative Q-Learning for continuous actions (Kumar et al., 2020), after CORL and d3rlpy.

A SAC agent (tanh-Gaussian actor, twin critics with Polyak targets, automatic entropy tuning)
whose critic loss adds ``conservative_weight · (logsumexp_a Q(s, a) − Q(s, a_data))`` for each
critic. The logsumexp is estimated with importance sampling over uniform random actions and
actions of the current policy at s and s' (the CQL(H) estimator of CORL/d3rlpy). No entropy
term in the TD backup (CORL default), whose next action is sampled from the policy (CORL) or,
with ``deterministic_backup``, its mean tanh(μ(s')) (d3rlpy 2.8.1).

The conservative weight is fixed by default. With ``alpha_threshold`` τ set it is
``α · conservative_weight`` with a learnable Lagrange multiplier α as in d3rlpy 2.8.1: α takes
one Adam step on ``−α · w · (penalty − τ)`` before each critic step, so it rises while the
(unweighted) penalty exceeds τ and falls while it is below.

Every update reports the diagnostics of the critics: ``q_data_mean`` (mean Q at the dataset
actions; compare with :func:`~polycstr_lib.agents.data.discounted_returns`), ``td_loss``,
``conservative_penalty`` (logsumexp − data Q, unweighted) and ``conservative_weight``, each
the mean over the two critics.

The policy's sampled actions at s and s' share one actor forward pass per state (the N
samples differ only in their noise), instead of N passes over repeated states as in CORL:
the same estimator at a fraction of the cost.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from polycstr_lib.agents.data import (
    Batch,
    Scalers,
    expand_members,
    member_noise,
)
from polycstr_lib.agents.layers import (
    EnsembleMLP,
    EnsembleQ,
    EnsembleTanhGaussianActor,
    Temperature,
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
from polycstr_lib.toolkit.store import key_field

__all__ = ["CQL", "CQLConfig", "cql_penalty", "lagrange_loss"]


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
    # Lagrangian weight (d3rlpy's alpha_threshold τ): None keeps the weight fixed at
    # conservative_weight; a number makes it α · conservative_weight with α learned so that the
    # unweighted penalty stays near τ (d3rlpy 2.8.1 default 10). Left out of cache keys at None.
    alpha_threshold: float | None = key_field(None)
    conservative_alpha_lr: float = key_field(
        1e-4
    )  # Adam rate of log α (d3rlpy alpha_learning_rate)
    initial_conservative_alpha: float = key_field(1.0)  # α at step 0 (d3rlpy initial_alpha)
    # TD target at the deterministic action tanh(μ(s')) (d3rlpy 2.8.1) instead of a sampled
    # one (CORL, our default). Left out of cache keys at False.
    deterministic_backup: bool = key_field(False)

    def __post_init__(self) -> None:
        if self.alpha_threshold is not None and not math.isfinite(self.alpha_threshold):
            raise ValueError(f"alpha_threshold must be finite or None; got {self.alpha_threshold}")
        if not self.conservative_alpha_lr > 0 or not self.initial_conservative_alpha > 0:
            raise ValueError(
                "conservative_alpha_lr and initial_conservative_alpha must be positive; got "
                f"{self.conservative_alpha_lr} and {self.initial_conservative_alpha}"
            )


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
        q_random: Q at uniform random actions, ``(..., B, N_r)``.
        q_policy: Q at policy actions, ``(..., B, N_p)``.
        log_prob_random: Log-density of the uniform proposal (scalar or broadcastable).
        log_prob_policy: Log-densities of the policy actions, ``(..., B, N_p)`` (detached).
        q_data: Q at the dataset actions, ``(..., B)``.
        temperature: Temperature T of the logsumexp.

    Returns:
        The penalty per leading index (a scalar for ``(B, N)`` inputs).
    """
    logits = torch.cat([q_random - log_prob_random, q_policy - log_prob_policy], dim=-1)
    lse = temperature * torch.logsumexp(logits / temperature, dim=-1)
    return (lse - q_data).mean(-1)


#: Upper clip of the Lagrange multiplier α (d3rlpy's, for stability).
MAX_CONSERVATIVE_ALPHA = 1e6


def lagrange_loss(
    log_alpha: torch.Tensor, penalty: torch.Tensor, weight: float, threshold: float
) -> torch.Tensor:
    """Loss of the Lagrange multiplier: ``−clip(α) · weight · (penalty − τ)`` per member.

    Its gradient descent raises α while the penalty exceeds τ and lowers it while it is below
    (d3rlpy 2.8.1's ``update_alpha``).

    Args:
        log_alpha: ``(S,)`` log α, with gradient.
        penalty: ``(S,)`` unweighted conservative penalty (detached).
        weight: The constant ``conservative_weight``.
        threshold: τ.

    Returns:
        ``(S,)``.
    """
    alpha = log_alpha.exp().clamp(0.0, MAX_CONSERVATIVE_ALPHA)
    return -(alpha * weight * (penalty - threshold))


class CQL:
    """Continuous CQL agent with a SAC actor, one member per seed.

    Args:
        obs_dim: Observation size.
        act_dim: Action size.
        config: Hyperparameters.
        scalers: Observation/reward scalers fitted on the data (identity if None).
        seed: Seed of the weight initialisation and of the agent's own sampling noise (a
            private ``torch.Generator`` per member), or one seed per ensemble member. The
            global torch RNG is left untouched.
    """

    name = "cql"

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        config: CQLConfig = CQLConfig(),  # noqa: B008 (frozen, hence safe as a default)
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
                "actor": mlp(obs_dim, 2 * act_dim, hidden),
                "q1": mlp(obs_dim + act_dim, 1, hidden),
                "q2": mlp(obs_dim + act_dim, 1, hidden),
            },
        )
        self.actor = EnsembleTanhGaussianActor(EnsembleMLP.stack(members["actor"]), act_dim)
        self.q1 = EnsembleQ(EnsembleMLP.stack(members["q1"]))
        self.q2 = EnsembleQ(EnsembleMLP.stack(members["q2"]))
        self.q1_target = copy.deepcopy(self.q1).requires_grad_(False)
        self.q2_target = copy.deepcopy(self.q2).requires_grad_(False)
        self.temperature = Temperature(self.n_members, config.initial_alpha)
        self.target_entropy = (
            float(-act_dim) if config.target_entropy is None else config.target_entropy
        )
        self.generators = [torch.Generator().manual_seed(s + 1_000_003) for s in self.seeds]
        self._critic_params = [*self.q1.parameters(), *self.q2.parameters()]
        self.actor_optimizer = adam(self.actor.parameters(), lr=config.actor_lr)
        self.critic_optimizer = adam(self._critic_params, lr=config.critic_lr)
        self.alpha_optimizer = adam(self.temperature.parameters(), lr=config.alpha_lr)
        # Only with the option on: a state saved without it loads and resumes unchanged.
        self.lagrange: Temperature | None = None
        if config.alpha_threshold is not None:
            self.lagrange = Temperature(self.n_members, config.initial_conservative_alpha)
            self.lagrange_optimizer = adam(
                self.lagrange.parameters(), lr=config.conservative_alpha_lr
            )

    @property
    def n_members(self) -> int:
        """Number of ensemble members (seeds)."""
        return len(self.seeds)

    def _noise(self, kind: str, *shape: int) -> torch.Tensor:
        return member_noise(kind, shape, self.generators)

    def update(self, batch: Batch) -> dict[str, np.ndarray]:
        """One gradient step of the actor, α and the critics of every member."""
        cfg = self.config
        batch = expand_members(batch, self.n_members, self.scalers)
        obs = self.scalers.normalize_obs(batch.observations)
        next_obs = self.scalers.normalize_obs(batch.next_observations)
        rewards = self.scalers.scale_reward(batch.rewards)
        actions = batch.actions
        b, n, a = obs.shape[1], cfg.n_action_samples, self.act_dim
        log_alpha = self.temperature.log_alpha

        # Actor and entropy temperature (critics frozen so no gradient is computed for them).
        pi, log_pi = self.actor.sample(obs, self._noise("normal", b, a))
        alpha = log_alpha.exp().detach().unsqueeze(-1)
        for p in self._critic_params:
            p.requires_grad_(False)
        q_pi = torch.minimum(self.q1(obs, pi), self.q2(obs, pi))
        for p in self._critic_params:
            p.requires_grad_(True)
        actor_loss = (alpha * log_pi - q_pi).mean(-1)
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.sum().backward()
        self.actor_optimizer.step()
        alpha_loss = -(log_alpha.unsqueeze(-1) * (log_pi.detach() + self.target_entropy)).mean(-1)
        self.alpha_optimizer.zero_grad(set_to_none=True)
        alpha_loss.sum().backward()
        self.alpha_optimizer.step()

        # Critics: TD target and the samples of the conservative penalty.
        with torch.no_grad():
            next_mean, next_log_std = self.actor.mean_log_std(next_obs)
            if cfg.deterministic_backup:
                next_pi = torch.tanh(next_mean)
            else:
                next_pi, _ = self.actor.sample_from(
                    next_mean, next_log_std, self._noise("normal", b, a)
                )
            target_q = torch.minimum(
                self.q1_target(next_obs, next_pi), self.q2_target(next_obs, next_pi)
            )
            td_target = rewards + cfg.gamma * (1.0 - batch.dones) * target_q
            random_a = self._noise("uniform", b, n, a) * 2.0 - 1.0
            mean, log_std = self.actor.mean_log_std(obs)
            cur_a, cur_logp = self.actor.sample_from(
                mean.unsqueeze(2), log_std.unsqueeze(2), self._noise("normal", b, n, a)
            )
            nxt_a, nxt_logp = self.actor.sample_from(
                next_mean.unsqueeze(2), next_log_std.unsqueeze(2), self._noise("normal", b, n, a)
            )
            # All Q evaluations are at s (also for actions drawn at s'), as in CORL.
            all_actions = torch.cat([actions.unsqueeze(2), random_a, cur_a, nxt_a], dim=2)
            all_obs = obs.unsqueeze(2).expand(-1, -1, 1 + 3 * n, -1)
            log_prob_policy = torch.cat([cur_logp, nxt_logp], dim=-1)
        log_prob_random = a * math.log(0.5)

        tds, penalties, q_data_means = [], [], []
        for q_net in (self.q1, self.q2):
            q_all = q_net(all_obs, all_actions)  # (S, B, 1 + 3N)
            q_data = q_all[..., 0]
            penalties.append(
                cql_penalty(
                    q_all[..., 1 : 1 + n],
                    q_all[..., 1 + n :],
                    log_prob_random,
                    log_prob_policy,
                    q_data,
                    cfg.cql_temperature,
                )
            )
            tds.append((q_data - td_target).pow(2).mean(-1))
            q_data_means.append(q_data.detach().mean(-1))
        penalty_mean = 0.5 * (penalties[0].detach() + penalties[1].detach())
        weight: torch.Tensor | float = cfg.conservative_weight
        if self.lagrange is not None:
            # α steps first and the critics use the new α, as in d3rlpy.
            loss = lagrange_loss(
                self.lagrange.log_alpha, penalty_mean, cfg.conservative_weight, cfg.alpha_threshold
            )
            self.lagrange_optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            self.lagrange_optimizer.step()
            alpha_c = self.lagrange.log_alpha.detach().exp().clamp(0.0, MAX_CONSERVATIVE_ALPHA)
            weight = alpha_c * cfg.conservative_weight
        critic_loss = torch.zeros(())
        for td, penalty in zip(tds, penalties, strict=True):
            critic_loss = critic_loss + td + weight * penalty
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.sum().backward()
        self.critic_optimizer.step()
        soft_update(self.q1_target, self.q1, cfg.polyak)
        soft_update(self.q2_target, self.q2, cfg.polyak)

        return losses_to_numpy(
            {
                "critic_loss": critic_loss,
                "actor_loss": actor_loss,
                "alpha_loss": alpha_loss,
                "alpha": alpha.squeeze(-1),
                "q_data_mean": 0.5 * (q_data_means[0] + q_data_means[1]),
                "td_loss": 0.5 * (tds[0].detach() + tds[1].detach()),
                "conservative_penalty": penalty_mean,
                "conservative_weight": torch.as_tensor(weight).expand(self.n_members),
            }
        )

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic actions tanh(μ(s)) of every member for normalised observations."""
        return self.actor.deterministic(obs)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions tanh(μ(s)) in [-1, 1] for raw observations."""
        return act_deterministic(self, obs)

    def act_members(self, obs: np.ndarray) -> np.ndarray:
        """Every member's actions for raw observations: ``(S, B, act_dim)``."""
        return act_members(self, obs)

    def member(self, index: int) -> CQL:
        """A one-member copy of member ``index`` (its noise generator starts afresh)."""
        return member_agent(self, index)

    def modules(self) -> dict[str, nn.Module]:
        """The networks by name (targets, the entropy temperature and, with the Lagrangian
        weight, its multiplier included)."""
        nets: dict[str, nn.Module] = {
            "actor": self.actor,
            "q1": self.q1,
            "q2": self.q2,
            "q1_target": self.q1_target,
            "q2_target": self.q2_target,
            "temperature": self.temperature,
        }
        if self.lagrange is not None:
            nets["conservative_alpha"] = self.lagrange
        return nets

    def state_dict(self) -> dict[str, Any]:
        """Weights, α, seeds, scalers and configuration (optimiser state is not included)."""
        return agent_state(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Loads the output of :meth:`state_dict` (same algorithm, sizes and members)."""
        load_agent_state(self, state)
