"""Plotting helpers shared by the figures: style, panel layout, legends, PNG.

Figures are built on :class:`matplotlib.figure.Figure` directly (never through
``pyplot``), so nothing is registered in pyplot's global figure list and the
caller's matplotlib backend is left alone; they are rendered with the Agg
canvas (:func:`render`). seaborn supplies the style. matplotlib and seaborn are
imported inside the functions, so that ``import depthlab`` does not pay for
them.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from depthlab.report.data import ReportData, finite_or_nan, thin

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 110
"""Resolution of the PNG files; figures are at most ~10 inches wide."""
USABLE_LOG10 = 6.0
"""The usable range of the gradient norm: |log10 ||grad||| <= 6."""
MAX_FACETS = 12
"""At most this many panels per figure (more are thinned evenly)."""
MAX_HUES = {"grad": 8, "profile": 4, "layer_sv": 3, "spectrum": 3, "fluct": 8}
"""At most this many colours per panel in each figure (more are thinned evenly)."""
PANEL = (3.6, 2.8)
"""Size of one panel, inches."""
SINGLE_PANEL = (5.4, 3.6)
"""Size of a figure's only panel, inches."""
LEGEND_ENTRY_WIDTH = 2.5
"""Room for one entry of a legend below the panels, inches."""
MAX_WIDTH = 10.0
"""Widest figure, inches: about 1100 pixels, the width of the report's page."""
THEORY_COLOR = "#009E73"
"""Mean-field theory's critical sigma_w (green)."""
XI_COLOR = "#D55E00"
"""Mean-field theory's depth scale xi_c (orange)."""


@dataclass
class Drawn:
    """One figure of the report, or the reason it is left out.

    Attributes
    ----------
    name : str
        File stem of the PNG (``<name>.png``).
    title : str
        Heading in the report.
    figure : matplotlib.figure.Figure or None
        None when the data does not support the figure.
    caption : str
        What the figure shows (when drawn).
    reason : str
        Why it is left out (when not drawn).
    png : bytes or None
        The rendered PNG, filled in by :func:`render`.
    """

    name: str
    title: str
    figure: Figure | None = None
    caption: str = ""
    reason: str = ""
    png: bytes | None = None


@contextlib.contextmanager
def style() -> Iterator[None]:
    """seaborn's ``ticks`` style and a readable font size, for this block only."""
    import matplotlib as mpl
    import seaborn as sns

    rc = {
        **sns.axes_style("ticks"),
        **sns.plotting_context("notebook", font_scale=0.78),
        "axes.grid": True,
        "grid.color": "#e6e6e6",
        "grid.linewidth": 0.6,
        "axes.titlesize": 10,
        "legend.fontsize": 8.5,
        "legend.title_fontsize": 9,
        "legend.frameon": False,
        "savefig.dpi": DPI,
        "figure.dpi": DPI,
    }
    with mpl.rc_context(rc):
        yield


def panels(
    n: int,
    *,
    panel: tuple[float, float] = PANEL,
    legend_width: float = 1.4,
    extra_height: float = 0.0,
    max_cols: int = 3,
    ncols: int | None = None,
    sharey: bool | str = True,
    sharex: bool = False,
) -> tuple[Figure, list[Axes]]:
    """A figure with ``n`` panels, ``ncols`` (default: at most ``max_cols``) per
    row, with ``legend_width`` inches beside and ``extra_height`` below them for
    legends; the panels in reading order."""
    from matplotlib.figure import Figure

    if n == 1:
        panel = (max(panel[0], SINGLE_PANEL[0]), max(panel[1], SINGLE_PANEL[1]))
    ncols = ncols or min(n, max_cols)
    nrows = math.ceil(n / ncols)
    width = min(MAX_WIDTH, ncols * panel[0] + legend_width)
    height = nrows * panel[1] + 0.55 + extra_height
    fig = Figure(figsize=(width, height), layout="constrained")
    grid = fig.subplots(nrows, ncols, sharey=sharey, sharex=sharex, squeeze=False)
    axes = list(grid.ravel())
    for ax in axes[n:]:
        fig.delaxes(ax)
    if sharex:
        # Panels without a panel below them show their own x tick labels.
        for i, ax in enumerate(axes[:n]):
            if i + ncols >= n:
                ax.xaxis.set_tick_params(labelbottom=True)
    return fig, axes[:n]


def bin_edges(centers: np.ndarray, *, log: bool) -> np.ndarray:
    """Cell edges of a heatmap whose cells are centred on ``centers`` (midpoints,
    in log space for a log axis; a single cell is one unit wide).

    Examples
    --------
    >>> bin_edges(np.array([1.0, 2.0, 4.0]), log=False)
    array([0.5, 1.5, 3. , 5. ])
    """
    c = np.log(centers) if log else np.asarray(centers, dtype=float)
    if c.size == 1:
        e = np.array([c[0] - 0.5, c[0] + 0.5])
    else:
        mid = (c[1:] + c[:-1]) / 2
        e = np.concatenate([[2 * c[0] - mid[0]], mid, [2 * c[-1] - mid[-1]]])
    return np.exp(e) if log else e


def render(drawn: Drawn) -> Drawn:
    """Render a drawn figure to PNG bytes (Agg), then drop the figure.

    Every figure's renderer shares one mathtext parser (:func:`_mathtext`),
    whose cache then holds the log axes' tick labels (``10^{-2}``, ...) from
    one figure to the next: each Agg renderer has a parser of its own, and
    parsing one label costs ~10 ms (a fifth of a log-axis figure's time)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if drawn.figure is None:
        return drawn
    canvas = FigureCanvasAgg(drawn.figure)
    # The renderer that savefig draws with (same size and dpi: it is reused).
    canvas.get_renderer().mathtext_parser = _mathtext()
    buffer = io.BytesIO()
    drawn.figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    drawn.png = buffer.getvalue()
    drawn.figure.clear()
    drawn.figure = None
    return drawn


def warm_up() -> None:
    """Draw and render one small figure in the report's style, then throw it
    away, so that what a process pays for its first figure (the mathtext
    parser's grammar, built for the first log axis's tick labels; the fonts)
    is paid ahead of the report, while the sweep's jobs run. The report's
    figure processes are forked after it and inherit it
    (:mod:`depthlab.report.parallel`); else each paid it at its first figure.
    """
    from matplotlib.figure import Figure

    with style():
        fig = Figure(figsize=PANEL, layout="constrained")
        ax = fig.subplots()
        ax.plot([2, 3, 4], [1e-2, 1.0, 1e2], label="a")
        ax.set_yscale("log")
        ax.set_title("a")
        ax.set_xlabel("a")
        fig.legend(title="a", loc="outside right upper")
        render(Drawn("warm-up", "warm-up", figure=fig))


@functools.cache
def _mathtext() -> Any:
    """The mathtext parser that every figure's Agg renderer uses (the one each
    renderer makes for itself, ``MathTextParser("path")``; its results depend
    only on the text, the dpi and the font, its cache's key)."""
    from matplotlib.mathtext import MathTextParser

    return MathTextParser("path")


def hue_legend(fig: Figure, data: ReportData, hues: Sequence[str]) -> None:
    """The colour legend (one entry per hue label), right of the panels."""
    from matplotlib.lines import Line2D

    if not hues or not data.hue_keys:
        return  # one config: it is named in the panel title instead
    handles = [Line2D([], [], color=data.color(h), lw=2.4) for h in hues]
    labels = [data.hue_names.get(h, h) for h in hues]
    title = ", ".join(data.hue_keys)
    fig.legend(handles, labels, title=title, loc="outside right upper")


def style_legend(fig: Figure, entries: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """The line-style legend (what solid, dashed, ... mean), below the panels."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], **{"color": "0.25", **kw}) for _, kw in entries]
    fig.legend(
        handles,
        [text for text, _ in entries],
        loc="outside lower center",
        ncol=legend_columns(fig, len(entries)),
    )


def lines_of(
    frame: pd.DataFrame, column: str, levels: Sequence[Any], by: str
) -> Iterator[tuple[Any, pd.DataFrame]]:
    """``(level, its rows sorted by `by`)`` for every level of ``column`` (a hue,
    a config) that has rows in ``frame``, in the order of ``levels``: one line
    of a panel each."""
    for level in levels:
        rows = frame[frame[column] == level].sort_values(by)
        if not rows.empty:
            yield level, rows


def label_and_legends(
    fig: Figure,
    axes: Sequence[Axes],
    data: ReportData,
    hues: Sequence[str],
    labels: tuple[str, str],
    styles: Sequence[tuple[str, dict[str, Any]]] = (),
) -> None:
    """Axis labels (``(xlabel, ylabel)``, :func:`label_outer`), the colour
    legend (:func:`hue_legend`) and, if any, the line-style legend."""
    label_outer(axes, *labels)
    hue_legend(fig, data, hues)
    if styles:
        style_legend(fig, styles)


def legend_columns(fig: Figure, n: int) -> int:
    """As many legend columns as fit across the figure."""
    fit = int(fig.get_figwidth() // LEGEND_ENTRY_WIDTH)
    return max(1, min(n, fit))


def panel_title(ax: Axes, facet: str, data: ReportData) -> None:
    """The panel's facet label; with a single config, that config's label."""
    if facet:
        ax.set_title(facet)
    elif not data.hue_keys and data.hue_order:
        ax.set_title(data.hue_order[0])


def over(color: tuple[float, ...]) -> dict[str, Any]:
    """Line properties for a line drawn over a line of the same colour (theory
    over measurement): the same colour with a thin white outline, on top."""
    from matplotlib import patheffects

    halo = [patheffects.Stroke(linewidth=2.6, foreground="white"), patheffects.Normal()]
    return {"color": color, "path_effects": halo, "zorder": 3}


def facets_to_draw(
    data: ReportData, present: Sequence[str] | None = None
) -> tuple[list[str], str]:
    """The facet labels to draw (those with data), thinned, with a note."""
    levels = [f for f in data.facet_order if present is None or f in set(present)]
    facets = thin(levels, MAX_FACETS)
    note = ""
    if len(facets) < len(levels):
        note = f" Showing {len(facets)} of {len(levels)} panels."
    return facets, note


def hues_to_draw(
    data: ReportData, kind: str, present: Sequence[str]
) -> tuple[list[str], str]:
    """The hue labels to draw (in order), thinned, with a note if thinned."""
    levels = [h for h in data.hue_order if h in set(present)]
    shown = thin(levels, MAX_HUES[kind])
    note = ""
    if len(shown) < len(levels):
        keys = ", ".join(data.hue_keys)
        note = (
            f" Showing {len(shown)} of {len(levels)} values of {keys}, evenly spread."
        )
    return shown, note


def label_outer(axes: Sequence[Axes], xlabel: str, ylabel: str) -> None:
    """Axis labels on the left column and the bottom panel of each column."""
    if not axes:
        return
    ncols = axes[0].get_subplotspec().get_gridspec().ncols
    n = len(axes)
    for i, ax in enumerate(axes):
        ax.set_ylabel(ylabel if i % ncols == 0 else "")
        ax.set_xlabel(xlabel if i + ncols >= n else "")


def integer_x(ax: Axes) -> None:
    """Integer x ticks (depths, layers)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))


def band_edges(
    lo: np.ndarray, hi: np.ndarray, floor: float
) -> tuple[np.ndarray, np.ndarray]:
    """Quartiles for fill_between: -inf (a zero norm) is drawn down to ``floor``."""
    lo = np.where(np.isneginf(lo), floor, lo)
    hi = np.where(np.isneginf(hi), floor, hi)
    return finite_or_nan(lo), finite_or_nan(hi)


def quartile_band(
    ax: Axes, x: Any, q25: Any, q75: Any, floor: float, color: Any, alpha: float
) -> None:
    """Shade between the quartiles (:func:`band_edges`: -inf drawn to ``floor``)."""
    lo, hi = band_edges(
        np.asarray(q25, dtype=float), np.asarray(q75, dtype=float), floor
    )
    ax.fill_between(x, lo, hi, color=color, alpha=alpha, lw=0)


def finite_range(*arrays: Any) -> tuple[float, float] | None:
    """(min, max) of the finite values of all arrays, or None if there are none."""
    parts = [np.ravel(np.asarray(a, dtype=float)) for a in arrays]
    values = np.concatenate(parts) if parts else np.array([])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    return float(values.min()), float(values.max())


def pad(lo: float, hi: float, frac: float = 0.06) -> tuple[float, float]:
    """Axis limits with a margin of ``frac`` of the range on each side."""
    span = hi - lo if hi > lo else max(1.0, abs(hi))
    return lo - frac * span, hi + frac * span


def left_out(reason: str, name: str, title: str) -> Drawn:
    """A figure the data does not support, with the reason."""
    return Drawn(name=name, title=title, reason=reason)


def need_probe(data: ReportData, name: str, title: str) -> Drawn | None:
    """Left out if the sweep has no finished probe run, else None."""
    if not data.has_probe_data:
        return left_out("no finished probe runs in this sweep", name, title)
    return None


def zero_note(count: int, what: str) -> str:
    """Caption text for gradient norms that are exactly 0 (log10 = -inf)."""
    if not count:
        return ""
    return (
        f" {count} {what} exactly 0 (log10 = -inf: e.g. a ReLU output unit that is "
        "off, which zeroes the whole gradient); such medians are not drawn, and "
        "bands that contain zeros run to the bottom edge."
    )
