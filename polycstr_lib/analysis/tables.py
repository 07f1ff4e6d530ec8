"""Result tables as a reader sees them: one place that turns a DataFrame into a page's table.

:func:`reader_table` takes any result DataFrame (internal column names, booleans, NaN,
interval columns, counts, multi-index columns) and returns a :class:`ReaderTable`: readable
headers with units (:data:`HEADERS`, :data:`LABELS`), one header row, ✓ / ✗ for booleans,
``—`` plus a footnote that says why for a missing value, counts as ``'k of n'``, and an
interval only where there are seeds to make one. The :class:`ReaderTable` renders as HTML
in a notebook (inside its own horizontally scrolling box, so a wide table never widens the
page) and as text elsewhere; its :attr:`~ReaderTable.frame` holds the displayed strings.

Only the displayed table changes: the DataFrames the library computes, and the numbers a
page glues, keep their internal column names.
"""

from __future__ import annotations

import html
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from polycstr_lib.reactor.datasets import RUNAWAY_TEMPERATURE
from polycstr_lib.reactor.env import TEMPERATURE_LIMIT

__all__ = [
    "CHECK",
    "CROSS",
    "HEADERS",
    "INTERVAL",
    "LABELS",
    "MISSING",
    "ONE_SEED_NOTE",
    "ReaderTable",
    "count_text",
    "header_text",
    "label_text",
    "reader_table",
]

#: Shown for True and False.
CHECK, CROSS = "✓", "✗"
#: Shown for a missing value (NaN or None); a footnote says why.
MISSING = "—"
#: Appended to the header of a column that shows ``'value [low, high]'``.
INTERVAL = "[95 % CI]"
#: Footnote of a table where some row shows a value without its interval.
ONE_SEED_NOTE = (
    "A row with one seed (or one run) shows its value without an interval: a 95 % "
    "interval across seeds needs at least 2 seeds."
)

#: Internal column name → header a reader sees (with units where a column has one).
HEADERS: dict[str, str] = {
    # results pages (polycstr_lib.analysis.results.results_table) and run summaries
    "iqm": "IQM",
    "iqm_low": "IQM, lower 95 % bound",
    "iqm_high": "IQM, upper 95 % bound",
    "median": "Median",
    "mean": "Mean",
    "min": "Min",
    "max": "Max",
    "std": "Std. dev.",
    "worst": "Worst episode",
    "worst_episode": "Worst episode",
    "worst_seed": "Worst seed",
    "worst_iqm": "IQM at the worst step size",
    "violating": f"Episodes over {TEMPERATURE_LIMIT:.0f} K",
    "violation_episodes": f"Episodes over {TEMPERATURE_LIMIT:.0f} K",
    "violations": f"Steps over {TEMPERATURE_LIMIT:.0f} K",
    "runaways": f"Runaways (T > {RUNAWAY_TEMPERATURE:.0f} K)",
    "runaway": "Runaway",
    "episodes": "Episodes",
    "offset": "Offset (kg/m³)",
    "optimality": "Optimality (%)",
    "seeds": "Seeds",
    "seed": "Seed",
    "runs": "Runs",
    "settled %": "Settled (%)",
    "settling h": "Settling time (h)",
    "settling_h": "Settling time (h)",
    "normalised_reward": "Normalised reward",
    # correction and ablations
    "step_size": "Step size η",
    "step": "Step size η",
    "not_worse": "Runs not worse than base",
    "latency_ms": "Latency (ms)",
    "safe": "Safe",
    "safe range": "Safe step sizes",
    "safe_low": "Smallest safe step size",
    "safe_high": "Largest safe step size",
    "decades": "Safe range (decades)",
    "safe_decades": "Safe range (decades)",
    "tau": "Expectile τ",
    "method": "Method",
    "sweep": "Sweep",
    "setting": "Setting",
    "variant": "Variant",
    "algorithm": "Algorithm",
    "scenario": "Scenario",
    "model": "Model",
    "phase": "Phase",
    "steps": "Training steps",
    "status": "Status",
    "chosen": "Chosen budget",
    "extension": "Extension",
    "held-out R2": "Held-out R²",
    "R2 held-out": "Held-out R²",
    "R2 train": "Training R²",
    # cost models
    "agree_with_simulator": "Agrees with the simulator (share)",
    "flip_rate": "Sign flips (share of steps)",
    "structural": "Convex by construction",
    "midpoint violations": "Midpoint violations",
    "min Hessian eigenvalue": "Min. Hessian eigenvalue",
    "checks": "Checks",
    "convex": "Convex",
    # environment page
    "envs": "Reactors",
    "env_steps_per_s": "Reactor steps per s",
    "us_per_step": "µs per step",
    "max_rel_error": "Max. relative error",
    "speedup": "Speed-up (×)",
    "horizon": "Horizon N (steps)",
    "hours": "Horizon (h)",
    "return": "Return",
    "median_ms": "Median solve time (ms)",
    "p95_ms": "95th-percentile solve time (ms)",
    "failures": "Solver failures",
    "return loss %": "Return loss (%)",
    "constant": "Constant",
    "value": "Value",
    # dataset page
    "dataset id": "Dataset id",
    "transitions": "Transitions",
    "R_min": "Worst PI return R_min",
    "R_max": "Best PI return R_max",
    "stretch": "Stretch (×)",
    "p10 score (all / no runaways)": "10th-percentile score (all / no runaways)",
    # claims page
    "claim": "Claim",
    "paper": "Paper",
    "this build": "This build",
    "verdict": "Verdict",
    "seed halves": "Seed halves",
    "rule": "Rule",
    "gap": "Gap to the oracle (points)",
    "score": "Score",
}

#: Row labels (index values) and column labels that are names in the code → what a reader
#: sees: scenarios, algorithms.
LABELS: dict[str, str] = {
    "startup": "Startup",
    "grade_down": "Grade down",
    "grade_up": "Grade up",
    "bc": "BC",
    "iql": "IQL",
    "cql": "CQL",
    "mlp": "NN",
    "picnn": "PICNN",
}

_SYMBOL = re.compile(r"\b([A-Z])_([A-Za-z0-9]+)\b")  # C_P, R_min, T_c: maths subscripts


def _readable(name: str) -> str:
    """A code name made readable: underscores as spaces (maths symbols such as ``C_P`` and
    ``R_min`` kept, they render as subscripts), the first letter capitalised."""
    if "_" in name and not _SYMBOL.search(name):
        name = name.replace("_", " ")
    if name[:1].isascii() and name[:1].islower():
        name = name[:1].upper() + name[1:]
    return name


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool | np.bool_)


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def header_text(name: Any, headers: Mapping[Any, str] | None = None) -> str:
    """The header a reader sees for the column ``name``.

    Looked up in ``headers``, then :data:`HEADERS`, then :data:`LABELS`; otherwise the name
    made readable (underscores as spaces, first letter capitalised). A tuple (a column of a
    multi-index) is looked up whole first, then each part, the parts joined by ``' · '``
    (empty parts left out).
    """
    custom = dict(headers or {})
    if isinstance(name, tuple):
        if name in custom:
            return custom[name]
        parts = [header_text(p, custom) for p in name if p is not None and str(p) != ""]
        return " · ".join(parts)
    for mapping in (custom, HEADERS, LABELS):
        try:
            if name in mapping:
                return mapping[name]
        except TypeError:  # unhashable
            break
    if _number(name):
        return _format_number(name, "g")
    return _readable(str(name))


def label_text(value: Any, labels: Mapping[Any, str] | None = None) -> str:
    """The text of a row label (an index value): as :func:`header_text`, numbers with
    thousands separators (integers) or ``%g``, booleans as ✓ / ✗."""
    if isinstance(value, bool | np.bool_):
        return CHECK if value else CROSS
    if _missing(value):
        return MISSING
    if _number(value) and not (labels and value in labels):
        if isinstance(value, numbers.Integral):
            return f"{int(value):,}"
        return _format_number(value, "g")
    return header_text(value, labels)


def count_text(k: Any, n: Any) -> str:
    """``'k of n'`` (``'—'`` when either is missing)."""
    if _missing(k) or _missing(n):
        return MISSING
    return f"{int(k):,} of {int(n):,}"


def _format_number(value: Any, spec: int | str) -> str:
    """A number as text: ``spec`` decimals (int) or a format spec (``'g'``, ``'.1e'``)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_):
        return f"{int(value):,}"
    x = float(value)
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    text = format(x, f",.{spec}f") if isinstance(spec, int) else format(x, spec)
    if text.startswith("-") and not any(c in "123456789" for c in text.split("e")[0]):
        text = text[1:]  # -0.0 -> 0.0
    return text


def _format_value(value: Any, spec: int | str, booleans: tuple[str, str]) -> str | None:
    """A cell as text; None for a missing value."""
    if isinstance(value, bool | np.bool_):
        return booleans[0] if value else booleans[1]
    if _missing(value):
        return None
    if _number(value):
        return _format_number(value, spec)
    if isinstance(value, np.ndarray | list | tuple):
        items = [_format_value(v, spec, booleans) or MISSING for v in np.ravel(value)]
        return "[" + ", ".join(items) + "]"
    text = str(value)
    return text if text.strip() else None


def _lookup(mapping: Mapping | None, key: Any, default: Any = None) -> Any:
    """``mapping[key]``, or for a tuple key (multi-index column) ``mapping[key[-1]]``."""
    if not mapping:
        return default
    if key in mapping:
        return mapping[key]
    if isinstance(key, tuple) and key and key[-1] in mapping:
        return mapping[key[-1]]
    return default


def _empty(column: pd.Series) -> bool:
    return bool(column.map(lambda v: _missing(v) or (isinstance(v, str) and not v.strip())).all())


@dataclass(frozen=True, eq=False)
class ReaderTable:
    """A table as a page shows it.

    Attributes:
        frame: the displayed text of every cell: columns are the headers a reader sees (one
            row of them), the index holds the row labels as shown.
        index_headers: headers of the row-label columns (one per index level), ``()`` when
            the rows have no labels.
        numeric: headers of the columns aligned right (numbers, counts, intervals).
        caption: one line above the table that says what it shows (None: none).
        notes: footnotes below the table (why a value is missing, what a count is out of).
        definitions: ``(term, text)`` pairs shown in a collapsible list below the table.
        definitions_title: the collapsible list's summary line.
    """

    frame: pd.DataFrame
    index_headers: tuple[str, ...] = ()
    numeric: frozenset[str] = frozenset()
    caption: str | None = None
    notes: tuple[str, ...] = ()
    definitions: tuple[tuple[str, str], ...] = ()
    definitions_title: str = "Definitions"

    @property
    def headers(self) -> list[str]:
        """Every header of the one header row: the row labels' first, then the columns'."""
        return [*self.index_headers, *map(str, self.frame.columns)]

    def _label_rows(self) -> list[list[tuple[str, int] | None]]:
        """Per row, per label level: ``(text, rowspan)`` where a label cell starts, None
        where the cell above spans it (a level repeats while every level before it does)."""
        if not self.index_headers:
            return [[] for _ in range(len(self.frame))]
        values = [tuple(v) if isinstance(v, tuple) else (v,) for v in self.frame.index.tolist()]
        levels = len(self.index_headers)
        out: list[list[tuple[str, int] | None]] = [[None] * levels for _ in values]
        for level in range(levels):
            start = 0
            while start < len(values):
                end = start + 1
                if level < levels - 1:  # the last level is never merged
                    while (
                        end < len(values) and values[end][: level + 1] == values[start][: level + 1]
                    ):
                        end += 1
                out[start][level] = (str(values[start][level]), end - start)
                start = end
        return out

    def to_html(self) -> str:
        """The table as HTML: a caption, the table in its own horizontally scrolling box,
        the notes and the definitions."""
        esc = _header_html
        head = "".join(f'<th scope="col">{esc(h)}</th>' for h in self.headers)
        body = []
        for labels, (_, row) in zip(self._label_rows(), self.frame.iterrows(), strict=True):
            cells = [
                f'<th scope="row"{_rowspan(span)}>{esc(text)}</th>'
                for text, span in (c for c in labels if c is not None)
            ]
            for header, value in row.items():
                cls = ' class="num"' if header in self.numeric else ""
                cells.append(f"<td{cls}>{html.escape(str(value))}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        label = html.escape(self.caption or "table", quote=True)
        parts = ['<div class="reader-table">']
        if self.caption:
            parts.append(f'<p class="reader-table-caption">{html.escape(self.caption)}</p>')
        if self.frame.empty:
            parts.append('<p class="reader-table-empty">No rows to show.</p></div>')
            return "".join(parts)
        parts.append(
            '<div class="reader-table-scroll" role="region" tabindex="0" '
            f'aria-label="{label}" style="overflow-x:auto;max-width:100%">'
            '<table class="dataframe reader-table">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
        )
        if self.notes:
            notes = "".join(f"<p>{html.escape(n)}</p>" for n in self.notes)
            parts.append(f'<div class="reader-table-notes">{notes}</div>')
        if self.definitions:
            items = "".join(
                f"<dt>{html.escape(term)}</dt><dd>{html.escape(text)}</dd>"
                for term, text in self.definitions
            )
            parts.append(
                '<details class="reader-table-definitions">'
                f"<summary>{html.escape(self.definitions_title)}</summary><dl>{items}</dl>"
                "</details>"
            )
        parts.append("</div>")
        return "".join(parts)

    def _repr_html_(self) -> str:
        return self.to_html()

    def to_text(self) -> str:
        """The table as plain text (caption, table, notes, definitions)."""
        frame = self.frame.copy()
        if self.index_headers:
            frame.index.names = list(self.index_headers)
        lines = [self.caption] if self.caption else []
        lines.append(frame.to_string())
        lines += self.notes
        if self.definitions:
            lines.append(self.definitions_title + ":")
            lines += [f"  {term}: {text}" for term, text in self.definitions]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.to_text()


def _rowspan(span: int) -> str:
    return f' rowspan="{span}"' if span > 1 else ""


def _header_html(text: str) -> str:
    """A header or row label as HTML: escaped, maths symbols (``C_P``) as subscripts."""
    return _SYMBOL.sub(r"\1<sub>\2</sub>", html.escape(text))


def reader_table(
    table: pd.DataFrame,
    headers: Mapping[Any, str] | None = None,
    *,
    columns: Sequence[Any] | None = None,
    digits: int | str | Mapping[Any, int | str] | None = None,
    default_digits: int | str = 1,
    intervals: Mapping[Any, tuple[Any, Any]] | None = None,
    seeds: Any = None,
    counts: Mapping[Any, Any] | None = None,
    missing: str | Mapping[Any, str] | None = None,
    labels: Mapping[Any, str] | None = None,
    index: bool | None = None,
    index_header: str | Sequence[str] | None = None,
    caption: str | None = None,
    notes: Sequence[str] = (),
    definitions: Mapping[str, str] | None = None,
    definitions_title: str = "Definitions",
    booleans: tuple[str, str] = (CHECK, CROSS),
    drop_empty: bool = True,
) -> ReaderTable:
    """A result DataFrame as a reader's table.

    Args:
        table: any result table (internal column names; flat or multi-index columns and
            index).
        headers: internal column name → header, over :data:`HEADERS` (names in neither are
            made readable: underscores as spaces, first letter capitalised). A
            multi-index column's parts are joined into one header by ``' · '``.
        columns: the columns to show, in order (internal names; default: every column but
            the interval bounds and the count denominators that no other column names).
        digits: decimals of the numbers (an int), or a format spec (``'g'``, ``'.1e'``), for
            every column or per column name (a multi-index column also by its last part);
            integers are shown whole, with thousands separators.
        default_digits: decimals (or spec) of the columns ``digits`` does not name (all of
            them when ``digits`` is None).
        intervals: column → ``(low column, high column)``: shown as ``'value [low, high]'``
            under ``'<header> [95 % CI]'``; a row with fewer than 2 seeds (``seeds``), a
            missing bound or a degenerate interval (low == high) shows the value alone, and a
            footnote (:data:`ONE_SEED_NOTE`) says why.
        seeds: the number of seeds of every row: a column name, or one number for all.
        counts: column → denominator (a column name or a number): shown as ``'k of n'``.
        missing: why a value is missing (a NaN or None cell, shown as ``'—'``): one reason
            for every column or per column; the footnote ``'— in <header>: <reason>.'``
            (``'not available'`` when no reason is given).
        labels: row label (index value) → text, over :data:`LABELS` and :data:`HEADERS`
            (a transposed table's labels are column names).
        index: show the row labels (default: unless the index is a plain range).
        index_header: header of the row labels' column, or one per index level (default:
            the index names, through the same lookup as ``headers``; unnamed: empty).
        caption: what the table shows, in one line above it.
        notes: footnotes, below the automatic ones.
        definitions: term → text, shown in a collapsible list below the table (e.g. the
            full text of a rule that the table names briefly).
        definitions_title: the collapsible list's summary line.
        booleans: the texts of True and False.
        drop_empty: leave out the columns where every value is missing or blank.

    Returns:
        A :class:`ReaderTable`: one header row, no ``True``/``False``/``NaN`` cell.

    Raises:
        KeyError: ``columns``, ``intervals``, ``counts`` or ``seeds`` names a column that
            the table does not have.
        ValueError: two columns would show the same header, or ``index_header`` gives
            a number of headers other than the index's levels.
    """
    intervals = dict(intervals or {})
    counts = dict(counts or {})
    bound_list = [c for pair in intervals.values() for c in pair]
    bounds = set(bound_list)
    for name in [*intervals, *bound_list, *counts]:
        if name not in table.columns:
            raise KeyError(f"no column {name!r} in the table")
    denominators = {d for d in counts.values() if isinstance(d, str | tuple)}
    for name in denominators:
        if name not in table.columns:
            raise KeyError(f"no column {name!r} (a count's denominator) in the table")
    if isinstance(seeds, str | tuple) and seeds not in table.columns:
        raise KeyError(f"no column {seeds!r} (the seeds) in the table")
    if columns is None:
        hidden = bounds | (denominators - set(counts)) - set(intervals)
        columns = [c for c in table.columns if c not in hidden]
    else:
        for name in columns:
            if name not in table.columns:
                raise KeyError(f"no column {name!r} in the table")
    shown_cols = [
        c
        for c in columns
        if not (drop_empty and _empty(table[c]))
        or (c in intervals and not all(_empty(table[b]) for b in intervals[c]))
    ]

    def spec(col: Any) -> int | str:
        if isinstance(digits, Mapping):
            return _lookup(digits, col, default_digits)
        return default_digits if digits is None else digits

    n_rows = len(table)
    if seeds is None:
        row_seeds = [None] * n_rows
    elif isinstance(seeds, str | tuple):
        row_seeds = table[seeds].tolist()
    else:
        row_seeds = [seeds] * n_rows

    out: dict[str, list[str]] = {}
    numeric: set[str] = set()
    missing_in: dict[str, list[str]] = {}
    notes_out: list[str] = []
    for col in shown_cols:
        head = header_text(col, headers)
        values = table[col].tolist()
        d = spec(col)
        texts: list[str | None]
        if col in intervals:
            low, high = (table[b].tolist() for b in intervals[col])
            texts, with_ci, without = [], 0, 0
            for v, lo, hi, s in zip(values, low, high, row_seeds, strict=True):
                value = _format_value(v, d, booleans)
                single = s is not None and not _missing(s) and int(s) < 2
                if value is None:
                    texts.append(None)
                elif single or _missing(lo) or _missing(hi) or lo == hi:
                    texts.append(value)
                    without += 1
                else:
                    lo_t, hi_t = _format_number(lo, d), _format_number(hi, d)
                    texts.append(f"{value} [{lo_t}, {hi_t}]")
                    with_ci += 1
            if with_ci:
                head = f"{head} {INTERVAL}"
            if without and ONE_SEED_NOTE not in notes_out:
                notes_out.append(ONE_SEED_NOTE)
            numeric.add(head)
        elif col in counts:
            n = counts[col]
            ns = table[n].tolist() if isinstance(n, str | tuple) else [n] * n_rows
            texts = [
                None if _missing(k) or _missing(m) else count_text(k, m)
                for k, m in zip(values, ns, strict=True)
            ]
            numeric.add(head)
        else:
            texts = [_format_value(v, d, booleans) for v in values]
            if pd.api.types.is_numeric_dtype(table[col]) and not pd.api.types.is_bool_dtype(
                table[col]
            ):
                numeric.add(head)
        if any(t is None for t in texts):
            if isinstance(missing, Mapping):
                reason = _lookup(missing, col, "not available")
            else:
                reason = missing or "not available"
            missing_in.setdefault(reason, []).append(head)
        if head in out:
            raise ValueError(f"two columns would show the same header {head!r}")
        out[head] = [MISSING if t is None else t for t in texts]

    show_index = index if index is not None else not isinstance(table.index, pd.RangeIndex)
    names = list(table.index.names)
    if show_index:
        if index_header is None:
            index_headers = tuple("" if n is None else header_text(n, headers) for n in names)
        elif isinstance(index_header, str):
            index_headers = (index_header, *[""] * (len(names) - 1))
        else:
            index_headers = tuple(index_header)
            if len(index_headers) != len(names):
                raise ValueError(f"{len(index_headers)} index headers for {len(names)} levels")
        if isinstance(table.index, pd.MultiIndex):
            rows = [tuple(label_text(v, labels) for v in key) for key in table.index]
            new_index: pd.Index = pd.MultiIndex.from_tuples(rows)
        else:
            new_index = pd.Index([label_text(v, labels) for v in table.index], dtype=object)
    else:
        index_headers = ()
        new_index = pd.RangeIndex(n_rows)
    frame = pd.DataFrame(out, index=new_index, dtype=object)
    for reason, heads in missing_in.items():
        notes_out.append(f"{MISSING} in {', '.join(heads)}: {reason}.")
    return ReaderTable(
        frame=frame,
        index_headers=index_headers,
        numeric=frozenset(numeric),
        caption=caption,
        notes=(*notes_out, *notes),
        definitions=tuple((definitions or {}).items()),
        definitions_title=definitions_title,
    )
