"""Small helpers shared by everything that caches results on disk.

Trained agents and cost models are stored under :func:`artifact_dir`, in a folder named after
a short hash of their configuration (:func:`config_key`). Files are written atomically
(temporary file in the same directory, ``fsync``, ``os.replace``), so an interrupted run never
leaves a half-written artifact that a later run would mistake for a finished one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "artifact_dir",
    "atomic_torch_save",
    "atomic_write_bytes",
    "config_key",
    "key_field",
]

#: Environment variable that overrides the artifact directory.
ARTIFACTS_ENV = "POLYCSTR_ARTIFACTS"

#: The checkout this library runs from (the default home of the artifact store and the book).
REPO_ROOT = Path(__file__).resolve().parents[2]


class ReportedError(Exception):
    """A mistake of input or environment whose message says all: one line, no traceback.

    The command line prints it as one line; subclasses name the file or value at fault.
    """


#: Metadata flag of a dataclass field that is left out of :func:`config_to_dict` (and so of
#: :func:`config_key`) while it holds its default: an option added later keeps the keys of
#: every configuration that does not choose it, and changes them when it is chosen.
OMIT_DEFAULT = "omit_default_from_key"


def key_field(default: Any) -> Any:
    """A dataclass field with ``default`` that no cache key sees while it holds the default."""
    return dataclasses.field(default=default, metadata={OMIT_DEFAULT: True})


def _jsonable(value: Any) -> Any:
    """Converts dataclasses, tuples, paths and numpy scalars into plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not (f.metadata.get(OMIT_DEFAULT) and getattr(value, f.name) == f.default)
        }
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return value.item()
    return value


def config_to_dict(config: Any) -> dict[str, Any]:
    """Returns a dataclass instance (possibly nested) as a JSON-compatible dict.

    Args:
        config: A dataclass instance.

    Returns:
        The fields as plain Python values (tuples become lists).
    """
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"expected a dataclass instance, got {type(config).__name__}")
    return _jsonable(config)


def config_key(config: Any, length: int = 12) -> str:
    """Returns a stable short hash of a dataclass instance's fields.

    The hash covers the class name and all fields (nested dataclasses included) serialised
    as JSON with sorted keys, so it does not depend on the Python session or field order.

    Args:
        config: A dataclass instance.
        length: Number of hexadecimal characters to keep.

    Returns:
        A lowercase hexadecimal string of ``length`` characters.
    """
    payload = {"type": type(config).__name__, "fields": config_to_dict(config)}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def artifact_dir() -> Path:
    """Returns the project's cache directory (created if missing).

    ``$POLYCSTR_ARTIFACTS`` if set, else ``<repo>/artifacts``.
    """
    env = os.environ.get(ARTIFACTS_ENV)
    path = Path(env) if env else REPO_ROOT / "artifacts"
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{ARTIFACTS_ENV}={path} is a file, not a folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically.

    The bytes go to a temporary file in the same directory, which is flushed, fsynced and
    then renamed over ``path``. On any error the temporary file is removed and ``path`` is
    left as it was.

    Args:
        path: Destination file; its parent directory is created if needed.
        data: The complete file content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the writer's pid and host in the name let a later process tell a killed write's file
    # (removed by polycstr_lib.toolkit.cache.open_store) from one being written now
    owner = f"{os.getpid()}@{socket.gethostname()}"
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{owner}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """Saves ``obj`` with :func:`torch.save` atomically (see :func:`atomic_write_bytes`).

    Args:
        obj: Anything :func:`torch.save` accepts.
        path: Destination file.
    """
    import torch  # here, not at the top: the book's Sphinx extension imports this module

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())
