"""Rerunning one page: the build's parameters read back from its executed copy, or none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polycstr_lib.__main__ import main
from polycstr_lib.book.rerun import built_parameters, render_page, rerun_plan


def executed(folder: Path, page: str, parameters: dict | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    meta = {} if parameters is None else {"papermill": {"parameters": parameters}}
    path = folder / f"{page}.ipynb"
    path.write_text(json.dumps({"cells": [], "metadata": meta, "nbformat": 4}))
    return path


def test_the_plan_reruns_the_source_with_the_parameters_the_build_injected(tmp_path) -> None:
    injected = {"profile": "quick", "scenario": "startup", "iql_steps": 250, "seeds": [0]}
    executed(tmp_path / "built", "05_results_startup", injected)
    plan = rerun_plan(
        "05_results_startup", output_dir=tmp_path / "out", executed_dir=tmp_path / "built"
    )
    assert plan.source.name == "05_results.ipynb"  # one notebook makes the three results pages
    assert plan.parameters == injected
    assert plan.output == tmp_path / "out" / "05_results_startup.ipynb"
    command = plan.command()
    assert command.startswith("papermill notebooks/05_results.ipynb ")
    assert "-f " in command and command.endswith("--cwd notebooks --log-output")


def test_with_defaults_nothing_is_injected_and_no_build_is_needed(tmp_path) -> None:
    plan = rerun_plan("02_dataset", defaults=True, output_dir=tmp_path, executed_dir=tmp_path)
    assert plan.parameters == {} and plan.parameters_file is None
    assert plan.output.name == "02_dataset-defaults.ipynb"
    assert "-f" not in plan.command().split()


def test_mistakes_are_named(tmp_path) -> None:
    with pytest.raises(ValueError, match="no page nosuchpage in the book; pages: 01_environment"):
        rerun_plan("nosuchpage", executed_dir=tmp_path)
    with pytest.raises(ValueError, match="build the book first"):
        built_parameters("02_dataset", tmp_path)
    executed(tmp_path, "02_dataset", None)
    with pytest.raises(ValueError, match="no papermill record"):
        built_parameters("02_dataset", tmp_path)
    with pytest.raises(ValueError, match="is not an executed notebook"):
        render_page(tmp_path / "missing.ipynb")


def test_the_command_line_refuses_an_unknown_page_in_one_line(monkeypatch, capsys) -> None:
    monkeypatch.delenv("POLYCSTR_DEBUG", raising=False)
    assert main(["rerun", "nosuchpage"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no page nosuchpage" in err


def test_render_turns_an_executed_notebook_into_a_page_with_its_glued_prose(tmp_path) -> None:
    """A tiny executed notebook (one glued value cited in its prose) becomes one HTML page
    where the value stands in the prose, not the {glue:text} markup."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A page\n\nThe answer is {glue:text}`answer`."),
        nbformat.v4.new_code_cell("from myst_nb import glue\nglue('answer', 4321, display=False)"),
    ]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    path = tmp_path / "page.ipynb"
    nbformat.write(nb, path)
    html = render_page(path).read_text(encoding="utf-8")
    assert "4321" in html and "glue:text" not in html
