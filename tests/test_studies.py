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


D3RLPY_STUDY = STUDY.parent / "cql_vs_d3rlpy.py"


def test_d3rlpy_policy_is_rebuilt_from_its_weights() -> None:
    """The rebuilt policy is tanh(μ(relu encoder)) of d3rlpy's NormalPolicy, mapped to env
    actions through our scalers."""
    import numpy as np
    import torch

    from polycstr_lib.agents import Scalers

    study = runpy.run_path(str(D3RLPY_STUDY))
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(
        torch.nn.Linear(9, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8), torch.nn.ReLU()
    )
    mu = torch.nn.Linear(8, 2)
    arrays = {f"w:_encoder._layers.{k}": v.numpy() for k, v in encoder.state_dict().items()}
    arrays |= {f"w:_mu.{k}": v.numpy() for k, v in mu.state_dict().items()}
    arrays["w:_logstd.weight"] = np.zeros((2, 8), np.float32)  # present in d3rlpy, unused
    scalers = Scalers(
        torch.full((9,), 2.0), torch.full((9,), 4.0), 1.0, torch.tensor([0.1, -0.2]),
        torch.tensor([0.5, 0.25]),
    )  # fmt: skip
    policy = study["D3rlpyPolicy"](arrays, scalers)
    obs = torch.randn(5, 9) * 10
    with torch.no_grad():
        units = torch.tanh(mu(encoder((obs - 2.0) / 4.0)))
    expected = (torch.tensor([0.1, -0.2]) + torch.tensor([0.5, 0.25]) * units).clamp(-1, 1)
    np.testing.assert_allclose(policy(obs.numpy()), expected.numpy(), rtol=1e-5, atol=1e-6)


def test_d3rlpy_table_has_one_row_per_setting_and_budget() -> None:
    study = runpy.run_path(str(D3RLPY_STUDY))
    rows = [
        {"setting": s, "steps": k, "seed": 0, "library": lib, "score": 50.0 + k, "runaways": 1,
         "episodes": 2, "q_data": -1.0, "true_return": -1.5, "weight": 5.0}
        for s in ("fixed", "lagrangian") for k in (2, 4) for lib in ("ours", "d3rlpy")
    ]  # fmt: skip
    text = study["markdown_table"](pd.DataFrame(rows))
    assert text.count("\n") == 1 + 4 and "| lagrangian | 4 | 54.0 | 1/2 |" in text


@pytest.mark.skipif(
    not (D3RLPY_STUDY.parent.parent / ".venv-d3rlpy" / "bin" / "python").exists(),
    reason="needs .venv-d3rlpy (benchmarks/training.py --install-d3rlpy)",
)
def test_cql_vs_d3rlpy_study_runs_both_libraries(
    minari_store, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path))
    csv = tmp_path / "runs.csv"
    argv = [str(D3RLPY_STUDY), "--scenario", "grade_up", "--budgets", "2", "4",
            "--episodes", "1", "--csv", str(csv)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(D3RLPY_STUDY), run_name="__main__")
    out = capsys.readouterr().out
    assert "| fixed | 2 |" in out and "| lagrangian | 4 |" in out and "d3rlpy 2.8.1" in out
    runs = pd.read_csv(csv)
    assert len(runs) == 2 * 2 * 2 and set(runs["library"]) == {"ours", "d3rlpy"}
