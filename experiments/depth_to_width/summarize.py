"""ReLU networks with He weights: fluctuations of ln ||g||^2 against the
depth-to-width ratio beta (the depth_to_width study), against exact finite-n
moments.

Run as ``python summarize.py``; the rest is in ``../summary_tools.py``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special, stats

from depthlab.report.data import ReportData

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import summary_tools as tools

TABLES = ("samples", "per_layer")
"""The MLflow tables this summary reads."""


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
    y = 2.0 * tools.LN10 * x
    ok = np.isfinite(y)
    y, members = y[ok], tools.net_members(nets[ok])
    boot = np.array(
        [
            (np.var(y[i]), np.mean(y[i]))
            for i in (tools.resample(members, p) for p in picks)
        ]
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
    picks = tools.network_picks(samples, s["run_id"])
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

    tools.section(
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
                "slope a (measured)": tools.pm(a, se_a, 2),
                "c(n) (theory, finite n)": cn,
                "Hanin & Nica (n -> inf)": "5",
                "intercept b (measured)": tools.pm(b, se_b, 3),
                "b (theory)": f"{offset:.3f}",
            }
        )
    print(tools.markdown(fits))
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
    slope, intercept, _ = tools.fit_line(np.sqrt(t["beta"]), t["std10"])
    print(
        f"std of log10 ||g|| against sqrt(beta), least squares over all runs: "
        f"slope {slope:.3f}, intercept {intercept:.3f}; 5 beta alone gives slope "
        f"sqrt(5)/(2 ln 10) = {math.sqrt(5) / (2 * tools.LN10):.3f}.\n"
    )

    tools.section(
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
                "Var ln||g||^2": tools.pm(r["var"], r["var_se"], 2),
                "Var (theory)": f"{r['var_th']:.2f}",
                "5 beta + b": f"{r['var_hn']:.2f}",
                "std log10 ||g||": f"{r['std10']:.3f}",
                "E ln||g||^2": tools.pm(r["mean"], r["mean_se"], 2),
                "E (theory)": f"{r['mean_th']:.2f}",
                "median log10": tools.fixed(r["median10"], 2),
                "rms log10": tools.fixed(r["rms10"], 2),
                "mean field": tools.fixed(r["rms10_th"], 2),
                "zeros": str(r["zeros"]),
            }
        )
    print(tools.markdown(rows))

    tools.section(
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
                "chi (theory)": tools.fmt(r["chi"], 4),
                "mean-square factor (measured)": tools.fmt(r["ms"], 4),
                "typical factor (measured)": tools.fmt(r["typ"], 4),
                "exp(E ln X) (theory)": tools.fmt(math.exp(m), 4),
            }
        )
    print(tools.markdown(rows))


def _wls(x: Sequence[float], y: Sequence[float], se: Sequence[float]) -> np.ndarray:
    """Weighted least squares y = a x + b (weights 1/se^2): [a, b]."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    w = 1.0 / np.maximum(np.asarray(se, dtype=float), 1e-12) ** 2
    A = np.stack([x, np.ones_like(x)], axis=1)
    return np.linalg.solve(A.T @ (A * w[:, None]), A.T @ (w * y))


if __name__ == "__main__":
    sys.exit(tools.main("depth_to_width", depth_to_width, TABLES))
