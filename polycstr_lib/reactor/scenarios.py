"""The three operating scenarios of the paper: startup, grade change down, grade change up."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from polycstr_lib.reactor.model import ReactorParams, steady_state

TEMPERATURE_SETPOINT = 350.0  # K, held in every scenario
STARTUP_INPUTS = (1.0, 345.0)  # F_I (kg/h), T_c (K) when the empty reactor starts
PERTURBATION = 0.02  # relative perturbation of the concentrations around a steady state
TEMPERATURE_PERTURBATION = 1.0  # K, half-width of the temperature perturbation


@dataclass(frozen=True)
class Scenario:
    """One task: where episodes start and which polymer grade they must reach."""

    name: str  # identifier used by the env, the datasets and the notebooks
    polymer_setpoint: float  # target C_P, kg/m^3
    start_grade: float | None  # C_P of the steady state episodes start near; None = empty tank
    description: str  # one line for tables and figures

    @property
    def setpoint(self) -> np.ndarray:
        """``[C_P, T]`` setpoint."""
        return np.array([self.polymer_setpoint, TEMPERATURE_SETPOINT])

    def sample_initial(
        self, rng: np.random.Generator, params: ReactorParams | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw an initial state and the inputs applied before the first step.

        Args:
            rng: the generator to draw from (the env's own ``np_random``).
            params: reactor constants.

        Returns:
            ``(state, inputs)``, float64 arrays of shape ``(5,)`` and ``(2,)``.
        """
        if self.start_grade is None:
            c_a = 440.0 * rng.uniform(0.75, 1.25)
            temp = TEMPERATURE_SETPOINT + rng.uniform(-5.0, 5.0)
            return np.array([c_a, 0.0, 0.0, 0.0, temp]), np.array(STARTUP_INPUTS)
        base_state, base_inputs = _steady(self.start_grade, params or ReactorParams())
        state = base_state.copy()
        state[:4] *= 1.0 + rng.uniform(-PERTURBATION, PERTURBATION, size=4)
        state[4] += rng.uniform(-TEMPERATURE_PERTURBATION, TEMPERATURE_PERTURBATION)
        return state, base_inputs.copy()


@lru_cache(maxsize=16)
def _steady_cached(grade: float, params: ReactorParams) -> tuple[tuple, tuple]:
    ss = steady_state(grade, TEMPERATURE_SETPOINT, params)
    return tuple(ss.state), tuple(ss.inputs)


def _steady(grade: float, params: ReactorParams) -> tuple[np.ndarray, np.ndarray]:
    state, inputs = _steady_cached(grade, params)
    return np.array(state), np.array(inputs)


SCENARIOS: dict[str, Scenario] = {
    "startup": Scenario(
        "startup", 100.0, None, "startup, from an empty reactor to 100 kg/m³ of polymer"
    ),
    "grade_down": Scenario("grade_down", 60.0, 100.0, "grade change down, polymer 100 → 60 kg/m³"),
    "grade_up": Scenario("grade_up", 100.0, 60.0, "grade change up, polymer 60 → 100 kg/m³"),
}


def get_scenario(name: str) -> Scenario:
    """The scenario called ``name``.

    Raises:
        ValueError: for an unknown name; the message lists the valid ones.
    """
    try:
        return SCENARIOS[name]
    except (KeyError, TypeError):
        valid = ", ".join(repr(k) for k in SCENARIOS)
        raise ValueError(f"unknown scenario {name!r}; valid scenarios: {valid}") from None
