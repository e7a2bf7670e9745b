"""The layers of every architecture: forward map and Jacobian products, layer by layer.

The definitions are those of :mod:`depthlab.network` (its "Architectures"): layer
l = i + 2 of a :class:`~depthlab.network.Network` is either *dense*,

    z^[l] = W^[l] a^[l-1] + b^[l],  h^[l] = LN(z^[l]) or z^[l],  a^[l] = sigma(h^[l]),
    J^[l] = D^[l] (J_LN) W^[l],

or a residual *block* (resnet layers 3..L-1),

    h^[l] = LN(a^[l-1]) or a^[l-1],  z^[l] = W^[l] sigma(h^[l]) + b^[l],
    a^[l] = a^[l-1] + alpha z^[l],  J^[l] = I + alpha W^[l] D^[l] (J_LN),

with D^[l] = diag(sigma'(h^[l])) and J_LN = (1/s)(I - 1 1^T / n - u u^T / n) the
Jacobian of layer normalization (u = LN(v), s = sqrt(var v + eps)). None of D^[l],
J_LN or J^[l] is formed by the products: they are elementwise products, a
mean and a dot product per row, and one matrix product with W^[l].

Arrays follow :mod:`depthlab.network`'s row convention: activations have shape
``(..., B, n_l)``; a product takes a stack of r row vectors per input,
``(..., B, r, n)``: :func:`vjp` maps co-vectors G -> G J^[l] (backpropagation,
r = n_L), :func:`jvp_rows` maps V -> V J^[l]^T (rows pushed forward; the graded
QR of :mod:`depthlab.spectra`). The plain MLP (3.2) has its own faster path in
:mod:`depthlab.gradient`; these functions serve every architecture. The
gradient's functions pass ``matmul`` (:mod:`depthlab.backend`) to choose whose
BLAS multiplies; the default is ``np.matmul``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from depthlab.backend import MatMul, numpy_matmul

if TYPE_CHECKING:
    from depthlab.network import ForwardPass, Network

Array = np.ndarray

LN_EPS = 1e-5
"""eps of layer normalization LN(v) = (v - mean v) / sqrt(var v + eps) (torch's
default)."""


def layer_norm(v: Array) -> tuple[Array, Array]:
    """LN(v) over the last axis, without affine parameters, and its scale.

    Parameters
    ----------
    v : ndarray, shape (..., n)

    Returns
    -------
    u : ndarray, shape (..., n)
        (v - mean v) / s, mean and biased variance over the n entries.
    s : ndarray, shape (..., 1)
        s = sqrt(var v + eps), eps = :data:`LN_EPS`.

    Examples
    --------
    >>> u, s = layer_norm(np.array([1.0, 3.0]))
    >>> np.round(u, 4), np.round(s, 4)
    (array([-1.,  1.]), array([1.]))
    """
    centered = v - v.mean(axis=-1, keepdims=True)
    s = np.sqrt(np.mean(centered * centered, axis=-1, keepdims=True) + LN_EPS)
    return centered / s, s


def layer_norm_product(g: Array, u: Array, s: Array) -> Array:
    """Rows of ``g`` times J_LN = (1/s) (I - 1 1^T / n - u u^T / n).

    J_LN is symmetric, so this is both the vector-Jacobian and the
    Jacobian-vector product. ``g`` has shape ``(..., n)``; ``u`` (the normalized
    vector) and ``s`` (its scale, ``(..., 1)``) broadcast against it.
    """
    n = g.shape[-1]
    dot = np.sum(g * u, axis=-1, keepdims=True)
    return (g - g.mean(axis=-1, keepdims=True) - u * (dot / n)) / s


def _rows_times(G: Array, M: Array, matmul: MatMul = numpy_matmul) -> Array:
    """``G @ M`` for row stacks G ``(..., B, r, n)`` and matrices M ``(..., n, m)``.

    The B * r rows of each network are multiplied at once (one matrix product
    per network, not one small product per input).
    """
    *lead, batch, r, n = G.shape
    if len(lead) < M.ndim - 2:
        return matmul(G, M[..., None, :, :], None)
    out = matmul(G.reshape(*lead, batch * r, n), M, None)
    return out.reshape(*lead, batch, r, M.shape[-1])


def _expand(x: Array | None) -> Array | None:
    """An activation-shaped array ``(..., B, n)`` as ``(..., B, 1, n)``."""
    return None if x is None else x[..., None, :]


def layer_forward(
    net: Network, i: int, a: Array, matmul: MatMul = numpy_matmul
) -> tuple[Array, Array, Array, Array | None]:
    """Layer l = i + 2 of ``net`` applied to a^[l-1] (``(..., B, n_{l-1})``).

    Returns
    -------
    a : ndarray
        a^[l], shape ``(..., B, n_l)``.
    z : ndarray
        z^[l] (for a block, the branch output W^[l] sigma(h^[l]) + b^[l]).
    h : ndarray
        h^[l], the input of sigma.
    s : ndarray or None
        The scale sqrt(var + eps) of the layer's normalization, ``(..., B, 1)``,
        or None.
    """
    w, b, sigma = net.weights[i], net.biases[i], net.sigmas[i]
    normalized = net.is_normalized(i)
    if net.is_block(i):
        h, s = layer_norm(a) if normalized else (a, None)
        z = matmul(sigma.fn(h), np.swapaxes(w, -1, -2), None)
        z += b[..., None, :]
        return a + net.branch_scale * z, z, h, s
    z = matmul(a, np.swapaxes(w, -1, -2), None)
    z += b[..., None, :]
    h, s = layer_norm(z) if normalized else (z, None)
    return sigma.fn(h), z, h, s


def lean_forward(net: Network, X: Array, matmul: MatMul = numpy_matmul) -> ForwardPass:
    """The forward pass, keeping only what :func:`vjp` and :func:`jvp_rows` need.

    Returns a :class:`~depthlab.network.ForwardPass` whose ``sigma_inputs``
    (h^[l]) and ``norm_scales`` (s^[l]) are complete, whose ``activations`` is
    ``[a^[L]]`` and whose ``preactivations`` is empty: one array of
    ``(..., B, n_l)`` per layer, as the MLP's gradient keeps (for a block without
    normalization h^[l] is the stream a^[l-1] itself). :func:`jacobian` and
    :func:`parameter_gradients` need the full ``net.forward(X)``.
    """
    from depthlab.network import ForwardPass

    a = net.as_input(X)
    hs: list[Array] = []
    scales: list[Array | None] = []
    for i in range(len(net.weights)):
        a, _, h, s = layer_forward(net, i, a, matmul)
        hs.append(h)
        scales.append(s)
    return ForwardPass([], [a], hs, scales)


def _scale(fp: ForwardPass, i: int) -> Array | None:
    return None if fp.norm_scales is None else fp.norm_scales[i]


def derivative(net: Network, fp: ForwardPass, i: int) -> Array:
    """sigma'(h^[l]) for l = i + 2, shape ``(..., B, n)``: the diagonal of D^[l]."""
    return net.sigmas[i].derivative(fp.sigma_args[i])


def vjp(
    net: Network, fp: ForwardPass, i: int, G: Array, matmul: MatMul = numpy_matmul
) -> Array:
    """G J^[l] for l = i + 2: from d y / d a^[l] to d y / d a^[l-1].

    Parameters
    ----------
    net : Network
    fp : ForwardPass
        ``net.forward(X)``.
    i : int
        The layer's index, l - 2.
    G : ndarray, shape (..., B, r, n_l)
        r co-vectors per input.
    matmul : callable, default np.matmul
        The matrix product (:mod:`depthlab.backend`).

    Returns
    -------
    ndarray, shape (..., B, r, n_{l-1})
    """
    d = _expand(derivative(net, fp, i))
    h, s = _expand(fp.sigma_args[i]), _expand(_scale(fp, i))
    w = net.weights[i]
    if net.is_block(i):
        t = _rows_times(G, w, matmul) * d
        if s is not None:
            t = layer_norm_product(t, h, s)
        return G + net.branch_scale * t
    t = G * d
    if s is not None:
        t = layer_norm_product(t, h, s)
    return _rows_times(t, w, matmul)


def jvp_rows(net: Network, fp: ForwardPass, i: int, V: Array) -> Array:
    """V J^[l]^T for l = i + 2: each row v of V becomes (J^[l] v)^T.

    Parameters
    ----------
    V : ndarray, shape (..., B, r, n_{l-1})

    Returns
    -------
    ndarray, shape (..., B, r, n_l)
    """
    d = _expand(derivative(net, fp, i))
    h, s = _expand(fp.sigma_args[i]), _expand(_scale(fp, i))
    wt = np.swapaxes(net.weights[i], -1, -2)
    if net.is_block(i):
        t = V if s is None else layer_norm_product(V, h, s)
        return V + net.branch_scale * _rows_times(t * d, wt)
    t = _rows_times(V, wt)
    if s is not None:
        t = layer_norm_product(t, h, s)
    return t * d


def jacobian(net: Network, fp: ForwardPass, i: int) -> Array:
    """J^[l] = d a^[l] / d a^[l-1] for l = i + 2, shape ``(..., B, n_l, n_{l-1})``.

    Formed as (I J^[l]^T)^T by :func:`jvp_rows`; ``fp`` may be lean.
    """
    h = fp.sigma_args[i]
    n_in = net.widths[i]
    eye = np.broadcast_to(np.eye(n_in, dtype=h.dtype), (*h.shape[:-1], n_in, n_in))
    return np.swapaxes(jvp_rows(net, fp, i, eye), -1, -2)


def parameter_gradients(
    net: Network, fp: ForwardPass, d_output: Array
) -> tuple[list[Array], list[Array]]:
    """Gradients of a scalar C with respect to every W^[l], b^[l] (backpropagation).

    Parameters
    ----------
    net : Network
    fp : ForwardPass
        ``net.forward(X)``.
    d_output : ndarray, shape (..., B, n_L)
        dC / da^[L] for every input (C is a sum over the inputs).

    Returns
    -------
    weight_grads, bias_grads : list of ndarray
        dC/dW^[l] ``(..., n_l, n_{l-1})`` and dC/db^[l] ``(..., n_l)``, l = 2..L,
        summed over the inputs (not over extra leading axes of the inputs).

    Notes
    -----
    With g = dC/da^[l] (one row per input): for a dense layer, delta = dC/dz^[l]
    = (g o sigma'(h^[l])) J_LN, dC/dW^[l] = delta^T a^[l-1], dC/db^[l] = sum delta,
    dC/da^[l-1] = delta W^[l]; for a block, dC/dz^[l] = alpha g,
    dC/dW^[l] = alpha g^T sigma(h^[l]), dC/db^[l] = alpha sum g and
    dC/da^[l-1] = g + alpha ((g W^[l]) o sigma'(h^[l])) J_LN.
    """
    n_layers = len(net.weights)
    weight_grads: list[Array] = [None] * n_layers  # type: ignore[list-item]
    bias_grads: list[Array] = [None] * n_layers  # type: ignore[list-item]
    g = d_output
    for i in range(n_layers - 1, -1, -1):
        h, s, w = fp.sigma_args[i], _scale(fp, i), net.weights[i]
        d = derivative(net, fp, i)
        if net.is_block(i):
            delta = net.branch_scale * g
            weight_grads[i] = np.swapaxes(delta, -1, -2) @ net.sigmas[i].fn(h)
            bias_grads[i] = delta.sum(axis=-2)
            if i:
                t = (delta @ w) * d
                g = g + (t if s is None else layer_norm_product(t, h, s))
            continue
        delta = g * d
        if s is not None:
            delta = layer_norm_product(delta, h, s)
        weight_grads[i] = np.swapaxes(delta, -1, -2) @ fp.activations[i]
        bias_grads[i] = delta.sum(axis=-2)
        if i:
            g = delta @ w
    return weight_grads, bias_grads
