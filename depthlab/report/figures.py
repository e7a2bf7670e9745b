"""The report's figures: one function per figure.

Each function takes a :class:`~depthlab.report.data.ReportData` (tidy frames,
labels and colours) and returns a :class:`~depthlab.report.plotting.Drawn`: a
matplotlib Figure with its caption, or no figure and the reason the sweep's
data does not support it. :func:`draw_all` draws and renders them all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from depthlab.report.data import (
    ReportData,
    finite_or_nan,
    format_value,
    label,
    log10_quantiles,
    thin,
)
from depthlab.report.plotting import (
    MAX_WIDTH,
    USABLE_LOG10,
    Drawn,
    band_edges,
    facets_to_draw,
    finite_range,
    hue_legend,
    hues_to_draw,
    integer_x,
    label_outer,
    left_out,
    legend_columns,
    need_probe,
    over,
    pad,
    panel_title,
    panels,
    render,
    style,
    style_legend,
    zero_note,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["FIGURES", "FIGURE_NAMES", "Drawn", "draw_all"]

# ---------------------------------------------------------------------------
# 1. Gradient norm against depth


def grad_vs_depth(data: ReportData) -> Drawn:
    """Median and interquartile band of log10 ||grad a^[L](x)|| against depth L.

    One line per config, one panel per facet, the mean-field prediction of the
    root-mean-square norm dashed (and the measured root-mean-square dash-dotted
    where few configs share a panel).
    """
    name, title = "grad_norm_vs_depth", "Gradient norm against depth"
    if (missing := need_probe(data, name, title)) is not None:
        return missing
    if "depth" not in data.varying:
        depth = data.fixed.get("depth")
        return left_out(f"depth was not swept (every run has L = {depth})", name, title)
    s = data.summary
    facets, note = facets_to_draw(data)
    hues, hue_note = hues_to_draw(data, "grad", s["hue"])
    shown = s[s["hue"].isin(hues) & s["facet"].isin(facets)]
    show_rms = shown.groupby("facet")["hue"].nunique().max() <= 3
    columns = ["grad_log10_norm_median", "grad_log10_norm_q25", "grad_log10_norm_q75"]
    theory = "theory_grad_log10_rms"
    rng = finite_range(
        *(shown[c] for c in columns),
        shown[theory] if theory in shown else [],
        shown["grad_log10_rms"] if show_rms and "grad_log10_rms" in shown else [],
    )
    if rng is None:
        return left_out("no finite gradient norms were measured", name, title)
    lo_lim, hi_lim = pad(*rng)
    zero_median = int(np.isneginf(shown["grad_log10_norm_median"]).sum())
    usable_drawn = False
    with style():
        fig, axes = panels(len(facets), sharex=True)
        for ax, facet in zip(axes, facets, strict=True):
            sub = shown[shown["facet"] == facet]
            for hue in hues:
                g = sub[sub["hue"] == hue].sort_values("depth")
                if g.empty:
                    continue
                color = data.color(hue)
                x = g["depth"].to_numpy()
                lo, hi = band_edges(
                    g["grad_log10_norm_q25"].to_numpy(dtype=float),
                    g["grad_log10_norm_q75"].to_numpy(dtype=float),
                    lo_lim,
                )
                ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)
                median = finite_or_nan(g["grad_log10_norm_median"])
                ax.plot(x, median, "-o", color=color, lw=1.8, ms=3)
                if show_rms and "grad_log10_rms" in g:
                    ax.plot(
                        x,
                        finite_or_nan(g["grad_log10_rms"]),
                        "-.",
                        lw=1.3,
                        **over(color),
                    )
                if theory in g:
                    ax.plot(
                        x,
                        finite_or_nan(g[theory]),
                        "--",
                        lw=1.3,
                        **over(color),
                    )
            for bound in (-USABLE_LOG10, USABLE_LOG10):
                if lo_lim < bound < hi_lim:
                    ax.axhline(bound, color="0.45", lw=0.9, ls=(0, (1, 2.5)))
                    usable_drawn = True
            ax.set_ylim(lo_lim, hi_lim)
            integer_x(ax)
            panel_title(ax, facet, data)
        label_outer(axes, "depth L (layers, input included)", "log10 ||grad a^[L](x)||")
        hue_legend(fig, data, hues)
        entries = [
            ("measured median (band: 25-75%)", {"lw": 1.8, "marker": "o", "ms": 3}),
        ]
        if show_rms:
            entries.append(("measured rms", {"ls": "-."}))
        entries.append(("mean-field rms (theory)", {"ls": "--", "lw": 1.4}))
        if usable_drawn:
            entries.append(
                ("usable range 1e-6..1e6", {"ls": (0, (1, 2.5)), "color": "0.45"})
            )
        style_legend(fig, entries)
    caption = (
        "Median of log10 ||grad a^[L](x)|| over the sampled networks and inputs, "
        "with the band from the 25th to the 75th percentile, against depth L. "
        "Dashed: mean-field theory. It predicts the mean of squares E||grad||^2, "
        "drawn as the root-mean-square norm log10 sqrt(E||grad||^2)"
    )
    caption += (
        ", next to the measured root-mean-square (dash-dotted). "
        if show_rms
        else ". "
    )
    caption += (
        "At finite width a typical network's norm (the median) lies below the "
        "root-mean-square. Grey dotted lines: 1e-6 and 1e6, the usable range."
    )
    caption += zero_note(zero_median, "point(s) have a median norm of")
    return Drawn(name, title, fig, caption + note + hue_note)


# ---------------------------------------------------------------------------
# 2. Backprop profile


def _profile_runs(data: ReportData, hues: Sequence[str]) -> pd.DataFrame:
    """For each config: its deepest run and one or two shallower ones (L >= 3).

    Two shallower ones (the shallowest and a middle one) for up to two colours
    per panel, else one (about half as deep), so that a panel stays readable.
    """
    s = data.summary[data.summary["hue"].isin(hues) & (data.summary["depth"] >= 3)]
    picks = []
    for _, g in s.groupby("config", sort=False):
        depths = sorted(g["depth"].unique())
        deepest = max(depths)
        if len(hues) <= 2:
            chosen = set(thin(depths, 3))
        else:
            half = min(depths, key=lambda d: abs(d - deepest / 2))
            chosen = {deepest, half}
        g = g[g["depth"].isin(chosen)]
        picks.append(g.assign(is_deepest=g["depth"] == deepest))
    if not picks:
        return s.iloc[:0].assign(is_deepest=pd.Series(dtype=bool))
    return pd.concat(picks, ignore_index=True)


def _profile_rows(data: ReportData, runs: pd.DataFrame) -> pd.DataFrame | None:
    """Per-layer median and quartiles of the backprop norm for ``runs``.

    From the ``per_layer`` table; from the ``layers`` table (every sample) for
    runs whose stored quartiles are nan (probes that interpolated between two
    zero norms, log10 = -inf, stored nan there).
    """
    info = runs.set_index("run_id")[["facet", "hue", "is_deepest", "depth"]]
    theory = data.tables.get("theory")
    per_layer = data.tables.get("per_layer")
    stats = ["q25", "median", "q75"]
    columns = [f"backprop_log10_norm_{s}" for s in stats]
    out = None
    stale = set(runs["run_id"])
    if per_layer is not None and set(columns) <= set(per_layer):
        rows = per_layer[per_layer["run_id"].isin(runs["run_id"])]
        rows = rows[rows["layer"] < rows["depth"]]
        out = rows[["run_id", "layer", *columns]].rename(
            columns=dict(zip(columns, stats, strict=True))
        )
        stale = set(out.loc[out[stats].isna().any(axis=1), "run_id"])
    layers = data.tables.get("layers")
    if stale and layers is not None and "backprop_log10_norm" in layers:
        rows = layers[layers["run_id"].isin(stale)]
        rows = rows[rows["layer"] < rows["depth"]]
        q = log10_quantiles(rows, ["run_id", "layer"], "backprop_log10_norm")
        q = q.reset_index()
        kept = None if out is None else out[~out["run_id"].isin(stale)]
        out = q if kept is None or kept.empty else pd.concat([kept, q])
    if out is None or out.empty:
        return None
    source = theory if theory is not None else data.tables.get("per_layer")
    column = "predicted_log10_mean_sq_backprop"
    if source is not None and column in source:
        pred = source[source["run_id"].isin(runs["run_id"])][
            ["run_id", "layer", column]
        ]
        out = out.merge(pred, on=["run_id", "layer"], how="left")
    out = out.join(info, on="run_id")
    return out[out["layer"] < out["depth"]]


def backprop_profile(data: ReportData) -> Drawn:
    """log10 ||d a^[L] / d a^[l]|| against layer l for a few depths per config."""
    name, title = "backprop_profile", "Backprop profile"
    if (missing := need_probe(data, name, title)) is not None:
        return missing
    s = data.summary
    hues, hue_note = hues_to_draw(data, "profile", s["hue"])
    runs = _profile_runs(data, hues)
    if runs.empty:
        return left_out(
            "no network has a hidden layer (every run has depth L = 2)", name, title
        )
    rows = _profile_rows(data, runs)
    if rows is None or rows.empty:
        return left_out("the runs have no per-layer backprop norms", name, title)
    facets, note = facets_to_draw(data, rows["facet"])
    theory = "predicted_log10_mean_sq_backprop"
    has_theory = theory in rows
    deep = rows[rows["is_deepest"]]
    rng = finite_range(
        rows["median"],
        deep["q25"],
        deep["q75"],
        0.5 * rows[theory] if has_theory else [],
    )
    if rng is None:
        return left_out("no finite backprop norms were measured", name, title)
    lo_lim, hi_lim = pad(*rng)
    zero = int(
        rows.groupby("run_id")["median"].apply(lambda m: np.isneginf(m).any()).sum()
    )
    with style():
        fig, axes = panels(len(facets), sharex=True)
        for ax, facet in zip(axes, facets, strict=True):
            sub = rows[rows["facet"] == facet]
            for _, g in sub.groupby("run_id", sort=False):
                g = g.sort_values("layer")
                first = g.iloc[0]
                color = data.color(first["hue"])
                is_deep = bool(first["is_deepest"])
                x = g["layer"].to_numpy()
                if is_deep:
                    lo, hi = band_edges(
                        g["q25"].to_numpy(dtype=float),
                        g["q75"].to_numpy(dtype=float),
                        lo_lim,
                    )
                    ax.fill_between(x, lo, hi, color=color, alpha=0.18, lw=0)
                y = finite_or_nan(g["median"])
                ax.plot(
                    x,
                    y,
                    "-",
                    color=color,
                    lw=2.0 if is_deep else 1.1,
                    alpha=1.0 if is_deep else 0.8,
                )
                if has_theory:
                    ax.plot(
                        x,
                        0.5 * finite_or_nan(g[theory]),
                        "--",
                        lw=1.2,
                        alpha=0.95 if is_deep else 0.7,
                        **over(color),
                    )
                finite = np.flatnonzero(np.isfinite(y))
                if finite.size and first["hue"] == hues[0]:
                    i = finite[-1]
                    ax.annotate(
                        f"L={int(first['depth'])}",
                        (x[i], y[i]),
                        xytext=(3, 3),
                        textcoords="offset points",
                        fontsize=7.5,
                        color="0.2",
                        bbox={
                            "boxstyle": "round,pad=0.15",
                            "fc": "white",
                            "ec": "none",
                            "alpha": 0.8,
                        },
                        zorder=4,
                    )
            ax.set_ylim(lo_lim, hi_lim)
            ax.set_xlim(0.5, rows["depth"].max() - 1 + 0.14 * rows["depth"].max())
            integer_x(ax)
            panel_title(ax, facet, data)
        label_outer(axes, "layer l", "log10 ||d a^[L] / d a^[l]||")
        hue_legend(fig, data, hues)
        style_legend(
            fig,
            [
                ("median, deepest L (band: 25-75%)", {"lw": 2.0}),
                ("median, shallower L", {"lw": 1.1, "alpha": 0.8}),
                ("mean-field rms (theory)", {"ls": "--", "lw": 1.2}),
            ],
        )
    caption = (
        "The gradient as it reaches layer l, ||d a^[L] / d a^[l]|| for "
        "l = 1..L-1: the median over sampled networks and inputs for the deepest "
        "network of each config (thick, with its band from the 25th to the 75th "
        "percentile) and up to two shallower ones (thin). Each line ends at layer "
        "L-1 of its network (labelled L=...). Dashed: mean-field theory's "
        "root-mean-square, 0.5 log10 E||d a^[L] / d a^[l]||^2. Read from right to "
        "left: the gradient starts at the output and vanishes (falls) or explodes "
        "(rises) on its way to the input."
    )
    caption += zero_note(zero, "line(s) have medians of")
    return Drawn(name, title, fig, caption + note + hue_note)


# ---------------------------------------------------------------------------
# 3. Per-layer Jacobian singular values

SV_ZERO = 1e-12
"""A singular value below SV_ZERO x the largest in its panel is zero to working
precision (one SVD is accurate to about 1e-16 x the largest singular value)."""


def layer_singular_values(data: ReportData) -> Drawn:
    """Singular values of J^[l] = D^[l] W^[l] against l: band min..max, median."""
    name, title = "layer_singular_values", "Per-layer Jacobian singular values"
    if (missing := need_probe(data, name, title)) is not None:
        return missing
    table = data.tables.get("per_layer")
    cols = ["sv_min_median", "sv_median_median", "sv_max_median"]
    if table is None or not set(cols) <= set(table) or table[cols].isna().all().all():
        return left_out(
            "no per-layer spectra were computed (probe.spectra = 0)", name, title
        )
    deepest = data.deepest().reset_index()
    deepest = deepest[deepest["depth"] >= 3]
    if deepest.empty:
        return left_out(
            "no network has a hidden layer (every run has depth L = 2)", name, title
        )
    hues, hue_note = hues_to_draw(data, "layer_sv", deepest["hue"])
    deepest = deepest[deepest["hue"].isin(hues)]
    rows = table[table["run_id"].isin(deepest["run_id"])]
    rows = rows.join(deepest.set_index("run_id")[["facet", "hue"]], on="run_id")
    rows = rows[(rows["layer"] >= 2) & (rows["layer"] < rows["depth"])]
    rows = rows[rows[cols].notna().any(axis=1)]
    if rows.empty:
        return left_out("no hidden layer has singular values", name, title)
    facets, note = facets_to_draw(data, rows["facet"])
    zeros = 0
    with style():
        fig, axes = panels(len(facets), sharey=False, sharex=True)
        for ax, facet in zip(axes, facets, strict=True):
            sub = rows[rows["facet"] == facet]
            top = np.nanmax(_positive(sub["sv_max_median"]), initial=0.0)
            values = sub[cols].to_numpy(dtype=float)
            nonzero = values[np.isfinite(values) & (values > SV_ZERO * top)]
            if nonzero.size == 0:
                continue
            bottom = nonzero.min() / 2.5
            for hue in hues:
                g = sub[sub["hue"] == hue].sort_values("layer")
                if g.empty:
                    continue
                color = data.color(hue)
                x = g["layer"].to_numpy()
                lo, mid, hi = (g[c].to_numpy(dtype=float) for c in cols)
                limit = SV_ZERO * top
                zeros += int(_is_zero(lo, limit).sum() + _is_zero(mid, limit).sum())
                lo, mid, hi = (
                    np.where(_is_zero(v, limit), bottom, v) for v in (lo, mid, hi)
                )
                ax.fill_between(x, lo, hi, color=color, alpha=0.16, lw=0)
                ax.plot(x, hi, "-", color=color, lw=0.7, alpha=0.8)
                ax.plot(x, lo, "-", color=color, lw=0.7, alpha=0.8)
                ax.plot(x, mid, "-", color=color, lw=2.0)
            ax.axhline(1.0, color="0.35", lw=0.9, ls=(0, (4, 3)))
            ax.set_yscale("log")
            ax.set_ylim(bottom, max(top, 1.0) * 1.6)
            integer_x(ax)
            panel_title(ax, facet, data)
        label_outer(axes, "layer l", "singular values of J^[l]")
        hue_legend(fig, data, hues)
        style_legend(
            fig,
            [
                ("median singular value", {"lw": 2.0}),
                ("smallest to largest (band)", {"lw": 7, "alpha": 0.25}),
                ("1 (isometry)", {"ls": (0, (4, 3)), "lw": 0.9}),
            ],
        )
    caption = (
        "Singular values of the per-layer Jacobian J^[l] = D^[l] W^[l] at the "
        "hidden layers l = 2..L-1 of the deepest network of each config: the band "
        "from the smallest to the largest singular value, and the median singular "
        "value (each the median over the (network, input) pairs with full "
        "spectra), on a log axis. The output layer (a single singular value) is "
        "left out."
    )
    if zeros:
        caption += (
            " Singular values that are 0 to working precision (below "
            f"{SV_ZERO:g} x the largest in the panel; D^[l] has zeros, e.g. ReLU "
            "units that are off) are drawn at the bottom edge."
        )
    return Drawn(name, title, fig, caption + note + hue_note)


def _is_zero(values: np.ndarray, limit: float) -> np.ndarray:
    return np.isfinite(values) & (values <= limit)


def _positive(values: pd.Series) -> np.ndarray:
    x = values.to_numpy(dtype=float)
    return np.where(np.isfinite(x) & (x > 0), x, np.nan)


# ---------------------------------------------------------------------------
# 4. Spectrum of the input-output Jacobian


MAX_SPECTRUM_LAYERS = 5


def jacobian_spectrum(data: ReportData) -> Drawn:
    """Distributions of log10 singular values of J^(l) at a few layers l."""
    import seaborn as sns

    name, title = "jacobian_spectrum", "Spectrum of the input-output Jacobian"
    if (missing := need_probe(data, name, title)) is not None:
        return missing
    table = data.tables.get("spectrum")
    if table is None or table.empty or "jac_log10_sv" not in table:
        return left_out(
            "no Jacobian spectra were computed (probe.spectra = 0)", name, title
        )
    deepest = data.deepest().reset_index()
    # J^(l) has min(n_l, n_1) singular values: more than one needs a hidden layer.
    deepest = deepest[(deepest["depth"] >= 3) & (deepest["input_dim"] > 1)]
    if deepest.empty:
        return left_out(
            "J^(l) has a single singular value in every run (depth L = 2 or "
            "input_dim = 1)",
            name,
            title,
        )
    hues, hue_note = hues_to_draw(data, "spectrum", deepest["hue"])
    deepest = deepest[deepest["hue"].isin(hues)]
    max_depth = int(deepest["depth"].max())
    layers = thin(list(range(2, max_depth)), MAX_SPECTRUM_LAYERS)
    rows = table[table["run_id"].isin(deepest["run_id"]) & table["layer"].isin(layers)]
    rows = rows.join(deepest.set_index("run_id")[["facet", "hue"]], on="run_id")
    sv = rows["jac_log10_sv"].to_numpy(dtype=float)
    dropped = int((~np.isfinite(sv)).sum())
    rows = rows[np.isfinite(sv)]
    if rows.empty:
        return left_out("every Jacobian singular value is 0 or missing", name, title)
    facets, note = facets_to_draw(data, rows["facet"])
    per_panel = rows.groupby("facet")["hue"].nunique().max()
    width = max(3.4, 0.32 * len(layers) * per_panel + 0.9)
    max_cols = max(1, min(3, int((MAX_WIDTH - 1.4) // width)))
    depths = ", ".join(
        f"{data.hue_names.get(h, h)}: L={int(d)}"
        for h, d in deepest.groupby("hue", sort=False)["depth"].max().items()
    )
    flat = 0
    with style():
        fig, axes = panels(
            len(facets), panel=(width, 3.0), max_cols=max_cols, sharey=False
        )
        for ax, facet in zip(axes, facets, strict=True):
            sub = rows[rows["facet"] == facet]
            present = [h for h in hues if h in set(sub["hue"])]
            sns.violinplot(
                data=sub,
                x="layer",
                y="jac_log10_sv",
                hue="hue",
                hue_order=present,
                order=layers,
                palette={h: data.color(h) for h in present},
                density_norm="width",
                cut=0,
                inner="quart",
                linewidth=0.7,
                saturation=1.0,
                legend=False,
                ax=ax,
            )
            flat += _mark_flat(ax, sub, layers, present, data)
            ax.axhline(0.0, color="0.35", lw=0.9, ls=(0, (4, 3)), zorder=0)
            panel_title(ax, facet, data)
        label_outer(axes, "layer l", "log10 singular values of J^(l)")
        hue_legend(fig, data, hues)
    caption = (
        "Distribution of the log10 singular values of the input-output Jacobian "
        "J^(l) = J^[l] ... J^[2] = d a^[l] / dx at a few layers l of the deepest "
        f"network of each config ({depths}), pooled over the (network, input) "
        "pairs with full spectra; the lines inside mark the quartiles. The "
        "spread, in decades, grows with depth unless the network is close to "
        "dynamical isometry (every singular value near 1: log10 = 0, dashed). "
        "Where the activation's derivative is exactly 0 (relu, hard_tanh), J^(l) "
        "is rank-deficient and its zero singular values appear as a tail of very "
        "small values at round-off level."
    )
    if flat:
        caption += (
            " A distribution without spread (every singular value the same to "
            f"{FLAT_SPREAD:g} decades, e.g. an exact isometry) has no violin: it "
            "is drawn as a short bar in its colour."
        )
    if dropped:
        caption += f" {dropped} singular values that are exactly 0 are not shown."
    return Drawn(name, title, fig, caption + note + hue_note)


FLAT_SPREAD = 1e-6
"""A spectrum whose log10 singular values span less than this is flat."""
VIOLIN_WIDTH = 0.8
"""The width seaborn gives all the violins of one category together."""


def _mark_flat(
    ax: Axes,
    rows: pd.DataFrame,
    layers: Sequence[int],
    hues: Sequence[str],
    data: ReportData,
) -> int:
    """Draw a bar where a violin would have no width (a spectrum with no spread:
    seaborn draws only its quartile lines, in black); returns how many."""
    count = 0
    width = VIOLIN_WIDTH / max(len(hues), 1)
    for i, layer in enumerate(layers):
        for j, hue in enumerate(hues):
            sv = rows.loc[(rows["layer"] == layer) & (rows["hue"] == hue)]
            sv = sv["jac_log10_sv"].to_numpy(dtype=float)
            if sv.size == 0 or np.ptp(sv) >= FLAT_SPREAD:
                continue
            center = i - VIOLIN_WIDTH / 2 + (j + 0.5) * width
            ax.plot(
                [center - 0.4 * width, center + 0.4 * width],
                [float(np.median(sv))] * 2,
                color=data.color(hue),
                lw=4,
                solid_capstyle="butt",
                zorder=3,
            )
            count += 1
    return count


# ---------------------------------------------------------------------------
# 5. Heatmap over (sigma_w, depth) or (width, depth)


MAX_HEATMAPS = 6
CHAOTIC_POINTS = 7
"""xi_c on the chaotic side costs a 2-D quadrature each: this many points."""


def _theory_overlay(
    activation: str, sigma_b: float, ratio: float, x_range: tuple[float, float]
) -> tuple[float | None, np.ndarray, np.ndarray, str]:
    """Critical sigma_w and the depth scale xi_c on a grid of nominal sigma_w.

    ``ratio`` is the hidden layers' effective sigma_w over the nominal one.
    Returns (critical nominal sigma_w or None, grid, xi_c on the grid, note).
    """
    from depthlab import theory

    note = ""
    critical = None
    try:
        critical = float(theory.critical_sigma_w(activation, sigma_b)) / ratio
    except (ValueError, ArithmeticError) as err:
        note = f" No critical sigma_w for {activation}: {err}."
    lo, hi = x_range
    if critical is not None and lo < critical < hi:
        ordered = np.linspace(lo, critical, 30)[:-1]
        chaotic = np.linspace(critical, hi, CHAOTIC_POINTS + 1)[1:]
        grid = np.concatenate([ordered, [critical], chaotic])
    else:
        grid = np.linspace(lo, hi, 30 if critical is None or critical >= hi else 12)
    xi = np.full(grid.shape, np.nan)
    for i, sw in enumerate(grid):
        try:
            xi[i] = theory.depth_scales(activation, ratio * sw, sigma_b)[1]
        except (ValueError, ArithmeticError):
            pass
    return critical, grid, xi, note


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


def _edges(centers: np.ndarray, log: bool) -> np.ndarray:
    c = np.log(centers) if log else centers.astype(float)
    if c.size == 1:
        e = np.array([c[0] - 0.5, c[0] + 0.5])
    else:
        mid = (c[1:] + c[:-1]) / 2
        e = np.concatenate([[2 * c[0] - mid[0]], mid, [2 * c[-1] - mid[-1]]])
    return np.exp(e) if log else e


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
    overlays: dict[tuple[Any, ...], Any] = {}
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
            xe, ye = _edges(x, log_x), _edges(y, False)
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
                    ax, g, (x.min(), x.max()), (ye[0], ye[-1]), notes, overlays
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


THEORY_COLOR = "#009E73"
XI_COLOR = "#D55E00"


def _draw_theory(
    ax: Axes,
    g: pd.DataFrame,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    notes: list[str],
    cache: dict[tuple[Any, ...], Any],
) -> set[str]:
    """Overlay the critical sigma_w and k * xi_c where they fall in the panel.

    Returns what was drawn: ``critical``, ``xi``, ``xi6``.
    """
    activation = str(g["activation"].iloc[0])
    sigma_b = float(g["sigma_b"].iloc[0])
    ratio = 1.0
    if "theory_sigma_w_eff" in g:
        r = float(np.nanmedian(g["theory_sigma_w_eff"] / g["sigma_w"]))
        ratio = r if math.isfinite(r) and r > 0 else 1.0
    if not math.isclose(ratio, 1.0, rel_tol=1e-9):
        notes.append(
            f" For init {g['init'].iloc[0]} at width {format_value(g['width'].iloc[0])}"
            f" the hidden layers' effective sigma_w is {format_value(ratio)} x the "
            "nominal one; the theory's lines are drawn at the nominal sigma_w."
        )
    key = (activation, sigma_b, ratio, x_range)
    try:
        if key not in cache:
            cache[key] = _theory_overlay(activation, sigma_b, ratio, x_range)
        critical, grid, xi, note = cache[key]
    except ImportError as err:
        notes.append(f" Theory overlay unavailable: {err}.")
        return set()
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


# ---------------------------------------------------------------------------
# 6. Fluctuations


def fluctuations(data: ReportData) -> Drawn:
    """Standard deviation of log10 ||grad|| against beta = sum_l 1/n_l."""
    name, title = "fluctuations", "Fluctuations against depth-to-width ratio"
    if (missing := need_probe(data, name, title)) is not None:
        return missing
    s = data.summary
    if "beta" not in s or "grad_log10_norm_std" not in s:
        return left_out("the runs have no beta or grad_log10_norm_std", name, title)
    if s["beta"].nunique() < 2:
        return left_out(
            "beta = sum over hidden layers of 1/n_l takes a single value "
            "(neither depth nor width was swept)",
            name,
            title,
        )
    facets, note = facets_to_draw(data)
    hues, hue_note = hues_to_draw(data, "fluct", s["hue"])
    shown = s[s["hue"].isin(hues) & s["facet"].isin(facets)]
    rng = finite_range(shown["grad_log10_norm_std"])
    top = pad(0.0, rng[1])[1] if rng else 1.0
    with style():
        fig, axes = panels(len(facets), sharex=True)
        for ax, facet in zip(axes, facets, strict=True):
            sub = shown[shown["facet"] == facet]
            for hue in hues:
                g = sub[sub["hue"] == hue].sort_values("beta")
                if g.empty:
                    continue
                ax.plot(
                    g["beta"].to_numpy(),
                    finite_or_nan(g["grad_log10_norm_std"]),
                    "-o",
                    color=data.color(hue),
                    lw=1.5,
                    ms=3.5,
                )
            ax.set_ylim(0.0, top)
            ax.set_xlim(left=0.0)
            panel_title(ax, facet, data)
        label_outer(
            axes, "beta = sum of 1/n_l over hidden layers", "std of log10 ||grad||"
        )
        hue_legend(fig, data, hues)
    caption = (
        "Standard deviation of log10 ||grad a^[L](x)|| over the sampled networks "
        "and inputs, against the depth-to-width ratio beta = (L - 2) / n, the sum "
        "of 1/n_l over the hidden layers. Mean-field theory has no fluctuations "
        "(beta -> 0); at finite width the log-norm spreads, its variance growing "
        "about linearly in beta (Hanin 2018), its standard deviation about as "
        "sqrt(beta). Gradients that are exactly 0 are left out."
    )
    return Drawn(name, title, fig, caption + note + hue_note)


FIGURES: tuple[Callable[[ReportData], Drawn], ...] = (
    grad_vs_depth,
    backprop_profile,
    layer_singular_values,
    jacobian_spectrum,
    heatmap,
    fluctuations,
)
"""Every figure of the report, in order."""

FIGURE_NAMES = (
    "grad_norm_vs_depth",
    "backprop_profile",
    "layer_singular_values",
    "jacobian_spectrum",
    "heatmap",
    "fluctuations",
)
"""The PNG file stems, in the same order."""


def draw_all(data: ReportData) -> list[Drawn]:
    """Draw and render every figure; an unexpected error leaves one figure out.

    Warnings are not caught: under ``filterwarnings = error`` they fail the build.
    """
    out = []
    for func, name in zip(FIGURES, FIGURE_NAMES, strict=True):
        try:
            drawn = func(data)
        except Exception as err:
            if isinstance(err, Warning):
                raise
            message = " ".join(f"{type(err).__name__}: {err}".split())[:300]
            drawn = Drawn(name, name, reason=f"error while drawing it: {message}")
        out.append(render(drawn))
    return out
