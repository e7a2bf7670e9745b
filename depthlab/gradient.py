"""The input-gradient algorithm, backprop norms and weight gradients.

The input gradient grad a^[L](x) = D^[L] W^[L] D^[L-1] W^[L-1] ... D^[2] W^[2] is
computed as the paper's reader derived it: a forward pass that stores z^[l], then
a backward pass ``G <- (G * sigma'(z^[l])) @ W^[l]`` from l = L down to 2 that
never forms the diagonal matrix D^[l]. Its cost is about two forward passes.

Everything is batched over inputs (rows of ``X``) and over a stack of networks
(leading dimensions of the weights, see :class:`depthlab.network.Network`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from depthlab.network import ForwardPass, Network

Array = np.ndarray
Cost = Literal["quadratic", "cross_entropy"]
COSTS: tuple[str, ...] = ("quadratic", "cross_entropy")


def _transpose(w: Array) -> Array:
    return np.swapaxes(w, -1, -2)


def input_gradient(net: Network, X: Array) -> Array:
    """The gradient of the network's output with respect to its input.

    Parameters
    ----------
    net : Network
        A network, or a stack of networks of equal shape.
    X : ndarray, shape (B, n_1) or (n_1,); for a stack also (K, B, n_1)
        Inputs x = a^[1].

    Returns
    -------
    ndarray
        grad a^[L](x) for every input: shape ``(..., B, n_1)`` when n_L = 1, and
        the full Jacobian d a^[L] / d x of shape ``(..., B, n_L, n_1)`` when
        n_L > 1. A single input vector gives a single row ``(n_1,)`` (or
        ``(n_L, n_1)``).

    Notes
    -----
    Higham & Higham (2019), (3.1)-(3.2) and (5.2): by the chain rule
    grad a^[L](x) = D^[L] W^[L] ... D^[2] W^[2], D^[l] = diag(sigma'(z^[l])).
    With the batch in rows, left-multiplication by D^[l] is an elementwise
    product of G's columns with sigma'(z^[l]), and the product with W^[l] is
    one matrix product per layer.

    Examples
    --------
    >>> import numpy as np
    >>> from depthlab import init_network
    >>> net = init_network([3, 5, 1], activation="tanh", init="gaussian",
    ...                    sigma_w=1.0, sigma_b=0.1, rng=np.random.default_rng(0))
    >>> input_gradient(net, np.ones(3)).shape
    (3,)
    """
    single = np.ndim(X) == 1
    fp = net.forward(X)
    zs = fp.preactivations
    sigmas = net.sigmas
    n_out = net.widths[-1]
    if n_out == 1:
        # G = sigma'(z^[L]) W^[L]: (..., B, 1) * (..., 1, n_{L-1}).
        g = sigmas[-1].derivative(zs[-1]) @ net.weights[-1]
        for layer in range(len(zs) - 2, -1, -1):
            g *= sigmas[layer].derivative(zs[layer])
            g = g @ net.weights[layer]
    else:
        # Full Jacobian: G has shape (..., B, n_L, n_l).
        d = sigmas[-1].derivative(zs[-1])
        g = d[..., :, None] * net.weights[-1][..., None, :, :]
        for layer in range(len(zs) - 2, -1, -1):
            g *= sigmas[layer].derivative(zs[layer])[..., None, :]
            g = g @ net.weights[layer][..., None, :, :]
    if single:
        return g[0]
    return g


def backprop_log10_norms(net: Network, X: Array) -> Array:
    """log10 of the backprop norms || d a^[L] / d a^[l] ||, l = 1..L-1.

    Parameters
    ----------
    net : Network
        A network, or a stack of networks.
    X : ndarray, shape (B, n_1) (or (..., B, n_1) for a stack)

    Returns
    -------
    ndarray, shape (..., B, L-1)
        Column j holds log10 || d a^[L] / d a^[l] || for layer l = j + 1; column
        0 is log10 of the gradient norm || grad a^[L](x) ||. For n_L > 1 the norm
        is the Frobenius norm. A gradient that is exactly zero (e.g. every ReLU
        of a layer inactive) gives -inf.

    Notes
    -----
    The backward pass of :func:`input_gradient` with a running log scale: after
    every layer G is divided by its norm and log10 of the norm is accumulated,
    so gradients of 1e-400 or 1e+400 come out as -400 and +400, with no
    underflow, overflow or floating-point warning.
    """
    fp: ForwardPass = net.forward(X)
    zs = fp.preactivations
    sigmas = net.sigmas
    n_out = net.widths[-1]
    depth = net.depth
    batch_shape = zs[-1].shape[:-1]
    out = np.empty((*batch_shape, depth - 1), dtype=np.float64)
    log_scale = np.zeros(batch_shape, dtype=np.float64)
    tiny = np.finfo(net.dtype).tiny
    if n_out == 1:
        g = sigmas[-1].derivative(zs[-1]) @ net.weights[-1]
    else:
        d = sigmas[-1].derivative(zs[-1])
        g = d[..., :, None] * net.weights[-1][..., None, :, :]
    for layer in range(depth - 2, -1, -1):
        # g is (d a^[L] / d a^[layer + 1]) / 10**log_scale.
        if n_out == 1:
            norm = np.sqrt(np.einsum("...i,...i->...", g, g))
        else:
            norm = np.sqrt(np.einsum("...ij,...ij->...", g, g))
        zero = norm < tiny
        safe = np.where(zero, 1, norm)
        log_scale = log_scale + np.log10(safe.astype(np.float64))
        out[..., layer] = np.where(zero, -np.inf, log_scale)
        if layer == 0:
            break
        if n_out == 1:
            g = g / safe[..., None]
            g *= sigmas[layer - 1].derivative(zs[layer - 1])
            g = g @ net.weights[layer - 1]
        else:
            g = g / safe[..., None, None]
            g *= sigmas[layer - 1].derivative(zs[layer - 1])[..., None, :]
            g = g @ net.weights[layer - 1][..., None, :, :]
    return out


def _softmax(logits: Array) -> Array:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def cost_value(outputs: Array, Y: Array, *, cost: Cost = "quadratic") -> Array:
    """The mean cost over a batch.

    Parameters
    ----------
    outputs : ndarray, shape (..., B, n_L)
        a^[L] for each input.
    Y : ndarray, shape (B, n_L) or (..., B, n_L)
        Targets (one-hot for ``cross_entropy``).
    cost : {"quadratic", "cross_entropy"}
        ``quadratic``: (1/B) sum_i (1/2) ||y_i - a^[L](x_i)||^2, the paper's cost
        (5.1). ``cross_entropy``: softmax cross-entropy with a^[L] as logits,
        (1/B) sum_i -sum_k y_ik log softmax(a^[L](x_i))_k.

    Returns
    -------
    ndarray, shape (...)
    """
    if cost == "quadratic":
        return 0.5 * np.mean(np.sum((outputs - Y) ** 2, axis=-1), axis=-1)
    if cost == "cross_entropy":
        shifted = outputs - outputs.max(axis=-1, keepdims=True)
        log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
        return -np.mean(np.sum(Y * log_probs, axis=-1), axis=-1)
    raise ValueError(f"unknown cost {cost!r}; valid: {', '.join(COSTS)}")


def cost_gradients(
    net: Network, X: Array, Y: Array, *, cost: Cost = "quadratic"
) -> tuple[Array, list[Array], list[Array]]:
    """The cost over a mini-batch and its gradients with respect to W^[l], b^[l].

    Parameters
    ----------
    net : Network
        A network, or a stack of networks trained at once.
    X : ndarray, shape (B, n_1) (or (..., B, n_1))
        Inputs.
    Y : ndarray, shape (B, n_L) (or (..., B, n_L))
        Targets.
    cost : {"quadratic", "cross_entropy"}
        See :func:`cost_value`.

    Returns
    -------
    cost : ndarray, shape (...)
        The mean cost over the batch.
    weight_grads : list of ndarray
        dC/dW^[l], l = 2..L, shaped like ``net.weights``.
    bias_grads : list of ndarray
        dC/db^[l], l = 2..L, shaped like ``net.biases``.

    Notes
    -----
    Backpropagation, Higham & Higham (2019) Lemma 5.1: delta^[L] =
    sigma'(z^[L]) o dC/da^[L], delta^[l] = sigma'(z^[l]) o (W^[l+1])^T delta^[l+1],
    dC/db^[l] = delta^[l], dC/dW^[l] = delta^[l] (a^[l-1])^T, averaged over the
    batch.
    """
    fp = net.forward(X)
    a_out = fp.output
    Y = np.asarray(Y, dtype=net.dtype)
    batch = a_out.shape[-2]
    if cost == "quadratic":
        d_output = (a_out - Y) / batch
    elif cost == "cross_entropy":
        d_output = (_softmax(a_out) - Y) / batch
    else:
        raise ValueError(f"unknown cost {cost!r}; valid: {', '.join(COSTS)}")
    value = cost_value(a_out, Y, cost=cost)
    sigmas = net.sigmas
    zs = fp.preactivations
    n_layers = len(net.weights)
    weight_grads: list[Array] = [None] * n_layers  # type: ignore[list-item]
    bias_grads: list[Array] = [None] * n_layers  # type: ignore[list-item]
    delta = d_output * sigmas[-1].derivative(zs[-1])
    for layer in range(n_layers - 1, -1, -1):
        weight_grads[layer] = _transpose(delta) @ fp.activations[layer]
        bias_grads[layer] = delta.sum(axis=-2)
        if layer:
            delta = delta @ net.weights[layer]
            delta *= sigmas[layer - 1].derivative(zs[layer - 1])
    # A shared batch for a stack broadcasts; reduce any extra leading dims.
    for layer in range(n_layers):
        weight_grads[layer] = _sum_to_shape(weight_grads[layer], net.weights[layer].shape)
        bias_grads[layer] = _sum_to_shape(bias_grads[layer], net.biases[layer].shape)
    return value, weight_grads, bias_grads


def _sum_to_shape(x: Array, shape: tuple[int, ...]) -> Array:
    while x.ndim > len(shape):
        x = x.sum(axis=0)
    return x
