"""The numbers of the studies in experiments/, as markdown tables.

Usage (after the study's sweep, ``python -m depthlab +experiment=NAME`` run from
``experiments/NAME/``)::

    python experiments/summarize.py --experiment vanishing
    python experiments/summarize.py --experiment edge_of_chaos
    python experiments/summarize.py --experiment orthogonal_vs_gaussian
    python experiments/summarize.py --experiment depth_to_width
    python experiments/summarize.py --experiment NAME --tracking-uri URI \\
        [--run PARENT_RUN_ID] [--study vanishing|edge_of_chaos|...]

It reads the latest sweep (parent run) of the MLflow experiment NAME with
:mod:`depthlab.tracking` alone, and prints the tables that the study's
README.md quotes. The default tracking URI is the study folder's store,
``sqlite:///experiments/<study>/mlflow.db``; ``--study`` (default: NAME) picks
the analysis when the experiment was renamed.

Conventions (those of depthlab):

- *mean-square factor*: the measured per-layer factor of E||d a^[L]/d a^[l]||^2
  within the deepest network; mean-field theory predicts it (chi).
- *typical factor*: 10^(2 x slope) of the mean of log10 backprop norms within
  the deepest network, the per-layer factor of a typical network's squared
  gradient; below the mean-square factor at finite width.
- *decades per layer* of the norm ||g||: 0.5 log10 of a factor of ||g||^2, or
  the slope of a log10 norm against depth L, fitted over the swept depths
  L >= FIT_MIN_DEPTH (the first layers are a transient: q^[l] approaches q*).
- Intervals are cluster bootstraps over sampled networks (inputs of one network
  are correlated), with a fixed seed, so that every number is reproducible.
  Every job of a sweep starts from the same seed (``seed: 0``): network k of
  one run and network k of another share random draws (the same standard
  normal weights scaled by sigma_w; the same first layers at another depth).
  The bootstrap therefore resamples the same network indices in every run, and
  least-squares slopes against depth are given without a standard error (their
  points are not independent).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special, stats

from depthlab import theory, tracking
from depthlab.report.data import ReportData, format_value, prepare
from depthlab.report.text import usable_depth

HERE = Path(__file__).resolve().parent
FIT_MIN_DEPTH = 10
"""Slopes against depth are fitted over the swept depths L >= this."""
N_BOOT = 400
"""Bootstrap replicates."""
LN10 = math.log(10.0)


# ---------------------------------------------------------------------------
# Helpers


def fmt(x: float | None, digits: int = 3) -> str:
    """A number with ``digits`` significant digits (n/a, inf, -inf)."""
    if x is None or pd.isna(x):
        return "n/a"
    x = float(x)
    if not math.isfinite(x):
        return "inf" if x > 0 else "-inf"
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}"


def fixed(x: float | None, decimals: int = 3) -> str:
    """A number with a fixed number of decimals (n/a for nan)."""
    if x is None or pd.isna(x):
        return "n/a"
    if not math.isfinite(float(x)):
        return "inf" if x > 0 else "-inf"
    return f"{float(x):+.{decimals}f}" if decimals else f"{float(x):.0f}"


def pm(x: float, se: float, decimals: int = 3) -> str:
    """``x ± se`` with fixed decimals."""
    if pd.isna(se):
        return f"{x:.{decimals}f}"
    return f"{x:.{decimals}f} ± {se:.{decimals}f}"


def markdown(rows: Sequence[dict[str, str]]) -> str:
    """A markdown table from rows of strings (keys of the first row are the
    header)."""
    if not rows:
        return "(no rows)\n"
    header = list(rows[0])

    def cell(text: object) -> str:  # a | inside a cell would end it
        return str(text).replace("|", "\\|")

    lines = [
        "| " + " | ".join(cell(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(cell(r[h]) for h in header) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def section(title: str, note: str = "") -> None:
    print(f"\n### {title}\n")
    if note:
        print(note.strip() + "\n")


def fit_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares slope, intercept and standard error of the slope."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 2:
        return math.nan, math.nan, math.nan
    res = stats.linregress(x, y)
    se = float(res.stderr) if x.size > 2 else math.nan
    return float(res.slope), float(res.intercept), se


def crossings(x: np.ndarray, y: np.ndarray, level: float) -> list[float]:
    """Every x where y crosses ``level``, by linear interpolation between the
    neighbouring grid points (x sorted)."""
    order = np.argsort(x)
    x, y = np.asarray(x, dtype=float)[order], np.asarray(y, dtype=float)[order]
    d = y - level
    out = []
    for i in range(len(x) - 1):
        if not (np.isfinite(d[i]) and np.isfinite(d[i + 1])):
            continue
        if d[i] == 0:
            out.append(float(x[i]))
        elif d[i] * d[i + 1] < 0:
            t = d[i] / (d[i] - d[i + 1])
            out.append(float(x[i] + t * (x[i + 1] - x[i])))
    if len(x) and np.isfinite(d[-1]) and d[-1] == 0:
        out.append(float(x[-1]))
    return out


def crossing_text(values: list[float], digits: int = 4, *, known: bool = True) -> str:
    """The first crossing, and a note if there are several (noise)."""
    if not known:
        return "n/a (a single depth)"
    if not values:
        return "none in the swept range"
    text = fmt(values[0], digits)
    if len(values) > 1:
        text += f" (also {', '.join(fmt(v, digits) for v in values[1:])})"
    return text


def log10_mean_sq(x: np.ndarray) -> float:
    """log10 mean(10^(2 x)) of log10 norms, without overflow (finite x only)."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan
    top = 2.0 * x.max()
    return float(top + np.log10(np.mean(10.0 ** (2.0 * x - top))))


def usable(g: pd.DataFrame) -> str:
    """The usable depth of one config's runs (median norm within [1e-6, 1e6])."""
    depth, everywhere = usable_depth(
        g["depth"].to_numpy(), g["grad_log10_norm_median"].to_numpy()
    )
    if depth is None:
        return "none"
    return f">= {depth}" if everywhere else str(depth)


def network_picks(
    samples: pd.DataFrame, run_ids: Sequence[str], seed: int = 0
) -> np.ndarray:
    """Bootstrap resamples of network indices, shared by the runs ``run_ids``.

    Every job of a sweep draws its networks from the same seed, so network k of
    one run and network k of another share random draws (the same standard
    normal weights, scaled by sigma_w; the same first layers at another depth):
    resampling the same indices in every run keeps that correlation.
    """
    k = int(samples[samples["run_id"].isin(run_ids)]["net"].max()) + 1
    return np.random.default_rng(seed).integers(0, k, size=(N_BOOT, k))


def _members(nets: np.ndarray) -> dict[int, np.ndarray]:
    return {int(n): np.flatnonzero(nets == n) for n in np.unique(nets)}


def _resample(members: dict[int, np.ndarray], pick: np.ndarray) -> np.ndarray:
    return np.concatenate([members[int(j)] for j in pick if int(j) in members])


def within_network_factors(
    layers: pd.DataFrame, run_id: str, depth: int, picks: np.ndarray
) -> dict[str, float]:
    """Mean-square and typical factors of the deepest network, from the
    backprop norms at layers 1 and L-1 (as depthlab.probe computes them), and
    their bootstrap replicates over networks (``picks``)."""
    rows = layers[(layers["run_id"] == run_id) & layers["layer"].isin([1, depth - 1])]
    wide = rows.pivot_table(
        index=["net", "input"], columns="layer", values="backprop_log10_norm"
    )
    first, last = wide[1].to_numpy(), wide[depth - 1].to_numpy()
    members = _members(wide.index.get_level_values("net").to_numpy())
    steps = depth - 2

    def factors(idx: np.ndarray) -> tuple[float, float]:
        a, b = first[idx], last[idx]
        ms = 10 ** ((log10_mean_sq(a) - log10_mean_sq(b)) / steps)
        ok = np.isfinite(a) & np.isfinite(b)
        typ = 10 ** (2 * (a[ok].mean() - b[ok].mean()) / steps)
        return ms, typ

    ms, typ = factors(np.arange(len(first)))
    boot = np.array([factors(_resample(members, pick)) for pick in picks])
    return {"ms": ms, "typ": typ, "ms_boot": boot[:, 0], "typ_boot": boot[:, 1]}


def header(data: ReportData, uri: str, experiment: str) -> None:
    s = data.summary
    name = data.parent_name or "sweep"
    print(f"## {experiment}: {name} (parent run {data.parent_run_id})\n")
    print(
        f"Read from `{uri}`: {len(data.runs)} job runs, {len(s)} finished probe "
        f"runs, {len(data.config_order)} config(s), depths "
        f"{int(s['depth'].min())}..{int(s['depth'].max())}."
    )


def deepest(g: pd.DataFrame) -> pd.Series:
    return g.sort_values("depth").iloc[-1]


# ---------------------------------------------------------------------------
# vanishing


def vanishing(data: ReportData) -> None:
    s = data.summary
    layers = data.tables["layers"]
    picks = network_picks(data.tables["samples"], s["run_id"])
    rows_f, rows_d, rows_l = [], [], []
    for config in data.config_order:
        g = s[s["config"] == config].sort_values("depth")
        d = deepest(g)
        L = int(d["depth"])
        fit = g[g["depth"] >= FIT_MIN_DEPTH]
        med = fit_line(fit["depth"], fit["grad_log10_norm_median"])
        rms = fit_line(fit["depth"], fit["grad_log10_rms"])
        th = fit_line(fit["depth"], fit["theory_grad_log10_rms"])
        chi1 = float(d["theory_chi1"])
        f = within_network_factors(layers, d["run_id"], L, picks)
        ms_lo, ms_hi = np.quantile(f["ms_boot"], [0.16, 0.84])
        typ_lo, typ_hi = np.quantile(f["typ_boot"], [0.16, 0.84])
        rows_f.append(
            {
                "config": config,
                "effective sigma_w": fmt(d["theory_sigma_w_eff"], 4),
                "q*": fmt(d["theory_q_star"]),
                "chi_1 at q* (theory)": fmt(chi1, 4),
                f"chi (theory, mean over layers, L={L})": fmt(d["theory_factor"], 4),
                "mean-square factor (measured)": f"{fmt(f['ms'], 4)} "
                f"({fmt(ms_lo, 4)}..{fmt(ms_hi, 4)})",
                "typical factor (measured)": f"{fmt(f['typ'], 4)} "
                f"({fmt(typ_lo, 4)}..{fmt(typ_hi, 4)})",
            }
        )
        rows_d.append(
            {
                "config": config,
                "theory: 0.5 log10 chi_1": fixed(0.5 * math.log10(chi1)),
                "theory rms, fit over L": fixed(th[0]),
                "measured rms, fit over L": fixed(rms[0]),
                "measured median, fit over L": fixed(med[0]),
                f"mean-square, within L={L}": fixed(
                    0.5 * math.log10(d["mean_sq_factor"])
                ),
                f"typical, within L={L}": fixed(0.5 * math.log10(d["typical_factor"])),
                "usable depth": usable(g),
            }
        )
        for depth in (10, 20, 30, 40, 50):
            r = g[g["depth"] == depth]
            if r.empty:
                continue
            r = r.iloc[0]
            rows_l.append(
                {
                    "config": config,
                    "L": str(depth),
                    "median": fixed(r["grad_log10_norm_median"], 2),
                    "25%..75%": f"{r['grad_log10_norm_q25']:.2f} .. "
                    f"{r['grad_log10_norm_q75']:.2f}",
                    "rms (measured)": fixed(r["grad_log10_rms"], 2),
                    "rms (theory)": fixed(r["theory_grad_log10_rms"], 2),
                }
            )
    section(
        "Per-layer factors of E||g||^2 (deepest network)",
        "Theory at the hidden layers' effective sigma_w = sqrt(n_{l-1} Var W_ij). "
        "Mean-square factor: what mean field predicts (chi); typical factor: the "
        "per-layer factor of a typical network's ||g||^2; in brackets their "
        "16%..84% bootstrap interval over networks.",
    )
    print(markdown(rows_f))
    section(
        "Decay rate: decades per layer of the gradient norm ||g||",
        f"Least-squares slopes over the swept depths L >= {FIT_MIN_DEPTH}. "
        "'within L' columns: the per-layer factors of the deepest "
        "network, as 0.5 log10 factor. The rms columns are the mean-field "
        "quantity (sqrt E||g||^2); the median is the typical network.",
    )
    print(markdown(rows_d))
    section(
        "log10 ||g|| at a few depths",
        "Median and quartiles over networks x inputs; rms = 0.5 log10 of the mean "
        "of ||g||^2; theory: mean field's 0.5 log10 E||g||^2.",
    )
    print(markdown(rows_l))
    higham = s[s["init"] == "higham"]
    if len(higham):
        sb = float(higham["sigma_b"].iloc[0])
        sw = float(higham["sigma_w"].iloc[0])
        act = str(higham["activation"].iloc[0])
        crit = theory.critical_sigma_w(act, sb)
        n_crit = (crit / sw) ** 2
        print(
            f"Theory: with init=higham the effective sigma_w is {sw:g} sqrt(n): "
            f"mean field puts the {act} network at sigma_b={sb:g} on the critical "
            f"line (chi_1 = 1, effective sigma_w = {crit:.4g}) at width n = "
            f"({crit:.4g}/{sw:g})^2 = {n_crit:.0f}."
        )
    gauss = s[s["init"] != "higham"]
    if len(gauss):
        act = str(gauss["activation"].iloc[0])
        sb = float(gauss["sigma_b"].iloc[0])
        print(
            f"Theory: fan-in Gaussian {act} at sigma_b={sb:g} is critical at "
            f"sigma_w = {theory.critical_sigma_w(act, sb):.4g}."
        )


# ---------------------------------------------------------------------------
# edge_of_chaos


def _scale(factor: float) -> str:
    """The depth scale 1/ln(1/factor) (negative for growth), as text."""
    return fmt(-1.0 / math.log(factor)) if factor != 1 else "inf"


def _crossing_ci(x: np.ndarray, boots: np.ndarray) -> str:
    """16%..84% interval of the first crossing of 1 over bootstrap replicates
    (columns of ``boots`` follow ``x``)."""
    first = []
    for rep in boots:
        c = crossings(x, np.log(rep), 0.0)
        first.append(c[0] if c else math.nan)
    first = np.array(first)
    if np.isnan(first).mean() > 0.1:
        return "n/a"
    lo, hi = np.nanquantile(first, [0.16, 0.84])
    return f"{lo:.3f} .. {hi:.3f}"


def edge_of_chaos(data: ReportData) -> None:
    s = data.summary
    layers = data.tables["layers"]
    picks = network_picks(data.tables["samples"], s["run_id"])
    groups = list(s.groupby(["activation", "sigma_b", "width"], sort=True))
    for (activation, sigma_b, width), g0 in groups:
        rows, xs = [], []
        ms_boot, typ_boot = [], []
        curves: dict[str, list[float]] = {
            k: [] for k in ("chi1", "chi", "ms", "typ", "rms_slope", "med_slope")
        }
        for sigma_w, g in g0.groupby("sigma_w", sort=True):
            g = g.sort_values("depth")
            d = deepest(g)
            L = int(d["depth"])
            fit = g[g["depth"] >= FIT_MIN_DEPTH]
            med = fit_line(fit["depth"], fit["grad_log10_norm_median"])
            rms = fit_line(fit["depth"], fit["grad_log10_rms"])
            f = within_network_factors(layers, d["run_id"], L, picks)
            xs.append(float(sigma_w))
            ms_boot.append(f["ms_boot"])
            typ_boot.append(f["typ_boot"])
            chi1 = float(d["theory_chi1"])
            for key, value in (
                ("chi1", chi1),
                ("chi", float(d["theory_factor"])),
                ("ms", f["ms"]),
                ("typ", f["typ"]),
                ("rms_slope", 10 ** rms[0]),
                ("med_slope", 10 ** med[0]),
            ):
                curves[key].append(value)
            ms_lo, ms_hi = np.quantile(f["ms_boot"], [0.16, 0.84])
            typ_lo, typ_hi = np.quantile(f["typ_boot"], [0.16, 0.84])
            xi_grad = -1.0 / math.log(f["ms"]) if f["ms"] != 1 else math.inf
            rows.append(
                {
                    "sigma_w": format_value(sigma_w),
                    "chi_1 (theory)": fmt(chi1, 4),
                    f"chi (theory, L={L})": fmt(d["theory_factor"], 4),
                    "mean-square factor": f"{f['ms']:.4f} ({ms_lo:.3f}..{ms_hi:.3f})",
                    "typical factor": f"{f['typ']:.4f} ({typ_lo:.3f}..{typ_hi:.3f})",
                    "rms, dec/layer": fixed(rms[0]),
                    "median, dec/layer": fixed(med[0]),
                    "xi_c (theory)": fmt(d["theory_xi_c"]),
                    "1/ln(1/chi_1) (theory)": _scale(chi1),
                    f"1/ln(1/chi) (theory, L={L})": _scale(float(d["theory_factor"])),
                    "1/ln(1/ms) (measured)": fmt(xi_grad),
                    "usable depth": usable(g),
                }
            )
        x = np.array(xs)
        samples = data.tables["samples"]
        deep = samples[samples["run_id"] == d["run_id"]]
        n_nets, n_inputs = deep["net"].nunique(), deep["input"].nunique()
        crit = theory.critical_sigma_w(str(activation), float(sigma_b))
        section(
            f"{activation}, sigma_b={format_value(sigma_b)}, width "
            f"{format_value(width)}: per sigma_w",
            f"Factors of ||g||^2 per layer within the deepest network (L={L}), "
            f"{n_nets} networks x {n_inputs} inputs, with 16%..84% bootstrap "
            "intervals over networks (with few networks the interval of the "
            "mean-square factor is too narrow: a mean of a heavy-tailed ||g||^2). "
            f"dec/layer: slope of log10 ||g|| against depth, L >= {FIT_MIN_DEPTH} "
            "(rms: 0.5 log10 mean ||g||^2; median: the typical network). xi_c: "
            "the correlation depth scale of Schoenholz et al.; 1/ln(1/chi_1) is the "
            "gradient's depth scale in mean field (negative: growth), equal to xi_c "
            "in the ordered phase; 1/ln(1/chi) the same at the finite depth's mean "
            "chi; 1/ln(1/ms) the scale measured from the mean-square factor.",
        )
        print(markdown(rows))
        boot_ms = np.array(ms_boot).T
        boot_typ = np.array(typ_boot).T
        section(
            "Boundary between vanishing and exploding: sigma_w where each crosses 1",
            "Linear interpolation of log(factor) between neighbouring sigma_w; "
            "measured within-network factors with their 16%..84% bootstrap "
            "interval.",
        )
        brow = [
            {
                "what": "chi_1 = 1 at q* (theory.critical_sigma_w)",
                "kind": "mean square, infinite depth",
                "sigma_w": f"{crit:.4f}",
                "interval": "",
            },
            {
                "what": f"chi = 1, mean over the layers of L={L} (theory)",
                "kind": "mean square, finite depth",
                "sigma_w": crossing_text(crossings(x, np.log(curves["chi"]), 0.0)),
                "interval": "",
            },
            {
                "what": "mean-square factor = 1 (measured)",
                "kind": "mean square",
                "sigma_w": crossing_text(crossings(x, np.log(curves["ms"]), 0.0)),
                "interval": _crossing_ci(x, boot_ms),
            },
            {
                "what": "typical factor = 1 (measured)",
                "kind": "typical",
                "sigma_w": crossing_text(crossings(x, np.log(curves["typ"]), 0.0)),
                "interval": _crossing_ci(x, boot_typ),
            },
            {
                "what": "slope of rms log10 ||g|| over L = 0 (measured)",
                "kind": "mean square, across depths",
                "sigma_w": crossing_text(
                    crossings(x, np.log(curves["rms_slope"]), 0.0),
                    known=bool(np.isfinite(curves["rms_slope"]).any()),
                ),
                "interval": "",
            },
            {
                "what": "slope of median log10 ||g|| over L = 0 (measured)",
                "kind": "typical, across depths",
                "sigma_w": crossing_text(
                    crossings(x, np.log(curves["med_slope"]), 0.0),
                    known=bool(np.isfinite(curves["med_slope"]).any()),
                ),
                "interval": "",
            },
        ]
        print(markdown(brow))


# ---------------------------------------------------------------------------
# orthogonal_vs_gaussian


def lyapunov_spread(n: int) -> float:
    """Decades per layer by which the std (over i) of log10 singular values of
    a product of n x n Gaussian matrices grows, at large depth.

    With W = QR (Bartlett), R_ii^2 ~ chi^2_{n-i+1} * sigma_w^2 / n independent,
    the Lyapunov exponents are lambda_i = E ln R_ii = (psi((n-i+1)/2) +
    ln(2 sigma_w^2/n)) / 2; the spread of the log singular values of a product
    of k matrices grows as k * std_i(lambda_i) (sigma_w only shifts them).
    """
    i = np.arange(1, n + 1)
    lam = 0.5 * special.digamma((n - i + 1) / 2.0)
    return float(np.std(lam) / LN10)


def orthogonal_vs_gaussian(data: ReportData) -> None:
    s = data.summary
    per_layer = data.tables["per_layer"]
    theory_t = data.tables["theory"]
    spectrum = data.tables.get("spectrum")
    depths = sorted(s["depth"].unique())
    rows_t, rows_fit, rows_l, rows_deep = [], [], [], []
    for config in data.config_order:
        g = s[s["config"] == config].sort_values("depth")
        row = {"config": config}
        for depth in depths:
            r = g[g["depth"] == depth]
            row[f"L={depth}"] = (
                fmt(r["jac_log10_sv_std_last_hidden"].iloc[0]) if len(r) else ""
            )
        rows_t.append(row)
        fit = g[g["depth"] >= 8]
        slope, _, _ = fit_line(fit["depth"], fit["jac_log10_sv_std_last_hidden"])
        d = deepest(g)
        width = int(d["width"])
        square = int(d["input_dim"]) == width
        ref = ""
        if d["init"] == "gaussian" and d["activation"] == "linear" and square:
            ref = f"{lyapunov_spread(width):.4f} (Lyapunov, n={width})"
        elif d["init"] == "orthogonal" and d["activation"] == "linear":
            ref = "0 (exact isometry)"
        rows_fit.append(
            {
                "config": config,
                "measured slope (decades/layer), L >= 8": f"{slope:.4f}",
                "theory": ref or "n/a",
            }
        )
        L = int(d["depth"])
        pl = per_layer[per_layer["run_id"] == d["run_id"]].set_index("layer")
        th = theory_t[theory_t["run_id"] == d["run_id"]].set_index("layer")
        row = {"config": config}
        for layer in (2, 3, 5, 10, 20, 30, 40, L - 1):
            if layer in pl.index and layer < L:
                row[f"l={layer}"] = (
                    f"{pl.loc[layer, 'jac_log10_sv_std_median']:.3f} "
                    f"(q={th.loc[layer, 'q']:.2g})"
                )
        rows_l.append(row)
        deep = (
            spectrum[(spectrum["run_id"] == d["run_id"]) & (spectrum["layer"] == L - 1)]
            if spectrum is not None
            else pd.DataFrame({"net": [], "input": [], "jac_log10_sv": []})
        )
        deep = deep[np.isfinite(deep["jac_log10_sv"])]
        sv = deep["jac_log10_sv"].to_numpy()
        per_pair = deep.groupby(["net", "input"])["jac_log10_sv"]
        span = (
            float((per_pair.max() - per_pair.min()).median()) if sv.size else math.nan
        )
        lo, med, hi = np.quantile(sv, [0.05, 0.5, 0.95]) if sv.size else (math.nan,) * 3
        rows_deep.append(
            {
                "config": config,
                f"std log10 sv, J^({L - 1})": fmt(d["jac_log10_sv_std_last_hidden"]),
                "5% / median / 95% of log10 sv": f"{lo:.2f} / {med:.2f} / {hi:.2f}",
                "max - min (decades)": fmt(span),
                "mean-square factor": fmt(d["mean_sq_factor"], 4),
                "typical factor": fmt(d["typical_factor"], 4),
                f"chi (theory, L={L})": fmt(d["theory_factor"], 4),
                "chi_1 at q*": fmt(d["theory_chi1"], 4),
                "std log10 ||g||": fmt(d["grad_log10_norm_std"]),
            }
        )
    section(
        "Spread of the spectrum of J^(L-1) against depth L",
        "Standard deviation of the log10 singular values of the input-output "
        "Jacobian at the last hidden layer, J^(L-1) = d a^[L-1]/dx (the median over "
        "the (network, input) pairs with full spectra), in decades.",
    )
    print(markdown(rows_t))
    section(
        "Growth of the spread with depth",
        "Least-squares slope of the spread against L (L >= 8). For a "
        "product of Gaussian matrices the spread grows linearly, at the rate set by "
        "the Lyapunov spectrum of n x n Gaussian matrices; an orthogonal linear "
        "network is an exact isometry.",
    )
    print(markdown(rows_fit))
    section(
        f"Spread of J^(l) at layers l of the deepest network (L={L})",
        "std of log10 singular values of J^(l), and the mean-field q^[l] (the mean "
        "square pre-activation: D^[l] -> I as q^[l] -> 0 for tanh).",
    )
    print(markdown(rows_l))
    section(
        f"The deepest network (L={L}): spectrum and gradient",
        "Pooled log10 singular values of J^(L-1) over the (network, input) pairs; "
        "max - min: median over pairs of log10 (s_max / s_min). Factors of ||g||^2 "
        "per layer.",
    )
    print(markdown(rows_deep))


# ---------------------------------------------------------------------------
# depth_to_width


def relu_layer_log_moments(n: int) -> tuple[float, float]:
    """Mean and variance of ln X, X = (2/n) chi^2_K, K ~ Binomial(n, 1/2) given
    K >= 1: the factor by which one hidden ReLU layer of width n with He weights
    multiplies ||g||^2 when layers are independent (gradient independence).

    E[ln chi^2_k] = psi(k/2) + ln 2, Var[ln chi^2_k] = psi'(k/2). To first order
    in 1/n: mean -5/(2n), variance 5/n (the constant of Hanin & Nica).
    """
    k = np.arange(1, n + 1)
    p = stats.binom.pmf(k, n, 0.5)
    p = p / p.sum()
    mean_k = math.log(2.0 / n) + special.digamma(k / 2.0) + math.log(2.0)
    var_k = special.polygamma(1, k / 2.0)
    mean = float(np.sum(p * mean_k))
    var = float(np.sum(p * var_k) + np.sum(p * (mean_k - mean) ** 2))
    return mean, var


def relu_prediction(widths: Sequence[int], n_in: int) -> tuple[float, float]:
    """Mean and variance of ln ||g||^2 for a ReLU network, He weights, linear
    output of width 1: the output row w_L, then one factor per hidden layer
    (relu_layer_log_moments), then W^[2]^T of fan-in n_1 = ``n_in``:
    (2/n_1) chi^2_{n_1}."""
    mean = math.log(2.0 / n_in) + special.digamma(n_in / 2.0) + math.log(2.0)
    var = float(special.polygamma(1, n_in / 2.0))
    for n in widths:
        m, v = relu_layer_log_moments(int(n))
        mean += m
        var += v
    return mean, var


def _ln_sq_stats(x: np.ndarray, nets: np.ndarray, picks: np.ndarray) -> dict:
    """Var and mean of ln ||g||^2 from log10 norms, with bootstrap replicates
    over networks (``picks``); exactly zero gradients are counted and left out."""
    y = 2.0 * LN10 * x
    ok = np.isfinite(y)
    y, members = y[ok], _members(nets[ok])
    boot = np.array(
        [(np.var(y[i]), np.mean(y[i])) for i in (_resample(members, p) for p in picks)]
    )
    return {
        "var": float(np.var(y)),
        "mean": float(np.mean(y)),
        "var_se": float(np.std(boot[:, 0])),
        "mean_se": float(np.std(boot[:, 1])),
        "var_boot": boot[:, 0],
        "zeros": int((~ok).sum()),
    }


def _slope_fit(t: pd.DataFrame) -> tuple[float, float, float, float]:
    """Weighted least squares Var = a beta + b (weights 1/SE^2 of each point),
    and the bootstrap SEs of a and b from refitting every replicate: the
    replicates resample the same network indices in every run, so the
    correlation between depths (shared random draws) is in the SEs."""
    a, b = _wls(t["beta"], t["var"], t["var_se"])
    boot = np.stack(t["var_boot"].to_list(), axis=1)  # (N_BOOT, runs)
    reps = np.array([_wls(t["beta"], rep, t["var_se"]) for rep in boot])
    return a, b, float(np.std(reps[:, 0])), float(np.std(reps[:, 1]))


def depth_to_width(data: ReportData) -> None:
    s = data.summary.sort_values(["width", "depth"])
    samples = data.tables["samples"]
    picks = network_picks(samples, s["run_id"])
    act = set(s["activation"])
    if act != {"relu"} or set(s["init"]) != {"he_normal"}:
        print(f"(the ReLU/He theory below assumes relu + he_normal; got {act})")
    out = []
    for _, r in s.iterrows():
        rows = samples[samples["run_id"] == r["run_id"]]
        st = _ln_sq_stats(
            rows["grad_log10_norm"].to_numpy(), rows["net"].to_numpy(), picks
        )
        depth, width, n_in = int(r["depth"]), int(r["width"]), int(r["input_dim"])
        mean_th, var_th = relu_prediction([width] * (depth - 2), n_in)
        hn = 5.0 * float(r["beta"]) + float(special.polygamma(1, n_in / 2.0))
        out.append(
            {
                "width": width,
                "depth": depth,
                "beta": float(r["beta"]),
                **st,
                "var_th": var_th,
                "var_hn": hn,
                "mean_th": mean_th,
                "std10": float(r["grad_log10_norm_std"]),
                "median10": float(r["grad_log10_norm_median"]),
                "rms10": float(r["grad_log10_rms"]),
                "rms10_th": float(r["theory_grad_log10_rms"]),
                "ms": float(r["mean_sq_factor"]),
                "typ": float(r["typical_factor"]),
                "chi": float(r["theory_factor"]),
            }
        )
    t = pd.DataFrame(out)
    n_in = int(s["input_dim"].iloc[0])
    offset = float(special.polygamma(1, n_in / 2.0))

    section(
        "Var[ln ||g||^2] against beta: fitted slope per width",
        "Weighted least squares of Var[ln ||g||^2] = a beta + b over the swept "
        "depths of each width (weights 1/SE^2; SEs from a bootstrap over "
        "networks that resamples the same network indices at every depth, "
        "which share random draws). Theory, with independent layers: each hidden "
        "ReLU layer of width n multiplies ||g||^2 by X = (2/n) chi^2_K, K ~ "
        "Binomial(n, 1/2), and Var[ln X] = c(n)/n with c(n) -> 5 as n -> "
        "infinity (Hanin & Nica's 5 beta); the input layer adds psi'(n_1/2) "
        f"= {offset:.4f} (n_1 = {n_in}).",
    )
    fits = []
    groups = [(str(w), g) for w, g in t.groupby("width")] + [("all", t)]
    for name, g in groups:
        a, b, se_a, se_b = _slope_fit(g)
        cn = (
            f"{int(name) * relu_layer_log_moments(int(name))[1]:.2f}"
            if name != "all"
            else "per width"
        )
        fits.append(
            {
                "width n": name,
                "depths": f"{g['depth'].min()}..{g['depth'].max()}",
                "slope a (measured)": pm(a, se_a, 2),
                "c(n) (theory, finite n)": cn,
                "Hanin & Nica (n -> inf)": "5",
                "intercept b (measured)": pm(b, se_b, 3),
                "b (theory)": f"{offset:.3f}",
            }
        )
    print(markdown(fits))
    pos = t[t["beta"] > 0]
    ratio = pos["var"] / pos["var_th"]
    ratio_hn = pos["var"] / pos["var_hn"]
    print(
        f"Measured / theory Var[ln ||g||^2] over the {len(pos)} runs with beta > 0: "
        f"finite-n theory {ratio.median():.3f} (median; 10%..90%: "
        f"{ratio.quantile(0.1):.3f}..{ratio.quantile(0.9):.3f}); "
        f"5 beta + psi'(n_1/2): {ratio_hn.median():.3f} "
        f"({ratio_hn.quantile(0.1):.3f}..{ratio_hn.quantile(0.9):.3f}).\n"
    )
    z_var = (pos["var"] - pos["var_th"]) / pos["var_se"]
    z_mean = (pos["mean"] - pos["mean_th"]) / pos["mean_se"]
    print(
        "Deviation from the finite-n theory in bootstrap SEs, over the same runs: "
        f"Var |z| median {z_var.abs().median():.2f}, max {z_var.abs().max():.2f}; "
        f"E ln ||g||^2 |z| median {z_mean.abs().median():.2f}, max "
        f"{z_mean.abs().max():.2f} (runs share random draws across depths: not "
        "independent tests).\n"
    )
    slope, intercept, _ = fit_line(np.sqrt(t["beta"]), t["std10"])
    print(
        f"std of log10 ||g|| against sqrt(beta), least squares over all runs: "
        f"slope {slope:.3f}, intercept {intercept:.3f}; 5 beta alone gives slope "
        f"sqrt(5)/(2 ln 10) = {math.sqrt(5) / (2 * LN10):.3f}.\n"
    )

    section(
        "Per (width, depth): fluctuations and the typical gradient",
        "Var and mean of ln ||g||^2 over networks x inputs (± bootstrap SE over "
        "networks); theory: independent layers, finite n; 5 beta + b: Hanin & "
        "Nica's leading order plus the input layer's psi'(n_1/2). std log10: the "
        "probe's grad_log10_norm_std (= sqrt(Var ln ||g||^2) / (2 ln 10)). rms: "
        "0.5 log10 of the sample mean of ||g||^2; mean field: 0.5 log10 E||g||^2 "
        "= 0.5 log10 2 at every depth. zeros: gradients that are exactly 0 (a "
        "layer with every ReLU off), left out of the statistics.",
    )
    rows = []
    for _, r in t.iterrows():
        if r["depth"] not in (2, 10, 18, 26, 34, 42, 50):
            continue
        rows.append(
            {
                "n": str(int(r["width"])),
                "L": str(int(r["depth"])),
                "beta": f"{r['beta']:.3f}",
                "Var ln||g||^2": pm(r["var"], r["var_se"], 2),
                "Var (theory)": f"{r['var_th']:.2f}",
                "5 beta + b": f"{r['var_hn']:.2f}",
                "std log10 ||g||": f"{r['std10']:.3f}",
                "E ln||g||^2": pm(r["mean"], r["mean_se"], 2),
                "E (theory)": f"{r['mean_th']:.2f}",
                "median log10": fixed(r["median10"], 2),
                "rms log10": fixed(r["rms10"], 2),
                "mean field": fixed(r["rms10_th"], 2),
                "zeros": str(r["zeros"]),
            }
        )
    print(markdown(rows))

    section(
        "Per-layer factors of ||g||^2 within the deepest network",
        "Mean-square factor (mean field: chi = 1 for He ReLU hidden layers) and "
        "typical factor, against the typical factor of independent layers, "
        "exp(E ln X) (about exp(-5/(2n))).",
    )
    rows = []
    for width, g in t.groupby("width"):
        r = g.sort_values("depth").iloc[-1]
        m, _ = relu_layer_log_moments(int(width))
        rows.append(
            {
                "width n": str(width),
                "L": str(int(r["depth"])),
                "chi (theory)": fmt(r["chi"], 4),
                "mean-square factor (measured)": fmt(r["ms"], 4),
                "typical factor (measured)": fmt(r["typ"], 4),
                "exp(E ln X) (theory)": fmt(math.exp(m), 4),
            }
        )
    print(markdown(rows))


def _wls(x: Sequence[float], y: Sequence[float], se: Sequence[float]) -> np.ndarray:
    """Weighted least squares y = a x + b (weights 1/se^2): [a, b]."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    w = 1.0 / np.maximum(np.asarray(se, dtype=float), 1e-12) ** 2
    A = np.stack([x, np.ones_like(x)], axis=1)
    return np.linalg.solve(A.T @ (A * w[:, None]), A.T @ (w * y))


# ---------------------------------------------------------------------------

STUDIES: dict[str, Callable[[ReportData], None]] = {
    "vanishing": vanishing,
    "edge_of_chaos": edge_of_chaos,
    "orthogonal_vs_gaussian": orthogonal_vs_gaussian,
    "depth_to_width": depth_to_width,
}
TABLES = {
    "vanishing": ("samples", "per_layer", "layers"),
    "edge_of_chaos": ("samples", "per_layer", "layers"),
    "orthogonal_vs_gaussian": ("samples", "per_layer", "theory", "spectrum"),
    "depth_to_width": ("samples", "per_layer"),
}
"""The MLflow tables each analysis reads (``layers`` is by far the largest)."""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--experiment", required=True, help="the MLflow experiment")
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="default: sqlite:///experiments/<study>/mlflow.db",
    )
    p.add_argument("--run", default=None, help="parent run id (default: the latest)")
    p.add_argument(
        "--study",
        choices=sorted(STUDIES),
        default=None,
        help="which analysis (default: the experiment's name)",
    )
    args = p.parse_args(argv)
    study = args.study or args.experiment
    if study not in STUDIES:
        p.error(
            f"no analysis for experiment {args.experiment!r}: pass --study, one of "
            + ", ".join(sorted(STUDIES))
        )
    uri = args.tracking_uri or f"sqlite:///{HERE / study / 'mlflow.db'}"
    try:
        run = args.run or tracking.latest_sweep_id(uri, args.experiment)
        sweep = tracking.load_sweep(uri, run, tables=TABLES[study])
    except tracking.TrackingError as err:
        print(f"summarize: {err}", file=sys.stderr)
        return 1
    data = prepare(sweep)
    if not data.has_probe_data:
        print(f"summarize: sweep {run} has no finished probe runs", file=sys.stderr)
        return 1
    header(data, uri, args.experiment)
    STUDIES[study](data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
