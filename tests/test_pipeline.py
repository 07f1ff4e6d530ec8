"""Profiles, the parameters table of the book, and the in-page integrator check."""

import json

import numpy as np
import pytest

from polycstr_lib.book import budgets, pipeline, profiles
from polycstr_lib.reactor.simbench import compare_integrators


def test_profiles_merge_overrides_and_reject_unknown_names():
    quick = {run.page: run.parameters for run in profiles.runs_for("quick")}
    paper = {run.page: run.parameters for run in profiles.runs_for("paper")}
    assert quick["05_results_grade_up"] == {"profile": "quick", "scenario": "grade_up"}
    assert paper["05_results_grade_up"]["seeds"] == list(range(10))  # >= 10 seeds
    assert paper["05_results_grade_up"]["scenario"] == "grade_up"  # the run's own value wins
    assert all(p["profile"] == "paper" for p in paper.values())
    with pytest.raises(ValueError, match="quick, paper"):
        profiles.runs_for("huge")


def test_parameters_table_lists_every_notebook(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "EXECUTED_DIR", tmp_path)
    text = pipeline.write_parameters_table().read_text()
    for run in profiles.RUNS:
        assert f"### `{run.notebook}`" in text
    assert "`train_steps`" in text and "`seeds`" in text


def test_integrator_check_reports_speedup_and_accuracy():
    table = compare_integrators(steps=2, scipy_episodes=2, batch_sizes=(3,))
    assert table["speedup"].iloc[0] == 1.0
    assert np.all(table["max_rel_error"] < 1e-4)
    with pytest.raises(ValueError, match="reference_episodes"):
        compare_integrators(steps=1, scipy_episodes=1)


def test_show_banner_prints_and_returns_nothing(capsys) -> None:
    from polycstr_lib.book.provenance import show_banner

    assert show_banner("quick", {"seed": 3}) is None
    out = capsys.readouterr().out
    assert "quick" in out and "seed" in out


def test_effective_parameters_merge_defaults_and_profile() -> None:
    from polycstr_lib.book.profiles import PROFILES, effective_parameters

    quick = effective_parameters("05_results", "quick")
    paper = effective_parameters("05_results", "paper")
    assert quick["profile"] == "quick" and paper["profile"] == "paper"
    assert paper["iql_steps"] == PROFILES["paper"]["05_results"]["iql_steps"]
    assert quick["scenario"] == paper["scenario"] == "startup"  # a default kept by both
    with pytest.raises(ValueError, match="unknown profile"):
        effective_parameters("05_results", "huge")
    with pytest.raises(ValueError, match="no notebook"):
        effective_parameters("99_missing", "quick")


def _fake_curves_page(path, budgets, profile="quick") -> None:
    """An executed curves page whose outputs are the glued ``curve_budgets`` and profile."""

    def output(name, value):
        return {
            "output_type": "display_data",
            "metadata": {
                "scrapbook": {"name": name, "mime_prefix": "application/papermill.record/"}
            },
            "data": {"application/papermill.record/text/plain": repr(value)},
        }

    outputs = [output("curve_budgets", budgets), output("curves_profile", profile)]
    nb = {"cells": [{"cell_type": "code", "source": "", "outputs": outputs}]}
    path.write_text(json.dumps(nb))


def test_results_runs_take_converged_budgets_from_the_curves_page(tmp_path, monkeypatch):
    curve_table = {
        "bc": {"startup": {"steps": 500, "converged": True, "status": "converged"}},
        "iql": {"startup": {"steps": 2000, "converged": False, "status": "unconfirmed"}},
    }
    _fake_curves_page(tmp_path / f"{budgets.CURVES_PAGE}.ipynb", curve_table)
    monkeypatch.setitem(profiles.BUDGETS_FROM_CURVES, "quick", True)
    runs = {r.page: r for r in profiles.runs_for("quick")}
    startup = budgets.with_curve_budgets(runs["05_results_startup"], "quick", tmp_path).parameters
    assert startup["bc_steps"] == 500  # converged: the curve's budget
    assert startup["iql_steps"] == 2000  # not converged: still the curve's, and said so
    assert "cql_steps" not in startup  # no curve: the profile's
    assert startup["budget_sources"]["bc"] == budgets.FROM_CURVES
    assert startup["budget_sources"]["iql"] == (
        "learning curves (unconfirmed: no checkpoint on startup has two later ones confirming it)"
    )
    assert "no learning curve on startup" in startup["budget_sources"]["cql"]
    down = budgets.with_curve_budgets(runs["05_results_grade_down"], "quick", tmp_path)
    assert "bc_steps" not in down.parameters
    assert down.parameters["budget_sources"]["bc"] == "profile (no learning curve on grade_down)"
    # other pages are untouched
    claims = runs["07_claims"]
    assert budgets.with_curve_budgets(claims, "quick", tmp_path) == claims
    # a profile that does not take budgets from the curves keeps its own
    monkeypatch.setitem(profiles.BUDGETS_FROM_CURVES, "quick", False)
    kept = budgets.with_curve_budgets(runs["05_results_startup"], "quick", tmp_path).parameters
    assert "bc_steps" not in kept and "does not take" in kept["budget_sources"]["bc"]
    # no executed curves page: the profile's budgets, and the page says so
    monkeypatch.setitem(profiles.BUDGETS_FROM_CURVES, "quick", True)
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = budgets.with_curve_budgets(runs["05_results_startup"], "quick", empty).parameters
    assert "bc_steps" not in missing and "no executed" in missing["budget_sources"]["bc"]
    # a curves page of another profile is not used
    _fake_curves_page(tmp_path / f"{budgets.CURVES_PAGE}.ipynb", curve_table, profile="paper")
    other = budgets.with_curve_budgets(runs["05_results_startup"], "quick", tmp_path).parameters
    assert "bc_steps" not in other and "another profile" in other["budget_sources"]["bc"]


def test_curve_budgets_override_the_profiles_fixed_budget():
    curves = {"curve_budgets": {"cql": {"grade_up": {"steps": 300, "converged": True}}}}
    out = budgets.curve_budgets({"scenario": "grade_up", "cql_steps": 500}, curves)  # no profile
    assert out["cql_steps"] == 300 and out["budget_sources"]["cql"] == budgets.FROM_CURVES
    assert set(out["budget_sources"]) == set(budgets.ALGORITHMS)


def test_make_test_executes_every_page_once() -> None:
    """`make test` executes the book's pages once (papermill, beside the unit tests) and
    builds the site from them: no second execution under nbval, no page executed twice."""
    import re

    makefile = (profiles.REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^test:.*\n((?:\t.*\n)+)", makefile, flags=re.MULTILINE)
    assert recipe, "the Makefile has no `test` recipe"
    lines = recipe.group(1)
    assert "unit notebooks PROFILE=quick" in lines and "html" in lines
    targets = set(re.findall(r"[\w-]+", lines))
    assert "nbval" not in targets and "book" not in targets
    html = re.search(r"^html:.*\n((?:\t.*\n)+)", makefile, flags=re.MULTILINE)
    assert html and "polycstr_lib notebooks" not in html.group(1)  # html executes nothing


def test_timings_table_reads_papermill_durations_in_book_order(tmp_path):
    def page(name, seconds, profile):
        meta = {
            "papermill": {
                "duration": seconds,
                "end_time": "2026-11-22T06:34:51.25+00:00",
                "parameters": {"profile": profile},
            }
        }
        (tmp_path / f"{name}.ipynb").write_text(json.dumps({"cells": [], "metadata": meta}))

    page("02_dataset", 30.0, "paper")
    page("01_environment", 90.0, "paper")
    lines = pipeline.write_timings_table(tmp_path).read_text().splitlines()
    assert lines[2] == "| `01_environment` | paper | 1.5 |  | 2026-11-22 06:34 |"
    assert lines[3] == "| `02_dataset` | paper | 0.5 |  | 2026-11-22 06:34 |"
    assert lines[4] == "| `03_iql_theory` | not executed | |  | |"
    assert len(lines) == 2 + len(profiles.RUNS) + 1
    assert lines[-1] == "| all pages | | 2.0 |  | |"


def test_a_falling_curve_gives_its_best_checkpoint_and_the_statuses_match_the_rule():
    from polycstr_lib.analysis.curves import CONVERGED, FALLING, UNCONFIRMED

    assert set(budgets.NOT_CONVERGED) == {UNCONFIRMED, FALLING} and CONVERGED not in (
        budgets.NOT_CONVERGED
    )
    entry = {"steps": 250, "converged": False, "status": FALLING}
    out = budgets.curve_budgets(
        {"scenario": "grade_up"}, {"curve_budgets": {"cql": {"grade_up": entry}}}
    )
    assert out["cql_steps"] == 250
    assert out["budget_sources"]["cql"] == (
        "learning curves (early stopping: the curve on grade_up falls off after it)"
    )
    stale = {"curve_budgets": {"cql": {"grade_up": {**entry, "status": "rising"}}}}
    out = budgets.curve_budgets({"scenario": "grade_up"}, stale)
    assert "status 'rising': rerun the curves page" in out["budget_sources"]["cql"]


def test_the_support_chapter_trains_each_algorithm_at_its_curve_budget_per_scenario(tmp_path):
    curve_table = {
        "bc": {
            "startup": {"steps": 500, "converged": True, "status": "converged"},
            "grade_up": {"steps": 2000, "converged": True, "status": "converged"},
        },
        "iql": {
            "startup": {"steps": 1000, "converged": True, "status": "converged"},
            "grade_up": {"steps": 250, "converged": False, "status": "falling"},
        },
        "cql": {"startup": {"steps": 300, "converged": True, "status": "converged"}},
    }
    curves = {"curve_budgets": curve_table, "curves_profile": "quick"}
    params = {
        "profile": "quick",
        "scenarios": ["startup", "grade_up"],
        "agent_steps": {"bc": 7, "iql": 8, "cql": {"startup": 9, "grade_up": 10}},
    }
    out = budgets.support_budgets(params, curves)
    assert out["agent_steps"] == {
        "bc": {"startup": 500, "grade_up": 2000},
        "iql": {"startup": 1000, "grade_up": 250},
        "cql": {"startup": 300, "grade_up": 10},  # no curve on grade_up: the fixed budget
    }
    assert out["budget_sources"]["bc"] == "learning curves"
    assert out["budget_sources"]["iql"] == (
        "startup: learning curves; grade_up: learning curves "
        "(early stopping: the curve on grade_up falls off after it)"
    )
    assert out["budget_sources"]["cql"] == (
        "startup: learning curves; grade_up: profile (no learning curve on grade_up)"
    )
    assert budgets.support_budgets(params, curves, enabled=False)["agent_steps"] == {
        "bc": {"startup": 7, "grade_up": 7},
        "iql": {"startup": 8, "grade_up": 8},
        "cql": {"startup": 9, "grade_up": 10},
    }
    assert budgets.budget_text("bc", {"startup": 5, "grade_up": 5}, "x") == "BC 5 steps (x)"
    assert budgets.budget_text("iql", out["agent_steps"]["iql"], "y") == (
        "IQL startup 1,000 / grade_up 250 steps (y)"
    )
    assert budgets.budget_text("cql", 2000, "z") == "CQL 2,000 steps (z)"
    # through the pipeline: the chapter's own defaults fill what the profile leaves out
    _fake_curves_page(tmp_path / f"{budgets.CURVES_PAGE}.ipynb", curve_table)
    run = {r.page: r for r in profiles.runs_for("quick")}["08_correction_support"]
    quick = budgets.with_curve_budgets(run, "quick", tmp_path).parameters
    assert quick["agent_steps"]["bc"] == {"startup": 500}
    assert quick["agent_steps"]["iql"] == {"startup": 1000}
    assert quick["budget_sources"]["cql"] == "learning curves"


# --- the build's deadline --------------------------------------------------------------------

WAIT_THEN_STOP = """\
import time

from polycstr_lib.toolkit.deadline import DeadlineReached, build_deadline, deadline_passed

deadline = build_deadline()
if deadline is not None:  # as the training loop: work until the deadline, then stop
    while not deadline_passed(deadline):
        time.sleep(0.05)
    raise DeadlineReached("deadline reached: bc startup (2 seeds) stopped at step 3 of 9")
"""


def _tiny_book(tmp_path, monkeypatch):
    """A book of one page, ``tiny``, whose notebook stops at the deadline as training does."""
    import nbformat

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell('profile = "quick"', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(WAIT_THEN_STOP),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(nb, notebooks / "tiny.ipynb")
    monkeypatch.setattr(pipeline, "NOTEBOOK_DIR", notebooks)
    monkeypatch.setattr(pipeline, "runs_for", lambda p: [profiles.NotebookRun("tiny", "tiny")])
    monkeypatch.setattr(pipeline, "write_parameters_table", lambda folder: None)  # the book's
    monkeypatch.delenv("POLYCSTR_DEADLINE", raising=False)
    return tmp_path / "executed"


def test_a_page_stopped_by_the_deadline_is_not_kept_and_the_build_says_where(tmp_path, monkeypatch):
    """The kernel gets the deadline in its environment; the page's DeadlineReached stops the
    build with the page's message (also in incomplete.txt), the page kept only as
    .failed.ipynb; the next build without a deadline finishes the page and removes the note."""
    import os
    import time

    from polycstr_lib.toolkit.deadline import DeadlineReached

    executed = _tiny_book(tmp_path, monkeypatch)
    # the plan is printed before the pages: on a loaded machine it takes seconds
    monkeypatch.setattr(pipeline, "announce_plan", lambda *args, **kwargs: None)
    deadline = time.time() + 20.0  # after the kernel starts (a loaded CI machine: seconds)
    with pytest.raises(DeadlineReached) as stopped:
        pipeline.execute_notebooks("quick", executed_dir=executed, deadline=deadline)
    message = "deadline reached: bc startup (2 seeds) stopped at step 3 of 9 in page tiny"
    assert str(stopped.value) == message
    assert (executed / pipeline.INCOMPLETE).read_text() == message + "\n"
    assert (executed / "tiny.failed.ipynb").is_file()
    assert not (executed / "tiny.ipynb").exists()
    assert not (executed / "tiny.partial.ipynb").exists()
    assert "POLYCSTR_DEADLINE" not in os.environ  # set for the kernel only

    (timing,) = pipeline.execute_notebooks("quick", executed_dir=executed)
    assert timing[0] == "tiny"
    assert (executed / "tiny.ipynb").is_file()
    assert not (executed / pipeline.INCOMPLETE).exists()


def test_no_page_starts_after_the_deadline(tmp_path, monkeypatch):
    import papermill

    from polycstr_lib.toolkit.deadline import DeadlineReached

    executed = _tiny_book(tmp_path, monkeypatch)
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("executed"))
    monkeypatch.setenv("POLYCSTR_DEADLINE", "2000-01-01T00:00")  # from the environment
    with pytest.raises(DeadlineReached, match=r"2000-01-01T00:00:00Z reached before page tiny"):
        pipeline.execute_notebooks("quick", executed_dir=executed)
    assert "before page tiny" in (executed / pipeline.INCOMPLETE).read_text()
    assert sorted(p.name for p in executed.glob("*.ipynb")) == []
