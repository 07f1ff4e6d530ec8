"""Configuration of a cost model: architecture, target and training settings."""

from __future__ import annotations

from dataclasses import dataclass


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CostModelConfig:
    """How a cost model is built and trained (hashed into the artifact cache key)."""

    kind: str = "picnn"  # 'picnn' (convex in the action) or 'mlp' (plain NN baseline)
    hidden: int = 64  # width of every hidden layer (paper: 64)
    layers: int = 2  # number of hidden layers (paper: 2)
    lr: float = 1e-3  # Adam learning rate (cosine-decayed to lr_final_ratio * lr)
    lr_final_ratio: float = 0.1  # learning rate at the last step, relative to lr
    steps: int = 10_000  # optimiser steps (minibatches drawn with replacement)
    batch: int = 256  # minibatch size
    weight_decay: float = 0.0  # Adam L2 penalty
    seed: int = 0  # seeds the initial weights, the episode split and the minibatches
    target: str = "one_step"  # 'one_step': c_t; 'cost_to_go': discounted sum to episode end
    gamma: float = 0.9  # discount of the cost-to-go target (unused for 'one_step')
    holdout_fraction: float = 0.2  # share of episodes held out for R² (split by episode)
    eval_every: int = 1000  # steps between logged held-out losses

    def __post_init__(self) -> None:
        if self.kind not in ("picnn", "mlp"):
            raise ValueError(f"kind must be 'picnn' or 'mlp', got {self.kind!r}")
        if self.target not in ("one_step", "cost_to_go"):
            raise ValueError(f"target must be 'one_step' or 'cost_to_go', got {self.target!r}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {self.gamma}")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must lie in [0, 1), got {self.holdout_fraction}")
        for name in ("hidden", "layers", "steps", "batch", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
