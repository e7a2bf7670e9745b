"""The input-gradient algorithm, backprop norms and weight gradients.

The input gradient grad a^[L](x) = D^[L] W^[L] D^[L-1] W^[L-1] ... D^[2] W^[2] is
computed as the paper's reader derived it: a forward pass that stores
sigma'(z^[l]), then a backward pass ``G <- (G * sigma'(z^[l])) @ W^[l]`` from
l = L down to 2 that never forms the diagonal matrix D^[l]. Its cost is about two
forward passes. Internally the inputs are columns, as in the paper (z^[l] =
W^[l] a^[l-1] + b^[l] for all inputs at once is ``W @ A``), so that no matrix
product has a transposed right operand: numpy's stacked products ``A @ W.T`` are
up to 2x slower for the small matrices of a stack of networks.

Everything is batched over inputs (rows of ``X``) and over a stack of networks
(leading dimensions of the weights, see :class:`depthlab.network.Network`).

Residual networks and layer normalization (``Network.plain_mlp`` is False) take
the same public functions through a second path, the per-layer products of
:mod:`depthlab.blocks` (G <- G J^[l] with J^[l] never formed).

Speed (issue 9, measured in experiments/benchmark): the kernel is bound by its
matrix products (numpy's OpenBLAS: 80-100% of the time at n = 512). Three
choices follow the measurements: the products write into two buffers that take
turns (no allocation per layer); a single float64 network of width >= 256 with
>= 64 inputs keeps its inputs as rows (``A @ W^T``, ``G @ W``: OpenBLAS's
float64 kernels were 20% faster that way at B = 64); and when numpy's BLAS may
use k > 1 threads, the inputs are split over k threads with BLAS at one thread
each (the elementwise passes, one-threaded in numpy, then run in parallel too).
Under a parallel probe, whose workers pin BLAS to one thread, nothing is split.

Backends: ``input_gradient(net, X, backend="torch")`` (and
:func:`backprop_log10_norms`) does the passes' matrix products with torch's BLAS
instead of numpy's (:mod:`depthlab.backend`: zero-copy tensors, results written
into the same numpy buffers; for one network with its inputs as rows the
elementwise passes run in torch too); the default ``"numpy"`` gives the numbers
it gave before, bit for bit.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, overload

import numpy as np

from depthlab import backend as _backend
from depthlab import blocks
from depthlab.backend import (
    Backend,
    MatMul,
    is_torch,
    limit_threads,
    matmul_for,
    numpy_matmul,
    threads,
)
from depthlab.network import ForwardPass, Network

Array = np.ndarray


NET_AND_INPUTS_DOC = """net : Network
        A network, or a stack of networks of equal shape.
    X : ndarray, shape (B, n_1) or (n_1,); for a stack also (K, B, n_1)
        Inputs x = a^[1]."""
"""The parameters ``net`` and ``X`` of the core's per-input functions (here
and in :mod:`depthlab.spectra`), as their docstrings say them."""

_BACKEND_DOC = """backend : {"numpy", "torch"}, default "numpy"
        Whose BLAS does the matrix products (:mod:`depthlab.backend`): numpy's
        (the same numbers as ever) or torch's on the same memory (equal to
        rounding, :data:`depthlab.backend.TOLERANCE`)."""


def shared_parameters(fn: Callable) -> Callable:
    """Put the shared parameter docs into ``fn``'s docstring.

    ``{net_and_inputs}`` becomes :data:`NET_AND_INPUTS_DOC` and ``{backend}``
    the ``backend`` parameter's doc (docstrings stripped by ``python -OO`` stay
    None).
    """
    if fn.__doc__:
        fn.__doc__ = fn.__doc__.replace("{net_and_inputs}", NET_AND_INPUTS_DOC).replace(
            "{backend}", _BACKEND_DOC
        )
    return fn


def _transpose(w: Array) -> Array:
    return np.swapaxes(w, -1, -2)


_GROUP_BYTES = 1 << 18
"""A stack of networks is processed in groups of networks whose per-layer arrays
take at most this many bytes each (256 KiB: the few arrays a layer works on then
stay in a core's L2 cache). At large batches the whole stack's arrays do not,
and every elementwise pass streams them from memory: 1.2-2x slower than in
groups (width 64: 32 networks of 256 inputs, 8 networks of 1024 inputs)."""


def _in_groups(fn: Callable[[Network, Array], Array], net: Network, X: Array) -> Array:
    """``fn(net, X)`` for a stack of shape (K,), one group of networks at a time.

    ``fn`` returns an array whose first axis is the stack's. A single network,
    a stack of another shape, inputs with more leading axes than the stack, or
    a stack whose arrays are small, is passed on whole.
    """
    if len(net.stack_shape) != 1:
        return fn(net, X)
    X = net.as_input(X)
    if X.ndim > 3:
        return fn(net, X)
    size = net.stack_shape[0]
    per_net = max(net.widths) * net.widths[-1] * X.shape[-2] * X.itemsize
    group = max(1, _GROUP_BYTES // per_net)
    if group >= size:
        return fn(net, X)
    shared = X.ndim < 3 or X.shape[-3] == 1
    parts = []
    for start in range(0, size, group):
        part = slice(start, start + group)
        sub = net.with_parameters(
            [w[part] for w in net.weights], [b[part] for b in net.biases]
        )
        parts.append(fn(sub, X if shared else X[..., part, :, :]))
    return np.concatenate(parts)


_MIN_PART = 32
"""The fewest inputs per thread in :func:`_in_parts`."""


def _in_parts(
    fn: Callable[[Network, Array], Array],
    net: Network,
    X: Array,
    axis: int,
    backend: str = "numpy",
) -> Array:
    """``fn(net, X)`` with the inputs split over the threads the backend is allowed.

    When the backend's products may use k > 1 threads
    (:func:`depthlab.backend.threads`: numpy's BLAS, or torch's intra-op
    threads) and there are at least ``2 * _MIN_PART`` inputs, the inputs (axis
    -2 of ``X``) are split into up to k parts that run at once in k threads,
    with BLAS (and torch) pinned to one thread for the duration (process-wide):
    numpy and torch release the GIL in their matrix products, and numpy in its
    ufuncs, so the elementwise passes, which numpy runs on one thread, are
    parallel too, and no matrix product waits for another thread. Each input's
    numbers are those of ``fn`` on that input alone (the same operations, on
    fewer columns). With one thread (a worker of a parallel probe), ``fn`` runs
    as it is. ``axis`` is the inputs' axis in ``fn``'s result.
    """
    X = net.as_input(X)
    batch = X.shape[-2]
    if batch < 2 * _MIN_PART:
        return fn(net, X)
    parts = min(threads(backend), batch // _MIN_PART)
    if parts < 2:
        return fn(net, X)
    from concurrent.futures import ThreadPoolExecutor

    bounds = np.linspace(0, batch, parts + 1).astype(int)
    pieces = [X[..., lo:hi, :] for lo, hi in itertools.pairwise(bounds)]
    with limit_threads(backend, 1), ThreadPoolExecutor(parts) as pool:
        results = list(pool.map(lambda x: fn(net, x), pieces))
    return np.concatenate(results, axis=axis)


@dataclass(frozen=True)
class HiddenForward:
    """The forward pass of a plain MLP through its layers 2..``layer`` with the
    inputs as columns: sigma'(z^[l]) for l = 2..``layer`` and a^[layer]
    (read-only arrays). A network with the same layers 2..``layer`` and the
    same inputs (one of another depth) can go on from it
    (:func:`backprop_log10_norms`' ``start``)."""

    layer: int
    derivatives: tuple[Array, ...]
    activation: Array

    @property
    def nbytes(self) -> int:
        """The bytes its arrays hold."""
        return self.activation.nbytes + sum(d.nbytes for d in self.derivatives)


_SMALL_LAYER = 4096
"""Up to this many numbers per layer (over inputs and networks), sigma' of all
hidden layers is computed in one call: for small arrays the cost of a call
(~3 µs) is most of the work (1.2-1.3x faster at one input)."""


def _derivatives(
    net: Network,
    X: Array,
    output: list[Array] | None = None,
    *,
    rows: bool = False,
    mm: MatMul = numpy_matmul,
    start: HiddenForward | None = None,
    forwards: dict[int, HiddenForward] | None = None,
) -> list[Array]:
    """sigma'(z^[l]) for l = 2..L, each of shape ``(..., n_l, B)`` (``(..., B, n_l)``
    with ``rows=True``).

    The forward pass (3.2) with the inputs as columns, as in the paper:
    z^[l] = W^[l] a^[l-1] + b^[l] for all B inputs is one product ``W @ A`` per
    network with no transposed operand (numpy's stacked products ``A @ W.T``
    are up to 2x slower for the small matrices of a stack of networks). With
    ``rows=True`` the inputs stay rows, ``A @ W^T`` (see :func:`_use_rows`).
    Only sigma'(z^[l]) is kept; a^[L], shape ``(..., n_L, B)`` (rows:
    ``(..., B, n_L)``), is computed only if a list ``output`` is given, and
    appended to it. ``mm`` does the products (:mod:`depthlab.backend`).
    The layer-by-layer pass with the inputs as columns goes on from ``start``
    and records the :class:`HiddenForward` of the hidden layers that are keys
    of ``forwards``;
    the other kernels compute the whole pass and record nothing (the same
    numbers either way).
    """
    if rows:
        a = np.ascontiguousarray(net.as_input(X))
        return _forward(net, a, output, lambda w, a: mm(a, _transpose(w), None), -2)
    a = np.ascontiguousarray(_transpose(net.as_input(X)))
    weights, biases, sigmas = net.weights, net.biases, net.sigmas
    hidden = len(weights) - 1
    lead = np.broadcast_shapes(weights[0].shape[:-2], a.shape[:-2])
    size = int(np.prod(lead)) * net.widths[1] * a.shape[-1]
    if hidden > 1 and size <= _SMALL_LAYER and len(set(net.widths[1:-1])) == 1:
        # The hidden layers' z^[l] side by side, then one call of sigma'.
        zs = np.empty((hidden, *lead, net.widths[1], a.shape[-1]), dtype=net.dtype)
        for i in range(hidden):
            z = mm(weights[i], a, zs[i])
            z += biases[i][..., :, None]
            a = sigmas[i].fn(z)
        z = mm(weights[-1], a, None)
        z += biases[-1][..., :, None]
        if output is not None:
            output.append(sigmas[-1].fn(z))
        return [*sigmas[0].derivative(zs), sigmas[-1].derivative(z)]
    return _forward(net, a, output, lambda w, a: mm(w, a, None), -1, start, forwards)


def _forward(
    net: Network,
    a: Array,
    output: list[Array] | None,
    product: Callable[[Array, Array], Array],
    axis: int,
    start: HiddenForward | None = None,
    forwards: dict[int, HiddenForward] | None = None,
) -> list[Array]:
    """The forward pass of :func:`_derivatives` from a^[1] = ``a``, one layer at a
    time: z^[l] = ``product(W^[l], a^[l-1])`` + b^[l], the bias along the
    neurons' axis ``axis`` of z (-1: inputs as columns, -2: as rows); from
    ``start`` (a^[m] and sigma' of layers 2..m) on, if given. The
    :class:`HiddenForward` of each hidden layer that is a key of ``forwards``
    goes into it."""
    hidden = len(net.weights) - 1
    ds = [] if start is None else list(start.derivatives)
    a = a if start is None else start.activation
    for i in range(len(ds), len(net.weights)):
        w, b, sigma = net.weights[i], net.biases[i], net.sigmas[i]
        z = product(w, a)
        z += np.expand_dims(b, axis)
        if i < hidden:
            a = sigma.fn(z)
        elif output is not None:
            output.append(sigma.fn(z))
        ds.append(sigma.derivative(z))
        if forwards is not None and i < hidden and i + 2 in forwards:
            for kept in (a, ds[-1]):
                kept.flags.writeable = False  # handed to later passes
            forwards[i + 2] = HiddenForward(i + 2, tuple(ds), a)
    return ds


_ROWS_MIN_BATCH = 64
_ROWS_MIN_WIDTH = 256
"""A single float64 network with at least this many inputs and this width keeps
the inputs as rows (``A @ W^T`` forward, ``G @ W`` backward): OpenBLAS 0.3.31's
float64 kernels were 9-25% faster that way at n = 512, B = 64 (benchmark, one
thread), while float32 was 15% faster with the inputs as columns. With the
torch backend a single network of this width keeps its inputs as rows in both
dtypes and at any batch (the layouts of torch's own ``F.linear``): MKL's
products made the gradient 1.1-1.4x faster that way at n = 512, L = 50,
B in {8, 32, 64} (thread CPU time, one thread; equal at B = 1024)."""


def _use_rows(net: Network, X: Array, mm: MatMul = numpy_matmul) -> bool:
    """Whether the n_L = 1 kernels keep the inputs as rows (see ``_ROWS_MIN_BATCH``)."""
    numpy = mm is numpy_matmul
    return (
        (net.dtype == np.float64 or not numpy)
        and not net.stack_shape
        and net.widths[-1] == 1
        and np.ndim(X) >= 2
        and (np.shape(X)[-2] >= _ROWS_MIN_BATCH or not numpy)
        and min(net.widths[:-1]) >= _ROWS_MIN_WIDTH
    )


def _torch_derivatives_rows(
    net: Network, X: Array, output: list[Array] | None = None
) -> list:
    """:func:`_derivatives` with ``rows=True`` for the torch backend, as torch
    tensors: products and elementwise passes in torch
    (:func:`depthlab.backend.torch_forward_rows`). a^[L] is appended to
    ``output`` with shape ``(n_L, B)``, as the columns layout gives it."""
    rows_out: list[Array] = []
    ds = _backend.torch_forward_rows(
        net.weights,
        net.biases,
        net.sigmas,
        net.as_input(X),
        None if output is None else rows_out,
    )
    if output is not None:
        output.append(_transpose(rows_out[0]))
    return ds


def _torch_rows(net: Network, X: Array, mm: MatMul) -> bool:
    """Whether the torch backend's own rows kernel takes these inputs: the
    layout of :func:`_use_rows`, one matrix of inputs (B, n_1)."""
    return is_torch(mm) and np.ndim(X) == 2 and _use_rows(net, X, mm)


def _matmul(mm: MatMul, a: Array, b: Array, spare: Array | None) -> Array:
    """``a @ b`` by ``mm``, written into ``spare`` when it has the result's shape
    and dtype."""
    shape = (*np.broadcast_shapes(a.shape[:-2], b.shape[:-2]), a.shape[-2], b.shape[-1])
    if (
        spare is not None
        and spare.shape == shape
        and spare.dtype == np.result_type(a, b)
        and spare.flags.c_contiguous
    ):
        return mm(a, b, spare)
    return mm(a, b, None)


def _seed(net: Network, ds: list[Array]) -> Array:
    """d a^[L] / d a^[L-1] = D^[L] W^[L], shape ``(..., B, n_L, n_{L-1})``."""
    d = ds[-1].swapaxes(-1, -2)
    return d[..., :, None] * net.weights[-1][..., None, :, :]


def _step(
    net: Network, ds: list[Array], g: Array, i: int, mm: MatMul = numpy_matmul
) -> Array:
    """(g D^[l]) W^[l] for l = i + 2: from d a^[L]/d a^[l] to d a^[L]/d a^[l-1].

    ``g`` has shape ``(..., B, n_L, n_l)`` and may be overwritten. The product
    with W^[l] is one matrix product per network, with the B * n_L rows of all
    inputs stacked, not one small product per input.
    """
    g *= ds[i].swapaxes(-1, -2)[..., None, :]
    *lead, batch, n_out, n_l = g.shape
    w = net.weights[i]
    return mm(g.reshape(*lead, batch * n_out, n_l), w, None).reshape(
        *lead, batch, n_out, w.shape[-1]
    )


@shared_parameters
def input_gradient(net: Network, X: Array, *, backend: Backend = "numpy") -> Array:
    """The gradient of the network's output with respect to its input.

    Parameters
    ----------
    {net_and_inputs}
    {backend}

    Returns
    -------
    ndarray
        grad a^[L](x) for every input: shape ``(..., B, n_1)`` when n_L = 1, and
        the full Jacobian d a^[L] / d x of shape ``(..., B, n_L, n_1)`` when
        n_L > 1. A single input vector gives a single row ``(..., n_1)`` (or
        ``(..., n_L, n_1)``), where ``...`` is the stack shape. The dtype is the
        network's.

    Notes
    -----
    Higham & Higham (2019), (3.1)-(3.2) and (5.2): by the chain rule
    grad a^[L](x) = D^[L] W^[L] ... D^[2] W^[2], D^[l] = diag(sigma'(z^[l])).
    For n_L = 1 the gradients of all B inputs are kept as the columns of one
    matrix G^T per network: left-multiplication by D^[l] is an elementwise
    product of the rows of G^T with sigma'(z^[l]), and the product with W^[l]
    is one matrix product W^[l]^T G^T per layer (for n_L > 1, the B * n_L rows
    of G are multiplied by W^[l] at once). The result overflows or underflows
    where the gradient does; :func:`backprop_log10_norms` gives its norm at any
    scale.

    For a resnet or a network with layer normalization the backward pass is
    G <- G J^[l] with the per-layer products of :mod:`depthlab.blocks`
    (J^[l] = I + alpha W^[l] D^[l] (J_LN) for a block).

    Examples
    --------
    >>> import numpy as np
    >>> from depthlab import init_network
    >>> net = init_network([3, 5, 1], activation="tanh", init="gaussian",
    ...                    sigma_w=1.0, sigma_b=0.1, rng=np.random.default_rng(0))
    >>> input_gradient(net, np.ones(3)).shape
    (3,)
    >>> input_gradient(net, np.ones((4, 3))).shape
    (4, 3)
    """
    single = np.ndim(X) == 1
    inner = _input_gradient if net.plain_mlp else _layers_input_gradient
    inner = functools.partial(inner, mm=matmul_for(backend))
    g = _in_parts(
        lambda net, X: _in_groups(inner, net, X),
        net,
        X,
        -2 if net.widths[-1] == 1 else -3,
        backend,
    )
    if single:
        g = g[..., 0, :] if net.widths[-1] == 1 else g[..., 0, :, :]
    return g


def _input_gradient(net: Network, X: Array, mm: MatMul = numpy_matmul) -> Array:
    """:func:`input_gradient` for inputs of shape ``(..., B, n_1)``, products by
    ``mm``."""
    if net.widths[-1] == 1:
        # The common case, with less bookkeeping per layer: the gradients of
        # all inputs are the columns of one (n_l, B) matrix per network (or
        # its rows, see _use_rows). Two buffers take turns as the products'
        # outputs.
        if _torch_rows(net, X, mm):
            return _backend.torch_gradient_rows(
                net.weights, _torch_derivatives_rows(net, X)
            )
        rows = _use_rows(net, X, mm)
        ds = _derivatives(net, X, rows=rows, mm=mm)
        weights, spare = net.weights, None
        if rows:
            g = ds[-1] * weights[-1]
            for i in range(len(ds) - 2, -1, -1):
                g *= ds[i]
                g, spare = _matmul(mm, g, weights[i], spare), g
            return g
        g = _transpose(weights[-1]) * ds[-1]
        for i in range(len(ds) - 2, -1, -1):
            g *= ds[i]
            g, spare = _matmul(mm, _transpose(weights[i]), g, spare), g
        g = np.ascontiguousarray(_transpose(g))  # (..., B, n_1)
    else:
        ds = _derivatives(net, X, mm=mm)
        g = _seed(net, ds)
        for i in range(len(ds) - 2, -1, -1):
            g = _step(net, ds, g, i, mm)
    return g


@overload
def backprop_log10_norms(
    net: Network,
    X: Array,
    *,
    return_outputs: Literal[False] = False,
    backend: Backend = "numpy",
    start: HiddenForward | None = None,
    forwards: dict[int, HiddenForward] | None = None,
) -> Array: ...


@overload
def backprop_log10_norms(
    net: Network,
    X: Array,
    *,
    return_outputs: Literal[True],
    backend: Backend = "numpy",
    start: HiddenForward | None = None,
    forwards: dict[int, HiddenForward] | None = None,
) -> tuple[Array, Array]: ...


@shared_parameters
def backprop_log10_norms(
    net: Network,
    X: Array,
    *,
    return_outputs: bool = False,
    backend: Backend = "numpy",
    start: HiddenForward | None = None,
    forwards: dict[int, HiddenForward] | None = None,
) -> Array | tuple[Array, Array]:
    """log10 of the backprop norms || d a^[L] / d a^[l] ||, l = 1..L-1.

    Parameters
    ----------
    {net_and_inputs}
    return_outputs : bool, default False
        Also return the outputs a^[L](x), from the same forward pass.
    {backend}
    start : HiddenForward, optional
        The forward pass through layers 2..m that ``forwards`` recorded for a
        network with the same layers 2..m and the same inputs ``X``: the pass
        goes on from it (bitwise the same numbers, without computing layers
        2..m again). Only the numpy kernel that runs the whole stack layer by
        layer with the inputs as columns resumes and records; the others (rows,
        small stacks, torch, other architectures, a stack run in groups or on
        threads) compute the whole pass and record nothing.
    forwards : dict, optional
        The hidden layers (its keys) whose :class:`HiddenForward` to keep:
        each key the pass goes through gets it; the others keep their value.

    Returns
    -------
    ndarray of float64, shape (..., B, L-1)
        Column j holds log10 || d a^[L] / d a^[l] || for layer l = j + 1; column
        0 is log10 of the gradient norm || grad a^[L](x) ||. For n_L > 1 the norm
        is the Frobenius norm. A single input vector gives shape ``(..., L-1)``.
        A gradient that is exactly zero (e.g. every ReLU of a layer inactive)
        gives -inf, with no warning.
    ndarray, shape (..., B, n_L), in the network's dtype
        Only with ``return_outputs=True``: a^[L](x), equal to ``net(X)`` up to
        rounding (the products are taken in another order). A single input
        vector gives shape ``(..., n_L)``.

    Notes
    -----
    The backward pass of :func:`input_gradient` with a running log scale: after
    every layer G is divided by its norm and log10 of the norm is accumulated
    (in float64), so gradients of 1e-400 or 1e+400 come out as -400 and +400,
    with no underflow, overflow or floating-point warning. Norms are computed
    without squaring tiny or huge numbers, so a single layer may scale the
    gradient by any factor the dtype can hold. The forward pass is the
    network's own: it must not overflow.

    Examples
    --------
    >>> import numpy as np
    >>> from depthlab import Network
    >>> w = [0.1 * np.eye(2)] * 400 + [np.array([[0.1, 0.0]])]
    >>> net = Network(w, [np.zeros(2)] * 400 + [np.zeros(1)], "linear")
    >>> backprop_log10_norms(net, np.ones(2))[[0, -1]]
    array([-401.,   -1.])
    """
    single = np.ndim(X) == 1
    if not net.plain_mlp:
        fn = _layers_backprop_and_outputs if return_outputs else _layers_backprop
    elif return_outputs:
        fn = _backprop_log10_norms_and_outputs
    else:
        fn = _backprop_log10_norms
    fn = functools.partial(fn, mm=matmul_for(backend))
    if net.plain_mlp and (start is not None or forwards is not None):
        whole = net.as_input(X).shape

        def resumable(n: Network, x: Array) -> Array:
            if n is net and x.shape == whole:  # not in groups nor parts
                return fn(n, x, start=start, forwards=forwards)
            return fn(n, x)

        out = _in_parts(lambda n, x: _in_groups(resumable, n, x), net, X, -2, backend)
    else:
        out = _in_parts(lambda n, x: _in_groups(fn, n, x), net, X, -2, backend)
    if single:
        out = out[..., 0, :]
    if not return_outputs:
        return out
    n_layers = net.depth - 1
    return out[..., :n_layers], out[..., n_layers:].astype(net.dtype)


def _backprop_log10_norms_and_outputs(
    net: Network, X: Array, mm: MatMul = numpy_matmul, **resume: object
) -> Array:
    """The norms with a^[L] appended as n_L more columns (float64: exact)."""
    output: list[Array] = []
    norms = _backprop_log10_norms(net, X, output, mm, **resume)
    return np.concatenate([norms, _transpose(output[0]).astype(np.float64)], axis=-1)


def _backprop_log10_norms(
    net: Network,
    X: Array,
    output: list[Array] | None = None,
    mm: MatMul = numpy_matmul,
    **resume: object,
) -> Array:
    """:func:`backprop_log10_norms` for inputs of shape ``(..., B, n_1)``;
    ``resume``: ``start`` and ``forwards`` of :func:`_derivatives`."""
    if net.widths[-1] == 1:
        return _backprop_log10_norms_vector(net, X, output, mm, **resume)
    ds = _derivatives(net, X, output, mm=mm, **resume)
    g = _seed(net, ds)
    batch_shape = g.shape[:-2]
    out = np.empty((*batch_shape, net.depth - 1), dtype=np.float64)
    log_scale = np.zeros(batch_shape, dtype=np.float64)
    for i in range(len(ds) - 1, -1, -1):
        # g * 10**log_scale is d a^[L] / d a^[l], l = i + 1 (column i).
        out[..., i] = _normalize(g, log_scale)
        if i:
            g = _step(net, ds, g, i - 1, mm)
    return out


def _backprop_log10_norms_vector(
    net: Network,
    X: Array,
    output: list[Array] | None = None,
    mm: MatMul = numpy_matmul,
    **resume: object,
) -> Array:
    """:func:`_backprop_log10_norms` for n_L = 1, in :func:`_input_gradient`'s layout.

    The gradients of all inputs are the columns of one (n_l, B) matrix per
    network (or its rows, see :func:`_use_rows`); each is normalized as a
    (1, n_l) matrix through a view, by :func:`_normalize`. a^[L] is appended to
    ``output`` with shape ``(..., n_L, B)`` in either layout.
    """
    if _torch_rows(net, X, mm):
        ds = _torch_derivatives_rows(net, X, output)
        return _backend.torch_backprop_rows(net.weights, ds, _normalize)
    rows = _use_rows(net, X, mm)
    out_rows: list[Array] = []
    ds = _derivatives(
        net, X, None if output is None else out_rows, rows=rows, mm=mm, **resume
    )
    if output is not None:
        output.append(out_rows[0] if not rows else _transpose(out_rows[0]))
    weights, spare = net.weights, None
    if rows:
        g = ds[-1] * weights[-1]  # (..., B, n_{L-1})

        def as_matrices(g: Array) -> Array:
            return g[..., :, None, :]

    else:
        g = _transpose(weights[-1]) * ds[-1]  # (..., n_{L-1}, B)

        def as_matrices(g: Array) -> Array:
            return _transpose(g)[..., :, None, :]

    batch_shape = as_matrices(g).shape[:-2]
    out = np.empty((*batch_shape, net.depth - 1), dtype=np.float64)
    log_scale = np.zeros(batch_shape, dtype=np.float64)
    for i in range(len(ds) - 1, -1, -1):
        # g * 10**log_scale is d a^[L] / d a^[l], l = i + 1 (column i).
        out[..., i] = _normalize(as_matrices(g), log_scale)
        if i:
            g *= ds[i - 1]
            if rows:
                g, spare = _matmul(mm, g, weights[i - 1], spare), g
            else:
                g, spare = _matmul(mm, _transpose(weights[i - 1]), g, spare), g
    return out


def _normalize(g: Array, log_scale: Array) -> Array:
    """Divide each G (last two axes of ``g``) by its Frobenius norm, in place.

    Adds log10 of the norms to ``log_scale`` (float64, in place) and returns it,
    with -inf where G is exactly zero. The sum of squares is computed directly
    where it is safely inside the floating-point range; the few G whose sum of
    squares under- or overflows (a layer that scales the gradient by more than
    about 1e-146 or 1e+154 in float64, 1e-15 or 1e+19 in float32) are first
    divided by their largest entry.
    """
    finfo = np.finfo(g.dtype)
    with np.errstate(over="ignore", under="ignore"):
        sq = np.einsum("...ij,...ij->...", g, g)
    unsafe = ~((sq > finfo.tiny / finfo.eps) & (sq < finfo.max))
    zero = np.zeros(sq.shape, dtype=bool)
    if unsafe.any():
        rows = g[unsafe]
        peak = np.max(np.abs(rows), axis=(-2, -1))
        zero[unsafe] = peak == 0
        peak[peak == 0] = 1
        rows /= peak[:, None, None]
        g[unsafe] = rows
        log_scale[unsafe] += np.log10(peak.astype(np.float64))
        sq[unsafe] = np.einsum("...ij,...ij->...", rows, rows)
        sq[zero] = 1
    norm = np.sqrt(sq)
    g /= norm[..., None, None]
    log_scale += np.log10(norm.astype(np.float64))
    return np.where(zero, -np.inf, log_scale)


def _output_seed(fp: ForwardPass) -> Array:
    """d a^[L] / d a^[L] = I, one per input: shape ``(..., B, n_L, n_L)``."""
    out = fp.output
    n_out = out.shape[-1]
    return np.broadcast_to(np.eye(n_out, dtype=out.dtype), (*out.shape, n_out))


def _layers_input_gradient(net: Network, X: Array, mm: MatMul = numpy_matmul) -> Array:
    """:func:`input_gradient` of any architecture, by :func:`depthlab.blocks.vjp`."""
    fp = blocks.lean_forward(net, X, matmul=mm)
    g = _output_seed(fp)
    for i in range(len(net.weights) - 1, -1, -1):
        g = blocks.vjp(net, fp, i, g, matmul=mm)
    return g[..., 0, :] if net.widths[-1] == 1 else g


def _layers_backprop(
    net: Network,
    X: Array,
    fp: ForwardPass | None = None,
    mm: MatMul = numpy_matmul,
) -> Array:
    """:func:`backprop_log10_norms` of any architecture (running log scale)."""
    if fp is None:
        fp = blocks.lean_forward(net, X, matmul=mm)
    n_layers = len(net.weights)
    g = blocks.vjp(net, fp, n_layers - 1, _output_seed(fp), matmul=mm)
    batch_shape = g.shape[:-2]
    out = np.empty((*batch_shape, n_layers), dtype=np.float64)
    log_scale = np.zeros(batch_shape, dtype=np.float64)
    for i in range(n_layers - 1, -1, -1):
        # g * 10**log_scale is d a^[L] / d a^[l], l = i + 1 (column i).
        out[..., i] = _normalize(g, log_scale)
        if i:
            g = blocks.vjp(net, fp, i - 1, g, matmul=mm)
    return out


def _layers_backprop_and_outputs(
    net: Network, X: Array, mm: MatMul = numpy_matmul
) -> Array:
    """:func:`_layers_backprop` with a^[L] appended as n_L more columns."""
    fp = blocks.lean_forward(net, X, matmul=mm)
    norms = _layers_backprop(net, X, fp, mm)
    return np.concatenate([norms, fp.output.astype(np.float64)], axis=-1)


# The cost of a mini-batch and its parameter gradients live in depthlab.costs;
# their names stay importable from here.
from depthlab.costs import COSTS, Cost, cost_gradients, cost_value  # noqa: E402

__all__ = [
    "COSTS",
    "Cost",
    "backprop_log10_norms",
    "cost_gradients",
    "cost_value",
    "input_gradient",
]
