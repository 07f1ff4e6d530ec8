"""The no-training switch: a build that may only read the artifact store.

With ``POLYCSTR_NO_TRAINING=1`` in the environment (``make verify`` sets it), every cache of
the library that misses (an agent run, a cost model or ensemble, a correction sweep, an NMPC
run) raises :class:`TrainingOff` naming the entry instead of computing it. A reviewer who
imported a bundle (:mod:`polycstr_lib.book.bundle`) rebuilds the book from the bundle's
entries alone: a page that would train, because an entry is missing or no longer matches the
code, stops with the entry's name rather than quietly training for hours.

Each cache calls :func:`require_training` once, at the point where its miss leads to the
computation.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["NO_TRAINING_ENV", "TrainingOff", "require_training", "training_off"]

#: The environment variable that turns training (and every other cached computation) off.
NO_TRAINING_ENV = "POLYCSTR_NO_TRAINING"

_OFF_VALUES = ("", "0", "false", "no", "off")


class TrainingOff(ValueError):
    """A computation was asked for whose entry is not in the store, and training is off."""


def training_off() -> bool:
    """Whether :data:`NO_TRAINING_ENV` is set to a true value (anything but empty, ``0``,
    ``false``, ``no`` or ``off``)."""
    return os.environ.get(NO_TRAINING_ENV, "").strip().lower() not in _OFF_VALUES


def require_training(what: str, entry: str | os.PathLike[str]) -> None:
    """Allows a computation whose cache entry is missing, or raises when training is off.

    Args:
        what: what would be computed, e.g. ``"agent run"``.
        entry: the missing entry: its folder (named ``<kind>/<name>`` in the message, from
            its last two parts) or that text itself.

    Raises:
        TrainingOff: a :class:`ValueError`, when :func:`training_off`.
    """
    if not training_off():
        return
    path = Path(entry)
    name = f"{path.parent.name}/{path.name}" if path.parent.name else str(entry)
    raise TrainingOff(f"{what} not in the store and training is off ({NO_TRAINING_ENV}): {name}")
