"""Validate every page's papermill parameters: one frozen, typed dataclass per notebook.

Each page's first code cell calls ``params = <Page>.from_notebook(globals())`` once: the
class picks its fields by name from the notebook's namespace, checks each against its type
annotation (lists and dicts element by element) and the page's constraints, and raises a
:class:`ParameterError` that names the parameter, the expected type and the value given.
Booleans that papermill passed as text (``-p regenerate false``) are read as booleans
(``"true"``/``"false"``, ``"yes"``/``"no"``, ``"1"``/``"0"``, any case); any other text is
refused, never taken as truthy. Integers are accepted where a float is expected, booleans
never where a number is.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Optional, Union

from polycstr_lib.agents.sweeps import seeds_of
from polycstr_lib.correction.ablations import AblationGrid
from polycstr_lib.correction.variants import DEFAULT_VARIANTS
from polycstr_lib.reactor.scenarios import get_scenario

__all__ = [
    "ALGORITHMS",
    "PRECISIONS",
    "AblationsPage",
    "ClaimsPage",
    "CorrectionSupportPage",
    "CostModelsPage",
    "DatasetPage",
    "EnvironmentPage",
    "IQLTheoryPage",
    "LearningCurvesPage",
    "PAGES",
    "PageParameters",
    "ParameterError",
    "ResultsPage",
    "check_type",
]

ALGORITHMS = ("bc", "iql", "cql")
PRECISIONS = ("float32", "bfloat16")
_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")


class ParameterError(ValueError, TypeError):
    """A page parameter of the wrong type or out of range (a ValueError and a TypeError)."""


def _type_text(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None):
        return "None"
    if origin in (Union, types.UnionType):
        return " or ".join(_type_text(a) for a in args)
    if origin is list:
        return f"a list of {_plural(args[0])}" if args else "a list"
    if origin is dict:
        return f"a dict of {_plural(args[0])} to {_plural(args[1])}" if args else "a dict"
    names = {int: "an integer", float: "a number", str: "a text", bool: "a boolean"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _plural(tp: Any) -> str:
    names = {int: "integers", float: "numbers", str: "texts", bool: "booleans"}
    if tp in names:
        return names[tp]
    return f"({_type_text(tp)})"


def check_type(name: str, value: Any, tp: Any) -> Any:
    """``value`` checked against the annotation ``tp`` (booleans given as text converted).

    Args:
        name: the parameter's name (for the message).
        value: the value the page was given.
        tp: ``int``, ``float``, ``str``, ``bool``, ``list[...]``, ``dict[..., ...]``, a union
            of these, ``None`` or ``Any``.

    Returns:
        The value, with booleans given as text (also inside lists and dicts) as booleans.

    Raises:
        ParameterError: naming the parameter, the expected type and the value.
    """
    hint = " (in YAML write 1.0e-5, not 1e-5, which YAML reads as a text)"

    def fail() -> ParameterError:
        extra = hint if isinstance(value, str) and tp in (float, int) else ""
        return ParameterError(
            f"parameter {name!r} must be {_type_text(tp)}, got {value!r} "
            f"(papermill: -y '{name.split('[')[0].split(' ')[0]}: ...'){extra}"
        )

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if tp is type(None):
        if value is None:
            return value
        raise fail()
    if origin in (Union, types.UnionType):
        for option in args:
            try:
                return check_type(name, value, option)
            except ParameterError:
                continue
        raise fail()
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise fail()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise fail()
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        raise fail()
    if tp is str:
        if isinstance(value, str):
            return value
        raise fail()
    if origin is list:
        if not isinstance(value, list):
            raise fail()
        return [check_type(f"{name}[{i}]", v, args[0]) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise fail()
        return {
            check_type(f"{name} key", k, args[0]): check_type(f"{name}[{k!r}]", v, args[1])
            for k, v in value.items()
        }
    raise TypeError(f"no check for the annotation {tp!r} of {name!r}")


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ParameterError(message)


def _non_empty(name: str, value: list) -> None:
    _need(len(value) > 0, f"parameter {name!r} must be a non-empty list, got {value!r}")


def _at_least(minimum: float, **values: float) -> None:
    for name, value in values.items():
        _need(value >= minimum, f"parameter {name!r} must be >= {minimum:g}, got {value!r}")


def _scenarios(name: str, names: list[str] | str) -> None:
    if not isinstance(names, str):
        _non_empty(name, names)
    for scenario in [names] if isinstance(names, str) else names:
        try:
            get_scenario(scenario)
        except (KeyError, ValueError) as err:
            raise ParameterError(f"parameter {name!r}: {err}") from None


def _among(name: str, values: Any, allowed: tuple[str, ...] | list[str]) -> None:
    values = [values] if isinstance(values, str) else list(values)
    bad = [v for v in values if v not in allowed]
    _need(not bad, f"parameter {name!r} must be among {list(allowed)}, got {bad!r}")


def _distinct(name: str, values: list) -> None:
    _need(len(set(values)) == len(values), f"parameter {name!r} must be distinct, got {values!r}")


def _algorithm_seeds(counts: dict[str, int], seeds: list[int]) -> None:
    """``algorithm_seeds``: known algorithms, each to a count in [1, len(seeds)]."""
    _among("algorithm_seeds", list(counts), ALGORITHMS)
    for algorithm, n in counts.items():
        _need(
            1 <= n <= len(seeds),
            f"parameter 'algorithm_seeds' must map {algorithm!r} to a count in "
            f"[1, {len(seeds)}] (the number of seeds), got {n}",
        )


class SeedCounts:
    """Pages with ``seeds`` and ``algorithm_seeds``: each algorithm's own training seeds."""

    seeds: list[int]
    algorithm_seeds: dict[str, int]

    def seeds_for(self, algorithm: str) -> list[int]:
        """The training seeds of ``algorithm``: the first ``algorithm_seeds[algorithm]`` of
        ``seeds``, or all of them."""
        return seeds_of(algorithm, self.seeds, self.algorithm_seeds)


@dataclass(frozen=True)
class PageParameters:
    """Base of the pages' parameters: typed fields, checked when the object is made."""

    #: Fields shown in the page's provenance banner (default: every field but ``profile``).
    BANNER: ClassVar[tuple[str, ...] | None] = None

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            object.__setattr__(
                self, f.name, check_type(f.name, getattr(self, f.name), hints[f.name])
            )
        self.check()

    def check(self) -> None:
        """The page's constraints beyond the types (override)."""

    @classmethod
    def from_notebook(cls, namespace: Mapping[str, Any]) -> PageParameters:
        """The page's parameters from a notebook's ``globals()``, checked.

        Raises:
            ParameterError: a missing parameter, a wrong type or a value out of range.
        """
        missing = [f.name for f in fields(cls) if f.name not in namespace]
        if missing:
            raise ParameterError(f"{cls.__name__}: parameters {missing} are not defined")
        return cls(**{f.name: namespace[f.name] for f in fields(cls)})

    def banner(self) -> dict[str, Any]:
        """``name → value`` of the fields the provenance banner shows."""
        names = self.BANNER or tuple(f.name for f in fields(self) if f.name != "profile")
        return {name: getattr(self, name) for name in names}


@dataclass(frozen=True)
class EnvironmentPage(PageParameters):
    """Parameters of ``01_environment``."""

    profile: str
    grade_min: float
    grade_max: float
    grade_points: int
    step_hours: float
    feed_step: float
    coolant_step: float
    scenario_samples: int
    seed: int
    check_steps: int
    check_batch: int
    nmpc_horizons: list[int]
    nmpc_study_scenarios: list[str]
    nmpc_study_episodes: int
    nmpc_study_steps: int

    BANNER: ClassVar[tuple[str, ...]] = (
        "grade_min", "grade_max", "grade_points", "step_hours", "feed_step", "coolant_step",
        "scenario_samples", "seed", "check_steps", "check_batch",
    )  # fmt: skip

    def check(self) -> None:
        _need(
            0 < self.grade_min < self.grade_max,
            f"need 0 < grade_min < grade_max, got {self.grade_min} and {self.grade_max}",
        )
        _need(self.step_hours > 0, f"parameter 'step_hours' must be > 0, got {self.step_hours}")
        _at_least(2, grade_points=self.grade_points)
        _at_least(1, scenario_samples=self.scenario_samples, check_steps=self.check_steps,
                  check_batch=self.check_batch, nmpc_study_episodes=self.nmpc_study_episodes,
                  nmpc_study_steps=self.nmpc_study_steps)  # fmt: skip
        _non_empty("nmpc_horizons", self.nmpc_horizons)
        _at_least(1, **{f"nmpc_horizons[{i}]": h for i, h in enumerate(self.nmpc_horizons)})
        _non_empty("nmpc_study_scenarios", self.nmpc_study_scenarios)
        _scenarios("nmpc_study_scenarios", self.nmpc_study_scenarios)


@dataclass(frozen=True)
class DatasetPage(PageParameters):
    """Parameters of ``02_dataset``."""

    profile: str
    scenarios: list[str]
    episodes_shown: int
    regenerate: bool

    def check(self) -> None:
        _scenarios("scenarios", self.scenarios)
        _at_least(1, episodes_shown=self.episodes_shown)


@dataclass(frozen=True)
class IQLTheoryPage(PageParameters):
    """Parameters of ``03_iql_theory``."""

    profile: str
    scenario: str
    bc_steps: int
    iql_steps: int
    test_episodes: int
    seed: int
    taus: list[float]

    def check(self) -> None:
        _scenarios("scenario", self.scenario)
        _at_least(1, bc_steps=self.bc_steps, iql_steps=self.iql_steps,
                  test_episodes=self.test_episodes)  # fmt: skip
        _need(all(0 < t < 1 for t in self.taus), f"every tau must lie in (0, 1), got {self.taus}")


@dataclass(frozen=True)
class CostModelsPage(PageParameters):
    """Parameters of ``04_cost_models``."""

    profile: str
    scenarios: list[str]
    train_steps: int
    target: str
    seed: int
    step_size: float
    correction_steps: int
    gradient_scenario: str
    gradient_episodes: int

    def check(self) -> None:
        _scenarios("scenarios", self.scenarios)
        _scenarios("gradient_scenario", self.gradient_scenario)
        _need(
            self.gradient_scenario in self.scenarios,
            f"parameter 'gradient_scenario' must be one of scenarios {self.scenarios}, "
            f"got {self.gradient_scenario!r}",
        )
        _among("target", self.target, ("one_step", "cost_to_go"))
        _need(self.step_size > 0, f"parameter 'step_size' must be > 0, got {self.step_size}")
        _at_least(1, train_steps=self.train_steps, correction_steps=self.correction_steps,
                  gradient_episodes=self.gradient_episodes)  # fmt: skip


@dataclass(frozen=True)
class TrainingPage(PageParameters):
    """The parameters every page that trains agents shares: precision and where it trains."""

    precision: str
    processes: int
    scheduler: Optional[str]  # noqa: UP045 - papermill's help reads the notebook's annotation

    def check(self) -> None:
        _among("precision", self.precision, PRECISIONS)
        _at_least(1, processes=self.processes)


@dataclass(frozen=True)
class CorrectionPage(TrainingPage):
    """What the pages that choose and test a correction share: seeds, budgets, episodes."""

    seeds: list[int]
    cost_steps: int
    correction_steps: int
    validation_episodes: int
    test_episodes: int

    def check(self) -> None:
        _non_empty("seeds", self.seeds)
        _distinct("seeds", self.seeds)
        _at_least(1, cost_steps=self.cost_steps, correction_steps=self.correction_steps,
                  validation_episodes=self.validation_episodes,
                  test_episodes=self.test_episodes)  # fmt: skip
        super().check()


@dataclass(frozen=True)
class LearningCurvesPage(SeedCounts, TrainingPage):
    """Parameters of ``04b_learning_curves``."""

    profile: str
    scenarios: list[str]
    algorithms: list[str]
    seeds: list[int]
    algorithm_seeds: dict[str, int]
    checkpoints: dict[str, list[int]]
    extend_to: dict[str, int]
    validation_episodes: int
    relative_tolerance: float
    range_episodes: int
    variant_algorithms: list[str]
    variant_scenarios: list[str]
    variant_seeds: list[int]
    variant_steps: int

    BANNER: ClassVar[tuple[str, ...]] = (
        "scenarios", "algorithms", "seeds", "algorithm_seeds", "checkpoints", "extend_to",
        "validation_episodes",
        "relative_tolerance", "range_episodes", "precision", "variant_algorithms",
        "variant_scenarios", "variant_seeds", "variant_steps",
    )  # fmt: skip

    def check(self) -> None:
        for name in ("scenarios", "algorithms", "seeds", "variant_algorithms",
                     "variant_scenarios", "variant_seeds"):  # fmt: skip
            _non_empty(name, getattr(self, name))
        _scenarios("scenarios", self.scenarios)
        _scenarios("variant_scenarios", self.variant_scenarios)
        _among("algorithms", self.algorithms, ALGORITHMS)
        _among("variant_algorithms", self.variant_algorithms, ALGORITHMS)
        for algorithm in self.algorithms:
            steps = self.checkpoints.get(algorithm)
            _need(
                bool(steps) and all(k > 0 for k in steps),
                f"parameter 'checkpoints' must map every algorithm to a list of positive step "
                f"counts, got {self.checkpoints!r}",
            )
        _among("extend_to", list(self.extend_to), ALGORITHMS)
        _at_least(1, **{f"extend_to[{a!r}]": k for a, k in self.extend_to.items()})
        _at_least(
            1,
            validation_episodes=self.validation_episodes,
            variant_steps=self.variant_steps,
            range_episodes=self.range_episodes,
        )
        _at_least(0, relative_tolerance=self.relative_tolerance)
        _algorithm_seeds(self.algorithm_seeds, self.seeds)
        super().check()


@dataclass(frozen=True)
class ResultsPage(SeedCounts, CorrectionPage):
    """Parameters of ``05_results`` (one scenario)."""

    profile: str
    scenario: str
    algorithm_seeds: dict[str, int]  # algorithm → train only the first N of seeds
    bc_steps: int
    iql_steps: int
    cql_steps: int
    budget_sources: dict[str, str]
    correction_variants: list[str]
    nmpc_episodes: int
    nmpc_horizon: int  # the oracle's horizon: its row and the decision scale

    BANNER: ClassVar[tuple[str, ...]] = (
        "scenario", "seeds", "algorithm_seeds", "bc_steps", "iql_steps", "cql_steps",
        "budget_sources",
        "cost_steps", "test_episodes", "correction_steps", "correction_variants",
        "validation_episodes", "precision",
    )  # fmt: skip

    def check(self) -> None:
        _scenarios("scenario", self.scenario)
        _at_least(1, bc_steps=self.bc_steps, iql_steps=self.iql_steps, cql_steps=self.cql_steps,
                  nmpc_horizon=self.nmpc_horizon)  # fmt: skip
        _need(
            set(self.budget_sources) == set(ALGORITHMS),
            f"parameter 'budget_sources' must map 'bc', 'iql' and 'cql' to a text, "
            f"got {self.budget_sources!r}",
        )
        _non_empty("correction_variants", self.correction_variants)
        _among("correction_variants", self.correction_variants, sorted(DEFAULT_VARIANTS))
        _need(
            1 <= self.nmpc_episodes <= self.test_episodes,
            f"parameter 'nmpc_episodes' must lie in [1, test_episodes = {self.test_episodes}], "
            f"got {self.nmpc_episodes}",
        )
        super().check()
        _algorithm_seeds(self.algorithm_seeds, self.seeds)

    @property
    def budgets(self) -> dict[str, int]:
        """Algorithm → gradient steps."""
        return {"bc": self.bc_steps, "iql": self.iql_steps, "cql": self.cql_steps}


@dataclass(frozen=True)
class AblationsPage(CorrectionPage):
    """Parameters of ``06_ablations``."""

    profile: str
    scenario: str
    base_algorithm: str
    agent_steps: int
    ensemble_seeds: list[int]
    step_sizes: list[float]
    newton_step_sizes: list[float]
    steps_grid: list[int]
    trust_radii: list[float]
    pessimism: float
    expectiles: list[float]
    tol: float

    BANNER: ClassVar[tuple[str, ...]] = (
        "scenario", "base_algorithm", "seeds", "agent_steps", "cost_steps", "ensemble_seeds",
        "correction_steps", "step_sizes", "newton_step_sizes", "steps_grid", "trust_radii",
        "pessimism", "expectiles", "validation_episodes", "test_episodes", "tol", "precision",
    )  # fmt: skip

    def check(self) -> None:
        _scenarios("scenario", self.scenario)
        _among("base_algorithm", self.base_algorithm, ALGORITHMS)
        for name in ("ensemble_seeds", "step_sizes", "newton_step_sizes", "steps_grid",
                     "trust_radii", "expectiles"):  # fmt: skip
            _non_empty(name, getattr(self, name))
        _distinct("ensemble_seeds", self.ensemble_seeds)
        for name in ("step_sizes", "newton_step_sizes", "trust_radii"):
            values = getattr(self, name)
            _need(all(v > 0 for v in values), f"parameter {name!r} must be positive, got {values}")
        _at_least(1, **{f"steps_grid[{i}]": k for i, k in enumerate(self.steps_grid)})
        _need(
            all(0 < t < 1 for t in self.expectiles),
            f"parameter 'expectiles' must lie in (0, 1), got {self.expectiles}",
        )
        _at_least(1, agent_steps=self.agent_steps)
        _need(
            0 <= self.pessimism <= 1,
            f"parameter 'pessimism' must lie in [0, 1], got {self.pessimism}",
        )
        _at_least(0, tol=self.tol)
        super().check()

    def grid(self) -> AblationGrid:
        """The sweeps these parameters ask :func:`~polycstr_lib.correction.ablations.run_ablations`
        for."""
        return AblationGrid(
            steps=self.correction_steps,
            step_sizes=tuple(self.step_sizes),
            newton_step_sizes=tuple(self.newton_step_sizes),
            steps_grid=tuple(self.steps_grid),
            trust_radii=tuple(self.trust_radii),
            pessimism=self.pessimism,
            tol=self.tol,
        )


@dataclass(frozen=True)
class ClaimsPage(PageParameters):
    """Parameters of ``07_claims``."""

    profile: str
    executed_dir: str


@dataclass(frozen=True)
class CorrectionSupportPage(SeedCounts, CorrectionPage):
    """Parameters of ``08_correction_support``."""

    profile: str
    scenarios: list[str]
    algorithms: list[str]
    algorithm_seeds: dict[str, int]  # algorithm → train only the first N of seeds
    agent_steps: dict[str, Union[int, dict[str, int]]]  # noqa: UP007
    budget_sources: dict[str, str]
    correction_variants: list[str]
    path_states: int
    nmpc_horizon: int  # the oracle's horizon, for the decision scale (the results pages')

    BANNER: ClassVar[tuple[str, ...]] = (
        "scenarios", "algorithms", "seeds", "algorithm_seeds", "agent_steps", "cost_steps",
        "correction_steps",
        "correction_variants", "validation_episodes", "test_episodes", "precision",
    )  # fmt: skip

    def check(self) -> None:
        for name in ("scenarios", "algorithms", "correction_variants"):
            _non_empty(name, getattr(self, name))
        _scenarios("scenarios", self.scenarios)
        _among("algorithms", self.algorithms, ALGORITHMS)
        _among("correction_variants", self.correction_variants, sorted(DEFAULT_VARIANTS))
        for algorithm in self.algorithms:
            steps = self.agent_steps.get(algorithm)
            per = steps if isinstance(steps, dict) else dict.fromkeys(self.scenarios, steps)
            _need(
                all(isinstance(per.get(s), int) and per[s] >= 1 for s in self.scenarios),
                "parameter 'agent_steps' must map every algorithm to a positive integer or to "
                f"a positive integer per scenario, got {self.agent_steps!r}",
            )
            _need(
                algorithm in self.budget_sources,
                f"parameter 'budget_sources' must map every algorithm to a text, "
                f"got {self.budget_sources!r}",
            )
        _at_least(1, path_states=self.path_states, nmpc_horizon=self.nmpc_horizon)
        super().check()
        _algorithm_seeds(self.algorithm_seeds, self.seeds)

    @property
    def steps_of(self) -> dict[str, dict[str, int]]:
        """Algorithm → scenario → gradient steps."""
        return {
            a: {
                s: self.agent_steps[a][s] if isinstance(self.agent_steps[a], dict)
                else self.agent_steps[a]
                for s in self.scenarios
            }
            for a in self.algorithms
        }  # fmt: skip


#: Notebook stem → its parameters' class.
PAGES: dict[str, type[PageParameters]] = {
    "01_environment": EnvironmentPage,
    "02_dataset": DatasetPage,
    "03_iql_theory": IQLTheoryPage,
    "04_cost_models": CostModelsPage,
    "04b_learning_curves": LearningCurvesPage,
    "05_results": ResultsPage,
    "06_ablations": AblationsPage,
    "07_claims": ClaimsPage,
    "08_correction_support": CorrectionSupportPage,
}
