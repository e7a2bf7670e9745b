"""The input-gradient algorithm, backprop norms and weight gradients.

Every result is checked against something that does not share its code: central
finite differences of the forward pass, the paper's literal algorithm with
explicit diagonal matrices D^[l], exact identities (homogeneity of ReLU networks,
norms of products of orthogonal matrices), and the networks of a stack one by
one. Tolerances are stated and justified where they are used.
"""

import numpy as np
import pytest
from conftest import make_net

from depthlab.activations import ACTIVATION_NAMES
from depthlab.gradient import (
    COSTS,
    backprop_log10_norms,
    cost_gradients,
    cost_value,
    input_gradient,
)
from depthlab.initializers import INITIALIZER_NAMES, INITIALIZERS
from depthlab.network import Network, init_network

# Where sigma' jumps (relu, leaky_relu, hard_tanh) or sigma'' jumps (elu): a
# finite difference across such a point is not a derivative.
KINKS = {"relu": (0.0,), "leaky_relu": (0.0,), "hard_tanh": (-1.0, 1.0), "elu": (0.0,)}
HIDDEN = [5, 7, 4, 6, 5, 8, 6]  # n_2, n_3, ...: rectangular, tall and wide


def _kink_pattern(net: Network, X: np.ndarray) -> list[np.ndarray]:
    """Which side of every kink each preactivation lies on."""
    pattern = []
    for z, sigma in zip(net.forward(X).preactivations, net.sigmas, strict=True):
        for k in KINKS.get(sigma.name, ()):
            pattern.append(z > k)
    return pattern


def _same_pieces(net: Network, X: np.ndarray, perturbed: list[np.ndarray]) -> bool:
    """Whether the rows of each perturbed batch lie on X's linear pieces."""
    base = _kink_pattern(net, X)
    return all(
        all(
            np.array_equal(p, q)
            for p, q in zip(base, _kink_pattern(net, Xp), strict=True)
        )
        for Xp in perturbed
    )


def _fd_input_jacobian(net: Network, X: np.ndarray, h: float):
    """Central differences of the forward pass: (B, n_L, n_1) and the outputs.

    None if a step of h crosses a kink (the difference is then no derivative).
    """
    B, n1 = X.shape
    E = h * np.eye(n1)
    Xp = (X[:, None, :] + E).reshape(-1, n1)
    Xm = (X[:, None, :] - E).reshape(-1, n1)
    step = (Xp - Xm).reshape(B, n1, n1)[:, np.arange(n1), np.arange(n1)]
    diff = (net(Xp) - net(Xm)).reshape(B, n1, -1)
    base = np.repeat(X, n1, axis=0)  # row b * n1 + i is the input Xp[b * n1 + i] moved
    if not _same_pieces(net, base, [Xp, Xm]):
        return None
    return np.swapaxes(diff / step[..., None], -1, -2), net(X)


def _literal_jacobian(net: Network, x: np.ndarray, first: int = 2) -> np.ndarray:
    """d a^[L] / d a^[first-1] at one input x: D^[L] W^[L] ... D^[first] W^[first].

    Higham & Higham's algorithm as written: a forward pass with column vectors,
    the diagonal matrices D^[l] formed explicitly, the product built up from the
    right (forward accumulation; the code under test accumulates from the left).
    """
    a = x.reshape(-1, 1)
    J = None
    for layer, (w, b, sigma) in enumerate(
        zip(net.weights, net.biases, net.sigmas, strict=True), start=2
    ):
        z = w @ a + b.reshape(-1, 1)
        a = sigma.fn(z)
        D = np.diag(sigma.derivative(z)[:, 0])
        if layer == first:
            J = D @ w
        elif layer > first:
            J = D @ w @ J
    return J


def _assert_vectors_close(a: np.ndarray, b: np.ndarray, rel: float) -> None:
    """||a - b|| <= rel ||b|| for every vector along the last axis.

    Norm-wise, because two correct roundings of an entry that cancels can differ
    by more than rel relative to the entry itself.
    """
    assert a.shape == b.shape and a.dtype == b.dtype
    a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    err = np.linalg.norm(a - b, axis=-1)
    assert np.all(err <= rel * np.linalg.norm(b, axis=-1))


def _network(activation, init, widths, rng, **kwargs):
    spec = INITIALIZERS[init]
    return init_network(
        widths,
        activation=activation,
        init=init,
        sigma_w=spec.default_sigma_w,
        sigma_b=max(spec.default_sigma_b, 0.3),
        rng=rng,
        **kwargs,
    )


def _lively_network(activation, widths, rng, X):
    """A he_normal network whose gradient is nonzero at most inputs X.

    A ReLU or hard-tanh output unit is off for every input of some samples; a
    test on such a network would compare zeros with zeros. Resampling until
    3 of 5 inputs have a nonzero gradient keeps the test deterministic (the
    seed) and meaningful.
    """
    for _ in range(100):
        net = _network(activation, "he_normal", widths, rng)
        alive = np.any(input_gradient(net, X).reshape(len(X), -1) != 0, axis=-1)
        if np.mean(alive) >= 0.6:
            return net
    raise AssertionError("no network with a nonzero gradient in 100 samples")


# -- input gradient -------------------------------------------------------------


@pytest.mark.parametrize("n_out", [1, 3])
@pytest.mark.parametrize("init", INITIALIZER_NAMES)
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_input_gradient_finite_differences(activation, init, n_out, rng):
    # Every activation x every initializer, depths 2 to 8, n_1 = 3 != the widths,
    # rectangular layers, n_L = 1 and n_L = 3.
    h = 1e-6
    for depth in range(2, 9):
        widths = [3, *HIDDEN[: depth - 2], n_out]
        net = _network(activation, init, widths, rng)
        for _ in range(10):  # redraw inputs that put a preactivation near a kink
            X = rng.standard_normal((2, 3))
            fd_out = _fd_input_jacobian(net, X, h)
            if fd_out is not None:
                break
        else:
            raise AssertionError("every input drawn lies within h of a kink")
        fd, out = fd_out
        g = input_gradient(net, X)
        assert g.shape == ((2, 3) if n_out == 1 else (2, n_out, 3))
        g = g.reshape(fd.shape)
        # Central differences: truncation h^2 |f'''| / 6 = 1.7e-13 |f'''|, and
        # rounding eps |f| / h = 2e-10 |f| per input (|f|: the largest output).
        # Piecewise-linear pieces have no truncation error at all (no step
        # crosses a kink, checked above). rtol 1e-6 leaves room for |f'''/f'|
        # up to 6e6; atol is 20x the rounding. (Measured: at most 15% of this.)
        atol = 4e-9 * np.max(np.abs(out), axis=-1)[:, None, None]
        assert np.all(np.abs(g - fd) <= 1e-6 * np.abs(fd) + atol)


@pytest.mark.parametrize("n_out", [1, 3])
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_input_gradient_is_the_papers_literal_algorithm(activation, n_out, rng):
    X = rng.standard_normal((5, 4))
    net = _lively_network(activation, [4, 7, 5, 9, 6, n_out], rng, X)
    g = input_gradient(net, X).reshape(5, n_out, 4)
    for b in range(5):
        ref = _literal_jacobian(net, X[b])
        # Both are the same product in different association orders: the
        # difference is rounding, a few eps times depth and width (~1e-14),
        # relative to the norm. (A ReLU output may be off: then both are 0.)
        assert np.linalg.norm(g[b] - ref) <= 1e-12 * np.linalg.norm(ref)
    single = input_gradient(net, X[3])
    assert single.shape == ((4,) if n_out == 1 else (n_out, 4))
    # A batch of one may take another BLAS path: equal up to rounding.
    _assert_vectors_close(single.reshape(n_out, 4), g[3], rel=1e-13)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "linear"])
def test_homogeneous_network_satisfies_euler(activation, rng):
    # Without biases and with a linear output, f(t x) = t f(x) for t > 0, so by
    # Euler's theorem f(x) = grad f(x) . x exactly.
    for n_out in (1, 4):
        net = make_net(
            [10, 30, 25, 30, 20, n_out],
            rng,
            activation=activation,
            init="he_normal",
            sigma_w=np.sqrt(2),
            sigma_b=0.0,
            output_activation="linear",
        )
        X = rng.standard_normal((20, 10))
        f = net(X)
        g = input_gradient(net, X).reshape(20, n_out, 10)
        euler = np.einsum("bki,bi->bk", g, X)
        # Machine precision: both sides are sums of the same path products; the
        # rounding is a few eps * depth * width relative to sum_i |g_i x_i|.
        scale = np.einsum("bki,bi->bk", np.abs(g), np.abs(X))
        assert np.all(np.abs(f - euler) <= 1e-13 * scale)


# -- backprop norms ---------------------------------------------------------------


@pytest.mark.parametrize("n_out", [1, 3])
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_backprop_norms_are_norms_of_partial_products(activation, n_out, rng):
    X = rng.standard_normal((5, 4))
    net = _lively_network(activation, [4, 7, 5, 9, 6, 8, n_out], rng, X)
    logs = backprop_log10_norms(net, X)
    assert logs.shape == (5, net.depth - 1) and logs.dtype == np.float64
    g = np.linalg.norm(input_gradient(net, X).reshape(5, -1), axis=-1)
    # log10 of a norm with relative error ~1e-15 differs by ~1e-15 / ln 10; the
    # log scale adds one rounding of log10 per layer.
    with np.errstate(divide="ignore"):  # log10(0) = -inf is the expected value
        np.testing.assert_allclose(logs[:, 0], np.log10(g), rtol=0, atol=1e-13)
        for b in range(5):
            for j in range(net.depth - 1):  # column j is layer l = j + 1
                ref = np.linalg.norm(_literal_jacobian(net, X[b], first=j + 2))
                if ref == 0:
                    assert logs[b, j] == -np.inf
                else:
                    assert abs(logs[b, j] - np.log10(ref)) < 1e-12
    np.testing.assert_allclose(backprop_log10_norms(net, X[1]), logs[1], atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("activation", ["linear", "tanh", "erf"])
@pytest.mark.parametrize("sigma_w", [0.1, 10.0])
def test_backprop_norms_at_1e400(sigma_w, activation, dtype, rng):
    # Depth 401, square orthogonal layers and a 1 x n output row of norm sigma_w.
    # At x = 0 with zero biases every z^[l] is 0, so D^[l] = sigma'(0) I, and the
    # backprop norm at layer l is (sigma'(0) sigma_w)^(L - l) exactly:
    # 10^(+-(400 - j)) for linear and tanh (sigma'(0) = 1) in column j.
    n, depth = 6, 401
    net = make_net(
        [n] * (depth - 1) + [1],
        rng,
        activation=activation,
        init="orthogonal",
        sigma_w=sigma_w,
        sigma_b=0.0,
        dtype=dtype,
    )
    slope = 2 / np.sqrt(np.pi) if activation == "erf" else 1.0
    exact = (depth - 1 - np.arange(depth - 1)) * np.log10(slope * sigma_w)
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        logs = backprop_log10_norms(net, np.zeros((3, n)))
    assert np.all(np.isfinite(logs))
    assert abs(logs[0, 0] - 400 * np.log10(slope * sigma_w)) < 1e-3
    # float64: each orthogonal factor has norm 1 to ~n eps, so 400 of them give
    # a relative error ~1e-13 (log10: 1e-13). float32: the entries are rounded
    # to 6e-8, a random walk of 400 steps of ~1e-7: 2e-6 relative.
    tol = 1e-10 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(
        logs, np.broadcast_to(exact, logs.shape), rtol=0, atol=tol
    )


def test_backprop_norms_keep_tiny_and_huge_layers_in_float32(rng):
    # Layers that scale the gradient by 1e-30 or 1e+30: squares of 1e-30 are 0 in
    # float32, and products of several such layers leave its range entirely.
    n = 5
    scales = [1e-30, 1e-30, 1e30, 1e-25, 1e-30, 1e20]
    weights = [(c * np.eye(n)).astype(np.float32) for c in scales]
    weights[-1] = weights[-1][:2]  # n_L = 2: the Frobenius norm of 1e20 I_2
    net = Network(
        weights, [np.zeros(w.shape[0], np.float32) for w in weights], "linear"
    )
    logs = backprop_log10_norms(net, np.zeros((2, n)))
    exact = np.cumsum(np.log10(scales)[::-1])[::-1] + 0.5 * np.log10(2)
    np.testing.assert_allclose(logs, np.broadcast_to(exact, logs.shape), atol=1e-5)


def test_backprop_norms_of_dead_relu_layers_are_minus_inf(rng):
    net = _network("relu", "gaussian", [4, 6, 6, 6, 1], rng, output_activation="linear")
    X = rng.standard_normal((3, 4))
    net.biases[1] -= 1e3  # layer 3 is off for every input: its sigma' is 0
    net.biases[2] += 1e3  # layer 4 is on for every input
    with np.errstate(all="raise", under="ignore"):
        logs = backprop_log10_norms(net, X)
    # d a^L / d a^l passes through D^[3] = 0 for l <= 2 only.
    assert np.all(logs[:, :2] == -np.inf)
    assert np.all(np.isfinite(logs[:, 2:]))


# -- weight and bias gradients ------------------------------------------------------


def _fd_cost_gradients(net, X, Y, cost, h):
    def value():
        return float(cost_value(net(X), Y, cost=cost))

    grads = []
    for param in [*net.weights, *net.biases]:
        grad = np.empty_like(param)
        for idx in np.ndindex(param.shape):
            saved = param[idx]
            param[idx] = saved + h
            up = value()
            patterns_up = _kink_pattern(net, X)
            param[idx] = saved - h
            down = value()
            patterns_down = _kink_pattern(net, X)
            param[idx] = saved
            for p, q in zip(patterns_up, patterns_down, strict=True):
                assert np.array_equal(p, q), "a preactivation is within h of a kink"
            grad[idx] = (up - down) / (2 * h)
        grads.append(grad)
    n = len(net.weights)
    return grads[:n], grads[n:]


@pytest.mark.parametrize("cost", COSTS)
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_cost_gradients_finite_differences(activation, cost, rng):
    net = _network(activation, "xavier_normal", [3, 4, 5, 3], rng)
    X = rng.standard_normal((6, 3))
    if cost == "quadratic":
        Y = rng.standard_normal((6, 3))
    else:
        Y = rng.dirichlet(np.ones(3), size=6)  # soft labels
        Y[0] = [0, 1, 0]  # a one-hot one
        Y[1] *= 1.5  # and one whose row does not sum to 1
    value, dW, db = cost_gradients(net, X, Y, cost=cost)
    assert value.shape == () and value == pytest.approx(
        float(cost_value(net(X), Y, cost=cost)), rel=1e-15
    )
    fd_w, fd_b = _fd_cost_gradients(net, X, Y, cost, h=1e-6)
    # Central differences of an O(1) cost: truncation ~h^2 = 1e-12, rounding
    # eps |C| / h ~ 2e-10; off the kinks (checked) exact up to rounding.
    for got, ref in zip(dW + db, fd_w + fd_b, strict=True):
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=2e-9 * max(1, value))


def test_quadratic_cost_is_the_papers():
    out = np.array([[1.0, 2.0], [0.0, -1.0]])
    Y = np.array([[0.0, 0.0], [1.0, 1.0]])
    # (1/B) sum_i 1/2 ||y_i - a_i||^2 = (1/2)(5/2 + 5/2) = 2.5
    assert float(cost_value(out, Y)) == 2.5


# -- stacks of networks -----------------------------------------------------------


@pytest.mark.parametrize("inputs", ["shared", "own", "single"])
@pytest.mark.parametrize("n_out", [1, 3])
def test_stack_equals_networks_one_by_one(n_out, inputs, rng):
    k = 3
    nets = make_net(
        [4, 6, 5, n_out],
        rng,
        init="orthogonal",
        sigma_w=1.3,
        sigma_b=0.2,
        num_networks=k,
    )
    X = {
        "shared": rng.standard_normal((5, 4)),
        "own": rng.standard_normal((k, 5, 4)),
        "single": rng.standard_normal(4),
    }[inputs]
    Y = rng.standard_normal((1 if inputs == "single" else 5, n_out))
    g = input_gradient(nets, X)
    logs = backprop_log10_norms(nets, X)
    costs = {c: cost_gradients(nets, X, Y, cost=c) for c in COSTS}
    for i, net in enumerate(nets.unstack()):
        Xi = X[i] if inputs == "own" else X
        # Batched and one-by-one matrix products may round differently.
        _assert_vectors_close(g[i], input_gradient(net, Xi), rel=1e-13)
        np.testing.assert_allclose(
            logs[i], backprop_log10_norms(net, Xi), rtol=0, atol=1e-13
        )
        for c in COSTS:
            value, dW, db = cost_gradients(net, Xi, Y, cost=c)
            np.testing.assert_allclose(costs[c][0][i], value, rtol=1e-13)
            for got, ref in zip(costs[c][1] + costs[c][2], dW + db, strict=True):
                _assert_vectors_close(got[i], ref, rel=1e-13)
    expected = {"shared": (k, 5), "own": (k, 5), "single": (k,)}[inputs]
    assert g.shape == (*expected, *((4,) if n_out == 1 else (n_out, 4)))
    assert logs.shape == (*expected, nets.depth - 1)


# -- float32 ------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_float32_agrees_with_float64(activation, rng):
    net64 = _network(activation, "he_normal", [6, 16, 16, 16, 3], rng)
    net32 = Network(
        [w.astype(np.float32) for w in net64.weights],
        [b.astype(np.float32) for b in net64.biases],
        activation,
    )
    X = rng.standard_normal((8, 6))
    Y = rng.standard_normal((8, 3))

    def close(a32, a64):
        # float32 rounding, 6e-8 per operation, grows by about the depth and the
        # width of the sums: 1e-4 relative to the norm leaves a factor of 100.
        assert a32.dtype == np.float32
        assert np.linalg.norm(a32 - a64) <= 1e-4 * np.linalg.norm(a64)

    close(net32(X), net64(X))
    close(input_gradient(net32, X), input_gradient(net64, X))
    value32, dW32, db32 = cost_gradients(net32, X, Y)
    value64, dW64, db64 = cost_gradients(net64, X, Y)
    close(value32, value64)
    for a32, a64 in zip(dW32 + db32, dW64 + db64, strict=True):
        close(a32, a64)
    logs32 = backprop_log10_norms(net32, X)
    # 1e-4 relative in a norm is 4e-5 in its log10.
    np.testing.assert_allclose(logs32, backprop_log10_norms(net64, X), atol=1e-4)


# -- validation ---------------------------------------------------------------------


def test_cost_validation(rng):
    net = _network("tanh", "gaussian", [3, 4, 2], rng)
    X = rng.standard_normal((5, 3))
    with pytest.raises(ValueError, match="unknown cost 'hinge'; valid: quadratic"):
        cost_gradients(net, X, np.zeros((5, 2)), cost="hinge")
    with pytest.raises(ValueError, match="unknown cost 'mse'"):
        cost_value(np.zeros((5, 2)), np.zeros((5, 2)), cost="mse")
    with pytest.raises(ValueError, match=r"targets of shape \(5, 3\) need n_L = 2"):
        cost_gradients(net, X, np.zeros((5, 3)))


def test_input_dimension_is_checked(rng):
    net = _network("tanh", "gaussian", [3, 4, 1], rng)
    for f in (input_gradient, backprop_log10_norms):
        with pytest.raises(ValueError, match="n_1 = 3"):
            f(net, np.ones((2, 5)))


def test_backprop_norms_of_inputs_at_very_different_scales():
    # One float32 batch whose gradients are e^-80 = 1.8e-35 (its square is 0 in
    # float32), e^-20 and 1: elu'(x) = e^x at a^[3] = elu(x) with W = 1, b = 0.
    one = np.ones((1, 1), np.float32)
    net = Network([one, one], [np.zeros(1, np.float32)] * 2, "elu", "linear")
    X = np.array([[-80.0], [1.0], [-20.0], [0.0]], np.float32)
    logs = backprop_log10_norms(net, X)
    exact = np.log10(np.e) * np.minimum(X[:, 0].astype(np.float64), 0)
    # float32 exp is correctly rounded to 6e-8 relative: 3e-8 in log10.
    np.testing.assert_allclose(logs[:, 0], exact, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(logs[:, 1], 0.0)


@pytest.mark.parametrize("n_out", [1, 3])
def test_stack_processed_in_groups_equals_whole_stack(monkeypatch, n_out: int) -> None:
    """Large stacks are processed in cache-sized groups; the numbers must not change.

    Forcing one network per group (a group budget of 1 byte) exercises the path
    that only large stacks take by default; the results must be bitwise equal.
    """
    import depthlab.gradient as gradient

    rng = np.random.default_rng(7)
    net = make_net([5, 6, 6, n_out], rng, sigma_w=1.3, num_networks=4)
    X = rng.standard_normal((4, 3, 5))
    whole_grad = gradient.input_gradient(net, X)
    whole_logs = gradient.backprop_log10_norms(net, X)
    monkeypatch.setattr(gradient, "_GROUP_BYTES", 1)
    np.testing.assert_array_equal(gradient.input_gradient(net, X), whole_grad)
    np.testing.assert_array_equal(gradient.backprop_log10_norms(net, X), whole_logs)


# -- outputs from the gradient's forward pass -------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_out", [1, 3])
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@pytest.mark.parametrize(
    ("widths", "stack", "batch"),
    [
        # small layers take the one-call path for sigma', large ones the loop
        ([5, 6, 6, 6], (4,), 3),
        ([8, 32, 48, 40], (2,), 200),
        ([5, 7], (), 4),
    ],
)
def test_outputs_come_from_the_same_forward_pass(
    widths, stack, batch, activation, n_out, dtype, rng
) -> None:
    """``return_outputs=True`` gives net(X) (to rounding: the products are taken
    in another order) and leaves the norms bitwise unchanged."""
    extra = {"num_networks": stack[0]} if stack else {}
    net = _network(activation, "gaussian", [*widths, n_out], rng, dtype=dtype, **extra)
    X = rng.standard_normal((*stack, batch, widths[0])).astype(dtype)
    norms, outputs = backprop_log10_norms(net, X, return_outputs=True)
    np.testing.assert_array_equal(norms, backprop_log10_norms(net, X))
    reference = net(X)
    assert outputs.dtype == reference.dtype and outputs.shape == reference.shape
    # Rounding of O(n) products and sums, relative to the outputs' scale:
    # float64 saw 2e-14 at width 64, float32 4e-7.
    scale = max(float(np.max(np.abs(reference))), np.finfo(dtype).tiny)
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    assert np.max(np.abs(outputs - reference)) <= tolerance * scale


def test_outputs_of_one_input_and_of_groups(monkeypatch, rng) -> None:
    import depthlab.gradient as gradient

    net = _network("tanh", "gaussian", [5, 6, 2], rng, num_networks=4)
    X = rng.standard_normal((4, 3, 5))
    norms, outputs = backprop_log10_norms(net, X, return_outputs=True)
    monkeypatch.setattr(gradient, "_GROUP_BYTES", 1)  # one network per group
    grouped = backprop_log10_norms(net, X, return_outputs=True)
    np.testing.assert_array_equal(grouped[0], norms)
    np.testing.assert_array_equal(grouped[1], outputs)
    single = _network("tanh", "gaussian", [5, 6, 2], rng)
    norms1, outputs1 = backprop_log10_norms(single, X[0, 0], return_outputs=True)
    assert norms1.shape == (2,) and outputs1.shape == (2,)
    np.testing.assert_allclose(outputs1, single(X[0, :1])[0], rtol=1e-12)


# -- the kernel's layouts and threads ---------------------------------------------


def _layout_cases(rng):
    """(net, X) pairs: single networks, a stack and broadcast inputs, n_L = 1."""
    single = _network("tanh", "gaussian", [6, 9, 7, 1], rng)
    stack = _network("sigmoid", "gaussian", [6, 9, 7, 1], rng, num_networks=3)
    deep32 = _network("tanh", "gaussian", [8] * 12 + [1], rng, dtype=np.float32)
    return [
        (single, rng.standard_normal((70, 6))),
        (single, rng.standard_normal((2, 70, 6))),
        (stack, rng.standard_normal((3, 70, 6))),
        (stack, rng.standard_normal((70, 6))),
        (deep32, rng.standard_normal((70, 8)).astype(np.float32)),
    ]


def test_rows_layout_equals_columns_layout(monkeypatch, rng) -> None:
    """The inputs as rows (float64, large single networks) give the numbers of
    the inputs as columns: the same products, taken in the other orientation,
    agree to rounding (float64: 1e-13 relative; measured 4e-15 at n = 512)."""
    import depthlab.gradient as gradient

    net = _network("tanh", "gaussian", [6, 9, 7, 1], rng)
    X = rng.standard_normal((70, 6))
    columns = gradient.input_gradient(net, X)
    columns_logs, columns_out = gradient.backprop_log10_norms(
        net, X, return_outputs=True
    )
    assert not gradient._use_rows(net, X)
    monkeypatch.setattr(gradient, "_ROWS_MIN_WIDTH", 1)
    assert gradient._use_rows(net, X)
    rows = gradient.input_gradient(net, X)
    rows_logs, rows_out = gradient.backprop_log10_norms(net, X, return_outputs=True)
    np.testing.assert_allclose(
        rows, columns, rtol=1e-13, atol=1e-13 * np.abs(columns).max()
    )
    np.testing.assert_allclose(rows_logs, columns_logs, rtol=0, atol=1e-13)
    np.testing.assert_allclose(rows_out, columns_out, rtol=1e-13, atol=1e-15)


def test_inputs_split_over_threads_equal_one_thread(monkeypatch, rng) -> None:
    """With k BLAS threads the inputs are split over k threads; each input's
    numbers are those of its own columns: equal to one call to rounding (the
    products have fewer columns; float64 1e-13, float32 1e-5 relative)."""
    import depthlab.gradient as gradient

    cases = _layout_cases(rng)
    whole = [
        (
            gradient.input_gradient(net, X),
            *gradient.backprop_log10_norms(net, X, return_outputs=True),
        )
        for net, X in cases
    ]
    monkeypatch.setattr(gradient, "_MIN_PART", 16)
    monkeypatch.setattr(gradient, "threads", lambda backend: 3)
    in_groups, sizes = gradient._in_groups, []

    def recording(fn, net, X):
        sizes.append(X.shape[-2])
        return in_groups(fn, net, X)

    monkeypatch.setattr(gradient, "_in_groups", recording)
    for (net, X), (grad, logs, out) in zip(cases, whole, strict=True):
        tol = 1e-13 if net.dtype == np.float64 else 1e-5
        got = gradient.input_gradient(net, X)
        got_logs, got_out = gradient.backprop_log10_norms(net, X, return_outputs=True)
        assert got.shape == grad.shape and got_logs.shape == logs.shape
        np.testing.assert_allclose(got, grad, rtol=tol, atol=tol * np.abs(grad).max())
        np.testing.assert_allclose(got_logs, logs, rtol=0, atol=tol)
        np.testing.assert_allclose(got_out, out, rtol=tol, atol=tol)
    # 70 inputs in min(3 threads, 70 // 16) = 3 parts of 23, 23 and 24, for
    # each of the 2 calls of every case.
    assert sizes == [23, 23, 24] * 2 * len(cases)


def test_backprop_resumed_from_a_hidden_forward_is_the_whole_pass() -> None:
    """``start`` = the forward pass a deeper network recorded at layer m gives a
    network with the same layers 2..m bitwise the numbers of the whole pass."""
    deep = init_network(
        [6, 64, 64, 64, 64, 64, 1],
        activation="tanh",
        init="gaussian",
        sigma_w=1.4,
        sigma_b=0.1,
        rng=np.random.default_rng(5),
        num_networks=24,
    )
    X = np.random.default_rng(6).standard_normal((24, 3, 6))  # 24*64*3 > 4096
    forwards: dict = {4: None}  # the hidden layer whose forward pass to keep
    backprop_log10_norms(deep, X, forwards=forwards)
    assert list(forwards) == [4] and forwards[4].layer == 4
    assert len(forwards[4].derivatives) == 3  # sigma' of layers 2, 3, 4
    assert not forwards[4].activation.flags.writeable
    # A depth-6 network sharing layers 2..4 with the deep one.
    rng = np.random.default_rng(7)
    head = [0.2 * rng.standard_normal((24, 64, 64)), rng.standard_normal((24, 1, 64))]
    net = Network(
        [*deep.weights[:3], *head],
        [*deep.biases[:3], np.zeros((24, 64)), np.zeros((24, 1))],
        "tanh",
    )
    whole, out = backprop_log10_norms(net, X, return_outputs=True)
    again, out_again = backprop_log10_norms(
        net, X, return_outputs=True, start=forwards[4]
    )
    np.testing.assert_array_equal(again, whole)
    np.testing.assert_array_equal(out_again, out)
    # A small stack (another kernel): the same numbers, nothing recorded.
    small: dict = {4: None}
    few = net.with_parameters([w[:2] for w in net.weights], [b[:2] for b in net.biases])
    np.testing.assert_array_equal(
        backprop_log10_norms(few, X[:2], forwards=small), whole[:2]
    )
    assert small == {4: None}
