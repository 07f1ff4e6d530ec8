"""The one cache helper: entries keyed by kind and configuration, written atomically under a
manifest and verified on every load.

Every cache of the library (agent runs, resume and continuation states, cost models, cost-model
ensembles, correction sweeps, NMPC runs) stores an *entry*: a folder
``<root>/<kind>/<prefix>-<config_key(config)>/`` (see :func:`entry_path`) holding its files and
a ``manifest.json`` written last, which marks the entry complete. The manifest records the
format version (:data:`FORMAT`), the keyed configuration as a dict, each file's SHA-256 and
size, the dtypes of its tables and free-form ``info``. A configuration trained on data includes
the data's :func:`array_fingerprint` among its fields, so other data is another key.

:func:`read_entry` checks every file against the manifest before anything is decoded. A missing,
truncated or altered file, or an unreadable manifest, is never used: the entry is moved aside
to ``<entry>.corrupt-<timestamp>`` with one warning line naming the file and what was wrong,
and the caller rebuilds it. No code runs from a file: files are decoded by their extension
(``.pt`` with ``torch.load(weights_only=True)``, ``.json``, ``.csv`` with the recorded dtypes,
``.npz`` without pickles); nothing is ever unpickled. :func:`invalidate` removes an entry (the
``force=True`` path of every cache), and :func:`open_store` removes the temporary files of
atomic writes that were killed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import socket
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from polycstr_lib.toolkit.store import (
    ReportedError,
    artifact_dir,
    atomic_write_bytes,
    config_key,
    config_to_dict,
)

__all__ = [
    "FORMAT",
    "MANIFEST",
    "CacheWarning",
    "CorruptEntry",
    "Entry",
    "array_fingerprint",
    "entries",
    "entry_info",
    "entry_path",
    "invalidate",
    "is_complete",
    "load_entry",
    "move_aside",
    "open_store",
    "read_entry",
    "remove_stale_tmp",
    "write_entry",
]

#: Version of the entry layout (manifest fields, file encodings). Entries of another version
#: are not read: they are rebuilt.
FORMAT = 2

#: The file that marks an entry complete and lists its files' hashes.
MANIFEST = "manifest.json"

#: A temporary file of an atomic write older than this is left over from a killed process.
STALE_TMP_S = 3600.0

T = TypeVar("T")


class CacheWarning(UserWarning):
    """A cache entry failed its integrity check and was moved aside to be rebuilt."""


class CorruptEntry(ReportedError):
    """A cache entry (or one of its files) that must not be used; the message names the file."""


# ----------------------------------------------------------------------------------------------
# Keys
# ----------------------------------------------------------------------------------------------
def array_fingerprint(arrays: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> str:
    """Short SHA-256 of named arrays (name, dtype, shape and bytes of each, in order).

    Args:
        arrays: ``name → array`` (or ``(name, array)`` pairs); anything ``np.asarray`` takes.

    Returns:
        16 lowercase hexadecimal characters.
    """
    items = arrays.items() if isinstance(arrays, Mapping) else arrays
    h = hashlib.sha256()
    for name, value in items:
        arr = np.ascontiguousarray(np.asarray(value))
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:16]


def open_store(kind: str, root: str | os.PathLike[str] | None = None) -> Path:
    """The folder of one kind of entry, created if missing; stale ``*.tmp`` files removed.

    Args:
        kind: the store's name (``"agents"``, ``"cost_models"``, ...).
        root: the cache root; default :func:`~polycstr_lib.toolkit.store.artifact_dir`.
    """
    folder = (Path(root) if root is not None else artifact_dir()) / kind
    folder.mkdir(parents=True, exist_ok=True)
    marker = str(folder.resolve())
    if marker not in _OPENED:
        removed = remove_stale_tmp(folder)
        if removed:
            names = ", ".join(str(p.relative_to(folder)) for p in removed[:3])
            more = f" and {len(removed) - 3} more" if len(removed) > 3 else ""
            warnings.warn(
                f"{folder}: removed {len(removed)} unfinished write(s) of a stopped process "
                f"({names}{more}); what they were writing is rebuilt when next asked for",
                CacheWarning,
                stacklevel=2,
            )
        _OPENED.add(marker)
    return folder


_OPENED: set[str] = set()
_TMP_OWNER = re.compile(r"\.(\d+)@(.+)\.[^.]+\.tmp$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists
        return True
    return True


def remove_stale_tmp(folder: Path, max_age_s: float = STALE_TMP_S) -> list[Path]:
    """Removes the ``*.tmp`` files under ``folder`` whose atomic write was killed.

    A temporary file is stale when it is older than ``max_age_s`` or when the process that
    writes it (named in the file name on this host) no longer exists; a write in progress in
    another live process is left alone.

    Returns:
        The files removed.
    """
    removed = []
    now, host = time.time(), socket.gethostname()
    for path in folder.rglob("*.tmp"):
        try:
            age = now - path.stat().st_mtime
        except FileNotFoundError:
            continue
        owner = _TMP_OWNER.search(path.name)
        dead = owner is not None and owner.group(2) == host and not _alive(int(owner.group(1)))
        if age > max_age_s or dead:
            try:
                path.unlink()
                removed.append(path)
            except FileNotFoundError:
                pass
    return removed


def entry_path(
    kind: str, config: Any, prefix: str = "", root: str | os.PathLike[str] | None = None
) -> Path:
    """The folder of the entry of ``config``: ``<root>/<kind>/<prefix>-<config_key(config)>``.

    Args:
        kind: the store (see :func:`open_store`).
        config: a frozen dataclass with every setting that changes the entry's content,
            including the fingerprint of the training data where the entry is trained on data.
        prefix: a readable head of the folder name (scenario, algorithm, ...).
        root: the cache root; default :func:`~polycstr_lib.toolkit.store.artifact_dir`.
    """
    key = config_key(config)
    return open_store(kind, root) / (f"{prefix}-{key}" if prefix else key)


# ----------------------------------------------------------------------------------------------
# Encoding by extension
# ----------------------------------------------------------------------------------------------
def _encode(name: str, value: Any) -> tuple[bytes, dict[str, str] | None]:
    """The bytes of one file (and the dtypes of a table)."""
    if isinstance(value, bytes):
        return value, None
    suffix = Path(name).suffix
    if suffix == ".pt":
        import torch  # here: the book's Sphinx extension imports the toolkit without torch

        buffer = io.BytesIO()
        torch.save(value, buffer)
        return buffer.getvalue(), None
    if suffix == ".json":
        return json.dumps(value, indent=1, allow_nan=True).encode(), None
    if suffix == ".csv":
        dtypes = {str(c): str(t) for c, t in value.dtypes.items()}
        if len(dtypes) != len(value.columns):
            raise ValueError(f"{name}: column names must be distinct strings")
        return value.to_csv(index=False).encode(), dtypes
    if suffix == ".npz":
        buffer = io.BytesIO()
        np.savez(buffer, **{k: np.asarray(v) for k, v in value.items()})
        return buffer.getvalue(), None
    raise ValueError(f"{name}: no encoding for {suffix!r} files; pass bytes")


def _decode(name: str, data: bytes, dtypes: Mapping[str, str] | None) -> Any:
    suffix = Path(name).suffix
    if suffix == ".pt":
        import torch

        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if suffix == ".json":
        return json.loads(data)
    if suffix == ".csv":
        import pandas as pd

        if dtypes is None:
            return pd.read_csv(io.BytesIO(data))
        text = [c for c, t in dtypes.items() if t in ("object", "str", "string")]
        frame = pd.read_csv(
            io.BytesIO(data),
            dtype={c: str for c in text},
            keep_default_na=False,
            na_values={c: [""] for c in dtypes if c not in text},
            float_precision="round_trip",  # the default parser may be off by one ulp
        )
        if list(frame.columns) != list(dtypes):
            raise ValueError(f"columns {list(frame.columns)} are not {list(dtypes)}")
        return frame.astype(dict(dtypes))
    if suffix == ".npz":
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            return {k: arrays[k] for k in arrays.files}
    return data


# ----------------------------------------------------------------------------------------------
# Entries
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Entry:
    """A verified entry: its manifest and the bytes of its files (checked against it)."""

    directory: Path
    manifest: dict[str, Any]
    files: dict[str, bytes]

    @property
    def info(self) -> dict[str, Any]:
        return self.manifest.get("info", {})

    def load(self, name: str) -> Any:
        """File ``name`` decoded by its extension (no pickles); raises :class:`CorruptEntry`."""
        if name not in self.files:
            raise CorruptEntry(f"{name}: not in the manifest")
        try:
            return _decode(name, self.files[name], self.manifest.get("dtypes", {}).get(name))
        except Exception as error:  # noqa: BLE001 - any decoding failure means: do not use
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise CorruptEntry(f"{name}: unreadable ({type(error).__name__}: {first})") from None


def write_entry(
    directory: str | os.PathLike[str],
    files: Mapping[str, Any],
    config: Any,
    info: Mapping[str, Any] | None = None,
) -> None:
    """Writes an entry: every file atomically, then the manifest (which marks it complete).

    Args:
        directory: the entry's folder (from :func:`entry_path`).
        files: file name → content: ``bytes`` as is, else encoded by the extension (``.pt``:
            ``torch.save`` of tensors and plain values; ``.json``; ``.csv``: a DataFrame,
            dtypes recorded; ``.npz``: a mapping of arrays).
        config: the keyed configuration (a dataclass, or a dict of plain values).
        info: further JSON values kept in the manifest (metadata, progress).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name in files:
        _check_name(name)
    (directory / MANIFEST).unlink(missing_ok=True)  # incomplete from here on
    for old in directory.iterdir():
        if old.is_file() and old.name not in files and not old.name.endswith(".tmp"):
            old.unlink(missing_ok=True)
    records, dtypes = {}, {}
    for name, value in files.items():
        data, types = _encode(name, value)
        atomic_write_bytes(directory / name, data)
        records[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        if types is not None:
            dtypes[name] = types
    manifest = {
        "format": FORMAT,
        "key": directory.name,
        "config": config if isinstance(config, dict) else config_to_dict(config),
        "files": records,
        "dtypes": dtypes,
        "info": dict(info or {}),
    }
    atomic_write_bytes(directory / MANIFEST, json.dumps(manifest, indent=1).encode())


def _check_name(name: str) -> None:
    if not name or "/" in name or "\\" in name or name.startswith(".") or name == MANIFEST:
        raise ValueError(f"bad file name in a cache entry: {name!r}")


def _manifest(directory: Path) -> dict[str, Any]:
    """The parsed manifest; raises CorruptEntry when it cannot be used."""
    try:
        manifest = json.loads((directory / MANIFEST).read_bytes())
        files = manifest["files"]
        if not isinstance(files, dict) or not isinstance(manifest.get("format"), int):
            raise ValueError("no files or format")
        for name, record in files.items():
            _check_name(name)
            if not (isinstance(record["sha256"], str) and isinstance(record["size"], int)):
                raise ValueError(f"bad record of {name}")
    except FileNotFoundError:
        raise
    except Exception as error:  # noqa: BLE001
        raise CorruptEntry(f"{MANIFEST}: unreadable ({type(error).__name__})") from None
    return manifest


def is_complete(directory: str | os.PathLike[str]) -> bool:
    """Whether the entry's manifest exists (it is written last); nothing is verified."""
    return (Path(directory) / MANIFEST).is_file()


def entry_info(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The manifest of a complete entry without checking its files (for progress displays).

    Returns:
        The manifest, or None when the entry is incomplete.

    Raises:
        CorruptEntry: the manifest cannot be read.
    """
    directory = Path(directory)
    try:
        return _manifest(directory)
    except FileNotFoundError:
        return None


def read_entry(directory: str | os.PathLike[str], config: Any = None) -> Entry | None:
    """The entry in ``directory`` with every file checked against its manifest.

    Args:
        directory: the entry's folder.
        config: the configuration the entry must have been written for (None: any).

    Returns:
        The verified entry, or None when there is none to use: incomplete (no manifest), of
        another :data:`FORMAT` or configuration (to be rebuilt over), or corrupt (moved aside
        with a :class:`CacheWarning`).
    """
    directory = Path(directory)
    try:
        manifest = _manifest(directory)
    except FileNotFoundError:
        return None
    except CorruptEntry as error:
        move_aside(directory, str(error))
        return None
    if manifest["format"] != FORMAT:
        return None
    if config is not None:
        expected = config if isinstance(config, dict) else config_to_dict(config)
        if manifest.get("config") != json.loads(json.dumps(expected)):
            return None
    files = {}
    for name, record in manifest["files"].items():
        try:
            data = (directory / name).read_bytes()
        except FileNotFoundError:
            problem = "missing"
        except OSError as error:
            problem = f"unreadable ({type(error).__name__})"
        else:
            if len(data) < record["size"]:
                problem = f"truncated ({len(data)} of {record['size']} bytes)"
            elif len(data) != record["size"]:
                problem = f"size mismatch ({len(data)} bytes, manifest says {record['size']})"
            elif hashlib.sha256(data).hexdigest() != record["sha256"]:
                problem = "sha256 mismatch"
            else:
                files[name] = data
                continue
        move_aside(directory, f"{name}: {problem}")
        return None
    return Entry(directory, manifest, files)


def load_entry(
    directory: str | os.PathLike[str], decode: Callable[[Entry], T], config: Any = None
) -> T | None:
    """``decode(entry)`` of the verified entry, or None (see :func:`read_entry`).

    A file that passes its hash check but cannot be decoded safely (e.g. a pickle where a
    ``weights_only`` tensor file belongs: refused, never run) makes the entry corrupt too: it
    is moved aside with a warning naming the file, and None is returned.
    """
    entry = read_entry(directory, config)
    if entry is None:
        return None
    try:
        return decode(entry)
    except CorruptEntry as error:
        move_aside(Path(directory), str(error))
        return None


def move_aside(directory: str | os.PathLike[str], problem: str) -> Path | None:
    """Renames a corrupt entry to ``<entry>.corrupt-<timestamp>`` and warns once, naming the
    file and what was wrong; returns the new folder (None if the entry is already gone)."""
    directory = Path(directory)
    stamp = time.strftime("%Y%m%dT%H%M%S") + f"-{time.time_ns() % 1_000_000_000:09d}"
    target = directory.with_name(f"{directory.name}.corrupt-{stamp}")
    try:
        directory.rename(target)
    except FileNotFoundError:
        return None
    warnings.warn(
        f"cache entry {directory.parent.name}/{directory.name}: {problem}; "
        f"moved aside to {target.name}, rebuilding",
        CacheWarning,
        stacklevel=3,
    )
    return target


def invalidate(directory: str | os.PathLike[str]) -> bool:
    """Removes an entry (manifest first, so that a reader never sees half of it).

    Returns:
        Whether there was an entry.
    """
    directory = Path(directory)
    if not directory.exists():
        return False
    (directory / MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(directory, ignore_errors=True)
    return True


def entries(kind: str, root: str | os.PathLike[str] | None = None) -> list[Path]:
    """The entry folders of a store (complete or not; moved-aside ones excluded), sorted."""
    folder = open_store(kind, root)
    return sorted(p for p in folder.iterdir() if p.is_dir() and ".corrupt-" not in p.name)
