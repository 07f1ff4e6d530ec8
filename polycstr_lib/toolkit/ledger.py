"""The task ledger: one JSON line per task a process actually runs (opt-in, for plans and rates).

When the environment variable :data:`LEDGER_ENV` names a file, the library's entry points that
do work (training an agent ensemble or a cost model, a closed-loop rollout, an NMPC run, a
correction sweep) append one line to it after each task they ran: its kind, what it was
(scenario, seeds, steps, episodes, ...), its wall time and the kind of the task it ran inside
(``within``: a rollout inside a sweep is part of the sweep). Cached results are not tasks: a
cache hit writes nothing. Without the variable nothing is written and nothing is timed.

The book's build turns it on (``tasks.jsonl`` beside the executed pages): the plan compares its
task counts with it, and takes its rates from it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Names the ledger file; unset or empty: no ledger.
LEDGER_ENV = "POLYCSTR_TASK_LEDGER"

#: The page being executed (set by the book's build): each record names it.
PAGE_ENV = "POLYCSTR_TASK_PAGE"

_STACK: list[str] = []  # kinds of the tasks running in this process, outermost first


@contextmanager
def ledger_task(kind: str, **fields: Any) -> Iterator[None]:
    """Records the enclosed work as one task of ``kind`` when it completes (and a ledger is on).

    Args:
        kind: ``"train"``, ``"cost_model"``, ``"rollout"``, ``"nmpc"`` or ``"sweep"``.
        **fields: JSON values that say what the task is (scenario, seeds, steps, ...).
    """
    path = os.environ.get(LEDGER_ENV)
    if not path:
        yield
        return
    within = _STACK[-1] if _STACK else None
    _STACK.append(kind)
    start = time.perf_counter()
    try:
        yield
    finally:
        _STACK.pop()
    _append(
        path, {"kind": kind, **fields, "seconds": time.perf_counter() - start, "within": within}
    )


def record_task(kind: str, seconds: float, **fields: Any) -> None:
    """Records one finished task of ``kind`` that took ``seconds`` (when a ledger is on).

    For work that contains no other recorded task (training); see :func:`ledger_task`.
    """
    path = os.environ.get(LEDGER_ENV)
    if path:
        within = _STACK[-1] if _STACK else None
        _append(path, {"kind": kind, **fields, "seconds": float(seconds), "within": within})


def _append(path: str, record: dict[str, Any]) -> None:
    record["page"] = os.environ.get(PAGE_ENV)
    line = json.dumps(record, default=str) + "\n"
    # one write of one short line in append mode: lines of parallel workers never interleave
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)


def read_ledger(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a ledger file, in the order written (an absent file: none).

    Raises:
        ValueError: a line that is not a JSON object (naming the file and line).
    """
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict) or "kind" not in record:
            raise ValueError(f"{path}:{number}: not a task record")
        out.append(record)
    return out
