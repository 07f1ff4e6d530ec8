"""The simulator's action gradient and the gradient-stability metrics."""

import numpy as np
import pytest
import torch

from polycstr_lib.correction.gradients import (
    gradient_stability,
    one_step_cost,
    simulator_action_gradient,
)
from polycstr_lib.reactor.env import PolyCSTREnv
from polycstr_lib.reactor.pi import GainRanges, PIController
from polycstr_lib.reactor.rollout import rollout


def test_one_step_cost_equals_the_env_cost():
    env = PolyCSTREnv("grade_up")
    _, info = env.reset(seed=4)
    action = np.array([0.3, -0.7])
    _, _, _, _, after = env.step(action)
    cost = one_step_cost(
        info["state"][None], info["inputs"][None], action[None], info["setpoint"][None]
    )
    assert cost[0] == pytest.approx(after["cost"], rel=1e-12)


def test_finite_difference_gradient_is_consistent_across_step_sizes():
    env = PolyCSTREnv("startup")
    _, info = env.reset(seed=1)
    args = (
        info["state"][None],
        info["inputs"][None],
        np.array([[0.2, 0.1]]),
        info["setpoint"][None],
    )
    coarse = simulator_action_gradient(*args, eps=1e-3)
    fine = simulator_action_gradient(*args, eps=1e-4)
    np.testing.assert_allclose(coarse, fine, rtol=1e-3)
    assert np.abs(coarse).max() > 0  # the action moves the next-step cost


class ConstantSlope(torch.nn.Module):
    """c(s, a) = w . a: the same gradient everywhere."""

    def __init__(self, w):
        super().__init__()
        self.register_buffer("w", torch.tensor(w, dtype=torch.float64))

    def forward(self, obs, action):
        return action @ self.w


def test_stability_metrics_on_a_constant_gradient_model():
    traj = rollout(PIController(GainRanges().nominal()), "grade_down", [7, 8], steps=12)
    table, grads = gradient_stability(traj, {"const": ConstantSlope([1.0, -1.0])})
    assert table.loc[("const", "all"), "flip_rate"] == 0.0
    agree = table.loc[("const", "all"), "agree_with_simulator"]
    assert 0.0 <= agree <= 1.0
    sim = grads[0]["simulator"]
    expected = np.mean(sim @ np.array([1.0, -1.0]) > 0)
    assert np.isclose(
        np.mean([np.mean(g["simulator"] @ np.array([1.0, -1.0]) > 0) for g in grads]), agree
    )
    assert expected >= 0.0 and sim.shape == (12, 2)
