"""Tests of the one cache helper (toolkit/cache.py) and of every store built on it: keys, the
manifest written last, the check on load, moving corrupt entries aside, invalidation, stale
temporary files, and fault injection (flipped bytes, truncation, a deleted file, a planted
pickle) into each of the seven kinds of entries: detected, nothing runs, rebuilt to the same
bits."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from test_agents import make_tiny_data
from test_correction_tuning import AGENTS, KW, MODELS, TASK
from test_cost_models import synthetic_data
from test_training import assert_same_weights, tiny_config, train_until_interrupted

from polycstr_lib.correction.task import CorrectionSetup
from polycstr_lib.toolkit import cache
from polycstr_lib.toolkit.cache import (
    MANIFEST,
    CacheWarning,
    array_fingerprint,
    entry_path,
    invalidate,
    load_entry,
    open_store,
    read_entry,
    remove_stale_tmp,
    write_entry,
)


@dataclasses.dataclass(frozen=True)
class Key:
    name: str
    size: int
    data: str = ""


@pytest.fixture(autouse=True)
def tmp_artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path / "artifacts"))
    return tmp_path / "artifacts"


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "algorithm": ["bc", "none", "None", "NA"],
            "seed": np.array([0, 1, 2, 3], dtype=np.int64),
            "eta": [0.1, 1e-6, 1 / 3, np.nan],
            "mean": [-1175.952644010989, -1441.6285445182689, np.inf, 2.0**-1074],
            "runaways": np.array([0, 1, 0, 2], dtype=np.int32),
            "x32": np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32),
            "ok": [True, False, True, False],
        }
    )


def entry(tmp_path: Path) -> Path:
    path = entry_path("things", Key("a", 1), "pre", tmp_path)
    files = {
        "w.pt": {"w": torch.arange(5.0), "n": 3, "rows": [{"k": torch.ones(2)}]},
        "log.json": {"history": [[1, 0.5, float("nan")]], "r2": 0.1 + 0.2},
        "table.csv": frame(),
        "arrays.npz": {"a": np.arange(6).reshape(2, 3), "b": np.array([1.5])},
        "raw.bin": b"\x00\x01raw",
    }
    write_entry(path, files, Key("a", 1), {"step": 7})
    return path


# --- the helper -------------------------------------------------------------------------------


def test_key_is_kind_prefix_and_config_hash(tmp_path: Path) -> None:
    a = entry_path("things", Key("a", 1), "pre", tmp_path)
    assert a.parent == tmp_path / "things" and a.name.startswith("pre-")
    assert a == entry_path("things", Key("a", 1), "pre", tmp_path)
    assert a != entry_path("things", Key("a", 2), "pre", tmp_path)
    assert a != entry_path("things", Key("a", 1, "data"), "pre", tmp_path)
    assert entry_path("others", Key("a", 1), "pre", tmp_path).parent.name == "others"
    fp = array_fingerprint({"x": np.arange(3.0)})
    assert fp == array_fingerprint([("x", np.arange(3.0))]) and len(fp) == 16
    assert fp != array_fingerprint({"x": np.arange(3.0, dtype=np.float32)})
    assert fp != array_fingerprint({"y": np.arange(3.0)})
    assert fp != array_fingerprint({"x": np.arange(3.0).reshape(3, 1)})


def test_write_then_read_round_trips_every_encoding(tmp_path: Path) -> None:
    path = entry(tmp_path)
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["format"] == cache.FORMAT and manifest["config"] == {
        "name": "a",
        "size": 1,
        "data": "",
    }
    assert set(manifest["files"]) == {"w.pt", "log.json", "table.csv", "arrays.npz", "raw.bin"}
    assert manifest["files"]["raw.bin"]["size"] == 5 and manifest["info"] == {"step": 7}
    got = read_entry(path, Key("a", 1))
    assert got is not None and got.info == {"step": 7}
    w = got.load("w.pt")
    assert torch.equal(w["w"], torch.arange(5.0)) and w["n"] == 3
    log = got.load("log.json")
    assert log["r2"] == 0.1 + 0.2 and np.isnan(log["history"][0][2])
    pd.testing.assert_frame_equal(got.load("table.csv"), frame(), check_exact=True)
    arrays = got.load("arrays.npz")
    np.testing.assert_array_equal(arrays["a"], np.arange(6).reshape(2, 3))
    assert got.load("raw.bin") == b"\x00\x01raw"
    # another configuration or format is not this entry (not corrupt: it is rebuilt over)
    assert read_entry(path, Key("a", 2)) is None and path.is_dir()
    manifest["format"] = cache.FORMAT - 1
    (path / MANIFEST).write_text(json.dumps(manifest))
    assert read_entry(path) is None and path.is_dir()


def test_an_entry_without_manifest_is_incomplete(tmp_path: Path) -> None:
    path = entry(tmp_path)
    (path / MANIFEST).unlink()
    assert read_entry(path) is None and path.is_dir()
    assert read_entry(tmp_path / "things" / "nothing") is None


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(b"X" + p.read_bytes()[1:]), "w.pt: sha256 mismatch"),
        (lambda p: p.write_bytes(p.read_bytes()[:10]), r"w.pt: truncated \(10 of"),
        (lambda p: p.unlink(), "w.pt: missing"),
        (lambda p: p.write_bytes(p.read_bytes() + b"!"), "w.pt: size mismatch"),
        (lambda p: (p.parent / MANIFEST).write_text("{no json"), "manifest.json: unreadable"),
    ],
)
def test_a_damaged_entry_is_moved_aside_with_one_warning(
    tmp_path: Path, damage: Callable[[Path], Any], message: str
) -> None:
    path = entry(tmp_path)
    damage(path / "w.pt")
    with pytest.warns(CacheWarning, match=message) as record:
        assert read_entry(path) is None
    assert len(record) == 1 and len(str(record[0].message).splitlines()) == 1
    assert not path.exists()
    (aside,) = [p for p in path.parent.iterdir() if p.name.startswith(f"{path.name}.corrupt-")]
    assert aside.is_dir()
    # the next write rebuilds the entry in its place
    entry(tmp_path)
    assert read_entry(path) is not None


def test_a_file_that_does_not_decode_is_refused_naming_it(tmp_path: Path) -> None:
    path = entry(tmp_path)
    marker = tmp_path / "pwned"
    forge(path / "w.pt", pickle_payload(marker))
    with pytest.warns(CacheWarning, match="w.pt: unreadable"):
        assert load_entry(path, lambda e: e.load("w.pt")) is None
    assert not marker.exists() and not path.exists()


def test_invalidate_removes_the_entry(tmp_path: Path) -> None:
    path = entry(tmp_path)
    assert invalidate(path) and not path.exists()
    assert not invalidate(path)


def test_stale_temporary_files_are_removed_when_the_store_opens(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = int(done.stdout)
    host = __import__("socket").gethostname()
    folder = tmp_path / "root" / "things" / "e"
    folder.mkdir(parents=True)
    killed = folder / f".agent.pt.{dead}@{host}.abcd1234.tmp"
    live = folder / f".agent.pt.{os.getpid()}@{host}.abcd1234.tmp"
    other_host = folder / f".agent.pt.{dead}@elsewhere.abcd1234.tmp"
    old = folder / ".agent.pt.ab12cd34.tmp"
    for p in (killed, live, other_host, old):
        p.write_bytes(b"partial")
    past = time.time() - 2 * cache.STALE_TMP_S
    os.utime(old, (past, past))
    with pytest.warns(CacheWarning, match=r"removed 2 unfinished write\(s\) of a stopped process"):
        open_store("things", tmp_path / "root")
    assert sorted(p.name for p in folder.iterdir()) == sorted([live.name, other_host.name])
    os.utime(other_host, (past, past))
    assert remove_stale_tmp(folder) == [other_host]


def test_atomic_writes_name_their_process(tmp_path: Path, monkeypatch) -> None:
    from polycstr_lib.toolkit import store

    seen = []
    real = store.os.replace

    def spy(src, dst):
        seen.append(Path(src).name)
        real(src, dst)

    monkeypatch.setattr(store.os, "replace", spy)
    store.atomic_write_bytes(tmp_path / "f.bin", b"x")
    assert cache._TMP_OWNER.search(seen[0]).group(1) == str(os.getpid())


# --- fault injection into every store --------------------------------------------------------


class Payload:
    """Creates ``marker`` when unpickled: the proof that a file's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def pickle_payload(marker: Path) -> bytes:
    return pickle.dumps(Payload(marker))


def test_the_payload_would_run_if_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    pickle.loads(pickle_payload(marker))  # noqa: S301 - the test's own payload
    assert marker.exists()


def forge(path: Path, data: bytes) -> None:
    """Replaces a file *and* its manifest record (an attacker who rewrites both)."""
    import hashlib

    path.write_bytes(data)
    manifest_path = path.parent / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][path.name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    manifest_path.write_text(json.dumps(manifest))


FAULTS: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "flip": (lambda p, m: p.write_bytes(bytes(b ^ 0xFF for b in p.read_bytes())), "sha256"),
    "truncate": (lambda p, m: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "trunc"),
    "delete": (lambda p, m: p.unlink(), "missing"),
    "pickle": (lambda p, m: p.write_bytes(pickle_payload(m)), "(sha256|size) mismatch|truncated"),
}


def agent_run(data, monkeypatch) -> tuple[Callable[[], Any], Path, Callable[[Any, Any], None]]:
    from polycstr_lib.agents.data import data_fingerprint
    from polycstr_lib.agents.runs import run_directory, train_agent

    config = tiny_config("bc")

    def build():
        return train_agent(config, data=data, progress=False)

    def same(a, b) -> None:
        assert_same_weights(a[0], b[0])
        assert a[1].equals(b[1]) or a[1].drop(columns="time_s").equals(b[1].drop(columns="time_s"))

    build()
    return build, run_directory(config, data_fingerprint(data)) / "agent.pt", same


def resume_state(data, monkeypatch):
    import polycstr_lib.agents.loop as loop
    from polycstr_lib.agents.data import data_fingerprint
    from polycstr_lib.agents.runs import train_ensemble

    configs = [tiny_config("bc", seed=s, steps=9) for s in (0, 1)]
    train_until_interrupted(monkeypatch, configs, data, 6)
    path = loop.resume_path(configs[0], [0, 1], data_fingerprint(data)) / "state.pt"
    assert path.is_file()
    return (lambda: train_ensemble(configs, data=data, progress=False)), path, same_runs


def continue_state(data, monkeypatch):
    import polycstr_lib.agents.loop as loop
    from polycstr_lib.agents.data import data_fingerprint
    from polycstr_lib.agents.runs import train_ensemble

    short = [tiny_config("bc", seed=s, steps=4) for s in (0, 1)]
    train_ensemble(short, data=data, progress=False)
    resume = loop.resume_path(short[0], [0, 1], data_fingerprint(data))
    path = loop.continuation_path(resume) / "state.pt"
    assert path.is_file()
    long = [tiny_config("bc", seed=s, steps=8) for s in (0, 1)]
    return (lambda: train_ensemble(long, data=data, progress=False)), path, same_runs


def same_runs(a, b) -> None:
    for (agent_a, log_a), (agent_b, log_b) in zip(a, b, strict=True):
        assert_same_weights(agent_a, agent_b)
        losses = [c for c in log_a.columns if c != "time_s"]
        assert log_a[losses].equals(log_b[losses])


COST = dict(steps=20, batch=16, eval_every=10, hidden=8)


def cost_model(data, monkeypatch):
    from polycstr_lib.correction.cost_models import CostModelConfig, train_cost_model

    cost_data = synthetic_data(n_episodes=4, steps=10)
    config = CostModelConfig(**COST)

    def build():
        return train_cost_model(cost_data, config, progress=False)

    def same(a, b) -> None:
        for (k, p), q in zip(a[0].state_dict().items(), b[0].state_dict().values(), strict=True):
            assert torch.equal(p, q), k
        assert a[1]["history"] == b[1]["history"] or np.allclose(a[1]["history"], b[1]["history"])

    first = build()
    return build, Path(first[1]["cache_path"]) / "model.pt", same


def cost_ensemble(data, monkeypatch):
    from polycstr_lib.correction.cost_models import CostModelConfig, train_cost_ensemble

    cost_data = synthetic_data(n_episodes=4, steps=10)
    config = CostModelConfig(**COST)

    def build():
        return train_cost_ensemble(cost_data, config, (0, 1), progress=False)

    def same(a, b) -> None:
        for (k, p), q in zip(a[0].state_dict().items(), b[0].state_dict().values(), strict=True):
            assert torch.equal(p, q), k

    first = build()
    return build, Path(first[1]["cache_path"]) / "model.pt", same


#: one variant at one step size: the sweep's cache is the subject here, not its grid
SWEEP = {"variants": {"plain": KW["variants"]["plain"]}, "step_sizes": {"plain": (1e-3,)}}


def sweep(data, monkeypatch):
    from polycstr_lib.correction.sweep import sweep_corrections

    def build():
        return sweep_corrections(CorrectionSetup(AGENTS, MODELS, TASK), 1, **SWEEP)

    def same(a, b) -> None:
        pd.testing.assert_frame_equal(a, b, check_exact=True)

    build()
    (path,) = (Path(os.environ["POLYCSTR_ARTIFACTS"]) / "correction_sweeps").glob("*/sweep.csv")
    return build, path, same


def nmpc_run(data, monkeypatch):
    pytest.importorskip("do_mpc")
    from polycstr_lib.reactor.nmpc import NMPCConfig, NMPCRun, run_directory, run_nmpc

    run = NMPCRun("grade_down", 1, steps=2, nmpc=NMPCConfig(horizon=3))

    def same(a, b) -> None:
        for name in ("states", "inputs", "rewards", "actions", "observations", "seeds"):
            np.testing.assert_array_equal(getattr(a[0], name), getattr(b[0], name))
        np.testing.assert_array_equal(a[1]["iterations"], b[1]["iterations"])

    run_nmpc(run)
    return (lambda: run_nmpc(run)), run_directory(run) / "trajectories.npz", same


STORES = {
    "agent_run": agent_run,
    "resume_state": resume_state,
    "continue_state": continue_state,
    "cost_model": cost_model,
    "cost_ensemble": cost_ensemble,
    "sweep": sweep,
    "nmpc_run": nmpc_run,
}


@pytest.fixture(scope="module")
def data():
    return make_tiny_data()


def _reference_then_fresh(
    store: str, data: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, Callable[[], Any], Path, Callable[[Any, Any], None]]:
    """The entry built in an untouched store (the reference), then the store's builder, entry
    path and comparison in a fresh store, ready to be damaged."""
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path / "reference"))
    build, _, same = STORES[store](data, monkeypatch)
    reference = build()
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path / "fresh"))
    build, path, same = STORES[store](data, monkeypatch)
    return reference, build, path, same


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("store", list(STORES))
def test_a_fault_is_detected_nothing_runs_and_the_entry_is_rebuilt_to_the_same_bits(
    store: str, fault: str, data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference, build, path, same = _reference_then_fresh(store, data, tmp_path, monkeypatch)
    marker = tmp_path / "payload-ran"
    damage, what = FAULTS[fault]
    damage(path, marker)
    with pytest.warns(CacheWarning, match=f"{path.name}: {what}"):
        rebuilt = build()
    assert not marker.exists()
    same(rebuilt, reference)
    aside = [p for p in path.parent.parent.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1
    # the rebuilt entry is whole: the next call loads it without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        again = build()
    same(again, reference)


@pytest.mark.parametrize(
    "store",
    ["agent_run", "resume_state", "continue_state", "cost_model", "cost_ensemble", "nmpc_run"],
)
def test_a_forged_pickle_with_a_matching_manifest_is_refused_not_run(
    store: str, data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference, build, path, same = _reference_then_fresh(store, data, tmp_path, monkeypatch)
    marker = tmp_path / "payload-ran"
    if path.suffix == ".pt":
        import io

        buffer = io.BytesIO()
        torch.save({"state": Payload(marker)}, buffer)  # a torch file that calls on load
        forge(path, buffer.getvalue())
    else:
        forge(path, pickle_payload(marker))
    with pytest.warns(CacheWarning, match=f"{path.name}: unreadable"):
        rebuilt = build()
    assert not marker.exists()
    same(rebuilt, reference)
