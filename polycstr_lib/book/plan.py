"""What a build of the book will run, what is cached already, and how long the rest will take.

:func:`build_plan` turns a profile's page parameters (the checked dataclasses of
:mod:`polycstr_lib.book.parameters`) into frozen :class:`Task` records, one page after the
other in the book's order, using the same run lists as the library calls the notebooks make
(:func:`~polycstr_lib.agents.sweeps.seed_ensemble_configs`,
:func:`~polycstr_lib.analysis.curves.curve_runs`, ...). A task is ``cached`` (its cache entry
is in the store), ``shared`` (an earlier page of the same build makes it: the caches of
agents, cost models and NMPC runs are shared by key), ``missing`` (it will run) or ``runs``
(closed-loop evaluation, which is never cached). What cannot be known before a page runs is
stated on the task (``assumed``): the learning-curve budgets of the results pages before the
curves page has run with this profile (taken as the largest budget the curves may choose),
the extensions of unconfirmed curves (counted as if every curve were extended to its cap),
and the "+" rows of the results pages (counted as if every algorithm deployed a correction).

Seconds come from :class:`Rates`: measured by the last build (its task ledger,
:mod:`polycstr_lib.toolkit.ledger`, summarised in ``rates.json`` beside the executed pages),
else read from the training times the artifact store keeps in its manifests, else the stated
defaults of :data:`ASSUMED_RATES` scaled to this machine by its float32 matmul speed, measured
in a fraction of a second (:func:`machine_rates`). Training ensembles are spread over
``workers`` processes as :func:`~polycstr_lib.agents.sweeps.train_many` spreads them;
everything else runs in the page's process.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polycstr_lib.book.parameters import PAGES, ParameterError
from polycstr_lib.book.profiles import EXECUTED_DIR, effective_parameters, runs_for

KINDS = ("train", "cost_model", "evaluate", "sweep", "nmpc")

#: Status of a task: in the store, made by an earlier page of this build, to run, or never
#: cached (closed-loop evaluation runs every time).
STATUSES = ("cached", "shared", "missing", "runs")

#: Where a build keeps its plan, its task ledger and the rates measured from it.
PLAN_FILE, LEDGER_FILE, RATES_FILE = "plan.json", "tasks.jsonl", "rates.json"


@dataclass(frozen=True)
class Task:
    """One unit of work a page asks the library for."""

    page: str  # the executed page, e.g. "05_results_startup"
    kind: str  # one of KINDS
    scenario: str
    what: str  # the task in words
    algorithm: str = ""  # train: the agent's algorithm; cost_model: the model kind
    seeds: tuple[int, ...] = ()  # train: the seeds of the ensemble
    steps: int = 0  # train/cost_model: gradient steps; nmpc: steps per episode
    from_steps: int = 0  # train: steps already trained (a continued ensemble)
    members: int = 1  # cost_model: models trained as one
    episodes: int = 0  # evaluate: policy-episodes; sweep/nmpc: episodes per run
    calls: int = 0  # evaluate: batched rollouts the episodes are run in
    agents: int = 0  # sweep: base agents
    settings: int = 0  # sweep: grid size (the uncorrected base included)
    horizon: int = 0  # nmpc: prediction horizon
    max_members: int = 0  # train: the most seeds one ensemble trains at once
    status: str = "missing"  # one of STATUSES
    shared_with: str = ""  # status "shared": the page that makes it
    assumed: str = ""  # why it is counted although it may not run
    seconds: float = 0.0  # estimated wall time of this task alone (0 when not run)


@dataclass(frozen=True)
class Rates:
    """Measured (or assumed) speeds of this machine, each with its source."""

    #: algorithm → (a, b): seconds per gradient step of an ensemble of m seeds = a + b m.
    train: dict[str, tuple[float, float]]
    cost_model: float  # seconds per optimiser step and member
    rollout: float  # seconds per 200-step episode of an evaluation rollout
    sweep: float  # seconds per corrected 200-step episode (agent × setting × episode)
    nmpc: float  # seconds per NMPC solve and horizon step
    page: float  # seconds of a page beyond its tasks (kernel, imports, figures)
    rollout_call: float = 0.0  # seconds of a batched 200-step rollout beyond its episodes
    sweep_call: float = 0.0  # seconds of a sweep beyond its corrected episodes
    sources: dict[str, str] = field(default_factory=dict)  # rate name → where it came from

    def to_json(self) -> dict[str, Any]:
        """Plain values (for ``rates.json``)."""
        return {**dataclasses.asdict(self), "train": {k: list(v) for k, v in self.train.items()}}

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> Rates:
        """Rates written by :meth:`to_json`.

        Raises:
            ValueError: a missing or malformed rate.
        """
        try:
            train = {str(k): (float(v[0]), float(v[1])) for k, v in values["train"].items()}
            rest = {k: float(values[k]) for k in ("cost_model", "rollout", "sweep", "nmpc", "page")}
            rest.update({k: float(values.get(k, 0.0)) for k in ("rollout_call", "sweep_call")})
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise ValueError(f"not a rates file: {error}") from None
        return cls(train, **rest, sources=dict(values.get("sources", {})))


#: Used where nothing was measured: the speeds this 2-core machine measured in the paper
#: build of 2026-12-03 (commit 4570178, its ``rates.json``; BC's and IQL's from 10-seed
#: ensembles, two at once), stated so that a plan says which of its numbers are not measured
#: on the machine it runs on.
ASSUMED_RATES = Rates(
    train={"bc": (0.001, 0.0051), "iql": (0.0226, 0.0169), "cql": (0.0, 0.175)},
    cost_model=0.0045,
    rollout=0.0067,
    sweep=0.0175,
    nmpc=0.0077,
    page=18.7,
    rollout_call=0.43,
    sweep_call=1.25,
    sources=dict.fromkeys(("train", "cost_model", "rollout", "sweep", "nmpc", "page"), "assumed"),
)

#: The float32 matmul speed (GFLOP/s per core, 256³ products, one thread per process) that
#: ``benchmarks/training.py --roofline`` measured on the machine of :data:`ASSUMED_RATES`. Where
#: nothing was measured, a plan scales those rates by it over this machine's speed, measured in
#: a fraction of a second (:func:`machine_rates`): the same build took 1 h 51 min on a machine of
#: 87 GFLOP/s and 49 min on one of 202, which the assumed rates alone planned as 1.9 h.
REFERENCE_MATMUL_GFLOPS = 87.4

MATMUL_SIZE = 256


@dataclass(frozen=True)
class Plan:
    """A build's tasks and estimates."""

    profile: str
    workers: int
    tasks: tuple[Task, ...]
    page_seconds: dict[str, float]  # page → estimated wall time
    rates: Rates
    notes: tuple[str, ...]  # the assumptions the plan made

    @property
    def total_seconds(self) -> float:
        return float(sum(self.page_seconds.values()))

    def counts(self, statuses: Iterable[str] = ("missing",)) -> Counter:
        """Work units by kind over the tasks of ``statuses`` (what :func:`ledger_counts` counts)."""
        return work_units(t for t in self.tasks if t.status in set(statuses))

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "workers": self.workers,
            "total_seconds": self.total_seconds,
            "page_seconds": self.page_seconds,
            "tasks": [dataclasses.asdict(t) for t in self.tasks],
            "rates": self.rates.to_json(),
            "notes": list(self.notes),
        }


# ----------------------------------------------------------------------------------------------
# Counting: the same units for a plan and for a ledger
# ----------------------------------------------------------------------------------------------
def work_units(tasks: Iterable[Task]) -> Counter:
    """Counts of work by unit: agent runs trained (``train``: one per seed and budget), models
    trained (``cost_model``), NMPC runs, sweeps, and evaluated policy-episodes (``evaluate``)."""
    out: Counter = Counter()
    for t in tasks:
        if t.kind == "train":
            out[f"train {t.algorithm} {t.scenario} {t.steps}"] += len(t.seeds)
            out["train"] += len(t.seeds)
        elif t.kind == "evaluate":
            out["evaluate"] += t.episodes
        elif t.kind == "sweep":
            out["sweep"] += 1
            out["sweep episodes"] += t.agents * t.settings * t.episodes
        else:
            out[t.kind] += 1
    return out


def ledger_counts(records: Iterable[Mapping[str, Any]]) -> Counter:
    """The units of :func:`work_units` in the records of a task ledger (rollouts inside an
    NMPC run or a sweep belong to it, not to evaluation)."""
    out: Counter = Counter()
    for r in records:
        kind = r["kind"]
        if kind == "train":
            out[f"train {r['algorithm']} {r['scenario']} {r['steps']}"] += len(r["seeds"])
            out["train"] += len(r["seeds"])
        elif kind == "rollout":
            if r.get("within") is None:
                out["evaluate"] += int(r["episodes"])
        elif kind == "sweep":
            out["sweep"] += 1
            out["sweep episodes"] += int(r["agents"]) * int(r["settings"]) * int(r["episodes"])
        elif r.get("within") is None:  # a member trained inside an ensemble belongs to it
            out[kind] += 1
    return out


# ----------------------------------------------------------------------------------------------
# The store: what is cached
# ----------------------------------------------------------------------------------------------
class _Store:
    """Cache look-ups of one plan: data fingerprints, and what earlier pages make."""

    def __init__(self) -> None:
        self._prints: dict[str, str] = {}
        self._data: dict[str, Any] = {}
        self.made: dict[str, str] = {}  # cache identity → page that makes it

    def data(self, scenario: str) -> Any:
        if scenario not in self._data:
            from polycstr_lib.agents.data import load_training_data

            self._data[scenario] = load_training_data(scenario)
        return self._data[scenario]

    def fingerprint(self, scenario: str) -> str:
        if scenario not in self._prints:
            from polycstr_lib.agents.data import data_fingerprint

            self._prints[scenario] = data_fingerprint(self.data(scenario))
        return self._prints[scenario]

    def status(self, identity: str, cached: bool, page: str) -> tuple[str, str]:
        """``(status, shared_with)`` of an entry, and remember that ``page`` makes it."""
        if cached:
            return "cached", ""
        if identity in self.made and self.made[identity] != page:
            return "shared", self.made[identity]
        self.made.setdefault(identity, page)
        return "missing", ""


def _train_tasks(
    page: str,
    configs: Sequence[Any],
    store: _Store,
    snapshots: Sequence[int] = (),
    assumed: str = "",
    from_steps: int = 0,
) -> list[Task]:
    """The ensembles one ``train_many`` call trains, split by status (cached, shared, missing)."""
    from polycstr_lib.agents.config import group_key
    from polycstr_lib.agents.runs import is_stale, unique_configs
    from polycstr_lib.agents.sweeps import max_members
    from polycstr_lib.toolkit.store import config_key

    groups: dict[str, list[Any]] = {}
    for c in unique_configs([c.resolved() for c in configs]):
        groups.setdefault(group_key(c), []).append(c)
    tasks = []
    for group in groups.values():
        first = group[0]
        fingerprint = store.fingerprint(first.scenario)
        by_status: dict[tuple[str, str], list[Any]] = {}
        for c in group:
            identity = f"{config_key(c)}/{fingerprint}"
            state = store.status(identity, not is_stale(c, fingerprint, False), page)
            by_status.setdefault(state, []).append(c)
        for (status, shared), part in by_status.items():
            budget = max(c.steps for c in part)
            if status == "missing":  # its snapshots are runs of later pages too
                for c in part:
                    for k in snapshots:
                        if k <= budget:
                            short = dataclasses.replace(c, steps=int(k)).resolved()
                            store.made.setdefault(f"{config_key(short)}/{fingerprint}", page)
            tag = _variant_tag(first)
            seeds = tuple(sorted({c.seed for c in part}))
            tasks.append(
                Task(
                    page, "train", first.scenario,
                    f"{first.algorithm.upper()}{tag} × {len(seeds)} seeds to {budget:,} steps",
                    algorithm=first.algorithm, seeds=seeds, steps=budget,
                    from_steps=from_steps if status == "missing" else 0,
                    max_members=max_members(first), status=status, shared_with=shared,
                    assumed=assumed,
                )
            )  # fmt: skip
    return tasks


def _variant_tag(config: Any) -> str:
    """What sets a run apart from the default run of its algorithm (for the task's words)."""
    from polycstr_lib.agents.config import TrainConfig

    default = TrainConfig(config.algorithm, config.scenario).resolved()
    diff = []
    for f in ("action_scaling", "reward_scaling", "precision"):
        if getattr(config, f) != getattr(default, f):
            diff.append(f"{f}={getattr(config, f)}")
    if config.agent != default.agent:
        tau = getattr(config.agent, "expectile", None)
        diff.append(f"τ={tau:g}" if tau is not None else "agent settings")
    return f" ({', '.join(diff)})" if diff else ""


def _cost_task(
    page: str, scenario: str, store: _Store, config: Any, seeds: Sequence[int] | None = None
) -> Task:
    from polycstr_lib.correction.cost_models.training import cost_model_entry
    from polycstr_lib.reactor.datasets import load_offline_data
    from polycstr_lib.toolkit.cache import is_complete

    data = load_offline_data(scenario)
    path = cost_model_entry(data, config, None, seeds)
    status, shared = store.status(f"cost_models/{path.name}", is_complete(path), page)
    members = 1
    if seeds is not None:  # the members to train: one trained alone already is loaded
        members = 0
        for seed in seeds:
            single = cost_model_entry(data, dataclasses.replace(config, seed=seed), None)
            known = f"cost_models/{single.name}" in store.made
            member, _ = store.status(f"cost_models/{single.name}", is_complete(single), page)
            members += member == "missing" and not known
    name = {"picnn": "PICNN", "mlp": "NN"}.get(config.kind, config.kind)
    what = f"{name}{' ensemble of ' + str(len(seeds)) if seeds is not None else ''}"
    what += f" ({config.target}) {config.steps:,} steps"
    return Task(
        page, "cost_model", scenario, what, algorithm=config.kind, steps=config.steps,
        members=members, status=status, shared_with=shared,
    )  # fmt: skip


def _nmpc_task(page: str, store: _Store, run: Any) -> Task:
    from polycstr_lib.reactor.nmpc import run_directory
    from polycstr_lib.toolkit.cache import is_complete

    path = run_directory(run)
    status, shared = store.status(f"nmpc/{path.name}", is_complete(path), page)
    what = f"NMPC N={run.nmpc.horizon}, {run.episodes} × {run.steps} steps ({run.split})"
    return Task(
        page, "nmpc", run.scenario, what, steps=run.steps, episodes=run.episodes,
        horizon=run.nmpc.horizon, status=status, shared_with=shared,
    )  # fmt: skip


def _evaluate(
    page: str, scenario: str, episodes: int, what: str, assumed: str = "", calls: int = 1
) -> Task:
    return Task(
        page, "evaluate", scenario, what, episodes=episodes, calls=calls, status="runs",
        assumed=assumed,
    )  # fmt: skip


def _sweep(
    page: str,
    store: _Store,
    scenario: str,
    split: str,
    agents: Sequence[tuple[str, int]],
    settings: int,
    episodes: int,
    inputs: Sequence[Task],
    what: str,
) -> Task:
    """A correction sweep: cached when its inputs are and the store has one of its shape;
    shared when an earlier page sweeps the same agents (in the same order, at the same
    budgets) with the same cost models, grid and episodes (the sweep's cache key)."""
    ready = all(t.status == "cached" for t in inputs)
    cached = ready and _sweep_cached(scenario, split, agents, settings, episodes)
    budgets = sorted({(t.algorithm, t.steps) for t in inputs if t.kind == "train"})
    models = sorted({t.what for t in inputs if t.kind == "cost_model"})
    identity = f"sweep {scenario} {split} {list(agents)} {settings} {episodes} {budgets} {models}"
    status, shared = store.status(identity, cached, page)
    return Task(
        page, "sweep", scenario, what, agents=len(agents), settings=settings, episodes=episodes,
        status=status, shared_with=shared,
    )  # fmt: skip


def _sweep_cached(
    scenario: str, split: str, agents: Sequence[tuple[str, int]], settings: int, episodes: int
) -> bool:
    """Whether the store holds a sweep of this scenario, split, agents, grid size and episodes
    (its key also hashes the agents' weights, which a plan does not load)."""
    from polycstr_lib.toolkit.cache import entries, entry_info

    want = sorted((str(a), int(s)) for a, s in agents)
    for path in entries("correction_sweeps"):
        if not path.name.startswith(f"{scenario}_{split}-"):
            continue
        key = (entry_info(path) or {}).get("config") or {}
        if key.get("split") != split or key.get("episodes") != episodes:
            continue
        grid = 1 + sum(len(sizes) for _, sizes in key.get("step_sizes", []))
        got = sorted((str(a), int(s)) for a, s, _ in key.get("agents", []))
        if grid == settings and got == want:
            return True
    return False


# ----------------------------------------------------------------------------------------------
# Each page's tasks
# ----------------------------------------------------------------------------------------------
def _environment(page: str, p: Any, store: _Store, context: dict) -> list[Task]:
    from polycstr_lib.reactor.nmpc import NMPCConfig, NMPCRun

    horizons = sorted(set(p.nmpc_horizons) | {NMPCConfig().horizon})
    tasks = [
        _nmpc_task(
            page, store,
            NMPCRun(s, p.nmpc_study_episodes, steps=p.nmpc_study_steps,
                    nmpc=NMPCConfig(horizon=h), split="validation"),
        )
        for s in p.nmpc_study_scenarios
        for h in horizons
    ]  # fmt: skip
    tasks.append(_evaluate(page, "startup", 2, "PI under two tunings, 1 episode each", calls=2))
    tasks.append(_evaluate(page, "all", 9, "mid-range PI, 3 episodes per scenario", calls=3))
    return tasks


def _iql_theory(page: str, p: Any, store: _Store, context: dict) -> list[Task]:
    from polycstr_lib.agents.config import TrainConfig

    tasks = []
    for algo, steps in (("bc", p.bc_steps), ("iql", p.iql_steps)):
        config = TrainConfig(algorithm=algo, scenario=p.scenario, steps=steps, seed=p.seed,
                             log_interval=100)  # fmt: skip
        tasks += _train_tasks(page, [config], store)
    what = "PI, BC and IQL on test"
    tasks.append(_evaluate(page, p.scenario, 3 * p.test_episodes, what, calls=3))
    return tasks


def _cost_models(page: str, p: Any, store: _Store, context: dict) -> list[Task]:
    from polycstr_lib.correction.cost_models import CostModelConfig

    tasks = [
        _cost_task(page, s, store, CostModelConfig(kind=k, steps=p.train_steps, seed=p.seed,
                                                   target=p.target))
        for s in p.scenarios
        for k in ("mlp", "picnn")
    ]  # fmt: skip
    what = "PI for the gradient analysis"
    tasks.append(_evaluate(page, p.gradient_scenario, p.gradient_episodes, what))
    return tasks


def _extensions(checkpoints: Sequence[int], cap: int | None) -> list[int]:
    """The checkpoints an unconfirmed curve may add: doubling while within the cap."""
    out, last = [], max(checkpoints)
    while cap is not None and 2 * last <= cap:
        last *= 2
        out.append(last)
    return out


def _learning_curves(page: str, p: Any, store: _Store, context: dict) -> list[Task]:
    from polycstr_lib.analysis.curves import TRAINING_VARIANTS, curve_runs, variant_runs
    from polycstr_lib.reactor.nmpc import NMPCConfig, NMPCRun

    # each scenario's hold-to-oracle range: the oracle at its default horizon, on validation
    tasks = []
    for s in p.scenarios:
        tasks.append(_nmpc_task(page, store, NMPCRun(s, p.range_episodes, split="validation",
                                                     nmpc=NMPCConfig())))  # fmt: skip
        what = "inputs held, on the range's validation episodes"
        tasks.append(_evaluate(page, s, p.range_episodes, what))
    measure = {(a, s): sorted(set(p.checkpoints[a])) for a in p.algorithms for s in p.scenarios}
    configs, snapshots = curve_runs(measure, p.seeds, p.precision, p.algorithm_seeds)
    tasks += _train_tasks(page, configs, store, snapshots)
    for (a, s), ks in measure.items():
        n = len(p.seeds_for(a)) * p.validation_episodes
        what = f"{a.upper()} at {len(ks)} checkpoints × {len(p.seeds_for(a))} seeds (validation)"
        tasks.append(_evaluate(page, s, n * len(ks), what, calls=len(ks)))
    why = "if the curve is unconfirmed at its last checkpoint"
    for (a, s), ks in measure.items():
        last = max(ks)
        for k in _extensions(ks, p.extend_to.get(a)):
            ext, _ = curve_runs({(a, s): [k]}, p.seeds, p.precision, p.algorithm_seeds)
            tasks += _train_tasks(page, ext, store, [k], assumed=why, from_steps=last)
            what = f"{a.upper()} extension to {k:,} steps (validation)"
            n = len(p.seeds_for(a)) * p.validation_episodes
            tasks.append(_evaluate(page, s, n, what, assumed=why))
            last = k
    variants = {k: dict(v, precision=p.precision) for k, v in TRAINING_VARIANTS.items()}
    runs = variant_runs(
        variants, p.variant_algorithms, p.variant_scenarios, p.variant_seeds, p.variant_steps
    )
    tasks += _train_tasks(page, list(runs.values()), store)
    for a in p.variant_algorithms:
        for s in p.variant_scenarios:
            episodes = len(variants) * len(p.variant_seeds) * p.validation_episodes
            what = f"{a.upper()} training variants (validation)"
            tasks.append(_evaluate(page, s, episodes, what))
    context["curves"] = p
    return tasks


def _results(page: str, p: Any, store: _Store, context: dict) -> list[Task]:
    from polycstr_lib.agents.sweeps import seed_ensemble_configs
    from polycstr_lib.correction.choice import results_variants
    from polycstr_lib.correction.cost_models import CostModelConfig
    from polycstr_lib.correction.variants import DEFAULT_STEP_SIZES
    from polycstr_lib.reactor.nmpc import NMPCConfig, NMPCRun

    assumed = context.get("budget_assumption", {}).get(page, "")
    configs = seed_ensemble_configs(p.scenario, p.budgets, p.seeds, p.precision, p.algorithm_seeds)
    tasks = _train_tasks(page, configs, store, assumed=assumed)
    config = CostModelConfig(kind="picnn", steps=p.cost_steps)
    models = [_cost_task(page, p.scenario, store, config)]
    if "uncertainty" in p.correction_variants:
        models.append(_cost_task(page, p.scenario, store, config, (0, 1, 2)))
    tasks += models
    # the decision scale: the oracle and holding the inputs on the validation episodes
    scale = NMPCRun(p.scenario, p.validation_episodes, nmpc=NMPCConfig(horizon=p.nmpc_horizon),
                    split="validation")  # fmt: skip
    tasks.append(_nmpc_task(page, store, scale))
    what = "inputs held, on the validation episodes (the decision scale)"
    tasks.append(_evaluate(page, p.scenario, p.validation_episodes, what))
    variants = results_variants(p.correction_variants, p.correction_steps)
    settings = 1 + sum(len(DEFAULT_STEP_SIZES[name]) for name in variants)
    agents = [(a, s) for s in p.seeds for a in p.budgets if s in p.seeds_for(a)]
    what = f"{len(variants)} variants, {settings} settings (validation)"
    inputs = [t for t in tasks if t.kind in ("train", "cost_model")]
    tasks.append(
        _sweep(page, store, p.scenario, "validation", agents, settings, p.validation_episodes,
               inputs, what)
    )  # fmt: skip
    tasks.append(_evaluate(page, p.scenario, p.test_episodes, "PI (test)"))
    for a in p.budgets:
        seeds = len(p.seeds_for(a))
        n = seeds * p.test_episodes
        what, calls = f"{a.upper()} and its zero-tuning row", 2 * seeds
        tasks.append(_evaluate(page, p.scenario, 2 * n, what, calls=calls))
        why = "if validation deploys a correction (η > 0)"
        what = f"{a.upper()}+ (test)"
        tasks.append(_evaluate(page, p.scenario, n, what, assumed=why, calls=seeds))
    run = NMPCRun(p.scenario, p.nmpc_episodes, nmpc=NMPCConfig(horizon=p.nmpc_horizon))
    tasks.append(_nmpc_task(page, store, run))
    what = "inputs held, on the oracle's episodes (optimality score)"
    tasks.append(_evaluate(page, p.scenario, p.nmpc_episodes, what))
    tasks.append(_evaluate(page, p.scenario, p.test_episodes, "inputs held (the table's row)"))
    return tasks


def _ablations(page: str, p: Any, store: _Store, context: dict) -> list[Task]:
    from polycstr_lib.agents.sweeps import expectile_sweep_configs
    from polycstr_lib.correction.cost_models import CostModelConfig

    base, taus = expectile_sweep_configs(
        p.scenario, p.base_algorithm, p.expectiles, p.seeds, p.agent_steps, p.precision
    )
    tasks = _train_tasks(page, [*base, *taus], store)
    first = p.ensemble_seeds[0]
    one_step = CostModelConfig(kind="picnn", steps=p.cost_steps)
    tasks += [
        _cost_task(page, p.scenario, store, one_step, tuple(p.ensemble_seeds)),
        _cost_task(page, p.scenario, store,
                   CostModelConfig(kind="mlp", steps=p.cost_steps, seed=first)),
        _cost_task(page, p.scenario, store,
                   CostModelConfig(kind="picnn", steps=p.cost_steps, seed=first,
                                   target="cost_to_go")),
    ]  # fmt: skip
    inputs = list(tasks)
    agents = [(p.base_algorithm, s) for s in p.seeds]
    grid = p.grid()
    n_models = 4  # picnn, mlp, picnn_ctg, ensemble: every cost model of COST_MODEL_LABELS
    first_grid = 1 + n_models * len(grid.step_sizes) + len(grid.newton_step_sizes)
    second_grid = 1 + len(grid.steps_grid) + len(grid.trust_radii)
    # test_chosen runs each sweep's choice: cost model, Newton, K, trust radius
    labels = 1 + bool(grid.newton_step_sizes) + bool(grid.steps_grid) + bool(grid.trust_radii)
    v = p.validation_episodes
    tau_agents = [(f"τ = {t:g}", s) for t in p.expectiles for s in p.seeds]
    tasks += [
        _sweep(page, store, p.scenario, "validation", agents, first_grid, v, inputs,
               "stage one: η per cost model and Newton's α"),
        _sweep(page, store, p.scenario, "validation", agents, second_grid, v, inputs,
               "stage two: K and trust radius at the chosen η"),
        _sweep(page, store, p.scenario, "validation", tau_agents, 2, v, inputs,
               "IQL per expectile, with the chosen correction"),
        _sweep(page, store, p.scenario, "test", agents, 1 + labels, p.test_episodes, inputs,
               "each sweep's choice on test"),
    ]  # fmt: skip
    return tasks


def _correction_support(page: str, p: Any, store: _Store, context: dict) -> list[Task]:
    """Chapter 08 chooses as the results pages do (their cost models, sweep and scale, from
    the cache when those pages made them) and runs each deployed setting once on test."""
    from polycstr_lib.agents.sweeps import per_scenario_configs
    from polycstr_lib.correction.choice import results_variants
    from polycstr_lib.correction.cost_models import CostModelConfig
    from polycstr_lib.correction.variants import DEFAULT_STEP_SIZES
    from polycstr_lib.reactor.nmpc import NMPCConfig, NMPCRun

    tasks: list[Task] = []
    models: dict[str, list[Task]] = {}
    config = CostModelConfig(kind="picnn", steps=p.cost_steps)
    for s in p.scenarios:
        models[s] = [_cost_task(page, s, store, config)]
        if "uncertainty" in p.correction_variants:
            models[s].append(_cost_task(page, s, store, config, (0, 1, 2)))
        tasks += models[s]
    assumed = context.get("budget_assumption", {}).get(page, "")
    configs = per_scenario_configs(p.scenarios, p.steps_of, p.seeds, p.precision, p.algorithm_seeds)
    trained = _train_tasks(page, configs, store, assumed=assumed)
    tasks += trained
    variants = results_variants(p.correction_variants, p.correction_steps)
    settings = 1 + sum(len(DEFAULT_STEP_SIZES[name]) for name in variants)
    # train_per_scenario's order (seeds outer), the results pages' order: their sweeps shared
    agents = [(a, seed) for seed in p.seeds for a in p.algorithms if seed in p.seeds_for(a)]
    for s in p.scenarios:
        scale = NMPCRun(s, p.validation_episodes, nmpc=NMPCConfig(horizon=p.nmpc_horizon),
                        split="validation")  # fmt: skip
        tasks.append(_nmpc_task(page, store, scale))
        what = "inputs held, on the validation episodes (the decision scale)"
        tasks.append(_evaluate(page, s, p.validation_episodes, what))
        inputs = models[s] + [t for t in trained if t.scenario == s]
        tasks.append(
            _sweep(page, store, s, "validation", agents, settings, p.validation_episodes, inputs,
                   f"{len(variants)} variants, {settings} settings (validation)")
        )  # fmt: skip
        for a in p.algorithms:
            seeds = len(p.seeds_for(a))
            n = seeds * p.test_episodes
            tasks.append(_evaluate(page, s, n, f"{a.upper()} (test)", calls=seeds))
            why = "if validation deploys a correction (η > 0)"
            tasks.append(_evaluate(page, s, n, f"{a.upper()}+ (test)", assumed=why, calls=seeds))
    return tasks


#: Notebook → the tasks its page asks for (pages without one run nothing worth planning).
PAGE_TASKS = {
    "01_environment": _environment,
    "03_iql_theory": _iql_theory,
    "04_cost_models": _cost_models,
    "04b_learning_curves": _learning_curves,
    "05_results": _results,
    "06_ablations": _ablations,
    "08_correction_support": _correction_support,
}


# ----------------------------------------------------------------------------------------------
# Budgets before the curves page has run
# ----------------------------------------------------------------------------------------------
def _with_budgets(run: Any, profile: str, folder: Path, context: dict) -> Any:
    """The run with the budgets the build will give it: the curves page's when it was built
    with this profile, else the largest budget its curves may choose (stated)."""
    from polycstr_lib.book.budgets import (
        BUDGETS_FROM_CURVES,
        CURVES_PAGE,
        SUPPORT_NOTEBOOK,
        with_curve_budgets,
    )
    from polycstr_lib.book.glue import read_glue
    from polycstr_lib.book.profiles import NotebookRun

    if run.notebook not in ("05_results", SUPPORT_NOTEBOOK):
        return run
    page = folder / f"{CURVES_PAGE}.ipynb"
    glued = read_glue(page) if page.is_file() else {}
    if glued.get("curves_profile") == profile or not BUDGETS_FROM_CURVES.get(profile, False):
        return with_curve_budgets(run, profile, folder)
    curves = effective_parameters(CURVES_PAGE, profile)
    largest = {
        a: max([*curves["checkpoints"][a], *([curves["extend_to"][a]] if a in curves["extend_to"]
                                              else [])])
        for a in curves["algorithms"]
    }  # fmt: skip
    params = {**effective_parameters(run.notebook, profile), **run.parameters}
    scenarios = params.get("scenarios", [params.get("scenario")])
    table = {
        a: {s: {"steps": k, "converged": True, "status": "converged"} for s in curves["scenarios"]}
        for a, k in largest.items()
    }
    fake = {"curve_budgets": table, "curves_profile": profile}
    from polycstr_lib.book.budgets import curve_budgets, support_budgets

    if run.notebook == SUPPORT_NOTEBOOK:
        overrides = support_budgets(params, fake, True)
    else:
        overrides = curve_budgets(params, fake, True)
    measured = [s for s in scenarios if s in curves["scenarios"]]
    if measured:
        text = ", ".join(f"{a.upper()} {k:,}" for a, k in largest.items())
        context.setdefault("budget_assumption", {})[run.page] = (
            f"budgets not yet measured: the largest the curves may choose ({text})"
        )
    return NotebookRun(run.notebook, run.page, {**run.parameters, **overrides})


# ----------------------------------------------------------------------------------------------
# Rates and estimates
# ----------------------------------------------------------------------------------------------
def rates_from_ledger(records: Sequence[Mapping[str, Any]], base: Rates = ASSUMED_RATES) -> Rates:
    """Rates measured from a task ledger; a rate it cannot measure is taken from ``base``."""
    sources = dict(base.sources)
    by_kind: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        inside = r["kind"] == "cost_model" and r.get("within") is not None  # an ensemble's member
        if r.get("seconds") is not None and float(r["seconds"]) > 0 and not inside:
            by_kind.setdefault(r["kind"], []).append(r)
    train = dict(base.train)
    for algo in {r["algorithm"] for r in by_kind.get("train", [])}:
        points = [
            (int(r["members"]), int(r["steps"]), float(r["seconds"]))
            for r in by_kind["train"]
            if r["algorithm"] == algo and int(r["steps"]) > 0
        ]
        if points:
            train[algo] = _fit_train(points)
            sources[f"train {algo}"] = f"ledger ({len(points)} ensembles)"
    if all(f"train {algo}" in sources for algo in train):
        sources.pop("train", None)  # every algorithm measured: none of training is assumed

    def ratio(kind: str, units: Any) -> float | None:
        rows = by_kind.get(kind, [])
        total = sum(units(r) for r in rows)
        if not rows or total <= 0:
            return None
        sources[name] = f"ledger ({len(rows)} tasks)"
        return sum(float(r["seconds"]) for r in rows) / total

    values = {}
    for name, kind, units in (
        # an ensemble's seconds are wall time over its processes: work per process-second
        ("cost_model", "cost_model", lambda r: r["steps"] * r["members"] / r.get("processes", 1)),
        # an NMPC run's seconds are wall time over its processes: work per process-second
        (
            "nmpc",
            "nmpc",
            lambda r: r["episodes"] * r["steps"] * r["horizon"] / r.get("processes", 1),
        ),
    ):
        value = ratio(kind, units)
        values[name] = getattr(base, name) if value is None else value
    # a batched rollout costs a fixed part per call (per step, whatever the batch) and a part
    # per episode: both fitted from calls of different sizes (200-step calls)
    for name, points in (
        ("rollout", [(r["episodes"], float(r["seconds"]) * 200 / r["steps"])
                     for r in by_kind.get("rollout", []) if r.get("within") is None]),
        ("sweep", [(r["agents"] * r["settings"] * r["episodes"],
                    float(r["seconds"]) * r.get("processes", 1))
                   for r in by_kind.get("sweep", [])]),
    ):  # fmt: skip
        if points:
            values[f"{name}_call"], values[name] = _fit_calls(points)
            sources[name] = f"ledger ({len(points)} tasks)"
        else:
            values[f"{name}_call"], values[name] = (
                getattr(base, f"{name}_call"),
                getattr(base, name),
            )
    return Rates(train, **values, page=base.page, sources=sources)


def _fit_calls(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(a, b) of seconds = a + b·size over calls of several sizes, least squares, both ≥ 0
    (one size, or a fit below zero: a = 0)."""
    sizes = {x for x, _ in points}
    if len(sizes) > 1:
        mx = sum(x for x, _ in points) / len(points)
        my = sum(y for _, y in points) / len(points)
        sxx = sum((x - mx) ** 2 for x, _ in points)
        b = sum((x - mx) * (y - my) for x, y in points) / sxx
        a = my - b * mx
        if a >= 0 and b >= 0:
            return a, b
    return 0.0, sum(y for _, y in points) / sum(x for x, _ in points)


def _fit_train(points: Sequence[tuple[int, int, float]]) -> tuple[float, float]:
    """(a, b) of seconds per step = a + b·members, least squares weighted by steps, both ≥ 0."""
    per_step = [(m, t / k, k) for m, k, t in points]
    members = {m for m, _, _ in per_step}
    weight = sum(k for _, _, k in per_step)
    if len(members) > 1:
        mx = sum(m * k for m, _, k in per_step) / weight
        my = sum(y * k for _, y, k in per_step) / weight
        sxx = sum(k * (m - mx) ** 2 for m, _, k in per_step)
        sxy = sum(k * (m - mx) * (y - my) for m, y, k in per_step)
        b = sxy / sxx
        a = my - b * mx
        if a >= 0 and b >= 0:
            return a, b
    b = sum(y * k for _, y, k in per_step) / sum(m * k for m, _, k in per_step)
    return 0.0, b


def matmul_gflops(seconds: float = 0.3) -> float:
    """This process's float32 matmul speed on one thread, GFLOP/s (256³ products).

    Raises:
        ValueError: ``seconds`` not positive.
    """
    if not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds!r}")
    import time

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the pages train: one thread per process
    try:
        g = torch.Generator().manual_seed(0)
        a, b = (torch.randn(MATMUL_SIZE, MATMUL_SIZE, generator=g) for _ in range(2))
        out = torch.empty(MATMUL_SIZE, MATMUL_SIZE)
        for _ in range(20):  # warm-up
            torch.mm(a, b, out=out)
        products, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            for _ in range(20):
                torch.mm(a, b, out=out)
            products += 20
    finally:
        torch.set_num_threads(threads)
    return 2 * MATMUL_SIZE**3 * products / elapsed / 1e9


def scaled_rates(rates: Rates, factor: float, why: str) -> Rates:
    """``rates`` with every time multiplied by ``factor``; each source says ``why``.

    Raises:
        ValueError: ``factor`` not positive.
    """
    if not factor > 0:
        raise ValueError(f"factor must be positive, got {factor!r}")
    times = ("cost_model", "rollout", "sweep", "nmpc", "page", "rollout_call", "sweep_call")
    return dataclasses.replace(
        rates,
        train={k: (a * factor, b * factor) for k, (a, b) in rates.train.items()},
        **{name: getattr(rates, name) * factor for name in times},
        sources={k: f"{v}, {why}" for k, v in rates.sources.items()},
    )


def machine_rates(gflops: float | None = None) -> Rates:
    """:data:`ASSUMED_RATES` scaled to this machine: times × the reference machine's matmul
    speed (:data:`REFERENCE_MATMUL_GFLOPS`) over this one's (``gflops``, measured now if
    None). A first-order guess for a machine that has measured nothing yet; a build's ledger
    or ``plan --calibrate`` replaces it."""
    gflops = matmul_gflops() if gflops is None else float(gflops)
    if not gflops > 0:
        raise ValueError(f"gflops must be positive, got {gflops!r}")
    factor = REFERENCE_MATMUL_GFLOPS / gflops
    why = f"× {factor:.2f} (matmul {gflops:.0f} GFLOP/s here, {REFERENCE_MATMUL_GFLOPS:g} there)"
    return scaled_rates(ASSUMED_RATES, factor, why)


def rates_from_store(base: Rates | None = None) -> Rates:
    """Training and NMPC rates from the times the artifact store's manifests keep (the runs
    of earlier builds, whatever their profile); the other rates from ``base`` (default
    :func:`machine_rates`, the assumed rates scaled to this machine)."""
    from polycstr_lib.toolkit.cache import entries, entry_info

    if base is None:
        base = machine_rates()

    records = []
    seen = set()
    for path in entries("agents"):
        info = entry_info(path) or {}
        meta, key = info.get("info", {}), (info.get("config") or {}).get("config", {})
        seeds, seconds = meta.get("ensemble_seeds"), meta.get("train_seconds")
        if not seeds or not seconds or not key:
            continue
        mark = (key.get("algorithm"), tuple(seeds), key.get("steps"), round(float(seconds), 3))
        if mark in seen:
            continue
        seen.add(mark)
        records.append({"kind": "train", "algorithm": key["algorithm"], "members": len(seeds),
                        "steps": key["steps"], "seconds": seconds})  # fmt: skip
    for path in entries("nmpc"):
        info = entry_info(path) or {}
        key, seconds = info.get("config") or {}, (info.get("info") or {}).get("wall_seconds")
        if seconds and key:
            records.append({"kind": "nmpc", "episodes": key["episodes"], "steps": key["steps"],
                            "horizon": key["nmpc"]["horizon"], "seconds": seconds})  # fmt: skip
    rates = rates_from_ledger(records, base)
    sources = {k: v.replace("ledger", "store") for k, v in rates.sources.items()}
    return dataclasses.replace(rates, sources=sources)


def calibrate(scenario: str = "startup", scale: float = 1.0) -> Rates:
    """Rates measured now by a short run of each kind of task (about two minutes on two cores),
    in a private, temporary artifact store; the page overhead is :data:`ASSUMED_RATES`'.

    Args:
        scenario: The scenario whose data and episodes the tasks use.
        scale: Multiplies every task's steps (at least one each); below 1 only for tests,
            where a run's start then dominates and the rates are too slow.

    Raises:
        ValueError: ``scale`` not positive.
    """
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale!r}")

    def sized(steps: int) -> int:
        return max(1, round(steps * scale))

    import os
    import tempfile

    from polycstr_lib.agents.config import TrainConfig
    from polycstr_lib.agents.runs import train_ensemble
    from polycstr_lib.correction.choice import results_variants
    from polycstr_lib.correction.cost_models import CostModelConfig, train_cost_model
    from polycstr_lib.correction.sweep import sweep_corrections
    from polycstr_lib.correction.task import CorrectionSetup, load_task
    from polycstr_lib.correction.variants import DEFAULT_STEP_SIZES
    from polycstr_lib.reactor.metrics import evaluate_policy
    from polycstr_lib.reactor.nmpc import NMPCConfig, NMPCRun, run_nmpc
    from polycstr_lib.toolkit.ledger import LEDGER_ENV, read_ledger
    from polycstr_lib.toolkit.store import ARTIFACTS_ENV

    task = load_task(scenario)
    saved = {name: os.environ.get(name) for name in (LEDGER_ENV, ARTIFACTS_ENV)}
    with tempfile.TemporaryDirectory(prefix="polycstr-calibrate-") as root:
        ledger = Path(root) / LEDGER_FILE
        os.environ[LEDGER_ENV], os.environ[ARTIFACTS_ENV] = str(ledger), str(Path(root) / "store")
        try:
            agents = {}
            # long enough that a run's start (networks, data on the device) is a small part:
            # 50 IQL steps measured half the rate of a real ensemble
            for algo, steps in (("bc", 400), ("iql", 150), ("cql", 15)):
                for members in (1, 4):
                    configs = [TrainConfig(algo, scenario, steps=sized(steps), seed=s)
                               for s in range(members)]  # fmt: skip
                    trained = train_ensemble(configs, task.data, progress=False)
                    agents[algo, 0] = trained[0][0]
            model, _ = train_cost_model(task.data, CostModelConfig(kind="picnn", steps=sized(100)),
                                        progress=False)  # fmt: skip
            for episodes in (4, 40):
                evaluate_policy(agents["bc", 0].act, scenario, episodes, *task.return_bounds)
            setup = CorrectionSetup({("bc", 0): agents["bc", 0]}, {"picnn": model}, task)
            variants = results_variants(["plain", "normalised"], 3)
            grids = {name: DEFAULT_STEP_SIZES[name] for name in variants}
            for episodes in (1, 10):
                sweep_corrections(setup, episodes, variants, grids, cache=False)
            # 60 steps: building the controller takes about as long as 20 solves
            run_nmpc(NMPCRun(scenario, 1, steps=sized(60), nmpc=NMPCConfig(), split="validation"))
            records = read_ledger(ledger)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    rates = rates_from_ledger(records)
    sources = {k: v.replace("ledger", "calibration") for k, v in rates.sources.items()}
    return dataclasses.replace(rates, sources=sources)


def load_rates(folder: Path | None = None) -> Rates:
    """The rates of the last build in ``folder`` (``rates.json``), else those of the store."""
    path = (folder or EXECUTED_DIR) / RATES_FILE
    if path.is_file():
        try:
            return Rates.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, json.JSONDecodeError):
            pass  # an unreadable file: measure from the store instead
    return rates_from_store()


def task_seconds(task: Task, rates: Rates) -> float:
    """Estimated seconds of one task run alone (0 for one that does not run)."""
    if task.status in ("cached", "shared"):
        return 0.0
    if task.kind == "train":
        a, b = rates.train.get(task.algorithm, ASSUMED_RATES.train.get(task.algorithm, (0, 0)))
        steps = task.steps - task.from_steps
        cap = max(1, task.max_members or len(task.seeds))
        chunks = [min(cap, len(task.seeds) - i) for i in range(0, len(task.seeds), cap)]
        return float(sum(steps * (a + b * m) for m in chunks))
    if task.kind == "cost_model":
        return task.steps * task.members * rates.cost_model
    if task.kind == "evaluate":
        return task.calls * rates.rollout_call + task.episodes * rates.rollout
    if task.kind == "sweep":
        return rates.sweep_call + task.agents * task.settings * task.episodes * rates.sweep
    if task.kind == "nmpc":
        return task.episodes * task.steps * task.horizon * rates.nmpc
    return 0.0


def _task_processes(task: Task, workers: int) -> int:
    """The processes a task runs in: its wall time is its work over them. An NMPC run's
    episodes (:func:`~polycstr_lib.reactor.nmpc.nmpc_processes`), a sweep's agents
    (:func:`~polycstr_lib.correction.sweep.sweep_processes`) and an ensemble's members
    (:func:`~polycstr_lib.correction.cost_models.ensemble.ensemble_processes`) spread over
    the workers; any other task runs in one."""
    if task.kind == "nmpc":
        from polycstr_lib.reactor.nmpc import NMPCRun, nmpc_processes

        return nmpc_processes(NMPCRun(task.scenario, task.episodes, steps=task.steps), workers)
    if task.kind == "sweep":
        from polycstr_lib.correction.sweep import sweep_processes

        return sweep_processes(task.agents, task.agents * task.settings * task.episodes, workers)
    if task.kind == "cost_model" and task.members > 1:
        from polycstr_lib.correction.cost_models import CostModelConfig
        from polycstr_lib.correction.cost_models.ensemble import ensemble_processes

        return ensemble_processes(CostModelConfig(steps=task.steps), task.members, workers)
    return 1


def training_wall(tasks: Sequence[Task], rates: Rates, workers: int) -> float:
    """Wall time of one page's training: its ensembles (at most ``max_members`` seeds each,
    the costliest split while there are fewer than ``workers``) spread greedily over workers."""
    jobs: list[tuple[Task, int]] = []  # (task, members)
    for t in tasks:
        cap = max(1, t.max_members or len(t.seeds))
        jobs += [(t, min(cap, len(t.seeds) - i)) for i in range(0, len(t.seeds), cap)]

    def cost(job: tuple[Task, int]) -> float:
        t, m = job
        a, b = rates.train.get(t.algorithm, ASSUMED_RATES.train.get(t.algorithm, (0, 0)))
        return (t.steps - t.from_steps) * (a + b * m)

    while 0 < len(jobs) < workers and any(m > 1 for _, m in jobs):
        biggest = max((j for j in jobs if j[1] > 1), key=cost)
        jobs.remove(biggest)
        jobs += [(biggest[0], biggest[1] // 2), (biggest[0], biggest[1] - biggest[1] // 2)]
    loads = [0.0] * max(1, workers)
    for job in sorted(jobs, key=cost, reverse=True):
        loads[loads.index(min(loads))] += cost(job)
    return max(loads)


# ----------------------------------------------------------------------------------------------
# The plan
# ----------------------------------------------------------------------------------------------
def build_plan(
    profile: str = "quick",
    workers: int = 2,
    rates: Rates | None = None,
    executed_dir: Path | None = None,
    only: Sequence[str] | None = None,
) -> Plan:
    """The tasks of every page of ``profile``, their cache status and estimated wall time.

    Args:
        profile: a profile of :data:`~polycstr_lib.book.profiles.PROFILES`.
        workers: processes the training of a page is spread over (its ``processes``).
        rates: speeds to estimate with (default :func:`load_rates` of ``executed_dir``).
        executed_dir: the build's folder (default the book's): its curves page sets the
            results pages' budgets, its ``rates.json`` the rates.
        only: the pages the build executes (default all).

    Raises:
        ValueError: an unknown profile or page, or ``workers`` below 1.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    runs = runs_for(profile)
    pages = [r.page for r in runs]
    unknown = sorted(set(only or ()) - set(pages))
    if unknown:
        raise ValueError(f"no page {', '.join(unknown)} in the book; pages: {', '.join(pages)}")
    folder = Path(executed_dir) if executed_dir is not None else EXECUTED_DIR
    rates = rates or load_rates(folder)
    store, context = _Store(), {}
    tasks: list[Task] = []
    page_seconds: dict[str, float] = {}
    for run in runs:
        if only and run.page not in only:
            continue  # a page the build does not execute makes nothing for the others
        run = _with_budgets(run, profile, folder, context)
        params = {**effective_parameters(run.notebook, profile), **run.parameters}
        try:
            checked = PAGES[run.notebook](**{
                f.name: params[f.name] for f in dataclasses.fields(PAGES[run.notebook])
            })  # fmt: skip
        except (ParameterError, KeyError) as error:
            raise ValueError(f"page {run.page}: {error}") from None
        builder = PAGE_TASKS.get(run.notebook)
        made = builder(run.page, checked, store, context) if builder else []
        made = [
            dataclasses.replace(t, seconds=task_seconds(t, rates) / _task_processes(t, workers))
            for t in made
        ]
        tasks += made
        train = [t for t in made if t.kind == "train" and t.status == "missing"]
        rest = sum(t.seconds for t in made if t.kind != "train")
        page_seconds[run.page] = training_wall(train, rates, workers) + rest + rates.page
    notes = tuple(sorted({t.assumed for t in tasks if t.assumed}))
    return Plan(profile, workers, tuple(tasks), page_seconds, rates, notes)


# ----------------------------------------------------------------------------------------------
# Reading it
# ----------------------------------------------------------------------------------------------
def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def plan_text(plan: Plan) -> str:
    """The plan as a reader reads it: per page its tasks (status, estimate), a total, the
    time by kind of task, the assumptions and where the rates come from."""
    lines = [
        f"Plan of the {plan.profile!r} profile with {plan.workers} training worker(s): "
        f"{_duration(plan.total_seconds)} estimated",
        "",
    ]
    by_page: dict[str, list[Task]] = {}
    for t in plan.tasks:
        by_page.setdefault(t.page, []).append(t)
    for page, seconds in plan.page_seconds.items():
        tasks = by_page.get(page, [])
        status = Counter(t.status for t in tasks)
        summary = ", ".join(f"{n} {s}" for s, n in status.items()) or "no tasks"
        lines.append(f"{page}: {_duration(seconds)} ({summary})")
        for t in tasks:
            mark = "*" if t.assumed else " "
            where = f" by {t.shared_with}" if t.shared_with else ""
            lines.append(
                f"  {mark} {t.kind:<10} {t.scenario:<10} {t.status + where:<34} "
                f"{_duration(t.seconds):>9}  {t.what}"
            )
    lines += [
        "",
        f"all pages: {_duration(plan.total_seconds)}",
        "",
        "time by kind of task (training one ensemble at a time; NMPC wall time):",
    ]
    for kind, seconds in kind_seconds(plan).items():
        lines.append(f"  {kind:<10} {_duration(seconds):>9}")
    if plan.notes:
        lines += ["", "* counted although it may not run:"]
        lines += [f"  - {note}" for note in plan.notes]
    by_source: dict[str, list[str]] = {}
    for name, source in sorted(plan.rates.sources.items()):
        by_source.setdefault(source, []).append(name)  # one line per source, not per rate
    lines += ["", "rates: " + "; ".join(f"{', '.join(k)}: {v}" for v, k in by_source.items())]
    return "\n".join(lines)


def kind_seconds(plan: Plan) -> dict[str, float]:
    """Estimated seconds by kind of task, summed over pages (training as run alone, not as
    spread over workers), and ``page`` for what pages take beyond their tasks."""
    out = {kind: 0.0 for kind in KINDS}
    for t in plan.tasks:
        out[t.kind] += t.seconds
    out["page"] = plan.rates.page * len(plan.page_seconds)
    return out


def write_plan(plan: Plan, folder: Path) -> Path:
    """Writes ``plan.json`` into ``folder`` (the timings page reads it)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / PLAN_FILE
    path.write_text(json.dumps(plan.to_json(), indent=1, default=str), encoding="utf-8")
    return path


def planned_seconds(folder: Path) -> dict[str, float]:
    """Page → estimated seconds of the plan written into ``folder`` (none: empty)."""
    path = folder / PLAN_FILE
    try:
        values = json.loads(path.read_text(encoding="utf-8"))["page_seconds"]
        return {str(k): float(v) for k, v in values.items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}
