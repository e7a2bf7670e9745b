"""Fully connected networks in the notation of Higham & Higham (2019).

Definitions (binding for every module of depthlab, its config, MLflow and plots):

- Layers are numbered l = 1..L. Layer 1 is the input: a^[1] = x in R^{n_1} (3.1).
- a^[l] = sigma(z^[l]), z^[l] = W^[l] a^[l-1] + b^[l] for l = 2..L (3.2), (5.2).
  sigma is applied on every layer, the output layer included (as in the paper);
  ``output_activation="linear"`` is an option.
- **depth L counts layers including the input layer.** A network of depth L has
  L - 1 weight matrices; depth 2 is the single layer a^[2] = sigma(W^[2] x + b^[2]).
- Widths: n_1 = ``input_dim``, n_2..n_{L-1} = ``width``, n_L = ``output_dim``.
- W^[l] in R^{n_l x n_{l-1}}. Standard (fan-in) parameterization: W_ij has
  variance sigma_w^2 / n_{l-1}, b_i has variance sigma_b^2. ``sigma_w`` and
  ``sigma_b`` are standard deviations (see :mod:`depthlab.initializers` for the
  variance of every scheme).
- D^[l] = diag(sigma'(z^[l])); the per-layer Jacobian is J^[l] = D^[l] W^[l].
- The gradient grad a^[L](x) = J^[L] ... J^[2] in R^{n_L x n_1}; with n_L = 1 it
  is a row vector whose norm is **the gradient norm**.
- The **backprop norm at layer l** is || d a^[L] / d a^[l] ||, l = 1..L-1.
- The **input-output Jacobian up to layer l** is J^(l) = J^[l] ... J^[2] = d a^[l]/dx.

Arrays follow the row convention of numpy: a batch of inputs ``X`` has shape
``(B, n_1)``, and z^[l] for the batch is ``X_{l-1} @ W^[l].T + b^[l]``, shape
``(B, n_l)``. A *stack* of K networks of equal shape keeps its weights with a
leading dimension, ``(K, n_l, n_{l-1})``, and takes inputs of shape ``(K, B, n_1)``
(or ``(B, n_1)``, shared by all K networks).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from depthlab.activations import Activation, get_activation
from depthlab.initializers import check_scale, check_size, get_initializer, sample_layer

Array = np.ndarray

DTYPES = {"float32": np.float32, "float64": np.float64}
"""The dtypes a network can compute in, by name."""

_VALID_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass
class ForwardPass:
    """What the forward pass stores.

    Attributes
    ----------
    preactivations : list of ndarray
        z^[l] for l = 2..L (``preactivations[0]`` is z^[2]), each ``(..., B, n_l)``.
    activations : list of ndarray
        a^[l] for l = 1..L (``activations[0]`` is the input x), each ``(..., B, n_l)``.

    Notes
    -----
    For a ``linear`` layer a^[l] is z^[l] itself (the same array, not a copy).
    """

    preactivations: list[Array]
    activations: list[Array]

    @property
    def output(self) -> Array:
        """a^[L], shape ``(..., B, n_L)``."""
        return self.activations[-1]


@dataclass(eq=False)
class Network:
    """A fully connected network a^[l] = sigma(W^[l] a^[l-1] + b^[l]), l = 2..L.

    Depth L counts the input layer: a network of depth L has L - 1 weight
    matrices (Higham & Higham, (3.1)-(3.2)). See the module docstring of
    :mod:`depthlab.network` for every definition depthlab uses.

    Parameters
    ----------
    weights : list of ndarray
        W^[l] for l = 2..L, each of shape ``(n_l, n_{l-1})``, or
        ``(K, n_l, n_{l-1})`` for a stack of K networks of equal shape.
    biases : list of ndarray
        b^[l] for l = 2..L, each of shape ``(n_l,)`` (or ``(K, n_l)``).
    activation : str
        sigma of the hidden layers l = 2..L-1.
    output_activation : str, optional
        sigma of the output layer L; default: the same as ``activation``, as in
        the paper.

    Attributes
    ----------
    widths : list of int
        ``[n_1, ..., n_L]``.
    depth : int
        L = number of weight matrices + 1.
    stack_shape : tuple of int
        Leading dimensions of a stack of networks (``()`` for one network).
    dtype : numpy.dtype
        The dtype every computation with this network uses.

    Raises
    ------
    ValueError
        If there is no weight matrix, an activation is unknown, the shapes of
        consecutive layers or of their stacks do not match, or the weights and
        biases are not all float32 or all float64.

    Examples
    --------
    >>> import numpy as np
    >>> net = init_network([2, 3, 1], activation="tanh", init="gaussian",
    ...                    sigma_w=1.0, sigma_b=0.0, rng=np.random.default_rng(0))
    >>> net.depth, net.widths
    (3, [2, 3, 1])
    >>> net(np.zeros((4, 2))).shape
    (4, 1)
    """

    weights: list[Array]
    biases: list[Array]
    activation: str
    output_activation: str | None = None
    _sigmas: list[Activation] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.weights = [np.asarray(w) for w in self.weights]
        self.biases = [np.asarray(b) for b in self.biases]
        if self.output_activation is None:
            self.output_activation = self.activation
        if len(self.weights) < 1:
            raise ValueError(
                "a network needs at least one weight matrix (depth >= 2), got 0"
            )
        if len(self.weights) != len(self.biases):
            raise ValueError(
                f"{len(self.weights)} weight matrices but {len(self.biases)} biases"
            )
        hidden = get_activation(self.activation)
        output = get_activation(self.output_activation)
        self._sigmas = [hidden] * (len(self.weights) - 1) + [output]
        dtype = self.weights[0].dtype
        if dtype not in _VALID_DTYPES:
            raise ValueError(f"unknown dtype {dtype}; valid: float32, float64")
        stack = self.weights[0].shape[:-2]
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if w.ndim < 2 or b.shape != w.shape[:-1]:
                raise ValueError(
                    f"layer {i + 2}: weight shape {w.shape} and bias shape "
                    f"{b.shape} do not match"
                )
            if w.shape[:-2] != stack:
                raise ValueError(
                    f"layer {i + 2}: stack shape {w.shape[:-2]} differs from "
                    f"layer 2's {stack}"
                )
            if w.dtype != dtype or b.dtype != dtype:
                raise ValueError(
                    f"layer {i + 2}: weights {w.dtype} and biases {b.dtype}, but "
                    f"the network is {dtype}; valid: all float32 or all float64"
                )
            if i and w.shape[-1] != self.weights[i - 1].shape[-2]:
                raise ValueError(
                    f"layer {i + 2}: W has {w.shape[-1]} columns but layer {i + 1} "
                    f"has {self.weights[i - 1].shape[-2]} neurons"
                )

    @property
    def widths(self) -> list[int]:
        """``[n_1, ..., n_L]``."""
        return [int(self.weights[0].shape[-1])] + [
            int(w.shape[-2]) for w in self.weights
        ]

    @property
    def depth(self) -> int:
        """L, the number of layers including the input layer."""
        return len(self.weights) + 1

    @property
    def stack_shape(self) -> tuple[int, ...]:
        """Leading dimensions of a stack of networks; ``()`` for one network."""
        return tuple(self.weights[0].shape[:-2])

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the weights, used by every computation."""
        return self.weights[0].dtype

    @property
    def sigmas(self) -> list[Activation]:
        """The activation of each layer l = 2..L."""
        return self._sigmas

    def as_input(self, X: Array) -> Array:
        """``X`` cast to the network's dtype and given a batch dimension.

        Raises
        ------
        ValueError
            If ``X`` does not have n_1 features, or its leading dimensions do not
            broadcast against the stack shape.
        """
        X = np.asarray(X, dtype=self.dtype)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim == 0 or X.shape[-1] != self.widths[0]:
            raise ValueError(
                f"inputs of shape {X.shape} have {X.shape[-1] if X.ndim else 0} "
                f"features but the network expects n_1 = {self.widths[0]}"
            )
        try:
            np.broadcast_shapes(X.shape[:-2], self.stack_shape)
        except ValueError:
            raise ValueError(
                f"inputs of shape {X.shape} do not fit a stack of shape "
                f"{self.stack_shape}; valid: (B, n_1) or (*stack, B, n_1)"
            ) from None
        return X

    def forward(self, X: Array) -> ForwardPass:
        """Forward pass (3.2) that stores every z^[l] and a^[l].

        Parameters
        ----------
        X : ndarray, shape (B, n_1), (n_1,) or, for a stack, (K, B, n_1)

        Returns
        -------
        ForwardPass
        """
        a = self.as_input(X)
        zs: list[Array] = []
        activations = [a]
        for w, b, sigma in zip(self.weights, self.biases, self._sigmas, strict=True):
            z = a @ np.swapaxes(w, -1, -2)
            z += b[..., None, :]
            a = sigma.fn(z)
            zs.append(z)
            activations.append(a)
        return ForwardPass(zs, activations)

    def __call__(self, X: Array) -> Array:
        """The output a^[L](x), shape ``(..., B, n_L)``."""
        a = self.as_input(X)
        for w, b, sigma in zip(self.weights, self.biases, self._sigmas, strict=True):
            z = a @ np.swapaxes(w, -1, -2)
            z += b[..., None, :]
            a = sigma.fn(z)
        return a

    def unstack(self) -> list[Network]:
        """The networks of a stack of shape ``(K,)``, one by one.

        Their weights and biases are views into the stack's (no copy).
        """
        if len(self.stack_shape) != 1:
            raise ValueError(
                f"unstack needs a stack of shape (K,), not {self.stack_shape}"
            )
        return [
            Network(
                [w[k] for w in self.weights],
                [b[k] for b in self.biases],
                self.activation,
                self.output_activation,
            )
            for k in range(self.stack_shape[0])
        ]


def init_network(
    widths: Sequence[int],
    *,
    activation: str,
    init: str,
    sigma_w: float,
    sigma_b: float,
    output_activation: str | None = None,
    dtype: np.dtype | type | str = np.float64,
    rng: np.random.Generator,
    num_networks: int | None = None,
) -> Network:
    """Sample a network (or a stack of networks) with the given widths.

    Parameters
    ----------
    widths : sequence of int
        ``[n_1, ..., n_L]``; its length is the depth L >= 2.
    activation : str
        Hidden-layer activation (see :mod:`depthlab.activations`).
    init : str
        Initialization scheme (see :mod:`depthlab.initializers`).
    sigma_w, sigma_b : float
        Weight scale and bias standard deviation (>= 0).
    output_activation : str, optional
        Output-layer activation; default the same as ``activation``.
    dtype : {numpy.float64, numpy.float32, "float64", "float32"}
        The dtype of the weights and of every computation with the network.
    rng : numpy.random.Generator
        Source of randomness.
    num_networks : int, optional
        If given, sample a stack of this many independent networks (weights
        of shape ``(K, n_l, n_{l-1})``).

    Returns
    -------
    Network

    Raises
    ------
    ValueError
        For fewer than two widths (depth < 2), a width that is not a positive
        integer, a negative or non-finite ``sigma_w`` or ``sigma_b``, an unknown
        activation, init or dtype, or ``num_networks`` < 1. The message names the
        bad value (and the valid ones where they are a list).

    Examples
    --------
    >>> import numpy as np
    >>> nets = init_network([4, 8, 8, 1], activation="relu", init="he_normal",
    ...                     sigma_w=np.sqrt(2), sigma_b=0.0,
    ...                     rng=np.random.default_rng(0), num_networks=5)
    >>> nets.depth, nets.stack_shape, [w.shape for w in nets.weights]
    (4, (5,), [(5, 8, 4), (5, 8, 8), (5, 1, 8)])
    """
    try:
        widths = list(widths)
    except TypeError:
        raise ValueError(
            f"widths must be a list [n_1, ..., n_L] (got {widths!r})"
        ) from None
    if len(widths) < 2:
        raise ValueError(
            f"depth must be >= 2, i.e. at least two widths [n_1, n_2] (got {widths})"
        )
    widths = [check_size(f"width n_{i + 1}", n) for i, n in enumerate(widths)]
    sigma_w = check_scale("sigma_w", sigma_w)
    sigma_b = check_scale("sigma_b", sigma_b)
    get_initializer(init)
    get_activation(activation)
    if output_activation is not None:
        get_activation(output_activation)
    dtype = _check_dtype(dtype)
    if num_networks is not None:
        num_networks = check_size("num_networks", num_networks)
    stack = () if num_networks is None else (num_networks,)
    weights, biases = [], []
    for n_in, n_out in itertools.pairwise(widths):
        w, b = sample_layer(
            init,
            n_out,
            n_in,
            sigma_w=sigma_w,
            sigma_b=sigma_b,
            rng=rng,
            stack=stack,
            dtype=dtype,
        )
        weights.append(w)
        biases.append(b)
    return Network(weights, biases, activation, output_activation)


def _check_dtype(dtype: object) -> np.dtype:
    """``dtype`` as a numpy dtype, or a ValueError naming the valid ones."""
    try:
        valid = isinstance(dtype, str | type | np.dtype) and (
            np.dtype(dtype) in _VALID_DTYPES
        )
    except TypeError:
        valid = False
    if not valid:
        raise ValueError(f"unknown dtype {dtype!r}; valid: float32, float64")
    return np.dtype(dtype)
