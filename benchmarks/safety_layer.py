"""Latency of the safety layer against a policy's forward pass (one CPU thread).

For one action and a batch of 100, times the correction of a base action by K = 1..5
projected gradient steps and by K = 1..5 damped Newton steps on a 2x64 PICNN (the deployment
path, :meth:`CorrectedPolicy.act` around a policy that costs nothing, NumPy in and out; and the
public :func:`correct_actions`, which also returns diagnostics), beside the forward pass of a
2x256 MLP policy in the same run. Also times the plain-NN cost model (autograd path) at K = 5,
and at K = 5 the support-aware variants: normalised steps, gradient steps in a trust region,
and uncertainty-aware steps on a 5-member PICNN ensemble (pessimistic cost, κ = 0.5), and
the multi-step correction of a plan of H = 3 actions (normalised steps on a PICNN over 6
action inputs).

Run: ``python benchmarks/safety_layer.py [--repeats 300] [--threads 1]``.
Targets: <= 1 ms for one action with K = 5 gradient steps, <= 2 ms for a batch of 100.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from polycstr_lib.correction.cost_models import PICNN, CostEnsemble, MLPCost
from polycstr_lib.correction.safety import CorrectedPolicy, correct_actions

SIGMA = np.array([0.088, 0.023])  # the data's action spread, order of magnitude (startup)
OBS_SCALE = np.array([450.0, 10.0, 1.5e-6, 100.0, 350.0, 5.0, 2.0, 1.5, 340.0], dtype=np.float32)


class MLPPolicy:
    """A 2x256 tanh-squashed MLP policy with the NumPy ``act`` interface of the agents."""

    name = "MLP"

    def __init__(self, obs_dim: int = 9, action_dim: int = 2) -> None:
        self.net = nn.Sequential(
            nn.Linear(obs_dim, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
            nn.Linear(256, action_dim), nn.Tanh(),
        ).eval()  # fmt: skip

    def act(self, obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.net(torch.as_tensor(obs)).numpy()


class ZeroCostPolicy:
    """Returns a fixed action: isolates the correction's own latency."""

    name = "const"

    def __init__(self, action_dim: int = 2) -> None:
        self.action = np.full(action_dim, 0.5, dtype=np.float32)

    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs)
        return self.action if obs.ndim == 1 else np.broadcast_to(self.action, (len(obs), 2))


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 30) -> float:
    """Median wall time of ``fn()`` in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def with_scalers(model: nn.Module) -> nn.Module:
    """Give an untrained cost model plausible observation scalers (timing only)."""
    with torch.no_grad():
        model.obs_mean.copy_(torch.as_tensor(OBS_SCALE))
        model.obs_std.copy_(torch.as_tensor(0.1 * OBS_SCALE))
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    picnn = with_scalers(PICNN())
    mlp_cost = with_scalers(MLPCost())
    policy = MLPPolicy()
    rng = np.random.default_rng(0)
    obs = {
        b: (OBS_SCALE * (1 + 0.1 * rng.normal(size=(b, 9)))).astype(np.float32) for b in (1, 100)
    }
    obs[1] = obs[1][0]  # a single observation, shape (9,)
    act = {b: policy.act(o) for b, o in obs.items()}

    policy_ms = {b: median_ms(lambda b=b: policy.act(obs[b]), args.repeats) for b in (1, 100)}
    rows = []
    configs = [("PICNN", picnn, "gradient", k) for k in range(1, 6)]
    configs += [("PICNN", picnn, "newton", k) for k in range(1, 6)]
    configs += [("NN", mlp_cost, "gradient", 5), ("NN", mlp_cost, "newton", 5)]
    ensemble = CostEnsemble([with_scalers(PICNN()) for _ in range(5)], range(5)).eval()
    plan_picnn = with_scalers(PICNN(action_dim=6))
    extra = {
        "normalised": ("PICNN", picnn, "normalised", {"action_scale": SIGMA}),
        "trust": ("PICNN", picnn, "gradient", {"action_scale": SIGMA, "trust_radius": 1.0}),
        "pess.": ("PICNNx5", ensemble, "gradient", {"pessimism": 0.5}),
        # multi-step: the plan of the next 3 actions on a PICNN over 6 action inputs
        "plan H=3": ("PICNN(6)", plan_picnn, "normalised", {"action_scale": SIGMA, "horizon": 3}),
    }
    configs = [(*c, {}) for c in configs]
    configs += [(name, model, method, 5, kw) for name, model, method, kw in extra.values()]
    labels = [c[2] for c in configs[: -len(extra)]] + list(extra)
    for (model_name, model, method, k, kw), label in zip(configs, labels, strict=True):
        plus = CorrectedPolicy(ZeroCostPolicy(), model, method=method, steps=k, **kw)
        row = [model_name, label, k]
        for b in (1, 100):
            row.append(median_ms(lambda p=plus, b=b: p.act(obs[b]), args.repeats))
            row.append(
                median_ms(
                    lambda m=model, b=b, meth=method, k=k, kw=kw: correct_actions(
                        m, obs[b], act[b], meth, k, **kw
                    ),
                    args.repeats,
                )
            )
        rows.append(row)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), median of "
          f"{args.repeats} repeats, times in ms")  # fmt: skip
    print(f"2x256 MLP policy forward: 1 obs {policy_ms[1]:.3f} ms, 100 obs {policy_ms[100]:.3f} ms")
    head = (
        f"{'cost model':<10} {'variant':<10} {'K':>2} | {'1: act':>7} {'1: c_a':>7} {'x pol':>6} |"
        f" {'100: act':>8} {'100: c_a':>8} {'x pol':>6}"
    )
    print(head)
    print("-" * len(head))
    for name, method, k, a1, c1, a100, c100 in rows:
        print(
            f"{name:<10} {method:<10} {k:>2} | {a1:7.3f} {c1:7.3f} {a1 / policy_ms[1]:6.1f} |"
            f" {a100:8.3f} {c100:8.3f} {a100 / policy_ms[100]:6.1f}"
        )
    print("act: CorrectedPolicy.act around a free policy (deployment path, no diagnostics);")
    print("c_a: correct_actions (with diagnostics); x pol: act time / policy forward time.")
    grad5 = next(r for r in rows if r[:3] == ["PICNN", "gradient", 5])
    print(
        f"targets (PICNN, K=5 gradient, deployment path): 1 action {grad5[3]:.3f} ms "
        f"(<= 1 ms: {'yes' if grad5[3] <= 1.0 else 'NO'}), batch of 100 {grad5[5]:.3f} ms "
        f"(<= 2 ms: {'yes' if grad5[5] <= 2.0 else 'NO'})"
    )


if __name__ == "__main__":
    main()
