"""The build plan (polycstr_lib.book.plan) and the task ledger it is checked against."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from polycstr_lib.book import pipeline, plan, profiles
from polycstr_lib.toolkit.ledger import LEDGER_ENV, ledger_task, read_ledger, record_task

#: A results page with tiny parameters: training, cost model, sweep, NMPC and evaluation.
TINY = {
    "05_results": {
        "seeds": [0],
        "bc_steps": 4,
        "iql_steps": 4,
        "cql_steps": 3,
        "cost_steps": 4,
        "test_episodes": 2,
        "nmpc_episodes": 1,
        "nmpc_horizon": 2,
        "correction_variants": ["plain"],
        "validation_episodes": 1,
        "processes": 1,
    },
}
PAGES = ["05_results_startup"]


def test_the_ledger_records_only_when_asked_and_nests_rollouts(tmp_path, monkeypatch):
    from polycstr_lib.reactor.pi import GainRanges, PIController
    from polycstr_lib.reactor.rollout import rollout

    path = tmp_path / "tasks.jsonl"
    monkeypatch.delenv(LEDGER_ENV, raising=False)
    rollout(PIController(GainRanges().nominal()), "startup", [1], steps=3)
    assert not path.exists()
    monkeypatch.setenv(LEDGER_ENV, str(path))
    rollout(PIController(GainRanges().nominal()), "startup", [1, 2], steps=3)
    with ledger_task("sweep", scenario="startup", agents=1, settings=2, episodes=1):
        rollout(PIController(GainRanges().nominal()), "startup", [1], steps=2)
    first, inner, outer = read_ledger(path)
    assert (first["kind"], first["episodes"], first["steps"], first["within"]) == (
        "rollout", 2, 3, None,
    )  # fmt: skip
    assert (inner["kind"], inner["within"], outer["kind"]) == ("rollout", "sweep", "sweep")
    assert plan.ledger_counts([first, inner, outer]) == {
        "evaluate": 2, "sweep": 1, "sweep episodes": 2,
    }  # fmt: skip


def test_a_broken_ledger_line_is_named(tmp_path):
    path = tmp_path / "tasks.jsonl"
    path.write_text('{"kind": "train"}\nnot json\n')
    with pytest.raises(ValueError, match=r"tasks.jsonl:2"):
        read_ledger(path)


def test_training_rates_are_fitted_from_the_ledger(tmp_path, monkeypatch):
    monkeypatch.setenv(LEDGER_ENV, str(tmp_path / "tasks.jsonl"))
    a, b = 0.003, 0.002
    for members, steps in ((1, 100), (4, 200), (8, 50)):
        record_task("train", steps * (a + b * members), algorithm="iql", scenario="startup",
                    seeds=list(range(members)), steps=steps, members=members)  # fmt: skip
    record_task("cost_model", 2.0, scenario="startup", model="picnn", steps=100, members=2)
    for episodes in (5, 50):  # 100-step calls: 1 s per call and 0.02 s per episode, per 200 steps
        record_task("rollout", (1.0 + 0.02 * episodes) / 2, scenario="startup",
                    episodes=episodes, steps=100)  # fmt: skip
    rates = plan.rates_from_ledger(read_ledger(tmp_path / "tasks.jsonl"))
    assert (rates.rollout_call, rates.rollout) == pytest.approx((1.0, 0.02))
    assert np.allclose(rates.train["iql"], (a, b))
    assert rates.train["bc"] == plan.ASSUMED_RATES.train["bc"]
    assert rates.cost_model == pytest.approx(0.01)
    assert rates.sources["train iql"].startswith("ledger") and rates.sources["sweep"] == "assumed"
    assert plan.Rates.from_json(json.loads(json.dumps(rates.to_json()))) == rates


def test_a_ledger_that_measures_every_algorithm_assumes_no_training(tmp_path, monkeypatch):
    monkeypatch.setenv(LEDGER_ENV, str(tmp_path / "tasks.jsonl"))
    for algo in ("bc", "iql"):
        record_task("train", 1.0, algorithm=algo, scenario="startup", seeds=[0], steps=100,
                    members=1)  # fmt: skip
    partial = plan.rates_from_ledger(read_ledger(tmp_path / "tasks.jsonl"))
    assert partial.sources["train"] == "assumed"  # CQL's rate is still the assumed one
    record_task("train", 1.0, algorithm="cql", scenario="startup", seeds=[0], steps=10, members=1)
    full = plan.rates_from_ledger(read_ledger(tmp_path / "tasks.jsonl"))
    assert "train" not in full.sources
    assert {f"train {a}" for a in ("bc", "iql", "cql")} <= set(full.sources)


def test_the_matmul_speed_is_measured_and_bad_input_refused():
    assert 1.0 < plan.matmul_gflops(0.05) < 10_000
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="seconds"):
            plan.matmul_gflops(bad)
        with pytest.raises(ValueError, match="factor"):
            plan.scaled_rates(plan.ASSUMED_RATES, bad, "why")
        with pytest.raises(ValueError, match="gflops"):
            plan.machine_rates(gflops=bad)


def test_assumed_rates_scale_with_this_machines_matmul_speed():
    ref = plan.REFERENCE_MATMUL_GFLOPS
    same = plan.machine_rates(gflops=ref)
    faster = plan.machine_rates(gflops=2 * ref)
    base = plan.ASSUMED_RATES
    times = ("cost_model", "rollout", "sweep", "nmpc", "page", "rollout_call", "sweep_call")
    for name in times:
        assert getattr(same, name) == pytest.approx(getattr(base, name))
        assert getattr(faster, name) == pytest.approx(getattr(base, name) / 2)
    for algo, (a, b) in base.train.items():
        assert faster.train[algo] == pytest.approx((a / 2, b / 2))
    assert set(faster.sources) == set(base.sources)
    assert all(v.startswith("assumed, × 0.50 (matmul") for v in faster.sources.values())


def test_a_cold_plan_on_a_twice_as_fast_machine_estimates_half_the_time(tmp_path, monkeypatch):
    """Nothing measured (an empty store, no build): the plan's rates are the assumed ones
    scaled by this machine's matmul speed, so every page's estimate scales with it."""
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path / "store"))
    monkeypatch.setattr(plan, "matmul_gflops", lambda: 2 * plan.REFERENCE_MATMUL_GFLOPS)
    cold = plan.build_plan("quick", executed_dir=tmp_path / "executed")
    assumed = plan.build_plan("quick", executed_dir=tmp_path / "executed",
                              rates=plan.ASSUMED_RATES)  # fmt: skip
    assert cold.rates.nmpc == pytest.approx(plan.ASSUMED_RATES.nmpc / 2)
    for page, seconds in assumed.page_seconds.items():
        assert cold.page_seconds[page] == pytest.approx(seconds / 2)
    assert "matmul" in plan.plan_text(cold)


def test_training_spreads_over_workers():
    rates = plan.ASSUMED_RATES
    one = plan.Task("p", "train", "startup", "", algorithm="bc", seeds=(0, 1, 2, 3),
                    steps=1000, max_members=2)  # fmt: skip
    a, b = rates.train["bc"]
    assert plan.training_wall([one], rates, 1) == pytest.approx(2 * 1000 * (a + 2 * b))
    assert plan.training_wall([one], rates, 2) == pytest.approx(1000 * (a + 2 * b))
    assert plan.task_seconds(one, rates) == pytest.approx(2 * 1000 * (a + 2 * b))


def test_bad_input_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="workers"):
        plan.build_plan("quick", workers=0)
    with pytest.raises(ValueError, match="unknown profile"):
        plan.build_plan("nope")
    for argv in (["plan", "--workers", "0"], ["plan", "--profile", "nope"]):
        done = subprocess.run(
            [sys.executable, "-m", "polycstr_lib", *argv], capture_output=True, text=True
        )
        assert done.returncode == 2
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_the_timings_table_shows_the_plan_beside_the_measured_time(tmp_path):
    meta = {"papermill": {"duration": 120.0, "end_time": "2026-11-22T06:34:51",
                          "parameters": {"profile": "quick"}}}  # fmt: skip
    (tmp_path / "02_dataset.ipynb").write_text(json.dumps({"cells": [], "metadata": meta}))
    (tmp_path / plan.PLAN_FILE).write_text(
        json.dumps({"page_seconds": {"02_dataset": 90.0, "03_iql_theory": 30.0}})
    )
    lines = pipeline.write_timings_table(tmp_path).read_text().splitlines()
    assert lines[0] == "| Page | Profile | Execution (min) | Plan (min) | Finished (UTC) |"
    assert lines[3] == "| `02_dataset` | quick | 2.0 | 1.5 | 2026-11-22 06:34 |"
    assert lines[4] == "| `03_iql_theory` | not executed | | 0.5 | |"
    assert lines[-1] == "| all pages | | 2.0 | 2.0 | |"


#: The tiny results page with two seeds, CQL on the first only (``algorithm_seeds``).
TINY_FEWER_CQL = {"05_results": {**TINY["05_results"], "seeds": [0, 1],
                                 "algorithm_seeds": {"cql": 1}}}  # fmt: skip


# one build (about 30 s): two seeds with CQL on the first covers the one-seed build's counts
@pytest.mark.parametrize(
    ("profile", "trained", "seeds"), [(TINY_FEWER_CQL, 5, {"bc": 2, "iql": 2, "cql": 1})]
)
def test_the_plan_counts_what_a_tiny_build_trains_and_evaluates(
    tmp_path, monkeypatch, profile, trained, seeds
):
    """The issue's check: before the build the plan lists exactly the runs the build then
    records in its ledger; after it, every cacheable task is cached. With CQL on fewer seeds
    the plan counts CQL's own seeds (BC and IQL 2 each, CQL 1)."""
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path / "store"))
    monkeypatch.delenv(LEDGER_ENV, raising=False)
    monkeypatch.setitem(profiles.PROFILES, "tiny", profile)
    folder = tmp_path / "executed"
    before = plan.build_plan("tiny", workers=1, executed_dir=folder, only=PAGES)
    assert {t.page for t in before.tasks} == set(PAGES)
    assert all(t.status in ("missing", "runs") for t in before.tasks)
    pipeline.execute_notebooks("tiny", only=PAGES, executed_dir=folder)
    done = plan.ledger_counts(read_ledger(folder / plan.LEDGER_FILE))
    planned = before.counts(("missing", "runs"))
    # the "+" rows run only for an algorithm whose validation deploys a correction
    plus = [t for t in before.tasks if t.assumed and t.kind == "evaluate"]
    sure = planned["evaluate"] - sum(t.episodes for t in plus)
    assert sure <= done["evaluate"] <= planned["evaluate"]
    assert (done["evaluate"] - sure) % TINY["05_results"]["test_episodes"] == 0
    del planned["evaluate"], done["evaluate"]
    assert done == planned
    # NMPC: the oracle row (test) and the decision scale (validation)
    assert planned["train"] == trained and planned["cost_model"] == 1 and planned["nmpc"] == 2
    assert {t.algorithm: len(t.seeds) for t in before.tasks if t.kind == "train"} == seeds
    assert planned["sweep"] == 1
    rates = json.loads((folder / plan.RATES_FILE).read_text())
    assert rates["sources"]["train bc"].startswith("ledger")
    after = plan.build_plan("tiny", workers=1, executed_dir=folder, only=PAGES)
    assert {t.status for t in after.tasks if t.kind != "evaluate"} == {"cached"}
    assert "Plan (min)" in (folder / "timings.md").read_text()


def test_before_the_curves_page_the_results_pages_take_the_largest_curve_budget(
    tmp_path, monkeypatch
):
    """A cold paper plan: the results pages' agents are the curves page's runs (extended to
    their cap), said so; every page has an estimate; the breakdown sums to the tasks'."""
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path / "store"))
    built = plan.build_plan("paper", workers=2, executed_dir=tmp_path / "executed",
                            rates=plan.ASSUMED_RATES)  # fmt: skip
    assert list(built.page_seconds) == [r.page for r in profiles.runs_for("paper")]
    curves = profiles.effective_parameters("04b_learning_curves", "paper")
    for page in ("05_results_startup", "05_results_grade_up"):
        train = [t for t in built.tasks if t.page == page and t.kind == "train"]
        assert {t.algorithm: t.steps for t in train} == {
            a: max(*curves["checkpoints"][a], curves["extend_to"].get(a, 0))
            for a in ("bc", "iql", "cql")
        }
        assert {t.status for t in train} == {"shared"}
        assert all(t.assumed.startswith("budgets not yet measured") for t in train)
    assert all(t.status in ("missing", "runs", "shared") for t in built.tasks)
    # chapter 08 sweeps the results pages' agents in their order: their sweeps, not new ones
    support = [t for t in built.tasks if t.page == "08_correction_support" and t.kind == "sweep"]
    assert [(t.status, t.shared_with) for t in support] == [
        ("shared", f"05_results_{s}") for s in ("startup", "grade_down", "grade_up")
    ]
    ensembles = [t for t in built.tasks if t.kind == "cost_model" and "ensemble" in t.what]
    assert {t.members for t in ensembles if t.status == "missing"} == {2}  # member 0: the PICNN
    by_kind = plan.kind_seconds(built)
    assert sum(by_kind[k] for k in plan.KINDS) == pytest.approx(sum(t.seconds for t in built.tasks))
    text = plan.plan_text(built)
    assert "05_results_startup" in text and "time by kind of task" in text


#: Chapter 08 with tiny parameters: it chooses as a results page does and tests once.
TINY_SUPPORT = {
    "08_correction_support": {
        "scenarios": ["startup"],
        "algorithms": ["bc"],
        "seeds": [0],
        "agent_steps": {"bc": 4, "iql": 4, "cql": 3},
        "cost_steps": 4,
        "correction_variants": ["plain"],
        "validation_episodes": 1,
        "test_episodes": 2,
        "nmpc_horizon": 2,
        "path_states": 2,
        "processes": 1,
    },
}


#: Chapter 08 with BC on two seeds and CQL on the first only.
TINY_SUPPORT_FEWER_CQL = {
    "08_correction_support": {**TINY_SUPPORT["08_correction_support"], "seeds": [0, 1],
                              "algorithms": ["bc", "cql"], "algorithm_seeds": {"cql": 1}},
}  # fmt: skip


# one build: BC on two seeds and CQL on one covers the one-algorithm, one-seed chapter's counts
@pytest.mark.parametrize(("profile", "trained"), [(TINY_SUPPORT_FEWER_CQL, 3)])
def test_the_plan_counts_what_chapter_08_trains_and_evaluates(
    tmp_path, monkeypatch, profile, trained
):
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path / "store"))
    monkeypatch.delenv(LEDGER_ENV, raising=False)
    monkeypatch.setitem(profiles.PROFILES, "tiny08", profile)
    folder, pages = tmp_path / "executed", ["08_correction_support"]
    before = plan.build_plan("tiny08", workers=1, executed_dir=folder, only=pages)
    pipeline.execute_notebooks("tiny08", only=pages, executed_dir=folder)
    done = plan.ledger_counts(read_ledger(folder / plan.LEDGER_FILE))
    planned = before.counts(("missing", "runs"))
    plus = sum(t.episodes for t in before.tasks if t.assumed and t.kind == "evaluate")
    assert planned["evaluate"] - plus <= done["evaluate"] <= planned["evaluate"]
    del planned["evaluate"], done["evaluate"]
    assert done == planned
    assert planned["train"] == trained and planned["nmpc"] == 1 and planned["sweep"] == 1


def test_calibration_measures_every_rate_in_a_private_store(tmp_path, monkeypatch):
    store = tmp_path / "store"
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(store))
    monkeypatch.delenv(LEDGER_ENV, raising=False)
    rates = plan.calibrate(scale=0.02)
    for name in ("train bc", "train iql", "train cql", "cost_model", "nmpc", "rollout", "sweep"):
        assert rates.sources[name].startswith("calibration"), (name, rates.sources[name])
    assert all(b > 0 for _, b in (rates.train[a] for a in ("bc", "iql", "cql")))
    assert min(rates.cost_model, rates.nmpc, rates.rollout, rates.sweep) > 0
    # CQL samples actions for its conservative term: dearer per step than IQL, IQL than BC
    per_member = {a: sum(rates.train[a]) for a in ("bc", "iql", "cql")}
    assert per_member["bc"] < per_member["cql"] and per_member["iql"] < per_member["cql"]
    # the caller's store and ledger are untouched and restored
    assert not store.exists()
    assert LEDGER_ENV not in os.environ


def test_calibration_refuses_a_scale_that_is_not_positive():
    with pytest.raises(ValueError, match="scale must be positive"):
        plan.calibrate(scale=0)


def test_the_curves_pages_oracle_runs_are_planned_and_shared(tmp_path, monkeypatch):
    """The curves page runs each scenario's oracle for its hold-to-oracle range: planned there,
    and shared by the page that needs the same run later (quick: the startup results page's
    decision scale; paper: the environment page's horizon study runs it first)."""
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path / "store"))

    def oracle_runs(profile: str) -> dict[str, list[tuple[str, str, str]]]:
        built = plan.build_plan(profile, workers=2, executed_dir=tmp_path / profile,
                                rates=plan.ASSUMED_RATES)  # fmt: skip
        out: dict[str, list[tuple[str, str, str]]] = {}
        for t in built.tasks:
            if t.kind == "nmpc" and "validation" in t.what:
                out.setdefault(t.page, []).append((t.scenario, t.status, t.shared_with))
        return out

    quick = oracle_runs("quick")
    assert quick["04b_learning_curves"] == [("startup", "missing", "")]
    assert ("startup", "shared", "04b_learning_curves") in quick["05_results_startup"]
    paper = oracle_runs("paper")
    assert {s for s, *_ in paper["04b_learning_curves"]} == {"startup", "grade_down", "grade_up"}
    assert {(status, shared) for _, status, shared in paper["04b_learning_curves"]} == {
        ("shared", "01_environment")
    }
