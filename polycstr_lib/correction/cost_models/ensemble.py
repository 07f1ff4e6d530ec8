"""PICNN ensembles: M cost models trained side by side as one model, and a pessimistic cost.

An ensemble holds ``M`` members, one per seed. Each member is exactly the model
:func:`~polycstr_lib.correction.cost_models.training.train_cost_model` would train with
``config.seed = seeds[k]``: its own initial weights (drawn under its seed inside
``torch.random.fork_rng``), its own episode split and scalers, and its own minibatch stream
(a private ``torch.Generator`` per member). They are trained as one model: one loop, one
Adam optimiser over all members' parameters, one backward pass of the *sum* of the members'
losses. A member's gradient is then its own loss's gradient (the derivative of a sum with
respect to one term is exactly 1) and Adam is elementwise, so member ``k`` is bit-identical to
the single model of seed ``seeds[k]``; the batching is that of the agents'
:class:`~polycstr_lib.agents.layers.EnsembleLinear`, which also runs one product per member so
that a member's numbers do not depend on the other members.

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
from polycstr_lib.correction.cost_models.diagnostics import _predict, r2_score
from polycstr_lib.correction.cost_models.networks import PICNN, _CostModel, build_cost_model
from polycstr_lib.correction.cost_models.targets import _rows, cost_targets, split_episodes
from polycstr_lib.correction.cost_models.training import (
    cost_model_entry,
    finish_training,
    load_cached,
)
from polycstr_lib.toolkit.offline import require_training

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


def train_cost_ensemble(
    data: Any,
    config: CostModelConfig = CostModelConfig(),  # noqa: B008 - frozen, safe default
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    progress: bool = True,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    force: bool = False,
) -> tuple[CostEnsemble, dict[str, Any]]:
    """Train ``len(seeds)`` cost models as one model (or load the ensemble from the cache).

    Member ``k`` is the model of ``dataclasses.replace(config, seed=seeds[k])`` (see the
    module docstring for why it is bit-identical to :func:`train_cost_model`'s); the global
    RNG state is untouched.

    Args:
        data: :class:`~polycstr_lib.reactor.datasets.OfflineData`-like object.
        config: model and training settings; ``config.seed`` is ignored (the seeds are).
        seeds: the members' seeds (distinct integers).
        progress: show a progress bar.
        cache: load from / save to the artifact cache (key:
            :class:`~polycstr_lib.correction.cost_models.training.CostModelKey` with the seeds;
            written atomically, verified on load, retrained when the check fails).
        cache_dir: cache root; default :func:`polycstr_lib.toolkit.store.artifact_dir`.
        force: retrain (and overwrite the cached entry) even if cached.

    Returns:
        ``(ensemble, log)``: the ensemble in eval mode and a dict with per-member
        ``train_r2``, ``heldout_r2``, ``heldout_episodes``, ``history`` lists, ``seeds``,
        ``seconds`` and ``cached``.

    Raises:
        ValueError: empty, repeated or non-integer seeds.
    """
    seeds = _check_seeds(seeds)
    obs_all = torch.as_tensor(data.observations, dtype=torch.float32)
    act_all = torch.as_tensor(data.actions, dtype=torch.float32)
    obs_dim, action_dim = obs_all.shape[-1], act_all.shape[-1]
    configs = [dataclasses.replace(config, seed=s) for s in seeds]

    def fresh(cfg: CostModelConfig) -> _CostModel:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
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
    y_all = cost_targets(data, config.target, config.gamma)
    members, rows_train, rows_held, splits, gens = [], [], [], [], []
    for cfg in configs:
        train_eps, held_eps = split_episodes(data.episode_ids, cfg.holdout_fraction, cfg.seed)
        tr = torch.as_tensor(_rows(data, train_eps))
        model = fresh(cfg)
        model.set_normalization(obs_all[tr], y_all[tr])
        members.append(model)
        rows_train.append(tr)
        rows_held.append(torch.as_tensor(_rows(data, held_eps)))
        splits.append((train_eps, held_eps))
        gens.append(torch.Generator().manual_seed(cfg.seed))
    y_stds = [float(m.y_std) for m in members]
    ensemble = CostEnsemble(members, seeds)
    opt = torch.optim.Adam(ensemble.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    ratio = config.lr_final_ratio

    def lr_at(step: int) -> float:
        frac = step / max(config.steps - 1, 1)
        return config.lr * (ratio + (1.0 - ratio) * 0.5 * (1.0 + math.cos(math.pi * frac)))

    def heldout_loss(k: int) -> float:
        ho = rows_held[k]
        if len(ho) == 0:
            return float("nan")
        pred = _predict(members[k], obs_all[ho], act_all[ho])
        return float((((pred - y_all[ho]) / y_stds[k]) ** 2).mean())

    histories: list[list[list[float]]] = [[] for _ in members]
    running = [0.0] * len(members)
    bar = tqdm(
        total=config.steps, desc=f"cost ensemble ({len(seeds)})", leave=False, disable=not progress
    )
    ensemble.train()
    for step in range(config.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        losses = []
        for k, model in enumerate(members):
            tr = rows_train[k]
            idx = tr[torch.randint(len(tr), (config.batch,), generator=gens[k])]
            pred = model(obs_all[idx], act_all[idx])
            losses.append((((pred - y_all[idx]) / y_stds[k]) ** 2).mean())
        opt.zero_grad(set_to_none=True)
        torch.stack(losses).sum().backward()
        opt.step()
        for k, loss in enumerate(losses):
            value = loss.detach().item()
            running[k] = 0.98 * running[k] + 0.02 * value if step else value
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
            ensemble.eval()
            for k in range(len(members)):
                histories[k].append([step + 1, running[k], heldout_loss(k)])
            ensemble.train()
        bar.update(1)
    bar.close()
    ensemble.eval()

    log: dict[str, Any] = {
        "config": asdict(config),
        "seeds": list(seeds),
        "scenario": str(getattr(data, "scenario", "unknown")),
        "heldout_episodes": [[int(e) for e in held] for _, held in splits],
        "train_r2": [
            r2_score(m, data, tr, y_all) for m, (tr, _) in zip(members, splits, strict=True)
        ],
        "heldout_r2": [
            r2_score(m, data, ho, y_all) if len(ho) else float("nan")
            for m, (_, ho) in zip(members, splits, strict=True)
        ],
        "history": histories,
        "seconds": time.perf_counter() - t0,
        "cached": False,
    }
    finish_training(path, ensemble, log, config, members=len(seeds))
    return ensemble, log


def is_picnn_ensemble(model: nn.Module) -> bool:
    """True for a :class:`CostEnsemble` whose members are all PICNNs."""
    return isinstance(model, CostEnsemble) and all(isinstance(m, PICNN) for m in model.members)
