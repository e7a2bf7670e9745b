"""The heatmap of the gradient norm over (sigma_w, depth) or (width, depth),
with mean-field theory's critical sigma_w and depth scale xi_c drawn over it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from depthlab.report.data import ReportData, finite_or_nan, format_value, label, thin
from depthlab.report.plotting import (
    THEORY_COLOR,
    USABLE_LOG10,
    XI_COLOR,
    Drawn,
    bin_edges,
    label_outer,
    left_out,
    legend_columns,
    need_probe,
    panels,
    style,
)
from depthlab.report.theory_lines import critical_sigma_w, sigma_w_ratio, xi_c_curve

if TYPE_CHECKING:
    from matplotlib.axes import Axes

# ---------------------------------------------------------------------------
# 5. Heatmap over (sigma_w, depth) or (width, depth)


MAX_HEATMAPS = 6


def _spaced(values: Sequence[float], k: int, *, log: bool) -> list[float]:
    """Sorted values at least 1/k of their range apart (in log for a log axis),
    first and last included: tick positions whose labels do not overlap when
    the swept values are unevenly spaced (e.g. dense near a critical point).

    Examples
    --------
    >>> _spaced([0.5, 1, 1.3, 1.4, 1.5, 2, 4], 7, log=False)
    [0.5, 1, 1.5, 2, 4]
    """
    values = sorted(values)
    if len(values) <= 2:
        return values
    pos = np.log(values) if log else np.asarray(values, dtype=float)
    gap = (pos[-1] - pos[0]) / k
    kept = [0]
    for i in range(1, len(values) - 1):
        if pos[i] - pos[kept[-1]] >= gap and pos[-1] - pos[i] >= gap:
            kept.append(i)
    kept.append(len(values) - 1)
    return [values[i] for i in kept]


def heatmap(data: ReportData) -> Drawn:
    """Median log10 gradient norm over (sigma_w, depth), or (width, depth)."""
    import matplotlib as mpl
    from matplotlib.lines import Line2D

    name, title = "heatmap", "Gradient norm over sigma_w and depth"
    if (missing := need_probe(data, name, title)) is not None:
        return missing
    key = next((k for k in ("sigma_w", "width") if k in data.varying), None)
    if key is None:
        return left_out("sigma_w and width were not swept", name, title)
    if "depth" not in data.varying:
        return left_out(f"{key} was swept, but depth was not", name, title)
    title = f"Gradient norm over {key} and depth"
    s = data.summary
    others = [k for k in (*data.facet_keys, *data.hue_keys) if k != key]
    groups = list(s.groupby(others, sort=True)) if others else [((), s)]
    groups = [
        (k, g) for k, g in groups if g[key].nunique() >= 2 and g["depth"].nunique() >= 2
    ]
    if not groups:
        return left_out(
            f"{key} and depth were swept, but never two values of each together",
            name,
            title,
        )
    note = ""
    if len(groups) > MAX_HEATMAPS:
        note = f" Showing {MAX_HEATMAPS} of {len(groups)} panels."
        groups = thin(groups, MAX_HEATMAPS)
    values = finite_or_nan(pd.concat([g for _, g in groups])["grad_log10_norm_median"])
    vmax = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    vmax = max(vmax, 1.0)
    log_x = key == "width"
    notes: list[str] = []
    theory_drawn: set[str] = set()
    zero = 0
    contours: set[str] = set()
    with style():
        fig, axes = panels(
            len(groups), panel=(3.6, 3.0), legend_width=1.2, sharey=False
        )
        cmap = mpl.colormaps["RdBu_r"].with_extremes(bad="0.82")
        mesh = None
        for ax, (group_key, g) in zip(axes, groups, strict=True):
            pivot = g.pivot_table(
                index="depth",
                columns=key,
                values="grad_log10_norm_median",
                aggfunc="median",
            )
            x = pivot.columns.to_numpy(dtype=float)
            y = pivot.index.to_numpy(dtype=float)
            z = pivot.to_numpy(dtype=float)
            zero += int(np.isneginf(z).sum())
            z = np.ma.masked_invalid(np.where(np.isneginf(z), -vmax, z))
            xe, ye = bin_edges(x, log=log_x), bin_edges(y, log=False)
            mesh = ax.pcolormesh(
                xe, ye, z, cmap=cmap, vmin=-vmax, vmax=vmax, shading="flat"
            )
            if len(x) >= 3 and len(y) >= 3 and z.count() == z.size:
                xx, yy = np.meshgrid(x, y)
                if z.min() < 0 < z.max():
                    ax.contour(xx, yy, z, levels=[0.0], colors="k", linewidths=1.1)
                    contours.add("zero")
                bounds = [
                    b for b in (-USABLE_LOG10, USABLE_LOG10) if z.min() < b < z.max()
                ]
                if bounds:
                    ax.contour(
                        xx,
                        yy,
                        z,
                        levels=bounds,
                        colors="0.3",
                        linewidths=0.9,
                        linestyles=":",
                    )
                    contours.add("usable")
            if log_x:
                ax.set_xscale("log", base=2)
            # Ticks at the swept values (cells are centred on them), far
            # enough apart that their labels do not overlap on uneven grids.
            xticks = _spaced(x.tolist(), 7, log=log_x)
            yticks = _spaced(y.tolist(), 8, log=False)
            ax.set_xticks(xticks, [format_value(v) for v in xticks])
            ax.set_yticks(yticks, [format_value(v) for v in yticks])
            ax.minorticks_off()
            if key == "sigma_w":
                theory_drawn |= _draw_theory(
                    ax, g, (float(x.min()), float(x.max())), (ye[0], ye[-1]), notes
                )
            ax.set_xlim(xe[0], xe[-1])
            ax.set_ylim(ye[0], ye[-1])
            keys = list(group_key) if isinstance(group_key, tuple) else [group_key]
            ax.set_title(label(others, keys) if others else "")
        label_outer(axes, "width n" if log_x else key, "depth L")
        assert mesh is not None
        bar = fig.colorbar(mesh, ax=axes, shrink=0.85, extend="both", pad=0.02)
        bar.set_label("median log10 ||grad a^[L](x)||")
        entries = []
        if "zero" in contours:
            entries.append(("median norm 1", {"lw": 1.1, "color": "k"}))
        if "usable" in contours:
            entries.append(
                ("median norm 1e-6 or 1e6", {"lw": 0.9, "color": "0.3", "ls": ":"})
            )
        theory_entries = {
            "critical": (
                "critical sigma_w",
                {"ls": "--", "lw": 1.5, "color": THEORY_COLOR},
            ),
            "xi": ("L = xi_c", {"ls": "-", "lw": 1.7, "color": XI_COLOR}),
            "xi6": (
                "L = 6 xi_c",
                {"ls": (0, (1.5, 1.5)), "lw": 1.7, "color": XI_COLOR},
            ),
        }
        entries += [v for k, v in theory_entries.items() if k in theory_drawn]
        if entries:
            fig.legend(
                [Line2D([], [], **kw) for _, kw in entries],
                [t for t, _ in entries],
                loc="outside lower center",
                ncol=legend_columns(fig, len(entries)),
            )
    caption = (
        f"Median log10 gradient norm over {key} and depth L (red: exploding, blue: "
        "vanishing, white: a norm near 1; grey: no finished run)."
    )
    if "zero" in contours:
        caption += " Black line: median norm 1."
    if "usable" in contours:
        caption += " Grey dotted lines: median norm 1e-6 or 1e6, the usable range."
    if "critical" in theory_drawn:
        caption += (
            " Green, dashed: mean-field theory's critical sigma_w, where chi_1 = 1 "
            "for the hidden layers."
        )
    if theory_drawn & {"xi", "xi6"}:
        caption += (
            " Orange: the depth scale xi_c of Schoenholz et al. (2017), as L = xi_c "
            "(solid) and L = 6 xi_c (dotted: roughly the deepest network they could "
            "train); xi_c diverges at the critical sigma_w."
        )
    elif key == "width":
        caption += " Mean-field theory does not depend on the width."
    if zero:
        caption += (
            f" {zero} cell(s) with a median norm of exactly 0 are drawn in the "
            "darkest blue."
        )
    caption += "".join(dict.fromkeys(notes)) + note
    return Drawn(name, title, fig, caption)


def _draw_theory(
    ax: Axes,
    g: pd.DataFrame,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    notes: list[str],
) -> set[str]:
    """Overlay the critical sigma_w and k * xi_c where they fall in the panel.

    Returns what was drawn: ``critical``, ``xi``, ``xi6``.
    """
    activation = str(g["activation"].iloc[0])
    sigma_b = float(g["sigma_b"].iloc[0])
    ratio = sigma_w_ratio(g)
    if not math.isclose(ratio, 1.0, rel_tol=1e-9):
        notes.append(
            f" For init {g['init'].iloc[0]} at width {format_value(g['width'].iloc[0])}"
            f" the hidden layers' effective sigma_w is {format_value(ratio)} x the "
            "nominal one; the theory's lines are drawn at the nominal sigma_w."
        )
    try:
        critical: float | None = critical_sigma_w(activation, sigma_b, ratio)
    except (ValueError, ArithmeticError):
        critical = None
    grid, xi, note = xi_c_curve(activation, sigma_b, ratio, x_range)
    notes.append(note)
    drawn = set()
    if critical is not None and x_range[0] <= critical <= x_range[1]:
        ax.axvline(critical, color=THEORY_COLOR, ls="--", lw=1.5)
        drawn.add("critical")
    elif critical is not None:
        notes.append(
            f" The critical sigma_w for {activation} ({format_value(critical)}) "
            "lies outside the swept range."
        )
    lo, hi = y_range
    for name, k, ls in (("xi", 1.0, "-"), ("xi6", 6.0, (0, (1.5, 1.5)))):
        y = k * xi
        y = np.where(np.isfinite(y) & (y <= 3 * hi), y, np.nan)
        if np.any((y >= lo) & (y <= hi)):
            ax.plot(grid, y, ls=ls, color=XI_COLOR, lw=1.7)
            drawn.add(name)
    return drawn
