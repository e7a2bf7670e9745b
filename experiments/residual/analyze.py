"""The residual study: figures and numbers from the MLflow store alone.

Reads the two MLflow experiments of ``run.sh``: ``residual_init`` (part a,
probe jobs: gradients and Jacobian spectra at initialization) and
``residual_train`` (part b, training jobs: is there an optimal depth?), writes
the figures (small PNGs) to ``figures/`` and every number the README quotes to
``results.md``.

Part b follows experiments/optimal_depth's protocol and reuses its code (its
``analyze.py`` is imported, not copied): mean over seeds with Student-t
intervals, the best depth and every depth indistinguishable from it by Welch's
test (:mod:`depthlab.report.stats`, scipy.stats), the best depth against the
training budget read off the learning curves.

Usage (from this folder, after ``run.sh``)::

    python analyze.py --uri /tmp/residual.XXXXXX     # the store run.sh printed
"""

from __future__ import annotations

import argparse
import importlib.util
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from depthlab import tracking
from depthlab.report.data import architecture_label
from depthlab.report.plotting import style as plot_style
from depthlab.report.stats import ALPHA, depth_statistics
from depthlab.report.training import (
    TrainingData,
    depth_figure,
    learning_curves_figure,
    optimal_depth_vs_step_figure,
    prepare_training,
    summary_table,
)

HERE = Path(__file__).resolve().parent


def _optimal_depth_module():
    """experiments/optimal_depth/analyze.py, imported as a module."""
    path = HERE.parent / "optimal_depth" / "analyze.py"
    spec = importlib.util.spec_from_file_location("optimal_depth_analyze", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


optimal = _optimal_depth_module()

PROBE_EXPERIMENT = "residual_init"
TRAIN_EXPERIMENT = "residual_train"
MAIN_STEPS = 1000
LONG_STEPS = 3000
BUDGETS = (100, 200, 500, 1000, 2000, 3000)
"""Budgets (steps) at which the best depth is read off the learning curves."""
CONFIGS = ("dataset", "config")
"""A training config of part b: a dataset and an architecture."""
TABLE_DEPTHS = (10, 100, 1000)
"""Depths of the probe's summary table."""
VARIANTS = (
    "mlp",
    "mlp + LN",
    "resnet a=1",
    "resnet a=1 + LN",
    "resnet a=1/sqrt",
    "resnet a=1/sqrt + LN",
)
"""The six architectures of part a, in the order of the tables and legends."""
COLORS = {"mlp": "#0072B2", "resnet a=1": "#E69F00", "resnet a=1/sqrt": "#009E73"}
"""Okabe-Ito colours by architecture; LN is the dashed line of the same colour."""


# ---------------------------------------------------------------------------
# Part a: gradients and spectra at initialization


def load_probe(
    uri: str, experiment: str = PROBE_EXPERIMENT
) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """Every FINISHED probe run of ``experiment`` (one row each, latest of a
    config), its ``per_layer`` and ``theory`` tables, and a table of the sweeps
    (:func:`optimal_depth's load_study <optimal.load_study>`)."""
    study, sweeps = optimal.load_study(uri, experiment, tables=("per_layer", "theory"))
    runs = study.runs.copy()
    runs["depth"] = runs["params.depth"].astype(int)
    runs["activation"] = runs["params.activation"]
    runs["variant"] = [
        architecture_label(a, float(c), float(p)) + (" + LN" if n == "layer" else "")
        for a, n, c, p in zip(
            runs["params.arch"],
            runs["params.norm"],
            runs["params.branch_scale"],
            runs["params.depth_power"],
            strict=True,
        )
    ]
    runs = runs.sort_values(["activation", "variant", "depth"])
    return runs, study.tables, sweeps.drop(columns="skipped")


def _lines(
    runs: pd.DataFrame, activations: Sequence[str]
) -> Iterator[tuple[int, str, pd.DataFrame, dict]]:
    """A figure's lines: for the j-th activation, each variant of VARIANTS that
    has runs, ``(j, variant, its runs by depth, its plot style)``."""
    for j, act in enumerate(activations):
        sub = runs[runs["activation"] == act]
        for variant in VARIANTS:
            line = sub[sub["variant"] == variant].sort_values("depth")
            if not line.empty:
                yield j, variant, line, _style(variant)


def _legend_below(fig: Any, ax: Any, bottom: float) -> None:
    """The legend of ``ax``'s lines below the panels, which fill the figure above
    ``bottom`` (a fraction of its height)."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, frameon=False)
    fig.tight_layout(rect=(0, bottom, 1, 1))


def _style(variant: str) -> dict:
    base = variant.removesuffix(" + LN")
    return {
        "color": COLORS[base],
        "linestyle": "--" if variant.endswith("+ LN") else "-",
    }


LAYER_POINTS = 200
"""About this many layers of the deepest network are drawn (every k-th)."""
SV_RANGE = (0.1, 10.0)
"""The singular-value range drawn (a ReLU layer's D^[l] zeroes half the rows:
half of J^[l]'s singular values are 0, and its median sits at that edge)."""
ZOOM = (-5.0, 3.0)
"""log10 range of the lower panels of the gradient figure."""


def gradient_figure(runs: pd.DataFrame):
    """log10 of the rms gradient norm against depth with theory; a zoom with
    the medians."""
    from matplotlib.figure import Figure

    activations = sorted(runs["activation"].unique())
    with plot_style():
        fig = Figure(figsize=(4.8 * len(activations), 6.8))
        axes = fig.subplots(2, len(activations), sharex=True, squeeze=False)
        for j, variant, line, style in _lines(runs, activations):
            fill = "none" if "LN" in variant else style["color"]
            for row, ax in enumerate(axes[:, j]):
                ax.plot(line["depth"], line["theory_grad_log10_rms"], lw=1.2,
                        alpha=0.8, label=variant if row else None,
                        **style)  # fmt: skip
                ax.plot(line["depth"], line["grad_log10_rms"], marker="o",
                        ms=4, lw=0, color=style["color"], mfc=fill)  # fmt: skip
            axes[1][j].plot(line["depth"], line["grad_log10_norm_median"],
                            marker="x", ms=3, lw=0.6, ls=":",
                            color=style["color"])  # fmt: skip
        for j, act in enumerate(activations):
            axes[0][j].set_title(f"{act}: rms (markers) and theory (lines)")
            axes[1][j].set_title(f"{act}: zoom; x: the median")
            axes[1][j].set_ylim(*ZOOM)
            for ax in axes[:, j]:
                ax.set_xscale("log")
                ax.axhline(0, color="0.6", lw=0.8, zorder=0)
            axes[1][j].set_xlabel("depth L (layers, input included)")
        for ax in axes[:, 0]:
            ax.set_ylabel("log10 ||grad a^[L](x)||")
        _legend_below(fig, axes[1][0], 0.08)
    caption = (
        "Gradient norm at initialization against depth (width 128, 16 networks x "
        "4 inputs per depth, linear readout). Markers: the measured "
        "root-mean-square log10 sqrt(mean ||grad||^2) (open: with LN); lines: the "
        "mean-field prediction of the same (dashed: with LN). Bottom: the same "
        f"in log10 [{ZOOM[0]:g}, {ZOOM[1]:g}], with the median (x, dotted), a "
        "typical network's norm. Colour: mlp, resnet with alpha = 1, resnet with "
        "alpha = 1/sqrt(blocks)."
    )
    return "grad_norm_vs_depth", fig, caption


def spectra_figure(runs: pd.DataFrame, per_layer: pd.DataFrame):
    """Spread of J^(L-1)'s spectrum against depth; J^[l]'s per layer at L = 1000."""
    from matplotlib.figure import Figure

    activations = sorted(runs["activation"].unique())
    deepest = runs.groupby(["activation", "variant"])["depth"].transform("max")
    last = runs[runs["depth"] == deepest]
    with plot_style():
        fig = Figure(figsize=(4.6 * len(activations), 6.4))
        axes = fig.subplots(2, len(activations), squeeze=False)
        for j, variant, line, style in _lines(runs, activations):
            axes[0][j].plot(line["depth"], line["jac_log10_sv_std_last_hidden"],
                            marker="o", ms=3, label=variant, **style)  # fmt: skip
            run = last[
                (last["activation"] == activations[j]) & (last["variant"] == variant)
            ]
            rows = per_layer[per_layer["run_id"].isin(run["run_id"])]
            rows = rows.dropna(subset=["sv_median_median"]).sort_values("layer")
            rows = rows[rows["layer"] < rows["layer"].max()]  # hidden layers
            rows = rows.iloc[:: max(1, len(rows) // LAYER_POINTS)]
            ax = axes[1][j]
            ax.plot(rows["layer"], rows["sv_median_median"], lw=1.0, **style)
            ax.plot(rows["layer"], rows["sv_max_median"], lw=0.6, alpha=0.6, **style)
        for j, act in enumerate(activations):
            axes[0][j].set_xscale("log")
            axes[0][j].set_yscale("log")
            axes[0][j].set_xlabel("depth L")
            axes[0][j].set_title(f"{act}: spread of the spectrum of J^(L-1)")
            axes[1][j].set_yscale("log")
            axes[1][j].set_ylim(*SV_RANGE)
            axes[1][j].axhline(1, color="0.5", lw=0.8, ls=":")
            axes[1][j].set_xlabel(
                f"layer l (network of depth {int(last['depth'].max())})"
            )
            axes[1][j].set_title(f"{act}: median and largest singular value of J^[l]")
        axes[0][0].set_ylabel("std of log10 singular values")
        axes[1][0].set_ylabel("singular value")
        _legend_below(fig, axes[0][0], 0.07)
    caption = (
        "Top: the standard deviation of log10 sigma_i(J^(L-1)) (J^(l) = d a^[l] / "
        "dx, min(n_l, n_1) = 32 singular values; one (network, input) pair per "
        "depth) against depth: 0 is an isometry. Bottom: the median (thick) and "
        "largest (thin) singular value of the per-layer Jacobian J^[l] at every "
        "hidden layer of the deepest network (for a block J^[l] = I + alpha "
        "W^[l] D^[l] (J_LN)), every k-th layer (about 200 drawn), values "
        "outside [0.1, 10] clipped; the dotted line is 1. The smallest is not "
        "drawn: "
        "LN's Jacobian projects out the directions 1 and LN(v), so an MLP "
        "layer with LN is singular (smallest value ~1e-17)."
    )
    return "jacobian_spectra", fig, caption


def _variant_table(
    runs: pd.DataFrame,
    rows: Callable[[pd.DataFrame], list[dict]],
    then: Sequence[str] = (),
) -> pd.DataFrame:
    """``rows(line)`` of each (activation, variant)'s runs, after the columns
    ``activation`` and ``architecture``; sorted by those (variants in the order of
    VARIANTS), then by the columns ``then``."""
    table = pd.DataFrame(
        [
            {"activation": act, "architecture": variant, **row}
            for (act, variant), line in runs.groupby(
                ["activation", "variant"], sort=False
            )
            for row in rows(line)
        ]
    )
    order = {v: i for i, v in enumerate(VARIANTS)}
    return table.sort_values(
        ["activation", "architecture", *then],
        key=lambda c: c.map(order) if c.name == "architecture" else c,
    )


def probe_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Measured against predicted gradient norms, and the spread of J^(L-1)."""

    def rows(line: pd.DataFrame) -> list[dict]:
        line = line.set_index("depth")
        out = []
        for depth in TABLE_DEPTHS:
            if depth not in line.index:
                continue
            r = line.loc[depth]
            out.append(
                {
                    "L": depth,
                    "alpha": r.get("alpha", math.nan),
                    "log10 rms measured": r["grad_log10_rms"],
                    "log10 rms theory": r["theory_grad_log10_rms"],
                    "measured / theory (rms)": 10
                    ** (r["grad_log10_rms"] - r["theory_grad_log10_rms"]),
                    "log10 median": r["grad_log10_norm_median"],
                    "log10 q25..q75": (
                        f"{r['grad_log10_norm_q25']:.2f}.."
                        f"{r['grad_log10_norm_q75']:.2f}"
                    ),
                    "std log10 sv J^(L-1)": r["jac_log10_sv_std_last_hidden"],
                }
            )
        return out

    return _variant_table(runs, rows, then=["L"])


def agreement_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Over every depth: the largest |log10(measured rms / theory rms)|."""

    def rows(line: pd.DataFrame) -> list[dict]:
        gap = line["grad_log10_rms"] - line["theory_grad_log10_rms"]
        worst = line.loc[gap.abs().idxmax()]
        return [
            {
                "depths": f"{line['depth'].min()}..{line['depth'].max()} ({len(line)})",
                "max |log10 measured/theory|": float(gap.abs().max()),
                "at L": int(worst["depth"]),
                "median |log10 measured/theory|": float(gap.abs().median()),
            }
        ]

    return _variant_table(runs, rows)


def layer_sv_table(runs: pd.DataFrame, per_layer: pd.DataFrame) -> pd.DataFrame:
    """Singular values of J^[l] over the hidden layers of the deepest network:
    the median over layers of each layer's median, largest and smallest."""

    def rows(line: pd.DataFrame) -> list[dict]:
        run = line[line["depth"] == line["depth"].max()]
        sub = per_layer[per_layer["run_id"].isin(run["run_id"])]
        sub = sub.dropna(subset=["sv_median_median"])
        sub = sub[(sub["layer"] > 2) & (sub["layer"] < sub["layer"].max())]
        return [
            {
                "L": int(run["depth"].iloc[0]),
                "layers": len(sub),
                "median sv": float(np.median(sub["sv_median_median"])),
                "largest sv": float(np.median(sub["sv_max_median"])),
                "smallest sv": float(np.median(sub["sv_min_median"])),
            }
        ]

    return _variant_table(runs, rows)


# ---------------------------------------------------------------------------
# Part b: the optimal depth, mlp against resnet


def versus_table(data: TrainingData, metric: str = "test_accuracy") -> pd.DataFrame:
    """Per dataset: each config's best depth, and Welch's p between the seeds of
    the two configs' best depths (does the resnet beat the best MLP?)."""
    from scipy import stats as st

    best = summary_table(data, metric)
    rows = []
    for dataset, sub in best.groupby("dataset", sort=False):
        if len(sub) != 2:
            continue
        seeds = []
        for r in sub.itertuples():
            f = data.final
            cell = f[(f.dataset == dataset) & (f.config == r.config)]
            seeds.append(cell[cell.depth == r.best_depth][metric].to_numpy())
        (a, b), (ra, rb) = seeds, list(sub.itertuples())
        rows.append(
            {
                "dataset": dataset,
                f"{ra.config}: best L": ra.best_depth,
                f"{ra.config}": optimal.ci_text(ra.mean, ra.ci_low, ra.ci_high),
                f"{rb.config}: best L": rb.best_depth,
                f"{rb.config}": optimal.ci_text(rb.mean, rb.ci_low, rb.ci_high),
                "Welch p": float(st.ttest_ind(a, b, equal_var=False).pvalue),
            }
        )
    return pd.DataFrame(rows)


def best_table(data: TrainingData, metric: str) -> pd.DataFrame:
    """Best depth and the depths indistinguishable from it, per (dataset, arch)."""
    table = summary_table(data, metric)
    steps = data.runs.groupby(["dataset", "config"])["steps"].first().reset_index()
    table = table.merge(steps, on=["dataset", "config"])
    table = table.sort_values(["dataset", "steps", "config"])
    return pd.DataFrame(
        {
            "dataset": table["dataset"],
            "config": table["config"],
            "steps": table["steps"].astype(int),
            "best L": table["best_depth"],
            f"{metric} at best (mean +- 95% CI)": optimal.ci_cells(table),
            "indistinguishable L": table["indistinguishable"],
            "depths": table["depths"],
        }
    )


def deep_end_table(data: TrainingData, metric: str = "test_accuracy") -> pd.DataFrame:
    """Per (dataset, config): the metric at the shallowest and deepest depth and
    Welch's p between them (is the deep end worse than the shallow end?)."""
    from scipy import stats as st

    rows = []
    for (dataset, config), sub in data.final.groupby(["dataset", "config"], sort=False):
        depths = sorted(sub["depth"].unique())
        lo, hi = sub[sub["depth"] == depths[0]], sub[sub["depth"] == depths[-1]]
        stats = depth_statistics(sub, metric).set_index("depth")
        test = st.ttest_ind(hi[metric], lo[metric], equal_var=False)
        rows.append(
            {
                "dataset": dataset,
                "config": config,
                "L shallow": depths[0],
                f"{metric} shallow": optimal.ci_text(
                    *stats.loc[depths[0], ["mean", "ci_low", "ci_high"]]
                ),
                "L deep": depths[-1],
                f"{metric} deep": optimal.ci_text(
                    *stats.loc[depths[-1], ["mean", "ci_low", "ci_high"]]
                ),
                "Welch p (deep vs shallow)": float(test.pvalue),
                "Spearman rho(depth, metric)": float(
                    st.spearmanr(sub["depth"], sub[metric]).statistic
                ),
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """Write ``figures/*.png`` and ``results.md``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--uri", required=True, help="the store run.sh printed")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    uri = tracking.resolve_uri(args.uri)
    figures = args.out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    captions: list[str] = []
    sections = [
        "# Residual networks: numbers (written by analyze.py; do not edit)",
        "",
    ]

    runs, tables, probe_sweeps = load_probe(uri)
    optimal.save(gradient_figure(runs), figures, captions)
    optimal.save(spectra_figure(runs, tables["per_layer"]), figures, captions)
    n_nets = runs["params.networks"].astype(int).iloc[0]
    sections += [
        f"## Part a: gradients at initialization ({len(runs)} probe jobs, "
        f"width 128, {n_nets} networks x {runs['params.inputs'].iloc[0]} inputs)",
        "",
        "rms = sqrt of the mean of ||grad a^[L](x)||^2 over every network and "
        "input; theory = the mean-field prediction of the same (depthlab.theory, "
        "passed the architecture). alpha = branch_scale / blocks^depth_power.",
        "",
        markdown(probe_table(runs)),
        "",
        "### Agreement over every depth",
        "",
        markdown(agreement_table(runs)),
        "",
        "### Per-layer Jacobians J^[l] of the deepest network (hidden layers 3..L-1)",
        "",
        markdown(layer_sv_table(runs, tables["per_layer"])),
    ]

    study, sweeps = optimal.load_study(uri, TRAIN_EXPERIMENT)
    data = prepare_training(study)
    main_grid = data.where(steps=MAIN_STEPS)
    long = (
        data.where(steps=LONG_STEPS)
        if (data.runs["steps"] == LONG_STEPS).any()
        else None
    )
    optimal.save(depth_figure(main_grid), figures, captions)
    optimal.save(learning_curves_figure(main_grid), figures, captions)
    optimal.save(optimal_depth_vs_step_figure(main_grid), figures, captions)
    n_div = int(data.final["diverged"].sum())
    sections += [
        "",
        f"## Part b: is there an optimal depth? ({len(data.runs)} training runs, "
        f"{len(data.final)} trained networks, {n_div} diverged)",
        "",
        "Statistics as in experiments/optimal_depth: mean over seeds, 95% "
        "Student-t CI (+- half-width); best L: highest mean test accuracy "
        "(lowest mean loss) among depths with no diverged seed; indistinguishable "
        f"L: Welch two-sided t-test against the best at {ALPHA:.0%}, no "
        "multiplicity correction.",
    ]
    sections += optimal.per_metric(
        main_grid,
        [
            (f"### {MAIN_STEPS} steps: best depth by {{metric}}", best_table),
            (
                f"### {MAIN_STEPS} steps: the best MLP against the best resnet "
                "({metric})",
                versus_table,
            ),
        ],
        markdown,
    )
    sections += optimal.section(
        f"### {MAIN_STEPS} steps: the deepest against the shallowest depth",
        markdown(deep_end_table(main_grid)),
    )
    sections += optimal.per_metric(
        main_grid,
        [
            (
                f"### {MAIN_STEPS} steps: {{metric}} per depth "
                "(mean +- 95% CI; * best)",
                optimal.per_depth_table,
            )
        ],
        markdown,
    )
    sections += optimal.section(
        f"### Budget: best depth when training stops at a step "
        f"({MAIN_STEPS}-step runs)",
        markdown(optimal.budget_table(main_grid, "test_accuracy", BUDGETS, by=CONFIGS)),
    )
    if long is not None:
        optimal.save(
            ("training_best_depth_vs_step_long",
             *optimal_depth_vs_step_figure(long)[1:]),
            figures, captions,
        )  # fmt: skip
        sections += optimal.section(
            f"### Budget: the {LONG_STEPS}-step runs (digits), best depth per step",
            markdown(optimal.budget_table(long, "test_accuracy", BUDGETS, by=CONFIGS)),
            markdown(best_table(long, "test_accuracy")),
            markdown(best_table(long, "test_loss")),
            markdown(optimal.per_depth_table(long, "test_accuracy")),
            markdown(versus_table(long, "test_accuracy")),
            markdown(versus_table(long, "test_loss")),
        )
    sections += ["", "## Compute (wall time of each sweep, as MLflow recorded it)"]
    for part, table in (("a, probe", probe_sweeps), ("b, training", sweeps)):
        finished = table[table["status"] == "FINISHED"]
        sections += optimal.section(
            f"Part {part}: {finished['wall seconds'].sum() / 60:.1f} min in "
            f"{len(finished)} finished sweeps.",
            markdown(table),
        )
    optimal.write_results(args.out, sections, captions)


def markdown(frame: pd.DataFrame) -> str:
    """optimal_depth's markdown table, with float columns rounded to 3 digits."""
    frame = frame.copy()
    for column in frame.columns:
        if pd.api.types.is_float_dtype(frame[column]):
            frame[column] = [optimal.fmt(float(v)) for v in frame[column]]
    return optimal.markdown(frame)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
