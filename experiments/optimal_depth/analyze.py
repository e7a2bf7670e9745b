"""The optimal-depth study: figures and numbers from the MLflow store alone.

Reads every sweep of the MLflow experiment ``optimal_depth`` (the three sweeps
of ``run.sh``), writes the figures (small PNGs) to ``figures/`` and every
number the README quotes to ``results.md``.

Usage (from this folder, after ``run.sh`` or its three sweeps)::

    python analyze.py                     # the store ./mlflow.db
    python analyze.py --uri sqlite:////path/to/mlflow.db --out .
"""

from __future__ import annotations

import argparse
import io
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from depthlab import theory, tracking
from depthlab.report.training import (
    ALPHA,
    TrainingData,
    TrainingFigure,
    best_depth_by_step,
    depth_figure,
    depth_statistics,
    gradient_health_figure,
    learning_curves_figure,
    optimal_depth_vs_step_figure,
    prepare_training,
    summary_table,
    trainability_heatmap,
)
from depthlab.tracking.read import sweep_runs

HERE = Path(__file__).resolve().parent
EXPERIMENT = "optimal_depth"
SIGMA_B = 0.05
SIGMA_W_CRITICAL = 1.1225
"""critical_sigma_w("tanh", 0.05) = 1.12254, rounded as in the preset."""
SIGMA_W_CHAOTIC = 2.5
MAIN_STEPS = 2000
LONG_STEPS = 8000
BUDGETS = (200, 500, 1000, 2000, 4000, 8000)
"""Budgets (steps) at which the long runs' best depth is read off."""
XI_MULTIPLES = (6.0, 3.0)
"""6 xi_c: Schoenholz et al.'s trainability limit; 3 xi_c: for comparison with
the measured L_half (trainability_table), drawn after looking at the data."""
METRICS = ("test_accuracy", "test_loss")
"""The metrics of the per-metric tables."""
MAX_PNG_BYTES = 100_000
DPI = 90


# ---------------------------------------------------------------------------
# Loading


def load_study(
    uri: str,
    experiment: str = EXPERIMENT,
    tables: Sequence[str] = ("final", "curves"),
) -> tuple[tracking.Sweep, pd.DataFrame]:
    """Every sweep of an experiment as one Sweep, and a table of the sweeps.

    Runs reused by several sweeps, or re-run with ``force=true``, are counted
    once (the latest run of a config), and so are their rows of ``tables``
    (the tables read, :func:`depthlab.tracking.load_sweep`). The table of the
    sweeps has one row per sweep (parent run): its overrides, jobs, jobs skipped
    (already FINISHED) and wall seconds.
    """
    try:
        parents = sweep_runs(uri, experiment)
    except tracking.TrackingError as err:
        raise SystemExit(f"analyze.py: {err}") from None
    sweeps = [tracking.load_sweep(uri, p.info.run_id, tables=tables) for p in parents]
    runs = pd.concat([s.runs for s in sweeps], ignore_index=True)
    runs = runs[runs["status"] == "FINISHED"].drop_duplicates("run_id", keep="last")
    params = [c for c in runs.columns if c.startswith("params.")]
    runs = runs.drop_duplicates(params, keep="last")
    keep = set(runs["run_id"])
    read = {}
    for name in tables:
        parts = [s.tables[name] for s in sweeps if name in s.tables]
        table = pd.concat(parts, ignore_index=True)
        # A reused run is in the tables of every sweep that reused it: the
        # rows of each run carry their own keys (net, step, layer, ...), so a
        # row equal to an earlier one is that run read again.
        read[name] = table[table["run_id"].isin(keep)].drop_duplicates()
    sweep = tracking.Sweep(
        parent_run_id=",".join(p.info.run_id for p in parents),
        parent_name=f"{experiment}: {len(parents)} sweeps",
        runs=runs.reset_index(drop=True),
        tables=read,
    )
    table = pd.DataFrame(
        {
            "sweep": [p.info.run_name for p in parents],
            "overrides": [p.data.params.get("overrides", "") for p in parents],
            "status": [p.info.status for p in parents],
            "jobs": [p.data.metrics.get("jobs", math.nan) for p in parents],
            "skipped": [p.data.metrics.get("jobs_skipped", math.nan) for p in parents],
            "wall seconds": [p.data.metrics.get("seconds", math.nan) for p in parents],
        }
    )
    return sweep, table


# ---------------------------------------------------------------------------
# Output


def save(figure: TrainingFigure, out: Path, captions: list[str]) -> None:
    """Write ``<name>.png`` (Agg, at most MAX_PNG_BYTES) and keep its caption."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    name, fig, text = figure
    if fig is None:
        print(f"analyze.py: {name}: not drawn: {text}", file=sys.stderr)
        captions.append(f"- `{name}.png`: not drawn: {text}")
        return
    FigureCanvasAgg(fig)
    for dpi in (DPI, 80, 70, 60):
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
        if buffer.tell() <= MAX_PNG_BYTES:
            break
    (out / f"{name}.png").write_bytes(buffer.getvalue())
    captions.append(f"- `figures/{name}.png` ({buffer.tell() // 1000} KB): {text}")


def fmt(x: float, digits: int = 3) -> str:
    """A number for a markdown table."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    if isinstance(x, int | np.integer) or (float(x).is_integer() and abs(x) < 1e6):
        return str(int(x))
    return f"{x:.{digits}g}" if abs(x) < 1e4 else f"{x:.2e}"


def markdown(frame: pd.DataFrame) -> str:
    """A DataFrame as a markdown table (numbers formatted with :func:`fmt`)."""
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for v in row:
            if isinstance(v, list):
                cells.append(", ".join(map(str, v)) if v else "none")
            elif isinstance(v, float | int | np.floating | np.integer):
                cells.append(fmt(float(v)) if isinstance(v, float) else str(v))
            else:
                cells.append(str(v))
        body.append("| " + " | ".join(cells) + " |")
    return "\n".join([head, rule, *body])


def section(heading: str, *blocks: str) -> list[str]:
    """Lines of ``results.md``: a blank line and ``heading``, then each block (a
    table or a paragraph) after a blank line."""
    return ["", heading, *(line for block in blocks for line in ("", block))]


def per_metric(
    data: TrainingData,
    tables: Sequence[tuple[str, Callable[[TrainingData, str], pd.DataFrame]]],
    render: Callable[[pd.DataFrame], str] = markdown,
) -> list[str]:
    """For each ``(heading, table)``, one :func:`section` per metric of METRICS:
    ``heading`` with the metric for ``{metric}``, and ``render(table(data,
    metric))``."""
    return [
        line
        for heading, table in tables
        for metric in METRICS
        for line in section(heading.format(metric=metric), render(table(data, metric)))
    ]


def write_results(out: Path, lines: list[str], captions: list[str]) -> None:
    """Write ``out/results.md``: ``lines``, then the section of the figures'
    captions."""
    lines = [*lines, "", "## Figures", "", *captions]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print(f"analyze.py: wrote {out / 'results.md'} and {out / 'figures'}/*.png")


def ci_text(mean: float, low: float, high: float) -> str:
    """``0.965 +- 0.008``: the mean and the half-width of its 95% CI."""
    if not math.isfinite(mean):
        return "-"
    half = (high - low) / 2
    return f"{mean:.3f} +- {half:.3f}" if math.isfinite(half) else f"{mean:.3f}"


def ci_cells(stats: pd.DataFrame) -> list[str]:
    """:func:`ci_text` of each row's ``mean``, ``ci_low``, ``ci_high``."""
    return [
        ci_text(m, lo, hi)
        for m, lo, hi in zip(
            stats["mean"], stats["ci_low"], stats["ci_high"], strict=True
        )
    ]


# ---------------------------------------------------------------------------
# Analyses


def best_table(data: TrainingData, metric: str) -> pd.DataFrame:
    """Best depth, its set, beta and xi_c per (dataset, width, sigma_w)."""
    table = summary_table(data, metric)
    keys = data.runs.groupby(["dataset", "config"])[["sigma_w", "steps"]]
    table = table.merge(keys.first().reset_index(), on=["dataset", "config"])
    table = table.sort_values(["dataset", "steps", "width", "sigma_w"])
    return pd.DataFrame(
        {
            "dataset": table["dataset"],
            "width": table["width"].astype(int),
            "sigma_w": [f"{x:g}" for x in table["sigma_w"]],
            "steps": table["steps"].astype(int),
            "xi_c": table["xi_c"],
            "best L": table["best_depth"],
            f"{metric} at best (mean +- 95% CI)": ci_cells(table),
            "indistinguishable L": table["indistinguishable"],
            "beta at best": table["beta_best"],
            "beta range of the set": [
                f"{(lo - 2) / w:.3g} to {(hi - 2) / w:.3g}"
                for lo, hi, w in zip(
                    table["depth_min"], table["depth_max"], table["width"], strict=True
                )
            ],
        }
    )


def per_depth_table(data: TrainingData, metric: str) -> pd.DataFrame:
    """Mean +- CI of ``metric`` at every depth, one column per config."""
    stats = depth_statistics(data.final, metric)
    stats["cell"] = [
        cell + (" *" if b else "") + (" (div)" if d else "")
        for cell, b, d in zip(
            ci_cells(stats), stats["best"], stats["n_diverged"] > 0, strict=True
        )
    ]
    stats["column"] = stats["dataset"] + ": " + stats["config"]
    wide = stats.pivot(index="depth", columns="column", values="cell")
    return wide.reset_index().rename(columns={"depth": "L"})


def budget_table(
    data: TrainingData,
    metric: str,
    budgets: Sequence[int] = BUDGETS,
    by: Sequence[str] = ("dataset",),
) -> pd.DataFrame:
    """The best depth when training stops at each budget (of the long runs here).

    One row per budget and group: ``by`` are the columns of ``data``'s
    :func:`best_depth_by_step` that name a group, e.g. ``("dataset", "config")``.
    """
    by_step = best_depth_by_step(data, metric)
    by_step = by_step[by_step["step"].isin(budgets)]
    return pd.DataFrame(
        {
            **{key: by_step[key] for key in by},
            "steps": by_step["step"],
            "best L": by_step["best_depth"],
            f"{metric} at best (mean +- 95% CI)": ci_cells(by_step),
            "indistinguishable L": by_step["indistinguishable"],
        }
    ).sort_values([*by, "steps"])


def trainability_table(data: TrainingData) -> pd.DataFrame:
    """Per sigma_w: xi_c, the best depth, and the depth where accuracy halves.

    ``L_half`` is the shallowest depth beyond the best one whose mean test
    accuracy is below the midpoint between chance (0.1 for digits) and the best
    mean accuracy of that sigma_w (``> 32``: never below it in the swept range).
    On the depth grid it is known only to lie in (previous depth, L_half].
    """
    stats = depth_statistics(data.final, "test_accuracy")
    runs = data.runs.groupby("config")[["sigma_w", "theory_xi_c", "theory_chi1"]]
    info = runs.first().reset_index()
    rows = []
    for config, line in stats.groupby("config", sort=False):
        line = line.sort_values("depth")
        best = line[line["best"]].iloc[0]
        half = (0.1 + best["mean"]) / 2
        deeper = line[(line["depth"] > best["depth"]) & (line["mean"] < half)]
        l_half = int(deeper["depth"].iloc[0]) if len(deeper) else math.inf
        above = line[line["depth"] < l_half]["depth"]
        prev = int(above.iloc[-1])
        r = info[info["config"] == config].iloc[0]
        xi = r["theory_xi_c"]
        rows.append(
            {
                "sigma_w": f"{r['sigma_w']:g}",
                "chi_1": r["theory_chi1"],
                "xi_c": r["theory_xi_c"],
                "6 xi_c": 6 * r["theory_xi_c"],
                "best L": int(best["depth"]),
                "accuracy at best": ci_text(
                    best["mean"], best["ci_low"], best["ci_high"]
                ),
                "indistinguishable L": sorted(
                    int(d) for d in line.loc[line["indistinguishable"], "depth"]
                ),
                "L_half in": (
                    f"({prev}, {l_half}]" if math.isfinite(l_half) else f"> {prev}"
                ),
                "L_half / xi_c in": (
                    f"({prev / xi:.3g}, {l_half / xi:.3g}]"
                    if math.isfinite(l_half)
                    else f"> {prev / xi:.3g}"
                ),
            }
        )
    return pd.DataFrame(rows).sort_values("sigma_w", key=lambda c: c.astype(float))


def gradient_table(data: TrainingData) -> pd.DataFrame:
    """Spearman correlation of accuracy with |log10 initial gradient norm|."""
    from scipy import stats as st

    acc = depth_statistics(data.final, "test_accuracy")
    grad = data.runs.groupby(["dataset", "config", "depth"])[
        "init_grad_log10_norm_median"
    ].median()
    cells = acc.merge(grad.reset_index(), on=["dataset", "config", "depth"])
    rows = []
    for dataset, sub in cells.groupby("dataset", sort=False):
        test = st.spearmanr(np.abs(sub["init_grad_log10_norm_median"]), sub["mean"])
        rho, p = float(test.statistic), float(test.pvalue)
        good = sub[sub["mean"] >= 0.9]
        rows.append(
            {
                "dataset": dataset,
                "cells (config, depth)": len(sub),
                "Spearman rho(abs log10 grad, accuracy)": rho,
                "p": p,
                "log10 grad range of all cells": (
                    f"{sub['init_grad_log10_norm_median'].min():.2f} to "
                    f"{sub['init_grad_log10_norm_median'].max():.2f}"
                ),
                "log10 grad range of cells with accuracy >= 0.9": (
                    f"{good['init_grad_log10_norm_median'].min():.2f} to "
                    f"{good['init_grad_log10_norm_median'].max():.2f}"
                    if len(good)
                    else "-"
                ),
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """Write ``figures/*.png`` and ``results.md``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--uri", default=tracking.default_uri(HERE))
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    figures = args.out / "figures"
    figures.mkdir(parents=True, exist_ok=True)

    study, sweeps = load_study(args.uri)
    data = prepare_training(study)
    pair = [SIGMA_W_CRITICAL, SIGMA_W_CHAOTIC]
    main_grid = data.where(steps=MAIN_STEPS, sigma_w=pair)
    long = data.where(steps=LONG_STEPS)
    heat = data.where(steps=MAIN_STEPS, dataset="digits", width=16)
    health = data.where(steps=MAIN_STEPS)
    health_w16 = data.where(steps=MAIN_STEPS, width=16)
    captions: list[str] = []
    save(depth_figure(main_grid), figures, captions)
    save(learning_curves_figure(main_grid), figures, captions)
    save(trainability_heatmap(heat, xi_multiples=XI_MULTIPLES), figures, captions)
    save(gradient_health_figure(health_w16), figures, captions)
    save(optimal_depth_vs_step_figure(long), figures, captions)

    n_runs = len(data.runs)
    n_seeds = len(data.final)
    n_div = int(data.final["diverged"].sum())
    crit = theory.critical_sigma_w("tanh", SIGMA_B)
    store = (
        "`mlflow.db` in this folder"
        if args.uri == tracking.default_uri(HERE)
        else f"`{args.uri}`"
    )
    finished = sweeps[sweeps["status"] == "FINISHED"]
    sections = [
        "# Optimal depth: numbers (written by analyze.py; do not edit)",
        "",
        f"Store: {store}, experiment `{EXPERIMENT}`. {n_runs} training runs, "
        f"{n_seeds} trained networks (seeds), {n_div} diverged.",
        f"critical_sigma_w('tanh', {SIGMA_B}) = {crit:.6f}; "
        f"chi_1 at sigma_w = {SIGMA_W_CRITICAL}: "
        f"{theory.chi1('tanh', SIGMA_W_CRITICAL, SIGMA_B):.5f}.",
        f"Statistics: mean over seeds, 95% Student-t CI (+- half-width); best L: "
        f"highest mean test accuracy (lowest mean loss) among depths with no "
        f"diverged seed; indistinguishable L: Welch two-sided t-test vs the best "
        f"at {ALPHA:.0%}, no multiplicity correction. beta = (L - 2) / width.",
    ]
    sections += per_metric(
        main_grid,
        [
            (
                f"## Main grid ({MAIN_STEPS} steps): best depth by {{metric}}",
                best_table,
            ),
            (
                "## Main grid: {metric} per depth (mean +- 95% CI; * best; "
                "(div) some seed diverged)",
                per_depth_table,
            ),
        ],
    )
    sections += [
        *section(
            f"## Budget: best depth when training stops at a given step "
            f"(width 16, sigma_w = {SIGMA_W_CRITICAL}, {LONG_STEPS}-step runs)",
            markdown(budget_table(long, "test_accuracy")),
            markdown(budget_table(long, "test_loss")),
        ),
        *section(
            f"## Budget: the {LONG_STEPS}-step runs, best depth at the end",
            markdown(best_table(long, "test_accuracy")),
        ),
        *section(
            "## Trainability over sigma_w (digits, width 16, 2000 steps)",
            markdown(trainability_table(heat)),
        ),
        *section(
            f"## Gradient at initialization and trainability ({MAIN_STEPS} steps, "
            f"every config)",
            markdown(gradient_table(health)),
        ),
        *section(
            "## Compute: the sweeps (wall time on this machine, as MLflow recorded it)",
            markdown(sweeps),
            f"Total wall time of the finished sweeps: "
            f"{finished['wall seconds'].sum() / 60:.1f} min.",
        ),
    ]
    write_results(args.out, sections, captions)


if __name__ == "__main__":
    main()
