"""The validation studies in studies/ run end to end on tiny budgets."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pandas as pd
import pytest

STUDY = Path(__file__).resolve().parent.parent / "studies" / "training_choices.py"


@pytest.mark.parametrize("study", ["units", "precision"])
def test_training_choices_study_prints_the_comparison(
    study, minari_store, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path))
    csv = tmp_path / "runs.csv"
    argv = [
        str(STUDY),
        "--study",
        study,
        "--scenarios",
        "grade_up",
        "--algorithms",
        "bc",
        "--seeds",
        "0",
        "1",
        "--steps",
        "3",
        "--episodes",
        "1",
        "--csv",
        str(csv),
    ]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(STUDY), run_name="__main__")
    out = capsys.readouterr().out
    default = "min-max units" if study == "units" else "float32"
    assert f"P(> {default})" in out and "IQM per scenario" in out
    assert csv.read_text().count("\n") == 1 + 2 * (4 if study == "units" else 2)


MULTISTEP = STUDY.parent / "multistep_correction.py"


def test_multistep_study_chooses_on_validation_and_tests_once(
    minari_store, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path))
    csv = tmp_path / "runs.csv"
    argv = [str(MULTISTEP), "--scenarios", "grade_up", "--algorithms", "bc", "--seeds", "0",
            "--bc-steps", "3", "--cost-steps", "5", "--horizons", "1", "2", "--step-sizes",
            "0.1", "1.0", "--validation-episodes", "1", "--test-episodes", "1",
            "--csv", str(csv)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(MULTISTEP), run_name="__main__")
    out = capsys.readouterr().out
    assert "=== grade_up: validation" in out and "H=2" in out and "safe step range" in out
    runs = pd.read_csv(csv)
    # validation: base + 2 horizons x 2 steps; test: base + each horizon at its chosen step
    assert runs.groupby("split").size().to_dict() == {"validation": 5, "test": 3}
    assert set(runs["variant"]) == {"none", "H=1", "H=2"}


def test_multistep_study_rejects_bad_arguments(monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [str(MULTISTEP), "--horizons", "0"])
    with pytest.raises(SystemExit):
        runpy.run_path(str(MULTISTEP), run_name="__main__")
    monkeypatch.setattr(sys, "argv", [str(MULTISTEP), "--scenarios", "shutdown"])
    with pytest.raises(ValueError, match="shutdown"):
        runpy.run_path(str(MULTISTEP), run_name="__main__")
