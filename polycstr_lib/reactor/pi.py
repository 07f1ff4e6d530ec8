"""Randomised PI controllers, the behaviour policy of the offline datasets.

Two independent loops: the initiator feed ``F_I`` acts on the polymer error ``e_P`` and the
coolant temperature ``T_c`` on the temperature error ``e_T`` (errors = setpoint - value).
Position form with a bumpless start (the bias is the inputs at the start of the episode)::

    u_cmd = u_0 + Kp e + Ki * integral(e dt)        (integral in K s or kg s / m^3)

The command passes through the same per-step rate limit as the agents' actions and then the
input bounds. Anti-windup by conditional integration: the error is not integrated while the
applied input is limited and the error pushes further into that limit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from polycstr_lib.reactor.env import ACTION_SCALE, CONTROL_INTERVAL, OBSERVATION_NAMES
from polycstr_lib.reactor.model import ReactorParams

_E_P = OBSERVATION_NAMES.index("e_P")
_E_T = OBSERVATION_NAMES.index("e_T")
_INPUTS = [OBSERVATION_NAMES.index("F_I"), OBSERVATION_NAMES.index("T_c")]


@dataclass(frozen=True)
class GainRanges:
    """Uniform ranges the PI gains of each episode are drawn from (SPEC section 3)."""

    kp_polymer: tuple[float, float] = (2e-4, 5e-3)  # (kg/h) per (kg/m^3)
    ki_polymer: tuple[float, float] = (6e-8, 1.5e-6)  # (kg/h) per (kg/m^3 s)
    kp_temperature: tuple[float, float] = (8e-3, 0.2)  # K per K
    ki_temperature: tuple[float, float] = (2e-6, 5e-5)  # K per (K s)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``(n, 4)`` gains ``[Kp_P, Ki_P, Kp_T, Ki_T]``, drawn in that order per episode."""
        lows = np.array([r[0] for r in self._ranges()])
        highs = np.array([r[1] for r in self._ranges()])
        return rng.uniform(lows, highs, size=(n, 4))

    def nominal(self) -> np.ndarray:
        """The mid-range tuning (arithmetic mean of each range): the PI baseline row."""
        return np.array([0.5 * (lo + hi) for lo, hi in self._ranges()])

    def _ranges(self):
        return (self.kp_polymer, self.ki_polymer, self.kp_temperature, self.ki_temperature)


class PIController:
    """A batch of independent two-loop PI controllers that emits env actions.

    Args:
        gains: ``(N, 4)`` gains ``[Kp_P, Ki_P, Kp_T, Ki_T]``, one row per episode, or
            ``(4,)``: one tuning for any batch size (set at :meth:`reset`).
        params: reactor constants (for the input bounds).

    The controller is itself a policy for :func:`polycstr_lib.reactor.rollout.rollout`: calling it
    is :meth:`act`.

    Call :meth:`reset` with the first observations, then :meth:`act` once per step. Actions
    are the rate-limited increments divided by :data:`ACTION_SCALE` (float64, so the env
    reproduces the controller's inputs exactly; datasets store them as float32).
    """

    def __init__(self, gains: np.ndarray, params: ReactorParams | None = None):
        gains = np.asarray(gains, dtype=np.float64)
        if gains.shape[-1:] != (4,) or gains.ndim not in (1, 2):
            raise ValueError(f"gains must have shape (N, 4) or (4,), got {gains.shape}")
        self._shared = gains.ndim == 1
        self.gains = np.atleast_2d(gains)
        self.params = params or ReactorParams()
        self.integral = np.zeros((len(gains), 2))
        self.bias = np.zeros((len(gains), 2))
        self.rate_limited = np.zeros((len(gains), 2), dtype=bool)

    def reset(self, observations: np.ndarray) -> None:
        """Start new episodes: bias = current inputs (bumpless), integrals = 0."""
        obs = np.asarray(observations, dtype=np.float64)
        if self._shared:
            self.gains = np.repeat(self.gains[:1], len(obs), axis=0)
        elif len(obs) != len(self.gains):
            raise ValueError(f"{len(obs)} observations for {len(self.gains)} controllers")
        self.bias = obs[:, _INPUTS].copy()
        self.integral = np.zeros_like(self.bias)
        self.rate_limited = np.zeros_like(self.bias, dtype=bool)

    def act(self, observations: np.ndarray) -> np.ndarray:
        """Float64 actions in [-1, 1] for ``(N, 9)`` observations; updates the integrals.

        Also sets :attr:`rate_limited`, ``(N, 2)``: where the command asked for a larger
        change than the per-step limit (the clipped-increment statistic of the dataset).
        """
        obs = np.asarray(observations, dtype=np.float64)
        errors = obs[:, [_E_P, _E_T]]
        previous = obs[:, _INPUTS]
        kp, ki = self.gains[:, [0, 2]], self.gains[:, [1, 3]]
        trial_integral = self.integral + errors * CONTROL_INTERVAL
        command = self.bias + kp * errors + ki * trial_integral
        wanted = command - previous
        step = np.clip(wanted, -ACTION_SCALE, ACTION_SCALE)
        applied = np.clip(previous + step, self.params.input_low, self.params.input_high)
        self.rate_limited = np.abs(wanted) > ACTION_SCALE
        # Conditional integration: freeze the integral where the output is limited and the
        # error would drive it further into the limit.
        limited = ~np.isclose(applied, command, rtol=0.0, atol=1e-12)
        winding = limited & (np.sign(errors) == np.sign(command - applied))
        self.integral = np.where(winding, self.integral, trial_integral)
        return (applied - previous) / ACTION_SCALE

    __call__ = act
