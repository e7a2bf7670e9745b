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

Architectures (``architecture``, ``branch_scale`` = alpha, ``norm``). h^[l] denotes
the input of sigma in layer l, so that always D^[l] = diag(sigma'(h^[l])):

- ``"mlp"`` (the default) is (3.2): h^[l] = z^[l], J^[l] = D^[l] W^[l].
- ``"resnet"`` (depth L >= 3, hidden widths n_2 = ... = n_{L-1} = n):

  * layer 2, a linear embedding: a^[2] = z^[2] = W^[2] x + b^[2] (no sigma: the
    residual stream starts as a Gaussian of mean square s_2^2 q^[1] + sigma_b^2,
    as in Stable ResNet and depth-muP); J^[2] = W^[2];
  * layers l = 3..L-1, the L - 3 residual **blocks** (``Network.blocks``):
    a^[l] = a^[l-1] + alpha z^[l], z^[l] = W^[l] sigma(h^[l]) + b^[l], h^[l] =
    a^[l-1]; the branch ends in a weight matrix, so its output has mean zero.
    J^[l] = I + alpha W^[l] D^[l];
  * layer L, the readout, as in the MLP: a^[L] = sigma_L(z^[L]), z^[L] =
    W^[L] a^[L-1] + b^[L] (sigma_L = ``output_activation``); it reads the
    residual stream itself (no final normalization); J^[L] = D^[L] W^[L].

- ``norm="layer"``: layer normalization without affine parameters,
  LN(v) = (v - mean v) / sqrt(var v + eps), mean and (biased) variance over the
  n_l units of the layer, eps = :data:`LN_EPS` = 1e-5 (torch's default). Its
  Jacobian is J_LN = (1/s) (I - 1 1^T / n - u u^T / n), s = sqrt(var v + eps),
  u = LN(v) (symmetric). In an MLP it acts on z^[l] of the hidden layers
  l = 2..L-1 (not on the output layer): a^[l] = sigma(h^[l]), h^[l] = LN(z^[l]),
  J^[l] = D^[l] J_LN W^[l]. In a resnet it is pre-LN on the branch input of every
  block: h^[l] = LN(a^[l-1]), J^[l] = I + alpha W^[l] D^[l] J_LN; the embedding
  and the readout are unchanged.

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

from depthlab import blocks
from depthlab.activations import Activation, get_activation
from depthlab.initializers import check_scale, check_size, get_initializer, sample_layer

Array = np.ndarray

DTYPES = {"float32": np.float32, "float64": np.float64}
"""The dtypes a network can compute in, by name."""

_VALID_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

ARCHITECTURES: tuple[str, ...] = ("mlp", "resnet")
"""The valid values of ``architecture``."""

NORMS: tuple[str | None, ...] = (None, "layer")
"""The valid values of ``norm``: none, or layer normalization."""

LN_EPS = blocks.LN_EPS
"""eps of layer normalization, LN(v) = (v - mean v) / sqrt(var v + eps)."""


def residual_blocks(architecture: str, depth: int) -> int:
    """The number of residual blocks of a network of depth L: L - 3 for a
    resnet (layers 3..L-1), 0 for an MLP.

    Examples
    --------
    >>> residual_blocks("resnet", 10), residual_blocks("mlp", 10)
    (7, 0)
    """
    return max(depth - 3, 0) if architecture == "resnet" else 0


def depth_scaled_branch(branch_scale: float, depth_power: float, blocks: int) -> float:
    """alpha = branch_scale / blocks^depth_power, the multiplier of every branch.

    ``depth_power`` 0 gives a fixed alpha, 1/2 the 1/sqrt(L) scaling of Stable
    ResNet and depth-muP; a network without blocks has alpha = branch_scale.

    Examples
    --------
    >>> depth_scaled_branch(1.0, 0.5, 16), depth_scaled_branch(2.0, 0.0, 16)
    (0.25, 2.0)
    """
    return float(branch_scale) / max(blocks, 1) ** float(depth_power)


def check_architecture(
    architecture: str, norm: str | None, branch_scale: float, widths: Sequence[int]
) -> float:
    """Validate an architecture for the given widths; returns ``branch_scale``.

    Raises
    ------
    ValueError
        For an unknown ``architecture`` or ``norm``, a negative or non-finite
        ``branch_scale``, a resnet of depth < 3 or with unequal hidden widths,
        or layer normalization over a hidden layer of one unit (LN of one
        number is 0).
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {architecture!r}; valid: {', '.join(ARCHITECTURES)}"
        )
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; valid: None, 'layer'")
    branch_scale = check_scale("branch_scale", branch_scale)
    widths = list(widths)
    if architecture == "resnet":
        if len(widths) < 3:
            raise ValueError(
                f"a resnet needs depth >= 3 (an embedding and a readout), got "
                f"widths {widths}"
            )
        if len(set(widths[1:-1])) != 1:
            raise ValueError(
                f"a resnet needs equal hidden widths n_2 = ... = n_(L-1), got "
                f"widths {widths}"
            )
        if norm == "layer" and len(widths) > 3 and widths[1] < 2:
            raise ValueError(
                f"norm='layer' needs blocks of width >= 2, got widths {widths}"
            )
    elif norm == "layer" and any(n < 2 for n in widths[1:-1]):
        raise ValueError(f"norm='layer' needs hidden widths >= 2, got widths {widths}")
    return branch_scale


@dataclass
class ForwardPass:
    """What the forward pass stores.

    Attributes
    ----------
    preactivations : list of ndarray
        z^[l] for l = 2..L (``preactivations[0]`` is z^[2]), each ``(..., B, n_l)``
        (for a residual block, the branch output z^[l] = W^[l] sigma(h^[l]) + b^[l]).
    activations : list of ndarray
        a^[l] for l = 1..L (``activations[0]`` is the input x), each ``(..., B, n_l)``.
    sigma_inputs : list of ndarray, optional
        h^[l] for l = 2..L, the input of sigma in layer l (D^[l] =
        diag(sigma'(h^[l]))); ``None`` (the MLP without normalization) means
        h^[l] = z^[l].
    norm_scales : list of ndarray or None, optional
        For each layer l = 2..L, s^[l] = sqrt(var + eps) of its layer
        normalization, shape ``(..., B, 1)``, or ``None`` where the layer has
        none; ``None`` for a network without normalization.

    Notes
    -----
    For a ``linear`` layer a^[l] is z^[l] itself (the same array, not a copy).
    """

    preactivations: list[Array]
    activations: list[Array]
    sigma_inputs: list[Array] | None = None
    norm_scales: list[Array | None] | None = None

    @property
    def sigma_args(self) -> list[Array]:
        """h^[l], l = 2..L: the input of sigma in each layer."""
        return self.preactivations if self.sigma_inputs is None else self.sigma_inputs

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

    With ``architecture="resnet"`` layer 2 is a linear embedding
    a^[2] = W^[2] x + b^[2], layers 3..L-1 are residual blocks
    a^[l] = a^[l-1] + alpha (W^[l] sigma(a^[l-1]) + b^[l]), alpha =
    ``branch_scale``, and layer L is the readout a^[L] = sigma_L(W^[L] a^[L-1] +
    b^[L]), as in the MLP. With ``norm="layer"``, LN (no affine parameters,
    eps = 1e-5) acts on z^[l] of the MLP's hidden layers 2..L-1
    (a^[l] = sigma(LN(z^[l]))) and on the input of each block's branch
    (a^[l] = a^[l-1] + alpha (W^[l] sigma(LN(a^[l-1])) + b^[l])).

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
    architecture : {"mlp", "resnet"}, default "mlp"
    branch_scale : float, default 1.0
        alpha, the multiplier of every residual branch (resnet only; >= 0).
    norm : {None, "layer"}, default None
        Layer normalization, see above.

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
    architecture: str = "mlp"
    branch_scale: float = 1.0
    norm: str | None = None
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
        if self.architecture == "resnet" and len(self.weights) > 1:
            self._sigmas[0] = get_activation("linear")  # the embedding
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
        self.branch_scale = check_architecture(
            self.architecture, self.norm, self.branch_scale, self.widths
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
        """The activation of each layer l = 2..L (``linear`` for a resnet's
        embedding, layer 2)."""
        return self._sigmas

    @property
    def plain_mlp(self) -> bool:
        """Whether this is the MLP (3.2) without normalization."""
        return self.architecture == "mlp" and self.norm is None

    @property
    def blocks(self) -> int:
        """The number of residual blocks: L - 3 for a resnet, 0 for an MLP."""
        return residual_blocks(self.architecture, self.depth)

    def is_block(self, i: int) -> bool:
        """Whether layer l = i + 2 is a residual block."""
        return self.architecture == "resnet" and 1 <= i < len(self.weights) - 1

    def is_normalized(self, i: int) -> bool:
        """Whether layer l = i + 2 has a layer normalization."""
        if self.norm is None:
            return False
        if self.architecture == "resnet":
            return self.is_block(i)
        return i < len(self.weights) - 1

    def with_parameters(self, weights: list[Array], biases: list[Array]) -> Network:
        """A network of the same architecture and activations with new parameters."""
        return Network(
            weights,
            biases,
            self.activation,
            self.output_activation,
            architecture=self.architecture,
            branch_scale=self.branch_scale,
            norm=self.norm,
        )

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

        For a resnet or a network with layer normalization, also h^[l] (the
        input of sigma) and LN's scales s^[l] (see :class:`ForwardPass`).

        Parameters
        ----------
        X : ndarray, shape (B, n_1), (n_1,) or, for a stack, (K, B, n_1)

        Returns
        -------
        ForwardPass
        """
        a = self.as_input(X)
        if not self.plain_mlp:
            return self._forward_layers(a)
        zs: list[Array] = []
        activations = [a]
        for w, b, sigma in zip(self.weights, self.biases, self._sigmas, strict=True):
            z = a @ np.swapaxes(w, -1, -2)
            z += b[..., None, :]
            a = sigma.fn(z)
            zs.append(z)
            activations.append(a)
        return ForwardPass(zs, activations)

    def _forward_layers(self, a: Array) -> ForwardPass:
        """The forward pass of any architecture, layer by layer (see
        :func:`depthlab.blocks.layer_forward`)."""
        zs: list[Array] = []
        hs: list[Array] = []
        scales: list[Array | None] = []
        activations = [a]
        for i in range(len(self.weights)):
            a, z, h, s = blocks.layer_forward(self, i, a)
            zs.append(z)
            hs.append(h)
            scales.append(s)
            activations.append(a)
        return ForwardPass(zs, activations, hs, scales)

    def __call__(self, X: Array) -> Array:
        """The output a^[L](x), shape ``(..., B, n_L)``."""
        a = self.as_input(X)
        if not self.plain_mlp:
            return self._forward_layers(a).output
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
            self.with_parameters(
                [w[k] for w in self.weights], [b[k] for b in self.biases]
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
    architecture: str = "mlp",
    branch_scale: float = 1.0,
    norm: str | None = None,
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
    architecture : {"mlp", "resnet"}, default "mlp"
        See :class:`Network`. Every layer, blocks included, is sampled by the
        same scheme: W^[l] of fan-in variance sigma_w^2 / n_{l-1}, b^[l] of
        variance sigma_b^2.
    branch_scale : float, default 1.0
        alpha, the multiplier of every residual branch (>= 0; resnet only).
        A depth scaling alpha = c / blocks^p is the caller's to apply.
    norm : {None, "layer"}, default None
        Layer normalization without affine parameters (see :class:`Network`).

    Returns
    -------
    Network

    Raises
    ------
    ValueError
        For fewer than two widths (depth < 2), a width that is not a positive
        integer, a negative or non-finite ``sigma_w`` or ``sigma_b``, an unknown
        activation, init, dtype, architecture or norm, ``num_networks`` < 1, a
        negative ``branch_scale``, or widths the architecture cannot take (see
        :func:`check_architecture`). The message names the bad value (and the
        valid ones where they are a list).

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
    branch_scale = check_architecture(architecture, norm, branch_scale, widths)
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
    return Network(
        weights,
        biases,
        activation,
        output_activation,
        architecture=architecture,
        branch_scale=branch_scale,
        norm=norm,
    )


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
