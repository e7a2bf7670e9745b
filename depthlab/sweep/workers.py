"""Long-lived worker processes that run a sweep's jobs side by side.

A sweep with Hydra's basic launcher (the default) runs its jobs on every CPU
core: ``n_jobs`` worker processes (the config key; null means one per core, and
never more than there are jobs) each run one job at a time. The workers are
forked from one ``forkserver`` process that imports depthlab, Hydra, numpy and
MLflow's client once (:data:`PRELOAD`), so a worker starts in milliseconds and
imports nothing; each receives the job configs the sweeper already composed and
runs them through Hydra's own ``run_job`` (the job's output directory, the
``HydraConfig`` singleton, its return value and status), exactly as the
in-process path does. Each worker gets a contiguous run of the sweep's chains
of jobs (those that differ only in depth, deepening job by job), so that it
reuses the layers its previous job drew (:mod:`depthlab.sweep.schedule`).

The CPU budget is shared, not multiplied: with ``w`` workers on ``c`` cores a
job may use ``max(1, c // w)`` threads, and workers that cover every core are
pinned, each to its own (:func:`core_sets`). Each worker pins BLAS to one thread
(threadpoolctl: oversubscribed OpenBLAS threads were 11x slower on these
machines) and exports the job's thread budget as the environment variable
:data:`THREADS_ENV`, which a job that threads over chunks of networks reads
(:func:`job_threads`).

Interrupts. SIGINT (Ctrl-C reaches the whole process group) and SIGTERM (sent by
the sweep's process to its workers when it is stopped) end a worker's job the
way they end an in-process job: :mod:`depthlab.interrupts` holds the signal out
of tracking writes, the job's run is marked FAILED, and the worker starts no
further job. A second signal that reaches a worker while the first is pending
(Ctrl-C, then the parent's SIGTERM) is not a second Ctrl-C: it is ignored. A
signal that reaches an idle worker only stops it from taking a new job.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import pickle
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from depthlab import interrupts
from depthlab.jobs import THREADS_ENV
from depthlab.sweep.schedule import Schedule, chain_key, chain_order

PRELOAD = (
    "depthlab.sweep.app",
    "depthlab.jobs.probe",
    "depthlab.tracking",
    "mlflow.tracking",
    "mlflow.entities",
    "mlflow.store.tracking.sqlalchemy_store",
    "sqlalchemy.dialects.sqlite",  # imported when a process opens its store
    "pyarrow.parquet",  # a job's tables (pandas imports it at the first write)
    "depthlab.jobs.engine",  # a probe job's engine (imported where used)
    "scipy.optimize",  # the theory's root finding (imported where used)
)
"""Modules the forkserver imports once, before it forks the workers (through
:mod:`depthlab.sweep.preload`, with the garbage collector paused)."""

STOP_TIMEOUT_S = 60.0
"""How long a stopped sweep waits for its workers to mark their runs FAILED."""

EXIT_TIMEOUT_S = 5.0
"""How long a stopped sweep then waits for its workers to exit before it kills
them."""

NOT_STARTED = "not started: the store failed"
"""What a worker that met a store fault answers for each further job (the sweep
gets the fault itself as that worker's earlier result)."""

FAULT_WAIT_S = 15.0
"""After a store fault in one worker, how long the sweep lets the jobs in flight
on the others end on their own (logged, or kept in the sweep folder when they
meet the fault too) before it stops them."""


def _affinity() -> list[int]:
    """The CPU cores this process may run on (its affinity mask)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def cpu_count() -> int:
    """The CPU cores this process may run on (its affinity mask)."""
    return len(_affinity())


def plan(n_jobs: int | None, jobs: int, cpus: int | None = None) -> tuple[int, int]:
    """How many workers a sweep starts and how many threads each job may use.

    Parameters
    ----------
    n_jobs : int or None
        The ``n_jobs`` config key: at most this many workers; None means one
        per CPU core.
    jobs : int
        The jobs to run.
    cpus : int, optional
        The CPU cores (default: :func:`cpu_count`).

    Returns
    -------
    tuple of int
        ``(workers, threads)``: ``workers`` is 1 when the jobs run in the
        sweep's own process; ``threads = max(1, cpus // workers)``.

    Examples
    --------
    >>> plan(None, 49, cpus=2)
    (2, 1)
    >>> plan(1, 49, cpus=16)
    (1, 16)
    >>> plan(None, 3, cpus=16)
    (3, 5)
    """
    cpus = cpu_count() if cpus is None else cpus
    workers = max(1, min(n_jobs or cpus, max(jobs, 1)))
    return workers, max(1, cpus // workers)


def core_sets(
    workers: int, threads: int, cpus: Sequence[int]
) -> list[list[int]] | None:
    """The cores each worker is pinned to, or None to leave them to the OS.

    Workers are pinned only when they cover every core this process may use
    (``workers * threads == len(cpus)``, as :func:`plan` gives for
    ``n_jobs=null``): worker ``i`` gets the ``threads`` cores after those of
    worker ``i - 1``. Pinned, a worker's caches stay on its cores instead of
    following it wherever the OS moves it
    (``python experiments/benchmark/sweep_processes.py`` shows the workers'
    CPU). A sweep
    that leaves cores free (``n_jobs`` below the core count) is not pinned, so
    that two such sweeps on one machine do not share the same cores.

    Examples
    --------
    >>> core_sets(2, 1, [0, 1])
    [[0], [1]]
    >>> core_sets(2, 4, [0, 1, 2, 3, 4, 5, 6, 7])
    [[0, 1, 2, 3], [4, 5, 6, 7]]
    >>> core_sets(2, 1, [0, 1, 2, 3]) is None
    True
    """
    cpus = sorted(cpus)
    if workers < 2 or workers * threads != len(cpus):
        return None
    return [cpus[i * threads : (i + 1) * threads] for i in range(workers)]


def job_threads() -> int:
    """The threads a job may use: its worker's budget, or every core when the
    job runs alone (in the sweep's process, or under another Hydra launcher)."""
    value = os.environ.get(THREADS_ENV)
    return int(value) if value and value.isdigit() and int(value) > 0 else cpu_count()


# ---------------------------------------------------------------------------
# Inside a worker


@dataclass
class _Worker:
    hydra_context: Any = None
    in_job: bool = False
    stop: int | None = None
    faulted: bool = False


_worker = _Worker()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    from depthlab import interrupts

    first = _worker.stop is None
    _worker.stop = _worker.stop or signum
    if first and _worker.in_job:
        interrupts._on_signal(signum, frame)  # raise, or defer out of a write


def _initialize(
    state: bytes,
    threads: int,
    sweep_pid: int,
    sweep_start: str | None,
) -> None:
    """Set a worker up: Hydra's singletons, BLAS threads, signal handlers."""
    import gc

    from hydra.core.plugins import Plugins
    from hydra.core.singleton import Singleton
    from hydra.core.utils import setup_globals
    from threadpoolctl import threadpool_limits

    import depthlab.sweep.app as app

    gc.freeze()  # what the forkserver imported (depthlab.garbage)
    hydra_context, instances = pickle.loads(state)
    # Singleton.set_state without OmegaConf's resolvers (local functions, which
    # pickle cannot send): setup_globals registers Hydra's own again.
    Singleton._instances = instances
    Plugins.instance()
    setup_globals()
    _worker.hydra_context = hydra_context
    _die_with_sweep(sweep_pid, sweep_start)
    os.environ[THREADS_ENV] = str(threads)
    threadpool_limits(limits=1)
    app.PRINT_JOB_LINES = False  # the sweep's process prints them
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _on_signal)


WATCH_S = 0.5
"""How often a worker checks that the sweep's process still runs (seconds)."""


def _die_with_sweep(sweep_pid: int, sweep_start: str | None) -> None:
    """SIGKILL this worker as soon as the sweep's process is gone (it was
    killed with SIGKILL: nothing else ends a worker then, since the forkserver
    waits for its workers and a worker waits for its next job forever). The
    job's run stays RUNNING with this worker's pid in its owner tags, and the
    next depthlab process on the store ends it (KILLED), as it ends the sweep's.
    """
    import threading

    from depthlab.tracking.store import process_start

    def watch() -> None:
        while True:
            time.sleep(WATCH_S)
            if process_start(sweep_pid) != sweep_start:
                os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="depthlab-sweep-watch", daemon=True).start()


def run_sweep_job(
    hydra_context: Any,
    task_function: Any,
    cfg: Any,
    *,
    configure_logging: bool = True,
) -> Any:
    """One job of a sweep through Hydra's ``run_job``, in the sweep's folder
    (``hydra.sweep.dir``/``hydra.sweep.subdir``); returns its ``JobReturn``."""
    from hydra.core.utils import run_job

    return run_job(
        hydra_context=hydra_context,
        task_function=task_function,
        config=cfg,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
        configure_logging=configure_logging,
    )


def _run(cfg: Any) -> Any:
    """Run one job through Hydra's ``run_job``; returns its ``JobReturn``
    (without its configs, ``cfg`` and ``hydra_cfg``, which stay here).

    A :class:`~depthlab.tracking.store.StoreFault` (a BaseException: Hydra's wrapper
    does not catch it) goes back to the sweep's process as the job's exception;
    the worker then starts no further job.
    """
    from hydra.core.utils import JobStatus

    import depthlab.sweep.app as app
    from depthlab.tracking.store import StoreFault

    if _worker.stop is not None:
        raise KeyboardInterrupt(f"signal {signal.Signals(_worker.stop).name}")
    if _worker.faulted:
        raise KeyboardInterrupt(NOT_STARTED)
    _worker.in_job = True
    try:
        ret = run_sweep_job(
            _worker.hydra_context, app.run_job, cfg, configure_logging=False
        )
    except StoreFault:
        _worker.faulted = True
        raise
    finally:
        _worker.in_job = False
    # Back to the sweep's process go the status, the return value, the
    # overrides and where the job ran: the job's configs (Hydra's and the task's,
    # deep copies) are read by no one there, and pickling them both ways took
    # ~1.5 ms a job.
    ret.cfg = ret.hydra_cfg = None
    _spill_tables(ret)
    if ret.status == JobStatus.FAILED:
        try:
            pickle.dumps(ret._return_value)
        except Exception:
            err = ret._return_value
            ret._return_value = RuntimeError(f"{type(err).__name__}: {err}")
    return ret


SPILL_DIR = ".depthlab-tables"
"""The folder in a sweep's folder where workers leave the tables a job returns
(removed when the sweep's report has read them)."""


def _spill_tables(ret: Any) -> None:
    """Put the tables a job returns (for the report) into a file in
    :data:`SPILL_DIR` and return its path instead: a result of ~1 MB waits in
    the pipe until the sweep's process reads it, and that process's thread
    that reads it waits for the GIL whenever the report's imports hold it
    (0.15 s at once, seen in both workers)."""
    value = getattr(ret, "_return_value", None)
    if not isinstance(value, dict) or "tables" not in value or not ret.working_dir:
        return
    folder = Path(ret.working_dir) / SPILL_DIR
    folder.mkdir(exist_ok=True)
    path = folder / f"{value['run_id']}.pickle"
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(value.pop("tables"), protocol=pickle.HIGHEST_PROTOCOL))
    tmp.replace(path)
    value["tables_file"] = str(path)


def returned_tables(path: str) -> dict[str, Any]:
    """The tables a worker put into the file ``path`` (read, then deleted)."""
    file = Path(path)
    tables = pickle.loads(file.read_bytes())
    file.unlink(missing_ok=True)
    return tables


# ---------------------------------------------------------------------------
# In the sweep's process


def _context() -> Any:
    ctx = multiprocessing.get_context("forkserver")
    # depthlab.sweep.preload imports PRELOAD as it should be; then any module
    # added to PRELOAD here (a benchmark's probe) is imported too.
    ctx.set_forkserver_preload(["depthlab.sweep.preload", *PRELOAD])
    return ctx


def warm_up() -> None:
    """Start the forkserver now, so that its imports (about as long as the
    sweep's own, ~3 s) overlap with the sweep's composing and store checks
    instead of delaying the first job. Safe to call more than once."""
    from multiprocessing import forkserver

    _context()
    forkserver.ensure_running()


def stop_forkserver() -> None:
    """End the workers' forkserver now, if this process started one.

    Left alone, it ends when this process does, by raising ``SystemExit``: a
    full teardown of every module it preloaded (about 0.6 s) while it still
    holds this process's standard output and error, so that whoever reads them
    (a pipe, a CI log, ``subprocess.run(capture_output=True)``) waits for it
    after the sweep has ended. Call once no worker is left (a pool's block has
    closed): SIGTERM, whose default action the forkserver keeps, ends it without
    a teardown and loses nothing.
    """
    from multiprocessing import forkserver

    server = forkserver._forkserver  # multiprocessing's one ForkServer
    pid = getattr(server, "_forkserver_pid", None)
    if pid is None:
        return
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
    server._forkserver_pid = None


AHEAD = 2
"""Jobs handed to each worker at a time: the one it runs and the next, so that
it never waits for the sweep's process between two jobs. Once no more than
``AHEAD`` jobs a worker are left to hand out, each worker gets one at a time,
so that the last ones go to whichever worker is free first (a job handed to a
worker stays there)."""


class Pool:
    """``workers`` processes that run composed job configs (see the module).

    Each worker is the one process of its own executor, so that the sweep's
    process decides which worker runs which job (:mod:`depthlab.sweep.schedule`:
    contiguous runs of the sweep's order, for the layers a worker keeps
    between jobs). Use as a context manager; :meth:`run` yields
    ``(position, JobReturn)`` as jobs finish. Leaving the block with an
    exception (an interrupt) stops the workers: each is sent SIGTERM, jobs not
    started are cancelled, and the block waits up to :data:`STOP_TIMEOUT_S` for
    the jobs in flight to mark their runs FAILED before it kills what is left.
    """

    def __init__(self, workers: int, threads: int, hydra_context: Any) -> None:
        from hydra.core.singleton import Singleton

        from depthlab.tracking.store import process_start

        self.workers = workers
        self.threads = threads
        ctx = _context()
        state = pickle.dumps((hydra_context, Singleton.get_state()["instances"]))
        self.cores = core_sets(workers, threads, _affinity())
        self._pinned: set[int] = set()
        initargs = (state, threads, os.getpid(), process_start(os.getpid()))
        self._executors = [
            cf.ProcessPoolExecutor(
                max_workers=1,
                mp_context=ctx,
                initializer=_initialize,
                initargs=initargs,
            )
            for _ in range(workers)
        ]
        self._futures: dict[cf.Future, int] = {}
        self._seen: set[cf.Future] = set()
        self._schedule = Schedule((), workers)

    def __enter__(self) -> Pool:
        return self

    def processes(self) -> list[Any]:
        """The worker processes started so far, worker by worker."""
        return [
            p
            for executor in self._executors
            for p in (executor._processes or {}).values()
        ]

    def start(self) -> None:
        """Start every worker now (fork, imports inherited, :func:`_initialize`)
        instead of at the first job: one no-op task per worker."""
        for executor in self._executors:
            executor.submit(_started)
        self._pin()

    def submit(self, worker: int, fn: Callable[..., Any], *args: Any) -> cf.Future:
        """Run ``fn(*args)`` on worker ``worker``."""
        future = self._executors[worker].submit(fn, *args)
        self._pin()
        return future

    def _pin(self) -> None:
        """Pin each started worker not pinned yet to its cores in
        :attr:`cores` (nothing if they are None)."""
        if self.cores is None or not hasattr(os, "sched_setaffinity"):
            return
        for worker, executor in enumerate(self._executors):
            for pid in list(executor._processes or {}):
                if pid in self._pinned:
                    continue
                self._pinned.add(pid)
                with contextlib.suppress(OSError):  # it ended, or a core went away
                    os.sched_setaffinity(pid, self.cores[worker % len(self.cores)])

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        if kind is None:
            self.shutdown()
        else:
            self.stop()

    def shutdown(self) -> None:
        """End the workers (jobs not started are cancelled)."""
        for executor in self._executors:
            executor.shutdown(wait=True, cancel_futures=True)

    def run(
        self, configs: Sequence[Any], order: Sequence[int] | None = None
    ) -> Iterator[tuple[int, Any]]:
        """Run every config, contiguous runs of ``order`` (default: the
        configs' order) on each worker; yield ``(position in configs, result)``
        as each job ends. A worker that stopped on a signal yields its
        :class:`KeyboardInterrupt` as the result."""
        order = range(len(configs)) if order is None else order
        self._schedule = schedule = Schedule(order, self.workers)
        futures = self._futures
        worker_of: dict[cf.Future, int] = {}
        pending: set[cf.Future] = set()
        in_flight = [0] * self.workers

        def hand_out(worker: int) -> None:
            ahead = AHEAD if schedule.left() > self.workers * AHEAD else 1
            while in_flight[worker] < ahead:
                position = schedule.next_for(worker)
                if position is None:
                    return
                future = self._executors[worker].submit(_run, configs[position])
                futures[future] = position
                worker_of[future] = worker
                pending.add(future)
                in_flight[worker] += 1

        with interrupts.deferred():
            for worker in range(self.workers):
                hand_out(worker)
        self._pin()  # the workers started by these submissions, if not before
        while pending:
            with interrupts.deferred():
                done, _ = cf.wait(
                    pending, timeout=POLL_S, return_when=cf.FIRST_COMPLETED
                )
                for future in done:  # the worker's next job, before anything else
                    pending.discard(future)
                    self._seen.add(future)
                    in_flight[worker_of[future]] -= 1
                    hand_out(worker_of[future])
            for future in sorted(done, key=futures.__getitem__):
                yield futures[future], _outcome(future)

    def drain(self, timeout: float) -> Iterator[tuple[int, Any]]:
        """After :meth:`run` stopped early: cancel the jobs not started and yield
        ``(position, result)`` of those that end within ``timeout`` seconds."""
        futures = self._futures
        self._schedule.clear()
        left = [f for f in futures if f not in self._seen and not f.cancel()]
        for future in _as_completed(left, timeout=timeout):
            self._seen.add(future)
            yield futures[future], _outcome(future)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop the workers: SIGTERM, wait for the jobs in flight, then kill."""
        futures = self._futures
        self._schedule.clear()
        for future in futures:
            future.cancel()
        processes = self.processes()
        _signal_all(processes, signal.SIGTERM)
        running = [f for f in futures if not f.done()]
        try:
            cf.wait(running, timeout=timeout)
        except KeyboardInterrupt:  # pressed again: do not wait
            pass
        # Idle workers exit on the pool's shutdown; kill any that do not.
        for executor in self._executors:
            executor.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + EXIT_TIMEOUT_S
        for p in processes:
            p.join(max(0.0, deadline - time.monotonic()))
        _signal_all([p for p in processes if p.is_alive()], signal.SIGKILL)


POLL_S = 0.2
"""How long the sweep's process waits on its jobs between two chances for a
pending signal to be raised (seconds)."""


def _as_completed(
    futures: Iterable[cf.Future], timeout: float | None = None
) -> Iterator[cf.Future]:
    """The futures as they complete, like ``concurrent.futures.as_completed``
    (stopping quietly at ``timeout``), with SIGINT/SIGTERM raised only between
    two waits: an interrupt raised inside the wait could land while this thread
    holds a future's lock, and the executor's thread, which sets the results
    under that lock, would then hang or fail (``release unlocked lock``)."""
    left = set(futures)
    deadline = None if timeout is None else time.monotonic() + timeout
    while left:
        wait = POLL_S
        if deadline is not None:
            wait = min(wait, deadline - time.monotonic())
            if wait <= 0:
                return
        with interrupts.deferred():
            done, left = cf.wait(left, timeout=wait, return_when=cf.FIRST_COMPLETED)
        yield from done


def _outcome(future: cf.Future) -> Any:
    """A finished job's ``JobReturn``, or the interrupt or store fault that
    ended it (returned, not raised)."""
    from depthlab.tracking.store import StoreFault

    if future.cancelled():
        return KeyboardInterrupt("cancelled")
    try:
        return future.result()
    except (KeyboardInterrupt, StoreFault) as err:
        return err


def _signal_all(processes: Sequence[Any], signum: int) -> None:
    for p in processes:
        if p.pid is None:
            continue
        try:
            os.kill(p.pid, signum)
        except (ProcessLookupError, OSError):
            pass


def _started() -> None:
    """The no-op task of :meth:`Pool.start`."""


_prestarted: list[Pool] = []
"""The pool :func:`prestart` started, until :func:`run_jobs` takes it."""

_starting: list[Any] = []
"""The thread that starts its workers (it waits for the forkserver's imports)."""


def prestart(workers: int, threads: int, hydra_context: Any) -> None:
    """Start a :class:`Pool` now, so that its workers fork and set up while the
    sweep's process opens the store; :func:`run_jobs` takes it if it needs
    the same ``workers`` and ``threads`` (else, and at :func:`discard_prestarted`,
    it is shut down).

    A thread starts its workers: starting one waits for the forkserver to
    have imported :data:`PRELOAD`, which this process should not wait for.
    """
    import threading

    discard_prestarted()
    pool = Pool(workers, threads, hydra_context)  # Hydra's singletons as of now
    thread = threading.Thread(
        target=pool.start, name="depthlab-workers-start", daemon=True
    )
    thread.start()
    _starting.append(thread)
    _prestarted.append(pool)


def _wait_started() -> None:
    while _starting:
        _starting.pop().join()


def discard_prestarted() -> None:
    """Shut down the pool of :func:`prestart` if no sweep took it."""
    _wait_started()
    while _prestarted:
        _prestarted.pop().shutdown()


def _take_prestarted(workers: int, threads: int) -> Pool | None:
    _wait_started()
    if _prestarted and (_prestarted[0].workers, _prestarted[0].threads) == (
        workers,
        threads,
    ):
        return _prestarted.pop()
    discard_prestarted()
    return None


def run_jobs(
    configs: Sequence[Any],
    *,
    workers: int,
    threads: int,
    hydra_context: Any,
    on_result: Callable[[int, Any], None],
) -> list[Any]:
    """Run ``configs`` on a :class:`Pool`, each worker a contiguous run of
    their chains (:mod:`depthlab.sweep.schedule`); ``on_result(position,
    result)`` is called as each job ends (in the order they end).

    Returns
    -------
    list
        Hydra's ``JobReturn`` of each config, in the order of ``configs``.

    Raises
    ------
    KeyboardInterrupt
        When the sweep's process or a worker was stopped by a signal; the
        workers are stopped first and the jobs that ended are reported.
    depthlab.tracking.store.StoreFault
        When a job met a store fault: no further job starts, the jobs in
        flight get :data:`FAULT_WAIT_S` to end (those that end are reported;
        those that meet the fault too add the folders where they kept their
        numbers to the first fault), then the workers are stopped.
    """
    from depthlab.tracking.store import StoreFault

    results: list[Any] = [None] * len(configs)
    interrupted: KeyboardInterrupt | None = None
    fault: StoreFault | None = None
    pool = _take_prestarted(workers, threads) or Pool(workers, threads, hydra_context)
    with pool:
        order = chain_order([chain_key(cfg) for cfg in configs])
        for position, result in pool.run(configs, order):
            if isinstance(result, KeyboardInterrupt):
                if str(result) == NOT_STARTED:
                    continue  # its worker's fault comes (or came) too
                interrupted = result
                break
            if isinstance(result, StoreFault):
                fault = result
                break
            results[position] = result
            on_result(position, result)
        if interrupted is not None:
            _stop_like(interrupted)
        if fault is not None:
            for position, result in pool.drain(FAULT_WAIT_S):
                if isinstance(result, StoreFault):
                    fault.saved.extend(result.saved)
                    fault.unsaved.extend(result.unsaved)
                elif not isinstance(result, KeyboardInterrupt):
                    results[position] = result
                    on_result(position, result)
            raise fault
    return results


def _stop_like(err: KeyboardInterrupt) -> None:
    """Stop the sweep's process as the worker was stopped: by the same signal
    (through depthlab's handler, which records it), else by ``err`` itself."""
    from depthlab import interrupts

    name = str(err).removeprefix("signal ")
    signum = getattr(signal.Signals, name, None) if name.startswith("SIG") else None
    if signum is not None and interrupts.installed():
        os.kill(os.getpid(), signum)  # the handler raises KeyboardInterrupt
    raise err
