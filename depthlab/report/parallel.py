"""Independent report tasks (the figures) run in forked worker processes.

Drawing and rendering a figure is CPU-bound Python (matplotlib holds the GIL),
so threads would not help; processes do. They are forked, so that a worker
starts in milliseconds with everything the parent imported and computed (the
report's data is inherited, never pickled: only a task's index goes to a
worker and its result comes back). Forking is safe only while the parent runs
no other Python thread (a lock that another thread holds at the fork stays
held in the child for ever; the native threads of OpenBLAS and of pyarrow's
jemalloc, which a sweep's process has, take their locks around a fork by their
own fork handlers), so :func:`processes` falls back to one process, the
caller's own, where this process runs other threads, where ``fork`` does not
exist, in a daemonic process (which may not have children), and on one core.
A sweep on workers builds its report in its tracker process
(:mod:`depthlab.sweep.tracker`, not a daemon), which runs no other Python
thread; a sweep in one process, once the thread that imports the report's
modules while the jobs run has ended.
"""

from __future__ import annotations

import multiprocessing
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

__all__ = ["processes", "run_tasks"]

T = TypeVar("T")

FORK_WARNING = r".*multi-threaded, use of fork\(\) may lead to deadlocks"
"""What Python >= 3.12 says when a process with native threads forks."""
_TASK: Callable[[int], Any] | None = None
"""The task of the pool being run, set before its workers fork (inherited)."""


def processes(tasks: int) -> int:
    """How many processes should run ``tasks`` independent tasks: one per CPU
    this process may use (its affinity mask:
    :func:`depthlab.sweep.workers.cpu_count`), at most one per task; 1
    (serially, in this process) where forking is not possible or not safe.

    Parameters
    ----------
    tasks : int
        The number of independent tasks.

    Returns
    -------
    int
        The number of processes, at least 1.

    Examples
    --------
    >>> processes(0)
    1
    """
    if tasks <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    if threading.active_count() > 1 or multiprocessing.current_process().daemon:
        return 1
    from depthlab.sweep.workers import cpu_count

    return max(1, min(cpu_count(), tasks))


def run_tasks(
    task: Callable[[int], T],
    count: int,
    *,
    order: Sequence[int] | None = None,
    workers: int | None = None,
) -> list[T]:
    """``[task(0), ..., task(count - 1)]``, computed by ``workers`` forked
    processes (default: :func:`processes`), or serially in this process.

    Parameters
    ----------
    task : callable
        ``task(i)`` for ``i`` in ``range(count)``; it and what it reads are
        inherited by the workers, its results must pickle.
    count : int
        The number of tasks.
    order : sequence of int, optional
        The order in which the tasks are handed out (default: 0, 1, ...):
        the costliest first, so that the last to start is a cheap one.
    workers : int, optional
        Processes to use; 1 runs every task here, in order.

    Returns
    -------
    list
        The results, in task order (not in ``order``).

    Notes
    -----
    An exception raised by a task is raised here. Warnings that a task issues
    in a worker, past the filters it inherited (an ``error`` filter raises
    there), are issued again here, so that this process's filters and
    recorders see them. Where the workers cannot be started or one dies, the
    tasks are run serially here instead.
    """
    global _TASK
    n = processes(count) if workers is None else workers
    if n <= 1 or count <= 1:
        return [task(i) for i in range(count)]
    order = list(range(count)) if order is None else list(order)
    if sorted(order) != list(range(count)):
        raise ValueError(f"order must be a permutation of range({count}): {order}")
    _TASK = task
    try:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(min(n, count), mp_context=context) as pool:
            with warnings.catch_warnings():
                # Python >= 3.12 warns at every fork of a process with native
                # threads (OpenBLAS's pool, jemalloc's purger: both fork-safe,
                # by their fork handlers); no Python thread runs here.
                warnings.filterwarnings(
                    "ignore", FORK_WARNING, DeprecationWarning, "multiprocessing"
                )
                futures = {i: pool.submit(_run_recorded, i) for i in order}
            done = [futures[i].result() for i in range(count)]
    except (BrokenProcessPool, OSError):  # a worker died, or none could start
        return [task(i) for i in range(count)]
    finally:
        _TASK = None
    results = []
    for result, caught in done:
        for message, category, filename, lineno in caught:
            warnings.warn_explicit(message, category, filename, lineno)
        results.append(result)
    return results


def _run_recorded(index: int) -> tuple[Any, list[tuple[Any, type, str, int]]]:
    """In a worker: the task's result and the warnings it issued (the inherited
    filters still apply: ``error`` raises, ``ignore`` drops)."""
    assert _TASK is not None
    with warnings.catch_warnings(record=True) as caught:
        result = _TASK(index)
    return result, [(w.message, w.category, w.filename, w.lineno) for w in caught]
