"""Statistics over seeds for training sweeps: means, intervals, the best depth.

Definitions (used by every training figure and table):

- A **seed** is one trained net: one ``(run_id, net)`` pair. Every statistic
  over seeds pools the nets of every run of a (dataset, config, depth) cell.
- A seed **diverged** when its training stopped on a non-finite loss or a
  blown-up parameter (:mod:`depthlab.training`); its final metrics are NaN.
  Means and confidence intervals are over the seeds that did not diverge.
- **Confidence interval**: the two-sided 95% Student-t interval of the mean over
  seeds, mean +- t_{0.975, n-1} s / sqrt(n) (s: sample standard deviation).
- **Best depth** of a config: among the *eligible* depths (at least
  :data:`MIN_SEEDS` seeds and no diverged seed), the depth with the highest mean
  test accuracy (or lowest mean test loss); ties go to the shallower depth.
- **Indistinguishable from the best**: an eligible depth whose mean does not
  differ from the best depth's by Welch's two-sided t-test at level
  :data:`ALPHA` (unequal variances, Welch-Satterthwaite degrees of freedom).
  There is no correction for multiple comparisons (which would widen the set),
  and the best depth is chosen on the same test data that it is reported on,
  so its mean is optimistic (winner's curse): the set is the honest answer,
  the single best depth is not.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from depthlab.report.training_data import TrainingData

ALPHA = 0.05
"""Level of Welch's t-test that decides "indistinguishable from the best"."""
CONFIDENCE = 0.95
"""Coverage of the Student-t confidence intervals of means over seeds."""
MIN_SEEDS = 2
"""A depth needs at least this many (non-diverged) seeds to be eligible as best."""

METRICS: dict[str, tuple[str, str]] = {
    "test_accuracy": ("test accuracy", "max"),
    "test_loss": ("test loss", "min"),
}
"""Metric -> (name in text, which extreme is best)."""


def welch_p_value(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test for equal means.

    :func:`scipy.stats.ttest_ind` with ``equal_var=False``, and an answer where
    it has none: where both samples have zero variance the p-value is 1 for
    equal means and 0 otherwise (the t statistic is 0/0 or x/0 there; seeds
    that all reach accuracy 1 are such samples).

    Parameters
    ----------
    a, b : sequence of float
        The two samples (NaN-free).

    Returns
    -------
    float
        The p-value; NaN if a sample has fewer than 2 values.

    Examples
    --------
    >>> round(welch_p_value([1.0, 2.0, 3.0], [1.5, 2.5, 3.5]), 4)
    0.5734
    """
    from scipy import stats

    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if x.size < 2 or y.size < 2:
        return math.nan
    if x.var() == 0.0 and y.var() == 0.0:
        return 1.0 if x[0] == y[0] else 0.0
    with warnings.catch_warnings():
        # Seeds that reach nearly the same accuracy: scipy warns that the
        # variance lost digits; the p-value is still that of the data.
        warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
        return float(stats.ttest_ind(x, y, equal_var=False).pvalue)


def _ci_half_width(values: np.ndarray) -> float:
    from scipy import stats

    n = values.size
    if n < 2:
        return math.nan
    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * stats.sem(values))


def depth_statistics(
    final: pd.DataFrame,
    metric: str = "test_accuracy",
    *,
    groups: Sequence[str] = ("dataset", "config"),
) -> pd.DataFrame:
    """Mean, confidence interval and best-depth marks of a metric per depth.

    Parameters
    ----------
    final : pandas.DataFrame
        One row per seed, with ``depth``, ``diverged``, the ``groups`` columns and
        ``metric`` (e.g. ``TrainingData.final``, or one step of
        ``TrainingData.curves`` with ``diverged`` added).
    metric : {"test_accuracy", "test_loss", "train_accuracy", "train_loss"}
        Higher is better for accuracies, lower for losses.
    groups : sequence of str
        Columns that identify one line (one best depth per line).

    Returns
    -------
    pandas.DataFrame
        One row per (group, depth): ``n`` (seeds that did not diverge),
        ``n_diverged``, ``mean``, ``sd``, ``ci_low``, ``ci_high`` (the 95%
        Student-t interval), ``eligible``, ``best``, ``p_vs_best`` (Welch, NaN for
        the best and ineligible depths) and ``indistinguishable`` (True for the
        best depth and every eligible depth with ``p_vs_best >= ALPHA``).
        Rows are sorted by group and depth.

    Examples
    --------
    >>> frame = pd.DataFrame({"dataset": "d", "config": "c", "diverged": False,
    ...     "depth": [2, 2, 2, 4, 4, 4], "test_accuracy": [.5, .6, .7, .9, .9, .91]})
    >>> depth_statistics(frame)[["depth", "best", "indistinguishable"]]
       depth   best  indistinguishable
    0      2  False              False
    1      4   True               True
    """
    higher = not metric.endswith("loss")
    rows = []
    for key, group in final.groupby([*groups, "depth"], sort=True, dropna=False):
        diverged = group["diverged"].to_numpy(dtype=bool)
        values = group[metric].to_numpy(dtype=float)
        values = values[~diverged & np.isfinite(values)]
        n = values.size
        half = _ci_half_width(values)
        mean = float(values.mean()) if n else math.nan
        rows.append(
            {
                **dict(zip([*groups, "depth"], key, strict=True)),
                "n": n,
                "n_diverged": int(diverged.sum()),
                "mean": mean,
                "sd": float(values.std(ddof=1)) if n > 1 else math.nan,
                "ci_low": mean - half,
                "ci_high": mean + half,
                "eligible": bool(n >= MIN_SEEDS and not diverged.any()),
                "_values": values,
            }
        )
    stats = pd.DataFrame(rows)
    if stats.empty:
        return stats
    stats["best"] = False
    stats["p_vs_best"] = np.nan
    stats["indistinguishable"] = False
    for _, line in stats.groupby(list(groups), sort=False, dropna=False):
        eligible = line[line["eligible"]]
        if eligible.empty:
            continue
        means = eligible["mean"].to_numpy()
        target = means.max() if higher else means.min()
        best = eligible.index[np.flatnonzero(means == target)[0]]
        stats.loc[best, ["best", "indistinguishable"]] = True
        best_values = stats.at[best, "_values"]
        for i in eligible.index.drop(best):
            p = welch_p_value(stats.at[i, "_values"], best_values)
            stats.at[i, "p_vs_best"] = p
            stats.at[i, "indistinguishable"] = bool(p >= ALPHA)
    return stats.drop(columns="_values").reset_index(drop=True)


def best_depths(
    stats: pd.DataFrame, groups: Sequence[str] = ("dataset", "config")
) -> pd.DataFrame:
    """One row per line of :func:`depth_statistics`: its best depth and set.

    Returns
    -------
    pandas.DataFrame
        ``groups``, ``best_depth`` (NaN if no depth is eligible), ``mean``,
        ``ci_low``, ``ci_high`` and ``n`` at the best depth,
        ``indistinguishable`` (sorted list of depths, the best included),
        ``depth_min``, ``depth_max`` (of that set), ``depths`` (every depth of
        the line) and ``ineligible`` (depths with a diverged seed or too few
        seeds).
    """
    rows = []
    for key, line in stats.groupby(list(groups), sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        best = line[line["best"]]
        same = sorted(int(d) for d in line.loc[line["indistinguishable"], "depth"])
        row: dict[str, Any] = dict(zip(groups, key, strict=True))
        if best.empty:
            row.update(
                best_depth=math.nan, mean=math.nan, ci_low=math.nan, ci_high=math.nan
            )
            row["n"] = 0
        else:
            b = best.iloc[0]
            row.update(
                best_depth=int(b["depth"]),
                mean=b["mean"],
                ci_low=b["ci_low"],
                ci_high=b["ci_high"],
                n=int(b["n"]),
            )
        row.update(
            indistinguishable=same,
            depth_min=min(same) if same else math.nan,
            depth_max=max(same) if same else math.nan,
            depths=sorted(int(d) for d in line["depth"]),
            ineligible=sorted(int(d) for d in line.loc[~line["eligible"], "depth"]),
        )
        rows.append(row)
    return pd.DataFrame(rows)


def best_depth_by_step(
    data: TrainingData, metric: str = "test_accuracy"
) -> pd.DataFrame:
    """The best depth of every config after every evaluation step.

    A learning curve evaluated at step s is the final result of the budget s
    (the optimizers have no schedule), so this is the best depth as a function
    of the training budget. A seed that diverged at or before step s counts as
    diverged at s. Steps not evaluated at every depth of a config are left out.

    Returns
    -------
    pandas.DataFrame
        The columns of :func:`best_depths` plus ``step``.
    """
    final, curves = data.final, data.curves
    if curves.empty:
        return pd.DataFrame()
    seeds = final[
        ["dataset", "config", "run_id", "net", "depth", "diverged", "diverged_at_step"]
    ]
    values = curves[["run_id", "net", "step", metric]]
    parts = []
    for (dataset, config), line in seeds.groupby(["dataset", "config"], sort=False):
        at_steps = values[values["run_id"].isin(line["run_id"])]
        depth_of = line[["run_id", "depth"]].drop_duplicates()
        per_step = at_steps.merge(depth_of, on="run_id").groupby("step")["depth"]
        per_step = per_step.nunique()
        for step in per_step.index[per_step == line["depth"].nunique()]:
            at = line.merge(
                at_steps[at_steps["step"] == step], on=["run_id", "net"], how="left"
            )
            at["diverged"] = at["diverged"].to_numpy(dtype=bool) & (
                at["diverged_at_step"].to_numpy(dtype=float) <= step
            )
            best = best_depths(depth_statistics(at, metric))
            parts.append(best.assign(dataset=dataset, config=config, step=int(step)))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
