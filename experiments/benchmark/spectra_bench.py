"""Benchmark section on the spectra: depthlab.spectra against plain SVDs, and per
(pair, layer) against LAPACK at width 1024.

Returns ``(markdown, data)``; :mod:`run` prints and stores it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from common import compare, fmt_ratio, fmt_seconds, markdown_table
from kernels import tanh_net

from depthlab import Network

# ---------------------------------------------------------------------------
# Spectra


def _plain_layer_svd(net: Network, X: np.ndarray) -> list[np.ndarray]:
    fp = net.forward(X)
    out = []
    for w, z, sigma in zip(net.weights, fp.preactivations, net.sigmas, strict=True):
        J = sigma.derivative(z)[..., :, None] * w
        out.append(np.linalg.svd(J, compute_uv=False))
    return out


def _plain_product_svd(net: Network, X: np.ndarray) -> list[np.ndarray]:
    fp = net.forward(X)
    out = []
    P = None
    for w, z, sigma in zip(net.weights, fp.preactivations, net.sigmas, strict=True):
        J = sigma.derivative(z)[..., :, None] * w
        P = J if P is None else J @ P
        with np.errstate(divide="ignore"):
            out.append(np.log(np.linalg.svd(P, compute_uv=False)))
    return out


def spectra_section(args: Any) -> tuple[str, dict[str, Any]]:
    """depthlab.spectra against plain np.linalg.svd of the explicit matrices."""
    try:
        from depthlab import spectra
    except ImportError as err:
        msg = f"depthlab.spectra is not available ({err}); skipped"
        print(f"spectra: {msg}", flush=True)
        return f"*Skipped:* {msg}", {"skipped": msg}
    from threadpoolctl import ThreadpoolController

    controller = ThreadpoolController()
    width = 64
    grid = [(10, 1), (10, 8)] if args.quick else [(10, 1), (10, 8), (50, 1), (50, 8)]
    rows = []
    for depth, b in grid:
        rng = np.random.default_rng(depth + b)
        net = tanh_net([width] * depth, rng)
        X = rng.standard_normal((b, width))

        def pinned(fn: Any, net: Network = net, X: np.ndarray = X) -> Any:
            def run() -> Any:
                with controller.limit(limits=1, user_api="blas"):
                    return fn(net, X)

            return run

        def bind(fn: Any, net: Network = net, X: np.ndarray = X) -> Any:
            return lambda: fn(net, X)

        t = compare(
            {
                "layer_singular_values": bind(spectra.layer_singular_values),
                "plain svd of each D W": bind(_plain_layer_svd),
                "plain svd of each D W, BLAS 1 thread": pinned(_plain_layer_svd),
                "jacobian_log_singular_values": bind(
                    spectra.jacobian_log_singular_values
                ),
                "plain svd of the product": bind(_plain_product_svd),
                "plain svd of the product, BLAS 1 thread": pinned(_plain_product_svd),
            },
            rounds=5 if args.quick else 7,
            max_total_s=3.0 if args.quick else 8.0,
        )
        stable = spectra.jacobian_log_singular_values(net, X)[-1] / np.log(10)
        plain = _plain_product_svd(net, X)[-1] / np.log(10)
        lost = float(np.max(np.abs(stable - plain)))
        layer_ref = _plain_layer_svd(net, X)
        layer_err = max(
            float(np.max(np.abs(a - r) / r[..., :1]))
            for a, r in zip(
                spectra.layer_singular_values(net, X), layer_ref, strict=True
            )
        )
        s = {k: v.median for k, v in t.items()}
        rows.append(
            {
                "L": depth,
                "B": b,
                "seconds": s,
                "jac_vs_plain_log10_max_diff": lost,
                "layer_vs_plain_rel_err": layer_err,
                "stable_log10_range": float(stable.max() - stable.min()),
            }
        )
        print(
            f"spectra L={depth} B={b}: "
            + ", ".join(f"{k} {fmt_seconds(v)}" for k, v in s.items()),
            flush=True,
        )
    header = [
        "L",
        "B",
        "layer_singular_values",
        "plain / depthlab",
        "plain 1 thread / depthlab",
        "jacobian_log_singular_values",
        "plain product / depthlab",
        "plain product 1 thread / depthlab",
        "decades where plain is wrong",
    ]
    plain_of = {  # the plain variant timed against each depthlab function
        "layer_singular_values": "plain svd of each D W",
        "jacobian_log_singular_values": "plain svd of the product",
    }

    def cells(r: dict[str, Any], fn: str) -> list[str]:
        s, plain = r["seconds"], plain_of[fn]
        return [
            fmt_seconds(s[fn]),
            fmt_ratio(s[plain] / s[fn]),
            fmt_ratio(s[f"{plain}, BLAS 1 thread"] / s[fn]),
        ]

    table = markdown_table(
        header,
        [
            [
                r["L"],
                r["B"],
                *cells(r, "layer_singular_values"),
                *cells(r, "jacobian_log_singular_values"),
                f"{r['jac_vs_plain_log10_max_diff']:.1f} "
                f"(of {r['stable_log10_range']:.1f})",
            ]
            for r in rows
        ],
    )
    md = (
        f"One tanh network of width {width} (n_1 = n_L = {width}), B inputs. "
        "`plain` is np.linalg.svd (gesdd, values only) of each explicit "
        "J^[l] = D^[l] W^[l], batched over inputs, and of the explicit product "
        "J^(l) = J^[l] ... J^[2] (BLAS threads as the process has them, or pinned "
        "to one). Ratios above 1: depthlab is faster. The last column is the "
        "largest |log10 sigma_plain - log10 sigma_stable| of J^(L), in decades "
        "(of the spectrum's whole range): what the plain product loses, below "
        f"eps * sigma_max. Per-layer values agree with plain to "
        f"{max(r['layer_vs_plain_rel_err'] for r in rows):.0e} (relative to "
        f"sigma_max).\n\n{table}"
    )
    wide_md, wide = _wide_spectra(args, controller)
    return md + "\n\n" + wide_md, {"rows": rows, "width": width, "wide": wide}


def _wide_spectra(args: Any, controller: Any) -> tuple[str, dict[str, Any]]:
    """Per (pair, layer) cost of J^(l) spectra at a large width, against LAPACK.

    ``every layer``: jacobian_log_singular_values as the probe called it before
    ``layers=``; ``last layer``: ``layers=[L]`` (the QR accumulation through
    every layer, one finishing SVD). Per layer: divided by the L - 1 layers.
    References on one n x n matrix: a column-pivoted QR (``dgeqp3``, with the
    blocked workspace of :func:`depthlab.spectra._qp3`), a
    values-only SVD (``gesdd``) and the Jacobi SVD the spectra finish with
    (``dgejsv``), all with BLAS at one thread.
    """
    from scipy.linalg import lapack

    from depthlab import spectra

    n, depth = (256, 4) if args.quick else (1024, 5)
    rng = np.random.default_rng(11)
    net = tanh_net([n] * depth, rng)
    X = rng.standard_normal((1, n))
    A = rng.standard_normal((n, n)) / np.sqrt(n)
    R = np.triu(lapack.dgeqp3(A)[0])

    def pinned(fn: Any) -> Any:
        def run() -> Any:
            with controller.limit(limits=1, user_api="blas"):
                return fn()

        return run

    t = compare(
        {
            "every layer": lambda: spectra.jacobian_log_singular_values(net, X),
            "last layer": lambda: spectra.jacobian_log_singular_values(
                net, X, layers=[depth]
            ),
            # the blocked workspace the spectra use (scipy's default is unblocked)
            "dgeqp3": pinned(lambda: spectra._qp3(np.asfortranarray(A))),
            "gesdd": pinned(lambda: np.linalg.svd(A, compute_uv=False)),
            "dgejsv": pinned(lambda: spectra._jacobi_svd(R.T, vectors=False)),
        },
        rounds=3,
        max_total_s=10.0 if args.quick else 60.0,
        warmup=1,
    )
    s = {k: v.median for k, v in t.items()}
    layers = depth - 1
    full = spectra.jacobian_log_singular_values(net, X)[-1]
    last = spectra.jacobian_log_singular_values(net, X, layers=[depth])[-1]
    table = markdown_table(
        ["call", "time", "per (pair, layer)", "/ (dgeqp3 + gesdd)"],
        [
            [
                name,
                fmt_seconds(s[name]),
                fmt_seconds(s[name] / layers),
                fmt_ratio(s[name] / layers / (s["dgeqp3"] + s["gesdd"])),
            ]
            for name in ("every layer", "last layer")
        ]
        + [
            [name, fmt_seconds(s[name]), "-", "-"]
            for name in ("dgeqp3", "gesdd", "dgejsv")
        ],
        align="lrrr",
    )
    md = (
        f"J^(l) spectra at width {n}, depth {depth}, one (network, input) pair: "
        "`every layer` is `jacobian_log_singular_values(net, X)` (a finishing "
        "Jacobi SVD, LAPACK `dgejsv`, at every layer: the cost before `layers=`), "
        f"`last layer` is `layers=[{depth}]` (the graded QR through every layer, "
        "one `dgejsv`). The n x n references below run with BLAS at one thread, "
        "like the spectra. The values at layer L are the same either way "
        f"(max difference {float(np.max(np.abs(full - last))):.1e}).\n\n{table}"
    )
    return md, {"n": n, "depth": depth, "seconds": s}
