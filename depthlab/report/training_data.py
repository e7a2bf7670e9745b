"""A training sweep (``task=train``) arranged for the figures and tables.

Everything starts from the tidy frames of :func:`depthlab.tracking.load_sweep`
(the ``runs`` table and the ``curves`` and ``final`` tables of the training
jobs, see :mod:`depthlab.jobs.train`).

A **config** is everything a sweep varies except ``depth``, the dataset and the
seeds: one config is one line in a figure. Its label names only the keys that
vary within the sweep (``width=16, sigma_w=2.5``); the dataset is a panel. The
statistics over seeds are those of :mod:`depthlab.report.stats`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from depthlab.jobs.schema import BY_COLUMN, param_renames
from depthlab.report.data import fold_architecture, format_value, same_computation
from depthlab.report.stats import best_depths, depth_statistics
from depthlab.tracking import Sweep

_TABLE_KEYS = ("width", "activation", "init", "sigma_w", "sigma_b", "optimizer")
_ARCH_KEYS = ("arch", "norm", "branch_scale", "depth_power")
"""Columns of the tables since the ``arch`` keys (defaults for older stores);
``arch`` is folded into ``mlp`` / ``resnet a=1/sqrt`` labels
(:func:`depthlab.report.data.fold_architecture`)."""
_PARAM_KEYS = (
    "learning_rate",
    "momentum",
    "batch_size",
    "steps",
    "cost",
    "output_activation",
    "dtype",
    "output_dim",
)
"""Run params read into the config table (params are named by their column)."""
CONFIG_KEYS = (
    "arch",
    "norm",
    *_TABLE_KEYS,
    *(k for k in _PARAM_KEYS if k != "output_dim"),
)
"""Keys that can tell configs apart, in the order they appear in labels."""
NUMERIC_KEYS = {"width", "sigma_w", "sigma_b", "learning_rate", "momentum"}
INTEGER_KEYS = {"batch_size", "steps", "output_dim"}
SHORT_NAMES = {"learning_rate": "lr", "batch_size": "batch", "output_activation": "out"}
BARE_KEYS = ("arch", "activation", "init", "optimizer", "cost", "dtype")
_RUN_METRICS = (
    "init_grad_log10_norm_median",
    "theory_xi_c",
    "theory_chi1",
    "beta",
    "diverged_fraction",
)


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


def config_label(keys: Sequence[str], values: Sequence[Any]) -> str:
    """``width=16, sigma_w=2.5``; names (activation, init, ...) appear bare.

    Examples
    --------
    >>> config_label(["width", "init", "learning_rate"], [16, "gaussian", 0.01])
    'width=16, gaussian, lr=0.01'
    """
    parts = []
    for key, value in zip(keys, values, strict=True):
        text = format_value(value)
        parts.append(
            text if key in BARE_KEYS else f"{SHORT_NAMES.get(key, key)}={text}"
        )
    return ", ".join(parts)


def _param_column(runs: pd.DataFrame, key: str) -> pd.Series:
    column = f"params.{key}"
    if column not in runs:
        return pd.Series(
            np.nan if key in NUMERIC_KEYS | INTEGER_KEYS else None, index=runs.index
        )
    raw = runs[column].astype(object).where(~runs[column].isin(["null", "None"]))
    if key in NUMERIC_KEYS | INTEGER_KEYS:
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
    runs = runs.rename(columns=param_renames(runs.columns))
    runs = runs[(runs["params.task"] == "train") & (runs["status"] == "FINISHED")]
    runs = runs[~same_computation(runs)]
    info = pd.DataFrame({"run_id": runs["run_id"].to_numpy()})
    for key in _PARAM_KEYS:
        info[key] = _param_column(runs, key).to_numpy()
    # Momentum means nothing for Adam: blank it so it never splits configs.
    sgd = (
        runs["params.optimizer"].to_numpy() == "sgd"
        if "params.optimizer" in runs
        else np.zeros(len(runs), dtype=bool)
    )
    info["momentum"] = np.where(sgd, info["momentum"].to_numpy(dtype=float), np.nan)
    for metric in _RUN_METRICS:
        values = runs[metric] if metric in runs else np.nan
        info[metric] = pd.to_numeric(pd.Series(values, index=runs.index)).to_numpy()

    def join(table: pd.DataFrame) -> pd.DataFrame:
        extra = info.drop(columns=list(_RUN_METRICS))
        # The tables carry the training keys as columns too: the params win.
        table = table.drop(columns=[c for c in extra if c != "run_id" and c in table])
        out = table.merge(extra, on="run_id")
        out["test_accuracy"] = out["test_accuracy"].astype(float)
        for key in _ARCH_KEYS:
            if key not in out:
                out[key] = BY_COLUMN[key].default
        return fold_architecture(out)

    final = join(tables["final"])
    curves = join(tables["curves"])
    first = final.drop_duplicates("run_id")
    run_table = first[["run_id", "dataset", "depth", *_TABLE_KEYS, "arch", "norm"]]
    run_table = run_table.merge(info, on="run_id")
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
