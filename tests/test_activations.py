"""Activations against references that do not share their code.

References are Python's ``math`` module evaluated one number at a time (no numpy
or scipy), central finite differences, and the closed-form limits of each
function. Tolerances are stated where they are used.
"""

import math

import numpy as np
import pytest
from conftest import assert_unknown_name

from depthlab.activations import (
    ACTIVATION_NAMES,
    ACTIVATIONS,
    LEAKY_RELU_SLOPE,
    get_activation,
)

_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)


def _sig(z: float) -> float:
    # 1 / (1 + e^{-z}) without overflow of e^{-z} for z < -709.
    return 1.0 / (1.0 + math.exp(-z)) if z > -700 else math.exp(z) / (1 + math.exp(z))


# sigma(z), from its definition, with math (erfc where erf would cancel).
REFERENCE_FN = {
    "sigmoid": _sig,
    "tanh": math.tanh,
    "relu": lambda z: max(z, 0.0),
    "leaky_relu": lambda z: z if z > 0 else LEAKY_RELU_SLOPE * z,
    "linear": lambda z: z,
    "hard_tanh": lambda z: max(-1.0, min(1.0, z)),
    "softplus": lambda z: (
        z + math.log1p(math.exp(-z)) if z > 0 else math.log1p(math.exp(z))
    ),
    "elu": lambda z: z if z > 0 else math.expm1(z),
    # 0.5 z (1 + erf(z / sqrt 2)), written with erfc(-x) = 1 + erf(x) so that the
    # reference itself does not cancel for z < 0.
    "gelu": lambda z: 0.5 * z * math.erfc(-z / _SQRT2),
    "silu": lambda z: z * _sig(z),
    "erf": math.erf,
}

# sigma'(z), by hand, with math. Each is accurate in the tails (no 1 - s form).
REFERENCE_DERIVATIVE = {
    "sigmoid": lambda z: _sig(z) * _sig(-z),
    "tanh": lambda z: 1.0 / math.cosh(z) ** 2 if abs(z) < 355 else 0.0,
    "relu": lambda z: 1.0 if z > 0 else 0.0,
    "leaky_relu": lambda z: 1.0 if z > 0 else LEAKY_RELU_SLOPE,
    "linear": lambda z: 1.0,
    "hard_tanh": lambda z: 1.0 if abs(z) < 1 else 0.0,
    "softplus": _sig,
    "elu": lambda z: 1.0 if z > 0 else math.exp(z),
    "gelu": lambda z: (
        0.5 * math.erfc(-z / _SQRT2) + z * math.exp(-z * z / 2) / _SQRT2PI
    ),
    "silu": lambda z: _sig(z) * (1 + z * _sig(-z)),
    "erf": lambda z: 2 / math.sqrt(math.pi) * math.exp(-z * z),
}

# Where the derivative is not smooth (finite differences must stay away).
KINKS = {"relu": (0.0,), "leaky_relu": (0.0,), "hard_tanh": (-1.0, 1.0), "elu": (0.0,)}

# sigma'(z) for z -> -inf and z -> +inf.
DERIVATIVE_LIMITS = {
    "sigmoid": (0, 0),
    "tanh": (0, 0),
    "relu": (0, 1),
    "leaky_relu": (LEAKY_RELU_SLOPE, 1),
    "linear": (1, 1),
    "hard_tanh": (0, 0),
    "softplus": (0, 1),
    "elu": (0, 1),
    "gelu": (0, 1),
    "silu": (0, 1),
    "erf": (0, 0),
}

# A point in each saturating tail where sigma' is small but above 1e-300: the
# derivative must not have cancelled to 0 there.
TAILS = {
    "sigmoid": (-690.0, 690.0),
    "tanh": (-345.0, 345.0),
    "softplus": (-690.0,),
    "elu": (-690.0,),
    "gelu": (-37.0,),
    "silu": (-690.0,),
    "erf": (-26.0, 26.0),
}

GRID = np.linspace(-30, 30, 6001)


def _apply(f, z: np.ndarray) -> np.ndarray:
    return np.array([f(float(x)) for x in z])


def test_names_are_the_issues_list():
    assert set(ACTIVATION_NAMES) == set(REFERENCE_FN)
    assert len(ACTIVATION_NAMES) == 11
    flagged = {n for n, a in ACTIVATIONS.items() if a.piecewise_linear}
    assert flagged == {"relu", "leaky_relu", "linear", "hard_tanh"}


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_fn_matches_reference_formula(name):
    # rtol 1e-12: a few ulps of each elementary function, plus the rounding of
    # x = z / sqrt(2) amplified by the Gaussian tail of gelu, whose condition
    # number is 2 x^2: 2 * 450 * 1.1e-16 = 1e-13 at |z| = 30 (measured 1.8e-13).
    act = get_activation(name)
    got = act.fn(GRID)
    np.testing.assert_allclose(got, _apply(REFERENCE_FN[name], GRID), rtol=1e-12)
    assert np.array_equal(act(GRID), got)


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_derivative_matches_reference_formula(name):
    # rtol 1e-12 as above. atol 1e-15: gelu' and silu' cross zero (at z = -0.75
    # and -1.28), where both formulas cancel to a few eps of their O(1) terms.
    got = get_activation(name).derivative(GRID)
    ref = _apply(REFERENCE_DERIVATIVE[name], GRID)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_derivative_matches_central_differences(name):
    act = get_activation(name)
    z = np.linspace(-6, 6, 1201) + 1e-3 * np.pi  # no grid point on a kink
    for k in KINKS.get(name, ()):
        assert np.min(np.abs(z - k)) > 1e-3
    h = 1e-6
    zp, zm = z + h, z - h
    fd = (act.fn(zp) - act.fn(zm)) / (zp - zm)  # the step actually taken
    # Error of the central difference: truncation h^2 |sigma'''| / 6 < 1e-12, and
    # rounding eps |sigma| / h < 2.2e-16 * 6 / 1e-6 = 1.3e-9 (|sigma| <= 6 here).
    # Points within h of a kink are excluded above, so relu-like ones are exact.
    np.testing.assert_allclose(act.derivative(z), fd, rtol=1e-8, atol=2e-9)


@pytest.mark.parametrize("name", sorted(TAILS))
def test_saturating_derivatives_do_not_cancel_to_zero(name):
    z = np.array(TAILS[name])
    got = get_activation(name).derivative(z)
    ref = _apply(REFERENCE_DERIVATIVE[name], z)
    assert np.all(np.abs(ref) > 1e-300)
    # rtol 1e-12: exp of an argument of size |x| <= 700 carries the relative
    # error |x| eps = 1.6e-13 of rounding x; nothing else is inexact.
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", ["gelu", "erf"])
def test_gaussian_tails_against_finite_differences(name):
    # An independent check of the Gaussian tails, where the reference above uses
    # the same formula: differentiate an accurate function numerically. gelu(z)
    # is accurate for z < 0; erf'(z) = -erfc'(z) and erfc is accurate for z > 0.
    if name == "gelu":
        z = np.array([-5.0, -10.0, -20.0, -30.0, -37.0])
        f = get_activation("gelu").fn
    else:
        z = np.array([2.0, 5.0, 10.0, 20.0, 26.0])
        from scipy.special import erfc

        def f(x):
            return -erfc(x)

    h = 1e-7 * np.abs(z)
    fd = (f(z + h) - f(z - h)) / (2 * h)
    # Relative step 1e-7: truncation (h z^2)^2 ~ (3.7e-6 * 37)^2 / 6 < 1e-8
    # relative; rounding eps / (h |f'/f|) < 1e-9.
    np.testing.assert_allclose(get_activation(name).derivative(z), fd, rtol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_extreme_inputs_no_warnings_finite_limits(name, dtype):
    fmax = float(np.finfo(dtype).max)
    tiny = float(np.finfo(dtype).tiny)
    z = np.array(
        [
            -fmax,
            -1e30 if dtype == np.float64 else -1e20,
            -1e4,
            -100.0,
            -tiny,
            -0.0,
            0.0,
            tiny,
            100.0,
            1e4,
            1e20,
            fmax,
        ],
        dtype=dtype,
    )
    act = get_activation(name)
    # Underflow is not an error: e^{-1e4} = 0 is the correctly rounded result.
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        value = act.fn(z)
        slope = act.derivative(z)
    for out in (value, slope):
        assert out.dtype == dtype
        assert np.all(np.isfinite(out))
    low, high = DERIVATIVE_LIMITS[name]
    assert slope[0] == low and slope[1] == low
    assert slope[-1] == high and slope[-2] == high


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_float32_in_float32_out(name):
    z64 = np.linspace(-10, 10, 2001) + 1e-3 * np.pi
    z32 = z64.astype(np.float32)
    act = get_activation(name)
    for f in (act.fn, act.derivative):
        got = f(z32)
        assert got.dtype == np.float32
        # The same (float32-representable) inputs in float64: float32 results are
        # a few float32 ulps (6e-8) off, so rtol 1e-6 with atol 1e-7 near 0.
        np.testing.assert_allclose(got, f(z32.astype(np.float64)), rtol=1e-6, atol=1e-7)


def test_values_at_kinks():
    z = np.array([0.0, -1.0, 1.0])
    assert get_activation("relu").derivative(z)[0] == 0
    assert get_activation("leaky_relu").derivative(z)[0] == LEAKY_RELU_SLOPE
    assert np.all(get_activation("hard_tanh").derivative(z)[1:] == 0)
    assert get_activation("elu").derivative(z)[0] == 1


@pytest.mark.parametrize("bad", ["Relu", "softmax", "", None, 3])
def test_unknown_activation_names_the_value_and_the_valid_ones(bad):
    assert_unknown_name(get_activation, bad, "activation", ACTIVATION_NAMES)


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_scalars_and_lists(name):
    act = get_activation(name)
    for f in (act.fn, act.derivative):
        array = f(np.array([0.5, -1.5]))
        # Python numbers and lists are float64; a float32 scalar stays float32.
        for x, dtype in (
            (0.5, np.float64),
            (np.float32(0.5), np.float32),
            (2, np.float64),
        ):
            assert np.asarray(f(x)).dtype == dtype
        np.testing.assert_array_equal(f([0.5, -1.5]), array)
        assert float(f(0.5)) == array[0]
