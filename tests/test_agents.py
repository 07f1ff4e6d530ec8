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
    lagrange_loss,
    make_agent,
    sample_batch,
)
from polycstr_lib.agents.data import discounted_returns
from polycstr_lib.agents.layers import EnsembleMLP, EnsembleTanhGaussianActor, mlp

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
    """Every parameter/buffer of every network (targets and CQL's temperature included)."""
    return {
        f"{m}.{k}": v.detach().clone()
        for m, module in agent.modules().items()
        for k, v in module.state_dict().items()
    }


# --- conformance suite -----------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_updates_return_finite_losses(name: str, data: TinyData) -> None:
    agent = new_agent(name, data)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        losses = agent.update(sample_batch(data, 32, g))
        assert losses
        for v in losses.values():
            assert isinstance(v, np.ndarray) and v.shape == (1,) and math.isfinite(v[0])


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
        actor = EnsembleTanhGaussianActor(EnsembleMLP.stack([mlp(OBS_DIM, 2 * ACT_DIM, (16,))]), 2)
    obs = torch.randn(1, 50, OBS_DIM, generator=torch.Generator().manual_seed(1))
    eps = torch.randn(1, 50, ACT_DIM, generator=torch.Generator().manual_seed(2))
    action, log_prob = actor.sample(obs, eps)
    with torch.no_grad():
        mean, log_std = actor.mean_log_std(obs)
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


# --- ensembles: several seeds as one batched model ---------------------------------------------

SEEDS = (0, 1, 2)


def train_steps(agent, data: TinyData, seeds, steps: int, batch_size: int = 32) -> None:
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    for _ in range(steps):
        agent.update(sample_batch(data, batch_size, generators))


def member_tensors(agent, index: int) -> dict[str, torch.Tensor]:
    return {k: v[index] for k, v in all_tensors(agent).items()}


@pytest.mark.parametrize("name", NAMES)
def test_ensemble_member_matches_single_seed_run(name: str, data: TinyData) -> None:
    """Member k of an S-member ensemble trains bit for bit like the one-member agent of seed
    k: every member's products are its own calls and its parameters its own tensors, whatever
    S is (see EnsembleLinear and MemberParameters).

    CQL used to be an exception (its 4-wide actor output bias, stacked over 3 members, took
    the fused Adam kernel's vectorised path instead of the single run's scalar tail and
    differed in the last bit after ~150 steps); with per-member tensors it is exact too.
    """
    ensemble = new_agent(name, data, seed=list(SEEDS))
    train_steps(ensemble, data, SEEDS, 200)
    for k, seed in enumerate(SEEDS):
        single = new_agent(name, data, seed=seed)
        train_steps(single, data, (seed,), 200)
        got, want = member_tensors(ensemble, k), member_tensors(single, 0)
        for key in want:
            assert torch.equal(got[key], want[key]), key
    other = member_tensors(ensemble, 1)
    assert any(not torch.allclose(other[k], want[k], atol=1e-3) for k in want)


@pytest.mark.parametrize("name", NAMES)
def test_ensemble_member_matches_at_full_size(name: str, data: TinyData) -> None:
    """The same at the real 2x256 size for S = 1, 4 and 5 members over 40 steps.

    With each layer's members stacked in one parameter tensor, the fused Adam step took its
    vectorised path on the 2-wide output bias from S = 4 on and member 0 differed from its
    single run in the last bit after 18 steps (BC, batch 256); members now have their own
    parameter tensors (see MemberParameters). The data (20 episodes) and batch sizes are
    ones where the old layout failed within the 40 steps (BC at batch 256, IQL at 64).
    """
    data = make_tiny_data(n_episodes=20, length=64)
    config = dataclasses.replace(small_config(name), hidden_dims=(256, 256))
    scalers = Scalers.from_data(data)
    steps, batch_size = 40, (256 if name == "bc" else 64)
    singles: dict[int, dict[str, torch.Tensor]] = {}
    for n_members in (1, 4, 5):
        seeds = tuple(range(n_members))
        ensemble = make_agent(name, OBS_DIM, ACT_DIM, config, scalers, seed=list(seeds))
        train_steps(ensemble, data, seeds, steps, batch_size)
        for k in sorted({0, n_members - 1}):
            if k not in singles:
                single = make_agent(name, OBS_DIM, ACT_DIM, config, scalers, seed=k)
                train_steps(single, data, (k,), steps, batch_size)
                singles[k] = member_tensors(single, 0)
            got, want = member_tensors(ensemble, k), singles[k]
            bad = [key for key in want if not torch.equal(got[key], want[key])]
            assert not bad, f"S={n_members} member {k}: {bad}"


@pytest.mark.parametrize("name", NAMES)
def test_ensemble_losses_are_the_members_own(name: str, data: TinyData) -> None:
    """Loss oracle per member: the ensemble's first-step losses are each member's alone."""
    batch = sample_batch(data, 32, [torch.Generator().manual_seed(s) for s in SEEDS])
    losses = new_agent(name, data, seed=list(SEEDS)).update(batch)
    for k, seed in enumerate(SEEDS):
        row = type(batch)(*(x[k] for x in batch))
        alone = new_agent(name, data, seed=seed).update(row)
        for key, value in alone.items():
            assert losses[key].shape == (len(SEEDS),)
            assert losses[key][k] == value[0], key


@pytest.mark.parametrize("name", NAMES)
def test_ensemble_members_share_no_gradient(name: str, data: TinyData) -> None:
    """Changing member 2's batch leaves members 0 and 1 bit for bit as they were."""
    generators = [torch.Generator().manual_seed(s) for s in SEEDS]
    batch = sample_batch(data, 32, generators)
    changed = type(batch)(*(x.clone() for x in batch))
    changed.rewards[2] *= 100.0
    changed.observations[2] += 1.0
    changed.actions[2] = -changed.actions[2]
    a, b = new_agent(name, data, seed=list(SEEDS)), new_agent(name, data, seed=list(SEEDS))
    a.update(batch)
    b.update(changed)
    ta, tb = all_tensors(a), all_tensors(b)
    for key in ta:
        assert torch.equal(ta[key][:2], tb[key][:2]), key
    assert any(not torch.equal(ta[k][2], tb[k][2]) for k in ta)


@pytest.mark.parametrize("name", NAMES)
def test_ensemble_run_is_bit_identical_when_repeated(name: str, data: TinyData) -> None:
    runs = []
    for _ in range(2):
        agent = new_agent(name, data, seed=list(SEEDS))
        train_steps(agent, data, SEEDS, 5)
        runs.append(all_tensors(agent))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


@pytest.mark.parametrize("name", NAMES)
def test_ensemble_acting_members_and_states(name: str, data: TinyData) -> None:
    agent = new_agent(name, data, seed=list(SEEDS), lr=0.05)
    train_steps(agent, data, SEEDS, 3)
    obs = data.observations[:7].numpy()
    every = agent.act_members(obs)
    assert every.shape == (len(SEEDS), 7, ACT_DIM) and every.dtype == np.float32
    with pytest.raises(ValueError, match="one-member agent"):
        agent.act(obs)
    for k, seed in enumerate(SEEDS):
        member = agent.member(k)
        assert member.seeds == (seed,) and member.n_members == 1
        np.testing.assert_array_equal(member.act(obs), every[k])
        restored = agent_from_state(member.state_dict())
        np.testing.assert_array_equal(restored.act(obs), every[k])
    with pytest.raises(ValueError, match="members"):
        new_agent(name, data, seed=0).load_state_dict(agent.state_dict())
    with pytest.raises(ValueError, match="members on its first axis"):
        agent.update(sample_batch(data, 8, [torch.Generator() for _ in range(2)]))


def test_seeds_are_checked() -> None:
    for bad in ([], [1, 1], [0.5]):
        with pytest.raises(ValueError, match="seed"):
            make_agent("bc", OBS_DIM, ACT_DIM, small_config("bc"), seed=bad)


def test_ensemble_sampler_draws_each_members_own_stream(data: TinyData) -> None:
    batch = sample_batch(data, 8, [torch.Generator().manual_seed(s) for s in SEEDS])
    assert batch.observations.shape == (len(SEEDS), 8, OBS_DIM)
    for k, s in enumerate(SEEDS):
        alone = sample_batch(data, 8, torch.Generator().manual_seed(s))
        assert all(torch.equal(x[k], y) for x, y in zip(batch, alone, strict=True))


# --- action units ----------------------------------------------------------------------------


def test_action_scalings_fit_the_data_and_round_trip(data: TinyData) -> None:
    narrow = dataclasses.replace(data, actions=0.05 * data.actions + 0.01)
    none = Scalers.from_data(narrow, action_scaling="none")
    assert torch.equal(none.to_agent_actions(narrow.actions), narrow.actions)
    minmax = Scalers.from_data(narrow, action_scaling="minmax")
    units = minmax.to_agent_actions(narrow.actions)
    torch.testing.assert_close(units.min(0).values, -torch.ones(ACT_DIM))
    torch.testing.assert_close(units.max(0).values, torch.ones(ACT_DIM))
    torch.testing.assert_close(minmax.to_env_actions(units), narrow.actions)
    std = Scalers.from_data(narrow, action_scaling="std")
    z = std.to_agent_actions(narrow.actions).double()
    np.testing.assert_allclose(z.mean(0).numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(0, correction=0).numpy(), 1 / 3, rtol=1e-4)
    restored = Scalers.from_state_dict(minmax.state_dict())
    assert torch.equal(restored.action_scale, minmax.action_scale)
    with pytest.raises(ValueError, match="action_scaling"):
        Scalers.from_data(narrow, action_scaling="unit")


@pytest.mark.parametrize("name", NAMES)
def test_agents_act_in_env_units_with_scaled_actions(name: str, data: TinyData) -> None:
    """With min-max units a policy's [-1, 1] maps onto the data's action range."""
    narrow = dataclasses.replace(data, actions=0.05 * data.actions + 0.01)
    scalers = Scalers.from_data(narrow, action_scaling="minmax")
    agent = make_agent(name, OBS_DIM, ACT_DIM, small_config(name, 0.05), scalers, seed=0)
    train_steps(agent, narrow, (0,), 3)
    actions = agent.act(narrow.observations.numpy() * 50.0)  # far outside: saturated policy
    low, high = narrow.actions.min(0).values.numpy(), narrow.actions.max(0).values.numpy()
    assert np.all(actions >= low - 1e-6) and np.all(actions <= high + 1e-6)
    restored = agent_from_state(agent.state_dict())
    np.testing.assert_array_equal(
        restored.act(narrow.observations.numpy()), agent.act(narrow.observations.numpy())
    )


# --- CQL diagnostics and the Lagrangian conservative weight ----------------------------------


def lagrangian_agent(data: TinyData, threshold: float, seed=0, **fields):
    config = dataclasses.replace(small_config("cql"), alpha_threshold=threshold, **fields)
    return make_agent("cql", OBS_DIM, ACT_DIM, config, Scalers.from_data(data), seed)


def test_cql_penalty_hand_computed() -> None:
    """One state, one random and one policy action: T·log(e^{(q_r−log p_r)/T} + ...) − q_d."""
    q_random, q_policy, q_data = torch.tensor([[1.0]]), torch.tensor([[2.0]]), torch.tensor([0.5])
    log_p_random, log_p_policy = math.log(0.25), torch.tensor([[0.0]])
    # logits 1 − log 0.25 = 1 + 1.386..., 2 − 0 = 2; logsumexp by hand
    a, b = 1.0 - math.log(0.25), 2.0
    expected = math.log(math.exp(a) + math.exp(b)) - 0.5
    got = cql_penalty(q_random, q_policy, log_p_random, log_p_policy, q_data, 1.0)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_lagrange_loss_gradient_sign() -> None:
    log_alpha = torch.zeros(2, requires_grad=True)
    loss = lagrange_loss(log_alpha, torch.tensor([12.0, 8.0]), 5.0, 10.0)
    loss.sum().backward()
    # d/dlogα of −α·w·(p − τ) at α = 1: −5·2 = −10 (descent raises α) and −5·(−2) = +10
    torch.testing.assert_close(log_alpha.grad, torch.tensor([-10.0, 10.0]))


@pytest.mark.parametrize("threshold, rises", [(-1e3, True), (1e3, False)])
def test_lagrangian_alpha_rises_above_threshold_and_falls_below(
    threshold: float, rises: bool, data: TinyData
) -> None:
    agent = lagrangian_agent(data, threshold, conservative_alpha_lr=1e-2)
    g = torch.Generator().manual_seed(0)
    weights = [agent.update(sample_batch(data, 32, g))["conservative_weight"][0] for _ in range(3)]
    penalty = agent.update(sample_batch(data, 32, g))["conservative_penalty"][0]
    assert (penalty > threshold) == rises
    steps = np.diff(weights)
    assert np.all(steps > 0) if rises else np.all(steps < 0)


def test_lagrangian_weight_is_alpha_times_weight(data: TinyData) -> None:
    agent = lagrangian_agent(data, 10.0, initial_conservative_alpha=2.0, conservative_weight=3.0)
    losses = agent.update(sample_batch(data, 32, torch.Generator().manual_seed(0)))
    alpha = agent.lagrange.log_alpha.exp().item()  # after its one step, as the critics used
    assert losses["conservative_weight"][0] == pytest.approx(3.0 * alpha, rel=1e-6)
    assert alpha != 2.0 and alpha == pytest.approx(2.0, rel=1e-3)


def test_fixed_weight_reports_diagnostics_that_reproduce_the_critic_loss(data: TinyData) -> None:
    agent = new_agent("cql", data)
    losses = agent.update(sample_batch(data, 32, torch.Generator().manual_seed(0)))
    assert losses["conservative_weight"][0] == 5.0
    # critic loss = Σ over both critics of td + w · penalty = 2 · (mean td + w · mean penalty)
    expected = 2.0 * (losses["td_loss"][0] + 5.0 * losses["conservative_penalty"][0])
    assert losses["critic_loss"][0] == pytest.approx(expected, rel=1e-5)
    assert {"q_data_mean", "td_loss", "conservative_penalty"} <= set(losses)


def test_lagrangian_runs_are_bit_identical_and_members_match_single_runs(data: TinyData) -> None:
    def run(seeds) -> dict[str, torch.Tensor]:
        agent = lagrangian_agent(data, 1.0, seed=list(seeds), conservative_alpha_lr=1e-2)
        train_steps(agent, data, seeds, 5)
        return all_tensors(agent)

    a, b = run(SEEDS), run(SEEDS)
    assert any(k.startswith("conservative_alpha.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)
    single = run((SEEDS[1],))
    assert all(torch.equal(a[k][1], single[k][0]) for k in single)


def test_lagrangian_state_round_trip(data: TinyData) -> None:
    agent = lagrangian_agent(data, 1.0, conservative_alpha_lr=1e-2)
    train_steps(agent, data, (0,), 3)
    restored = agent_from_state(agent.state_dict())
    assert restored.config.alpha_threshold == 1.0
    torch.testing.assert_close(restored.lagrange.log_alpha, agent.lagrange.log_alpha)
    obs = data.observations.numpy()
    np.testing.assert_array_equal(restored.act(obs), agent.act(obs))


def test_lagrangian_option_changes_the_run_key_and_the_default_does_not() -> None:
    from polycstr_lib.agents.config import TrainConfig
    from polycstr_lib.toolkit.store import config_key, config_to_dict

    base = TrainConfig("cql").resolved()
    same = TrainConfig("cql", agent=CQLConfig(alpha_threshold=None)).resolved()
    on = TrainConfig("cql", agent=CQLConfig(alpha_threshold=10.0)).resolved()
    faster = TrainConfig("cql", agent=CQLConfig(alpha_threshold=10.0, conservative_alpha_lr=1e-3))
    backup = TrainConfig("cql", agent=CQLConfig(deterministic_backup=True)).resolved()
    keys = {config_key(c) for c in (base, on, faster.resolved(), backup)}
    assert config_key(base) == config_key(same) and len(keys) == 4
    assert "alpha_threshold" not in config_to_dict(base)["agent"]
    assert config_to_dict(on)["agent"]["alpha_threshold"] == 10.0


@pytest.mark.parametrize(
    "fields, match",
    [
        ({"alpha_threshold": float("nan")}, "alpha_threshold must be finite"),
        ({"conservative_alpha_lr": 0.0}, "must be positive"),
        ({"initial_conservative_alpha": -1.0}, "must be positive"),
    ],
)
def test_cql_config_rejects_bad_lagrangian_settings(fields, match) -> None:
    with pytest.raises(ValueError, match=match):
        CQLConfig(**fields)


def test_discounted_returns_match_a_hand_computed_episode_pair() -> None:
    data = dataclasses.replace(
        make_tiny_data(n_episodes=2, length=3),
        rewards=torch.tensor([1.0, 2.0, 4.0, -1.0, 0.0, 3.0]),
    )
    got = discounted_returns(data, gamma=0.5, reward_scale=2.0)
    # episode 1: 4, 2 + 0.5·4, 1 + 0.5·(2 + 2); episode 2: 3, 0 + 1.5, −1 + 0.75; times 2
    np.testing.assert_allclose(got, 2.0 * np.array([3.0, 4.0, 4.0, -0.25, 1.5, 3.0]))


def test_discounted_returns_reject_bad_input() -> None:
    data = make_tiny_data(n_episodes=1, length=4)
    with pytest.raises(ValueError, match="gamma must lie"):
        discounted_returns(data, gamma=1.5)
    cut = dataclasses.replace(data, timeouts=torch.zeros(4))
    with pytest.raises(ValueError, match="ends no episode"):
        discounted_returns(cut, gamma=0.9)


@pytest.mark.parametrize("deterministic", [True, False])
def test_cql_td_target_at_the_deterministic_next_action_when_chosen(
    deterministic: bool, data: TinyData
) -> None:
    """With the actor frozen (lr 0), the reported TD loss is the hand-built one at
    tanh(μ(s')) exactly when ``deterministic_backup`` is on (d3rlpy's target)."""
    config = dataclasses.replace(
        small_config("cql"), actor_lr=0.0, deterministic_backup=deterministic
    )
    agent = make_agent("cql", OBS_DIM, ACT_DIM, config, Scalers.from_data(data), 0)
    batch = sample_batch(data, 32, torch.Generator().manual_seed(0))
    sc = agent.scalers
    obs, nxt = (
        sc.normalize_obs(batch.observations)[None],
        sc.normalize_obs(batch.next_observations)[None],
    )
    act = sc.to_agent_actions(batch.actions)[None]
    with torch.no_grad():
        next_a = agent.actor.deterministic(nxt)
        target = sc.scale_reward(batch.rewards)[None] + config.gamma * torch.minimum(
            agent.q1_target(nxt, next_a), agent.q2_target(nxt, next_a)
        )
        expected = 0.5 * sum(((q(obs, act) - target) ** 2).mean() for q in (agent.q1, agent.q2))
    got = agent.update(batch)["td_loss"][0]
    assert (got == pytest.approx(expected.item(), rel=1e-5)) == deterministic
