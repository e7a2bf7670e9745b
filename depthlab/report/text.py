"""Text and tables generated from a sweep's data (plain strings; html.py escapes).

Definitions used in the text:

- **mean-square factor** (``mean_sq_factor``): the measured per-layer factor of
  the mean squared backprop norm E||d a^[L]/d a^[l]||^2, geometric mean over the
  hidden layers. Mean-field theory predicts it: chi.
- **typical factor** (``typical_factor``): 10**(2 * slope) of the mean of log10
  backprop norms, the growth of one typical network's squared gradient. At finite
  width it is below the mean-square factor (E log X <= log E X).
- **theory factor** (``theory_factor``): the geometric mean of the theory's
  chi^[l] over the hidden layers of that network (at the actual q^[l]);
  ``theory_chi1`` is chi_1 at the fixed point q*.
- **regime**, from the theory factor chi of the deepest network (chi_1 where
  it is unknown): vanishing if chi < 1 - REGIME_TOLERANCE, exploding if
  chi > 1 + REGIME_TOLERANCE, near-critical otherwise. chi, not chi_1, decides
  what happens at the swept depths: e.g. tanh at sigma_w = 1, sigma_b = 0 has
  chi_1 = 1 at q* = 0, but q^[l] approaches 0 only like 1/l and chi < 1.
- **usable depth**: the largest swept depth L such that the median gradient norm
  lies in [1e-6, 1e6] at L and at every smaller swept depth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from depthlab.report.data import CONFIG_KEYS, ReportData, format_value

REGIME_TOLERANCE = 0.05
"""|chi - 1| <= 0.05 is near-critical: over 50 layers the mean square changes
by at most 1.05**50 ~ 11 (a factor ~3.4 in the norm)."""
USABLE_LOG10 = 6.0
"""The usable range of the median gradient norm: [1e-6, 1e6]."""
GAP_NEGLIGIBLE = 0.02
"""A typical factor within 2% of the mean-square factor counts as no gap."""


@dataclass
class Overview:
    """What was swept: lines of text, and the failed runs."""

    lines: list[str]
    failed: pd.DataFrame
    """run_name, status of every child run that did not finish."""


def regime(chi: float) -> str:
    """``vanishing``, ``near-critical``, ``exploding`` (or ``unknown`` for nan).

    Examples
    --------
    >>> regime(0.5), regime(1.01), regime(1.3)
    ('vanishing', 'near-critical', 'exploding')
    """
    if not math.isfinite(chi):
        return "unknown"
    if chi < 1.0 - REGIME_TOLERANCE:
        return "vanishing"
    if chi > 1.0 + REGIME_TOLERANCE:
        return "exploding"
    return "near-critical"


def usable_depth(
    depths: np.ndarray, median_log10: np.ndarray
) -> tuple[int | None, bool]:
    """The usable depth and whether every swept depth is usable.

    Returns ``(None, False)`` when even the shallowest swept depth is outside
    [1e-6, 1e6].

    Examples
    --------
    >>> usable_depth(np.array([2, 10, 20]), np.array([-1.0, -5.0, -9.0]))
    (10, False)
    """
    order = np.argsort(depths)
    d = np.asarray(depths)[order]
    m = np.asarray(median_log10, dtype=float)[order]
    inside = np.isfinite(m) & (np.abs(m) <= USABLE_LOG10)
    if not inside[0]:
        return None, False
    bad = np.flatnonzero(~inside)
    if bad.size == 0:
        return int(d[-1]), True
    return int(d[bad[0] - 1]), False


def _fmt(x: float | None, digits: int = 3) -> str:
    """A number with ``digits`` significant digits; inf, -inf, or n/a."""
    if x is None or pd.isna(x):
        return "n/a"
    if not np.isfinite(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}g}"


def _values(values: list) -> str:
    if len(values) > 6 and all(isinstance(v, int | np.integer) for v in values):
        steps = set(np.diff(values).tolist())
        if len(steps) == 1:
            step = steps.pop()
            suffix = f" step {step}" if step != 1 else ""
            return f"{values[0]}..{values[-1]}{suffix} ({len(values)} values)"
    text = ", ".join(format_value(v) for v in values[:12])
    if len(values) > 12:
        text += f", ... ({len(values)} values)"
    return text


def overview(data: ReportData) -> Overview:
    """What was swept, how many runs, which failed."""
    runs = data.runs
    status = runs["status"].value_counts() if len(runs) else pd.Series(dtype=int)
    n = len(runs)
    parts = [f"{int(v)} {k.lower()}" for k, v in status.items()]
    lines = [f"{n} job run(s): {', '.join(parts) if parts else 'none'}."]
    if n and not data.has_probe_data:
        lines.append("No finished run has probe results: there is nothing to plot.")
    if data.varying:
        swept = "; ".join(f"{k} = {_values(v)}" for k, v in data.varying.items())
        lines.append(f"Swept: {swept}.")
    elif data.has_probe_data:
        lines.append("Nothing was swept: every finished run has the same config.")
    fixed = [k for k in CONFIG_KEYS if k in data.fixed]
    if fixed:
        lines.append(
            "Fixed: "
            + ", ".join(f"{k}={format_value(data.fixed[k])}" for k in fixed)
            + "."
        )
    if data.config_order:
        lines.append(
            f"{len(data.config_order)} config(s) (everything swept except depth), "
            f"one colour per {', '.join(data.hue_keys) or 'config'}"
            + (
                f", one panel per {', '.join(data.facet_keys)}."
                if data.facet_keys
                else "."
            )
        )
    failed = runs[runs["status"] != "FINISHED"][["run_name", "status"]] if n else runs
    return Overview(lines=lines, failed=failed.reset_index(drop=True))


def config_table(data: ReportData) -> pd.DataFrame:
    """One row per config: depths, usable depth, factors, chi, xi_c, regime."""
    if not data.has_probe_data:
        return pd.DataFrame()
    rows = []
    for _, r in _per_config(data).iterrows():
        rows.append(
            {
                "config": r["config"],
                "depths": r["depths"],
                "median log10 |grad| at deepest L": _fmt(r["grad_log10_norm_median"]),
                "usable depth": _usable(r),
                "mean-square factor (measured)": _fmt(r.get("mean_sq_factor"), 4),
                "typical factor (measured)": _fmt(r.get("typical_factor"), 4),
                "chi (theory, deepest L)": _fmt(r.get("theory_factor"), 4),
                "chi_1 at q* (theory)": _fmt(r.get("theory_chi1"), 4),
                "xi_c (layers)": _fmt(r.get("theory_xi_c")),
                "regime": r["regime"],
            }
        )
    return pd.DataFrame(rows)


def _per_config(data: ReportData) -> pd.DataFrame:
    """The deepest run of each config, with its usable depth and regime."""
    rows = []
    s = data.summary
    for config in data.config_order:
        g = s[s["config"] == config].sort_values("depth")
        deep = g.iloc[-1].to_dict()
        usable, all_usable = usable_depth(
            g["depth"].to_numpy(), g["grad_log10_norm_median"].to_numpy()
        )
        chi1 = float(deep.get("theory_chi1", np.nan))
        chi = float(deep.get("theory_factor", np.nan))
        depths = g["depth"].tolist()
        deep.update(
            config=config,
            depths=_values(depths) if len(depths) > 1 else str(depths[0]),
            usable=usable,
            all_usable=all_usable,
            regime=regime(chi if math.isfinite(chi) else chi1),
            regime_q_star=regime(chi1),
        )
        rows.append(deep)
    return pd.DataFrame(rows)


def _names(configs: pd.Series, limit: int = 8) -> str:
    """Config labels (which contain commas) joined by semicolons."""
    names = [str(c) for c in configs]
    if len(names) > limit:
        return "; ".join(names[:limit]) + f"; and {len(names) - limit} more"
    return "; ".join(names)


def findings(data: ReportData) -> list[str]:
    """What the sweep shows, across configs: theory against measurement, the
    finite-width gap, regimes, the critical sigma_w, usable depths."""
    if not data.has_probe_data:
        return []
    c = _per_config(data)
    out = []
    ms, chi, typ = (
        c.get(k, pd.Series(np.nan, index=c.index)).astype(float)
        for k in ("mean_sq_factor", "theory_factor", "typical_factor")
    )
    rel = (ms / chi - 1.0).where(np.isfinite(ms) & np.isfinite(chi))
    if rel.notna().any():
        worst = rel.abs().idxmax()
        where = (
            f"within {rel.abs().max():.1%} for every config (largest gap: "
            f"{c.loc[worst, 'config']}, {rel[worst]:+.1%})."
            if rel.notna().sum() > 1
            else f"{rel[worst]:+.1%}."
        )
        out.append(
            "Mean-field chi against the measured mean-square factor per layer: "
            + where
            + (
                " Theory predicts the mean of squares well."
                if rel.abs().max() < 0.05
                else " Where the gap exceeds 5%, finite width or too few samples"
                " limit the mean-field description."
            )
        )
    gap = (1.0 - typ / ms).where(np.isfinite(typ) & np.isfinite(ms) & (ms > 0))
    if gap.notna().any():
        widths = sorted({format_value(w) for w in c["width"]})
        big = gap.idxmax()
        spread = (
            f"{gap.min():.1%} to {gap.max():.1%}"
            if gap.notna().sum() > 1
            else f"{gap.max():.1%}"
        )
        text = (
            f"The typical factor is {spread} below the mean-square factor (width "
            f"{', '.join(widths)}): mean field describes the mean of squares, and a "
            "single network's gradient grows or decays at a lower rate per layer, "
            "because its log-norm fluctuates at finite width (E log ||g||^2 < "
            "log E ||g||^2); the gap grows with depth-to-width and with saturation "
            "of the activation."
        )
        if gap.notna().sum() > 1:
            text += f" It is largest for {c.loc[big, 'config']} ({gap[big]:.1%})."
        out.append(text)
        flip = c[(chi > 1.0) & (typ < 1.0)]
        if len(flip):
            out.append(
                f"For {_names(flip['config'])} the mean of squares grows with depth "
                "(chi > 1) while the typical network's gradient shrinks (typical "
                "factor < 1): at this width, 'exploding' in mean field does not mean "
                "that a typical network explodes."
            )
    lo, hi = 1.0 - REGIME_TOLERANCE, 1.0 + REGIME_TOLERANCE
    meaning = {
        "vanishing": f"Vanishing (chi < {lo:g})",
        "near-critical": f"Near-critical ({lo:g} <= chi <= {hi:g})",
        "exploding": f"Exploding (chi > {hi:g})",
        "unknown": "Regime unknown (no theory value)",
    }
    regimes = [
        f"{meaning[r]}: {_names(c.loc[c['regime'] == r, 'config'])}."
        for r in meaning
        if (c["regime"] == r).any()
    ]
    if regimes:
        out.append(" ".join(regimes))
    out += _critical_lines(data)
    finite = c[c["usable"].notna()]
    if "depth" in data.varying and len(finite):
        best = finite.loc[finite["usable"].astype(float).idxmax()]
        worst = finite.loc[finite["usable"].astype(float).idxmin()]
        text = "Usable depth (median gradient norm within [1e-6, 1e6])"
        if _usable(best) == _usable(worst):
            text += f": {_usable(best)}" + (" for every config." if len(c) > 1 else ".")
        else:
            text += (
                f": from {_usable(worst)} ({worst['config']}) to {_usable(best)} "
                f"({best['config']})."
            )
        out.append(text)
    zero = c[c.get("frac_zero", pd.Series(0.0, index=c.index)).astype(float) > 0]
    if len(zero):
        out.append(
            f"Some gradients are exactly 0 ({_names(zero['config'])}; up to "
            f"{zero['frac_zero'].max():.0%} at the deepest L): the output unit's "
            "activation has a zero derivative there (e.g. a ReLU output that is "
            "off). output_activation=linear avoids it."
        )
    return out


def _usable(row: pd.Series) -> str:
    if pd.isna(row["usable"]):
        return "none"
    return f">= {int(row['usable'])}" if row["all_usable"] else str(int(row["usable"]))


def _critical_lines(data: ReportData) -> list[str]:
    """The theory's critical sigma_w for each swept (activation, sigma_b, init)."""
    if "sigma_w" not in data.varying:
        return []
    try:
        from depthlab import theory
    except ImportError:
        return []
    s = data.summary
    out = []
    for (activation, sigma_b, init), g in s.groupby(
        ["activation", "sigma_b", "init"], sort=True
    ):
        ratio = 1.0
        if "theory_sigma_w_eff" in g:
            r = float(np.nanmedian(g["theory_sigma_w_eff"] / g["sigma_w"]))
            ratio = r if math.isfinite(r) and r > 0 else 1.0
        try:
            critical = float(theory.critical_sigma_w(str(activation), float(sigma_b)))
        except (ValueError, ArithmeticError):
            continue
        text = (
            f"Mean-field critical sigma_w for {activation} at sigma_b="
            f"{format_value(sigma_b)}: {_fmt(critical / ratio, 4)}"
        )
        if not math.isclose(ratio, 1.0, rel_tol=1e-9):
            text += (
                f" (init {init}: effective sigma_w {_fmt(critical, 4)}, "
                f"{format_value(ratio)} x the nominal one)"
            )
        lo, hi = float(g["sigma_w"].min()), float(g["sigma_w"].max())
        if lo == hi:
            # sigma_w varies across inits, not within this one.
            text += f"; these runs have sigma_w = {format_value(lo)}."
        elif lo <= critical / ratio <= hi:
            text += "; the swept sigma_w range contains it."
        else:
            text += (
                f"; outside the swept range {format_value(lo)}..{format_value(hi)}."
            )
        out.append(text)
    return out


def config_findings(data: ReportData) -> list[str]:
    """One line per config: factors against theory, regime, usable depth."""
    if not data.has_probe_data:
        return []
    out = []
    for _, row in _per_config(data).iterrows():
        L = int(row["depth"])
        ms = float(row.get("mean_sq_factor", np.nan))
        typ = float(row.get("typical_factor", np.nan))
        chi = float(row.get("theory_factor", np.nan))
        chi1 = float(row.get("theory_chi1", np.nan))
        xi_c = float(row.get("theory_xi_c", np.nan))
        parts = [
            f"{row['config']} (deepest L={L}, width {format_value(row['width'])}):"
        ]
        if math.isfinite(ms) and math.isfinite(chi):
            parts.append(
                f"mean-square factor {_fmt(ms, 4)} against mean-field chi "
                f"{_fmt(chi, 4)} ({ms / chi - 1:+.1%});"
            )
        elif L < 3:
            parts.append("no hidden layer, so no per-layer factors;")
        if math.isfinite(typ) and math.isfinite(ms) and ms > 0:
            gap = 1.0 - typ / ms
            if abs(gap) < GAP_NEGLIGIBLE:
                parts.append(f"typical factor {_fmt(typ, 4)} (no finite-width gap);")
            elif gap > 0:
                parts.append(
                    f"typical factor {_fmt(typ, 4)}, {gap:.1%} lower (finite width);"
                )
            else:
                parts.append(
                    f"typical factor {_fmt(typ, 4)}, {-gap:.1%} higher (unusual: "
                    "too few samples?);"
                )
        if row["regime"] != "unknown":
            parts.append(f"{row['regime']};")
        if math.isfinite(chi1) and row["regime_q_star"] != row["regime"]:
            parts.append(
                f"chi_1 at q* is {_fmt(chi1, 4)} ({row['regime_q_star']} for an "
                f"infinitely deep network), but at L={L} the layers have not reached "
                f"q*, and their mean chi is {_fmt(chi, 4)};"
            )
        if math.isfinite(xi_c):
            parts.append(f"xi_c = {_fmt(xi_c)} layers;")
        elif np.isposinf(xi_c):
            parts.append("xi_c diverges;")
        if pd.isna(row["usable"]):
            parts.append(
                "even the shallowest median gradient norm is outside [1e-6, 1e6]."
            )
        else:
            parts.append(f"usable depth {_usable(row)}.")
        vanished = float(row.get("frac_vanished", 0.0))
        if vanished > 0:
            parts.append(
                f"At L={L}, {vanished:.0%} of the gradient norms are below 1e-12."
            )
        out.append(" ".join(parts))
    return out


def definitions() -> list[str]:
    """How to read the numbers (the thresholds used)."""
    lo = 1.0 - REGIME_TOLERANCE
    hi = 1.0 + REGIME_TOLERANCE
    return [
        "Mean-square factor: the measured per-layer factor of the mean squared "
        "backprop norm E||d a^[L]/d a^[l]||^2 (geometric mean over layers), what "
        "mean-field theory predicts as chi.",
        "Typical factor: 10^(2 x slope) of the mean of log10 backprop norms, the "
        "per-layer factor of one typical network's squared gradient; lower than the "
        "mean-square factor at finite width.",
        "chi (theory, deepest L): the geometric mean of the theory's chi^[l] over "
        "the hidden layers of the deepest network; chi_1 at q*: its value at the "
        "fixed point of the length map (an infinitely deep network).",
        "Regime from chi, the theory's factor for the deepest network (chi_1 at "
        f"q* where it is unknown): vanishing below {lo:g}, exploding above {hi:g}, "
        "near-critical in between.",
        "Usable depth: the largest swept depth up to which the median gradient norm "
        "stays within [1e-6, 1e6].",
    ]


def runs_table(data: ReportData) -> pd.DataFrame:
    """Every child run: name, status, median and theory rms of log10 |grad|."""
    runs = data.runs
    if data.has_probe_data:
        # The summary's statistics, where the stored ones were nan (zeros).
        robust = data.summary.set_index("run_id")
        runs = runs.copy()
        for column in ("grad_log10_norm_median",):
            if column in robust and column in runs:
                runs[column] = runs[column].where(
                    runs[column].notna(), runs["run_id"].map(robust[column])
                )
    cols = {
        "run_name": "run",
        "status": "status",
        "grad_log10_norm_median": "median log10 |grad|",
        "grad_log10_rms": "rms log10 |grad|",
        "theory_grad_log10_rms": "theory rms log10 |grad|",
        "grad_log10_norm_std": "std log10 |grad|",
    }
    present = [c for c in cols if c in runs]
    table = runs[present].copy()
    if "depth" in runs:
        table = table.assign(_d=pd.to_numeric(runs["depth"], errors="coerce"))
        table = table.sort_values(["_d", "run_name"], kind="stable").drop(columns="_d")
    for c in present[2:]:
        table[c] = table[c].map(lambda v: _fmt(float(v)))
    return table.rename(columns=cols).reset_index(drop=True)
