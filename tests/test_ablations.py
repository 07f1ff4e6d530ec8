"""Tests of the safety-layer ablation helpers (settings grid, latency, evaluation, front)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_correction_tuning import AGENTS, MODELS, SIGMA, picnn
from test_safety import QuadraticCost

from polycstr_lib.correction.ablations import (
    AblationGrid,
    pareto_front,
    run_ablations,
    stage_one_variants,
    test_chosen,
    variant_latency,
)
from polycstr_lib.correction.task import CorrectionSetup, ScenarioTask
from polycstr_lib.correction.variants import CorrectionVariant

torch.set_num_threads(1)


def test_pareto_front_keeps_only_undominated_points() -> None:
    cost = np.array([1.0, 2.0, 0.0, 3.0, 2.5, np.nan])
    value = np.array([5.0, 4.0, 1.0, 9.0, 9.0, 100.0])
    # (0, 1) then (1, 5) then (2.5, 9); (2, 4) is beaten by (1, 5), (3, 9) by (2.5, 9).
    assert pareto_front(cost, value).tolist() == [2, 0, 4]
    with pytest.raises(ValueError):
        pareto_front([1.0, 2.0], [1.0])


def test_stage_one_variants_are_normalised_per_model_and_newton() -> None:
    variants, grids, sweep_of = stage_one_variants(
        ["picnn", "mlp", "ensemble"], steps=2, step_sizes=(0.1, 1.0), newton_step_sizes=(1.0,)
    )
    assert list(variants) == [
        "PICNN one-step", "NN one-step", "PICNN ensemble", "Newton, PICNN one-step"
    ]  # fmt: skip
    assert variants["NN one-step"] == CorrectionVariant("normalised", "mlp", 2)
    assert variants["PICNN ensemble"].pessimism == 0.5
    assert variants["Newton, PICNN one-step"].method == "newton"
    assert grids["PICNN one-step"] == (0.1, 1.0) and grids["Newton, PICNN one-step"] == (1.0,)
    assert set(sweep_of.values()) == {"cost model", "Newton"}
    with pytest.raises(ValueError, match="models"):
        stage_one_variants(["adam"])
    with pytest.raises(ValueError, match="Newton"):
        stage_one_variants(["mlp"])
    assert "Newton, PICNN one-step" not in stage_one_variants(["mlp"], newton_step_sizes=())[0]


def test_run_ablations_chooses_on_validation_and_tests_once(tmp_path) -> None:
    models = {"picnn": MODELS["picnn"], "picnn_ctg": picnn(2), "ensemble": MODELS["ensemble"]}
    kw = dict(cache_dir=tmp_path)
    task = ScenarioTask("startup", return_min=-5e5, return_max=-1e3, action_scale=SIGMA)
    grid = AblationGrid(
        steps=2, step_sizes=(0.3, 3.0), newton_step_sizes=(1.0,), steps_grid=(1, 4),
        trust_radii=(0.5,),
    )  # fmt: skip
    result = run_ablations(CorrectionSetup(AGENTS, models, task), 1, grid, **kw)
    assert list(result.chosen.index) == ["cost model", "Newton", "K", "trust radius"]
    # the second stage varies the first stage's overall choice at its chosen step size
    overall = result.variants[result.overall]
    eta = result.per_variant.loc[result.overall, "step_size"]
    assert result.variants["K = 4"] == CorrectionVariant(
        overall.method, overall.model, 4, None, overall.pessimism
    )
    assert result.variants["ρ = 0.5"].trust_radius == 0.5
    second = result.sweep[result.sweep["sweep"].isin(["K", "trust radius"])]
    assert len(second) == 2 * 3 and (second["step_size"] == eta).all()
    assert result.chosen.loc["K", "variant"] in ("K = 1", "K = 4")
    assert result.chosen.loc["Newton", "variant"] == "Newton, PICNN one-step"
    # summary: IQM over the two seeds of every setting
    row = result.summary[result.summary["variant"] == "none"].iloc[0]
    base = result.sweep[result.sweep["variant"] == "none"]
    assert row["runs"] == 2 and row["iqm"] == pytest.approx(base["mean"].mean())
    # the final table is the only test run: other episode seeds than validation
    test = test_chosen(CorrectionSetup(AGENTS, models, task), result, 1, **kw)
    assert list(dict.fromkeys(test["sweep"])) == ["base", *result.chosen.index]
    assert set(test["runs"]) == {2}
    val_base = result.summary.loc[result.summary["variant"] == "none", "iqm"].iloc[0]
    assert test.loc[test["sweep"] == "base", "iqm"].iloc[0] != pytest.approx(val_base)
    files = sorted(p.parent.name for p in (tmp_path / "correction_sweeps").glob("*/manifest.json"))
    assert sum(f.startswith("startup_validation") for f in files) == 2
    assert sum(f.startswith("startup_test") for f in files) == 1
    with pytest.raises(ValueError, match="steps_grid"):
        AblationGrid(steps_grid=(0,))


def test_variant_latency_is_positive() -> None:
    obs = np.random.default_rng(0).normal(size=(3, 9)).astype(np.float32)
    act = np.zeros((3, 2), np.float32)
    variant = CorrectionVariant("normalised", "q", steps=2, trust_radius=1.0)
    ms = variant_latency(QuadraticCost().double(), obs, act, variant, 0.5, SIGMA, repeats=3)
    assert 0.0 < ms < 1e4
    with pytest.raises(ValueError):
        variant_latency(QuadraticCost(), obs, act[:2], variant, 0.5, SIGMA)
