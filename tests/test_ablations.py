"""Tests of the safety-layer ablation helpers (settings grid, latency, evaluation, front)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from test_safety import ConstantPolicy, QuadraticCost

from polycstr_lib.ablations import (
    CorrectionSetting,
    correction_grid,
    correction_latency,
    evaluate_corrections,
    pareto_front,
)
from polycstr_lib.evaluation import evaluate_policy

torch.set_num_threads(1)


def test_grid_has_every_sweep_with_its_settings() -> None:
    grid = correction_grid(
        [0, 1, 5], [1e-3, 1e-2], base_steps=3, base_step_size=0.01, newton_steps=(1, 2)
    )
    sweeps = pd.DataFrame([vars(s) for s in grid]).groupby("sweep", sort=False)
    assert list(sweeps.groups) == [
        "K, gradient",
        "K, Newton",
        "η, PICNN one-step",
        "η, NN one-step",
        "η, PICNN cost-to-go",
    ]
    k = sweeps.get_group("K, gradient")
    assert k["steps"].tolist() == [0, 1, 5] and set(k["step_size"]) == {0.01}
    newton = sweeps.get_group("K, Newton")
    assert newton["method"].eq("newton").all() and newton["steps"].tolist() == [1, 2]
    eta = sweeps.get_group("η, NN one-step")
    assert eta["model"].eq("mlp").all() and eta["steps"].eq(3).all()
    assert eta["step_size"].tolist() == [1e-3, 1e-2]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"steps_grid": [-1]},
        {"step_size_grid": [0.0]},
        {"base_step_size": -1.0},
    ],
)
def test_grid_rejects_bad_values(kwargs) -> None:
    args = {"steps_grid": [0, 1], "step_size_grid": [0.01], "base_steps": 1, "base_step_size": 0.1}
    with pytest.raises(ValueError):
        correction_grid(**{**args, **kwargs})


def test_default_step_size_is_resolved() -> None:
    assert CorrectionSetting("x", "picnn", "newton", 1).resolved_step_size() == 1.0
    assert CorrectionSetting("x", "picnn", "gradient", 1).resolved_step_size() == 0.1
    assert CorrectionSetting("x", "picnn", "gradient", 1, 0.3).resolved_step_size() == 0.3


def test_pareto_front_keeps_only_undominated_points() -> None:
    cost = np.array([1.0, 2.0, 0.0, 3.0, 2.5, np.nan])
    value = np.array([5.0, 4.0, 1.0, 9.0, 9.0, 100.0])
    # (0, 1) then (1, 5) then (2.5, 9); (2, 4) is beaten by (1, 5), (3, 9) by (2.5, 9).
    assert pareto_front(cost, value).tolist() == [2, 0, 4]
    with pytest.raises(ValueError):
        pareto_front([1.0, 2.0], [1.0])


def test_latency_is_zero_without_steps_and_positive_with_steps() -> None:
    model = QuadraticCost().double()
    obs = np.random.default_rng(0).normal(size=(4, 9)).astype(np.float32)
    act = np.zeros((4, 2), np.float32)
    assert correction_latency(model, obs, act, CorrectionSetting("K", "q", steps=0)) == 0.0
    ms = correction_latency(model, obs, act, CorrectionSetting("K", "q", steps=2), repeats=5)
    assert 0.0 < ms < 1e4
    with pytest.raises(ValueError):
        correction_latency(model, obs, act[:2], CorrectionSetting("K", "q", steps=2))


def test_evaluate_corrections_rows_and_zero_steps_equal_the_base_policy(minari_store) -> None:
    from polycstr_lib.datasets import read_sidecar

    side = read_sidecar("grade_up")
    r_min, r_max = side["return_min"], side["return_max"]
    base = ConstantPolicy(np.array([0.2, -0.1]))
    models = {"q": QuadraticCost().double()}
    settings = [
        CorrectionSetting("K", "q", "gradient", 0, 0.1),
        CorrectionSetting("K", "q", "gradient", 2, 0.1),
        CorrectionSetting("K", "q", "newton", 1),
    ]
    obs = np.random.default_rng(1).normal(size=(3, 9)).astype(np.float32)
    table = evaluate_corrections(
        base,
        models,
        settings,
        "grade_up",
        2,
        r_min,
        r_max,
        latency_states=(obs, base.act(obs)),
    )
    assert len(table) == 3
    assert {
        "sweep",
        "model",
        "method",
        "steps",
        "step_size",
        "mean",
        "min",
        "max",
        "std",
        "violations",
        "offset",
        "latency_ms",
    } <= set(table.columns)
    direct, _ = evaluate_policy(base.act, "grade_up", 2, r_min, r_max)
    assert table.loc[0, "mean"] == pytest.approx(direct["normalised_reward"].mean(), abs=1e-9)
    assert table.loc[0, "latency_ms"] == 0.0 and table.loc[1, "latency_ms"] > 0.0
    # Same definitions as the results pages: violations summed over episodes, population std.
    assert table.loc[0, "violations"] == direct["violations"].sum()
    assert table.loc[0, "std"] == pytest.approx(direct["normalised_reward"].std(ddof=0))
    assert table.loc[2, "step_size"] == 1.0
    # Different corrections give different closed loops.
    assert table.loc[1, "mean"] != table.loc[0, "mean"]
    with pytest.raises(KeyError, match="no cost model"):
        evaluate_corrections(base, {}, settings, "grade_up", 2, r_min, r_max)
