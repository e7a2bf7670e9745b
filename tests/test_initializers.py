"""Initializers against the variances their module docstring documents.

The expected variances are written out here from that table, not taken from the
code's ``fan_in_variance``. Monte Carlo tolerances are five standard errors of
the estimate, so a correct sampler fails with probability below 1e-6 per check.
"""

import functools

import numpy as np
import pytest
from conftest import assert_unknown_name

from depthlab.initializers import (
    INITIALIZER_NAMES,
    INITIALIZERS,
    effective_sigma_w,
    get_initializer,
    sample_layer,
)

# Var(W_ij) of every scheme, from the table in depthlab/initializers.py.
DOCUMENTED_VARIANCE = {
    "gaussian": lambda n_out, n_in, s: s**2 / n_in,
    "orthogonal": lambda n_out, n_in, s: s**2 / max(n_in, n_out),
    "xavier_normal": lambda n_out, n_in, s: s**2 * 2 / (n_in + n_out),
    "xavier_uniform": lambda n_out, n_in, s: s**2 * 2 / (n_in + n_out),
    "he_normal": lambda n_out, n_in, s: s**2 / n_in,
    "lecun_normal": lambda n_out, n_in, s: s**2 / n_in,
    "uniform": lambda n_out, n_in, s: s**2 / n_in,
    "higham": lambda n_out, n_in, s: s**2,
}
UNIFORM_HALF_WIDTH = {
    "uniform": lambda n_out, n_in, s: s * np.sqrt(3 / n_in),
    "xavier_uniform": lambda n_out, n_in, s: s * np.sqrt(6 / (n_in + n_out)),
}
SHAPES = {"wide": (30, 50), "tall": (50, 30), "square": (40, 40)}  # (n_out, n_in)
K = 200  # layers per Monte Carlo sample: N = 200 * 1500 = 300,000 entries


each_scheme_and_shape = pytest.mark.parametrize(
    ("name", "shape"),
    [
        pytest.param(name, shape, id=f"{name}-{kind}")
        for name in INITIALIZER_NAMES
        for kind, shape in SHAPES.items()
    ],
)


def _stack_of_layers(name, shape, sigma_w, rng):
    """W of K layers of one scheme and shape (biases 0), shape (K, n_out, n_in)."""
    n_out, n_in = shape
    W, _ = sample_layer(
        name, n_out, n_in, sigma_w=sigma_w, sigma_b=0.0, rng=rng, stack=(K,)
    )
    return W


def test_names_are_the_issues_list():
    assert set(INITIALIZER_NAMES) == set(DOCUMENTED_VARIANCE)


@each_scheme_and_shape
def test_empirical_variance_matches_documented(name, shape, rng):
    n_out, n_in = shape
    sigma_w = 1.7
    W = _stack_of_layers(name, shape, sigma_w, rng)
    assert W.shape == (K, n_out, n_in)
    var = DOCUMENTED_VARIANCE[name](n_out, n_in, sigma_w)
    n = W.size
    # Mean 0: the standard error of the mean is sqrt(var / N).
    assert abs(W.mean()) < 5 * np.sqrt(var / n)
    # E[W^2] = var: the standard error of a mean of squares is sqrt(2 / N) var
    # for Gaussian entries, less for uniform (sqrt(0.8 / N)) and orthogonal ones
    # (their sum of squares is fixed).
    assert abs(np.mean(W**2) / var - 1) < 5 * np.sqrt(2 / n)
    if name in UNIFORM_HALF_WIDTH:
        a = UNIFORM_HALF_WIDTH[name](n_out, n_in, sigma_w)
        assert np.max(np.abs(W)) <= a
        assert np.max(np.abs(W)) > 0.999 * a  # P(all of 300,000 below) ~ e^-300


@each_scheme_and_shape
def test_effective_sigma_w_is_empirical_fan_in_std(name, shape, rng):
    n_out, n_in = shape
    sigma_w = 0.8
    W = _stack_of_layers(name, shape, sigma_w, rng)
    empirical = np.sqrt(n_in * np.mean(W**2))
    # sqrt halves the relative error of the mean of squares (see above).
    expected = effective_sigma_w(name, n_out, n_in, sigma_w)
    assert abs(empirical / expected - 1) < 2.5 * np.sqrt(2 / W.size)


def test_effective_sigma_w_exact_values():
    assert effective_sigma_w("gaussian", 7, 3, 1.3) == pytest.approx(1.3, rel=1e-15)
    assert effective_sigma_w("higham", 3, 4, 0.5) == pytest.approx(1.0, rel=1e-15)
    assert effective_sigma_w("orthogonal", 50, 30, 2.0) == pytest.approx(
        2.0 * np.sqrt(30 / 50), rel=1e-15
    )
    assert effective_sigma_w("orthogonal", 30, 50, 2.0) == pytest.approx(2.0)
    assert effective_sigma_w("xavier_normal", 10, 30, 1.0) == pytest.approx(
        np.sqrt(1.5), rel=1e-15
    )


@pytest.mark.parametrize("name", INITIALIZER_NAMES)
def test_bias_variance(name, rng):
    sigma_b = 0.3
    _, b = sample_layer(
        name, 50, 20, sigma_w=1.0, sigma_b=sigma_b, rng=rng, stack=(400,)
    )
    assert b.shape == (400, 50)
    assert abs(b.mean()) < 5 * sigma_b / np.sqrt(b.size)
    assert abs(np.mean(b**2) / sigma_b**2 - 1) < 5 * np.sqrt(2 / b.size)
    _, b0 = sample_layer(name, 50, 20, sigma_w=1.0, sigma_b=0.0, rng=rng)
    assert np.all(b0 == 0)


@pytest.mark.parametrize("shape", [(9, 4), (4, 9), (6, 6)], ids=["tall", "wide", "sq"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_orthogonal_has_orthonormal_columns_or_rows(shape, dtype, rng):
    n_out, n_in = shape
    sigma_w = 2.5
    W, _ = sample_layer(
        "orthogonal",
        n_out,
        n_in,
        sigma_w=sigma_w,
        sigma_b=0.0,
        rng=rng,
        stack=(3,),
        dtype=dtype,
    )
    assert W.dtype == dtype and W.shape == (3, n_out, n_in)
    W = W.astype(np.float64)
    Wt = np.swapaxes(W, -1, -2)
    gram = Wt @ W if n_out >= n_in else W @ Wt  # Q^T Q (tall) or Q Q^T (wide)
    eye = np.broadcast_to(np.eye(min(shape)), gram.shape)
    # Householder QR is backward stable: ||Q^T Q - I|| ~ n eps (float64), or the
    # float32 rounding of the entries, 6e-8 relative.
    tol = 1e-13 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(gram / sigma_w**2, eye, atol=tol)


def _sphere_moment(n: int, k: int) -> float:
    """E[x_1^k] for x uniform on the sphere S^{n-1} (k even): prod (j-1)/(n+j-2)."""
    return float(np.prod([(j - 1) / (n + j - 2) for j in range(2, k + 1, 2)]))


@pytest.mark.parametrize("shape", [(4, 2), (2, 4), (3, 3)], ids=["tall", "wide", "sq"])
def test_orthogonal_is_haar(shape, rng):
    # Haar-distributed Q (n x m, n >= m; the transpose for wide layers) has every
    # column uniform on the sphere S^{n-1}: E[Q_ij] = 0, E[Q_ij^2] = 1/n,
    # E[Q_ij^4] = 3 / (n (n + 2)). QR of a Gaussian without the sign fix gives
    # Q_11 < 0 always (E[Q_11] is about -0.4 for these shapes).
    n_out, n_in = shape
    n = max(shape)
    k = 20_000
    Q, _ = sample_layer(
        "orthogonal", n_out, n_in, sigma_w=1.0, sigma_b=0.0, rng=rng, stack=(k,)
    )
    # Tolerance: 5 standard errors of a mean over k draws, the variance of Q_ij^p
    # being E[x^2p] - E[x^p]^2 from the sphere's moments.
    for p in (1, 2, 4):
        mean = _sphere_moment(n, p) if p % 2 == 0 else 0.0
        std = np.sqrt(_sphere_moment(n, 2 * p) - mean**2)
        np.testing.assert_allclose(
            np.mean(Q**p, axis=0), mean, atol=5 * std / np.sqrt(k)
        )
    if n_out == n_in:
        # Haar O(n): E[tr Q] = 0 and E[(tr Q)^2] = n E[Q_11^2] = 1 (sign-flip
        # invariance kills the cross terms); without the sign fix they are -0.5
        # and 0.5. Var(tr Q) = 1 and Var((tr Q)^2) = 2 (measured, 4e5 draws).
        trace = np.trace(Q, axis1=-2, axis2=-1)
        assert abs(trace.mean()) < 5 / np.sqrt(k)
        assert abs(np.mean(trace**2) - 1) < 5 * np.sqrt(2 / k)


def test_defaults_of_the_schemes():
    assert INITIALIZERS["he_normal"].default_sigma_w == pytest.approx(np.sqrt(2))
    assert INITIALIZERS["higham"].default_sigma_w == 0.5
    assert INITIALIZERS["higham"].default_sigma_b == 0.5
    # The "standard" Glorot & Bengio uniform: U[-1/sqrt(n_in), 1/sqrt(n_in)].
    s = INITIALIZERS["uniform"].default_sigma_w
    assert UNIFORM_HALF_WIDTH["uniform"](5, 16, s) == pytest.approx(0.25, rel=1e-15)


def test_seeded_and_typed(rng):
    seed = 1234
    a, b = (
        sample_layer(
            "gaussian",
            3,
            4,
            sigma_w=1.0,
            sigma_b=0.1,
            rng=np.random.default_rng(seed),
            dtype=np.float32,
        )
        for _ in range(2)
    )
    for x, y in zip(a, b, strict=True):
        assert x.dtype == np.float32 and np.array_equal(x, y)
        assert x.flags.c_contiguous


@pytest.mark.parametrize("bad", ["Gaussian", "kaiming", "", None])
def test_unknown_init_names_the_value_and_the_valid_ones(bad):
    assert_unknown_name(get_initializer, bad, "init", INITIALIZER_NAMES)


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"sigma_w": -1.0}, ["sigma_w", "-1.0"]),
        ({"sigma_b": float("nan")}, ["sigma_b", "nan"]),
        ({"n_in": 0}, ["n_in", "0"]),
        ({"n_out": 2.5}, ["n_out", "2.5"]),
        ({"stack": (0,)}, ["stack", "0"]),
    ],
)
def test_sample_layer_validation(kwargs, names, rng):
    args = {"n_out": 3, "n_in": 4, "sigma_w": 1.0, "sigma_b": 0.0, "stack": ()}
    args.update(kwargs)
    n_out, n_in = args.pop("n_out"), args.pop("n_in")
    with pytest.raises(ValueError) as info:
        sample_layer("gaussian", n_out, n_in, rng=rng, **args)
    assert all(word in str(info.value) for word in names)


@pytest.mark.parametrize("name", INITIALIZER_NAMES)
def test_float32_is_drawn_in_float32_with_the_documented_variance(name, rng):
    # float32 layers come from numpy's float32 samplers (not float64 draws
    # rounded), except orthogonal (drawn and factored in float64, rounded).
    # Reference for the stream: the same Generator calls made here; for the
    # distribution: the documented variance, Monte Carlo tolerance as above.
    n_out, n_in, sigma_w, sigma_b = 40, 30, 1.3, 0.2
    seed = int(rng.integers(2**32))
    draw = functools.partial(
        sample_layer, name, n_out, n_in, sigma_w=sigma_w, sigma_b=sigma_b, stack=(K,)
    )
    W, b = draw(rng=np.random.default_rng(seed), dtype=np.float32)
    assert W.dtype == b.dtype == np.float32
    W64, _ = draw(rng=np.random.default_rng(seed))
    if name == "orthogonal":
        np.testing.assert_array_equal(W, W64.astype(np.float32))
    else:
        g = np.random.default_rng(seed)
        if name in UNIFORM_HALF_WIDTH:
            a = UNIFORM_HALF_WIDTH[name](n_out, n_in, sigma_w)
            u = g.random((K, n_out, n_in), dtype=np.float32)
            expected = u * np.float32(2 * a) - np.float32(a)
            assert np.abs(W).max() <= a
        else:
            std = np.sqrt(DOCUMENTED_VARIANCE[name](n_out, n_in, sigma_w))
            expected = g.standard_normal((K, n_out, n_in), dtype=np.float32)
            expected *= np.float32(std)
        np.testing.assert_allclose(W, expected, rtol=1e-6, atol=1e-7)
        expected_b = g.standard_normal((K, n_out), dtype=np.float32) * np.float32(
            sigma_b
        )
        np.testing.assert_allclose(b, expected_b, rtol=1e-6)
        assert not np.array_equal(W, W64.astype(np.float32))
    var = DOCUMENTED_VARIANCE[name](n_out, n_in, sigma_w)
    W = W.astype(np.float64)
    assert abs(W.mean()) < 5 * np.sqrt(var / W.size)
    assert abs(np.mean(W**2) / var - 1) < 5 * np.sqrt(2 / W.size)
