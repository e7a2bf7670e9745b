"""The read side of tracking: a sweep back from MLflow (its parent run, its
jobs' params and metrics, their tidy tables), as the report needs it, and the
dashboard's address. The report never needs the process that ran the jobs."""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from depthlab.tracking import (
    _FLOAT_MAX,
    KIND_TAG,
    PARENT_TAG,
    REUSED_FILE,
    TABLES_DIR,
    TrackingError,
    _client,
    local_artifact_dir,
)

REPORT_TABLES = ("samples", "theory", "per_layer", "curves", "final")
"""The tables a report reads for every run: neither the per-(network, input,
layer) ``layers`` table, which the figures do not need (``per_layer`` holds its
quantiles) and which dominates the load time and memory of a large sweep, nor
the :data:`DEEPEST_TABLES`."""

DEEPEST_TABLES = ("spectrum",)
"""The tables a report draws for the deepest run of each config alone
(:meth:`depthlab.report.ReportData.deepest`), read for those runs only
(:meth:`Sweep.read_table`): the spectra are most of a probe job's tables' rows
(a row per singular value), and the report of a 196-job depth sweep draws 4
runs' spectra."""


KnownTables = Mapping[str, Mapping[str, "pd.DataFrame"]]
"""Tables already in memory: run id -> {table name: DataFrame}."""


@dataclass
class Sweep:
    """A sweep read back from MLflow: its parent run and its jobs' tables."""

    parent_run_id: str
    parent_name: str
    runs: pd.DataFrame
    """One row per child run: run_id, run_name, status, params, summary metrics."""
    tables: dict[str, pd.DataFrame]
    """Each tidy table, concatenated over the FINISHED child runs (with run_id)."""
    uri: str = ""
    """The tracking URI it was read from."""
    artifact_uris: dict[str, str] = field(default_factory=dict)
    """Run id -> artifact URI, of the FINISHED child runs."""

    def read_table(self, name: str, run_ids: Collection[str]) -> pd.DataFrame | None:
        """The table ``name`` of the FINISHED runs ``run_ids`` (with run_id, in
        the order of :attr:`runs`), as :func:`load_sweep` reads it: from
        :attr:`tables` where it was loaded, else from the runs' artifacts.
        None where none of those runs has it."""
        wanted = set(run_ids)
        if name in self.tables:
            table = self.tables[name]
            return table[table["run_id"].isin(wanted)].reset_index(drop=True)
        if not self.uri:
            return None
        client = _client(self.uri)
        parts = []
        for run_id, artifact_uri in self.artifact_uris.items():
            if run_id in wanted:
                found = _read_tables(client, run_id, artifact_uri, (name,))
                if name in found:
                    parts.append((run_id, found[name]))
        return _with_run_ids(parts) if parts else None


def sweep_runs(
    uri: str, experiment: str, *, newest_first: bool = False, max_results: int = 1000
) -> list[Any]:
    """The parent (sweep) runs of an experiment, oldest first (or newest first).

    Parameters
    ----------
    uri : str
        Tracking URI.
    experiment : str
        The MLflow experiment's name.
    newest_first : bool
        Order by start time, the newest first (default: the oldest first).
    max_results : int
        At most this many runs (the first in that order).

    Raises
    ------
    TrackingError
        If the store has no such experiment, or the experiment no sweep run.
    """
    client = _client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise TrackingError(f"no experiment {experiment!r} in {uri}")
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.{KIND_TAG} = 'sweep'",
        order_by=[f"attributes.start_time {'DESC' if newest_first else 'ASC'}"],
        max_results=max_results,
    )
    if not runs:
        raise TrackingError(f"experiment {experiment!r} in {uri} has no sweep runs")
    return runs


def latest_sweep_id(uri: str, experiment: str) -> str:
    """The id of the most recent parent (sweep) run of an experiment."""
    return sweep_runs(uri, experiment, newest_first=True, max_results=1)[0].info.run_id


def load_sweep(
    uri: str,
    parent_run_id: str,
    *,
    tables: Collection[str] | None = None,
    known_tables: KnownTables | None = None,
) -> Sweep:
    """Read a sweep's child runs and their tables back from MLflow alone.

    Parameters
    ----------
    uri : str
        Tracking URI.
    parent_run_id : str
        The sweep's parent run.
    tables : collection of str, optional
        Names of the tables to read (default: all). The per-(network, input,
        layer) ``layers`` table is by far the largest; leave it out when only
        summaries are needed.
    known_tables : mapping of run id to {table name: DataFrame}, optional
        Tables already in memory (those a sweep's jobs returned to it, as
        logged), used instead of reading those runs' artifacts back: the
        same frames (a parquet round trip keeps them exactly), without the
        reads, which are most of the load time of a large sweep.
    """
    from depthlab import garbage

    with garbage.paused():  # ~14,000 ORM rows for 200 runs, pandas' pieces
        return _load_sweep(uri, parent_run_id, tables, known_tables or {})


def _load_sweep(
    uri: str,
    parent_run_id: str,
    tables: Collection[str] | None,
    known: KnownTables,
) -> Sweep:
    client = _client(uri)
    try:
        parent = client.get_run(parent_run_id)
    except Exception as err:
        raise TrackingError(f"no run {parent_run_id!r} in {uri}: {err}") from None
    exp_id = parent.info.experiment_id
    children = _search_runs(uri, exp_id, f"tags.{PARENT_TAG} = '{parent_run_id}'")
    for run_id in _reused_run_ids(client, parent):
        children.append(client.get_run(run_id))
    import pandas as pd

    rows = []
    frames: dict[str, list[pd.DataFrame]] = {}
    artifact_uris: dict[str, str] = {}
    for run in children:
        row = {
            "run_id": run.info.run_id,
            "run_name": run.info.run_name,
            "status": run.info.status,
            **{f"params.{k}": v for k, v in run.data.params.items()},
            **{k: _infinite(v) for k, v in run.data.metrics.items()},
        }
        rows.append(row)
        if run.info.status != "FINISHED":
            continue
        run_id = run.info.run_id
        artifact_uris[run_id] = run.info.artifact_uri
        if run_id in known:
            found = {
                name: table
                for name, table in known[run_id].items()
                if tables is None or name in tables
            }
        else:
            found = _read_tables(client, run_id, run.info.artifact_uri, tables)
        for name, table in found.items():
            frames.setdefault(name, []).append((run_id, table))
    tables = {name: _with_run_ids(parts) for name, parts in frames.items()}
    return Sweep(
        parent_run_id=parent_run_id,
        parent_name=parent.info.run_name,
        runs=pd.DataFrame(rows),
        tables=tables,
        uri=uri,
        artifact_uris=artifact_uris,
    )


def _with_run_ids(parts: list[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """The runs' tables concatenated, each row with its ``run_id``: the frame
    that ``concat([table.assign(run_id=run_id) ...])`` gives (the column where
    the first table has it, else after the first table's columns), with the
    column built once instead of once per run."""
    import numpy as np
    import pandas as pd

    first = parts[0][1].columns
    where = first.get_loc("run_id") if "run_id" in first else len(first)
    frame = pd.concat([table for _, table in parts], ignore_index=True)
    if "run_id" in frame:
        frame = frame.drop(columns="run_id")
    # Each run id once, in pandas' default dtype for strings (what assign gives
    # a scalar), then repeated by a take: no per-row conversion of strings.
    run_ids = pd.Series([run_id for run_id, _ in parts])
    rows = np.repeat(np.arange(len(parts)), [len(table) for _, table in parts])
    frame.insert(where, "run_id", run_ids.take(rows).set_axis(frame.index))
    return frame


def _search_runs(uri: str, experiment_id: str, filter_string: str) -> list[Any]:
    """Every run of an experiment that matches a filter (:func:`mlflow.search_runs`
    pages through them), read from ``uri``; the global tracking URI is restored."""
    import mlflow

    _client(uri)  # the store's logging levels and SQLite settings
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        return mlflow.search_runs(
            [experiment_id], filter_string=filter_string, output_format="list"
        )
    finally:
        mlflow.set_tracking_uri(previous)


def dashboard_url(base: str, experiment_id: str) -> str:
    """The ``mlflow ui`` page of an experiment's runs, e.g.
    ``http://127.0.0.1:5000/#/experiments/1/runs?workflowType=machine_learning``.

    MLflow 3.17's UI opens every experiment in the browser's last workflow
    ("GenAI" by default: the overview of traces) whatever the experiment's
    :data:`EXPERIMENT_KIND` tag; ``workflowType=machine_learning`` opens the runs.
    """
    runs = f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs"
    return f"{runs}?workflowType=machine_learning"


def _reused_run_ids(client: Any, parent: Any) -> list[str]:
    try:
        local = local_artifact_dir(parent.info.artifact_uri)
        if local is not None:  # read in place: no download, no progress bar
            path = local / REUSED_FILE
            text = path.read_text() if path.is_file() else ""
            return [line for line in text.split() if line]
        names = {a.path for a in client.list_artifacts(parent.info.run_id)}
        if REUSED_FILE not in names:
            return []
        with tempfile.TemporaryDirectory(prefix="depthlab-") as tmp:
            with _no_progress_bars():
                path = client.download_artifacts(parent.info.run_id, REUSED_FILE, tmp)
            return [line for line in Path(path).read_text().split() if line]
    except Exception:
        return []


def _infinite(value: float) -> float:
    """MLflow stores +-inf metrics as +-float max; give them back as +-inf."""
    if abs(value) >= _FLOAT_MAX:
        return math.copysign(math.inf, value)
    return value


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """No download progress bar on standard error (MLflow draws one for every
    download from a tracking server), whatever the environment asked for."""
    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR

    name = MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name
    before = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _read_tables(
    client: Any, run_id: str, artifact_uri: str, names: Collection[str] | None
) -> dict[str, pd.DataFrame]:
    import pandas as pd

    def read(folder: Path) -> dict[str, pd.DataFrame]:
        return {
            p.stem: pd.read_parquet(p)
            for p in sorted(folder.glob("*.parquet"))
            if names is None or p.stem in names
        }

    local = local_artifact_dir(artifact_uri)
    if local is not None and (local / TABLES_DIR).is_dir():
        return read(local / TABLES_DIR)
    with tempfile.TemporaryDirectory(prefix="depthlab-") as tmp:
        if names is None:
            with _no_progress_bars():
                folder = Path(client.download_artifacts(run_id, TABLES_DIR, tmp))
            return read(folder)
        # Only the tables asked for: the layers table is most of a run's bytes.
        found = {}
        for artifact in client.list_artifacts(run_id, TABLES_DIR):
            name = Path(artifact.path)
            if name.suffix == ".parquet" and name.stem in names:
                with _no_progress_bars():
                    local_file = client.download_artifacts(run_id, artifact.path, tmp)
                found[name.stem] = pd.read_parquet(local_file)
        return dict(sorted(found.items()))
