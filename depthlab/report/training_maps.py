"""The training figures over a second axis: trainability over (sigma_w, depth),
and the gradient at initialization against trainability."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from depthlab.report.data import thin
from depthlab.report.plotting import XI_COLOR, bin_edges
from depthlab.report.plotting import style as plot_style
from depthlab.report.stats import depth_statistics
from depthlab.report.theory_lines import critical_sigma_w, sigma_w_ratio, xi_c_curve
from depthlab.report.training_data import TrainingData, config_label
from depthlab.report.training_figures import (
    TrainingFigure,
    config_lines,
    dataset_panels,
    depth_ticks,
    drawn_configs,
    fixed_note,
    has_accuracy,
    left_out_figure,
    legend_below,
    legend_title,
    line_handle,
    need_data,
    panel_grid,
    thinned_note,
)

XI_MULTIPLE = 6.0
"""The multiple of xi_c drawn over the trainability heatmap (Schoenholz et al.)."""
XI_STYLES = ("-", "--", "-.")
MAX_HEATMAPS = 6

# ---------------------------------------------------------------------------
# (c) Trainability over (sigma_w, depth)


def _critical_style() -> dict[str, Any]:
    """A dotted dark line with a white halo: visible on light and dark cells."""
    from matplotlib import patheffects

    halo = [patheffects.Stroke(linewidth=3.2, foreground="white"), patheffects.Normal()]
    return {"color": "0.15", "ls": ":", "lw": 1.5, "path_effects": halo}


def trainability_heatmap(
    data: TrainingData, *, xi_multiples: Sequence[float] = (XI_MULTIPLE,)
) -> TrainingFigure:
    """Mean final test accuracy over (sigma_w, depth), with multiples of xi_c.

    One panel per (dataset, config without sigma_w) that has at least three
    values of sigma_w and two depths.

    Parameters
    ----------
    data : TrainingData
    xi_multiples : sequence of float
        Draw the curves L = m xi_c(sigma_w) for each m (solid, dashed, dash-dot);
        Schoenholz et al. (2017) found networks trainable up to about 6 xi_c.
    """
    import matplotlib as mpl

    name = "training_heatmap"
    if (missing := need_data(data, name)) is not None:
        return missing
    if not has_accuracy(data):
        return left_out_figure(name, "no accuracies: the datasets are regression tasks")
    keys = [k for k in data.config_keys if k != "sigma_w"]
    final = data.final.copy()
    final["panel"] = (
        [config_label(keys, list(v)) for v in final[keys].itertuples(index=False)]
        if keys
        else ""
    )
    panels = []
    for (dataset, panel), sub in final.groupby(["dataset", "panel"], sort=False):
        if sub["sigma_w"].nunique() >= 3 and sub["depth"].nunique() >= 2:
            panels.append((dataset, panel, sub))
    if not panels:
        n_sw = int(data.final["sigma_w"].nunique())
        return left_out_figure(
            name,
            f"sigma_w was not swept at three or more values with two or more depths "
            f"(this sweep has {n_sw} value{'s' if n_sw != 1 else ''} of sigma_w)",
        )
    total = len(panels)
    panels = panels[:MAX_HEATMAPS]
    cmap = mpl.colormaps["viridis"]
    with plot_style():
        fig, grid = panel_grid(
            len(panels),
            ncols=min(len(panels), 2),
            panel=(4.2, 3.2),
            legend_width=0.8,
            extra_height=0.2,
        )
        axes = [ax for row in grid for ax in row][: len(panels)]
        mesh = None
        xi_drawn = crit_drawn = False
        for ax, (dataset, panel, sub) in zip(axes, panels, strict=True):
            ok = sub[~sub["diverged"].to_numpy(dtype=bool)]
            table = ok.pivot_table(
                index="depth",
                columns="sigma_w",
                values="test_accuracy",
                aggfunc="mean",
            )
            sws = np.sort(sub["sigma_w"].unique())
            depths = np.sort(sub["depth"].unique())
            table = table.reindex(index=depths, columns=sws)
            div = sub.pivot_table(
                index="depth", columns="sigma_w", values="diverged", aggfunc="mean"
            ).reindex(index=depths, columns=sws)
            x_edges = bin_edges(sws, log=False)
            y_edges = bin_edges(depths.astype(float), log=True)
            mesh = ax.pcolormesh(
                x_edges,
                y_edges,
                np.ma.masked_invalid(table.to_numpy(dtype=float)),
                cmap=cmap,
                vmin=0.0,
                vmax=1.0,
                shading="flat",
            )
            ax.set_facecolor("#bbbbbb")
            for (i, depth), (j, sw) in (
                (a, b) for a in enumerate(depths) for b in enumerate(sws)
            ):
                if div.iat[i, j] > 0:
                    ax.plot(sw, depth, "x", color="white", ms=5, mew=1.2)
            ax.set_yscale("log", base=2)
            depth_ticks(ax.yaxis, depths)
            ax.set_xlim(x_edges[0], x_edges[-1])
            ax.set_ylim(y_edges[0], y_edges[-1])
            ax.grid(False)
            first = sub.iloc[0]
            activation, sigma_b = str(first["activation"]), float(first["sigma_b"])
            ratio = sigma_w_ratio(sub)
            grid_sw, xi, _ = xi_c_curve(
                activation, sigma_b, ratio, (float(x_edges[0]), float(x_edges[-1]))
            )
            if np.isfinite(xi).any():
                xi_drawn = True
                for m, ls in zip(xi_multiples, XI_STYLES, strict=False):
                    ax.plot(grid_sw, m * xi, color=XI_COLOR, lw=2.0, ls=ls)
            try:
                crit = critical_sigma_w(activation, sigma_b, ratio)
            except (ValueError, ArithmeticError):
                crit = math.nan
            if math.isfinite(crit) and x_edges[0] < crit < x_edges[-1]:
                crit_drawn = True
                ax.axvline(crit, **_critical_style())
            ax.set_title(f"{dataset}, {panel}" if panel else dataset, fontsize=9)
        for i, ax in enumerate(axes):
            ncols = min(len(panels), 2)
            if i % ncols == 0:
                ax.set_ylabel("depth L")
            if i + ncols >= len(axes):
                ax.set_xlabel("sigma_w (weight std x sqrt(fan-in))")
        bar = fig.colorbar(mesh, ax=axes, shrink=0.85, aspect=30, pad=0.02)
        bar.set_label("mean final test accuracy")
        from matplotlib.lines import Line2D

        handles, labels = [], []
        if xi_drawn:
            for m, ls in zip(xi_multiples, XI_STYLES, strict=False):
                handles.append(Line2D([], [], color=XI_COLOR, lw=2, ls=ls))
                labels.append(f"L = {m:g} xi_c(sigma_w)")
        if crit_drawn:
            handles.append(Line2D([], [], **_critical_style()))
            labels.append("critical sigma_w (chi_1 = 1)")
        if handles:
            legend_below(fig, handles, labels)
    note = f" Showing {len(panels)} of {total} panels." if total > len(panels) else ""
    multiples = " and ".join(f"{m:g}" for m in xi_multiples[: len(XI_STYLES)])
    caption = (
        f"Trainability: mean final test accuracy over seeds that did not diverge, "
        f"for every (sigma_w, depth L); white x: some seed diverged; grey: no "
        f"seed trained to the end (every seed diverged, or no run). Orange: "
        f"L = {multiples} xi_c(sigma_w), xi_c being the "
        f"mean-field depth scale of input correlations (Schoenholz et al. 2017 "
        f"found networks deeper than about 6 xi_c untrainable), computed for the "
        f"hidden layers' sigma_w and sigma_b; the curves run off the top near the "
        f"critical sigma_w (dotted, chi_1 = 1), where xi_c diverges."
        f"{note}{fixed_note(data, ('sigma_w',))}"
    )
    return TrainingFigure(name, fig, caption)


# ---------------------------------------------------------------------------
# (d) Gradient health at initialization against trainability


def gradient_health_figure(data: TrainingData) -> TrainingFigure:
    """Final test accuracy against the initial gradient norm, one point per cell.

    x: the median over seeds and training inputs of log10 ||grad a^[L](x)|| at
    initialization; y: the mean final test accuracy over seeds (95% CI). One
    path per config (colour and line style as in the other figures) through its
    depths, the marker growing with depth.
    """
    from matplotlib.lines import Line2D

    name = "training_gradient_health"
    if (missing := need_data(data, name)) is not None:
        return missing
    if not has_accuracy(data):
        return left_out_figure(name, "no accuracies: the datasets are regression tasks")
    runs = data.runs
    if not np.isfinite(runs["init_grad_log10_norm_median"].to_numpy(dtype=float)).any():
        return left_out_figure(name, "the runs have no initial gradient statistics")
    stats = depth_statistics(data.final, "test_accuracy")
    grad = (
        runs.groupby(["dataset", "config", "depth"], dropna=False)[
            "init_grad_log10_norm_median"
        ]
        .median()
        .reset_index()
    )
    points = stats.merge(grad, on=["dataset", "config", "depth"])
    depths = sorted(int(d) for d in points["depth"].unique())
    span = math.log2(depths[-1] / depths[0]) if depths[-1] > depths[0] else 1.0

    def size(depth: float) -> float:
        return 3.0 + 6.0 * math.log2(depth / depths[0]) / span

    configs, styles, datasets = drawn_configs(data)
    with plot_style():
        fig, axes = dataset_panels(
            datasets,
            panel=(3.6, 2.9),
            legend_lines=0.3 * math.ceil(len(configs) / 2) + 0.3,
            sharey=False,
        )
        for ax, dataset in zip(axes, datasets, strict=True):
            sub = points[points["dataset"] == dataset]
            for _, line, style in config_lines(sub, configs, styles, "depth"):
                x = line["init_grad_log10_norm_median"].to_numpy(dtype=float)
                y = line["mean"].to_numpy(dtype=float)
                err = np.vstack([y - line["ci_low"], line["ci_high"] - y])
                ax.errorbar(
                    x,
                    y,
                    yerr=np.where(np.isfinite(err), err, 0.0),
                    fmt="none",
                    ecolor=style["color"],
                    alpha=0.5,
                    elinewidth=0.7,
                    zorder=2,
                )
                ax.plot(x, y, color=style["color"], ls=style["ls"], lw=0.9, zorder=2)
                for xi, yi, d in zip(x, y, line["depth"], strict=True):
                    ax.plot(
                        xi,
                        yi,
                        marker=style["marker"],
                        ms=size(d),
                        color=style["color"],
                        mec="black",
                        mew=0.4,
                        zorder=3,
                    )
            ax.set_title(dataset)
            ax.set_xlabel("median log10 ||grad a^[L](x)|| at init")
            bottom, top = ax.get_ylim()
            ax.set_ylim(max(bottom, -0.01), min(top, 1.01))
        axes[0].set_ylabel("mean final test accuracy")
        handles, labels = [], []
        if data.config_keys:
            handles += [line_handle(styles[c]) for c in configs]
            labels += list(configs)
        for d in thin(depths, 3):
            handles.append(
                Line2D([], [], ls="none", marker="o", ms=size(d), color="0.6", mec="k")
            )
            labels.append(f"L = {d}")
        legend_below(fig, handles, labels, legend_title(data))
    caption = (
        "Gradient health at initialization against trainability: for every "
        "(config, depth L), the median over seeds and training inputs of "
        "log10 ||grad a^[L](x)|| (the input-output gradient of the untrained "
        "network) against the mean final test accuracy over seeds (bars: 95% "
        "Student-t intervals). Each config is a path through its depths; the "
        f"marker grows with depth (L = {depths[0]} to {depths[-1]})."
        + thinned_note(configs, data.configs)
        + fixed_note(data)
    )
    return TrainingFigure(name, fig, caption)
