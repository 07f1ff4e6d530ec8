"""Small, exact toy problems behind the IQL chapter: distribution shift and expectiles.

Everything is NumPy and deterministic given a seed; no learning-rate tuning involved.
"""

from __future__ import annotations

import numpy as np

TOY_OPTIMUM = 0.3  # the best action of the toy bandit


def toy_reward(actions: np.ndarray) -> np.ndarray:
    """True reward of the one-state toy problem: ``-(a - 0.3)^2`` on actions in [-1, 1]."""
    return -((np.asarray(actions) - TOY_OPTIMUM) ** 2)


def narrow_dataset(n: int, centre: float, width: float, noise: float, seed: int):
    """Actions from a narrow behaviour policy ``U(centre - width, centre + width)`` and
    noisy rewards. Returns ``(actions (n,), rewards (n,))``."""
    rng = np.random.default_rng(seed)
    actions = rng.uniform(centre - width, centre + width, n)
    return actions, toy_reward(actions) + noise * rng.standard_normal(n)


def expectile(values: np.ndarray, tau: float, iters: int = 100) -> float:
    """The ``tau``-expectile of ``values``: the ``m`` minimising ``E|tau - 1(v < m)| (v - m)^2``.

    Solved exactly by bisection on the monotone first-order condition.
    """
    if not 0.0 < tau < 1.0:
        raise ValueError(f"tau must be in (0, 1), got {tau}")
    values = np.asarray(values, dtype=np.float64)
    lo, hi = float(values.min()), float(values.max())
    for _ in range(iters):
        m = 0.5 * (lo + hi)
        d = values - m
        grad = np.mean(np.where(d > 0, tau, 1.0 - tau) * d)  # > 0: m is too small
        lo, hi = (m, hi) if grad > 0 else (lo, m)
    return 0.5 * (lo + hi)


def expectile_loss_curve(u: np.ndarray, tau: float) -> np.ndarray:
    """The asymmetric square ``|tau - 1(u < 0)| u^2`` (IQL's value loss) on residuals ``u``."""
    u = np.asarray(u, dtype=np.float64)
    return np.where(u < 0, 1.0 - tau, tau) * u**2


def fitted_q_iteration(
    actions: np.ndarray,
    rewards: np.ndarray,
    gamma: float,
    iterations: int,
    backup: str,
    tau: float = 0.9,
    degree: int = 5,
    grid: np.ndarray | None = None,
):
    """Fitted Q-iteration on the one-state toy MDP with a polynomial Q in the action.

    ``backup='max'`` bootstraps ``max_a Q(a)`` over the whole action range (naive offline
    Q-learning); ``backup='expectile'`` bootstraps the ``tau``-expectile of Q over the
    *dataset's* actions (IQL's in-sample value, never querying unseen actions).

    Returns:
        ``(values (iterations,), q_on_grid (grid,))``: the bootstrapped state value at each
        iteration, and the final Q on ``grid`` (default 201 points in [-1, 1]).
    """
    if backup not in ("max", "expectile"):
        raise ValueError(f"backup must be 'max' or 'expectile', got {backup!r}")
    grid = np.linspace(-1, 1, 201) if grid is None else grid
    value, values = 0.0, []
    coeffs = np.zeros(degree + 1)
    for _ in range(iterations):
        coeffs = np.polyfit(actions, rewards + gamma * value, degree)
        if backup == "max":
            value = float(np.polyval(coeffs, grid).max())
        else:
            value = expectile(np.polyval(coeffs, actions), tau)
        values.append(value)
    return np.array(values), np.polyval(coeffs, grid)


def true_optimal_value(gamma: float) -> float:
    """Value of always taking the best action in the toy MDP: ``r(a*) / (1 - gamma) = 0``."""
    return float(toy_reward(TOY_OPTIMUM)) / (1.0 - gamma)
