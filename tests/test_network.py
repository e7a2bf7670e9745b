"""Network and init_network: definitions, forward pass, stacks, validation.

The forward pass is checked against the paper's column-vector recursion (3.2)
written out here, one input at a time.
"""

import numpy as np
import pytest
from conftest import make_net

from depthlab.activations import ACTIVATION_NAMES, get_activation
from depthlab.initializers import INITIALIZER_NAMES
from depthlab.network import Network, init_network


def _net(widths, rng, activation="tanh", **kwargs):
    kwargs = {"init": "gaussian", "sigma_w": 1.5, "sigma_b": 0.3, **kwargs}
    return init_network(widths, activation=activation, rng=rng, **kwargs)


def _literal_forward(weights, biases, activations, x):
    """a^[l] = sigma(W^[l] a^[l-1] + b^[l]) with column vectors, (3.2)."""
    a = x.reshape(-1, 1)
    zs, outs = [], [x]
    for w, b, act in zip(weights, biases, activations, strict=True):
        z = w @ a + b.reshape(-1, 1)
        a = get_activation(act).fn(z)
        zs.append(z[:, 0])
        outs.append(a[:, 0])
    return zs, outs


def test_definitions(rng):
    net = _net([3, 7, 5, 2], rng)
    assert net.depth == 4  # L counts the input layer: 3 weight matrices
    assert net.widths == [3, 7, 5, 2]
    assert [w.shape for w in net.weights] == [(7, 3), (5, 7), (2, 5)]
    assert [b.shape for b in net.biases] == [(7,), (5,), (2,)]
    assert net.stack_shape == ()
    assert net.dtype == np.float64
    assert net.output_activation == "tanh"  # as in the paper
    assert [s.name for s in net.sigmas] == ["tanh", "tanh", "tanh"]
    single = _net([4, 1], rng, activation="relu", output_activation="linear")
    assert single.depth == 2 and single.widths == [4, 1]
    assert [s.name for s in single.sigmas] == ["linear"]


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_forward_is_the_papers_recursion(name, rng):
    net = _net([4, 6, 3, 5, 2], rng, activation=name, output_activation="sigmoid")
    X = rng.standard_normal((7, 4))
    fp = net.forward(X)
    assert len(fp.preactivations) == net.depth - 1
    assert len(fp.activations) == net.depth
    assert fp.activations[0].shape == (7, 4)
    for i, z in enumerate(fp.preactivations):
        assert z.shape == (7, net.widths[i + 1])
    layer_acts = [name] * 3 + ["sigmoid"]
    for b in range(7):
        zs, outs = _literal_forward(net.weights, net.biases, layer_acts, X[b])
        # Same sums in another order: agreement to a few eps of the terms.
        for got, ref in zip(fp.preactivations, zs, strict=True):
            np.testing.assert_allclose(got[b], ref, rtol=1e-13, atol=1e-14)
        for got, ref in zip(fp.activations, outs, strict=True):
            np.testing.assert_allclose(got[b], ref, rtol=1e-13, atol=1e-14)
    np.testing.assert_array_equal(net(X), fp.output)
    # A single input vector is a batch of one.
    np.testing.assert_array_equal(net(X[2]), net(X[2:3]))


@pytest.mark.parametrize("shared", [True, False], ids=["shared-X", "own-X"])
def test_stack_forward_equals_networks_one_by_one(shared, rng):
    k = 4
    nets = make_net(
        [3, 5, 4, 2],
        rng,
        activation="elu",
        init="orthogonal",
        sigma_w=1.2,
        sigma_b=0.2,
        num_networks=k,
    )
    assert nets.stack_shape == (k,)
    assert [w.shape for w in nets.weights] == [(k, 5, 3), (k, 4, 5), (k, 2, 4)]
    X = rng.standard_normal((6, 3) if shared else (k, 6, 3))
    out = nets(X)
    fp = nets.forward(X)
    assert out.shape == (k, 6, 2)
    for i, net in enumerate(nets.unstack()):
        assert net.stack_shape == ()
        Xi = X if shared else X[i]
        np.testing.assert_allclose(out[i], net(Xi), rtol=1e-14, atol=1e-15)
        for got, ref in zip(
            fp.preactivations, net.forward(Xi).preactivations, strict=True
        ):
            np.testing.assert_allclose(got[i], ref, rtol=1e-14, atol=1e-15)


def test_stack_samples_independent_networks(rng):
    nets = make_net([3, 4, 1], rng, num_networks=3)
    w = nets.weights[0]
    assert not np.allclose(w[0], w[1]) and not np.allclose(w[1], w[2])


@pytest.mark.parametrize("init", INITIALIZER_NAMES)
def test_float32_network_computes_in_float32(init, rng):
    for dtype in (np.float32, "float32"):
        net = make_net([3, 6, 2], rng, activation="gelu", init=init, dtype=dtype)
        assert net.dtype == np.float32
        fp = net.forward(rng.standard_normal((4, 3)))  # float64 input is cast
        for arr in [*net.weights, *net.biases, *fp.preactivations, *fp.activations]:
            assert arr.dtype == np.float32


def test_seeded_sampling_is_reproducible():
    a = make_net([3, 4, 1], 7, init="orthogonal")
    b = make_net([3, 4, 1], 7, init="orthogonal")
    for x, y in zip(a.weights + a.biases, b.weights + b.biases, strict=True):
        np.testing.assert_array_equal(x, y)


def _message(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"widths": [3]}, ["depth", "[3]"]),
        ({"widths": []}, ["depth", "[]"]),
        ({"widths": [3, 0, 1]}, ["width", "0"]),
        ({"widths": [3, -4, 1]}, ["width", "-4"]),
        ({"widths": [3, 2.5, 1]}, ["width", "2.5"]),
        ({"widths": 5}, ["widths", "5"]),
        ({"activation": "Tanh"}, ["activation", "'Tanh'", "relu", "gelu"]),
        ({"output_activation": "softmax"}, ["activation", "'softmax'", "linear"]),
        ({"init": "kaiming"}, ["init", "'kaiming'", "he_normal", "orthogonal"]),
        ({"sigma_w": -1.0}, ["sigma_w", "-1.0"]),
        ({"sigma_b": -0.1}, ["sigma_b", "-0.1"]),
        ({"sigma_w": float("nan")}, ["sigma_w", "nan"]),
        ({"sigma_b": float("inf")}, ["sigma_b", "inf"]),
        ({"sigma_w": "big"}, ["sigma_w", "'big'"]),
        ({"dtype": np.float16}, ["dtype", "float16", "float32", "float64"]),
        ({"dtype": "int32"}, ["dtype", "int32", "float32"]),
        ({"dtype": "double precision"}, ["dtype", "double precision", "float32"]),
        ({"dtype": None}, ["dtype", "None", "float32"]),
        ({"num_networks": 0}, ["num_networks", "0"]),
    ],
)
def test_init_network_validation(kwargs, words, rng):
    args = {
        "widths": [3, 4, 1],
        "activation": "tanh",
        "init": "gaussian",
        "sigma_w": 1.0,
        "sigma_b": 0.0,
    }
    args.update(kwargs)
    with pytest.raises(ValueError) as info:
        init_network(args.pop("widths"), rng=rng, **args)
    message = _message(info)
    for word in words:
        assert word in message


def test_network_validation(rng):
    w = [rng.standard_normal((4, 3)), rng.standard_normal((2, 4))]
    b = [np.zeros(4), np.zeros(2)]
    with pytest.raises(ValueError, match="depth >= 2"):
        Network([], [], "tanh")
    with pytest.raises(ValueError, match="2 weight matrices but 1 biases"):
        Network(w, b[:1], "tanh")
    with pytest.raises(ValueError, match=r"W has 4 columns but layer 2 has 5"):
        Network([rng.standard_normal((5, 3)), w[1]], [np.zeros(5), b[1]], "tanh")
    with pytest.raises(ValueError, match=r"bias shape \(3,\)"):
        Network(w, [np.zeros(3), np.zeros(2)], "tanh")
    with pytest.raises(ValueError, match="float32"):
        Network([w[0], w[1].astype(np.float32)], b, "tanh")
    with pytest.raises(ValueError, match="int64"):
        Network([np.ones((4, 3), dtype=np.int64), w[1]], b, "tanh")
    with pytest.raises(ValueError, match="stack shape"):
        Network([w[0], np.stack([w[1]] * 2)], [b[0], np.stack([b[1]] * 2)], "tanh")
    with pytest.raises(ValueError, match="unknown activation 'sigmoidal'"):
        Network(w, b, "sigmoidal")
    net = Network(w, b, "tanh")
    with pytest.raises(ValueError, match="n_1 = 3"):
        net(np.ones((5, 4)))
    nets = make_net([3, 4, 1], rng, sigma_b=0.0, num_networks=3)
    with pytest.raises(ValueError, match=r"stack of shape \(3,\)"):
        nets(np.ones((2, 5, 3)))
    with pytest.raises(ValueError, match=r"unstack needs a stack of shape \(K,\)"):
        net.unstack()
