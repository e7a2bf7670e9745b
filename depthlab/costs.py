"""The cost of a mini-batch and its gradients with respect to the parameters.

:func:`cost_value` (the paper's quadratic cost, or softmax cross-entropy) and
:func:`cost_gradients` (backpropagation, Higham & Higham (2019) Lemma 5.1) for
the training job; the input gradient and the per-layer backprop norms of the
probe are in :mod:`depthlab.gradient`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from depthlab import blocks
from depthlab.network import Network

Array = np.ndarray
Cost = Literal["quadratic", "cross_entropy"]
COSTS: tuple[str, ...] = ("quadratic", "cross_entropy")


def _transpose(w: Array) -> Array:
    """Swap the last two axes (a stack's per-network transpose)."""
    return np.swapaxes(w, -1, -2)


def _softmax(logits: Array) -> Array:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def _check_cost(cost: str) -> None:
    if cost not in COSTS:
        raise ValueError(f"unknown cost {cost!r}; valid: {', '.join(COSTS)}")


def cost_value(outputs: Array, Y: Array, *, cost: Cost = "quadratic") -> Array:
    """The mean cost over a batch.

    Parameters
    ----------
    outputs : ndarray, shape (..., B, n_L)
        a^[L] for each input.
    Y : ndarray, shape (B, n_L) or (..., B, n_L)
        Targets (for ``cross_entropy``, class probabilities: one-hot or soft).
    cost : {"quadratic", "cross_entropy"}
        ``quadratic``: (1/B) sum_i (1/2) ||y_i - a^[L](x_i)||^2, the paper's cost
        (5.1). ``cross_entropy``: softmax cross-entropy with a^[L] as logits,
        (1/B) sum_i -sum_k y_ik log softmax(a^[L](x_i))_k.

    Returns
    -------
    ndarray, shape (...)

    Raises
    ------
    ValueError
        For an unknown ``cost``.

    Examples
    --------
    >>> import numpy as np
    >>> float(cost_value(np.array([[1.0, 2.0]]), np.array([[0.0, 0.0]])))
    2.5
    """
    _check_cost(cost)
    if cost == "quadratic":
        return 0.5 * np.mean(np.sum((outputs - Y) ** 2, axis=-1), axis=-1)
    shifted = outputs - outputs.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
    return -np.mean(np.sum(Y * log_probs, axis=-1), axis=-1)


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
        The mean cost over the batch, one per network of a stack.
    weight_grads : list of ndarray
        dC/dW^[l], l = 2..L, shaped like ``net.weights``.
    bias_grads : list of ndarray
        dC/db^[l], l = 2..L, shaped like ``net.biases``.

    Raises
    ------
    ValueError
        For an unknown ``cost`` or targets without n_L columns.

    Notes
    -----
    Backpropagation, Higham & Higham (2019) Lemma 5.1: delta^[L] =
    sigma'(z^[L]) o dC/da^[L], delta^[l] = sigma'(z^[l]) o (W^[l+1])^T delta^[l+1],
    dC/db^[l] = delta^[l], dC/dW^[l] = delta^[l] (a^[l-1])^T, averaged over the
    batch. For ``cross_entropy``, dC/da^[L] = softmax(a^[L]) sum_k y_k - y
    (= softmax(a^[L]) - y for targets that sum to 1). Each network of a stack gets
    the gradient of its own cost; inputs with more leading dimensions than the
    stack give the gradient of the sum of the costs over those dimensions.
    Residual blocks and layer normalization: see
    :func:`depthlab.blocks.parameter_gradients`.

    Examples
    --------
    >>> import numpy as np
    >>> from depthlab import init_network
    >>> net = init_network([3, 4, 2], activation="tanh", init="gaussian",
    ...                    sigma_w=1.0, sigma_b=0.1, rng=np.random.default_rng(0))
    >>> c, dW, db = cost_gradients(net, np.ones((5, 3)), np.zeros((5, 2)))
    >>> [w.shape for w in dW], [b.shape for b in db]
    ([(4, 3), (2, 4)], [(4,), (2,)])
    """
    _check_cost(cost)
    fp = net.forward(X)
    a_out = fp.output
    Y = np.asarray(Y, dtype=net.dtype)
    if Y.ndim == 0 or Y.shape[-1] != net.widths[-1]:
        raise ValueError(
            f"targets of shape {Y.shape} need n_L = {net.widths[-1]} columns"
        )
    batch = a_out.shape[-2]
    if cost == "quadratic":
        d_output = (a_out - Y) / batch
    else:
        d_output = (_softmax(a_out) * Y.sum(axis=-1, keepdims=True) - Y) / batch
    value = cost_value(a_out, Y, cost=cost)
    if not net.plain_mlp:
        weight_grads, bias_grads = blocks.parameter_gradients(net, fp, d_output)
        weight_grads, bias_grads = _sum_to_shapes(net, weight_grads, bias_grads)
        return value, weight_grads, bias_grads
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
    # Inputs with more leading dimensions than the stack: sum over the extra ones.
    for layer in range(n_layers):
        weight_grads[layer] = _sum_to_shape(
            weight_grads[layer], net.weights[layer].shape
        )
        bias_grads[layer] = _sum_to_shape(bias_grads[layer], net.biases[layer].shape)
    return value, weight_grads, bias_grads


def _sum_to_shapes(
    net: Network, weight_grads: list[Array], bias_grads: list[Array]
) -> tuple[list[Array], list[Array]]:
    """The gradients summed over the inputs' leading axes beyond the stack's."""
    return (
        [
            _sum_to_shape(g, w.shape)
            for g, w in zip(weight_grads, net.weights, strict=True)
        ],
        [
            _sum_to_shape(g, b.shape)
            for g, b in zip(bias_grads, net.biases, strict=True)
        ],
    )


def _sum_to_shape(x: Array, shape: tuple[int, ...]) -> Array:
    while x.ndim > len(shape):
        x = x.sum(axis=0)
    return x
