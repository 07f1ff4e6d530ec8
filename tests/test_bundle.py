"""Bundles (export, verified import, stale entries, URLs) and the no-training switch."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from polycstr_lib.__main__ import main
from polycstr_lib.agents.config import AGENT_FORMAT
from polycstr_lib.book import bundle as bundle_module
from polycstr_lib.book.bundle import (
    compare_numbers,
    export_bundle,
    import_bundle,
    read_numbers,
    stale_reason,
)
from polycstr_lib.toolkit.cache import FORMAT, entry_path, write_entry
from polycstr_lib.toolkit.offline import NO_TRAINING_ENV, TrainingOff, require_training


@dataclasses.dataclass(frozen=True)
class _Key:
    n: int


VALUES = {
    "episodes": 100,
    "iqm": 97.25,
    "nan": float("nan"),
    "pair": (1, 2.5),
    "seeds": [0.1, 0.2],
    "verdict": "holds",
    "load_seconds": 1.5,
    "solve_ms": 3.0,
}


def _executed_page(folder: Path, page: str, values: dict, profile: str = "quick") -> None:
    """An executed page: a provenance banner and ``values`` glued as myst-nb does."""
    from test_cli import _executed_page as executed_page

    executed_page(folder, page, values, profile)


def _store(root: Path) -> dict[str, Path]:
    """A tiny store: one entry of each bundled kind, plus what is never bundled."""
    made = {
        "agents": entry_path("agents", _Key(1), "bc-startup", root),
        "cost_models": entry_path("cost_models", _Key(2), "startup_n64_icnn_ens0-1", root),
        "correction_sweeps": entry_path("correction_sweeps", _Key(3), "startup_test", root),
        "nmpc": entry_path("nmpc", _Key(4), "startup", root),
    }
    write_entry(
        made["agents"],
        {"agent.pt": b"weights", "log.csv": b"step,loss\n3,0.5\n"},
        _Key(1),
        {"agent_format": AGENT_FORMAT},
    )
    write_entry(made["cost_models"], {"model.pt": b"model", "log.json": {"r2": 0.9}}, _Key(2))
    sweep = pd.DataFrame({"variant": ["none"], "mean": [0.5]})
    write_entry(made["correction_sweeps"], {"sweep.csv": sweep}, _Key(3))
    write_entry(made["nmpc"], {"trajectories.npz": {"x": np.arange(3.0)}}, _Key(4))
    write_entry(entry_path("resume", _Key(5), "bc-startup", root), {"state.pt": b"s"}, _Key(5))
    write_entry(entry_path("continue", _Key(6), "bc-startup", root), {"state.pt": b"c"}, _Key(6))
    aside = root / "agents" / f"{made['agents'].name}.corrupt-20260101T000000-1"
    aside.mkdir()
    (aside / "agent.pt").write_bytes(b"broken")
    unfinished = root / "nmpc" / "startup-000000000000"
    unfinished.mkdir()
    (unfinished / "trajectories.npz").write_bytes(b"half")
    return made


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def built(tmp_path, monkeypatch):
    """A store of every kind and a build of one page; the default store is this one."""
    root = tmp_path / "store"
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(root))
    made = _store(root)
    executed = tmp_path / "executed"
    _executed_page(executed, "02_dataset", VALUES)
    return root, made, executed


@pytest.mark.parametrize("suffix", [".tar", ".zip", ".tar.gz"])
def test_export_then_import_into_an_empty_store_gives_every_entry_byte_for_byte(
    built, tmp_path, suffix
):
    root, made, executed = built
    archive = tmp_path / f"book{suffix}"
    report = export_bundle(archive, executed, root)
    assert (report.entries, report.skipped, report.pages, report.values) == (4, 1, 1, 8)
    assert report.profile == "quick"
    assert not list(tmp_path.glob(".book*.tmp")), "the temporary archive was left behind"

    empty = tmp_path / "empty"
    empty.mkdir()
    imported = import_bundle(archive, root=empty)
    assert sorted(imported.imported) == sorted(f"{k}/{p.name}" for k, p in made.items())
    assert imported.present == imported.stale == ()
    for kind, path in made.items():
        assert _files(empty / kind / path.name) == _files(path), kind
    assert sorted(p.name for p in empty.iterdir()) == sorted(made)  # no resume/, continue/
    assert imported.profile == "quick" and imported.commit == "abc1234"
    numbers = imported.numbers["02_dataset"]
    assert numbers["pair"] == (1, 2.5) and numbers["seeds"] == [0.1, 0.2]
    assert compare_numbers({"02_dataset": VALUES}, imported.numbers).differences == ()
    assert read_numbers(archive)[0] == "quick"


def test_the_manifest_lists_entries_versions_and_the_build(built, tmp_path):
    root, made, executed = built
    archive = tmp_path / "book.zip"
    export_bundle(archive, executed, root)
    with zipfile.ZipFile(archive) as z:
        manifest = json.loads(z.read("bundle.json"))
        names = set(z.namelist())
        data = z.read(f"entries/agents/{made['agents'].name}/agent.pt")
    assert manifest["profile"] == "quick" and manifest["build_commit"] == "abc1234"
    assert {"code_commit", "versions", "numbers"} <= set(manifest)
    assert {"torch", "numpy", "polycstr_lib"} <= set(manifest["versions"])
    agent = next(e for e in manifest["entries"] if e["kind"] == "agents")
    assert agent["name"] == made["agents"].name
    assert agent["key"] == made["agents"].name.rsplit("-", 1)[1]
    assert set(agent["files"]) == {"agent.pt", "log.csv", "manifest.json"}
    assert agent["files"]["agent.pt"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert {"bundle.json", "numbers.json"} <= names
    assert not any("/resume/" in n or "/continue/" in n or ".corrupt-" in n for n in names)


def _repack(source: Path, target: Path, change) -> None:  # noqa: ANN001 - change(name, data)
    """A copy of a .tar bundle whose members pass through ``change(name, data) -> data``."""
    with tarfile.open(source) as old, tarfile.open(target, "w") as new:
        for info in old:
            data = change(info.name, old.extractfile(info).read())
            info.size = len(data)
            new.addfile(info, io.BytesIO(data))


def test_a_flipped_byte_refuses_the_bundle_naming_the_entry_and_imports_nothing(built, tmp_path):
    root, made, executed = built
    archive, tampered = tmp_path / "book.tar", tmp_path / "tampered.tar"
    export_bundle(archive, executed, root)
    target = f"entries/nmpc/{made['nmpc'].name}/trajectories.npz"

    def flip(name: str, data: bytes) -> bytes:
        if name != target:
            return data
        return data[:10] + bytes([data[10] ^ 1]) + data[11:]

    _repack(archive, tampered, flip)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=rf"nmpc/{made['nmpc'].name}: trajectories.npz sha256"):
        import_bundle(tampered, root=empty)
    assert list(empty.iterdir()) == []


def test_a_flipped_byte_in_a_zip_names_the_entry_too(built, tmp_path):
    root, made, executed = built
    archive = tmp_path / "book.zip"
    export_bundle(archive, executed, root)
    member = f"entries/agents/{made['agents'].name}/log.csv"
    with zipfile.ZipFile(archive) as z:
        info = z.getinfo(member)
    raw = bytearray(archive.read_bytes())
    header = info.header_offset  # local header: 30 bytes, the name, the extra field
    start = header + 30 + int.from_bytes(raw[header + 26 : header + 28], "little")
    start += int.from_bytes(raw[header + 28 : header + 30], "little")
    raw[start] ^= 0xFF
    archive.write_bytes(bytes(raw))
    empty = tmp_path / "empty"
    with pytest.raises(ValueError, match=rf"agents/{made['agents'].name}: log.csv unreadable"):
        import_bundle(archive, root=empty)
    assert list(empty.iterdir()) == []


def _restamp(manifest_change):  # noqa: ANN001, ANN202
    """A change for :func:`_repack` that edits one entry's manifest.json and rewrites the
    bundle's records of it (an internally consistent entry of another code version)."""
    changed: dict[str, bytes] = {}

    def change(name: str, data: bytes) -> bytes:
        if name.endswith("/manifest.json"):
            manifest = json.loads(data)
            if manifest_change(name, manifest):
                data = json.dumps(manifest).encode()
                changed[name] = data
        elif name == "bundle.json":
            bundle = json.loads(data)
            for entry in bundle["entries"]:
                member = f"entries/{entry['kind']}/{entry['name']}/manifest.json"
                if member in changed:
                    new = changed[member]
                    entry["files"]["manifest.json"] = {
                        "sha256": hashlib.sha256(new).hexdigest(),
                        "size": len(new),
                    }
            data = json.dumps(bundle).encode()
        return data

    return change


def test_entries_of_another_format_are_listed_as_stale_not_imported(built, tmp_path):
    root, made, executed = built
    archive, older = tmp_path / "book.tar", tmp_path / "older.tar"
    export_bundle(archive, executed, root)

    def older_code(name: str, manifest: dict) -> bool:
        if "/cost_models/" in name:
            manifest["format"] = FORMAT - 1
            return True
        if "/agents/" in name:
            manifest["info"]["agent_format"] = AGENT_FORMAT - 1
            return True
        return False

    _repack(archive, older, _restamp(older_code))
    empty = tmp_path / "empty"
    empty.mkdir()
    report = import_bundle(older, root=empty)
    stale = dict(report.stale)
    assert set(stale) == {
        f"agents/{made['agents'].name}",
        f"cost_models/{made['cost_models'].name}",
    }
    assert "agent format" in stale[f"agents/{made['agents'].name}"]
    assert f"entry format {FORMAT - 1}" in stale[f"cost_models/{made['cost_models'].name}"]
    assert sorted(report.imported) == sorted(
        f"{k}/{made[k].name}" for k in ("correction_sweeps", "nmpc")
    )
    assert not (empty / "agents").exists() and not (empty / "cost_models").exists()


def test_an_unknown_kind_is_stale():
    manifest = {"format": FORMAT, "key": "x-1", "info": {}}
    assert "not one this code reads" in stale_reason("figures", "x-1", manifest)
    assert stale_reason("nmpc", "x-1", manifest) is None
    assert "key" in stale_reason("nmpc", "y-2", manifest)


def test_import_never_overwrites_a_valid_entry(built, tmp_path):
    root, made, executed = built
    archive = tmp_path / "book.tar"
    export_bundle(archive, executed, root)
    mine = tmp_path / "mine"
    nmpc = mine / "nmpc" / made["nmpc"].name
    write_entry(nmpc, {"trajectories.npz": {"x": np.arange(4.0)}}, _Key(4))  # other content
    before = _files(nmpc)
    report = import_bundle(archive, root=mine)
    assert report.present == report.differing == (f"nmpc/{made['nmpc'].name}",)
    assert _files(nmpc) == before
    assert len(report.imported) == 3
    again = import_bundle(archive, root=mine)  # all there now: nothing imported
    assert again.imported == () and len(again.present) == 4 and len(again.differing) == 1


def test_a_url_is_fetched_with_pooch_against_the_given_hash(built, tmp_path, monkeypatch):
    root, _, executed = built
    archive = tmp_path / "book.tar"
    export_bundle(archive, executed, root)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    calls = []

    def retrieve(url, known_hash, **kwargs):  # noqa: ANN001, ANN202
        calls.append((url, known_hash))
        return str(archive)

    pooch = pytest.importorskip("pooch")
    monkeypatch.setattr(pooch, "retrieve", retrieve)
    url = "https://example.org/book.tar"
    with pytest.raises(ValueError, match="needs its sha256"):
        import_bundle(url, root=tmp_path / "a")
    assert calls == []
    report = import_bundle(url, sha256=digest, root=tmp_path / "b")
    assert calls == [(url, f"sha256:{digest}")] and len(report.imported) == 4
    with pytest.raises(ValueError, match="sha256 is"):
        import_bundle(archive, sha256="0" * 64, root=tmp_path / "c")


def test_an_unlisted_or_escaping_member_refuses_the_bundle(built, tmp_path):
    root, _, executed = built
    archive, evil = tmp_path / "book.tar", tmp_path / "evil.tar"
    export_bundle(archive, executed, root)
    with tarfile.open(archive) as old, tarfile.open(evil, "w") as new:
        for info in old:
            new.addfile(info, old.extractfile(info))
        info = tarfile.TarInfo("entries/nmpc/../../../escape")
        info.size = 1
        new.addfile(info, io.BytesIO(b"x"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="not a file of a bundle"):
        import_bundle(evil, root=empty)
    assert list(empty.iterdir()) == [] and not (tmp_path / "escape").exists()


def test_compare_leaves_out_timings_and_reports_differences():
    expected = {"02_dataset": VALUES}
    rebuilt = {"02_dataset": {**VALUES, "iqm": 97.26, "load_seconds": 9.0, "solve_ms": 1.0}}
    result = compare_numbers(expected, rebuilt)
    assert result.differences == (("02_dataset", "iqm", 97.25, 97.26),)
    assert (result.pages, result.values, result.timings) == (1, 6, 2)


def test_cli_export_import_and_verify(built, tmp_path, monkeypatch, capsys):
    root, _, executed = built
    archive = tmp_path / "book.tar"
    assert main(["bundle", "export", str(archive), "--executed", str(executed)]) == 0
    assert "4 entries" in capsys.readouterr().out
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path / "other"))
    assert main(["bundle", "import", str(archive)]) == 0
    assert "imported 4 entries" in capsys.readouterr().out
    assert main(["bundle", "import", "https://example.org/b.tar"]) == 2
    assert "needs its sha256" in capsys.readouterr().err

    def rebuild(profile, only, executed_dir):  # noqa: ANN001, ANN202 - no kernel in unit tests
        assert profile == "quick" and os.environ[NO_TRAINING_ENV] == "1"
        _executed_page(Path(executed_dir), "02_dataset", {**VALUES, "load_seconds": 2.0})

    from polycstr_lib.book import pipeline

    monkeypatch.setattr(pipeline, "execute_notebooks", rebuild)
    verify = ["verify", "--bundle", str(archive), "--executed", str(tmp_path / "v")]
    assert main(verify) == 0
    assert "identical: 6 values on 1 pages" in capsys.readouterr().out
    assert NO_TRAINING_ENV not in os.environ

    def differs(profile, only, executed_dir):  # noqa: ANN001, ANN202
        _executed_page(Path(executed_dir), "02_dataset", {**VALUES, "episodes": 99})

    monkeypatch.setattr(pipeline, "execute_notebooks", differs)
    assert main(verify) == 1
    out = capsys.readouterr()
    assert out.out.splitlines()[1:] == ["02_dataset\tepisodes\t100\t99"]
    assert "1 of 6 glued values differ" in out.err


def test_verify_never_executes_into_the_books_folder(built):
    from polycstr_lib.book.bundle import verify_build
    from polycstr_lib.book.profiles import EXECUTED_DIR

    with pytest.raises(ValueError, match="elsewhere"):
        verify_build({}, "quick", EXECUTED_DIR)


# --- the no-training switch ----------------------------------------------------------------------
def test_require_training_names_the_entry(monkeypatch, tmp_path):
    require_training("agent run", tmp_path / "agents" / "bc-x")  # training on: nothing
    monkeypatch.setenv(NO_TRAINING_ENV, "0")
    require_training("agent run", tmp_path / "agents" / "bc-x")
    monkeypatch.setenv(NO_TRAINING_ENV, "1")
    with pytest.raises(TrainingOff, match=r"training is off \(POLYCSTR_NO_TRAINING\): agents/bc-x"):
        require_training("agent run", tmp_path / "agents" / "bc-x")
    assert issubclass(TrainingOff, ValueError)


def test_no_training_stops_an_agent_run_naming_its_entry_and_loads_a_cached_one(
    tmp_path, monkeypatch
):
    from test_agents import make_tiny_data

    from polycstr_lib.agents import BCConfig
    from polycstr_lib.agents.config import TrainConfig
    from polycstr_lib.agents.data import data_fingerprint
    from polycstr_lib.agents.runs import run_directory, train_agent

    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path / "store"))
    agent = BCConfig(hidden_dims=(8, 8))
    config = TrainConfig("bc", "startup", steps=3, batch_size=8, agent=agent, log_interval=3)
    data = make_tiny_data()
    monkeypatch.setenv(NO_TRAINING_ENV, "1")
    name = run_directory(config, data_fingerprint(data)).name
    with pytest.raises(ValueError, match=rf"agent run not in the store .*: agents/{name}$"):
        train_agent(config, data, progress=False)
    assert not (tmp_path / "store" / "agents" / name).exists()
    monkeypatch.delenv(NO_TRAINING_ENV)
    train_agent(config, data, progress=False)
    monkeypatch.setenv(NO_TRAINING_ENV, "1")
    _, log = train_agent(config, data, progress=False)  # cached: allowed
    assert log.attrs["cached"]


def test_no_training_stops_a_cost_model_and_nmpc_before_computing(tmp_path, monkeypatch):
    from test_agents import make_tiny_data

    from polycstr_lib.correction.cost_models import CostModelConfig, train_cost_model
    from polycstr_lib.reactor.nmpc import NMPCRun, run_nmpc

    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path / "store"))
    monkeypatch.setenv(NO_TRAINING_ENV, "1")
    with pytest.raises(TrainingOff, match=r"cost model not in the store .*: cost_models/"):
        train_cost_model(make_tiny_data(), CostModelConfig(steps=2), progress=False)
    with pytest.raises(TrainingOff, match=r"NMPC run not in the store .*: nmpc/startup-"):
        run_nmpc(NMPCRun("startup", 1, steps=2))


def test_the_bundled_kinds_are_the_stores_pages_read():
    assert bundle_module.BUNDLED_KINDS == ("agents", "cost_models", "correction_sweeps", "nmpc")


# --- the bundle's record, its code version, the site's numbers.json ------------------------------
def test_the_export_report_gives_the_archives_hash_and_the_record_shows_it(built, tmp_path):
    from polycstr_lib.book.summaries import bundle_markdown, write_bundle_record

    root, _, executed = built
    archive = tmp_path / "out" / "book.tar"
    report = export_bundle(archive, executed, root)
    data = archive.read_bytes()
    assert report.sha256 == hashlib.sha256(data).hexdigest() and report.size == len(data)
    assert report.commit == "abc1234"
    record = tmp_path / "bundle.md"
    checksum = write_bundle_record(report, record, None)
    assert checksum.read_text() == f"{report.sha256}  book.tar\n"
    text = record.read_text()
    assert f"{report.sha256}  book.tar" in text and "4 cache entries" in text
    assert "glued values of its 1 pages (profile quick, commit abc1234)" in text
    assert "github.com" not in text
    linked = bundle_markdown(report, "owner/name")
    assert "https://github.com/owner/name/actions/workflows/book.yml" in linked


def test_cli_export_writes_the_record_and_the_checksum(built, tmp_path, capsys):
    _, _, executed = built
    archive, record = tmp_path / "book.tar", tmp_path / "md" / "bundle.md"
    argv = ["bundle", "export", str(archive), "--executed", str(executed), "--record", str(record)]
    assert main(argv) == 0
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert f"sha256 {digest}" in capsys.readouterr().out
    assert (tmp_path / "book.tar.sha256").read_text().split() == [digest, "book.tar"]
    assert digest in record.read_text()


def test_a_bundle_of_other_code_says_how_it_differs(built, tmp_path, monkeypatch, capsys):
    root, _, executed = built
    archive, other = tmp_path / "book.tar", tmp_path / "other.tar"
    export_bundle(archive, executed, root)
    assert import_bundle(archive, root=tmp_path / "same").code == ()

    def older(name: str, data: bytes) -> bytes:
        if name != "bundle.json":
            return data
        manifest = json.loads(data)
        manifest["code_commit"] = "0000000"
        manifest["versions"]["torch"] = "0.0.1"
        return json.dumps(manifest).encode()

    _repack(archive, other, older)
    report = import_bundle(other, root=tmp_path / "empty")
    assert {d.split(" (here")[0] for d in report.code} == {"code commit 0000000", "torch 0.0.1"}
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path / "cli"))
    assert main(["bundle", "import", str(other)]) == 0
    out = capsys.readouterr().out
    assert "[bundle] made by other code: torch 0.0.1 (here " in out
    assert "[bundle] made by other code: code commit 0000000 (here " in out


def test_the_bundles_numbers_are_the_file_the_site_publishes(built, tmp_path):
    from polycstr_lib.book.glue import write_numbers_json

    root, _, executed = built
    archive = tmp_path / "book.zip"
    export_bundle(archive, executed, root)
    site = write_numbers_json(executed, tmp_path / "html" / "numbers.json")
    with zipfile.ZipFile(archive) as z:
        assert z.read("numbers.json") == site.read_bytes()
    table = json.loads(site.read_text())
    assert (table["profile"], table["commit"]) == ("quick", "abc1234")
    assert table["pages"]["02_dataset"]["pair"] == "(1, 2.5)"
    assert write_numbers_json(tmp_path / "nothing", tmp_path / "n.json") is None
    assert not (tmp_path / "n.json").exists()
