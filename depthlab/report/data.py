"""From a :class:`~depthlab.tracking.Sweep` to the frames the figures and text use.

A *config* is everything a sweep varies except ``depth``: the runs of one config
differ only in depth, and one config is one line in the figures. Its keys are
split in two:

- *facet keys*: categorical keys (``activation``, ``output_activation``,
  ``dtype``, ``init``) get one panel per value;
- *hue keys*: numeric keys (``sigma_w``, ``sigma_b``, ``width``, ...) get one
  colour per value combination. When no numeric key varies, the last varying
  categorical key (``arch``, then ``norm``, ``init``, ``activation``) is the hue
  instead, so that e.g. an MLP and resnets share a panel (one per ``norm``),
  or Gaussian and orthogonal weights do.

The architecture is one key, ``arch``, in the report: ``mlp`` or a resnet with
its branch multiplier, ``resnet a=1`` or ``resnet a=1/sqrt``
(:func:`architecture_label`); ``branch_scale`` and ``depth_power`` are folded
into it (an MLP has no branch, so MLP runs that differ only in them are one
config, drawn once).

Every figure takes its colours from :attr:`ReportData.colors`, built once, so the
same config has the same colour in every figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from depthlab.jobs.probe import CONFIG_COLUMNS
from depthlab.tracking import Sweep

CONFIG_KEYS = (*CONFIG_COLUMNS, "hidden_widths")
"""Every key that can tell configs apart (``hidden_widths`` only as a param)."""

from depthlab.jobs.schema import (  # noqa: E402
    BY_KEY,
    CATEGORICAL_KEYS,
    NUMERIC_KEYS,
    PARAM_OF,
    arch_label,
    param_renames,
)

FOLDED_KEYS = ("branch_scale", "depth_power")
"""Config keys the report shows inside the ``arch`` label, not on their own."""


def architecture_label(arch: Any, branch_scale: Any, depth_power: Any) -> str:
    """``mlp``, ``resnet a=1``, ``resnet a=1/sqrt``: the report's ``arch`` value.

    Missing values (stores from before the ``arch`` keys) are the defaults.

    Examples
    --------
    >>> architecture_label("resnet", 1.0, 0.5), architecture_label("mlp", 2.0, 0.5)
    ('resnet a=1/sqrt', 'mlp')
    """

    def value(x: Any, key: str) -> Any:
        return (
            BY_KEY[key].default
            if x is None or (isinstance(x, float) and math.isnan(x))
            else x
        )

    name = str(value(arch, "arch.name"))
    if name != "resnet":
        return name
    d = {
        "arch": {
            "name": name,
            "norm": "none",
            "branch_scale": float(value(branch_scale, "arch.branch_scale")),
            "depth_power": float(value(depth_power, "arch.depth_power")),
        }
    }
    return f"resnet {arch_label('arch.branch_scale', d)}"


def same_computation(runs: pd.DataFrame) -> pd.Series:
    """True for every FINISHED run that repeats an earlier one: the same
    params once an MLP's ``branch_scale`` and ``depth_power`` (which it does not
    read) are set to their defaults. Such runs are drawn once.
    """
    params = [c for c in runs.columns if c.startswith("params.")]
    if "params.arch" not in runs or not params:
        return pd.Series(False, index=runs.index)
    normalized = runs[params].astype(object).copy()
    mlp = normalized["params.arch"].ne("resnet")
    for key in FOLDED_KEYS:
        column = f"params.{key}"
        if column in normalized:
            default = str(BY_KEY[f"arch.{key}"].default)
            normalized.loc[mlp, column] = default
    finished = (
        runs["status"].eq("FINISHED")
        if "status" in runs
        else pd.Series(True, index=runs.index)
    )
    repeated = pd.Series(False, index=runs.index)
    repeated[finished] = normalized[finished].fillna("").duplicated()
    return repeated


def fold_architecture(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its ``arch`` column as :func:`architecture_label` and its
    ``norm`` column filled (``none`` where missing); unchanged without ``arch``."""
    if "arch" not in frame:
        return frame
    frame = frame.copy()
    missing = pd.Series(np.nan, index=frame.index)
    scale = pd.to_numeric(frame.get("branch_scale", missing), errors="coerce")
    power = pd.to_numeric(frame.get("depth_power", missing), errors="coerce")
    frame["arch"] = [
        architecture_label(a, c, p)
        for a, c, p in zip(frame["arch"].astype(object), scale, power, strict=True)
    ]
    if "norm" in frame:
        frame["norm"] = (
            frame["norm"].astype(object).where(frame["norm"].notna(), "none")
        )
    return frame


PROBE_METRICS = ("grad_log10_norm_median", "grad_log10_norm_mean", "beta")
"""Summary metrics that mark a run as a probe job (training jobs have none)."""

MAX_COLORS_CATEGORICAL = 8
"""Up to this many hue levels get the categorical colour-blind palette."""


@dataclass
class ReportData:
    """A sweep arranged for plotting.

    Attributes
    ----------
    parent_run_id, parent_name : str
        The sweep's parent run.
    runs : pandas.DataFrame
        Every child run (``run_id``, ``run_name``, ``status``, config columns
        where known), as read from MLflow.
    summary : pandas.DataFrame
        One row per FINISHED probe run: ``run_id``, ``run_name``, the config
        columns, the summary metrics, and the labels ``config`` (full config
        label, without depth), ``hue`` and ``facet``.
    tables : dict of str to pandas.DataFrame
        The tidy tables of those runs (``samples``, ``layers``, ``spectrum``,
        ``theory``, ``per_layer``), unchanged.
    varying : dict of str to list
        Every config key with more than one value among the finished runs
        (``depth`` included), with its sorted values.
    fixed : dict of str to object
        The config keys with a single value.
    hue_keys, facet_keys : list of str
        See the module docstring.
    hue_order, facet_order, config_order : list of str
        The labels in plotting order.
    colors : dict of str to tuple
        Hue label -> RGB colour, the same in every figure.
    """

    parent_run_id: str
    parent_name: str
    runs: pd.DataFrame
    summary: pd.DataFrame
    tables: dict[str, pd.DataFrame]
    varying: dict[str, list[Any]]
    fixed: dict[str, Any]
    hue_keys: list[str]
    facet_keys: list[str]
    hue_order: list[str]
    facet_order: list[str]
    config_order: list[str]
    colors: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    hue_names: dict[str, str] = field(default_factory=dict)
    """Hue label -> its legend entry (the bare value when one key is the hue)."""

    @property
    def has_probe_data(self) -> bool:
        """True if at least one finished run has a probe summary."""
        return len(self.summary) > 0

    def deepest(self) -> pd.DataFrame:
        """The deepest finished run of each config (one row per config)."""
        s = self.summary.sort_values("depth")
        return s.groupby("config", sort=False).tail(1).set_index("config")

    def color(self, hue: str) -> tuple[float, float, float]:
        """The colour of a hue label."""
        return self.colors[hue]


def format_value(value: Any) -> str:
    """A config value as text: ``1.5``, ``64``, ``tanh``."""
    if isinstance(value, float | np.floating):
        if math.isfinite(value) and float(value).is_integer():
            return str(int(value))
        return f"{float(value):.4g}"
    return str(value)


def label(keys: Sequence[str], values: Sequence[Any]) -> str:
    """``key=value`` pairs joined by ``, ``; categorical values appear bare.

    Examples
    --------
    >>> label(["activation", "sigma_w"], ["tanh", 1.5])
    'tanh, sigma_w=1.5'
    """
    parts = []
    for key, value in zip(keys, values, strict=True):
        text = format_value(value)
        parts.append(text if key in ("activation", "init", "arch") else f"{key}={text}")
    return ", ".join(parts)


def _config_from_params(runs: pd.DataFrame) -> pd.DataFrame:
    """Config columns from the ``params.*`` strings of the runs table."""
    runs = runs.rename(columns=param_renames(runs.columns))
    out = pd.DataFrame({"run_id": runs["run_id"]})
    for key, param in PARAM_OF.items():
        column = f"params.{param}"
        numeric = key in NUMERIC_KEYS or key == "depth"
        if column not in runs:
            out[key] = pd.Series(
                np.nan if numeric else None,
                index=runs.index,
                dtype=float if numeric else object,
            )
            continue
        raw = runs[column].astype(object).where(~runs[column].isin(["null", "None"]))
        out[key] = pd.to_numeric(raw, errors="coerce") if numeric else raw
    missing = out["output_activation"].isna()
    out["output_activation"] = out["output_activation"].where(
        ~missing, out["activation"]
    )
    return out


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, int | float | np.integer | np.floating):
        return (0, float(value))
    return (1, str(value))


def _unique(values: pd.Series) -> list[Any]:
    return sorted(pd.unique(values.dropna()).tolist(), key=_sort_key)


def sequential_colors(n: int) -> list[tuple[float, float, float]]:
    """``n`` colours of the sequential, colour-blind-safe viridis map, without
    its pale end (the colours of ordered levels: sigma_w, depth, ...)."""
    import matplotlib as mpl

    cmap = mpl.colormaps["viridis"]
    return [tuple(float(c) for c in cmap(x)[:3]) for x in np.linspace(0, 0.85, n)]


def palette(n: int, *, ordered: bool) -> list[tuple[float, float, float]]:
    """``n`` colour-blind-safe colours: sequential (:func:`sequential_colors`)
    for three or more ordered levels or many levels, seaborn's ``colorblind``
    palette otherwise. Every figure of the report takes its colours from here."""
    import seaborn as sns

    if (ordered and n >= 3) or n > MAX_COLORS_CATEGORICAL:
        return sequential_colors(n)
    return [tuple(float(c) for c in rgb) for rgb in sns.color_palette("colorblind", n)]


def prepare(sweep: Sweep) -> ReportData:
    """Arrange a sweep for plotting: configs, labels and colours.

    Parameters
    ----------
    sweep : depthlab.tracking.Sweep
        As returned by :func:`depthlab.tracking.load_sweep`.

    Returns
    -------
    ReportData
    """
    runs = sweep.runs.copy()
    if runs.empty:
        runs = pd.DataFrame(columns=["run_id", "run_name", "status"])
    tables = dict(sweep.tables)
    config = _config_from_params(runs)
    source = next(
        (tables[n] for n in ("per_layer", "samples", "theory") if n in tables), None
    )
    if source is not None and "run_id" in source:
        present = [c for c in CONFIG_COLUMNS if c in source]
        from_tables = source.drop_duplicates("run_id").set_index("run_id")
        known = config["run_id"].isin(from_tables.index)
        for key in present:
            config[key] = (
                config["run_id"].map(from_tables[key]).where(known, config[key])
            )
    runs = runs.drop(columns=[c for c in CONFIG_KEYS if c in runs]).merge(
        config, on="run_id", how="left"
    )
    runs = fold_architecture(runs[~same_computation(runs)])
    finished = runs["status"].eq("FINISHED")
    markers = [c for c in PROBE_METRICS if c in runs]
    probe = finished & (runs[markers].notna().any(axis=1) if markers else False)
    summary = runs[probe].copy()
    for key in ("depth", *NUMERIC_KEYS):
        if key in summary:
            summary[key] = pd.to_numeric(summary[key], errors="coerce")
    if "depth" in summary:
        summary = summary[summary["depth"].notna()].copy()
    if len(summary):
        summary["depth"] = summary["depth"].astype(int)

    varying: dict[str, list[Any]] = {}
    fixed: dict[str, Any] = {}
    for key in CONFIG_KEYS:
        if key in FOLDED_KEYS and "arch" in summary:
            continue
        values = _unique(summary[key]) if key in summary else []
        if len(values) > 1:
            varying[key] = values
        elif values:
            fixed[key] = values[0]
    if "output_activation" in varying and summary["output_activation"].equals(
        summary["activation"]
    ):
        # Every run uses its hidden activation on the output too: not a key of
        # its own (it would only repeat the activation in every label).
        del varying["output_activation"]
        fixed["output_activation"] = "same as activation"
    numeric = [k for k in NUMERIC_KEYS if k in varying]
    categorical = [k for k in CATEGORICAL_KEYS if k in varying]
    if numeric:
        hue_keys, facet_keys = numeric, categorical
    elif categorical:
        hue_keys, facet_keys = categorical[-1:], categorical[:-1]
    else:
        hue_keys, facet_keys = [], []
    config_keys = [k for k in CONFIG_KEYS if k in varying and k != "depth"]

    def labels(keys: list[str]) -> tuple[pd.Series, list[str]]:
        if not keys:
            fallback = label(
                [k for k in ("activation", "init", "sigma_w") if k in fixed],
                [fixed[k] for k in ("activation", "init", "sigma_w") if k in fixed],
            )
            return pd.Series(fallback or "all runs", index=summary.index), [
                fallback or "all runs"
            ]
        ordered = summary[keys].drop_duplicates()
        ordered = ordered.sort_values(keys, key=lambda s: s.map(_sort_key))
        names = {
            tuple(row): label(keys, row) for row in ordered.itertuples(index=False)
        }
        series = summary[keys].apply(lambda r: names[tuple(r)], axis=1)
        return series, list(dict.fromkeys(names.values()))

    if len(summary):
        summary["hue"], hue_order = labels(hue_keys)
        summary["facet"], facet_order = (
            labels(facet_keys)
            if facet_keys
            else (pd.Series("", index=summary.index), [""])
        )
        summary["config"], config_order = labels(config_keys)
    else:
        hue_order, facet_order, config_order = [], [], []
        for name in ("hue", "facet", "config"):
            summary[name] = pd.Series(dtype=str)
    samples = tables.get("samples")
    if samples is not None and len(summary) and "grad_log10_norm" in samples:
        _zero_fraction(summary, samples)
    ordered = len(hue_keys) == 1 and bool(numeric)
    colors = dict(zip(hue_order, palette(len(hue_order), ordered=ordered), strict=True))
    if len(hue_keys) == 1 and len(summary):
        first = summary.drop_duplicates("hue").set_index("hue")[hue_keys[0]]
        hue_names = {h: format_value(first[h]) for h in hue_order}
    else:
        hue_names = {h: h for h in hue_order}
    keep = set(summary["run_id"])
    tables = {name: _restrict(table, keep) for name, table in tables.items()}
    return ReportData(
        parent_run_id=sweep.parent_run_id,
        parent_name=sweep.parent_name or "",
        runs=runs,
        summary=summary.reset_index(drop=True),
        tables=tables,
        varying=varying,
        fixed=fixed,
        hue_keys=hue_keys,
        facet_keys=facet_keys,
        hue_order=hue_order,
        facet_order=facet_order,
        config_order=config_order,
        colors=colors,
        hue_names=hue_names,
    )


def thin(levels: Sequence[Any], k: int) -> list[Any]:
    """At most ``k`` of ``levels``, evenly spread, first and last included.

    Examples
    --------
    >>> thin(list(range(10)), 4)
    [0, 3, 6, 9]
    """
    levels = list(levels)
    if len(levels) <= k:
        return levels
    idx = np.unique(np.round(np.linspace(0, len(levels) - 1, k)).astype(int))
    return [levels[i] for i in idx]


def finite_or_nan(values: Any) -> np.ndarray:
    """A float array with +-inf replaced by nan."""
    x = np.asarray(values, dtype=float)
    return np.where(np.isfinite(x), x, np.nan)


def _zero_fraction(summary: pd.DataFrame, samples: pd.DataFrame) -> None:
    """Add ``frac_zero``: the fraction of a run's gradient norms that are
    exactly 0 (log10 = -inf), from its samples table."""
    rows = samples[samples["run_id"].isin(summary["run_id"])]
    zero = np.isneginf(rows["grad_log10_norm"].to_numpy(dtype=float))
    frac_zero = pd.Series(zero, index=rows.index).groupby(rows["run_id"]).mean()
    summary["frac_zero"] = summary["run_id"].map(frac_zero).fillna(0.0)


def _restrict(table: pd.DataFrame, run_ids: set[str]) -> pd.DataFrame:
    """The rows of ``run_ids`` (without a copy when that is every row)."""
    if "run_id" not in table or set(table["run_id"].unique()) <= run_ids:
        return table
    return table[table["run_id"].isin(run_ids)]
