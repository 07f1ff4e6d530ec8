"""Tests of the safety layer (action correction) and the corrected-policy wrapper."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from polycstr_lib.correction.cost_models import PICNN, MLPCost
from polycstr_lib.correction.safety import CorrectedPolicy, correct_actions

torch.set_num_threads(1)


class QuadraticCost(nn.Module):
    """c(s, a) = (a − m(s))ᵀ Q (a − m(s)) with m(s) = scale · tanh(s W): convex, known minimiser."""

    def __init__(self, obs_dim: int = 9, scale: float = 0.8, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("W", torch.randn(obs_dim, 2, generator=gen))
        self.register_buffer("Q", torch.tensor([[2.0, 0.6], [0.6, 1.0]]))
        self.scale = scale

    def minimiser(self, obs: Tensor) -> Tensor:
        return self.scale * torch.tanh(obs.to(self.W.dtype) @ self.W)

    def forward(self, obs: Tensor, action: Tensor) -> Tensor:
        d = action - self.minimiser(obs)
        return torch.einsum("bi,ij,bj->b", d, self.Q, d)


def random_picnn(seed: int = 0) -> PICNN:
    torch.manual_seed(seed)
    model = PICNN()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * (1.0 if "z_raw" in name else 0.7))
    return model.double().eval()


def batch(n: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, 9, generator=gen, dtype=dtype)
    act = 2 * torch.rand(n, 2, generator=gen, dtype=dtype) - 1
    return obs, act


@pytest.mark.parametrize("method", ["gradient", "newton"])
def test_minimiser_stays_in_place(method: str) -> None:
    model = QuadraticCost().double()
    obs, _ = batch(32)
    m = model.minimiser(obs)
    out, diag = correct_actions(model, obs, m, method=method, steps=5, damping=0.0)
    torch.testing.assert_close(out, m, rtol=0, atol=1e-12)
    assert float(diag["step_norms"].max()) < 1e-12


def test_one_undamped_newton_step_reaches_minimiser() -> None:
    model = QuadraticCost().double()
    obs, act = batch(64, seed=1)
    out, diag = correct_actions(model, obs, act, method="newton", steps=1, damping=0.0)
    torch.testing.assert_close(out, model.minimiser(obs), rtol=0, atol=1e-12)
    assert float(diag["cost_after"].max()) < 1e-20
    assert not bool(diag["newton_shifted"].any())


def test_gradient_steps_converge_on_quadratic() -> None:
    model = QuadraticCost().double()
    obs, act = batch(64, seed=2)
    out, diag = correct_actions(model, obs, act, "gradient", steps=200, step_size=0.2)
    torch.testing.assert_close(out, model.minimiser(obs), rtol=0, atol=1e-8)
    assert bool((diag["cost_after"] <= diag["cost_before"]).all())


@pytest.mark.parametrize("method", ["gradient", "newton"])
@pytest.mark.parametrize("kind", ["quadratic", "picnn", "mlp"])
def test_never_leaves_the_box(method: str, kind: str) -> None:
    models = {
        "quadratic": QuadraticCost(scale=3.0).double(),  # minimiser often outside the box
        "picnn": random_picnn(1),
        "mlp": MLPCost().double(),
    }
    model = models[kind]
    rng = np.random.default_rng(0)
    obs, _ = batch(200, seed=3)
    for _ in range(5):
        act = torch.as_tensor(rng.uniform(-5, 5, size=(200, 2)))  # also outside the box
        eta = float(rng.choice([1.0, 10.0, 1e3]))
        out, diag = correct_actions(model, obs, act, method, steps=5, step_size=eta, damping=0.0)
        assert bool(torch.isfinite(out).all())
        assert float(out.abs().max()) <= 1.0
        assert diag["step_norms"].shape == (5, 200)


def test_small_steps_never_increase_picnn_cost() -> None:
    torch.manual_seed(2)
    model = PICNN()  # default initialisation, perturbed: costs and curvature of order one
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    model = model.double().eval()
    obs, act = batch(500, seed=4)
    for steps in (1, 5):
        _, diag = correct_actions(model, obs, act, "gradient", steps=steps, step_size=1e-3)
        assert bool((diag["cost_after"] <= diag["cost_before"] + 1e-12).all())
        assert float((diag["cost_before"] - diag["cost_after"]).max()) > 0
    _, diag = correct_actions(model, obs, act, "newton", steps=3, step_size=0.1, damping=1.0)
    assert bool((diag["cost_after"] <= diag["cost_before"] + 1e-12).all())


@pytest.mark.parametrize("method", ["gradient", "newton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batched_equals_per_sample(method: str, dtype: torch.dtype) -> None:
    model = random_picnn(3).to(dtype)
    obs, act = batch(16, seed=5, dtype=dtype)
    out, _ = correct_actions(model, obs, act, method, steps=4, step_size=0.3)
    assert out.dtype == dtype
    single = torch.stack(
        [correct_actions(model, o, a, method, 4, 0.3)[0] for o, a in zip(obs, act, strict=True)]
    )
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(out, single, rtol=tol, atol=tol)


@pytest.mark.parametrize("method", ["gradient", "newton"])
def test_closed_form_path_equals_autograd_path(method: str) -> None:
    model = random_picnn(4)

    class Plain(nn.Module):  # hides PICNN.conditioned: forces the autograd fallback
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, o: Tensor, a: Tensor) -> Tensor:
            return self.inner(o, a)

    obs, act = batch(40, seed=6)
    fast, d1 = correct_actions(model, obs, act, method, steps=5, step_size=0.2)
    slow, d2 = correct_actions(Plain(), obs, act, method, steps=5, step_size=0.2)
    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(d1["cost_after"], d2["cost_after"])


def test_non_finite_inputs_raise() -> None:
    model = random_picnn(0)
    obs, act = batch(4)
    bad_obs = obs.clone()
    bad_obs[2, 4] = float("nan")
    with pytest.raises(ValueError, match="observations"):
        correct_actions(model, bad_obs, act)
    bad_act = act.clone()
    bad_act[1, 0] = float("inf")
    with pytest.raises(ValueError, match="actions"):
        correct_actions(model, obs, bad_act, method="newton")
    with pytest.raises(ValueError, match="method"):
        correct_actions(model, obs, act, method="adam")
    policy = CorrectedPolicy(ConstantPolicy(np.zeros(2)), model)
    with pytest.raises(ValueError, match="observations"):
        policy.act(np.full(9, np.nan, dtype=np.float32))


class ConstantPolicy:
    name = "BC"

    def __init__(self, action: np.ndarray) -> None:
        self.action = np.asarray(action, dtype=np.float32)

    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs)
        if obs.ndim == 1:
            return self.action.copy()
        return np.tile(self.action, (len(obs), 1))


def test_corrected_policy_wraps_numpy_policy() -> None:
    model = random_picnn(5).float()
    base = ConstantPolicy(np.array([0.9, -0.7]))
    plus = CorrectedPolicy(base, model, method="gradient", steps=3, step_size=0.2)
    assert plus.name == "BC+"
    obs = np.random.default_rng(0).normal(size=(8, 9)).astype(np.float32)
    out = plus.act(obs)
    assert out.dtype == np.float32 and out.shape == (8, 2)
    ref, _ = correct_actions(model, obs, base.act(obs), "gradient", 3, 0.2)
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
    one = plus.act(obs[0])
    assert one.shape == (2,) and one.dtype == np.float32
    np.testing.assert_allclose(one, out[0], rtol=1e-5, atol=1e-6)
    newton = CorrectedPolicy(base, model, method="newton", steps=2)
    assert np.abs(newton.act(obs)).max() <= 1.0


def test_zero_steps_only_clips() -> None:
    model = random_picnn(0)
    obs, _ = batch(3)
    act = torch.tensor([[2.0, -0.5], [0.1, -3.0], [0.0, 0.0]], dtype=torch.float64)
    out, diag = correct_actions(model, obs, act, steps=0)
    torch.testing.assert_close(out, act.clamp(-1, 1))
    torch.testing.assert_close(diag["cost_before"], diag["cost_after"])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.1])
def test_a_step_size_that_is_not_finite_and_nonnegative_is_refused(bad) -> None:
    model = random_picnn(1).float()
    base = ConstantPolicy(np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="step_size must be finite and >= 0"):
        CorrectedPolicy(base, model, steps=1, step_size=bad)
    obs, act = batch(2)
    with pytest.raises(ValueError, match="step_size must be finite and >= 0"):
        correct_actions(random_picnn(1), obs, act, steps=1, step_size=bad)
    with pytest.raises(ValueError, match="step_size must be finite and >= 0"):
        correct_actions(random_picnn(1), obs, act, steps=1, step_size=np.array([0.1, bad]))


def test_a_nan_damping_is_refused() -> None:
    obs, act = batch(2)
    with pytest.raises(ValueError, match="damping must be a finite number"):
        correct_actions(random_picnn(1), obs, act, method="newton", steps=1, damping=float("nan"))
