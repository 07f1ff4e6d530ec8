"""A training run's configuration: :class:`TrainConfig`, precisions, the agent file format."""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass

import torch

from polycstr_lib.agents import (
    ACTION_SCALINGS,
    AGENTS,
    REWARD_SCALINGS,
    AgentConfig,
)
from polycstr_lib.toolkit.store import config_key

#: Format of a saved agent (2: every tensor has the member axis first; 3: the same layout,
#: but members of an ensemble are trained with their own parameter tensors, so that a member
#: equals its seed's single run bit for bit; format-2 runs from ensembles of several seeds
#: could differ from it). Cached runs of another format are retrained.
AGENT_FORMAT = 3


#: Accepted values of ``TrainConfig.precision``.
PRECISIONS = ("float32", "bfloat16")


@dataclass(frozen=True)
class TrainConfig:
    """One offline training run."""

    algorithm: str = "iql"  # 'bc', 'iql' or 'cql'
    scenario: str = "startup"  # dataset scenario: 'startup', 'grade_down' or 'grade_up'
    steps: int = 50_000  # gradient steps (CORL uses 1e6; kept CPU-sized here)
    seed: int = 0  # seed of the weight initialisation, batch sampling and agent noise
    batch_size: int = 256  # transitions per gradient step
    agent: AgentConfig | None = None  # algorithm hyperparameters; None → its defaults
    log_interval: int = 1000  # the log holds the mean losses of every this many steps
    reward_scaling: str = "return_range"  # 'return_range' | 'std' | 'none' (see Scalers)
    # the agent's action units: 'minmax' (the data's range → [-1, 1], as the authors' early
    # code; the default, chosen on validation episodes: deviation D29), 'none' (the env's) or
    # 'std' (data mean, 3 data std per unit); see Scalers
    action_scaling: str = "minmax"
    # 'float32', or 'bfloat16': mixed precision (matmuls in bfloat16 under torch.autocast;
    # weights, optimiser state and evaluation stay float32). Faster only on CPUs with native
    # bfloat16 (AVX512-BF16 or AMX); elsewhere slower. See PRECISIONS.
    precision: str = "float32"

    def resolved(self) -> TrainConfig:
        """Returns a checked copy with the agent config filled in (used for the cache key).

        Raises:
            ValueError: Unknown algorithm or reward scaling, or non-positive sizes.
            TypeError: Agent config of the wrong class.
        """
        if self.algorithm not in AGENTS:
            raise ValueError(
                f"unknown algorithm {self.algorithm!r}; expected one of {sorted(AGENTS)}"
            )
        if self.steps < 1 or self.batch_size < 1 or self.log_interval < 1:
            raise ValueError("steps, batch_size and log_interval must be positive")
        if self.reward_scaling not in REWARD_SCALINGS:
            raise ValueError(
                f"unknown reward_scaling {self.reward_scaling!r}; expected one of {REWARD_SCALINGS}"
            )
        if self.action_scaling not in ACTION_SCALINGS:
            raise ValueError(
                f"unknown action_scaling {self.action_scaling!r}; expected one of {ACTION_SCALINGS}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; expected one of {PRECISIONS}")
        config_cls = AGENTS[self.algorithm][1]
        agent = config_cls() if self.agent is None else self.agent
        if not isinstance(agent, config_cls):
            raise TypeError(
                f"{self.algorithm} needs a {config_cls.__name__}, got {type(agent).__name__}"
            )
        return dataclasses.replace(self, agent=agent)


def precision_context(precision: str) -> contextlib.AbstractContextManager:
    """The context one gradient step runs in: bfloat16 CPU autocast, or nothing for float32.

    Raises:
        ValueError: for a precision not in :data:`PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=torch.bfloat16)


def group_key(config: TrainConfig) -> str:
    """Runs with equal group keys differ only in seed and steps: one ensemble can train them."""
    return config_key(dataclasses.replace(config, seed=0, steps=1))
