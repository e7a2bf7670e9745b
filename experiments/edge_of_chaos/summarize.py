"""Where the gradient neither vanishes nor explodes: the edge_of_chaos study's
measured boundary against the critical line chi_1 = 1 and the depth scale xi_c.

Command line and conventions: ``../summary_tools.py``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from depthlab import theory
from depthlab.report.data import ReportData, format_value

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import summary_tools as tools

TABLES = ("samples", "per_layer", "layers")
"""The MLflow tables this summary reads."""


def _scale(factor: float) -> str:
    """The depth scale 1/ln(1/factor) (negative for growth), as text."""
    return tools.fmt(-1.0 / math.log(factor)) if factor != 1 else "inf"


def _crossing_ci(x: np.ndarray, boots: np.ndarray) -> str:
    """16%..84% interval of the first crossing of 1 over bootstrap replicates
    (columns of ``boots`` follow ``x``)."""
    first = []
    for rep in boots:
        c = tools.crossings(x, np.log(rep), 0.0)
        first.append(c[0] if c else math.nan)
    first = np.array(first)
    if np.isnan(first).mean() > 0.1:
        return "n/a"
    lo, hi = np.nanquantile(first, [0.16, 0.84])
    return f"{lo:.3f} .. {hi:.3f}"


def edge_of_chaos(data: ReportData) -> None:
    s = data.summary
    layers = data.tables["layers"]
    picks = tools.network_picks(data.tables["samples"], s["run_id"])
    groups = list(s.groupby(["activation", "sigma_b", "width"], sort=True))
    for (activation, sigma_b, width), g0 in groups:
        rows, xs = [], []
        ms_boot, typ_boot = [], []
        curves: dict[str, list[float]] = {
            k: [] for k in ("chi1", "chi", "ms", "typ", "rms_slope", "med_slope")
        }
        for sigma_w, g in g0.groupby("sigma_w", sort=True):
            g = g.sort_values("depth")
            d = tools.deepest(g)
            L = int(d["depth"])
            fit = g[g["depth"] >= tools.FIT_MIN_DEPTH]
            med = tools.fit_line(fit["depth"], fit["grad_log10_norm_median"])
            rms = tools.fit_line(fit["depth"], fit["grad_log10_rms"])
            f = tools.within_network_factors(layers, d["run_id"], L, picks)
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
                    "chi_1 (theory)": tools.fmt(chi1, 4),
                    f"chi (theory, L={L})": tools.fmt(d["theory_factor"], 4),
                    "mean-square factor": f"{f['ms']:.4f} ({ms_lo:.3f}..{ms_hi:.3f})",
                    "typical factor": f"{f['typ']:.4f} ({typ_lo:.3f}..{typ_hi:.3f})",
                    "rms, dec/layer": tools.fixed(rms[0]),
                    "median, dec/layer": tools.fixed(med[0]),
                    "xi_c (theory)": tools.fmt(d["theory_xi_c"]),
                    "1/ln(1/chi_1) (theory)": _scale(chi1),
                    f"1/ln(1/chi) (theory, L={L})": _scale(float(d["theory_factor"])),
                    "1/ln(1/ms) (measured)": tools.fmt(xi_grad),
                    "usable depth": tools.usable(g),
                }
            )
        x = np.array(xs)
        samples = data.tables["samples"]
        deep = samples[samples["run_id"] == d["run_id"]]
        n_nets, n_inputs = deep["net"].nunique(), deep["input"].nunique()
        crit = theory.critical_sigma_w(str(activation), float(sigma_b))
        tools.section(
            f"{activation}, sigma_b={format_value(sigma_b)}, width "
            f"{format_value(width)}: per sigma_w",
            f"Factors of ||g||^2 per layer within the deepest network (L={L}), "
            f"{n_nets} networks x {n_inputs} inputs, with 16%..84% bootstrap "
            "intervals over networks (with few networks the interval of the "
            "mean-square factor is too narrow: a mean of a heavy-tailed ||g||^2). "
            "dec/layer: slope of log10 ||g|| against depth, "
            f"L >= {tools.FIT_MIN_DEPTH} "
            "(rms: 0.5 log10 mean ||g||^2; median: the typical network). xi_c: "
            "the correlation depth scale of Schoenholz et al.; 1/ln(1/chi_1) is the "
            "gradient's depth scale in mean field (negative: growth), equal to xi_c "
            "in the ordered phase; 1/ln(1/chi) the same at the finite depth's mean "
            "chi; 1/ln(1/ms) the scale measured from the mean-square factor.",
        )
        print(tools.markdown(rows))
        boot_ms = np.array(ms_boot).T
        boot_typ = np.array(typ_boot).T
        tools.section(
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
                "sigma_w": tools.crossing_text(
                    tools.crossings(x, np.log(curves["chi"]), 0.0)
                ),
                "interval": "",
            },
            {
                "what": "mean-square factor = 1 (measured)",
                "kind": "mean square",
                "sigma_w": tools.crossing_text(
                    tools.crossings(x, np.log(curves["ms"]), 0.0)
                ),
                "interval": _crossing_ci(x, boot_ms),
            },
            {
                "what": "typical factor = 1 (measured)",
                "kind": "typical",
                "sigma_w": tools.crossing_text(
                    tools.crossings(x, np.log(curves["typ"]), 0.0)
                ),
                "interval": _crossing_ci(x, boot_typ),
            },
            *(
                {
                    "what": f"slope of {stat} log10 ||g|| over L = 0 (measured)",
                    "kind": kind,
                    "sigma_w": tools.crossing_text(
                        tools.crossings(x, np.log(curves[column]), 0.0),
                        known=bool(np.isfinite(curves[column]).any()),
                    ),
                    "interval": "",
                }
                for stat, kind, column in (
                    ("rms", "mean square, across depths", "rms_slope"),
                    ("median", "typical, across depths", "med_slope"),
                )
            ),
        ]
        print(tools.markdown(brow))


if __name__ == "__main__":
    sys.exit(tools.main("edge_of_chaos", edge_of_chaos, TABLES))
