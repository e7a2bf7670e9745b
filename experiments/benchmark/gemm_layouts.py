"""One product of the kernel's shapes in every layout, numpy vs scipy vs torch.

``python experiments/benchmark/gemm_layouts.py [--batch 64] [--threads 1]``

The kernel of issue 9 (L = 50, n = 512, B inputs) is bound by its matrix
products (`kernel` section: numpy's GEMMs alone take 86-108% of depthlab's
time). This measures one (B x n) by (n x n) product, the kernel's unit, in each
operand order numpy can use (inputs as columns: W A, W^T A; as rows: A W^T,
A W), with scipy's own OpenBLAS build (``scipy.linalg.blas.?gemm`` on
Fortran-ordered views, no copies) and with torch (MKL), on the same threads.
Time is the calling thread's CPU time (``time.thread_time``) at one thread, so
that other processes on the machine change it little (wall time with more
threads, whose work the caller's clock would not see); the median over
interleaved rounds. It prints the BLAS libraries each
package loaded (threadpoolctl).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import scipy.linalg.blas as sblas
from threadpoolctl import threadpool_info, threadpool_limits


def cases(dtype: type, batch: int, n: int) -> dict[str, Callable[[], object]]:
    """The product in each layout and library, on the same random operands."""
    import torch

    rng = np.random.default_rng(0)
    W = rng.standard_normal((n, n)).astype(dtype)
    A = rng.standard_normal((n, batch)).astype(dtype)  # inputs as columns
    Ar = np.ascontiguousarray(A.T)  # inputs as rows
    cols, rows = np.empty((n, batch), dtype), np.empty((batch, n), dtype)
    gemm = sblas.sgemm if dtype == np.float32 else sblas.dgemm
    out_f = np.empty((n, batch), dtype, order="F")
    tW, tA, tAr = torch.from_numpy(W), torch.from_numpy(A), torch.from_numpy(Ar)
    t_rows = torch.empty((batch, n), dtype=tW.dtype)
    t_cols = torch.empty((n, batch), dtype=tW.dtype)
    return {
        "numpy W @ A": lambda: np.matmul(W, A, out=cols),
        "numpy W^T @ A": lambda: np.matmul(W.T, A, out=cols),
        "numpy A @ W^T": lambda: np.matmul(Ar, W.T, out=rows),
        "numpy A @ W": lambda: np.matmul(Ar, W, out=rows),
        # (A W)^T = W^T A^T: both operands Fortran-ordered views, c overwritten
        "scipy gemm (A @ W)": lambda: gemm(1.0, W.T, Ar.T, c=out_f, overwrite_c=1),
        "torch W @ A": lambda: torch.mm(tW, tA, out=t_cols),
        "torch A @ W^T": lambda: torch.mm(tAr, tW.T, out=t_rows),
        "torch A @ W": lambda: torch.mm(tAr, tW, out=t_rows),
    }


def measure(
    fns: dict[str, Callable[[], object]],
    rounds: int,
    reps: int,
    clock: Callable[[], float] = time.thread_time,
) -> dict[str, float]:
    """Median seconds per call of ``clock``, rounds interleaved, order reversed."""
    for fn in fns.values():
        fn()
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(rounds):
        items = list(fns.items())
        if r % 2:
            items.reverse()
        for name, fn in items:
            tic = clock()
            for _ in range(reps):
                fn()
            times[name].append((clock() - tic) / reps)
    return {k: float(np.median(v)) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    for lib in threadpool_info():
        print(
            f"{lib['internal_api']} {lib.get('version')} "
            f"({lib.get('architecture', '-')}): {lib['filepath'].split('/')[-1]}"
        )
    mkl = "MKL" if torch.backends.mkl.is_available() else "not MKL"
    print(f"torch {torch.__version__}: {mkl}")
    flops = 2.0 * args.batch * args.width**2
    one = args.threads == 1
    clock = time.thread_time if one else time.perf_counter
    what = "thread CPU" if one else "wall"
    print(
        f"\nB = {args.batch}, n = {args.width}, {args.threads} thread(s), "
        f"GFLOP/s from the median {what} time:\n"
    )
    print("| product | float32 | float64 |")
    print("| :--- | ---: | ---: |")
    with threadpool_limits(limits=args.threads):
        res = {
            d.__name__: measure(
                cases(d, args.batch, args.width), args.rounds, 30, clock
            )
            for d in (np.float32, np.float64)
        }
    for name in res["float32"]:
        print(
            f"| {name} | {flops / res['float32'][name] / 1e9:.0f} "
            f"| {flops / res['float64'][name] / 1e9:.0f} |"
        )


if __name__ == "__main__":
    main()
