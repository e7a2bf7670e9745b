"""Jacobian spectra of orthogonal against Gaussian weights at criticality (the
orthogonal_vs_gaussian study), against the Lyapunov spread of products.

See ``../summary_tools.py`` for the command line and the conventions.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special

from depthlab.report.data import ReportData

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import summary_tools as tools

TABLES = ("samples", "per_layer", "theory", "spectrum")
"""The MLflow tables this summary reads."""


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
    return float(np.std(lam) / tools.LN10)


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
                tools.fmt(r["jac_log10_sv_std_last_hidden"].iloc[0]) if len(r) else ""
            )
        rows_t.append(row)
        fit = g[g["depth"] >= 8]
        slope, _, _ = tools.fit_line(fit["depth"], fit["jac_log10_sv_std_last_hidden"])
        d = tools.deepest(g)
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
                f"std log10 sv, J^({L - 1})": tools.fmt(
                    d["jac_log10_sv_std_last_hidden"]
                ),
                "5% / median / 95% of log10 sv": f"{lo:.2f} / {med:.2f} / {hi:.2f}",
                "max - min (decades)": tools.fmt(span),
                "mean-square factor": tools.fmt(d["mean_sq_factor"], 4),
                "typical factor": tools.fmt(d["typical_factor"], 4),
                f"chi (theory, L={L})": tools.fmt(d["theory_factor"], 4),
                "chi_1 at q*": tools.fmt(d["theory_chi1"], 4),
                "std log10 ||g||": tools.fmt(d["grad_log10_norm_std"]),
            }
        )
    tools.section(
        "Spread of the spectrum of J^(L-1) against depth L",
        "Standard deviation of the log10 singular values of the input-output "
        "Jacobian at the last hidden layer, J^(L-1) = d a^[L-1]/dx (the median over "
        "the (network, input) pairs with full spectra), in decades.",
    )
    print(tools.markdown(rows_t))
    tools.section(
        "Growth of the spread with depth",
        "Least-squares slope of the spread against L (L >= 8). For a "
        "product of Gaussian matrices the spread grows linearly, at the rate set by "
        "the Lyapunov spectrum of n x n Gaussian matrices; an orthogonal linear "
        "network is an exact isometry.",
    )
    print(tools.markdown(rows_fit))
    tools.section(
        f"Spread of J^(l) at layers l of the deepest network (L={L})",
        "std of log10 singular values of J^(l), and the mean-field q^[l] (the mean "
        "square pre-activation: D^[l] -> I as q^[l] -> 0 for tanh).",
    )
    print(tools.markdown(rows_l))
    tools.section(
        f"The deepest network (L={L}): spectrum and gradient",
        "Pooled log10 singular values of J^(L-1) over the (network, input) pairs; "
        "max - min: median over pairs of log10 (s_max / s_min). Factors of ||g||^2 "
        "per layer.",
    )
    print(tools.markdown(rows_deep))


if __name__ == "__main__":
    sys.exit(tools.main("orthogonal_vs_gaussian", orthogonal_vs_gaussian, TABLES))
