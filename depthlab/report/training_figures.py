"""The figures of training sweeps (``task=train``): is there an optimal depth?

One function per figure; each takes a
:class:`~depthlab.report.training_data.TrainingData` and returns a
:class:`TrainingFigure` (a matplotlib Figure and its caption, or no figure and
the reason). They share the probe figures' style, panels, palette, number
format, thinning and bin edges (:mod:`depthlab.report.plotting`,
:mod:`depthlab.report.data`) and the theory lines of
:mod:`depthlab.report.theory_lines`; the statistics over seeds are those of
:mod:`depthlab.report.stats`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from depthlab.report.data import format_value, palette, sequential_colors, thin
from depthlab.report.plotting import lines_of, panels
from depthlab.report.plotting import style as plot_style
from depthlab.report.stats import METRICS, best_depth_by_step, depth_statistics
from depthlab.report.training_data import (
    CONFIG_KEYS,
    NUMERIC_KEYS,
    SHORT_NAMES,
    TrainingData,
    config_label,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


FIGURE_TITLES = {
    "training_depth": "Test accuracy and loss against depth",
    "training_curves": "Learning curves per depth",
    "training_heatmap": "Trainability over (sigma_w, depth)",
    "training_gradient_health": "Gradient at initialization against trainability",
    "training_best_depth_vs_step": "Best depth against training budget",
}
"""Headings of the figures of :func:`training_figures`, by name."""

MAX_CONFIGS = 10
"""Configs drawn per panel; more are thinned evenly (said in the caption)."""
MAX_STEPS = 12
"""Evaluation steps shown in the best-depth-against-budget figure."""


class TrainingFigure(NamedTuple):
    """One figure, or the reason it is left out; unpacks as a 3-tuple.

    Attributes
    ----------
    name : str
        File stem of the PNG; a key of :data:`FIGURE_TITLES`.
    figure : matplotlib.figure.Figure or None
        None when the sweep's data does not support the figure.
    text : str
        The caption (when drawn) or the reason it is left out (when not).
    """

    name: str
    figure: Figure | None
    text: str


def panel_grid(n: int, *, ncols: int, **layout: Any) -> tuple[Figure, list[list[Axes]]]:
    """:func:`depthlab.report.plotting.panels` (``sharey`` off by default), as
    rows of panels."""
    fig, axes = panels(
        n, ncols=ncols, **{"sharey": False, "legend_width": 0.0, **layout}
    )
    return fig, [axes[i : i + ncols] for i in range(0, len(axes), ncols)]


LINESTYLES = ("-", "--", ":")
MARKERS = ("o", "s", "^")


def drawn_configs(
    data: TrainingData,
) -> tuple[list[str], dict[str, dict], list[str]]:
    """What a training figure draws: its configs (thinned to
    :data:`MAX_CONFIGS`), their line styles, and its datasets (at most four, a
    panel each)."""
    configs = thin(data.configs, MAX_CONFIGS)
    return configs, line_styles(data, configs), list(data.datasets[:4])


def dataset_panels(
    datasets: Sequence[str],
    *,
    panel: tuple[float, float],
    legend_lines: float,
    **options: Any,
) -> tuple[Figure, list[Axes]]:
    """One panel per dataset in a row, with ``legend_lines`` inches below them
    for the legend (:func:`depthlab.report.plotting.panels`)."""
    return panels(
        len(datasets),
        ncols=len(datasets),
        panel=panel,
        legend_width=0.0,
        extra_height=legend_lines,
        **options,
    )


def line_styles(data: TrainingData, configs: Sequence[str]) -> dict[str, dict]:
    """Colour, line style and marker of every config, colour-blind safe.

    With two or more varying keys, the first key with at most three values
    among ``configs`` (e.g. ``width``) gets line styles and markers, and the
    other keys get colours; otherwise every config gets its own colour.
    Colours come from :func:`depthlab.report.data.palette`, as in the probe
    figures: sequential when they stand for the values of one numeric key (e.g.
    ``sigma_w``) with three or more values, categorical otherwise.
    """

    frame = data.runs.drop_duplicates("config").set_index("config")
    frame = frame.loc[[c for c in configs if c in frame.index]]
    split = None
    if len(data.config_keys) >= 2:
        for key in data.config_keys:
            if frame[key].map(format_value).nunique() <= len(LINESTYLES):
                split = key
                break
    if split is None:
        numeric = len(data.config_keys) == 1 and data.config_keys[0] in NUMERIC_KEYS
        colors = palette(len(configs), ordered=numeric)
        return {
            c: {"color": colors[i % len(colors)], "ls": "-", "marker": "o"}
            for i, c in enumerate(configs)
        }
    rest = [k for k in data.config_keys if k != split]
    split_of = {c: format_value(frame.at[c, split]) for c in frame.index}
    rest_of = {
        c: tuple(format_value(frame.at[c, k]) for k in rest) for c in frame.index
    }
    split_levels = list(dict.fromkeys(split_of[c] for c in frame.index))
    rest_levels = list(dict.fromkeys(rest_of[c] for c in frame.index))
    numeric = len(rest) == 1 and rest[0] in NUMERIC_KEYS
    colors = palette(len(rest_levels), ordered=numeric)
    return {
        c: {
            "color": colors[rest_levels.index(rest_of[c]) % len(colors)],
            "ls": LINESTYLES[split_levels.index(split_of[c])],
            "marker": MARKERS[split_levels.index(split_of[c])],
        }
        for c in frame.index
    }


def legend_below(
    fig: Figure, handles: Sequence[Any], labels: Sequence[str], title: str = ""
) -> None:
    """A legend below the panels, with as many columns as fit the figure."""
    if not handles:
        return
    longest = max(len(text) for text in labels)
    entry = 0.75 + 0.062 * longest  # inches at legend.fontsize 8
    fit = max(1, int(fig.get_figwidth() // entry))
    ncol = min(len(handles), fit)
    if ncol < len(handles) and ncol > 1:
        # Balanced rows: 4 entries in 2 columns, not 3 + 1.
        ncol = math.ceil(len(handles) / math.ceil(len(handles) / ncol))
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, title=title)


def _depth_axis(ax: Axes, depths: Sequence[int]) -> None:
    """Log-2 depth axis with the swept depths as ticks (thinned to ~8)."""
    from matplotlib.ticker import MaxNLocator

    depths = sorted({int(d) for d in depths})
    if depths and depths[-1] / depths[0] >= 6:
        ax.set_xscale("log", base=2)
        depth_ticks(ax.xaxis, depths)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))


def depth_ticks(axis: Any, depths: Sequence[int]) -> None:
    """Ticks at the swept depths (thinned to 10) on a log axis, no minor ticks."""
    from matplotlib.ticker import (
        FixedFormatter,
        FixedLocator,
        NullFormatter,
        NullLocator,
    )

    ticks = thin(sorted({int(d) for d in depths}), 10)
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FixedFormatter([str(t) for t in ticks]))
    axis.set_minor_locator(NullLocator())
    axis.set_minor_formatter(NullFormatter())


def _log_spaced(steps: pd.Series, k: int) -> list[int]:
    """About ``k`` of the positive ``steps``, log-spaced, the last one kept."""
    available = np.sort(np.unique(steps.to_numpy(dtype=float)))
    available = available[available > 0]
    if available.size <= k:
        return [int(x) for x in available]
    targets = np.geomspace(available[0], available[-1], k)
    idx = {int(np.argmin(np.abs(np.log(available / t)))) for t in targets}
    return sorted({int(available[i]) for i in idx} | {int(available[-1])})


def _log_axis(axis: Any) -> None:
    """A base-10 log scale with plain tick labels (0.2, 1, 50, 1000)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if axis.axis_name == "x":
        axis.axes.set_xscale("log")
    else:
        axis.axes.set_yscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    axis.set_major_formatter(plain)
    lo, hi = sorted(axis.get_view_interval())
    if lo > 0 and hi / lo < 20:
        # Less than about a decade: label the 2s and 5s too.
        axis.set_minor_locator(LogLocator(base=10, subs=(2.0, 3.0, 5.0)))
        axis.set_minor_formatter(plain)
    else:
        axis.set_minor_formatter(NullFormatter())


def _depth_scale(depths: Sequence[int]) -> tuple[Any, Any]:
    """A discrete sequential colour scale for depth (one colour per swept depth,
    evenly spaced whatever the depths' values)."""
    from matplotlib.colors import BoundaryNorm, ListedColormap

    n = max(len(depths), 1)
    cmap = ListedColormap(sequential_colors(n))
    return cmap, BoundaryNorm(np.arange(n + 1) - 0.5, n)


def _depth_colorbar(
    fig: Figure, axes: Sequence[Axes], cmap: Any, norm: Any, depths: Sequence[int]
) -> None:
    import matplotlib as mpl

    mappable = mpl.cm.ScalarMappable(norm=norm, cmap=cmap)
    bar = fig.colorbar(mappable, ax=list(axes), shrink=0.8, aspect=30, pad=0.02)
    ticks = list(range(len(depths)))
    bar.set_ticks(ticks, labels=[str(d) for d in depths])
    bar.set_label("depth L")
    bar.ax.minorticks_off()


def fixed_note(data: TrainingData, skip: Sequence[str] = ()) -> str:
    """``Fixed: tanh, gaussian, sigma_b=0.05, ...`` for a caption."""
    quiet = ("output_activation", "dtype", *skip)  # defaults, or implied by cost
    keys = [k for k in CONFIG_KEYS if k in data.fixed and k not in quiet]
    if not keys:
        return ""
    return " Fixed: " + config_label(keys, [data.fixed[k] for k in keys]) + "."


def _loss_label(data: TrainingData) -> str:
    costs = set(data.runs["cost"].dropna())
    if costs == {"cross_entropy"}:
        return "test loss (cross-entropy, nats)"
    if costs == {"quadratic"}:
        return "test loss (quadratic cost)"
    return "test loss (cost)"


def has_accuracy(data: TrainingData) -> bool:
    return bool(np.isfinite(data.final["test_accuracy"].to_numpy(dtype=float)).any())


def left_out_figure(name: str, reason: str) -> TrainingFigure:
    return TrainingFigure(name, None, reason)


def need_data(data: TrainingData, name: str) -> TrainingFigure | None:
    if data.runs.empty or data.final.empty:
        return left_out_figure(
            name, "no finished training runs (task=train) in this sweep"
        )
    return None


# ---------------------------------------------------------------------------
# (a) Test accuracy and loss against depth


def depth_figure(data: TrainingData) -> TrainingFigure:
    """Test accuracy and test loss against depth, with 95% CIs and the best depth.

    One panel per (metric, dataset), one line per config; the best depth of
    each line is a star, every depth indistinguishable from it a ring.
    """
    name = "training_depth"
    if (missing := need_data(data, name)) is not None:
        return missing
    if data.final["depth"].nunique() < 2:
        depth = int(data.final["depth"].iloc[0])
        return left_out_figure(name, f"depth was not swept (every run has L = {depth})")
    metrics = ["test_accuracy", "test_loss"] if has_accuracy(data) else ["test_loss"]
    configs, styles, datasets = drawn_configs(data)
    stats = {
        m: depth_statistics(data.final[data.final["config"].isin(configs)], m)
        for m in metrics
    }
    spread = np.linspace(-1, 1, len(configs)) * (0.035 if len(configs) > 1 else 0)
    dodge = dict(zip(configs, 2.0**spread, strict=True))
    with plot_style():
        fig, grid = panel_grid(
            len(datasets) * len(metrics),
            ncols=len(datasets),
            panel=(3.4, 2.5),
            extra_height=0.25 * math.ceil(len(configs) / 3) + 0.1,
        )
        for row, metric in enumerate(metrics):
            st = stats[metric]
            for col, dataset in enumerate(datasets):
                ax = grid[row][col]
                sub = st[st["dataset"] == dataset]
                for config, line, style in config_lines(sub, configs, styles, "depth"):
                    x = line["depth"].to_numpy(dtype=float) * dodge[config]
                    y = line["mean"].to_numpy()
                    color = style["color"]
                    err = np.vstack([y - line["ci_low"], line["ci_high"] - y])
                    ax.errorbar(
                        x,
                        y,
                        yerr=np.where(np.isfinite(err), err, 0.0),
                        color=color,
                        ls=style["ls"],
                        marker=style["marker"],
                        lw=1.4,
                        ms=3.5,
                        capsize=2,
                        elinewidth=0.9,
                        label=config,
                    )
                    # Rings: indistinguishable from the best; star: the best.
                    for column, mark in (
                        ("indistinguishable", {"marker": "o", "ms": 9, "mfc": "none"}),
                        ("best", {"marker": "*", "ms": 13, "mfc": color}),
                    ):
                        on = line[column].to_numpy(dtype=bool)
                        ring = column == "indistinguishable"
                        ax.plot(
                            x[on],
                            y[on],
                            ls="none",
                            mec=color if ring else "black",
                            mew=1.3 if ring else 0.7,
                            zorder=4 if ring else 5,
                            **mark,
                        )
                    bad = line["n_diverged"].to_numpy() > 0
                    if bad.any():
                        ax.plot(x[bad], y[bad], "x", ms=7, color="black", zorder=5)
                _depth_axis(ax, sub["depth"])
                if row == 0:
                    ax.set_title(dataset)
                if col == 0:
                    ax.set_ylabel(
                        "test accuracy"
                        if metric == "test_accuracy"
                        else _loss_label(data)
                    )
                if row == len(metrics) - 1:
                    ax.set_xlabel("depth L (layers, input included)")
            for ax, dataset in zip(grid[row], datasets, strict=False):
                sub = st[st["dataset"] == dataset]
                lo = np.nanmin(sub[["mean", "ci_low"]].to_numpy(dtype=float))
                hi = np.nanmax(sub[["mean", "ci_high"]].to_numpy(dtype=float))
                if metric == "test_accuracy":
                    # t intervals can pass 0 and 1; the axis stops at them.
                    bottom, top = ax.get_ylim()
                    ax.set_ylim(max(bottom, -0.01), min(top, 1.01))
                elif np.nanmin(sub["mean"]) > 0 and hi / max(lo, 1e-300) > 3:
                    _log_axis(ax.yaxis)
                    ax.set_ylim(bottom=max(ax.get_ylim()[0], 0.5 * sub["mean"].min()))
                else:
                    ax.set_ylim(bottom=max(ax.get_ylim()[0], 0.0))
        if data.config_keys:
            shown = [c for c in configs if c in set(data.final["config"])]
            handles = [line_handle(styles[c]) for c in shown]
            legend_below(fig, handles, shown, legend_title(data))
    n_seeds = _seed_counts(data.final)
    thinned = thinned_note(configs, data.configs)
    caption = (
        f"Final test accuracy and test loss after training against depth L, "
        f"mean over seeds ({n_seeds}) with 95% Student-t confidence intervals "
        f"(mean +- t_0.975 s/sqrt(n)); points of different configs are shifted "
        f"slightly sideways. Star: the best depth of each line (highest mean "
        f"accuracy, lowest mean loss, among depths where no seed diverged). "
        f"Rings: the best depth and every depth whose mean is not distinguishable "
        f"from it by Welch's two-sided t-test at the 5% level (no correction for "
        f"multiple comparisons; the best depth is chosen on the same test set, so "
        f"its mean is optimistic). x: a depth where some seed diverged (means over "
        f"the others; not eligible as best).{thinned}{fixed_note(data)}"
    )
    return TrainingFigure(name, fig, caption)


def config_lines(
    frame: pd.DataFrame, configs: Sequence[str], styles: dict[str, dict], by: str
) -> Iterator[tuple[str, pd.DataFrame, dict]]:
    """``(config, its rows sorted by `by`, its line style)`` for every config
    that has rows in ``frame`` (:func:`depthlab.report.plotting.lines_of`)."""
    for config, line in lines_of(frame, "config", configs, by):
        yield config, line, styles[config]


def line_handle(style: dict) -> Any:
    from matplotlib.lines import Line2D

    return Line2D([], [], lw=1.6, ms=4, **style)


def legend_title(data: TrainingData) -> str:
    return (
        "config: " + ", ".join(SHORT_NAMES.get(k, k) for k in data.config_keys)
        if (data.config_keys)
        else ""
    )


def thinned_note(shown: Sequence[str], configs: Sequence[str]) -> str:
    if len(shown) >= len(configs):
        return ""
    return f" Showing {len(shown)} of {len(configs)} configs, evenly spread."


def _seed_counts(final: pd.DataFrame) -> str:
    counts = final.groupby(["dataset", "config", "depth"], dropna=False).size()
    lo, hi = int(counts.min()), int(counts.max())
    return f"{lo} seeds per point" if lo == hi else f"{lo} to {hi} seeds per point"


# ---------------------------------------------------------------------------
# (b) Learning curves per depth


def learning_curves_figure(
    data: TrainingData, metric: str = "test_loss"
) -> TrainingFigure:
    """The mean learning curve (``metric`` against step) of every depth.

    One row of panels per dataset, one panel per config (at most 4 per
    dataset, evenly thinned), one line per depth coloured by depth on a
    sequential (viridis) scale.
    """

    name = "training_curves"
    if (missing := need_data(data, name)) is not None:
        return missing
    curves = data.curves
    if curves.empty or curves["step"].nunique() < 2:
        return left_out_figure(name, "the runs have fewer than two evaluation steps")
    mean = (
        curves.groupby(["dataset", "config", "depth", "step"], dropna=False)[metric]
        .mean()
        .reset_index()
    )
    order = {c: i for i, c in enumerate(data.configs)}
    rows = []
    for dataset in data.datasets[:3]:
        present = set(mean.loc[mean["dataset"] == dataset, "config"])
        configs = sorted(present, key=lambda c: order.get(c, 0))
        rows.append((dataset, thin(configs, 4), len(configs)))
    n_cells = sum(total for _, _, total in rows)
    n_shown = sum(len(configs) for _, configs, _ in rows)
    ncols = max(len(configs) for _, configs, _ in rows)
    depths = sorted(int(d) for d in mean["depth"].unique())
    cmap, norm = _depth_scale(depths)
    index = {d: i for i, d in enumerate(depths)}
    loss = metric.endswith("loss")
    with plot_style():
        fig, grid = panel_grid(
            len(rows) * ncols,
            ncols=ncols,
            panel=(2.5 if ncols >= 3 else 3.2, 2.2),
            legend_width=0.9,
            sharey="row",
            sharex=True,
        )
        axes = []
        for (dataset, configs, _), row in zip(rows, grid, strict=True):
            for j, ax in enumerate(row):
                if j >= len(configs):
                    fig.delaxes(ax)
                    continue
                config = configs[j]
                axes.append(ax)
                sub = mean[(mean["dataset"] == dataset) & (mean["config"] == config)]
                for depth, line in sub.groupby("depth"):
                    ax.plot(
                        line["step"],
                        line[metric],
                        color=cmap(norm(index[int(depth)])),
                        lw=1.2,
                    )
                ax.set_title(config or dataset, fontsize=8.5)
                ax.xaxis.set_tick_params(labelbottom=True)
            values = mean.loc[mean["dataset"] == dataset, metric].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            if loss and values.size and values.min() > 0:
                if values.max() / values.min() > 3:
                    _log_axis(row[0].yaxis)
            what = (
                _loss_label(data) if metric == "test_loss" else metric.replace("_", " ")
            )
            row[0].set_ylabel(f"{dataset}\n{what}")
        for ax in grid[-1]:
            ax.set_xlabel("training step")
        _depth_colorbar(fig, axes, cmap, norm, depths)
    thinned = (
        f" Showing {n_shown} of {n_cells} panels (at most 4 configs per dataset)."
        if n_shown < n_cells
        else ""
    )
    caption = (
        f"Learning curves: {metric.replace('_', ' ')} against training step "
        f"(one update on one mini-batch), mean over the seeds that had not "
        f"diverged, one line per depth L (colour: depth, sequential scale). "
        f"One panel per dataset and config.{thinned}{fixed_note(data)}"
    )
    return TrainingFigure(name, fig, caption)


# ---------------------------------------------------------------------------
# (e) The best depth against the training budget


def optimal_depth_vs_step_figure(
    data: TrainingData, metric: str = "test_accuracy"
) -> TrainingFigure:
    """The best depth (and its indistinguishable set) after every evaluation step."""
    name = "training_best_depth_vs_step"
    if (missing := need_data(data, name)) is not None:
        return missing
    if data.final["depth"].nunique() < 3 or data.curves["step"].nunique() < 3:
        return left_out_figure(name, "needs three or more depths and evaluation steps")
    by_step = best_depth_by_step(data, metric)
    by_step = by_step[by_step["step"] > 0].dropna(subset=["best_depth"])
    if by_step.empty:
        return left_out_figure(name, "no depth is eligible at any step (too few seeds)")
    by_step = by_step[by_step["step"].isin(_log_spaced(by_step["step"], MAX_STEPS))]
    configs, styles, datasets = drawn_configs(data)
    depths = sorted(int(d) for d in data.final["depth"].unique())
    with plot_style():
        fig, axes = dataset_panels(
            datasets,
            panel=(3.6, 2.8),
            legend_lines=0.25 * math.ceil(len(configs) / 3) + 0.1,
        )
        for ax, dataset in zip(axes, datasets, strict=True):
            sub = by_step[by_step["dataset"] == dataset]
            for config, line, style in config_lines(sub, configs, styles, "step"):
                steps = line["step"].to_numpy(dtype=float)
                ax.fill_between(
                    steps,
                    line["depth_min"].to_numpy(dtype=float),
                    line["depth_max"].to_numpy(dtype=float),
                    color=style["color"],
                    alpha=0.25 if len(configs) == 1 else 0.12,
                    lw=0,
                )
                ax.plot(
                    steps,
                    line["best_depth"].to_numpy(dtype=float),
                    lw=1.6,
                    ms=4,
                    label=config,
                    **style,
                )
            ax.set_yscale("log", base=2)
            depth_ticks(ax.yaxis, depths)
            ax.set_ylim(depths[0] / 1.15, depths[-1] * 1.15)
            _log_axis(ax.xaxis)
            ax.set_title(dataset)
            ax.set_xlabel("training step (budget)")
        axes[0].set_ylabel("best depth L")
        shown = [c for c in configs if c in set(by_step["config"])]
        if data.config_keys and shown:
            legend_below(
                fig, [line_handle(styles[c]) for c in shown], shown, legend_title(data)
            )
    caption = (
        f"The best depth (highest mean {METRICS[metric][0]} over seeds; line and "
        f"markers) and the range of depths indistinguishable from it (Welch "
        f"t-test at 5%; shaded from the shallowest to the deepest such depth) "
        f"when training stops after a given number of steps (log-spaced "
        f"evaluation steps), read from the learning curves: the optimizer has "
        f"no schedule, so stopping at step s is the budget s."
        f"{thinned_note(configs, data.configs)}{fixed_note(data)}"
    )
    return TrainingFigure(name, fig, caption)
