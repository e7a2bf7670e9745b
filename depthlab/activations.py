"""Activation functions sigma and their derivatives sigma'.

Every activation is vectorized, keeps the dtype of its input (float32 stays
float32) and raises no floating-point warning for any finite input: the
derivatives of saturating functions are written so that they decay smoothly
(``sigmoid'(40)`` is 4.2e-18, not 0) instead of cancelling to zero.

The names below are the only valid values of ``activation`` and
``output_activation`` anywhere in depthlab (API, config, MLflow, plots).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special

Array = np.ndarray

_SQRT_2 = np.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)
_TWO_OVER_SQRT_PI = 2.0 / np.sqrt(np.pi)
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


def _c(z: Array, value: float) -> Array:
    """A constant in the dtype of ``z`` (keeps float32 computations float32)."""
    return np.asarray(value, dtype=np.result_type(z, np.float32))


def _sigmoid(z: Array) -> Array:
    return special.expit(z)


def _sigmoid_prime(z: Array) -> Array:
    # sigma'(z) = e^{-|z|} / (1 + e^{-|z|})^2: exact for all z, no cancellation.
    e = np.exp(-np.abs(z))
    return e / (1 + e) ** 2


def _tanh_prime(z: Array) -> Array:
    # 1 - tanh(z)^2 = 4 e^{-2|z|} / (1 + e^{-2|z|})^2, accurate where tanh saturates.
    e = np.exp(-2 * np.abs(z))
    return 4 * e / (1 + e) ** 2


def _relu(z: Array) -> Array:
    return np.maximum(z, 0)


def _relu_prime(z: Array) -> Array:
    return (z > 0).astype(np.result_type(z, np.float32))


def _leaky_relu(z: Array) -> Array:
    return np.where(z > 0, z, _c(z, LEAKY_RELU_SLOPE) * z)


def _leaky_relu_prime(z: Array) -> Array:
    return np.where(z > 0, _c(z, 1.0), _c(z, LEAKY_RELU_SLOPE))


def _linear(z: Array) -> Array:
    return np.asarray(z)


def _linear_prime(z: Array) -> Array:
    return np.ones_like(z, dtype=np.result_type(z, np.float32))


def _hard_tanh(z: Array) -> Array:
    return np.clip(z, -1, 1)


def _hard_tanh_prime(z: Array) -> Array:
    return (np.abs(z) < 1).astype(np.result_type(z, np.float32))


def _softplus(z: Array) -> Array:
    return np.logaddexp(_c(z, 0.0), z)


def _elu(z: Array) -> Array:
    return np.where(z > 0, z, np.expm1(np.minimum(z, 0)))


def _elu_prime(z: Array) -> Array:
    return np.where(z > 0, _c(z, 1.0), np.exp(np.minimum(z, 0)))


def _gelu(z: Array) -> Array:
    # Exact GELU: z * Phi(z).
    return z * special.ndtr(z)


def _gelu_prime(z: Array) -> Array:
    return special.ndtr(z) + z * _c(z, _INV_SQRT_2PI) * np.exp(-0.5 * z * z)


def _silu(z: Array) -> Array:
    return z * special.expit(z)


def _silu_prime(z: Array) -> Array:
    s = special.expit(z)
    return s + z * _sigmoid_prime(z)


def _erf(z: Array) -> Array:
    return special.erf(z)


def _erf_prime(z: Array) -> Array:
    return _c(z, _TWO_OVER_SQRT_PI) * np.exp(-z * z)


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("sigmoid", _sigmoid, _sigmoid_prime),
        Activation("tanh", np.tanh, _tanh_prime),
        Activation("relu", _relu, _relu_prime, piecewise_linear=True),
        Activation(
            "leaky_relu", _leaky_relu, _leaky_relu_prime, piecewise_linear=True
        ),
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
    """Look up an activation by name.

    Parameters
    ----------
    name : str
        One of :data:`ACTIVATION_NAMES`.

    Returns
    -------
    Activation

    Raises
    ------
    ValueError
        If ``name`` is unknown; the message lists the valid names.

    Examples
    --------
    >>> import numpy as np
    >>> get_activation("relu").derivative(np.array([-1.0, 2.0]))
    array([0., 1.])
    """
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown activation {name!r}; valid: {', '.join(ACTIVATION_NAMES)}"
        ) from None
