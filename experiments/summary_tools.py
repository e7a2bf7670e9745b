"""What the studies' summaries share: number formats, fits, bootstraps, the CLI.

Each study folder has its own ``summarize.py`` (``experiments/<study>/``); run
it from there after the study's sweep (``python -m depthlab +experiment=<study>``)::

    python summarize.py [--experiment NAME] [--tracking-uri URI] [--run ID]

It reads the latest sweep (parent run) of the MLflow experiment NAME (default:
the study's name) with :mod:`depthlab.tracking` alone, and prints the tables
that the study's README.md quotes. The default tracking URI is the study
folder's store, ``sqlite:///experiments/<study>/mlflow.db``.

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

from depthlab import tracking
from depthlab.report.data import ReportData, prepare
from depthlab.report.text import usable_depth

HERE = Path(__file__).resolve().parent
FIT_MIN_DEPTH = 10
"""Slopes against depth are fitted over the swept depths L >= this."""
N_BOOT = 400
"""Bootstrap replicates."""
LN10 = math.log(10.0)


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
    """A markdown table (:meth:`pandas.DataFrame.to_markdown`) from rows of
    strings; the keys of the first row are the header."""
    if not rows:
        return "(no rows)\n"
    # A | inside a cell would end it.
    frame = pd.DataFrame(list(rows), columns=list(rows[0])).astype(str)
    frame = frame.apply(lambda column: column.str.replace("|", "\\|", regex=False))
    frame = frame.rename(columns=lambda name: name.replace("|", "\\|"))
    return frame.to_markdown(index=False, disable_numparse=True) + "\n"


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
    """log10 mean(10^(2 x)) of log10 norms (finite x only), by
    :func:`scipy.special.logsumexp`: no overflow."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan
    return float(special.logsumexp(2.0 * LN10 * x, b=1.0 / x.size) / LN10)


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


def net_members(nets: np.ndarray) -> dict[int, np.ndarray]:
    return {int(n): np.flatnonzero(nets == n) for n in np.unique(nets)}


def resample(members: dict[int, np.ndarray], pick: np.ndarray) -> np.ndarray:
    return np.concatenate([members[int(j)] for j in pick if int(j) in members])


def within_network_factors(
    layers: pd.DataFrame, run_id: str, depth: int, picks: np.ndarray
) -> dict[str, float]:
    """Mean-square and typical factors of the deepest network, from the
    backprop norms at layers 1 and L-1 (as depthlab.jobs.probe computes them), and
    their bootstrap replicates over networks (``picks``)."""
    rows = layers[(layers["run_id"] == run_id) & layers["layer"].isin([1, depth - 1])]
    wide = rows.pivot_table(
        index=["net", "input"], columns="layer", values="backprop_log10_norm"
    )
    first, last = wide[1].to_numpy(), wide[depth - 1].to_numpy()
    members = net_members(wide.index.get_level_values("net").to_numpy())
    steps = depth - 2

    def factors(idx: np.ndarray) -> tuple[float, float]:
        a, b = first[idx], last[idx]
        ms = 10 ** ((log10_mean_sq(a) - log10_mean_sq(b)) / steps)
        ok = np.isfinite(a) & np.isfinite(b)
        typ = 10 ** (2 * (a[ok].mean() - b[ok].mean()) / steps)
        return ms, typ

    ms, typ = factors(np.arange(len(first)))
    boot = np.array([factors(resample(members, pick)) for pick in picks])
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


def main(
    study: str,
    analyze: Callable[[ReportData], None],
    tables: Sequence[str],
    argv: list[str] | None = None,
) -> int:
    """The command line of a study's ``summarize.py``: read the sweep, print.

    Parameters
    ----------
    study : str
        The study's folder name (the default experiment and store).
    analyze : callable
        Prints the study's tables from the prepared sweep.
    tables : sequence of str
        The MLflow tables it reads (``layers`` is by far the largest).
    """
    p = argparse.ArgumentParser(
        description=f"The numbers of the {study} study, as markdown tables.",
    )
    p.add_argument(
        "--experiment", default=study, help=f"the MLflow experiment (default: {study})"
    )
    p.add_argument(
        "--tracking-uri",
        default=None,
        help=f"default: sqlite:///experiments/{study}/mlflow.db",
    )
    p.add_argument("--run", default=None, help="parent run id (default: the latest)")
    args = p.parse_args(argv)
    uri = args.tracking_uri or f"sqlite:///{HERE / study / 'mlflow.db'}"
    try:
        run = args.run or tracking.latest_sweep_id(uri, args.experiment)
        sweep = tracking.load_sweep(uri, run, tables=tables)
    except tracking.TrackingError as err:
        print(f"summarize: {err}", file=sys.stderr)
        return 1
    data = prepare(sweep)
    if not data.has_probe_data:
        print(f"summarize: sweep {run} has no finished probe runs", file=sys.stderr)
        return 1
    header(data, uri, args.experiment)
    analyze(data)
    return 0
