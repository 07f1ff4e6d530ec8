"""After `make book`: the claims page's verdicts follow from the glued values it read."""

from pathlib import Path

import pytest

from polycstr_lib.claims import assess_claims, read_glue, verdict_counts
from polycstr_lib.scenarios import SCENARIOS

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


def test_every_result_page_glues_every_method(pages):
    results, _, _ = pages
    for scenario, values in results.items():
        for method in ("Data", "PI", "BC", "BC+", "IQL", "IQL+", "CQL", "CQL+"):
            for col in ("mean", "min", "max", "std", "offset"):
                assert f"{method}_{col}" in values, (scenario, method, col)
