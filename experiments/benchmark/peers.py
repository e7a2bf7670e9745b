"""The input gradient of a batch in PyTorch and JAX, on depthlab's weights.

The network is a^[l] = tanh(W^[l] a^[l-1] + b^[l]) with n_L = 1 (Higham & Higham
(3.2)); every variant returns grad a^[L](x) for each row x of ``X``, shape
``(B, n_1)``. A peer that is not installed gives ``None`` and a message.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

Variant = Callable[[], Any]


def torch_available() -> str | None:
    """None if torch imports, else why not."""
    try:
        import torch  # noqa: F401
    except ImportError as err:
        return f"torch is not installed ({err}); pip install torch==2.13.0"
    return None


def jax_available() -> str | None:
    """None if jax imports, else why not."""
    try:
        import jax  # noqa: F401
    except ImportError as err:
        return f"jax is not installed ({err}); pip install jax"
    return None


ALL_CPUS: set[int] | None = None
"""The CPUs this process could use before :func:`pin` (for subprocesses)."""


def pin(threads: int | None) -> None:
    """Give this process ``threads`` CPUs and ask XLA for as many threads.

    Call it before jax is imported (XLA sizes its thread pool and reads its
    flags then). The CPU affinity is what makes a one-thread comparison fair:
    XLA's CPU client runs some programs on more than one thread whatever its
    flags say (measured here: 1.7 CPU-seconds per second for a jitted pair of
    1024 x 512 x 512 products with ``--xla_cpu_multi_thread_eigen=false``).
    """
    global ALL_CPUS
    if threads is None:
        return
    if hasattr(os, "sched_setaffinity"):
        ALL_CPUS = set(os.sched_getaffinity(0))
        os.sched_setaffinity(0, sorted(ALL_CPUS)[:threads])
    os.environ.setdefault(
        "XLA_FLAGS",
        f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} "
        f"intra_op_parallelism_threads={threads}",
    )


def unpin() -> None:
    """Give the calling process all CPUs again (for the sweep's subprocesses)."""
    if ALL_CPUS is not None:
        os.sched_setaffinity(0, ALL_CPUS)


def limit_threads(threads: int | None) -> None:
    """Give numpy's and scipy's BLAS and torch ``threads`` threads each.

    Call it after every library that brings its own BLAS is imported (numpy and
    scipy each load an OpenBLAS; threadpoolctl only sees loaded ones). ``None``
    leaves each library's default: one thread per core.
    """
    if threads is None:
        return
    import scipy.linalg  # noqa: F401  (loads scipy's OpenBLAS)
    from threadpoolctl import threadpool_limits

    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    threadpool_limits(limits=threads)


def torch_variants(
    weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], X: np.ndarray
) -> dict[str, Variant]:
    """``torch vmap(grad)`` and ``torch sum trick`` on the same weights (no copies)."""
    import torch
    import torch.nn.functional as F

    Ws = [torch.from_numpy(np.ascontiguousarray(w)) for w in weights]
    bs = [torch.from_numpy(np.ascontiguousarray(b)) for b in biases]
    Xt = torch.from_numpy(np.ascontiguousarray(X))

    def f_single(x: torch.Tensor) -> torch.Tensor:
        a = x
        for W, b in zip(Ws, bs, strict=True):
            a = torch.tanh(F.linear(a, W, b))
        return a[0]

    per_example = torch.func.vmap(torch.func.grad(f_single))

    def vmap_grad() -> np.ndarray:
        return per_example(Xt).numpy()

    def sum_trick() -> np.ndarray:
        x = Xt.detach().requires_grad_(True)
        a = x
        for W, b in zip(Ws, bs, strict=True):
            a = torch.tanh(F.linear(a, W, b))
        (g,) = torch.autograd.grad(a.sum(), x)
        return g.numpy()

    return {"torch vmap(grad)": vmap_grad, "torch sum trick": sum_trick}


def jax_variants(
    weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], X: np.ndarray
) -> dict[str, Variant]:
    """``jax jit(vmap(grad))``; the weights are arguments, not compiled constants."""
    import jax
    import jax.numpy as jnp

    if X.dtype == np.float64:
        jax.config.update("jax_enable_x64", True)
    params = [
        (jnp.asarray(w), jnp.asarray(b)) for w, b in zip(weights, biases, strict=True)
    ]
    Xj = jnp.asarray(X)

    def f(params: Any, x: Any) -> Any:
        a = x
        for W, b in params:
            a = jnp.tanh(W @ a + b)
        return a[0]

    g = jax.jit(jax.vmap(jax.grad(f, argnums=1), in_axes=(None, 0)))

    def jit_vmap_grad() -> Any:
        return g(params, Xj).block_until_ready()

    return {"jax jit(vmap(grad))": jit_vmap_grad}


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """``n`` CPUs (affinity), and ``n`` threads for numpy's and scipy's BLAS and torch.

    For a table that compares libraries at more than one thread count in one
    run; the process's affinity and thread counts are restored afterwards.
    """
    from threadpoolctl import threadpool_limits

    saved_affinity = (
        os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    )
    cpus = sorted(ALL_CPUS if ALL_CPUS is not None else (saved_affinity or []))
    try:
        import torch

        saved_torch: int | None = torch.get_num_threads()
        torch.set_num_threads(n)
    except ImportError:
        saved_torch = None
    try:
        if saved_affinity is not None and cpus:
            os.sched_setaffinity(0, cpus[:n])
        with threadpool_limits(limits=n):
            yield
    finally:
        if saved_affinity is not None:
            os.sched_setaffinity(0, saved_affinity)
        if saved_torch is not None:
            import torch

            torch.set_num_threads(saved_torch)
