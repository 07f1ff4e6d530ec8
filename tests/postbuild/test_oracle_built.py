"""After `make book`: every results page has the NMPC oracle's row, and the oracle is sound."""

import math
from pathlib import Path

import pytest

from polycstr_lib.book.glue import read_glue
from polycstr_lib.reactor.scenarios import SCENARIOS

EXECUTED = Path(__file__).resolve().parents[2] / "book" / "executed"
METHODS = ("PI", "BC", "BC+", "IQL", "IQL+", "CQL", "CQL+")


@pytest.fixture(scope="module")
def results():
    pages = {s: EXECUTED / f"05_results_{s}.ipynb" for s in SCENARIOS}
    if not all(p.exists() for p in pages.values()):
        pytest.skip("results pages missing: run `make book` first")
    return {s: read_glue(p) for s, p in pages.items()}


def test_every_results_page_has_the_oracle_and_optimality_scores(results):
    for scenario, values in results.items():
        for col in ("mean", "min", "max", "violations", "offset"):
            assert f"NMPC_{col}" in values, (scenario, col)
        for method in METHODS:
            score = values[f"{method}_optimality"]
            assert math.isfinite(score), (scenario, method)


def test_oracle_beats_pi_without_violations(results):
    for scenario, values in results.items():
        assert values["NMPC_violations"] == 0, scenario
        assert values["NMPC_mean"] >= values["PI_mean_oracle_episodes"], scenario
        assert values["PI_optimality"] < 100.0, scenario


def test_environment_page_has_the_horizon_study():
    page = EXECUTED / "01_environment.ipynb"
    if not page.exists():
        pytest.skip("book/executed/01_environment.ipynb missing: run `make book` first")
    values = read_glue(page)
    assert values["nmpc_study_violations"] == 0
    assert values["nmpc_loss"] < 0.01  # the chosen horizon's rule (see the page)


def test_claims_page_names_the_closest_agents():
    page = EXECUTED / "07_claims.ipynb"
    if not page.exists():
        pytest.skip("book/executed/07_claims.ipynb missing: run `make book` first")
    assert "no results page" not in read_glue(page)["closest_to_oracle"]


def test_every_results_page_has_the_hold_row_and_its_scale(results):
    for scenario, values in results.items():
        for col in ("iqm", "mean", "worst", "episodes"):
            assert f"HOLD_{col}" in values, (scenario, col)
        assert values["HOLD_optimality"] == pytest.approx(0.0, abs=1e-9), scenario
        assert values["scale_range"] > 0, scenario
        assert values["scale_oracle"] == pytest.approx(values["NMPC_mean"]), scenario
        assert values["scale_range"] == pytest.approx(
            values["scale_oracle"] - values["scale_hold"]
        ), scenario
