"""A scenario's task: what every correction sweep of one scenario needs from its dataset.

:class:`ScenarioTask` bundles the scenario's name, its offline data and data trajectories,
the return bounds that normalise rewards (``return_min`` → 0, ``return_max`` → 100) and the
data's action spread σ_a; :func:`load_task` builds it from the scenario's (verified)
dataset. It replaces the list ``(scenario, r_min, r_max, action_scale)`` that the sweeps,
the choice and the ablations took one by one. :class:`CorrectionSetup` adds what a sweep
corrects and with what: the base agents and the cost models.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from polycstr_lib.correction.safety import action_spread
from polycstr_lib.reactor.datasets import ensure_dataset, load_offline_data, load_trajectories

__all__ = ["CorrectionSetup", "ScenarioTask", "load_task"]


@dataclass(frozen=True, eq=False)
class ScenarioTask:
    """One scenario's offline data and the constants derived from it (see the module)."""

    scenario: str  # scenario name (polycstr_lib.reactor.scenarios)
    return_min: float  # worst data return: 0 of the normalised reward
    return_max: float  # best data return: 100 of the normalised reward
    action_scale: np.ndarray  # σ_a, the data's per-dimension action spread (float64)
    data: Any = field(default=None, repr=False)  # OfflineData (None in tests of the sweeps)
    trajectories: Any = field(default=None, repr=False)  # the data's Trajectories

    def __post_init__(self) -> None:
        if not isinstance(self.scenario, str) or not self.scenario:
            raise ValueError(f"scenario must be a scenario name, got {self.scenario!r}")
        low, high = float(self.return_min), float(self.return_max)
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise ValueError(
                f"need finite return_min < return_max, got {self.return_min}, {self.return_max}"
            )
        object.__setattr__(self, "return_min", low)
        object.__setattr__(self, "return_max", high)
        object.__setattr__(self, "action_scale", np.asarray(self.action_scale, dtype=np.float64))

    @property
    def return_bounds(self) -> tuple[float, float]:
        """``(return_min, return_max)``, the normalisation of the scenario's rewards."""
        return self.return_min, self.return_max


def load_task(scenario: str) -> ScenarioTask:
    """The task of ``scenario``: its dataset (generated if missing), bounds and σ_a.

    Raises:
        KeyError: an unknown scenario; DatasetError: a dataset that fails verification.
    """
    ensure_dataset(scenario)
    data = load_offline_data(scenario)
    trajectories, side = load_trajectories(scenario)
    return ScenarioTask(
        scenario=scenario,
        return_min=side["return_min"],
        return_max=side["return_max"],
        action_scale=action_spread(data),
        data=data,
        trajectories=trajectories,
    )


@dataclass(frozen=True, eq=False)
class CorrectionSetup:
    """What a correction is chosen for: the base agents, the cost models, their scenario."""

    agents: Mapping[tuple[str, int], Any]  # (algorithm, seed) → agent with act(obs) → action
    cost_models: Mapping[str, Any]  # model key → cost model (the variants name the key)
    task: ScenarioTask  # the scenario: return bounds, σ_a, data
