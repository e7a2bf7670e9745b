"""Figures and text for training sweeps (``task=train``): is there an optimal depth?

Everything here starts from the tidy frames of :func:`depthlab.tracking.load_sweep`
(the ``runs`` table and the ``curves`` and ``final`` tables of the training
jobs, see :mod:`depthlab.train_job`) and ends in matplotlib Figures or text.

Definitions used in every figure and table:

- A **config** is everything a sweep varies except ``depth``, the dataset and the
  seeds: one config is one line in a figure. Its label names only the keys that
  vary within the sweep (``width=16, sigma_w=2.5``); the dataset is a panel.
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

The public entries are :func:`training_figures` and :func:`training_summary`
(for the report); :func:`prepare_training`, :func:`depth_statistics`,
:func:`best_depths`, :func:`best_depth_by_step` and the figure functions are
the building blocks for studies (``experiments/optimal_depth/analyze.py``).

Figures are built on :class:`matplotlib.figure.Figure` directly (never through
``pyplot``) and rendered with the Agg canvas; seaborn supplies the style and the
colour-blind-safe palette. matplotlib and seaborn are imported inside functions.
"""

from __future__ import annotations

import contextlib
import html
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from depthlab.tracking import Sweep

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "ALPHA",
    "CONFIG_KEYS",
    "FIGURE_TITLES",
    "METRICS",
    "MIN_SEEDS",
    "TrainingData",
    "TrainingFigure",
    "best_depth_by_step",
    "best_depths",
    "depth_figure",
    "depth_statistics",
    "gradient_health_figure",
    "learning_curves_figure",
    "optimal_depth_vs_step_figure",
    "prepare_training",
    "summary_table",
    "trainability_heatmap",
    "training_figures",
    "training_summary",
    "welch_p_value",
]

ALPHA = 0.05
"""Level of Welch's t-test that decides "indistinguishable from the best"."""
CONFIDENCE = 0.95
"""Coverage of the Student-t confidence intervals of means over seeds."""
MIN_SEEDS = 2
"""A depth needs at least this many (non-diverged) seeds to be eligible as best."""
XI_MULTIPLE = 6.0
"""The multiple of xi_c drawn over the trainability heatmap (Schoenholz et al.)."""

METRICS: dict[str, tuple[str, str]] = {
    "test_accuracy": ("test accuracy", "max"),
    "test_loss": ("test loss", "min"),
}
"""Metric -> (name in text, which extreme is best)."""

CONFIG_KEYS = (
    "width",
    "activation",
    "init",
    "sigma_w",
    "sigma_b",
    "optimizer",
    "learning_rate",
    "momentum",
    "batch_size",
    "steps",
    "cost",
    "output_activation",
    "dtype",
)
"""Keys that can tell configs apart, in the order they appear in labels."""

_TABLE_KEYS = ("width", "activation", "init", "sigma_w", "sigma_b", "optimizer")
_PARAM_KEYS = {
    "learning_rate": "train.learning_rate",
    "momentum": "train.momentum",
    "batch_size": "train.batch_size",
    "steps": "train.steps",
    "cost": "train.cost",
    "output_activation": "output_activation",
    "dtype": "dtype",
    "output_dim": "output_dim",
}
_NUMERIC = {"width", "sigma_w", "sigma_b", "learning_rate", "momentum"}
_INTEGER = {"batch_size", "steps", "output_dim"}
_SHORT = {"learning_rate": "lr", "batch_size": "batch", "output_activation": "out"}
_BARE = ("activation", "init", "optimizer", "cost", "dtype")
_RUN_METRICS = (
    "init_grad_log10_norm_median",
    "theory_xi_c",
    "theory_chi1",
    "beta",
    "diverged_fraction",
)

FIGURE_TITLES = {
    "training_depth": "Test accuracy and loss against depth",
    "training_curves": "Learning curves per depth",
    "training_heatmap": "Trainability over (sigma_w, depth)",
    "training_gradient_health": "Gradient at initialization against trainability",
    "training_best_depth_vs_step": "Best depth against training budget",
}
"""Headings of the figures of :func:`training_figures`, by name."""

DPI = 110
PANEL = (3.5, 2.7)
MAX_WIDTH = 10.0
MAX_PANELS = 12
MAX_CONFIGS = 10
"""Configs drawn per panel; more are thinned evenly (said in the caption)."""
MAX_HEATMAPS = 6
MAX_STEPS = 12
"""Evaluation steps shown in the best-depth-against-budget figure."""
XI_COLOR = "#D55E00"
XI_STYLES = ("-", "--", "-.")


class TrainingFigure(NamedTuple):
    """One figure, or the reason it is left out; unpacks as a 3-tuple.

    Attributes
    ----------
    name : str
        File stem of the PNG; a key of :data:`FIGURE_TITLES`.
    figure : matplotlib.figure.Figure or None
        None when the sweep's data does not support the figure.
    text : str
        The caption (when drawn) or the reason it is left out (when not).
    """

    name: str
    figure: Figure | None
    text: str


# ---------------------------------------------------------------------------
# Data


@dataclass
class TrainingData:
    """A training sweep arranged for plotting.

    Attributes
    ----------
    final : pandas.DataFrame
        One row per seed (``run_id``, ``net``): ``dataset``, ``config``,
        ``depth``, the config keys, ``train_loss``, ``test_loss``,
        ``train_accuracy``, ``test_accuracy``, ``diverged``.
    curves : pandas.DataFrame
        One row per (seed, evaluation ``step``): the same keys and metrics.
    runs : pandas.DataFrame
        One row per finished training run: ``run_id``, ``dataset``, ``config``,
        ``depth``, the config keys and the run's summary metrics
        (``init_grad_log10_norm_median``, ``theory_xi_c``, ``theory_chi1``,
        ``beta``, ``diverged_fraction``).
    config_keys : list of str
        The keys that vary between configs (the label's keys).
    fixed : dict
        Config keys with one value in the whole sweep, and that value.
    configs : list of str
        Config labels in order (sorted by the keys' values).
    datasets : list of str
        Dataset names, sorted.
    """

    final: pd.DataFrame
    curves: pd.DataFrame
    runs: pd.DataFrame
    config_keys: list[str]
    fixed: dict[str, Any]
    configs: list[str]
    datasets: list[str]

    def where(self, **values: Any) -> TrainingData:
        """The sub-sweep whose columns equal the given values.

        A value may be a list (any of its values matches). Float columns are
        compared with a relative tolerance of 1e-9. Labels and the varying
        keys are recomputed, so a figure of a sub-sweep names only what varies
        within it.

        Examples
        --------
        >>> data.where(dataset="digits", width=[16, 64])  # doctest: +SKIP
        """

        def mask(frame: pd.DataFrame) -> pd.Series:
            keep = pd.Series(True, index=frame.index)
            for key, value in values.items():
                wanted = value if isinstance(value, list | tuple) else [value]
                column = frame[key]
                if pd.api.types.is_float_dtype(column):
                    hit = np.zeros(len(frame), dtype=bool)
                    for w in wanted:
                        hit |= np.isclose(column.to_numpy(), float(w), rtol=1e-9)
                    keep &= hit
                else:
                    keep &= column.isin(wanted)
            return keep

        return _label(
            self.final[mask(self.final)],
            self.curves[mask(self.curves)],
            self.runs[mask(self.runs)],
        )


def _format(value: Any) -> str:
    if isinstance(value, float | np.floating):
        if math.isfinite(value) and float(value).is_integer():
            return str(int(value))
        return f"{float(value):.5g}"
    return str(value)


def config_label(keys: Sequence[str], values: Sequence[Any]) -> str:
    """``width=16, sigma_w=2.5``; names (activation, init, ...) appear bare.

    Examples
    --------
    >>> config_label(["width", "init", "learning_rate"], [16, "gaussian", 0.01])
    'width=16, gaussian, lr=0.01'
    """
    parts = []
    for key, value in zip(keys, values, strict=True):
        text = _format(value)
        parts.append(text if key in _BARE else f"{_SHORT.get(key, key)}={text}")
    return ", ".join(parts)


def _param_column(runs: pd.DataFrame, key: str) -> pd.Series:
    column = f"params.{_PARAM_KEYS[key]}"
    if column not in runs:
        return pd.Series(
            np.nan if key in _NUMERIC | _INTEGER else None, index=runs.index
        )
    raw = runs[column].astype(object).where(~runs[column].isin(["null", "None"]))
    if key in _NUMERIC | _INTEGER:
        return pd.to_numeric(raw, errors="coerce")
    return raw


def prepare_training(sweep: Sweep) -> TrainingData:
    """Arrange a sweep's training runs for the figures and tables.

    Parameters
    ----------
    sweep : depthlab.tracking.Sweep
        From :func:`depthlab.tracking.load_sweep`. Probe runs, and runs that did
        not finish, are left out.

    Returns
    -------
    TrainingData
        Empty frames if the sweep has no finished training runs.
    """
    tables = sweep.tables
    runs = sweep.runs
    if (
        "final" not in tables
        or "curves" not in tables
        or runs.empty
        or "params.task" not in runs
    ):
        empty = pd.DataFrame()
        return TrainingData(empty, empty, empty, [], {}, [], [])
    runs = runs[(runs["params.task"] == "train") & (runs["status"] == "FINISHED")]
    info = pd.DataFrame({"run_id": runs["run_id"].to_numpy()})
    for key in _PARAM_KEYS:
        info[key] = _param_column(runs, key).to_numpy()
    # Momentum means nothing for Adam: blank it so it never splits configs.
    sgd = (
        runs["params.train.optimizer"].to_numpy() == "sgd"
        if "params.train.optimizer" in runs
        else np.zeros(len(runs), dtype=bool)
    )
    info["momentum"] = np.where(sgd, info["momentum"].to_numpy(dtype=float), np.nan)
    for metric in _RUN_METRICS:
        values = runs[metric] if metric in runs else np.nan
        info[metric] = pd.to_numeric(pd.Series(values, index=runs.index)).to_numpy()

    def join(table: pd.DataFrame) -> pd.DataFrame:
        out = table.merge(info.drop(columns=list(_RUN_METRICS)), on="run_id")
        out["test_accuracy"] = out["test_accuracy"].astype(float)
        return out

    final = join(tables["final"])
    curves = join(tables["curves"])
    first = tables["final"].drop_duplicates("run_id")
    run_table = first[["run_id", "dataset", "depth", *_TABLE_KEYS]].merge(
        info, on="run_id"
    )
    return _label(final, curves, run_table)


def _label(
    final: pd.DataFrame, curves: pd.DataFrame, runs: pd.DataFrame
) -> TrainingData:
    """Config labels from the keys that vary within these rows."""
    if runs.empty:
        return TrainingData(final, curves, runs, [], {}, [], [])
    keys, fixed = [], {}
    for key in CONFIG_KEYS:
        values = runs[key].dropna().unique()
        if len(values) > 1:
            keys.append(key)
        elif len(values) == 1:
            fixed[key] = values[0]
    frame = runs[["run_id", *keys]].copy()
    frame = frame.sort_values(keys, kind="stable") if keys else frame
    labels = [config_label(keys, [row[k] for k in keys]) for _, row in frame.iterrows()]
    frame["config"] = labels
    order = list(dict.fromkeys(labels))
    mapping = dict(zip(frame["run_id"], frame["config"], strict=True))
    datasets = sorted(runs["dataset"].unique())

    def add(table: pd.DataFrame) -> pd.DataFrame:
        table = table.copy()
        table["config"] = table["run_id"].map(mapping)
        return table

    return TrainingData(
        final=add(final),
        curves=add(curves),
        runs=add(runs),
        config_keys=keys,
        fixed=fixed,
        configs=order,
        datasets=datasets,
    )


# ---------------------------------------------------------------------------
# Statistics


def welch_p_value(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test for equal means.

    Parameters
    ----------
    a, b : sequence of float
        The two samples (NaN-free), at least 2 values each.

    Returns
    -------
    float
        The p-value; NaN if a sample has fewer than 2 values. Where both
        samples have zero variance it is 1 for equal means and 0 otherwise
        (the t statistic is 0/0 or x/0 there).

    Notes
    -----
    t = (mean_a - mean_b) / sqrt(s_a^2/n_a + s_b^2/n_b), with the
    Welch-Satterthwaite degrees of freedom.

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
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    diff = float(x.mean() - y.mean())
    se2 = va + vb
    if se2 == 0.0:
        return 1.0 if diff == 0.0 else 0.0
    t = diff / math.sqrt(se2)
    df = se2**2 / (
        (va**2 / (x.size - 1) if va else 0.0) + (vb**2 / (y.size - 1) if vb else 0.0)
    )
    return float(2.0 * stats.t.sf(abs(t), df))


def _ci_half_width(values: np.ndarray) -> float:
    from scipy import stats

    n = values.size
    if n < 2:
        return math.nan
    return float(
        stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * values.std(ddof=1) / math.sqrt(n)
    )


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
        ``metric`` (e.g. :attr:`TrainingData.final`, or one step of
        :attr:`TrainingData.curves` with ``diverged`` added).
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
                best_depth=math.nan,
                mean=math.nan,
                ci_low=math.nan,
                ci_high=math.nan,
                n=0,
            )
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
    if data.curves.empty:
        return pd.DataFrame()
    seeds = data.final[
        ["dataset", "config", "run_id", "net", "depth", "diverged", "diverged_at_step"]
    ]
    values = data.curves[["run_id", "net", "step", metric]]
    parts = []
    for (dataset, config), line in seeds.groupby(["dataset", "config"], sort=False):
        curves = values[values["run_id"].isin(line["run_id"])]
        depth_of = line[["run_id", "depth"]].drop_duplicates()
        per_step = curves.merge(depth_of, on="run_id").groupby("step")["depth"]
        per_step = per_step.nunique()
        for step in per_step.index[per_step == line["depth"].nunique()]:
            at = line.merge(
                curves[curves["step"] == step], on=["run_id", "net"], how="left"
            )
            at["diverged"] = at["diverged"].to_numpy(dtype=bool) & (
                at["diverged_at_step"].to_numpy(dtype=float) <= step
            )
            best = best_depths(depth_statistics(at, metric))
            parts.append(best.assign(dataset=dataset, config=config, step=int(step)))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


# ---------------------------------------------------------------------------
# Figure helpers


@contextlib.contextmanager
def _style() -> Iterator[None]:
    import matplotlib as mpl
    import seaborn as sns

    rc = {
        **sns.axes_style("ticks"),
        **sns.plotting_context("notebook", font_scale=0.78),
        "axes.grid": True,
        "grid.color": "#e6e6e6",
        "grid.linewidth": 0.6,
        "axes.titlesize": 9.5,
        "legend.fontsize": 8,
        "legend.title_fontsize": 8.5,
        "legend.frameon": False,
        "savefig.dpi": DPI,
        "figure.dpi": DPI,
    }
    with mpl.rc_context(rc):
        yield


def _panels(
    n: int,
    *,
    ncols: int | None = None,
    panel: tuple[float, float] = PANEL,
    extra_width: float = 0.0,
    extra_height: float = 0.0,
    sharey: bool | str = False,
    sharex: bool = False,
) -> tuple[Figure, list[list[Axes]]]:
    from matplotlib.figure import Figure

    ncols = ncols or min(n, 3)
    nrows = math.ceil(n / ncols)
    width = min(MAX_WIDTH, ncols * panel[0] + extra_width)
    fig = Figure(
        figsize=(width, nrows * panel[1] + extra_height + 0.3), layout="constrained"
    )
    grid = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey, sharex=sharex)
    for ax in grid.ravel()[n:]:
        fig.delaxes(ax)
    return fig, [list(row) for row in grid]


def _thin(levels: Sequence[Any], k: int) -> list[Any]:
    """At most ``k`` levels, evenly spread, the first and last kept."""
    levels = list(levels)
    if len(levels) <= k:
        return levels
    keep = sorted({round(i * (len(levels) - 1) / (k - 1)) for i in range(k)})
    return [levels[i] for i in keep]


LINESTYLES = ("-", "--", ":")
MARKERS = ("o", "s", "^")


def _line_styles(data: TrainingData, configs: Sequence[str]) -> dict[str, dict]:
    """Colour, line style and marker of every config, colour-blind safe.

    With two or more varying keys, the first key with at most three values
    among ``configs`` (e.g. ``width``) gets line styles and markers, and the
    other keys get colours; otherwise every config gets its own colour.
    Colours come from seaborn's ``colorblind`` palette, or, when they stand for
    the values of one numeric key (e.g. ``sigma_w``) with three or more values,
    from the sequential ``plasma`` map (without its pale end).
    """

    frame = data.runs.drop_duplicates("config").set_index("config")
    frame = frame.loc[[c for c in configs if c in frame.index]]
    split = None
    if len(data.config_keys) >= 2:
        for key in data.config_keys:
            if frame[key].map(_format).nunique() <= len(LINESTYLES):
                split = key
                break
    if split is None:
        numeric = len(data.config_keys) == 1 and data.config_keys[0] in _NUMERIC
        palette = _palette(len(configs), sequential=numeric)
        return {
            c: {"color": palette[i % len(palette)], "ls": "-", "marker": "o"}
            for i, c in enumerate(configs)
        }
    rest = [k for k in data.config_keys if k != split]
    split_of = {c: _format(frame.at[c, split]) for c in frame.index}
    rest_of = {c: tuple(_format(frame.at[c, k]) for k in rest) for c in frame.index}
    split_levels = list(dict.fromkeys(split_of[c] for c in frame.index))
    rest_levels = list(dict.fromkeys(rest_of[c] for c in frame.index))
    numeric = len(rest) == 1 and rest[0] in _NUMERIC
    palette = _palette(len(rest_levels), sequential=numeric)
    return {
        c: {
            "color": palette[rest_levels.index(rest_of[c]) % len(palette)],
            "ls": LINESTYLES[split_levels.index(split_of[c])],
            "marker": MARKERS[split_levels.index(split_of[c])],
        }
        for c in frame.index
    }


def _palette(n: int, *, sequential: bool) -> list[Any]:
    """``n`` colour-blind-safe colours: ordered (plasma) or categorical."""
    import matplotlib as mpl
    import seaborn as sns

    if sequential and n >= 3:
        return list(mpl.colormaps["plasma"](np.linspace(0.0, 0.85, n)))
    return list(sns.color_palette("colorblind", max(n, 1)))


def _legend(
    fig: Figure, handles: Sequence[Any], labels: Sequence[str], title: str = ""
) -> None:
    """A legend below the panels, with as many columns as fit the figure."""
    if not handles:
        return
    longest = max(len(text) for text in labels)
    entry = 0.75 + 0.062 * longest  # inches at legend.fontsize 8
    fit = max(1, int(fig.get_figwidth() // entry))
    ncol = min(len(handles), fit)
    if ncol < len(handles) and ncol > 1:
        # Balanced rows: 4 entries in 2 columns, not 3 + 1.
        ncol = math.ceil(len(handles) / math.ceil(len(handles) / ncol))
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, title=title)


def _depth_axis(ax: Axes, depths: Sequence[int]) -> None:
    """Log-2 depth axis with the swept depths as ticks (thinned to ~8)."""
    from matplotlib.ticker import MaxNLocator

    depths = sorted({int(d) for d in depths})
    if depths and depths[-1] / depths[0] >= 6:
        ax.set_xscale("log", base=2)
        _depth_ticks(ax.xaxis, depths)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))


def _depth_ticks(axis: Any, depths: Sequence[int]) -> None:
    """Ticks at the swept depths (thinned to 10) on a log axis, no minor ticks."""
    from matplotlib.ticker import (
        FixedFormatter,
        FixedLocator,
        NullFormatter,
        NullLocator,
    )

    ticks = _thin(sorted({int(d) for d in depths}), 10)
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FixedFormatter([str(t) for t in ticks]))
    axis.set_minor_locator(NullLocator())
    axis.set_minor_formatter(NullFormatter())


def _log_spaced(steps: pd.Series, k: int) -> list[int]:
    """About ``k`` of the positive ``steps``, log-spaced, the last one kept."""
    available = np.sort(np.unique(steps.to_numpy(dtype=float)))
    available = available[available > 0]
    if available.size <= k:
        return [int(x) for x in available]
    targets = np.geomspace(available[0], available[-1], k)
    idx = {int(np.argmin(np.abs(np.log(available / t)))) for t in targets}
    return sorted({int(available[i]) for i in idx} | {int(available[-1])})


def _log_axis(axis: Any) -> None:
    """A base-10 log scale with plain tick labels (0.2, 1, 50, 1000)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if axis.axis_name == "x":
        axis.axes.set_xscale("log")
    else:
        axis.axes.set_yscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    axis.set_major_formatter(plain)
    lo, hi = sorted(axis.get_view_interval())
    if lo > 0 and hi / lo < 20:
        # Less than about a decade: label the 2s and 5s too.
        axis.set_minor_locator(LogLocator(base=10, subs=(2.0, 3.0, 5.0)))
        axis.set_minor_formatter(plain)
    else:
        axis.set_minor_formatter(NullFormatter())


def _depth_scale(depths: Sequence[int]) -> tuple[Any, Any]:
    """A discrete sequential colour scale for depth: viridis without its pale end
    (one colour per swept depth, evenly spaced whatever the depths' values)."""
    import matplotlib as mpl
    from matplotlib.colors import BoundaryNorm, ListedColormap

    n = max(len(depths), 1)
    colors = mpl.colormaps["viridis"](np.linspace(0.0, 0.88, n))
    cmap = ListedColormap(colors)
    return cmap, BoundaryNorm(np.arange(n + 1) - 0.5, n)


def _depth_colorbar(
    fig: Figure, axes: Sequence[Axes], cmap: Any, norm: Any, depths: Sequence[int]
) -> None:
    import matplotlib as mpl

    mappable = mpl.cm.ScalarMappable(norm=norm, cmap=cmap)
    bar = fig.colorbar(mappable, ax=list(axes), shrink=0.8, aspect=30, pad=0.02)
    ticks = list(range(len(depths)))
    bar.set_ticks(ticks, labels=[str(d) for d in depths])
    bar.set_label("depth L")
    bar.ax.minorticks_off()


def _fixed_note(data: TrainingData, skip: Sequence[str] = ()) -> str:
    """``Fixed: tanh, gaussian, sigma_b=0.05, ...`` for a caption."""
    quiet = ("output_activation", "dtype", *skip)  # defaults, or implied by cost
    keys = [k for k in CONFIG_KEYS if k in data.fixed and k not in quiet]
    if not keys:
        return ""
    return " Fixed: " + config_label(keys, [data.fixed[k] for k in keys]) + "."


def _loss_label(data: TrainingData) -> str:
    costs = set(data.runs["cost"].dropna())
    if costs == {"cross_entropy"}:
        return "test loss (cross-entropy, nats)"
    if costs == {"quadratic"}:
        return "test loss (quadratic cost)"
    return "test loss (cost)"


def _has_accuracy(data: TrainingData) -> bool:
    return bool(np.isfinite(data.final["test_accuracy"].to_numpy(dtype=float)).any())


def _missing(name: str, reason: str) -> TrainingFigure:
    return TrainingFigure(name, None, reason)


def _need_data(data: TrainingData, name: str) -> TrainingFigure | None:
    if data.runs.empty or data.final.empty:
        return _missing(name, "no finished training runs (task=train) in this sweep")
    return None


# ---------------------------------------------------------------------------
# (a) Test accuracy and loss against depth


def depth_figure(data: TrainingData) -> TrainingFigure:
    """Test accuracy and test loss against depth, with 95% CIs and the best depth.

    One panel per (metric, dataset), one line per config; the best depth of
    each line is a star, every depth indistinguishable from it a ring.
    """
    name = "training_depth"
    if (missing := _need_data(data, name)) is not None:
        return missing
    if data.final["depth"].nunique() < 2:
        depth = int(data.final["depth"].iloc[0])
        return _missing(name, f"depth was not swept (every run has L = {depth})")
    metrics = ["test_accuracy", "test_loss"] if _has_accuracy(data) else ["test_loss"]
    configs = _thin(data.configs, MAX_CONFIGS)
    datasets = data.datasets[:4]
    styles = _line_styles(data, configs)
    stats = {
        m: depth_statistics(data.final[data.final["config"].isin(configs)], m)
        for m in metrics
    }
    spread = np.linspace(-1, 1, len(configs)) * (0.035 if len(configs) > 1 else 0)
    dodge = dict(zip(configs, 2.0**spread, strict=True))
    with _style():
        fig, grid = _panels(
            len(datasets) * len(metrics),
            ncols=len(datasets),
            panel=(3.4, 2.5),
            extra_height=0.25 * math.ceil(len(configs) / 3) + 0.1,
        )
        for row, metric in enumerate(metrics):
            st = stats[metric]
            for col, dataset in enumerate(datasets):
                ax = grid[row][col]
                sub = st[st["dataset"] == dataset]
                for config in configs:
                    line = sub[sub["config"] == config].sort_values("depth")
                    if line.empty:
                        continue
                    x = line["depth"].to_numpy(dtype=float) * dodge[config]
                    y = line["mean"].to_numpy()
                    style = styles[config]
                    color = style["color"]
                    err = np.vstack([y - line["ci_low"], line["ci_high"] - y])
                    ax.errorbar(
                        x,
                        y,
                        yerr=np.where(np.isfinite(err), err, 0.0),
                        color=color,
                        ls=style["ls"],
                        marker=style["marker"],
                        lw=1.4,
                        ms=3.5,
                        capsize=2,
                        elinewidth=0.9,
                        label=config,
                    )
                    same = line["indistinguishable"].to_numpy(dtype=bool)
                    ax.plot(
                        x[same],
                        y[same],
                        "o",
                        ms=9,
                        mfc="none",
                        mec=color,
                        mew=1.3,
                        zorder=4,
                    )
                    best = line["best"].to_numpy(dtype=bool)
                    ax.plot(
                        x[best],
                        y[best],
                        "*",
                        ms=13,
                        color=color,
                        mec="black",
                        mew=0.7,
                        zorder=5,
                    )
                    bad = line["n_diverged"].to_numpy() > 0
                    if bad.any():
                        ax.plot(x[bad], y[bad], "x", ms=7, color="black", zorder=5)
                _depth_axis(ax, sub["depth"])
                if row == 0:
                    ax.set_title(dataset)
                if col == 0:
                    ax.set_ylabel(
                        "test accuracy"
                        if metric == "test_accuracy"
                        else _loss_label(data)
                    )
                if row == len(metrics) - 1:
                    ax.set_xlabel("depth L (layers, input included)")
            for ax, dataset in zip(grid[row], datasets, strict=False):
                sub = st[st["dataset"] == dataset]
                lo = np.nanmin(sub[["mean", "ci_low"]].to_numpy(dtype=float))
                hi = np.nanmax(sub[["mean", "ci_high"]].to_numpy(dtype=float))
                if metric == "test_accuracy":
                    # t intervals can pass 0 and 1; the axis stops at them.
                    bottom, top = ax.get_ylim()
                    ax.set_ylim(max(bottom, -0.01), min(top, 1.01))
                elif np.nanmin(sub["mean"]) > 0 and hi / max(lo, 1e-300) > 3:
                    _log_axis(ax.yaxis)
                    ax.set_ylim(bottom=max(ax.get_ylim()[0], 0.5 * sub["mean"].min()))
                else:
                    ax.set_ylim(bottom=max(ax.get_ylim()[0], 0.0))
        if data.config_keys:
            shown = [c for c in configs if c in set(data.final["config"])]
            handles = [_handle(styles[c]) for c in shown]
            _legend(fig, handles, shown, _legend_title(data))
    n_seeds = _seed_counts(data.final)
    thinned = _thinned_note(configs, data.configs)
    caption = (
        f"Final test accuracy and test loss after training against depth L, "
        f"mean over seeds ({n_seeds}) with 95% Student-t confidence intervals "
        f"(mean +- t_0.975 s/sqrt(n)); points of different configs are shifted "
        f"slightly sideways. Star: the best depth of each line (highest mean "
        f"accuracy, lowest mean loss, among depths where no seed diverged). "
        f"Rings: the best depth and every depth whose mean is not distinguishable "
        f"from it by Welch's two-sided t-test at the 5% level (no correction for "
        f"multiple comparisons; the best depth is chosen on the same test set, so "
        f"its mean is optimistic). x: a depth where some seed diverged (means over "
        f"the others; not eligible as best).{thinned}{_fixed_note(data)}"
    )
    return TrainingFigure(name, fig, caption)


def _handle(style: dict) -> Any:
    from matplotlib.lines import Line2D

    return Line2D([], [], lw=1.6, ms=4, **style)


def _legend_title(data: TrainingData) -> str:
    return (
        "config: " + ", ".join(_SHORT.get(k, k) for k in data.config_keys)
        if (data.config_keys)
        else ""
    )


def _thinned_note(shown: Sequence[str], configs: Sequence[str]) -> str:
    if len(shown) >= len(configs):
        return ""
    return f" Showing {len(shown)} of {len(configs)} configs, evenly spread."


def _seed_counts(final: pd.DataFrame) -> str:
    counts = final.groupby(["dataset", "config", "depth"], dropna=False).size()
    lo, hi = int(counts.min()), int(counts.max())
    return f"{lo} seeds per point" if lo == hi else f"{lo} to {hi} seeds per point"


# ---------------------------------------------------------------------------
# (b) Learning curves per depth


def learning_curves_figure(
    data: TrainingData, metric: str = "test_loss"
) -> TrainingFigure:
    """The mean learning curve (``metric`` against step) of every depth.

    One row of panels per dataset, one panel per config (at most 4 per
    dataset, evenly thinned), one line per depth coloured by depth on a
    sequential (viridis) scale.
    """

    name = "training_curves"
    if (missing := _need_data(data, name)) is not None:
        return missing
    curves = data.curves
    if curves.empty or curves["step"].nunique() < 2:
        return _missing(name, "the runs have fewer than two evaluation steps")
    mean = (
        curves.groupby(["dataset", "config", "depth", "step"], dropna=False)[metric]
        .mean()
        .reset_index()
    )
    order = {c: i for i, c in enumerate(data.configs)}
    rows = []
    for dataset in data.datasets[:3]:
        present = set(mean.loc[mean["dataset"] == dataset, "config"])
        configs = sorted(present, key=lambda c: order.get(c, 0))
        rows.append((dataset, _thin(configs, 4), len(configs)))
    n_cells = sum(total for _, _, total in rows)
    n_shown = sum(len(configs) for _, configs, _ in rows)
    ncols = max(len(configs) for _, configs, _ in rows)
    depths = sorted(int(d) for d in mean["depth"].unique())
    cmap, norm = _depth_scale(depths)
    index = {d: i for i, d in enumerate(depths)}
    loss = metric.endswith("loss")
    with _style():
        fig, grid = _panels(
            len(rows) * ncols,
            ncols=ncols,
            panel=(2.5 if ncols >= 3 else 3.2, 2.2),
            extra_width=0.9,
            sharey="row",
            sharex=True,
        )
        axes = []
        for (dataset, configs, _), row in zip(rows, grid, strict=True):
            for j, ax in enumerate(row):
                if j >= len(configs):
                    fig.delaxes(ax)
                    continue
                config = configs[j]
                axes.append(ax)
                sub = mean[(mean["dataset"] == dataset) & (mean["config"] == config)]
                for depth, line in sub.groupby("depth"):
                    ax.plot(
                        line["step"],
                        line[metric],
                        color=cmap(norm(index[int(depth)])),
                        lw=1.2,
                    )
                ax.set_title(config or dataset, fontsize=8.5)
                ax.xaxis.set_tick_params(labelbottom=True)
            values = mean.loc[mean["dataset"] == dataset, metric].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            if loss and values.size and values.min() > 0:
                if values.max() / values.min() > 3:
                    _log_axis(row[0].yaxis)
            what = (
                _loss_label(data) if metric == "test_loss" else metric.replace("_", " ")
            )
            row[0].set_ylabel(f"{dataset}\n{what}")
        for ax in grid[-1]:
            ax.set_xlabel("training step")
        _depth_colorbar(fig, axes, cmap, norm, depths)
    thinned = (
        f" Showing {n_shown} of {n_cells} panels (at most 4 configs per dataset)."
        if n_shown < n_cells
        else ""
    )
    caption = (
        f"Learning curves: {metric.replace('_', ' ')} against training step "
        f"(one update on one mini-batch), mean over the seeds that had not "
        f"diverged, one line per depth L (colour: depth, sequential scale). "
        f"One panel per dataset and config.{thinned}{_fixed_note(data)}"
    )
    return TrainingFigure(name, fig, caption)


# ---------------------------------------------------------------------------
# (c) Trainability over (sigma_w, depth)


def _xi_curve(
    activation: str, init: str, width: float, sigma_b: float, sigma_w: np.ndarray
) -> np.ndarray:
    """xi_c at each sigma_w (the scheme's fan-in scale), NaN where undefined."""
    from depthlab import theory
    from depthlab.initializers import effective_sigma_w

    out = np.full(sigma_w.shape, np.nan)
    for i, sw in enumerate(sigma_w):
        try:
            hidden = effective_sigma_w(init, int(width), int(width), float(sw))
            out[i] = theory.depth_scales(activation, hidden, float(sigma_b))[1]
        except (ValueError, ArithmeticError):
            pass
    return out


def _critical(activation: str, init: str, width: float, sigma_b: float) -> float:
    from depthlab import theory
    from depthlab.initializers import effective_sigma_w

    try:
        scale = effective_sigma_w(init, int(width), int(width), 1.0)
        return theory.critical_sigma_w(activation, float(sigma_b)) / scale
    except (ValueError, ArithmeticError, ZeroDivisionError):
        return math.nan


def _critical_style() -> dict[str, Any]:
    """A dotted dark line with a white halo: visible on light and dark cells."""
    from matplotlib import patheffects

    halo = [patheffects.Stroke(linewidth=3.2, foreground="white"), patheffects.Normal()]
    return {"color": "0.15", "ls": ":", "lw": 1.5, "path_effects": halo}


def _edges(centers: np.ndarray, *, log: bool) -> np.ndarray:
    c = np.log(centers) if log else centers.astype(float)
    if c.size == 1:
        edges = np.array([c[0] - 0.5, c[0] + 0.5])
    else:
        mid = (c[1:] + c[:-1]) / 2
        edges = np.concatenate(
            [[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]]
        )
    return np.exp(edges) if log else edges


def trainability_heatmap(
    data: TrainingData, *, xi_multiples: Sequence[float] = (XI_MULTIPLE,)
) -> TrainingFigure:
    """Mean final test accuracy over (sigma_w, depth), with multiples of xi_c.

    One panel per (dataset, config without sigma_w) that has at least three
    values of sigma_w and two depths.

    Parameters
    ----------
    data : TrainingData
    xi_multiples : sequence of float
        Draw the curves L = m xi_c(sigma_w) for each m (solid, dashed, dash-dot);
        Schoenholz et al. (2017) found networks trainable up to about 6 xi_c.
    """
    import matplotlib as mpl

    name = "training_heatmap"
    if (missing := _need_data(data, name)) is not None:
        return missing
    if not _has_accuracy(data):
        return _missing(name, "no accuracies: the datasets are regression tasks")
    keys = [k for k in data.config_keys if k != "sigma_w"]
    final = data.final.copy()
    final["panel"] = (
        [config_label(keys, list(v)) for v in final[keys].itertuples(index=False)]
        if keys
        else ""
    )
    panels = []
    for (dataset, panel), sub in final.groupby(["dataset", "panel"], sort=False):
        if sub["sigma_w"].nunique() >= 3 and sub["depth"].nunique() >= 2:
            panels.append((dataset, panel, sub))
    if not panels:
        n_sw = int(data.final["sigma_w"].nunique())
        return _missing(
            name,
            f"sigma_w was not swept at three or more values with two or more depths "
            f"(this sweep has {n_sw} value{'s' if n_sw != 1 else ''} of sigma_w)",
        )
    total = len(panels)
    panels = panels[:MAX_HEATMAPS]
    cmap = mpl.colormaps["viridis"]
    with _style():
        fig, grid = _panels(
            len(panels),
            ncols=min(len(panels), 2),
            panel=(4.2, 3.2),
            extra_width=0.8,
            extra_height=0.2,
        )
        axes = [ax for row in grid for ax in row][: len(panels)]
        mesh = None
        xi_drawn = crit_drawn = False
        for ax, (dataset, panel, sub) in zip(axes, panels, strict=True):
            ok = sub[~sub["diverged"].to_numpy(dtype=bool)]
            table = ok.pivot_table(
                index="depth",
                columns="sigma_w",
                values="test_accuracy",
                aggfunc="mean",
            )
            sws = np.sort(sub["sigma_w"].unique())
            depths = np.sort(sub["depth"].unique())
            table = table.reindex(index=depths, columns=sws)
            div = sub.pivot_table(
                index="depth", columns="sigma_w", values="diverged", aggfunc="mean"
            ).reindex(index=depths, columns=sws)
            x_edges = _edges(sws, log=False)
            y_edges = _edges(depths.astype(float), log=True)
            mesh = ax.pcolormesh(
                x_edges,
                y_edges,
                np.ma.masked_invalid(table.to_numpy(dtype=float)),
                cmap=cmap,
                vmin=0.0,
                vmax=1.0,
                shading="flat",
            )
            ax.set_facecolor("#bbbbbb")
            for (i, depth), (j, sw) in (
                (a, b) for a in enumerate(depths) for b in enumerate(sws)
            ):
                if div.iat[i, j] > 0:
                    ax.plot(sw, depth, "x", color="white", ms=5, mew=1.2)
            ax.set_yscale("log", base=2)
            _depth_ticks(ax.yaxis, depths)
            ax.set_xlim(x_edges[0], x_edges[-1])
            ax.set_ylim(y_edges[0], y_edges[-1])
            ax.grid(False)
            first = sub.iloc[0]
            fine = np.linspace(x_edges[0], x_edges[-1], 400)
            fine = fine[fine > 0]
            xi = _xi_curve(
                str(first["activation"]),
                str(first["init"]),
                float(first["width"]),
                float(first["sigma_b"]),
                fine,
            )
            if np.isfinite(xi).any():
                xi_drawn = True
                for m, ls in zip(xi_multiples, XI_STYLES, strict=False):
                    ax.plot(fine, m * xi, color=XI_COLOR, lw=2.0, ls=ls)
            crit = _critical(
                str(first["activation"]),
                str(first["init"]),
                float(first["width"]),
                float(first["sigma_b"]),
            )
            if math.isfinite(crit) and x_edges[0] < crit < x_edges[-1]:
                crit_drawn = True
                ax.axvline(crit, **_critical_style())
            ax.set_title(f"{dataset}, {panel}" if panel else dataset, fontsize=9)
        for i, ax in enumerate(axes):
            ncols = min(len(panels), 2)
            if i % ncols == 0:
                ax.set_ylabel("depth L")
            if i + ncols >= len(axes):
                ax.set_xlabel("sigma_w (weight std x sqrt(fan-in))")
        bar = fig.colorbar(mesh, ax=axes, shrink=0.85, aspect=30, pad=0.02)
        bar.set_label("mean final test accuracy")
        from matplotlib.lines import Line2D

        handles, labels = [], []
        if xi_drawn:
            for m, ls in zip(xi_multiples, XI_STYLES, strict=False):
                handles.append(Line2D([], [], color=XI_COLOR, lw=2, ls=ls))
                labels.append(f"L = {m:g} xi_c(sigma_w)")
        if crit_drawn:
            handles.append(Line2D([], [], **_critical_style()))
            labels.append("critical sigma_w (chi_1 = 1)")
        if handles:
            _legend(fig, handles, labels)
    note = f" Showing {len(panels)} of {total} panels." if total > len(panels) else ""
    multiples = " and ".join(f"{m:g}" for m in xi_multiples[: len(XI_STYLES)])
    caption = (
        f"Trainability: mean final test accuracy over seeds that did not diverge, "
        f"for every (sigma_w, depth L); white x: some seed diverged; grey: no "
        f"seed trained to the end (every seed diverged, or no run). Orange: "
        f"L = {multiples} xi_c(sigma_w), xi_c being the "
        f"mean-field depth scale of input correlations (Schoenholz et al. 2017 "
        f"found networks deeper than about 6 xi_c untrainable), computed for the "
        f"hidden layers' sigma_w and sigma_b; the curves run off the top near the "
        f"critical sigma_w (dotted, chi_1 = 1), where xi_c diverges."
        f"{note}{_fixed_note(data, ('sigma_w',))}"
    )
    return TrainingFigure(name, fig, caption)


# ---------------------------------------------------------------------------
# (d) Gradient health at initialization against trainability


def gradient_health_figure(data: TrainingData) -> TrainingFigure:
    """Final test accuracy against the initial gradient norm, one point per cell.

    x: the median over seeds and training inputs of log10 ||grad a^[L](x)|| at
    initialization; y: the mean final test accuracy over seeds (95% CI). One
    path per config (colour and line style as in the other figures) through its
    depths, the marker growing with depth.
    """
    from matplotlib.lines import Line2D

    name = "training_gradient_health"
    if (missing := _need_data(data, name)) is not None:
        return missing
    if not _has_accuracy(data):
        return _missing(name, "no accuracies: the datasets are regression tasks")
    runs = data.runs
    if not np.isfinite(runs["init_grad_log10_norm_median"].to_numpy(dtype=float)).any():
        return _missing(name, "the runs have no initial gradient statistics")
    stats = depth_statistics(data.final, "test_accuracy")
    grad = (
        runs.groupby(["dataset", "config", "depth"], dropna=False)[
            "init_grad_log10_norm_median"
        ]
        .median()
        .reset_index()
    )
    points = stats.merge(grad, on=["dataset", "config", "depth"])
    depths = sorted(int(d) for d in points["depth"].unique())
    span = math.log2(depths[-1] / depths[0]) if depths[-1] > depths[0] else 1.0

    def size(depth: float) -> float:
        return 3.0 + 6.0 * math.log2(depth / depths[0]) / span

    configs = _thin(data.configs, MAX_CONFIGS)
    styles = _line_styles(data, configs)
    datasets = data.datasets[:4]
    with _style():
        fig, grid = _panels(
            len(datasets),
            ncols=len(datasets),
            panel=(3.6, 2.9),
            extra_height=0.3 * math.ceil(len(configs) / 2) + 0.3,
        )
        axes = [ax for row in grid for ax in row][: len(datasets)]
        for ax, dataset in zip(axes, datasets, strict=True):
            sub = points[points["dataset"] == dataset]
            for config in configs:
                line = sub[sub["config"] == config].sort_values("depth")
                if line.empty:
                    continue
                style = styles[config]
                x = line["init_grad_log10_norm_median"].to_numpy(dtype=float)
                y = line["mean"].to_numpy(dtype=float)
                err = np.vstack([y - line["ci_low"], line["ci_high"] - y])
                ax.errorbar(
                    x,
                    y,
                    yerr=np.where(np.isfinite(err), err, 0.0),
                    fmt="none",
                    ecolor=style["color"],
                    alpha=0.5,
                    elinewidth=0.7,
                    zorder=2,
                )
                ax.plot(x, y, color=style["color"], ls=style["ls"], lw=0.9, zorder=2)
                for xi, yi, d in zip(x, y, line["depth"], strict=True):
                    ax.plot(
                        xi,
                        yi,
                        marker=style["marker"],
                        ms=size(d),
                        color=style["color"],
                        mec="black",
                        mew=0.4,
                        zorder=3,
                    )
            ax.set_title(dataset)
            ax.set_xlabel("median log10 ||grad a^[L](x)|| at init")
            bottom, top = ax.get_ylim()
            ax.set_ylim(max(bottom, -0.01), min(top, 1.01))
        axes[0].set_ylabel("mean final test accuracy")
        handles, labels = [], []
        if data.config_keys:
            handles += [_handle(styles[c]) for c in configs]
            labels += list(configs)
        for d in _thin(depths, 3):
            handles.append(
                Line2D([], [], ls="none", marker="o", ms=size(d), color="0.6", mec="k")
            )
            labels.append(f"L = {d}")
        _legend(fig, handles, labels, _legend_title(data))
    caption = (
        "Gradient health at initialization against trainability: for every "
        "(config, depth L), the median over seeds and training inputs of "
        "log10 ||grad a^[L](x)|| (the input-output gradient of the untrained "
        "network) against the mean final test accuracy over seeds (bars: 95% "
        "Student-t intervals). Each config is a path through its depths; the "
        f"marker grows with depth (L = {depths[0]} to {depths[-1]})."
        + _thinned_note(configs, data.configs)
        + _fixed_note(data)
    )
    return TrainingFigure(name, fig, caption)


# ---------------------------------------------------------------------------
# (e) The best depth against the training budget


def optimal_depth_vs_step_figure(
    data: TrainingData, metric: str = "test_accuracy"
) -> TrainingFigure:
    """The best depth (and its indistinguishable set) after every evaluation step."""
    name = "training_best_depth_vs_step"
    if (missing := _need_data(data, name)) is not None:
        return missing
    if data.final["depth"].nunique() < 3 or data.curves["step"].nunique() < 3:
        return _missing(name, "needs three or more depths and evaluation steps")
    by_step = best_depth_by_step(data, metric)
    by_step = by_step[by_step["step"] > 0].dropna(subset=["best_depth"])
    if by_step.empty:
        return _missing(name, "no depth is eligible at any step (too few seeds)")
    by_step = by_step[by_step["step"].isin(_log_spaced(by_step["step"], MAX_STEPS))]
    configs = _thin(data.configs, MAX_CONFIGS)
    styles = _line_styles(data, configs)
    datasets = data.datasets[:4]
    depths = sorted(int(d) for d in data.final["depth"].unique())
    with _style():
        fig, grid = _panels(
            len(datasets),
            ncols=len(datasets),
            panel=(3.6, 2.8),
            extra_height=0.25 * math.ceil(len(configs) / 3) + 0.1,
            sharey=True,
        )
        axes = [ax for row in grid for ax in row][: len(datasets)]
        for ax, dataset in zip(axes, datasets, strict=True):
            sub = by_step[by_step["dataset"] == dataset]
            for config in configs:
                line = sub[sub["config"] == config].sort_values("step")
                if line.empty:
                    continue
                style = styles[config]
                steps = line["step"].to_numpy(dtype=float)
                ax.fill_between(
                    steps,
                    line["depth_min"].to_numpy(dtype=float),
                    line["depth_max"].to_numpy(dtype=float),
                    color=style["color"],
                    alpha=0.25 if len(configs) == 1 else 0.12,
                    lw=0,
                )
                ax.plot(
                    steps,
                    line["best_depth"].to_numpy(dtype=float),
                    lw=1.6,
                    ms=4,
                    label=config,
                    **style,
                )
            ax.set_yscale("log", base=2)
            _depth_ticks(ax.yaxis, depths)
            ax.set_ylim(depths[0] / 1.15, depths[-1] * 1.15)
            _log_axis(ax.xaxis)
            ax.set_title(dataset)
            ax.set_xlabel("training step (budget)")
        axes[0].set_ylabel("best depth L")
        shown = [c for c in configs if c in set(by_step["config"])]
        if data.config_keys and shown:
            _legend(
                fig, [_handle(styles[c]) for c in shown], shown, _legend_title(data)
            )
    caption = (
        f"The best depth (highest mean {METRICS[metric][0]} over seeds; line and "
        f"markers) and the range of depths indistinguishable from it (Welch "
        f"t-test at 5%; shaded from the shallowest to the deepest such depth) "
        f"when training stops after a given number of steps (log-spaced "
        f"evaluation steps), read from the learning curves: the optimizer has "
        f"no schedule, so stopping at step s is the budget s."
        f"{_thinned_note(configs, data.configs)}{_fixed_note(data)}"
    )
    return TrainingFigure(name, fig, caption)


# ---------------------------------------------------------------------------
# Entries for the report


def training_figures(sweep: Sweep | TrainingData) -> list[TrainingFigure]:
    """Every training figure of a sweep, drawn or with the reason it is not.

    Parameters
    ----------
    sweep : depthlab.tracking.Sweep or TrainingData
        A sweep from :func:`depthlab.tracking.load_sweep` (its training runs are
        used), or data already prepared with :func:`prepare_training`.

    Returns
    -------
    list of TrainingFigure
        ``(name, figure or None, caption or reason)`` in the order
        ``training_depth``, ``training_curves``, ``training_heatmap``,
        ``training_gradient_health``, ``training_best_depth_vs_step``; headings
        in :data:`FIGURE_TITLES`. Render with
        ``FigureCanvasAgg(fig); fig.savefig(...)``.
    """
    data = sweep if isinstance(sweep, TrainingData) else prepare_training(sweep)
    return [
        depth_figure(data),
        learning_curves_figure(data),
        trainability_heatmap(data),
        gradient_health_figure(data),
        optimal_depth_vs_step_figure(data),
    ]


def _esc(text: Any) -> str:
    """HTML-escaped, with ``|`` escaped too (a markdown table separator)."""
    return html.escape(str(text), quote=True).replace("|", "&#124;")


def _depth_list(depths: Sequence[int]) -> str:
    return ", ".join(str(d) for d in depths) if depths else "none"


def summary_table(data: TrainingData, metric: str = "test_accuracy") -> pd.DataFrame:
    """The best depth of every (dataset, config) with its evidence, as numbers.

    Returns
    -------
    pandas.DataFrame
        The columns of :func:`best_depths` plus ``width``, ``xi_c`` (mean-field
        depth scale of the config, the median over its runs), ``beta_best``
        (beta = sum_l 1/n_l over hidden layers at the best depth) and
        ``best_over_xi_c``.
    """
    if data.final.empty:
        return pd.DataFrame()
    best = best_depths(depth_statistics(data.final, metric))
    runs = data.runs
    per = (
        runs.groupby(["dataset", "config"], dropna=False)
        .agg(width=("width", "first"), xi_c=("theory_xi_c", "median"))
        .reset_index()
    )
    out = best.merge(per, on=["dataset", "config"], how="left")
    beta = runs.set_index(["dataset", "config", "depth"])["beta"]
    beta = beta[~beta.index.duplicated()]
    out["beta_best"] = [
        float(beta.get((r.dataset, r.config, r.best_depth), math.nan))
        if math.isfinite(r.best_depth)
        else math.nan
        for r in out.itertuples()
    ]
    out["best_over_xi_c"] = out["best_depth"] / out["xi_c"]
    return out


def _number(x: float, digits: int = 3) -> str:
    if not math.isfinite(x):
        return "inf" if x == math.inf else "-"
    return f"{x:.{digits}g}" if abs(x) < 1e4 else f"{x:.2e}"


def training_summary(sweep: Sweep | TrainingData) -> str:
    """A markdown summary: the best depth of every config and its set.

    Every string that comes from a config or a dataset name is HTML-escaped
    (and ``|`` too), so the text can be put in a page as is or rendered as
    markdown.

    Parameters
    ----------
    sweep : depthlab.tracking.Sweep or TrainingData

    Returns
    -------
    str
        Markdown: one table per metric (test accuracy if the tasks classify,
        then test loss) and a line on how the statistics are made.
    """
    data = sweep if isinstance(sweep, TrainingData) else prepare_training(sweep)
    if data.final.empty:
        return "No finished training runs (task=train) in this sweep.\n"
    lines = [
        "Best depth per config: the depth with the best mean over seeds among "
        "depths where no seed diverged; *indistinguishable*: every depth whose "
        f"mean does not differ from the best's by Welch's two-sided t-test at "
        f"{ALPHA:.0%} (no multiple-comparison correction); CI: 95% Student-t "
        "interval of the mean. beta = sum over hidden layers of 1/n_l at the "
        "best depth; xi_c: the mean-field correlation depth scale.",
    ]
    if data.fixed:
        keys = [k for k in CONFIG_KEYS if k in data.fixed]
        lines.append(
            "Fixed in this sweep: "
            + _esc(config_label(keys, [data.fixed[k] for k in keys]))
            + "."
        )
    metrics = ["test_accuracy", "test_loss"] if _has_accuracy(data) else ["test_loss"]
    for metric in metrics:
        table = summary_table(data, metric)
        lines += [
            "",
            f"**{METRICS[metric][0].capitalize()}**",
            "",
            "| dataset | config | best L | mean [95% CI] | seeds | "
            "indistinguishable L | beta at best | xi_c | not eligible |",
            "|---|---|---:|---|---:|---|---:|---:|---|",
        ]
        for r in table.itertuples():
            best = "-" if not math.isfinite(r.best_depth) else str(int(r.best_depth))
            ci = (
                f"{_number(r.mean, 4)} "
                f"[{_number(r.ci_low, 4)}, {_number(r.ci_high, 4)}]"
                if math.isfinite(r.mean)
                else "-"
            )
            lines.append(
                f"| {_esc(r.dataset)} | {_esc(r.config or '(one config)')} | {best} "
                f"| {ci} | {r.n} | {_depth_list(r.indistinguishable)} "
                f"| {_number(r.beta_best)} | {_number(r.xi_c)} "
                f"| {_depth_list(r.ineligible)} |"
            )
    return "\n".join(lines) + "\n"
