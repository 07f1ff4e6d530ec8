"""Claims: glue values are read back from notebooks and verdicts follow the stated rules."""

import json

import pytest

from polycstr_lib.claims import FAILS, HOLDS, PARTLY, assess_claims, read_glue, verdict_counts

AGENTS = ("Data", "PI", "BC", "BC+", "IQL", "IQL+", "CQL", "CQL+")


def scenario_values(**overrides):
    values = {}
    for i, method in enumerate(AGENTS):
        values.update(
            {
                f"{method}_mean": 50.0 + i,
                f"{method}_min": 20.0 + i,
                f"{method}_std": 10.0,
                f"{method}_offset": 1.0,
            }
        )
    values.update(overrides)
    return values


COST = {
    "r2_mlp_startup": 0.99,
    "r2_picnn_startup": 0.73,
    "agree_mlp_late": 0.4,
    "agree_picnn_late": 0.9,
    "flip_mlp_late": 0.3,
    "flip_picnn_late": 0.05,
}


def test_verdicts_follow_the_numbers():
    results = {
        "startup": scenario_values(
            **{
                "IQL_mean": 98.6,
                "BC_mean": 41.2,
                "IQL+_min": 81.1,
                "IQL_min": 72.7,
                "BC_offset": 9.0,
            }
        ),
        "grade_down": scenario_values(BC_offset=5.0),
        "grade_up": scenario_values(**{"BC+_mean": 66.9, "BC_mean": 4.7}),
    }
    table = assess_claims(results, COST)
    assert table.loc["C1", "verdict"] == HOLDS
    assert table.loc["C2", "verdict"] == HOLDS
    assert table.loc["C3", "verdict"] == HOLDS
    assert table.loc["C4", "verdict"] == HOLDS
    assert table.loc["C6", "verdict"] == HOLDS
    assert table.loc["C7", "verdict"] == HOLDS  # BC offset worst in 2 of 3
    assert "98.6" in table.loc["C1", "this build"]

    results["startup"]["IQL_mean"] = 45.0  # only 3.8 points above BC
    results["grade_up"]["BC+_mean"] = 1.0  # below BC
    cost = dict(COST, r2_picnn_startup=0.995)  # PICNN fits better than the NN
    table = assess_claims(results, cost)
    assert table.loc["C1", "verdict"] == PARTLY
    assert table.loc["C2", "verdict"] == FAILS
    assert table.loc["C4", "verdict"] == FAILS
    assert sum(verdict_counts(table).values()) == len(table) == 9


def test_a_large_gap_between_two_failing_policies_is_only_partly():
    # Both fail (means far below the data's worst episode): 157 points apart is not "≫".
    results = {"grade_up": scenario_values(**{"BC+_mean": -837.8, "BC_mean": -995.0})}
    results["startup"] = scenario_values(**{"IQL_mean": -10.0, "BC_mean": -500.0})
    table = assess_claims(results, COST)
    assert table.loc["C2", "verdict"] == PARTLY
    assert table.loc["C1", "verdict"] == PARTLY
    results["grade_up"]["BC+_mean"] = 0.0  # a working controller 995 points above BC
    assert assess_claims(results, COST).loc["C2", "verdict"] == HOLDS


def test_iql_plus_best_everywhere_and_cql_rules():
    results = {s: scenario_values() for s in ("startup", "grade_down", "grade_up")}
    table = assess_claims(results, COST)
    # IQL (54) beats PI (51) everywhere but CQL+ (57) has the best mean: partly
    assert table.loc["C9", "verdict"] == PARTLY
    assert table.loc["C8", "verdict"] == HOLDS  # CQL 56 > BC 52 everywhere
    for s in results:
        results[s]["IQL+_mean"] = 99.0
    assert assess_claims(results, COST).loc["C9", "verdict"] == HOLDS


def test_read_glue_parses_myst_nb_outputs(tmp_path):
    def glued(name, text):
        return {
            "output_type": "display_data",
            "metadata": {
                "scrapbook": {"name": name, "mime_prefix": "application/papermill.record/"}
            },
            "data": {"application/papermill.record/text/plain": text},
        }

    nb = {
        "cells": [
            {
                "cell_type": "code",
                "outputs": [
                    glued("a", "1.5"),
                    glued("b", "'yes'"),
                    glued("c", "nan"),
                    {"output_type": "stream", "text": "noise"},
                ],
            }
        ]
    }
    path = tmp_path / "x.ipynb"
    path.write_text(json.dumps(nb))
    values = read_glue(path)
    assert values["a"] == 1.5 and values["b"] == "yes" and values["c"] != values["c"]
    nb["cells"][0]["outputs"].append(glued("d", "np.float64(2.0)"))
    path.write_text(json.dumps(nb))
    with pytest.raises(ValueError, match="cannot parse glued d"):
        read_glue(path)


def test_small_r2_gaps_are_not_a_partial_reproduction():
    base = {"r2_mlp_startup": 0.99, "r2_mlp_grade_up": 0.99}
    noise = dict(base, r2_picnn_startup=0.9895, r2_picnn_grade_up=0.995)
    assert assess_claims({}, noise).loc["C4", "verdict"] == FAILS
    some = dict(base, r2_picnn_startup=0.97, r2_picnn_grade_up=0.995)
    assert assess_claims({}, some).loc["C4", "verdict"] == PARTLY


def test_no_result_pages_give_an_empty_table():
    table = assess_claims({}, {})
    assert table.empty and list(table.columns) == ["paper", "this build", "verdict", "rule"]
    assert verdict_counts(table) == {HOLDS: 0, PARTLY: 0, FAILS: 0}
