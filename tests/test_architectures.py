"""Residual networks and layer normalization in the numerical core.

Every architecture (mlp, mlp + LN, resnet, resnet + LN), for tanh and relu, is
checked against references that share none of its code: the definitions of
:mod:`depthlab.network` written out literally in numpy, central finite
differences of the forward pass, and torch autograd (float64, with torch's own
``layer_norm``). ReLU is checked away from its kink (every input of sigma is at
least ``_KINK_MARGIN`` away from 0).

Tolerances. Central differences with step h = 1e-5 have a truncation error
h^2 |f'''| / 6 ~ 1e-11 |f'''| and a rounding error ~ eps |f| / h ~ 1e-11; LN's
curvature (1 / s^2 with s ~ 0.3-3 here) makes |f'''| at most ~1e2, so 1e-7
relative to the largest entry leaves a margin of ~10. Torch computes the same
float64 functions in another order: agreement to 1e-10 relative (about 1e5 eps,
for products over a few layers of condition number up to ~1e2).
"""

import itertools

import numpy as np
import pytest
from conftest import make_net

from depthlab import blocks
from depthlab.gradient import backprop_log10_norms, cost_gradients, input_gradient
from depthlab.network import LN_EPS, Network, check_architecture, init_network
from depthlab.spectra import (
    jacobian_log_singular_values,
    layer_singular_values,
    log_singular_values_of_product,
)

ARCHS = [("mlp", None), ("mlp", "layer"), ("resnet", None), ("resnet", "layer")]
_KINK_MARGIN = 1e-3
_FD_STEP = 1e-5
_FD_RTOL = 1e-7
_TORCH_RTOL = 1e-10


def _net(arch, norm, activation, rng, *, widths=(4, 6, 6, 6, 6, 2), k=None, alpha=0.8):
    return make_net(
        list(widths),
        rng,
        activation=activation,
        sigma_w=1.5,
        sigma_b=0.2,
        output_activation="linear" if activation == "relu" else None,
        num_networks=k,
        architecture=arch,
        branch_scale=alpha,
        norm=norm,
    )


def _away_from_kinks(net: Network, X: np.ndarray) -> bool:
    if net.activation != "relu":
        return True
    return all(np.min(np.abs(h)) > _KINK_MARGIN for h in net.forward(X).sigma_args[:-1])


def _lively(arch, norm, activation, rng, X_shape, **kwargs):
    """A network and inputs whose ReLU inputs are all away from the kink."""
    for _ in range(50):
        net = _net(arch, norm, activation, rng, **kwargs)
        X = rng.standard_normal(X_shape)
        if _away_from_kinks(net, X):
            return net, X
    raise AssertionError("no network away from the kinks")  # pragma: no cover


def _literal_forward(net: Network, x: np.ndarray) -> list[np.ndarray]:
    """a^[1..L] for one network and one input, from the definitions as written."""

    def ln(v):
        return (v - v.mean()) / np.sqrt(v.var() + 1e-5)

    act = {"tanh": np.tanh, "relu": lambda v: np.maximum(v, 0.0), "linear": lambda v: v}
    sigma, sigma_out = act[net.activation], act[net.output_activation]
    W, b, alpha = net.weights, net.biases, net.branch_scale
    L = net.depth
    a = [x]
    for l in range(2, L + 1):  # noqa: E741 (the paper's l)
        w, bias, prev = W[l - 2], b[l - 2], a[-1]
        if net.architecture == "resnet" and l == 2:
            a.append(w @ prev + bias)
        elif net.architecture == "resnet" and l < L:
            h = ln(prev) if net.norm else prev
            a.append(prev + alpha * (w @ sigma(h) + bias))
        elif l < L:
            z = w @ prev + bias
            a.append(sigma(ln(z) if net.norm else z))
        else:
            a.append(sigma_out(w @ prev + bias))
    return a


# --------------------------------------------------------------------------
# Construction and definitions
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"architecture": "transformer"}, "unknown architecture 'transformer'"),
        ({"norm": "batch"}, "unknown norm 'batch'"),
        ({"norm": "none"}, "unknown norm 'none'"),
        ({"architecture": "resnet", "branch_scale": -1.0}, "branch_scale"),
        ({"architecture": "resnet", "branch_scale": np.nan}, "branch_scale"),
        ({"architecture": "resnet", "widths": [3, 1]}, "depth >= 3"),
        ({"architecture": "resnet", "widths": [3, 4, 5, 1]}, "equal hidden widths"),
        ({"norm": "layer", "widths": [3, 1, 1]}, "hidden widths >= 2"),
    ],
)
def test_bad_architectures_are_refused(kwargs, message, rng):
    kwargs = {"widths": [3, 4, 4, 1], **kwargs}
    widths = kwargs.pop("widths")
    with pytest.raises(ValueError, match=message):
        init_network(
            widths,
            activation="tanh",
            init="gaussian",
            sigma_w=1.0,
            sigma_b=0.0,
            rng=rng,
            **kwargs,
        )
    net = make_net([3, 4, 4, 1], rng, sigma_b=0.0)
    with pytest.raises(ValueError, match=message):
        Network(
            [np.zeros((n, m)) for m, n in itertools.pairwise(widths)],
            [np.zeros(n) for n in widths[1:]],
            "tanh",
            **kwargs,
        )
    assert net.plain_mlp


def test_defaults_keep_the_mlp(rng):
    net = make_net([3, 5, 5, 1], rng)
    assert (net.architecture, net.branch_scale, net.norm) == ("mlp", 1.0, None)
    assert net.plain_mlp and net.blocks == 0
    assert check_architecture("resnet", "layer", 2, [3, 5, 5, 1]) == 2.0


@pytest.mark.parametrize(("arch", "norm"), ARCHS)
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_forward_is_the_definition(arch, norm, activation, rng):
    nets = _net(arch, norm, activation, rng, k=3)
    X = rng.standard_normal((3, 4, 4))
    fp = nets.forward(X)
    assert len(fp.activations) == nets.depth and len(fp.sigma_args) == nets.depth - 1
    np.testing.assert_array_equal(nets(X), fp.output)
    for k, net in enumerate(nets.unstack()):
        assert (net.architecture, net.norm, net.branch_scale) == (arch, norm, 0.8)
        for j in range(4):
            literal = _literal_forward(net, X[k, j])
            for got, ref in zip(fp.activations, literal, strict=True):
                np.testing.assert_allclose(got[k, j], ref, rtol=1e-13, atol=1e-13)


def test_blocks_and_layer_kinds(rng):
    net = _net("resnet", "layer", "tanh", rng, widths=(3, 8, 8, 8, 8, 8, 1))
    assert net.blocks == 4 and net.depth == 7
    assert [net.is_block(i) for i in range(6)] == [False] + [True] * 4 + [False]
    assert [net.is_normalized(i) for i in range(6)] == [False] + [True] * 4 + [False]
    assert net.sigmas[0].name == "linear" and net.sigmas[1].name == "tanh"
    mlp = _net("mlp", "layer", "tanh", rng, widths=(3, 8, 8, 1))
    assert [mlp.is_normalized(i) for i in range(3)] == [True, True, False]
    assert _net("resnet", None, "tanh", rng, widths=(3, 8, 1)).blocks == 0


def test_layer_norm_has_zero_mean_unit_variance_and_eps():
    v = np.array([[1.0, 2.0, 4.0, 7.0], [3.0, 3.0, 3.0, 3.0]])
    u, s = blocks.layer_norm(v)
    np.testing.assert_allclose(u.mean(axis=-1), 0.0, atol=1e-15)
    var = v.var(axis=-1)
    np.testing.assert_allclose(np.mean(u * u, axis=-1), var / (var + LN_EPS))
    np.testing.assert_allclose(s[:, 0], np.sqrt(var + 1e-5))
    assert LN_EPS == 1e-5
    np.testing.assert_array_equal(u[1], 0.0)  # a constant vector


def test_zero_branch_scale_leaves_the_stream_alone(rng):
    net = _net("resnet", "layer", "tanh", rng, alpha=0.0)
    X = rng.standard_normal((5, 4))
    fp = net.forward(X)
    for a in fp.activations[2:-1]:
        np.testing.assert_array_equal(a, fp.activations[1])
    for s in layer_singular_values(net, X)[1:-1]:
        np.testing.assert_allclose(s, 1.0, rtol=1e-15)


def test_training_keeps_the_architecture(rng):
    from depthlab.datasets import load_dataset
    from depthlab.training import train

    data = load_dataset("digits", rng=np.random.default_rng(0))
    net = make_net(
        [data.input_dim, 16, 16, 16, data.output_dim],
        rng,
        activation="relu",
        init="he_normal",
        output_activation="linear",
        sigma_w=np.sqrt(2),
        sigma_b=0.0,
        architecture="resnet",
        branch_scale=0.5,
        norm="layer",
        num_networks=2,
    )
    result = train(
        net,
        data,
        num_steps=20,
        learning_rate=0.05,
        batch_size=32,
        rng=[np.random.default_rng(1), np.random.default_rng(2)],
        cost="cross_entropy",
    )
    trained = result.network
    assert (trained.architecture, trained.norm, trained.branch_scale) == (
        "resnet",
        "layer",
        0.5,
    )
    assert np.all(result.train_loss[-1] < result.train_loss[0])


# --------------------------------------------------------------------------
# Gradients against finite differences
# --------------------------------------------------------------------------


def _fd_input_jacobian(net: Network, X: np.ndarray) -> np.ndarray:
    """(..., B, n_L, n_1) by central differences of the forward pass."""
    n1 = X.shape[-1]
    cols = []
    for j in range(n1):
        e = np.zeros(n1)
        e[j] = _FD_STEP
        cols.append((net(X + e) - net(X - e)) / (2 * _FD_STEP))
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize(("arch", "norm"), ARCHS)
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("n_out", [1, 2])
def test_input_gradient_finite_differences(arch, norm, activation, n_out, rng):
    widths = (4, 6, 6, 6, 6, n_out)
    net, X = _lively(arch, norm, activation, rng, (2, 5, 4), widths=widths, k=2)
    g = input_gradient(net, X)
    fd = _fd_input_jacobian(net, X)
    fd = fd[..., 0, :] if n_out == 1 else fd
    assert g.shape == fd.shape
    np.testing.assert_allclose(g, fd, rtol=0, atol=_FD_RTOL * np.abs(fd).max())


@pytest.mark.parametrize(("arch", "norm"), ARCHS)
@pytest.mark.parametrize("cost", ["quadratic", "cross_entropy"])
def test_cost_gradients_finite_differences(arch, norm, cost, rng):
    net, X = _lively(arch, norm, "tanh", rng, (6, 4), widths=(4, 5, 5, 5, 3))
    Y = np.eye(3)[rng.integers(0, 3, 6)]
    _, dW, db = cost_gradients(net, X, Y, cost=cost)
    from depthlab.gradient import cost_value

    for params, grads in ((net.weights, dW), (net.biases, db)):
        for p, g in zip(params, grads, strict=True):
            assert g.shape == p.shape
            fd = np.empty_like(p)
            for idx in np.ndindex(p.shape):
                old = p[idx]
                p[idx] = old + _FD_STEP
                up = cost_value(net(X), Y, cost=cost)
                p[idx] = old - _FD_STEP
                down = cost_value(net(X), Y, cost=cost)
                p[idx] = old
                fd[idx] = (up - down) / (2 * _FD_STEP)
            np.testing.assert_allclose(g, fd, rtol=0, atol=1e-8)


@pytest.mark.parametrize(("arch", "norm"), ARCHS)
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_layer_jacobians_finite_differences(arch, norm, activation, rng):
    net, X = _lively(arch, norm, activation, rng, (3, 4))
    fp = net.forward(X)
    for i in range(net.depth - 1):
        a = fp.activations[i]
        n_in = a.shape[-1]
        fd = np.empty((3, net.widths[i + 1], n_in))
        for j in range(n_in):
            e = np.zeros(n_in)
            e[j] = _FD_STEP
            up = blocks.layer_forward(net, i, a + e)[0]
            down = blocks.layer_forward(net, i, a - e)[0]
            fd[..., j] = (up - down) / (2 * _FD_STEP)
        J = blocks.jacobian(net, fp, i)
        np.testing.assert_allclose(J, fd, rtol=0, atol=_FD_RTOL * np.abs(fd).max())
        sv = np.linalg.svd(fd, compute_uv=False)
        got = layer_singular_values(net, X)[i]
        np.testing.assert_allclose(got, sv, rtol=0, atol=_FD_RTOL * sv.max())


# --------------------------------------------------------------------------
# Against torch autograd
# --------------------------------------------------------------------------


def _torch_forward(torch, net: Network, x):
    """a^[1..L] in torch (float64), with torch's layer_norm, for one network."""
    F = torch.nn.functional
    act = {"tanh": torch.tanh, "relu": torch.relu, "linear": lambda v: v}
    sigma, sigma_out = act[net.activation], act[net.output_activation]
    W = [torch.tensor(w) for w in net.weights]
    b = [torch.tensor(v) for v in net.biases]
    L = net.depth

    def ln(v):
        return F.layer_norm(v, v.shape[-1:], eps=1e-5)

    a = [x]
    for l in range(2, L + 1):  # noqa: E741 (the paper's l)
        w, bias, prev = W[l - 2], b[l - 2], a[-1]
        if net.architecture == "resnet" and l == 2:
            a.append(prev @ w.T + bias)
        elif net.architecture == "resnet" and l < L:
            h = ln(prev) if net.norm else prev
            a.append(prev + net.branch_scale * (sigma(h) @ w.T + bias))
        elif l < L:
            z = prev @ w.T + bias
            a.append(sigma(ln(z) if net.norm else z))
        else:
            a.append(sigma_out(prev @ w.T + bias))
    return a


@pytest.mark.parametrize(("arch", "norm"), ARCHS)
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_gradients_and_backprop_norms_match_torch(arch, norm, activation, rng):
    torch = pytest.importorskip("torch")
    nets, X = _lively(arch, norm, activation, rng, (2, 3, 4), k=2)
    grads = input_gradient(nets, X)  # (K, B, n_L, n_1): n_L = 2
    log_norms = backprop_log10_norms(nets, X)
    for k, net in enumerate(nets.unstack()):
        for j in range(3):
            x = torch.tensor(X[k, j], requires_grad=True)
            a = _torch_forward(torch, net, x)
            for act in a[1:-1]:
                act.retain_grad()
            jac = torch.autograd.functional.jacobian(
                lambda v, net=net: _torch_forward(torch, net, v)[-1], x
            )
            np.testing.assert_allclose(
                grads[k, j], jac.numpy(), rtol=_TORCH_RTOL, atol=1e-13
            )
            # || d a^[L] / d a^[l] ||_F from autograd, one output unit at a time.
            sq = np.zeros(net.depth - 1)
            for unit in range(net.widths[-1]):
                gs = torch.autograd.grad(a[-1][unit], a[:-1], retain_graph=True)
                sq += np.array([float((g**2).sum()) for g in gs])
            np.testing.assert_allclose(
                log_norms[k, j], 0.5 * np.log10(sq), rtol=0, atol=1e-11
            )


@pytest.mark.parametrize(("arch", "norm"), ARCHS)
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_cost_gradients_match_torch(arch, norm, activation, rng):
    torch = pytest.importorskip("torch")
    net, X = _lively(arch, norm, activation, rng, (7, 4), widths=(4, 6, 6, 6, 3))
    Y = np.eye(3)[rng.integers(0, 3, 7)]
    value, dW, db = cost_gradients(net, X, Y, cost="cross_entropy")
    params = [torch.tensor(p, requires_grad=True) for p in (*net.weights, *net.biases)]
    n = len(net.weights)
    twin = net.with_parameters(
        [p.detach().numpy() for p in params[:n]],
        [p.detach().numpy() for p in params[n:]],
    )

    # Rebuild the forward pass on the leaf tensors so that autograd sees them.
    def forward(x):
        F = torch.nn.functional
        act = {"tanh": torch.tanh, "relu": torch.relu}[net.activation]
        out = {"tanh": torch.tanh, "relu": torch.relu, "linear": lambda v: v}[
            net.output_activation
        ]
        L, a = net.depth, x
        for l in range(2, L + 1):  # noqa: E741 (the paper's l)
            w, bias = params[l - 2], params[n + l - 2]
            if net.architecture == "resnet" and l == 2:
                a = a @ w.T + bias
            elif net.architecture == "resnet" and l < L:
                h = F.layer_norm(a, a.shape[-1:], eps=1e-5) if net.norm else a
                a = a + net.branch_scale * (act(h) @ w.T + bias)
            else:
                z = a @ w.T + bias
                if l < L and net.norm:
                    z = F.layer_norm(z, z.shape[-1:], eps=1e-5)
                a = act(z) if l < L else out(z)
        return a

    logits = forward(torch.tensor(X))
    loss = -(torch.tensor(Y) * torch.log_softmax(logits, dim=-1)).sum(-1).mean()
    loss.backward()
    np.testing.assert_allclose(float(value), float(loss.detach()), rtol=1e-13)
    for got, p in zip([*dW, *db], params, strict=True):
        ref = p.grad.numpy()
        np.testing.assert_allclose(
            got, ref, rtol=0, atol=_TORCH_RTOL * np.abs(ref).max()
        )
    np.testing.assert_allclose(twin(X), logits.detach().numpy(), rtol=1e-13)


@pytest.mark.parametrize(("arch", "norm"), ARCHS)
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_spectra_match_torch(arch, norm, activation, rng):
    torch = pytest.importorskip("torch")
    nets, X = _lively(arch, norm, activation, rng, (2, 2, 4), k=2)
    layer_sv = layer_singular_values(nets, X)
    jac_log = jacobian_log_singular_values(nets, X)
    for k, net in enumerate(nets.unstack()):
        for j in range(2):
            x = torch.tensor(X[k, j])
            acts = _torch_forward(torch, net, x)
            for i in range(net.depth - 1):
                layer = torch.autograd.functional.jacobian(
                    lambda v, i=i, net=net: _torch_forward_layer(torch, net, i, v),
                    acts[i].detach(),
                )
                sv = torch.linalg.svdvals(layer).numpy()
                np.testing.assert_allclose(
                    layer_sv[i][k, j], sv, rtol=0, atol=_TORCH_RTOL * sv.max()
                )
                upto = torch.autograd.functional.jacobian(
                    lambda v, i=i, net=net: _torch_forward(torch, net, v)[i + 1], x
                )
                # Product-then-SVD resolves singular values only to ~eps * s_max:
                # compare on a linear scale (exactly zero values are -inf here).
                ref = torch.linalg.svdvals(upto).numpy()
                np.testing.assert_allclose(
                    np.exp(jac_log[i][k, j]), ref, rtol=0, atol=1e-12 * ref.max()
                )


def _torch_forward_layer(torch, net, i, a):
    """Layer l = i + 2 alone, in torch: a^[l] from a^[l-1]."""
    F = torch.nn.functional
    sigma = {"tanh": torch.tanh, "relu": torch.relu, "linear": lambda v: v}[
        net.sigmas[i].name
    ]
    w, bias = torch.tensor(net.weights[i]), torch.tensor(net.biases[i])
    if net.is_block(i):
        h = F.layer_norm(a, a.shape[-1:], eps=1e-5) if net.is_normalized(i) else a
        return a + net.branch_scale * (sigma(h) @ w.T + bias)
    z = a @ w.T + bias
    if net.is_normalized(i):
        z = F.layer_norm(z, z.shape[-1:], eps=1e-5)
    return sigma(z)


# --------------------------------------------------------------------------
# Scale, depth, stacks, dtypes
# --------------------------------------------------------------------------


def test_backprop_norms_of_a_resnet_at_1e400(rng):
    """400 linear blocks I + 1 * (-0.9 I): each scales the gradient by 0.1."""
    n, blocks_ = 3, 400
    w = [np.eye(n)] + [-0.9 * np.eye(n)] * blocks_ + [np.array([[1.0, 0.0, 0.0]])]
    b = [np.zeros(n)] * (blocks_ + 1) + [np.zeros(1)]
    net = Network(w, b, "linear", architecture="resnet", branch_scale=1.0)
    out = backprop_log10_norms(net, np.ones(n))
    per_block = np.log10(1.0 - 0.9)  # 1 + (-0.9) in float64, applied 400 times
    expected = np.arange(blocks_ + 1)[::-1] * per_block
    np.testing.assert_allclose(out[1:], expected, rtol=0, atol=1e-9)
    assert out[0] == pytest.approx(-400.0, abs=1e-9)
    assert out[-1] == 0.0


@pytest.mark.parametrize(("arch", "norm"), ARCHS)
def test_deep_products_agree_with_the_product_routine(arch, norm, rng):
    """J^(l) of a 40-layer network: the per-layer path and the explicit product."""
    net = _net(arch, norm, "tanh", rng, widths=(5,) + (8,) * 39 + (1,), alpha=0.5)
    X = rng.standard_normal((2, 5))
    fp = net.forward(X)
    logs = jacobian_log_singular_values(net, X)
    Js = [blocks.jacobian(net, fp, i) for i in range(net.depth - 1)]
    for depth in (3, 20, 40):
        ref = log_singular_values_of_product(Js[: depth - 1])
        np.testing.assert_allclose(logs[depth - 2], ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize(("arch", "norm"), ARCHS)
def test_stack_in_groups_equals_networks_one_by_one(arch, norm, monkeypatch, rng):
    import depthlab.gradient as gradient

    monkeypatch.setattr(gradient, "_GROUP_BYTES", 1)  # one network per group
    nets = _net(arch, norm, "tanh", rng, k=3)
    X = rng.standard_normal((3, 4, 4))
    norms, outputs = backprop_log10_norms(nets, X, return_outputs=True)
    grads = input_gradient(nets, X)
    for k, net in enumerate(nets.unstack()):
        np.testing.assert_allclose(
            norms[k], backprop_log10_norms(net, X[k]), rtol=0, atol=1e-13
        )
        np.testing.assert_allclose(outputs[k], net(X[k]), rtol=1e-13)
        np.testing.assert_allclose(grads[k], input_gradient(net, X[k]), rtol=1e-13)
    shared = backprop_log10_norms(nets, X[0])  # inputs shared by the stack
    assert shared.shape == (3, 4, net.depth - 1)
    single = backprop_log10_norms(nets, X[0, 0])
    np.testing.assert_allclose(single, shared[:, 0], rtol=0, atol=1e-13)


@pytest.mark.parametrize(("arch", "norm"), ARCHS)
def test_float32_agrees_with_float64(arch, norm, rng):
    net = _net(arch, norm, "tanh", rng, k=2)
    net32 = net.with_parameters(
        [w.astype(np.float32) for w in net.weights],
        [b.astype(np.float32) for b in net.biases],
    )
    X = rng.standard_normal((2, 3, 4))
    g64, g32 = input_gradient(net, X), input_gradient(net32, X)
    assert g32.dtype == np.float32
    np.testing.assert_allclose(g32, g64, rtol=0, atol=1e-4 * np.abs(g64).max())
    np.testing.assert_allclose(
        backprop_log10_norms(net32, X), backprop_log10_norms(net, X), atol=1e-4
    )
    s32 = layer_singular_values(net32, X)
    assert all(s.dtype == np.float32 for s in s32)
    np.testing.assert_allclose(
        jacobian_log_singular_values(net32, X)[-1],
        jacobian_log_singular_values(net, X)[-1],
        atol=1e-3,
    )


@pytest.mark.parametrize(("arch", "norm"), ARCHS[1:])
def test_one_input_to_a_stack_gives_one_row_per_network(arch, norm, rng):
    nets = _net(arch, norm, "tanh", rng, k=3)
    x = rng.standard_normal(4)
    batch = x[None, :]
    for fn in (layer_singular_values, jacobian_log_singular_values):
        for one, many in zip(fn(nets, x), fn(nets, batch), strict=True):
            assert one.shape == (3, many.shape[-1])
            np.testing.assert_array_equal(one, many[:, 0])
    np.testing.assert_array_equal(
        input_gradient(nets, x), input_gradient(nets, batch)[:, 0]
    )
