"""Tests of multi-step correction: action windows, plan cost models, the joint correction."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from polycstr_lib.correction.cost_models import (
    PICNN,
    CostModelConfig,
    action_windows,
    check_horizon,
    convexity_certificate,
    cost_targets,
    train_cost_model,
)
from polycstr_lib.correction.safety import CorrectedPolicy, correct_actions, plan_proposal
from polycstr_lib.correction.sweep import _variant_key
from polycstr_lib.correction.task import CorrectionSetup, ScenarioTask
from polycstr_lib.correction.variants import CorrectionVariant
from tests.test_cost_models import SCALES, synthetic_data
from tests.test_safety import ConstantPolicy, batch

torch.set_num_threads(1)

SIGMA = np.array([0.088, 0.023])


@dataclasses.dataclass(frozen=True)
class Rows:
    """The fields of OfflineData that windows and targets read."""

    scenario: str
    actions: Tensor
    costs: Tensor
    episode_ids: Tensor


def rows(lengths: list[int]) -> Rows:
    n = sum(lengths)
    ids = torch.as_tensor(np.concatenate([np.full(k, 7 + e) for e, k in enumerate(lengths)]))
    actions = torch.arange(2 * n, dtype=torch.float32).reshape(n, 2) + 1.0  # no zero action
    costs = torch.linspace(0.5, 2.0, n)
    return Rows("toy", actions, costs, ids)


def plan_picnn(horizon: int, seed: int = 0) -> PICNN:
    """A float64 PICNN over H two-dimensional actions with random weights and scalers."""
    torch.manual_seed(seed)
    model = PICNN(action_dim=2 * horizon, hidden=16)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * (1.0 if "z_raw" in name else 0.7))
        model.obs_mean.zero_()
        model.obs_std.fill_(1.0)
        model.y_std.fill_(2.0)
    return model.double().eval()


class SecondActionCost(nn.Module):
    """c(s, a_t, a_{t+1}) = |a_{t+1} − m|² (+ w |a_t + a_{t+1} − 2m|² when coupled)."""

    def __init__(self, coupling: float) -> None:
        super().__init__()
        self.action_dim = 4
        self.coupling = coupling
        self.register_buffer("m", torch.tensor([0.4, -0.3], dtype=torch.float64))

    def forward(self, obs: Tensor, action: Tensor) -> Tensor:
        first, second = action[..., :2], action[..., 2:]
        cost = ((second - self.m) ** 2).sum(-1)
        return cost + self.coupling * ((first + second - 2 * self.m) ** 2).sum(-1)


# ----------------------------------------------------------------------------------------------
# Windows
# ----------------------------------------------------------------------------------------------
def test_action_windows_stack_the_next_actions_of_the_same_episode() -> None:
    data = rows([3, 1, 4])
    out = action_windows(data, 3)
    assert out.actions.shape == (8, 6) and out.actions.dtype == torch.float32
    ids = data.episode_ids.numpy()
    for t in range(8):
        for k in range(3):
            block = out.actions[t, 2 * k : 2 * k + 2]
            inside = t + k < 8 and ids[t + k] == ids[t]
            expect = data.actions[t + k] if inside else torch.zeros(2)
            assert torch.equal(block, expect), (t, k)
    assert torch.equal(out.costs, data.costs) and torch.equal(out.episode_ids, data.episode_ids)
    assert out.scenario == "toy_h3"
    # the cost-to-go target is that of the original rows: exact, not truncated at H
    torch.testing.assert_close(
        cost_targets(out, "cost_to_go", 0.9), cost_targets(data, "cost_to_go", 0.9)
    )
    assert action_windows(data, 1) is data
    assert action_windows(rows([2]), 5).actions[:, 4:].abs().sum() == 0  # longer than the data


@pytest.mark.parametrize("horizon", [0, -1, 1.5, True])
def test_bad_horizons_raise(horizon) -> None:
    with pytest.raises(ValueError, match="horizon"):
        check_horizon(horizon)
    with pytest.raises(ValueError, match="horizon"):
        action_windows(rows([3]), horizon)
    with pytest.raises(ValueError, match="horizon"):
        CorrectionVariant(horizon=horizon)
    with pytest.raises(ValueError, match="horizon"):
        CorrectedPolicy(ConstantPolicy(np.zeros(2)), plan_picnn(1), horizon=horizon)


def test_a_plan_cost_model_trains_on_windows_and_is_convex_in_the_plan(tmp_path) -> None:
    data = synthetic_data(n_episodes=10, steps=20)
    windows = action_windows(data, 2)
    cfg = CostModelConfig(steps=150, batch=64, eval_every=50, target="cost_to_go")
    model, log = train_cost_model(windows, cfg, progress=False, cache_dir=tmp_path)
    assert model.action_dim == 4 and model.target == "cost_to_go"
    assert np.isfinite(log["heldout_r2"])
    # a model of one-step windows is another artifact, not a cache hit of the plan model
    single, single_log = train_cost_model(data, cfg, progress=False, cache_dir=tmp_path)
    assert not single_log["cached"] and single.action_dim == 2
    assert len([p for p in (tmp_path / "cost_models").iterdir() if p.is_dir()]) == 2
    cert = convexity_certificate(model.double(), observations=windows.observations)
    assert cert["convex"], cert


# ----------------------------------------------------------------------------------------------
# The joint correction
# ----------------------------------------------------------------------------------------------
def test_plan_proposal_holds_each_action() -> None:
    a = torch.tensor([[0.1, -0.2], [0.3, 0.4]])
    assert torch.equal(plan_proposal(a, 3), torch.tensor([[0.1, -0.2] * 3, [0.3, 0.4] * 3]))
    assert plan_proposal(a, 1) is a  # the one-step path is the path it always was
    assert check_horizon(np.int64(3)) == 3 and type(check_horizon(np.int64(3))) is int


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": "gradient", "step_size": 0.3},
        {"method": "normalised", "step_size": 0.5, "action_scale": SIGMA, "trust_radius": 2.0},
        {"method": "newton", "step_size": 1.0},
    ],
)
def test_the_first_action_of_the_jointly_corrected_plan_is_applied(kwargs) -> None:
    model = plan_picnn(3)
    obs, act = batch(40, seed=3)
    out, diag = correct_actions(model, obs, act, steps=3, horizon=3, **kwargs)
    scale = kwargs.get("action_scale")
    joint, _ = correct_actions(
        model,
        obs,
        plan_proposal(act, 3),
        steps=3,
        **{**kwargs, "action_scale": None if scale is None else np.tile(scale, 3)},
    )
    torch.testing.assert_close(out, joint[:, :2], rtol=0, atol=0)
    torch.testing.assert_close(diag["plan"], joint, rtol=0, atol=0)
    assert out.shape == act.shape and bool((out.abs() <= 1).all())
    assert bool((diag["plan"].abs() <= 1).all())


def test_a_small_joint_step_lowers_the_plan_cost() -> None:
    model = plan_picnn(3)
    obs, act = batch(40, seed=3)
    _, diag = correct_actions(model, obs, act, "gradient", 1, 1e-6, horizon=3)
    assert bool((diag["cost_after"] < diag["cost_before"]).all())


def test_the_plan_moves_the_first_action_only_through_the_cost() -> None:
    obs, act = batch(16, seed=5)
    act = 0.5 * act
    # the cost ignores a_t: the applied action is the policy's, whatever the step
    out, diag = correct_actions(SecondActionCost(0.0), obs, act, steps=4, step_size=0.2, horizon=2)
    torch.testing.assert_close(out, act, rtol=0, atol=0)
    assert not torch.equal(diag["plan"][:, 2:], act)  # the later action did move
    # coupled through a_t + a_{t+1}: a_t moves too, towards the joint minimiser
    out, _ = correct_actions(SecondActionCost(1.0), obs, act, steps=200, step_size=0.1, horizon=2)
    torch.testing.assert_close(out, torch.tensor([0.4, -0.3]).double().expand_as(out), atol=1e-6,
                               rtol=0)  # fmt: skip


def test_multistep_policy_is_batched_like_per_sample_and_stays_in_the_box() -> None:
    model = plan_picnn(2, seed=4)
    obs, _ = batch(12, seed=6, dtype=torch.float32)
    base = ConstantPolicy(np.array([0.99, -0.98]))
    plus = CorrectedPolicy(
        base, model, method="normalised", steps=3, step_size=2.0, action_scale=SIGMA,
        trust_radius=3.0, horizon=2,
    )  # fmt: skip
    batched = plus.act(obs.numpy())
    single = np.stack([plus.act(o) for o in obs.numpy()])
    np.testing.assert_allclose(batched, single, rtol=0, atol=1e-6)
    assert batched.shape == (12, 2) and batched.dtype == np.float32
    assert np.abs(batched).max() <= 1.0
    expect, _ = correct_actions(
        model, obs.double(), torch.as_tensor(base.act(obs.numpy())).double(), "normalised", 3,
        2.0, action_scale=SIGMA, trust_radius=3.0, horizon=2,
    )  # fmt: skip
    np.testing.assert_allclose(batched, expect.float().numpy(), rtol=0, atol=1e-6)
    assert "horizon=2" in repr(plus)


def test_a_model_of_the_wrong_width_is_a_clear_error() -> None:
    obs, act = batch(4)
    with pytest.raises(ValueError, match="horizon 2 with 2-dim actions needs 4"):
        correct_actions(plan_picnn(1), obs, act, horizon=2)
    with pytest.raises(ValueError, match="action_windows"):
        CorrectedPolicy(ConstantPolicy(np.zeros(2)), plan_picnn(3), horizon=2).act(
            np.asarray(SCALES, dtype=np.float32)
        )


def test_one_step_variants_keep_their_sweep_cache_keys() -> None:
    fields = dataclasses.asdict(CorrectionVariant("normalised", model="picnn_ctg"))
    del fields["horizon"]
    assert _variant_key(CorrectionVariant("normalised", model="picnn_ctg")) == repr(fields)
    assert "'horizon': 3" in _variant_key(CorrectionVariant("normalised", horizon=3))
    assert CorrectionVariant(horizon=3).policy_kwargs(0.1, SIGMA)["horizon"] == 3


def test_a_multistep_variant_in_the_sweep_equals_its_policy_run_alone() -> None:
    from polycstr_lib.correction.sweep import sweep_corrections
    from polycstr_lib.reactor.metrics import evaluate_policy
    from tests.test_correction_tuning import AGENTS, OBS_MEAN

    torch.manual_seed(0)
    model = PICNN(action_dim=4, hidden=8)
    with torch.no_grad():
        model.obs_mean.copy_(OBS_MEAN)
        model.obs_std.copy_(0.1 * OBS_MEAN.abs() + 1.0)
        model.y_mean.fill_(20.0)
        model.y_std.fill_(10.0)
    model.eval()
    variant = CorrectionVariant("normalised", model="plan", steps=2, horizon=2)
    agents = {("hold", 1): AGENTS["hold", 1]}
    setup = CorrectionSetup(agents, {"plan": model}, ScenarioTask("startup", -5e5, -1e3, SIGMA))
    sweep = sweep_corrections(setup, 2, {"plan": variant}, {"plan": (1.0,)}, cache=False)
    plus = CorrectedPolicy(agents["hold", 1], model, **variant.policy_kwargs(1.0, SIGMA))
    metrics, _ = evaluate_policy(plus.act, "startup", 2, -5e5, -1e3, split="validation")
    row = sweep[sweep["variant"] == "plan"].iloc[0]
    assert row["mean"] == pytest.approx(metrics["normalised_reward"].mean(), rel=1e-6)
    base = sweep[sweep["variant"] == "none"].iloc[0]
    assert row["mean"] != base["mean"]  # the correction did act
