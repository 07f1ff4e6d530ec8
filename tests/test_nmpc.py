"""The NMPC oracle: one physics in two back ends, the controller, its cache and its score."""

import json

import numpy as np
import pandas as pd
import pytest

casadi = pytest.importorskip("casadi")

from polycstr_lib.analysis.results import summary_table  # noqa: E402
from polycstr_lib.reactor.datasets import eval_seeds  # noqa: E402
from polycstr_lib.reactor.env import ACTION_SCALE, CONTROL_INTERVAL  # noqa: E402
from polycstr_lib.reactor.integrator import advance, rhs_compiled  # noqa: E402
from polycstr_lib.reactor.metrics import add_optimality, optimality_references, optimality_score  # noqa: E402
from polycstr_lib.reactor.model import (  # noqa: E402
    STATE_SCALE,
    ReactorParams,
    reactor_rhs,
    reactor_rhs_casadi,
    steady_state,
)
from polycstr_lib.reactor.nmpc import (  # noqa: E402
    NMPCConfig,
    NMPCController,
    NMPCPolicy,
    NMPCRun,
    hold_policy,
    horizon_study,
    run_directory,
    run_nmpc,
)
from polycstr_lib.reactor.pi import GainRanges, PIController  # noqa: E402
from polycstr_lib.reactor.rollout import rollout  # noqa: E402

SMALL = NMPCConfig(horizon=6)


def _random_points(rng, n):
    states = np.array([440.0, 10.0, 1.5e-6, 100.0, 350.0]) * rng.uniform(0.2, 1.8, (n, 5))
    states[:, 4] = rng.uniform(320.0, 420.0, n)
    inputs = np.column_stack([rng.uniform(0.0, 2.5, n), rng.uniform(300.0, 350.0, n)])
    return states, inputs


def test_casadi_rhs_equals_numpy_and_compiled_rhs_to_round_off():
    params = ReactorParams()
    x, u = casadi.SX.sym("x", 5), casadi.SX.sym("u", 2)
    f = casadi.Function("f", [x, u], [reactor_rhs_casadi(x, u, params)])
    jac = casadi.Function("j", [x, u], [casadi.jacobian(reactor_rhs_casadi(x, u, params), x)])
    states, inputs = _random_points(np.random.default_rng(7), 200)
    for state, inp in zip(states, inputs, strict=True):
        symbolic = np.asarray(f(state, inp)).ravel()
        reference = reactor_rhs(state, inp, params)
        compiled, compiled_jac = rhs_compiled(state, inp, params)
        # round-off: relative 1e-12, absolute a 1e-14 part of the state's scale per second
        tol = 1e-12 * np.abs(reference) + 1e-14 * STATE_SCALE
        assert np.all(np.abs(symbolic - reference) <= tol)
        assert np.all(np.abs(symbolic - compiled) <= tol)
        # CasADi's exact Jacobian of the shared code against the kernel's hand-written one
        exact = np.asarray(jac(state, inp))
        norm = np.abs(exact).max(axis=1, keepdims=True) + 1e-300
        assert np.max(np.abs(exact - compiled_jac) / norm) < 1e-12


def test_casadi_rhs_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="5x1"):
        reactor_rhs_casadi(casadi.SX.sym("x", 4), casadi.SX.sym("u", 2), ReactorParams())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"horizon": 0},
        {"horizon": 2.5},
        {"collocation_degree": 9},
        {"finite_elements": 0},
        {"temperature_penalty": -1.0},
        {"temperature_limit": float("nan")},
        {"max_iter": 0},
        {"tol": 0.0},
        {"horizon": True},
    ],
)
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError, match="NMPCConfig"):
        NMPCConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scenario": "shutdown", "episodes": 1}, "unknown scenario"),
        ({"scenario": "startup", "episodes": 0}, "episodes"),
        ({"scenario": "startup", "episodes": 1, "steps": 500}, "steps"),
        ({"scenario": "startup", "episodes": 1, "nmpc": {"horizon": 3}}, "NMPCConfig"),
        ({"scenario": "startup", "episodes": 1, "split": "train"}, "unknown split"),
    ],
)
def test_run_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NMPCRun(**kwargs)


def test_controller_rejects_bad_setpoint():
    with pytest.raises(ValueError, match="setpoint"):
        NMPCController(np.array([100.0, np.nan]), SMALL)


@pytest.fixture(scope="module")
def grade_up_controller():
    return NMPCController(np.array([100.0, 350.0]), SMALL)


def test_plan_respects_rate_limit_bounds_and_predicts_the_simulator(grade_up_controller):
    ctrl = grade_up_controller
    ss = steady_state(60.0)
    state, inputs = ss.state.copy(), ss.inputs.copy()
    guess = ctrl.initial_guess(state, inputs)
    for _ in range(4):
        u0, guess, info = ctrl.solve(state, inputs, guess)
        assert info["success"], info["status"]
        step = u0 - inputs
        assert np.all(np.abs(step) <= ACTION_SCALE * (1 + 1e-7))
        assert np.all(u0 >= ctrl.params.input_low - 1e-7)
        assert np.all(u0 <= ctrl.params.input_high + 1e-7)
        nxt, _ = advance(state[None], u0[None], CONTROL_INTERVAL)
        # the collocated model predicts the simulator's next state closely
        rel = np.abs(info["predicted"] - nxt[0]) / np.abs(nxt[0])
        assert rel.max() < 1e-3
        state, inputs = nxt[0], u0
    # the polymer is far below its setpoint: the feed rises at the full rate at first
    assert inputs[0] > ss.inputs[0] + ACTION_SCALE[0]


def test_solve_rejects_bad_input(grade_up_controller):
    ctrl = grade_up_controller
    ss = steady_state(60.0)
    guess = ctrl.initial_guess(ss.state, ss.inputs)
    with pytest.raises(ValueError, match="state"):
        ctrl.solve(ss.state[:4], ss.inputs, guess)
    with pytest.raises(ValueError, match="guess"):
        ctrl.solve(ss.state, ss.inputs, guess[:-1])
    with pytest.raises(ValueError, match="finite"):
        ctrl.solve(ss.state, np.array([np.nan, 340.0]), guess)


def test_warm_start_shifts_the_plan_by_one_interval(grade_up_controller):
    ctrl = grade_up_controller
    ss = steady_state(60.0)
    _, shifted, _ = ctrl.solve(ss.state, ss.inputs, ctrl.initial_guess(ss.state, ss.inputs))
    solution = np.asarray(ctrl.mpc.opt_x_num.cat).ravel()
    new = ctrl.mpc._opt_x(casadi.DM(shifted))
    old = ctrl.mpc._opt_x(casadi.DM(solution))
    for k in range(SMALL.horizon - 1):
        np.testing.assert_array_equal(np.asarray(new["_u", k, 0]), np.asarray(old["_u", k + 1, 0]))
        np.testing.assert_array_equal(
            np.asarray(new["_x", k, 0, -1]), np.asarray(old["_x", k + 1, 0, -1])
        )
    # the last interval repeats
    last = SMALL.horizon - 1
    np.testing.assert_array_equal(np.asarray(new["_u", last, 0]), np.asarray(old["_u", last, 0]))


def _startup_peak(limit: float) -> float:
    """Peak temperature of 10 closed-loop startup steps under NMPC with ``limit``."""
    ctrl = NMPCController(np.array([100.0, 350.0]), NMPCConfig(horizon=6, temperature_limit=limit))
    state, inputs = np.array([440.0, 0.0, 0.0, 0.0, 352.0]), np.array([1.0, 345.0])
    guess = ctrl.initial_guess(state, inputs)
    peak = state[4]
    for _ in range(10):
        u0, guess, _ = ctrl.solve(state, inputs, guess)
        nxt, _ = advance(state[None], u0[None], CONTROL_INTERVAL)
        state, inputs = nxt[0], u0
        peak = max(peak, state[4])
    return peak


def test_temperature_limit_binds():
    """The startup overshoots to ~364 K unconstrained; a 356 K limit holds it there."""
    assert _startup_peak(400.0) > 359.0
    assert _startup_peak(356.0) < 356.0 + 0.05


@pytest.mark.parametrize("scenario", ["startup", "grade_down", "grade_up"])
def test_policy_beats_pi_and_holding_on_a_short_episode(scenario):
    steps, seeds = 24, eval_seeds(2)
    policy = NMPCPolicy(scenario, SMALL)
    nmpc = rollout(policy, scenario, seeds, steps=steps)
    pi = rollout(PIController(GainRanges().nominal()), scenario, seeds, steps=steps)
    hold = rollout(hold_policy, scenario, seeds, steps=steps)
    assert np.all(nmpc.returns > pi.returns) and np.all(nmpc.returns > hold.returns)
    assert not nmpc.violations.any()
    assert len(policy.solve_seconds) == 2 * steps and policy.failures == 0
    # the env applied exactly the inputs the plans asked for (the action round trip)
    assert np.all(np.abs(nmpc.actions) <= 1.0)


def test_policy_rejects_bad_observations():
    policy = NMPCPolicy("grade_up", SMALL)
    with pytest.raises(ValueError, match="shape"):
        policy.reset(np.zeros((2, 8)))
    with pytest.raises(ValueError, match="reset"):
        policy.act(np.zeros((1, 9)))
    policy.reset(np.ones((1, 9)))
    with pytest.raises(ValueError, match="finite"):
        policy.act(np.full((1, 9), np.nan))
    with pytest.raises(ValueError, match="unknown scenario"):
        NMPCPolicy("shutdown", SMALL)


def test_run_is_cached_by_configuration(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path))
    run = NMPCRun("grade_down", 1, steps=4, nmpc=SMALL)
    traj, stats = run_nmpc(run)
    assert not stats["cached"] and len(stats["solve_seconds"]) == 4
    again, stats2 = run_nmpc(run)
    assert stats2["cached"]
    for name in ("states", "inputs", "rewards", "actions", "observations", "seeds"):
        np.testing.assert_array_equal(getattr(traj, name), getattr(again, name))
    np.testing.assert_array_equal(stats["solve_seconds"], stats2["solve_seconds"])
    # another configuration is another folder
    other = NMPCRun("grade_down", 1, steps=4, nmpc=NMPCConfig(horizon=5))
    assert run_directory(other) != run_directory(run)
    # a folder whose metadata names another run is not trusted
    meta = run_directory(run) / "manifest.json"
    data = json.loads(meta.read_text())
    data["config"]["episodes"] = 99
    meta.write_text(json.dumps(data))
    assert not run_nmpc(run)[1]["cached"]
    assert run_nmpc(run, force=True)[1]["cached"] is False


def test_horizon_study_table(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path))
    table = horizon_study([2, 4], ["grade_down"], episodes=1, steps=3)
    assert list(table["horizon"]) == [2, 4]
    assert set(table.columns) >= {"return", "median_ms", "p95_ms", "violations", "failures"}
    assert (table["p95_ms"] >= table["median_ms"]).all()
    # The horizon is a choice: the study runs on validation episodes, never on test ones.
    from polycstr_lib.reactor.datasets import validation_seeds

    study = NMPCRun("grade_down", 1, steps=3, nmpc=NMPCConfig(horizon=2), split="validation")
    traj, stats = run_nmpc(study)
    assert stats["cached"]  # the run the study made
    np.testing.assert_array_equal(traj.seeds, validation_seeds(1))
    with pytest.raises(ValueError, match="horizons"):
        horizon_study([], ["grade_down"])
    with pytest.raises(ValueError, match="horizons"):
        horizon_study([0], ["grade_down"])


def test_optimality_score_anchors_and_errors():
    np.testing.assert_allclose(
        optimality_score([-10.0, -5.0, -1.0], [-10.0, -10.0, -10.0], [-5.0, -5.0, -5.0]),
        [0.0, 100.0, 180.0],
    )
    with pytest.raises(ValueError, match="shapes"):
        optimality_score([1.0], [1.0, 2.0], [3.0])
    with pytest.raises(ValueError, match="does not beat"):
        optimality_score([1.0, 1.0], [0.0, -1.0], [2.0, -2.0])


def test_add_optimality_and_summary_column():
    metrics = pd.DataFrame(
        {
            "return": [-8.0, -6.0, -1.0],
            "normalised_reward": [1.0, 2.0, 3.0],
            "violations": [0, 0, 0],
            "offset": [0.0, 0.0, 0.0],
            "settling_h": [1.0, 1.0, np.inf],
        }
    )
    refs = pd.DataFrame(
        {"hold": [-10.0, -10.0], "oracle": [-6.0, -2.0]}, index=pd.Index([11, 12], name="seed")
    )
    out = add_optimality(metrics, np.array([12, 11, 13]), refs)
    np.testing.assert_allclose(out["optimality"].to_numpy()[:2], [25.0, 100.0])
    assert np.isnan(out["optimality"].iloc[2]) and "optimality" not in metrics
    table = summary_table({"A": out, "B": metrics})
    assert table.loc["A", "optimality"] == pytest.approx(62.5)
    assert np.isnan(table.loc["B", "optimality"])
    assert "optimality" not in summary_table({"B": metrics}).columns
    with pytest.raises(ValueError, match="one seed per row"):
        add_optimality(metrics, np.array([1, 2]), refs)


def test_optimality_references_replay_the_oracle_seeds():
    seeds = eval_seeds(2)
    oracle = rollout(PIController(GainRanges().nominal()), "grade_down", seeds, steps=5)
    refs = optimality_references(oracle)
    hold = rollout(hold_policy, "grade_down", seeds, steps=5)
    assert list(refs.index) == list(seeds)
    np.testing.assert_array_equal(refs["hold"].to_numpy(), hold.returns)
    np.testing.assert_array_equal(refs["oracle"].to_numpy(), oracle.returns)


def test_cli_default_horizon_is_the_config_default():
    from polycstr_lib.__main__ import NMPC_HORIZON

    assert NMPC_HORIZON == NMPCConfig().horizon


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate", "--policy", "mpc"], "invalid choice"),
        (["evaluate", "--policy", "nmpc", "--horizon", "0"], "positive integer"),
    ],
)
def test_cli_rejects_bad_nmpc_arguments(argv, message, capsys):
    from polycstr_lib.__main__ import build_parser

    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_evaluates_nmpc_against_pi(minari_store, tmp_path, monkeypatch, capsys):
    from polycstr_lib.__main__ import main

    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path))
    argv = ["evaluate", "--policy", "nmpc", "--scenario", "grade_down"]
    assert main([*argv, "--episodes", "1", "--horizon", "4"]) == 0
    out = capsys.readouterr().out
    assert "NMPC (oracle)" in out and "PI" in out and "optimality" in out
    assert "solved: horizon 4" in out and "p95" in out
    assert main([*argv, "--episodes", "1", "--horizon", "4"]) == 0
    assert "cached: horizon 4" in capsys.readouterr().out


def test_oracle_gaps_per_scenario():
    from polycstr_lib.analysis.claims import oracle_gaps

    page = {"NMPC_mean": 110.0, "PI_mean": 90.0, "PI_optimality": 80.0, "IQL_mean": 100.0}
    page["IQL_optimality"] = 95.0
    old_page = {"PI_mean": 10.0}  # a results page built before the oracle existed
    table = oracle_gaps({"startup": page, "grade_up": old_page})
    assert list(table.index) == ["PI", "IQL"]
    assert table.loc["PI", ("startup", "gap")] == pytest.approx(20.0)
    assert table.loc["IQL", ("startup", "optimality")] == pytest.approx(95.0)
    assert "grade_up" not in table.columns.get_level_values("scenario")
    assert oracle_gaps({"grade_up": old_page}).empty


def test_profile_overrides_name_real_parameters():
    """Every override of the paper profile (the NMPC ones included) is a notebook parameter."""
    from polycstr_lib.book.profiles import NOTEBOOK_DIR, PROFILES
    from polycstr_lib.book.provenance import notebook_parameters

    for notebook, overrides in PROFILES["paper"].items():
        params = {
            row["name"]: row for row in notebook_parameters(NOTEBOOK_DIR / f"{notebook}.ipynb")
        }
        for name, value in overrides.items():
            assert name in params, f"{notebook} has no parameter {name!r}"
            assert type(value) is type(params[name]["default"]), (notebook, name)
            assert params[name]["comment"], f"{notebook}.{name} has no comment"
    assert (
        PROFILES["paper"]["05_results"]["nmpc_episodes"]
        <= (PROFILES["paper"]["05_results"]["test_episodes"])
    )


def test_episodes_split_over_processes_give_the_same_trajectories(tmp_path, monkeypatch):
    """Each episode has its own warm start and integrator: two processes, the same bits."""
    from polycstr_lib.reactor.nmpc import nmpc_processes
    from polycstr_lib.toolkit.ledger import LEDGER_ENV, read_ledger

    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path / "store"))
    monkeypatch.setenv(LEDGER_ENV, str(tmp_path / "tasks.jsonl"))
    run = NMPCRun("grade_up", 2, steps=200, nmpc=NMPCConfig(horizon=2), split="validation")
    assert nmpc_processes(run, 2) == 2 and nmpc_processes(run, 1) == 1
    assert nmpc_processes(NMPCRun("grade_up", 3, steps=150), 4) == 3
    assert nmpc_processes(NMPCRun("grade_up", 1), 4) == 1  # one episode: no process started
    assert nmpc_processes(NMPCRun("grade_up", 3, steps=60), 4) == 1  # under two episodes' work
    with pytest.raises(ValueError, match="processes"):
        nmpc_processes(run, 0)
    alone, _ = run_nmpc(run, processes=1)
    split, stats = run_nmpc(run, force=True, processes=2)
    for name in ("seeds", "states", "actions", "rewards", "inputs", "observations"):
        np.testing.assert_array_equal(getattr(split, name), getattr(alone, name), err_msg=name)
    assert len(stats["solve_seconds"]) == len(stats["iterations"]) == 2 * 200
    records = read_ledger(tmp_path / "tasks.jsonl")
    assert [r["kind"] for r in records if r["within"] is None] == ["nmpc", "nmpc"]
