"""Profiles, the parameters table of the book, and the in-page integrator check."""

import numpy as np
import pytest

import polycstr_lib.pipeline as pipeline
from polycstr_lib.simbench import compare_integrators


def test_profiles_merge_overrides_and_reject_unknown_names():
    quick = {run.page: run.parameters for run in pipeline.runs_for("quick")}
    paper = {run.page: run.parameters for run in pipeline.runs_for("paper")}
    assert quick["05_results_grade_up"] == {"profile": "quick", "scenario": "grade_up"}
    assert paper["05_results_grade_up"]["seeds"] == [0, 1, 2, 3, 4]
    assert paper["05_results_grade_up"]["scenario"] == "grade_up"  # the run's own value wins
    assert all(p["profile"] == "paper" for p in paper.values())
    with pytest.raises(ValueError, match="quick, paper"):
        pipeline.runs_for("huge")


def test_parameters_table_lists_every_notebook(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "EXECUTED_DIR", tmp_path)
    text = pipeline.write_parameters_table().read_text()
    for run in pipeline.RUNS:
        assert f"`{run.notebook}`" in text
    assert "`train_steps`" in text and "`seeds`" in text


def test_integrator_check_reports_speedup_and_accuracy():
    table = compare_integrators(steps=2, scipy_episodes=2, batch_sizes=(3,))
    assert table["speedup"].iloc[0] == 1.0
    assert np.all(table["max_rel_error"] < 1e-4)
    with pytest.raises(ValueError, match="reference_episodes"):
        compare_integrators(steps=1, scipy_episodes=1)


def test_show_banner_prints_and_returns_nothing(capsys) -> None:
    from polycstr_lib.provenance import show_banner

    assert show_banner("quick", {"seed": 3}) is None
    out = capsys.readouterr().out
    assert "quick" in out and "seed" in out


def test_effective_parameters_merge_defaults_and_profile() -> None:
    from polycstr_lib.pipeline import PROFILES, effective_parameters

    quick = effective_parameters("05_results", "quick")
    paper = effective_parameters("05_results", "paper")
    assert quick["profile"] == "quick" and paper["profile"] == "paper"
    assert paper["iql_steps"] == PROFILES["paper"]["05_results"]["iql_steps"]
    assert quick["scenario"] == paper["scenario"] == "startup"  # a default kept by both
    with pytest.raises(ValueError, match="unknown profile"):
        effective_parameters("05_results", "huge")
    with pytest.raises(ValueError, match="no notebook"):
        effective_parameters("99_missing", "quick")
