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
- :func:`reward_figure`: normalised reward of every test episode per method on a linear
  axis over the 0–100 band; episodes that fail below it (thousands of points down) are
  drawn at its edge and counted, so that they do not squeeze the others into a line.
- :func:`profile_figure`: performance profiles on the same linear band, each method's share
  of failures in the legend.
- :func:`trajectory_figure`: the first test episode of every method, each state beside a
  zoom near its setpoint, so that one runaway trace does not flatten the others.

The figures follow :mod:`polycstr_lib.analysis.style` (one colour per method across the
book, type ≥ 9 pt); each returns the numbers a page's prose discusses, for ``glue``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from polycstr_lib.analysis.style import (
    FULL_WIDTH,
    REWARD_FLOOR,
    book_style,
    failure_strip,
    finish_figure,
    method_colour,
    method_fill,
    method_hatch,
    method_linestyle,
    number_text,
    pin_below,
    reward_band,
    set_reward_axis,
    tidy_axis,
)
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

#: The results page's earlier symmetric-log threshold: :func:`reward_figure` still counts the
#: episodes below ``-REWARD_LINTHRESH`` (``n_off_linear``) for the page's prose.
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


#: Rows of a results table that are one run each whatever the seeds (the dataset, PI).
SINGLE_RUNS = ("Data", "PI")
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
        the table has none; ``—`` with a footnote where a row has none). Where the agents'
        rows have different numbers of training seeds, a footnote gives each row's.
    """
    episodes = table["episodes"].astype(int)
    notes = []
    if episodes.nunique() > 1:
        notes.append(
            "Episode counts are k of n, n being every episode of the row (all its seeds): "
            f"{_denominators(episodes)}."
        )
    over_episodes = (
        table["interval"] == "episodes" if "interval" in table else pd.Series(False, table.index)
    )
    if over_episodes.any():
        rows = ", ".join(str(m) for m in table.index[over_episodes])
        notes.append(
            f"{rows}: deterministic, one run each; the score is the mean over the row's "
            "episodes and its interval a 95 % bootstrap over those episodes, not over seeds."
        )
    seeded = table["seeds"][~over_episodes & ~table.index.isin(SINGLE_RUNS)].astype(int)
    if seeded.nunique() > 1:
        notes.append(
            "Training seeds per row (its IQM and interval are across them): "
            f"{_denominators(seeded)}."
        )
    # an interval over episodes is shown wherever the row has 2 episodes to resample
    table = table.assign(_runs=table["seeds"].where(~over_episodes, table["episodes"]))
    return reader_table(
        table,
        columns=[c for c in RESULTS_COLUMNS if c in table.columns],
        digits=digits,
        intervals={"iqm": ("iqm_low", "iqm_high")},
        seeds="_runs",
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


def _horizontal() -> dict[str, Any]:
    """``boxplot`` keywords for horizontal boxes (``vert`` is deprecated from 3.10)."""
    import matplotlib as mpl

    major, minor = (int(x) for x in mpl.__version__.split(".")[:2])
    return {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}


def reward_figure(
    per_seed: Mapping[str, Mapping[int, pd.DataFrame]],
    floor: float = REWARD_FLOOR,
    ax=None,
):
    """Box and strip plot of the normalised reward of every test episode, one row per method,
    on a linear axis over the 0–100 band (:func:`~polycstr_lib.analysis.style.reward_band`).

    Episodes below the band (under ``floor``: failures, runaways among them) are drawn as
    ◀ at the axis's left edge and counted per method on the right-hand axis, so that one
    episode thousands of points down does not squeeze the others into a line.

    Args:
        per_seed: method -> seed -> per-episode metrics with a ``normalised_reward`` column
            (as in :func:`~polycstr_lib.analysis.results.seed_summary`).
        floor: scores below it are failures, drawn at the edge and counted.
        ax: matplotlib axes to draw on (default: a new figure).

    Returns:
        ``(figure, numbers)``; ``numbers`` holds ``n_episodes`` (all episodes drawn),
        ``n_below_zero`` (episodes scoring below 0, worse than the data's worst episode),
        ``n_below_band`` (drawn at the edge) and ``reward_floor`` (the band's lower end),
        ``n_off_linear`` (episodes below ``-reward_linthresh``, -100: the page's earlier
        symmetric-log threshold, kept for its prose), ``lowest_reward`` and
        ``lowest_method``, ``best_method`` and ``best_mean`` (highest mean over all its
        episodes), and ``reward_linthresh``.
    """
    import matplotlib.pyplot as plt

    pooled = _pooled(per_seed)
    order = list(per_seed)
    rewards = pooled["normalised_reward"].to_numpy(float)
    band = reward_band(rewards, floor)
    rng = np.random.default_rng(0)
    with book_style():
        if ax is None:
            fig, ax = plt.subplots(
                figsize=(FULL_WIDTH, 1.3 + 0.42 * len(order)), layout="constrained"
            )
        else:
            fig = ax.figure
        edge = set_reward_axis(ax, band, axis="x", label="normalised reward of a test episode")
        below = {}
        for row, name in enumerate(order):
            scores = pooled.loc[pooled["method"] == name, "normalised_reward"].to_numpy(float)
            colour = method_colour(name)
            parts = ax.boxplot(
                [scores[np.isfinite(scores)]],
                positions=[row],
                widths=0.62,
                patch_artist=True,
                showfliers=False,
                manage_ticks=False,
                **_horizontal(),
            )
            box = parts["boxes"][0]
            box.set(facecolor=method_fill(name), edgecolor=colour, lw=1.3, label=name)
            box.set_hatch(method_hatch(name))
            for key in ("whiskers", "caps", "medians"):
                for line in parts[key]:
                    line.set(color=colour, lw=2.0 if key == "medians" else 1.2)
            off = scores < band[0]
            below[name] = (int(off.sum()), len(scores))
            jitter = row + rng.uniform(-0.2, 0.2, len(scores))
            ax.scatter(scores[~off], jitter[~off], s=7, color="0.15", alpha=0.55, lw=0, zorder=3)
            if off.any():
                pinned = pin_below(scores[off], band[0], edge)
                ax.scatter(
                    pinned,
                    jitter[off],
                    marker="<",
                    s=28,
                    color=colour,
                    clip_on=False,
                    edgecolor="0.15",
                    lw=0.5,
                    zorder=4,
                )
        ax.set_yticks(range(len(order)), labels=order)
        ax.set_ylim(len(order) - 0.5, -0.5)  # the first method on top
        ax.grid(axis="y", visible=False)
        n_below = sum(k for k, _ in below.values())
        if n_below:
            failure_strip(ax, band, axis="x")
            counts = ax.twinx()
            counts.set_ylim(ax.get_ylim())
            counts.set_yticks(
                range(len(order)), labels=[f"{k}/{n}" if k else "–" for k, n in below.values()]
            )
            counts.set_ylabel(f"episodes below {number_text(band[0])}")
            counts.grid(False)
            counts.tick_params(axis="y", length=0)
        ax.set_title(
            "Normalised reward of every test episode"
            + (f" (◀: below {number_text(band[0])})" if n_below else "")
        )
    finish_figure(fig)
    means = pooled.groupby("method", sort=False)["normalised_reward"].mean()
    lowest = pooled.loc[pooled["normalised_reward"].idxmin()]
    numbers = {
        "n_episodes": len(pooled),
        "n_below_zero": int((rewards < 0).sum()),
        "n_below_band": int(n_below),
        "reward_floor": float(band[0]),
        "n_off_linear": int((rewards < -REWARD_LINTHRESH).sum()),
        "lowest_reward": float(lowest["normalised_reward"]),
        "lowest_method": str(lowest["method"]),
        "best_method": str(means.idxmax()),
        "best_mean": float(means.max()),
        "reward_linthresh": float(REWARD_LINTHRESH),
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
    floor: float = REWARD_FLOOR,
    num: int = 121,
    include: Sequence[float] = (90.0,),
) -> np.ndarray:
    """Thresholds τ for a performance profile: ``num`` evenly spaced from the lowest score
    not under ``floor`` up to the best score (at least 0), and, when some score is under
    ``floor``, a quarter as many from the worst score up to ``floor`` (``floor`` among
    them, so that :func:`profile_figure` reads the share of failures there); the values of
    ``include`` are always among them."""
    values = np.concatenate([np.ravel(v) for v in scores.values()])
    low, high = float(values.min()), max(float(values.max()), 0.0)
    parts = [np.linspace(max(low, floor), high, num), np.asarray(include, dtype=float)]
    if low < floor:
        parts.append(np.linspace(low, floor, max(num // 4, 2)))
    return np.unique(np.concatenate(parts))


def _fraction_above(part: pd.DataFrame, tau: float) -> float:
    """A profile's fraction of episodes above the largest threshold ≤ ``tau`` (1 if none)."""
    at = part[part["tau"] <= tau]
    return 1.0 if at.empty else float(at.sort_values("tau")["fraction"].iloc[-1])


def profile_figure(
    profiles: pd.DataFrame,
    floor: float = REWARD_FLOOR,
    reference: float = 90.0,
    ax=None,
):
    """Performance profiles (:func:`polycstr_lib.toolkit.stats.performance_profiles`): the
    fraction of episodes scoring above τ against τ, each method with its 95 % band, on a
    linear τ axis over the 0–100 band.

    A method with episodes under ``floor`` (failures) says so in the legend (the share of its
    episodes there); its curve starts below 1 at the axis's left edge. Only when every method
    fails in most episodes does the axis reach down to the worst score instead.

    Args:
        profiles: the table of :func:`~polycstr_lib.toolkit.stats.performance_profiles`
            (thresholds from :func:`profile_thresholds`).
        floor: failure threshold on the normalised reward.
        reference: the τ the returned numbers read the profiles at (dotted line).
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

    groups = list(profiles.groupby("method", sort=False))
    low, high = float(profiles["tau"].min()), float(profiles["tau"].max())
    failing = {m: 1.0 - _fraction_above(part, floor) for m, part in groups} if low < floor else {}
    if failing and min(failing.values()) > 0.5:  # every method fails in most episodes
        band = reward_band([low, high], floor=-np.inf)
        failing = {}
    else:
        band = reward_band([max(low, floor), high], floor)
    with book_style():
        if ax is None:
            fig, ax = plt.subplots(figsize=(FULL_WIDTH, 4.4), layout="constrained")
        else:
            fig = ax.figure
        at_reference = {}
        for method, part in groups:
            colour = method_colour(method)
            share = failing.get(method, 0.0)
            label = f"{method} ({100 * share:.0f} % < {number_text(band[0])})" if share else method
            ax.plot(
                part["tau"],
                part["fraction"],
                color=colour,
                ls=method_linestyle(method),
                lw=1.7,
                label=label,
                ds="steps-post",
            )
            ax.fill_between(
                part["tau"], part["low"], part["high"], color=colour, alpha=0.13, lw=0, step="post"
            )
            row = part[part["tau"] == reference]
            if row.empty:
                raise ValueError(f"no threshold at the reference {reference} (profile_thresholds)")
            at_reference[method] = float(row["fraction"].iloc[0])
        set_reward_axis(ax, band, axis="x", label="threshold τ on the normalised reward")
        if failing and max(failing.values()) > 0:
            failure_strip(ax, band, axis="x")
        ax.axvline(reference, color="0.3", lw=1.0, ls=":", zorder=0.6)
        ax.set(ylabel="fraction of episodes > τ", ylim=(-0.03, 1.03))
        tidy_axis(ax, "y")
        ax.set_title(f"Performance profiles, all test episodes (dotted: τ = {reference:g})")
        fig.legend(loc="outside lower center", ncol=3 if failing else 4)
    finish_figure(fig)
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
        trajs: method -> :class:`~polycstr_lib.reactor.rollout.Trajectories`; each method in
            its colour of :func:`~polycstr_lib.analysis.style.method_colour`, a name ending
            in ``+`` (a corrected method) dashed in its base method's colour.
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
    outside = []
    with book_style():
        fig, axes = plt.subplots(3, 2, figsize=(FULL_WIDTH, 7.6), sharex=True, layout="constrained")
        for name in names:
            tr = trajs[name]
            states, inputs = tr.states[episode], tr.inputs[episode]
            hours = np.arange(states.shape[0]) * control_interval / 3600
            style = {"color": method_colour(name), "ls": method_linestyle(name), "lw": 1.4}
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
        axes[0, 0].set(ylabel="C_P (kg/m³)", title="full range")
        axes[0, 1].set(title=f"zoom: setpoint ± {half_cp:.0f} kg/m³")
        axes[1, 0].set(ylabel="T (K)")
        axes[1, 1].set(title=f"zoom: setpoint ± {zoom_temperature:.0f} K")
        axes[2, 0].set(ylabel="F_I (kg/h)", xlabel="time (h)")
        axes[2, 1].set(ylabel="T_c (K)", xlabel="time (h)")
        for ax in axes.flat:
            tidy_axis(ax, "x")
            tidy_axis(ax, "y", nbins=4)
        fig.legend(loc="outside lower center", ncol=min(len(names), 4))
        fig.suptitle(f"Test episode {episode + 1} of every method (dotted: setpoint)")
    finish_figure(fig)
    numbers = {
        "zoom_cp": float(half_cp),
        "zoom_t": float(zoom_temperature),
        "n_methods": len(names),
        "n_outside_zoom": len(outside),
        "outside_zoom": ", ".join(outside) if outside else "none",
    }
    return fig, numbers
