"""The probe's engine in three steps: make a chunk, measure it, reduce.

1. :func:`make_chunk` draws a chunk of networks (a :class:`~depthlab.network.Network`
   stack) and their inputs.
2. :func:`measure_chunk` runs the gradient and the spectra on it and returns a
   :class:`ChunkMeasurement`: numpy arrays only, small (no weights).
3. :func:`reduce` concatenates the measurements in chunk order and builds the
   tables and the summary (:func:`depthlab.jobs.probe.build_result`).

An array backend (a GPU, say) implements the first two steps and hands numpy
arrays to the third; the reduction and the tables do not change.

Random streams: network k of a job draws W^[l], b^[l] from its own generator,
seeded by ``SeedSequence([seed, k, l])`` (l = 2..L), and its inputs from
``SeedSequence([seed, k, 1])``; the bootstrap uses ``[seed, 0, 0]``. The
numbers are therefore the same whatever the chunk size, the number of threads
or the scheduling, and jobs of a sweep with the same seed share their networks
(common random numbers: a deeper network shares its first hidden layers with a
shallower one of the same widths).

:func:`run_chunks` runs the chunks of a range of networks on a thread pool,
BLAS pinned to one thread (numpy releases the GIL in BLAS calls and ufuncs), and
returns the measurements in chunk order.

``probe.backend`` (``spec.backend``) chooses whose BLAS does the gradients'
matrix products in :func:`measure_chunk` (:mod:`depthlab.backend`): numpy's, or
torch's on the same memory. The threads are the same either way: one per
worker (see :func:`run_chunks`).
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from depthlab import blocks, spectra
from depthlab.backend import limit_threads
from depthlab.gradient import HiddenForward, backprop_log10_norms
from depthlab.initializers import sample_layer
from depthlab.jobs import THREADS_ENV, layer_cache, memory
from depthlab.jobs.probe import ProbeResult, ProbeSpec, build_result, sample_inputs
from depthlab.network import DTYPES, Network

BIT_GENERATOR = np.random.SFC64
"""The bit generator of every network's streams (one place to change it)."""

INPUT_STREAM = 1
"""Stream number of a network's inputs (its weights of layer l use l >= 2)."""

DENSE_SPECTRA_WIDTH = 256
"""Up to this widest hidden layer, full spectra are taken at every layer."""

SPARSE_SPECTRA_LAYERS = 8
"""Otherwise at about this many log-spaced layers, plus L - 1 and L."""


def network_rng(seed: int, network: int, stream: int) -> np.random.Generator:
    """The generator of stream ``stream`` of network ``network`` of a job.

    ``stream`` is the layer l = 2..L for W^[l] and b^[l], :data:`INPUT_STREAM`
    for the inputs, 0 (with network 0) for the bootstrap.
    """
    key = np.random.SeedSequence([seed, network, stream])
    return np.random.Generator(BIT_GENERATOR(key))


def bootstrap_rng(seed: int) -> np.random.Generator:
    """The generator of the cluster bootstrap of a job (fresh at every call)."""
    return network_rng(seed, 0, 0)


def default_threads() -> int:
    """The threads a job uses when ``probe.threads`` is null: its worker's budget
    under a parallel sweep (:data:`depthlab.jobs.THREADS_ENV`), else the cores
    this process may run on (its affinity), else ``os.cpu_count()``."""
    value = os.environ.get(THREADS_ENV, "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def spectra_pairs(spec: ProbeSpec) -> tuple[np.ndarray, np.ndarray]:
    """The (network, input) pairs that get full spectra.

    Pair j is network j mod P' at input j div P', P' = min(pairs, networks), so
    the pairs cover as many networks as possible (all among the first
    ``probe.networks``, the first chunks).
    """
    pairs = min(spec.spectra, spec.networks * spec.inputs)
    n_nets = min(pairs, spec.networks)
    j = np.arange(pairs)
    return j % max(n_nets, 1), j // max(n_nets, 1)


def spectra_layers(spec: ProbeSpec) -> tuple[int, ...]:
    """The layers l (2..L) with full spectra: ``probe.spectra_layers`` or its default.

    Default: every layer if the widest hidden layer has at most
    :data:`DENSE_SPECTRA_WIDTH` neurons, else about
    :data:`SPARSE_SPECTRA_LAYERS` log-spaced layers from 2 to L and L - 1, L.
    """
    depth = spec.depth
    if spec.spectra_layers is not None:
        return tuple(sorted(set(spec.spectra_layers)))
    hidden = spec.widths[1:-1]
    if not hidden or max(hidden) <= DENSE_SPECTRA_WIDTH:
        return tuple(range(2, depth + 1))
    spaced = np.rint(np.geomspace(2, depth, SPARSE_SPECTRA_LAYERS)).astype(int)
    return tuple(sorted({*spaced.tolist(), max(depth - 1, 2), depth}))


def job_shape(spec: ProbeSpec) -> memory.Shape:
    """What the memory model needs of a job (at its largest number of networks)."""
    pairs = min(spec.spectra, spec.networks * spec.inputs)
    n_nets = min(pairs, spec.networks)
    per_net = -(-pairs // n_nets) if n_nets else 0
    return memory.Shape(
        widths=tuple(spec.widths),
        inputs=spec.inputs,
        itemsize=np.dtype(DTYPES[spec.dtype]).itemsize,
        networks=spec.max_networks if spec.rel_err is not None else spec.networks,
        spectra_pairs=n_nets * per_net,
        spectra_layers=spectra_layers(spec) if pairs else (),
        **memory.architecture_shape(spec.arch, spec.norm),
    )


def check_memory(spec: ProbeSpec) -> None:
    """Refuse (MemoryError, one line) a job whose smallest run cannot fit."""
    memory.check_memory(job_shape(spec), spec.memory_gb)


@dataclass(frozen=True)
class Chunk:
    """A stack of networks and their inputs: what :func:`make_chunk` returns."""

    networks: np.ndarray
    """Network indices k in the job, shape (k,), consecutive."""
    net: Network
    X: np.ndarray
    """Inputs, shape (k, B, n_1), in the network's dtype."""


@dataclass(frozen=True)
class PairSpectra:
    """Full spectra of the (network, input) pairs of a chunk (or of a job)."""

    net: np.ndarray
    input: np.ndarray
    layers: tuple[int, ...]
    """Layer numbers l with spectra, ascending."""
    layer_sv: list[np.ndarray]
    """Per layer of ``layers``: singular values of J^[l], (pairs, m), descending."""
    jac_log10_sv: list[np.ndarray]
    """Per layer of ``layers``: log10 singular values of J^(l), (pairs, m')."""


@dataclass(frozen=True)
class ChunkMeasurement:
    """What :func:`measure_chunk` keeps of a chunk (numpy arrays, no weights)."""

    networks: np.ndarray
    log10_norms: np.ndarray
    """log10 || d a^[L] / d a^[l] ||, shape (k, B, L-1), float64; column 0 is the
    gradient norm."""
    outputs: np.ndarray
    """a^[L]_1, shape (k, B), float64."""
    input_sq: np.ndarray
    """||x||^2 / n_1, shape (k, B), float64."""
    pairs: PairSpectra


def make_chunk(spec: ProbeSpec, networks: Sequence[int]) -> Chunk:
    """Draw networks ``networks`` of a job and their inputs into one stack.

    Each network's weights and inputs come from its own streams
    (:func:`network_rng`), drawn straight into preallocated stack arrays
    (``sample_layer(..., out=)``: no temporary layer, no copy). A layer an
    earlier job of this process drew for the same networks is taken from
    :data:`depthlab.jobs.layer_cache.CACHE` instead, not copied: cached stacks
    are read-only (nothing writes a network's parameters in place).
    """
    ids = np.asarray(networks, dtype=np.int64)
    k, dtype = len(ids), DTYPES[spec.dtype]
    layers = list(itertools.pairwise(spec.widths))
    X = np.empty((k, spec.inputs, spec.input_dim), dtype=dtype)
    job_bytes = memory.network_bytes(job_shape(spec)) * spec.networks
    cache = layer_cache.CACHE if job_bytes <= layer_cache.CACHE.max_bytes else None
    chunk_key = tuple(ids.tolist())
    weights, biases = [], []
    for layer, (n_in, n_out) in enumerate(layers, start=2):
        key = (spec.init, n_out, n_in, spec.sigma_w, spec.sigma_b, spec.dtype)
        key = (*key, spec.seed, chunk_key, layer)
        found = None if cache is None else cache.get(key)
        if found is None:
            found = (np.empty((k, n_out, n_in), dtype), np.empty((k, n_out), dtype))
            _draw_layer(spec, ids, layer, found)
            if cache is not None:
                for a in found:
                    a.flags.writeable = False  # shared with later jobs
                cache.put(key, found)
        weights.append(found[0])
        biases.append(found[1])
    for i, network in enumerate(ids.tolist()):
        X[i] = sample_inputs(
            spec.input_distribution,
            (spec.inputs, spec.input_dim),
            rng=network_rng(spec.seed, network, INPUT_STREAM),
        )
    net = Network(
        weights,
        biases,
        spec.activation,
        spec.output_activation,
        **spec.network_kwargs(),
    )
    return Chunk(ids, net, X)


def _draw_layer(
    spec: ProbeSpec,
    networks: np.ndarray,
    layer: int,
    stack: tuple[np.ndarray, np.ndarray],
) -> None:
    """Draw layer ``layer`` of each of ``networks`` from its own stream into
    ``stack`` (``(weights, biases)``, one row per network)."""
    weights, biases = stack
    n_out, n_in = weights.shape[1:]
    for i, network in enumerate(networks.tolist()):
        sample_layer(
            spec.init,
            n_out,
            n_in,
            sigma_w=spec.sigma_w,
            sigma_b=spec.sigma_b,
            rng=network_rng(spec.seed, network, layer),
            dtype=weights.dtype,
            out=(weights[i], biases[i]),
        )


def jacobian_spectra(
    net: Network,
    X: np.ndarray,
    layers: Sequence[int],
    *,
    start: spectra.GradedFactor | None = None,
    factors: dict[int, spectra.GradedFactor] | None = None,
) -> list[np.ndarray | None]:
    """Natural-log singular values of J^(l) at ``layers``; None at the others.

    A list of length L - 1 (entry l - 2 for layer l), as
    ``spectra.jacobian_log_singular_values(net, X, layers=layers)`` returns
    (``start`` and ``factors`` as it takes them).
    """
    return spectra.jacobian_log_singular_values(
        net, X, layers=layers, start=start, factors=factors
    )


def layer_spectra(
    net: Network, X: np.ndarray, layers: Sequence[int]
) -> list[np.ndarray]:
    """Singular values of J^[l] at ``layers`` (one forward pass).

    J^[l] = D^[l] W^[l] for a dense layer of an MLP; for every other layer
    (resnet blocks, layer normalization) the layer's own Jacobian
    (:func:`depthlab.blocks.jacobian`, e.g. I + alpha W^[l] D^[l]). The
    callers (:func:`run_chunks`) pin BLAS to one thread.
    """
    if tuple(layers) == tuple(range(2, net.depth + 1)):
        return spectra.layer_singular_values(net, X)  # one call: no per-layer cost
    fp = net.forward(X)
    if not net.plain_mlp:
        return [
            np.linalg.svd(blocks.jacobian(net, fp, layer - 2), compute_uv=False)
            for layer in layers
        ]
    out = []
    for layer in layers:
        i = layer - 2
        sigma = net.activation if layer < net.depth else net.output_activation
        one = Network([net.weights[i]], [net.biases[i]], sigma, sigma)
        out.append(spectra.layer_singular_values(one, fp.activations[i])[0])
    return out


def _no_pairs(layers: tuple[int, ...]) -> PairSpectra:
    empty = np.zeros(0, dtype=np.int64)
    return PairSpectra(empty, empty, layers, [], [])


def _measure_pairs(chunk: Chunk, spec: ProbeSpec) -> PairSpectra:
    """Spectra of the job's pairs whose network is in this chunk."""
    layers = spectra_layers(spec)
    pair_net, pair_input = spectra_pairs(spec)
    first, last = int(chunk.networks[0]), int(chunk.networks[-1])
    mine = (pair_net >= first) & (pair_net <= last)
    if not mine.any() or not layers:
        return _no_pairs(layers)
    nets, inputs = pair_net[mine], pair_input[mine]
    lo, hi = int(nets.min()) - first, int(nets.max()) - first + 1
    part = slice(lo, hi)  # the pairs' networks are consecutive: no copy
    sub = chunk.net.with_parameters(
        [w[part] for w in chunk.net.weights], [b[part] for b in chunk.net.biases]
    )
    x = chunk.X[part, : int(inputs.max()) + 1]
    local = nets - first - lo
    pairs_key = (*_hidden_key(spec), tuple(nets.tolist()), tuple(inputs.tolist()))
    keys = {
        layer: (*pairs_key, tuple(spec.widths[:layer]), layer)
        for layer in layers
        if layer < spec.depth
    }
    known = {layer: layer_cache.SPECTRA.get(key) for layer, key in keys.items()}
    todo = [layer for layer in layers if known.get(layer) is None]
    if todo:
        # The pass through the layers resumes after the deepest layer m below
        # those to do whose graded factor an earlier job of this process left
        # (its layers 2..m are this job's), instead of starting at layer 2; the
        # last hidden layer's factor is kept for the next job where the cache
        # can hold it (a batch of n_{L-1} x n_{L-1} matrices at most).
        n_last = spec.widths[spec.depth - 2]
        factor_bytes = sub.weights[0].shape[0] * x.shape[-2] * n_last * n_last * 8
        start = None
        factors: dict[int, spectra.GradedFactor | None] = {}
        if factor_bytes <= layer_cache.SPECTRA.max_bytes:
            factors[spec.depth - 1] = None
            for m in range(min(todo) - 1, 1, -1):
                found = layer_cache.SPECTRA.get(_factor_key(pairs_key, spec, m))
                if found is not None:
                    start = spectra.GradedFactor(m, *found)
                    break
        jac = jacobian_spectra(sub, x, todo, start=start, factors=factors)
        deepest = factors.get(spec.depth - 1)
        if deepest is not None:
            key = _factor_key(pairs_key, spec, deepest.layer)
            layer_cache.SPECTRA.put(key, (deepest.log_scale, deepest.V))
        for layer, sv in zip(todo, layer_spectra(sub, x, todo), strict=True):
            known[layer] = (sv[local, inputs], jac[layer - 2][local, inputs])
            if layer in keys:
                layer_cache.SPECTRA.put(keys[layer], known[layer])
    return PairSpectra(
        nets,
        inputs,
        layers,
        [known[layer][0].copy() for layer in layers],  # cached: not to be written
        [known[layer][1] / np.log(10.0) for layer in layers],
    )


def _factor_key(pairs_key: tuple[Any, ...], spec: ProbeSpec, layer: int) -> tuple:
    """The cache key of the pairs' graded factor of J^(l) at a hidden layer."""
    return (*pairs_key, tuple(spec.widths[:layer]), layer, "graded factor")


def _hidden_key(spec: ProbeSpec) -> tuple[Any, ...]:
    """What J^(l) at a hidden layer l < L depends on besides the widths n_1..n_l
    and l itself: the layers' scheme, activation, architecture and streams, and
    the inputs (computed once a chunk, not once a layer)."""
    return (
        spec.activation,
        spec.init,
        spec.sigma_w,
        spec.sigma_b,
        tuple(sorted(spec.network_kwargs().items())),
        spec.dtype,
        spec.backend,
        spec.seed,
        spec.inputs,
        spec.input_distribution,
    )


def measure_chunk(chunk: Chunk, spec: ProbeSpec) -> ChunkMeasurement:
    """Backprop norms, outputs and (for the job's pairs in it) spectra of a chunk.

    The backprop norms' matrix products run on ``spec.backend``; the spectra
    always on numpy and LAPACK.
    """
    # The forward pass goes on from the deepest hidden layer an earlier job of
    # this process passed through with these networks and inputs, and this
    # job's last hidden layer is kept for the next (where the cache holds it).
    item = np.dtype(DTYPES[spec.dtype]).itemsize
    state_bytes = len(chunk.networks) * spec.inputs * sum(spec.widths[1:-1]) * item
    key = (*_hidden_key(spec), tuple(chunk.networks.tolist()), "forward")
    start = None
    forwards: dict[int, HiddenForward | None] = {}
    if state_bytes <= layer_cache.FORWARD.max_bytes:
        forwards[spec.depth - 1] = None
        for m in range(spec.depth - 1, 1, -1):
            found = layer_cache.FORWARD.get((*key, tuple(spec.widths[:m])))
            if found is not None:
                start = found[0]
                break
    log10_norms, outputs = backprop_log10_norms(
        chunk.net,
        chunk.X,
        return_outputs=True,
        backend=spec.backend,
        start=start,
        forwards=forwards,
    )
    deepest = forwards.get(spec.depth - 1)
    if deepest is not None:
        layer_cache.FORWARD.put((*key, tuple(spec.widths[: deepest.layer])), (deepest,))
    return ChunkMeasurement(
        networks=chunk.networks,
        log10_norms=log10_norms,
        outputs=outputs[..., 0].astype(np.float64),
        input_sq=np.mean(chunk.X.astype(np.float64) ** 2, axis=-1),
        pairs=_measure_pairs(chunk, spec) if spec.spectra else _no_pairs(()),
    )


def _concatenate(parts: Sequence[ChunkMeasurement]) -> ChunkMeasurement:
    """The measurements of consecutive chunks as one (pairs in the order j)."""
    pairs = [p.pairs for p in parts if len(p.pairs.net)]
    if pairs:
        net = np.concatenate([p.net for p in pairs])
        inp = np.concatenate([p.input for p in pairs])
        order = np.lexsort((net, inp))  # pair j = (j mod P', j div P')
        n_layers = len(pairs[0].layers)
        spectra_all = PairSpectra(
            net[order],
            inp[order],
            pairs[0].layers,
            [
                np.concatenate([p.layer_sv[i] for p in pairs])[order]
                for i in range(n_layers)
            ],
            [
                np.concatenate([p.jac_log10_sv[i] for p in pairs])[order]
                for i in range(n_layers)
            ],
        )
    else:
        spectra_all = parts[0].pairs
    return ChunkMeasurement(
        networks=np.concatenate([p.networks for p in parts]),
        log10_norms=np.concatenate([p.log10_norms for p in parts]),
        outputs=np.concatenate([p.outputs for p in parts]),
        input_sq=np.concatenate([p.input_sq for p in parts]),
        pairs=spectra_all,
    )


def reduce(parts: Sequence[ChunkMeasurement], spec: ProbeSpec) -> ProbeResult:
    """The tables and the summary of a job from its chunks' measurements.

    ``parts`` must cover networks 0..K-1 in order (as :func:`run_chunks` returns
    them); the result does not depend on how they were chunked.
    """
    whole = _concatenate(parts)
    expected = np.arange(len(whole.networks))
    if not np.array_equal(whole.networks, expected):
        raise ValueError("reduce needs the chunks of networks 0..K-1, in order")
    return build_result(spec, whole, bootstrap_rng(spec.seed))


def run_chunks(
    spec: ProbeSpec,
    networks: range,
    *,
    threads: int | None = None,
) -> list[ChunkMeasurement]:
    """Make and measure the chunks of ``networks`` on a thread pool, in order.

    Chunk size and worker count follow the memory budget
    (:func:`depthlab.jobs.memory.plan_chunks`); BLAS runs one thread per worker.

    Threads: the whole pool runs inside
    ``depthlab.backend.limit_threads(spec.backend, 1)``, which pins numpy's BLAS
    and, for ``probe.backend=torch``, torch's intra-op threads to one. With W
    workers, W products then run at once, each on its own worker's thread
    (numpy and torch release the GIL while they multiply), never W x k threads
    on W cores; one worker alone also runs its products on one thread. The
    setting is process-wide and restored when the pool is done.
    """
    threads = threads or spec.threads or default_threads()
    size, workers = memory.plan_chunks(
        job_shape(spec), len(networks), threads, spec.memory_gb
    )
    # With several workers the spectra networks go one a chunk (shared out);
    # alone, they stay in one stack (fewer calls).
    alone = _spectra_networks(spec) if workers > 1 else 0
    chunks = chunk_ranges(networks, size, alone)

    def task(part: range) -> ChunkMeasurement:
        return measure_chunk(make_chunk(spec, part), spec)

    with limit_threads(spec.backend, 1):
        if workers <= 1:
            return [task(part) for part in chunks]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            try:
                return list(pool.map(task, chunks))
            except BaseException:  # Ctrl-C, SIGTERM, an error: start no more
                pool.shutdown(wait=False, cancel_futures=True)
                raise


def _spectra_networks(spec: ProbeSpec) -> int:
    """Networks 0..P'-1 carry the spectra pairs (none without spectra)."""
    net_of, _ = spectra_pairs(spec)
    return int(net_of.max()) + 1 if len(net_of) and spectra_layers(spec) else 0


def chunk_ranges(networks: range, size: int, alone: int = 0) -> list[range]:
    """``networks`` cut into chunks of ``size``, networks below ``alone`` one a chunk.

    The networks with spectra pairs (the costliest work) go first and each on
    its own, so that the workers share them.
    """
    start, stop = networks.start, networks.stop
    first = min(max(alone, start), stop)
    single = [range(k, k + 1) for k in range(start, first)]
    rest = [range(a, min(a + size, stop)) for a in range(first, stop, size)]
    return single + rest


def networks_for(err: float, target: float, used: int, limit: int) -> int:
    """How many networks should reach ``target`` from ``err`` with ``used``.

    The error of the median falls as 1/sqrt(K): K' = K (err/target)^2, 10% more
    for the noise of the bootstrap, at least one more network, at most ``limit``.
    """
    wanted = math.ceil(1.1 * used * (err / target) ** 2)
    return min(limit, max(used + 1, wanted))
