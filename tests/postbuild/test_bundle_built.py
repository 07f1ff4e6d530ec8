"""After `make html`: the build's bundle, its page and the site's numbers.json agree, and the
real bundle is refused when one byte is flipped and lists its stale entries when it comes
from other code (the reviewer's round trip itself is `make roundtrip`).

- ``_build/html/numbers.json`` holds every glued value of ``book/executed`` and is the
  bundle's own ``numbers.json``, byte for byte;
- the "Verify these numbers" page shows the bundle's real SHA-256 and links numbers.json;
- the parameters table shows the quick and paper profiles side by side;
- a copy of the bundle with one flipped byte imports nothing and names the entry;
- a copy whose entries and manifest come from another code version lists those entries as
  stale, imports none of them, and says how the code differs.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import re
import tarfile
from pathlib import Path

import pytest

from polycstr_lib.__main__ import main
from polycstr_lib.agents.config import AGENT_FORMAT
from polycstr_lib.book.bundle import import_bundle
from polycstr_lib.book.glue import glued_numbers, literal_value
from polycstr_lib.toolkit.cache import FORMAT

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "_build" / "html"
BUNDLES = ROOT / "_build" / "bundle"
EXECUTED = ROOT / "book" / "executed"


def _text(page: str) -> str:
    """The page's text (tags removed, highlighted code read as written)."""
    return html.unescape(re.sub(r"[ \t]+", " ", re.sub(r"<[^>]+>", "", page)))


@pytest.fixture(scope="module")
def verify_page() -> str:
    page = SITE / "book" / "verify.html"
    if not page.is_file():
        pytest.skip(f"{page} does not exist: run `make html` first")
    return page.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def bundle(verify_page) -> Path:
    """The bundle whose SHA-256 the page shows (``_build/bundle/<name>``)."""
    match = re.search(r"\b([0-9a-f]{64})\s+(\S+\.(?:tar|tar\.gz|tgz|zip))\b", _text(verify_page))
    assert match, "the verify page shows no 'sha256  file' line"
    path = BUNDLES / match.group(2)
    assert path.is_file(), f"the page names {path.name}, which the build did not write"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == match.group(1), (
        f"the page's sha256 is not {path.name}'s"
    )
    checksum = path.with_name(path.name + ".sha256").read_text().split()
    assert checksum == [match.group(1), path.name]
    return path


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as archive:
        return {i.name: archive.extractfile(i).read() for i in archive if i.isfile()}


def _write(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_the_site_publishes_the_glued_values_the_bundle_holds(bundle):
    site = (SITE / "numbers.json").read_bytes()
    table = json.loads(site)
    read = {p: {n: literal_value(v) for n, v in vs.items()} for p, vs in table["pages"].items()}
    expected = glued_numbers(EXECUTED)
    assert list(read) == list(expected)
    assert json.dumps(read, sort_keys=True, default=repr) == json.dumps(
        expected, sort_keys=True, default=repr
    )
    assert _members(bundle)["numbers.json"] == site, "the bundle's numbers are not the site's"


def test_the_verify_page_links_numbers_json_and_the_command(verify_page):
    assert 'href="../numbers.json"' in verify_page
    text = _text(verify_page)
    assert "make verify BUNDLE=" in text and "identical: N values on M pages" in text


def test_the_parameters_table_shows_both_profiles():
    page = (SITE / "book" / "rerun.html").read_text(encoding="utf-8")
    assert page.count("Quick (default)") >= 9 and ">Paper<" in page


def test_a_flipped_byte_refuses_the_real_bundle_naming_the_entry(bundle, tmp_path):
    members = _members(bundle)
    manifest = json.loads(members["bundle.json"])
    entry = manifest["entries"][0]
    prefix = f"entries/{entry['kind']}/{entry['name']}/"
    file = max(
        (f for f in entry["files"] if f != "manifest.json"), key=lambda f: len(members[prefix + f])
    )
    member = prefix + file
    data = bytearray(members[member])
    data[len(data) // 2] ^= 0x01
    members[member] = bytes(data)
    tampered = _write(tmp_path / "tampered.tar", members)
    empty = tmp_path / "empty"
    empty.mkdir()
    label = re.escape(f"{entry['kind']}/{entry['name']}: {file}")
    with pytest.raises(ValueError, match=rf"bundle entry {label} .*nothing imported"):
        import_bundle(tampered, root=empty)
    assert list(empty.iterdir()) == []


def test_a_bundle_of_other_code_lists_its_stale_entries_and_loads_none(
    bundle, tmp_path, monkeypatch, capsys
):
    members = _members(bundle)
    manifest = json.loads(members["bundle.json"])
    manifest["code_commit"] = "0000000"
    older = set()
    for entry in manifest["entries"]:
        if entry["kind"] not in ("agents", "cost_models"):
            continue
        member = f"entries/{entry['kind']}/{entry['name']}/manifest.json"
        own = json.loads(members[member])
        if entry["kind"] == "agents":
            own["info"]["agent_format"] = AGENT_FORMAT - 1
        else:
            own["format"] = FORMAT - 1
        data = json.dumps(own).encode()
        members[member] = data
        entry["files"]["manifest.json"] = {
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
        }
        older.add(f"{entry['kind']}/{entry['name']}")
    assert older, "the bundle holds no agent or cost model"
    members["bundle.json"] = json.dumps(manifest).encode()
    other = _write(tmp_path / "other.tar", members)
    store = tmp_path / "store"
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(store))
    assert main(["bundle", "import", str(other)]) == 0
    out = capsys.readouterr().out
    listed = set(re.findall(r"^\[bundle\] stale, not imported: (\S+): ", out, re.M))
    assert listed == older
    assert "[bundle] made by other code: code commit 0000000 (here " in out
    total = len(manifest["entries"])
    assert f"imported {total - len(older)} entries" in out
    assert not (store / "agents").exists() and not (store / "cost_models").exists()
