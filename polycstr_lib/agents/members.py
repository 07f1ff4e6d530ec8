"""An ensemble agent's members: acting, state dicts, and one member taken out as an agent."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from polycstr_lib.agents.data import Scalers


def as_obs_tensor(obs: np.ndarray, obs_dim: int) -> tuple[torch.Tensor, bool]:
    """Checks and converts observations for ``act``.

    Args:
        obs: Array of shape ``(B, obs_dim)`` or ``(obs_dim,)``.
        obs_dim: Expected observation size.

    Returns:
        A float32 tensor of shape ``(B, obs_dim)`` and whether the input was a single vector.

    Raises:
        ValueError: If the last dimension is not ``obs_dim`` or the array is not 1-D/2-D.
    """
    arr = np.asarray(obs, dtype=np.float32)
    if arr.ndim not in (1, 2) or arr.shape[-1] != obs_dim:
        raise ValueError(f"observations must have shape (B, {obs_dim}); got {arr.shape}")
    single = arr.ndim == 1
    return torch.from_numpy(np.ascontiguousarray(arr.reshape(-1, obs_dim))), single


def as_seeds(seed: int | Sequence[int]) -> tuple[int, ...]:
    """The members' seeds: one int (an ensemble of one) or a non-empty sequence of ints.

    Raises:
        ValueError: An empty sequence, repeated seeds or a non-integer seed.
    """
    seeds = (seed,) if isinstance(seed, int | np.integer) else tuple(seed)
    if not seeds:
        raise ValueError("an ensemble needs at least one seed")
    if not all(isinstance(s, int | np.integer) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"seeds must be integers; got {seeds}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct; got {seeds}")
    return tuple(int(s) for s in seeds)


def check_state(state: dict[str, Any], name: str, obs_dim: int, act_dim: int) -> None:
    """Raises ValueError if a saved agent state is not for this algorithm and these sizes."""
    got = (state.get("algorithm"), state.get("obs_dim"), state.get("act_dim"))
    if got != (name, obs_dim, act_dim):
        raise ValueError(
            f"state is for (algorithm, obs_dim, act_dim) = {got}, not {(name, obs_dim, act_dim)}"
        )


def losses_to_numpy(losses: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Per-member losses as float64 arrays of shape ``(S,)``."""
    return {k: v.detach().double().reshape(-1).numpy() for k, v in losses.items()}


@torch.no_grad()
def act_deterministic(agent: Any, obs: Any) -> np.ndarray:
    """Shared ``act`` of a one-member agent: z-score, ``agent.policy``, clamp to [-1, 1].

    Args:
        agent: An agent with ``policy(normalised (S, B, obs_dim)) → (S, B, act_dim)``.
        obs: ``(B, obs_dim)`` or ``(obs_dim,)`` raw observations.

    Returns:
        float32 NumPy actions of shape ``(B, act_dim)`` or ``(act_dim,)``.

    Raises:
        ValueError: Wrong observation shape, or an agent with several members (use
            ``act_members`` or ``member(k)``).
    """
    if agent.n_members != 1:
        raise ValueError(
            f"act() needs a one-member agent; this one has {agent.n_members} "
            "(use act_members(obs) or member(k))"
        )
    return act_members(agent, obs)[0]


@torch.no_grad()
def act_members(agent: Any, obs: Any) -> np.ndarray:
    """Every member's deterministic action: ``(S, B, act_dim)`` (or ``(S, act_dim)``)."""
    x, single = as_obs_tensor(obs, agent.obs_dim)
    z = agent.scalers.normalize_obs(x).unsqueeze(0).expand(agent.n_members, *x.shape)
    action = agent.scalers.to_env_actions(agent.policy(z)).clamp(-1.0, 1.0).numpy()
    return action[:, 0] if single else action


def agent_state(agent: Any) -> dict[str, Any]:
    """Shared ``state_dict``: algorithm, sizes, seeds, config, scalers and every network's
    weights (``agent.modules()``, member axis first). Optimiser state is not included."""
    return {
        "algorithm": agent.name,
        "obs_dim": agent.obs_dim,
        "act_dim": agent.act_dim,
        "seeds": list(agent.seeds),
        "config": dataclasses.asdict(agent.config),
        "scalers": agent.scalers.state_dict(),
        "nets": {k: m.state_dict() for k, m in agent.modules().items()},
    }


def member_state(state: dict[str, Any], index: int) -> dict[str, Any]:
    """The one-member state of member ``index`` of an :func:`agent_state` output."""
    seeds = state["seeds"]
    if not -len(seeds) <= index < len(seeds):
        raise IndexError(f"member {index} of an ensemble of {len(seeds)}")
    index %= len(seeds)
    nets = {
        name: {k: v[index : index + 1].clone() for k, v in net.items()}
        for name, net in state["nets"].items()
    }
    return {**state, "seeds": [seeds[index]], "nets": nets}


def load_agent_state(agent: Any, state: dict[str, Any]) -> None:
    """Shared ``load_state_dict`` for the output of :func:`agent_state`.

    Raises:
        ValueError: if the state is for another algorithm, other sizes or another number of
            members (or an older format without the member axis).
    """
    check_state(state, agent.name, agent.obs_dim, agent.act_dim)
    if "seeds" not in state:
        raise ValueError("state has no member axis (saved by an older version); retrain")
    if len(state["seeds"]) != agent.n_members:
        raise ValueError(
            f"state has {len(state['seeds'])} members; the agent has {agent.n_members}"
        )
    agent.scalers = Scalers.from_state_dict(state["scalers"])
    agent.seeds = tuple(int(s) for s in state["seeds"])
    for k, m in agent.modules().items():
        m.load_state_dict(state["nets"][k])


def member_agent(agent: Any, index: int) -> Any:
    """A new one-member agent holding a copy of member ``index`` of ``agent``."""
    state = member_state(agent.state_dict(), index)
    one = type(agent)(agent.obs_dim, agent.act_dim, agent.config, agent.scalers, state["seeds"])
    one.load_state_dict(state)
    return one
