"""The Gymnasium contract of PolyCSTR-v0 and of the vector env."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import polycstr_lib  # noqa: F401  (registers PolyCSTR-v0)
from polycstr_lib.reactor.env import (
    ACTION_SCALE,
    EPISODE_STEPS,
    PolyCSTREnv,
    PolyCSTRVectorEnv,
)

SCENARIOS = ["startup", "grade_down", "grade_up"]


def run(env, seed, actions):
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for a in actions:
        obs, *_ = env.step(a)
        out.append(obs)
    return np.array(out)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_check_env_passes_without_warnings(scenario):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make("PolyCSTR-v0", scenario=scenario)
        check_env(env.unwrapped, skip_render_check=True)


def test_unknown_scenario_lists_valid_ones():
    with pytest.raises(ValueError, match="startup.*grade_down.*grade_up"):
        gym.make("PolyCSTR-v0", scenario="shutdown")


def test_seeding_is_reproducible_and_leaves_global_rngs_alone():
    actions = np.random.default_rng(1).uniform(-1, 1, (10, 2))
    np_state = np.random.get_state()[1].copy()  # noqa: NPY002  (checking the legacy global RNG)
    a = run(PolyCSTREnv("startup"), 3, actions)
    b = run(PolyCSTREnv("startup"), 3, actions)
    c = run(PolyCSTREnv("startup"), 4, actions)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(np.random.get_state()[1], np_state)  # noqa: NPY002


def test_out_of_bounds_action_acts_like_the_bound():
    big = run(PolyCSTREnv("grade_up"), 0, [np.array([7.0, -3.0])] * 3)
    bound = run(PolyCSTREnv("grade_up"), 0, [np.array([1.0, -1.0])] * 3)
    np.testing.assert_array_equal(big, bound)


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (np.array([np.nan, 0.0]), "finite"),
        (np.array([np.inf, 0.0]), "finite"),
        (np.zeros(3), "shape"),
        (np.zeros((1, 2)), "shape"),
        ("left", "numeric"),
    ],
)
def test_bad_actions_raise_value_error(action, message):
    env = PolyCSTREnv("startup")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step(action)


def test_callers_action_is_not_modified():
    env = PolyCSTREnv("startup")
    env.reset(seed=0)
    action = np.array([5.0, -5.0], dtype=np.float32)
    env.step(action)
    np.testing.assert_array_equal(action, [5.0, -5.0])


def test_episode_truncates_after_200_steps_and_info_is_complete():
    env = gym.make("PolyCSTR-v0", scenario="grade_down")
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == (9,)
    for t in range(EPISODE_STEPS):
        obs, reward, terminated, truncated, info = env.step(np.zeros(2))
        assert not terminated
        assert truncated == (t == EPISODE_STEPS - 1)
    assert info["state"].dtype == np.float64 and info["state"].shape == (5,)
    assert info["inputs"].dtype == np.float64 and info["inputs"].shape == (2,)
    e_p, e_t = info["setpoint"] - info["state"][[3, 4]]
    assert reward == pytest.approx(-(e_p**2 + e_t**2))
    assert info["cost"] == pytest.approx(abs(e_p) + abs(e_t))
    assert isinstance(info["constraint_violation"], bool)
    np.testing.assert_allclose(obs[5:7], [e_p, e_t], rtol=1e-6)


def test_action_moves_inputs_by_the_scale_and_clips_at_bounds():
    env = PolyCSTREnv("startup")
    _, info0 = env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([1.0, -0.5]))
    np.testing.assert_allclose(info["inputs"] - info0["inputs"], ACTION_SCALE * [1.0, -0.5])
    for _ in range(5):
        _, _, _, _, info = env.step(np.array([1.0, 1.0]))
    np.testing.assert_array_equal(info["inputs"], [2.5, 350.0])


def test_hot_reactor_counts_a_violation_but_continues():
    env = PolyCSTREnv("grade_down")
    env.reset(seed=0)
    violations = []
    for _ in range(40):
        _, _, terminated, truncated, info = env.step(np.array([1.0, 1.0]))
        violations.append(info["constraint_violation"])
        assert not terminated and not truncated
    assert any(violations)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_vector_env_equals_single_envs(scenario):
    n = 4
    rng = np.random.default_rng(2)
    actions = rng.uniform(-1.2, 1.2, (12, n, 2))
    venv = PolyCSTRVectorEnv(n, scenario)
    obs, _ = venv.reset(seed=10)
    vec = [obs]
    for a in actions:
        obs, *_ = venv.step(a)
        vec.append(obs)
    vec = np.array(vec)
    for i in range(n):
        single = run(PolyCSTREnv(scenario), 10 + i, actions[:, i])
        np.testing.assert_array_equal(vec[:, i], single)


def test_vector_env_autoresets_on_the_next_step():
    venv = PolyCSTRVectorEnv(2, "grade_up")
    first, _ = venv.reset(seed=0)
    for _ in range(EPISODE_STEPS - 1):
        venv.step(np.zeros((2, 2)))
    _, _, term, trunc, _ = venv.step(np.zeros((2, 2)))
    assert trunc.all() and not term.any()
    obs, reward, _, trunc, _ = venv.step(np.ones((2, 2)))
    assert not trunc.any()
    np.testing.assert_array_equal(reward, 0.0)
    assert not np.array_equal(obs, first)  # generators moved on: new initial states


def test_vector_env_rejects_bad_actions():
    venv = PolyCSTRVectorEnv(3, "startup")
    venv.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        venv.step(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="finite"):
        venv.step(np.full((3, 2), np.nan))
