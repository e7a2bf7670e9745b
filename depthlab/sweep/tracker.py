"""The sweep's own store calls and its report, in a process of their own.

A sweep on workers (:mod:`depthlab.sweep.workers`) talks to the MLflow store
itself too: it opens the store, starts and ends the sweep's parent run, reads
which jobs FINISHED before, and builds the report. Done in the sweep's process,
that costs an import of mlflow (~1.1 s), which sits between validation and the
first job, and the report's stack (matplotlib, seaborn: ~0.9 s), which then
steals a core from the workers. The *tracker* is one more process forked from
the workers' forkserver, which has mlflow and depthlab imported already
(:data:`depthlab.sweep.workers.PRELOAD`): the store calls run there
(:func:`store`), and so does the report, whose figures it draws in processes of
its own (:mod:`depthlab.report.parallel`). The sweep's process never imports
mlflow. A sweep in one process (``n_jobs=1``, one core) or under another Hydra
launcher makes the same calls in its own process.

A call waits for its answer, so a sweep does everything in the order it did
before; what a call raises (:class:`~depthlab.tracking.TrackingError`,
:class:`~depthlab.tracking.store.StoreFault`) is raised in the sweep's process.
The tracker ignores SIGINT and SIGTERM: a Ctrl-C stops the sweep's process,
which still ends its parent run through the tracker. SIGINT/SIGTERM are held
back during a call (:func:`depthlab.interrupts.deferred`), as during a store
write in one process, except during the report, where the tracker is stopped
at once. The tracker ends when the sweep's process closes its pipe, or dies.
If the tracker itself dies, the calls run in the sweep's process from then on.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from depthlab import interrupts


def _serve(conn: Any) -> None:
    """The tracker's loop: run each ``(function, args, kwargs, reply)``
    received and, if ``reply``, send back ``(True, result)`` or
    ``(False, exception)``; end on ``None`` or when the sweep's process is
    gone."""
    import gc

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    # What the forkserver imported is never garbage: no collection walks it
    # (depthlab.sweep.workers.long_lived_frozen).
    gc.freeze()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        if message is None:
            break
        function, args, kwargs, reply = message
        try:
            answer: tuple[bool, Any] = (True, function(*args, **kwargs))
        except BaseException as err:
            answer = (False, _sendable(err))
        if not reply:
            continue
        try:
            conn.send(answer)
        except (OSError, pickle.PicklingError, TypeError, AttributeError) as err:
            with contextlib.suppress(OSError):
                conn.send((False, RuntimeError(f"{type(err).__name__}: {err}")))
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    # No teardown of the modules the forkserver loaded (~0.6 s), and no last
    # collection (0.2 s at the end of the benchmark's 196-job sweep, which the
    # sweep's process waits for): the report's process pool, garbage in a
    # reference cycle, holds only semaphores of the fork context, unlinked
    # when they were made (nothing for multiprocessing's resource tracker).
    os._exit(0)


def _sendable(err: BaseException) -> BaseException:
    """``err``, or a RuntimeError with its text if it does not pickle."""
    try:
        pickle.loads(pickle.dumps(err))
    except Exception:
        return RuntimeError(f"{type(err).__name__}: {err}")
    return err


PROCESS_NAME = "depthlab-tracker"
"""The tracker's name as multiprocessing knows it."""


def _in_tracker() -> bool:
    """Whether this is the tracker process (which never unfreezes what it
    freezes, and exits without a teardown)."""
    import multiprocessing

    return multiprocessing.current_process().name == PROCESS_NAME


class Tracker:
    """The tracker process (see the module); :meth:`call` runs a function there.

    It is forked from the workers' forkserver as soon as it is made, by a
    thread (the fork waits for the forkserver's imports, which the sweep's
    process should not wait for).
    """

    def __init__(self) -> None:
        from depthlab.sweep import workers

        ctx = workers._context()
        self._conn, child = ctx.Pipe()
        # Not a daemon: a daemon may not start processes, and the report's
        # figures are drawn in processes forked from this one.
        self._process = ctx.Process(
            target=_serve, args=(child,), name=PROCESS_NAME, daemon=False
        )
        self._child = child
        self.alive = True
        self._starting = threading.Thread(
            target=self._start, name="depthlab-tracker-start", daemon=True
        )
        self._starting.start()

    def _start(self) -> None:
        try:
            self._process.start()
        except Exception:
            self.alive = False
        finally:
            self._child.close()  # the tracker's end: EOF here if it dies

    def _ready(self) -> bool:
        self._starting.join()
        return self.alive

    def call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``function(*args, **kwargs)`` in the tracker, SIGINT/SIGTERM held
        back until it returns; in this process if the tracker is gone.

        ``function`` must be importable by name (a module's function).
        """
        with interrupts.deferred():
            if self._ready():
                try:
                    ok, value = self._ask(function, args, kwargs)
                except (EOFError, OSError):  # the tracker is gone
                    self.alive = False
                else:
                    return _answered(ok, value)
        return function(*args, **kwargs)

    def call_now(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Like :meth:`call`, but a SIGINT/SIGTERM meanwhile ends the tracker
        at once and is raised (for the report, which may take long)."""
        if not self._ready():
            return function(*args, **kwargs)
        try:
            ok, value = self._ask(function, args, kwargs)
        except (EOFError, OSError):  # the tracker is gone
            self.alive = False
            return function(*args, **kwargs)
        except KeyboardInterrupt:
            self.kill()
            raise
        return _answered(ok, value)

    def _ask(
        self, function: Callable[..., Any], args: Any, kwargs: Any
    ) -> tuple[bool, Any]:
        """Send one call and return its answer, ``(True, result)`` or
        ``(False, what it raised)``; EOFError or OSError: the tracker is gone
        (what the call raised is not raised here, so that it is not taken for
        that)."""
        self._conn.send((function, args, kwargs, True))
        return self._conn.recv()

    def call_soon(self, function: Callable[..., Any], *args: Any) -> bool:
        """Have the tracker run ``function(*args)`` without waiting for it and
        without an answer (what it raises is dropped). False if the tracker is
        gone."""
        with interrupts.deferred():
            if self._ready():
                try:
                    self._conn.send((function, args, {}, False))
                except OSError:
                    self.alive = False
        return self.alive

    def close(self) -> None:
        """End the tracker once it has answered every call."""
        self._starting.join()
        if self.alive:
            with contextlib.suppress(OSError):
                self._conn.send(None)
        self._conn.close()
        self.alive = False

    def kill(self) -> None:
        """End the tracker now."""
        self.alive = False
        with contextlib.suppress(Exception):
            self._process.kill()
        self._conn.close()


def _answered(ok: bool, value: Any) -> Any:
    """The result of a call the tracker answered, or what it raised, raised."""
    if ok:
        return value
    raise value


class _Remote:
    """A module whose functions run in the tracker (classes and constants are
    the module's own)."""

    def __init__(self, tracker: Tracker, module: ModuleType) -> None:
        self._tracker = tracker
        self._module = module

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._module, name)
        if callable(value) and not isinstance(value, type):
            return functools.partial(self._tracker.call, value)
        return value


_current: list[Tracker] = []


def start() -> None:
    """Start the tracker of this sweep (see the module); :func:`store` then
    sends the store calls to it until :func:`close`."""
    close()
    _current.append(Tracker())


def current() -> Tracker | None:
    """The tracker of this sweep, if one was started and still runs."""
    return _current[0] if _current and _current[0].alive else None


def store() -> Any:
    """:mod:`depthlab.tracking`, whose functions run in the tracker if this
    sweep has one."""
    from depthlab import tracking

    tracker = current()
    return tracking if tracker is None else _Remote(tracker, tracking)


def run(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)`` in the tracker if this sweep has one,
    else here."""
    tracker = current()
    if tracker is None:
        return function(*args, **kwargs)
    return tracker.call(function, *args, **kwargs)


def close() -> None:
    """End this sweep's tracker, if it has one."""
    while _current:
        _current.pop().close()


def import_report_stack() -> None:
    """Import what the report draws with (matplotlib, seaborn: ~1 s) and draw
    a first figure (:func:`depthlab.report.plotting.warm_up`), ahead of the
    report; what fails is left for the report to say."""
    from depthlab import garbage

    try:
        with garbage.paused():
            import matplotlib.figure  # noqa: F401
            import seaborn  # noqa: F401

            import depthlab.report  # noqa: F401
            from depthlab.report import plotting

            plotting.warm_up()
    except Exception:
        pass
    if _in_tracker():  # the modules live as long as it
        garbage.keep()


_tables: dict[str, Any] = {}
"""The tables of the jobs that ended so far, by run id (in the tracker)."""


def keep_tables(run_id: str, path: str) -> None:
    """Read the tables a job left in the file ``path``, for the report: sent
    by the sweep's process as each job ends, so that they are read while the
    other jobs run rather than all after them."""
    from depthlab import garbage
    from depthlab.sweep.workers import returned_tables

    _tables[run_id] = returned_tables(path)
    if _in_tracker():  # they are kept to the report
        garbage.keep()


def build_report(
    uri: str, parent: str, sweep_dir: Path, known_tables: Mapping[str, Any]
) -> Path:
    """The sweep's report (:func:`depthlab.report.build_report_from_mlflow`),
    logged to its parent run, from the tables its jobs returned
    (``known_tables``: run id -> its tables, or the file a worker left them in,
    read by :func:`depthlab.sweep.workers.returned_tables` unless
    :func:`keep_tables` read it already). Runs in the tracker, or in the
    sweep's process when it has none."""
    from depthlab.report import build_report_from_mlflow
    from depthlab.sweep.workers import returned_tables

    known = {
        run_id: tables
        if not isinstance(tables, str)
        else _tables.pop(run_id, None) or returned_tables(tables)
        for run_id, tables in known_tables.items()
    }
    _tables.clear()
    return build_report_from_mlflow(
        uri, parent, out_dir=sweep_dir, log_to_parent=True, known_tables=known
    )
