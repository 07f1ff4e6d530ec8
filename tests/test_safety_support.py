"""Tests of the scale-free, trust-region and uncertainty-aware corrections of the safety layer."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from polycstr_lib.correction.cost_models import CostEnsemble
from polycstr_lib.correction.safety import CorrectedPolicy, action_spread, correct_actions
from tests.test_safety import ConstantPolicy, QuadraticCost, batch, random_picnn

torch.set_num_threads(1)

SIGMA = np.array([0.088, 0.023])

VARIANTS = {
    "normalised": {"method": "normalised", "action_scale": SIGMA},
    "trust": {"method": "gradient", "action_scale": SIGMA, "trust_radius": 1.5},
    "normalised+trust": {"method": "normalised", "action_scale": SIGMA, "trust_radius": 0.7},
    "newton+trust": {"method": "newton", "action_scale": SIGMA, "trust_radius": 2.0},
    "pessimistic": {"method": "gradient", "pessimism": 0.5},
    "pessimistic+normalised": {"method": "normalised", "action_scale": SIGMA, "pessimism": 1.0},
}


def ensemble(n: int = 3) -> CostEnsemble:
    return CostEnsemble([random_picnn(10 + k) for k in range(n)], list(range(n)))


def model_for(name: str):
    return ensemble() if "pessimistic" in name else random_picnn(7)


def test_action_spread_is_the_per_dimension_std() -> None:
    rng = np.random.default_rng(0)
    actions = rng.normal(size=(500, 2)) * [0.1, 0.02]
    data = SimpleNamespace(actions=torch.as_tensor(actions, dtype=torch.float32))
    np.testing.assert_allclose(action_spread(data), actions.std(axis=0), rtol=1e-6)
    with pytest.raises(ValueError, match="spread"):
        action_spread(SimpleNamespace(actions=np.zeros((10, 2))))
    with pytest.raises(ValueError):
        action_spread(SimpleNamespace(actions=np.array([[np.nan, 0.0], [0.0, 1.0]])))


def test_normalised_step_moves_exactly_eta_data_spreads() -> None:
    model = QuadraticCost(scale=0.3).double()
    obs, act = batch(50, seed=1)
    act = 0.3 * act  # inside the box, far enough from its edges for one step of 0.5 σ
    ref = None
    for cost_scale in (1e-4, 1.0, 1e4):  # the step does not depend on the cost's units

        class Scaled(torch.nn.Module):
            def forward(self, o, a, s=cost_scale):
                return s * model(o, a)

        out, _ = correct_actions(Scaled(), obs, act, "normalised", 1, 0.5, action_scale=SIGMA)
        moved = ((out - act) / torch.as_tensor(SIGMA)).norm(dim=-1)
        torch.testing.assert_close(moved, torch.full_like(moved, 0.5))
        ref = out if ref is None else ref
        torch.testing.assert_close(out, ref)
    # the move is a descent direction
    _, diag = correct_actions(model, obs, act, "normalised", 1, 0.05, action_scale=SIGMA)
    assert bool((diag["cost_after"] < diag["cost_before"]).all())


def test_normalised_step_at_a_minimiser_stays_put() -> None:
    model = QuadraticCost(scale=0.5).double()
    obs, _ = batch(10, seed=2)
    star = model.minimiser(obs)
    out, _ = correct_actions(model, obs, star, "normalised", 3, 0.5, action_scale=SIGMA)
    assert bool(torch.isfinite(out).all())
    torch.testing.assert_close(out, star, rtol=0, atol=1e-7)


@pytest.mark.parametrize("method", ["gradient", "normalised", "newton"])
def test_trust_region_bounds_the_move(method: str) -> None:
    model = QuadraticCost(scale=3.0).double()  # minimiser far away: the region binds
    obs, act = batch(200, seed=3)
    rho = 1.0
    out, _ = correct_actions(model, obs, act, method, 5, 10.0, action_scale=SIGMA, trust_radius=rho)
    excess = (out - act).abs() - rho * torch.as_tensor(SIGMA)
    assert float(excess.max()) <= 1e-12
    assert float(out.abs().max()) <= 1.0
    # without the region the same steps move much further
    free, _ = correct_actions(model, obs, act, method, 5, 10.0, action_scale=SIGMA)
    assert float(((free - act).abs() - rho * torch.as_tensor(SIGMA)).max()) > 0.1


@pytest.mark.parametrize("name", list(VARIANTS))
def test_batched_equals_per_sample(name: str) -> None:
    model, kwargs = model_for(name), VARIANTS[name]
    obs, act = batch(12, seed=5)
    out, _ = correct_actions(model, obs, act, steps=4, step_size=0.3, **kwargs)
    single = torch.stack(
        [
            correct_actions(model, o, a, steps=4, step_size=0.3, **kwargs)[0]
            for o, a in zip(obs, act, strict=True)
        ]
    )
    torch.testing.assert_close(out, single, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_always_inside_the_box_even_for_extreme_inputs(name: str) -> None:
    model, kwargs = model_for(name), VARIANTS[name]
    rng = np.random.default_rng(0)
    obs, _ = batch(100, seed=3)
    obs = obs * 1e3  # far outside the scalers' range
    for eta in (1e-3, 1.0, 1e6):
        act = torch.as_tensor(rng.uniform(-50, 50, size=(100, 2)))
        out, _ = correct_actions(model, obs, act, steps=5, step_size=eta, **kwargs)
        assert bool(torch.isfinite(out).all()) and float(out.abs().max()) <= 1.0


def test_pessimism_changes_the_correction_and_zero_is_the_mean() -> None:
    ens = ensemble()
    obs, act = batch(30, seed=8)
    mean_path, _ = correct_actions(ens, obs, act, "gradient", 3, 1e-3)

    class Mean(torch.nn.Module):  # the plain mean through autograd
        def forward(self, o, a):
            return ens(o, a)

    ref, _ = correct_actions(Mean(), obs, act, "gradient", 3, 1e-3)
    torch.testing.assert_close(mean_path, ref, rtol=1e-9, atol=1e-12)
    pess, diag = correct_actions(ens, obs, act, "gradient", 3, 1e-3, pessimism=1.0)
    assert not torch.allclose(pess, mean_path)
    assert diag["pessimism"] == 1.0


def test_bad_inputs_raise_clear_errors() -> None:
    model = random_picnn(0)
    obs, act = batch(4)
    with pytest.raises(ValueError, match="action_scale"):
        correct_actions(model, obs, act, "normalised")
    with pytest.raises(ValueError, match="action_scale"):
        correct_actions(model, obs, act, trust_radius=1.0)
    with pytest.raises(ValueError, match="action_scale"):
        correct_actions(model, obs, act, "normalised", action_scale=[0.1, -0.1])
    with pytest.raises(ValueError, match="action_scale"):
        correct_actions(model, obs, act, "normalised", action_scale=[0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match="trust_radius"):
        correct_actions(model, obs, act, action_scale=SIGMA, trust_radius=0.0)
    with pytest.raises(ValueError, match="CostEnsemble"):
        correct_actions(model, obs, act, pessimism=0.5)
    with pytest.raises(ValueError, match="pessimism"):
        correct_actions(ensemble(2), obs, act, pessimism=2.0)
    with pytest.raises(ValueError, match="same B"):
        correct_actions(model, obs, act[:3], "normalised", action_scale=SIGMA)
    bad = act.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="actions"):
        correct_actions(model, obs, bad, "normalised", action_scale=SIGMA, trust_radius=1.0)
    with pytest.raises(ValueError, match="action_scale"):
        CorrectedPolicy(ConstantPolicy(np.zeros(2)), model, method="normalised")
    plus = CorrectedPolicy(
        ConstantPolicy(np.zeros(2)), model, method="normalised", action_scale=SIGMA
    )
    with pytest.raises(ValueError, match="observations"):
        plus.act(np.full(9, np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="B, d"):
        plus.act(np.zeros((2, 3, 9), dtype=np.float32))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_corrected_policy_equals_correct_actions(name: str) -> None:
    model, kwargs = model_for(name), VARIANTS[name]
    model = model.float()
    base = ConstantPolicy(np.array([0.9, -0.7]))
    plus = CorrectedPolicy(base, model, steps=3, step_size=0.2, **kwargs)
    obs = np.random.default_rng(0).normal(size=(8, 9)).astype(np.float32)
    out = plus.act(obs)
    ref, _ = correct_actions(model, obs, base.act(obs), steps=3, step_size=0.2, **kwargs)
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
    assert out.dtype == np.float32 and np.abs(out).max() <= 1.0
    assert "trust_radius" in repr(plus)


@pytest.mark.parametrize("name", ["plain", *VARIANTS])
def test_per_sample_step_sizes_equal_separate_calls(name: str) -> None:
    kwargs = VARIANTS.get(name, {})
    model = model_for(name)
    obs, act = batch(6, seed=9)
    etas = np.array([1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0])
    out, _ = correct_actions(model, obs, act, steps=3, step_size=etas, **kwargs)
    for i, eta in enumerate(etas):
        ref, _ = correct_actions(
            model, obs[i : i + 1], act[i : i + 1], steps=3, step_size=eta, **kwargs
        )
        torch.testing.assert_close(out[i : i + 1], ref, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="per-sample"):
        correct_actions(model, obs, act, steps=3, step_size=etas[:4], **kwargs)
