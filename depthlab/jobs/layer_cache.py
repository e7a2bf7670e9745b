"""Drawn layers kept between the jobs of one process, for sweeps over depth.

Network k of a job draws layer l from its own stream (seed, k, l)
(:func:`depthlab.jobs.engine.network_rng`), so two jobs that differ only in
depth draw the same numbers for every layer they share: the common random
numbers of a sweep. A sweep's worker runs many such jobs one after another; this
cache hands a job the layers an earlier job of the same process drew, instead of
drawing them again, the spectra of its hidden layers, which depend only on the
layers up to them, and the states from which its forward pass and its J^(l)
factor chain go on (``python experiments/benchmark/timed_sweep.py`` shows what
they save).

A layer is kept as the stack of one chunk's networks (one entry per layer and
chunk, read-only, handed out without a copy) and found by everything that
determines its numbers (scheme, shape, sigma_w, sigma_b, dtype, seed, the
chunk's networks, layer), so a hit is bitwise the layer a draw would give. The
cache holds at most :data:`MAX_BYTES` (least recently used layers go first)
and takes only jobs whose weights fit in it whole: a wide job, whose layers
could not be reused before they are evicted, bypasses it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

import numpy as np

MAX_BYTES = 128 << 20
"""What the cache of one process may hold (bytes): a depth-50 network of width
64 is 1.6 MiB, the 64 networks of a default job 104 MiB."""

FORWARD_MAX_BYTES = 128 << 20
"""What the forward-pass cache of one process may hold (bytes): a default job's
hidden layers at depth 50 are 12.5 MiB (sigma' of 48 layers, 64 networks x 8
inputs x 64 neurons each; the entries of one sweep share most of them, so the
cache counts more than it holds)."""

SPECTRA_MAX_BYTES = 32 << 20
"""What the spectra cache of one process may hold (bytes): a default job's
spectra at every layer are 0.2 MiB."""


class LayerCache:
    """Tuples of arrays (or of objects with an ``nbytes``) by key, least
    recently used evicted first.

    Thread-safe: a job's chunks run on several threads. Arrays are stored and
    handed out as given: callers put arrays nobody writes again (read-only).

    Parameters
    ----------
    max_bytes : int
        The most the cached arrays may hold.
    """

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, tuple[np.ndarray, ...]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> tuple[np.ndarray, ...] | None:
        """The arrays kept under ``key``, or None (counted as a miss)."""
        with self._lock:
            found = self._items.get(key)
            if found is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return found

    def put(self, key: Hashable, arrays: tuple[np.ndarray, ...]) -> None:
        """Keep ``arrays`` under ``key`` (nothing if they alone exceed the bound)."""
        nbytes = sum(a.nbytes for a in arrays)
        if nbytes > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = arrays
            self._bytes += nbytes
            while self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= sum(a.nbytes for a in old)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._items.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        """What the cached arrays hold now (bytes)."""
        return self._bytes


CACHE = LayerCache()
"""This process's drawn layers (a sweep's worker keeps them from job to job)."""

SPECTRA = LayerCache(SPECTRA_MAX_BYTES)
"""This process's spectra of hidden layers: J^(l) and J^[l] of a job's spectra
pairs at a hidden layer l depend only on layers 2..l and the inputs, so a job
of another depth (the same config otherwise) has computed them already; and
the graded factor of J^(l) at each job's last hidden layer
(:class:`depthlab.spectra.GradedFactor`), from which the next job's pass
through the layers resumes instead of starting again at layer 2."""

FORWARD = LayerCache(FORWARD_MAX_BYTES)
"""This process's forward passes through the hidden layers
(:class:`depthlab.gradient.HiddenForward`, at each job's last hidden layer):
a^[l] and sigma'(z^[l]) of a chunk's networks at its inputs depend only on
layers 2..l, so the next job of a depth sweep computes only its new layers."""
