"""PI controllers and the Minari datasets."""

import json
import os

import numpy as np
import pytest

from polycstr_lib.reactor.datasets import (
    DatasetConfig,
    DatasetError,
    data_seeds,
    dataset_id,
    dataset_path,
    ensure_dataset,
    episode_seeds,
    eval_seeds,
    generate_dataset,
    load_offline_data,
    load_trajectories,
    normalised_reward,
    validation_seeds,
    verify_dataset,
)
from polycstr_lib.reactor.env import ACTION_SCALE
from polycstr_lib.reactor.pi import GainRanges, PIController

SCENARIOS = ["startup", "grade_down", "grade_up"]


def test_pi_is_bumpless_and_rate_limited():
    obs = np.array([[440, 0, 0, 0, 350, 100.0, 0.0, 1.0, 345.0]])
    ctrl = PIController(np.array([[5e-3, 1.5e-6, 0.2, 5e-5]]))
    ctrl.reset(obs)
    action = ctrl.act(obs)
    # Kp e + Ki e dt = 0.5 + 0.27 kg/h wanted, the rate limit allows 0.5
    np.testing.assert_allclose(action, [[1.0, 0.0]])
    assert ctrl.rate_limited[0, 0]
    zero_error = obs.copy()
    zero_error[0, 5] = 0.0
    ctrl.reset(zero_error)
    np.testing.assert_allclose(ctrl.act(zero_error), 0.0)  # bumpless: no error, no move


def test_pi_conditional_integration_stops_windup():
    obs = np.array([[440, 0, 0, 0, 350, 50.0, 0.0, 2.5, 345.0]])  # feed already at its max
    ctrl = PIController(np.array([[1e-3, 1e-6, 0.1, 1e-5]]))
    ctrl.reset(obs)
    for _ in range(5):
        ctrl.act(obs)
    assert ctrl.integral[0, 0] == 0.0  # saturated high, error pushes higher: frozen
    assert ctrl.integral[0, 1] == 0.0  # zero temperature error integrates nothing
    obs[0, 5] = -10.0  # error reverses: integrate again
    ctrl.act(obs)
    assert ctrl.integral[0, 0] < 0.0


def test_gain_sampling_respects_ranges_and_rejects_bad_shapes():
    ranges = GainRanges()
    g = ranges.sample(np.random.default_rng(0), 1000)
    for j, (lo, hi) in enumerate(ranges._ranges()):
        assert lo <= g[:, j].min() and g[:, j].max() <= hi
    with pytest.raises(ValueError, match="shape"):
        PIController(np.zeros((2, 5)))


def test_data_and_eval_seeds_are_disjoint():
    data = set(data_seeds(DatasetConfig("startup", seed=0)).tolist())
    data |= set(data_seeds(DatasetConfig("startup", seed=7)).tolist())
    assert data.isdisjoint(eval_seeds(1000).tolist())


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_datasets_load_with_minari_and_as_tensors(minari_store, scenario):
    import minari
    import torch

    ds = minari.load_dataset(dataset_id(scenario))
    assert ds.total_episodes == 100 and ds.total_steps == 20000
    data = load_offline_data(scenario)
    assert data.observations.shape == (20000, 9) and data.observations.dtype == torch.float32
    assert data.observations.is_contiguous() and data.actions.is_contiguous()
    assert data.actions.abs().max() <= 1.0
    assert data.terminals.sum() == 0 and data.timeouts.sum() == 100
    # next_observations are the following observations within each episode
    torch.testing.assert_close(
        data.next_observations[:-1][data.timeouts[:-1] == 0],
        data.observations[1:][data.timeouts[:-1] == 0],
    )
    e_p, e_t = data.next_observations[:, 5].double(), data.next_observations[:, 6].double()
    torch.testing.assert_close(data.costs.double(), e_p.abs() + e_t.abs(), rtol=1e-5, atol=1e-3)
    traj, side = load_trajectories(scenario)
    assert side["return_min"] == pytest.approx(traj.returns.min())
    norm = normalised_reward(traj.returns, side["return_min"], side["return_max"])
    assert norm.min() == pytest.approx(0.0) and norm.max() == pytest.approx(100.0)
    assert np.array(side["pi_gains"]).shape == (100, 4)
    assert max(side["rate_limited_fraction"]) <= 0.01


def test_same_seed_gives_bit_identical_files(tmp_path, monkeypatch):
    files = []
    for name in ("a", "b"):
        monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / name))
        path = generate_dataset(DatasetConfig("grade_up", episodes=5))
        files.append((path / "data" / "main_data.hdf5").read_bytes())
    assert files[0] == files[1]
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "c"))
    path = generate_dataset(DatasetConfig("grade_up", episodes=5, seed=1))
    assert (path / "data" / "main_data.hdf5").read_bytes() != files[0]


def test_corrupted_file_is_named_and_regenerated(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    config = DatasetConfig("grade_down", episodes=4)
    path = generate_dataset(config)
    data_file = path / "data" / "main_data.hdf5"
    size = data_file.stat().st_size
    with open(data_file, "r+b") as fh:
        fh.truncate(size // 2)
    with pytest.raises(DatasetError, match="main_data.hdf5.*checksum"):
        load_offline_data("grade_down")
    with pytest.raises(DatasetError, match="exists"):
        generate_dataset(config)
    _, generated = ensure_dataset("grade_down", config=config)
    assert generated and data_file.stat().st_size == size
    verify_dataset("grade_down")
    _, generated = ensure_dataset("grade_down", config=config)
    assert not generated  # valid and same config: kept


def test_missing_and_garbled_sidecar_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    with pytest.raises(DatasetError, match="make data"):
        load_offline_data("startup")
    path = generate_dataset(DatasetConfig("startup", episodes=3))
    (path / "polycstr.json").write_text("{not json")
    with pytest.raises(DatasetError, match="polycstr.json"):
        verify_dataset("startup")


def test_interrupted_generation_leaves_no_partial_dataset(tmp_path, monkeypatch):
    import polycstr_lib.reactor.datasets as ds

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ds, "_sha256", boom)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(DatasetConfig("grade_up", episodes=2))
    assert not dataset_path("grade_up").exists()
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".staging")] == []
    assert os.environ["MINARI_DATASETS_PATH"] == str(tmp_path)


def test_sidecar_records_config_and_checksum(minari_store):
    side = json.loads((dataset_path("startup") / "polycstr.json").read_text())
    assert side["config"]["episodes"] == 100
    assert {"data/main_data.hdf5", "data/metadata.json"} <= set(side["files"])
    assert all(len(digest) == 64 for digest in side["files"].values())
    assert side["dataset_id"] == "polycstr/startup/pi-v0"
    assert np.isclose(ACTION_SCALE, [0.5, 5.0]).all()


def test_shared_pi_tuning_fits_any_batch_and_checks_sizes():
    obs = np.array([[440, 0, 0, 0, 350, 10.0, 1.0, 1.0, 345.0]] * 3)
    shared = PIController(GainRanges().nominal())
    shared.reset(obs)
    assert shared(obs).shape == (3, 2)
    per_episode = PIController(np.ones((2, 4)) * 1e-4)
    with pytest.raises(ValueError, match="3 observations for 2 controllers"):
        per_episode.reset(obs)


def test_validation_seeds_are_disjoint_from_data_and_test():
    from polycstr_lib.reactor.datasets import DatasetConfig, data_seeds

    validation = set(validation_seeds(100_000).tolist())
    test = set(eval_seeds(100_000).tolist())
    data = set(data_seeds(DatasetConfig("startup", episodes=1000, seed=998)).tolist())
    assert validation.isdisjoint(test) and validation.isdisjoint(data)
    assert np.array_equal(episode_seeds("validation", 5), validation_seeds(5))
    assert np.array_equal(episode_seeds("test", 5, 3), eval_seeds(5, 3))
    with pytest.raises(ValueError, match="unknown split"):
        episode_seeds("train", 5)
    with pytest.raises(ValueError, match="offset"):
        validation_seeds(5, offset=-1)


def _toy_trajectories(returns, peak_temperatures):
    """Episodes of one step whose returns and peak temperatures are given."""
    from polycstr_lib.reactor.rollout import Trajectories

    e = len(returns)
    states = np.full((e, 2, 5), 350.0)
    states[:, 1, 4] = peak_temperatures
    rewards = np.asarray(returns, dtype=np.float64)[:, None]
    return Trajectories(
        scenario="startup",
        seeds=np.arange(e),
        observations=np.zeros((e, 2, 9), np.float32),
        actions=np.zeros((e, 1, 2), np.float32),
        rewards=rewards,
        costs=-rewards,
        violations=np.zeros((e, 1), bool),
        states=states,
        inputs=np.zeros((e, 2, 2)),
        setpoints=np.zeros((e, 2)),
    )


def test_normalisation_reference_with_and_without_runaways():
    from polycstr_lib.reactor.datasets import normalisation_reference, reference_comparison

    traj = _toy_trajectories([-1000.0, -10.0, -30.0, -20.0], [500.0, 350.0, 360.0, 350.0])
    assert normalisation_reference(traj) == (-1000.0, -10.0)
    assert normalisation_reference(traj, exclude_runaways=True) == (-30.0, -10.0)
    cmp = reference_comparison(traj)
    assert cmp["runaways"] == 1
    assert cmp["stretch"] == pytest.approx(990.0 / 20.0)
    # without runaways the kept episodes span the full 0..100
    assert cmp["median_without"] == pytest.approx(np.median([-4900.0, 100.0, 0.0, 50.0]))
    calm = _toy_trajectories([-30.0, -10.0], [350.0, 350.0])
    assert reference_comparison(calm)["stretch"] == 1.0
    with pytest.raises(ValueError, match="every data episode runs away"):
        normalisation_reference(_toy_trajectories([-1.0], [600.0]), exclude_runaways=True)


@pytest.mark.parametrize(("seed", "episodes"), [(1499, 1), (1498, 1_000_001), (-1, 10)])
def test_a_dataset_config_that_reaches_evaluation_seeds_is_refused(seed, episodes) -> None:
    from polycstr_lib.reactor.datasets import DatasetConfig

    with pytest.raises(ValueError, match="would reuse validation or test episodes"):
        DatasetConfig("startup", episodes=episodes, seed=seed)
    assert DatasetConfig("startup", episodes=100, seed=1498).seed == 1498


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "pickle"])
@pytest.mark.parametrize("name", ["data/main_data.hdf5", "data/metadata.json"])
def test_every_dataset_file_is_checked(tmp_path, monkeypatch, damage, name):
    """Flipped, truncated, deleted or replaced (by a pickle that would write a file): named,
    never loaded, and made again to the same bits by ensure_dataset."""
    import pickle

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    config = DatasetConfig("grade_up", episodes=2)
    path = generate_dataset(config)
    target = path / name
    original = target.read_bytes()
    marker = tmp_path / "executed"
    if damage == "flip":
        data = bytearray(original)
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target.write_bytes(original[: len(original) // 2])
    elif damage == "delete":
        target.unlink()
    else:

        class Payload:
            def __reduce__(self):
                return (open, (str(marker), "w"))

        target.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(DatasetError, match=name.split("/")[-1]):
        load_offline_data("grade_up")
    assert not marker.exists()
    _, generated = ensure_dataset("grade_up", config=config)
    assert generated
    if name.endswith(".hdf5"):
        assert target.read_bytes() == original
    verify_dataset("grade_up")


def test_a_dataset_with_other_settings_is_refused_not_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    custom = DatasetConfig("grade_up", episodes=3, seed=4)
    path = generate_dataset(custom)
    before = (path / "data" / "main_data.hdf5").read_bytes()
    with pytest.raises(DatasetError, match="made with seed 4 and 3 episodes.*--regenerate"):
        ensure_dataset("grade_up", config=DatasetConfig("grade_up", episodes=2))
    assert (path / "data" / "main_data.hdf5").read_bytes() == before
    _, generated = ensure_dataset("grade_up", config=custom)
    assert not generated
    _, generated = ensure_dataset("grade_up", regenerate=True, config=DatasetConfig("grade_up", 2))
    assert generated
