"""The library functions the pages call: tasks, choices, evaluation, glue, figures."""

from __future__ import annotations

import dataclasses

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from test_correction_tuning import AGENTS, MODELS, SIGMA, STEPS, TASK, VARIANTS
from test_deployment import EPISODES, run, shifted, sweep_of
from test_safety import QuadraticCost

from polycstr_lib.analysis import ablation_page, correction_support
from polycstr_lib.analysis.ablation_figures import (
    expectile_figure,
    pareto_figure,
    step_size_figure,
    steps_and_radius_figure,
)
from polycstr_lib.analysis.results_page import (
    HOLD,
    ORACLE,
    correction_glue,
    deployment_table,
    evaluate_methods,
    glue_prefix,
    header_glue,
    zero_tuning_row,
)
from polycstr_lib.analysis.support_figures import path_figure, step_sweep_figure
from polycstr_lib.correction import choice as cc
from polycstr_lib.correction.ablations import COST_MODEL_LABELS, NEWTON_VARIANT, AblationResult
from polycstr_lib.correction.deployment import (
    Deployment,
    deploy_from_sweep,
    deployed_policy,
    zero_tuning_policy,
)
from polycstr_lib.correction.paths import correction_path
from polycstr_lib.correction.sweep import sweep_corrections
from polycstr_lib.correction.task import CorrectionSetup, ScenarioTask, load_task
from polycstr_lib.correction.variants import (
    DEFAULT_STEP_SIZES,
    CorrectionVariant,
)

matplotlib.use("Agg")


def test_scenario_task_checks_and_bounds() -> None:
    task = ScenarioTask("startup", -10, 5, [0.1, 0.2])
    assert task.return_bounds == (-10.0, 5.0) and task.action_scale.dtype == np.float64
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.return_min = 0.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="return_min < return_max"):
        ScenarioTask("startup", 5, -10, SIGMA)
    with pytest.raises(ValueError, match="scenario"):
        ScenarioTask("", -10, 5, SIGMA)


def test_load_task_reads_the_dataset() -> None:
    from polycstr_lib.correction.safety import action_spread
    from polycstr_lib.reactor.datasets import load_trajectories

    task = load_task("startup")
    _, side = load_trajectories("startup")
    assert task.return_bounds == (side["return_min"], side["return_max"])
    np.testing.assert_array_equal(task.action_scale, action_spread(task.data))
    assert task.trajectories.num_episodes > 0 and task.scenario == "startup"


def test_page_variants_are_the_defaults_with_the_page_settings() -> None:
    variants = cc.results_variants(["plain", "uncertainty"], 5)
    assert variants == {
        "plain": CorrectionVariant("gradient", steps=5),
        "uncertainty": CorrectionVariant("gradient", model="ensemble", steps=5, pessimism=0.5),
    }
    with pytest.raises(ValueError, match="unknown variants"):
        cc.results_variants(["adam"], 3)


def _synthetic_support(
    monkeypatch, sweep: pd.DataFrame, names
) -> correction_support.SupportDeployments:
    """Chapter 08's choice on ``sweep`` (the page's validation sweep, faked), through the very
    call the results pages make."""
    monkeypatch.setattr(cc, "results_cost_models", lambda *args: (MODELS, {"heldout_r2": 1.0}))
    monkeypatch.setattr(cc, "sweep_corrections", lambda *args, **kwargs: sweep)
    agents = {("bc", 0): AGENTS["hold", 0], ("bc", 1): AGENTS["hold", 1],
              ("iql", 0): AGENTS["hold", 1], ("iql", 1): AGENTS["hold", 0]}  # fmt: skip
    monkeypatch.setattr(correction_support, "score_scale", _unit_scale)
    return correction_support.deploy_scenarios({"startup": agents}, {"startup": TASK}, names, 3,
                                               10, EPISODES, 2)  # fmt: skip


def _unit_scale(scenario, episodes, return_min, return_max, horizon, split="validation"):
    """A hold-to-oracle scale of 100 points (no NMPC run): 1 % is 1 point."""
    from polycstr_lib.reactor.metrics import ScoreScale

    return ScoreScale(scenario, split, tuple(range(episodes)), hold=0.0, oracle=100.0)


def test_support_falls_back_to_no_correction_when_every_step_hurts(monkeypatch) -> None:
    # every step of "plain" wrecks one episode (the tail), every "normalised" step adds a
    # runaway, though both raise the mean: nothing is admissible, η = 0 everywhere
    rows = [run(a, s, v, eta, shifted(5.0, worst=20.0) if v == "plain" else shifted(5.0),
                runaways=int(v == "normalised"))
            for a in ("bc", "iql") for s in (0, 1) for v in ("plain", "normalised")
            for eta in DEFAULT_STEP_SIZES[v]]  # fmt: skip
    support = _synthetic_support(monkeypatch, sweep_of(rows), ["plain", "normalised"])
    deployed = support.deployments["startup"]
    assert list(deployed) == ["bc", "iql"]
    for d in deployed.values():
        assert (d.variant, d.step_size, d.fallback, d.corrected) == ("none", 0.0, True, False)
        assert d.text() == "no correction: none admissible" and d.candidates == 11
    values = correction_support.deployment_glue(support.deployments)
    assert (values["n_pairs"], values["n_corrected"], values["n_kept"]) == (2, 0, 2)
    assert values["n_fallback"] == 2 and values["deployed_variants"] == "none"
    ranges, comparison = correction_support.admissible_ranges(support.sweeps, support.deployments)
    assert set(ranges["admissible"]) == {"0 of 5"} and set(ranges["range"]) == {"none"}
    assert ranges["decades"].isna().all()
    assert comparison["range_comparison"].startswith("no variant on the plain step's grid")
    # on the test episodes the "+" runs are the base's own (nothing else is run)
    test = correction_support.test_deployed(
        {"startup": TASK},
        {"startup": {("bc", 0): AGENTS["hold", 0], ("iql", 0): AGENTS["hold", 1]}},
        support,
        [0],
        1,
    )
    assert (test["plus_iqm"] == test["base_iqm"]).all() and not test["corrected"].any()
    values.update(correction_support.test_glue(test, "startup"))
    assert values["deploy_bc"] == "no correction: none admissible"
    assert np.isnan(values["test_gain_low"])
    assert "no correction is deployed for any of the 2" in correction_support.page_finding(values)
    correction_support.deployment_page_table(support.deployments)
    correction_support.test_page_table(test)


def test_support_ranges_count_the_admissible_steps_per_pair(monkeypatch) -> None:
    grid = DEFAULT_STEP_SIZES["plain"]  # 1e-5 … 1e-1
    rows = []
    for a in ("bc", "iql"):
        for s in (0, 1):
            for eta in grid:  # plain admissible up to 1e-3 for bc, nowhere for iql
                ok = a == "bc" and eta <= 1e-3
                rows.append(run(a, s, "plain", eta, shifted(1.0) if ok else shifted(2.0, 0.0)))
                rows.append(run(a, s, "trust region", eta, shifted(0.5 + eta)))
    support = _synthetic_support(monkeypatch, sweep_of(rows), ["plain", "trust region"])
    deployed = support.deployments["startup"]
    # bc: plain 1.0 (earlier variant) ties trust region within 0.5 → plain, smallest step
    assert (deployed["bc"].variant, deployed["bc"].step_size) == ("plain", 1e-5)
    assert (deployed["iql"].variant, deployed["iql"].step_size) == ("trust region", 1e-5)
    ranges, comparison = correction_support.admissible_ranges(support.sweeps, support.deployments)
    bc = ranges.loc[("startup", "BC", "plain")]
    assert (bc["admissible"], bc["range"]) == ("3 of 5", "1e-05 to 0.001")
    assert bc["decades"] == pytest.approx(2.0)
    assert ranges.loc[("startup", "IQL", "plain"), "range"] == "none"
    assert ranges.loc[("startup", "IQL", "trust region"), "admissible"] == "5 of 5"
    assert comparison["range_comparison"] == (
        "the trust region is admissible over a wider range than the plain step in 2 of 2 "
        "pairs and over a narrower one in 0"
    )
    values = correction_support.deployment_glue(support.deployments)
    assert values["deployed_variants"] == "plain in 1, trust region in 1"
    test = pd.DataFrame({"scenario": "startup", "algorithm": ["bc", "iql"],
                         "deployed": ["plain, step size 1e-05", "no correction"],
                         "corrected": [True, False], "base_iqm": [50.0, 60.0],
                         "plus_iqm": [52.5, 60.0]})  # fmt: skip
    assert correction_support.test_glue(test, "startup") == {
        "deploy_bc": "plain, step size 1e-05", "test_bc_base": 50.0, "test_bc_plus": 52.5,
        "deploy_iql": "no correction", "test_iql_base": 60.0, "test_iql_plus": 60.0,
        "test_gain_low": 2.5, "test_gain_high": 2.5,
    }  # fmt: skip


def test_support_deploys_as_the_results_page_does(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path))
    monkeypatch.setattr(cc, "results_cost_models", lambda *args: (MODELS, {"heldout_r2": 1.0}))
    seen = []

    def scale(*args, **kwargs):
        seen.append(args)
        return _unit_scale(*args, **kwargs)

    monkeypatch.setattr(correction_support, "score_scale", scale)
    support = correction_support.deploy_scenarios(
        {"startup": AGENTS}, {"startup": TASK}, ["plain", "normalised"], 2, 10, 1, 7
    )
    # the scale is the results page's: its validation episodes, the oracle's horizon
    assert seen == [("startup", 1, *TASK.return_bounds, 7)]
    variants = cc.results_variants(["plain", "normalised"], 2)
    grids = {n: DEFAULT_STEP_SIZES[n] for n in variants}
    sweep = sweep_corrections(CorrectionSetup(AGENTS, MODELS, TASK), 1, variants, grids)
    pd.testing.assert_frame_equal(support.sweeps["startup"], sweep)
    assert support.deployments["startup"] == deploy_from_sweep(
        sweep, variants, "startup", score_range=100.0
    )
    with pytest.raises(ValueError, match="unknown variants"):
        correction_support.variant_names_text(["adam"])
    assert correction_support.variant_names_text(["plain", "normalised"]) == (
        "plain (cost units), normalised (data spreads)"
    )


def test_evaluate_methods_scores_every_method_on_the_same_episodes() -> None:
    from polycstr_lib.reactor.metrics import evaluate_policy

    task = load_task("startup")
    plain = {"plain": VARIANTS["plain"]}
    sweep = sweep_corrections(
        CorrectionSetup(AGENTS, MODELS, TASK), 1, plain, {"plain": STEPS["plain"]}, cache=False
    )
    (deployment,) = deploy_from_sweep(sweep, plain, "startup").values()
    agents = {("hold", 0): AGENTS["hold", 0], ("hold", 1): AGENTS["hold", 1]}
    # each algorithm's "+" row is its own deployment: here one corrects, one deploys η = 0
    corrected = dataclasses.replace(
        deployment, variant="plain", step_size=1.0, fallback=False, setting=VARIANTS["plain"]
    )
    none = dataclasses.replace(
        deployment, variant="none", step_size=0.0, fallback=True, setting=None
    )
    deployments = {"hold": corrected, "twin": none}
    agents |= {("twin", s): a for (_, s), a in agents.items()}
    runs = evaluate_methods(task, agents, MODELS, deployments, ["hold", "twin"], [0, 1], 1)
    assert list(runs.per_seed) == [
        "Data", "PI", "HOLD", "HOLD+", "HOLD+ (no tuning)", "TWIN", "TWIN+", "TWIN+ (no tuning)",
    ]  # fmt: skip
    # PI last, as the figures expect; the zero-tuning rows are not drawn as trajectories
    assert list(runs.trajectories) == ["HOLD", "HOLD+", "TWIN", "TWIN+", "PI"]
    assert set(runs.per_seed["HOLD"]) == {0, 1}
    direct, _ = evaluate_policy(AGENTS["hold", 1].act, "startup", 1, *task.return_bounds)
    pd.testing.assert_frame_equal(runs.per_seed["HOLD"][1], direct)
    plus = deployed_policy(AGENTS["hold", 1], MODELS, corrected, task.action_scale)
    direct, _ = evaluate_policy(plus.act, "startup", 1, *task.return_bounds)
    pd.testing.assert_frame_equal(runs.per_seed["HOLD+"][1], direct)
    fixed = zero_tuning_policy(AGENTS["hold", 1], MODELS, task)
    direct, _ = evaluate_policy(fixed.act, "startup", 1, *task.return_bounds)
    pd.testing.assert_frame_equal(runs.per_seed["HOLD+ (no tuning)"][1], direct)
    # η = 0: the "+" row is the base row, bit for bit
    for seed in (0, 1):
        pd.testing.assert_frame_equal(
            runs.per_seed["TWIN+"][seed], runs.per_seed["TWIN"][seed], check_exact=True
        )
    assert runs.trajectories["TWIN+"] is runs.trajectories["TWIN"]
    assert ORACLE == "NMPC (oracle)"


def test_results_page_glue_names() -> None:
    values = header_glue("startup", {"bc": 2000, "iql": 250}, {"bc": "profile", "iql": "curves"})
    assert values["steps_bc"] == "2,000" and values["steps_source_iql"] == "curves"
    assert set(values) == {"scenario_title", "steps_bc", "steps_source_bc", "steps_iql",
                           "steps_source_iql", "runaway_temperature", "budgets"}  # fmt: skip
    assert values["budgets"] == {"bc": 2000, "iql": 250}  # read by the claims' seed halves
    reason = "best mean among 3 admissible settings"
    bc = Deployment("startup", "bc", "plain", 0.001, False, reason, 60.0, 50.0, 0, 10, 0.259,
                    0.95, 3, 6, VARIANTS["plain"])  # fmt: skip
    iql = Deployment("startup", "iql", "none", 0.0, True, "no correction: none admissible (…)",
                     50.0, 50.0, 1, 10, 0.394, 0.95, 1, 6)  # fmt: skip
    glue = correction_glue({"bc": bc, "iql": iql}, ["plain", "normalised"], 3, 5)
    assert glue == {
        "deploy_bc": "plain, step size 0.001",
        "deploy_bc_step": "0.001",
        "deploy_bc_reason": "best mean among 3 admissible settings",
        "deploy_bc_admissible": 3,
        "deploy_bc_candidates": 6,
        "deploy_bc_runaways": 0,
        "deploy_bc_episodes": 10,
        "deploy_bc_bound": 0.259,
        "deploy_iql": "no correction: none admissible",
        "deploy_iql_step": "0",
        "deploy_iql_reason": "no correction: none admissible (…)",
        "deploy_iql_admissible": 1,
        "deploy_iql_candidates": 6,
        "deploy_iql_runaways": 1,
        "deploy_iql_episodes": 10,
        "deploy_iql_bound": 0.394,
        "correction_candidates": "plain, normalised",
        "correction_k": 3,
        "n_validation": 5,
        "n_fallback": 1,
        "deploy_tail": "10 %",
        "deploy_margin": "1",
        "deploy_tolerance": "1 point",
        "zero_tuning": "3 normalised steps of 0.1 σ_a within ρ = 0.25 σ_a",
    }
    table = deployment_table({"bc": bc, "iql": iql})
    assert list(table.index) == ["BC+", "IQL+"]
    assert table.loc["IQL+", "Correction deployed"] == "no correction: none admissible"
    assert table.loc["BC+", "Runaway rate at most"] == "0.259 (95 %)"
    assert table.loc["IQL+", "Validation runaways"] == "1 of 10"
    # glue prefixes: rows keep their names, the zero-tuning rows are "<ALGO>+0"
    assert [glue_prefix(m) for m in ("BC", "BC+", zero_tuning_row("bc"), ORACLE, HOLD)] == [
        "BC", "BC+", "BC+0", "NMPC", "HOLD",
    ]  # fmt: skip
    # with a scale, the margin is a share of the validation range, in words and points
    scaled = dataclasses.replace(bc, margin=2.5, score_range=250.0)
    glue = correction_glue({"bc": scaled}, ["plain"], 3, 5)
    assert glue["deploy_margin"] == "2.5" and glue["deploy_range"] == 250.0
    assert glue["deploy_tolerance"] == "1 % of the hold-to-oracle range on validation (2.5 points)"


def test_results_tables_have_hold_and_oracle_rows_on_the_table_episodes(monkeypatch) -> None:
    from polycstr_lib.analysis import results_page
    from polycstr_lib.analysis.results_page import ResultsRuns, add_oracle
    from polycstr_lib.reactor.datasets import eval_seeds
    from polycstr_lib.reactor.metrics import evaluate_policy
    from polycstr_lib.reactor.nmpc import hold_policy
    from polycstr_lib.reactor.pi import GainRanges, PIController
    from polycstr_lib.reactor.rollout import rollout

    task = load_task("grade_up")
    pi = PIController(GainRanges().nominal())
    asked = []

    def fake_nmpc(run):  # the PI controller stands in for the oracle (it beats holding here)
        asked.append(run)
        traj = rollout(pi, run.scenario, eval_seeds(run.episodes))
        return traj, {"solve_seconds": np.array([0.05, 0.06]), "failures": 0}

    monkeypatch.setattr(results_page, "run_nmpc", fake_nmpc)
    pi_metrics, pi_traj = evaluate_policy(pi, "grade_up", 3, *task.return_bounds)
    runs = ResultsRuns({"PI": {0: pi_metrics}}, {"PI": pi_traj})
    out = add_oracle(runs, task, test_episodes=3, nmpc_episodes=2, horizon=10)
    assert [(r.scenario, r.episodes, r.split, r.nmpc.horizon) for r in asked] == [
        ("grade_up", 2, "test", 10)
    ]
    assert list(out.table.index) == [ORACLE, HOLD, "PI"]
    # holding the inputs runs on every test episode of the table, env seed for env seed
    hold, _ = evaluate_policy(hold_policy, "grade_up", 3, *task.return_bounds)
    pd.testing.assert_frame_equal(out.per_seed[HOLD][0].drop(columns="optimality"), hold)
    np.testing.assert_allclose(out.per_seed[HOLD][0]["optimality"][:2], 0.0, atol=1e-9)
    assert np.isnan(out.per_seed[HOLD][0]["optimality"][2])  # no oracle on episode 3
    np.testing.assert_allclose(out.per_seed[ORACLE][0]["optimality"], 100.0)
    # the scale: hold and oracle on the oracle's episodes, the table's first two
    assert out.scale.seeds == tuple(int(s) for s in eval_seeds(2))
    assert out.scale.hold == pytest.approx(hold["normalised_reward"][:2].mean())
    assert out.scale.oracle == pytest.approx(pi_metrics["normalised_reward"][:2].mean())
    assert out.glue["scale_range"] == pytest.approx(out.scale.range)
    assert out.glue["HOLD_mean"] == pytest.approx(hold["normalised_reward"].mean())
    assert out.glue["HOLD_episodes"] == 3 and out.glue["NMPC_episodes"] == 2
    # deterministic rows: one run each, the interval over their episodes
    assert list(out.table["interval"]) == ["episodes", "episodes", "seeds"]
    row = out.table.loc[HOLD]
    assert row["iqm_low"] < row["iqm"] < row["iqm_high"]
    with pytest.raises(ValueError, match="reference row"):
        add_oracle(out, task, test_episodes=3, nmpc_episodes=2, horizon=10)
    assert zero_tuning_row("iql") == "IQL+ (no tuning)"


def test_correction_path_takes_single_steps() -> None:
    model = QuadraticCost()
    obs, action = torch.zeros(9), torch.tensor([0.5, -0.5])
    path = correction_path(model, obs, action, "gradient", 4, 0.1)
    assert path.shape == (5, 2) and np.allclose(path[0], [0.5, -0.5])
    costs = [float(model(obs[None], torch.as_tensor(p, dtype=torch.float32)[None])) for p in path]
    assert all(b <= a + 1e-9 for a, b in zip(costs, costs[1:], strict=False))
    newton = correction_path(model, obs, action, "newton", 1, 123.0)  # step size ignored
    assert np.allclose(newton[-1], model.minimiser(obs[None])[0].numpy(), atol=1e-3)  # damped


def _summary() -> pd.DataFrame:
    rows = [("base", "none", 0.0, 10.0, -5.0, 0, 0, 0.0, None)]
    rows += [("cost model", "PICNN one-step", eta, 10 + eta, -4.0, 0, 1, 0.2, None)
             for eta in (0.1, 1.0)]  # fmt: skip
    rows += [("Newton", NEWTON_VARIANT, 1.0, 11.0, -3.0, 0, 1, 0.3, None)]
    rows += [("K", f"K = {k}", 0.1, 10.0 + k, -4.0, 0, k, 0.1 * k, None) for k in (1, 3)]
    rows += [("trust radius", f"ρ = {r:g}", 0.1, 10.0 + r, -4.0, 0, 3, 0.3, r) for r in (0.5, 1.0)]
    columns = [
        "sweep",
        "variant",
        "step_size",
        "iqm",
        "worst",
        "runaways",
        "K",
        "latency_ms",
        "rho",
    ]
    return pd.DataFrame(rows, columns=columns).assign(not_worse=2, runs=2)


def _result() -> AblationResult:
    summary = _summary()
    per_variant = pd.DataFrame(
        {"step_size": [1.0, 1.0], "iqm": [11.0, 11.0], "worst_iqm": [-4.0, -3.0]},
        index=pd.Index([COST_MODEL_LABELS["picnn"], NEWTON_VARIANT], name="variant"),
    )
    chosen = pd.DataFrame(
        {"variant": ["PICNN one-step", NEWTON_VARIANT, "K = 3", "ρ = 1"],
         "step_size": [1.0, 1.0, 0.1, 0.1], "iqm": [11.0, 11.0, 13.0, 11.0],
         "safe": [True, False, True, True]},
        index=pd.Index(["cost model", "Newton", "K", "trust radius"], name="sweep"),
    )  # fmt: skip
    return AblationResult(summary, summary, chosen, per_variant, {}, "PICNN one-step")


def test_ablation_glue_keys_do_not_follow_labels() -> None:
    values = ablation_page.validation_glue(_result())
    assert values["val_base_iqm"] == 10.0 and values["overall_step"] == "1"
    assert values["val_newton_safe"] == "not safe" and values["val_k_variant"] == "K = 3"
    assert values["pv_picnn_one_step_iqm"] == 11.0 and values["pv_newton_worst"] == -3.0
    assert set(ablation_page.VARIANT_KEYS) == {*COST_MODEL_LABELS.values(), NEWTON_VARIANT}
    tau = pd.DataFrame({"tau": [0.7, 0.7, 0.9, 0.9], "method": ["IQL", "IQL+", "IQL", "IQL+"],
                        "iqm": [1.0, 2.0, 3.0, 0.5], "worst": [0.0] * 4})  # fmt: skip
    tau_values = ablation_page.expectile_glue(tau)
    assert tau_values["tau_0.7_IQL+_iqm"] == 2.0 and tau_values["tau_best"] == "0.9"
    test = pd.DataFrame({"sweep": ["base", "K"], "iqm": [1.0, 2.0], "worst": [0.0, -1.0]})
    assert ablation_page.test_glue(test) == {
        "test_base_iqm": 1.0, "test_base_worst": 0.0, "test_k_iqm": 2.0, "test_k_worst": -1.0,
    }  # fmt: skip
    header = ablation_page.header_glue("grade_up", "bc", 2, 5, 20, 1.0)
    assert header["base_name"] == "BC" and header["tol"] == "1"
    # the settings table is a reader's table: labels capitalised, code names as headers gone
    settings = ablation_page.settings_table(_summary())
    assert "Uncorrected" in settings.frame.index.get_level_values(1)
    assert "Step size η" in settings.headers and "step_size" not in settings.headers


def test_ablation_figures_draw() -> None:
    summary = _summary()
    assert len(step_size_figure(summary, "BC").axes) == 2
    assert len(steps_and_radius_figure(summary, "BC").axes) == 3
    fig, front = pareto_figure(summary)
    assert len(front) >= 1 and front[0] == 0  # the uncorrected agent costs no time
    tau = pd.DataFrame({"tau": [0.7, 0.9], "method": ["IQL", "IQL"], "iqm": [1.0, 2.0],
                        "worst": [0.0, 1.0]})  # fmt: skip
    assert expectile_figure(tau).axes
    ablation_page.front_table(summary, front)
    matplotlib.pyplot.close("all")


def test_support_path_glue_and_sweep_figure() -> None:
    paths = pd.DataFrame({"path": [0, 0, 1, 1], "k": [0, 1, 0, 1], "distance": [0, 1, 0, 3.0],
                          "predicted": [1, 2, 1, 5.0], "simulator": [1, 1, 1, 1.0]})  # fmt: skip
    by_k = correction_support.path_errors(paths)
    assert correction_support.path_error_glue(by_k) == {
        "path_err_0": 0.0, "path_err_far": 2.5, "path_far": 2.0,
    }  # fmt: skip
    assert len(path_figure(paths, by_k, "startup").axes) == 2
    variants = {n: VARIANTS["plain"] for n in ("plain", "trust region", "uncertainty")}
    sweep = sweep_corrections(CorrectionSetup(AGENTS, MODELS, TASK), 1, variants,
                              dict.fromkeys(variants, (1e-3, 1.0)), cache=False)  # fmt: skip
    assert len(step_sweep_figure({"startup": sweep}, list(variants), ["hold"]).axes) == 3
    matplotlib.pyplot.close("all")


def test_trainers_build_the_pages_configs(monkeypatch) -> None:
    from polycstr_lib.agents import sweeps

    seen = []

    def fake(configs, **kwargs):
        seen.append((list(configs), kwargs))
        return [(f"{c.algorithm}-{c.scenario}-{c.seed}", None) for c in configs]

    monkeypatch.setattr(sweeps, "train_many", fake)
    agents = sweeps.train_seed_ensembles("startup", {"bc": 10, "iql": 20}, [0, 1], processes=1)
    assert agents["iql", 1] == "iql-startup-1"
    assert [(c.seed, c.algorithm, c.steps) for c in seen[-1][0]] == [
        (0, "bc", 10), (0, "iql", 20), (1, "bc", 10), (1, "iql", 20),
    ]  # fmt: skip
    base, iql = sweeps.train_expectile_sweep("grade_up", "bc", [0.7, 0.9], [0], 30, progress=False)
    assert list(base) == [("bc", 0)] and list(iql) == [("τ = 0.7", 0), ("τ = 0.9", 0)]
    assert seen[-1][0][2].agent.expectile == 0.9 and seen[-1][1]["progress"] is False
    per = sweeps.train_per_scenario(["startup", "grade_up"], {"bc": {"startup": 1, "grade_up": 2}},
                                    [0])  # fmt: skip
    assert per["grade_up"]["bc", 0] == "bc-grade_up-0"
    assert [c.steps for c in seen[-1][0]] == [1, 2]
    # chapter 08 hands its sweep the agents in a results page's order, so the sweep is shared
    steps = {"bc": {"startup": 1}, "iql": {"startup": 2}}
    per = sweeps.train_per_scenario(["startup"], steps, [0, 1], progress=False)
    ours = sweeps.train_seed_ensembles("startup", {"bc": 1, "iql": 2}, [0, 1], progress=False)
    assert list(per["startup"]) == list(ours) == [("bc", 0), ("iql", 0), ("bc", 1), ("iql", 1)]


def test_glue_all_glues_every_value(monkeypatch) -> None:
    import myst_nb

    from polycstr_lib.book.publish import glue_all

    calls = []
    monkeypatch.setattr(myst_nb, "glue", lambda *a, **k: calls.append((a, k)))
    glue_all({"a": 1, "b": "x"})
    assert calls == [(("a", 1), {"display": False}), (("b", "x"), {"display": False})]


def test_dataset_tables_and_their_glue() -> None:
    from polycstr_lib.reactor.dataset_summary import dataset_table, reference_table
    from polycstr_lib.reactor.datasets import load_trajectories, reference_comparison

    data = {"startup": load_trajectories("startup")}
    table, values = dataset_table(data)
    traj, side = data["startup"]
    assert table.loc["startup", "episodes"] == traj.num_episodes
    assert values["startup_violating"] == int(traj.violations.any(axis=1).sum())
    assert values["clip_max"] == pytest.approx(100 * max(side["rate_limited_fraction"]))
    refs, ref_values = reference_table(data)
    assert ref_values["stretch_startup"] == reference_comparison(traj)["stretch"]
    assert refs.loc["startup", "runaways"] == reference_comparison(traj)["runaways"]


def test_evaluate_policies_equals_one_call_per_policy() -> None:
    from polycstr_lib.reactor.metrics import evaluate_policies, evaluate_policy

    policies = {"a": AGENTS["hold", 0].act, "b": AGENTS["hold", 1].act}
    metrics, trajs = evaluate_policies(policies, "startup", 1, -5e5, -1e3)
    assert list(metrics) == list(trajs) == ["a", "b"]
    direct, _ = evaluate_policy(policies["b"], "startup", 1, -5e5, -1e3)
    pd.testing.assert_frame_equal(metrics["b"], direct)


def test_a_glued_sweep_gives_the_same_deployment() -> None:
    """The claims page reruns the deployment rule from the glued sweep: the round trip
    keeps every run's scores and runaways, so the rule chooses as on the page."""
    from polycstr_lib.analysis.results_page import sweep_from_glue, sweep_glue
    from polycstr_lib.correction.deployment import deploy_from_sweep

    rows = []
    for seed in (3, 1):
        for variant, step, gain, runaways in (("none", 0.0, 0.0, 0), ("plain", 0.01, 2.0, 0),
                                              ("plain", 0.1, 4.0, seed == 3)):  # fmt: skip
            scores = {f"score_{e}": 90.0 + e + gain for e in range(3)}
            rows.append({"algorithm": "bc", "seed": seed, "variant": variant, "step_size": step,
                         "mean": 91.0 + gain, "runaways": int(runaways), "episodes": 3,
                         **scores})  # fmt: skip
    sweep = pd.DataFrame(rows)
    glued = sweep_glue(sweep, ["plain"], 3, 1.0)
    assert glued["variants"] == ["plain"] and glued["steps"] == 3 and glued["margin"] == 1.0
    back = sweep_from_glue(glued)
    pd.testing.assert_frame_equal(back, sweep[list(back.columns)], check_dtype=False)
    variants = {"plain": VARIANTS["plain"]}
    want = deploy_from_sweep(sweep, variants, "startup", margin=1.0)["bc"]
    got = deploy_from_sweep(back, variants, "startup", margin=1.0)["bc"]
    assert got.text() == want.text() == "plain, step size 0.01"  # 0.1 adds a runaway on seed 3
    reason = "best mean among 2 admissible settings"
    bc = Deployment("startup", "bc", "plain", 0.01, False, reason, 93.0, 91.0, 0, 6, 0.4,
                    0.95, 2, 3, VARIANTS["plain"])  # fmt: skip
    assert correction_glue({"bc": bc}, ["plain"], 3, 3, sweep)["correction_sweep"] == glued
