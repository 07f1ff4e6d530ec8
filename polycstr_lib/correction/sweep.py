"""Correction sweeps: every base agent, uncorrected and corrected by each setting, on one batch.

One batched rollout per sweep (:func:`sweep_corrections`), cached as a content-addressed
artifact (the agents' and models' weights, every setting); :func:`summarise_runs` aggregates
its runs over seeds. Every row (one run: an agent at one setting) keeps the normalised reward
of each of its episodes (columns ``score_0``, ``score_1``, …, in the order of the split's
episode seeds, the same for every row): :func:`episode_scores` reads them back, for rules that
look at the tail of a run rather than its mean (:mod:`polycstr_lib.correction.deployment`).
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

from polycstr_lib.correction.safety import correct_actions
from polycstr_lib.correction.task import CorrectionSetup
from polycstr_lib.correction.variants import DEFAULT_STEP_SIZES, DEFAULT_VARIANTS, CorrectionVariant
from polycstr_lib.reactor.datasets import RUNAWAY_TEMPERATURE, episode_seeds
from polycstr_lib.reactor.metrics import episode_metrics
from polycstr_lib.reactor.rollout import rollout_side_by_side
from polycstr_lib.toolkit import ledger
from polycstr_lib.toolkit.cache import entry_path, invalidate, load_entry, write_entry
from polycstr_lib.toolkit.ledger import ledger_task
from polycstr_lib.toolkit.offline import require_training
from polycstr_lib.toolkit.processes import worker_count
from polycstr_lib.toolkit.stats import iqm

#: Head of the per-episode score columns of a sweep (``score_0``, ``score_1``, …).
SCORE_PREFIX = "score_"


def episode_score_columns(sweep: pd.DataFrame) -> list[str]:
    """The per-episode score columns of a sweep, in episode order (``score_0``, …).

    Raises:
        ValueError: a table without them (e.g. one built before they were kept).
    """
    head = len(SCORE_PREFIX)
    found = [c for c in sweep.columns if c.startswith(SCORE_PREFIX) and c[head:].isdigit()]
    columns = [f"{SCORE_PREFIX}{e}" for e in range(len(found))]
    complete = bool(found) and sorted(found) == sorted(columns)
    if complete and "episodes" in sweep.columns:
        complete = bool((sweep["episodes"] == len(columns)).all())
    if not complete:
        raise ValueError(
            "the sweep lacks per-episode scores (score_0 … score_{episodes-1}): rerun "
            "sweep_corrections"
        )
    return columns


def episode_scores(sweep: pd.DataFrame) -> np.ndarray:
    """Each row's normalised reward per episode: float ``(rows, episodes)``, rows in order.

    Raises:
        ValueError: a table without per-episode scores, or with missing values in them.
    """
    scores = sweep[episode_score_columns(sweep)].to_numpy(dtype=np.float64)
    if np.isnan(scores).any():
        raise ValueError("per-episode scores are missing for some rows")
    return scores


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
    # the table's columns: 2 added the per-episode scores (score_0, …); entries cached with
    # the older columns have other keys and are never read
    columns: int = 2


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
                    **{f"{SCORE_PREFIX}{e}": float(score[i, j, e]) for e in range(episodes)},
                }
            )
    return rows


#: A sweep of fewer corrected episodes stays in one process: starting one costs seconds.
MIN_PARALLEL_EPISODES = 2000


def sweep_processes(agents: int, corrected_episodes: int, processes: int | None = None) -> int:
    """How many processes :func:`sweep_corrections` runs a sweep in.

    An agent's rollouts (its base block and every corrected block) are one batch that does not
    depend on the other agents, so the agents split over processes with the same scores to
    the bit.

    Args:
        agents: base agents in the sweep.
        corrected_episodes: agents × settings × episodes.
        processes: the most processes (default: the machine's CPUs).

    Raises:
        ValueError: ``processes`` is not a positive int.
    """
    return worker_count(processes, agents, corrected_episodes >= MIN_PARALLEL_EPISODES)


def _sweep_part(*args: Any) -> list[dict[str, Any]]:
    """One process's agents of a sweep (:func:`_run_sweep`'s arguments); its rollouts are part
    of the parent's sweep task."""
    torch.set_num_threads(1)
    ledger._STACK.append("sweep")
    return _run_sweep(*args)


def _run_sweep_in_processes(
    agents: Mapping[tuple[str, int], Any], processes: int, *rest: Any
) -> list[dict[str, Any]]:
    """:func:`_run_sweep` with the agents split into ``processes`` contiguous parts, run at
    once; the rows come back in the agents' order."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    keys = list(agents)
    parts = [[keys[i] for i in part] for part in np.array_split(np.arange(len(keys)), processes)]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        futures = [pool.submit(_sweep_part, {k: agents[k] for k in part}, *rest) for part in parts]
        return [row for future in futures for row in future.result()]


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
    processes: int | None = None,
) -> pd.DataFrame:
    """Closed-loop normalised reward of every base agent, uncorrected and corrected.

    Every (agent, variant, step size) runs on the same ``episodes`` episodes of ``split`` in
    one batched rollout per agent (all step sizes of a variant in one batched correction); the
    agents are spread over :func:`sweep_processes` processes.

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
        processes: the most processes to run the agents in (:func:`sweep_processes`).

    Returns:
        One row per (algorithm, seed, variant, step size), the base as variant ``'none'``
        (step size 0): ``mean``, ``min`` (worst episode), ``runaways``,
        ``violation_episodes``, ``episodes``, the normalised reward of every episode
        ``score_0`` … ``score_{episodes-1}`` (:func:`episode_scores`), the base's
        ``base_mean``, ``base_min``, ``base_runaways`` and ``not_worse`` (``mean`` and
        ``min`` at most ``tol`` below the base's and no more runaways).

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
    require_training("correction sweep", path or f"correction_sweeps/{scenario}_{split}")
    settings = 1 + sum(len(step_sizes[name]) for name in variants)
    workers = sweep_processes(len(agents), len(agents) * settings * episodes, processes)
    fields = {"split": split, "agents": len(agents), "settings": settings, "episodes": episodes}
    rest = (cost_models, scenario, variants, step_sizes, episodes, r_min, r_max, scale, split)
    with ledger_task("sweep", scenario=scenario, **fields, processes=workers):
        if workers == 1:
            rows = _run_sweep(agents, *rest)
        else:
            rows = _run_sweep_in_processes(agents, workers, *rest)
    sweep = _add_base_columns(pd.DataFrame(rows), tol)
    if path is not None:
        write_entry(path, {"sweep.csv": sweep}, key)
    return sweep


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
