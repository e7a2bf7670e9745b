"""Singular values of layer Jacobians and stable log singular values of deep products.

Two quantities of :mod:`depthlab.network`'s definitions:

- the per-layer Jacobian J^[l] = D^[l] W^[l], D^[l] = diag(sigma'(z^[l])) (for a
  resnet block I + alpha W^[l] D^[l], and LN's Jacobian where present: see
  :mod:`depthlab.network`), whose singular values :func:`layer_singular_values`
  returns, and
- the input-output Jacobian up to layer l, J^(l) = J^[l] ... J^[2] = d a^[l] / dx,
  whose singular values span hundreds or thousands of decades in a deep network.
  :func:`jacobian_log_singular_values` returns their natural logarithms for every
  l (or the layers asked for, ``layers=``) in one pass through the layers;
  :func:`log_singular_values_of_product` does the same for any product of
  matrices.

Cost per (network, input) pair at width n (measured at n = 1024, one thread):
each layer takes one product V W^T (0.03 s) and one column-pivoted QR
(``dgeqp3``, 0.13-0.16 s with a blocked workspace, 0.2 s with scipy's default
one), every layer whose spectrum is returned one more Jacobi SVD (``dgejsv``,
1.2-1.5 s: about 85% of the cost when every layer is asked for). A values-only
``gesdd`` (0.27 s) is not an alternative: it is accurate to eps * sigma_max,
not to a relative eps for every singular value of a graded matrix.

The products are never formed. Multiplying first and then taking the SVD loses
every singular value below eps * s_max (and over- or underflows past 1e+-308);
accumulating unpivoted QR factors (Benettin et al.) and reading the singular
values off the diagonal of R is off by O(1) decades at finite depth. Instead, the
product is kept as a *graded* triangular factor diag(exp(d)) U whose row scales d
live in logarithms, updated by a column-pivoted QR per factor (Stewart 1995), and
finished by a one-sided Jacobi SVD of high relative accuracy (LAPACK ``dgejsv``;
Demmel & Veselic 1992, Drmac & Veselic 2008). See
:func:`log_singular_values_of_product` for the method.

All products are computed in float64 whatever the network's dtype: a float32
network's J^[l] are exact in float64, and float32's exponent range (1e+-38) would
make the graded factor leave the range that LAPACK can handle at once after a few
layers. Log singular values are returned as float64; per-layer singular values in
the network's dtype.

Batched LAPACK calls run with BLAS pinned to one thread (``threadpoolctl``):
oversubscribed OpenBLAS threads made a stacked SVD 11x slower on our machines.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

import numpy as np
from scipy.linalg import lapack, solve_triangular

from depthlab import blocks
from depthlab.backend import blas_controller
from depthlab.gradient import shared_parameters
from depthlab.network import Network

Array = np.ndarray


class GradedFactor(NamedTuple):
    """J^(l)^T = Q diag(exp(log_scale)) V (Q with orthonormal columns), batched
    over inputs: the state of :func:`jacobian_log_singular_values` after layer
    ``layer``, from which a pass can go on (its ``start``)."""

    layer: int
    log_scale: Array
    """shape (..., r), r = min(n_1, ..., n_l)"""
    V: Array
    """shape (..., r, n_l)"""


_LN10 = float(np.log(10.0))
_WINDOW = 250.0 * _LN10
"""Natural-log span of row (or column) scales that is formed in float64 at once.

Within a window, entries range from 1 down to 1e-250: far from float64's
underflow threshold (2.2e-308) even after the cancellations of a QR step."""

_GAP = 10.0 * _LN10
"""Margin by which a pivot (or singular value) must exceed every row (column)
outside the window before it is accepted. Outside rows perturb accepted ones by
a relative (1e-10)^2 = 1e-20, far below eps."""


_HUGE = 2.0**1000
"""Factors with entries above this are scaled by a power of two (no overflow)."""

_QP3_BLOCK = 64
"""Block size that ``dgeqp3``'s workspace allows (LAPACK's own default is 32).

scipy's wrapper passes the minimal workspace (3n + 1) unless told otherwise,
and with it LAPACK falls back to the unblocked ``dlaqp2`` (all BLAS-2): a
1024 x 1024 factorization took 0.22 s against 0.16 s blocked (one thread,
OpenBLAS 0.3.30). It is the same factorization (Householder QR with column
pivoting by the largest remaining norm); the blocked update only orders the
rounding errors differently (so a pivot may differ where two norms tie to
rounding), and the accuracy tests of ``tests/test_spectra.py`` hold unchanged."""


def _qp3(a: Array) -> tuple[Array, Array]:
    """LAPACK ``dgeqp3`` of ``a`` (overwritten when it is Fortran-ordered float64)
    with a blocked workspace: (qr, 0-based pivots)."""
    n = a.shape[1]
    lwork = 2 * n + (n + 1) * _QP3_BLOCK
    qr, jpvt, _, _, info = lapack.dgeqp3(a, lwork=lwork, overwrite_a=True)
    if info != 0:  # pragma: no cover - LAPACK argument errors only
        raise RuntimeError(f"dgeqp3 failed with info = {info}")
    return qr, jpvt - 1


def _log_abs(x: Array) -> Array:
    """log |x| elementwise, -inf where x == 0, without floating-point warnings."""
    ax = np.abs(x)
    positive = ax > 0
    return np.where(positive, np.log(np.where(positive, ax, 1.0)), -np.inf)


def _normalize(log_scale: Array, rows: Array) -> tuple[Array, Array]:
    """Rows of unit 2-norm, their norms moved into the log scales (zero rows: -inf).

    The norms are taken after dividing by the largest entry, so that rows with
    entries near the overflow or underflow threshold are normalized exactly.
    """
    big = np.max(np.abs(rows), axis=-1, keepdims=True, initial=0.0)
    rows = rows / np.where(big > 0, big, 1.0)
    norms = np.linalg.norm(rows, axis=-1)
    safe = np.where(norms > 0, norms, 1.0)
    return log_scale + _log_abs(big[..., 0]) + _log_abs(norms), rows / safe[..., None]


def _sorted_live(log_scale: Array, rows: Array) -> tuple[Array, Array]:
    """Rows with a finite scale, sorted by decreasing scale."""
    live = np.isfinite(log_scale)
    log_scale, rows = log_scale[live], rows[live]
    order = np.argsort(-log_scale, kind="stable")
    return log_scale[order], rows[order]


def _prepare(log_scale: Array, rows: Array) -> tuple[Array, Array, Array, Array]:
    """Normalize and sort a batch of row-graded matrices diag(exp(log_scale)) rows.

    Parameters
    ----------
    log_scale : ndarray, shape (N, r)
    rows : ndarray, shape (N, r, m)

    Returns
    -------
    scale, rows : ndarray
        Rows of unit norm sorted by decreasing scale (zero rows last, scale -inf).
    top : ndarray, shape (N,)
        The largest scale (0 where every row is zero).
    fits : ndarray of bool, shape (N,)
        Whether every nonzero row lies within ``_WINDOW`` of the largest, so
        that the matrix can be formed in float64 at once.
    """
    scale, rows = _normalize(log_scale, rows)
    order = np.argsort(-scale, axis=-1, kind="stable")
    scale = np.take_along_axis(scale, order, axis=-1)
    rows = np.take_along_axis(rows, order[..., None], axis=-2)
    top = np.where(np.isfinite(scale[:, 0]), scale[:, 0], 0.0)
    fits = np.all((scale >= top[:, None] - _WINDOW) | np.isneginf(scale), axis=-1)
    return scale, rows, top, fits


def _graded_qr(log_scale: Array, C: Array) -> tuple[Array, Array]:
    """:func:`_graded_qr_windowed` for a batch, shapes (N, r) and (N, r, m).

    Matrices whose scales fit one window are factored by one ``dgeqp3`` each,
    with the scaling and the unpacking of R done in place, one matrix at a time
    (each step is one pass over an n x n array: at n = 1024 the unpacking took
    as long as a third of the ``dgeqp3`` when it was batched with copies).
    """
    n_mat, r, m = C.shape
    k = min(r, m)
    scale, rows, top, fits = _prepare(log_scale, C)
    out_scale = np.empty((n_mat, k))
    out_V = np.empty((n_mat, k, m))
    fast = np.flatnonzero(fits)
    if fast.size:
        factor = np.exp(scale[fast] - top[fast, None])[..., None]
        window = np.empty((r, m), order="F")  # what LAPACK takes without a copy
        for j, i in enumerate(fast.tolist()):
            np.multiply(factor[j], rows[i], out=window)
            qr, pivots = _qp3(window)
            R = np.triu(qr[:k])
            diag = np.abs(np.diagonal(R))
            out_scale[i] = top[i] + _log_abs(diag)
            R /= np.where(diag > 0, diag, 1.0)[:, None]
            # R Pi^T: column c of R is column pivots[c] (a gather: 10x a scatter)
            inverse = np.empty_like(pivots)
            inverse[pivots] = np.arange(m)
            np.take(R, inverse, axis=1, out=out_V[i])
    for i in np.flatnonzero(~fits):
        out_scale[i], out_V[i] = _graded_qr_windowed(scale[i], rows[i])
    return out_scale, out_V


def _graded_qr_windowed(log_scale: Array, C: Array) -> tuple[Array, Array]:
    """Column-pivoted QR of the row-graded matrix diag(exp(log_scale)) @ C.

    Parameters
    ----------
    log_scale : ndarray, shape (r,)
        Natural-log row scales (``-inf`` for a zero row).
    C : ndarray, shape (r, m), float64

    Returns
    -------
    log_scale : ndarray, shape (min(r, m),)
        log |R_kk|, non-increasing (``-inf`` for exactly zero pivots).
    V : ndarray, shape (min(r, m), m)
        R Pi^T with each row divided by |R_kk|: diag(exp(log_scale)) V = R Pi^T,
        where diag(exp(d)) C Pi = Q R. Only R Pi^T is needed downstream: its
        singular values are those of the product, and it is the left factor of
        the next step.

    Notes
    -----
    The matrix is never formed. Rows are sorted by decreasing norm (which,
    with column pivoting, makes Householder QR row-wise backward stable: Cox &
    Higham 1998) and factored window by window: LAPACK ``dgeqp3`` factors the
    rows whose scales lie within ``_WINDOW`` of the largest; its leading pivots
    that exceed every row outside the window by ``_GAP`` are final, because those
    rows change them by a relative 1e-20 at most. For the rows outside, the
    Householder reflections of the accepted pivots reduce, in that limit, to
    Gaussian elimination: Y <- Y_2 - Y_1 R_11^{-1} R_12. The window's remaining
    rows (R_22, an orthogonal transformation of the partially reduced rows) and
    the eliminated rows form the next, smaller problem. When every scale fits
    one window (the usual case) this is a single ``dgeqp3``.
    """
    r, m = C.shape
    k_out = min(r, m)
    out_scale = np.full(k_out, -np.inf)
    out_V = np.zeros((k_out, m))
    scale, rows = _sorted_live(*_normalize(log_scale, C))
    cols = np.arange(m)
    pos = 0
    while scale.size and cols.size:
        top = scale[0]
        n_win = int(np.count_nonzero(scale >= top - _WINDOW))
        window = np.asfortranarray(np.exp(scale[:n_win] - top)[:, None] * rows[:n_win])
        qr, jpvt = _qp3(window)
        k = min(n_win, cols.size)
        R = np.triu(qr[:k])
        diag = np.abs(np.diagonal(R))
        log_diag = top + _log_abs(diag)
        if n_win == scale.size:
            accepted = k
        else:
            # At least one pivot is accepted: row 0 has unit norm, so
            # |R_00| >= 1/sqrt(m), while the rows outside are < exp(-_WINDOW).
            ok = log_diag >= scale[n_win] + _GAP
            accepted = max(1, int(np.argmin(ok)) if not ok.all() else k)
        final = slice(pos, pos + accepted)
        nonzero = diag[:accepted] > 0
        out_scale[final] = log_diag[:accepted]
        norms = np.where(nonzero, diag[:accepted], 1.0)
        out_V[final, cols[jpvt]] = R[:accepted] / norms[:, None]
        pos += accepted
        if n_win == scale.size:
            break
        rest = jpvt[accepted:]
        left_scale = np.full(k - accepted, top)
        left_rows = R[accepted:k, accepted:]
        outside_scale = scale[n_win:]
        outside = rows[n_win:]
        if rest.size and np.all(nonzero):
            # Elimination by the accepted pivots: R_11^{-1} R_12 does not depend
            # on the scales of R's rows.
            X = solve_triangular(
                R[:accepted, :accepted], R[:accepted, accepted:], check_finite=False
            )
            outside = outside[:, rest] - outside[:, jpvt[:accepted]] @ X
        else:
            outside = outside[:, rest]
        cols = cols[rest]
        scale, rows = _sorted_live(
            *_normalize(
                np.concatenate([left_scale, outside_scale]),
                np.concatenate([left_rows, outside]),
            )
        )
    return out_scale, out_V


def _jacobi_svd(G: Array, *, vectors: bool) -> tuple[Array, Array | None]:
    """log singular values (descending) of G (m >= n), by LAPACK ``dgejsv``.

    One-sided Jacobi preconditioned by QR with full pivoting (``JOBA='F'``): the
    singular values of G = D1 C D2 are computed to a relative accuracy of about
    eps * cond(C) whatever the diagonal scalings D1, D2. ``JOBR='N'`` keeps the
    smallest columns, ``JOBP='N'`` perturbs no denormals.
    """
    sva, u, _, work, _, info = lapack.dgejsv(
        G, joba=2, jobu=0 if vectors else 3, jobv=3, jobr=0, jobt=0, jobp=0
    )
    if info != 0:
        raise RuntimeError(f"dgejsv did not converge (info = {info})")
    log_sv = _log_abs(sva) + (np.log(work[0]) - np.log(work[1]))
    order = np.argsort(-log_sv, kind="stable")
    return log_sv[order], (u[:, order] if vectors else None)


def _graded_log_singular_values_windowed(log_scale: Array, V: Array) -> Array:
    """log singular values (descending) of diag(exp(log_scale)) @ V, V (r, n), r <= n.

    Notes
    -----
    The columns of G = V^T diag(exp(log_scale)) are graded. Columns whose scales
    lie within ``_WINDOW`` of the largest go to :func:`_jacobi_svd`. Its singular
    values that exceed every column outside the window by ``_GAP`` are final
    (those columns change them by a relative 1e-20 at most); in that limit a
    Jacobi rotation between an accepted column and an outside one only
    orthogonalizes the outside one, so the outside columns are projected onto the
    orthogonal complement of the accepted left singular vectors (twice, for
    orthogonality). The window's other singular triplets (sigma u) and the
    projected columns form the next, smaller problem.
    """
    r = V.shape[0]
    out = np.full(r, -np.inf)
    scale, rows = _sorted_live(*_normalize(log_scale, V))
    found: list[Array] = []
    while scale.size:
        top = scale[0]
        n_win = int(np.count_nonzero(scale >= top - _WINDOW))
        window = (np.exp(scale[:n_win] - top)[:, None] * rows[:n_win]).T
        if n_win == scale.size:
            log_sv, _ = _jacobi_svd(window, vectors=False)
            found.append(top + log_sv)
            break
        log_sv, U = _jacobi_svd(window, vectors=True)
        log_sv = top + log_sv
        ok = log_sv >= scale[n_win] + _GAP
        accepted = max(1, int(np.argmin(ok)) if not ok.all() else n_win)
        found.append(log_sv[:accepted])
        Ua = U[:, :accepted]
        outside = rows[n_win:]
        for _ in range(2):
            outside = outside - (outside @ Ua) @ Ua.T
        scale, rows = _sorted_live(
            *_normalize(
                np.concatenate([log_sv[accepted:], scale[n_win:]]),
                np.concatenate([U[:, accepted:].T, outside]),
            )
        )
    values = np.sort(np.concatenate(found) if found else np.empty(0))[::-1]
    out[: values.size] = values
    return out


def _accumulate(
    apply_transposed: Iterable[Callable[[Array], Array]],
    batch_shape: tuple[int, ...],
    n_in: int,
    start: GradedFactor | None = None,
) -> Iterator[tuple[Array, Array]]:
    """The graded factor of A_k ... A_1 after each factor, batched.

    Parameters
    ----------
    apply_transposed : iterable of callables
        For each factor A_k (shape ``(n_{k+1}, n_k)``, or one per batch element),
        a function mapping V of shape ``(*batch_shape, r, n_k)`` to
        ``V @ A_k^T``, shape ``(*batch_shape, r, n_{k+1})``.
    batch_shape : tuple of int
    n_in : int
        n_1, the number of columns of the first factor.
    start : GradedFactor, optional
        The graded factor of the factors before the first of
        ``apply_transposed`` (default: none, the identity).

    Yields
    ------
    log_scale : ndarray, shape (*batch_shape, r)
    V : ndarray, shape (*batch_shape, r, n_{k+1})
        (A_k ... A_1)^T = Q diag(exp(log_scale)) V with Q orthonormal columns,
        so the singular values of the product are those of
        diag(exp(log_scale)) V; r = min(n_1, ..., n_{k+1}).
    """
    if start is None:
        log_scale = np.zeros((*batch_shape, n_in))
        V = np.broadcast_to(np.eye(n_in), (*batch_shape, n_in, n_in))
    else:
        log_scale, V = start.log_scale, start.V
    for apply in apply_transposed:
        C = np.asarray(apply(V), dtype=np.float64)
        r, m = C.shape[-2:]
        flat_scale, flat_V = _graded_qr(log_scale.reshape(-1, r), C.reshape(-1, r, m))
        log_scale = flat_scale.reshape(*batch_shape, -1)
        V = flat_V.reshape(*batch_shape, *flat_V.shape[-2:])
        yield log_scale, V


def _log_singular_values(log_scale: Array, V: Array) -> Array:
    """log singular values (descending) of diag(exp(log_scale)) @ V, batched.

    ``log_scale`` has shape ``(..., r)`` and ``V`` ``(..., r, n)`` with r <= n.
    Matrices whose scales fit one window go straight to :func:`_jacobi_svd`;
    the others to :func:`_graded_log_singular_values_windowed`.
    """
    shape, (r, n) = log_scale.shape[:-1], V.shape[-2:]
    scale, rows, top, fits = _prepare(log_scale.reshape(-1, r), V.reshape(-1, r, n))
    out = np.full(scale.shape, -np.inf)
    live = np.count_nonzero(np.isfinite(scale), axis=-1)
    for i in np.flatnonzero(fits & (live > 0)):
        window = np.exp(scale[i, : live[i]] - top[i])[:, None] * rows[i, : live[i]]
        out[i, : live[i]] = top[i] + _jacobi_svd(window.T, vectors=False)[0]
    for i in np.flatnonzero(~fits):
        out[i] = _graded_log_singular_values_windowed(scale[i], rows[i])
    return out.reshape(*shape, r)


def _pad(log_sv: Array, size: int) -> Array:
    """Pad with -inf (exactly zero singular values) to ``size`` columns."""
    missing = size - log_sv.shape[-1]
    if missing <= 0:
        return log_sv
    pad = np.full((*log_sv.shape[:-1], missing), -np.inf)
    return np.concatenate([log_sv, pad], axis=-1)


def log_singular_values_of_product(matrices: Sequence[Array]) -> Array:
    """Natural-log singular values of ``matrices[-1] @ ... @ matrices[0]``.

    Parameters
    ----------
    matrices : sequence of ndarray
        A_1, ..., A_K with A_k of shape ``(n_{k+1}, n_k)``, or stacks of such
        matrices with broadcastable leading dimensions (one product per stack
        element). float32 input is computed in float64.

    Returns
    -------
    ndarray, shape (..., min(n_{K+1}, n_1)), float64
        log sigma_i(A_K ... A_1), sorted descending. Exactly zero singular values
        (a rank below min(n_{K+1}, n_1), e.g. a narrower layer in between) are
        ``-inf``.

    Notes
    -----
    Stewart's graded QR of a product (Stewart 1995), applied to the transpose
    P^T = A_1^T ... A_K^T so that each new factor multiplies on the right:

    1. Keep (A_k ... A_1)^T = Q R Pi^T with R upper triangular and *graded*,
       R = diag(exp(d)) U, |U_ii| = 1, |U_ij| <= 1 (column pivoting); Q is
       never needed, d is kept in natural logarithms.
    2. For the next factor, B = R Pi^T A_{k+1}^T = diag(exp(d)) (U Pi^T A^T) is
       a row-graded matrix. Its QR factorization with column pivoting (rows
       sorted by norm) is row-wise backward stable (Cox & Higham 1998), so the
       tiny rows, which carry the small singular values, keep their relative
       accuracy however small they are. B is never formed when d spans more
       than float64's range: see ``_graded_qr``.
    3. At the end, the singular values of diag(exp(d)) U are those of the
       product. They are computed by a one-sided Jacobi SVD of high relative
       accuracy on the column-graded U^T diag(exp(d)) (LAPACK ``dgejsv``, Drmac
       & Veselic 2008): its relative error is about eps * cond(U), independent of
       the grading (Demmel & Veselic 1992), windowed in the same way when d
       spans more than float64's range.

    The cost per factor is one matrix product and one pivoted QR; the Jacobi SVD
    is done once. Stewart's QLP (1999), a pivoted QR of R^T, makes the diagonal
    of the resulting L approximate the singular values; a fixed number of QLP
    sweeps is exact for graded spectra but up to 15% off for clustered ones,
    which is why the last step is a Jacobi SVD instead.

    References
    ----------
    G. W. Stewart, "On graded QR decompositions of products of matrices",
    Electron. Trans. Numer. Anal. 3 (1995), 39-49.
    G. W. Stewart, "The QLP approximation to the singular value decomposition",
    SIAM J. Sci. Comput. 20 (1999), 1336-1348.
    J. Demmel and K. Veselic, "Jacobi's method is more accurate than QR",
    SIAM J. Matrix Anal. Appl. 13 (1992), 1204-1245.
    Z. Drmac and K. Veselic, "New fast and accurate Jacobi SVD algorithm I, II",
    SIAM J. Matrix Anal. Appl. 29 (2008), 1322-1362.
    A. J. Cox and N. J. Higham, "Stability of Householder QR factorization for
    weighted least squares problems", in Numerical Analysis 1997, Pitman (1998).
    G. Benettin, L. Galgani, A. Giorgilli, J.-M. Strelcyn, "Lyapunov
    characteristic exponents for smooth dynamical systems", Meccanica 15 (1980).

    Examples
    --------
    >>> import numpy as np
    >>> A = np.diag([1e200, 1e-200])
    >>> np.round(log_singular_values_of_product([A, A, A]) / np.log(10), 6)
    array([ 600., -600.])
    """
    mats = [np.asarray(a, dtype=np.float64) for a in matrices]
    if not mats:
        raise ValueError("log_singular_values_of_product needs at least one matrix")
    for k, a in enumerate(mats):
        if a.ndim < 2:
            raise ValueError(f"matrices[{k}] has shape {a.shape}; expected (m, n)")
        if k and a.shape[-1] != mats[k - 1].shape[-2]:
            raise ValueError(
                f"matrices[{k}] has {a.shape[-1]} columns but matrices[{k - 1}] "
                f"has {mats[k - 1].shape[-2]} rows"
            )
    batch_shape = np.broadcast_shapes(*(a.shape[:-2] for a in mats))
    # A factor whose entries come near the overflow threshold is scaled by an
    # exact power of two (moved into the logarithms) so that V @ A^T cannot
    # overflow; other factors are used as they are, so that no entry underflows.
    log_total = np.zeros(batch_shape)
    scaled = []
    for a in mats:
        amax = np.max(np.abs(a), axis=(-2, -1), keepdims=True)
        if not np.all(np.isfinite(amax)):
            raise ValueError("matrices must have finite entries")
        exponent = np.where(amax > _HUGE, np.frexp(amax)[1], 0)
        log_total = log_total + exponent[..., 0, 0] * np.log(2.0)
        scaled.append(np.ldexp(a, -exponent))
    n_in, n_out = mats[0].shape[-1], mats[-1].shape[-2]
    with blas_controller().limit(limits=1):
        steps = _accumulate(
            (lambda V, a=a: V @ np.swapaxes(a, -1, -2) for a in scaled),
            batch_shape,
            n_in,
        )
        (final,) = deque(steps, maxlen=1)
        log_sv = _log_singular_values(*final)
    log_sv = log_sv + log_total[..., None]
    return _pad(log_sv, min(n_in, n_out))


@shared_parameters
def layer_singular_values(net: Network, X: Array) -> list[Array]:
    """Singular values of every per-layer Jacobian J^[l] = D^[l] W^[l], l = 2..L.

    Parameters
    ----------
    {net_and_inputs}

    Returns
    -------
    list of ndarray
        L - 1 arrays; entry l - 2 holds the singular values of J^[l] at every
        input, shape ``(..., B, min(n_l, n_{l-1}))`` (``(min(n_l, n_{l-1}),)``
        for a single input vector), sorted descending, in the network's dtype.

    Notes
    -----
    Higham & Higham (2019), (3.2), (5.2): D^[l] = diag(sigma'(z^[l])). D^[l] is
    never formed: J^[l] = sigma'(z^[l])[:, None] * W^[l], one batched LAPACK SVD
    (``gesdd``, singular values only) per layer over all inputs, with BLAS pinned
    to one thread. For a resnet block J^[l] = I + alpha W^[l] D^[l], D^[l] =
    diag(sigma'(h^[l])), times LN's Jacobian where present (see
    :mod:`depthlab.network`).

    Examples
    --------
    >>> import numpy as np
    >>> from depthlab import init_network
    >>> net = init_network([3, 4, 2], activation="tanh", init="gaussian",
    ...                    sigma_w=1.0, sigma_b=0.0, rng=np.random.default_rng(0))
    >>> [s.shape for s in layer_singular_values(net, np.ones((5, 3)))]
    [(5, 3), (5, 2)]
    """
    single = np.ndim(X) == 1
    if not net.plain_mlp:
        out = _layers_singular_values(net, X)
        return [s[..., 0, :] for s in out] if single else out
    fp = net.forward(X)
    out = []
    with blas_controller().limit(limits=1):
        for w, z, sigma in zip(net.weights, fp.preactivations, net.sigmas, strict=True):
            J = sigma.derivative(z)[..., :, None] * w[..., None, :, :]
            out.append(np.linalg.svd(J, compute_uv=False))
    return [s[..., 0, :] for s in out] if single else out


@shared_parameters
def jacobian_log_singular_values(
    net: Network,
    X: Array,
    *,
    layers: Sequence[int] | None = None,
    start: GradedFactor | None = None,
    factors: dict[int, GradedFactor] | None = None,
) -> list[Array | None]:
    """Natural-log singular values of J^(l) = d a^[l] / dx for l = 2..L.

    Parameters
    ----------
    {net_and_inputs}
    layers : sequence of int, optional
        The layers l (each in 2..L; order and repeats do not matter) at which
        the full spectrum of J^(l) is computed. None (the default): every layer.
        The graded QR factor still passes through every layer up to the
        largest one asked for; only the finishing Jacobi SVD, most of the cost
        at large widths (about 7x a QR step at n = 1024), is skipped elsewhere.
    start : GradedFactor, optional
        The graded factor of J^(m) that ``factors`` gave for a network with
        the same layers 2..m and the same inputs (a deeper or shallower one):
        the pass starts after layer m, with the same numbers bitwise. Layers
        up to m get no spectra (None).
    factors : dict, optional
        The layers (its keys) whose graded factor of J^(l) to keep: each key
        the pass goes through gets it (read-only arrays, to be handed to
        ``start``); the others keep their value. Only the factors asked for
        are kept (one is a batch of n_l x n_l matrices).

    Returns
    -------
    list of (ndarray or None)
        L - 1 entries; entry l - 2 holds log sigma_i(J^(l)) at every input, shape
        ``(..., B, min(n_l, n_1))`` (``(min(n_l, n_1),)`` for a single input
        vector), sorted descending, float64, or None for a layer not in
        ``layers``. Exactly zero singular values (a narrower layer in between,
        or dead ReLUs) are ``-inf``. The values at a layer do not depend on
        ``layers``.

    Raises
    ------
    ValueError
        If an entry of ``layers`` is not an integer in 2..L.

    Notes
    -----
    J^(l) = J^[l] J^(l-1), J^[l] = D^[l] W^[l] (Higham & Higham 2019, (3.2),
    (5.2)). One pass through the layers, batched over inputs: the graded QR
    factor of J^(l-1)^T is multiplied by W^[l]^T and its columns scaled by
    sigma'(z^[l]) (D^[l] is never formed), refactored by a column-pivoted QR, and
    its singular values computed by a one-sided Jacobi SVD of high relative
    accuracy. The algorithm, shared with :func:`log_singular_values_of_product`,
    is described there. Computed in float64 whatever the network's dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from depthlab import init_network
    >>> net = init_network([4, 4, 4], activation="linear", init="orthogonal",
    ...                    sigma_w=2.0, sigma_b=0.0, rng=np.random.default_rng(0))
    >>> logs = jacobian_log_singular_values(net, np.zeros(4))
    >>> np.allclose(logs[1], 2 * np.log(2.0))
    True
    """
    wanted = _check_layers(layers, net.depth)
    single = np.ndim(X) == 1
    first = 2 if start is None else start.layer + 1
    wanted = {layer for layer in wanted if layer >= first}
    if not wanted:
        return [None] * (net.depth - 1)
    last = max(wanted)
    if not net.plain_mlp:
        fp = blocks.lean_forward(net, X)
        batch_shape = fp.sigma_args[0].shape[:-1]
        apply = [
            lambda V, i=i: blocks.jvp_rows(net, fp, i, V)
            for i in range(first - 2, last - 1)
        ]
    else:
        zs = net.forward(X).preactivations
        batch_shape = zs[0].shape[:-1]
        apply = [
            _dense_factor(net.weights[i], zs[i], net.sigmas[i].derivative)
            for i in range(first - 2, last - 1)
        ]
    with blas_controller().limit(limits=1):
        steps = _accumulate(apply, batch_shape, net.widths[0], start)
        return _finish(steps, first, net.widths, wanted, single, factors)


def _dense_factor(
    w: Array, z: Array, sigma_prime: Callable[[Array], Array]
) -> Callable[[Array], Array]:
    """V -> V J^[l]^T for a dense layer, J^[l] = D^[l] W^[l] (D never formed)."""
    d = sigma_prime(z).astype(np.float64)[..., None, :]
    wt = np.swapaxes(w, -1, -2).astype(np.float64)[..., None, :, :]
    return lambda V: (V @ wt) * d


def _layers_singular_values(net: Network, X: Array) -> list[Array]:
    """:func:`layer_singular_values` of any architecture.

    J^[l] is formed by :func:`depthlab.blocks.jacobian` (for a block,
    I + alpha W^[l] D^[l] (J_LN)), then one batched ``gesdd`` per layer.
    """
    fp = blocks.lean_forward(net, X)
    out = []
    with blas_controller().limit(limits=1):
        for i in range(len(net.weights)):
            J = blocks.jacobian(net, fp, i)
            out.append(np.linalg.svd(J, compute_uv=False))
    return out


def _finish(
    steps: Iterator[tuple[Array, Array]],
    first: int,
    widths: Sequence[int],
    wanted: set[int],
    single: bool,
    factors: dict[int, GradedFactor] | None = None,
) -> list[Array | None]:
    """The log singular values of J^(l) at the layers ``wanted`` (None elsewhere),
    from the graded factors that :func:`_accumulate` yields for l = ``first``,
    ``first + 1``, ...; the factor of each layer that is a key of ``factors``
    (if given) goes into it."""
    out: list[Array | None] = [None] * (len(widths) - 1)
    last = max(wanted)
    for layer, state in zip(range(first, last + 1), steps, strict=False):
        if factors is not None and layer in factors:
            for a in state:
                a.flags.writeable = False
            factors[layer] = GradedFactor(layer, *state)
        if layer in wanted:
            n_l = widths[layer - 1]
            log_sv = _pad(_log_singular_values(*state), min(n_l, widths[0]))
            out[layer - 2] = log_sv[..., 0, :] if single else log_sv
    return out


def _check_layers(layers: Sequence[int] | None, depth: int) -> set[int]:
    """The set of layers l in 2..``depth`` asked for (all for None), or a ValueError."""
    if layers is None:
        return set(range(2, depth + 1))
    allowed = f"a sequence of integers in 2..{depth} (L = {depth})"
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Iterable):
        raise ValueError(f"layers must be {allowed}; got {layers!r}")
    wanted = set()
    for layer in layers:
        is_int = isinstance(layer, (int, np.integer)) and not isinstance(layer, bool)
        if not is_int or not 2 <= layer <= depth:
            raise ValueError(f"layers must be {allowed}; got {layer!r} in {layers!r}")
        wanted.add(int(layer))
    return wanted
