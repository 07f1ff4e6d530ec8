"""Tests of the validation sweep and the selection rule of the safety layer's correction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from polycstr_lib.correction import sweep as ct
from polycstr_lib.correction.cost_models import PICNN, CostEnsemble
from polycstr_lib.correction.safety import CorrectedPolicy
from polycstr_lib.correction.sweep import sweep_corrections
from polycstr_lib.correction.task import CorrectionSetup, ScenarioTask
from polycstr_lib.correction.tuning import (
    CorrectionChoice,
    choose_correction,
    choose_from_sweep,
    safe_ranges,
)
from polycstr_lib.correction.variants import CorrectionVariant
from polycstr_lib.reactor.metrics import evaluate_policy

torch.set_num_threads(1)

OBS_MEAN = torch.tensor([440.0, 5.0, 1e-6, 60.0, 350.0, 20.0, 0.0, 1.0, 345.0])
SIGMA = np.array([0.088, 0.023])


class HoldPolicy:
    """A tiny deterministic agent: a fixed linear map of the observation, in the box."""

    def __init__(self, gain: float) -> None:
        self.w = torch.zeros(9, 2)
        self.w[5, 0] = gain  # polymer error → initiator change
        self.w[6, 1] = -gain  # temperature error → coolant change

    def state_dict(self) -> dict:
        return {"w": self.w}

    def act(self, obs: np.ndarray) -> np.ndarray:
        o = torch.as_tensor(np.asarray(obs), dtype=torch.float32)
        return torch.clamp(o @ self.w, -1, 1).numpy()


def picnn(seed: int) -> PICNN:
    torch.manual_seed(seed)
    model = PICNN(hidden=8)
    with torch.no_grad():
        model.obs_mean.copy_(OBS_MEAN)
        model.obs_std.copy_(0.1 * OBS_MEAN.abs() + 1.0)
        model.y_mean.fill_(20.0)
        model.y_std.fill_(10.0)
    return model.eval()


AGENTS = {("hold", 0): HoldPolicy(0.01), ("hold", 1): HoldPolicy(0.03)}
MODELS = {"picnn": picnn(0), "ensemble": CostEnsemble([picnn(0), picnn(1)], [0, 1]).eval()}
VARIANTS = {
    "plain": CorrectionVariant("gradient", steps=2),
    "normalised": CorrectionVariant("normalised", steps=2),
    "trust": CorrectionVariant("gradient", steps=2, trust_radius=1.0),
    "pessimistic": CorrectionVariant("gradient", model="ensemble", steps=2, pessimism=0.5),
}
STEPS = {
    "plain": (1e-3, 1.0),
    "normalised": (0.1, 1.0),
    "trust": (1e-3, 1.0),
    "pessimistic": (1.0,),
}
TASK = ScenarioTask("startup", return_min=-5e5, return_max=-1e3, action_scale=SIGMA)
KW = dict(variants=VARIANTS, step_sizes=STEPS)


def test_sweep_equals_separate_validation_runs_and_is_cached(tmp_path, monkeypatch) -> None:
    sweep = sweep_corrections(CorrectionSetup(AGENTS, MODELS, TASK), 2, cache_dir=tmp_path, **KW)
    assert len(sweep) == 2 * (1 + 2 + 2 + 2 + 1)
    assert set(sweep.columns) >= {"algorithm", "seed", "variant", "step_size", "mean", "min",
                                  "runaways", "not_worse", "base_mean"}  # fmt: skip
    # every episode's score is kept: the run's mean and worst episode are theirs
    scores = ct.episode_scores(sweep)
    assert ct.episode_score_columns(sweep) == ["score_0", "score_1"] and scores.shape == (16, 2)
    np.testing.assert_allclose(scores.mean(axis=1), sweep["mean"], rtol=1e-12)
    np.testing.assert_array_equal(scores.min(axis=1), sweep["min"])
    # base and one corrected run equal evaluate_policy on the same validation episodes
    for key, agent in AGENTS.items():
        metrics, _ = evaluate_policy(agent.act, "startup", 2, -5e5, -1e3, split="validation")
        row = sweep[(sweep["seed"] == key[1]) & (sweep["variant"] == "none")].iloc[0]
        assert row["mean"] == pytest.approx(metrics["normalised_reward"].mean(), rel=1e-9)
        plus = CorrectedPolicy(
            agent, MODELS["ensemble"], **VARIANTS["pessimistic"].policy_kwargs(1.0, SIGMA)
        )
        metrics, _ = evaluate_policy(plus.act, "startup", 2, -5e5, -1e3, split="validation")
        row = sweep[(sweep["seed"] == key[1]) & (sweep["variant"] == "pessimistic")].iloc[0]
        assert row["mean"] == pytest.approx(metrics["normalised_reward"].mean(), rel=1e-6)
    # the base is never worse than itself; the flag follows the rule
    base = sweep[sweep["variant"] == "none"]
    assert base["not_worse"].all()
    expect = (
        (sweep["mean"] >= sweep["base_mean"] - 1.0)
        & (sweep["min"] >= sweep["base_min"] - 1.0)
        & (sweep["runaways"] <= sweep["base_runaways"])
    )
    assert (sweep["not_worse"] == expect).all()
    # cached: a second call reads the artifact without running anything
    assert len(list((tmp_path / "correction_sweeps").glob("*/manifest.json"))) == 1

    def boom(*args, **kwargs):
        raise AssertionError("ran again")

    monkeypatch.setattr(ct, "_run_sweep", boom)
    again = sweep_corrections(CorrectionSetup(AGENTS, MODELS, TASK), 2, cache_dir=tmp_path, **KW)
    pd.testing.assert_frame_equal(sweep, again, check_exact=True)
    for gone in (["score_0", "score_1"], ["score_1"]):  # tables of older or broken columns
        with pytest.raises(ValueError, match="per-episode"):
            ct.episode_scores(sweep.drop(columns=gone))
    with pytest.raises(AssertionError, match="ran again"):  # another setting → another key
        sweep_corrections(
            CorrectionSetup(AGENTS, MODELS, TASK), 2, cache_dir=tmp_path, tol=2.0, **KW
        )


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="cost model"):
        sweep_corrections(
            CorrectionSetup(AGENTS, {"picnn": MODELS["picnn"]}, TASK), 1, cache=False, **KW
        )
    with pytest.raises(ValueError, match="step sizes"):
        sweep_corrections(CorrectionSetup(AGENTS, MODELS, TASK), 1, cache=False,
                          **{**KW, "step_sizes": {**STEPS, "plain": (0.0, 1.0)}})  # fmt: skip
    with pytest.raises(ValueError, match="no step sizes"):
        sweep_corrections(CorrectionSetup(AGENTS, MODELS, TASK), 1, cache=False,
                          **{**KW, "step_sizes": {"plain": (1.0,)}})  # fmt: skip
    with pytest.raises(ValueError, match="algorithm, seed"):
        sweep_corrections(
            CorrectionSetup({"bc": AGENTS["hold", 0]}, MODELS, TASK), 1, cache=False, **KW
        )
    with pytest.raises(ValueError, match="action_scale"):
        sweep_corrections(
            CorrectionSetup(AGENTS, MODELS, ScenarioTask("startup", -5e5, -1e3, [0, 1])),
            1,
            cache=False,
            **KW,
        )
    with pytest.raises(ValueError, match="split"):
        sweep_corrections(
            CorrectionSetup(AGENTS, MODELS, TASK), 1, split="train", cache=False, **KW
        )
    with pytest.raises(ValueError, match="method"):
        CorrectionVariant("adam")
    with pytest.raises(ValueError, match="pessimism"):
        CorrectionVariant(pessimism=2.0)


def table(rows: list[tuple[str, float, int, float, bool]]) -> pd.DataFrame:
    """Synthetic sweep rows: (variant, step, seed, mean, not_worse); base rows added."""
    out = [{"algorithm": "bc", "seed": s, "variant": "none", "step_size": 0.0, "mean": 50.0,
            "not_worse": True} for s in (0, 1)]  # fmt: skip
    out += [{"algorithm": "bc", "seed": s, "variant": v, "step_size": e, "mean": m,
             "not_worse": ok} for v, e, s, m, ok in rows]  # fmt: skip
    return pd.DataFrame(out)


def test_rule_prefers_safe_then_iqm_then_smaller_step() -> None:
    sweep = table(
        [
            # a: the largest mean is unsafe (one run worse) → the best safe step wins
            ("a", 0.1, 0, 60.0, True), ("a", 0.1, 1, 60.0, True),
            ("a", 1.0, 0, 90.0, True), ("a", 1.0, 1, 90.0, False),
            ("a", 0.01, 0, 52.0, True), ("a", 0.01, 1, 52.0, True),
            # b: two safe steps tie within tie_tol → the smaller one
            ("b", 1.0, 0, 70.2, True), ("b", 1.0, 1, 70.2, True),
            ("b", 10.0, 0, 70.5, True), ("b", 10.0, 1, 70.5, True),
            ("b", 100.0, 0, 10.0, False), ("b", 100.0, 1, 10.0, False),
            # c: never safe → largest IQM, flagged
            ("c", 1.0, 0, 95.0, False), ("c", 1.0, 1, 95.0, True),
            ("c", 2.0, 0, 40.0, False), ("c", 2.0, 1, 40.0, False),
        ]
    )  # fmt: skip
    choice, per = choose_from_sweep(sweep, tie_tol=0.5)
    assert per.loc["a", "step_size"] == 0.1 and per.loc["a", "safe"]
    assert (per.loc["a", "safe_low"], per.loc["a", "safe_high"]) == (0.01, 0.1)
    assert per.loc["a", "safe_decades"] == pytest.approx(1.0)
    assert per.loc["b", "worst_iqm"] == pytest.approx(10.0)
    assert per.loc["b", "step_size"] == 1.0
    assert (per.loc["b", "safe_low"], per.loc["b", "safe_high"]) == (1.0, 10.0)
    assert per.loc["c", "step_size"] == 1.0 and not per.loc["c", "safe"]
    assert np.isnan(per.loc["c", "safe_low"])
    # overall: c has the largest IQM but is unsafe → b (70.2) beats a (60)
    assert choice == {"variant": "b", "step_size": 1.0, "iqm": pytest.approx(70.2), "safe": True}
    with pytest.raises(ValueError, match="base"):
        choose_from_sweep(sweep[sweep["variant"] != "none"])


def test_safe_ranges_judge_each_algorithm_by_its_own_runs() -> None:
    bc = table(
        [
            ("a", 0.1, 0, 60.0, True), ("a", 0.1, 1, 60.0, True),
            ("a", 1.0, 0, 60.0, True), ("a", 1.0, 1, 60.0, True),
        ]
    )  # fmt: skip
    iql = bc.assign(algorithm="iql")
    iql.loc[
        (iql["variant"] == "a") & (iql["step_size"] == 1.0) & (iql["seed"] == 1), "not_worse"
    ] = False
    iql.loc[iql["variant"] == "a", "mean"] = [55.0, 55.0, 55.0, -20.0]
    ranges = safe_ranges(pd.concat([bc, iql], ignore_index=True))
    assert list(ranges.index) == [("bc", "a"), ("iql", "a")]
    assert (ranges.loc[("bc", "a"), "safe_low"], ranges.loc[("bc", "a"), "safe_high"]) == (0.1, 1.0)
    assert ranges.loc[("bc", "a"), "safe_decades"] == pytest.approx(1.0)
    assert (ranges.loc[("iql", "a"), "safe_low"], ranges.loc[("iql", "a"), "safe_high"]) == (
        0.1,
        0.1,
    )
    assert ranges.loc[("iql", "a"), "worst_iqm"] == pytest.approx(17.5)
    # pooled over both algorithms, one unsafe IQL run makes 1.0 unsafe for the variant
    _, pooled = choose_from_sweep(pd.concat([bc, iql], ignore_index=True))
    assert pooled.loc["a", "safe_high"] == 0.1
    with pytest.raises(ValueError, match="no column"):
        safe_ranges(bc, by="scenario")


def test_iqm_over_runs_trims_the_outer_quarters() -> None:
    rows = [("a", 1.0, s, m, True) for s, m in enumerate([0.0, 10.0, 20.0, 1000.0])]
    _, per = choose_from_sweep(table(rows))
    assert per.loc["a", "iqm"] == pytest.approx(15.0)


def test_choose_correction_keeps_the_chosen_setting(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path))
    sweep = sweep_corrections(CorrectionSetup(AGENTS, MODELS, TASK), 1, **KW)
    choice = choose_correction(sweep, VARIANTS, TASK.action_scale)
    assert isinstance(choice, CorrectionChoice)
    assert choice.variant in VARIANTS
    assert choice.step_size in STEPS[choice.variant]
    assert set(choice.per_variant.index) == set(VARIANTS)
    assert choice.setting == VARIANTS[choice.variant] and choice.model == choice.setting.model
    assert choice.step_text() == f"{choice.step_size:g}"
    assert choice.safe_text() in ("safe", "not safe (no step size of its grid was)")
    with pytest.raises(AttributeError):
        choice.variant = "other"  # frozen
    kwargs = choice.setting.policy_kwargs(choice.step_size, TASK.action_scale)
    assert choice.policy_kwargs == kwargs
    assert (sweep["episodes"] == 1).all()


def test_correction_path_costs_follow_the_simulator_at_the_data() -> None:
    from polycstr_lib.correction.gradients import one_step_cost
    from polycstr_lib.correction.paths import correction_path_costs
    from polycstr_lib.reactor.rollout import rollout

    traj = rollout(AGENTS["hold", 1].act, "startup", np.array([11, 12]))
    paths = correction_path_costs(MODELS["picnn"], traj, SIGMA, n_states=3, steps=2, step_size=0.5)
    assert len(paths) == 3 * 3 and list(paths["k"].unique()) == [0, 1, 2]
    start = paths[paths["k"] == 0]
    assert (start["distance"] == 0).all()
    # at k = 0 the simulator column is the data's own one-step cost
    rng = np.random.default_rng(0)
    ep = rng.integers(0, traj.actions.shape[0], 3)
    t = rng.integers(0, traj.actions.shape[1], 3)
    np.testing.assert_allclose(start["simulator"], traj.costs[ep, t], rtol=1e-6)
    ref = one_step_cost(
        traj.states[ep, t], traj.inputs[ep, t], traj.actions[ep, t], traj.setpoints[ep]
    )
    np.testing.assert_allclose(start["simulator"], ref)
    # normalised steps: at most step_size data spreads per step
    assert paths["distance"].max() <= 2 * 0.5 + 1e-5


def test_summarise_runs_aggregates_over_seeds() -> None:
    rows = [("a", 1.0, s, m, s != 3) for s, m in enumerate([0.0, 10.0, 20.0, 1000.0])]
    sweep = table(rows)
    sweep["min"] = sweep["mean"] - 5
    sweep["runaways"] = [0, 0, 0, 1, 0, 2]
    out = ct.summarise_runs(sweep[sweep["variant"] == "a"])
    assert len(out) == 1
    row = out.iloc[0]
    assert row["iqm"] == pytest.approx(15.0) and row["worst"] == -5.0
    assert row["runaways"] == 3 and row["not_worse"] == 3 and row["runs"] == 4


def test_sweep_in_two_processes_equals_one_process_to_the_bit(monkeypatch) -> None:
    from polycstr_lib.toolkit import ledger

    setup = CorrectionSetup(AGENTS, MODELS, TASK)
    alone = sweep_corrections(setup, 2, cache=False, processes=1, **KW)
    monkeypatch.setattr(ct, "MIN_PARALLEL_EPISODES", 1)  # spread even this tiny sweep
    assert ct.sweep_processes(len(AGENTS), 32, None) >= 1
    assert ct.sweep_processes(2, 32, 8) == 2 and ct.sweep_processes(2, 32, 1) == 1
    spread = sweep_corrections(setup, 2, cache=False, processes=2, **KW)
    pd.testing.assert_frame_equal(alone, spread, check_exact=True)
    assert ledger._STACK == []  # the workers' bookkeeping stays in the workers
    with pytest.raises(ValueError, match="processes"):
        ct.sweep_processes(2, 32, 0)
    monkeypatch.setattr(ct, "MIN_PARALLEL_EPISODES", 10_000)
    assert ct.sweep_processes(2, 32, 8) == 1  # a small sweep stays in this process
