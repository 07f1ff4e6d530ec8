"""Nonlinear model predictive control on the true reactor model: the oracle of the book.

The controller knows everything the agents do not: the model's equations and constants
(:func:`polycstr_lib.reactor.model.rhs_terms`, traced into CasADi), the setpoint, the 370 K limit
and
the full state at every step. It solves, every 30 minutes, with do-mpc and IPOPT::

    min   sum_{k=1..N} (e_P(x_k)^2 + e_T(x_k)^2)  +  penalty * sum_k eps_k
    s.t.  x_{k+1} = Phi(x_k, u_k)            (Radau collocation of the reactor ODE)
          u_low <= u_k <= u_high             (input bounds)
          |u_k - u_{k-1}| <= ACTION_SCALE    (the env's per-step limit; u_{-1} = inputs now)
          T(t) <= 370 K + eps_k,  eps_k >= 0  (at every collocation point of interval k)

and applies the first move as the env action ``a = (u_0 - u_{-1}) / ACTION_SCALE`` in
[-1, 1], which the env turns back into exactly ``u_0``. The stage cost is the env's reward
with its sign flipped, on the state after each step; do-mpc's ``lterm`` at ``x_0`` is a
constant of the problem, so ``lterm + mterm`` with the same expression equals the sum of the
N rewards of the horizon plus that constant.

The temperature limit is soft, an exact (L1) penalty: when the hard problem is feasible and
the penalty exceeds the constraint's Lagrange multiplier, both have the same solution; when a
state is already past the point of no return, the hard problem is infeasible and IPOPT would
return garbage, while the soft one still returns the least-violating move.

Warm starts: each episode keeps its last solution, shifted one step forward in time, as the
next initial guess.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from polycstr_lib.reactor.datasets import SPLITS, episode_seeds
from polycstr_lib.reactor.env import (
    ACTION_SCALE,
    CONTROL_INTERVAL,
    EPISODE_STEPS,
    OBS_DIM,
    TEMPERATURE_LIMIT,
)
from polycstr_lib.reactor.model import (
    STATE_NAMES,
    STATE_SCALE,
    ReactorParams,
    reactor_rhs_casadi,
)
from polycstr_lib.reactor.rollout import Trajectories, rollout
from polycstr_lib.reactor.scenarios import get_scenario
from polycstr_lib.toolkit.cache import (
    CorruptEntry,
    Entry,
    entry_path,
    invalidate,
    load_entry,
    write_entry,
)
from polycstr_lib.toolkit.ledger import ledger_task
from polycstr_lib.toolkit.offline import require_training
from polycstr_lib.toolkit.processes import worker_count
from polycstr_lib.toolkit.store import (
    config_to_dict,
)

__all__ = [
    "NMPCConfig",
    "NMPCController",
    "NMPCPolicy",
    "NMPCRun",
    "hold_policy",
    "horizon_study",
    "run_nmpc",
]

#: Bump when the NMPC formulation changes: it is part of every cache key.
NMPC_VERSION = "nmpc-v1"
#: Scale of the inputs in the NLP (F_I in kg/h is O(1); T_c in K is O(100)).
_INPUT_SCALE = np.array([1.0, 100.0])


@dataclass(frozen=True)
class NMPCConfig:
    """Settings of the NMPC oracle (part of the cache key of its trajectories)."""

    horizon: int = 10  # prediction horizon N in 30-min intervals (5 h; study in the book)
    collocation_degree: int = 3  # degree of the Radau collocation polynomial
    finite_elements: int = 2  # collocation finite elements per 30-minute interval
    temperature_limit: float = TEMPERATURE_LIMIT  # K, the operating limit (the env's 370 K)
    temperature_penalty: float = 1e5  # L1 penalty per K above the limit per interval (soft)
    max_iter: int = 300  # IPOPT iteration limit per solve
    tol: float = 1e-8  # IPOPT convergence tolerance (on the scaled problem)

    def __post_init__(self) -> None:
        checks = {
            "horizon": self.horizon >= 1,
            "collocation_degree": 1 <= self.collocation_degree <= 5,
            "finite_elements": self.finite_elements >= 1,
            "temperature_limit": 300 < self.temperature_limit < 1000,
            "temperature_penalty": self.temperature_penalty > 0,
            "max_iter": self.max_iter >= 1,
            "tol": 0 < self.tol < 1,
        }
        for name, ok in checks.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok:
                raise ValueError(f"invalid NMPCConfig.{name}: {value!r}")
        for name in ("horizon", "collocation_degree", "finite_elements", "max_iter"):
            if not isinstance(getattr(self, name), int):
                raise ValueError(f"NMPCConfig.{name} must be an int, got {getattr(self, name)!r}")


class NMPCController:
    """One do-mpc NMPC problem for one setpoint; solves one episode's step at a time.

    Args:
        setpoint: ``[C_P (kg/m^3), T (K)]`` to track.
        config: the NMPC settings.
        params: reactor constants (the oracle's model is exactly the simulator's).
    """

    def __init__(
        self,
        setpoint: np.ndarray,
        config: NMPCConfig | None = None,
        params: ReactorParams | None = None,
    ):
        import casadi

        with warnings.catch_warnings():
            # do-mpc announces its optional extras (OPC UA, ONNX) on import
            warnings.filterwarnings(
                "ignore", message=".*feature is not available", category=UserWarning
            )
            import do_mpc

        self.config = config or NMPCConfig()
        self.params = params or ReactorParams()
        setpoint = np.asarray(setpoint, dtype=np.float64)
        if setpoint.shape != (2,) or not np.all(np.isfinite(setpoint)):
            raise ValueError(f"setpoint must be two finite numbers [C_P, T], got {setpoint!r}")
        self.setpoint = setpoint
        cfg, p = self.config, self.params

        model = do_mpc.model.Model("continuous", "SX")
        x = casadi.vertcat(*(model.set_variable("_x", name) for name in STATE_NAMES))
        u = casadi.vertcat(model.set_variable("_u", "F_I"), model.set_variable("_u", "T_c"))
        rhs = reactor_rhs_casadi(x, u, p)
        for i, name in enumerate(STATE_NAMES):
            model.set_rhs(name, rhs[i])
        model.setup()
        # after setup the model's variables are new symbols: build expressions from them
        stage = (setpoint[0] - model.x["C_P"]) ** 2 + (setpoint[1] - model.x["T"]) ** 2

        mpc = do_mpc.controller.MPC(model)
        mpc.settings.n_horizon = cfg.horizon
        mpc.settings.t_step = CONTROL_INTERVAL
        mpc.settings.state_discretization = "collocation"
        mpc.settings.collocation_type = "radau"
        mpc.settings.collocation_deg = cfg.collocation_degree
        mpc.settings.collocation_ni = cfg.finite_elements
        mpc.settings.nl_cons_check_colloc_points = True
        mpc.settings.store_full_solution = False
        mpc.settings.nlpsol_opts = {
            "ipopt.print_level": 0,
            "ipopt.sb": "yes",
            "print_time": 0,
            "ipopt.max_iter": cfg.max_iter,
            "ipopt.tol": cfg.tol,
            "ipopt.linear_solver": "mumps",
        }
        mpc.set_objective(lterm=stage, mterm=stage)
        mpc.set_rterm(F_I=0.0, T_c=0.0)
        mpc.bounds["lower", "_u", "F_I"] = p.feed_min
        mpc.bounds["upper", "_u", "F_I"] = p.feed_max
        mpc.bounds["lower", "_u", "T_c"] = p.coolant_min
        mpc.bounds["upper", "_u", "T_c"] = p.coolant_max
        for i, name in enumerate(STATE_NAMES):
            mpc.scaling["_x", name] = float(STATE_SCALE[i])
        mpc.scaling["_u", "T_c"] = float(_INPUT_SCALE[1])
        mpc.set_nl_cons(
            "T_limit",
            model.x["T"],
            ub=float(cfg.temperature_limit),
            soft_constraint=True,
            penalty_term_cons=cfg.temperature_penalty,
        )
        with warnings.catch_warnings():
            # do-mpc's own checks call numpy on CasADi values (CasADi 3.8's legacy notice)
            warnings.filterwarnings("ignore", category=FutureWarning, module="casadi")
            mpc.prepare_nlp()
        # The env's per-step rate limit on the inputs, which do-mpc has no setting for.
        u_opt = mpc.opt_x_unscaled["_u", :, 0]
        previous = [mpc.opt_p["_u_prev"], *u_opt[:-1]]
        for k in range(cfg.horizon):
            mpc.nlp_cons.append(u_opt[k] - previous[k])
            mpc.nlp_cons_lb.append(-ACTION_SCALE)
            mpc.nlp_cons_ub.append(ACTION_SCALE)
        mpc.create_nlp()
        self.mpc = mpc
        self._shift = self._shift_index()

    def _shift_index(self) -> np.ndarray:
        """Index ``src`` such that ``guess[src]`` is a solution moved one interval ahead."""
        import casadi

        mpc = self.mpc
        n = mpc._opt_x.shape[0]
        ind = mpc._opt_x(casadi.DM(np.arange(n, dtype=float)))
        src = np.arange(n)
        horizon = self.config.horizon
        for name, count in (("_x", horizon + 1), ("_u", horizon), ("_z", horizon)):
            for k in range(count - 1):
                dst = np.asarray(casadi.vertcat(*_flat(ind[name, k]))).ravel().astype(int)
                new = np.asarray(casadi.vertcat(*_flat(ind[name, k + 1]))).ravel().astype(int)
                src[dst] = new
        return src

    def initial_guess(self, state: np.ndarray, inputs: np.ndarray) -> np.ndarray:
        """A flat initial guess: the state and the inputs held over the horizon (scaled)."""
        mpc = self.mpc
        guess = mpc._opt_x(0.0)
        guess["_x"] = np.asarray(state, dtype=np.float64) / STATE_SCALE
        guess["_u"] = np.asarray(inputs, dtype=np.float64) / _INPUT_SCALE
        return np.asarray(guess.cat).ravel()

    def solve(
        self, state: np.ndarray, inputs: np.ndarray, guess: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, dict]:
        """Solve the NMPC problem from ``state`` with ``inputs`` applied last.

        Args:
            state: ``(5,)`` float64 state ``[C_A, C_I, C_R, C_P, T]``.
            inputs: ``(2,)`` inputs applied in the last interval ``[F_I, T_c]``.
            guess: flat (scaled) initial guess, from :meth:`initial_guess` or a previous
                call's return value.

        Returns:
            ``(u0, next_guess, info)``: the first inputs of the optimal plan, the solution
            shifted one interval ahead (the next call's warm start) and solver info
            (``seconds``, ``iterations``, ``success``, ``status`` and ``predicted``, the
            state the plan expects after the first interval).
        """
        mpc = self.mpc
        state = np.asarray(state, dtype=np.float64)
        inputs = np.asarray(inputs, dtype=np.float64)
        guess = np.asarray(guess, dtype=np.float64)
        if state.shape != (5,) or inputs.shape != (2,) or guess.shape != self._shift.shape:
            raise ValueError(
                f"need state (5,), inputs (2,) and guess {self._shift.shape}, got "
                f"{state.shape}, {inputs.shape} and {guess.shape}"
            )
        if not (np.all(np.isfinite(state)) and np.all(np.isfinite(inputs))):
            raise ValueError(f"state and inputs must be finite, got {state} and {inputs}")
        mpc.opt_x_num.master = _dm(guess)
        mpc.opt_p_num["_x0"] = state
        mpc.opt_p_num["_u_prev"] = inputs
        mpc.flags["initial_run"] = False  # primal warm start only
        start = time.perf_counter()
        mpc.solve()
        seconds = time.perf_counter() - start
        stats = mpc.solver_stats
        solution = np.asarray(mpc.opt_x_num.cat).ravel()
        u0 = np.asarray(mpc.opt_x_num["_u", 0, 0]).ravel() * _INPUT_SCALE
        # IPOPT meets bounds and constraints to its tolerances (1e-8 relative): snap the move
        # onto the exact bounds and rate limit, as the env would.
        u0 = inputs + np.clip(u0 - inputs, -ACTION_SCALE, ACTION_SCALE)
        u0 = np.clip(u0, self.params.input_low, self.params.input_high)
        predicted = np.asarray(mpc.opt_x_num["_x", 1, 0, -1]).ravel() * STATE_SCALE
        info = {
            "seconds": seconds,
            "iterations": int(stats.get("iter_count", -1)),
            "success": bool(stats.get("success", False)),
            "status": str(stats.get("return_status", "")),
            "predicted": predicted,
        }
        return u0, solution[self._shift], info


def _flat(entry: object) -> list:
    """Flatten a (possibly nested) list of CasADi columns from struct indexing."""
    if isinstance(entry, list):
        out = []
        for e in entry:
            out.extend(_flat(e))
        return out
    return [entry]


def _dm(values: np.ndarray) -> object:
    import casadi

    return casadi.DM(np.asarray(values, dtype=np.float64))


class NMPCPolicy:
    """The NMPC oracle as a batched :data:`polycstr_lib.reactor.rollout.Policy`.

    Episodes are solved one by one at each step, each with its own warm start.

    Args:
        scenario: scenario name (gives the setpoint).
        config: NMPC settings.
        params: reactor constants.

    Attributes:
        solve_seconds: wall time of every solve so far.
        iterations: IPOPT iterations of every solve.
        failures: number of solves IPOPT did not report as successful.
    """

    def __init__(
        self,
        scenario: str,
        config: NMPCConfig | None = None,
        params: ReactorParams | None = None,
    ):
        self.scenario = get_scenario(scenario)
        self.controller = NMPCController(self.scenario.setpoint, config, params)
        self.params = self.controller.params
        self._guesses: list[np.ndarray] = []
        self.solve_seconds: list[float] = []
        self.iterations: list[int] = []
        self.failures = 0

    def reset(self, observations: np.ndarray) -> None:
        """Start new episodes from ``(N, 9)`` first observations (cold initial guesses)."""
        obs = _check_observations(observations)
        self._guesses = [
            self.controller.initial_guess(o[:5], o[7:9]) for o in obs.astype(np.float64)
        ]

    def act(self, observations: np.ndarray) -> np.ndarray:
        """Env actions ``(N, 2)`` in [-1, 1] for ``(N, 9)`` observations."""
        obs = _check_observations(observations).astype(np.float64)
        if len(obs) != len(self._guesses):
            raise ValueError(
                f"{len(obs)} observations for {len(self._guesses)} episodes; call reset() first"
            )
        actions = np.empty((len(obs), 2))
        for i, o in enumerate(obs):
            previous = o[7:9]
            u0, self._guesses[i], info = self.controller.solve(o[:5], previous, self._guesses[i])
            self.solve_seconds.append(info["seconds"])
            self.iterations.append(info["iterations"])
            self.failures += not info["success"]
            if not np.all(np.isfinite(u0)):
                u0 = previous
            actions[i] = np.clip((u0 - previous) / ACTION_SCALE, -1.0, 1.0)
        return actions

    __call__ = act


def _check_observations(observations: np.ndarray) -> np.ndarray:
    obs = np.asarray(observations)
    if obs.ndim != 2 or obs.shape[1] != OBS_DIM:
        raise ValueError(f"observations must have shape (N, {OBS_DIM}), got {obs.shape}")
    if not np.all(np.isfinite(obs)):
        raise ValueError("observations must be finite")
    return obs


def hold_policy(observations: np.ndarray) -> np.ndarray:
    """Zero actions: hold the initial inputs for the whole episode (the optimality score's 0).

    Args:
        observations: ``(N, 9)`` observations.

    Returns:
        ``(N, 2)`` zeros.
    """
    return np.zeros((len(_check_observations(observations)), 2))


@dataclass(frozen=True)
class NMPCRun:
    """One cached batch of NMPC test episodes (the cache key is a hash of all fields)."""

    scenario: str  # scenario name
    episodes: int  # number of episodes, env seeds episode_seeds(split, episodes, seed_offset)
    seed_offset: int = 0  # offset of the seeds (0: the same test episodes as every table)
    steps: int = EPISODE_STEPS  # steps per episode
    nmpc: NMPCConfig = field(default_factory=NMPCConfig)  # the controller's settings
    split: str = "test"  # 'test' (the tables) or 'validation' (choosing settings)
    version: str = NMPC_VERSION  # formulation version; a new one invalidates old caches

    def __post_init__(self) -> None:
        get_scenario(self.scenario)
        if isinstance(self.episodes, bool) or not isinstance(self.episodes, int):
            raise ValueError(f"episodes must be an int, got {self.episodes!r}")
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if not isinstance(self.steps, int) or not 1 <= self.steps <= EPISODE_STEPS:
            raise ValueError(f"steps must be an int in [1, {EPISODE_STEPS}], got {self.steps!r}")
        if self.split not in SPLITS:
            raise ValueError(f"unknown split {self.split!r}; expected one of {SPLITS}")
        if not isinstance(self.nmpc, NMPCConfig):
            raise ValueError(f"nmpc must be an NMPCConfig, got {type(self.nmpc).__name__}")


def run_directory(run: NMPCRun) -> Path:
    """Cache folder of ``run``: ``<artifacts>/nmpc/<scenario>-<hash of the run>``."""
    return entry_path("nmpc", run, run.scenario)


_TRAJ_FIELDS = [f.name for f in fields(Trajectories) if f.name != "scenario"]


def _save(directory: Path, traj: Trajectories, stats: dict, run: NMPCRun) -> None:
    """Writes the run as a cache entry: ``trajectories.npz``, then the manifest (with the
    failure count and wall time as ``info``), which marks it complete."""
    arrays = {
        **{name: getattr(traj, name) for name in _TRAJ_FIELDS},
        "solve_seconds": np.asarray(stats["solve_seconds"]),
        "iterations": np.asarray(stats["iterations"]),
    }
    info = {"failures": int(stats["failures"]), "wall_seconds": float(stats["wall_seconds"])}
    write_entry(directory, {"trajectories.npz": arrays}, run, info)


def _load(directory: Path, run: NMPCRun) -> tuple[Trajectories, dict] | None:
    """The verified entry of ``run`` (None: none, another run's, or failed its check)."""

    def decode(entry: Entry) -> tuple[Trajectories, dict]:
        data = entry.load("trajectories.npz")
        try:
            traj = Trajectories(run.scenario, **{name: data[name] for name in _TRAJ_FIELDS})
        except KeyError as error:
            raise CorruptEntry(f"trajectories.npz: no array {error}") from None
        stats = {
            "solve_seconds": data["solve_seconds"],
            "iterations": data["iterations"],
            "failures": entry.info["failures"],
            "wall_seconds": entry.info["wall_seconds"],
            "cached": True,
        }
        return traj, stats

    return load_entry(directory, decode, run)


def nmpc_processes(run: NMPCRun, processes: int | None = None) -> int:
    """How many processes :func:`run_nmpc` solves ``run``'s episodes in.

    Episodes are independent (each its own warm start, the integrator per episode), so they
    split over processes with the same trajectories to the bit. A run of less than two full
    episodes stays in this process: starting a process costs seconds.

    Args:
        run: the run.
        processes: the most processes (default: the machine's CPUs).
    """
    return worker_count(processes, run.episodes, run.episodes * run.steps >= 2 * EPISODE_STEPS)


def _solve_episodes(
    scenario: str, config: NMPCConfig, seeds: list[int], steps: int
) -> tuple[Trajectories, list[float], list[int], int]:
    """One process's share of an NMPC run: its episodes, solve times, iterations, failures."""
    from polycstr_lib.toolkit import ledger

    ledger._STACK.append("nmpc")  # its rollouts are part of the parent's NMPC task
    policy = NMPCPolicy(scenario, config)
    traj = rollout(policy, scenario, seeds, steps=steps)
    return traj, policy.solve_seconds, policy.iterations, policy.failures


def _rollout_in_processes(
    run: NMPCRun, seeds: np.ndarray, processes: int
) -> tuple[Trajectories, list[float], list[int], int]:
    """The episodes of ``run`` split into ``processes`` contiguous parts, solved at once."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    parts = [list(map(int, part)) for part in np.array_split(np.asarray(seeds), processes)]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        done = list(
            pool.map(
                _solve_episodes,
                [run.scenario] * processes,
                [run.nmpc] * processes,
                parts,
                [run.steps] * processes,
            )
        )
    trajectories = [part[0] for part in done]
    joined = Trajectories(
        run.scenario,
        **{name: np.concatenate([getattr(t, name) for t in trajectories]) for name in _TRAJ_FIELDS},
    )
    solve_seconds = [x for part in done for x in part[1]]
    iterations = [x for part in done for x in part[2]]
    return joined, solve_seconds, iterations, sum(part[3] for part in done)


def run_nmpc(
    run: NMPCRun, progress: bool = False, force: bool = False, processes: int | None = None
) -> tuple[Trajectories, dict]:
    """NMPC closed-loop episodes, from the artifact cache when this exact run was made.

    Args:
        run: what to run (scenario, episodes, controller settings).
        progress: show a progress bar over steps (in this process only).
        force: recompute even if cached.
        processes: the most processes to solve the episodes in (:func:`nmpc_processes`).

    Returns:
        ``(trajectories, stats)``; ``stats`` has ``solve_seconds`` and ``iterations`` (one
        entry per solve), ``failures`` (solves IPOPT did not report successful),
        ``wall_seconds`` of the run and ``cached``.
    """
    directory = run_directory(run)
    if force:
        invalidate(directory)
    loaded = _load(directory, run)
    if loaded is not None:
        return loaded
    require_training("NMPC run", directory)
    start = time.perf_counter()
    seeds = episode_seeds(run.split, run.episodes, run.seed_offset)
    workers = nmpc_processes(run, processes)
    fields = {"episodes": run.episodes, "steps": run.steps, "horizon": run.nmpc.horizon,
              "processes": workers}  # fmt: skip
    with ledger_task("nmpc", scenario=run.scenario, split=run.split, **fields):
        if workers > 1:
            traj, solve_seconds, iterations, failures = _rollout_in_processes(run, seeds, workers)
        else:
            policy = NMPCPolicy(run.scenario, run.nmpc)
            traj = rollout(policy, run.scenario, seeds, steps=run.steps, progress=progress)
            solve_seconds, iterations = policy.solve_seconds, policy.iterations
            failures = policy.failures
    stats = {
        "solve_seconds": np.asarray(solve_seconds),
        "iterations": np.asarray(iterations),
        "failures": failures,
        "wall_seconds": time.perf_counter() - start,
        "cached": False,
    }
    _save(directory, traj, stats, run)
    return traj, stats


def horizon_study(
    horizons: list[int],
    scenarios: list[str],
    episodes: int = 1,
    steps: int = EPISODE_STEPS,
    base: NMPCConfig | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Closed-loop return and solve time of NMPC for several horizons (cached per run).

    Args:
        horizons: prediction horizons to compare, in control intervals.
        scenarios: scenarios to run each horizon on.
        episodes: validation episodes per scenario and horizon (the horizon is a choice, so it
            is never made on the test episodes of the tables).
        steps: steps per episode.
        base: settings other than the horizon.
        progress: show progress bars.

    Returns:
        One row per (scenario, horizon): ``return`` (mean over episodes), ``violations``
        (steps above 370 K, summed), ``median_ms`` and ``p95_ms`` (solve time per control
        step), ``failures`` and ``hours`` (the horizon in hours).

    Raises:
        ValueError: for an empty or non-positive list of horizons.
    """
    if not horizons or any(
        isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in horizons
    ):
        raise ValueError(f"horizons must be a non-empty list of positive ints, got {horizons!r}")
    base = base or NMPCConfig()
    rows = []
    for scenario in scenarios:
        for horizon in horizons:
            config = NMPCConfig(**{**config_to_dict(base), "horizon": horizon})
            run = NMPCRun(scenario, episodes, steps=steps, nmpc=config, split="validation")
            traj, stats = run_nmpc(run, progress=progress)
            seconds = np.asarray(stats["solve_seconds"])
            rows.append(
                {
                    "scenario": scenario,
                    "horizon": horizon,
                    "hours": horizon * CONTROL_INTERVAL / 3600,
                    "return": float(traj.returns.mean()),
                    "violations": int(traj.violations.sum()),
                    "median_ms": 1e3 * float(np.median(seconds)),
                    "p95_ms": 1e3 * float(np.percentile(seconds, 95)),
                    "failures": int(stats["failures"]),
                }
            )
    return pd.DataFrame(rows)
