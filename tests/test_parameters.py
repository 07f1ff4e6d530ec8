"""Every page's parameters: typed, checked once, with errors that name the parameter."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Union

import pytest

from polycstr_lib.book.parameters import (
    PAGES,
    AblationsPage,
    CorrectionSupportPage,
    DatasetPage,
    LearningCurvesPage,
    ParameterError,
    ResultsPage,
    check_type,
)
from polycstr_lib.book.profiles import NOTEBOOK_DIR, PROFILES, effective_parameters, runs_for
from polycstr_lib.book.provenance import notebook_parameters


@pytest.mark.parametrize("profile", list(PROFILES))
def test_every_page_accepts_its_defaults_and_every_profile(profile: str) -> None:
    for run in runs_for(profile):
        params = {**effective_parameters(run.notebook, profile), **run.parameters}
        page = PAGES[run.notebook].from_notebook(params)
        assert page.profile == profile


def test_every_notebook_has_a_page_class_and_typed_parameters() -> None:
    from papermill.translators import PythonTranslator

    stems = sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb"))
    assert stems == sorted(PAGES)
    for stem, cls in PAGES.items():
        rows = notebook_parameters(NOTEBOOK_DIR / f"{stem}.ipynb")
        # the same names (a page class lists its shared fields in a base class first)
        names = [r["name"] for r in rows]
        assert len(names) == len(set(names))
        assert sorted(names) == sorted(f.name for f in dataclasses.fields(cls))
        import nbformat

        nb = nbformat.read(NOTEBOOK_DIR / f"{stem}.ipynb", as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        inferred = {p.name: p.inferred_type_name for p in PythonTranslator.inspect(cell)}
        assert "None" not in inferred.values(), (stem, inferred)  # papermill: "Unknown type"
        assert inferred["profile"] == "str"


def test_notebooks_neither_define_functions_nor_raise() -> None:
    import nbformat

    for stem in PAGES:
        nb = nbformat.read(NOTEBOOK_DIR / f"{stem}.ipynb", as_version=4)
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            lines = cell.source.splitlines()
            assert not any(line.lstrip().startswith("def ") for line in lines), stem
            assert not any(line.lstrip().startswith("raise ") for line in lines), stem


@pytest.mark.parametrize("stem", ["05_results", "06_ablations", "08_correction_support"])
def test_result_pages_stay_short(stem: str) -> None:
    import nbformat

    nb = nbformat.read(NOTEBOOK_DIR / f"{stem}.ipynb", as_version=4)
    lines = sum(len(c.source.splitlines()) for c in nb.cells if c.cell_type == "code")
    assert lines < 100


@pytest.mark.parametrize("profile", ["quick", "paper"])
def test_results_and_support_pages_share_the_correction(profile: str) -> None:
    from polycstr_lib.book.profiles import SHARED_CORRECTION_KEYS

    results = effective_parameters("05_results", profile)
    support = effective_parameters("08_correction_support", profile)
    for key in SHARED_CORRECTION_KEYS:
        assert results[key] == support[key], (profile, key)
    # neither page can set a grid or an ensemble of its own: both come from the library
    for page in (results, support):
        assert not {"raw_step_sizes", "normalised_step_sizes", "ensemble_seeds"} & set(page)
        assert not {"trust_radius", "pessimism"} & set(page)


def _results(**changes: Any) -> dict[str, Any]:
    params = effective_parameters("05_results", "quick")
    return {**params, **changes}


def test_results_page_fields_and_helpers() -> None:
    page = ResultsPage.from_notebook(_results())
    assert page.budgets == {"bc": page.bc_steps, "iql": page.iql_steps, "cql": page.cql_steps}
    assert "profile" not in page.banner() and page.banner()["scenario"] == page.scenario
    with pytest.raises(dataclasses.FrozenInstanceError):
        page.seeds = [1]  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"seeds": "0"}, r"'seeds' must be a list of integers, got '0'"),
        ({"seeds": [0, "1"]}, r"'seeds\[1\]' must be an integer"),
        ({"seeds": []}, r"'seeds' must be a non-empty list"),
        ({"bc_steps": True}, r"'bc_steps' must be an integer, got True"),
        ({"bc_steps": 0}, r"'bc_steps' must be >= 1"),
        ({"scheduler": 3}, r"'scheduler' must be a text or None"),
        ({"scenario": "nope"}, r"'scenario'.*unknown scenario"),
        ({"budget_sources": {"bc": "x"}}, r"'budget_sources' must map"),
        ({"correction_variants": ["adam"]}, r"'correction_variants' must be among"),
        ({"precision": "float16"}, r"'precision' must be among"),
        ({"nmpc_episodes": 1000}, r"'nmpc_episodes' must lie in"),
    ],
)
def test_results_page_errors_name_the_parameter(changes: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        ResultsPage.from_notebook(_results(**changes))


def test_parameter_errors_are_value_and_type_errors_and_missing_ones_are_named() -> None:
    params = _results()
    del params["seeds"]
    with pytest.raises(ValueError, match=r"\['seeds'\] are not defined"):
        ResultsPage.from_notebook(params)
    with pytest.raises(TypeError):
        ResultsPage.from_notebook(_results(seeds=None))


@pytest.mark.parametrize(
    ("text", "value"), [("false", False), ("False", False), ("no", False), ("0", False),
                        ("true", True), ("TRUE", True), ("yes", True), ("1", True)],
)  # fmt: skip
def test_booleans_given_as_text_are_read_not_truthy(text: str, value: bool) -> None:
    page = DatasetPage(profile="quick", scenarios=["startup"], episodes_shown=3, regenerate=text)
    assert page.regenerate is value


@pytest.mark.parametrize("text", ["nah", "", "2", "None"])
def test_other_texts_are_refused_as_booleans(text: str) -> None:
    with pytest.raises(ParameterError, match="'regenerate' must be a boolean"):
        DatasetPage(profile="quick", scenarios=["startup"], episodes_shown=3, regenerate=text)


def test_an_empty_scenario_list_is_refused_by_name() -> None:
    with pytest.raises(ParameterError, match="'scenarios' must be a non-empty list, got \\[\\]"):
        DatasetPage(profile="quick", scenarios=[], episodes_shown=3, regenerate=False)


def test_check_type_of_nested_and_union_annotations() -> None:
    assert check_type("x", 1, float) == 1 and check_type("x", 1.5, float) == 1.5
    with pytest.raises(ParameterError, match="YAML"):
        check_type("step_sizes[0]", "1e-5", float)  # YAML reads 1e-5 as a text
    assert check_type("x", None, Optional[str]) is None  # noqa: UP045
    assert check_type("x", {"a": ["true"]}, dict[str, list[bool]]) == {"a": [True]}
    nested = dict[str, Union[int, dict[str, int]]]  # noqa: UP007
    assert check_type("steps", {"bc": 1, "iql": {"startup": 2}}, nested)
    with pytest.raises(ParameterError, match=r"steps\[.iql.\]. must be an integer.*-y 'steps: "):
        check_type("steps", {"iql": {"startup": "2"}}, nested)
    with pytest.raises(ParameterError, match="a dict of texts to integers"):
        check_type("extend_to", [1], dict[str, int])
    assert check_type("x", object, Any) is object


def test_ablations_and_support_checks() -> None:
    ablations = effective_parameters("06_ablations", "quick")
    with pytest.raises(ParameterError, match="'expectiles' must lie in"):
        AblationsPage.from_notebook({**ablations, "expectiles": [1.5]})
    with pytest.raises(ParameterError, match="'seeds' must be distinct"):
        AblationsPage.from_notebook({**ablations, "seeds": [0, 0]})
    with pytest.raises(ParameterError, match="'base_algorithm' must be among"):
        AblationsPage.from_notebook({**ablations, "base_algorithm": "td3"})
    support = effective_parameters("08_correction_support", "quick")
    page = CorrectionSupportPage.from_notebook(support)
    steps = support["agent_steps"]
    assert page.steps_of == {
        a: dict.fromkeys(support["scenarios"], steps[a]) for a in support["algorithms"]
    }
    per_scenario = {**steps, "bc": {s: 7 for s in support["scenarios"]}}
    page = CorrectionSupportPage.from_notebook({**support, "agent_steps": per_scenario})
    assert set(page.steps_of["bc"].values()) == {7}
    with pytest.raises(ParameterError, match="'agent_steps' must map every algorithm"):
        CorrectionSupportPage.from_notebook({**support, "agent_steps": {"bc": 0, "iql": 1}})
    with pytest.raises(ParameterError, match="'correction_variants' must be among"):
        CorrectionSupportPage.from_notebook({**support, "correction_variants": ["adam"]})
    curves = effective_parameters("04b_learning_curves", "quick")
    with pytest.raises(ParameterError, match="'checkpoints' must map every algorithm"):
        LearningCurvesPage.from_notebook({**curves, "checkpoints": {}})
    with pytest.raises(ParameterError, match="'extend_to' must be among"):
        LearningCurvesPage.from_notebook({**curves, "extend_to": {"td3": 10}})
