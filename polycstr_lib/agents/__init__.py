"""Offline RL agents (BC, IQL, CQL), one file per algorithm in the style of CORL.

Every agent is an ensemble of one or more members (one per seed) trained as one batched
model, and has ``update(batch) -> dict[str, ndarray]`` (losses per member), ``act(obs) ->
action`` (one-member agents: batched raw float32 observations in, float32 actions in [-1, 1]
out, deterministic), ``act_members(obs)``, ``member(k)`` (a one-member copy),
``state_dict()`` and ``load_state_dict()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from polycstr_lib.agents.bc import BC, BCConfig
from polycstr_lib.agents.cql import CQL, CQLConfig, cql_penalty, lagrange_loss
from polycstr_lib.agents.data import (
    ACTION_SCALINGS,
    REWARD_SCALINGS,
    Batch,
    Scalers,
    sample_batch,
)
from polycstr_lib.agents.iql import IQL, IQLConfig, advantage_weights, expectile_loss
from polycstr_lib.agents.members import member_state

__all__ = [
    "ACTION_SCALINGS",
    "AGENTS",
    "REWARD_SCALINGS",
    "BC",
    "CQL",
    "IQL",
    "Agent",
    "AgentConfig",
    "BCConfig",
    "Batch",
    "CQLConfig",
    "IQLConfig",
    "Scalers",
    "advantage_weights",
    "agent_from_state",
    "cql_penalty",
    "lagrange_loss",
    "default_config",
    "expectile_loss",
    "make_agent",
    "member_state",
    "sample_batch",
]

Agent = BC | IQL | CQL
AgentConfig = BCConfig | IQLConfig | CQLConfig

#: Algorithm name → (agent class, config class).
AGENTS: dict[str, tuple[type, type]] = {
    "bc": (BC, BCConfig),
    "iql": (IQL, IQLConfig),
    "cql": (CQL, CQLConfig),
}


def _lookup(name: str) -> tuple[type, type]:
    try:
        return AGENTS[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; expected one of {sorted(AGENTS)}") from None


def default_config(name: str) -> AgentConfig:
    """Returns the default hyperparameters of algorithm ``name`` ('bc', 'iql' or 'cql')."""
    return _lookup(name)[1]()


def make_agent(
    name: str,
    obs_dim: int,
    act_dim: int,
    config: AgentConfig | None = None,
    scalers: Scalers | None = None,
    seed: int | Sequence[int] = 0,
) -> Agent:
    """Builds an agent.

    Args:
        name: 'bc', 'iql' or 'cql'.
        obs_dim: Observation size.
        act_dim: Action size.
        config: Hyperparameters (the algorithm's config class); None → defaults.
        scalers: Fitted observation/reward scalers; None → identity.
        seed: Seed of the weight initialisation, or one seed per ensemble member.

    Returns:
        The agent.

    Raises:
        ValueError: Unknown algorithm name.
        TypeError: Config of the wrong class.
    """
    agent_cls, config_cls = _lookup(name)
    config = config_cls() if config is None else config
    if not isinstance(config, config_cls):
        raise TypeError(f"{name} needs a {config_cls.__name__}, got {type(config).__name__}")
    return agent_cls(obs_dim, act_dim, config, scalers, seed)


def agent_from_state(state: dict[str, Any]) -> Agent:
    """Rebuilds an agent from its ``state_dict()`` (as saved by the training loop)."""
    _, config_cls = _lookup(state["algorithm"])
    fields = dict(state["config"])
    if "hidden_dims" in fields:
        fields["hidden_dims"] = tuple(fields["hidden_dims"])
    if "seeds" not in state:
        raise ValueError("state has no member axis (saved by an older version); retrain")
    agent = make_agent(
        state["algorithm"],
        state["obs_dim"],
        state["act_dim"],
        config_cls(**fields),
        seed=state["seeds"],
    )
    agent.load_state_dict(state)
    return agent
