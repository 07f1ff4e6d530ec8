"""Per-algorithm seed counts (``algorithm_seeds``): CQL may train only the first N seeds."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
from test_correction_tuning import AGENTS, MODELS, STEPS, TASK, VARIANTS

from polycstr_lib.agents.sweeps import per_scenario_configs, seed_ensemble_configs, seeds_of
from polycstr_lib.analysis.results_page import seeds_glue
from polycstr_lib.book.parameters import (
    CorrectionSupportPage,
    LearningCurvesPage,
    ParameterError,
    ResultsPage,
)
from polycstr_lib.book.profiles import PROFILES, effective_parameters


def test_seeds_of_takes_the_first_n_seeds() -> None:
    assert seeds_of("cql", [4, 7, 9], {"cql": 2}) == [4, 7]
    assert seeds_of("bc", [4, 7, 9], {"cql": 2}) == [4, 7, 9]
    assert seeds_of("bc", [4, 7], None) == [4, 7]
    for bad in (0, 4):
        with pytest.raises(ValueError, match=r"algorithm_seeds\['cql'\] must lie in \[1, 3\]"):
            seeds_of("cql", [0, 1, 2], {"cql": bad})


def test_the_configs_train_each_algorithm_at_its_own_seeds() -> None:
    configs = seed_ensemble_configs("startup", {"bc": 10, "cql": 5}, [0, 1, 2], "float32",
                                    {"cql": 1})  # fmt: skip
    assert [(c.seed, c.algorithm) for c in configs] == [
        (0, "bc"), (0, "cql"), (1, "bc"), (2, "bc"),
    ]  # fmt: skip
    steps = {"bc": {"startup": 3, "grade_up": 4}, "cql": {"startup": 5, "grade_up": 6}}
    per = per_scenario_configs(["startup", "grade_up"], steps, [0, 1, 2], "float32", {"cql": 2})
    assert [(c.scenario, c.algorithm, c.seed) for c in per if c.algorithm == "cql"] == [
        ("startup", "cql", 0), ("startup", "cql", 1),
        ("grade_up", "cql", 0), ("grade_up", "cql", 1),
    ]  # fmt: skip
    assert sum(c.algorithm == "bc" for c in per) == 6
    # without a count every algorithm has every seed, as before
    assert len(seed_ensemble_configs("startup", {"bc": 10, "cql": 5}, [0, 1, 2])) == 6


def test_curve_runs_and_the_curve_use_each_algorithms_seeds(monkeypatch) -> None:
    from polycstr_lib.analysis import curves

    longest, snapshots = curves.curve_runs(
        {("bc", "startup"): [10, 20], ("cql", "startup"): [5, 10]}, [0, 1, 2], "float32",
        {"cql": 1},
    )  # fmt: skip
    assert sorted((c.algorithm, c.seed, c.steps) for c in longest) == [
        ("bc", 0, 20), ("bc", 1, 20), ("bc", 2, 20), ("cql", 0, 10),
    ]  # fmt: skip
    assert snapshots == [5, 10, 20]

    class Agent:
        def __init__(self, seed: int) -> None:
            self.seed = seed

        def act(self, obs):  # pragma: no cover - never rolled out here
            return obs

    def fake_metrics(policies, scenario, episodes, *bounds):
        return [
            pd.DataFrame({"normalised_reward": [50.0 + p.__self__.seed] * episodes,
                          "runaway": [False] * episodes, "violations": [0] * episodes})
            for p in policies
        ]  # fmt: skip

    monkeypatch.setattr(curves, "train_many", lambda *a, **k: [])
    monkeypatch.setattr(curves, "train_agent", lambda config, **k: (Agent(config.seed), None))
    monkeypatch.setattr(curves, "evaluate_agents", fake_metrics)
    curve = curves.learning_curve(
        ["bc", "cql"], "startup", [0, 1, 2], {"bc": [10], "cql": [5]}, 2,
        {"startup": (0.0, 1.0)}, algorithm_seeds={"cql": 2},
    )  # fmt: skip
    assert curve.groupby("algorithm")["seed"].apply(sorted).to_dict() == {
        "bc": [0, 1, 2], "cql": [0, 1],
    }  # fmt: skip
    aggregate = curves.aggregate_curve(curve, reps=10).set_index("algorithm")
    assert aggregate.loc["cql", "seeds"] == 2 and aggregate.loc["bc", "seeds"] == 3
    with pytest.raises(ValueError, match="algorithm_seeds"):
        curves.learning_curve("cql", "startup", [0], [5], 1, {"startup": (0.0, 1.0)},
                              algorithm_seeds={"cql": 2})  # fmt: skip


def test_evaluate_methods_runs_each_algorithm_at_the_seeds_it_has() -> None:
    from polycstr_lib.analysis.report import results_page_table
    from polycstr_lib.analysis.results import results_table
    from polycstr_lib.analysis.results_page import evaluate_methods
    from polycstr_lib.correction.deployment import deploy_from_sweep
    from polycstr_lib.correction.sweep import sweep_corrections
    from polycstr_lib.correction.task import CorrectionSetup, load_task

    task = load_task("startup")
    plain = {"plain": VARIANTS["plain"]}
    sweep = sweep_corrections(
        CorrectionSetup(AGENTS, MODELS, TASK), 1, plain, {"plain": STEPS["plain"]}, cache=False
    )
    (deployment,) = deploy_from_sweep(sweep, plain, "startup").values()
    none = dataclasses.replace(
        deployment, variant="none", step_size=0.0, fallback=True, setting=None
    )
    # "twin" (a CQL) has only the first of the two seeds
    agents = {("hold", 0): AGENTS["hold", 0], ("hold", 1): AGENTS["hold", 1],
              ("twin", 0): AGENTS["hold", 1]}  # fmt: skip
    deployments = {"hold": none, "twin": none}
    runs = evaluate_methods(task, agents, MODELS, deployments, ["hold", "twin"], [0, 1], 1)
    assert set(runs.per_seed["HOLD"]) == {0, 1}
    for row in ("TWIN", "TWIN+", "TWIN+ (no tuning)"):
        assert set(runs.per_seed[row]) == {0}
    assert runs.trajectories["TWIN+"] is runs.trajectories["TWIN"]
    table = results_table(runs.per_seed, reps=10)
    assert table.loc["TWIN", "seeds"] == 1 and table.loc["HOLD", "seeds"] == 2
    notes = results_page_table(table).notes
    assert any(n.startswith("Training seeds per row") and "1 for TWIN, TWIN+" in n for n in notes)
    # every row with its seeds: no note
    same = results_table({k: v for k, v in runs.per_seed.items() if "TWIN" not in k}, reps=10)
    assert not any(n.startswith("Training seeds") for n in results_page_table(same).notes)
    with pytest.raises(ValueError, match="no twin agent at any of the seeds"):
        evaluate_methods(task, {("hold", 0): AGENTS["hold", 0]}, MODELS, deployments,
                         ["hold", "twin"], [0], 1)  # fmt: skip


def test_chapter_08_tests_each_algorithm_at_its_own_seeds(monkeypatch) -> None:
    from test_deployment import run, shifted, sweep_of
    from test_page_library import _synthetic_support

    from polycstr_lib.analysis import correction_support
    from polycstr_lib.correction.variants import DEFAULT_STEP_SIZES

    rows = [run(a, s, v, eta, shifted(5.0, worst=20.0), runaways=0)
            for a in ("bc", "iql") for s in (0, 1) for v in ("plain",)
            for eta in DEFAULT_STEP_SIZES[v]]  # fmt: skip
    support = _synthetic_support(monkeypatch, sweep_of(rows), ["plain"])
    agents = {("bc", 0): AGENTS["hold", 0], ("bc", 1): AGENTS["hold", 1],
              ("iql", 0): AGENTS["hold", 1]}  # fmt: skip
    test = correction_support.test_deployed({"startup": TASK}, {"startup": agents}, support,
                                            [0, 1], 1)  # fmt: skip
    assert test.set_index("algorithm")["seeds"].to_dict() == {"bc": 2, "iql": 1}
    assert test.set_index("algorithm")["episodes"].to_dict() == {"bc": 2, "iql": 1}
    assert "Seeds" in correction_support.test_page_table(test).frame.columns
    even = test.assign(seeds=2)
    assert "Seeds" not in correction_support.test_page_table(even).frame.columns


def test_half_choices_split_each_algorithms_own_seeds() -> None:
    from test_claims import _choice_page, _sweep_glue

    from polycstr_lib.analysis.claims import half_choices

    sweep = _sweep_glue(0)
    for seed in (0, 1):  # CQL on the first two of IQL's four seeds
        base = [80.0, 81.0, 82.0, 83.0]
        sweep["rows"] += [["cql", seed, "none", 0.0, 0, base],
                          ["cql", seed, "plain", 0.1, 0, [x + 5.0 for x in base]]]  # fmt: skip
    page = _choice_page(sweep) | {"deploy_cql": "plain, step size 0.1"}
    choices = half_choices({"startup": page}, None)
    cql = choices[choices["algorithm"] == "cql"]
    assert sorted(cql["half"]) == [0, 1] and cql["agrees"].all()
    assert sorted(choices.loc[choices["algorithm"] == "iql", "half"]) == [0, 1]


def test_seeds_glue_states_fewer_seeds_and_why() -> None:
    same = seeds_glue(["bc", "cql"], [0, 1, 2], {})
    assert same["n_seeds"] == 3 and same["n_seeds_cql"] == 3
    assert same["seeds_note"] == "Every agent has all 3 training seeds."
    assert seeds_glue(["bc"], [0], {})["seeds_note"] == "Every agent has this one training seed."
    fewer = seeds_glue(["bc", "iql", "cql"], list(range(10)), {"cql": 3})
    assert (fewer["n_seeds_bc"], fewer["n_seeds_cql"]) == (10, 3)
    assert fewer["seeds_note"].startswith("CQL trains only the first 3 of the 10 seeds")
    both = seeds_glue(["bc", "iql", "cql"], [0, 1, 2], {"iql": 2, "cql": 1})["seeds_note"]
    assert both.startswith("IQL and CQL train fewer of the 3 seeds (IQL the first 2, CQL the")
    assert "costs far more" in fewer["seeds_note"]
    # a count for an algorithm the page does not train says nothing
    assert seeds_glue(["bc"], [0, 1], {"cql": 1})["seeds_note"].startswith("Every agent")


@pytest.mark.parametrize(
    ("page", "base", "changes", "message"),
    [
        (ResultsPage, "05_results", {"algorithm_seeds": {"ppo": 1}},
         r"'algorithm_seeds' must be among \['bc', 'iql', 'cql'\], got \['ppo'\]"),
        (ResultsPage, "05_results", {"algorithm_seeds": {"cql": 0}},
         r"'algorithm_seeds' must map 'cql' to a count in \[1, 1\]"),
        (ResultsPage, "05_results", {"seeds": [0, 1], "algorithm_seeds": {"cql": 3}},
         r"'algorithm_seeds' must map 'cql' to a count in \[1, 2\].*got 3"),
        (ResultsPage, "05_results", {"algorithm_seeds": {"cql": "1"}},
         r"algorithm_seeds\['cql'\]. must be an integer"),
        (LearningCurvesPage, "04b_learning_curves", {"algorithm_seeds": {"cql": 3}},
         r"'algorithm_seeds' must map 'cql' to a count in \[1, 2\]"),
        (CorrectionSupportPage, "08_correction_support", {"algorithm_seeds": {"sac": 1}},
         r"'algorithm_seeds' must be among"),
    ],
)  # fmt: skip
def test_algorithm_seeds_errors_are_one_line(page, base, changes, message) -> None:
    params = {**effective_parameters(base, "quick"), **changes}
    with pytest.raises(ParameterError, match=message) as error:
        page.from_notebook(params)
    assert "\n" not in str(error.value)


def test_pages_give_each_algorithm_its_seeds() -> None:
    params = {**effective_parameters("05_results", "quick"), "seeds": [5, 6, 7],
              "algorithm_seeds": {"cql": 2}}  # fmt: skip
    page = ResultsPage.from_notebook(params)
    assert page.seeds_for("cql") == [5, 6] and page.seeds_for("bc") == [5, 6, 7]
    assert "algorithm_seeds" in page.banner()


def test_the_profiles_train_cql_on_the_same_first_seeds_everywhere() -> None:
    quick = [effective_parameters(n, "quick")["algorithm_seeds"]
             for n in ("04b_learning_curves", "05_results", "08_correction_support")]  # fmt: skip
    assert quick == [{}, {}, {}]  # the quick book: every algorithm all seeds
    paper = PROFILES["paper"]
    counts = [paper[n]["algorithm_seeds"]
              for n in ("04b_learning_curves", "05_results", "08_correction_support")]  # fmt: skip
    assert counts[0] == counts[1] == counts[2] and counts[0]["cql"] < len(
        paper["05_results"]["seeds"]
    )
    assert paper["04b_learning_curves"]["seeds"] == paper["05_results"]["seeds"]


def test_claims_read_cql_across_its_own_seeds() -> None:
    from test_claims import COST, scenario_values, seeded

    from polycstr_lib.analysis.claims import assess_claims, seed_halves

    results = {}
    for scenario in ("startup", "grade_down", "grade_up"):
        page = seeded(scenario_values(), "BC", [40.0, 41.0, 42.0, 43.0])
        results[scenario] = seeded(page, "CQL", [60.0, 61.0])  # CQL: the first two seeds
    c8 = assess_claims(results, COST).loc["C8"]
    assert c8["verdict"] == "holds" and c8["this build"].endswith("; seeds: CQL 2, BC 4")
    first, second = seed_halves(results)
    assert first["startup"]["CQL_seeds"] == [0] and second["startup"]["CQL_seeds"] == [1]
    assert first["startup"]["BC_seeds"] == [0, 1] and second["startup"]["BC_seeds"] == [2, 3]
