"""The matrix-product backends of the gradient passes: ``numpy`` or ``torch``.

The gradient passes of :mod:`depthlab.gradient` (and the resnet / layer-norm
layers of :mod:`depthlab.blocks` they call) do every matrix product through one
function, ``matmul(a, b, out)``, chosen by a backend name (:func:`matmul_for`):

- ``"numpy"`` (the default): ``np.matmul(a, b, out=out)``, numpy's OpenBLAS:
  the numbers are the same bit for bit as without a backend.
- ``"torch"``: ``torch.matmul`` on CPU tensors that share the numpy arrays'
  memory (``torch.from_numpy``, no copy), written with ``out=`` into a numpy
  buffer: torch's BLAS (MKL on x86 wheels), 1.19x (float32) and 1.31x
  (float64) faster than numpy's OpenBLAS at the kernel's shapes
  (experiments/benchmark/gemm_layouts.py, one thread). For one network whose
  inputs are rows (the layout the torch backend takes at width >= 256, see
  ``depthlab.gradient._use_rows``), the whole pass runs in torch on the same
  memory (:func:`torch_forward_rows`, :func:`torch_gradient_rows`,
  :func:`torch_backprop_rows`): the bias inside the product
  (``torch.addmm``), sigma and sigma' with the exact tails of
  :mod:`depthlab.activations` (:data:`TORCH_ACTIVATIONS`: tanh, sigmoid; the
  other activations take numpy's formulas on the tensors' memory), G *=
  sigma' in place, the norms by ``torch.linalg.vector_norm``, G divided by
  them only when they leave a window (:data:`RESCALE_BOUND`). Elsewhere
  (stacks of networks, inputs as columns, n_L > 1, resnets) the elementwise
  passes stay numpy's. The numbers agree with numpy's to rounding (another
  summation order), not bitwise: ``tests/test_backend.py`` asserts a
  relative difference below :data:`TOLERANCE` of the gradients and of the
  backprop log-norms, and numpy's sigma' relatively in its tails.

torch is imported only when the torch backend is first used, never when
depthlab is imported; :func:`unavailable` says why a backend cannot be used.

Threads. Each backend's products use the threads that backend is allowed:
numpy's BLAS its threadpoolctl limit, torch its intra-op threads
(``torch.get_num_threads()``); :func:`threads` reads that budget and
:func:`limit_threads` sets both at once (BLAS via threadpoolctl and
``torch.set_num_threads``) for a block of code. The probe's engine runs its
chunks on several threads inside ``limit_threads(backend, 1)``: each engine
thread's products then run on that thread alone (torch, like numpy, releases
the GIL while it multiplies, and an intra-op pool of one thread runs an
operation on the calling thread), so W engine threads keep W cores busy and
none waits for another's product. torch's thread setting is process-wide:
two callers that set it to different values at the same time race, which is
why the engine sets it once around its whole pool.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Literal

import numpy as np

Array = np.ndarray
Backend = Literal["numpy", "torch"]
MatMul = Callable[[Array, Array, "Array | None"], Array]
"""``matmul(a, b, out)``: ``a @ b`` (numpy's broadcasting), written into ``out``
(an array of the result's shape and dtype) or, for ``out=None``, into a new
array."""

BACKENDS: tuple[str, ...] = ("numpy", "torch")
"""The backend names, the default first."""

TOLERANCE: dict[str, float] = {"float64": 1e-12, "float32": 1e-5}
"""How far the torch backend's numbers may be from numpy's: the largest
|torch - numpy| over the batch, relative to the largest |numpy| (of the
gradients; of the backprop log10-norms, relative to the largest |log10 norm|
or 1), by dtype. Tested in ``tests/test_backend.py``."""


def numpy_matmul(a: Array, b: Array, out: Array | None = None) -> Array:
    """``np.matmul(a, b, out=out)``: the default backend's product."""
    return np.matmul(a, b, out=out)


def unavailable(backend: str) -> str | None:
    """Why ``backend`` cannot be used here, in a few words; None if it can.

    Examples
    --------
    >>> unavailable("numpy") is None
    True
    >>> unavailable("cupy")
    "unknown backend 'cupy'; valid: numpy, torch"
    """
    if backend not in BACKENDS:
        return f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}"
    if backend == "torch" and not _torch_importable():
        return "torch is not installed: pip install torch"
    return None


def _torch_importable() -> bool:
    """Whether ``import torch`` can succeed (found without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec("torch") is not None
    except ValueError:  # sys.modules["torch"] is None: imports of it fail
        return False


def check_backend(backend: str) -> None:
    """Raise one-line ValueError if ``backend`` is unknown or not installed."""
    why = unavailable(backend)
    if why is not None:
        raise ValueError(f"backend={backend!r} cannot be used: {why}")


def matmul_for(backend: str = "numpy") -> MatMul:
    """The matrix-product function of ``backend`` (see the module's docstring).

    Raises
    ------
    ValueError
        For an unknown backend, or torch when torch is not installed.

    Examples
    --------
    >>> import numpy as np
    >>> mm = matmul_for("numpy")
    >>> mm(np.eye(2), np.ones((2, 3)), None).shape
    (2, 3)
    """
    if backend == "numpy":
        return numpy_matmul
    check_backend(backend)
    return _torch_matmul


@functools.cache
def _torch() -> Any:
    """torch, imported on first use."""
    import torch

    return torch


def _tensor(torch: Any, a: Array, dtype: np.dtype) -> Any:
    """A CPU tensor sharing ``a``'s memory (a copy only for another dtype or
    negative strides, which torch cannot view)."""
    if a.dtype != dtype or any(s < 0 for s in a.strides):
        a = np.ascontiguousarray(a, dtype=dtype)
    if a.flags.writeable:
        return torch.from_numpy(a)
    # Read-only (the layer cache's weights): torch warns that writing the
    # tensor is undefined; these tensors are only read.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        return torch.from_numpy(a)


def _torch_matmul(a: Array, b: Array, out: Array | None = None) -> Array:
    """``a @ b`` by ``torch.matmul``, into ``out`` or a new numpy array.

    Like ``np.matmul``, a given ``out`` of another shape or dtype than the
    result's is a ValueError.
    """
    torch = _torch()
    dtype = np.result_type(a, b)
    shape = (*np.broadcast_shapes(a.shape[:-2], b.shape[:-2]), a.shape[-2], b.shape[-1])
    if out is None:
        out = np.empty(shape, dtype=dtype)
    elif out.shape != shape or out.dtype != dtype:
        raise ValueError(
            f"out has shape {out.shape} and dtype {out.dtype}; the product needs "
            f"{shape} and {dtype}"
        )
    torch.matmul(
        _tensor(torch, a, dtype), _tensor(torch, b, dtype), out=torch.from_numpy(out)
    )
    return out


def is_torch(mm: MatMul) -> bool:
    """Whether ``mm`` is the torch backend's product (:func:`matmul_for`)."""
    return mm is _torch_matmul


def threads(backend: str = "numpy") -> int:
    """The threads ``backend``'s products may use now (its budget).

    numpy: the largest thread count of numpy's BLAS libraries (threadpoolctl);
    torch: ``torch.get_num_threads()``.
    """
    if backend == "torch":
        return int(_torch().get_num_threads())
    controller = blas_controller()
    counts = [
        lib.num_threads for lib in controller.lib_controllers if lib.user_api == "blas"
    ]
    return max(counts, default=1)


@functools.cache
def blas_controller() -> Any:
    """A ``threadpoolctl.ThreadpoolController`` of this process's libraries,
    built once (a scan costs ~1-3 ms)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextlib.contextmanager
def limit_threads(backend: str, limit: int) -> Iterator[None]:
    """Pin numpy's BLAS (and, for torch, torch's intra-op threads) to ``limit``.

    The previous settings come back on exit. Both settings are process-wide:
    use this around a pool of threads, not inside each of them.
    """
    with blas_controller().limit(limits=limit, user_api="blas"):
        if backend != "torch":
            yield
            return
        torch = _torch()
        before = torch.get_num_threads()
        torch.set_num_threads(limit)
        try:
            yield
        finally:
            torch.set_num_threads(before)


# The torch backend's own kernel for one network with its inputs as rows (the
# layout ``_use_rows`` gives the torch backend at width >= 256): the products
# *and* the elementwise passes run in torch on the same memory, with the bias
# added inside the product (``torch.addmm``), sigma and sigma' computed with
# the exact tails of :mod:`depthlab.activations`, G *= sigma' in place, and
# the backprop norms by ``torch.linalg.vector_norm``.

TorchTensor = Any
"""A ``torch.Tensor`` (torch is not imported at module level)."""


def _torch_tanh(torch: Any, z: TorchTensor, a: TorchTensor | None) -> None:
    """a = tanh z (if ``a`` is given); z is overwritten by tanh'(z) = (1 / cosh z)^2.

    The formula of :func:`depthlab.activations._tanh_prime`, with the same
    operations (so the same exact tail, 4 e^{-2|z|}, down to the subnormals;
    not torch's 1 - tanh^2, which is 0 from |z| ~ 19 on in float64). cosh is
    numpy's, on the tensor's memory: torch's is 2-4x slower at one thread
    (37 against 10 us float32, 84 against 24 us float64 at 64 x 512).
    """
    if a is not None:
        torch.tanh(z, out=a)
    c = z.numpy()
    with np.errstate(over="ignore"):
        np.cosh(c, out=c)
    z.reciprocal_()
    z.square_()


def _torch_sigmoid(torch: Any, z: TorchTensor, a: TorchTensor | None) -> None:
    """a = sigmoid z; z is overwritten by sigmoid'(z) = (0.5 / cosh(z / 2))^2
    (:func:`depthlab.activations._sigmoid_prime`'s formula: 0.5 (1 / c) is
    0.5 / c, a power of two)."""
    if a is not None:
        torch.sigmoid(z, out=a)
    z.mul_(0.5)
    c = z.numpy()
    with np.errstate(over="ignore"):
        np.cosh(c, out=c)
    z.reciprocal_()
    z.mul_(0.5)
    z.square_()


TORCH_ACTIVATIONS: dict[str, Callable[[Any, TorchTensor, TorchTensor | None], None]]
TORCH_ACTIVATIONS = {"tanh": _torch_tanh, "sigmoid": _torch_sigmoid}
"""Activations the torch kernel computes in torch (sigma and sigma' together,
in place); the others take numpy's ``fn`` and ``derivative`` on the same
memory."""


def _activate(
    torch: Any, sigma: Any, z: TorchTensor, a: TorchTensor | None
) -> TorchTensor:
    """a = sigma(z) into ``a`` (if given), and sigma'(z) in place of z (returned)."""
    torch_formula = TORCH_ACTIVATIONS.get(sigma.name)
    if torch_formula is not None:
        torch_formula(torch, z, a)
        return z
    zn = z.numpy()
    if a is not None:
        a.copy_(torch.from_numpy(np.asarray(sigma.fn(zn))))
    return torch.from_numpy(np.ascontiguousarray(sigma.derivative(zn), dtype=zn.dtype))


def torch_forward_rows(
    weights: list[Array],
    biases: list[Array],
    sigmas: list[Any],
    X: Array,
    output: list[Array] | None = None,
) -> list[TorchTensor]:
    """sigma'(z^[l]), l = 2..L, of one network with the inputs as rows, in torch.

    ``X`` has shape (B, n_1) in the network's dtype; z^[l] = a^[l-1] W^T + b
    is one ``torch.addmm`` (the bias inside the product), a^[l] goes into one
    of two buffers that take turns, and sigma'(z^[l]) overwrites z^[l]
    (:func:`_activate`). Returns tensors of shape (B, n_l); a^[L], (B, n_L),
    is appended to ``output`` (a numpy array) if a list is given.
    """
    torch = _torch()
    a = torch.from_numpy(np.ascontiguousarray(X))
    spare: list[TorchTensor] = []
    hidden = len(weights) - 1
    ds = []
    for i, (w, b, sigma) in enumerate(zip(weights, biases, sigmas, strict=True)):
        z = torch.addmm(_tensor(torch, b, X.dtype), a, _tensor(torch, w, X.dtype).T)
        if i < hidden or output is not None:
            nxt = spare.pop() if spare and spare[-1].shape == z.shape else None
            nxt = torch.empty_like(z) if nxt is None else nxt
            ds.append(_activate(torch, sigma, z, nxt))
            if i:
                spare.append(a)
            a = nxt
        else:
            ds.append(_activate(torch, sigma, z, None))
    if output is not None:
        output.append(a.numpy())
    return ds


def torch_gradient_rows(weights: list[Array], ds: list[TorchTensor]) -> Array:
    """The input gradients (B, n_1) from :func:`torch_forward_rows`'s sigma'
    (n_L = 1): G = sigma'(z^[L]) W^[L], then G <- (G * sigma'(z^[l])) W^[l]
    in place and into two buffers that take turns."""
    torch = _torch()
    dtype = ds[0].numpy().dtype
    g = ds[-1] * _tensor(torch, weights[-1], dtype)
    spare = None
    for i in range(len(ds) - 2, -1, -1):
        g.mul_(ds[i])
        w = _tensor(torch, weights[i], dtype)
        if spare is None or spare.shape != (g.shape[0], w.shape[1]):
            spare = torch.empty((g.shape[0], w.shape[1]), dtype=g.dtype)
        g, spare = torch.mm(g, w, out=spare), g
    return g.numpy()


RESCALE_BOUND: dict[str, float] = {"float64": 2.0**64, "float32": 2.0**8}
""":func:`torch_backprop_rows` divides G by its norms only when a norm leaves
[1 / bound, bound] (numpy's kernel divides at every layer): between two
divisions the norms are read, not applied, which saves a pass over G per
layer. A layer may then scale the gradient by any factor the dtype can hold
less these few decades (19 of float64's 600, 2.4 of float32's 83)."""


def torch_backprop_rows(
    weights: list[Array],
    ds: list[TorchTensor],
    normalize: Callable[[Array, Array], Array],
) -> Array:
    """log10 || d a^[L] / d a^[l] ||, l = 1..L-1, shape (B, L-1), from
    :func:`torch_forward_rows`'s sigma' (n_L = 1), with a running log scale.

    Each layer's row norms are one ``torch.linalg.vector_norm``; G is divided
    by them only when one leaves the window of :data:`RESCALE_BOUND`. Where a
    norm is not safely inside the floating-point range (its sum of squares
    could under- or overflow, or G is zero), that layer is left to
    ``normalize(g, log_scale)`` (:func:`depthlab.gradient._normalize`: G as
    (B, 1, n_l) matrices, exact at any scale).
    """
    torch = _torch()
    dtype = ds[0].numpy().dtype
    finfo = np.finfo(dtype)
    safe_lo, safe_hi = np.sqrt(finfo.tiny / finfo.eps), np.sqrt(finfo.max)
    bound = RESCALE_BOUND[dtype.name]
    g = ds[-1] * _tensor(torch, weights[-1], dtype)
    batch = g.shape[0]
    out = np.empty((batch, len(ds)), dtype=np.float64)
    norms = torch.empty((len(ds), batch), dtype=g.dtype)
    log_scale = np.zeros(batch, dtype=np.float64)
    pending: list[int] = []  # columns still to be written: log_scale + log10 norm

    def flush() -> None:
        if pending:
            logs = np.log10(norms.numpy()[pending].astype(np.float64))
            out[:, pending] = log_scale[:, None] + logs.T
            pending.clear()

    spare = None
    for i in range(len(ds) - 1, -1, -1):
        # g * 10**log_scale is d a^[L] / d a^[l], l = i + 1 (column i).
        norm = torch.linalg.vector_norm(g, dim=1, out=norms[i])
        low, high = (float(v) for v in torch.aminmax(norm))
        if not (low > safe_lo and high < safe_hi):
            flush()
            out[:, i] = normalize(g.numpy()[:, None, :], log_scale)
        else:
            pending.append(i)
            if not (low > 1 / bound and high < bound):
                flush()
                g.div_(norm[:, None])
                log_scale += np.log10(norm.numpy().astype(np.float64))
        if i:
            g.mul_(ds[i - 1])
            w = _tensor(torch, weights[i - 1], dtype)
            if spare is None or spare.shape != (batch, w.shape[1]):
                spare = torch.empty((batch, w.shape[1]), dtype=g.dtype)
            g, spare = torch.mm(g, w, out=spare), g
    flush()
    return out
