"""The memory model of a probe job, and the check made before any work.

A job holds, at any time (see README, "Memory and precision"):

- per running chunk, the weights of its networks and their forward/backward
  arrays: :func:`network_bytes` per network, plus one layer's sampling
  temporaries per worker (:func:`worker_bytes`);
- once, the workspace of the full spectra of its (network, input) pairs
  (:func:`spectra_bytes`);
- what is kept of every network for the exact quantiles and the tables:
  :func:`kept_bytes` per network (about ``inputs * depth`` table rows).

The weights of all networks are never held: peak memory does not grow with
``probe.networks`` beyond the kept part, a few hundred bytes per (network,
input, layer). The estimate is an upper bound of the arrays depthlab allocates;
the interpreter and its libraries (about 0.3 GB) come on top.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass

GIB = float(1 << 30)

AUTO_BUDGET_FRACTION = 0.5
"""``probe.memory_gb: null`` uses at most this fraction of the available memory,"""

AUTO_BUDGET_CAP_GB = 2.0
"""...and at most this many GiB: chunks beyond a few networks are no faster, so
a job keeps to a small footprint unless ``probe.memory_gb`` asks for more (a
wide job on many cores then runs more chunks at once)."""

CHUNK_CAP_BYTES = 256 << 20
"""A chunk holds at most this many bytes of networks (unless one network is
larger): the gradient works in 256 KiB groups anyway, larger chunks only cost
memory."""

TABLE_ROW_BYTES = 3 * 22 * 8
"""Bytes per row of the ``layers`` table (22 columns of 8 bytes), counted three
times for the copies a merge and the artifact writer make."""


ARRAY_OVERHEAD = 224
"""Bytes per kept array beside its data: the numpy object (112 bytes), its list
slot and the views a layer's products leave (measured with tracemalloc: up to
about 215 bytes a layer for a resnet at depth 1000, width 32); thousands of them
at depth 1000."""


@dataclass(frozen=True)
class Shape:
    """What the memory model needs to know of a job."""

    widths: tuple[int, ...]
    inputs: int
    itemsize: int
    networks: int
    """Networks the job may use (``probe.max_networks`` when adaptive)."""
    spectra_pairs: int
    spectra_layers: tuple[int, ...]
    plain: bool = True
    """The plain MLP (its own gradient kernels) or another architecture
    (:mod:`depthlab.blocks`: resnet blocks, layer normalization)."""
    normalized: bool = False
    """With layer normalization (its scales s^[l] are kept too)."""

    @property
    def layer_arrays(self) -> int:
        """Activation-sized arrays the gradient's forward pass keeps per layer
        (measured with tracemalloc): 2 for the plain MLP's kernels (sigma'(z^[l])
        and a layer-sized copy in their layout), 1 for the other architectures'
        lean forward pass (:func:`depthlab.blocks.lean_forward` keeps h^[l];
        for a block without LN that is the stream a^[l-1] itself)."""
        return 2 if self.plain else 1


def architecture_shape(arch: str, norm: str) -> dict[str, bool]:
    """The :class:`Shape` fields of an architecture (``arch.name``, ``arch.norm``).

    Examples
    --------
    >>> architecture_shape("resnet", "layer")
    {'plain': False, 'normalized': True}
    """
    return {"plain": arch == "mlp" and norm == "none", "normalized": norm != "none"}


def forward_arrays(norm: str) -> int:
    """Activation-sized arrays a full forward pass (``Network.forward``, used by
    training) keeps per layer: z^[l] and a^[l], and h^[l] with LN.

    Examples
    --------
    >>> forward_arrays("none"), forward_arrays("layer")
    (2, 3)
    """
    return 3 if norm != "none" else 2


def network_bytes(shape: Shape) -> int:
    """One network of a chunk: weights, biases, forward and backward arrays."""
    n, b, s = shape.widths, shape.inputs, shape.itemsize
    params = sum(n_out * n_in + n_out for n_in, n_out in itertools.pairwise(n))
    # Shape.layer_arrays arrays for every layer, a few layer-sized temporaries,
    # the (B, n_L, n_l) backward array and its product.
    activations = (
        shape.layer_arrays * b * sum(n) + 4 * b * max(n) + 3 * b * n[-1] * max(n)
    )
    # Python objects of the kept arrays, and LN's scales s^[l] (B numbers each).
    objects = shape.layer_arrays + shape.normalized
    kept = len(n) * (objects * ARRAY_OVERHEAD + (b * s if shape.normalized else 0))
    return s * (params + activations) + 8 * b * (len(n) + 2) + kept


def worker_bytes(shape: Shape) -> int:
    """One worker's temporaries: a layer drawn in float64, scaled and cast."""
    largest = max(a * b for a, b in itertools.pairwise(shape.widths))
    return 3 * 8 * largest


def spectra_bytes(shape: Shape) -> int:
    """The full spectra of all pairs (computed in float64, layer by layer)."""
    if shape.spectra_pairs == 0 or not shape.spectra_layers:
        return 0
    n = shape.widths
    widest = max(n)
    largest = max(a * b for a, b in itertools.pairwise(n))
    # Graded factor V (r x n_l, r <= n_1), its product and pivoted QR copies;
    # J^[l] for the layer SVD and gesdd's workspace; the float64 weight copy.
    # A block's J^[l] = I + alpha W D (J_LN) is formed from the identity's rows:
    # three more n_l x n_l products on the way.
    layer_jacobians = 3 if shape.plain else 6
    per_pair = 8 * (6 * widest * n[0] + layer_jacobians * largest)
    return shape.spectra_pairs * per_pair + 8 * largest


def kept_bytes(shape: Shape) -> int:
    """What is kept of one network: its log norms and its table rows."""
    b, depth = shape.inputs, len(shape.widths)
    return b * depth * (8 + TABLE_ROW_BYTES) + b * 4 * 8 * 3


def estimate_job_bytes(shape: Shape) -> int:
    """The memory of the smallest run of a job: one worker, one network a chunk.

    Parameters
    ----------
    shape : Shape

    Returns
    -------
    int
        Bytes: one network, one worker's temporaries, the spectra workspace and
        the kept results of ``shape.networks`` networks.
    """
    return (
        network_bytes(shape)
        + worker_bytes(shape)
        + spectra_bytes(shape)
        + shape.networks * kept_bytes(shape)
    )


def meminfo_bytes(field: str) -> int | None:
    """A field of /proc/meminfo (``MemAvailable``, ``MemTotal``, ...) in bytes.

    None where the file cannot be read (not Linux) or has no such field.
    """
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def available_bytes() -> int | None:
    """The memory the machine has available now, or None if it cannot be read.

    ``MemAvailable`` of /proc/meminfo (Linux), else the free physical pages of
    ``os.sysconf``, else half the physical memory.
    """
    available = meminfo_bytes("MemAvailable")
    if available is not None:
        return available
    for pages, factor in (("SC_AVPHYS_PAGES", 1.0), ("SC_PHYS_PAGES", 0.5)):
        try:
            return int(os.sysconf(pages) * os.sysconf("SC_PAGE_SIZE") * factor)
        except (ValueError, OSError, AttributeError):
            continue
    return None


def budget_bytes(memory_gb: float | None) -> int:
    """The memory a job's chunks may use: ``memory_gb`` or the automatic budget."""
    if memory_gb is not None:
        return int(memory_gb * GIB)
    available = available_bytes()
    cap = int(AUTO_BUDGET_CAP_GB * GIB)
    if available is None:
        return cap
    return min(cap, int(AUTO_BUDGET_FRACTION * available))


def check_memory(shape: Shape, memory_gb: float | None) -> None:
    """Refuse a job whose smallest run cannot fit, before any work.

    Raises
    ------
    MemoryError
        With a one-line message naming the estimate and the memory there is
        (``probe.memory_gb`` if set, else the machine's available memory).
    """
    need = estimate_job_bytes(shape)
    if memory_gb is not None:
        limit, where = int(memory_gb * GIB), f"probe.memory_gb={memory_gb}"
    else:
        available = available_bytes()
        if available is None:
            return
        limit, where = available, "the machine's available memory"
    if need > limit:
        one = network_bytes(shape) + worker_bytes(shape) + spectra_bytes(shape)
        raise MemoryError(
            f"this probe job needs about {need / GIB:.3g} GiB (one network "
            f"with its spectra workspace {one / GIB:.3g} GiB, the results of "
            f"{shape.networks} networks {shape.networks * kept_bytes(shape) / GIB:.3g}"
            f" GiB) but {where} is {limit / GIB:.3g} GiB; reduce width, depth, "
            f"probe.networks/max_networks or probe.spectra"
        )


def plan_chunks(
    shape: Shape, networks: int, threads: int, memory_gb: float | None
) -> tuple[int, int]:
    """Chunk size and number of workers for ``networks`` networks.

    Chunks are at most ``ceil(networks / threads)`` networks (every core gets
    work), at most :data:`CHUNK_CAP_BYTES`, and ``workers`` chunks of them fit
    the budget with the spectra workspace and the kept results; at least one
    network and one worker.

    Returns
    -------
    chunk_size, workers : int
    """
    per_net = network_bytes(shape)
    fixed = spectra_bytes(shape) + shape.networks * kept_bytes(shape)
    room = budget_bytes(memory_gb) - fixed
    size = max(1, min(math.ceil(networks / threads), CHUNK_CAP_BYTES // per_net))
    while size > 1 and threads * (size * per_net + worker_bytes(shape)) > room:
        size -= 1
    workers = threads
    while workers > 1 and workers * (size * per_net + worker_bytes(shape)) > room:
        workers -= 1
    workers = min(workers, math.ceil(networks / size))
    return size, workers
