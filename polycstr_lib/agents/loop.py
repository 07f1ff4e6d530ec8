"""The gradient loop of an ensemble, with resume and continuation states written as it trains.

While an ensemble trains, its whole training state (weights, optimiser moments, generators,
the log so far) is written atomically every :data:`RESUME_EVERY_S` seconds and at every
snapshot; a later call for the same seeds, settings and data continues from there, to the same
bits as an uninterrupted run. At the budget the state is kept as a continuation state instead,
so that a larger budget continues from it.

Both are entries of :mod:`polycstr_lib.toolkit.cache` (stores ``resume`` and ``continue``):
``state.pt`` holds tensors and plain values only (NumPy arrays of the log as tensors), loaded
with ``weights_only=True``; the step, budget, seeds and wall time are in the manifest's
``info``, which :func:`training_in_progress` reads without loading the state. A state whose
file fails its check is moved aside with a warning and training starts from the next best
state (or from scratch), to the same bits.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from polycstr_lib.agents import (
    Agent,
    Scalers,
    make_agent,
    sample_batch,
)
from polycstr_lib.agents.config import TrainConfig, group_key, precision_context
from polycstr_lib.agents.data import TrainingTensors
from polycstr_lib.reactor.env import ACT_DIM, OBS_DIM
from polycstr_lib.toolkit.cache import (
    FORMAT,
    CorruptEntry,
    Entry,
    entry_info,
    entry_path,
    invalidate,
    load_entry,
    move_aside,
    open_store,
    write_entry,
)
from polycstr_lib.toolkit.deadline import DeadlineReached, build_deadline, deadline_passed
from polycstr_lib.toolkit.store import artifact_dir

#: Seconds of training between two writes of an ensemble's resume state (the state is also
#: written at every snapshot). One write of a 10-seed IQL state is about 50 MB.
RESUME_EVERY_S = 120.0


@dataclass(frozen=True)
class ResumeKey:
    """What a resume (or continuation) state belongs to: settings, seeds and data."""

    group: str  # group_key of the settings (all but seed and steps)
    seeds: tuple[int, ...]  # the members, sorted
    data: str | None  # fingerprint of the training data


def resume_path(config: TrainConfig, seeds: Sequence[int], fingerprint: str | None) -> Path:
    """Where the resume state of an ensemble lives: one entry per settings, seeds and data."""
    config = config.resolved()
    key = ResumeKey(group_key(config), tuple(sorted(int(s) for s in seeds)), fingerprint)
    return entry_path("resume", key, f"{config.algorithm}-{config.scenario}")


def continuation_path(resume: Path) -> Path:
    """Where the final state of the ensemble whose resume state is ``resume`` is kept."""
    return open_store("continue", resume.parent.parent) / resume.name


def _optimizers(agent: Agent) -> dict[str, torch.optim.Optimizer]:
    return {k: v for k, v in vars(agent).items() if isinstance(v, torch.optim.Optimizer)}


def _tensors(value: Any) -> Any:
    """NumPy arrays in nested lists and dicts as tensors (``weights_only`` loads those)."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, dict):
        return {k: _tensors(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_tensors(v) for v in value]
    return value


def _arrays(value: Any) -> Any:
    """The inverse of :func:`_tensors` for the log (same dtypes, same bits)."""
    if isinstance(value, torch.Tensor):
        return value.numpy()
    if isinstance(value, dict):
        return {k: _arrays(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_arrays(v) for v in value]
    return value


def _write_state(
    path: Path,
    config: TrainConfig,
    agent: Agent,
    generators: Sequence[torch.Generator],
    step: int,
    log: tuple[list[dict[str, Any]], dict[str, np.ndarray], int],
    seconds: float,
    budget: int,
) -> None:
    """Writes everything the loop needs to continue after ``step`` to the same bits (and, for
    :func:`training_in_progress`, the ``budget`` it runs to) as the entry ``path``."""
    rows, sums, count = log
    seeds = [int(s) for s in agent.state_dict()["seeds"]]
    state = {
        "agent": agent.state_dict(),
        "optimizers": {k: o.state_dict() for k, o in _optimizers(agent).items()},
        "agent_generators": [g.get_state() for g in getattr(agent, "generators", [])],
        "generators": [g.get_state() for g in generators],
        "torch_rng": torch.get_rng_state(),
        "rows": _tensors(rows),
        "sums": _tensors(sums),
    }
    key = {"entry": path.name, "group": group_key(config), "seeds": sorted(seeds)}
    info = {
        "algorithm": config.algorithm,
        "scenario": config.scenario,
        "seeds": seeds,
        "step": int(step),
        "budget": int(budget),
        "count": int(count),
        "seconds": float(seconds),
    }
    write_entry(path, {"state.pt": state}, key, info)


def _read_info(path: Path) -> dict[str, Any] | None:
    """The ``info`` of a complete state entry of this format (the manifest only), or None;
    an unreadable manifest moves the entry aside."""
    try:
        manifest = entry_info(path)
    except CorruptEntry as error:
        move_aside(path, str(error))
        return None
    if manifest is None or manifest["format"] != FORMAT:
        return None
    return manifest["info"]


def training_in_progress(directory: Path | None = None) -> pd.DataFrame:
    """The ensembles whose training was interrupted or is running now, from their resume states.

    A long build (the paper profile trains for hours inside a notebook cell) can be followed
    from another terminal with ``python -m polycstr_lib progress``.

    Args:
        directory: the resume folder (default ``artifact_dir() / "resume"``).

    Returns:
        One row per resume state, sorted by folder name: ``algorithm``, ``scenario``, ``seeds``
        (count), ``step``, ``budget`` (0 when the state predates this field), ``seconds`` of
        training so far, ``steps_per_s``, ``eta_s`` (NaN without a budget) and ``age_s`` (since
        the state was written: a state not rewritten for much longer than
        :data:`RESUME_EVERY_S` belongs to a stopped run, which the next call resumes).
        States with an unreadable manifest are skipped with a warning (only the manifests are
        read, not the states).
    """
    folder = directory or artifact_dir() / "resume"
    rows = []
    paths = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    for path in paths:
        if ".corrupt-" in path.name:
            continue
        try:
            manifest = entry_info(path)
            if manifest is None:  # being written, or a killed write
                continue
            info = manifest["info"]
            step, seconds, budget = int(info["step"]), float(info["seconds"]), info["budget"]
            seeds = len(info["seeds"])
            algorithm, scenario = info["algorithm"], info["scenario"]
        except (CorruptEntry, KeyError, TypeError, ValueError) as error:
            what = f"no field {error}" if isinstance(error, KeyError) else str(error)
            warnings.warn(
                f"skipping unreadable resume state {path.name} (its manifest.json: {what}); "
                "nothing in it was loaded",
                stacklevel=2,
            )
            continue
        rate = step / seconds if seconds > 0 else float("nan")
        rows.append(
            {
                "algorithm": algorithm,
                "scenario": scenario,
                "seeds": seeds,
                "step": step,
                "budget": int(budget),
                "seconds": seconds,
                "steps_per_s": rate,
                "eta_s": (budget - step) / rate if budget and rate > 0 else float("nan"),
                "age_s": time.time() - (path / "manifest.json").stat().st_mtime,
            }
        )
    columns = ["algorithm", "scenario", "seeds", "step", "budget", "seconds", "steps_per_s"]
    return pd.DataFrame(rows, columns=[*columns, "eta_s", "age_s"])


def _load_start(resume: Path | None, seeds: Sequence[int], not_after: int) -> dict[str, Any] | None:
    """The state to start from: the resume state or the kept final state of a shorter run
    (:func:`continuation_path`), whichever is further along while still *before* step
    ``not_after`` (the loop must pass every budget it is asked to save)."""
    if resume is None:
        return None
    paths = (resume, continuation_path(resume))
    states = [_load_resume(p, seeds, not_after - 1) for p in paths]
    states = [s for s in states if s is not None]
    return max(states, key=lambda s: s["step"]) if states else None


def _load_resume(path: Path | None, seeds: Sequence[int], not_after: int) -> dict[str, Any] | None:
    """The resume state at ``path`` if it is for ``seeds`` and at most ``not_after`` steps,
    verified (a state that fails its check is moved aside with a warning: it only costs the
    time it saved)."""
    if path is None:
        return None
    info = _read_info(path)
    if info is None or list(info["seeds"]) != list(seeds) or info["step"] > not_after:
        return None

    def decode(entry: Entry) -> dict[str, Any]:
        state = entry.load("state.pt")
        if list(state["agent"]["seeds"]) != list(seeds):
            raise CorruptEntry("state.pt: seeds differ from the manifest")
        state["rows"], state["sums"] = _arrays(state["rows"]), _arrays(state["sums"])
        return {**state, **{k: entry.info[k] for k in ("step", "count", "seconds")}}

    return load_entry(path, decode)


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """Ctrl-C during a gradient step takes effect at the end of that step.

    Yields a function that says whether SIGINT arrived. Only in the main thread (a signal
    handler cannot be set elsewhere) and only where SIGINT is not ignored; elsewhere the
    function always says no and Ctrl-C acts as usual.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        yield lambda: False
        return
    arrived: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: arrived.append(signum))
    try:
        yield lambda: bool(arrived)
    finally:
        signal.signal(signal.SIGINT, previous)


def train_members(
    config: TrainConfig,
    seeds: Sequence[int],
    budget: int,
    save_at: Sequence[int],
    data: TrainingTensors,
    progress: bool,
    resume: Path | None = None,
    resume_not_after: int = 0,
) -> Iterator[tuple[int, Agent, list[pd.DataFrame], float]]:
    """The gradient-step loop of one ensemble (no caching of runs).

    Yields ``(step, agent, logs, seconds)`` at every step in ``save_at``: the ensemble, each
    member's log as a shorter run would have written it, and the wall time so far. With a
    ``resume`` path, the loop starts from the state saved there when it is at most
    ``resume_not_after`` steps in (no run asked for ends before it), writes its state there
    every :data:`RESUME_EVERY_S` seconds and at every step of ``save_at``, and removes it at
    the end. Ctrl-C (in the main thread) ends the loop after the current step, with its state
    written, by raising ``KeyboardInterrupt``; so does the build's deadline
    (:mod:`polycstr_lib.toolkit.deadline`, in any thread or process), by raising
    :class:`~polycstr_lib.toolkit.deadline.DeadlineReached`.
    """
    deadline = build_deadline()  # read before any work: a bad value fails at once
    # fork_rng: anything that would touch the global RNG is seeded and then rolled back.
    with torch.random.fork_rng(devices=[]), contextlib.ExitStack() as stack:
        torch.manual_seed(seeds[0])
        scalers = Scalers.from_data(data, config.reward_scaling, config.action_scaling)
        agent = make_agent(config.algorithm, OBS_DIM, ACT_DIM, config.agent, scalers, seeds)
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        rows: list[dict[str, Any]] = []  # one per logging interval, values of shape (S,)
        sums: dict[str, np.ndarray] = {}
        count = 0
        first = 1
        elapsed = 0.0
        state = _load_start(resume, seeds, resume_not_after)
        if state is not None:
            agent.load_state_dict(state["agent"])
            for name, optimizer in _optimizers(agent).items():
                optimizer.load_state_dict(state["optimizers"][name])
            for g, g_state in zip(
                getattr(agent, "generators", []), state["agent_generators"], strict=True
            ):
                g.set_state(g_state)
            for g, g_state in zip(generators, state["generators"], strict=True):
                g.set_state(g_state)
            torch.set_rng_state(state["torch_rng"])
            rows, sums, count = state["rows"], state["sums"], state["count"]
            first, elapsed = state["step"] + 1, state["seconds"]
        start = time.perf_counter() - elapsed
        last_write = time.perf_counter()
        save = set(save_at)
        label = f"seeds {seeds[0]}" if len(seeds) == 1 else f"{len(seeds)} seeds"
        bar = tqdm(
            range(first, budget + 1),
            desc=f"{config.algorithm} {config.scenario} {label}",
            disable=not progress,
            mininterval=1.0,
            initial=first - 1,
            total=budget,
        )
        interrupted = stack.enter_context(deferred_interrupt())
        for step in bar:
            batch = sample_batch(data, config.batch_size, generators)
            with precision_context(config.precision):
                losses = agent.update(batch)
            for k, v in losses.items():
                sums[k] = sums[k] + v if k in sums else v.copy()
            count += 1
            boundary = step % config.log_interval == 0
            if boundary or step in save:
                means = {k: v / count for k, v in sums.items()}
                bad = [
                    s
                    for i, s in enumerate(seeds)
                    if not all(np.isfinite(v[i]) for v in means.values())
                ]
                if bad:
                    raise FloatingPointError(
                        f"non-finite loss at step {step} for seeds {bad}: {means}"
                    )
                row = {"step": step, **means, "time_s": time.perf_counter() - start}
                if boundary:
                    rows.append(row)
                    bar.set_postfix({k: f"{v.mean():.3g}" for k, v in means.items()}, refresh=False)
                    sums, count = {}, 0
                if step in save:
                    members = rows if boundary else [*rows, row]
                    logs = [_member_log(members, i) for i in range(len(seeds))]
                    yield step, agent, logs, time.perf_counter() - start
            late = step < budget and deadline_passed(deadline)  # a finished run is kept
            stop = interrupted() or late
            due = stop or step in save or time.perf_counter() - last_write >= RESUME_EVERY_S
            if resume is not None and step < budget and due:
                seconds = time.perf_counter() - start
                log = (rows, sums, count)
                _write_state(resume, config, agent, generators, step, log, seconds, budget)
                last_write = time.perf_counter()
            if stop:  # after the step and its state: the same call resumes from here
                bar.close()
                where = f"at step {step:,} of {budget:,}"
                what = f"{config.algorithm} {config.scenario} ({label})"
                if late:
                    raise DeadlineReached(f"deadline reached: {what} stopped {where}")
                raise KeyboardInterrupt(f"interrupted {where}")
        bar.close()
        if resume is not None:
            # The state at the budget is kept for a later, longer run of the same ensemble,
            # unless one further along is kept already (a shorter run must not undo its work).
            kept = continuation_path(resume)
            if _step_of(kept) < budget:
                seconds = time.perf_counter() - start
                log = (rows, sums, count)
                _write_state(kept, config, agent, generators, budget, log, seconds, budget)
            invalidate(resume)


def _step_of(path: Path) -> int:
    """The step of the training state at ``path`` (-1 when there is none)."""
    info = _read_info(path)
    return -1 if info is None else int(info.get("step", 0))


def _member_log(rows: Sequence[dict[str, Any]], index: int) -> pd.DataFrame:
    """Member ``index``'s columns of the ensemble's log rows."""
    return pd.DataFrame(
        [
            {k: (v[index] if isinstance(v, np.ndarray) else v) for k, v in row.items()}
            for row in rows
        ]
    )
