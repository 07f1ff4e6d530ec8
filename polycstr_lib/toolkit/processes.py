"""How many worker processes a job of independent parts is spread over."""

from __future__ import annotations

import os


def worker_count(processes: int | None, parts: int, worth_starting: bool) -> int:
    """The processes for ``parts`` independent parts: at most ``processes`` and ``parts``.

    Args:
        processes: the most processes (None: the machine's CPUs).
        parts: independent parts of the job (episodes, agents, models).
        worth_starting: False for a job too small to repay starting a process (seconds):
            it stays in this process.

    Raises:
        ValueError: ``processes`` is not a positive int.
    """
    most = (os.cpu_count() or 1) if processes is None else processes
    if isinstance(most, bool) or not isinstance(most, int) or most < 1:
        raise ValueError(f"processes must be a positive int, got {processes!r}")
    if not worth_starting:
        return 1
    return max(1, min(most, parts))
