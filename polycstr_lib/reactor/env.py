"""Gymnasium environments: one reactor (:class:`PolyCSTREnv`) and N in lockstep
(:class:`PolyCSTRVectorEnv`), both on the batched integrator."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from polycstr_lib.reactor.integrator import advance
from polycstr_lib.reactor.model import ReactorParams
from polycstr_lib.reactor.scenarios import SCENARIOS, Scenario, get_scenario

CONTROL_INTERVAL = 1800.0  # s, inputs are held for 30 minutes
EPISODE_STEPS = 200  # 100 h
#: Largest input change per step, [F_I (kg/h), T_c (K)]: action +-1 moves the input this much.
ACTION_SCALE = np.array([0.5, 5.0])
TEMPERATURE_LIMIT = 370.0  # K, operating limit counted as a constraint violation
OBSERVATION_NAMES = ("C_A", "C_I", "C_R", "C_P", "T", "e_P", "e_T", "F_I", "T_c")
OBS_DIM = len(OBSERVATION_NAMES)  # 9
ACT_DIM = 2  # changes of F_I and T_c, scaled to [-1, 1]
# Generous physical bounds (a runaway stays well inside); slightly negative lows leave room
# for round-off in species that start at zero.
OBSERVATION_LOW = np.array(
    [-1.0, -1.0, -1e-3, -1.0, 200.0, -1000.0, -650.0, 0.0, 300.0], dtype=np.float32
)
OBSERVATION_HIGH = np.array(
    [1000.0, 1000.0, 1.0, 1000.0, 1000.0, 1000.0, 150.0, 2.5, 350.0], dtype=np.float32
)


def _check_actions(actions: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Validated float64 copy of ``actions`` (never the caller's array), clipped to [-1, 1]."""
    try:
        arr = np.array(actions, dtype=np.float64)  # np.array copies
    except (TypeError, ValueError) as exc:
        raise ValueError(f"action must be numeric with shape {shape}: {exc}") from None
    if arr.shape != shape:
        raise ValueError(f"action must have shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"action must be finite, got NaN or inf in {arr.tolist()}")
    return np.clip(arr, -1.0, 1.0)


class _Core:
    """The state of N reactors and the step shared by both envs (arrays only)."""

    def __init__(self, n: int, params: ReactorParams):
        self.params = params
        self.state = np.zeros((n, 5))
        self.inputs = np.zeros((n, 2))
        self.setpoint = np.zeros((n, 2))
        self.step_guess = np.full(n, CONTROL_INTERVAL)
        self.steps = np.zeros(n, dtype=np.int64)

    def reset_one(self, i: int, scenario: Scenario, rng: np.random.Generator) -> None:
        self.state[i], self.inputs[i] = scenario.sample_initial(rng, self.params)
        self.setpoint[i] = scenario.setpoint
        self.step_guess[i] = CONTROL_INTERVAL
        self.steps[i] = 0

    def observe(self, idx=slice(None)) -> np.ndarray:
        state, inputs, setpoint = self.state[idx], self.inputs[idx], self.setpoint[idx]
        errors = setpoint - state[..., [3, 4]]
        return np.concatenate([state, errors, inputs], axis=-1).astype(np.float32)

    def step(self, actions: np.ndarray, idx: np.ndarray):
        """Apply clipped ``actions`` (len(idx), 2) to the reactors ``idx``."""
        low, high = self.params.input_low, self.params.input_high
        inputs = np.clip(self.inputs[idx] + actions * ACTION_SCALE, low, high)
        state, guess = advance(
            self.state[idx], inputs, CONTROL_INTERVAL, self.params, self.step_guess[idx]
        )
        self.state[idx], self.inputs[idx], self.step_guess[idx] = state, inputs, guess
        self.steps[idx] += 1
        errors = self.setpoint[idx] - state[:, [3, 4]]
        reward = -(errors**2).sum(axis=1)
        cost = np.abs(errors).sum(axis=1)
        violation = state[:, 4] > TEMPERATURE_LIMIT
        truncated = self.steps[idx] >= EPISODE_STEPS
        return reward, cost, violation, truncated


def _spaces() -> tuple[spaces.Box, spaces.Box]:
    obs = spaces.Box(OBSERVATION_LOW, OBSERVATION_HIGH, dtype=np.float32)
    act = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    return obs, act


class PolyCSTREnv(gym.Env):
    """Exothermic free-radical polymerisation in a jacketed CSTR, controlled every 30 min.

    ## Description
    The reactor of Durkin et al. (arXiv 2507.22640), model from the authors' early code: a
    monomer and an initiator are fed to a 1 m^3 tank; the initiator decomposes into radicals
    that propagate polymer chains and release heat; a coolant jacket removes it. The agent
    moves the initiator feed ``F_I`` and the coolant temperature ``T_c`` to bring the polymer
    concentration ``C_P`` and the temperature ``T`` to their setpoints. Physics in float64,
    integrated over each interval by :func:`polycstr_lib.reactor.integrator.advance`.

    ## Action Space
    ``Box(-1, 1, (2,), float32)``: the *change* of the inputs, scaled by the per-step limit.

    | Num | Action            | Effect at +-1     | Input bounds     |
    |-----|-------------------|-------------------|------------------|
    | 0   | change of F_I     | +-0.5 kg/h        | [0, 2.5] kg/h    |
    | 1   | change of T_c     | +-5 K             | [300, 350] K     |

    Out-of-range actions act exactly like the nearest bound; the new inputs are then clipped
    to their bounds. NaN/inf or a wrong shape raise ``ValueError``.

    ## Observation Space
    ``Box(OBSERVATION_LOW, OBSERVATION_HIGH, (9,), float32)`` (generous physical bounds):

    | Num | Observation | Unit    | Meaning                                 |
    |-----|-------------|---------|-----------------------------------------|
    | 0   | C_A         | kg/m^3  | monomer                                 |
    | 1   | C_I         | kg/m^3  | initiator                               |
    | 2   | C_R         | mol/m^3 | radicals                                |
    | 3   | C_P         | kg/m^3  | polymer                                 |
    | 4   | T           | K       | reactor temperature                     |
    | 5   | e_P         | kg/m^3  | polymer setpoint - C_P                  |
    | 6   | e_T         | K       | temperature setpoint (350 K) - T        |
    | 7   | F_I         | kg/h    | initiator feed applied in the last step |
    | 8   | T_c         | K       | coolant temperature applied last        |

    ## Rewards
    ``r = -(e_P^2 + e_T^2)`` on the state after the step. ``info["cost"]`` is
    ``|e_P| + |e_T|`` of the same state (the cost models' target).

    ## Starting State
    Drawn from the scenario (``startup``: empty tank, ``C_A = 440 U(0.75, 1.25)``,
    ``T = 350 + U(-5, 5)``, inputs (1.0 kg/h, 345 K); ``grade_down``/``grade_up``: the steady
    state at ``C_P`` = 100 / 60 kg/m^3 with +-2 % on each concentration and +-1 K on T).

    ## Episode End
    Never terminated. Truncated after 200 steps (100 h). A temperature above 370 K is a
    constraint violation (``info["constraint_violation"]``) but does not end the episode.

    ## Info
    ``cost``, ``constraint_violation``, ``state`` (float64 ``[C_A, C_I, C_R, C_P, T]`` after
    the step), ``inputs`` (float64 ``[F_I, T_c]`` applied during the step), ``setpoint``.

    ## Arguments
    ``gymnasium.make("PolyCSTR-v0", scenario="startup")``; ``scenario`` is one of
    ``startup``, ``grade_down``, ``grade_up``; ``params`` overrides the reactor constants.

    ## Version History
    * v0: first version (this project).
    """

    metadata = {"render_modes": []}

    def __init__(self, scenario: str = "startup", params: ReactorParams | None = None):
        self.scenario = get_scenario(scenario)
        self.params = params or ReactorParams()
        self.observation_space, self.action_space = _spaces()
        self._core = _Core(1, self.params)
        self._index = np.array([0])
        self._needs_reset = True

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._core.reset_one(0, self.scenario, self.np_random)
        self._needs_reset = False
        return self._core.observe(0), self._info(None, None)

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError("call reset() before step() (and after an episode ends)")
        clipped = _check_actions(action, (2,))
        reward, cost, violation, truncated = self._core.step(clipped[None], self._index)
        self._needs_reset = bool(truncated[0])
        info = self._info(float(cost[0]), bool(violation[0]))
        return self._core.observe(0), float(reward[0]), False, bool(truncated[0]), info

    def _info(self, cost, violation) -> dict:
        core = self._core
        info = {"state": core.state[0].copy(), "inputs": core.inputs[0].copy()}
        info["setpoint"] = core.setpoint[0].copy()
        if cost is not None:
            info["cost"] = cost
            info["constraint_violation"] = violation
        return info


class PolyCSTRVectorEnv(VectorEnv):
    """N reactors of one scenario stepped together on the batched integrator.

    Gymnasium's ``VectorEnv`` API with next-step autoreset: after a sub-env truncates, the
    next ``step`` resets it (its action is ignored) and returns the new first observation.
    ``reset(seed=s)`` seeds sub-env ``i`` with ``s + i``, so the trajectories equal those of
    ``N`` :class:`PolyCSTREnv` reset with seeds ``s, s+1, ...``. Infos are arrays over envs:
    ``cost``, ``constraint_violation``, ``state`` (N, 5), ``inputs`` (N, 2), ``setpoint``.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int, scenario: str = "startup", params=None):
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = int(num_envs)
        self.scenario = get_scenario(scenario)
        self.params = params or ReactorParams()
        self.single_observation_space, self.single_action_space = _spaces()
        self.observation_space = gym.vector.utils.batch_space(
            self.single_observation_space, self.num_envs
        )
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self._core = _Core(self.num_envs, self.params)
        self._rngs: list[np.random.Generator] = [
            np.random.default_rng() for _ in range(self.num_envs)
        ]
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._all = np.arange(self.num_envs)

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            seeds = [seed + i for i in range(self.num_envs)] if np.isscalar(seed) else seed
            if len(seeds) != self.num_envs:
                raise ValueError(f"need {self.num_envs} seeds, got {len(seeds)}")
            self._rngs = [gym.utils.seeding.np_random(int(s))[0] for s in seeds]
        for i in range(self.num_envs):
            self._core.reset_one(i, self.scenario, self._rngs[i])
        self._autoreset[:] = False
        return self._core.observe(), self._infos(None, None)

    def step(self, actions):
        clipped = _check_actions(actions, (self.num_envs, 2))
        n = self.num_envs
        reward, cost = np.zeros(n), np.zeros(n)
        violation, truncated = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        live = np.flatnonzero(~self._autoreset)
        for i in np.flatnonzero(self._autoreset):
            self._core.reset_one(i, self.scenario, self._rngs[i])
        if live.size:
            r, c, v, t = self._core.step(clipped[live], live)
            reward[live], cost[live], violation[live], truncated[live] = r, c, v, t
        self._autoreset = truncated.copy()
        terminated = np.zeros(n, dtype=bool)
        return self._core.observe(), reward, terminated, truncated, self._infos(cost, violation)

    def _infos(self, cost, violation) -> dict:
        core = self._core
        info = {"state": core.state.copy(), "inputs": core.inputs.copy()}
        info["setpoint"] = core.setpoint.copy()
        if cost is not None:
            info["cost"] = cost
            info["constraint_violation"] = violation
        return info


def register_envs() -> None:
    """Register ``PolyCSTR-v0`` with Gymnasium (idempotent)."""
    if "PolyCSTR-v0" not in gym.registry:
        gym.register(
            id="PolyCSTR-v0",
            entry_point="polycstr_lib.reactor.env:PolyCSTREnv",
            vector_entry_point="polycstr_lib.reactor.env:PolyCSTRVectorEnv",
            disable_env_checker=False,
        )


__all__ = [
    "ACTION_SCALE",
    "CONTROL_INTERVAL",
    "EPISODE_STEPS",
    "OBSERVATION_NAMES",
    "OBS_DIM",
    "ACT_DIM",
    "SCENARIOS",
    "TEMPERATURE_LIMIT",
    "PolyCSTREnv",
    "PolyCSTRVectorEnv",
    "register_envs",
]
