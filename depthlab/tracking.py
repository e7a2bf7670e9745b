"""MLflow tracking: the only module of depthlab that imports mlflow.

One MLflow experiment is a study; one parent run per sweep, created before any
job starts; one child run per job. A child run holds the flattened config as
params, the config hash, package version and git commit as tags, scalar summaries
and per-layer medians (step = layer index) as metrics, written in as few
``log_batch`` calls as MLflow's limits allow (one for depth <= 100), and the tidy
tables as parquet artifacts next to the resolved config.

mlflow is imported lazily, so that ``--help`` and configuration errors do not
pay for it.
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from depthlab import __version__
from depthlab.interrupts import deferred, deferring

HASH_TAG = "depthlab.config_hash"
VERSION_TAG = "depthlab.version"
COMMIT_TAG = "depthlab.git_commit"
KIND_TAG = "depthlab.kind"
PARENT_TAG = "mlflow.parentRunId"
ERROR_TAG = "depthlab.error"
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
"""Experiment tag: a model-training experiment (runs), not a GenAI one (traces).
MLflow 3.17's UI still opens in the browser's last workflow: :func:`dashboard_url`."""
TABLES_DIR = "tables"
REUSED_FILE = "reused_runs.txt"
_FLOAT_MAX = 1.7976931348623157e308
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
PER_LAYER_METRICS = (
    "backprop_log10_norm_median",
    "predicted_log10_mean_sq_backprop",
    "chi",
    "sv_max_median",
    "sv_min_median",
    "sv_median_median",
    "cond_median",
    "jac_log10_sv_std_median",
)
"""Per-layer columns logged as metrics with step = layer index."""


class TrackingError(RuntimeError):
    """The tracking store cannot be used; the message is one line."""


def default_uri(directory: str | os.PathLike[str] | None = None) -> str:
    """``sqlite:///<absolute directory>/mlflow.db`` (default: the current directory).

    Absolute, so that Hydra's job directories and parallel workers all write to
    the same store.
    """
    path = Path(directory or os.getcwd()).resolve() / "mlflow.db"
    return f"sqlite:///{path}"


def resolve_uri(uri: str | None) -> str:
    """The tracking URI a job uses: ``uri``, or :func:`default_uri` if None."""
    if uri is None or uri == "":
        return default_uri()
    if "://" not in uri and not uri.startswith("sqlite:"):
        # A plain path: a directory store is deprecated in MLflow 3; use sqlite.
        return default_uri(uri)
    return uri


def check_store(uri: str, *, timeout: float = 3.0) -> None:
    """Fail fast, naming the URI, if a tracking store cannot be used.

    An HTTP(S) server must answer its ``/health`` endpoint within ``timeout``
    seconds; a SQLite file must lie in a writable directory.

    Raises
    ------
    TrackingError
    """
    if uri.startswith(("http://", "https://")):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                if response.status != 200:
                    raise TrackingError(
                        f"tracking server {uri} answered {response.status} on /health"
                    )
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise TrackingError(
                f"tracking server {uri} does not answer ({reason}); start it with "
                f"`mlflow server` or set tracking.uri"
            ) from None
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    elif uri.startswith("sqlite:///"):
        directory = Path(uri.removeprefix("sqlite:///")).parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise TrackingError(f"cannot create {directory} for {uri}: {err}") from None
        if not os.access(directory, os.W_OK):
            raise TrackingError(f"tracking store {uri}: {directory} is not writable")


@cache
def _client(uri: str) -> Any:
    import logging

    # Alembic and MLflow log every migration at INFO when a store is created.
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.store.sqlalchemy_store"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from mlflow.tracking import MlflowClient

    if uri.startswith("sqlite:"):
        _use_sqlite_wal()
    return MlflowClient(tracking_uri=uri)


@cache
def _use_sqlite_wal() -> None:
    """Open every SQLite connection in WAL mode with ``synchronous=NORMAL``.

    Every MLflow call is one transaction, and SQLite's default rollback journal
    syncs the disk on each; WAL with ``synchronous=NORMAL`` syncs far less, which
    matters most on a busy disk. WAL also lets parallel
    workers read while one writes. (It needs the database on a local file
    system; a shared file system should use a tracking server anyway.)
    """
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _wal(connection: Any, _record: Any) -> None:
        if isinstance(connection, sqlite3.Connection):
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()


def _experiment_id(uri: str, experiment: str) -> str:
    client = _client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        if exp.lifecycle_stage != "active":
            raise TrackingError(
                f"experiment {experiment!r} in {uri} is deleted; restore it or "
                f"choose another tracking.experiment"
            )
        if exp.tags.get(EXPERIMENT_KIND[0]) != EXPERIMENT_KIND[1]:
            client.set_experiment_tag(exp.experiment_id, *EXPERIMENT_KIND)
        return exp.experiment_id
    artifact_location = None
    if uri.startswith("sqlite:///"):
        root = Path(uri.removeprefix("sqlite:///")).parent / "mlruns"
        artifact_location = (root / experiment.replace("/", "_")).as_uri()
    try:
        return client.create_experiment(
            experiment,
            artifact_location=artifact_location,
            tags=dict([EXPERIMENT_KIND]),
        )
    except Exception:  # another worker created it first
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            raise
        return exp.experiment_id


@cache
def _job_experiment_id(uri: str, experiment: str) -> str:
    """:func:`_experiment_id`, looked up once per process (jobs of a sweep share it)."""
    return _experiment_id(uri, experiment)


@cache
def git_commit() -> str:
    """The git commit of the working directory's repository, or ``unknown``."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=2,
            cwd=Path(__file__).parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def start_sweep(
    uri: str, experiment: str, *, run_name: str, params: Mapping[str, Any]
) -> str:
    """Create (if needed) the store and the experiment, and a RUNNING parent run.

    Returns
    -------
    str
        The parent run's id.
    """
    from mlflow.entities import Param

    client = _client(uri)
    run_id: str | None = None
    try:
        with deferred():
            exp_id = _experiment_id(uri, experiment)
            run = client.create_run(
                exp_id,
                run_name=run_name,
                tags={
                    KIND_TAG: "sweep",
                    VERSION_TAG: __version__,
                    COMMIT_TAG: git_commit(),
                },
            )
            run_id = run.info.run_id
            items = [Param(k, _param(v)) for k, v in params.items()]
            for chunk in _chunks(items, MAX_PARAMS_PER_BATCH):
                client.log_batch(run_id, params=chunk)
    except KeyboardInterrupt:
        if run_id is not None:
            with deferred():
                client.set_terminated(run_id, status="KILLED")
        raise
    assert run_id is not None  # the deferred block ran to its end
    return run_id


@deferring
def end_sweep(
    uri: str, run_id: str, *, status: str = "FINISHED", **metrics: float
) -> None:
    """Log summary metrics of a sweep and mark its parent run terminated."""
    from mlflow.entities import Metric

    client = _client(uri)
    now = int(time.time() * 1000)
    if metrics:
        client.log_batch(
            run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()]
        )
    client.set_terminated(run_id, status=status)


def finished_runs(uri: str, experiment: str) -> dict[str, str]:
    """Config hash -> run id of every FINISHED job run in an experiment."""
    client = _client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return {}
    runs: dict[str, str] = {}
    token = None
    while True:
        page = client.search_runs(
            [exp.experiment_id],
            filter_string=f"attributes.status = 'FINISHED' and tags.{KIND_TAG} = 'job'",
            max_results=5000,
            page_token=token,
        )
        for run in page:
            value = run.data.tags.get(HASH_TAG)
            if value:
                runs.setdefault(value, run.info.run_id)
        token = page.token
        if not token:
            return runs


@deferring
def record_reused_runs(uri: str, parent_run_id: str, run_ids: Sequence[str]) -> None:
    """Remember, in the parent run, the FINISHED runs a resumed sweep reuses."""
    _client(uri).log_text(parent_run_id, "\n".join(run_ids), REUSED_FILE)


def _param(value: Any) -> str:
    return "null" if value is None else str(value)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not math.isnan(value)


@dataclass
class JobRecord:
    """Everything tracked for one job."""

    run_name: str
    params: Mapping[str, Any]
    config_hash: str
    summary: Mapping[str, float]
    per_layer: pd.DataFrame | None
    tables: Mapping[str, pd.DataFrame]
    config_yaml: str
    extra_metrics: Sequence[tuple[str, float, int]] = ()
    """(key, value, step) triples, e.g. learning curves."""


@contextlib.contextmanager
def job_run(
    uri: str,
    experiment: str,
    parent_run_id: str | None,
    run_name: str,
    config_hash: str,
) -> Iterator[str]:
    """A child run that ends FINISHED, or FAILED with the error if the body raises.

    Yields
    ------
    str
        The run id.
    """
    client = _client(uri)
    tags = {
        HASH_TAG: config_hash,
        VERSION_TAG: __version__,
        COMMIT_TAG: git_commit(),
        KIND_TAG: "job",
    }
    if parent_run_id:
        tags[PARENT_TAG] = parent_run_id
    run_id: str | None = None
    try:
        with deferred():
            exp_id = _job_experiment_id(uri, experiment)
            run_id = client.create_run(exp_id, run_name=run_name, tags=tags).info.run_id
        yield run_id
    except BaseException as err:
        if run_id is not None:
            message = f"{type(err).__name__}: {err}"[:4000]
            with deferred():
                with contextlib.suppress(Exception):
                    client.set_tag(run_id, ERROR_TAG, message)
                client.set_terminated(run_id, status="FAILED")
        raise
    with deferred():
        client.set_terminated(run_id, status="FINISHED")


@deferring
def log_job(uri: str, run_id: str, record: JobRecord) -> None:
    """Write a job's params, metrics and tables into its run."""
    from mlflow.entities import Metric, Param

    client = _client(uri)
    now = int(time.time() * 1000)
    params = [Param(k, _param(v)) for k, v in record.params.items()]
    metrics = [
        Metric(k, float(v), now, 0) for k, v in record.summary.items() if _finite(v)
    ]
    if record.per_layer is not None:
        for column in PER_LAYER_METRICS:
            if column not in record.per_layer:
                continue
            for layer, value in zip(
                record.per_layer["layer"], record.per_layer[column], strict=True
            ):
                if _finite(value):
                    metrics.append(Metric(column, float(value), now, int(layer)))
    metrics.extend(
        Metric(k, float(v), now, int(s))
        for k, v, s in record.extra_metrics
        if _finite(v)
    )
    param_chunks = list(_chunks(params, MAX_PARAMS_PER_BATCH)) or [[]]
    metric_chunks = list(_chunks(metrics, MAX_METRICS_PER_BATCH)) or [[]]
    for i in range(max(len(param_chunks), len(metric_chunks))):
        client.log_batch(
            run_id,
            params=param_chunks[i] if i < len(param_chunks) else [],
            metrics=metric_chunks[i] if i < len(metric_chunks) else [],
        )
    with tempfile.TemporaryDirectory(prefix="depthlab-") as tmp:
        out = Path(tmp)
        (out / "config.yaml").write_text(record.config_yaml)
        tables = out / TABLES_DIR
        tables.mkdir()
        for name, table in record.tables.items():
            table.to_parquet(tables / f"{name}.parquet", index=False)
        client.log_artifacts(run_id, str(out))


@deferring
def log_files(uri: str, run_id: str, paths: Sequence[Path], artifact_path: str) -> None:
    """Attach files (e.g. the report) to a run."""
    client = _client(uri)
    for path in paths:
        client.log_artifact(run_id, str(path), artifact_path=artifact_path)


@dataclass
class Sweep:
    """A sweep read back from MLflow: its parent run and its jobs' tables."""

    parent_run_id: str
    parent_name: str
    runs: pd.DataFrame
    """One row per child run: run_id, run_name, status, params, summary metrics."""
    tables: dict[str, pd.DataFrame]
    """Each tidy table, concatenated over the FINISHED child runs (with run_id)."""


def latest_sweep_id(uri: str, experiment: str) -> str:
    """The id of the most recent parent (sweep) run of an experiment."""
    client = _client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise TrackingError(f"no experiment {experiment!r} in {uri}")
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.{KIND_TAG} = 'sweep'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise TrackingError(f"experiment {experiment!r} in {uri} has no sweep runs")
    return runs[0].info.run_id


def load_sweep(
    uri: str, parent_run_id: str, *, tables: Collection[str] | None = None
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
    """
    client = _client(uri)
    try:
        parent = client.get_run(parent_run_id)
    except Exception as err:
        raise TrackingError(f"no run {parent_run_id!r} in {uri}: {err}") from None
    exp_id = parent.info.experiment_id
    children = _search_runs(uri, exp_id, f"tags.{PARENT_TAG} = '{parent_run_id}'")
    for run_id in _reused_run_ids(client, parent):
        children.append(client.get_run(run_id))
    rows = []
    frames: dict[str, list[pd.DataFrame]] = {}
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
        for name, table in _read_tables(client, run, tables).items():
            frames.setdefault(name, []).append(table.assign(run_id=run.info.run_id))
    tables = {
        name: pd.concat(parts, ignore_index=True) for name, parts in frames.items()
    }
    return Sweep(
        parent_run_id=parent_run_id,
        parent_name=parent.info.run_name,
        runs=pd.DataFrame(rows),
        tables=tables,
    )


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
        names = {a.path for a in client.list_artifacts(parent.info.run_id)}
        if REUSED_FILE not in names:
            return []
        with tempfile.TemporaryDirectory(prefix="depthlab-") as tmp:
            path = client.download_artifacts(parent.info.run_id, REUSED_FILE, tmp)
            return [line for line in Path(path).read_text().split() if line]
    except Exception:
        return []


def _infinite(value: float) -> float:
    """MLflow stores +-inf metrics as +-float max; give them back as +-inf."""
    if abs(value) >= _FLOAT_MAX:
        return math.copysign(math.inf, value)
    return value


def _read_tables(
    client: Any, run: Any, names: Collection[str] | None
) -> dict[str, pd.DataFrame]:
    def read(folder: Path) -> dict[str, pd.DataFrame]:
        return {
            p.stem: pd.read_parquet(p)
            for p in sorted(folder.glob("*.parquet"))
            if names is None or p.stem in names
        }

    uri = run.info.artifact_uri
    if uri.startswith("file://") or "://" not in uri:
        from urllib.parse import unquote, urlparse

        local = Path(unquote(urlparse(uri).path) if "://" in uri else uri) / TABLES_DIR
        if local.is_dir():
            return read(local)
    with tempfile.TemporaryDirectory(prefix="depthlab-") as tmp:
        path = client.download_artifacts(run.info.run_id, TABLES_DIR, tmp)
        return read(Path(path))
