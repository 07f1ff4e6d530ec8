"""Conformance and oracle tests of the offline agents (BC, IQL, CQL) on tiny synthetic data."""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
import pytest
import torch

from polycstr_lib.agents import (
    BCConfig,
    CQLConfig,
    IQLConfig,
    Scalers,
    advantage_weights,
    agent_from_state,
    cql_penalty,
    expectile_loss,
    make_agent,
    sample_batch,
)
from polycstr_lib.agents.nets import TanhGaussianActor

torch.set_num_threads(1)

OBS_DIM, ACT_DIM = 9, 2
NAMES = ["bc", "iql", "cql"]


@dataclasses.dataclass(frozen=True)
class TinyData:
    """A stand-in for ``OfflineData``: 4 episodes of 16 steps with CSTR-like scales."""

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    costs: torch.Tensor
    next_observations: torch.Tensor
    terminals: torch.Tensor
    timeouts: torch.Tensor
    episode_ids: torch.Tensor
    return_min: float
    return_max: float
    scenario: str = "startup"


def make_tiny_data(n_episodes: int = 4, length: int = 16, seed: int = 0) -> TinyData:
    g = torch.Generator().manual_seed(seed)
    n = n_episodes * length
    scale = torch.tensor([450.0, 10.0, 1.5e-6, 100.0, 350.0, 10.0, 5.0, 1.5, 340.0])
    obs = scale * (1.0 + 0.1 * torch.randn(n, OBS_DIM, generator=g))
    next_obs = scale * (1.0 + 0.1 * torch.randn(n, OBS_DIM, generator=g))
    actions = torch.rand(n, ACT_DIM, generator=g) * 2 - 1
    rewards = -(next_obs[:, 5] ** 2 + next_obs[:, 6] ** 2)
    ep = torch.arange(n) // length
    timeouts = ((torch.arange(n) % length) == length - 1).float()
    returns = torch.zeros(n_episodes).index_add_(0, ep, rewards)
    return TinyData(
        observations=obs.float().contiguous(),
        actions=actions.float(),
        rewards=rewards.float(),
        costs=(next_obs[:, 5].abs() + next_obs[:, 6].abs()).float(),
        next_observations=next_obs.float().contiguous(),
        terminals=torch.zeros(n),
        timeouts=timeouts,
        episode_ids=ep.long(),
        return_min=float(returns.min()),
        return_max=float(returns.max()),
    )


def small_config(name: str, lr: float | None = None):
    """Configs with 2×32 nets (and few CQL samples) to keep the tests fast."""
    if name == "bc":
        cfg = BCConfig(hidden_dims=(32, 32))
        return cfg if lr is None else dataclasses.replace(cfg, lr=lr)
    if name == "iql":
        cfg = IQLConfig(hidden_dims=(32, 32))
        return cfg if lr is None else dataclasses.replace(cfg, lr=lr)
    cfg = CQLConfig(hidden_dims=(32, 32), n_action_samples=4)
    if lr is None:
        return cfg
    return dataclasses.replace(cfg, actor_lr=lr, critic_lr=lr, alpha_lr=lr)


@pytest.fixture(scope="module")
def data() -> TinyData:
    return make_tiny_data()


def new_agent(name: str, data: TinyData, seed: int = 0, lr: float | None = None):
    return make_agent(name, OBS_DIM, ACT_DIM, small_config(name, lr), Scalers.from_data(data), seed)


def all_tensors(agent) -> dict[str, torch.Tensor]:
    """Every parameter/buffer of every network (targets included), plus CQL's log α."""
    out = {
        f"{m}.{k}": v.detach().clone()
        for m, module in agent.modules().items()
        for k, v in module.state_dict().items()
    }
    if hasattr(agent, "log_alpha"):
        out["log_alpha"] = agent.log_alpha.detach().clone()
    return out


# --- conformance suite -----------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_updates_return_finite_losses(name: str, data: TinyData) -> None:
    agent = new_agent(name, data)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        losses = agent.update(sample_batch(data, 32, g))
        assert losses and all(isinstance(v, float) and math.isfinite(v) for v in losses.values())


@pytest.mark.parametrize("name", NAMES)
def test_every_parameter_changes_after_one_step(name: str, data: TinyData) -> None:
    agent = new_agent(name, data, lr=0.05)
    before = all_tensors(agent)
    agent.update(sample_batch(data, 64, torch.Generator().manual_seed(1)))
    after = all_tensors(agent)
    unchanged = [k for k in before if torch.equal(before[k], after[k])]
    assert not unchanged, f"{name}: tensors not updated: {unchanged}"


@pytest.mark.parametrize("name", NAMES)
def test_act_shape_dtype_range(name: str, data: TinyData) -> None:
    agent = new_agent(name, data, lr=0.05)
    g = torch.Generator().manual_seed(2)
    for _ in range(3):  # move the weights away from the initialisation
        agent.update(sample_batch(data, 64, g))
    obs = data.observations[:10].numpy() * np.linspace(-100, 100, 10, dtype=np.float32)[:, None]
    actions = agent.act(obs)
    assert actions.shape == (10, ACT_DIM) and actions.dtype == np.float32
    assert np.all(np.abs(actions) <= 1.0)
    np.testing.assert_array_equal(agent.act(obs), actions)  # deterministic
    single = agent.act(obs[0])
    assert single.shape == (ACT_DIM,) and single.dtype == np.float32
    np.testing.assert_array_equal(single, actions[0])


@pytest.mark.parametrize("name", NAMES)
def test_act_rejects_wrong_observation_size(name: str, data: TinyData) -> None:
    agent = new_agent(name, data)
    with pytest.raises(ValueError, match=r"shape \(B, 9\)"):
        agent.act(np.zeros((3, 8), np.float32))


@pytest.mark.parametrize("name", NAMES)
def test_save_load_gives_identical_actions(name: str, data: TinyData) -> None:
    agent = new_agent(name, data)
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        agent.update(sample_batch(data, 32, g))
    buffer = io.BytesIO()
    torch.save(agent.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    obs = data.observations.numpy()
    restored = agent_from_state(state)
    np.testing.assert_array_equal(restored.act(obs), agent.act(obs))
    # Also into a differently seeded agent built with identity scalers: scalers come along.
    other = make_agent(name, OBS_DIM, ACT_DIM, small_config(name), None, seed=7)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.act(obs), agent.act(obs))
    with pytest.raises(ValueError, match="state is for"):
        make_agent(name, 8, ACT_DIM, small_config(name)).load_state_dict(state)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_gives_identical_weights(name: str, data: TinyData) -> None:
    def run(seed: int) -> dict[str, torch.Tensor]:
        agent = new_agent(name, data, seed=seed)
        g = torch.Generator().manual_seed(seed)
        for _ in range(3):
            agent.update(sample_batch(data, 32, g))
        return all_tensors(agent)

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("name", NAMES)
def test_agents_leave_global_rng_untouched(name: str, data: TinyData) -> None:
    torch_state = torch.get_rng_state()
    agent = new_agent(name, data)
    agent.update(sample_batch(data, 16, torch.Generator().manual_seed(0)))
    agent.act(data.observations.numpy())
    assert torch.equal(torch.get_rng_state(), torch_state)


# --- loss oracles ----------------------------------------------------------------------------


def test_expectile_loss_matches_numpy() -> None:
    diff = np.array([-2.0, -0.5, 0.0, 0.3, 1.5, 4.0], dtype=np.float32)
    for tau in (0.5, 0.7, 0.9):
        weight = np.where(diff < 0, 1.0 - tau, tau)
        expected = np.mean(weight * diff**2)
        got = expectile_loss(torch.from_numpy(diff), tau).item()
        assert got == pytest.approx(expected, rel=1e-6)
    # τ = 0.5 is half the mean squared error.
    assert expectile_loss(torch.from_numpy(diff), 0.5).item() == pytest.approx(
        0.5 * np.mean(diff**2), rel=1e-6
    )


def test_advantage_weights_match_numpy() -> None:
    adv = np.array([-3.0, -0.1, 0.0, 0.5, 1.0, 2.0], dtype=np.float32)
    expected = np.minimum(np.exp(3.0 * adv), 100.0)
    got = advantage_weights(torch.from_numpy(adv), beta=3.0, max_weight=100.0).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got[-1] == 100.0  # exp(6) ≈ 403 is clipped


def test_cql_penalty_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    b, n_r, n_p, temp = 5, 3, 4, 0.7
    q_random = rng.normal(size=(b, n_r)).astype(np.float32)
    q_policy = rng.normal(size=(b, n_p)).astype(np.float32)
    logp_policy = rng.normal(size=(b, n_p)).astype(np.float32)
    q_data = rng.normal(size=b).astype(np.float32)
    logp_random = 2 * np.log(0.5)

    logits = np.concatenate([q_random - logp_random, q_policy - logp_policy], axis=1) / temp
    m = logits.max(axis=1, keepdims=True)
    lse = temp * (m[:, 0] + np.log(np.exp(logits - m).sum(axis=1)))
    expected = np.mean(lse - q_data)

    t = torch.from_numpy
    got = cql_penalty(t(q_random), t(q_policy), logp_random, t(logp_policy), t(q_data), temp)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_tanh_gaussian_log_prob_matches_torch_distributions() -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        actor = TanhGaussianActor(OBS_DIM, ACT_DIM, (16,))
    obs = torch.randn(50, OBS_DIM, generator=torch.Generator().manual_seed(1))
    action, log_prob = actor.sample(obs, torch.Generator().manual_seed(2))
    with torch.no_grad():
        mean, log_std = actor._mean_log_std(obs)
    dist = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()), [torch.distributions.TanhTransform()]
    )
    keep = action.abs() < 0.999  # the reference is unstable at |a| → 1
    expected = dist.log_prob(action.clamp(-0.999, 0.999))
    rows = keep.all(-1)
    torch.testing.assert_close(log_prob[rows], expected.sum(-1)[rows], rtol=1e-4, atol=1e-4)


# --- scalers, sampler, factory ---------------------------------------------------------------


def test_scalers_zscore_and_reward_scale(data: TinyData) -> None:
    s = Scalers.from_data(data)
    z = s.normalize_obs(data.observations).double()
    np.testing.assert_allclose(z.mean(0).numpy(), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std(0, correction=0).numpy(), 1.0, atol=1e-4)
    assert s.reward_scale == pytest.approx(16 / (data.return_max - data.return_min))
    restored = Scalers.from_state_dict(s.state_dict())
    assert torch.equal(restored.obs_std, s.obs_std) and restored.reward_scale == s.reward_scale


def test_reward_scaling_modes(data: TinyData) -> None:
    std = float(data.rewards.double().std(correction=0))
    assert Scalers.from_data(data, "std").reward_scale == pytest.approx(1 / std)
    assert Scalers.from_data(data, "none").reward_scale == 1.0
    flat = dataclasses.replace(data, return_min=-5.0, return_max=-5.0)
    assert Scalers.from_data(flat).reward_scale == pytest.approx(1 / std)  # fallback
    with pytest.raises(ValueError, match="unknown reward_scaling"):
        Scalers.from_data(data, "minmax")


def test_sample_batch_uses_only_its_generator(data: TinyData) -> None:
    torch_state = torch.get_rng_state()
    a = sample_batch(data, 8, torch.Generator().manual_seed(5))
    b = sample_batch(data, 8, torch.Generator().manual_seed(5))
    assert torch.equal(torch.get_rng_state(), torch_state)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    assert a.observations.shape == (8, OBS_DIM) and a.dones.shape == (8,)
    assert a.observations.dtype == torch.float32


def test_make_agent_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown algorithm"):
        make_agent("sac", OBS_DIM, ACT_DIM)
    with pytest.raises(TypeError, match="IQLConfig"):
        make_agent("iql", OBS_DIM, ACT_DIM, BCConfig())
