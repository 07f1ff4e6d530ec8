"""Give every figure of the book one look: a colour per method, legible type, sharp pixels.

How a figure reaches the reader: a notebook shows it through matplotlib-inline, which (since
0.1.4) overrides no rcParams and renders ``fig.canvas.print_figure(dpi=fig.dpi)``; with the
``"retina"`` format it renders at twice ``fig.dpi`` and records half the pixel size as the
output's width and height, which myst-nb passes to the page's ``<img>``. :func:`use_book_style`
selects that format, so a figure ``w`` inches wide is shown ``w × BOOK_DPI`` CSS pixels wide
(shrunk only when wider than the text column) and drawn with two device pixels per CSS pixel.
Shown text height in CSS px is ``pt / 72 × BOOK_DPI × scale``; at :data:`FULL_WIDTH` the scale
is 1 at a 1280-px window, so :data:`MIN_FONT_PT` (9 pt) is shown 12.5 px high.

- :data:`METHOD_COLOURS`, :func:`method_colour`, :func:`method_linestyle`,
  :func:`method_fill` and :func:`method_hatch`: one colour per method across the book; a
  corrected method ("BC+") has its base's colour, dashed lines and a lighter, hatched fill.
- :func:`use_book_style` (notebooks that draw with pyplot, once), :func:`book_style` (the
  library's figure functions, as a context) and :func:`finish_figure` (last step of every
  figure function: no text under :data:`MIN_FONT_PT`, no overlapping tick labels, retina
  inline PNGs through :func:`retina_inline`, so pages that draw only the library's figures
  need no call).
- :func:`reward_band`, :func:`set_reward_axis`, :func:`pin_below` and :func:`failure_strip`:
  a linear normalised-reward axis on the 0–100 band; scores below it are drawn in a shaded
  strip at its edge and counted.
- :func:`log_ticks`, :func:`grid_ticks` and :func:`number_text`: few, rounded tick labels.
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.colors import to_hex, to_rgb
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter

__all__ = [
    "BOOK_DPI",
    "FULL_WIDTH",
    "MAX_TICKS",
    "METHOD_COLOURS",
    "MIN_FONT_PT",
    "REWARD_FLOOR",
    "RETINA",
    "SERIES_COLOURS",
    "base_method",
    "book_rc",
    "book_style",
    "failure_strip",
    "finish_figure",
    "grid_ticks",
    "is_corrected",
    "log_ticks",
    "method_colour",
    "method_fill",
    "method_hatch",
    "method_linestyle",
    "number_text",
    "pin_below",
    "retina_inline",
    "reward_band",
    "series_colour",
    "set_reward_axis",
    "tick_label_boxes",
    "tidy_axis",
    "use_book_style",
]

#: Smallest font size of any text in a book figure, points.
MIN_FONT_PT = 9.0
#: Body text of a figure (axis labels, annotations), points; titles are a little larger.
BASE_FONT_PT = 10.0
#: CSS pixels per figure inch on the page (the figures' ``figure.dpi``).
BOOK_DPI = 100
#: Device pixels per CSS pixel of the notebooks' PNGs (inline "retina"; ``savefig.dpi``).
RETINA = 2
#: Width of a figure that spans the text column (about 690–730 CSS px at a 1280-px window).
FULL_WIDTH = 6.8
#: At most this many labelled ticks per axis.
MAX_TICKS = 6
#: Normalised rewards below this are failures: drawn at the reward axis's lower edge, counted.
REWARD_FLOOR = -20.0
#: Top of the normalised-reward band (the data's best episode).
REWARD_TOP = 100.0

#: Colour of each method, the same in every figure (Okabe–Ito colours, safe for colour
#: blindness; red is left to limits such as 370 K).
METHOD_COLOURS: dict[str, str] = {
    "Data": "#8c8c8c",
    "PI": "#3b3b3b",
    "BC": "#0072B2",
    "IQL": "#E69F00",
    "CQL": "#009E73",
    "NMPC (oracle)": "#CC79A7",
    "Hold inputs": "#56B4E9",
}
#: Other spellings of the methods above (compared in lower case, "+" removed).
_ALIASES = {
    "data": "Data",
    "pi": "PI",
    "bc": "BC",
    "iql": "IQL",
    "cql": "CQL",
    "nmpc": "NMPC (oracle)",
    "nmpc (oracle)": "NMPC (oracle)",
    "oracle": "NMPC (oracle)",
    "hold": "Hold inputs",
    "hold inputs": "Hold inputs",
}
#: Colours of names that are not methods of :data:`METHOD_COLOURS`: variants, sweeps, and a
#: method this module does not know (picked by a checksum of its name, so always the same).
#: Also the default colour cycle ("C0", "C1", ...): seaborn's "deep" palette, in its order,
#: which the pages used before.
SERIES_COLOURS: tuple[str, ...] = (
    "#4C72B0",
    "#DD8452",
    "#55A868",
    "#C44E52",
    "#8172B3",
    "#937860",
    "#DA8BC3",
    "#8C8C8C",
    "#CCB974",
    "#64B5CD",
)


def base_method(name: str) -> str:
    """The method a corrected name is based on: ``'BC+'`` → ``'BC'``; others unchanged."""
    return str(name).strip().rstrip("+").strip()


def is_corrected(name: str) -> bool:
    """Whether ``name`` is a corrected method (ends in ``+``)."""
    return str(name).strip().endswith("+")


def _known(name: str) -> str | None:
    base = base_method(name)
    if base in METHOD_COLOURS:
        return base
    return _ALIASES.get(base.lower())


def method_colour(name: str) -> str:
    """The colour of a method in every figure, as ``'#rrggbb'``.

    A corrected method (``'BC+'``) has its base's colour; names are matched regardless of
    case (``'bc'`` is BC). A name that is no method of :data:`METHOD_COLOURS` gets one of
    :data:`SERIES_COLOURS` chosen by a checksum of its base name: the same in every figure
    and every run.
    """
    known = _known(name)
    if known is not None:
        return to_hex(METHOD_COLOURS[known])
    key = base_method(name).lower().encode("utf-8")
    return to_hex(SERIES_COLOURS[zlib.crc32(key) % len(SERIES_COLOURS)])


def method_linestyle(name: str) -> str:
    """``'--'`` for a corrected method (``'BC+'``), ``'-'`` for any other name."""
    return "--" if is_corrected(name) else "-"


def method_fill(name: str) -> tuple[float, float, float]:
    """Face colour of a method's box or bar: its colour lightened, more so when corrected."""
    mix = 0.75 if is_corrected(name) else 0.5
    rgb = np.asarray(to_rgb(method_colour(name)))
    return tuple(float(c) for c in rgb + (1.0 - rgb) * mix)


def method_hatch(name: str) -> str | None:
    """Hatch of a method's box or bar: ``'///'`` when corrected, else none."""
    return "///" if is_corrected(name) else None


def series_colour(index: int) -> str:
    """The ``index``-th colour of :data:`SERIES_COLOURS` (cyclic), for non-method series."""
    return SERIES_COLOURS[index % len(SERIES_COLOURS)]


def book_rc() -> dict[str, Any]:
    """The book's rcParams: light grid, font sizes ≥ :data:`MIN_FONT_PT`, 2× pixels."""
    return {
        # whitegrid look (as seaborn's, which most pages used)
        "figure.facecolor": "white",
        "axes.facecolor": "white",
        "axes.edgecolor": "0.8",
        "axes.grid": True,
        "axes.axisbelow": True,
        "grid.color": "0.88",
        "grid.linestyle": "-",
        "axes.labelcolor": "0.15",
        "text.color": "0.15",
        "xtick.color": "0.15",
        "ytick.color": "0.15",
        "xtick.direction": "out",
        "ytick.direction": "out",
        "axes.prop_cycle": mpl.cycler(color=list(SERIES_COLOURS)),
        "lines.solid_capstyle": "round",
        "legend.frameon": True,
        "legend.framealpha": 0.85,
        "legend.edgecolor": "0.8",
        "legend.handlelength": 2.8,
        # type: nothing under MIN_FONT_PT
        "font.size": BASE_FONT_PT,
        "axes.labelsize": BASE_FONT_PT,
        "axes.titlesize": BASE_FONT_PT + 0.5,
        "figure.titlesize": BASE_FONT_PT + 1.0,
        "figure.labelsize": BASE_FONT_PT,
        "xtick.labelsize": MIN_FONT_PT,
        "ytick.labelsize": MIN_FONT_PT,
        "legend.fontsize": MIN_FONT_PT,
        "legend.title_fontsize": MIN_FONT_PT,
        "axes.formatter.useoffset": False,
        "axes.unicode_minus": True,
        # resolution: BOOK_DPI CSS px per inch, saved (and shown inline) at RETINA × that
        "figure.dpi": BOOK_DPI,
        "savefig.dpi": BOOK_DPI * RETINA,
        "savefig.bbox": "tight",
        "figure.figsize": (FULL_WIDTH, 3.4),
    }


@contextmanager
def book_style() -> Iterator[None]:
    """Within the block, matplotlib draws with :func:`book_rc` (restored afterwards)."""
    with mpl.rc_context(book_rc()):
        yield


def _inline_shell() -> Any | None:
    """The IPython shell whose figures the inline backend displays, or None."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    if shell is None or "inline" not in str(mpl.get_backend()).lower():
        return None
    return shell


def use_book_style() -> set[str]:
    """Sets the book's rcParams (:func:`book_rc`) and, in a notebook, retina inline PNGs.

    Call once, after ``import matplotlib.pyplot`` (which loads the inline backend; its
    defaults would otherwise be applied after these). In a notebook the inline backend then
    renders every figure at ``RETINA × figure.dpi`` and records the halved size, so the page
    shows it at ``figure.dpi`` CSS pixels per inch with twice the pixels.

    Returns:
        The inline backend's figure formats (``{'retina'}``), or an empty set outside a
        notebook (no inline backend).
    """
    import matplotlib.pyplot as plt  # noqa: F401 - loads (and configures) the backend first

    mpl.rcParams.update(book_rc())
    return retina_inline()


def retina_inline() -> set[str]:
    """In a notebook (an IPython shell with the inline backend), selects the ``"retina"``
    inline format: PNGs at ``RETINA × figure.dpi``, shown at ``figure.dpi`` CSS px per inch.

    :func:`finish_figure` calls it too, so that a page that draws only the library's figures
    gets them sharp without calling :func:`use_book_style`.

    Returns:
        The inline backend's figure formats, or an empty set outside a notebook.
    """
    shell = _inline_shell()
    if shell is None:
        return set()
    from IPython.core.pylabtools import select_figure_formats
    from matplotlib_inline.config import InlineBackend

    cfg = InlineBackend.instance(parent=shell)
    formats = {"retina"}
    with warnings.catch_warnings():  # matplotlib-inline's observer has a traitlets 4.0 name
        warnings.simplefilter("ignore", DeprecationWarning)
        cfg.figure_formats = formats  # kept if the backend is configured again
    select_figure_formats(shell, formats, **cfg.print_figure_kwargs)
    return set(cfg.figure_formats)


def number_text(value: float) -> str:
    """A tick value as short text: ``'92.5'``, ``'2000'``, ``'20k'``, ``'1e-5'``, ``'−20'``."""
    v = float(value)
    if v == 0 or not math.isfinite(v):
        return "0" if v == 0 else str(v)
    a = abs(v)
    if a >= 10_000:
        text = f"{v / 1000:.4g}k"
    elif a < 1e-3:
        mantissa, exponent = f"{v:.2e}".split("e")
        text = f"{float(mantissa):g}e{int(exponent)}"
    else:
        text = f"{v:.4g}"
    return text.replace("-", "\u2212")


_FORMATTER = FuncFormatter(lambda v, _: number_text(v))


def _axis(ax: Any, axis: str) -> Any:
    return ax.xaxis if axis == "x" else ax.yaxis


def tidy_axis(ax: Any, axis: str = "y", integer: bool = False, nbins: int = MAX_TICKS - 1) -> None:
    """A linear axis with at most ``nbins + 1`` round ticks and short labels (no offset)."""
    target = _axis(ax, axis)
    target.set_major_locator(MaxNLocator(nbins=nbins, integer=integer, steps=[1, 2, 2.5, 5, 10]))
    target.set_major_formatter(_FORMATTER)


def log_ticks(ax: Any, axis: str, low: float, high: float, max_ticks: int = MAX_TICKS) -> None:
    """Log-axis ticks at 1-2-5, 1-3 or 1 per decade (the densest with ≤ ``max_ticks`` labels
    between ``low`` and ``high``), labelled as plain numbers; minor ticks unlabelled."""
    low, high = sorted((float(low), float(high)))
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    chosen: list[float] = []
    for subs in ((1, 2, 5), (1, 3), (1,)):
        ticks = [
            m * 10.0**e for e in range(first, last + 1) for m in subs if low <= m * 10.0**e <= high
        ]
        chosen = ticks
        if len(ticks) <= max_ticks:
            break
    if len(chosen) > max_ticks:  # many decades: every k-th decade
        step = math.ceil(len(chosen) / max_ticks)
        chosen = chosen[::step]
    target = _axis(ax, axis)
    target.set_major_locator(FixedLocator(chosen or [low, high]))
    target.set_major_formatter(_FORMATTER)
    target.set_minor_formatter(NullFormatter())


def grid_ticks(ax: Any, axis: str, values: Iterable[float], log: bool = False) -> None:
    """Ticks at the values of a sweep's grid when there are at most :data:`MAX_TICKS`,
    else :func:`log_ticks` (``log``) or round linear ticks; labels as :func:`number_text`."""
    grid = sorted({float(v) for v in values if np.isfinite(v) and (v > 0 or not log)})
    if not grid:
        return
    if log:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    if len(grid) <= MAX_TICKS:
        target = _axis(ax, axis)
        target.set_major_locator(FixedLocator(grid))
        target.set_major_formatter(_FORMATTER)
        target.set_minor_formatter(NullFormatter())
    elif log:
        log_ticks(ax, axis, grid[0], grid[-1])
    else:
        tidy_axis(ax, axis)


def reward_band(
    values: Iterable[float], floor: float = REWARD_FLOOR, top: float = REWARD_TOP
) -> tuple[float, float]:
    """The stretch of normalised reward a figure shows on a linear axis.

    The band always holds 0 (the data's worst episode) and ``top`` (its best). Below, it
    reaches down to the lowest score not under ``floor`` (at least -5, for a margin); scores
    under ``floor`` are failures, drawn at the axis's lower edge and counted
    (:func:`pin_below`). When most scores are failures (an ablation where every setting
    fails), there is nothing to read in the 0–100 band alone, and the band reaches down to
    the lowest score instead.

    Args:
        values: the scores the figure draws (NaN and infinities ignored).
        floor: failure threshold.
        top: top of the band (raised to the highest score when above).

    Returns:
        ``(low, high)``, round numbers.
    """
    v = np.asarray([x for x in np.ravel(np.asarray(list(values), float)) if np.isfinite(x)])
    if v.size == 0:
        return (min(-5.0, floor), top)
    high = float(5.0 * math.ceil(max(top, float(v.max())) / 5.0))
    below = v < floor
    if below.mean() > 0.5:
        ticks = MaxNLocator(nbins=MAX_TICKS - 1, steps=[1, 2, 2.5, 5, 10]).tick_values(
            float(v.min()), high
        )
        return (float(min(ticks[0], -5.0)), high)
    if below.any():
        return (float(floor), high)
    low = float(5.0 * math.floor(float(v.min()) / 5.0))
    return (min(low, -5.0), high)


def _pad(band: tuple[float, float]) -> float:
    return 0.04 * (band[1] - band[0])


def set_reward_axis(
    ax: Any,
    band: tuple[float, float],
    axis: str = "y",
    label: str | None = "normalised reward",
    guides: bool = True,
) -> float:
    """A linear normalised-reward axis on ``band`` (a little margin each side), at most
    :data:`MAX_TICKS` round ticks, and faint guides at 0 and 100.

    Returns:
        The coordinate inside the lower margin where :func:`pin_below` puts the scores under
        the band.
    """
    low, high = band
    pad = _pad(band)
    if axis == "y":
        ax.set_yscale("linear")
        ax.set_ylim(low - pad, high + pad)
        if label is not None:
            ax.set_ylabel(label)
    else:
        ax.set_xscale("linear")
        ax.set_xlim(low - pad, high + pad)
        if label is not None:
            ax.set_xlabel(label)
    ticks = MaxNLocator(nbins=MAX_TICKS, steps=[1, 2, 2.5, 5, 10]).tick_values(low, high)
    eps = 1e-9 * (high - low)
    target = _axis(ax, axis)
    target.set_major_locator(FixedLocator([t for t in ticks if low - eps <= t <= high + eps]))
    target.set_major_formatter(_FORMATTER)
    if guides:
        line = ax.axhline if axis == "y" else ax.axvline
        for at in (0.0, REWARD_TOP):
            if low <= at <= high:
                line(at, color="0.55", lw=0.8, zorder=0.5)
    return low - 0.5 * pad


def failure_strip(ax: Any, band: tuple[float, float], axis: str = "y") -> None:
    """Shades the margin below the band, where :func:`pin_below` draws the failures."""
    span = ax.axhspan if axis == "y" else ax.axvspan
    span(band[0] - _pad(band), band[0], color="0.93", lw=0, zorder=0.2)


def pin_below(values: Sequence[float] | np.ndarray, low: float, edge: float) -> np.ndarray:
    """``values`` with every value under ``low`` moved to ``edge`` (the axis's lower margin,
    from :func:`set_reward_axis`), for drawing failures at the edge; NaN stays NaN."""
    out = np.asarray(values, float).copy()
    out[out < low] = edge
    return out


def _text_artists(fig: Any) -> list[Any]:
    from matplotlib.text import Text

    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text()]


def _raise_small_fonts(fig: Any) -> None:
    for text in _text_artists(fig):
        if text.get_fontsize() < MIN_FONT_PT:
            text.set_fontsize(MIN_FONT_PT)


def _overlapping(boxes: Sequence[Any]) -> bool:
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            if a.overlaps(b):
                return True
    return False


def tick_label_boxes(ax: Any, axis: str, renderer: Any) -> list[Any]:
    """Window extents of the visible, non-empty major tick labels of one axis (drawn)."""
    target = _axis(ax, axis)
    lo, hi = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
    boxes = []
    for tick in target.get_major_ticks():
        if not lo - 1e-9 * abs(hi - lo) <= tick.get_loc() <= hi + 1e-9 * abs(hi - lo):
            continue
        for label in (tick.label1, tick.label2):
            if label.get_visible() and label.get_text():
                boxes.append(label.get_window_extent(renderer))
    return boxes


def _thin_ticks(fig: Any) -> bool:
    """Keeps every other tick of an axis whose labels overlap; True when one was thinned."""
    renderer = fig.canvas.get_renderer()
    changed = False
    for ax in fig.axes:
        for axis in ("x", "y"):
            if not _overlapping(tick_label_boxes(ax, axis, renderer)):
                continue
            target = _axis(ax, axis)
            ticks = list(target.get_majorticklocs())
            target.set_major_locator(FixedLocator(ticks[::2]))
            changed = True
    return changed


def finish_figure(fig: Any, rc: Mapping[str, Any] | None = None) -> Any:
    """The last step of a figure function: lays the figure out with the book's rcParams,
    raises any text under :data:`MIN_FONT_PT` to it, and thins the ticks of an axis whose
    labels overlap (every other tick kept, until none overlap).

    In a notebook it also selects retina inline PNGs (:func:`retina_inline`).

    Returns:
        ``fig``.
    """
    retina_inline()
    with mpl.rc_context({**book_rc(), **(rc or {})}):
        for ax in fig.axes:
            ax.tick_params(labelsize=MIN_FONT_PT)
        _raise_small_fonts(fig)
        fig.draw_without_rendering()  # ticks made now take the book's rcParams
        for _ in range(4):
            _raise_small_fonts(fig)
            if not _thin_ticks(fig):
                break
            fig.draw_without_rendering()
    return fig
