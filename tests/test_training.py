"""Tests of the training loop, its cache, seed ensembles, snapshots and the Dask runner."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_agents import make_tiny_data

from polycstr_lib.agents import BC, BCConfig, CQLConfig, IQLConfig
from polycstr_lib.agents.config import TrainConfig
from polycstr_lib.agents.data import data_fingerprint, validate_offline_data
from polycstr_lib.agents.runs import (
    load_trained,
    run_directory,
    train_agent,
    train_ensemble,
)
from polycstr_lib.agents.sweeps import plan_tasks, train_many
from polycstr_lib.toolkit import store as artifacts
from polycstr_lib.toolkit.cache import CacheWarning
from polycstr_lib.toolkit.store import (
    artifact_dir,
    atomic_torch_save,
    atomic_write_bytes,
    config_key,
)

torch.set_num_threads(1)

SMALL = {
    "bc": BCConfig(hidden_dims=(32, 32)),
    "iql": IQLConfig(hidden_dims=(32, 32)),
    "cql": CQLConfig(hidden_dims=(32, 32), n_action_samples=4),
}


def tiny_config(name: str = "bc", seed: int = 0, steps: int = 6) -> TrainConfig:
    return TrainConfig(
        algorithm=name,
        scenario="startup",
        steps=steps,
        seed=seed,
        batch_size=16,
        agent=SMALL[name],
        log_interval=3,
    )


@pytest.fixture(autouse=True)
def tmp_artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path / "artifacts"))
    return tmp_path / "artifacts"


@pytest.fixture(scope="module")
def data():
    return make_tiny_data()


def weights(agent) -> dict[str, torch.Tensor]:
    return {
        f"{m}.{k}": v for m, mod in agent.modules().items() for k, v in mod.state_dict().items()
    }


def assert_same_weights(a, b) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


# --- training and cache ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bc", "iql", "cql"])
def test_train_agent_trains_logs_and_saves(name: str, data, tmp_artifacts: Path) -> None:
    agent, log = train_agent(tiny_config(name), data=data, progress=False)
    assert list(log["step"]) == [3, 6]
    assert "time_s" in log.columns and np.isfinite(log.drop(columns="step").to_numpy()).all()
    assert log.attrs["cached"] is False
    run_dir = Path(log.attrs["run_dir"])
    assert run_dir.parent == tmp_artifacts / "agents"
    assert run_dir.name.startswith(f"{name}-startup-")
    assert sorted(p.name for p in run_dir.iterdir()) == ["agent.pt", "log.csv", "manifest.json"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["config"]["config"]["agent"]["hidden_dims"] == [32, 32]
    assert manifest["config"]["data"] == data_fingerprint(data)
    assert log.attrs["meta"]["data_fingerprint"] == data_fingerprint(data)
    assert set(manifest["files"]) == {"agent.pt", "log.csv"}
    actions = agent.act(data.observations.numpy())
    assert actions.dtype == np.float32 and np.all(np.abs(actions) <= 1)


@pytest.fixture
def bc_updates(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts BC gradient steps: ``calls["n"]``."""
    calls = {"n": 0}
    original = BC.update

    def counting_update(self, batch):
        calls["n"] += 1
        return original(self, batch)

    monkeypatch.setattr(BC, "update", counting_update)
    return calls


def test_second_call_loads_instead_of_training(data, bc_updates) -> None:
    calls = bc_updates
    config = tiny_config("bc")
    agent1, log1 = train_agent(config, data=data, progress=False)
    assert calls["n"] == 6
    mtime = (Path(log1.attrs["run_dir"]) / "agent.pt").stat().st_mtime_ns
    agent2, log2 = train_agent(config, data=data, progress=False)
    assert calls["n"] == 6  # no gradient step the second time
    assert log2.attrs["cached"] is True
    assert (Path(log2.attrs["run_dir"]) / "agent.pt").stat().st_mtime_ns == mtime
    assert_same_weights(agent1, agent2)
    np.testing.assert_allclose(log2.to_numpy(), log1.to_numpy())
    # force=True retrains; other data is another run, kept beside the first.
    train_agent(config, data=data, progress=False, force=True)
    assert calls["n"] == 12
    _, other = train_agent(config, data=make_tiny_data(seed=1), progress=False)
    assert calls["n"] == 18 and other.attrs["cached"] is False
    assert other.attrs["run_dir"] != log1.attrs["run_dir"]
    _, back = train_agent(config, data=data, progress=False)
    assert calls["n"] == 18 and back.attrs["cached"] is True


def test_cache_key_depends_on_config_and_data() -> None:
    a = run_directory(tiny_config("iql"), "d1")
    assert a == run_directory(dataclasses.replace(tiny_config("iql")), "d1")
    assert a != run_directory(tiny_config("iql", seed=1), "d1")
    assert a != run_directory(tiny_config("iql", steps=7), "d1")
    assert a != run_directory(tiny_config("iql"), "d2")
    # None means the default agent config: same key as spelling the defaults out.
    default = TrainConfig(algorithm="iql")
    same_default = dataclasses.replace(default, agent=IQLConfig())
    assert run_directory(default, "d1") == run_directory(same_default, "d1")
    with pytest.raises(ValueError, match="fingerprint of its training data"):
        run_directory(default, None)  # type: ignore[arg-type]


def test_snapshot_steps_beyond_the_budget_are_refused(data) -> None:
    with pytest.raises(ValueError, match=r"snapshot steps \[9\] are beyond .* 6 steps"):
        train_ensemble([tiny_config("bc")], data=data, progress=False, snapshot_steps=[3, 9])
    with pytest.raises(ValueError, match="beyond the training budget"):
        train_many([tiny_config("bc")], processes=1, data={"startup": data}, snapshot_steps=[7])


@pytest.mark.parametrize("name", ["bc", "iql", "cql"])
def test_same_seed_gives_bit_identical_weights(name: str, data) -> None:
    a, log_a = train_agent(tiny_config(name, seed=3), data=data, progress=False)
    b, log_b = train_agent(tiny_config(name, seed=3), data=data, progress=False, force=True)
    assert log_b.attrs["cached"] is False
    assert_same_weights(a, b)
    c, _ = train_agent(tiny_config(name, seed=4), data=data, progress=False)
    assert not all(
        torch.equal(x, y) for x, y in zip(weights(a).values(), weights(c).values(), strict=True)
    )


def test_training_leaves_global_rng_and_threads_untouched(data) -> None:
    torch.manual_seed(123)
    np_state = np.random.get_state()  # noqa: NPY002 (the legacy global RNG is what we check)
    torch_state = torch.get_rng_state()
    threads = torch.get_num_threads()
    train_agent(tiny_config("cql"), data=data, progress=False, num_threads=2)
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()  # noqa: NPY002
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1])
    assert after[2:] == np_state[2:]
    assert torch.get_num_threads() == threads


# --- bad input -------------------------------------------------------------------------------


def test_wrong_observation_size_is_rejected(data) -> None:
    bad = dataclasses.replace(
        data,
        observations=data.observations[:, :8].contiguous(),
        next_observations=data.next_observations[:, :8].contiguous(),
    )
    with pytest.raises(ValueError, match=r"observations must have shape \(N, 9\); got \(64, 8\)"):
        train_agent(tiny_config(), data=bad, progress=False)


@pytest.mark.parametrize("field", ["observations", "rewards", "actions", "next_observations"])
def test_nan_in_data_is_rejected(data, field: str) -> None:
    values = getattr(data, field).clone()
    values.view(-1)[5] = float("nan")
    bad = dataclasses.replace(data, **{field: values})
    with pytest.raises(ValueError, match=f"{field} contain 1 non-finite"):
        train_agent(tiny_config(), data=bad, progress=False)


def test_other_malformed_data_is_rejected(data) -> None:
    with pytest.raises(ValueError, match="actions must lie in"):
        validate_offline_data(dataclasses.replace(data, actions=data.actions * 3))
    with pytest.raises(ValueError, match=r"rewards must have shape \(64,\)"):
        validate_offline_data(dataclasses.replace(data, rewards=data.rewards[:10]))
    with pytest.raises(ValueError, match="unknown algorithm"):
        train_agent(dataclasses.replace(tiny_config(), algorithm="ppo", agent=None), data=data)
    with pytest.raises(TypeError, match="BCConfig"):
        train_agent(dataclasses.replace(tiny_config(), agent=IQLConfig()), data=data)


# --- artifact helpers ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _KeyProbe:
    b: int = 2  # field order must not matter (keys are sorted)
    a: tuple[int, ...] = (1, 2)
    c: float = 0.5


def test_config_key_is_stable_and_short() -> None:
    key = config_key(_KeyProbe())
    assert len(key) == 12 and all(ch in "0123456789abcdef" for ch in key)
    assert key == config_key(_KeyProbe())
    assert key != config_key(_KeyProbe(c=0.25))
    # Pinned: a change of this value invalidates every cached artifact.
    assert key == "9e3d5fb2f317"


def test_artifact_dir_follows_environment(tmp_artifacts: Path, monkeypatch) -> None:
    assert artifact_dir() == tmp_artifacts and tmp_artifacts.is_dir()
    monkeypatch.delenv("POLYCSTR_ARTIFACTS")
    assert artifact_dir() == Path(artifacts.__file__).resolve().parents[2] / "artifacts"


def test_atomic_write_leaves_no_temp_file_on_error(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "out" / "file.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert sorted(os.listdir(target.parent)) == ["file.bin"]
    assert target.read_bytes() == b"old"

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(artifacts.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_torch_save({"x": torch.ones(3)}, target)
    assert sorted(os.listdir(target.parent)) == ["file.bin"]
    assert target.read_bytes() == b"old"


# --- two processes ---------------------------------------------------------------------------


def test_train_many_on_a_two_worker_local_cluster(data, monkeypatch) -> None:
    """A small sweep on Dask's LocalCluster: two ensembles (bc seeds 0-1, iql seed 1)."""
    from polycstr_lib.agents import sweeps

    monkeypatch.setattr(
        sweeps, "MIN_PARALLEL_SECONDS", 0.0
    )  # tiny runs, on the cluster all the same
    configs = [
        tiny_config("bc", seed=0),
        tiny_config("iql", seed=1),
        tiny_config("bc", seed=0),
        tiny_config("bc", seed=1),
    ]
    results = train_many(configs, processes=2, data={"startup": data}, progress=False)
    assert len(results) == 4
    assert not any(log.attrs["cached"] for _, log in results)  # trained by the workers
    assert results[1][1].attrs["meta"]["ensemble_seeds"] == [1]
    assert_same_weights(results[0][0], results[2][0])
    again = train_many(configs, processes=2, data={"startup": data}, progress=False)
    assert all(log.attrs["cached"] for _, log in again)  # nothing left to train
    single, _ = train_agent(configs[1], data=data, progress=False, force=True)
    assert_same_weights(results[1][0], single)


def test_train_many_uses_an_existing_scheduler(data, tmp_artifacts: Path) -> None:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        (result,) = train_many(
            [tiny_config("bc", seed=3)],
            data={"startup": data},
            scheduler=cluster.scheduler_address,
            progress=False,
        )
    assert result[1].attrs["cached"] is False
    assert Path(result[1].attrs["run_dir"]).parent.parent == tmp_artifacts.resolve()


def test_plan_groups_seeds_into_ensembles_and_splits_for_workers(data) -> None:
    configs = [tiny_config("iql", seed=s) for s in range(4)] + [tiny_config("bc", seed=0)]
    one = plan_tasks(configs, {"startup": data}, workers=1)
    assert sorted(len(t.seeds) for t in one) == [1, 4]
    three = plan_tasks(configs, {"startup": data}, workers=3)
    assert sorted(len(t.seeds) for t in three) == [1, 2, 2]
    assert three[0].cost >= three[-1].cost  # costliest first
    assert sorted(s for t in three if t.configs[0].algorithm == "iql" for s in t.seeds) == [
        0,
        1,
        2,
        3,
    ]


def test_plan_caps_ensembles_below_the_mmap_threshold(data) -> None:
    """A 2x256 CQL member's critic activations take 8 MB (256 states x 31 actions x 256 units),
    so four fit below 32 MiB; a 2x256 IQL member's largest takes 256 KB."""
    from polycstr_lib.agents.sweeps import max_members

    cql = TrainConfig(algorithm="cql", scenario="startup", steps=5, seed=0)
    iql = TrainConfig(algorithm="iql", scenario="startup", steps=5, seed=0)
    assert max_members(cql) == 4 and max_members(iql) == 128
    configs = [dataclasses.replace(cql, seed=s) for s in range(10)]
    tasks = plan_tasks(configs, {"startup": data}, workers=1)
    assert sorted(t.seeds for t in tasks) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_plan_keeps_an_interrupted_ensemble_whole(data, monkeypatch) -> None:
    """An ensemble with a resume state is not split for idle workers: it continues."""
    import polycstr_lib.agents.loop as loop

    configs = [tiny_config("iql", seed=s, steps=9) for s in range(4)]
    monkeypatch.setattr(loop, "RESUME_EVERY_S", 0.0)
    interrupt_at_step(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        train_ensemble(configs, data=data, progress=False)
    tasks = plan_tasks(configs, {"startup": data}, workers=2)
    assert [t.seeds for t in tasks] == [[0, 1, 2, 3]]
    forced = plan_tasks(configs, {"startup": data}, workers=2, force=True)
    assert sorted(t.seeds for t in forced) == [[0, 1], [2, 3]]


def test_train_many_rejects_bad_arguments(data) -> None:
    with pytest.raises(ValueError, match="processes"):
        train_many([tiny_config()], processes=0, data={"startup": data})
    with pytest.raises(ValueError, match="snapshot"):
        train_many([tiny_config()], data={"startup": data}, snapshot_steps=[0])
    with pytest.raises(ValueError, match="differ only in seed"):
        train_ensemble([tiny_config("bc"), tiny_config("iql")], data=data)


@pytest.mark.parametrize("name", ["bc", "iql", "cql"])
def test_snapshot_equals_the_shorter_run(name: str, data, tmp_artifacts: Path) -> None:
    """The 4-step snapshot of an 8-step ensemble run is the 4-step run of each seed."""
    long = [tiny_config(name, seed=s, steps=8) for s in (0, 1)]
    train_ensemble(long, data=data, progress=False, snapshot_steps=[4])
    fingerprint = data_fingerprint(data)
    snapshots = [
        load_trained(run_directory(tiny_config(name, seed=s, steps=4), fingerprint)) for s in (0, 1)
    ]
    for s, (agent, log) in zip((0, 1), snapshots, strict=True):
        assert log.attrs["meta"]["ensemble_seeds"] == [0, 1]
        assert list(log["step"]) == [3, 4]  # the partial last interval, as a 4-step run logs
        short_config = tiny_config(name, seed=s, steps=4)
        alone, alone_log = train_ensemble(
            [short_config, dataclasses.replace(short_config, seed=1 - s)],
            data=data,
            progress=False,
            force=True,
        )[0]
        assert_same_weights(agent, alone)
        np.testing.assert_array_equal(
            log.drop(columns="time_s").to_numpy(), alone_log.drop(columns="time_s").to_numpy()
        )


def test_ensemble_of_different_budgets_trains_once(data, bc_updates) -> None:
    calls = bc_updates
    configs = [tiny_config("bc", seed=0, steps=3), tiny_config("bc", seed=1, steps=6)]
    results = train_ensemble(configs, data=data, progress=False)
    assert calls["n"] == 6  # one batched model, trained to the largest budget
    assert [len(log) for _, log in results] == [1, 2]
    # Member 0's 3-step state is the 3-step run trained alone, bit for bit.
    alone, _ = train_agent(configs[0], data=data, progress=False, force=True)
    assert_same_weights(results[0][0], alone)


def test_old_format_runs_are_retrained(data) -> None:
    config = tiny_config("bc")
    _, log = train_agent(config, data=data, progress=False)
    meta_path = Path(log.attrs["run_dir"]) / "manifest.json"
    meta = json.loads(meta_path.read_text())
    meta["info"]["agent_format"] = 1
    meta_path.write_text(json.dumps(meta))
    _, log2 = train_agent(config, data=data, progress=False)
    assert log2.attrs["cached"] is False


# --- mixed precision -------------------------------------------------------------------------


def test_unknown_precision_is_rejected() -> None:
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="float16").resolved()


@pytest.mark.parametrize("name", ["bc", "iql", "cql"])
def test_bfloat16_training_is_seeded_and_differs_from_float32(name: str, data) -> None:
    bf16 = dataclasses.replace(tiny_config(name, seed=2), precision="bfloat16")
    assert run_directory(bf16, "d") != run_directory(tiny_config(name, seed=2), "d")
    a, log = train_agent(bf16, data=data, progress=False)
    b, _ = train_agent(bf16, data=data, progress=False, force=True)
    assert_same_weights(a, b)
    # The weights stay float32 and the losses finite; the bf16 matmuls change the result.
    assert all(w.dtype == torch.float32 for w in weights(a).values())
    assert np.isfinite(log.drop(columns=["step", "time_s"]).to_numpy()).all()
    c, _ = train_agent(tiny_config(name, seed=2), data=data, progress=False)
    assert not all(
        torch.equal(x, y) for x, y in zip(weights(a).values(), weights(c).values(), strict=True)
    )
    # Evaluation runs outside autocast: actions are float32.
    assert a.act(data.observations[:4].numpy()).dtype == np.float32


def test_precision_context_autocasts_only_for_bfloat16() -> None:
    from polycstr_lib.agents.config import precision_context

    x = torch.ones(2, 2)
    with precision_context("float32"):
        assert (x @ x).dtype == torch.float32
    with precision_context("bfloat16"):
        assert (x @ x).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        precision_context("float16")


def test_generous_malloc_stops_the_page_fault_churn_of_dask_workers():
    """Under Dask's MALLOC_TRIM_THRESHOLD_ every 4 MiB tensor is freshly mapped (1,024 page
    faults each); after generous_malloc the freed memory is reused."""
    import os
    import subprocess
    import sys

    code = (
        "import resource, torch\n"
        "from polycstr_lib.agents.sweeps import generous_malloc\n"
        "def faults():\n"
        "    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "    for _ in range(50):\n"
        "        x = torch.ones(1 << 20)\n"
        "        del x\n"
        "    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before\n"
        "churn = faults()\n"
        "applied = generous_malloc()\n"
        "faults()\n"
        "print(churn, int(applied), faults())\n"
    )
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    churn, applied, kept = map(int, out.stdout.split())
    assert applied == 1
    assert churn > 50 * 500  # about 1,024 faults per tensor
    assert kept < 50 * 10


# --- resuming an interrupted ensemble ---------------------------------------------------------


def saved_step(state: Path) -> int:
    """The step of a resume or continuation state, loaded as training loads it (verified,
    ``weights_only``)."""
    import polycstr_lib.agents.loop as loop

    loaded = loop._load_resume(state, [0, 1], 10**9)
    assert loaded is not None
    return loaded["step"]


def interrupt_at_step(monkeypatch: pytest.MonkeyPatch, step: int) -> dict[str, int]:
    """Makes the training loop raise KeyboardInterrupt when it samples the batch of ``step``;
    returns the call counter (set it far below ``step`` to stop interrupting)."""
    import polycstr_lib.agents.loop as loop

    real = loop.sample_batch
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == step:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "sample_batch", interrupted)
    return calls


def train_until_interrupted(
    monkeypatch: pytest.MonkeyPatch, configs: list, data: Any, step: int, **kwargs: Any
) -> None:
    """Trains ``configs`` with a resume state written after every step, interrupted (Ctrl-C)
    when the batch of ``step`` is sampled; the loop's sampler is restored afterwards."""
    import polycstr_lib.agents.loop as loop

    monkeypatch.setattr(loop, "RESUME_EVERY_S", 0.0)
    real = loop.sample_batch
    interrupt_at_step(monkeypatch, step)
    with pytest.raises(KeyboardInterrupt):
        train_ensemble(configs, data=data, progress=False, **kwargs)
    monkeypatch.setattr(loop, "sample_batch", real)


@pytest.mark.parametrize("name", ["bc", "iql", "cql"])
def test_interrupted_ensemble_resumes_to_the_same_bits(
    name: str, data, tmp_artifacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An 11-step run stopped after step 7 and called again continues from its state after
    step 7 and ends with the weights and losses of an uninterrupted run."""
    import polycstr_lib.agents.loop as loop

    configs = [tiny_config(name, seed=s, steps=11) for s in (0, 1)]
    monkeypatch.setattr(loop, "RESUME_EVERY_S", 0.0)  # write the state after every step
    real = loop.sample_batch
    calls = interrupt_at_step(monkeypatch, 8)
    with pytest.raises(KeyboardInterrupt):
        train_ensemble(configs, data=data, progress=False, snapshot_steps=[4])
    fingerprint = data_fingerprint(data)
    state_file = loop.resume_path(configs[0], [0, 1], fingerprint)
    assert (state_file / "manifest.json").is_file()
    assert saved_step(state_file) == 7

    calls["n"] = -1000  # no more interruptions; count the steps of the second call
    resumed = train_ensemble(configs, data=data, progress=False, snapshot_steps=[4])
    assert calls["n"] == -1000 + 4  # steps 8 to 11 only
    assert not state_file.exists()  # removed once the budget is reached

    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_artifacts.parent / "fresh"))
    monkeypatch.setattr(loop, "sample_batch", real)
    straight = train_ensemble(configs, data=data, progress=False, snapshot_steps=[4])
    for (a, log_a), (b, log_b) in zip(resumed, straight, strict=True):
        assert_same_weights(a, b)
        losses = [c for c in log_a.columns if c != "time_s"]
        assert log_a[losses].equals(log_b[losses])


@pytest.mark.parametrize("name", ["bc", "iql"])
def test_a_longer_budget_continues_from_the_kept_final_state(
    name: str, data, tmp_artifacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finished 6-step ensemble keeps its state; asking the same seeds for 10 steps trains
    steps 7 to 10 only and gives the bits of a straight 10-step run. A shorter run later does
    not replace the kept state, and ``force`` removes it."""
    import polycstr_lib.agents.loop as loop

    short = [tiny_config(name, seed=s, steps=6) for s in (0, 1)]
    long = [tiny_config(name, seed=s, steps=10) for s in (0, 1)]
    train_ensemble(short, data=data, progress=False)
    kept = loop.continuation_path(loop.resume_path(short[0], [0, 1], data_fingerprint(data)))
    assert saved_step(kept) == 6
    calls = interrupt_at_step(monkeypatch, -1)  # counts sampled batches, never interrupts
    continued = train_ensemble(long, data=data, progress=False, snapshot_steps=[8])
    assert calls["n"] == 4
    assert saved_step(kept) == 10
    train_ensemble([tiny_config(name, seed=s, steps=3) for s in (0, 1)], data=data, progress=False)
    assert saved_step(kept) == 10

    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_artifacts.parent / "fresh"))
    straight = train_ensemble(long, data=data, progress=False, snapshot_steps=[8])
    for (a, log_a), (b, log_b) in zip(continued, straight, strict=True):
        assert_same_weights(a, b)
        losses = [c for c in log_a.columns if c != "time_s"]
        assert log_a[losses].equals(log_b[losses])
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_artifacts))
    calls["n"] = 0
    train_ensemble(short, data=data, progress=False, force=True)
    assert calls["n"] == 6 and saved_step(kept) == 6


def test_resume_state_is_ignored_when_a_shorter_run_is_asked_or_it_is_unreadable(
    data, tmp_artifacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import polycstr_lib.agents.loop as loop

    configs = [tiny_config("bc", seed=s, steps=9) for s in (0, 1)]
    state_file = loop.resume_path(configs[0], [0, 1], data_fingerprint(data))
    state_file.mkdir(parents=True)
    (state_file / "manifest.json").write_bytes(b"not a manifest")
    with pytest.warns(CacheWarning, match="manifest.json: unreadable"):
        train_ensemble(configs, data=data, progress=False)

    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_artifacts.parent / "fresh"))
    straight = train_ensemble(
        [tiny_config("bc", seed=s, steps=3) for s in (0, 1)], data=data, progress=False
    )
    # a state after 6 steps must not serve a 3-step run
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_artifacts.parent / "third"))
    train_until_interrupted(monkeypatch, configs, data, 7)
    short = train_ensemble(
        [tiny_config("bc", seed=s, steps=3) for s in (0, 1)], data=data, progress=False
    )
    for (a, _), (b, _) in zip(short, straight, strict=True):
        assert_same_weights(a, b)


def test_training_in_progress_reports_an_interrupted_ensemble(
    data, tmp_artifacts: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import polycstr_lib.agents.loop as loop
    from polycstr_lib.__main__ import main

    assert loop.training_in_progress().empty
    assert main(["progress"]) == 0
    assert "no training in progress" in capsys.readouterr().out
    configs = [tiny_config("bc", seed=s, steps=9) for s in (0, 1)]
    train_until_interrupted(monkeypatch, configs, data, 6)
    broken = tmp_artifacts / "resume" / "iql-grade_up-0123456789ab"
    broken.mkdir()
    (broken / "manifest.json").write_bytes(b"broken")
    with pytest.warns(UserWarning, match="unreadable resume state iql-grade_up"):
        table = loop.training_in_progress()
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["algorithm"], row["scenario"], row["seeds"]) == ("bc", configs[0].scenario, 2)
    assert (row["step"], row["budget"]) == (5, 9)
    assert row["eta_s"] == pytest.approx(4 / row["steps_per_s"])
    with pytest.warns(UserWarning):
        assert main(["progress"]) == 0
    out = capsys.readouterr().out
    assert f"bc {configs[0].scenario} (2 seeds)" in out and "5/9" in out


def test_ctrl_c_mid_step_finishes_the_step_writes_its_state_and_resumes_to_the_same_bits(
    data, tmp_artifacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real SIGINT during step 5 (no periodic state: RESUME_EVERY_S is large): the loop ends
    step 5, writes the state after it, raises KeyboardInterrupt naming the step, and the same
    call continues from there to the weights of an uninterrupted run."""
    import signal

    import polycstr_lib.agents.loop as loop

    configs = [tiny_config("iql", seed=s, steps=9) for s in (0, 1)]
    reference = train_ensemble(configs, data=data, progress=False)
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_artifacts / "interrupted"))
    monkeypatch.setattr(loop, "RESUME_EVERY_S", 1e9)
    real, calls = loop.sample_batch, {"n": 0}

    def sample(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C, in the middle of step 5
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "sample_batch", sample)
    # as in a terminal: a shell that started the tests in the background ignores SIGINT
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt, match="interrupted at step 5 of 9"):
            train_ensemble(configs, data=data, progress=False)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, previous)
    state = loop.resume_path(configs[0], [0, 1], data_fingerprint(data))
    assert json.loads((state / "manifest.json").read_text())["info"]["step"] == 5
    monkeypatch.setattr(loop, "sample_batch", real)
    resumed = train_ensemble(configs, data=data, progress=False)
    for (a, _), (b, _) in zip(resumed, reference, strict=True):
        assert_same_weights(a, b)


def test_where_sigint_is_ignored_training_leaves_it_ignored(data, monkeypatch) -> None:
    """A process started in the background ignores SIGINT: the loop installs no handler."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        train_ensemble([tiny_config("bc")], data=data, progress=False, force=True)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def deadline_at_step(monkeypatch: pytest.MonkeyPatch, step: int) -> dict[str, int]:
    """A deadline (``POLYCSTR_DEADLINE``) that the loop's clock passes during ``step``: the
    clock reads one second before it until the batch of ``step`` is sampled, and one second
    after from then on. Returns the counter of sampled batches."""
    import polycstr_lib.agents.loop as loop
    from polycstr_lib.toolkit import deadline as limit

    monkeypatch.setenv(limit.DEADLINE_ENV, "2030-01-01T00:00:00Z")
    moment = limit.parse_deadline("2030-01-01T00:00:00Z")
    real_sample, real_passed = loop.sample_batch, loop.deadline_passed
    calls = {"n": 0}

    def sample(*args, **kwargs):
        calls["n"] += 1
        return real_sample(*args, **kwargs)

    def passed(deadline):
        now = moment + (1.0 if calls["n"] >= step else -1.0)
        return real_passed(deadline, now=now)

    monkeypatch.setattr(loop, "sample_batch", sample)
    monkeypatch.setattr(loop, "deadline_passed", passed)
    return calls


def test_the_deadline_ends_the_step_writes_its_state_and_the_run_resumes_to_the_same_bits(
    data, tmp_artifacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deadline passes during step 5 of 9 (no periodic state): the loop ends step 5,
    writes the state after it and raises DeadlineReached naming the ensemble and the step, as
    Ctrl-C does; without the deadline the same call trains steps 6 to 9 only and ends with the
    weights and losses of an uninterrupted run."""
    import polycstr_lib.agents.loop as loop
    from polycstr_lib.toolkit.deadline import DeadlineReached

    configs = [tiny_config("iql", seed=s, steps=9) for s in (0, 1)]
    reference = train_ensemble(configs, data=data, progress=False, snapshot_steps=[4])
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_artifacts / "late"))
    monkeypatch.setattr(loop, "RESUME_EVERY_S", 1e9)
    calls = deadline_at_step(monkeypatch, 5)
    with pytest.raises(DeadlineReached, match=r"iql startup \(2 seeds\) stopped at step 5 of 9"):
        train_ensemble(configs, data=data, progress=False, snapshot_steps=[4])
    assert calls["n"] == 5
    state = loop.resume_path(configs[0], [0, 1], data_fingerprint(data))
    assert saved_step(state) == 5
    assert json.loads((state / "manifest.json").read_text())["info"]["budget"] == 9

    monkeypatch.delenv("POLYCSTR_DEADLINE")
    calls["n"] = 0
    resumed = train_ensemble(configs, data=data, progress=False, snapshot_steps=[4])
    assert calls["n"] == 4  # steps 6 to 9
    assert not state.exists()
    for (a, log_a), (b, log_b) in zip(resumed, reference, strict=True):
        assert_same_weights(a, b)
        losses = [c for c in log_a.columns if c != "time_s"]
        assert log_a[losses].equals(log_b[losses])


def test_a_deadline_passing_in_the_last_step_keeps_the_finished_run(
    data, monkeypatch: pytest.MonkeyPatch
) -> None:
    configs = [tiny_config("bc", seed=s, steps=6) for s in (0, 1)]
    calls = deadline_at_step(monkeypatch, 6)
    trained = train_ensemble(configs, data=data, progress=False)
    assert calls["n"] == 6 and len(trained) == 2
    assert all(log.attrs["cached"] is False for _, log in trained)
    calls["n"] = 0
    train_ensemble(configs, data=data, progress=False)
    assert calls["n"] == 0  # cached: nothing to resume


def test_a_deadline_that_is_not_a_time_stops_training_before_it_starts(
    data, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYCSTR_DEADLINE", "tomorrow")
    with pytest.raises(ValueError, match="deadline 'tomorrow' is not an ISO 8601 time"):
        train_ensemble([tiny_config("bc")], data=data, progress=False, force=True)


def test_on_dask_every_ensemble_past_the_deadline_stops_with_its_state_written(
    data, tmp_artifacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two ensembles queued on one Dask worker, the deadline already past: the first stops
    after its first step; the client still waits for the second, which stops there too, then
    raises DeadlineReached. The next call (no deadline) continues both to the bits of a
    straight run."""
    from distributed import LocalCluster

    import polycstr_lib.agents.loop as loop
    from polycstr_lib.toolkit.deadline import DeadlineReached

    configs = [tiny_config("bc", seed=0), tiny_config("iql", seed=1)]
    straight = train_many(configs, processes=1, data={"startup": data}, progress=False)
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_artifacts / "late"))
    monkeypatch.setenv("POLYCSTR_DEADLINE", "2000-01-01T00:00Z")
    real = loop.sample_batch

    def slow(*args, **kwargs):  # the second ensemble is still training when the first stops
        time.sleep(0.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "sample_batch", slow)
    fingerprint = data_fingerprint(data)
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        with pytest.raises(DeadlineReached, match="stopped at step 1 of 6"):
            train_many(
                configs,
                data={"startup": data},
                scheduler=cluster.scheduler_address,
                progress=False,
            )
        for config in configs:  # both written before train_many returned
            state = loop.resume_path(config, [config.seed], fingerprint)
            assert json.loads((state / "manifest.json").read_text())["info"]["step"] == 1
    monkeypatch.setattr(loop, "sample_batch", real)
    monkeypatch.delenv("POLYCSTR_DEADLINE")
    resumed = train_many(configs, processes=1, data={"startup": data}, progress=False)
    for (a, _), (b, _) in zip(resumed, straight, strict=True):
        assert_same_weights(a, b)


def test_a_dataset_is_read_once_per_process_until_its_files_change(minari_store, monkeypatch):
    import polycstr_lib.agents.data as agent_data
    import polycstr_lib.reactor.datasets as datasets
    from polycstr_lib.reactor.datasets import dataset_path

    reads = {"n": 0}
    original = datasets.load_offline_data

    def counting(scenario):
        reads["n"] += 1
        return original(scenario)

    monkeypatch.setattr(datasets, "load_offline_data", counting)
    monkeypatch.setattr(agent_data, "_LOADED", {})
    first = agent_data.load_training_data("grade_up")
    assert agent_data.load_training_data("grade_up") is first and reads["n"] == 1
    sidecar = next(p for p in dataset_path("grade_up").rglob("*.json"))
    os.utime(sidecar, ns=(sidecar.stat().st_atime_ns, sidecar.stat().st_mtime_ns + 10**9))
    assert agent_data.load_training_data("grade_up") is not first and reads["n"] == 2


def test_training_too_small_to_repay_a_cluster_stays_in_this_process(data, monkeypatch) -> None:
    from polycstr_lib.agents import sweeps

    tasks = sweeps.plan_tasks(
        [tiny_config("bc", seed=0).resolved(), tiny_config("iql", seed=1).resolved()],
        {"startup": data}, 2, False, (),
    )  # fmt: skip
    assert len(tasks) == 2 and sweeps.training_processes(tasks, 2) == 1
    monkeypatch.setattr(sweeps, "MIN_PARALLEL_SECONDS", 0.0)
    assert sweeps.training_processes(tasks, 2) == 2 and sweeps.training_processes(tasks, 1) == 1
    monkeypatch.setattr(sweeps, "_run_on_dask", lambda *a: pytest.fail("a cluster was started"))
    monkeypatch.setattr(sweeps, "MIN_PARALLEL_SECONDS", 1e9)
    results = sweeps.train_many(
        [tiny_config("bc", seed=0), tiny_config("iql", seed=1)], processes=2,
        data={"startup": data}, progress=False,
    )  # fmt: skip
    assert len(results) == 2 and not any(log.attrs["cached"] for _, log in results)
