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
  (experiments/benchmark/gemm_layouts.py, one thread). Everything else (the
  elementwise passes, sigma', the norms) stays in numpy. The numbers agree
  with numpy's to rounding (another summation order), not bitwise:
  ``tests/test_backend.py`` asserts a relative difference below
  :data:`TOLERANCE` of the gradients and of the backprop log-norms.

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
    """torch, imported on first use; the from_numpy warning on read-only
    arrays (weights may be read-only views) is silenced for this module only:
    the tensors are only read."""
    import torch

    warnings.filterwarnings(
        "ignore",
        message="The given NumPy array is not writable",
        category=UserWarning,
        module=__name__,
    )
    return torch


def _tensor(torch: Any, a: Array, dtype: np.dtype) -> Any:
    """A CPU tensor sharing ``a``'s memory (a copy only for another dtype or
    negative strides, which torch cannot view)."""
    if a.dtype != dtype or any(s < 0 for s in a.strides):
        a = np.ascontiguousarray(a, dtype=dtype)
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
