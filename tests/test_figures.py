"""Every figure of the book drawn for reading (polycstr_lib.analysis.style and its users).

Each figure function, on tiny inputs: no text under MIN_FONT_PT, normalised-reward axes
linear, tick labels that neither overlap nor run to many decimals, at most ~6 ticks per
numeric axis, at most 8 inches wide. A method has one colour in every figure; the inline
backend gets PNGs at twice the shown resolution.
"""

from __future__ import annotations

import base64
import re
import struct
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from test_page_library import _summary  # noqa: E402
from test_report import _metrics, _traj  # noqa: E402

from polycstr_lib.analysis import ablation_figures, support_figures  # noqa: E402
from polycstr_lib.analysis.curves import (  # noqa: E402
    BudgetRule,
    aggregate_curve,
    plot_learning_curves,
)
from polycstr_lib.analysis.report import (  # noqa: E402
    episode_scores,
    profile_figure,
    profile_thresholds,
    reward_figure,
    trajectory_figure,
)
from polycstr_lib.analysis.style import (  # noqa: E402
    MAX_TICKS,
    METHOD_COLOURS,
    MIN_FONT_PT,
    RETINA,
    REWARD_FLOOR,
    SERIES_COLOURS,
    book_rc,
    method_colour,
    method_fill,
    method_hatch,
    method_linestyle,
    number_text,
    reward_band,
    use_book_style,
)
from polycstr_lib.toolkit.stats import performance_profiles  # noqa: E402

MAX_WIDTH_IN = 8.0
#: A tick label with more than three decimals ("92.5137") is not rounded.
UNROUNDED = re.compile(r"\d\.\d{4,}")


# ---------------------------------------------------------------- tiny inputs


def per_seed() -> dict:
    """Results of five methods, two of them failing far below the band."""
    return {
        "Data": {0: _metrics([0.0, 50.0, 100.0, 80.0])},
        "PI": {0: _metrics([95.0, 96.0, 97.0, 98.0])},
        "BC": {0: _metrics([-25_000.0, 90.0, 91.0, 92.5137]), 1: _metrics([88, 89, 90, 91])},
        "BC+": {0: _metrics([85.0, 90.0, 91.0, 93.0]), 1: _metrics([88, 89, 90, 91])},
        "IQL": {0: _metrics([99.0, 20.0, 95.0, -3000.0]), 1: _metrics([99, 98, 97, 91])},
    }


def profiles():
    scores = episode_scores({k: v for k, v in per_seed().items() if k != "Data"})
    return performance_profiles(scores, profile_thresholds(scores), reps=20)


def trajectories() -> dict:
    return {"BC": _traj(101, 351), "BC+": _traj(99, 350), "PI": _traj(900, 700)}


def curve() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Learning curves of BC and IQL on two scenarios, checkpoints 300 to 4000 steps."""
    rows = []
    for scenario in ("startup", "grade_up"):
        for algorithm in ("bc", "iql"):
            for seed in (0, 1):
                for steps in (300, 400, 600, 1000, 2000, 3000, 4000):
                    mean = 90.0 + seed - 300 / steps
                    if (algorithm, seed, steps) == ("iql", 1, 1000):
                        mean = -900.0  # a failed seed
                    rows.append((algorithm, scenario, seed, steps, mean, 0))
    table = pd.DataFrame(
        rows, columns=["algorithm", "scenario", "seed", "steps", "mean", "runaways"]
    )
    aggregate = aggregate_curve(table, reps=50)
    return table, aggregate, BudgetRule().choose(aggregate)


def sweep() -> pd.DataFrame:
    """A correction sweep (sweep_corrections' columns) of two algorithms, raw and normalised."""
    grids = {"plain": [1e-5, 1e-4, 1e-3, 1e-2, 1e-1], "normalised": [0.03, 0.1, 0.3, 1.0, 3.0]}
    rows = []
    for algorithm in ("bc", "iql"):
        for seed in (0, 1):
            rows.append((algorithm, seed, "none", 0.0, 93.0 + seed, 60.0))
            for variant, grid in grids.items():
                for i, step in enumerate(grid):
                    mean = 95.0 - 10.0 * i**2 + seed  # one step size fails
                    rows.append((algorithm, seed, variant, step, mean, mean - 40.0))
    table = pd.DataFrame(rows, columns=["algorithm", "seed", "variant", "step_size", "mean", "min"])
    return table.assign(runaways=0, not_worse=1)


def tasks() -> dict:
    rng = np.random.default_rng(0)
    actions = np.clip(rng.normal(0.0, 0.2, (500, 2)), -1, 1)
    data = SimpleNamespace(actions=SimpleNamespace(numpy=lambda: actions))
    task = SimpleNamespace(data=data, action_scale=np.array([0.2, 0.1]))
    return {"startup": task, "grade_up": task, "grade_down": task}


def paths() -> tuple[pd.DataFrame, pd.DataFrame]:
    path = pd.DataFrame({"path": [0, 0, 1, 1], "k": [0, 1, 0, 1], "distance": [0, 1, 0, 3.0],
                         "predicted": [1, 2, 1, 5.0], "simulator": [1, 1, 1, 1.0]})  # fmt: skip
    by_k = pd.DataFrame({"distance": [0.0, 2.0], "abs_error": [0.0, 2.5]})
    return path, by_k


def tau_table() -> pd.DataFrame:
    return pd.DataFrame({"tau": [0.7, 0.7, 0.9, 0.9], "method": ["IQL", "IQL+", "IQL", "IQL+"],
                         "iqm": [90.1, 90.3, 89.5, 92.5137],
                         "worst": [65.0, 48.4243, -900.0, 80.0]})  # fmt: skip


def failing_summary() -> pd.DataFrame:
    """The ablations' summary where every setting fails by hundreds to thousands."""
    summary = _summary()
    return summary.assign(iqm=-100.0 * (1 + np.arange(len(summary))), worst=-7000.0)


#: name → (figure function on tiny inputs, [(axes index, axis) of normalised reward])
FIGURES = {
    "reward_figure": (lambda: reward_figure(per_seed())[0], [(0, "x")]),
    "profile_figure": (lambda: profile_figure(profiles())[0], [(0, "x")]),
    "trajectory_figure": (lambda: trajectory_figure(trajectories(), 1800.0)[0], []),
    "plot_learning_curves": (lambda: plot_learning_curves(*curve()), [(0, "y"), (1, "y")]),
    "step_size_figure": (
        lambda: ablation_figures.step_size_figure(_summary(), "BC"),
        [(0, "y"), (1, "y")],
    ),
    "step_size_figure (all failing)": (
        lambda: ablation_figures.step_size_figure(failing_summary(), "BC"),
        [(0, "y"), (1, "y")],
    ),
    "steps_and_radius_figure": (
        lambda: ablation_figures.steps_and_radius_figure(_summary(), "BC"),
        [(0, "y"), (1, "y")],
    ),
    "pareto_figure": (lambda: ablation_figures.pareto_figure(_summary())[0], [(0, "y")]),
    "expectile_figure": (lambda: ablation_figures.expectile_figure(tau_table()), [(0, "y")]),
    "action_cover_figure": (lambda: support_figures.action_cover_figure(tasks()), []),
    "path_figure": (lambda: support_figures.path_figure(*paths(), "startup"), []),
    "step_sweep_figure": (
        lambda: support_figures.step_sweep_figure(
            {"startup": sweep()}, ["plain", "normalised"], ["bc", "iql"]
        ),
        [(0, "y"), (1, "y")],
    ),  # fmt: skip
    "step_sweep_figure (two scenarios)": (
        lambda: support_figures.step_sweep_figure(
            {"startup": sweep(), "grade_up": sweep()}, ["plain", "normalised"], ["bc", "iql"]
        ),
        [(0, "y"), (3, "y")],
    ),
}


@pytest.fixture(scope="module", params=list(FIGURES))
def drawn(request):
    make, reward_axes = FIGURES[request.param]
    fig = make()
    fig.canvas.draw()
    yield request.param, fig, reward_axes
    plt.close(fig)


# ---------------------------------------------------------------- reading a drawn figure


def visible_texts(fig) -> list[Text]:
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def tick_labels(ax, axis: str) -> list[Text]:
    """The visible, non-empty tick labels (major and minor) of one axis, within its limits."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    low, high = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
    slack = 1e-9 * (high - low)
    return [
        label
        for tick in [*target.get_major_ticks(), *target.get_minor_ticks()]
        if low - slack <= tick.get_loc() <= high + slack
        for label in (tick.label1, tick.label2)
        if label.get_visible() and label.get_text().strip()
    ]


def overlapping(labels: list[Text], renderer) -> list[tuple[str, str]]:
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in labels]
    return [
        (a, b)
        for i, (a, box_a) in enumerate(boxes)
        for b, box_b in boxes[i + 1 :]
        if box_a.overlaps(box_b)
    ]


def numeric(label: str) -> bool:
    return bool(re.fullmatch(r"[−\-]?[\d.]+(e[−\-]?\d+|k)?", label.strip()))


# ---------------------------------------------------------------- every figure


def test_no_text_under_the_minimum_size(drawn) -> None:
    name, fig, _ = drawn
    small = [(t.get_text(), t.get_fontsize()) for t in visible_texts(fig)]
    small = [(text, size) for text, size in small if size < MIN_FONT_PT]
    assert not small, f"{name}: text under {MIN_FONT_PT} pt: {small[:10]}"


def test_reward_axes_are_linear(drawn) -> None:
    name, fig, reward_axes = drawn
    for index, axis in reward_axes:
        ax = fig.axes[index]
        scale = ax.get_xscale() if axis == "x" else ax.get_yscale()
        assert scale == "linear", f"{name}: axes {index} {axis} is {scale}"
        low, high = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
        assert high >= 100  # the band's top is always shown
    if not name.endswith("(all failing)"):
        for index, axis in reward_axes:
            ax = fig.axes[index]
            low = min(ax.get_xlim() if axis == "x" else ax.get_ylim())
            assert low > 1.5 * REWARD_FLOOR, f"{name}: axis reaches {low}: failures squeeze it"


def test_tick_labels_do_not_overlap(drawn) -> None:
    name, fig, _ = drawn
    renderer = fig.canvas.get_renderer()
    for i, ax in enumerate(fig.axes):
        for axis in ("x", "y"):
            clash = overlapping(tick_labels(ax, axis), renderer)
            assert not clash, f"{name}: axes {i} {axis} tick labels overlap: {clash}"


def test_ticks_are_few_and_rounded(drawn) -> None:
    name, fig, _ = drawn
    for i, ax in enumerate(fig.axes):
        for axis in ("x", "y"):
            labels = [t.get_text() for t in tick_labels(ax, axis)]
            assert not [s for s in labels if UNROUNDED.search(s)], f"{name}: {labels}"
            assert not [s for s in labels if "×10" in s or "10^" in s], f"{name}: {labels}"
            if labels and all(numeric(s) for s in labels):
                assert len(labels) <= MAX_TICKS + 1, f"{name}: axes {i} {axis}: {labels}"


def test_figures_fit_the_text_column(drawn) -> None:
    name, fig, _ = drawn
    width, _ = fig.get_size_inches()
    assert width <= MAX_WIDTH_IN, f"{name} is {width} in wide"


# ---------------------------------------------------------------- one colour per method


def _line_colour(lines, label: str) -> tuple[str, str]:
    (line,) = [ln for ln in lines if ln.get_label() == label]
    return to_hex(line.get_color()), line.get_linestyle()


def test_a_method_has_one_colour_in_every_figure() -> None:
    reward, _ = reward_figure(per_seed())
    boxes = {p.get_label(): p for p in reward.axes[0].patches if p.get_label() in per_seed()}
    traj, _ = trajectory_figure(trajectories(), 1800.0)
    traj_lines = traj.axes[0].get_lines()
    prof, _ = profile_figure(profiles())
    prof_lines = prof.axes[0].get_lines()
    curves = plot_learning_curves(*curve())
    for method in ("BC", "BC+", "PI"):
        colour = method_colour(method)
        assert to_hex(boxes[method].get_edgecolor()) == colour
        assert _line_colour(traj_lines, method)[0] == colour
    assert _line_colour(prof_lines, "BC (12 % < −20)")[0] == method_colour("BC")
    assert _line_colour(prof_lines, "PI") == (method_colour("PI"), "-")
    assert _line_colour(prof_lines, "BC+") == (method_colour("BC"), "--")
    assert _line_colour(traj_lines, "BC+") == (method_colour("BC"), "--")
    curve_colours = {ln.get_label(): to_hex(ln.get_color()) for ln in curves.axes[0].get_lines()}
    assert curve_colours["BC"] == method_colour("BC")
    assert curve_colours["IQL"] == method_colour("IQL")
    assert boxes["BC+"].get_hatch() and not boxes["BC"].get_hatch()
    plt.close("all")


def test_method_colours_handle_corrected_and_unknown_names() -> None:
    assert len(set(METHOD_COLOURS.values())) == len(METHOD_COLOURS)
    assert method_colour("BC+") == method_colour("BC") == method_colour("bc")
    assert method_colour("NMPC (oracle)") == method_colour("nmpc")
    assert method_colour("hold") == method_colour("Hold inputs")
    assert method_linestyle("IQL+") == "--" and method_linestyle("IQL") == "-"
    assert method_linestyle("some new method") == "-"
    unknown = method_colour("TD3+BC")
    assert unknown == method_colour("TD3+BC") == method_colour("td3+bc+")
    assert unknown in {to_hex(c) for c in SERIES_COLOURS}
    assert method_fill("BC+") != method_fill("BC")  # lighter
    assert method_hatch("BC+") and method_hatch("BC") is None


# ---------------------------------------------------------------- the band and the labels


def test_reward_band_keeps_0_to_100_and_leaves_failures_out() -> None:
    assert reward_band([80.0, 95.0]) == (-5.0, 100.0)
    assert reward_band([-12.0, 95.0]) == (-15.0, 100.0)
    assert reward_band([-25_000.0, 40.0, 95.0]) == (REWARD_FLOOR, 100.0)
    assert reward_band([50.0, 104.2]) == (-5.0, 105.0)
    low, high = reward_band([-7000.0, -300.0, -200.0])  # most fail: the band reaches them
    assert low <= -7000 and high == 100.0
    assert reward_band([np.nan]) == (-20.0, 100.0)


def test_number_text_is_short() -> None:
    assert [number_text(v) for v in (0.30000000000000004, 92.5137, 2000, 20_000)] == [
        "0.3",
        "92.51",
        "2000",
        "20k",
    ]
    assert number_text(1e-5) == "1e−5" and number_text(-20) == "−20"


# ---------------------------------------------------------------- resolution


def test_book_rc_sizes_and_resolution() -> None:
    rc = book_rc()
    with matplotlib.rc_context(rc):
        from matplotlib.font_manager import FontProperties

        sizes = {
            key: FontProperties(size=rc[key]).get_size_in_points()
            for key in rc
            if key.endswith(("size", "fontsize")) and key != "figure.figsize"
        }
    assert min(sizes.values()) >= MIN_FONT_PT, sizes
    assert rc["savefig.dpi"] >= RETINA * rc["figure.dpi"] >= 2 * rc["figure.dpi"]


def png_size_and_dpi(png: bytes) -> tuple[int, int, float]:
    """Pixel width and height, and the pHYs resolution in dots per inch, of a PNG."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    at = png.find(b"pHYs")
    per_metre, _, unit = struct.unpack(">IIB", png[at + 4 : at + 13])
    assert at > 0 and unit == 1
    return width, height, round(per_metre * 0.0254, 1)  # pHYs stores whole px per metre


@pytest.fixture
def inline_shell():
    """An IPython shell with the inline backend, as a notebook's kernel has."""
    interactiveshell = pytest.importorskip("IPython.core.interactiveshell")
    pytest.importorskip("matplotlib_inline")
    from matplotlib_inline.backend_inline import configure_inline_support
    from matplotlib_inline.config import InlineBackend

    shell = interactiveshell.InteractiveShell.instance()
    try:
        with matplotlib.rc_context():
            plt.switch_backend("module://matplotlib_inline.backend_inline")
            configure_inline_support(shell, "inline")  # what the kernel does on import
            yield shell
    finally:
        plt.close("all")
        plt.switch_backend("Agg")
        InlineBackend.clear_instance()
        interactiveshell.InteractiveShell.clear_instance()


def inline_png(shell, fig) -> tuple[int, int, float, dict]:
    """The PNG the notebook would show for ``fig``: pixel size, dpi, shown size."""
    data, metadata = shell.display_formatter.format(fig)
    width, height, dpi = png_size_and_dpi(base64.b64decode(data["image/png"]))
    return width, height, dpi, metadata.get("image/png", {})


def test_use_book_style_makes_inline_pngs_at_twice_the_shown_size(inline_shell) -> None:
    """A pyplot figure's PNG has twice the pixels of the size the page shows it at (the
    output's width metadata), and one inch is shown as figure.dpi CSS pixels."""
    assert use_book_style() == {"retina"}
    fig, ax = plt.subplots(figsize=(6.0, 3.0))
    ax.plot([0, 1], [0, 1])
    width, height, dpi, shown = inline_png(inline_shell, fig)
    assert dpi >= 2 * book_rc()["figure.dpi"]
    assert width >= 2 * shown["width"] and height >= 2 * shown["height"]
    assert shown["width"] <= 6.0 * book_rc()["figure.dpi"]


def test_library_figures_are_sharp_without_use_book_style(inline_shell) -> None:
    """A page that draws only the library's figures (05, 06, 08) gets retina PNGs too."""
    fig, _ = reward_figure(per_seed())
    width, _, dpi, shown = inline_png(inline_shell, fig)
    assert dpi >= 2 * book_rc()["figure.dpi"] and width >= 2 * shown["width"]


def test_use_book_style_outside_a_notebook_sets_the_rc_only() -> None:
    with matplotlib.rc_context():
        assert use_book_style() == set()
        assert matplotlib.rcParams["savefig.dpi"] == book_rc()["savefig.dpi"]
        assert matplotlib.rcParams["xtick.labelsize"] >= MIN_FONT_PT
