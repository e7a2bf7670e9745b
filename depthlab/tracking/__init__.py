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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: a sweep's process need not load pandas
    import pandas as pd

from depthlab import __version__, garbage
from depthlab.interrupts import deferred, deferring
from depthlab.tracking import template
from depthlab.tracking.store import (
    END_REASON_TAG,
    HEARTBEAT_S,
    HEARTBEAT_TAG,
    Owner,
    StoreFault,
    check_database_file,
    db_path,
    faults,
    journal_mode,
    store_lock,
    this_process,
    why_dead,
)

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
    "sv_max_median",
    "sv_min_median",
    "cond_median",
    "jac_log10_sv_std_median",
)
"""Per-layer columns logged as metrics with step = layer index: the measured
backprop norm next to its theory, and the Jacobian spectra. Every per-layer
column (``chi``, ``sv_median_median``, the quartiles, ...) is in the job's
``per_layer`` table; each metric row is an MLflow write (~0.1 ms), 6 x L a job."""


HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
"""MLflow's HTTP retry settings for a tracking server, unless already set: one
retry after 1 s, 10 s per request, so that a dead server is reported within
seconds instead of after MLflow's default of 7 retries with exponential backoff
(minutes)."""


class TrackingError(RuntimeError):
    """The tracking store cannot be used; the message is one line."""


class JobTaken(Exception):
    """A job that this process must not compute: it FINISHED, or another live
    process has claimed it."""

    def __init__(self, config_hash: str, run_id: str, *, finished: bool, owner: str):
        super().__init__(
            f"job {config_hash} "
            + ("already FINISHED" if finished else f"claimed by {owner}")
            + f" (run {run_id})"
        )
        self.config_hash = config_hash
        self.run_id = run_id
        self.finished = finished
        self.owner = owner


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
        limit_http_retries()
    elif uri.startswith("sqlite:///"):
        directory = Path(uri.removeprefix("sqlite:///")).parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise TrackingError(f"cannot create {directory} for {uri}: {err}") from None
        if not os.access(directory, os.W_OK):
            raise TrackingError(f"tracking store {uri}: {directory} is not writable")


def limit_http_retries() -> None:
    """Set :data:`HTTP_LIMITS` in the environment (inherited by workers)."""
    for key, value in HTTP_LIMITS.items():
        os.environ.setdefault(key, value)


@cache
def _client(uri: str) -> Any:
    """The MlflowClient of a store, opened once per process.

    The first call checks a SQLite file's header, then creates or migrates the
    store under the store's file lock (:func:`depthlab.tracking.store.store_lock`): two
    processes that open a new store at once otherwise both run MLflow's schema
    migration and one dies in alembic. A new SQLite store is a copy of a migrated
    template (:mod:`depthlab.tracking.template`); the first one MLflow migrates,
    and it becomes the template.
    """
    import logging

    # Alembic and MLflow log every migration at INFO when a store is created.
    for name in ("alembic", "mlflow.store.sqlalchemy_store"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # It logs every SQLAlchemy error with its traceback at ERROR before raising
    # it: a store fault is then said in one line (depthlab.tracking.store.StoreFault).
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    if uri.startswith(("http://", "https://")):
        limit_http_retries()
    # A store that another process has opened already needs no lock: MLflow
    # writes nothing when it opens it. (The sweep's workers open their clients
    # while the tracker and each other do: under the lock they waited.)
    db = db_path(uri)
    lock = contextlib.nullcontext() if db and opened_before(db) else store_lock(uri)
    # What it imports (mlflow: ~1 s, the first time) and opens lives on.
    with lock, faults(uri), garbage.paused():
        check_database_file(uri)
        from mlflow.tracking import MlflowClient

        if uri.startswith("sqlite:"):
            _use_sqlite_wal()
        template.remember_head_revision()
        new = db is not None and template.is_new(db)
        copied = new and template.copy_to(db)  # a new store without migrating
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)  # creates or migrates the store
        if new and not copied:
            template.save(db)
    return client


def opened_before(db: Path) -> bool:
    """Whether MLflow has opened the SQLite store ``db`` before (in WAL mode,
    migrated, with its Default experiment), so that opening it again writes
    nothing: no migration, no experiment 0, no change of journal mode.

    Read without the store's lock, in one read transaction: a store being
    created is a new file (:mod:`depthlab.tracking.template` moves a complete
    copy into place) or one that MLflow is migrating, which has no Default
    experiment until it is done. Only while the store's write-ahead log and
    its index exist (a process has it open: a sweep's tracker, while its
    workers start), so that this read creates no file beside it.
    """
    import sqlite3

    if not all(db.with_name(db.name + ext).is_file() for ext in ("-wal", "-shm")):
        return False
    try:
        if journal_mode(db) != "wal":
            return False
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0)
        try:
            row = con.execute(
                "SELECT count(*) FROM experiments WHERE experiment_id = 0"
            ).fetchone()
        finally:
            con.close()
    except (OSError, sqlite3.Error):
        return False
    return row == (1,)


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
    with store_lock(uri), faults(uri):
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
        except Exception:  # a server's other client created it first
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


def open_store(uri: str, experiment: str) -> int:
    """Create (if needed) the store and the experiment, and end the runs of
    processes that are gone.

    Returns
    -------
    int
        How many RUNNING runs were ended (see :func:`end_dead_runs`).

    Raises
    ------
    StoreFault
    """
    exp_id = _experiment_id(uri, experiment)
    return end_dead_runs(uri, exp_id)


def end_dead_runs(uri: str, experiment_id: str) -> int:
    """End, as KILLED, every RUNNING run of the experiment whose owner process
    (tagged by :func:`depthlab.tracking.store.this_process`) is known to be gone: gone
    from this host, or on another host silent past its heartbeat
    (:func:`depthlab.tracking.store.why_dead`).

    The reason goes into the ``depthlab.end_reason`` tag. Runs without owner
    tags (made before depthlab tagged them, or by other code) are left alone.
    """
    client = _client(uri)
    ended = 0
    with store_lock(uri), faults(uri), deferred():
        runs = client.search_runs(
            [experiment_id],
            filter_string="attributes.status = 'RUNNING'",
            max_results=5000,
        )
        for run in runs:
            if _end_if_dead(client, uri, run):
                ended += 1
    return ended


def _end_if_dead(client: Any, uri: str, run: Any) -> bool:
    """End ``run`` as KILLED if it is RUNNING and its process is gone.

    The run is read again under the store's lock, which a job also holds when
    it ends its own run (:func:`job_run`): a run that its process ended
    FINISHED between the search and now, and whose process then exited, is left
    alone (before, such a run was ended KILLED and its job computed again).
    """
    if why_dead(run.data.tags, time.time()) is None:
        return False
    with store_lock(uri):
        current = client.get_run(run.info.run_id)
        if current.info.status != "RUNNING":
            return False
        reason = why_dead(current.data.tags, time.time())
        if reason is None:
            return False
        client.set_tag(
            run.info.run_id, END_REASON_TAG, f"ended by {this_process()}: {reason}"
        )
        client.set_terminated(run.info.run_id, status="KILLED")
    return True


@contextlib.contextmanager
def heartbeat(uri: str, run_id: str) -> Iterator[None]:
    """Renew a run's ``depthlab.heartbeat`` tag every ``HEARTBEAT_S`` from a
    thread while the block runs (tracking servers only: on a SQLite store the
    owner's pid is looked up instead, and the extra writes would contend)."""
    if store_lock_is_file(uri):
        yield
        return
    import threading

    client = _client(uri)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            with contextlib.suppress(Exception):
                client.set_tag(run_id, HEARTBEAT_TAG, f"{time.time():.0f}")

    thread = threading.Thread(target=beat, name="depthlab-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()


def _owner_tags() -> dict[str, str]:
    return this_process().tags()


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
        with deferred(), faults(uri):
            exp_id = _experiment_id(uri, experiment)
            run = client.create_run(
                exp_id,
                run_name=run_name,
                tags={
                    KIND_TAG: "sweep",
                    VERSION_TAG: __version__,
                    COMMIT_TAG: git_commit(),
                    **_owner_tags(),
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
    with faults(uri):
        if metrics:
            client.log_batch(
                run_id,
                metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
            )
        client.set_terminated(run_id, status=status)


def end_run_quietly(uri: str, run_id: str, status: str, reason: str) -> bool:
    """Try once to end a run after a fault; False if the store still fails
    (then the next depthlab process on the store ends it)."""
    client = _client(uri)
    try:
        with deferred():
            client.set_tag(run_id, END_REASON_TAG, reason[:4000])
            client.set_terminated(run_id, status=status)
    except Exception:
        return False
    return True


def finished_runs(uri: str, experiment: str) -> dict[str, str]:
    """Config hash -> run id of every FINISHED job run in an experiment."""
    client = _client(uri)
    with faults(uri):
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            return {}
        runs: dict[str, str] = {}
        token = None
        while True:
            page = client.search_runs(
                [exp.experiment_id],
                filter_string=(
                    f"attributes.status = 'FINISHED' and tags.{KIND_TAG} = 'job'"
                ),
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


def sweep_folders(uri: str, experiment: str) -> list[Path]:
    """The folders (``sweep_dir`` param) of the experiment's sweeps, newest first."""
    client = _client(uri)
    with faults(uri):
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            return []
        runs = client.search_runs(
            [exp.experiment_id],
            filter_string=f"tags.{KIND_TAG} = 'sweep'",
            order_by=["attributes.start_time DESC"],
            max_results=1000,
        )
    folders: list[Path] = []
    for run in runs:
        folder = run.data.params.get("sweep_dir")
        if folder and Path(folder) not in folders:
            folders.append(Path(folder))
    return folders


@deferring
def record_reused_runs(uri: str, parent_run_id: str, run_ids: Sequence[str]) -> None:
    """Remember, in the parent run, the FINISHED runs a resumed sweep reuses."""
    with faults(uri):
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


@dataclass(frozen=True)
class JobState:
    """Where a job stands in the store, by its config hash."""

    state: str
    """``finished``, ``claimed`` (RUNNING in a live process) or ``free``."""
    run_id: str = ""
    owner: str = ""


def job_state(
    uri: str, experiment_id: str, config_hash: str, *, force: bool = False
) -> JobState:
    """The state of a job; RUNNING runs of dead processes on this host are
    ended on the way (KILLED). With ``force``, FINISHED runs do not count."""
    client = _client(uri)
    with faults(uri), deferred():
        runs = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{HASH_TAG}` = '{config_hash}'",
            max_results=1000,
        )
    return _state_of(client, uri, runs, force=force)


def _state_of(client: Any, uri: str, runs: Sequence[Any], *, force: bool) -> JobState:
    claimed: list[Any] = []
    for run in runs:
        if run.data.tags.get(KIND_TAG) != "job":
            continue
        if run.info.status == "FINISHED" and not force:
            return JobState("finished", run.info.run_id)
        if run.info.status == "RUNNING":
            with faults(uri), deferred():
                if _end_if_dead(client, uri, run):
                    continue
            claimed.append(run)
    if claimed:
        first = min(claimed, key=lambda r: (r.info.start_time, r.info.run_id))
        owner = Owner.from_tags(first.data.tags)
        return JobState("claimed", first.info.run_id, str(owner or "another process"))
    return JobState("free")


def claim_job(
    uri: str,
    experiment: str,
    parent_run_id: str | None,
    run_name: str,
    config_hash: str,
    *,
    force: bool = False,
) -> str:
    """Create a job's RUNNING child run unless the job is FINISHED or claimed.

    On a SQLite store the check and the creation happen under the store's file
    lock, so that of two processes that claim the same config hash exactly one
    gets it. A tracking server has no such lock: the run is created first and
    checked after; of several RUNNING runs with one hash the one that started
    first (then the smallest run id) keeps the claim and the others end KILLED
    at once, before anything is computed.

    Returns
    -------
    str
        The new run's id.

    Raises
    ------
    JobTaken
        The job FINISHED already, or a live process is computing it.
    StoreFault
    """
    client = _client(uri)
    exp_id = _job_experiment_id(uri, experiment)
    tags = {
        HASH_TAG: config_hash,
        VERSION_TAG: __version__,
        COMMIT_TAG: git_commit(),
        KIND_TAG: "job",
        **_owner_tags(),
    }
    if parent_run_id:
        tags[PARENT_TAG] = parent_run_id

    def taken(state: JobState) -> JobTaken:
        return JobTaken(
            config_hash,
            state.run_id,
            finished=state.state == "finished",
            owner=state.owner,
        )

    with store_lock(uri), deferred():
        state = job_state(uri, exp_id, config_hash, force=force)
        if state.state != "free":
            raise taken(state)
        with faults(uri):
            run = client.create_run(exp_id, run_name=run_name, tags=tags)
            run_id = run.info.run_id
            _artifact_uris[run_id] = run.info.artifact_uri
        if store_lock_is_file(uri):
            return run_id
        state = job_state(uri, exp_id, config_hash, force=force)
        if state.state == "claimed" and state.run_id == run_id:
            return run_id
        end_run_quietly(uri, run_id, "KILLED", f"lost the claim to run {state.run_id}")
        raise taken(state)


def store_lock_is_file(uri: str) -> bool:
    """True where :func:`depthlab.tracking.store.store_lock` is a file lock (SQLite)."""
    return uri.startswith("sqlite:///")


@contextlib.contextmanager
def job_run(
    uri: str,
    experiment: str,
    parent_run_id: str | None,
    run_name: str,
    config_hash: str,
    *,
    force: bool = False,
) -> Iterator[str]:
    """A claimed child run (:func:`claim_job`) that ends FINISHED, or FAILED
    with the error if the body raises.

    Yields
    ------
    str
        The run id.

    Raises
    ------
    JobTaken
        Before the body runs, if the job is not this process's to compute.
    """
    client = _client(uri)
    run_id: str | None = None
    try:
        # A signal held back inside the claim is raised at the end of this
        # block, once run_id is known, so that the new run is marked too.
        with deferred():
            run_id = claim_job(
                uri, experiment, parent_run_id, run_name, config_hash, force=force
            )
    except KeyboardInterrupt as err:
        if run_id is not None:
            with deferred(), contextlib.suppress(Exception):
                client.set_tag(run_id, ERROR_TAG, f"KeyboardInterrupt: {err}")
                client.set_terminated(run_id, status="FAILED")
        raise
    try:
        with heartbeat(uri, run_id):
            yield run_id
    except StoreFault as fault:
        _artifact_uris.pop(run_id, None)
        # The store failed under the job: one try to mark it; if that fails
        # too, the next depthlab process on the store ends it.
        end_run_quietly(uri, run_id, "FAILED", f"StoreFault: {fault}")
        raise
    except BaseException as err:
        _artifact_uris.pop(run_id, None)
        message = f"{type(err).__name__}: {err}"[:4000]
        with deferred(), faults(uri):
            with contextlib.suppress(Exception):
                client.set_tag(run_id, ERROR_TAG, message)
            client.set_terminated(run_id, status="FAILED")
        raise
    _artifact_uris.pop(run_id, None)  # a body that logged nothing
    # Under the store's lock: another process that finds this run RUNNING and
    # this process gone reads it again under the lock (_end_if_dead).
    with deferred(), faults(uri), store_lock(uri):
        client.set_terminated(run_id, status="FINISHED")


@deferring
def log_job(uri: str, run_id: str, record: JobRecord) -> None:
    """Write a job's params, metrics and tables into its run."""
    with faults(uri):
        _log_job(uri, run_id, record)


def _log_job(uri: str, run_id: str, record: JobRecord) -> None:
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
    local = local_artifact_dir(_artifact_uris.pop(run_id, ""))
    if local is not None:  # the store's own folder: written in place, no copy
        _write_artifacts(local, record)
        return
    with tempfile.TemporaryDirectory(prefix="depthlab-") as tmp:
        _write_artifacts(Path(tmp), record)
        client.log_artifacts(run_id, tmp)


def _write_artifacts(out: Path, record: JobRecord) -> None:
    """A job's ``config.yaml`` and ``tables/<name>.parquet`` under ``out``."""
    tables = out / TABLES_DIR
    tables.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(record.config_yaml)
    for name, table in record.tables.items():
        table.to_parquet(tables / f"{name}.parquet", index=False)


_artifact_uris: dict[str, str] = {}
"""The artifact URI of each job run this process created and has not logged."""


def local_artifact_dir(artifact_uri: str) -> Path | None:
    """The folder of a run's artifacts when the artifact store is a local
    folder (``file://`` or a plain path: MLflow's local artifact repository
    keeps files there as they are), else None (a server, S3, ...)."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(artifact_uri)
    if not artifact_uri or parsed.scheme not in ("", "file"):
        return None  # e.g. mlflow-artifacts:/..., s3://..., http://...
    return Path(unquote(parsed.path) if parsed.scheme else artifact_uri)


@deferring
def log_files(uri: str, run_id: str, paths: Sequence[Path], artifact_path: str) -> None:
    """Attach files (e.g. the report) to a run."""
    client = _client(uri)
    with faults(uri):
        for path in paths:
            client.log_artifact(run_id, str(path), artifact_path=artifact_path)


# The read side (a sweep back from MLflow, for the report) lives in
# depthlab.tracking.read; its names are part of this module's interface.
from depthlab.tracking import read as _read  # noqa: E402

Sweep = _read.Sweep
dashboard_url = _read.dashboard_url
latest_sweep_id = _read.latest_sweep_id
load_sweep = _read.load_sweep
sweep_runs = _read.sweep_runs
