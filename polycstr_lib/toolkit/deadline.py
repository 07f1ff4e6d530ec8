"""The build's deadline: a time after which training stops at the end of its step, resumable.

With ``POLYCSTR_DEADLINE`` in the environment (an ISO 8601 time such as
``2026-12-03T14:00Z``; one without an offset is UTC), the training loop ends the gradient step
under way once the deadline has passed, writes its resume state as Ctrl-C makes it do
(:func:`polycstr_lib.agents.loop.deferred_interrupt`) and raises :class:`DeadlineReached`;
the same call later continues from that state to the bits of an uninterrupted run. The book
pipeline (``python -m polycstr_lib notebooks --deadline`` or ``--budget-minutes``) sets the
variable for the pages' kernels, starts no page after the deadline and exits with
:data:`EXIT_INCOMPLETE`, so that a time-limited job (the Pages workflow) can save its progress
and let the next run resume.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import time
from collections.abc import Iterator

__all__ = [
    "DEADLINE_ENV",
    "EXIT_INCOMPLETE",
    "DeadlineReached",
    "build_deadline",
    "deadline_after",
    "deadline_in_environment",
    "deadline_passed",
    "format_deadline",
    "parse_deadline",
]

#: The environment variable holding the deadline (ISO 8601).
DEADLINE_ENV = "POLYCSTR_DEADLINE"

#: Exit status of a build stopped by its deadline (``EX_TEMPFAIL`` of sysexits.h: the work so
#: far is saved, and running the same command again resumes it).
EXIT_INCOMPLETE = 75


class DeadlineReached(Exception):
    """The deadline passed: work stopped at a point the same command resumes from."""


def parse_deadline(text: str) -> float:
    """The deadline ``text`` (ISO 8601; UTC without an offset) as seconds since the epoch.

    Raises:
        ValueError: ``text`` is not an ISO 8601 date and time (one line, naming it).
    """
    try:
        moment = _dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"deadline {text!r} is not an ISO 8601 time such as 2026-12-03T14:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return moment.timestamp()


def format_deadline(seconds: float) -> str:
    """Seconds since the epoch as the ISO 8601 UTC time that :func:`parse_deadline` reads."""
    moment = _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc).replace(microsecond=0)
    return moment.isoformat().replace("+00:00", "Z")


def deadline_after(minutes: float, now: float | None = None) -> float:
    """The deadline ``minutes`` from ``now`` (default: the current time), in epoch seconds.

    Raises:
        ValueError: ``minutes`` is not a positive finite number.
    """
    if not minutes > 0 or minutes == float("inf"):
        raise ValueError(f"the time budget must be a positive number of minutes; got {minutes}")
    return (time.time() if now is None else now) + 60.0 * minutes


def build_deadline() -> float | None:
    """The deadline of :data:`DEADLINE_ENV` in epoch seconds, or None when it is unset or empty.

    Raises:
        ValueError: the variable holds something other than an ISO 8601 time.
    """
    text = os.environ.get(DEADLINE_ENV, "").strip()
    return parse_deadline(text) if text else None


def deadline_passed(deadline: float | None, now: float | None = None) -> bool:
    """Whether ``deadline`` (epoch seconds; None: no deadline) is at or before ``now``."""
    return deadline is not None and (time.time() if now is None else now) >= deadline


@contextlib.contextmanager
def deadline_in_environment(deadline: float | None) -> Iterator[None]:
    """:data:`DEADLINE_ENV` set to ``deadline`` (None: left as it is) for processes started
    inside the block (the pages' kernels and their workers), restored afterwards."""
    if deadline is None:
        yield
        return
    previous = os.environ.get(DEADLINE_ENV)
    os.environ[DEADLINE_ENV] = format_deadline(deadline)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(DEADLINE_ENV, None)
        else:
            os.environ[DEADLINE_ENV] = previous
