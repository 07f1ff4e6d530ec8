"""Tests of the cost models: convexity of the PICNN, training, targets, cache, certificate."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from polycstr_lib.correction.cost_models import (
    PICNN,
    AutogradActionCost,
    CostModelConfig,
    MLPCost,
    action_gradients,
    convexity_certificate,
    cost_targets,
    direction_agreement,
    discounted_cost_to_go,
    r2_score,
    sign_flip_rate,
    split_episodes,
    train_cost_model,
)

torch.set_num_threads(1)

SCALES = np.array([450.0, 10.0, 1.5e-6, 100.0, 350.0, 5.0, 2.0, 1.5, 340.0])


def synthetic_data(n_episodes: int = 30, steps: int = 40, seed: int = 0) -> SimpleNamespace:
    """Observations on very different scales; a cost convex in the action, free in the state."""
    rng = np.random.default_rng(seed)
    n = n_episodes * steps
    z = rng.normal(size=(n, 9))
    obs = SCALES * (1.0 + 0.1 * z)
    actions = rng.uniform(-1.0, 1.0, size=(n, 2))
    centre = np.tanh(np.stack([z[:, 0] - z[:, 3], 0.5 * z[:, 4] + z[:, 2]], axis=1))
    d = actions - centre
    costs = 2.0 * d[:, 0] ** 2 + d[:, 1] ** 2 + 0.5 * d[:, 0] * d[:, 1] + 0.3 * np.abs(z[:, 5])
    ids = np.repeat(np.arange(n_episodes), steps)
    timeouts = np.zeros(n)
    timeouts[steps - 1 :: steps] = 1.0
    f32 = torch.float32
    return SimpleNamespace(
        observations=torch.as_tensor(obs, dtype=f32),
        actions=torch.as_tensor(actions, dtype=f32),
        costs=torch.as_tensor(costs, dtype=f32),
        rewards=torch.as_tensor(-costs, dtype=f32),
        next_observations=torch.as_tensor(obs, dtype=f32),
        timeouts=torch.as_tensor(timeouts, dtype=f32),
        episode_ids=torch.as_tensor(ids, dtype=torch.int64),
        scenario="synthetic",
    )


def random_picnn(seed: int, positivity: str = "softplus") -> PICNN:
    """A PICNN with random (larger than initial) weights and random scalers, float64."""
    torch.manual_seed(seed)
    model = PICNN(positivity=positivity)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * (1.0 if "z_raw" in name else 0.7))
        model.obs_mean.copy_(torch.as_tensor(SCALES, dtype=torch.float32))
        model.obs_std.copy_(torch.as_tensor(0.1 * SCALES, dtype=torch.float32))
        model.y_mean.fill_(3.0)
        model.y_std.fill_(2.0)
    return model.double()


# ----------------------------------------------------------------------------------------------
# Convexity
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_picnn_convex_for_random_weights(seed: int) -> None:
    model = random_picnn(seed)
    gen = torch.Generator().manual_seed(seed)
    n = 4000
    s = model.obs_mean + model.obs_std * torch.randn(n, 9, generator=gen, dtype=torch.float64)
    a = 3.0 * torch.rand(n, 2, generator=gen, dtype=torch.float64) - 1.5
    b = 3.0 * torch.rand(n, 2, generator=gen, dtype=torch.float64) - 1.5
    lam = torch.rand(n, 1, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        mid = model(s, lam * a + (1 - lam) * b)
        chord = lam[:, 0] * model(s, a) + (1 - lam[:, 0]) * model(s, b)
    assert bool((chord - mid >= -1e-10 * (1 + chord.abs())).all())
    # Hessian eigenvalues via torch.autograd.functional.hessian, per sample, float64.
    for i in range(20):
        h = torch.autograd.functional.hessian(lambda x, i=i: model(s[i], x), a[i])
        assert float(torch.linalg.eigvalsh(h).min()) >= -1e-8
    cert = convexity_certificate(model)
    assert cert["convex"], cert
    assert cert["min_hessian_eig"] >= -1e-8


def test_picnn_float64_matches_float32_and_closed_form_derivatives() -> None:
    model32 = random_picnn(3).float()
    model64 = copy.deepcopy(model32).double()
    s = model32.obs_mean + model32.obs_std * torch.randn(50, 9)
    a = 2 * torch.rand(50, 2) - 1
    c32 = model32(s, a)
    c64 = model64(s.double(), a.double())
    assert c32.dtype == torch.float32 and c64.dtype == torch.float64
    torch.testing.assert_close(c32.double(), c64, rtol=1e-4, atol=1e-4)
    fast = model64.conditioned(s.double())
    slow = AutogradActionCost(model64, s.double())
    pairs = zip(fast.value_grad_hess(a.double()), slow.value_grad_hess(a.double()), strict=True)
    for x, y in pairs:
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(
        fast.value_and_grad(a.double())[1], slow.value_and_grad(a.double())[1]
    )
    torch.testing.assert_close(fast.value(a.double()), c64)
    assert model32(s[0], a[0]).shape == ()


def test_certificate_can_fail() -> None:
    # 1) an unconstrained PICNN with a negative raw z-weight fails structurally (and,
    #    with strongly negative weights, numerically).
    model = random_picnn(0, positivity="none")
    with torch.no_grad():
        model.z_raw[1].fill_(-3.0)
    cert = convexity_certificate(model)
    assert not cert["structural_ok"] and cert["min_z_weight"] < 0
    assert not cert["numerical_ok"] and not cert["convex"]
    # 2) monkeypatched effective weights of a constrained model: structural check fails.
    good = random_picnn(1)
    assert convexity_certificate(good)["convex"]
    orig = good.effective_z_weights
    good.effective_z_weights = lambda: [-w for w in orig()]  # type: ignore[method-assign]
    assert not convexity_certificate(good)["structural_ok"]
    # 3) the MLP has no structure: never certified.
    assert not convexity_certificate(MLPCost().double())["convex"]


def test_reparametrisation_keeps_weights_nonnegative() -> None:
    for positivity in ("softplus", "square"):
        model = PICNN(positivity=positivity)
        with torch.no_grad():
            for raw in model.z_raw:
                raw.fill_(-50.0)
        assert all(float(w.detach().min()) >= 0 for w in model.effective_z_weights())


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["picnn", "mlp"])
def test_models_learn_synthetic_convex_cost(kind: str, tmp_path) -> None:
    data = synthetic_data()
    steps = 1200 if kind == "picnn" else 2500
    cfg = CostModelConfig(kind=kind, steps=steps, batch=128, lr=3e-3, eval_every=400)
    state = torch.random.get_rng_state()
    model, log = train_cost_model(data, cfg, progress=False, cache=False)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    assert log["heldout_r2"] > 0.9, log["heldout_r2"]
    assert r2_score(model, data, log["heldout_episodes"]) == pytest.approx(log["heldout_r2"])
    assert set(log["train_episodes"]).isdisjoint(log["heldout_episodes"])
    if kind == "picnn":
        cert = convexity_certificate(model, observations=data.observations)
        assert cert["convex"], cert


def test_every_parameter_changes_after_one_step() -> None:
    data = synthetic_data(n_episodes=5, steps=20)
    for kind in ("picnn", "mlp"):
        torch.manual_seed(0)
        cfg = CostModelConfig(kind=kind, steps=1, batch=64, eval_every=1, holdout_fraction=0.0)
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed)
            fresh = PICNN() if kind == "picnn" else MLPCost()
        model, _ = train_cost_model(data, cfg, progress=False, cache=False)
        before = dict(fresh.named_parameters())
        for name, p in model.named_parameters():
            assert not torch.equal(p, before[name]), f"{kind}: {name} did not change"


def test_training_is_reproducible_and_cached(tmp_path) -> None:
    data = synthetic_data(n_episodes=6, steps=20)
    cfg = CostModelConfig(steps=30, batch=32, eval_every=10)
    m1, log1 = train_cost_model(data, cfg, progress=False, cache_dir=tmp_path)
    assert not log1["cached"]
    m2, log2 = train_cost_model(data, cfg, progress=False, cache_dir=tmp_path)
    assert log2["cached"] and log2["heldout_episodes"] == log1["heldout_episodes"]
    for (k, p), q in zip(m1.state_dict().items(), m2.state_dict().values(), strict=True):
        assert torch.equal(p, q), k
    m3, _ = train_cost_model(data, cfg, progress=False, cache=False)
    for p, q in zip(m1.state_dict().values(), m3.state_dict().values(), strict=True):
        assert torch.equal(p, q)


# ----------------------------------------------------------------------------------------------
# Targets and split
# ----------------------------------------------------------------------------------------------
def test_cost_to_go_matches_numpy_loop() -> None:
    rng = np.random.default_rng(0)
    lengths = [5, 1, 7, 3]
    ids = np.concatenate([np.full(n, e + 10) for e, n in enumerate(lengths)])
    costs = rng.uniform(0, 3, size=len(ids))
    gamma = 0.8
    expected = np.zeros_like(costs)
    for t in range(len(costs)):
        k = t
        while k < len(costs) and ids[k] == ids[t]:
            expected[t] += gamma ** (k - t) * costs[k]
            k += 1
    np.testing.assert_allclose(discounted_cost_to_go(costs, ids, gamma), expected, rtol=1e-12)
    data = SimpleNamespace(costs=torch.as_tensor(costs), episode_ids=torch.as_tensor(ids))
    got = cost_targets(data, "cost_to_go", gamma)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(cost_targets(data, "one_step").numpy(), costs, rtol=1e-6)
    np.testing.assert_allclose(discounted_cost_to_go(costs, ids, 0.0), costs)


def test_split_by_episode() -> None:
    ids = np.repeat(np.arange(10), 3)
    train, held = split_episodes(ids, 0.2, seed=1)
    assert len(held) == 2 and len(train) == 8
    assert set(train) | set(held) == set(range(10))
    assert np.array_equal(held, split_episodes(ids, 0.2, seed=1)[1])


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        CostModelConfig(kind="icnn")
    with pytest.raises(ValueError):
        CostModelConfig(target="reward")
    with pytest.raises(ValueError):
        CostModelConfig(holdout_fraction=1.0)


# ----------------------------------------------------------------------------------------------
# Gradient-stability helpers
# ----------------------------------------------------------------------------------------------
def test_direction_helpers() -> None:
    g = np.array([[1.0, 0.0], [1.0, 0.1], [-1.0, 0.0], [-1.0, -0.2], [1.0, 0.0]])
    assert sign_flip_rate(g) == pytest.approx(2 / 4)
    assert direction_agreement(g, g) == 1.0
    assert direction_agreement(g, -g) == 0.0
    assert direction_agreement(g, np.zeros_like(g)) == 0.0
    assert np.isnan(sign_flip_rate(g[:1]))
    with pytest.raises(ValueError):
        direction_agreement(g, g[:2])


def test_action_gradients_match_autograd() -> None:
    model = random_picnn(0)
    s = model.obs_mean + model.obs_std * torch.randn(12, 9, dtype=torch.float64)
    a = 2 * torch.rand(12, 2, dtype=torch.float64) - 1
    g = action_gradients(model, s.numpy(), a.numpy())
    assert g.shape == (12, 2)
    eps = 1e-6
    e0 = torch.tensor([eps, 0.0], dtype=torch.float64)
    with torch.no_grad():
        fd = (model(s, a + e0) - model(s, a - e0)) / (2 * eps)
    np.testing.assert_allclose(g[:, 0], fd.numpy(), rtol=1e-5, atol=1e-7)
