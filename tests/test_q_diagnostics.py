"""CQL's logged critic diagnostics, gathered from the curve runs, and their figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from polycstr_lib.agents import Scalers
from polycstr_lib.agents.data import TrainingTensors, discounted_returns
from polycstr_lib.analysis.q_diagnostics import (
    COLUMNS,
    cql_diagnostics,
    data_value,
    diagnostics_finding,
    diagnostics_summary,
    plot_q_diagnostics,
)
from tests.test_agents import make_tiny_data

torch.set_num_threads(1)


@pytest.fixture
def table(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path))
    data = make_tiny_data()
    curve = pd.DataFrame(
        [{"algorithm": a, "scenario": "startup", "seed": s, "steps": k}
         for a in ("bc", "cql") for s in (0, 1) for k in (2, 4)]
    )  # fmt: skip
    return cql_diagnostics(curve, {"startup": data}), data


def test_diagnostics_merge_each_seeds_runs_with_the_true_value(table) -> None:
    table, data = table
    assert list(table.columns) == ["scenario", "seed", "step", *COLUMNS, "true_value"]
    assert sorted(zip(table["seed"], table["step"], strict=True)) == [
        (0, 2),
        (0, 4),
        (1, 2),
        (1, 4),
    ]
    assert np.isfinite(table[COLUMNS].to_numpy(dtype=float)).all()
    assert (table["conservative_weight"] == 5.0).all()
    tensors = TrainingTensors.from_data(data)
    scale = Scalers.from_data(tensors, "return_range", "minmax").reward_scale
    expected = discounted_returns(tensors, 0.99, scale).mean()
    assert table["true_value"].unique().tolist() == pytest.approx([expected])
    assert data_value(data) == pytest.approx(expected)


def test_summary_and_figure(table) -> None:
    table, _ = table
    summary = diagnostics_summary(table)
    last = table[table["step"] == 4]
    assert summary["step"] == 4
    assert summary["q_data_mean"] == pytest.approx(last["q_data_mean"].mean())
    ratio = (5.0 * last["conservative_penalty"]).abs() / last["td_loss"]
    assert summary["penalty_to_td"] == pytest.approx(ratio.mean())
    assert summary["td_loss"] == pytest.approx(last["td_loss"].mean())
    fig = plot_q_diagnostics(table)
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="no CQL runs"):
        plot_q_diagnostics(table.iloc[:0])


def test_a_curve_without_cql_gives_an_empty_table() -> None:
    curve = pd.DataFrame([{"algorithm": "bc", "scenario": "startup", "seed": 0, "steps": 2}])
    assert cql_diagnostics(curve, {}).empty


def test_finding_states_the_numbers_or_why_there_is_no_figure(table) -> None:
    table, _ = table
    s = diagnostics_summary(table)
    text = diagnostics_finding(table, "paper")
    assert f"{s['q_data_mean']:.2f}" in text and f"{s['true_value']:.2f}" in text
    assert f"against a TD loss of {s['td_loss']:.2f} ({s['penalty_to_td']:.1f} times" in text
    assert "not trained in the quick profile" in diagnostics_finding(table.iloc[:0], "quick")
