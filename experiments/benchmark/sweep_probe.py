"""Timers inside a sweep's processes, for ``sweep_processes.py`` (imported by
the sweep's process and, through the forkserver's preload, by its workers and
its tracker). Each process appends what it measured to
``$SWEEP_PROBE_DIR/<pid>.json``: its role, the seconds its garbage collections
took, and (a worker) the wall-clock span of each job."""

from __future__ import annotations

import gc
import json
import os
import time
from pathlib import Path
from typing import Any

OUT = Path(os.environ.get("SWEEP_PROBE_DIR", "."))
_gc = {"seconds": 0.0, "collections": 0}
_started = [0.0]
_jobs: list[tuple[float, float]] = []


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
    else:
        _gc["seconds"] += time.perf_counter() - _started[0]
        _gc["collections"] += 1


def write(role: str) -> None:
    """Write this process's numbers (overwritten at each call)."""
    record = {"role": role, "gc": dict(_gc), "jobs": _jobs}
    (OUT / f"{os.getpid()}.json").write_text(json.dumps(record))


_originals: dict[str, Any] = {}


def timed_run(cfg: Any) -> Any:
    """A worker's job (``depthlab.sweep.workers._run``), timed."""
    start = time.time()
    try:
        return _originals["run"](cfg)
    finally:
        _jobs.append((start, time.time()))
        write("worker")


def marked_initialize(*args: Any) -> None:
    """A worker's set-up (``depthlab.sweep.workers._initialize``), marked, so
    that a worker that gets no job is seen too."""
    _originals["initialize"](*args)
    write("worker")


def timed_build(*args: Any) -> Any:
    """The tracker's report (``depthlab.sweep.tracker.build_report``)."""
    try:
        return _originals["build"](*args)
    finally:
        write("tracker")


def marked_serve(conn: Any) -> None:
    """The tracker's loop (``depthlab.sweep.tracker._serve``), marked."""
    write("tracker")
    _originals["serve"](conn)


def install() -> None:
    """Count garbage collections here; time a worker's jobs and mark the
    tracker. The replacements are module functions, so that the sweep's
    process sends them to its workers and tracker by name."""
    import depthlab.sweep.workers as workers

    gc.callbacks.append(_on_gc)
    _originals.update(run=workers._run, initialize=workers._initialize)
    workers._run = timed_run
    workers._initialize = marked_initialize
    try:  # commits before 2f2c153 have no tracker
        import depthlab.sweep.tracker as tracker
    except ImportError:
        return
    _originals.update(serve=tracker._serve, build=tracker.build_report)
    tracker._serve = marked_serve
    tracker.build_report = timed_build


if os.environ.get("SWEEP_PROBE_DIR"):
    install()
