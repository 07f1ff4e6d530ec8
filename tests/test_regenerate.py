"""The banner's commit and parameters regenerate a results page's glued numbers bit for bit.

One small slice of a results page (one seed, tiny budgets, two test episodes) is executed
twice, each time from an empty artifact directory, and every glued value is compared.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

papermill = pytest.importorskip("papermill")

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "05_results.ipynb"
SLICE = {
    "scenario": "grade_up",
    "seeds": [0],
    "bc_steps": 30,
    "iql_steps": 30,
    "cql_steps": 5,
    "cost_steps": 30,
    "test_episodes": 2,
    "nmpc_episodes": 1,
    "nmpc_horizon": 2,
    "processes": 1,
    "correction_variants": ["plain", "trust region"],
    "validation_episodes": 1,
}


def glued_values(path: Path) -> dict[str, str]:
    """Name → text of every value glued by the executed notebook at ``path``."""
    nb = json.loads(path.read_text())
    out = {}
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            record = output.get("metadata", {}).get("scrapbook")
            if record:
                out[record["name"]] = output["data"].get("text/plain")
    return out


def test_results_slice_regenerates_bit_for_bit(minari_store, tmp_path, monkeypatch) -> None:
    values = []
    for run in ("first", "second"):
        monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path / run / "artifacts"))
        target = tmp_path / run / "page.ipynb"
        target.parent.mkdir(parents=True)
        papermill.execute_notebook(
            str(NOTEBOOK),
            str(target),
            parameters=SLICE,
            cwd=str(NOTEBOOK.parent),
            kernel_name="python3",
            progress_bar=False,
        )
        values.append(glued_values(target))
    first, second = values
    assert len(first) > 20  # every method's statistics, not just the title
    assert first == second
