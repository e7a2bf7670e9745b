"""Drawn layers kept between the jobs of one process, for sweeps over depth.

Network k of a job draws layer l from its own stream (seed, k, l)
(:func:`depthlab.jobs.engine.network_rng`), so two jobs that differ only in
depth draw the same numbers for every layer they share: the common random
numbers of a sweep. A sweep's worker runs many such jobs one after another; this
cache hands a job the layers an earlier job of the same process drew, instead of
drawing them again (drawing is about a third of a default job's time).

A layer is found by everything that determines its numbers (scheme, shape,
sigma_w, sigma_b, dtype, seed, network, layer), so a hit is bitwise the layer a
draw would give. The cache holds at most :data:`MAX_BYTES` (least recently used
layers go first) and takes only jobs whose weights fit in it whole: a wide job,
whose layers could not be reused before they are evicted, bypasses it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

import numpy as np

MAX_BYTES = 128 << 20
"""What the cache of one process may hold (bytes): a depth-50 network of width
64 is 1.6 MiB, the 64 networks of a default job 104 MiB."""

Layer = tuple[np.ndarray, np.ndarray]


class LayerCache:
    """Layers (weights, biases) by key, least recently used evicted first.

    Thread-safe: a job's chunks draw on several threads.

    Parameters
    ----------
    max_bytes : int
        The most the cached arrays may hold.
    """

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._layers: OrderedDict[Hashable, Layer] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def fill(self, key: Hashable, out: Layer, draw: Callable[[], object]) -> None:
        """Write the layer ``key`` into ``out``: a copy of the cached one, or
        ``draw()`` (which writes into ``out``), then kept for later jobs."""
        with self._lock:
            found = self._layers.get(key)
            if found is not None:
                self._layers.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
        if found is not None:
            np.copyto(out[0], found[0])
            np.copyto(out[1], found[1])
            return
        draw()
        nbytes = out[0].nbytes + out[1].nbytes
        if nbytes > self.max_bytes:
            return
        kept = (out[0].copy(), out[1].copy())
        with self._lock:
            if key in self._layers:
                return
            self._layers[key] = kept
            self._bytes += nbytes
            while self._bytes > self.max_bytes:
                _, (w, b) = self._layers.popitem(last=False)
                self._bytes -= w.nbytes + b.nbytes

    def clear(self) -> None:
        """Forget every layer."""
        with self._lock:
            self._layers.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        """What the cached arrays hold now (bytes)."""
        return self._bytes


CACHE = LayerCache()
"""This process's cache (a sweep's worker keeps it from job to job)."""
