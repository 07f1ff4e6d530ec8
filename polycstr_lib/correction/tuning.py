"""Choosing the safety layer's correction on validation episodes.

A :class:`CorrectionVariant` names one kind of correction (descent method, cost model, K,
trust region, pessimism); its step size is swept over a grid. :func:`sweep_corrections` runs
every base agent uncorrected and corrected by every (variant, step size) on the same
*validation* episodes in one batched rollout and returns a tidy table;
:func:`choose_from_sweep` applies the selection rule to such a table and
:func:`choose_correction` turns its pick into a :class:`CorrectionChoice`;
:func:`corrected_policy` builds the chosen "+" policy for the results pages.

Selection rule (per variant): a step size is *safe* when no base run (algorithm, seed) is
made worse by it on validation: its mean and its worst-episode normalised reward are not
below the base's by more than ``tol`` points and it has no more runaways. Among the safe step
sizes the one with the largest interquartile mean (IQM) of the runs' validation means is
chosen; step sizes within ``tie_tol`` of the best count as ties and the smallest of them
wins (the least intervention). When no step size is safe, the largest IQM is chosen and
flagged ``safe = False``. The overall choice is the variant whose chosen setting has the
largest IQM among the safe ones (the same tie rule, ties going to the earlier variant).
The *safe range* of a variant is the longest run of consecutive safe step sizes of its grid.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from polycstr_lib.correction.cost_models import check_horizon
from polycstr_lib.correction.safety import METHODS, CorrectedPolicy, correct_actions
from polycstr_lib.correction.task import CorrectionSetup
from polycstr_lib.reactor.datasets import RUNAWAY_TEMPERATURE, episode_seeds
from polycstr_lib.reactor.metrics import episode_metrics
from polycstr_lib.reactor.rollout import rollout_side_by_side
from polycstr_lib.toolkit.cache import entry_path, invalidate, load_entry, write_entry
from polycstr_lib.toolkit.stats import iqm

__all__ = [
    "DEFAULT_STEP_SIZES",
    "DEFAULT_VARIANTS",
    "CorrectionChoice",
    "CorrectionVariant",
    "choose_correction",
    "choose_from_sweep",
    "corrected_policy",
    "correction_path_costs",
    "preferred_model",
    "safe_ranges",
    "summarise_runs",
    "sweep_corrections",
]


@dataclass(frozen=True)
class CorrectionVariant:
    """One kind of correction; its step size is what the sweep varies."""

    method: str = (
        "gradient"  # 'gradient', 'newton' or 'normalised' (see polycstr_lib.correction.safety)
    )
    model: str = "picnn"  # key of the cost model in the ``cost_models`` mapping
    steps: int = 3  # correction steps K
    trust_radius: float | None = None  # ρ: stay within ρ σ_a of the policy's action; None: off
    pessimism: float = 0.0  # κ of the pessimistic ensemble cost (needs a CostEnsemble model)
    horizon: int = 1  # H: correct the next H actions jointly (model trained on action windows)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.trust_radius is not None and not self.trust_radius > 0:
            raise ValueError(f"trust_radius must be > 0 or None, got {self.trust_radius}")
        if not 0.0 <= self.pessimism <= 1.0:
            raise ValueError(f"pessimism must lie in [0, 1], got {self.pessimism}")
        check_horizon(self.horizon)

    def policy_kwargs(self, step_size: float, action_scale: Any) -> dict[str, Any]:
        """Keyword arguments of :class:`~polycstr_lib.correction.safety.CorrectedPolicy` (model
        aside)."""
        needs_scale = self.method == "normalised" or self.trust_radius is not None
        return {
            "method": self.method,
            "steps": self.steps,
            "step_size": float(step_size),
            "action_scale": None if action_scale is None or not needs_scale else action_scale,
            "trust_radius": self.trust_radius,
            "pessimism": self.pessimism,
            "horizon": self.horizon,
        }


#: The chapter's variants: the paper's plain gradient step, the scale-free step, the plain
#: step inside a trust region of one data spread, and the plain step on the pessimistic cost
#: of a PICNN ensemble (model key ``"ensemble"``).
DEFAULT_VARIANTS: dict[str, CorrectionVariant] = {
    "plain": CorrectionVariant("gradient"),
    "normalised": CorrectionVariant("normalised"),
    "trust region": CorrectionVariant("gradient", trust_radius=1.0),
    "uncertainty": CorrectionVariant("gradient", model="ensemble", pessimism=0.5),
}


@dataclass(frozen=True, eq=False)
class CorrectionChoice:
    """The setting :func:`choose_correction` chose on validation episodes."""

    variant: str  # name of the chosen variant
    step_size: float  # its chosen step size
    iqm: float  # IQM over the runs of their validation means at that setting
    safe: bool  # no run made worse by it (False: no step size of the grid was safe)
    setting: CorrectionVariant  # the chosen variant itself
    model: str  # key of its cost model
    policy_kwargs: dict[str, Any]  # keyword arguments of CorrectedPolicy (model aside)
    per_variant: pd.DataFrame  # choose_from_sweep's table: the chosen step of every variant

    def step_text(self) -> str:
        """The step size as the pages print it (``f"{step_size:g}"``)."""
        return f"{self.step_size:g}"

    def safe_text(self) -> str:
        """``'safe'``, or why not, as the pages print it."""
        return "safe" if self.safe else "not safe (no step size of its grid was)"


#: Step-size grids: raw cost units for gradient steps, data spreads σ_a for normalised steps.
DEFAULT_STEP_SIZES: dict[str, tuple[float, ...]] = {
    "plain": (1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
    "normalised": (0.03, 0.1, 0.3, 1.0, 3.0),
    "trust region": (1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
    "uncertainty": (1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
}


def _fingerprint(obj: Any, h: Any = None) -> str:
    """SHA-256 of nested dicts / sequences / tensors / arrays / scalars (content address)."""
    top = h is None
    h = hashlib.sha256() if top else h
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if hasattr(obj, "state_dict") and callable(obj.state_dict):
        obj = obj.state_dict()
    if isinstance(obj, Mapping):
        for key in sorted(obj, key=str):
            h.update(str(key).encode())
            _fingerprint(obj[key], h)
    elif isinstance(obj, list | tuple):
        h.update(f"seq{len(obj)}".encode())
        for item in obj:
            _fingerprint(item, h)
    elif isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, np.ndarray):
        h.update(f"{obj.dtype}{obj.shape}".encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    else:
        h.update(repr(obj).encode())
    return h.hexdigest() if top else ""


def _variant_key(variant: CorrectionVariant) -> str:
    """A variant's fields as text; a one-step horizon is left out, so that the sweeps cached
    before multi-step correction existed keep their keys."""
    fields = asdict(variant)
    if fields["horizon"] == 1:
        del fields["horizon"]
    return repr(fields)


@dataclass(frozen=True)
class _SweepKey:
    """Everything a sweep's numbers depend on (hashed into its cache file name)."""

    scenario: str
    split: str
    episodes: int
    r_min: float
    r_max: float
    action_scale: tuple[float, ...]
    tol: float
    variants: tuple[tuple[str, str], ...]
    step_sizes: tuple[tuple[str, tuple[float, ...]], ...]
    agents: tuple[tuple[str, int, str], ...]
    models: tuple[tuple[str, str], ...]


def _check_inputs(
    agents: Mapping[tuple[str, int], Any],
    cost_models: Mapping[str, nn.Module],
    variants: Mapping[str, CorrectionVariant],
    step_sizes: Mapping[str, Sequence[float]],
    episodes: int,
    action_scale: Any,
) -> np.ndarray:
    if not agents:
        raise ValueError("need at least one base agent")
    for key in agents:
        if not (isinstance(key, tuple) and len(key) == 2 and isinstance(key[1], int | np.integer)):
            raise ValueError(f"agents must be keyed by (algorithm, seed), got {key!r}")
    if not variants:
        raise ValueError("need at least one variant")
    for name, variant in variants.items():
        if not isinstance(variant, CorrectionVariant):
            raise ValueError(f"variant {name!r} is not a CorrectionVariant")
        if variant.model not in cost_models:
            raise ValueError(
                f"variant {name!r} needs cost model {variant.model!r}; have {sorted(cost_models)}"
            )
        grid = step_sizes.get(name)
        if grid is None or len(grid) == 0:
            raise ValueError(f"no step sizes for variant {name!r}")
        if not all(np.isfinite(g) and g > 0 for g in grid) or len(set(grid)) != len(grid):
            raise ValueError(f"step sizes of {name!r} must be distinct positive numbers: {grid}")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    scale = np.asarray(action_scale, dtype=np.float64)
    if scale.ndim != 1 or not np.isfinite(scale).all() or not (scale > 0).all():
        raise ValueError(f"action_scale must be a 1-D array of positive numbers, got {scale}")
    return scale


def _run_sweep(
    agents: Mapping[tuple[str, int], Any],
    cost_models: Mapping[str, nn.Module],
    scenario: str,
    variants: Mapping[str, CorrectionVariant],
    step_sizes: Mapping[str, Sequence[float]],
    episodes: int,
    r_min: float,
    r_max: float,
    scale: np.ndarray,
    split: str,
) -> list[dict[str, Any]]:
    """One batched rollout: per agent, block 0 is the base, then one block per (variant, η)."""
    seeds = episode_seeds(split, episodes)
    blocks: list[tuple[str, float]] = [("none", 0.0)]
    for name in variants:
        blocks += [(name, float(eta)) for eta in step_sizes[name]]
    n_blocks = len(blocks)
    keys = list(agents)

    def corrected(agent: Any) -> Any:
        """The agent's base actions in block 0, each (variant, η) block corrected."""

        def act(o: np.ndarray) -> np.ndarray:
            o = o.reshape(n_blocks, episodes, -1)
            base = np.asarray(agent.act(o.reshape(n_blocks * episodes, -1)), dtype=np.float32)
            base = base.reshape(n_blocks, episodes, -1)
            actions = base.copy()
            start = 1
            for name, variant in variants.items():
                n = len(step_sizes[name])
                rows = slice(start, start + n)
                etas = np.repeat(np.asarray(step_sizes[name], dtype=np.float64), episodes)
                kw = variant.policy_kwargs(1.0, scale)
                kw.pop("step_size")
                fixed, _ = correct_actions(
                    cost_models[variant.model],
                    o[rows].reshape(n * episodes, -1),
                    base[rows].reshape(n * episodes, -1),
                    step_size=etas,
                    **kw,
                )
                actions[rows] = fixed.reshape(n, episodes, -1)
                start += n
            return actions.reshape(n_blocks * episodes, -1)

        return act

    with torch.no_grad():
        traj = rollout_side_by_side(
            [corrected(agents[key]) for key in keys], scenario, seeds, blocks=n_blocks
        )
    metrics = episode_metrics(traj, r_min, r_max)
    runaway = traj.states[:, :, 4].max(axis=1) > RUNAWAY_TEMPERATURE
    score = metrics["normalised_reward"].to_numpy().reshape(len(keys), n_blocks, episodes)
    runaways = runaway.reshape(len(keys), n_blocks, episodes)
    violations = (metrics["violations"].to_numpy() > 0).reshape(len(keys), n_blocks, episodes)
    rows = []
    for i, (algorithm, seed) in enumerate(keys):
        for j, (name, eta) in enumerate(blocks):
            rows.append(
                {
                    "algorithm": str(algorithm),
                    "seed": int(seed),
                    "variant": name,
                    "step_size": eta,
                    "mean": float(score[i, j].mean()),
                    "min": float(score[i, j].min()),
                    "runaways": int(runaways[i, j].sum()),
                    "violation_episodes": int(violations[i, j].sum()),
                    "episodes": episodes,
                }
            )
    return rows


def _add_base_columns(sweep: pd.DataFrame, tol: float) -> pd.DataFrame:
    base = sweep[sweep["variant"] == "none"].set_index(["algorithm", "seed"])
    out = sweep.join(
        base[["mean", "min", "runaways"]].rename(columns=lambda c: f"base_{c}"),
        on=["algorithm", "seed"],
    )
    out["not_worse"] = (
        (out["mean"] >= out["base_mean"] - tol)
        & (out["min"] >= out["base_min"] - tol)
        & (out["runaways"] <= out["base_runaways"])
    )
    return out


def sweep_corrections(
    setup: CorrectionSetup,
    episodes: int,
    variants: Mapping[str, CorrectionVariant] | None = None,
    step_sizes: Mapping[str, Sequence[float]] | None = None,
    split: str = "validation",
    tol: float = 1.0,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    force: bool = False,
) -> pd.DataFrame:
    """Closed-loop normalised reward of every base agent, uncorrected and corrected.

    Every (agent, variant, step size) runs on the same ``episodes`` episodes of ``split`` in
    one batched rollout (all step sizes of a variant in one batched correction).

    Args:
        setup: the base agents (``(algorithm, seed) → agent`` with ``act(obs (B, 9)) →
            (B, 2)``), the cost models (a ``CostEnsemble`` for pessimistic variants) and the
            scenario's task (name, return bounds, σ_a): a
            :class:`~polycstr_lib.correction.task.CorrectionSetup`.
        episodes: episodes per run.
        variants: name → variant; default :data:`DEFAULT_VARIANTS`.
        step_sizes: name → step-size grid; default :data:`DEFAULT_STEP_SIZES`.
        split: ``'validation'`` (every choice) or ``'test'``.
        tol: points of normalised reward a correction may lose and still count as not worse.
        cache: load from / save to the artifact cache (content-addressed: the agents' and
            models' weights, every setting; an entry of :mod:`polycstr_lib.toolkit.cache`
            holding ``sweep.csv``, verified on load and recomputed when the check fails).
        cache_dir: cache root; default :func:`polycstr_lib.toolkit.store.artifact_dir`.
        force: recompute (and overwrite the cached entry) even if cached.

    Returns:
        One row per (algorithm, seed, variant, step size), the base as variant ``'none'``
        (step size 0): ``mean``, ``min`` (worst episode), ``runaways``,
        ``violation_episodes``, ``episodes``, the base's ``base_mean``, ``base_min``,
        ``base_runaways`` and ``not_worse`` (see the module docstring).

    Raises:
        ValueError: bad agents' keys, variants, grids, episodes, scale or split.
    """
    variants = dict(DEFAULT_VARIANTS if variants is None else variants)
    step_sizes = {
        k: tuple(float(x) for x in v) for k, v in (step_sizes or DEFAULT_STEP_SIZES).items()
    }
    # the cache key below reads these names (its code is left as it is)
    agents, cost_models, task = setup.agents, setup.cost_models, setup.task
    scenario, r_min, r_max = task.scenario, task.return_min, task.return_max
    scale = _check_inputs(agents, cost_models, variants, step_sizes, episodes, task.action_scale)
    if split not in ("validation", "test"):
        raise ValueError(f"split must be 'validation' or 'test', got {split!r}")
    path = None
    if cache:
        used = sorted({v.model for v in variants.values()})
        key = _SweepKey(
            scenario,
            split,
            int(episodes),
            float(r_min),
            float(r_max),
            tuple(float(s) for s in scale),
            float(tol),
            tuple((n, _variant_key(v)) for n, v in variants.items()),
            tuple((n, step_sizes[n]) for n in variants),
            tuple((str(a), int(s), _fingerprint(agents[(a, s)])) for a, s in agents),
            tuple((m, _fingerprint(cost_models[m])) for m in used),
        )
        path = entry_path("correction_sweeps", key, f"{scenario}_{split}", cache_dir)
        if force:
            invalidate(path)
        cached = load_entry(path, lambda entry: entry.load("sweep.csv"), key)
        if cached is not None:
            return cached
    rows = _run_sweep(
        agents, cost_models, scenario, variants, step_sizes, episodes, r_min, r_max, scale, split
    )
    sweep = _add_base_columns(pd.DataFrame(rows), tol)
    if path is not None:
        write_entry(path, {"sweep.csv": sweep}, key)
    return sweep


def _longest_safe_run(steps: np.ndarray, safe: np.ndarray) -> tuple[float, float]:
    best, run, best_span = (np.nan, np.nan), [], 0
    for eta, ok in zip(steps, safe, strict=True):
        run = [*run, eta] if ok else []
        if len(run) > best_span:
            best_span, best = len(run), (run[0], run[-1])
    return best


def _pick(table: pd.DataFrame, tie_tol: float) -> Any:
    """Index of the row chosen by the rule (safe first, largest IQM, ties → first row)."""
    pool = table[table["safe"]] if table["safe"].any() else table
    pool = pool[np.isfinite(pool["iqm"])]
    if pool.empty:
        return table.index[0]
    top = pool["iqm"].max()
    return pool[pool["iqm"] >= top - tie_tol].index[0]


def choose_from_sweep(
    sweep: pd.DataFrame, tie_tol: float = 0.5
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Apply the selection rule of the module docstring to a :func:`sweep_corrections` table.

    Args:
        sweep: the sweep (validation episodes).
        tie_tol: IQM differences up to this many points count as ties (→ smaller step size).

    Returns:
        ``(choice, per_variant)``: ``choice`` has ``variant``, ``step_size``, ``iqm``,
        ``safe`` of the overall choice; ``per_variant`` has one row per variant (index) with
        the chosen ``step_size``, its ``iqm``, ``safe``, ``runs_not_worse`` (of ``runs``), and
        the safe range ``safe_low``, ``safe_high`` (NaN when no step size is safe) and
        ``safe_decades`` (log10 of high / low; 0 for a single safe step), and ``worst_iqm``
        (the lowest IQM over the whole grid: how badly the variant can fail).

    Raises:
        ValueError: a table without base rows or corrected rows.
    """
    if not (sweep["variant"] == "none").any():
        raise ValueError("the sweep has no base rows (variant 'none')")
    corrected = sweep[sweep["variant"] != "none"]
    if corrected.empty:
        raise ValueError("the sweep has no corrected rows")
    rows = {}
    for name in dict.fromkeys(corrected["variant"]):
        part = corrected[corrected["variant"] == name]
        grid = (
            part.groupby("step_size", sort=True)
            .agg(
                iqm=("mean", iqm),
                runs_not_worse=("not_worse", "sum"),
                runs=("not_worse", "size"),
            )
            .reset_index()
        )
        grid["safe"] = grid["runs_not_worse"] == grid["runs"]
        chosen = grid.loc[_pick(grid, tie_tol)]
        low, high = _longest_safe_run(grid["step_size"].to_numpy(), grid["safe"].to_numpy())
        rows[name] = {
            "step_size": float(chosen["step_size"]),
            "iqm": float(chosen["iqm"]),
            "safe": bool(chosen["safe"]),
            "runs_not_worse": int(chosen["runs_not_worse"]),
            "runs": int(chosen["runs"]),
            "safe_low": float(low),
            "safe_high": float(high),
            "safe_decades": float(np.log10(high / low)) if np.isfinite(low) else float("nan"),
            "worst_iqm": float(grid["iqm"].min()),
        }
    per_variant = pd.DataFrame.from_dict(rows, orient="index")
    per_variant.index.name = "variant"
    best = per_variant.loc[_pick(per_variant, tie_tol)]
    choice = {
        "variant": str(best.name),
        "step_size": float(best["step_size"]),
        "iqm": float(best["iqm"]),
        "safe": bool(best["safe"]),
    }
    return choice, per_variant


def safe_ranges(sweep: pd.DataFrame, by: str = "algorithm") -> pd.DataFrame:
    """The safe step-size range of every variant, for each value of ``by`` on its own.

    :func:`choose_from_sweep` on the rows of one algorithm (or another column of the sweep):
    a step size is safe for that algorithm when none of *its* runs is made worse. A variant
    can thus be safe over a wide range for one base agent and nowhere for another.

    Args:
        sweep: a :func:`sweep_corrections` table (validation episodes).
        by: the column to split by.

    Returns:
        Indexed by (``by``, ``variant``): ``safe_low``, ``safe_high``, ``safe_decades`` (as
        in :func:`choose_from_sweep`; NaN when no step size is safe) and ``worst_iqm``.

    Raises:
        ValueError: ``by`` is not a column of the sweep.
    """
    if by not in sweep.columns:
        raise ValueError(f"the sweep has no column {by!r}")
    columns = ["safe_low", "safe_high", "safe_decades", "worst_iqm"]
    parts = {
        value: choose_from_sweep(part)[1][columns] for value, part in sweep.groupby(by, sort=False)
    }
    return pd.concat(parts, names=[by, "variant"])


def choose_correction(
    sweep: pd.DataFrame,
    variants: Mapping[str, CorrectionVariant],
    action_scale: Any,
    tie_tol: float = 0.5,
) -> CorrectionChoice:
    """The setting the selection rule picks from a validation sweep (module docstring).

    A pure function of the sweep: run :func:`sweep_corrections` on validation episodes first.

    Args:
        sweep: the validation table of :func:`sweep_corrections`.
        variants: name → variant, the variants the sweep ran.
        action_scale: σ_a of the scenario's data (:attr:`ScenarioTask.action_scale`).
        tie_tol: IQM ties (→ smaller step; between variants → the earlier one).

    Returns:
        The :class:`CorrectionChoice`.
    """
    picked, per_variant = choose_from_sweep(sweep, tie_tol)
    setting = variants[picked["variant"]]
    return CorrectionChoice(
        variant=picked["variant"],
        step_size=picked["step_size"],
        iqm=picked["iqm"],
        safe=picked["safe"],
        setting=setting,
        model=setting.model,
        policy_kwargs=setting.policy_kwargs(picked["step_size"], action_scale),
        per_variant=per_variant,
    )


def corrected_policy(
    agent: Any, cost_models: Mapping[str, nn.Module], choice: CorrectionChoice
) -> CorrectedPolicy:
    """The "+" version of ``agent`` with the correction chosen by :func:`choose_correction`."""
    return CorrectedPolicy(agent, cost_models[choice.model], **choice.policy_kwargs)


def preferred_model(per_variant: pd.DataFrame, candidates: Mapping[str, str]) -> str:
    """Which cost model (e.g. target) validation prefers: the candidate variant of largest IQM.

    Args:
        per_variant: the table of :func:`choose_from_sweep`.
        candidates: model label → name of the variant that uses it (same rule, other model),
            e.g. ``{"one_step": "normalised", "cost_to_go": "normalised (cost-to-go)"}``.

    Returns:
        The label whose variant has the larger IQM at its chosen step size (safe settings
        first; ties → the first label).
    """
    missing = [v for v in candidates.values() if v not in per_variant.index]
    if missing:
        raise ValueError(f"variants {missing} are not in the table")
    table = per_variant.loc[list(candidates.values())].copy()
    table.index = list(candidates)
    return str(_pick(table, 0.0))


def correction_path_costs(
    cost_model: nn.Module,
    traj: Any,
    action_scale: Any,
    n_states: int = 20,
    steps: int = 12,
    step_size: float = 0.5,
    seed: int = 0,
) -> pd.DataFrame:
    """Predicted and simulator one-step cost along correction paths that leave the data.

    From ``n_states`` random (episode, step) pairs of the data, the data's action is moved by
    ``steps`` normalised steps of ``step_size`` data spreads down ``ĉ`` (the direction of the
    safety layer's steepest descent in whitened action units), and at every point of the path
    the model's prediction is compared with the simulator's cost of that action
    (:func:`polycstr_lib.correction.gradients.one_step_cost`, float64 physics).

    Args:
        cost_model: a one-step cost model (its prediction is compared with the one-step cost).
        traj: the data's :class:`~polycstr_lib.reactor.rollout.Trajectories`.
        action_scale: σ_a of the data.
        n_states: number of start points.
        steps: points per path after the start.
        step_size: data spreads per step.
        seed: seed of the start points (private generator).

    Returns:
        One row per (path, k): ``path``, ``k``, ``distance`` (‖(a_k − a_0) / σ_a‖, data
        spreads), ``predicted``, ``simulator``.
    """
    from polycstr_lib.correction.gradients import one_step_cost

    scale = np.asarray(action_scale, dtype=np.float64)
    rng = np.random.default_rng(seed)
    n_ep, n_t = traj.actions.shape[:2]
    ep = rng.integers(0, n_ep, n_states)
    t = rng.integers(0, n_t, n_states)
    obs = np.asarray(traj.observations[ep, t], dtype=np.float32)
    a0 = np.asarray(traj.actions[ep, t], dtype=np.float64)
    states, inputs, setpoints = traj.states[ep, t], traj.inputs[ep, t], traj.setpoints[ep]
    rows = []
    a = a0.copy()
    for k in range(steps + 1):
        if k:
            a, _ = correct_actions(
                cost_model, obs, a.astype(np.float32), "normalised", 1, step_size,
                action_scale=scale,
            )  # fmt: skip
            a = np.asarray(a, dtype=np.float64)
        with torch.no_grad():
            pred = cost_model(torch.as_tensor(obs), torch.as_tensor(a, dtype=torch.float32))
        sim = one_step_cost(states, inputs, a, setpoints)
        dist = np.linalg.norm((a - a0) / scale, axis=1)
        for i in range(n_states):
            rows.append(
                {
                    "path": i,
                    "k": k,
                    "distance": float(dist[i]),
                    "predicted": float(pred[i]),
                    "simulator": float(sim[i]),
                }
            )
    return pd.DataFrame(rows)


def summarise_runs(
    sweep: pd.DataFrame, by: Sequence[str] = ("algorithm", "variant", "step_size")
) -> pd.DataFrame:
    """Aggregate a sweep over training seeds: IQM of the runs' means, worst episode, runaways.

    Args:
        sweep: a :func:`sweep_corrections` table.
        by: grouping columns.

    Returns:
        One row per group: ``iqm`` (IQM over runs of the mean normalised reward), ``worst``
        (the worst episode of any run), ``runaways`` (summed), ``not_worse`` (runs not worse
        than their base) and ``runs``.
    """
    return (
        sweep.groupby(list(by), sort=False)
        .agg(
            iqm=("mean", iqm),
            worst=("min", "min"),
            runaways=("runaways", "sum"),
            not_worse=("not_worse", "sum"),
            runs=("mean", "size"),
        )
        .reset_index()
    )
