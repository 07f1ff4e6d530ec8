"""Tests of the PICNN ensemble: members equal single models, convexity, pessimistic cost."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from polycstr_lib.correction.cost_models import (
    PICNN,
    CostEnsemble,
    CostModelConfig,
    PessimisticActionCost,
    convexity_certificate,
    train_cost_ensemble,
    train_cost_model,
)
from tests.test_cost_models import random_picnn, synthetic_data

torch.set_num_threads(1)

CONFIG = CostModelConfig(kind="picnn", hidden=16, steps=60, batch=64, eval_every=30)


def test_member_equals_single_model_of_its_seed_bit_for_bit(tmp_path) -> None:
    data = synthetic_data(n_episodes=12, steps=20)
    ensemble, log = train_cost_ensemble(data, CONFIG, seeds=(3, 7), progress=False, cache=False)
    assert len(ensemble) == 2 and log["seeds"] == [3, 7]
    for k, seed in enumerate((3, 7)):
        single, single_log = train_cost_model(
            data, dataclasses.replace(CONFIG, seed=seed), progress=False, cache=False
        )
        member = ensemble.member(k).state_dict()
        for name, tensor in single.state_dict().items():
            # Tolerance 0: the same init, split, minibatches and elementwise Adam updates.
            assert torch.equal(member[name], tensor), name
        assert log["heldout_r2"][k] == single_log["heldout_r2"]
        assert log["history"][k] == single_log["history"]


def test_seeded_runs_bit_identical_global_rng_untouched_and_cached(tmp_path) -> None:
    data = synthetic_data(n_episodes=10, steps=20)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    np_state = np.random.get_state()[1].copy()  # noqa: NPY002 - the legacy global RNG
    a, log_a = train_cost_ensemble(data, CONFIG, (0, 1), progress=False, cache_dir=tmp_path)
    assert torch.equal(torch.get_rng_state(), state)
    assert np.array_equal(np.random.get_state()[1], np_state)  # noqa: NPY002
    b, _ = train_cost_ensemble(data, CONFIG, (0, 1), progress=False, cache=False)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    c, log_c = train_cost_ensemble(data, CONFIG, (0, 1), progress=False, cache_dir=tmp_path)
    assert not log_a["cached"] and log_c["cached"]
    assert not list(tmp_path.rglob("*.tmp*"))
    obs, act = data.observations[:50], data.actions[:50]
    assert torch.equal(a(obs, act), c(obs, act))
    # A different seed set is a different artifact.
    _, log_d = train_cost_ensemble(data, CONFIG, (0, 2), progress=False, cache_dir=tmp_path)
    assert not log_d["cached"]


@pytest.mark.parametrize("seeds", [(), (1, 1), (1.5,)])
def test_bad_seeds_raise(seeds) -> None:
    with pytest.raises(ValueError, match="seed"):
        train_cost_ensemble(synthetic_data(4, 5), CONFIG, seeds, progress=False, cache=False)


def _ensemble(n: int = 3) -> CostEnsemble:
    return CostEnsemble([random_picnn(seed) for seed in range(n)], list(range(n)))


def test_every_member_and_the_mean_are_convex() -> None:
    ensemble = _ensemble()
    cert = convexity_certificate(ensemble, n_states=8, n_pairs=16)
    assert cert["convex"] and len(cert["members"]) == 3
    assert all(c["convex"] for c in cert["members"])
    assert cert["min_hessian_eig"] >= -1e-8 and cert["midpoint_violations"] == 0
    # One non-convex member (negative z-weights, unconstrained) makes the ensemble fail.
    bad = random_picnn(5, positivity="none")
    with torch.no_grad():
        for raw in bad.z_raw:
            raw.copy_(-raw.abs() - 1.0)
    cert_bad = convexity_certificate(CostEnsemble([*ensemble.members, bad], range(4)), 8, 16)
    assert not cert_bad["convex"] and cert_bad["members"][-1]["structural_ok"] is False


@pytest.mark.parametrize("pessimism", [0.0, 0.5, 1.0])
def test_pessimistic_cost_convex_and_derivatives_match_autograd(pessimism: float) -> None:
    ensemble = _ensemble()
    gen = torch.Generator().manual_seed(0)
    obs = torch.as_tensor(np.array([450.0, 10.0, 1.5e-6, 100.0, 350.0, 5.0, 2.0, 1.5, 340.0]))
    obs = obs * (1 + 0.1 * torch.randn(64, 9, generator=gen, dtype=torch.float64))
    a = 3 * torch.rand(64, 2, generator=gen, dtype=torch.float64) - 1.5
    b = 3 * torch.rand(64, 2, generator=gen, dtype=torch.float64) - 1.5
    fn = ensemble.conditioned(obs, pessimism)
    assert isinstance(fn, PessimisticActionCost)
    # midpoint inequality of the pessimistic cost
    gap = 0.5 * (fn.value(a) + fn.value(b)) - fn.value(0.5 * (a + b))
    assert float(gap.min()) >= -1e-9
    # value agrees with the direct formula; gradient with autograd of that formula
    direct = ensemble.pessimistic(obs, a, pessimism)
    value, grad, hess = fn.value_grad_hess(a)
    torch.testing.assert_close(value, direct)
    x = a.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(ensemble.pessimistic(obs, x, pessimism).sum(), x)
    torch.testing.assert_close(grad, auto)
    assert float(torch.linalg.eigvalsh(0.5 * (hess + hess.mT)).min()) >= -1e-9
    # pessimism >= 0 never lowers the cost below the mean
    mean = ensemble(obs, a).detach()
    assert bool((value >= mean - 1e-12 * mean.abs()).all())


def test_pessimism_out_of_range_raises() -> None:
    with pytest.raises(ValueError, match="pessimism"):
        _ensemble(2).conditioned(torch.zeros(1, 9, dtype=torch.float64), 1.5)


def test_ensemble_needs_members() -> None:
    with pytest.raises(ValueError):
        CostEnsemble([], [])
    with pytest.raises(ValueError):
        CostEnsemble([PICNN()], [0, 1])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_stacked_members_equal_each_members_own_closed_form(dtype) -> None:
    """The pessimistic cost runs PICNN members as one batched model; every member's value,
    gradient and Hessian equal its own conditioned cost's, for one action and for many."""
    ensemble = _ensemble(4).to(dtype)
    gen = torch.Generator().manual_seed(1)
    base = torch.tensor([450.0, 10.0, 1.5e-6, 100.0, 350.0, 5.0, 2.0, 1.5, 340.0], dtype=dtype)
    for batch in (1, 37):
        obs = base * (1 + 0.1 * torch.randn(batch, 9, generator=gen, dtype=dtype))
        a = (2 * torch.rand(batch, 2, generator=gen) - 1).to(dtype)
        fn = ensemble.conditioned(obs, 0.5)
        assert fn._stacked is not None
        values, grads, hess = fn._stacked.value_grad_hess(a)
        v1, g1 = fn._stacked.value_and_grad(a)
        for k, member in enumerate(fn.members):
            mv, mg, mh = member.value_grad_hess(a)
            torch.testing.assert_close(values[k], mv, rtol=0, atol=0)
            torch.testing.assert_close(grads[k], mg, rtol=0, atol=0)
            torch.testing.assert_close(hess[k], mh, rtol=0, atol=0)
            torch.testing.assert_close(v1[k], member.value_and_grad(a)[0], rtol=0, atol=0)
            torch.testing.assert_close(g1[k], member.value_and_grad(a)[1], rtol=0, atol=0)
            torch.testing.assert_close(fn._stacked.value(a)[k], member.value(a), rtol=0, atol=0)
        # and the pessimistic combination is that of the member loop
        looped = PessimisticActionCost(fn.members, 0.5)
        looped._stacked = None
        for got, want in zip(fn.value_grad_hess(a), looped.value_grad_hess(a), strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_members_trained_in_two_processes_equal_one_process_and_reuse_a_single_model(
    tmp_path, monkeypatch
) -> None:
    from polycstr_lib.correction.cost_models import ensemble as ens
    from polycstr_lib.toolkit import ledger

    data = synthetic_data(n_episodes=12, steps=20)
    alone, _ = train_cost_ensemble(data, CONFIG, (0, 1), progress=False, cache=False)
    # member 0 trained alone first (as a results page trains its PICNN): loaded, not retrained
    single, _ = train_cost_model(data, CONFIG, progress=False, cache_dir=tmp_path)
    monkeypatch.setattr(ens, "MIN_PARALLEL_STEPS", 1)
    path = tmp_path / "tasks.jsonl"
    monkeypatch.setenv(ledger.LEDGER_ENV, str(path))
    spread, log = train_cost_ensemble(
        data, CONFIG, (0, 1, 2), progress=False, cache_dir=tmp_path, processes=2
    )
    for k in (0, 1):
        for name, tensor in alone.member(k).state_dict().items():
            assert torch.equal(spread.member(k).state_dict()[name], tensor), name
    for name, tensor in single.state_dict().items():
        assert torch.equal(spread.member(0).state_dict()[name], tensor), name
    records = ledger.read_ledger(path)
    top = [r for r in records if r["within"] is None]
    assert [(r["kind"], r["members"], r["processes"]) for r in top] == [("cost_model", 2, 2)]
    assert len([r for r in records if r["within"] == "cost_model"]) == 2  # the two trained
    assert not log["cached"] and len(log["heldout_r2"]) == 3 and ledger._STACK == []
    with pytest.raises(ValueError, match="processes"):
        ens.ensemble_processes(CONFIG, 2, 0)
    assert ens.ensemble_processes(CONFIG, 3, 2) == 2 and ens.ensemble_processes(CONFIG, 0, 2) == 1
