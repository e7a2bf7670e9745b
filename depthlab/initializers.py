"""Weight and bias samplers, one function per scheme.

Every scheme draws a weight matrix W of shape ``(*stack, n_out, n_in)`` and a bias
vector b of shape ``(*stack, n_out)`` (``stack`` is a tuple of leading dimensions,
empty for a single network). ``sigma_w`` and ``sigma_b`` are standard deviations.
Biases are ``N(0, sigma_b^2)`` in every scheme (default sigma_b: 0.5 for
``higham``, 0 for the others).

The variance each scheme gives (n_in = n_{l-1} is the fan-in, n_out = n_l):

================  ==========================================================
scheme            Var(W_ij)
================  ==========================================================
gaussian          sigma_w^2 / n_in                          (default sigma_w 1)
orthogonal        sigma_w * Q, Q Haar-random with orthonormal rows or columns:
                  Var = sigma_w^2 / max(n_in, n_out)        (default sigma_w 1)
xavier_normal     sigma_w^2 * 2 / (n_in + n_out), sigma_w is the gain (default 1)
xavier_uniform    U[-a, a], a = sigma_w * sqrt(6 / (n_in + n_out)): as above
he_normal         sigma_w^2 / n_in                   (default sigma_w sqrt(2))
lecun_normal      sigma_w^2 / n_in                          (default sigma_w 1)
uniform           U[-a, a], a = sigma_w * sqrt(3 / n_in): Var = sigma_w^2/n_in;
                  the default sigma_w = 1/sqrt(3) is Glorot & Bengio's
                  "standard" U[-1/sqrt(n_in), 1/sqrt(n_in)]
higham            W_ij ~ N(0, sigma_w^2), b_i ~ N(0, sigma_b^2), no fan-in
                  scaling (defaults 0.5, 0.5: the paper's ``0.5 * randn``)
================  ==========================================================

Every entry has mean 0. ``orthogonal`` draws W = sigma_w Q with Q Haar-distributed
on the matrices with orthonormal columns (Q^T Q = I, tall or square layers,
n_out >= n_in) or orthonormal rows (Q Q^T = I, wide layers, n_out < n_in): the QR
factorization of a Gaussian matrix with the signs of diag(R) moved into Q
(Mezzadri 2007; without that step Q is not Haar).

Mean-field theory only needs ``n_in * Var(W_ij)``, the *effective* fan-in
sigma_w^2 of a layer: :func:`effective_sigma_w` gives it for every scheme.

References
----------
F. Mezzadri, "How to generate random matrices from the classical compact
groups", Notices of the AMS 54 (2007).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from depthlab._lookup import lookup

Array = np.ndarray


def check_scale(name: str, value: float) -> float:
    """``value`` as a float, or a ValueError if it is not a finite number >= 0."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a finite number >= 0 (got {value!r})"
        ) from None
    if not (np.isfinite(x) and x >= 0):
        raise ValueError(f"{name} must be a finite number >= 0 (got {value!r})")
    return x


def check_size(name: str, value: int) -> int:
    """``value`` as an int, or a ValueError if it is not a positive integer."""
    try:
        n = int(value)
        ok = n == value and n >= 1 and not isinstance(value, bool)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a positive integer (got {value!r})")
    return n


def _normal(
    rng: np.random.Generator,
    shape: tuple,
    scale: float,
    dtype: np.dtype,
    out: Array | None = None,
) -> Array:
    """N(0, scale^2) in ``dtype``, drawn in it (float32: numpy's float32 ziggurat).

    With ``out`` (shape ``shape``, dtype ``dtype``, C-contiguous) the numbers are
    drawn into it and scaled in place: the same numbers, no temporary.
    """
    if out is None:
        x = rng.standard_normal(shape, dtype=dtype)
    else:
        x = rng.standard_normal(out=out, dtype=dtype)
    x *= scale
    return x


def _uniform(
    rng: np.random.Generator, shape: tuple, a: float, dtype: np.dtype
) -> Array:
    """U[-a, a) in ``dtype``: ``rng.uniform`` for float64, float32 draws otherwise."""
    if dtype == np.float64:
        return rng.uniform(-a, a, size=shape)
    x = rng.random(shape, dtype=dtype)
    x *= 2 * a
    x -= a
    return x


def _orthogonal(
    rng: np.random.Generator, shape: tuple, scale: float, dtype: np.dtype
) -> Array:
    """``scale * Q``, Q Haar-random of ``shape[-2:]`` with orthonormal rows or columns.

    Haar measure: QR of a Gaussian matrix with the signs of diag(R) fixed. The
    Gaussian matrix and its QR are float64 whatever ``dtype`` (then rounded by the
    caller): the float32 stream of this scheme is its float64 stream.
    """
    *stack, n_out, n_in = shape
    tall = n_out >= n_in
    rows, cols = (n_out, n_in) if tall else (n_in, n_out)
    g = rng.standard_normal((*stack, rows, cols))
    q, r = np.linalg.qr(g)
    signs = np.sign(np.diagonal(r, axis1=-2, axis2=-1))
    signs[signs == 0] = 1.0
    q = q * signs[..., None, :]
    if not tall:
        q = np.swapaxes(q, -1, -2)
    return scale * q


@dataclass(frozen=True)
class Initializer:
    """A weight initialization scheme: a law and the scale it is drawn at.

    Attributes
    ----------
    name : str
        Name used in configs and results.
    law : callable
        ``(rng, shape, scale, dtype) -> W``: :func:`_normal` (N(0, scale^2)),
        :func:`_uniform` (U[-scale, scale)) or :func:`_orthogonal` (scale * Q).
    scale : callable
        ``(n_out, n_in, sigma_w) -> scale``, the ``scale`` ``law`` draws at.
    default_sigma_w, default_sigma_b : float
        The defaults a config file of this scheme carries.
    fan_in_variance : callable
        ``(n_out, n_in) -> n_in * Var(W_ij) / sigma_w^2``.
    """

    name: str
    law: Callable[..., Array]
    scale: Callable[[int, int, float], float]
    default_sigma_w: float
    default_sigma_b: float
    fan_in_variance: Callable[[int, int], float]

    @property
    def in_place(self) -> bool:
        """Whether :meth:`sample_weights` also takes ``out=`` (the normal law)."""
        return self.law is _normal

    def sample_weights(
        self,
        n_out: int,
        n_in: int,
        sigma_w: float,
        rng: np.random.Generator,
        stack: tuple,
        dtype: np.dtype,
        out: Array | None = None,
    ) -> Array:
        """W of shape ``(*stack, n_out, n_in)``, drawn in ``dtype`` (float32 or 64).

        With ``out`` (only where :attr:`in_place`: an array of W's shape and dtype)
        the numbers are drawn into it, the same numbers without a temporary.
        """
        shape = (*stack, n_out, n_in)
        scale = self.scale(n_out, n_in, sigma_w)
        if out is None:
            return self.law(rng, shape, scale, dtype)
        return self.law(rng, shape, scale, dtype, out)


def _one(n_out: int, n_in: int) -> float:
    return 1.0


def _over_sqrt_fan_in(n_out: int, n_in: int, sigma_w: float) -> float:
    return sigma_w / np.sqrt(n_in)


def _glorot(n_out: int, n_in: int) -> float:
    return 2.0 * n_in / (n_in + n_out)


INITIALIZERS: dict[str, Initializer] = {
    i.name: i
    for i in (
        Initializer("gaussian", _normal, _over_sqrt_fan_in, 1.0, 0.0, _one),
        Initializer(
            "orthogonal",
            _orthogonal,
            lambda n_out, n_in, s: s,
            1.0,
            0.0,
            lambda n_out, n_in: n_in / max(n_in, n_out),
        ),
        Initializer(
            "xavier_normal",
            _normal,
            lambda n_out, n_in, s: s * np.sqrt(2.0 / (n_in + n_out)),
            1.0,
            0.0,
            _glorot,
        ),
        Initializer(
            "xavier_uniform",
            _uniform,
            lambda n_out, n_in, s: s * np.sqrt(6.0 / (n_in + n_out)),
            1.0,
            0.0,
            _glorot,
        ),
        Initializer(
            "he_normal", _normal, _over_sqrt_fan_in, float(np.sqrt(2.0)), 0.0, _one
        ),
        Initializer("lecun_normal", _normal, _over_sqrt_fan_in, 1.0, 0.0, _one),
        Initializer(
            "uniform",
            _uniform,
            lambda n_out, n_in, s: s * np.sqrt(3.0 / n_in),
            float(1 / np.sqrt(3.0)),
            0.0,
            _one,
        ),
        Initializer(
            "higham",
            _normal,
            lambda n_out, n_in, s: s,
            0.5,
            0.5,
            lambda n_out, n_in: float(n_in),
        ),
    )
}
"""Every initialization scheme depthlab knows, by name."""

INITIALIZER_NAMES: tuple[str, ...] = tuple(INITIALIZERS)


def get_initializer(name: str) -> Initializer:
    """The initialization scheme called ``name``, one of :data:`INITIALIZER_NAMES`.

    An unknown name is a ValueError that lists the valid ones.
    """
    return lookup(INITIALIZERS, "init", name)


def sample_layer(
    name: str,
    n_out: int,
    n_in: int,
    *,
    sigma_w: float,
    sigma_b: float,
    rng: np.random.Generator,
    stack: tuple[int, ...] = (),
    dtype: np.dtype | type = np.float64,
    out: tuple[Array, Array] | None = None,
) -> tuple[Array, Array]:
    """Draw one layer's weights and biases.

    Parameters
    ----------
    name : str
        Initialization scheme (see the module docstring for its variance).
    n_out, n_in : int
        Fan-out n_l and fan-in n_{l-1}.
    sigma_w, sigma_b : float
        Weight scale and bias standard deviation.
    rng : numpy.random.Generator
        Source of randomness.
    stack : tuple of int
        Leading dimensions for a stack of independent networks.
    dtype : numpy dtype
        Result dtype. float32 weights and biases are drawn in float32
        (``Generator.standard_normal(..., dtype=np.float32)``, numpy's float32
        ziggurat, and ``Generator.random(..., dtype=np.float32)``): about twice
        as fast per number as float64 and half the memory, but a different
        random stream from float64's rounded (``orthogonal`` is drawn and
        factored in float64 and rounded). float64 streams are unchanged.
    out : (ndarray, ndarray), optional
        Arrays of W's and b's shapes and ``dtype`` (C-contiguous, e.g. slices
        of a stack of networks) that receive the layer; W and b are then these
        arrays. The numbers are the same as without ``out``; the normal schemes
        draw straight into them (no temporary, no copy).

    Returns
    -------
    W : ndarray, shape (*stack, n_out, n_in)
    b : ndarray, shape (*stack, n_out)

    Raises
    ------
    ValueError
        For an unknown scheme, a size that is not a positive integer or a
        negative or non-finite ``sigma_w`` or ``sigma_b``.

    Examples
    --------
    >>> import numpy as np
    >>> W, b = sample_layer("orthogonal", 3, 5, sigma_w=2.0, sigma_b=0.0,
    ...                     rng=np.random.default_rng(0))
    >>> W.shape, b.shape
    ((3, 5), (3,))
    >>> np.allclose(W @ W.T, 4 * np.eye(3))
    True
    """
    init = get_initializer(name)
    n_out = check_size("n_out", n_out)
    n_in = check_size("n_in", n_in)
    sigma_w = check_scale("sigma_w", sigma_w)
    sigma_b = check_scale("sigma_b", sigma_b)
    stack = tuple(check_size("stack size", k) for k in stack)
    dtype = np.dtype(dtype)
    draw = dtype if dtype == np.float32 else np.dtype(np.float64)
    if out is not None:
        return _sample_into(
            out, init, (n_out, n_in, sigma_w, sigma_b), rng, stack, draw
        )
    weights = init.sample_weights(n_out, n_in, sigma_w, rng, stack, draw)
    biases = _normal(rng, (*stack, n_out), sigma_b, draw)
    return (
        np.ascontiguousarray(weights, dtype=dtype),
        np.ascontiguousarray(biases, dtype=dtype),
    )


def _sample_into(
    out: tuple[Array, Array],
    init: Initializer,
    sizes: tuple[int, int, float, float],
    rng: np.random.Generator,
    stack: tuple[int, ...],
    draw: np.dtype,
) -> tuple[Array, Array]:
    """:func:`sample_layer` into ``out``: in place where the scheme and dtype allow."""
    n_out, n_in, sigma_w, sigma_b = sizes
    W, b = out
    for key, arr, shape in (
        ("out[0]", W, (*stack, n_out, n_in)),
        ("out[1]", b, (*stack, n_out)),
    ):
        if arr.shape != shape or not arr.flags.c_contiguous or not arr.flags.writeable:
            raise ValueError(
                f"{key} must be a writeable C-contiguous array of shape {shape}; "
                f"got shape {arr.shape}"
            )
    same = W.dtype == draw and b.dtype == draw
    if same and init.in_place:
        init.sample_weights(n_out, n_in, sigma_w, rng, stack, draw, out=W)
    else:
        W[...] = init.sample_weights(n_out, n_in, sigma_w, rng, stack, draw)
    if same:
        _normal(rng, (*stack, n_out), sigma_b, draw, out=b)
    else:
        b[...] = _normal(rng, (*stack, n_out), sigma_b, draw)
    return W, b


def effective_sigma_w(name: str, n_out: int, n_in: int, sigma_w: float) -> float:
    """The fan-in standard deviation sqrt(n_in * Var(W_ij)) a scheme gives.

    This is the sigma_w that mean-field theory sees for the layer: equal to
    ``sigma_w`` for ``gaussian``, ``he_normal``, ``lecun_normal`` and
    ``uniform``, and for ``orthogonal`` and the Xavier schemes on square layers.

    Parameters
    ----------
    name : str
        Initialization scheme.
    n_out, n_in : int
        Fan-out n_l and fan-in n_{l-1}.
    sigma_w : float
        The scheme's weight scale.

    Returns
    -------
    float
        sqrt(n_in * Var(W_ij)).

    Examples
    --------
    >>> effective_sigma_w("higham", 3, 4, 0.5)
    1.0
    """
    init = get_initializer(name)
    return float(sigma_w * np.sqrt(init.fan_in_variance(n_out, n_in)))
