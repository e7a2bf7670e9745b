"""The report of a sweep: seaborn figures and generated text in one HTML page.

``build_report(sweep, out_dir)`` writes ``report.html`` (self-contained: figures
embedded as base64 PNG) and one PNG per figure into ``out_dir``;
``build_report_from_mlflow`` reads the sweep back from MLflow first, so a report
can be rebuilt from MLflow alone (``python -m depthlab.report``).

Modules, one job each:

- :mod:`~depthlab.report.data`: a Sweep -> plotting frames, config labels,
  colours (one config -> colour map for every figure);
- :mod:`~depthlab.report.figures`, :mod:`~depthlab.report.heatmap`: one
  function per figure;
- :mod:`~depthlab.report.plotting`: the style, panels, legends, bin edges and
  PNG rendering of every figure, probe and training alike;
- :mod:`~depthlab.report.parallel`: the figures drawn side by side by forked
  processes, one per CPU this process may use (serially where forking is not
  safe: another thread running, one core);
- :mod:`~depthlab.report.theory_lines`: mean-field lines over the figures
  (critical sigma_w, xi_c), computed once per config;
- :mod:`~depthlab.report.training`: the training sweeps' figures and tables
  (:mod:`~depthlab.report.training_data`, :mod:`~depthlab.report.stats`,
  :mod:`~depthlab.report.training_figures`, :mod:`~depthlab.report.training_maps`);
- :mod:`~depthlab.report.text`: generated text and tables;
- :mod:`~depthlab.report.html`: the page, every string HTML-escaped.

matplotlib and seaborn are imported only when a report is built.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from depthlab import garbage
from depthlab.report.data import ReportData, prepare
from depthlab.report.figures import FIGURE_NAMES, Drawn, draw_all
from depthlab.tracking import Sweep
from depthlab.tracking.read import DEEPEST_TABLES, REPORT_TABLES, KnownTables

if TYPE_CHECKING:
    from depthlab.report.training_data import TrainingData

__all__ = [
    "FIGURE_NAMES",
    "REPORT_FILE",
    "Drawn",
    "ReportData",
    "build_report",
    "build_report_from_mlflow",
    "figure_files",
    "prepare",
]

REPORT_FILE = "report.html"
ARTIFACT_PATH = "report"
"""Where the report goes in the parent run's artifacts."""


def build_report(sweep: Sweep, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``report.html`` and the figures' PNG files for a sweep.

    Parameters
    ----------
    sweep : depthlab.tracking.Sweep
        A sweep, e.g. from :func:`depthlab.tracking.load_sweep`.
    out_dir : path
        Directory to write into (created if needed). PNG files of figures that
        this sweep does not support are removed from it, so the directory holds
        exactly this report's figures.

    Returns
    -------
    pathlib.Path
        The absolute path of ``report.html``.

    Examples
    --------
    >>> from depthlab import tracking                      # doctest: +SKIP
    >>> uri = tracking.default_uri()                       # doctest: +SKIP
    >>> sweep = tracking.load_sweep(uri, tracking.latest_sweep_id(uri, "depthlab"))
    ... # doctest: +SKIP
    >>> build_report(sweep, "report")                      # doctest: +SKIP
    PosixPath('/.../report/report.html')
    """
    from depthlab.report import html, text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    task = sweep.runs.get("params.task")
    has_training = task is not None and bool((task == "train").any())
    has_probes = task is None or bool((task != "train").any())
    data = prepare(sweep)
    if has_probes:
        _read_deepest_tables(sweep, data)
    drawn = draw_all(data) if has_probes else []
    training_table = None
    if has_training:
        from depthlab.report.training import prepare_training, summary_table

        training = prepare_training(sweep)
        drawn += _training_figures(training)
        training_table = summary_table(training)
    for fig in drawn:
        path = out / f"{fig.name}.png"
        if fig.png is not None:
            path.write_bytes(fig.png)
        elif path.exists():
            path.unlink()
    page = html.Page(
        title=f"depthlab report: {data.parent_name or data.parent_run_id}",
        meta=[
            f"sweep run {data.parent_run_id}",
            f"generated {time.strftime('%Y-%m-%d %H:%M:%S')}",
        ],
        overview=text.overview(data),
        figures=drawn,
        findings=text.findings(data) if has_probes else [],
        config_findings=text.config_findings(data) if has_probes else [],
        definitions=text.definitions(),
        config_table=text.config_table(data) if has_probes else _empty(),
        runs_table=text.runs_table(data),
        training_table=training_table,
    )
    report = out.resolve() / REPORT_FILE
    report.write_text(html.render(page), encoding="utf-8")
    return report


def _read_deepest_tables(sweep: Sweep, data: ReportData) -> None:
    """Put the :data:`~depthlab.tracking.read.DEEPEST_TABLES` of the deepest
    run of each config into ``data`` (read now, before the figures' processes
    fork, for those runs only)."""
    summary = data.summary
    if summary.empty or "depth" not in summary or "run_id" not in summary:
        return
    deepest = data.deepest()["run_id"]
    for name in DEEPEST_TABLES:
        table = sweep.read_table(name, deepest)
        if table is not None:
            data.tables[name] = table


def _empty() -> Any:
    import pandas as pd

    return pd.DataFrame()


def _training_figures(training: TrainingData) -> list[Drawn]:
    """The training figures (:mod:`depthlab.report.training`), rendered."""
    from depthlab.report.plotting import render
    from depthlab.report.training import FIGURE_TITLES, training_figures

    drawn = []
    for name, fig, note in training_figures(training):
        drawn.append(
            render(
                Drawn(
                    name,
                    FIGURE_TITLES[name],
                    figure=fig,
                    caption=note if fig is not None else "",
                    reason="" if fig is not None else note,
                )
            )
        )
    return drawn


def figure_files(report: str | os.PathLike[str]) -> list[Path]:
    """The PNG files written next to a report (its figures)."""
    from depthlab.report.training import FIGURE_TITLES

    directory = Path(report).parent
    return [
        directory / f"{name}.png"
        for name in (*FIGURE_NAMES, *FIGURE_TITLES)
        if (directory / f"{name}.png").exists()
    ]


def build_report_from_mlflow(
    uri: str,
    parent_run_id: str,
    *,
    out_dir: str | os.PathLike[str],
    log_to_parent: bool = False,
    known_tables: KnownTables | None = None,
) -> Path:
    """Load a sweep from MLflow, build its report, optionally log it back.

    Parameters
    ----------
    uri, parent_run_id : str
        The tracking URI and the sweep's parent run.
    out_dir : path
        Directory for ``report.html`` and the PNG files.
    log_to_parent : bool, default False
        Also attach ``report.html`` and the PNG files to the parent run, under
        the artifact path ``report/``.
    known_tables : mapping of run id to {table name: DataFrame}, optional
        The tables of runs already in memory (what the sweep's jobs returned),
        not read back (:func:`depthlab.tracking.load_sweep`).

    Returns
    -------
    pathlib.Path
        The absolute path of ``report.html``.

    Raises
    ------
    depthlab.tracking.TrackingError
        If the run does not exist or has no child runs.
    """
    from depthlab import tracking

    sweep = tracking.load_sweep(
        uri, parent_run_id, tables=REPORT_TABLES, known_tables=known_tables
    )
    if sweep.runs.empty:
        raise tracking.TrackingError(
            f"run {parent_run_id} in {uri} has no child runs: not the parent run "
            "of a sweep"
        )
    with garbage.long_lived_frozen():  # the sweep read, and what it came with
        report = build_report(sweep, out_dir)
    if log_to_parent:
        tracking.log_files(
            uri, parent_run_id, [report, *figure_files(report)], ARTIFACT_PATH
        )
    return report
