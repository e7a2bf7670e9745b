"""When the garbage collector walks what a process holds.

CPython's cyclic collector runs a pass after every ~700 new container objects
and, every so often, a full pass that walks every object still alive. Work
that makes many objects that live on (imports: modules, classes, functions;
a sweep's results; a sweep read back from MLflow) therefore triggers full
passes again and again, each longer than the last, and finds nothing to free.
On the 196-job sweep of the benchmark's ``baseline`` section in one process,
its collections took 2.04 s of 27.2 s, 0.81 s of 25.7 s with the remedies
below (``python experiments/benchmark/sweep_processes.py --cpus 0 ...`` on
each code tree, the same hour).

Two remedies, each for a block of such work:

- :func:`paused`: no collection in the block (imports, a read of a sweep:
  what they make lives on, or dies by reference counting);
- :func:`long_lived_frozen`: what is alive at its start, and what survives
  each :func:`keep` later (a job's results), is left out of the passes
  (:func:`gc.freeze`) for the block; what the block makes and drops is
  collected as usual.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["keep", "long_lived_frozen", "paused"]


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No garbage collection in the block (:func:`gc.disable`, then enabled
    again if it was).

    Examples
    --------
    >>> import gc
    >>> with paused():
    ...     gc.isenabled()
    False
    >>> gc.isenabled()
    True
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextlib.contextmanager
def long_lived_frozen() -> Iterator[None]:
    """Keep the objects alive now out of the garbage collector's passes for
    the block (:func:`gc.freeze`, then :func:`gc.unfreeze`).

    A process that runs jobs holds millions of objects that live as long as it
    does (mlflow's, SQLAlchemy's, pandas' modules), and each job makes enough
    new ones to trigger full collections, each of which walks them all; in a
    worker forked from the forkserver, walking them also copies the pages the
    forkserver's imports left shared. Frozen, a collection walks only what the
    jobs made. On the 196-job sweep of the benchmark's ``baseline`` section,
    a worker's collections (where the worker freezes what the forkserver
    imported) take 0.24-0.25 s instead of 0.64 s (``python
    experiments/benchmark/sweep_processes.py``).
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def keep() -> None:
    """Inside :func:`long_lived_frozen` (or in a process that never unfreezes:
    a sweep's tracker): collect what is not frozen (the garbage of the work
    since the last call: a pass over only that), then leave what survived (a
    job's results, kept to the end of the sweep) out of the passes too."""
    gc.collect()
    gc.freeze()
