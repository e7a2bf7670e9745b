"""Activation functions sigma and their derivatives sigma'.

Every activation is vectorized, keeps the dtype of its input (float32 stays
float32) and raises no floating-point warning (overflow, invalid, divide) for
any finite input, however large. The derivatives of saturating functions are
written so that they decay smoothly instead of cancelling to zero:
``sigmoid'(40)`` is 4.2e-18 and ``tanh'(300)`` is 1.1e-260, not 0 (the naive
``s (1 - s)`` and ``1 - tanh^2`` are 0 from about z = 37 and z = 19 on). They
reach 0 only where the true value is below the smallest subnormal number.

==============  ================================================  =============
name            sigma(z)                                          sigma'(z)
==============  ================================================  =============
``sigmoid``     1 / (1 + e^{-z}) (the paper's)                    s (1 - s)
``tanh``        tanh z                                            1 - tanh^2 z
``relu``        max(z, 0)                                         1 if z > 0
``leaky_relu``  z if z > 0 else a z, a = 0.01                      1 or a
``linear``      z                                                 1
``hard_tanh``   clip(z, -1, 1)                                    1 if |z| < 1
``softplus``    log(1 + e^z)                                      sigmoid(z)
``elu``         z if z > 0 else e^z - 1 (alpha = 1)               1 or e^z
``gelu``        z Phi(z), Phi the normal CDF (exact, not the      Phi + z phi
                tanh approximation)
``silu``        z sigmoid(z)                                      s (1 + z (1-s))
``erf``         erf(z)                                            2/sqrt(pi) e^{-z^2}
==============  ================================================  =============

(a is :data:`LEAKY_RELU_SLOPE`). At a kink the derivative takes the value of
the flat side: ``relu'(0) = 0``, ``leaky_relu'(0) = 0.01``, ``hard_tanh'(±1) = 0``
(and ``elu'(0) = 1``: elu is continuously differentiable).

The names above are the only valid values of ``activation`` and
``output_activation`` anywhere in depthlab (API, config, MLflow, plots).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special

from depthlab._lookup import lookup

Array = np.ndarray

# Python floats, not numpy float64 scalars: they take the dtype of the array
# they multiply (NEP 50), so float32 stays float32.
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
LEAKY_RELU_SLOPE = 0.01
"""Slope of ``leaky_relu`` for negative inputs."""


@dataclass(frozen=True)
class Activation:
    """An activation function with its derivative.

    Attributes
    ----------
    name : str
        The name used in configs and results.
    fn : callable
        sigma(z), elementwise.
    derivative : callable
        sigma'(z), elementwise.
    piecewise_linear : bool
        True for activations whose mean-field integrals have closed forms
        (``relu``, ``leaky_relu``, ``linear``, ``hard_tanh``).
    """

    name: str
    fn: Callable[[Array], Array]
    derivative: Callable[[Array], Array]
    piecewise_linear: bool = False

    def __call__(self, z: Array) -> Array:
        return self.fn(z)


_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _ftype(z: Array) -> np.dtype:
    """The float dtype results take: float32 stays float32, the rest float64."""
    if isinstance(z, np.ndarray) and z.dtype in _FLOAT_DTYPES:
        return z.dtype  # the common case, without result_type's cost (~0.6 µs)
    return np.result_type(np.asarray(z).dtype, np.float32)


def _c(z: Array, value: float) -> Array:
    """A constant in the dtype of ``z`` (keeps float32 computations float32)."""
    return np.asarray(value, dtype=_ftype(z))


def _abs(z: Array) -> Array:
    """|z| in a new float array (0-d for a scalar) that the caller works on in place.

    The derivatives below are chains of in-place operations on one or two work
    arrays: they cost a few passes over memory instead of one new temporary per
    operation.
    """
    return np.abs(z, out=_empty(z))


def _empty(z: Array) -> Array:
    """A new float array shaped like ``z`` (0-d for a scalar)."""
    shape = z.shape if isinstance(z, np.ndarray) else np.shape(z)
    return np.empty(shape, dtype=_ftype(z))


# exp(-x) is 0 in float64 (and float32) for x > 745; clipping |z| at this bound
# before squaring keeps the exponent finite (no overflow for any finite z)
# without changing any result.
_EXP_CLIP_SQUARE = 40.0  # exp(-0.5 * 40**2) == 0


def _sigmoid(z: Array) -> Array:
    return special.expit(z)


def _sigmoid_prime(z: Array) -> Array:
    # sigma'(z) = 1 / (2 + 2 cosh z) = (0.5 / cosh(z/2))^2: exact for all z, no
    # cancellation, four passes over memory. 0.5 / cosh(z/2) is a normal number
    # for |z| < 1400, so the square underflows gradually (to 0 only below the
    # smallest subnormal); cosh(z/2) = inf beyond |z| = 1420 gives 0.
    c = np.multiply(z, 0.5, out=_empty(z))
    with np.errstate(over="ignore"):
        np.cosh(c, out=c)
    np.divide(0.5, c, out=c)
    np.multiply(c, c, out=c)
    return c


def _tanh_prime(z: Array) -> Array:
    # 1 - tanh(z)^2 = (1 / cosh z)^2, accurate where tanh saturates, three passes
    # over memory. 1 / cosh z is a normal number for |z| < 708, so the square
    # underflows gradually (to 0 only below the smallest subnormal); cosh z = inf
    # beyond |z| = 710 (89 in float32) gives 0.
    with np.errstate(over="ignore"):
        c = np.cosh(z, out=_empty(z))
    np.reciprocal(c, out=c)
    np.multiply(c, c, out=c)
    return c


def _relu(z: Array) -> Array:
    return np.maximum(z, _c(z, 0.0))


def _relu_prime(z: Array) -> Array:
    return np.greater(z, 0).astype(_ftype(z))


def _leaky_relu(z: Array) -> Array:
    # max(z, a z) for 0 < a < 1 is z for z > 0 and a z otherwise.
    return np.maximum(z, _c(z, LEAKY_RELU_SLOPE) * z)


def _leaky_relu_prime(z: Array) -> Array:
    return np.where(np.greater(z, 0), _c(z, 1.0), _c(z, LEAKY_RELU_SLOPE))


def _linear(z: Array) -> Array:
    return np.asarray(z, dtype=_ftype(z))


def _linear_prime(z: Array) -> Array:
    return np.ones(np.shape(z), dtype=_ftype(z))


def _hard_tanh(z: Array) -> Array:
    return np.clip(z, _c(z, -1.0), _c(z, 1.0))


def _hard_tanh_prime(z: Array) -> Array:
    return np.less(np.abs(z), 1).astype(_ftype(z))


def _softplus(z: Array) -> Array:
    # max(z, 0) + log(1 + e^{-|z|}): no overflow, and accurate in both tails.
    e = _abs(z)
    np.negative(e, out=e)
    np.exp(e, out=e)
    np.log1p(e, out=e)
    e += np.maximum(z, _c(z, 0.0))
    return e


def _elu(z: Array) -> Array:
    # expm1(min(z, 0)) + max(z, 0): e^z - 1 for z <= 0 and z for z > 0, exactly.
    e = np.minimum(z, 0.0, out=_empty(z))
    np.expm1(e, out=e)
    e += np.maximum(z, _c(z, 0.0))
    return e


def _elu_prime(z: Array) -> Array:
    # exp(min(z, 0)): e^z for z <= 0 and exp(0) = 1 for z > 0.
    e = np.minimum(z, 0.0, out=_empty(z))
    np.exp(e, out=e)
    return e


def _gelu(z: Array) -> Array:
    # Exact GELU: z * Phi(z).
    return z * special.ndtr(z)


def _gelu_prime(z: Array) -> Array:
    # Phi(z) + z phi(z). For z -> -inf both terms decay like phi(z) and differ by
    # a factor z^2, so there is no cancellation.
    e = _abs(z)
    np.minimum(e, _EXP_CLIP_SQUARE, out=e)
    e *= e
    e *= -0.5
    np.exp(e, out=e)
    e *= _INV_SQRT_2PI
    e *= z
    e += special.ndtr(z)
    return e


def _silu(z: Array) -> Array:
    return z * special.expit(z)


def _silu_prime(z: Array) -> Array:
    # s + z s (1 - s), with s (1 - s) = sigmoid'(z) computed without cancellation.
    e = _sigmoid_prime(z)
    e *= z
    e += special.expit(z)
    return e


def _erf(z: Array) -> Array:
    return special.erf(z)


def _erf_prime(z: Array) -> Array:
    e = _abs(z)
    np.minimum(e, _EXP_CLIP_SQUARE, out=e)
    e *= e
    np.negative(e, out=e)
    np.exp(e, out=e)
    e *= _TWO_OVER_SQRT_PI
    return e


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("sigmoid", _sigmoid, _sigmoid_prime),
        Activation("tanh", np.tanh, _tanh_prime),
        Activation("relu", _relu, _relu_prime, piecewise_linear=True),
        Activation("leaky_relu", _leaky_relu, _leaky_relu_prime, piecewise_linear=True),
        Activation("linear", _linear, _linear_prime, piecewise_linear=True),
        Activation("hard_tanh", _hard_tanh, _hard_tanh_prime, piecewise_linear=True),
        Activation("softplus", _softplus, _sigmoid),
        Activation("elu", _elu, _elu_prime),
        Activation("gelu", _gelu, _gelu_prime),
        Activation("silu", _silu, _silu_prime),
        Activation("erf", _erf, _erf_prime),
    )
}
"""Every activation depthlab knows, by name."""

ACTIVATION_NAMES: tuple[str, ...] = tuple(ACTIVATIONS)


def get_activation(name: str) -> Activation:
    """The activation called ``name``, one of :data:`ACTIVATION_NAMES`.

    An unknown name is a ValueError that lists the valid ones.

    Examples
    --------
    >>> import numpy as np
    >>> get_activation("relu").derivative(np.array([-1.0, 2.0]))
    array([0., 1.])
    """
    return lookup(ACTIVATIONS, "activation", name)
