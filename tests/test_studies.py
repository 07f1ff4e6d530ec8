"""The validation studies in studies/ run end to end on tiny budgets."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

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
