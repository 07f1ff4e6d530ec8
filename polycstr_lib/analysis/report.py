"""Tables and figures of the result pages, made to read well in the book.

- :func:`drop_empty_columns` and :func:`page_table`: no column that is empty or all NaN;
  an interval column ``'<col> ± 95 %'`` merged into its column.
- :func:`results_page_table`: the results pages' table (:func:`~polycstr_lib.analysis.results.
  results_table`) as a reader's table (:mod:`polycstr_lib.analysis.tables`) of seven
  columns: IQM across seeds with its 95 % stratified-bootstrap interval (the value alone with
  one seed), median, worst episode, episodes over 370 K and runaways (``k of n``), offset
  and optimality.
- :func:`with_interval`: a value and its interval as one text column.
- :func:`step_range_text` and :func:`safe_range_phrase`: a range of step sizes (which span
  decades) as readable text, for a table and for prose.
- :func:`reward_figure`: normalised reward of every test episode per method on a
  symmetric-log axis (linear between -100 and 100, logarithmic beyond), so that a method
  whose episodes fail by thousands of points is on the axis with the others.
- :func:`trajectory_figure`: the first test episode of every method, each state beside a
  zoom near its setpoint, so that one runaway trace does not flatten the others.

Both figure functions return the numbers a page's prose discusses, for ``glue``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from polycstr_lib.analysis.tables import ReaderTable, reader_table

__all__ = [
    "INTERVAL_SUFFIX",
    "NO_OPTIMALITY",
    "RESULTS_COLUMNS",
    "REWARD_LINTHRESH",
    "drop_empty_columns",
    "episode_scores",
    "page_table",
    "profile_figure",
    "profile_thresholds",
    "results_page_table",
    "reward_figure",
    "safe_range_phrase",
    "step_range_text",
    "trajectory_figure",
    "with_interval",
]

#: Normalised rewards within +-100 are drawn on a linear scale, beyond on a log scale.
REWARD_LINTHRESH = 100.0


def drop_empty_columns(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` without the columns in which every value is NaN, None or an empty string.

    Args:
        table: any DataFrame.

    Returns:
        A new DataFrame (same index, remaining columns in order).
    """
    empty = [
        col
        for col in table.columns
        if table[col].map(lambda v: v is None or (isinstance(v, str) and not v.strip())).all()
        or table[col].isna().all()
    ]
    return table.drop(columns=empty)


#: Suffix of interval (half-width) columns that :func:`page_table` merges.
INTERVAL_SUFFIX = " ± 95 %"


def page_table(
    table: pd.DataFrame, digits: int | Mapping[str, int] = 2, default_digits: int = 2
) -> pd.DataFrame:
    """A summary table as a page shows it: empty and all-NaN columns dropped, numbers
    rounded, and each interval column ``'<col> ± 95 %'`` merged into ``<col>`` as
    ``'value ± half-width'`` text (``'value'`` where the half-width is NaN), which the
    browser may wrap, so that a table with intervals still fits the text column.

    Args:
        table: any summary table.
        digits: decimals kept, for every column, or per column name (the others keep
            ``default_digits``).
        default_digits: decimals of the columns ``digits`` does not name.

    Returns:
        The table to display.
    """
    shown = drop_empty_columns(table)
    if isinstance(digits, Mapping):
        digits = {c: digits.get(c, default_digits) for c in shown.columns}
    shown = shown.round(digits)
    for col in list(shown.columns):
        half = f"{col}{INTERVAL_SUFFIX}"
        if half not in shown.columns:
            continue
        d = digits if isinstance(digits, int) else digits.get(col, default_digits)
        shown[col] = [
            f"{v:.{d}f}" if pd.isna(h) else f"{v:.{d}f} ± {h:.{d}f}"
            for v, h in zip(shown[col], shown[half], strict=True)
        ]
        shown = shown.drop(columns=half).rename(columns={col: half})
    return shown


def step_range_text(low: float, high: float) -> str:
    """A range of step sizes as table text: ``'1e-06 to 0.0001'``, ``'1e-05'`` when it is
    one step size, ``'none'`` when both ends are NaN (no step size qualifies).

    Step sizes span many decades, so fixed decimals would print 1e-6 as ``0.00000``;
    ``%g`` keeps every one readable.

    Raises:
        ValueError: ``high`` below ``low``, or only one of the two NaN.
    """
    if np.isnan(low) and np.isnan(high):
        return "none"
    if np.isnan(low) or np.isnan(high) or high < low:
        raise ValueError(f"not a step-size range: {low!r} to {high!r}")
    return f"{low:g}" if low == high else f"{low:g} to {high:g}"


def safe_range_phrase(low: float, high: float) -> str:
    """The same range for prose: ``'none of its grid'``, ``'only 1e-05'`` or
    ``'1e-06 to 0.0001 (2.0 decades)'``."""
    text = step_range_text(low, high)
    if text == "none":
        return "none of its grid"
    if low == high:
        return f"only {text}"
    return f"{text} ({np.log10(high / low):.1f} decades)"


def with_interval(
    table: pd.DataFrame, column: str, low: str, high: str, digits: int = 1
) -> pd.DataFrame:
    """Replaces ``column``, ``low`` and ``high`` by one text column ``'value [low, high]'``
    named ``'<column> [95 % CI]'`` (a narrower table for the page)."""
    out = table.copy()
    text = [
        f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
        for v, lo, hi in zip(out[column], out[low], out[high], strict=True)
    ]
    position = out.columns.get_loc(column)
    out = out.drop(columns=[column, low, high])
    out.insert(position, f"{column} [95 % CI]", text)
    return out


#: Columns of :func:`results_page_table`, in order (optimality only where measured), by
#: their names in :func:`~polycstr_lib.analysis.results.results_table`.
RESULTS_COLUMNS = ("iqm", "median", "worst", "violating", "runaways", "offset", "optimality")

#: Why the results table has no optimality for a row (the Data row: the dataset's episodes
#: are not the test episodes the NMPC oracle ran on).
NO_OPTIMALITY = "no NMPC oracle run on these episodes (the score needs the oracle's return)"


def _denominators(episodes: pd.Series) -> str:
    """``'2 for NMPC (oracle), 100 for Data, 20 for the other rows'`` (in the rows' order;
    the most common count last as "the other rows" when more than two rows share it)."""
    groups: dict[int, list[str]] = {}
    for method, n in episodes.items():
        groups.setdefault(int(n), []).append(str(method))
    common = max(groups, key=lambda n: len(groups[n]))
    if len(groups[common]) <= 2:
        return ", ".join(f"{n:,} for {', '.join(m)}" for n, m in groups.items())
    parts = [f"{n:,} for {', '.join(m)}" for n, m in groups.items() if n != common]
    return ", ".join([*parts, f"{common:,} for the other rows"])


def results_page_table(table: pd.DataFrame, digits: int = 1) -> ReaderTable:
    """A :func:`~polycstr_lib.analysis.results.results_table` as the results pages show it.

    Args:
        table: :func:`~polycstr_lib.analysis.results.results_table`.
        digits: Decimals of the scores and the offset.

    Returns:
        A :func:`~polycstr_lib.analysis.tables.reader_table` of at most seven columns
        (:data:`RESULTS_COLUMNS`): the IQM with its 95 % interval (the value alone for a row
        of one seed or one run), the median, the worst episode, the episodes over 370 K and
        the runaways as ``'k of n'`` episodes, the offset and the optimality (left out where
        the table has none; ``—`` with a footnote where a row has none).
    """
    episodes = table["episodes"].astype(int)
    notes = []
    if episodes.nunique() > 1:
        notes.append(
            "Episode counts are k of n, n being every episode of the row (all its seeds): "
            f"{_denominators(episodes)}."
        )
    return reader_table(
        table,
        columns=[c for c in RESULTS_COLUMNS if c in table.columns],
        digits=digits,
        intervals={"iqm": ("iqm_low", "iqm_high")},
        seeds="seeds",
        counts={"violating": "episodes", "runaways": "episodes"},
        missing={"optimality": NO_OPTIMALITY},
        index_header="Method",
        notes=notes,
    )


def _pooled(per_seed: Mapping[str, Mapping[int, pd.DataFrame]]) -> pd.DataFrame:
    frames = [
        m[["normalised_reward"]].assign(method=name)
        for name, runs in per_seed.items()
        for m in runs.values()
    ]
    return pd.concat(frames, ignore_index=True)


def reward_figure(
    per_seed: Mapping[str, Mapping[int, pd.DataFrame]],
    linthresh: float = REWARD_LINTHRESH,
    ax=None,
):
    """Box and strip plot of the normalised reward of every test episode, per method, on a
    symmetric-log axis: every episode is on the axis, however badly it failed.

    Args:
        per_seed: method -> seed -> per-episode metrics with a ``normalised_reward`` column
            (as in :func:`~polycstr_lib.analysis.results.seed_summary`).
        linthresh: the axis is linear within ``+-linthresh``, logarithmic beyond.
        ax: matplotlib axes to draw on (default: a new figure).

    Returns:
        ``(figure, numbers)``; ``numbers`` holds ``n_episodes`` (all episodes drawn),
        ``n_below_zero`` (episodes scoring below 0, worse than the data's worst episode),
        ``n_off_linear`` (episodes below ``-linthresh``), ``lowest_reward`` and
        ``lowest_method``, ``best_method`` and ``best_mean`` (highest mean over all its
        episodes), and ``reward_linthresh``.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    pooled = _pooled(per_seed)
    order = list(per_seed)
    if ax is None:
        fig, ax = plt.subplots(figsize=(10, 4.2))
    else:
        fig = ax.figure
    sns.boxplot(pooled, x="method", y="normalised_reward", order=order, ax=ax, showfliers=False)
    sns.stripplot(
        pooled, x="method", y="normalised_reward", order=order, ax=ax, color="k", size=2.5
    )
    rewards = pooled["normalised_reward"].to_numpy(float)
    ax.set_yscale("symlog", linthresh=linthresh)
    low, high = float(np.nanmin(rewards)), float(np.nanmax(rewards))
    ax.set_ylim(min(low * 1.5, -linthresh), max(high * 1.2 if high > 0 else 0.0, linthresh * 1.1))
    for y in (-linthresh, linthresh):
        ax.axhline(y, color="0.6", lw=0.8, ls=":")
    ax.axhline(0.0, color="0.3", lw=0.8)
    ax.set(xlabel="", ylabel="normalised reward (symlog)")
    ax.set_title(f"Normalised reward per test episode (linear within ±{linthresh:.0f}, log beyond)")
    ax.tick_params(axis="x", labelrotation=0)
    fig.tight_layout()
    means = pooled.groupby("method", sort=False)["normalised_reward"].mean()
    lowest = pooled.loc[pooled["normalised_reward"].idxmin()]
    numbers = {
        "n_episodes": len(pooled),
        "n_below_zero": int((rewards < 0).sum()),
        "n_off_linear": int((rewards < -linthresh).sum()),
        "lowest_reward": float(lowest["normalised_reward"]),
        "lowest_method": str(lowest["method"]),
        "best_method": str(means.idxmax()),
        "best_mean": float(means.max()),
        "reward_linthresh": float(linthresh),
    }
    return fig, numbers


def episode_scores(per_seed: Mapping[str, Mapping[int, pd.DataFrame]]) -> dict[str, np.ndarray]:
    """Per method, the normalised reward of every episode as a ``(seeds, episodes)`` matrix.

    Raises:
        ValueError: a method whose seeds ran different numbers of episodes.
    """
    out = {}
    for name, runs in per_seed.items():
        lengths = {len(m) for m in runs.values()}
        if len(lengths) != 1:
            raise ValueError(f"{name}: seeds ran different numbers of episodes {sorted(lengths)}")
        out[name] = np.stack([m["normalised_reward"].to_numpy(float) for m in runs.values()])
    return out


def profile_thresholds(
    scores: Mapping[str, np.ndarray],
    linthresh: float = REWARD_LINTHRESH,
    num: int = 121,
    include: Sequence[float] = (90.0,),
) -> np.ndarray:
    """Thresholds τ for a performance profile on a symmetric-log axis: evenly spaced on the
    linear part (within ``±linthresh``, up to the best score) and logarithmically below
    ``-linthresh`` down to the worst score, so that each part of the axis is resolved; the
    values of ``include`` are always among them."""
    values = np.concatenate([np.ravel(v) for v in scores.values()])
    low, high = float(values.min()), max(float(values.max()), 0.0)
    parts = [np.linspace(max(low, -linthresh), high, num), np.asarray(include, dtype=float)]
    if low < -linthresh:
        decades = max(np.log10(-low / linthresh), 0.1)
        tail = -np.logspace(np.log10(-low), np.log10(linthresh), max(int(20 * decades), 5))
        tail[0], tail[-1] = low, -linthresh  # exact ends (logspace rounds them)
        parts.append(tail)
    return np.unique(np.concatenate(parts))


def profile_figure(
    profiles: pd.DataFrame,
    linthresh: float = REWARD_LINTHRESH,
    reference: float = 90.0,
    ax=None,
):
    """Performance profiles (:func:`polycstr_lib.toolkit.stats.performance_profiles`): the fraction
    of
    episodes scoring above τ against τ, each method with its 95 % band; the τ axis turns
    symmetric-log (linear within ``±linthresh``) when some episode scores below ``-linthresh``.

    Args:
        profiles: the table of :func:`~polycstr_lib.toolkit.stats.performance_profiles`.
        linthresh: the τ axis is linear within ``±linthresh``, logarithmic beyond.
        reference: the τ the returned numbers read the profiles at.
        ax: matplotlib axes to draw on (default: a new figure).

    Returns:
        ``(figure, numbers)``; ``numbers`` holds ``profile_tau`` (``reference``),
        ``profile_best`` and ``profile_best_fraction`` (the method with the largest fraction
        of episodes above ``reference``) and ``profile_worst`` and ``profile_worst_fraction``
        (the smallest).

    Raises:
        ValueError: ``reference`` is not one of the profiles' thresholds.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(10, 4.2))
    else:
        fig = ax.figure
    at_reference = {}
    for i, (method, part) in enumerate(profiles.groupby("method", sort=False)):
        color = f"C{i % 10}"
        ax.plot(part["tau"], part["fraction"], color=color, lw=1.6, label=method, ds="steps-post")
        ax.fill_between(
            part["tau"], part["low"], part["high"], color=color, alpha=0.15, lw=0, step="post"
        )
        row = part[part["tau"] == reference]
        if row.empty:
            raise ValueError(f"no threshold at the reference {reference} (profile_thresholds)")
        at_reference[method] = float(row["fraction"].iloc[0])
    low, high = profiles["tau"].min(), profiles["tau"].max()
    symlog = low < -linthresh  # episodes far below the data: log beyond ±linthresh
    if symlog:
        ax.set_xscale("symlog", linthresh=linthresh)
    ax.set_xlim(low, high)
    if low < 0.0 < high:
        ax.axvline(0.0, color="0.3", lw=0.8)
    ax.set(
        xlabel="threshold τ on the normalised reward"
        + (f" (linear within ±{linthresh:g}, log beyond)" if symlog else ""),
        ylabel="fraction of episodes > τ",
        ylim=(-0.02, 1.02),
        title="Performance profiles over all test episodes (95 % stratified-bootstrap bands)",
    )
    ax.legend(fontsize=8, ncol=2, loc="lower left")
    fig.tight_layout()
    best = max(at_reference, key=at_reference.get)
    worst = min(at_reference, key=at_reference.get)
    numbers = {
        "profile_tau": float(reference),
        "profile_best": best,
        "profile_best_fraction": at_reference[best],
        "profile_worst": worst,
        "profile_worst_fraction": at_reference[worst],
    }
    return fig, numbers


def _zoom_limits(setpoint: float, half_width: float) -> tuple[float, float]:
    return setpoint - half_width, setpoint + half_width


def trajectory_figure(
    trajs: Mapping[str, object],
    control_interval: float,
    episode: int = 0,
    zoom_polymer: float = 0.25,
    zoom_temperature: float = 10.0,
    temperature_limit: float | None = 370.0,
):
    """The ``episode``-th test episode of every method: polymer concentration and reactor
    temperature over their full range and zoomed near the setpoint, and the two inputs.

    Args:
        trajs: method -> :class:`~polycstr_lib.reactor.rollout.Trajectories`; a name ending in
            ``+`` (a corrected method) is dashed in its base method's colour.
        control_interval: seconds per step (the time axis is in hours).
        episode: which episode of each method.
        zoom_polymer: half-width of the polymer zoom, as a fraction of its setpoint.
        zoom_temperature: half-width of the temperature zoom, K.
        temperature_limit: drawn as a red dashed line on the temperature panels (None: not).

    Returns:
        ``(figure, numbers)``; ``numbers`` holds ``zoom_cp`` and ``zoom_t`` (the zooms'
        half-widths, kg/m^3 and K), ``n_methods`` and ``n_outside_zoom`` (methods whose
        final polymer concentration lies outside the polymer zoom) and ``outside_zoom``
        (their names, comma-separated, or ``'none'``).
    """
    import matplotlib.pyplot as plt

    names = list(trajs)
    if not names:
        raise ValueError("no trajectories to plot")
    first = trajs[names[0]]
    setpoint_cp, setpoint_t = (float(v) for v in first.setpoints[episode])
    half_cp = zoom_polymer * abs(setpoint_cp)
    fig, axes = plt.subplots(3, 2, figsize=(11, 8.5), sharex=True, layout="constrained")
    styles: dict[str, dict] = {}
    bases = list(dict.fromkeys(n.rstrip("+") for n in names))
    for name in names:
        base = name.rstrip("+")
        colour = "0.35" if base == "PI" else f"C{bases.index(base)}"
        styles[name] = {"color": colour, "ls": "--" if name.endswith("+") else "-", "lw": 1.3}
    outside = []
    for name in names:
        tr = trajs[name]
        states, inputs = tr.states[episode], tr.inputs[episode]
        hours = np.arange(states.shape[0]) * control_interval / 3600
        style = styles[name]
        for col in (0, 1):
            axes[0, col].plot(hours, states[:, 3], label=name if col == 0 else None, **style)
            axes[1, col].plot(hours, states[:, 4], **style)
        axes[2, 0].plot(hours[: inputs.shape[0]], inputs[:, 0], **style)
        axes[2, 1].plot(hours[: inputs.shape[0]], inputs[:, 1], **style)
        if abs(float(states[-1, 3]) - setpoint_cp) > half_cp:
            outside.append(name)
    for col in (0, 1):
        axes[0, col].axhline(setpoint_cp, color="k", lw=1, ls=":")
        axes[1, col].axhline(setpoint_t, color="k", lw=1, ls=":")
        if temperature_limit is not None:
            axes[1, col].axhline(temperature_limit, color="tab:red", lw=1, ls="--")
    axes[0, 1].set_ylim(*_zoom_limits(setpoint_cp, half_cp))
    axes[1, 1].set_ylim(*_zoom_limits(setpoint_t, zoom_temperature))
    axes[0, 0].set(ylabel="C_P (kg/m^3)", title="full range")
    axes[0, 1].set(title=f"zoom: setpoint ± {half_cp:.0f} kg/m^3")
    axes[1, 0].set(ylabel="T (K)")
    axes[1, 1].set(title=f"zoom: setpoint ± {zoom_temperature:.0f} K")
    axes[2, 0].set(ylabel="F_I (kg/h)", xlabel="time (h)")
    axes[2, 1].set(ylabel="T_c (K)", xlabel="time (h)")
    fig.legend(loc="outside right center", fontsize=9)
    fig.suptitle(f"Test episode {episode + 1} of every method (dotted: setpoint)")
    numbers = {
        "zoom_cp": float(half_cp),
        "zoom_t": float(zoom_temperature),
        "n_methods": len(names),
        "n_outside_zoom": len(outside),
        "outside_zoom": ", ".join(outside) if outside else "none",
    }
    return fig, numbers
