"""The vanishing study's numbers (how fast the gradient vanishes or explodes
with depth): per-layer factors, decay rates, usable depth.

``python summarize.py [--experiment NAME] [--tracking-uri URI] [--run ID]``,
conventions and shared helpers: ``../summary_tools.py``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from depthlab import theory
from depthlab.report.data import ReportData

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import summary_tools as tools

TABLES = ("samples", "per_layer", "layers")
"""The MLflow tables this summary reads."""


def vanishing(data: ReportData) -> None:
    s = data.summary
    layers = data.tables["layers"]
    picks = tools.network_picks(data.tables["samples"], s["run_id"])
    rows_f, rows_d, rows_l = [], [], []
    for config in data.config_order:
        g = s[s["config"] == config].sort_values("depth")
        d = tools.deepest(g)
        L = int(d["depth"])
        fit = g[g["depth"] >= tools.FIT_MIN_DEPTH]
        med = tools.fit_line(fit["depth"], fit["grad_log10_norm_median"])
        rms = tools.fit_line(fit["depth"], fit["grad_log10_rms"])
        th = tools.fit_line(fit["depth"], fit["theory_grad_log10_rms"])
        chi1 = float(d["theory_chi1"])
        f = tools.within_network_factors(layers, d["run_id"], L, picks)
        ms_lo, ms_hi = np.quantile(f["ms_boot"], [0.16, 0.84])
        typ_lo, typ_hi = np.quantile(f["typ_boot"], [0.16, 0.84])
        rows_f.append(
            {
                "config": config,
                "effective sigma_w": tools.fmt(d["theory_sigma_w_eff"], 4),
                "q*": tools.fmt(d["theory_q_star"]),
                "chi_1 at q* (theory)": tools.fmt(chi1, 4),
                f"chi (theory, mean over layers, L={L})": tools.fmt(
                    d["theory_factor"], 4
                ),
                "mean-square factor (measured)": f"{tools.fmt(f['ms'], 4)} "
                f"({tools.fmt(ms_lo, 4)}..{tools.fmt(ms_hi, 4)})",
                "typical factor (measured)": f"{tools.fmt(f['typ'], 4)} "
                f"({tools.fmt(typ_lo, 4)}..{tools.fmt(typ_hi, 4)})",
            }
        )
        rows_d.append(
            {
                "config": config,
                "theory: 0.5 log10 chi_1": tools.fixed(0.5 * math.log10(chi1)),
                "theory rms, fit over L": tools.fixed(th[0]),
                "measured rms, fit over L": tools.fixed(rms[0]),
                "measured median, fit over L": tools.fixed(med[0]),
                f"mean-square, within L={L}": tools.fixed(
                    0.5 * math.log10(d["mean_sq_factor"])
                ),
                f"typical, within L={L}": tools.fixed(
                    0.5 * math.log10(d["typical_factor"])
                ),
                "usable depth": tools.usable(g),
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
                    "median": tools.fixed(r["grad_log10_norm_median"], 2),
                    "25%..75%": f"{r['grad_log10_norm_q25']:.2f} .. "
                    f"{r['grad_log10_norm_q75']:.2f}",
                    "rms (measured)": tools.fixed(r["grad_log10_rms"], 2),
                    "rms (theory)": tools.fixed(r["theory_grad_log10_rms"], 2),
                }
            )
    tools.section(
        "Per-layer factors of E||g||^2 (deepest network)",
        "Theory at the hidden layers' effective sigma_w = sqrt(n_{l-1} Var W_ij). "
        "Mean-square factor: what mean field predicts (chi); typical factor: the "
        "per-layer factor of a typical network's ||g||^2; in brackets their "
        "16%..84% bootstrap interval over networks.",
    )
    print(tools.markdown(rows_f))
    tools.section(
        "Decay rate: decades per layer of the gradient norm ||g||",
        f"Least-squares slopes over the swept depths L >= {tools.FIT_MIN_DEPTH}. "
        "'within L' columns: the per-layer factors of the deepest "
        "network, as 0.5 log10 factor. The rms columns are the mean-field "
        "quantity (sqrt E||g||^2); the median is the typical network.",
    )
    print(tools.markdown(rows_d))
    tools.section(
        "log10 ||g|| at a few depths",
        "Median and quartiles over networks x inputs; rms = 0.5 log10 of the mean "
        "of ||g||^2; theory: mean field's 0.5 log10 E||g||^2.",
    )
    print(tools.markdown(rows_l))
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


if __name__ == "__main__":
    sys.exit(tools.main("vanishing", vanishing, TABLES))
