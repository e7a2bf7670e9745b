"""Tests of depthlab.spectra, each against something independent of the code.

Tolerances are stated where they are used, with the reason. Natural logarithms
unless a name says log10.
"""

import numpy as np
import pytest
from conftest import make_net

from depthlab import backprop_log10_norms, spectra
from depthlab.activations import get_activation
from depthlab.spectra import (
    jacobian_log_singular_values,
    layer_singular_values,
    log_singular_values_of_product,
)

LN10 = np.log(10.0)


def haar(n: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-distributed orthogonal matrix (QR of a Gaussian, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def product_with_known_spectrum(
    n: int, factors: int, decades: float, *, rng: np.random.Generator, jitter: float
) -> tuple[list[np.ndarray], np.ndarray]:
    """Factors A_k = Q_{k+1} diag(s_k) Q_k^T whose product is Q_K diag(prod s_k) Q_0^T.

    The log10 singular values of the product are linspace(0, -decades, n), exact
    as sums of logarithms. Each factor gets a zero-sum (over the factors) jitter
    of ``jitter`` decades so that the factors are not graded like the product.
    The jitter is kept small: with a large one the product's small singular
    values become ill conditioned with respect to the rounding of the factors
    (an interior factor's rounding then moves them by O(1)), and no
    floating-point method can recover the exact ones.
    """
    target = np.linspace(0.0, -decades, n)
    noise = jitter * rng.standard_normal((factors, n))
    noise -= noise.mean(axis=0)
    log10_s = target / factors + noise
    qs = [haar(n, rng) for _ in range(factors + 1)]
    mats = [qs[k + 1] @ np.diag(10.0 ** log10_s[k]) @ qs[k].T for k in range(factors)]
    return mats, np.sort(log10_s.sum(axis=0))[::-1]


# --------------------------------------------------------------------------------
# log_singular_values_of_product


def test_product_of_400_factors_spanning_300_decades():
    # Target (a): 400 factors of size 64, singular values over 300 decades.
    # Reference: the exact spectrum, a sum of logarithms. The grading of the
    # factors is aligned, so the problem is well conditioned: rounding the
    # factors moves log10 sigma by about 400 * eps * cond(A_k) ~ 1e-12.
    # Tolerance 1e-6 in log10 (the target); measured about 1e-12.
    mats, truth = product_with_known_spectrum(
        64, 400, 300.0, rng=np.random.default_rng(20240531), jitter=0.1
    )
    got = log_singular_values_of_product(mats) / LN10
    assert got.shape == (64,)
    np.testing.assert_allclose(got, truth, rtol=0, atol=1e-6)


def test_product_beyond_the_float64_range():
    # 1000 decades: beyond what float64 can hold (1e+-308); the windowed code
    # paths do the work. Each factor spans only 2.5 decades: the rounding of a
    # factor moves its own small singular values by eps * cond(A_k), so the
    # spread must come from the depth, not from ill-conditioned factors. Same
    # reference and tolerance as above (measured about 1e-11).
    mats, truth = product_with_known_spectrum(
        16, 400, 1000.0, rng=np.random.default_rng(7), jitter=0.1
    )
    got = log_singular_values_of_product(mats) / LN10
    np.testing.assert_allclose(got, truth, rtol=0, atol=1e-6)


def test_product_of_gaussian_factors_matches_explicit_svd():
    # Target (b): 4 Gaussian factors of size 300. Their singular values are not
    # graded but clustered (a fixed number of QLP sweeps is up to 15% off here).
    # Reference: np.linalg.svd of the explicitly formed product, whose error is
    # about eps * ||A_4|| ... ||A_1|| absolute, i.e. < 1e-9 relative for every
    # singular value above 1e-8 * s_max. Tolerance 1e-8 relative (the target);
    # measured about 3e-11.
    rng = np.random.default_rng(300)
    mats = [rng.standard_normal((300, 300)) for _ in range(4)]
    explicit = np.linalg.svd(mats[3] @ mats[2] @ mats[1] @ mats[0], compute_uv=False)
    got = np.exp(log_singular_values_of_product(mats))
    keep = explicit > 1e-8 * explicit[0]
    assert keep.sum() > 250
    np.testing.assert_allclose(got[keep], explicit[keep], rtol=1e-8)


def test_product_of_rectangular_and_stacked_factors(rng):
    # Reference: SVD of the explicit product of small well-conditioned factors;
    # cond(product) < 1e3, so the explicit SVD is accurate to ~1e-13 relative.
    # Shapes 5 -> 7 -> 3 -> 6: rank 3, so min(6, 5) - 3 = 2 zero singular values.
    a1 = rng.standard_normal((2, 7, 5))
    a2 = rng.standard_normal((2, 3, 7))
    a3 = rng.standard_normal((2, 6, 3))
    got = log_singular_values_of_product([a1, a2, a3])
    assert got.shape == (2, 5)
    assert np.all(np.isneginf(got[:, 3:]))
    explicit = np.linalg.svd(a3 @ a2 @ a1, compute_uv=False)[:, :3]
    np.testing.assert_allclose(got[:, :3], np.log(explicit), rtol=0, atol=1e-10)


def test_product_of_diagonal_factors_with_extreme_entries():
    # Exact: diag(1e200, 1e-200)^3 has singular values 1e600 and 1e-600.
    # Tolerance: a few ulps of 600 * ln(10).
    a = np.diag([1e200, 1e-200])
    got = log_singular_values_of_product([a, a, a]) / LN10
    np.testing.assert_allclose(got, [600.0, -600.0], rtol=1e-14)
    got32 = log_singular_values_of_product([np.diag([2.0, 0.5]).astype(np.float32)])
    assert got32.dtype == np.float64
    np.testing.assert_allclose(got32, np.log([2.0, 0.5]), rtol=1e-15)


def test_product_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        log_singular_values_of_product([])
    with pytest.raises(ValueError, match="columns"):
        log_singular_values_of_product([np.ones((3, 2)), np.ones((4, 4))])
    with pytest.raises(ValueError, match="finite"):
        log_singular_values_of_product([np.full((2, 2), np.inf)])


def test_windowed_paths_agree_with_single_window(monkeypatch):
    # The windowed QR and Jacobi (used when the scales span more than float64
    # can hold at once) must give what a single window gives. With a window of
    # 30 decades, a product spanning 150 decades exercises them. Tolerance:
    # both are backward stable; measured differences ~1e-12 in log10.
    mats, truth = product_with_known_spectrum(
        24, 60, 150.0, rng=np.random.default_rng(11), jitter=0.1
    )
    single = log_singular_values_of_product(mats) / LN10
    monkeypatch.setattr(spectra, "_WINDOW", 30.0 * LN10)
    windowed = log_singular_values_of_product(mats) / LN10
    np.testing.assert_allclose(windowed, single, rtol=0, atol=1e-9)
    np.testing.assert_allclose(windowed, truth, rtol=0, atol=1e-6)


# --------------------------------------------------------------------------------
# networks


def explicit_jacobians(net, X):
    """J^[l] = np.diag(sigma'(z^[l])) @ W^[l] for each input, formed literally."""
    fp = net.forward(X)
    per_layer = []
    for w, z, sigma in zip(net.weights, fp.preactivations, net.sigmas, strict=True):
        d = sigma.derivative(z)
        per_layer.append(np.stack([np.diag(d[b]) @ w for b in range(d.shape[0])]))
    return per_layer


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_layer_singular_values_match_explicit_diag_times_w(rng, dtype):
    # Target (d), per layer: the same matrices, formed with np.diag (products
    # with exact zeros, so the same entries), through np.linalg.svd.
    # Tolerance: 1e-12 (float64) / 1e-5 (float32) relative, a few ulps.
    net = make_net([5, 7, 4, 6, 3], rng, sigma_w=1.5, sigma_b=0.3, dtype=dtype)
    X = rng.standard_normal((4, 5))
    got = layer_singular_values(net, X)
    assert [s.shape for s in got] == [(4, 5), (4, 4), (4, 4), (4, 3)]
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    for s, J in zip(got, explicit_jacobians(net, X), strict=True):
        assert s.dtype == dtype
        assert np.all(np.diff(s, axis=-1) <= 0)
        np.testing.assert_allclose(s, np.linalg.svd(J, compute_uv=False), rtol=rtol)


def test_jacobian_log_singular_values_match_explicit_product(rng):
    # Target (d), products: a shallow, well-conditioned tanh network
    # (cond J^(l) < 1e3). Reference: np.linalg.svd of the explicitly formed
    # J^(l) = J^[l] ... J^[2], accurate to eps * cond ~ 1e-13 relative.
    # Tolerance 1e-10 absolute in log (= relative in sigma).
    net = make_net([6, 9, 8, 8, 5], rng, sigma_b=0.2)
    X = rng.standard_normal((3, 6))
    got = jacobian_log_singular_values(net, X)
    assert [s.shape for s in got] == [(3, 6), (3, 6), (3, 6), (3, 5)]
    product = None
    for s, J in zip(got, explicit_jacobians(net, X), strict=True):
        product = J if product is None else J @ product
        explicit = np.linalg.svd(product, compute_uv=False)
        assert explicit[:, -1].min() > 1e-3 * explicit[:, 0].max()
        np.testing.assert_allclose(s, np.log(explicit), rtol=0, atol=1e-10)


def test_jacobian_with_a_bottleneck_has_exact_zeros(rng):
    # A layer of width 3 between n_1 = 6 and width 8: J^(l) for l >= 3 has
    # rank 3, so its other min(n_l, 6) - 3 singular values are exactly zero
    # (-inf), without a warning. The nonzero ones against the explicit product
    # (tolerance as above).
    net = make_net([6, 3, 8, 8], rng)
    X = rng.standard_normal((2, 6))
    got = jacobian_log_singular_values(net, X)
    assert [s.shape for s in got] == [(2, 3), (2, 6), (2, 6)]
    product = None
    for s, J in zip(got, explicit_jacobians(net, X), strict=True):
        product = J if product is None else J @ product
        assert np.all(np.isneginf(s[:, 3:]))
        explicit = np.linalg.svd(product, compute_uv=False)[:, :3]
        np.testing.assert_allclose(s[:, :3], np.log(explicit), rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    ("dtype", "atol"),
    [
        # Orthogonal weights are orthogonal to about eps, so each layer adds
        # ~eps to every log singular value: 1e-12 covers 12 layers at float64.
        (np.float64, 1e-12),
        # float32 weights are orthogonal to ~1e-7 (the computation itself is in
        # float64): 1e-5 covers 12 layers.
        (np.float32, 1e-5),
    ],
)
def test_linear_orthogonal_network_is_exact(rng, dtype, atol):
    # Target (c): with sigma = identity and W^[l] = sigma_w Q, every singular
    # value of J^(l) is sigma_w^(l-1): log = (l - 1) log sigma_w exactly.
    sigma_w = 1.3
    net = make_net(
        [16] * 13,
        rng,
        activation="linear",
        init="orthogonal",
        sigma_w=sigma_w,
        sigma_b=0.5,
        dtype=dtype,
    )
    got = jacobian_log_singular_values(net, rng.standard_normal((3, 16)))
    for layer, s in enumerate(got, start=2):
        assert s.shape == (3, 16)
        assert s.dtype == np.float64
        np.testing.assert_allclose(s, (layer - 1) * np.log(sigma_w), rtol=0, atol=atol)


@pytest.mark.parametrize(
    ("activation", "sigma_w", "dtype"),
    [
        ("tanh", 4.0, np.float64),  # exploding: hundreds of decades of spread
        ("sigmoid", 1.0, np.float64),  # vanishing
        ("tanh", 4.0, np.float32),
    ],
)
def test_deep_networks_are_finite_and_match_the_gradient_norm(
    rng, activation, sigma_w, dtype
):
    # Target (e): depth 200, no warnings (pytest turns them into errors), every
    # log singular value finite. J^(L) with n_L = 1 is the gradient row, so its
    # one singular value is the gradient norm, computed independently by
    # backprop_log10_norms with a running log scale. Tolerance: float64 1e-10
    # relative (two stable algorithms); float32 1e-3 absolute in log10 (the
    # float32 backward pass rounds at ~1e-7 per layer over 200 layers).
    width = 32
    net = make_net(
        [width] * 199 + [1], rng, activation=activation, sigma_w=sigma_w, dtype=dtype
    )
    X = rng.standard_normal((2, width))
    got = jacobian_log_singular_values(net, X)
    assert len(got) == 199
    assert all(np.all(np.isfinite(s)) for s in got)
    assert all(np.all(np.diff(s, axis=-1) <= 0) for s in got)
    reference = backprop_log10_norms(net, X)[:, 0]
    if dtype == np.float64:
        np.testing.assert_allclose(got[-1][:, 0] / LN10, reference, rtol=1e-10)
    else:
        np.testing.assert_allclose(got[-1][:, 0] / LN10, reference, rtol=0, atol=1e-3)
    if activation == "tanh" and dtype == np.float64:
        # The spread exceeds one window: the windowed code paths were used.
        spread = got[-2][:, 0] - got[-2][:, -1]
        assert spread.max() > 300 * LN10
    layers = layer_singular_values(net, X)
    assert all(np.all(np.isfinite(s)) for s in layers)


def test_dead_relus_give_exact_zeros_without_warnings(rng):
    # ReLU units with z < 0 have sigma' = 0 exactly. Layer 3 gets 2 live units
    # (biases +-1e3), so J^(l), l >= 3, has rank min(2, live units of layers
    # 2..l): its other singular values are exact zeros, -inf, with no warning.
    # The nonzero ones against the explicit product (cond < 1e3 here; tolerance
    # 1e-10 in log, as for the shallow network above).
    net = make_net(
        [8, 8, 8, 8],
        rng,
        activation="relu",
        init="he_normal",
        sigma_w=np.sqrt(2.0),
        sigma_b=0.0,
    )
    net.biases[1][:] = -1e3
    net.biases[1][:2] = 1e3
    X = rng.standard_normal((2, 8))
    got = jacobian_log_singular_values(net, X)
    live = [
        get_activation("relu").derivative(z) > 0 for z in net.forward(X).preactivations
    ]
    assert np.all(live[1].sum(axis=-1) == 2)
    rank = np.minimum.accumulate([m.sum(axis=-1) for m in live], axis=0)
    product = None
    for layer, (s, J) in enumerate(zip(got, explicit_jacobians(net, X), strict=True)):
        product = J if product is None else J @ product
        explicit = np.linalg.svd(product, compute_uv=False)
        for b in range(2):
            k = rank[layer][b]
            assert np.all(np.isneginf(s[b, k:]))
            np.testing.assert_allclose(
                s[b, :k], np.log(explicit[b, :k]), rtol=0, atol=1e-10
            )


def test_single_input_and_stacks(rng):
    # A single input vector gives 1-D arrays; a stack of K networks gives a
    # leading K dimension, equal to the networks taken one by one (same
    # arithmetic, tolerance a few ulps).
    net = make_net([4, 6, 6, 3], rng, sigma_w=1.2, num_networks=3)
    X = rng.standard_normal((3, 5, 4))
    jac = jacobian_log_singular_values(net, X)
    per_layer = layer_singular_values(net, X)
    assert [s.shape for s in jac] == [(3, 5, 4), (3, 5, 4), (3, 5, 3)]
    assert [s.shape for s in per_layer] == [(3, 5, 4), (3, 5, 6), (3, 5, 3)]
    for k, single_net in enumerate(net.unstack()):
        one_jac = jacobian_log_singular_values(single_net, X[k])
        for s, t in zip(one_jac, jac, strict=True):
            np.testing.assert_allclose(s, t[k], rtol=1e-13, atol=1e-13)
        one_layer = layer_singular_values(single_net, X[k])
        for s, t in zip(one_layer, per_layer, strict=True):
            np.testing.assert_allclose(s, t[k], rtol=1e-13)
        one = jacobian_log_singular_values(single_net, X[k, 0])
        assert [s.shape for s in one] == [(4,), (4,), (3,)]
        np.testing.assert_allclose(one[-1], jac[-1][k, 0], rtol=1e-13, atol=1e-13)
        assert layer_singular_values(single_net, X[k, 0])[0].shape == (4,)


def test_public_api():
    import depthlab

    assert depthlab.jacobian_log_singular_values is jacobian_log_singular_values
    assert depthlab.layer_singular_values is layer_singular_values
    assert depthlab.spectra.log_singular_values_of_product is (
        log_singular_values_of_product
    )


def test_jacobian_at_chosen_layers_equals_every_layer(rng):
    # layers= skips only the finishing SVD: the values computed are those of
    # the full call (the same arithmetic, bitwise), None elsewhere, for a
    # stack and a single input; order and repeats of layers do not matter.
    net = make_net([5, 7, 7, 7, 6, 4], rng, sigma_w=1.3, num_networks=2)
    X = rng.standard_normal((2, 3, 5))
    full = jacobian_log_singular_values(net, X)
    some = jacobian_log_singular_values(net, X, layers=[4, 2, 4])
    assert len(some) == len(full) == 5
    for layer, (s, f) in enumerate(zip(some, full, strict=True), start=2):
        if layer in (2, 4):
            np.testing.assert_array_equal(s, f)
        else:
            assert s is None
    last = jacobian_log_singular_values(net.unstack()[1], X[1, 0], layers=(6,))
    assert last[:-1] == [None] * 4
    np.testing.assert_array_equal(
        last[-1], jacobian_log_singular_values(net.unstack()[1], X[1, 0])[-1]
    )
    assert jacobian_log_singular_values(net, X, layers=[]) == [None] * 5


@pytest.mark.parametrize("layers", [[1], [7], [2, 2.5], [True], "3", 3])
def test_jacobian_rejects_bad_layers(rng, layers):
    net = make_net([3, 3, 3, 3, 3, 3], rng, sigma_b=0.0)
    with pytest.raises(ValueError, match=r"layers must be .* in 2\.\.6"):
        jacobian_log_singular_values(net, np.ones(3), layers=layers)


def test_a_single_input_to_a_stack_gives_every_networks_spectra() -> None:
    """One input vector shared by a stack of K networks: K spectra, one per
    network (the batch axis of size one is dropped, not the stack's)."""
    rng = np.random.default_rng(3)
    nets = make_net([5, 6, 6, 4], rng, sigma_w=1.3, sigma_b=0.2, num_networks=3)
    x = rng.standard_normal(5)
    layer = layer_singular_values(nets, x)
    jac = jacobian_log_singular_values(nets, x)
    for k, net in enumerate(nets.unstack()):
        for got, want in zip(layer, layer_singular_values(net, x), strict=True):
            np.testing.assert_allclose(got[k], want, rtol=1e-12)
        for got, want in zip(jac, jacobian_log_singular_values(net, x), strict=True):
            np.testing.assert_allclose(got[k], want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "arch",
    [{}, {"architecture": "resnet", "branch_scale": 0.5, "norm": "layer"}],
    ids=["mlp", "resnet-ln"],
)
def test_a_pass_resumed_from_a_graded_factor_is_the_whole_pass(arch: dict) -> None:
    """``start`` = the factor at layer m of a pass gives, at layers m+1..L, the
    whole pass's numbers bitwise (and no spectra at layers 2..m)."""
    from depthlab import init_network

    net = init_network(
        [5, 8, 8, 8, 8, 8, 8, 1],
        activation="tanh",
        init="gaussian",
        sigma_w=1.7,
        sigma_b=0.3,
        rng=np.random.default_rng(3),
        num_networks=3,
        **arch,
    )
    X = np.random.default_rng(4).standard_normal((3, 2, 5))
    factors: dict = {5: None, 99: "untouched"}  # the layers whose factor to keep
    whole = spectra.jacobian_log_singular_values(net, X, factors=factors)
    assert sorted(factors) == [5, 99] and factors[99] == "untouched"
    assert factors[5].layer == 5
    assert not factors[5].V.flags.writeable  # handed out to later passes: read-only
    resumed = spectra.jacobian_log_singular_values(net, X, start=factors[5])
    assert all(r is None for r in resumed[:4])  # layers 2..5
    for layer in range(6, net.depth + 1):
        np.testing.assert_array_equal(resumed[layer - 2], whole[layer - 2])
    # Only the layers asked for, from the same start.
    some = spectra.jacobian_log_singular_values(net, X, layers=[3, 7], start=factors[5])
    assert some[1] is None and some[3] is None
    np.testing.assert_array_equal(some[5], whole[5])
