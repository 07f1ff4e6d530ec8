"""PICNN ensembles: M cost models held as one model, and a pessimistic cost.

An ensemble holds ``M`` members, one per seed. Each member *is* the model
:func:`~polycstr_lib.correction.cost_models.training.train_cost_model` trains with
``config.seed = seeds[k]`` (its own initial weights, episode split, scalers and minibatch
stream), trained by that function and cached as that model: members share nothing while they
learn, so they train in separate processes to the same bits, and a member a page already
trained alone is loaded, not trained again. (Members used to train side by side as one model
in one process, to the same bits; on this 2-core machine that was slower than one member after
another, 205 s against about 3 × 45 s for three 10,000-step PICNNs.)

The mean of the members is convex in the action (a mean of convex functions); the spread
between members is the ensemble's uncertainty, large where the data are thin. The
*pessimistic* cost used by the uncertainty-aware correction is

    ĉ_κ(s, a) = (1 − κ) · mean_k ĉ_k(s, a) + κ · max_k ĉ_k(s, a),     κ ∈ [0, 1],

convex in ``a`` because a maximum of convex functions is convex and a non-negative
combination of convex functions is convex. ``mean + κ · std`` is *not* used: the spread of
convex functions need not be convex (members ``1`` and ``a²`` have standard deviation
``|a² − 1| / 2``, which is ``1/2`` at ``a = 0`` and ``0`` at ``a = ±1``), so descending it
could stop being a descent on a convex function. Where the members agree
``ĉ_κ`` equals the mean; where they disagree the worst member dominates, so the correction
avoids moving towards actions the members disagree about.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from polycstr_lib.correction.cost_models.conditioned import (
    ActionCost,
    _PICNNActionCost,
    _StackedPICNNActionCost,
)
from polycstr_lib.correction.cost_models.config import CostModelConfig
from polycstr_lib.correction.cost_models.networks import PICNN, _CostModel, build_cost_model
from polycstr_lib.correction.cost_models.training import (
    cost_model_entry,
    finish_training,
    load_cached,
    train_cost_model,
)
from polycstr_lib.toolkit import ledger
from polycstr_lib.toolkit.cache import is_complete
from polycstr_lib.toolkit.offline import require_training
from polycstr_lib.toolkit.processes import worker_count

__all__ = ["CostEnsemble", "PessimisticActionCost", "is_picnn_ensemble", "train_cost_ensemble"]


class CostEnsemble(nn.Module):
    """``M`` cost models of one configuration; the cost is the members' mean.

    Args:
        members: the member models (same kind and sizes), e.g. from :func:`train_cost_ensemble`.
        seeds: the member seeds (stored for the record).
    """

    def __init__(self, members: Sequence[_CostModel], seeds: Sequence[int]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if len(members) != len(seeds):
            raise ValueError(f"{len(members)} members but {len(seeds)} seeds")
        self.members = nn.ModuleList(members)
        self.seeds = tuple(int(s) for s in seeds)
        self.obs_dim = members[0].obs_dim
        self.action_dim = members[0].action_dim
        self.target = getattr(members[0], "target", "one_step")
        self.gamma = getattr(members[0], "gamma", 0.9)

    def __len__(self) -> int:
        return len(self.members)

    def member(self, index: int) -> _CostModel:
        """Member ``index`` as a stand-alone cost model (shared, not copied)."""
        return self.members[index]

    def member_costs(self, obs: Tensor, action: Tensor) -> Tensor:
        """Every member's predicted cost: ``(M, B)`` (``(M,)`` for one unbatched sample)."""
        return torch.stack([m(obs, action) for m in self.members])

    def forward(self, obs: Tensor, action: Tensor) -> Tensor:
        """The members' mean cost ``(B,)`` (convex in the action when every member is)."""
        return self.member_costs(obs, action).mean(0)

    def pessimistic(self, obs: Tensor, action: Tensor, pessimism: float) -> Tensor:
        """``(1 − κ) mean + κ max`` over members, ``(B,)``; see the module docstring."""
        costs = self.member_costs(obs, action)
        return (1.0 - pessimism) * costs.mean(0) + pessimism * costs.max(0).values

    def conditioned(self, obs: Tensor, pessimism: float = 0.0) -> ActionCost:
        """The (pessimistic) cost as a function of the action for fixed ``obs``."""
        return PessimisticActionCost([m.conditioned(obs) for m in self.members], pessimism)


class PessimisticActionCost(ActionCost):
    """``a ↦ (1 − κ) mean_k ĉ_k(s, a) + κ max_k ĉ_k(s, a)`` with its (sub)derivatives.

    The gradient and Hessian of the max term are those of the member that attains the
    maximum at this action (a subgradient; ties go to the lowest index), so every step is a
    descent step on a convex function when every member is convex.

    Args:
        members: each member's :class:`ActionCost` for the same observations.
        pessimism: κ in [0, 1]; 0 is the plain ensemble mean.
    """

    def __init__(self, members: Sequence[ActionCost], pessimism: float = 0.0) -> None:
        pessimism = float(pessimism)
        if not 0.0 <= pessimism <= 1.0 or math.isnan(pessimism):
            raise ValueError(f"pessimism must lie in [0, 1], got {pessimism}")
        self.members = list(members)
        self.pessimism = pessimism
        # PICNN members of equal sizes run as one batched model; the others one by one.
        self._stacked = None
        if len(self.members) > 1 and all(type(m) is _PICNNActionCost for m in self.members):
            shapes = {tuple(tuple(w.shape) for w in m.WzT[1:]) for m in self.members}
            batches = {m.At[0].shape[0] for m in self.members}
            if len(shapes) == 1 and len(batches) == 1:
                self._stacked = _StackedPICNNActionCost(self.members)

    def _combine(self, values: Tensor, *derivs: Tensor) -> tuple[Tensor, ...]:
        """Combine stacked member outputs ``(M, B, ...)`` into the pessimistic ones."""
        k = self.pessimism
        idx = values.argmax(0)  # (B,)
        rows = torch.arange(values.shape[1])
        out = [(1.0 - k) * values.mean(0) + k * values[idx, rows]]
        for d in derivs:
            out.append((1.0 - k) * d.mean(0) + k * d[idx, rows])
        return tuple(out)

    def _values(self, action: Tensor) -> Tensor:
        if self._stacked is not None:
            return self._stacked.value(action)
        return torch.stack([m.value(action) for m in self.members])

    def value(self, action: Tensor) -> Tensor:
        return self._combine(self._values(action))[0]

    def value_and_grad(self, action: Tensor) -> tuple[Tensor, Tensor]:
        if self._stacked is not None:
            values, grads = self._stacked.value_and_grad(action)
        else:
            pairs = [m.value_and_grad(action) for m in self.members]
            values = torch.stack([v for v, _ in pairs])
            grads = torch.stack([g for _, g in pairs])
        value, grad = self._combine(values, grads)
        return value, grad

    def value_grad_hess(self, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if self._stacked is not None:
            values, grads, hess = self._stacked.value_grad_hess(action)
        else:
            triples = [m.value_grad_hess(action) for m in self.members]
            values, grads, hess = (torch.stack(t) for t in zip(*triples, strict=True))
        value, grad, h = self._combine(values, grads, hess)
        return value, grad, h

    def spread(self, action: Tensor) -> Tensor:
        """Standard deviation of the members' costs ``(B,)`` (the ensemble's uncertainty)."""
        return self._values(action).std(0, unbiased=False)


def _check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    out = tuple(seeds)
    if not out:
        raise ValueError("an ensemble needs at least one seed")
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in out):
        raise ValueError(f"seeds must be integers, got {out}")
    if len(set(out)) != len(out):
        raise ValueError(f"seeds must be distinct, got {out}")
    return out


def _train_member(
    data: Any, config: CostModelConfig, cache: bool, cache_dir: str | Path | None, force: bool
) -> tuple[_CostModel, dict[str, Any]]:
    """One member, trained as :func:`train_cost_model` trains it; its ledger record is part
    of the ensemble's task (also when it runs in a worker process)."""
    torch.set_num_threads(1)
    ledger._STACK.append("cost_model")
    try:
        return train_cost_model(
            data, config, progress=False, cache=cache, cache_dir=cache_dir, force=force
        )
    finally:
        ledger._STACK.pop()


def ensemble_processes(config: CostModelConfig, members: int, processes: int | None = None) -> int:
    """How many processes :func:`train_cost_ensemble` trains ``members`` members in.

    Members are independent models, so they train side by side to the same bits. A short
    training stays in this process: starting a process costs seconds.

    Args:
        config: the members' settings (``steps``).
        members: members still to train.
        processes: the most processes (default: the machine's CPUs).

    Raises:
        ValueError: ``processes`` is not a positive int.
    """
    return worker_count(processes, members, config.steps >= MIN_PARALLEL_STEPS)


#: Below this many optimiser steps a member trains faster than a process starts.
MIN_PARALLEL_STEPS = 2000


def train_cost_ensemble(
    data: Any,
    config: CostModelConfig = CostModelConfig(),  # noqa: B008 - frozen, safe default
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    progress: bool = True,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    force: bool = False,
    processes: int | None = None,
) -> tuple[CostEnsemble, dict[str, Any]]:
    """Train ``len(seeds)`` cost models and hold them as one model (or load the ensemble from
    the cache).

    Member ``k`` is the model :func:`train_cost_model` trains with
    ``dataclasses.replace(config, seed=seeds[k])``, and is cached as that model too: a member a
    page trained alone (the results pages' PICNN is member 0) is loaded, not trained again. The
    members still to train are spread over :func:`ensemble_processes` processes; the global
    RNG state is untouched.

    Args:
        data: :class:`~polycstr_lib.reactor.datasets.OfflineData`-like object.
        config: model and training settings; ``config.seed`` is ignored (the seeds are).
        seeds: the members' seeds (distinct integers).
        progress: show a bar over the members.
        cache: load from / save to the artifact cache (key:
            :class:`~polycstr_lib.correction.cost_models.training.CostModelKey` with the seeds;
            written atomically, verified on load, retrained when the check fails).
        cache_dir: cache root; default :func:`polycstr_lib.toolkit.store.artifact_dir`.
        force: retrain (and overwrite the cached entries) even if cached.
        processes: the most processes to train the members in (:func:`ensemble_processes`).

    Returns:
        ``(ensemble, log)``: the ensemble in eval mode and a dict with per-member
        ``train_r2``, ``heldout_r2``, ``heldout_episodes``, ``history`` lists, ``seeds``,
        ``seconds`` and ``cached``.

    Raises:
        ValueError: empty, repeated or non-integer seeds; bad ``processes``.
    """
    seeds = _check_seeds(seeds)
    obs_dim, action_dim = data.observations.shape[-1], data.actions.shape[-1]
    configs = [dataclasses.replace(config, seed=s) for s in seeds]

    def fresh(cfg: CostModelConfig) -> _CostModel:
        with torch.random.fork_rng(devices=[]):
            model = build_cost_model(cfg, obs_dim, action_dim)
        model.target, model.gamma = cfg.target, cfg.gamma
        return model

    path = cost_model_entry(data, config, cache_dir, seeds) if cache else None
    cached = load_cached(path, lambda: CostEnsemble([fresh(c) for c in configs], seeds), force)
    if cached is not None:
        ensemble, log = cached
        return ensemble.eval(), log
    require_training("cost ensemble", path or "cost_models/(cache off)")

    t0 = time.perf_counter()
    done: dict[int, tuple[_CostModel, dict[str, Any]]] = {}
    if cache and not force:  # members cached alone load here
        for k, cfg in enumerate(configs):
            if is_complete(cost_model_entry(data, cfg, cache_dir)):
                done[k] = _train_member(data, cfg, cache, cache_dir, force)
    todo = [k for k in range(len(configs)) if k not in done]
    workers = ensemble_processes(config, len(todo), processes)
    bar = tqdm(total=len(todo), desc=f"cost ensemble ({len(seeds)})", leave=False,
               disable=not progress)  # fmt: skip
    if workers == 1:
        for k in todo:
            done[k] = _train_member(data, configs[k], cache, cache_dir, force)
            bar.update(1)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = {
                k: pool.submit(_train_member, data, configs[k], cache, cache_dir, force)
                for k in todo
            }
            for k, future in futures.items():
                done[k] = future.result()
                bar.update(1)
    bar.close()
    members = [done[k][0].eval() for k in range(len(configs))]
    logs = [done[k][1] for k in range(len(configs))]
    ensemble = CostEnsemble(members, seeds).eval()
    log: dict[str, Any] = {
        "config": asdict(config),
        "seeds": list(seeds),
        "scenario": str(getattr(data, "scenario", "unknown")),
        "heldout_episodes": [m["heldout_episodes"] for m in logs],
        "train_r2": [m["train_r2"] for m in logs],
        "heldout_r2": [m["heldout_r2"] for m in logs],
        "history": [m["history"] for m in logs],
        "seconds": time.perf_counter() - t0,
        "cached": False,
    }
    finish_training(path, ensemble, log, config, members=len(todo), processes=workers)
    return ensemble, log


def is_picnn_ensemble(model: nn.Module) -> bool:
    """True for a :class:`CostEnsemble` whose members are all PICNNs."""
    return isinstance(model, CostEnsemble) and all(isinstance(m, PICNN) for m in model.members)
