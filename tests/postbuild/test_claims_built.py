"""After `make book`: the claims page's verdicts follow from the glued values it read."""

from pathlib import Path

import pytest

from polycstr_lib.analysis.claims import (
    assess_claims,
    claims_table,
    stability_counts,
    verdict_counts,
)
from polycstr_lib.book.glue import read_glue
from polycstr_lib.reactor.scenarios import SCENARIOS

EXECUTED = Path(__file__).resolve().parents[2] / "book" / "executed"


@pytest.fixture(scope="module")
def pages():
    claims_page = EXECUTED / "07_claims.ipynb"
    if not claims_page.exists():
        pytest.skip("book/executed/07_claims.ipynb missing: run `make book` first")
    results = {s: read_glue(EXECUTED / f"05_results_{s}.ipynb") for s in SCENARIOS}
    return results, read_glue(EXECUTED / "04_cost_models.ipynb"), read_glue(claims_page)


def test_claims_page_verdicts_follow_from_the_result_pages(pages):
    results, cost, claims = pages
    table = assess_claims(results, cost)
    counts = verdict_counts(table)
    assert claims["n_claims"] == len(table) == 9
    assert claims["count_holds"] == counts["holds"]
    assert claims["count_partly"] == counts["partly"]
    assert claims["count_does_not_hold"] == counts["does not hold"]
    assert claims["missing_pages"] == "none"


def test_claims_page_seed_halves_follow_from_the_result_pages(pages):
    results, cost, claims = pages
    counts = stability_counts(claims_table(results, cost))
    assert claims["count_stable"] == counts["stable"]
    assert claims["count_flips"] == counts["flips"]
    assert claims["count_not_assessable"] == counts["not_assessable"]
    assert sum(counts.values()) == claims["n_claims"]


def test_every_result_page_glues_every_method(pages):
    results, _, _ = pages
    for scenario, values in results.items():
        for method in ("Data", "PI", "BC", "BC+", "IQL", "IQL+", "CQL", "CQL+"):
            for col in ("mean", "min", "max", "std", "offset", "iqm", "iqm_low", "iqm_high"):
                assert f"{method}_{col}" in values, (scenario, method, col)
            for col in ("worst", "runaways", "median", "seed_means", "seed_mins", "seeds"):
                assert f"{method}_{col}" in values, (scenario, method, col)
            assert len(values[f"{method}_seed_means"]) == len(values[f"{method}_seeds"])
            assert (
                values[f"{method}_iqm_low"]
                <= values[f"{method}_iqm"]
                <= values[f"{method}_iqm_high"]
            )
        for algo in ("bc", "iql", "cql"):
            assert values[f"steps_source_{algo}"], (scenario, algo)
