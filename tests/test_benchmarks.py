"""The training benchmark's work count: FLOPs per agent-step against a hand count."""

from __future__ import annotations

import importlib.util

import pytest

from polycstr_lib.toolkit.store import REPO_ROOT


@pytest.fixture(scope="module")
def training_benchmark():
    spec = importlib.util.spec_from_file_location(
        "training_benchmark", REPO_ROOT / "benchmarks" / "training.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bc_flops_per_step_match_a_hand_count(training_benchmark):
    """BC's policy is 9 → 256 → 256 → 2: forward 2·B·Σ(in·out) FLOPs, backward twice that
    less the first layer's input gradient."""
    batch = training_benchmark.BATCH_SIZE
    layers = [(9, 256), (256, 256), (256, 2)]
    forward = sum(2 * batch * i * o for i, o in layers)
    backward = 2 * forward - 2 * batch * 9 * 256
    assert training_benchmark.flops_per_agent_step("bc") == forward + backward


def test_iql_costs_about_five_bc_steps_and_cql_more_than_ten_iql_steps(training_benchmark):
    bc, iql, cql = (training_benchmark.flops_per_agent_step(a) for a in ("bc", "iql", "cql"))
    assert 4 < iql / bc < 6
    assert cql / iql > 10
