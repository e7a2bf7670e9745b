"""The report's figures: one function per figure.

Each function takes a :class:`~depthlab.report.data.ReportData` (tidy frames,
labels and colours) and returns a :class:`~depthlab.report.plotting.Drawn`: a
matplotlib Figure with its caption, or no figure and the reason the sweep's
data does not support it. :func:`draw_all` draws and renders them all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from depthlab.report.data import (
    ReportData,
    finite_or_nan,
    thin,
)
from depthlab.report.heatmap import heatmap
from depthlab.report.plotting import (
    MAX_WIDTH,
    USABLE_LOG10,
    Drawn,
    facets_to_draw,
    finite_range,
    hue_legend,
    hues_to_draw,
    integer_x,
    label_and_legends,
    label_outer,
    left_out,
    lines_of,
    need_probe,
    over,
    pad,
    panel_title,
    panels,
    quartile_band,
    render,
    style,
    zero_note,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["DRAW_ORDER", "FIGURES", "FIGURE_NAMES", "Drawn", "draw_all", "draw_one"]

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
            for hue, g in lines_of(sub, "hue", hues, "depth"):
                color = data.color(hue)
                x = g["depth"].to_numpy()
                q25, q75 = g["grad_log10_norm_q25"], g["grad_log10_norm_q75"]
                quartile_band(ax, x, q25, q75, lo_lim, color, alpha=0.2)
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
        labels = ("depth L (layers, input included)", "log10 ||grad a^[L](x)||")
        label_and_legends(fig, axes, data, hues, labels, entries)
    caption = (
        "Median of log10 ||grad a^[L](x)|| over the sampled networks and inputs, "
        "with the band from the 25th to the 75th percentile, against depth L. "
        "Dashed: mean-field theory. It predicts the mean of squares E||grad||^2, "
        "drawn as the root-mean-square norm log10 sqrt(E||grad||^2)"
    )
    caption += (
        ", next to the measured root-mean-square (dash-dotted). " if show_rms else ". "
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
    """Per-layer median and quartiles of the backprop norm for ``runs``, as the
    probe logged them in its ``per_layer`` table."""
    info = runs.set_index("run_id")[["facet", "hue", "is_deepest", "depth"]]
    theory = data.tables.get("theory")
    per_layer = data.tables.get("per_layer")
    stats = ["q25", "median", "q75"]
    columns = [f"backprop_log10_norm_{s}" for s in stats]
    if per_layer is None or not set(columns) <= set(per_layer):
        return None
    rows = per_layer[per_layer["run_id"].isin(runs["run_id"])]
    rows = rows[rows["layer"] < rows["depth"]]
    out = rows[["run_id", "layer", *columns]].rename(
        columns=dict(zip(columns, stats, strict=True))
    )
    if out.empty:
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
                    quartile_band(ax, x, g["q25"], g["q75"], lo_lim, color, alpha=0.18)
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
        entries = [
            ("median, deepest L (band: 25-75%)", {"lw": 2.0}),
            ("median, shallower L", {"lw": 1.1, "alpha": 0.8}),
            ("mean-field rms (theory)", {"ls": "--", "lw": 1.2}),
        ]
        labels = ("layer l", "log10 ||d a^[L] / d a^[l]||")
        label_and_legends(fig, axes, data, hues, labels, entries)
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
            for hue, g in lines_of(sub, "hue", hues, "layer"):
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
        entries = [
            ("median singular value", {"lw": 2.0}),
            ("smallest to largest (band)", {"lw": 7, "alpha": 0.25}),
            ("1 (isometry)", {"ls": (0, (4, 3)), "lw": 0.9}),
        ]
        labels = ("layer l", "singular values of J^[l]")
        label_and_legends(fig, axes, data, hues, labels, entries)
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
    keep = table["run_id"].isin(deepest["run_id"]) & table["layer"].isin(layers)
    # Only the columns the violins need: seaborn copies every column it is given.
    rows = table.loc[keep, ["run_id", "layer", "jac_log10_sv"]]
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
        labels = ("layer l", "log10 singular values of J^(l)")
        label_and_legends(fig, axes, data, hues, labels)
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
    groups = rows.groupby(["layer", "hue"], sort=False)["jac_log10_sv"]
    spread = groups.max() - groups.min()
    flat = spread[spread < FLAT_SPREAD]
    if flat.empty:
        return 0
    for i, layer in enumerate(layers):
        for j, hue in enumerate(hues):
            if (layer, hue) not in flat.index:
                continue
            sv = rows.loc[(rows["layer"] == layer) & (rows["hue"] == hue)]
            sv = sv["jac_log10_sv"].to_numpy(dtype=float)
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
            for hue, g in lines_of(sub, "hue", hues, "beta"):
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


DRAW_ORDER = (3, 2, 1, 0, 5, 4)
"""The order in which :func:`draw_all` hands the figures to its processes: the
costliest first (measured on sweeps of 49 and 196 probe jobs: the spectrum's
violins, then the log axis of the singular values, then the profile's lines),
so that the last to start is a cheap one."""


def draw_all(data: ReportData, *, workers: int | None = None) -> list[Drawn]:
    """Draw and render every figure; an unexpected error leaves one figure out.

    Warnings are not caught: under ``filterwarnings = error`` they fail the build.

    Parameters
    ----------
    data : ReportData
        The sweep's plotting frames (:func:`~depthlab.report.data.prepare`).
    workers : int, optional
        Processes that draw the figures side by side (default: one per CPU
        this process may use, where forking is safe:
        :func:`~depthlab.report.parallel.processes`); 1 draws them one after
        the other in this process. The figures are the same either way, byte
        for byte.

    Returns
    -------
    list of Drawn
        One per figure, in the order of :data:`FIGURES`, rendered to PNG.
    """
    from depthlab.report.parallel import run_tasks

    def task(index: int) -> Drawn:
        return draw_one(data, index)

    return run_tasks(task, len(FIGURES), order=DRAW_ORDER, workers=workers)


def draw_one(data: ReportData, index: int) -> Drawn:
    """Draw and render one figure; an unexpected error leaves it out.

    Parameters
    ----------
    data : ReportData
        The sweep's plotting frames.
    index : int
        The figure's place in :data:`FIGURES`.

    Returns
    -------
    Drawn
        The figure rendered to PNG, or left out with the reason (the error's
        type and message); a warning raised as an error is raised.
    """
    func, name = FIGURES[index], FIGURE_NAMES[index]
    try:
        drawn = func(data)
    except Exception as err:
        if isinstance(err, Warning):
            raise
        message = " ".join(f"{type(err).__name__}: {err}".split())[:300]
        drawn = Drawn(name, name, reason=f"error while drawing it: {message}")
    return render(drawn)
