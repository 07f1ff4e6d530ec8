"""Training a cost model by MSE on one scenario's offline data, cached as an artifact.

A trained model (or ensemble, :mod:`~polycstr_lib.correction.cost_models.ensemble`) is an entry
of :mod:`polycstr_lib.toolkit.cache` in the store ``cost_models``, keyed by
:class:`CostModelKey`: scenario, row count, a fingerprint of the data's arrays, the
configuration and the ensemble's seeds. Its files: ``model.pt`` (the ``state_dict``, loaded with
``weights_only=True``) and ``log.json``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from polycstr_lib.correction.cost_models.config import CostModelConfig
from polycstr_lib.correction.cost_models.diagnostics import _predict, r2_score
from polycstr_lib.correction.cost_models.networks import _CostModel, build_cost_model
from polycstr_lib.correction.cost_models.targets import _np, _rows, cost_targets, split_episodes
from polycstr_lib.toolkit.cache import (
    CorruptEntry,
    Entry,
    array_fingerprint,
    entry_path,
    invalidate,
    load_entry,
    write_entry,
)
from polycstr_lib.toolkit.ledger import record_task
from polycstr_lib.toolkit.offline import require_training

#: The data arrays a cost model is trained on (their fingerprint is part of the cache key).
DATA_FIELDS = ("observations", "actions", "costs", "episode_ids")


@dataclass(frozen=True)
class CostModelKey:
    """Everything a cached cost model (or ensemble) depends on: its cache key."""

    scenario: str  # the data's scenario name
    rows: int  # transitions in the data
    data: str  # array_fingerprint of DATA_FIELDS
    config: CostModelConfig  # settings (seed 0 for an ensemble: the seeds are below)
    seeds: tuple[int, ...] = ()  # an ensemble's members; () for one model


def cost_model_entry(
    data: Any,
    config: CostModelConfig,
    cache_dir: str | Path | None,
    seeds: Sequence[int] | None = None,
) -> Path:
    """The cache entry of a model (``seeds=None``) or an ensemble trained on ``data``."""
    scenario = str(getattr(data, "scenario", "unknown"))
    n = len(_np(data.episode_ids))
    fingerprint = array_fingerprint((k, _np(getattr(data, k))) for k in DATA_FIELDS)
    if seeds is not None:
        config = dataclasses.replace(config, seed=0)
    key = CostModelKey(scenario, n, fingerprint, config, tuple(int(s) for s in seeds or ()))
    tag = "_ens" + "-".join(str(int(s)) for s in seeds) if seeds is not None else ""
    return entry_path("cost_models", key, f"{scenario}_n{n}_{config.kind}{tag}", cache_dir)


def load_cached(
    path: Path | None, build: Any, force: bool = False
) -> tuple[torch.nn.Module, dict[str, Any]] | None:
    """The model of entry ``path`` (``build()`` with the saved weights) and its log, or None
    (no cache, ``force`` — the entry is then invalidated —, missing, or failed its check)."""
    if path is None:
        return None
    if force:
        invalidate(path)
        return None

    def decode(entry: Entry) -> tuple[torch.nn.Module, dict[str, Any]]:
        state = entry.load("model.pt")
        model = build()
        try:
            model.load_state_dict(state)
        except Exception as error:  # noqa: BLE001 - wrong keys or shapes: do not use
            raise CorruptEntry(f"model.pt: not this model's weights ({error})") from None
        log = dict(entry.load("log.json"))
        return model, {**log, "cached": True, "cache_path": str(path)}

    return load_entry(path, decode)


def save_cached(path: Path | None, model: torch.nn.Module, log: dict[str, Any]) -> None:
    """Writes the entry ``path``: weights and log, then the manifest."""
    if path is None:
        return
    files = {"model.pt": model.state_dict(), "log.json": log}
    write_entry(path, files, {"entry": path.name}, {"kind": type(model).__name__})
    log["cache_path"] = str(path)


def finish_training(
    path: Path | None,
    model: torch.nn.Module,
    log: dict[str, Any],
    config: CostModelConfig,
    members: int,
    processes: int = 1,
) -> None:
    """Records a trained model (or ensemble of ``members`` trained over ``processes``
    processes) in the task ledger, then caches it."""
    record_task(
        "cost_model",
        log["seconds"],
        scenario=log["scenario"],
        model=config.kind,
        target=config.target,
        steps=config.steps,
        members=members,
        processes=processes,
    )
    save_cached(path, model, log)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
def train_cost_model(
    data: Any,
    config: CostModelConfig = CostModelConfig(),  # noqa: B008 - frozen, safe default
    progress: bool = True,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    force: bool = False,
) -> tuple[_CostModel, dict[str, Any]]:
    """Train a cost model by MSE on one scenario's offline data (or load it from the cache).

    Episodes are split into train / held-out (``config.holdout_fraction``); scalers are fitted
    on the training rows; minibatches come from a private ``torch.Generator`` and the initial
    weights are drawn inside ``torch.random.fork_rng``, so the global RNG state is untouched.

    Args:
        data: :class:`~polycstr_lib.reactor.datasets.OfflineData`-like object (``observations (N,
        9)``,
            ``actions (N, 2)``, ``costs (N,)``, ``episode_ids (N,)``, ``scenario``).
        config: model and training settings.
        progress: show a progress bar.
        cache: load from / save to the artifact cache (key: :class:`CostModelKey`; the entry
            is verified on load, and one that fails is moved aside and retrained).
        cache_dir: cache root; default :func:`polycstr_lib.toolkit.store.artifact_dir`.
        force: retrain (and overwrite the cached entry) even if cached.

    Returns:
        ``(model, log)``: the model in eval mode (float32) and a dict with ``train_episodes``,
        ``heldout_episodes``, ``train_r2``, ``heldout_r2``, ``history`` (step, train loss,
        held-out loss), ``seconds`` and ``cached`` (True when loaded).
    """
    obs_all = torch.as_tensor(data.observations, dtype=torch.float32)
    act_all = torch.as_tensor(data.actions, dtype=torch.float32)
    obs_dim, action_dim = obs_all.shape[-1], act_all.shape[-1]

    path = cost_model_entry(data, config, cache_dir) if cache else None

    def build() -> _CostModel:
        with torch.random.fork_rng(devices=[]):
            model = build_cost_model(config, obs_dim, action_dim)
        model.target, model.gamma = config.target, config.gamma
        return model

    cached = load_cached(path, build, force)
    if cached is not None:
        model, log = cached
        return model.eval(), log
    require_training("cost model", path or "cost_models/(cache off)")

    t0 = time.perf_counter()
    y_all = cost_targets(data, config.target, config.gamma)
    train_eps, held_eps = split_episodes(data.episode_ids, config.holdout_fraction, config.seed)
    tr = torch.as_tensor(_rows(data, train_eps))
    ho = torch.as_tensor(_rows(data, held_eps))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = build_cost_model(config, obs_dim, action_dim)
    model.target, model.gamma = config.target, config.gamma
    model.set_normalization(obs_all[tr], y_all[tr])
    y_std = float(model.y_std)

    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    ratio = config.lr_final_ratio

    def lr_at(step: int) -> float:
        frac = step / max(config.steps - 1, 1)
        return config.lr * (ratio + (1.0 - ratio) * 0.5 * (1.0 + math.cos(math.pi * frac)))

    def heldout_loss() -> float:
        if len(ho) == 0:
            return float("nan")
        pred = _predict(model, obs_all[ho], act_all[ho])
        return float((((pred - y_all[ho]) / y_std) ** 2).mean())

    history: list[list[float]] = []
    bar = tqdm(
        total=config.steps, desc=f"cost model ({config.kind})", leave=False, disable=not progress
    )
    model.train()
    running = 0.0
    for step in range(config.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        idx = tr[torch.randint(len(tr), (config.batch,), generator=gen)]
        pred = model(obs_all[idx], act_all[idx])
        loss = (((pred - y_all[idx]) / y_std) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        value = loss.detach().item()
        running = 0.98 * running + 0.02 * value if step else value
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
            model.eval()
            history.append([step + 1, running, heldout_loss()])
            model.train()
            bar.set_postfix(train=f"{running:.4f}", heldout=f"{history[-1][2]:.4f}")
        bar.update(1)
    bar.close()
    model.eval()

    log: dict[str, Any] = {
        "config": asdict(config),
        "scenario": str(getattr(data, "scenario", "unknown")),
        "train_episodes": [int(e) for e in train_eps],
        "heldout_episodes": [int(e) for e in held_eps],
        "train_r2": r2_score(model, data, train_eps, y_all),
        "heldout_r2": r2_score(model, data, held_eps, y_all) if len(held_eps) else float("nan"),
        "history": history,
        "seconds": time.perf_counter() - t0,
        "cached": False,
    }
    finish_training(path, model, log, config, members=1)
    return model, log
