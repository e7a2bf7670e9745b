"""Benchmark sections on the numerical core: kernel, many networks (spectra:
:mod:`spectra_bench`).

Each section returns ``(markdown, data)``; :mod:`run` prints and stores them.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import peers
from common import compare, fmt_ratio, fmt_seconds, markdown_table

import depthlab
from depthlab import Network, backprop_log10_norms, init_network, input_gradient

TOLERANCE = {"float64": 1e-10, "float32": 2e-4}
"""Agreement required of every variant with depthlab in float64 on the same
weights: max |g - g_ref| / max |g_ref| over the batch."""


def _weights(
    n: int, depth: int, rng: np.random.Generator
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """tanh network n_1 = ... = n_{L-1} = n, n_L = 1, sigma_w = 1, sigma_b = 0.1."""
    widths = [n] * (depth - 1) + [1]
    weights = [
        rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)
        for n_in, n_out in itertools.pairwise(widths)
    ]
    biases = [0.1 * rng.standard_normal(w.shape[0]) for w in weights]
    return weights, biases


def tanh_net(widths: list[int], rng: np.random.Generator, **options: Any) -> Network:
    """The benchmark's tanh network: Gaussian init, sigma_w = 1, sigma_b = 0.1."""
    return init_network(
        widths,
        activation="tanh",
        init="gaussian",
        sigma_w=1.0,
        sigma_b=0.1,
        rng=rng,
        **options,
    )


def _gemm_only(weights: list[np.ndarray], X: np.ndarray) -> Any:
    """The kernel's matrix products alone, into preallocated buffers: its bound."""
    B, n = X.shape
    bufs = [np.empty((B, n), X.dtype), np.empty((B, n), X.dtype)]
    square = [w for w in weights if w.shape[0] == w.shape[1] == n]

    def run() -> None:
        a = X
        for i, w in enumerate(square):
            out = bufs[i % 2]
            np.matmul(a, w.T, out=out)
            a = out
        for i, w in enumerate(reversed(square)):
            out = bufs[1 - i % 2]
            np.matmul(a, w, out=out)
            a = out

    return run


def _torch_gemm_only(weights: list[np.ndarray], X: np.ndarray) -> Any:
    """:func:`_gemm_only` with torch's products (``torch.mm`` into buffers): the
    layouts of torch's sum trick (``F.linear``: a W^T forward, g W backward)."""
    import torch

    B, n = X.shape
    Xt = torch.from_numpy(np.ascontiguousarray(X))
    bufs = [torch.empty((B, n), dtype=Xt.dtype), torch.empty((B, n), dtype=Xt.dtype)]
    square = [torch.from_numpy(w) for w in weights if w.shape[0] == w.shape[1] == n]

    def run() -> None:
        a = Xt
        for i, w in enumerate(square):
            a = torch.mm(a, w.T, out=bufs[i % 2])
        for i, w in enumerate(reversed(square)):
            a = torch.mm(a, w, out=bufs[1 - i % 2])

    return run


def _peak(dtype: np.dtype, size: int) -> tuple[Any, float]:
    """A square GEMM of ``size`` and its flop count: the machine's matmul peak."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((size, size)).astype(dtype)
    b = rng.standard_normal((size, size)).astype(dtype)
    c = np.empty_like(a)
    return (lambda: np.matmul(a, b, out=c)), 2.0 * size**3


def _rel_err(got: Any, ref: np.ndarray) -> float:
    got = np.asarray(got, dtype=np.float64).reshape(ref.shape)
    return float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))


def kernel(args: Any) -> tuple[str, dict[str, Any]]:
    """depthlab.input_gradient against torch and JAX, and against the GEMM peak."""
    if args.quick:
        grid = [(1, 10, 128), (64, 10, 128), (1024, 10, 128), (64, 10, 512)]
    else:
        grid = [
            (b, depth, n)
            for n in (128, 512)
            for depth in (10, 50)
            for b in (1, 64, 1024)
        ]
    skipped = []
    have_torch = peers.torch_available() is None
    have_jax = peers.jax_available() is None
    for why in (peers.torch_available(), peers.jax_available()):
        if why:
            skipped.append(why)
            print(f"kernel: skipping a peer: {why}", flush=True)
    peak_size = 512 if args.quick else 1024
    rows = []
    for dtype_name in ("float32", "float64"):
        dtype = np.dtype(dtype_name)
        peak_fn, peak_flops = _peak(dtype, peak_size)
        for b, depth, n in grid:
            rng = np.random.default_rng(depth * 1000 + n + b)
            w64, b64 = _weights(n, depth, rng)
            x64 = rng.standard_normal((b, n))
            ref = input_gradient(Network(w64, b64, "tanh"), x64)
            ws = [w.astype(dtype) for w in w64]
            bs = [v.astype(dtype) for v in b64]
            X = x64.astype(dtype)
            net = Network(ws, bs, "tanh")
            cases: dict[str, Any] = {
                "depthlab": lambda net=net, X=X: input_gradient(net, X)
            }
            if have_torch:
                cases.update(peers.torch_variants(ws, bs, X))
            if have_jax:
                cases.update(peers.jax_variants(ws, bs, X))
            cases["GEMMs alone"] = _gemm_only(ws, X)
            cases["peak GEMM"] = peak_fn
            t = compare(
                cases,
                rounds=5 if args.quick else 7,
                max_total_s=3.0 if args.quick else 10.0,
            )
            errors = {
                name: _rel_err(fn(), ref)
                for name, fn in cases.items()
                if name not in ("GEMMs alone", "peak GEMM")
            }
            flops = 4.0 * b * sum(w.size for w in ws)
            base = t["depthlab"].median
            peak_rate = peak_flops / t["peak GEMM"].median
            peer_names = [
                k for k in cases if k not in ("depthlab", "GEMMs alone", "peak GEMM")
            ]
            fastest = min((t[k].median for k in peer_names), default=float("nan"))
            row = {
                "dtype": dtype_name,
                "B": b,
                "L": depth,
                "n": n,
                "seconds": {k: v.median for k, v in t.items()},
                "spread": {k: v.spread for k, v in t.items()},
                "gflops": flops / base / 1e9,
                "peak_gflops": peak_rate / 1e9,
                "fraction_of_peak": flops / base / peak_rate,
                "gemm_bound": t["GEMMs alone"].median / base,
                "ratios": {k: t[k].median / base for k in peer_names},
                "vs_fastest": fastest / base,
                "max_rel_err": errors,
                "agree": all(e <= TOLERANCE[dtype_name] for e in errors.values()),
            }
            rows.append(row)
            print(
                f"kernel {dtype_name} B={b} L={depth} n={n}: depthlab "
                f"{fmt_seconds(base)}, {row['gflops']:.1f} GFLOP/s "
                f"({100 * row['fraction_of_peak']:.0f}% of peak), vs fastest peer "
                f"{fmt_ratio(row['vs_fastest'])}",
                flush=True,
            )
    peer_cols = []
    if have_torch:
        peer_cols += ["torch vmap(grad)", "torch sum trick"]
    if have_jax:
        peer_cols += ["jax jit(vmap(grad))"]
    header = [
        "dtype",
        "B",
        "L",
        "n",
        "depthlab",
        "GFLOP/s",
        "% of peak",
        "GEMMs alone: % of peak",
        "GEMMs alone / depthlab",
        *[f"{p} / depthlab" for p in peer_cols],
        "fastest peer / depthlab",
        "max rel. err",
    ]
    table_rows = []
    for r in rows:
        table_rows.append(
            [
                r["dtype"],
                r["B"],
                r["L"],
                r["n"],
                fmt_seconds(r["seconds"]["depthlab"]),
                f"{r['gflops']:.1f}",
                f"{100 * r['fraction_of_peak']:.0f}%",
                f"{100 * r['fraction_of_peak'] / r['gemm_bound']:.0f}%",
                f"{100 * r['gemm_bound']:.0f}%",
                *[fmt_ratio(r["ratios"][p]) for p in peer_cols],
                fmt_ratio(r["vs_fastest"]),
                f"{max(r['max_rel_err'].values()):.1e}"
                + ("" if r["agree"] else " (!)"),
            ]
        )
    peaks = {
        d: np.median([r["peak_gflops"] for r in rows if r["dtype"] == d])
        for d in ("float32", "float64")
    }
    md = [
        "Input gradient of a batch of B inputs, tanh, n_1 = ... = n_{L-1} = n, "
        "n_L = 1. Times are medians per call after warm-up, all variants of a row "
        "timed in interleaved rounds; `X / depthlab` is X's time divided by "
        "depthlab's (above 1: depthlab is faster). GFLOP/s counts "
        "4 B sum_l n_l n_{l-1}; `% of peak` divides it by the rate of a "
        f"{peak_size} x {peak_size} numpy GEMM timed in the same rounds (medians "
        f"over rows: {peaks['float32']:.0f} GFLOP/s float32, "
        f"{peaks['float64']:.0f} GFLOP/s float64). `GEMMs alone` runs the same "
        "2(L-2) square matrix products into preallocated buffers, nothing else: "
        "their rate as a % of peak is the ceiling of depthlab's, and their time "
        "divided by depthlab's is the share of depthlab's time that is matrix "
        "products (the rest: elementwise passes, allocation, Python). "
        "Max rel. err: "
        "max |g - g_ref| / max |g_ref| of the worst variant against depthlab in "
        f"float64 (required: {TOLERANCE['float64']:g} in float64, "
        f"{TOLERANCE['float32']:g} in float32; (!) marks a miss).",
        "",
        markdown_table(header, table_rows, align="llrr" + "r" * (len(header) - 4)),
    ]
    md.extend(f"\n*Skipped:* {why}" for why in skipped)
    md.append("")
    md.append(_kernel_targets(rows))
    data: dict[str, Any] = {"rows": rows, "peak_size": peak_size, "skipped": skipped}
    if have_torch:
        torch_md, data["vs_torch"] = _vs_torch(args)
        md += ["", torch_md]
    return "\n".join(md), data


BACKEND_TAGS = {"numpy": "", "torch": ", torch backend"}
"""depthlab's backends (``backend=``) in the against-torch table, and the
suffix of their candidates' names."""


def _vs_torch(args: Any) -> tuple[str, list[dict[str, Any]]]:
    """Issue 9's kernel target: depthlab against torch's sum trick at 1 and 2 threads.

    L = 50, n = 512, tanh, B in {64, 1024}, float32 and float64, the same
    weights; each thread count is set for every library at once
    (:func:`peers.threads`: CPU affinity, BLAS, torch) and all candidates of a
    row are timed in the same interleaved rounds: depthlab with each backend
    of :data:`BACKEND_TAGS` (``backend="numpy"``: OpenBLAS, ``"torch"``: MKL
    on the same arrays), torch's sum trick, and the bare products of each
    library. Each timing run gives one table row per backend. One thread is
    timed in process CPU time (every candidate then runs on the one CPU it is
    pinned to, and other processes change the CPU time of its work little),
    two threads in wall time (what parallel work saves).
    """
    import os
    import time

    depth, n = 50, 512
    thread_counts = [1] if args.quick else [1, 2]
    batches = [64] if args.quick else [64, 1024]
    load_start = os.getloadavg()[0]
    rows = []
    for dtype_name in ("float32", "float64"):
        dtype = np.dtype(dtype_name)
        for b in batches:
            rng = np.random.default_rng(9000 + b)
            w64, b64 = _weights(n, depth, rng)
            ws = [w.astype(dtype) for w in w64]
            bs = [v.astype(dtype) for v in b64]
            X = rng.standard_normal((b, n)).astype(dtype)
            net = Network(ws, bs, "tanh")
            ref = input_gradient(Network(w64, b64, "tanh"), X.astype(np.float64))
            cases: dict[str, Any] = {}
            for backend, tag in BACKEND_TAGS.items():
                cases[f"input_gradient{tag}"] = lambda net=net, X=X, backend=backend: (
                    input_gradient(net, X, backend=backend)
                )
                cases[f"backprop_log10_norms{tag}"] = (
                    lambda net=net, X=X, backend=backend: backprop_log10_norms(
                        net, X, backend=backend
                    )
                )
            cases["torch sum trick"] = peers.torch_variants(ws, bs, X)[
                "torch sum trick"
            ]
            cases["numpy GEMMs alone"] = _gemm_only(ws, X)
            cases["torch GEMMs alone"] = _torch_gemm_only(ws, X)
            err_torch = _rel_err(cases["torch sum trick"](), ref)
            err = {
                backend: _rel_err(cases[f"input_gradient{tag}"](), ref)
                for backend, tag in BACKEND_TAGS.items()
            }
            for threads in thread_counts:
                with peers.threads(threads):
                    t = compare(
                        cases,
                        rounds=3 if args.quick else 5,
                        max_total_s=4.0 if args.quick else 24.0,
                        warmup=1,
                        clock=time.process_time if threads == 1 else time.perf_counter,
                    )
                s = {k: v.median for k, v in t.items()}
                spread = max(v.spread for v in t.values())
                gflops = {
                    k: 2.0 * 2 * (depth - 2) * b * n * n / s[k] / 1e9
                    for k in ("numpy GEMMs alone", "torch GEMMs alone")
                }
                for backend, tag in BACKEND_TAGS.items():
                    grad, norms = (
                        s[f"input_gradient{tag}"],
                        s[f"backprop_log10_norms{tag}"],
                    )
                    rows.append(
                        {
                            "dtype": dtype_name,
                            "B": b,
                            "threads": threads,
                            "clock": "CPU" if threads == 1 else "wall",
                            "backend": backend,
                            "seconds": s,
                            "input_gradient": grad,
                            "backprop_log10_norms": norms,
                            "spread": spread,
                            "torch_vs_input_gradient": s["torch sum trick"] / grad,
                            "torch_vs_backprop": s["torch sum trick"] / norms,
                            "torch_vs_gemms": s["torch sum trick"]
                            / s["numpy GEMMs alone"],
                            "torch_gemms_vs_numpy_gemms": s["torch GEMMs alone"]
                            / s["numpy GEMMs alone"],
                            "gflops": gflops,
                            "max_rel_err": {
                                "depthlab": err[backend],
                                "torch": err_torch,
                            },
                        }
                    )
                print(
                    f"kernel vs torch {dtype_name} B={b} threads={threads}: "
                    + ", ".join(f"{k} {fmt_seconds(v)}" for k, v in s.items()),
                    flush=True,
                )
    load_end = os.getloadavg()[0]
    table = markdown_table(
        [
            "dtype",
            "B",
            "threads",
            "clock",
            "depthlab backend",
            "input_gradient",
            "backprop_log10_norms",
            "torch sum trick",
            "torch / input_gradient",
            "torch / backprop_log10_norms",
            "torch / numpy GEMMs alone",
            "GEMMs alone, numpy / torch (GFLOP/s)",
            "torch GEMMs / numpy GEMMs",
            "spread (IQR / median, worst)",
            "max rel. err vs float64",
        ],
        [
            [
                r["dtype"],
                r["B"],
                r["threads"],
                r["clock"],
                r["backend"],
                fmt_seconds(r["input_gradient"]),
                fmt_seconds(r["backprop_log10_norms"]),
                fmt_seconds(r["seconds"]["torch sum trick"]),
                fmt_ratio(r["torch_vs_input_gradient"]),
                fmt_ratio(r["torch_vs_backprop"]),
                fmt_ratio(r["torch_vs_gemms"]),
                f"{r['gflops']['numpy GEMMs alone']:.0f} / "
                f"{r['gflops']['torch GEMMs alone']:.0f}",
                fmt_ratio(r["torch_gemms_vs_numpy_gemms"]),
                f"{r['spread']:.2f}",
                f"{max(r['max_rel_err'].values()):.1e}",
            ]
            for r in rows
        ],
        align="lrrll" + "r" * 10,
    )
    verdicts = []
    for backend in BACKEND_TAGS:
        mine = [r for r in rows if r["backend"] == backend]
        worst = min(
            min(r["torch_vs_input_gradient"], r["torch_vs_backprop"]) for r in mine
        )
        verdicts.append(
            f'`backend="{backend}"` worst {fmt_ratio(worst)}: '
            f"{'met' if worst >= 1.0 else 'not met'}"
        )
    md = (
        f"Against torch's sum trick (`torch.autograd.grad(f(X).sum(), X)`) on the "
        f"same weights, tanh, L = {depth}, n = {n}, n_L = 1: 1 and 2 threads for "
        "every library (CPU affinity, numpy's and scipy's BLAS via threadpoolctl, "
        "torch.set_num_threads), all candidates timed in the same interleaved "
        "rounds (medians; ratios above 1: depthlab is faster), at 1 thread in "
        "process CPU time (`clock` CPU: little changed by other processes on a "
        "shared machine), at 2 threads in wall time; each timing run "
        'gives two rows, one per depthlab backend (`backend="numpy"`: numpy\'s '
        'OpenBLAS, the default; `backend="torch"`: torch\'s MKL on the same '
        "arrays, `depthlab.backend`), whose torch, GEMM and spread columns are "
        "the same. With k > 1 threads depthlab splits the inputs over k threads "
        "with BLAS and torch at one thread each (`gradient._in_parts`). "
        "`numpy GEMMs alone`: the same 2(L-2) square products "
        "with numpy into preallocated buffers and nothing else; where torch / "
        "numpy GEMMs alone is below 1, torch's whole gradient takes less time "
        "than numpy's matrix products alone, and no code on numpy's matmul "
        "reaches the target. `torch GEMMs alone`: the same products with "
        "`torch.mm` (MKL) into preallocated tensors, in the layouts of torch's "
        "sum trick (`F.linear`: a W^T forward, g W backward); `torch GEMMs / "
        "numpy GEMMs` below 1: MKL's products are faster than OpenBLAS's at "
        f"these shapes. Load average (1 min) {load_start:.1f} at the start of "
        f"this table, {load_end:.1f} at its end.\n\n"
        f"{table}\n\n"
        "Target (issue 9): torch / depthlab >= 1.0 for both functions; "
        + "; ".join(verdicts)
        + "."
    )
    return md, rows


def _kernel_targets(rows: list[dict[str, Any]]) -> str:
    out = []
    for dtype in ("float32", "float64"):
        big = [r for r in rows if r["dtype"] == dtype and r["B"] >= 64]
        one = [r for r in rows if r["dtype"] == dtype and r["B"] == 1]
        if big:
            frac = min(r["fraction_of_peak"] for r in big)
            vs = min(r["vs_fastest"] for r in big)
            out.append(
                [
                    dtype,
                    "B >= 64",
                    f"{100 * frac:.0f}% (>= 70%)",
                    f"{fmt_ratio(vs)} (>= 1.00x)",
                    "met" if frac >= 0.7 and vs >= 1.0 else "not met",
                ]
            )
        if one:
            vs = min(r["vs_fastest"] for r in one)
            out.append(
                [
                    dtype,
                    "B = 1",
                    "-",
                    f"{fmt_ratio(vs)} (>= 0.67x)",
                    "met" if vs >= 1 / 1.5 else "not met",
                ]
            )
    return "Targets (worst row of each group):\n\n" + markdown_table(
        [
            "dtype",
            "batch",
            "worst % of peak",
            "worst fastest peer / depthlab",
            "target",
        ],
        out,
        align="llrrl",
    )


# ---------------------------------------------------------------------------
# Many networks at once


def networks(args: Any) -> tuple[str, dict[str, Any]]:
    """K networks as one stack against a loop over them (width 64, K = 32)."""
    k, width = 32, 64
    grid = (
        [(10, 32)]
        if args.quick
        else [(d, b) for d in (10, 50) for b in (1, 8, 32, 256)]
    )
    rows = []
    for depth, b in grid:
        rng = np.random.default_rng(depth + b)
        stack = tanh_net([width] * (depth - 1) + [1], rng, num_networks=k)
        nets = stack.unstack()
        X = rng.standard_normal((k, b, width))
        for name, fn in (
            ("input_gradient", input_gradient),
            ("backprop_log10_norms", backprop_log10_norms),
        ):
            at_once = fn(stack, X)
            looped = np.stack([fn(net, X[i]) for i, net in enumerate(nets)])
            err = float(np.max(np.abs(at_once - looped)) / np.max(np.abs(looped)))
            t = compare(
                {
                    "stack": lambda fn=fn, stack=stack, X=X: fn(stack, X),
                    "loop": lambda fn=fn, nets=nets, X=X: [
                        fn(net, X[i]) for i, net in enumerate(nets)
                    ],
                },
                rounds=5 if args.quick else 9,
                max_total_s=2.0 if args.quick else 5.0,
            )
            rows.append(
                {
                    "function": name,
                    "L": depth,
                    "B": b,
                    "stack": t["stack"].median,
                    "loop": t["loop"].median,
                    "speedup": t["loop"].median / t["stack"].median,
                    "rel_diff": err,
                }
            )
            print(
                f"networks {name} L={depth} B={b}: stack "
                f"{fmt_seconds(t['stack'].median)}, "
                f"loop {fmt_seconds(t['loop'].median)}",
                flush=True,
            )
    table = markdown_table(
        [
            "function",
            "L",
            "B",
            "K at once",
            "loop over K",
            "loop / at once",
            "rel. diff",
        ],
        [
            [
                r["function"],
                r["L"],
                r["B"],
                fmt_seconds(r["stack"]),
                fmt_seconds(r["loop"]),
                fmt_ratio(r["speedup"]),
                f"{r['rel_diff']:.0e}",
            ]
            for r in rows
        ],
        align="lrrrrrr",
    )
    worst = min(
        (r["speedup"] for r in rows if r["function"] == "input_gradient"),
        default=float("nan"),
    )
    md = (
        f"K = {k} tanh networks of width {width} (n_1 = {width}, n_L = 1), B inputs "
        f"each, as one stack (weights (K, n_l, n_{{l-1}})) against a Python loop over "
        f"the K networks of the same stack.\n\n{table}\n\n"
        f"Target: at least 3x for input_gradient; worst {fmt_ratio(worst)}: "
        f"{'met' if worst >= 3 else 'not met'}."
    )
    return md, {"rows": rows, "K": k, "width": width}


def version() -> str:
    """depthlab's version (for the JSON)."""
    return depthlab.__version__
