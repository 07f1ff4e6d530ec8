"""Training a cost model by MSE on one scenario's offline data, cached as an artifact."""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from polycstr_lib.correction.cost_models.config import CostModelConfig
from polycstr_lib.correction.cost_models.diagnostics import _predict, r2_score
from polycstr_lib.correction.cost_models.networks import _CostModel, build_cost_model
from polycstr_lib.correction.cost_models.targets import _np, _rows, cost_targets, split_episodes


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
def _cache_path(data: Any, config: CostModelConfig, cache_dir: str | Path | None) -> Path:
    from polycstr_lib.toolkit.store import artifact_dir, config_key

    root = Path(cache_dir) if cache_dir is not None else Path(artifact_dir())
    scenario = str(getattr(data, "scenario", "unknown"))
    n = len(_np(data.episode_ids))
    return root / "cost_models" / f"{scenario}_n{n}_{config.kind}_{config_key(config)}.pt"


def train_cost_model(
    data: Any,
    config: CostModelConfig = CostModelConfig(),  # noqa: B008 - frozen, safe default
    progress: bool = True,
    cache: bool = True,
    cache_dir: str | Path | None = None,
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
        cache: load from / save to the artifact cache (key: scenario, N, config).
        cache_dir: cache root; default :func:`polycstr_lib.toolkit.store.artifact_dir`.

    Returns:
        ``(model, log)``: the model in eval mode (float32) and a dict with ``train_episodes``,
        ``heldout_episodes``, ``train_r2``, ``heldout_r2``, ``history`` (step, train loss,
        held-out loss), ``seconds`` and ``cached`` (True when loaded).
    """
    obs_all = torch.as_tensor(data.observations, dtype=torch.float32)
    act_all = torch.as_tensor(data.actions, dtype=torch.float32)
    obs_dim, action_dim = obs_all.shape[-1], act_all.shape[-1]

    path = _cache_path(data, config, cache_dir) if cache else None
    if path is not None and path.exists():
        blob = torch.load(path, weights_only=True)
        with torch.random.fork_rng(devices=[]):
            model = build_cost_model(config, obs_dim, action_dim)
        model.load_state_dict(blob["state_dict"])
        model.target, model.gamma = config.target, config.gamma
        log = dict(blob["log"])
        log["cached"] = True
        log["cache_path"] = str(path)
        return model.eval(), log

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
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.steps, desc=f"cost model ({config.kind})", leave=False)
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
            if bar is not None:
                bar.set_postfix(train=f"{running:.4f}", heldout=f"{history[-1][2]:.4f}")
        if bar is not None:
            bar.update(1)
    if bar is not None:
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
    if path is not None:
        from polycstr_lib.toolkit.store import atomic_torch_save

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save({"state_dict": model.state_dict(), "log": log}, path)
        log["cache_path"] = str(path)
    return model, log
