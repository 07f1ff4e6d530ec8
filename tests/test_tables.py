"""Tables for people (polycstr_lib.analysis.tables): what every page's table shows."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from polycstr_lib.analysis.tables import (
    CHECK,
    CROSS,
    HEADERS,
    INTERVAL,
    MISSING,
    ONE_SEED_NOTE,
    ReaderTable,
    count_text,
    header_text,
    label_text,
    reader_table,
)

RAW = {"True", "False", "NaN", "nan", "None"}


def _cells(table: ReaderTable) -> list[str]:
    return [str(v) for v in table.frame.to_numpy().ravel()]


def _html_cells(table: ReaderTable, tag: str) -> list[str]:
    """The text of every ``<tag>`` cell of the table's HTML (tags inside removed)."""
    found = re.findall(rf"<{tag}\b[^>]*>(.*?)</{tag}>", table.to_html(), re.S)
    return [re.sub(r"<[^>]+>", "", cell) for cell in found]


def test_headers_are_mapped_to_readable_names_with_units() -> None:
    table = pd.DataFrame(
        {"worst_iqm": [1.0], "step_size": [0.1], "not_worse": [2], "latency_ms": [0.5]}
    )
    shown = reader_table(table, headers={"latency_ms": "Time per action (ms)"})
    assert shown.headers == [
        HEADERS["worst_iqm"],
        "Step size η",
        "Runs not worse than base",
        "Time per action (ms)",  # the caller's mapping wins over HEADERS
    ]
    assert header_text("iqm") == "IQM" and header_text("latency_ms") == "Latency (ms)"
    assert header_text("offset") == "Offset (kg/m³)"
    # not in HEADERS: made readable, never a code name
    assert header_text("some_new_metric") == "Some new metric"
    assert header_text("R_min (all)") == "R_min (all)"  # a maths symbol, shown as R<sub>min</sub>
    for name in HEADERS:
        assert "_" not in header_text(name).replace("R_min", "").replace("R_max", ""), name
        assert not re.fullmatch(r"[a-z][a-z0-9]*", header_text(name)), name


def test_a_multi_index_gives_one_header_row() -> None:
    columns = pd.MultiIndex.from_tuples(
        [("startup", "optimality"), ("startup", "gap"), ("grade_up", "gap")],
        names=["scenario", "score"],
    )
    index = pd.MultiIndex.from_tuples([("bc", 0.1), ("bc", 0.3), ("iql", 0.1)])
    table = pd.DataFrame(np.arange(9.0).reshape(3, 3), index=index, columns=columns)
    table.index.names = ["algorithm", "step_size"]
    shown = reader_table(table)
    assert shown.headers == [
        "Algorithm",
        "Step size η",
        "Startup · Optimality (%)",
        "Startup · Gap to the oracle (points)",
        "Grade up · Gap to the oracle (points)",
    ]
    html = shown.to_html()
    assert html.count("<thead><tr>") == 1 and html.count("</tr></thead>") == 1
    assert '<th scope="row" rowspan="2">BC</th>' in html  # BC spans its two rows
    assert list(shown.frame.index) == [("BC", "0.1"), ("BC", "0.3"), ("IQL", "0.1")]


def test_booleans_show_as_check_marks() -> None:
    table = pd.DataFrame({"safe": [True, False], "convex": np.array([True, False])})
    shown = reader_table(table)
    assert _cells(shown) == [CHECK, CHECK, CROSS, CROSS]
    assert reader_table(table, booleans=("yes", "no")).frame["Safe"].tolist() == ["yes", "no"]
    assert label_text(np.bool_(True)) == CHECK


def test_no_nan_is_left_and_the_footnote_says_why() -> None:
    table = pd.DataFrame(
        {"optimality": [100.0, np.nan], "offset": [np.nan, 1.0], "empty": [np.nan, np.nan]},
        index=["NMPC (oracle)", "Data"],
    )
    shown = reader_table(table, missing={"optimality": "no NMPC run on these episodes"})
    assert "Empty" not in shown.headers  # a column with nothing in it is left out
    assert shown.frame.loc["Data", "Optimality (%)"] == MISSING
    assert not RAW & set(_cells(shown))
    assert f"{MISSING} in Optimality (%): no NMPC run on these episodes." in shown.notes
    assert f"{MISSING} in Offset (kg/m³): not available." in shown.notes
    assert not RAW & set(_html_cells(shown, "td"))
    one_reason = reader_table(table, missing="not measured")
    assert one_reason.notes == (f"{MISSING} in Optimality (%), Offset (kg/m³): not measured.",)


def test_counts_read_k_of_n() -> None:
    table = pd.DataFrame(
        {"runaways": [0, 3, 1], "violating": [0, 3, 1], "episodes": [2, 100, 20]},
        index=["NMPC (oracle)", "Data", "BC"],
    )
    shown = reader_table(table, counts={"runaways": "episodes", "violating": 20})
    assert shown.frame["Runaways (T > 450 K)"].tolist() == ["0 of 2", "3 of 100", "1 of 20"]
    assert shown.frame["Episodes over 370 K"].tolist() == ["0 of 20", "3 of 20", "1 of 20"]
    assert "Episodes" not in shown.headers  # the denominator is in every count
    assert count_text(1500, 2000) == "1,500 of 2,000" and count_text(np.nan, 3) == MISSING
    assert not any(re.fullmatch(r"\d+/\d+", c) for c in _cells(shown))
    with pytest.raises(KeyError, match="denominator"):
        reader_table(table, counts={"runaways": "runs"})


def test_one_seed_drops_the_interval() -> None:
    table = pd.DataFrame(
        {"iqm": [66.6, 70.0], "iqm_low": [66.6, 60.0], "iqm_high": [66.6, 80.0], "seeds": [1, 5]},
        index=["BC", "IQL"],
    )
    shown = reader_table(table, intervals={"iqm": ("iqm_low", "iqm_high")}, seeds="seeds")
    column = f"IQM {INTERVAL}"
    assert shown.frame.loc["BC", column] == "66.6"  # not "66.6 [66.6, 66.6]"
    assert shown.frame.loc["IQL", column] == "70.0 [60.0, 80.0]"
    assert ONE_SEED_NOTE in shown.notes
    assert "Seeds" in shown.headers  # the seeds column itself stays, as any other column
    table = table.drop(columns="seeds")
    one = reader_table(table.iloc[:1], intervals={"iqm": ("iqm_low", "iqm_high")}, seeds=1)
    assert one.headers == ["", "IQM"]  # no row has an interval: the header says so too
    assert one.frame.iloc[0, 0] == "66.6" and ONE_SEED_NOTE in one.notes
    # a seeds count of 2 with a real interval keeps it; bounds are never shown as columns
    two = reader_table(table.iloc[1:], intervals={"iqm": ("iqm_low", "iqm_high")}, seeds=2)
    assert two.headers == ["", column] and ONE_SEED_NOTE not in two.notes


def test_numbers_labels_and_text() -> None:
    table = pd.DataFrame(
        {"step_size": [1e-5, 0.3], "iqm": [-1286.34, 0.04], "runs": [2, 2], "status": ["ok", ""]},
        index=pd.Index(["grade_down", "plain"], name="scenario"),
    )
    shown = reader_table(table, digits={"step_size": "g"}, default_digits=1)
    assert shown.frame["Step size η"].tolist() == ["1e-05", "0.3"]
    assert shown.frame["IQM"].tolist() == ["-1,286.3", "0.0"]  # no "-0.0"
    assert shown.frame["Runs"].tolist() == ["2", "2"]
    assert shown.frame["Status"].tolist() == ["ok", MISSING]
    assert list(shown.frame.index) == ["Grade down", "Plain"]
    assert shown.index_headers == ("Scenario",)
    assert "Step size η" in shown.numeric and "Status" not in shown.numeric
    assert label_text(1000) == "1,000" and label_text(0.7) == "0.7"
    plain = reader_table(table.reset_index())  # a range index: no row labels
    assert plain.index_headers == () and plain.headers[0] == "Scenario"


def test_html_scrolls_in_its_own_box_and_escapes() -> None:
    table = pd.DataFrame({"C_P setpoint": [1.0], "note": ["a < b"]}, index=["x"])
    shown = reader_table(
        table, caption="What it shows", notes=["A note."], definitions={"C1": "rule & text"}
    )
    html = shown.to_html()
    assert 'class="reader-table-scroll"' in html and "overflow-x:auto" in html
    assert "C<sub>P</sub> setpoint" in html  # maths symbols as subscripts
    assert "a &lt; b" in html and "rule &amp; text" in html
    assert "<details" in html and "What it shows" in html and "A note." in html
    assert repr(shown).startswith("What it shows")
    assert "_" not in "".join(_html_cells(shown, "th"))
    empty = reader_table(pd.DataFrame())
    assert "No rows" in empty.to_html()


def test_unknown_columns_are_refused() -> None:
    table = pd.DataFrame({"iqm": [1.0]})
    with pytest.raises(KeyError, match="iqm_low"):
        reader_table(table, intervals={"iqm": ("iqm_low", "iqm_high")})
    with pytest.raises(KeyError, match="nope"):
        reader_table(table, columns=["nope"])
    with pytest.raises(KeyError, match="seeds"):
        reader_table(table, seeds="seeds")


def test_claims_with_one_seed_say_they_need_seeds() -> None:
    from polycstr_lib.analysis.claims import NEEDS_SEEDS, claims_page_table, claims_table

    values = {}
    for i, method in enumerate(("Data", "PI", "BC", "BC+", "IQL", "IQL+", "CQL", "CQL+")):
        values.update(
            {
                f"{method}_mean": 50.0 + i,
                f"{method}_min": 20.0 + i,
                f"{method}_std": 10.0,
                f"{method}_offset": 1.0,
                f"{method}_seeds": [0],
                f"{method}_seed_means": [50.0 + i],
                f"{method}_seed_mins": [20.0 + i],
            }
        )
    values.update({"IQL_seed_means": [98.6], "BC_seed_means": [41.2]})  # P(IQL > BC) = 1
    shown = claims_page_table(claims_table({"startup": values}, {}))
    assert shown.frame.loc["C1", "Verdict"] == NEEDS_SEEDS != "holds"
    assert "= 1.00" not in shown.frame.loc["C1", "This build"]
    assert set(shown.frame["Verdict"]) == {NEEDS_SEEDS, "holds", "partly", "does not hold"} & set(
        shown.frame["Verdict"]
    )
    assert not RAW & set(_cells(shown))
