"""Bundles: one build's artifact store and glued numbers in one archive, for a reviewer.

``make html`` exports the build's bundle (``_build/bundle/``) and its SHA-256, which the
"Verify these numbers" page shows (:mod:`polycstr_lib.book.summaries`). A reviewer checks a
build without retraining in three steps (``make verify BUNDLE=FILE SHA256=HEX``):
:func:`import_bundle` puts the bundle's entries into the artifact store, the book's pages are
executed with training off (:mod:`polycstr_lib.toolkit.offline`) into a folder of their own,
and :func:`timing_free` values of the new pages are compared with the bundle's
``numbers.json`` (:func:`~polycstr_lib.book.glue.differing_numbers`).

An archive (``.tar``, ``.tar.gz``/``.tgz`` or ``.zip``; written to a temporary file and
renamed into place) holds::

    bundle.json                       the manifest (below), written last
    numbers.json                      {"profile", "commit", "pages": {page: {name: repr}}}
    entries/<kind>/<folder>/<file>    every file of each entry, its manifest.json included

``bundle.json`` has the bundle's format (:data:`BUNDLE_FORMAT`), the build's profile and
commit(s) (from the pages' provenance banners), the exporting checkout's commit, the versions
of torch, numpy and polycstr_lib (and Python), the cache's and agents' format versions, the
SHA-256 and size of ``numbers.json``, and per entry its kind, folder name, config key (the
folder name's last ``-`` part) and each file's SHA-256 and size. Glued values are stored as
their ``repr`` (what the executed page shows) and read back as the pages' are
(:func:`~polycstr_lib.book.glue.literal_value`), so tuples stay tuples and floats keep every
bit.

Exported are the complete, verified entries (:func:`~polycstr_lib.toolkit.cache.read_entry`)
of the stores pages read, :data:`BUNDLED_KINDS`; the training states of ``resume/`` and
``continue/``, unfinished entries and moved-aside ``.corrupt-*`` folders stay behind.

Importing verifies every file against ``bundle.json`` and every entry against its own
manifest while the archive is unpacked into a staging folder inside the store; only when all
of it checks out is anything moved into place, so a tampered bundle imports nothing (the
:class:`ValueError` names the entry and file). A valid entry already in the store is never
overwritten; an entry the current code would not read (:func:`stale_reason`) is listed, not
imported.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from polycstr_lib.agents.config import AGENT_FORMAT
from polycstr_lib.book.glue import (
    NUMBERS_FILE,
    build_provenance,
    glued_numbers,
    literal_value,
    numbers_json,
)
from polycstr_lib.book.profiles import EXECUTED_DIR
from polycstr_lib.book.provenance import git_commit, package_versions
from polycstr_lib.toolkit.cache import FORMAT, MANIFEST, invalidate, is_complete, read_entry
from polycstr_lib.toolkit.store import artifact_dir

__all__ = [
    "BUNDLED_KINDS",
    "BUNDLE_FORMAT",
    "BundleEntry",
    "ExportReport",
    "code_differences",
    "ImportReport",
    "export_bundle",
    "import_bundle",
    "is_timing",
    "read_numbers",
    "stale_reason",
    "timing_free",
]

#: Version of the archive layout and of ``bundle.json``.
BUNDLE_FORMAT = 1

#: The archive's manifest and its table of glued numbers.
BUNDLE_MANIFEST = "bundle.json"
NUMBERS = NUMBERS_FILE
#: The folder of the archive holding the store's entries, as ``<kind>/<folder>/<file>``.
ENTRIES = "entries"

#: The stores whose entries the book's pages read. The artifact store also holds ``resume/``
#: and ``continue/`` (training states, never read by a page), which are not bundled.
BUNDLED_KINDS: tuple[str, ...] = ("agents", "cost_models", "correction_sweeps", "nmpc")

#: Packages whose versions ``bundle.json`` records.
BUNDLE_PACKAGES: tuple[str, ...] = ("polycstr_lib", "numpy", "torch")

#: Glue names holding these are timings (wall-clock, machine-dependent): not compared.
TIMING_MARKERS: tuple[str, ...] = ("_ms", "seconds", "speedup", "time")

_SUFFIXES = {".tar": "tar", ".tar.gz": "tar.gz", ".tgz": "tar.gz", ".zip": "zip"}
_PART = re.compile(r"[A-Za-z0-9_=+-][A-Za-z0-9_.=+-]*")
_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class BundleEntry:
    """One cache entry of a bundle, as ``bundle.json`` lists it."""

    kind: str  # the store, e.g. "agents"
    name: str  # the entry's folder name, ``<prefix>-<config key>``
    key: str  # the config key (the folder name's last ``-`` part)
    files: Mapping[str, Mapping[str, Any]]  # file → {"sha256", "size"}, manifest.json included

    @property
    def label(self) -> str:
        """``<kind>/<name>``, how messages name the entry."""
        return f"{self.kind}/{self.name}"

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "key": self.key, "files": dict(self.files)}


@dataclasses.dataclass(frozen=True)
class ExportReport:
    """What :func:`export_bundle` wrote."""

    path: Path
    entries: int  # entries bundled
    skipped: int  # entries left out: unfinished, failing their check or of another format
    pages: int
    values: int  # glued values in numbers.json
    profile: str
    commit: str  # the build's commit(s), comma-separated
    sha256: str  # of the archive
    size: int  # of the archive, bytes


@dataclasses.dataclass(frozen=True)
class ImportReport:
    """What :func:`import_bundle` did, entry by entry (each named ``<kind>/<name>``)."""

    imported: tuple[str, ...]  # moved into the store
    present: tuple[str, ...]  # a valid entry of that name was there: kept, bundle's skipped
    differing: tuple[str, ...]  # those of ``present`` whose files differ from the bundle's
    stale: tuple[tuple[str, str], ...]  # (entry, why the current code would not read it)
    profile: str  # the build's profile (what `verify` executes the pages with)
    commit: str  # the build's commit(s), comma-separated
    numbers: dict[str, dict[str, Any]]  # the bundle's glued values, {page: {name: value}}
    #: how the code that made the bundle differs from this one, e.g. "torch 2.3.0 (here
    #: 2.4.1)" (:func:`code_differences`); empty when it is the same
    code: tuple[str, ...] = ()


# ----------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------
def _archive_format(path: Path) -> str:
    name = path.name.lower()
    for suffix, kind in sorted(_SUFFIXES.items(), key=lambda item: -len(item[0])):
        if name.endswith(suffix):
            return kind
    raise ValueError(f"{path}: a bundle is a .tar, .tar.gz, .tgz or .zip file")


def _record(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


class _Writer:
    """Adds members to a tar or zip archive (fixed dates, so only the contents vary)."""

    def __init__(self, file: IO[bytes], kind: str) -> None:
        self._zip = zipfile.ZipFile(file, "w", zipfile.ZIP_DEFLATED) if kind == "zip" else None
        mode = "w:gz" if kind == "tar.gz" else "w"
        self._tar = None if self._zip else tarfile.open(fileobj=file, mode=mode)

    def add(self, name: str, data: bytes) -> None:
        if self._zip is not None:
            self._zip.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data)
        else:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            self._tar.addfile(info, io.BytesIO(data))

    def close(self) -> None:
        (self._zip or self._tar).close()


def _bundled_entries(root: Path) -> Iterator[tuple[str, Path]]:
    """``(kind, folder)`` of every entry folder of :data:`BUNDLED_KINDS`, sorted; moved-aside
    and hidden (staging) folders excluded."""
    for kind in BUNDLED_KINDS:
        folder = root / kind
        if not folder.is_dir():
            continue
        for directory in sorted(folder.iterdir()):
            name = directory.name
            if directory.is_dir() and ".corrupt-" not in name and not name.startswith("."):
                yield kind, directory


def export_bundle(
    path: str | os.PathLike[str],
    executed_dir: str | os.PathLike[str] | None = None,
    root: str | os.PathLike[str] | None = None,
) -> ExportReport:
    """Writes a bundle of the artifact store and the glued numbers of the executed pages.

    Every entry is read back and checked against its manifest before it is bundled (one
    that fails is moved aside with a warning, as on any load, and left out). The archive is
    written to a temporary file beside ``path`` and renamed into place.

    Args:
        path: the archive to write: ``.tar``, ``.tar.gz``, ``.tgz`` or ``.zip``.
        executed_dir: the build's executed pages (default :data:`EXECUTED_DIR`).
        root: the artifact store (default :func:`~polycstr_lib.toolkit.store.artifact_dir`).

    Returns:
        What was bundled.

    Raises:
        ValueError: an unknown archive suffix, no executed page, or pages of several
            profiles (or none: no provenance banner).
        FileNotFoundError: no folder of executed pages.
    """
    path = Path(path)
    kind = _archive_format(path)
    folder = Path(executed_dir) if executed_dir is not None else EXECUTED_DIR
    pages = glued_numbers(folder)
    if not pages:
        raise ValueError(f"no executed page in {folder}: build the book first (make book)")
    found = build_provenance(folder)
    if len(found["profile"]) != 1:
        profiles = ", ".join(sorted(found["profile"])) or "none (no provenance banner)"
        raise ValueError(f"the pages in {folder} are of one profile per build; found {profiles}")
    profile = next(iter(found["profile"]))
    commit = ", ".join(sorted(found["commit"]))
    store = Path(root) if root is not None else artifact_dir()
    numbers = numbers_json(pages, profile, commit)

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    listed: list[BundleEntry] = []
    skipped = 0
    try:
        with os.fdopen(fd, "wb") as file:
            writer = _Writer(file, kind)
            for store_kind, directory in _bundled_entries(store):
                entry = read_entry(directory)
                manifest = (directory / MANIFEST).read_bytes() if entry is not None else b""
                if entry is None or json.loads(manifest) != entry.manifest:
                    skipped += 1
                    continue
                files = {**entry.files, MANIFEST: manifest}
                prefix = f"{ENTRIES}/{store_kind}/{directory.name}"
                for name in sorted(files):
                    writer.add(f"{prefix}/{name}", files[name])
                listed.append(
                    BundleEntry(
                        store_kind,
                        directory.name,
                        directory.name.rsplit("-", 1)[-1],
                        {name: _record(files[name]) for name in sorted(files)},
                    )
                )
            writer.add(NUMBERS, numbers)
            manifest = {
                "bundle_format": BUNDLE_FORMAT,
                "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "profile": profile,
                "build_commit": commit,
                "code_commit": git_commit(),
                "versions": package_versions(BUNDLE_PACKAGES),
                "cache_format": FORMAT,
                "agent_format": AGENT_FORMAT,
                "numbers": _record(numbers),
                "entries": [e.as_json() for e in listed],
            }
            writer.add(BUNDLE_MANIFEST, json.dumps(manifest, indent=1).encode())
            writer.close()
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp_name, 0o666 & ~_umask())  # as an ordinary file (mkstemp's is private)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    values = sum(len(v) for v in pages.values())
    return ExportReport(
        path,
        len(listed),
        skipped,
        len(pages),
        values,
        profile,
        commit,
        _file_sha256(path),
        path.stat().st_size,
    )


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# ----------------------------------------------------------------------------------------------
# Import
# ----------------------------------------------------------------------------------------------
def _is_url(source: str) -> bool:
    return re.match(r"^[a-z][a-z0-9+.-]*://", source) is not None


def _check_sha256(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    text = sha256.lower().removeprefix("sha256:")
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise ValueError(f"--sha256 must be 64 hexadecimal digits, got {sha256!r}")
    return text


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _local_archive(source: str | os.PathLike[str], sha256: str | None) -> Path:
    """The bundle as a local file: a URL downloaded with pooch (checked against ``sha256``,
    which a URL requires), a path checked against ``sha256`` when given."""
    sha256 = _check_sha256(sha256)
    text = str(source)
    if _is_url(text):
        if sha256 is None:
            raise ValueError(f"a bundle from a URL needs its sha256 (--sha256 HEX): {text}")
        import pooch

        return Path(pooch.retrieve(text, known_hash=f"sha256:{sha256}", progressbar=False))
    path = Path(text)
    if not path.is_file():
        raise FileNotFoundError(f"no bundle at {path}")
    if sha256 is not None and _file_sha256(path) != sha256:
        raise ValueError(f"{path}: sha256 is {_file_sha256(path)}, not the {sha256} given")
    return path


def _members(path: Path) -> Iterator[tuple[str, IO[bytes] | None]]:
    """``(name, stream)`` of each archive member; stream None for anything but a file."""
    if _archive_format(path) == "zip":
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    yield info.filename, None
                else:
                    with archive.open(info) as stream:
                        yield info.filename, stream
        return
    with tarfile.open(path, "r:*") as archive:
        for info in archive:
            stream = archive.extractfile(info) if info.isfile() else None
            yield info.name, stream


def _member_path(name: str) -> tuple[str, ...] | None:
    """The parts of a member's name, None unless it is one the layout allows."""
    parts = tuple(name.split("/"))
    if parts in ((BUNDLE_MANIFEST,), (NUMBERS,)):
        return parts
    if len(parts) == 4 and parts[0] == ENTRIES and all(_PART.fullmatch(p) for p in parts[1:]):
        return parts
    return None


#: What a damaged archive raises while it is read (gzip's CRC error is an OSError).
_ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile)


def _member_label(name: str) -> str:
    """How a message names a member: ``bundle entry <kind>/<folder>: <file>`` for an entry's."""
    parts = name.split("/")
    if len(parts) == 4 and parts[0] == ENTRIES:
        return f"bundle entry {parts[1]}/{parts[2]}: {parts[3]}"
    return name


def _unpack(archive: Path, staging: Path) -> dict[str, dict[str, Any]]:
    """Unpacks the archive into ``staging`` (nothing outside it), hashing every file.

    Returns:
        member name → ``{"sha256", "size"}``.

    Raises:
        ValueError: a member that the layout does not allow, one given twice, or an archive
            that cannot be read (naming the member when the damage is in one, as a zip's
            CRC check finds it).
    """
    seen: dict[str, dict[str, Any]] = {}
    name = ""
    try:
        for name, stream in _members(archive):
            parts = _member_path(name)
            if stream is None or parts is None or name in seen:
                why = "given twice" if name in seen else "not a file of a bundle"
                raise ValueError(f"{archive}: member {name!r} is {why}; nothing imported")
            target = staging.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            h, size = hashlib.sha256(), 0
            with target.open("xb") as out:
                while chunk := stream.read(_CHUNK):
                    h.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            seen[name] = {"sha256": h.hexdigest(), "size": size}
            name = ""
    except _ARCHIVE_ERRORS as error:
        where = f"{_member_label(name)} unreadable" if name else "not a readable archive"
        raise ValueError(f"{archive}: {where} ({error}); nothing imported") from None
    return seen


def _listed_entries(manifest: Mapping[str, Any], archive: Path) -> list[BundleEntry]:
    listed = []
    try:
        for item in manifest["entries"]:
            entry = BundleEntry(
                str(item["kind"]), str(item["name"]), str(item["key"]), item["files"]
            )
            if not all(_PART.fullmatch(p) for p in (entry.kind, entry.name, *entry.files)):
                raise ValueError(f"bad name in {entry.label}")
            listed.append(entry)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{archive}: {BUNDLE_MANIFEST} is malformed ({error})") from None
    return listed


def _verify(
    archive: Path, staged: Mapping[str, Mapping[str, Any]], manifest: Mapping[str, Any]
) -> list[BundleEntry]:
    """Checks every staged file against ``bundle.json`` and every entry against its own
    manifest; raises :class:`ValueError` naming the entry and file at fault."""
    listed = _listed_entries(manifest, archive)
    expected: dict[str, tuple[str, Mapping[str, Any]]] = {
        NUMBERS: ("numbers", manifest.get("numbers") or {})
    }
    for entry in listed:
        if MANIFEST not in entry.files:
            raise ValueError(
                f"{archive}: bundle entry {entry.label} has no {MANIFEST}; nothing imported"
            )
        for name, record in entry.files.items():
            expected[f"{ENTRIES}/{entry.kind}/{entry.name}/{name}"] = (entry.label, record)
    for member, (label, record) in expected.items():
        got = staged.get(member)
        file = member.rsplit("/", 1)[-1]
        if got is None:
            problem = "missing from the archive"
        elif got["size"] != record.get("size"):
            problem = f"size mismatch ({got['size']} bytes, bundle.json says {record.get('size')})"
        elif got["sha256"] != record.get("sha256"):
            problem = "sha256 mismatch"
        else:
            continue
        raise ValueError(f"{archive}: bundle entry {label}: {file} {problem}; nothing imported")
    extra = sorted(set(staged) - set(expected) - {BUNDLE_MANIFEST})
    if extra:
        raise ValueError(
            f"{archive}: {extra[0]} is not listed in {BUNDLE_MANIFEST}; nothing imported"
        )
    return listed


def _entry_manifest(staging: Path, entry: BundleEntry, archive: Path) -> dict[str, Any]:
    """The entry's own manifest, which must list exactly its other files, with the same
    hashes as ``bundle.json``."""
    try:
        manifest = json.loads((staging / ENTRIES / entry.kind / entry.name / MANIFEST).read_bytes())
        records = manifest["files"]
        same = set(records) | {MANIFEST} == set(entry.files) and all(
            records[n]["sha256"] == entry.files[n]["sha256"] for n in records
        )
    except (ValueError, KeyError, TypeError):
        same = False
    if not same:
        raise ValueError(
            f"{archive}: bundle entry {entry.label}: {MANIFEST} does not match its files; "
            "nothing imported"
        )
    return manifest


def stale_reason(kind: str, name: str, manifest: Mapping[str, Any]) -> str | None:
    """Why the current code would not read this entry (it would rebuild it), or None.

    An entry is stale when its store is not one of :data:`BUNDLED_KINDS`, its manifest's
    ``format`` is not the cache's :data:`~polycstr_lib.toolkit.cache.FORMAT`, its key is not
    its folder name, or, for an agent run, its ``agent_format`` is not the current one.
    """
    if kind not in BUNDLED_KINDS:
        return f"store {kind!r} is not one this code reads ({', '.join(BUNDLED_KINDS)})"
    if manifest.get("format") != FORMAT:
        return f"entry format {manifest.get('format')!r}, this code reads format {FORMAT}"
    if manifest.get("key") != name:
        return f"manifest key {manifest.get('key')!r} is not the folder name"
    if kind == "agents":
        version = (manifest.get("info") or {}).get("agent_format")
        if version != AGENT_FORMAT:
            return f"agent format {version!r}, this code reads agent format {AGENT_FORMAT}"
    return None


def code_differences(manifest: Mapping[str, Any]) -> tuple[str, ...]:
    """How the code that exported a bundle differs from this checkout's, one text each.

    Compared: the exporting checkout's commit (``code_commit``), the cache's and agents'
    format versions and the versions of :data:`BUNDLE_PACKAGES` and Python. A difference does
    not refuse the bundle: entries this code would not read are listed as stale
    (:func:`stale_reason`), and ``verify`` names any entry a page misses.
    """
    here = {
        "code commit": git_commit(),
        "cache format": FORMAT,
        "agent format": AGENT_FORMAT,
        **package_versions(BUNDLE_PACKAGES),
    }
    theirs = {
        "code commit": manifest.get("code_commit"),
        "cache format": manifest.get("cache_format"),
        "agent format": manifest.get("agent_format"),
        **dict(manifest.get("versions") or {}),
    }
    return tuple(
        f"{name} {theirs.get(name)} (here {value})"
        for name, value in here.items()
        if theirs.get(name) != value
    )


def _parse_numbers(data: bytes, origin: str) -> tuple[str, str, dict[str, dict[str, Any]]]:
    try:
        table = json.loads(data)
        pages = {
            str(page): {str(n): literal_value(text) for n, text in values.items()}
            for page, values in table["pages"].items()
        }
        return str(table["profile"]), str(table["commit"]), pages
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{origin}: {NUMBERS} is malformed ({error})") from None


def import_bundle(
    source: str | os.PathLike[str],
    sha256: str | None = None,
    root: str | os.PathLike[str] | None = None,
) -> ImportReport:
    """Imports a bundle's entries into the artifact store, every file verified first.

    Args:
        source: the archive's path, or its URL (downloaded with pooch, never during a build).
        sha256: the archive's SHA-256 (hex): required for a URL, checked when given.
        root: the artifact store (default :func:`~polycstr_lib.toolkit.store.artifact_dir`).

    Returns:
        What was imported, kept or left out, and the bundle's numbers.

    Raises:
        ValueError: a URL without ``sha256``, an archive whose hash is not ``sha256``, an
            unreadable or malformed archive, or a tampered one: a file whose size or hash is
            not the one ``bundle.json`` lists (the message names the entry and file), an
            entry whose manifest does not match its files, a member not listed. Nothing of
            such a bundle is imported.
        FileNotFoundError: no file at ``source``.
    """
    archive = _local_archive(source, sha256)
    store = Path(root) if root is not None else artifact_dir()
    store.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=store, prefix=".bundle-import-"))
    try:
        staged = _unpack(archive, staging)
        if BUNDLE_MANIFEST not in staged:
            raise ValueError(f"{archive}: no {BUNDLE_MANIFEST}; not a bundle")
        try:
            manifest = json.loads((staging / BUNDLE_MANIFEST).read_bytes())
            version = manifest["bundle_format"]
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{archive}: {BUNDLE_MANIFEST} is unreadable") from None
        if version != BUNDLE_FORMAT:
            raise ValueError(
                f"{archive}: bundle format {version!r}; this code reads format {BUNDLE_FORMAT}"
            )
        listed = _verify(archive, staged, manifest)
        manifests = {e.label: _entry_manifest(staging, e, archive) for e in listed}
        profile, commit, numbers = _parse_numbers((staging / NUMBERS).read_bytes(), str(archive))
        # everything checked out: from here on, entries move into the store one by one
        imported, present, differing, stale = [], [], [], []
        for entry in listed:
            reason = stale_reason(entry.kind, entry.name, manifests[entry.label])
            if reason is not None:
                stale.append((entry.label, reason))
                continue
            target = store / entry.kind / entry.name
            if is_complete(target) and (mine := read_entry(target)) is not None:
                present.append(entry.label)
                theirs = manifests[entry.label]["files"]
                if {n: r["sha256"] for n, r in mine.manifest["files"].items()} != {
                    n: r["sha256"] for n, r in theirs.items()
                }:
                    differing.append(entry.label)
                continue
            invalidate(target)  # an unfinished or unreadable entry, rebuilt from the bundle
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staging / ENTRIES / entry.kind / entry.name, target)
            imported.append(entry.label)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ImportReport(
        tuple(imported),
        tuple(present),
        tuple(differing),
        tuple(stale),
        profile,
        commit,
        numbers,
        code_differences(manifest),
    )


def read_numbers(source: str | os.PathLike[str]) -> tuple[str, dict[str, dict[str, Any]]]:
    """The profile and glued values of a bundle (``numbers.json``, checked against
    ``bundle.json``), without importing anything.

    Raises:
        ValueError: no ``numbers.json`` or ``bundle.json``, or a hash that does not match.
    """
    path = Path(source)
    found: dict[str, bytes] = {}
    for name, stream in _members(path):
        if name in (BUNDLE_MANIFEST, NUMBERS) and stream is not None:
            found[name] = stream.read()
    if set(found) != {BUNDLE_MANIFEST, NUMBERS}:
        raise ValueError(f"{path}: not a bundle (no {BUNDLE_MANIFEST} and {NUMBERS})")
    record = json.loads(found[BUNDLE_MANIFEST]).get("numbers", {})
    if _record(found[NUMBERS]) != record:
        raise ValueError(f"{path}: {NUMBERS} does not match {BUNDLE_MANIFEST}")
    profile, _, numbers = _parse_numbers(found[NUMBERS], str(path))
    return profile, numbers


# ----------------------------------------------------------------------------------------------
# Comparing
# ----------------------------------------------------------------------------------------------
def is_timing(name: str) -> bool:
    """Whether a glue name holds a timing (see :data:`TIMING_MARKERS`)."""
    return any(marker in name for marker in TIMING_MARKERS)


def timing_free(pages: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The glued values without timings (machine-dependent, so never compared)."""
    return {
        page: {name: value for name, value in values.items() if not is_timing(name)}
        for page, values in pages.items()
    }


#: Where ``verify`` executes the pages (never ``book/executed``, the book's own build).
VERIFY_DIR = EXECUTED_DIR.parents[1] / "_build" / "verify"


@dataclasses.dataclass(frozen=True)
class Verification:
    """The outcome of :func:`verify_build`."""

    pages: int  # pages compared
    values: int  # glued values compared (timings left out)
    timings: int  # timing values left out
    differences: tuple[tuple[str, str, Any, Any], ...]  # (page, name, expected, rebuilt)


def compare_numbers(
    expected: Mapping[str, Mapping[str, Any]],
    rebuilt: Mapping[str, Mapping[str, Any]],
    pages: list[str] | None = None,
) -> Verification:
    """Compares two builds' glued values, timings left out (:func:`is_timing`).

    Args:
        expected: the reference build's values (a bundle's ``numbers.json``).
        rebuilt: the values of the pages executed again.
        pages: the pages to compare (default: every page of either build).
    """
    from polycstr_lib.book.glue import differing_numbers

    names = pages if pages is not None else list(dict.fromkeys([*expected, *rebuilt]))
    mine = timing_free({p: expected.get(p, {}) for p in names})
    theirs = timing_free({p: rebuilt.get(p, {}) for p in names})
    every = sum(len(expected.get(p, {})) for p in names)
    values = sum(len(v) for v in mine.values())
    return Verification(len(names), values, every - values, tuple(differing_numbers(mine, theirs)))


def verify_build(
    expected: Mapping[str, Mapping[str, Any]],
    profile: str,
    executed_dir: str | os.PathLike[str] = VERIFY_DIR,
    only: list[str] | None = None,
) -> Verification:
    """Executes the book's pages with training off and compares their numbers with
    ``expected``.

    The pages are executed (papermill, :func:`~polycstr_lib.book.pipeline.execute_notebooks`)
    into ``executed_dir`` with :data:`~polycstr_lib.toolkit.offline.NO_TRAINING_ENV` set, so
    a page whose entry is not in the store stops with the entry's name instead of training.

    Args:
        expected: the reference build's glued values, ``{page: {name: value}}``.
        profile: the profile the reference build was made with.
        executed_dir: where the pages are executed (not ``book/executed``).
        only: page stems to execute and compare (default: all).

    Raises:
        ValueError: ``executed_dir`` is the book's own folder, an unknown page, or a page
            that would train (:class:`~polycstr_lib.toolkit.offline.TrainingOff`, through
            papermill's error naming the cell).
    """
    from polycstr_lib.book.pipeline import execute_notebooks
    from polycstr_lib.toolkit.offline import NO_TRAINING_ENV

    folder = Path(executed_dir).resolve()
    if folder == EXECUTED_DIR.resolve():
        raise ValueError(f"verify executes the pages elsewhere than the book's {EXECUTED_DIR}")
    for stale in folder.glob("*.ipynb"):  # a page of an earlier verification is no evidence
        if only is None or stale.name.split(".")[0] in only:
            stale.unlink()
    old = os.environ.get(NO_TRAINING_ENV)
    os.environ[NO_TRAINING_ENV] = "1"  # the kernels papermill starts inherit it
    try:
        execute_notebooks(profile, only=only, executed_dir=folder)
    except Exception as error:
        if not hasattr(error, "ename"):  # not a papermill execution error
            raise
        # a cell raised (TrainingOff: an entry the bundle does not have); papermill says which
        failed = sorted(folder.glob("*.failed.ipynb"), key=lambda p: p.stat().st_mtime)
        where = f" (its output up to there: {failed[-1]})" if failed else ""
        raise ValueError(f"a page stopped: {error.ename}: {error.evalue}{where}") from None
    finally:
        if old is None:
            os.environ.pop(NO_TRAINING_ENV, None)
        else:
            os.environ[NO_TRAINING_ENV] = old
    return compare_numbers(expected, glued_numbers(folder), only)
