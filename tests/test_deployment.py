"""Tests of the deployment rule: which correction each algorithm deploys, η = 0 as fallback."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from test_correction_tuning import AGENTS, MODELS, SIGMA, TASK, VARIANTS

from polycstr_lib.correction.deployment import (
    MARGIN_POINTS,
    NO_CORRECTION,
    Deployment,
    deploy_from_sweep,
    deployed_policy,
    settings_table,
    tail_margin,
    tail_means,
    tail_size,
    zero_tuning_policy,
)
from polycstr_lib.correction.safety import CorrectedPolicy
from polycstr_lib.correction.sweep import sweep_corrections
from polycstr_lib.correction.task import CorrectionSetup
from polycstr_lib.correction.variants import ZERO_TUNING, CorrectionVariant, zero_tuning
from polycstr_lib.toolkit.stats import runaway_rate_upper_bound

torch.set_num_threads(1)

EPISODES = 10  # the tail of a run is its single worst episode
STEP_VARIANTS = {"a": CorrectionVariant("normalised"), "b": CorrectionVariant("gradient")}
BASE = np.linspace(40.0, 60.0, EPISODES)  # every base run: mean 50, worst episode 40


def run(algorithm: str, seed: int, variant: str, step: float, scores, runaways: int = 0) -> dict:
    """One synthetic sweep row with its per-episode scores."""
    scores = np.asarray(scores, dtype=float)
    row = {"algorithm": algorithm, "seed": seed, "variant": variant, "step_size": step,
           "mean": float(scores.mean()), "min": float(scores.min()), "runaways": runaways,
           "episodes": EPISODES}  # fmt: skip
    row.update({f"score_{e}": float(v) for e, v in enumerate(scores)})
    return row


def sweep_of(rows: list[dict], algorithms=("bc", "iql"), seeds=(0, 1)) -> pd.DataFrame:
    """The base runs of every (algorithm, seed), then ``rows``."""
    base = [run(a, s, NO_CORRECTION, 0.0, BASE) for a in algorithms for s in seeds]
    return pd.DataFrame(base + rows)


def shifted(delta: float, worst: float | None = None) -> np.ndarray:
    """The base's scores raised by ``delta``; the worst episode set to ``worst`` if given."""
    scores = BASE + delta
    if worst is not None:
        scores[0] = worst
    return scores


def test_a_runaway_in_one_seed_makes_an_algorithm_fall_back_while_another_corrects() -> None:
    rows = []
    for step in (0.1, 0.3, 1.0):
        for seed in (0, 1):
            rows.append(run("bc", seed, "a", step, shifted(10 * step)))  # better, safe
            # IQL: every step is better on average but one seed runs away once
            rows.append(run("iql", seed, "a", step, shifted(20.0), runaways=int(seed == 1)))
    deployments = deploy_from_sweep(sweep_of(rows), STEP_VARIANTS, "grade_down")
    assert list(deployments) == ["bc", "iql"]
    bc, iql = deployments["bc"], deployments["iql"]
    assert (bc.variant, bc.step_size, bc.fallback, bc.corrected) == ("a", 1.0, False, True)
    assert bc.reason == "best mean among 4 admissible settings"
    assert bc.setting == STEP_VARIANTS["a"] and bc.mean == pytest.approx(60.0)
    assert (iql.variant, iql.step_size, iql.fallback, iql.corrected) == ("none", 0.0, True, False)
    assert iql.reason == (
        "no correction: none admissible (every step raised runaways or worsened the worst 10 % "
        "for at least one seed)"
    )
    assert iql.setting is None and iql.text() == "no correction: none admissible"
    assert (iql.admissible, iql.candidates) == (1, 4) and iql.mean == iql.base_mean == 50.0
    # the bound on the runaway rate comes from the deployed setting's validation episodes
    assert (iql.runaways, iql.episodes) == (0, 20)
    assert iql.runaway_bound == pytest.approx(runaway_rate_upper_bound(0, 20))
    assert iql.runaway_bound == pytest.approx(0.139, abs=5e-4)
    assert bc.text() == "a, step size 1" and bc.step_text() == "1"
    with pytest.raises(dataclasses.FrozenInstanceError):
        bc.step_size = 0.5  # type: ignore[misc]


def test_a_step_that_raises_the_mean_but_worsens_one_seeds_tail_is_not_admissible() -> None:
    rows = [
        # a, 1.0: mean +10 on both seeds, but seed 1's worst episode falls from 40 to 30
        run("bc", 0, "a", 1.0, shifted(10.0)),
        run("bc", 1, "a", 1.0, shifted(10.0, worst=30.0)),
        # a, 0.1: a smaller gain, every tail kept
        run("bc", 0, "a", 0.1, shifted(2.0)),
        run("bc", 1, "a", 0.1, shifted(2.0)),
    ]
    sweep = sweep_of(rows, algorithms=("bc",))
    table = settings_table(sweep).set_index(["variant", "step_size"])
    assert table.loc[("a", 1.0), "mean"] > table.loc[("a", 0.1), "mean"]
    assert table.loc[("a", 1.0), "runaways_ok"] and not table.loc[("a", 1.0), "tail_ok"]
    assert table.loc[("a", 1.0), "tail_gap"] == pytest.approx(-10.0)
    assert not table.loc[("a", 1.0), "admissible"] and table.loc[("a", 0.1), "admissible"]
    assert table.loc[("none", 0.0), "admissible"]
    chosen = deploy_from_sweep(sweep, STEP_VARIANTS, "startup")["bc"]
    assert (chosen.variant, chosen.step_size) == ("a", 0.1)
    # a margin of more than the 10 points lost admits it (and it wins on its mean)
    assert deploy_from_sweep(sweep, STEP_VARIANTS, "startup", margin=10.5)["bc"].step_size == 1.0
    assert chosen.margin == MARGIN_POINTS
    # a margin relative to the hold-to-oracle range: 1 % of 1,200 points = 12 points
    wide = deploy_from_sweep(sweep, STEP_VARIANTS, "startup", score_range=1200.0)
    assert wide["bc"].step_size == 1.0 and wide["bc"].margin == pytest.approx(12.0)


def test_the_tail_is_the_worst_ten_percent_and_the_margin_its_default() -> None:
    assert [tail_size(n) for n in (1, 5, 9, 10, 19, 20, 30)] == [1, 1, 1, 1, 1, 2, 3]
    scores = np.array([[5.0, 1.0, 3.0, 2.0, 4.0] * 4])
    assert tail_means(scores) == pytest.approx([1.0])  # worst 2 of 20: 1 and 1
    assert tail_means(scores, 0.5) == pytest.approx([1.8])  # 1, 1, 1, 1, 2, 2, 2, 2, 3, 3
    assert tail_margin() == MARGIN_POINTS == 1.0
    assert tail_margin(score_range=250.0) == pytest.approx(2.5)
    assert tail_margin(0.0, score_range=250.0) == 0.0  # a given margin wins
    with pytest.raises(ValueError, match="margin"):
        tail_margin(-1.0)
    with pytest.raises(ValueError, match="tail fraction"):
        tail_size(10, 0.0)


def test_ties_go_to_the_smaller_step_and_exact_ties_to_no_correction() -> None:
    rows = []
    for seed in (0, 1):
        rows += [
            run("bc", seed, "a", 0.1, shifted(5.2)),  # within 0.5 of the best: a tie
            run("bc", seed, "a", 0.3, shifted(5.6)),  # the best mean
            run("bc", seed, "a", 0.03, shifted(4.0)),  # more than 0.5 below: no tie
            run("bc", seed, "b", 1e-4, shifted(5.5)),  # a tie, but a later variant
            run("iql", seed, "a", 0.1, shifted(0.0)),  # exactly the base's scores
            run("iql", seed, "a", 0.3, shifted(-3.0)),  # 3 points off every tail: not admissible
        ]
    deployments = deploy_from_sweep(sweep_of(rows), STEP_VARIANTS, "startup")
    assert (deployments["bc"].variant, deployments["bc"].step_size) == ("a", 0.1)
    assert deployments["bc"].mean == pytest.approx(55.2)
    wide = deploy_from_sweep(sweep_of(rows), STEP_VARIANTS, "startup", tie_tol=2.0)["bc"]
    assert wide.step_size == 0.03  # a wider tolerance: the smallest step of the first variant
    exact = deploy_from_sweep(sweep_of(rows), STEP_VARIANTS, "startup", tie_tol=0.0)["bc"]
    assert exact.step_size == 0.3  # no tolerance: the best mean
    iql = deployments["iql"]
    assert (iql.variant, iql.step_size, iql.fallback) == ("none", 0.0, False)
    assert iql.reason == "no correction: best mean among 2 admissible settings"
    assert iql.text() == "no correction"
    # a correction must beat the base by more than min_gain
    gain = deploy_from_sweep(sweep_of(rows), STEP_VARIANTS, "startup", min_gain=6.0)["bc"]
    assert not gain.corrected and not gain.fallback


def test_bad_sweeps_are_refused() -> None:
    rows = [run("bc", 0, "a", 1.0, shifted(1.0))]  # seed 1 was not run at step 1
    with pytest.raises(ValueError, match="every seed"):
        deploy_from_sweep(sweep_of(rows, algorithms=("bc",)), STEP_VARIANTS, "startup")
    full = rows + [run("bc", 1, "a", 1.0, shifted(1.0))]
    with pytest.raises(ValueError, match="not in `variants`"):
        deploy_from_sweep(sweep_of(full, algorithms=("bc",)), {}, "startup")
    no_base = pd.DataFrame(full)
    with pytest.raises(ValueError, match="base"):
        deploy_from_sweep(no_base, STEP_VARIANTS, "startup")
    with pytest.raises(ValueError, match="per-episode"):
        deploy_from_sweep(
            sweep_of(full, algorithms=("bc",)).drop(columns="score_3"), STEP_VARIANTS, "startup"
        )
    stranger = pd.DataFrame([run("cql", 0, "a", 1.0, BASE)])
    with pytest.raises(ValueError, match="no base run"):
        settings_table(pd.concat([sweep_of(full, algorithms=("bc",)), stranger]))


def _no_correction(algorithm: str = "hold") -> Deployment:
    return Deployment("startup", algorithm, NO_CORRECTION, 0.0, True, "none admissible", 50.0,
                      50.0, 0, 20, 0.139, 0.95, 1, 4)  # fmt: skip


def test_no_correction_reproduces_the_base_actions_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    obs = (
        np.array([440.0, 5.0, 1e-6, 60.0, 350.0, 20.0, 0.0, 1.0, 345.0])
        * (1 + 0.1 * rng.standard_normal((64, 9)))
    ).astype(np.float32)
    agent = AGENTS["hold", 1]
    base = agent.act(obs)
    # the deployed η = 0 is the agent itself
    assert deployed_policy(agent, MODELS, _no_correction(), SIGMA) is agent
    # and a corrected policy with step 0 returns the base action, bit for bit, for every method
    for variant in (*VARIANTS.values(), ZERO_TUNING.variant):
        kwargs = variant.policy_kwargs(0.0, SIGMA)
        plus = CorrectedPolicy(agent, MODELS[variant.model], **kwargs)
        assert np.array_equal(plus.act(obs), base)
        assert np.array_equal(plus.act(obs[3]), base[3])
    # a deployed step is a corrected policy with its variant's settings
    step = dataclasses.replace(
        _no_correction(), variant="plain", step_size=1.0, setting=VARIANTS["plain"]
    )
    plus = deployed_policy(agent, MODELS, step, SIGMA)
    assert isinstance(plus, CorrectedPolicy) and plus.step_size == 1.0
    assert plus.method == "gradient" and plus.steps == VARIANTS["plain"].steps


def test_zero_tuning_is_fixed_in_data_spreads() -> None:
    variant = ZERO_TUNING.variant
    assert variant.method == "normalised" and variant.trust_radius is not None
    assert 0 < ZERO_TUNING.step_size * variant.steps <= 1.0  # under one data spread in all
    kwargs = zero_tuning(TASK)
    assert kwargs["step_size"] == ZERO_TUNING.step_size and kwargs["method"] == "normalised"
    np.testing.assert_array_equal(kwargs["action_scale"], TASK.action_scale)
    assert ZERO_TUNING.text() == "3 normalised steps of 0.1 σ_a within ρ = 0.25 σ_a"
    plus = zero_tuning_policy(AGENTS["hold", 0], MODELS, TASK)
    assert isinstance(plus, CorrectedPolicy) and plus.trust_radius == variant.trust_radius
    obs = np.array([440.0, 5.0, 1e-6, 60.0, 350.0, 20.0, 0.0, 1.0, 345.0], dtype=np.float32)
    moved = np.abs(plus.act(obs) - AGENTS["hold", 0].act(obs))
    assert (moved <= variant.trust_radius * SIGMA + 1e-6).all()  # inside the trust region


def test_deployments_from_a_real_sweep(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path))
    variants = {"plain": VARIANTS["plain"], "normalised": VARIANTS["normalised"]}
    grids = {"plain": (1e-3, 1.0), "normalised": (0.1, 1.0)}
    sweep = sweep_corrections(CorrectionSetup(AGENTS, MODELS, TASK), 2, variants, grids)
    (hold,) = deploy_from_sweep(sweep, variants, "startup").values()
    assert hold.scenario == "startup" and hold.algorithm == "hold"
    assert hold.candidates == 5 and 1 <= hold.admissible <= 5
    assert hold.episodes == 2 * 2 and 0 < hold.runaway_bound <= 1
    table = settings_table(sweep).set_index(["variant", "step_size"])
    if hold.corrected:
        assert table.loc[(hold.variant, hold.step_size), "admissible"]
        assert hold.step_size in grids[hold.variant] and hold.mean > hold.base_mean
    else:
        assert hold.fallback == (int(table["admissible"].sum()) == 1)


def test_a_fixed_point_and_a_share_of_the_hold_to_oracle_range_decide_differently() -> None:
    from polycstr_lib.correction.deployment import RELATIVE_TIE, TIE_POINTS, tie_tolerance

    # a, 1.0: mean +3 on both seeds, seed 1's worst episode 0.5 point lower than its base's
    rows = [
        run("bc", 0, "a", 1.0, shifted(3.0)),
        run("bc", 1, "a", 1.0, shifted(3.0, worst=39.5)),
    ]
    sweep = sweep_of(rows, algorithms=("bc",))
    # a fixed 1-point margin admits it
    fixed = deploy_from_sweep(sweep, STEP_VARIANTS, "startup")["bc"]
    assert fixed.step_size == 1.0 and fixed.score_range is None
    # startup's range is ~5 points (hold 96, oracle 101): 1 % is 0.05 point, and the
    # half point lost on seed 1's worst episode is ten times that
    narrow = deploy_from_sweep(sweep, STEP_VARIANTS, "startup", score_range=5.0)["bc"]
    assert narrow.step_size == 0.0 and narrow.fallback
    assert narrow.margin == pytest.approx(0.05) and narrow.score_range == 5.0
    # ties: 0.5 % of the range, 0.5 point without one
    assert tie_tolerance() == TIE_POINTS == 0.5
    assert tie_tolerance(score_range=400.0) == pytest.approx(RELATIVE_TIE * 400.0) == 2.0
    assert tie_tolerance(0.1, score_range=400.0) == 0.1
    with pytest.raises(ValueError, match="tie_tol"):
        tie_tolerance(-0.1)
    two = [
        run("bc", s, "a", step, shifted(gain))
        for s in (0, 1)
        for step, gain in ((0.1, 4.0), (1.0, 5.5))
    ]
    sweep = sweep_of(two, algorithms=("bc",))
    # 1.5 points apart: no tie under 0.5 point, a tie (→ smaller step) under 2 points
    assert deploy_from_sweep(sweep, STEP_VARIANTS, "grade_up")["bc"].step_size == 1.0
    wide = deploy_from_sweep(sweep, STEP_VARIANTS, "grade_up", score_range=400.0)["bc"]
    assert wide.step_size == 0.1 and wide.tie_tol == 2.0


def test_score_scale_converts_shares_of_the_hold_to_oracle_range() -> None:
    from polycstr_lib.reactor.metrics import ScoreScale, scale_from_references

    references = pd.DataFrame(
        {"hold": [-300.0, -100.0], "oracle": [-10.0, -30.0]}, index=pd.Index([7, 9], name="seed")
    )
    # normalised with R_min = -200, R_max = 0: hold -50 and 50, oracle 95 and 85
    scale = scale_from_references(references, "grade_up", -200.0, 0.0, split="validation")
    assert scale.seeds == (7, 9) and scale.split == "validation"
    assert (scale.hold, scale.oracle) == pytest.approx((0.0, 90.0))
    assert scale.range == pytest.approx(90.0) and scale.points(0.01) == pytest.approx(0.9)
    assert scale.optimality(45.0) == pytest.approx(50.0)
    with pytest.raises(ValueError, match="does not beat"):
        ScoreScale("startup", "test", (0,), hold=5.0, oracle=5.0)
    with pytest.raises(ValueError, match="share"):
        scale.points(-0.01)
    with pytest.raises(ValueError, match="no reference episodes"):
        scale_from_references(references.iloc[:0], "grade_up", -200.0, 0.0)
