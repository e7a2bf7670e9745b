"""One probe job: a configuration in, tidy tables and a summary out (no I/O).

A job samples ``networks`` networks of equal shape and ``inputs`` inputs for
each, runs the input-gradient algorithm with running log scales, computes
per-layer and input-output Jacobian spectra for a few (network, input) pairs,
and puts the mean-field prediction next to every measurement. The networks are
streamed in chunks by :mod:`depthlab.jobs.engine` (make a chunk, measure it, reduce);
this module holds the job (:func:`run_probe`, with the adaptive number of
networks) and the tables built from the measurements (:func:`build_result`).

Tables (column names are used unchanged by tracking and the report). Each
table starts with the configuration columns
(:data:`depthlab.jobs.schema.CONFIG_COLUMNS`, the same value on every row); then
its identifying columns (int64), then its measurements (float64). Logarithms
are base 10.

``samples``
    one row per (network, input): ``net``, ``input``, ``grad_log10_norm``
    (log10 || grad a^[L](x) ||), ``output`` (a^[L]_1), ``input_sq_norm``
    (||x||^2 / n_1).
``layers``
    one row per (network, input, layer) for l = 1..L: ``net``, ``input``,
    ``layer``, ``backprop_log10_norm`` (log10 || d a^[L] / d a^[l] ||, NaN at
    l = L); then ``sv_max``, ``sv_min``, ``sv_median`` of J^[l] = D^[l] W^[l]
    and ``jac_log10_sv_max``, ``jac_log10_sv_min``, ``jac_log10_sv_std`` of
    J^(l) = d a^[l] / dx, set for the spectra pairs at the spectra layers
    (l >= 2) and NaN elsewhere.
``spectrum``
    every log10 singular value of J^(l), in decreasing order, for the spectra
    pairs at the spectra layers: ``net``, ``input``, ``layer``, ``rank``
    (1..min(n_l, n_1)), ``jac_log10_sv``.
``theory``
    one row per layer l = 1..L: ``layer``, ``q`` (q^[l]; at l = 1 the mean of
    ``input_sq_norm``), ``chi`` (chi^[l], NaN at l = 1),
    ``predicted_log10_mean_sq_backprop`` (log10 E || d a^[L]/d a^[l] ||^2, NaN
    at l = L), ``predicted_jac_log10_rms_sv`` (log10 of the root-mean-square
    singular value of J^(l), NaN at l = 1).
``per_layer``
    one row per layer l = 1..L, the medians that go to MLflow as metrics:
    ``layer``, ``backprop_log10_norm_median``, ``backprop_log10_norm_q25``,
    ``backprop_log10_norm_q75`` (over networks and inputs),
    ``backprop_log10_mean_sq`` (log10 of the mean of
    ||d a^[L] / d a^[l]||^2); with spectra pairs, the medians over pairs
    ``sv_max_median``, ``sv_min_median``, ``sv_median_median``, ``cond_median``
    (sv_max / sv_min), ``jac_log10_sv_max_median``, ``jac_log10_sv_min_median``,
    ``jac_log10_sv_std_median``; then the ``theory`` columns
    ``predicted_log10_mean_sq_backprop``, ``chi``,
    ``predicted_jac_log10_rms_sv``.

The summary has ``alpha``, the branch multiplier alpha = branch_scale /
blocks^depth_power of a resnet (NaN for an MLP), beside the configuration
columns ``arch``, ``norm``, ``branch_scale`` and ``depth_power``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from depthlab import theory
from depthlab.initializers import effective_sigma_w
from depthlab.jobs import schema
from depthlab.jobs.schema import CONFIG_COLUMNS
from depthlab.network import depth_scaled_branch, residual_blocks

if TYPE_CHECKING:
    from depthlab.jobs.engine import ChunkMeasurement, PairSpectra

VANISHED = -12.0
EXPLODED = 12.0
"""log10 thresholds for the fractions of vanished / exploded gradient norms."""

_LN10 = math.log(10.0)


@dataclass(frozen=True)
class ProbeSpec:
    """What one probe job computes (a flat, validated configuration)."""

    depth: int
    width: int
    input_dim: int
    output_dim: int
    activation: str
    output_activation: str
    init: str
    sigma_w: float
    sigma_b: float
    arch: str = "mlp"
    """The architecture, ``mlp`` or ``resnet`` (:mod:`depthlab.network`)."""
    norm: str = "none"
    """``none`` or ``layer`` (layer normalization; the core's ``norm``)."""
    branch_scale: float = 1.0
    """c of alpha = c / blocks^depth_power."""
    depth_power: float = 0.0
    """p of alpha = c / blocks^p (0: a fixed alpha, 0.5: 1/sqrt(blocks))."""
    dtype: str = "float64"
    seed: int = 0
    networks: int = 64
    inputs: int = 8
    input_distribution: str = "sphere"
    spectra: int = 4
    hidden_widths: tuple[int, ...] | None = None
    spectra_layers: tuple[int, ...] | None = None
    """Layers l (2..L) with full spectra; None: see
    :func:`depthlab.jobs.engine.spectra_layers`."""
    memory_gb: float | None = None
    """Memory budget of the chunks; None: automatic (:mod:`depthlab.jobs.memory`)."""
    threads: int | None = None
    """Worker threads; None: every core this process may use."""
    backend: str = "numpy"
    """Whose BLAS multiplies in the gradients (:mod:`depthlab.backend`)."""
    rel_err: float | None = None
    """Target relative standard error of the median gradient norm; None: a
    fixed ``networks``."""
    max_networks: int = 4096
    """At most this many networks when ``rel_err`` is set."""

    @classmethod
    def from_config(cls, d: dict[str, Any]) -> ProbeSpec:
        """The spec of a job configuration (a plain nested dict, validated).

        Each field is the value of the schema key with that column; the output
        activation is the one the job uses
        (:func:`depthlab.jobs.validate.output_activation`).
        """
        from depthlab.jobs.validate import output_activation

        names = {f.name for f in fields(cls)}
        values = {
            k.column: schema.get(d, k.key) for k in schema.KEYS if k.column in names
        }
        values["output_activation"] = output_activation(d)
        for name in ("hidden_widths", "spectra_layers"):
            if values.get(name) is not None:
                values[name] = tuple(values[name]) or None
        return cls(**values)

    @property
    def widths(self) -> list[int]:
        """``[n_1, ..., n_L]``: input_dim, width (L - 2 times) or the hidden
        widths, output_dim."""
        hidden = (
            list(self.hidden_widths)
            if self.hidden_widths
            else [self.width] * (self.depth - 2)
        )
        return [self.input_dim, *hidden, self.output_dim]

    @property
    def blocks(self) -> int:
        """The number of residual blocks (L - 3 for a resnet, 0 for an MLP)."""
        return residual_blocks(self.arch, self.depth)

    @property
    def alpha(self) -> float:
        """The branch multiplier alpha = c / blocks^p of a resnet; NaN for an MLP."""
        if self.arch != "resnet":
            return math.nan
        return depth_scaled_branch(self.branch_scale, self.depth_power, self.blocks)

    def network_kwargs(self) -> dict[str, Any]:
        """``architecture``, ``branch_scale`` (alpha) and ``norm`` as
        :func:`depthlab.network.init_network` and :func:`depthlab.theory.predict`
        take them."""
        from depthlab.jobs.validate import architecture_kwargs

        return architecture_kwargs(
            self.arch, self.norm, self.branch_scale, self.depth_power, self.depth
        )

    def config_columns(self) -> dict[str, Any]:
        """The values of :data:`CONFIG_COLUMNS`."""
        d = asdict(self)
        return {k: d[k] for k in CONFIG_COLUMNS}


@dataclass
class ProbeResult:
    """Tidy tables, per-layer summaries and scalar summaries of one job."""

    samples: pd.DataFrame
    layers: pd.DataFrame
    spectrum: pd.DataFrame
    theory: pd.DataFrame
    per_layer: pd.DataFrame
    """One row per layer: the medians that go to MLflow as metrics (step = layer)."""
    summary: dict[str, float]

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables stored as artifacts, by name."""
        return {
            "samples": self.samples,
            "layers": self.layers,
            "spectrum": self.spectrum,
            "theory": self.theory,
            "per_layer": self.per_layer,
        }


def sample_inputs(
    distribution: str, shape: tuple[int, ...], *, rng: np.random.Generator
) -> np.ndarray:
    """Draw inputs of shape ``(..., n_1)`` from one of the input distributions."""
    if distribution == "gaussian":
        return rng.standard_normal(shape)
    if distribution == "sphere":
        x = rng.standard_normal(shape)
        norms = np.linalg.norm(x, axis=-1, keepdims=True)
        return x * (np.sqrt(shape[-1]) / np.maximum(norms, np.finfo(float).tiny))
    if distribution == "uniform":
        return rng.uniform(0.0, 1.0, size=shape)
    raise ValueError(f"unknown input distribution {distribution!r}")


def _quantile(x: np.ndarray, q: Any, axis: int | None = None) -> np.ndarray:
    """Quantiles without interpolation, so that -inf (an exactly zero gradient,
    e.g. dead ReLUs) is a value like any other and raises no warning."""
    return np.quantile(x, q, axis=axis, method="inverted_cdf")


def _log10_mean_of_squares(log10_norms: np.ndarray, axis: int = 0) -> np.ndarray:
    """log10 mean(10**(2 x)) along an axis, without overflow or underflow."""
    x = 2.0 * np.asarray(log10_norms, dtype=np.float64)
    finite = np.where(np.isfinite(x), x, -np.inf)
    top = np.max(finite, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        s = np.log10(np.mean(10.0 ** (finite - top), axis=axis, keepdims=True))
    return np.squeeze(s + top, axis=axis)


def _rel_err_of_median(
    log10_norms: np.ndarray, rng: np.random.Generator, n_boot: int = 200
) -> float:
    """Relative standard error of the median gradient norm.

    A cluster bootstrap over networks (rows of ``log10_norms``): inputs of the
    same network are correlated, so resampling them independently would
    understate the error.
    """
    k = log10_norms.shape[0]
    if k < 2:
        return float("nan")
    idx = rng.integers(0, k, size=(n_boot, k))
    medians = _quantile(log10_norms[idx].reshape(n_boot, -1), 0.5, axis=1)
    if not np.all(np.isfinite(medians)):
        return float("nan")  # the median itself is an exactly zero gradient
    return float(_LN10 * np.std(medians))


def _theory_tables(spec: ProbeSpec, q1: float) -> tuple[pd.DataFrame, dict[str, float]]:
    widths = spec.widths
    pred = theory.predict_from_q1(
        q1,
        widths,
        activation=spec.activation,
        output_activation=spec.output_activation,
        sigma_w=spec.sigma_w,
        sigma_b=spec.sigma_b,
        init=spec.init,
        **spec.network_kwargs(),
    )
    depth = spec.depth
    layer = np.arange(1, depth + 1)
    q = np.concatenate([[q1], pred.q])
    chi = np.concatenate([[np.nan], pred.chi])
    log10_ms = np.concatenate([pred.log10_mean_sq_backprop, [np.nan]])
    # E ||J^(l)||_F^2 = n_l prod_{k=2}^{l} (chi^[k]); rms over min(n_l, n_1) values.
    with np.errstate(divide="ignore"):  # chi = 0 at sigma_w = 0: log10 is -inf
        log10_chi = np.log10(pred.chi)
    cum = np.concatenate([[0.0], np.cumsum(log10_chi)])
    n = np.asarray(widths, dtype=float)
    rms = 0.5 * (cum + np.log10(n) - np.log10(np.minimum(n, n[0])))
    rms[0] = np.nan
    table = pd.DataFrame(
        {
            "layer": layer,
            "q": q,
            "chi": chi,
            "predicted_log10_mean_sq_backprop": log10_ms,
            "predicted_jac_log10_rms_sv": rms,
        }
    )
    summary: dict[str, float] = {
        "theory_grad_log10_rms": 0.5 * float(log10_ms[0]),
    }
    hidden_chi = log10_chi[:-1] if depth > 2 else log10_chi
    summary["theory_factor"] = float(10 ** np.mean(hidden_chi))
    hidden_sw = effective_sigma_w(spec.init, spec.width, spec.width, spec.sigma_w)
    summary["theory_sigma_w_eff"] = hidden_sw
    for name, fn in (("theory_q_star", theory.q_star), ("theory_chi1", theory.chi1)):
        summary[name] = _try_float(fn, spec.activation, hidden_sw, spec.sigma_b)
    try:
        xi_q, xi_c = theory.depth_scales(spec.activation, hidden_sw, spec.sigma_b)
    except (ValueError, ArithmeticError):
        xi_q = xi_c = float("nan")
    summary["theory_xi_q"] = float(xi_q)
    summary["theory_xi_c"] = float(xi_c)
    return table, summary


def _try_float(fn: Any, *args: Any) -> float:
    try:
        return float(fn(*args))
    except (ValueError, ArithmeticError):
        return float("nan")


def _factors(log10_norms: np.ndarray) -> dict[str, float]:
    """Measured per-layer factors of the squared backprop norm, layers 2..L-1.

    ``mean_sq_factor``: the geometric mean over layers of the ratio of mean
    squared backprop norms between consecutive layers (what mean field predicts
    as chi). ``typical_factor``: 10**(2 * slope) of the mean of log10 norms, the
    growth of a typical network's gradient (lower than chi at finite width).
    """
    n_cols = log10_norms.shape[1]
    if n_cols < 2:
        return {"mean_sq_factor": float("nan"), "typical_factor": float("nan")}
    ms = _log10_mean_of_squares(log10_norms, axis=0)
    steps = n_cols - 1
    finite = np.all(np.isfinite(log10_norms[:, [0, -1]]), axis=1)
    mean_log = (
        np.mean(log10_norms[finite][:, [0, -1]], axis=0) if finite.any() else None
    )
    typical = (
        float(10 ** (2 * (mean_log[0] - mean_log[1]) / steps))
        if mean_log is not None
        else float("nan")
    )
    return {
        "mean_sq_factor": float(10 ** ((ms[0] - ms[-1]) / steps)),
        "typical_factor": typical,
    }


def run_probe(spec: ProbeSpec) -> ProbeResult:
    """Run one probe job, chunk by chunk (:mod:`depthlab.jobs.engine`).

    Parameters
    ----------
    spec : ProbeSpec
        A validated configuration. Its ``seed`` seeds every network's own
        random streams (:func:`depthlab.jobs.engine.network_rng`): the numbers do
        not depend on the chunk size or the number of threads.

    Returns
    -------
    ProbeResult
        With ``rel_err`` set, networks are added (``networks`` first, then as
        many as the 1/sqrt(K) law says are missing) until the cluster-bootstrap
        error of the median gradient norm is at most ``rel_err`` or
        ``max_networks`` are used; the summary's ``networks_used`` and
        ``grad_norm_median_rel_err`` say where it stopped.
    """
    from depthlab.jobs import engine  # engine builds on this module's tables

    parts = engine.run_chunks(spec, range(spec.networks))
    used = spec.networks
    while spec.rel_err is not None and used < spec.max_networks:
        grad = np.concatenate([p.log10_norms[..., 0] for p in parts])
        err = _rel_err_of_median(grad, engine.bootstrap_rng(spec.seed))
        if not err > spec.rel_err:  # reached, or undefined (nan): stop
            break
        more = engine.networks_for(err, spec.rel_err, used, spec.max_networks)
        parts += engine.run_chunks(spec, range(used, more))
        used = more
    return engine.reduce(parts, spec)


def build_result(
    spec: ProbeSpec, m: ChunkMeasurement, rng: np.random.Generator
) -> ProbeResult:
    """The tables and the summary of a job from its measurements (all networks).

    Parameters
    ----------
    spec : ProbeSpec
    m : depthlab.jobs.engine.ChunkMeasurement
        The measurements of networks 0..K-1, concatenated in order.
    rng : numpy.random.Generator
        Source of the cluster bootstrap.
    """
    log10_norms, outputs, input_sq = m.log10_norms, m.outputs, m.input_sq
    k, b, depth = log10_norms.shape[0], spec.inputs, spec.depth
    cfg = spec.config_columns()

    net_idx, input_idx = np.meshgrid(np.arange(k), np.arange(b), indexing="ij")
    grad = log10_norms[..., 0]
    samples = pd.DataFrame(
        {
            "net": net_idx.ravel(),
            "input": input_idx.ravel(),
            "grad_log10_norm": grad.ravel(),
            "output": outputs.ravel().astype(np.float64),
            "input_sq_norm": input_sq.ravel(),
        }
    )

    n_layers = depth - 1
    flat_norms = log10_norms.reshape(k * b, n_layers)
    columns = {
        "net": np.repeat(net_idx.ravel(), depth),
        "input": np.repeat(input_idx.ravel(), depth),
        "layer": np.tile(np.arange(1, depth + 1), k * b),
        "backprop_log10_norm": np.concatenate(
            [flat_norms, np.full((k * b, 1), np.nan)], axis=1
        ).ravel(),
    }
    spectral_rows, spectrum = _spectra_tables(m.pairs)
    # The spectral rows joined on (net, input, layer), NaN elsewhere: rows are
    # ordered by net, input, layer, so a pair's row is found by arithmetic.
    row = (
        spectral_rows["net"].to_numpy() * b + spectral_rows["input"].to_numpy()
    ) * depth + (spectral_rows["layer"].to_numpy() - 1)
    for name in _SPECTRAL_COLUMNS[3:]:
        measured = spectral_rows[name].to_numpy()
        values = np.full(k * b * depth, np.nan, dtype=measured.dtype)
        values[row] = measured
        columns[name] = values
    layers = pd.DataFrame(columns)

    theory_table, theory_summary = _theory_tables(spec, float(np.mean(input_sq)))

    per_layer = _per_layer(flat_norms, spectral_rows, theory_table, depth)
    summary = _summary(grad, flat_norms, per_layer, rng)
    summary["networks_used"] = float(k)
    summary.update(theory_summary)
    summary["beta"] = float(sum(1.0 / n for n in spec.widths[1:-1]))
    summary["alpha"] = spec.alpha

    tables = _with_config([samples, layers, spectrum, theory_table, per_layer], cfg)
    return ProbeResult(*tables, summary)


def _with_config(tables: list[pd.DataFrame], cfg: dict[str, Any]) -> list[pd.DataFrame]:
    """Each table with the config columns first, one value each (as
    ``insert(0, key, value)`` key by key gives them, at a fraction of its
    cost: the config columns are made once, for the longest table)."""
    rows = max(len(t) for t in tables)
    config = pd.DataFrame(cfg, index=pd.RangeIndex(rows))
    return [pd.concat([config.iloc[: len(t)], t], axis=1) for t in tables]


_SPECTRAL_COLUMNS = (
    "net",
    "input",
    "layer",
    "sv_max",
    "sv_min",
    "sv_median",
    "jac_log10_sv_max",
    "jac_log10_sv_min",
    "jac_log10_sv_std",
)
_SPECTRUM_COLUMNS = ("net", "input", "layer", "rank", "jac_log10_sv")


_ID_COLUMNS = ("net", "input", "layer", "rank")


def _dtype(column: str) -> type:
    """int64 for the identifying columns, float64 for the measurements."""
    return np.int64 if column in _ID_COLUMNS else np.float64


def _spectra_tables(pairs: PairSpectra) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-layer rows and the full J^(l) spectra of the spectra pairs.

    Layers without full spectra have no rows (NaN in the ``layers`` table).
    """
    if len(pairs.net) == 0:
        return tuple(  # type: ignore[return-value]
            pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in columns})
            for columns in (_SPECTRAL_COLUMNS, _SPECTRUM_COLUMNS)
        )
    net_of, input_of = pairs.net, pairs.input
    count_pairs = len(net_of)
    rows: dict[str, list[np.ndarray]] = {c: [] for c in _SPECTRAL_COLUMNS}
    spectrum: dict[str, list[np.ndarray]] = {c: [] for c in _SPECTRUM_COLUMNS}
    for layer, sv, jl in zip(
        pairs.layers, pairs.layer_sv, pairs.jac_log10_sv, strict=True
    ):
        finite = np.isfinite(jl)
        count = finite.sum(axis=1)
        safe = np.where(finite, jl, 0.0)
        mean = safe.sum(axis=1) / np.maximum(count, 1)
        var = (np.where(finite, jl - mean[:, None], 0.0) ** 2).sum(axis=1)
        std = np.where(count > 0, np.sqrt(var / np.maximum(count, 1)), np.nan)
        rows["net"].append(net_of)
        rows["input"].append(input_of)
        rows["layer"].append(np.full(count_pairs, layer))
        rows["sv_max"].append(sv[:, 0])
        rows["sv_min"].append(sv[:, -1])
        rows["sv_median"].append(np.median(sv, axis=1))
        rows["jac_log10_sv_max"].append(jl[:, 0])
        rows["jac_log10_sv_min"].append(jl[:, -1])
        rows["jac_log10_sv_std"].append(std)
        m = jl.shape[1]
        spectrum["net"].append(np.repeat(net_of, m))
        spectrum["input"].append(np.repeat(input_of, m))
        spectrum["layer"].append(np.full(count_pairs * m, layer))
        spectrum["rank"].append(np.tile(np.arange(1, m + 1), count_pairs))
        spectrum["jac_log10_sv"].append(jl.ravel())
    return (
        pd.DataFrame({c: np.concatenate(v) for c, v in rows.items()}),
        pd.DataFrame({c: np.concatenate(v) for c, v in spectrum.items()}),
    )


def _per_layer(
    flat_norms: np.ndarray,
    spectral_rows: pd.DataFrame,
    theory_table: pd.DataFrame,
    depth: int,
) -> pd.DataFrame:
    layer = np.arange(1, depth + 1)
    pad = np.full(1, np.nan)
    q50, q25, q75 = _quantile(flat_norms, [0.5, 0.25, 0.75], axis=0)
    columns = {
        "layer": layer,
        "backprop_log10_norm_median": np.concatenate([q50, pad]),
        "backprop_log10_norm_q25": np.concatenate([q25, pad]),
        "backprop_log10_norm_q75": np.concatenate([q75, pad]),
        "backprop_log10_mean_sq": np.concatenate(
            [_log10_mean_of_squares(flat_norms, axis=0), pad]
        ),
    }
    if len(spectral_rows):
        stats = spectral_rows.assign(cond=spectral_rows.sv_max / spectral_rows.sv_min)
        med = stats.groupby("layer")[
            [
                "sv_max",
                "sv_min",
                "sv_median",
                "cond",
                "jac_log10_sv_max",
                "jac_log10_sv_min",
                "jac_log10_sv_std",
            ]
        ].median()
        med = med.reindex(layer)  # the layers without spectra: NaN
        columns.update({f"{c}_median": med[c].to_numpy() for c in med.columns})
    theory = theory_table.set_index("layer").reindex(layer)
    for name in ("predicted_log10_mean_sq_backprop", "chi"):
        columns[name] = theory[name].to_numpy()
    columns["predicted_jac_log10_rms_sv"] = theory[
        "predicted_jac_log10_rms_sv"
    ].to_numpy()
    return pd.DataFrame(columns)


def _summary(
    grad: np.ndarray,
    flat_norms: np.ndarray,
    per_layer: pd.DataFrame,
    rng: np.random.Generator,
) -> dict[str, float]:
    g = grad.ravel()
    finite = g[np.isfinite(g)]
    q25, q50, q75 = _quantile(g, [0.25, 0.5, 0.75])
    summary = {
        "grad_log10_norm_median": float(q50),
        "grad_log10_norm_q25": float(q25),
        "grad_log10_norm_q75": float(q75),
        "grad_log10_norm_mean": float(np.mean(finite)) if finite.size else float("nan"),
        "grad_log10_norm_std": float(np.std(finite)) if finite.size else float("nan"),
        "grad_log10_rms": 0.5 * float(_log10_mean_of_squares(g)),
        "frac_vanished": float(np.mean(g < VANISHED)),
        "frac_exploded": float(np.mean(g > EXPLODED)),
        "grad_norm_median_rel_err": _rel_err_of_median(grad, rng),
    }
    with np.errstate(over="ignore", under="ignore"):
        for name in ("median", "q25", "q75"):
            summary[f"grad_norm_{name}"] = float(
                10.0 ** summary[f"grad_log10_norm_{name}"]
            )
        summary["grad_norm_mean"] = float(10.0 ** _log10_mean(g))
    summary.update(_factors(flat_norms))
    if "cond_median" in per_layer:
        summary["layer_cond_median"] = float(np.nanmedian(per_layer["cond_median"]))
        # J^(L) has a single singular value when n_L = 1: take the spread of
        # J^(L-1), the last layer with min(n_l, n_1) > 1 values (for depth > 2).
        spread = per_layer["jac_log10_sv_std_median"].to_numpy()
        row = -2 if len(spread) > 2 else -1
        summary["jac_log10_sv_std_last_hidden"] = float(spread[row])
    return summary


def _log10_mean(log10_values: np.ndarray) -> float:
    x = log10_values[np.isfinite(log10_values)]
    if x.size == 0:
        return float("-inf")
    top = np.max(x)
    return float(top + np.log10(np.mean(10.0 ** (x - top))))
