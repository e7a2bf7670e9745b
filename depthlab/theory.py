"""Mean-field theory of deep fully connected networks at initialization.

Units and definitions are those of :mod:`depthlab.network`: depth L counts the
input layer, z^[l] = W^[l] a^[l-1] + b^[l] for l = 2..L, fan-in parameterization
Var(W_ij) = sigma_w^2 / n_{l-1}, Var(b_i) = sigma_b^2, and ``sigma_w``,
``sigma_b`` are standard deviations. For a scheme other than ``gaussian`` the
theory sees, layer by layer, the *effective* weight scale
s_l = sqrt(n_{l-1} Var W^[l]_ij) of :func:`depthlab.initializers.effective_sigma_w`.

What the theory computes (Poole et al. 2016; Schoenholz et al. 2017):

- the **length map**: the mean square of the pre-activations of layer l,
  q^[l] = E[(z_i^[l])^2] (an average over neurons, and over networks),

  q^[2] = s_2^2 q^[1] + sigma_b^2,  q^[1] = ||x||^2 / n_1,
  q^[l] = s_l^2 E_{u ~ N(0, q^[l-1])}[phi(u)^2] + sigma_b^2,  l = 3..L;

- the per-layer **gradient factor** chi^[l] = s_l^2 E_{u ~ N(0, q^[l])}[phi_l'(u)^2],
  with phi_l the output activation for l = L and the hidden one otherwise;
- the **mean squared backprop norms**
  E || d a^[L] / d a^[l] ||^2 = n_L prod_{k=l+1}^{L} chi^[k],  l = 1..L-1
  (Frobenius norm when n_L > 1; l = 1 is the gradient norm || grad a^[L](x) ||);
- for an infinitely deep network of constant width: the fixed point q* of the
  length map, chi_1 = sigma_w^2 E[phi'(u)^2] at q*, the depth scales xi_q, xi_c
  of Schoenholz et al., and the critical sigma_w where chi_1 = 1.

Mean-field theory predicts means of squares, E||g||^2. The typical growth of one
network's gradient (the slope of the mean of log norms) is lower at finite
width; every comparison with measurements must say which of the two it shows.

Architectures
-------------
The same quantities for the architectures of :mod:`depthlab.network`
(``architecture``, ``branch_scale`` = alpha, ``norm``), with p^[l] = E[(a_i^[l])^2]
the mean square of the activations (of the residual stream in a resnet), eps =
:data:`~depthlab.network.LN_EPS` and r(q) = q / (q + eps), the mean square of
LN(v) for v of mean square q:

- **resnet**, embedding: q^[2] = p^[2] = s_2^2 q^[1] + sigma_b^2, chi^[2] = s_2^2.
  Blocks l = 3..L-1, with the branch output z^[l] = W^[l] sigma(h^[l]) + b^[l]:

  q^[l] = s_l^2 E_{v ~ N(0, p^[l-1])}[phi(v)^2] + sigma_b^2,
  p^[l] = p^[l-1] + alpha^2 q^[l],
  chi^[l] = 1 + alpha^2 s_l^2 E_{v ~ N(0, p^[l-1])}[phi'(v)^2]   (per-block factor).

  The stream and the branch are uncorrelated (W^[l] has mean zero), hence the
  sum. For chi: g^[l-1] = g^[l] (I + alpha W^[l] D^[l]); the cross term
  2 alpha E[g^[l] W^[l] D^[l] g^[l]^T] vanishes under gradient independence
  (W^[l] of the backward pass independent of g^[l] and of the forward pass), and
  E||g W D||^2 = s_l^2 E[phi'^2] ||g||^2 as for the MLP. Readout:
  q^[L] = s_L^2 p^[L-1] + sigma_b^2 (it reads the stream), chi^[L] =
  s_L^2 E[phi_L'(u)^2], u ~ N(0, q^[L]).
- **resnet + LN** (pre-LN): the branch input h^[l] = LN(a^[l-1]) has mean square
  r(p^[l-1]) ~ 1 whatever the stream's length, so E[phi(v)^2] and E[phi'(v)^2] are
  taken at v ~ N(0, r(p^[l-1])), and the branch's Jacobian carries LN's
  J_LN = (1/s)(I - 1 1^T/n - u u^T/n), s^2 = var(a^[l-1]) + eps -> p^[l-1] + eps:

  chi^[l] = 1 + alpha^2 s_l^2 E_{v ~ N(0, r(p^[l-1]))}[phi'(v)^2] / (p^[l-1] + eps).

- **mlp + LN**: z^[l] keeps the MLP's length map q^[l] = s_l^2 p^[l-1] +
  sigma_b^2 (q^[2] = s_2^2 q^[1] + sigma_b^2) with p^[l] = E[phi(v)^2],
  v ~ N(0, r(q^[l])) on the hidden layers l = 2..L-1; g^[l-1] = g^[l] D^[l] J_LN
  W^[l] gives

  chi^[l] = s_l^2 E_{v ~ N(0, r(q^[l]))}[phi'(v)^2] / (q^[l] + eps),  l = 2..L-1,

  and the output layer (no LN) as in the MLP.

What is left out (the theory is that of infinite width): LN's projection. With
c = g W D (resnet) or c = g D (mlp), ||c J_LN||^2 = (||P c||^2 -
(2r - r^2)(c . u/|u|)^2) / s^2, P = I - 1 1^T / n. Under gradient independence
E||P c||^2 = (1 - 1/n) E||c||^2 and E(c . u/|u|)^2 = E||c||^2 E[phi'^2 v^2] /
(n r E[phi'^2]), so the branch term (resnet) or chi (mlp) is smaller by the
factor 1 - (1 + (2r - r^2) E[phi'^2 v^2] / (r E[phi'^2])) / n: 1 - 2/n for relu
and at least 1 - 2/n for tanh (phi'^2 decreases in |v|), 0.4% at n = 512. Also
left out: the fluctuations of LN's sample variance (E[1/s^2] = (1 + O(1/n)) /
E[s^2]) and its sample mean, both O(1/n).

Numerics
--------
Gaussian expectations, and the layer maps built from them, are computed by
:mod:`depthlab._quadrature` (a graded composite Gauss-Legendre rule, closed forms
for the piecewise-linear activations); its docstring states the rule and its
measured accuracy.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from depthlab._quadrature import (
    HOMOGENEOUS,
    chaotic_chi_c,
    layer_norm_mlp_maps,
    limits,
    mlp_length_map,
    mlp_maps,
    moment,
    phi_sq_over_q,
    resnet_maps,
    slope_factor,
)
from depthlab._quadrature import KINDS as KINDS
from depthlab._quadrature import Kind as Kind
from depthlab._quadrature import gaussian_expectation as gaussian_expectation
from depthlab.activations import Activation, get_activation
from depthlab.initializers import effective_sigma_w
from depthlab.network import check_architecture

Array = np.ndarray

_Q_MIN = 1e-30  # below this, a fixed point is reported as 0
_RESOLUTION = 1e-12  # |m(q)/q - 1| below this is within the integrals' rounding
_Q_MAX = 1e12  # above this, the length map is taken to diverge
_Q_RTOL = 1e-13  # relative tolerance of fixed points (brentq on log q)


# --------------------------------------------------------------------------
# Fixed points, chi_1, critical line, depth scales
# --------------------------------------------------------------------------


_PHASE_PARAMETERS = """\
    activation : str
        Name of the activation phi.
    sigma_w, sigma_b : float
        Fan-in weight scale and bias standard deviation (>= 0).
    q0 : float, default 1.0
        Start of the length map, passed to :func:`q_star`.
"""


def _phase_parameters(func: Callable) -> Callable:
    """``func`` with "{phase parameters}" in its docstring written out.

    :func:`chi1` and :func:`depth_scales` take the same parameters; one text
    documents them.
    """
    if func.__doc__:  # None under python -OO
        func.__doc__ = func.__doc__.replace(
            "    {phase parameters}\n", _PHASE_PARAMETERS
        )
    return func


def _check_scales(sigma_w: float, sigma_b: float) -> None:
    if not (sigma_w >= 0 and sigma_b >= 0 and np.isfinite(sigma_w + sigma_b)):
        raise ValueError(
            f"sigma_w and sigma_b must be finite and >= 0 (got {sigma_w}, {sigma_b})"
        )


def _q_star(act: Activation, sigma_w: float, sigma_b: float, q0: float) -> float:
    sw2, sb2 = sigma_w**2, sigma_b**2
    if act.name in HOMOGENEOUS:
        a = sw2 * HOMOGENEOUS[act.name]
        if abs(a - 1.0) <= 4 * np.finfo(float).eps:
            a = 1.0  # math.sqrt(2) ** 2 / 2 = 1 + 2e-16 is the critical relu
        if a < 1:
            return sb2 / (1.0 - a)
        if a == 1 and sb2 == 0:
            return q0  # every q is a fixed point
        return 0.0 if (q0 == 0 and sb2 == 0) else np.inf
    if q0 == 0:
        m0 = sw2 * float(moment(act, np.array(0.0), "phi_sq")) + sb2
        if m0 == 0:
            return 0.0
        q0 = m0

    def residual(log_q: float) -> float:
        # The length map relative to q, minus one: m(q) / q - 1.
        q = np.exp(log_q)
        return sw2 * phi_sq_over_q(act, q) + sb2 / q - 1.0

    x = np.log(q0)
    r = residual(x)
    if r == 0:
        return q0
    # m is increasing, so the iterates m^k(q0) move monotonically towards the
    # first fixed point in the direction of m(q0) - q0; bracket it. A bounded
    # phi has a concave length map with one fixed point: coarse steps. An
    # unbounded one can have two (stable, then unstable, where sigma_w^2 times
    # the map's slope at infinity exceeds 1): fine steps, not to step over both.
    unbounded = limits(act.name)[2]
    step = np.log(2.0) / 4 if unbounded else np.log(4.0)
    step *= np.sign(r)
    lo = x
    while True:
        hi = lo + step
        q_hi = np.exp(hi)
        if q_hi > _Q_MAX:
            return np.inf
        if q_hi < _Q_MIN:
            return 0.0
        r_hi = residual(hi)
        # Downwards, a fixed point counts only where m(q)/q - 1 is resolved
        # above the integrals' rounding (tanh at sigma_w = 1, sigma_b = 0 has
        # m(q)/q - 1 = -2q: indistinguishable from 0 for q < 1e-13).
        if (r_hi <= 0) if r > 0 else (r_hi > _RESOLUTION):
            break
        lo = hi
    if r_hi == 0:
        return float(q_hi)
    from scipy.optimize import brentq  # here: a sweep's process needs it not

    root = brentq(residual, min(lo, hi), max(lo, hi), xtol=_Q_RTOL)
    return float(np.exp(root))


def q_star(
    activation: str, sigma_w: float, sigma_b: float, *, q0: float = 1.0
) -> float:
    """The fixed point q* of the length map q -> sigma_w^2 E[phi(u)^2] + sigma_b^2.

    Parameters
    ----------
    activation : str
        Name of the activation phi.
    sigma_w, sigma_b : float
        Fan-in weight scale and bias standard deviation (>= 0).
    q0 : float, default 1.0
        Where the length map starts (keyword only; see Notes).

    Returns
    -------
    float
        q* = lim_{l -> inf} m^l(q0), m(q) = sigma_w^2 E_{u ~ N(0, q)}[phi(u)^2]
        + sigma_b^2: ``inf`` where the length map diverges (no finite fixed
        point in that direction, e.g. ``relu`` with sigma_w^2 / 2 >= 1 and
        sigma_b > 0), ``0.0`` where it converges to 0 (e.g. ``tanh`` with
        sigma_b = 0 and sigma_w <= 1).

    Notes
    -----
    m is increasing, so its iterates from q0 move monotonically to the first
    fixed point in the direction of m(q0) - q0. For bounded activations the
    fixed point is unique and q0 does not matter. Unbounded smooth ones
    (``softplus``, ``elu``, ``gelu``, ``silu``) with sigma_w^2 / 2 > 1 can have
    a stable fixed point and diverge from above an unstable one (e.g. ``silu``,
    sigma_b = 0.5, sigma_w = 1.44: q* = 0.913 from q0 = 1, ``inf`` from
    q0 = 1e6). The fixed point is bracketed by steps of a factor 4 (bounded
    phi) or 2^(1/4) (unbounded phi; two fixed points closer than that, just
    before they merge, can be stepped over) and solved with Brent's
    method for m(q)/q - 1 = 0 in log q to a relative tolerance of 1e-13; the
    integrals are accurate to ~1e-13, so q* is accurate to ~1e-13 / (1 - m'(q*))
    (ill-conditioned only near criticality). A map still increasing at
    q = 1e12 is reported as divergent; a decreasing map converges to 0 unless
    m(q)/q - 1 rises above 1e-12 (the integrals' rounding) at some q > 1e-30:
    positive fixed points below about 1e-12 (sigma_b = 0 and sigma_w within
    ~1e-12 of critical) are reported as 0.

    For ``relu``, ``leaky_relu`` and ``linear`` the map is linear,
    m(q) = a q + sigma_b^2 with a = sigma_w^2 kappa (kappa = 1/2, (1 + 0.01^2)/2,
    1): q* = sigma_b^2 / (1 - a) if a < 1, ``inf`` if a >= 1 and sigma_b > 0 or
    a > 1, and q0 itself if a = 1 and sigma_b = 0 (every q is a fixed point;
    a within 4 ulp of 1 counts as 1, so that sigma_w = ``math.sqrt(2)`` is the
    critical relu).

    References
    ----------
    B. Poole, S. Lahiri, M. Raghu, J. Sohl-Dickstein, S. Ganguli, "Exponential
    expressivity in deep neural networks through transient chaos", NeurIPS 2016.

    Examples
    --------
    >>> round(q_star("relu", 1.0, 1.0), 12)
    2.0
    >>> q_star("tanh", 0.9, 0.0)
    0.0
    """
    _check_scales(sigma_w, sigma_b)
    if not q0 >= 0:
        raise ValueError(f"q0 must be >= 0 (got {q0})")
    return _q_star(get_activation(activation), float(sigma_w), float(sigma_b), q0)


def _chi1(act: Activation, sigma_w: float, sigma_b: float, q0: float) -> float:
    if act.name in HOMOGENEOUS:
        return sigma_w**2 * HOMOGENEOUS[act.name]
    q = _q_star(act, sigma_w, sigma_b, q0)
    return sigma_w**2 * float(moment(act, np.array(q), "dphi_sq"))


@_phase_parameters
def chi1(activation: str, sigma_w: float, sigma_b: float, *, q0: float = 1.0) -> float:
    """chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2], the per-layer factor of E||g||^2.

    Parameters
    ----------
    {phase parameters}

    Returns
    -------
    float
        chi_1. Where q* is infinite it is the limit sigma_w^2 (phi'(+inf)^2 +
        phi'(-inf)^2) / 2 (e.g. sigma_w^2 / 2 for ``softplus``, ``gelu``,
        ``silu``, ``elu``); for ``relu``, ``leaky_relu``, ``linear`` it is
        sigma_w^2 kappa whatever q* is.

    Notes
    -----
    At the fixed point, the mean squared backprop norm grows (chi_1 > 1,
    chaotic phase) or shrinks (chi_1 < 1, ordered phase) by chi_1 per layer,
    and chi_1 is the slope of the correlation map at c = 1 (Poole et al. 2016;
    Schoenholz et al. 2017).

    References
    ----------
    S. S. Schoenholz, J. Gilmer, S. Ganguli, J. Sohl-Dickstein, "Deep
    Information Propagation", ICLR 2017.

    Examples
    --------
    >>> chi1("relu", 2.0, 0.5)
    2.0
    >>> round(chi1("sigmoid", 1.0, 0.0), 4)
    0.0557
    """
    _check_scales(sigma_w, sigma_b)
    return _chi1(get_activation(activation), float(sigma_w), float(sigma_b), q0)


def critical_sigma_w(activation: str, sigma_b: float, *, q0: float = 1.0) -> float:
    """The sigma_w at which chi_1 = 1 (the order-to-chaos transition).

    Parameters
    ----------
    activation : str
        Name of the activation phi.
    sigma_b : float
        Bias standard deviation (>= 0).
    q0 : float, default 1.0
        Start of the length map, passed to :func:`q_star`.

    Returns
    -------
    float
        The smallest sigma_w in [1/16, 256] where chi_1 crosses 1, to a relative
        tolerance of 1e-13 in sigma_w (where chi_1 - 1 vanishes quadratically on
        one side, as for ``tanh`` at sigma_b = 0, roughly 1e-8).

    Raises
    ------
    ValueError
        If chi_1 does not cross 1 in that range, or jumps over 1 (where q*
        jumps, e.g. ``gelu`` at sigma_b = 0: q* = 0 below and inf above); the
        message names the activation and sigma_b.

    Notes
    -----
    chi_1 is scanned on a grid sigma_w = 2^(k/4) and the first crossing is
    solved with Brent's method.

    References
    ----------
    S. S. Schoenholz et al., "Deep Information Propagation", ICLR 2017.

    Examples
    --------
    >>> round(critical_sigma_w("relu", 0.3), 12)
    1.414213562373
    >>> round(critical_sigma_w("tanh", 0.0), 6)
    1.0
    """
    _check_scales(1.0, sigma_b)
    act = get_activation(activation)
    if act.name in HOMOGENEOUS:
        return float(1.0 / np.sqrt(HOMOGENEOUS[act.name]))

    def excess(log_sw: float) -> float:
        return _chi1(act, float(np.exp(log_sw)), float(sigma_b), q0) - 1.0

    grid = np.log(2.0) * np.arange(-16, 33) / 4.0
    prev = excess(grid[0])
    for lo, hi in itertools.pairwise(grid):
        cur = excess(hi)
        if cur == 0:
            return float(np.exp(hi))
        if prev < 0 < cur:
            from scipy.optimize import brentq

            root = brentq(excess, lo, hi, xtol=1e-13)
            err = abs(excess(root))
            if err > 1e-6:
                raise ValueError(
                    f"{activation}: chi_1 jumps over 1 near sigma_w = "
                    f"{np.exp(root):.6g} at sigma_b = {sigma_b} (|chi_1 - 1| = "
                    f"{err:.3g} there); no critical sigma_w"
                )
            return float(np.exp(root))
        prev = cur
    raise ValueError(
        f"{activation}: chi_1 does not cross 1 for sigma_w in [1/16, 256] at "
        f"sigma_b = {sigma_b}; no critical sigma_w"
    )


@_phase_parameters
def depth_scales(
    activation: str, sigma_w: float, sigma_b: float, *, q0: float = 1.0
) -> tuple[float, float]:
    """The depth scales (xi_q, xi_c) of Schoenholz et al. (2017).

    Parameters
    ----------
    {phase parameters}

    Returns
    -------
    xi_q : float
        The depth over which q^[l] approaches q*: |q^[l] - q*| ~ e^{-l / xi_q}.
    xi_c : float
        The depth over which the correlation of two inputs approaches its fixed
        point c*: |c^[l] - c*| ~ e^{-l / xi_c}.
        Either is ``inf`` where it diverges: at criticality (chi_1 = 1), where
        the fixed point is not approached exponentially (slope >= 1), and where
        q* is infinite or the map is marginal (the scale-free limit of
        ``relu``-like activations); 0 where the slope is 0 (sigma_w = 0).

    Notes
    -----
    xi_q^-1 = -log chi_q, with chi_q the slope of the length map at q*,
    chi_q = sigma_w^2 E[phi'(u)^2 + phi(u) phi''(u)] = sigma_w^2 E[u phi(u)
    phi'(u)] / q* by Stein's lemma E[u h(u)] = q E[h'(u)] with h = phi phi'
    (no phi'' needed); at q* = 0 (then phi(0) = 0) chi_q = chi_1.
    xi_c^-1 = -log chi_c, chi_c = sigma_w^2 E[phi'(u_1) phi'(u_2)] with
    (u_1, u_2) Gaussian of variances q* and correlation c*: in the ordered phase
    c* = 1 and chi_c = chi_1; in the chaotic phase (chi_1 > 1) c* < 1 is the
    stable fixed point of the correlation map c -> (sigma_w^2 E[phi(u_1)
    phi(u_2)] + sigma_b^2) / q*, solved with Brent's method to 1e-13.

    References
    ----------
    S. S. Schoenholz et al., "Deep Information Propagation", ICLR 2017.

    Examples
    --------
    >>> xi_q, xi_c = depth_scales("tanh", 1.0, 0.0)
    >>> xi_c
    inf
    """
    _check_scales(sigma_w, sigma_b)
    act = get_activation(activation)
    sigma_w, sigma_b = float(sigma_w), float(sigma_b)
    q = _q_star(act, sigma_w, sigma_b, q0)
    c1 = _chi1(act, sigma_w, sigma_b, q0)

    def scale(slope: float) -> float:
        if not 0.0 <= slope < 1.0:
            return np.inf
        return 0.0 if slope == 0.0 else float(-1.0 / np.log(slope))

    if not np.isfinite(q):
        return np.inf, np.inf
    if act.name in HOMOGENEOUS and sigma_b == 0 and c1 >= 1:
        return np.inf, np.inf  # marginal or divergent linear map
    chi_q = c1 if q == 0 else sigma_w**2 * slope_factor(act, q)
    if c1 <= 1.0 or q == 0:  # ordered phase, or every input collapses to 0
        chi_c = c1
    else:
        chi_c = chaotic_chi_c(act, sigma_w, sigma_b, q)
    return scale(chi_q), scale(chi_c)


# --------------------------------------------------------------------------
# Finite networks: length map and predicted backprop norms
# --------------------------------------------------------------------------


def _layer_scales(widths: Sequence[int], init: str, sigma_w: float) -> Array:
    return np.array(
        [
            effective_sigma_w(init, n_out, n_in, sigma_w)
            for n_in, n_out in itertools.pairwise(widths)
        ]
    )


def _checked_network(
    q1: float | Array, widths: Sequence[int], init: str, sigma_w: float, sigma_b: float
) -> tuple[list[int], Array, Array]:
    """The widths as ints, q1 as an array and the layer scales s_l, all checked."""
    _check_scales(sigma_w, sigma_b)
    widths = [int(n) for n in widths]
    if len(widths) < 2 or any(n <= 0 for n in widths):
        raise ValueError(
            f"widths must be [n_1, ..., n_L], L >= 2, all positive (got {widths})"
        )
    q1 = np.asarray(q1, dtype=np.float64)
    if np.any(~(q1 >= 0)):
        raise ValueError(f"q1 must be >= 0 (got {q1})")
    return widths, q1, _layer_scales(widths, init, float(sigma_w))


def input_q1(x: Array) -> Array:
    """q^[1] = ||x||^2 / n_1, the mean square of the input(s) ``x`` (..., n_1)."""
    x = np.asarray(x, dtype=np.float64)
    return np.mean(x * x, axis=-1)


def length_map(
    q1: float | Array,
    widths: Sequence[int],
    *,
    activation: str,
    sigma_w: float,
    sigma_b: float,
    init: str = "gaussian",
) -> Array:
    """The length map q^[l], l = 2..L, of a network of the given widths.

    Parameters
    ----------
    q1 : float or array_like
        q^[1] = ||x||^2 / n_1 of the input(s) (see :func:`input_q1`), >= 0.
    widths : sequence of int
        ``[n_1, ..., n_L]``.
    activation : str
        Hidden activation (the output activation does not enter the length map).
    sigma_w, sigma_b : float
        Weight scale and bias standard deviation.
    init : str, default "gaussian"
        Initialization scheme; layer l sees s_l = ``effective_sigma_w(init, n_l,
        n_{l-1}, sigma_w)``.

    Returns
    -------
    ndarray, shape (*q1.shape, L - 1)
        Entry j is q^[j + 2], the mean over neurons (and networks) of
        (z_i^[j + 2])^2. It overflows to ``inf`` only for unbounded activations
        in the exploding regime at great depth.

    Notes
    -----
    q^[2] = s_2^2 q^[1] + sigma_b^2 (exact in expectation over W^[2], b^[2]);
    q^[l] = s_l^2 E_{u ~ N(0, q^[l-1])}[phi(u)^2] + sigma_b^2 for l >= 3, the
    central limit of z_i^[l] = sum_j W_ij phi(z_j^[l-1]) + b_i over a wide layer
    (Poole et al. 2016; Higham & Higham (3.2)).

    Examples
    --------
    >>> length_map(1.0, [10, 100, 100, 1], activation="relu", sigma_w=1.0,
    ...            sigma_b=0.0).tolist()
    [1.0, 0.5, 0.25]
    """
    act = get_activation(activation)
    widths, q1, scales = _checked_network(q1, widths, init, sigma_w, sigma_b)
    out = mlp_length_map(act, q1.reshape(-1), scales, float(sigma_b))
    return out.reshape(*q1.shape, -1)


@dataclass(frozen=True, eq=False)
class MeanFieldPrediction:
    """The mean-field prediction for a network and its input(s).

    Attributes
    ----------
    layer : ndarray of int, shape (L - 1,)
        The layers l = 2..L of ``q`` and ``chi``.
    q : ndarray, shape (..., L - 1)
        q^[l], the mean square of z^[l].
    chi : ndarray, shape (..., L - 1)
        chi^[l] = s_l^2 E[phi_l'(u)^2], u ~ N(0, q^[l]).
    log10_mean_sq_backprop : ndarray, shape (..., L - 1)
        Entry j is log10 E || d a^[L] / d a^[l] ||^2 for l = j + 1 = 1..L-1
        (entry 0 is the squared gradient norm), the same columns as
        :func:`depthlab.gradient.backprop_log10_norms` (which holds log10 of the
        norm, not of its square).
    q1 : ndarray, shape (...)
        q^[1] = ||x||^2 / n_1.
    output_dim : int
        n_L.
    p : ndarray, shape (..., L - 1), optional
        p^[l] = E[(a_i^[l])^2], the mean square of the activations of layer l
        (the residual stream in a resnet); l = 2..L.

    Notes
    -----
    For a resnet, q^[l] of a block is the mean square of its branch output
    z^[l] = W^[l] sigma(h^[l]) + b^[l] and chi^[l] its per-block factor
    1 + alpha^2 s_l^2 E[phi'^2] (see the module docstring, "Architectures").
    """

    layer: Array
    q: Array
    chi: Array
    log10_mean_sq_backprop: Array
    q1: Array
    output_dim: int
    p: Array | None = None

    @property
    def backprop_layer(self) -> Array:
        """The layers l = 1..L-1 of ``log10_mean_sq_backprop``."""
        return self.layer - 1

    @property
    def log10_mean_sq_grad(self) -> Array:
        """log10 E || grad a^[L](x) ||^2, shape (...)."""
        return self.log10_mean_sq_backprop[..., 0]

    def columns(self) -> dict[str, Array]:
        """One entry per layer l = 1..L, named as in the ``theory`` table.

        ``q`` at l = 1 is q^[1]; ``chi`` at l = 1 is nan;
        ``predicted_log10_mean_sq_backprop`` at l = L is log10 n_L
        (d a^[L] / d a^[L] is the identity). Arrays have shape (..., L).
        """
        lead = self.q.shape[:-1]
        return {
            "layer": np.arange(1, self.layer[-1] + 1),
            "q": np.concatenate([self.q1[..., None], self.q], axis=-1),
            "chi": np.concatenate([np.full((*lead, 1), np.nan), self.chi], axis=-1),
            "predicted_log10_mean_sq_backprop": np.concatenate(
                [
                    self.log10_mean_sq_backprop,
                    np.full((*lead, 1), np.log10(self.output_dim)),
                ],
                axis=-1,
            ),
        }


def predict_from_q1(
    q1: float | Array,
    widths: Sequence[int],
    *,
    activation: str,
    sigma_w: float,
    sigma_b: float,
    output_activation: str | None = None,
    init: str = "gaussian",
    architecture: str = "mlp",
    branch_scale: float = 1.0,
    norm: str | None = None,
) -> MeanFieldPrediction:
    """The mean-field prediction from q^[1] = ||x||^2 / n_1 (see :func:`predict`).

    Parameters
    ----------
    q1 : float or array_like
        q^[1] of one input, or of several (any shape; the results get an extra
        last axis over layers).
    widths : sequence of int
        ``[n_1, ..., n_L]`` (depth L = ``len(widths)``, counting the input).
    activation : str
        Activation of the hidden layers l = 2..L-1.
    sigma_w, sigma_b : float
        Weight scale and bias standard deviation, as given to
        :func:`depthlab.network.init_network`.
    output_activation : str, optional
        Activation of layer L; default the same as ``activation``.
    init : str, default "gaussian"
        Initialization scheme; layer l sees the effective fan-in scale
        s_l = ``effective_sigma_w(init, n_l, n_{l-1}, sigma_w)`` (layers are
        rectangular: n_1 and n_L differ from the width).
    architecture : {"mlp", "resnet"}, default "mlp"
    branch_scale : float, default 1.0
        alpha of the residual branches (resnet only).
    norm : {None, "layer"}, default None
        Layer normalization (see :class:`depthlab.network.Network`). For these,
        see the module docstring ("Architectures"): the residual length map
        p^[l] = p^[l-1] + alpha^2 (s_l^2 E[phi(v)^2] + sigma_b^2) and the
        per-block factor chi^[l] = 1 + alpha^2 s_l^2 E[phi'(v)^2] (divided by
        p^[l-1] + eps, with v normalized, under pre-LN).

    Returns
    -------
    MeanFieldPrediction
        Arrays over layers, with the shape of ``q1`` in front.
    """
    act = get_activation(activation)
    out_act = act if output_activation is None else get_activation(output_activation)
    widths, q1, scales = _checked_network(q1, widths, init, sigma_w, sigma_b)
    alpha = check_architecture(architecture, norm, branch_scale, widths)
    if architecture == "resnet":
        q, chi, p = resnet_maps(
            act, out_act, q1.reshape(-1), scales, float(sigma_b), alpha, norm
        )
    elif norm is not None:
        q, chi, p = layer_norm_mlp_maps(
            act, out_act, q1.reshape(-1), scales, float(sigma_b)
        )
    else:
        q, chi, p = mlp_maps(act, out_act, q1.reshape(-1), scales, float(sigma_b))
    with np.errstate(divide="ignore"):
        log_chi = np.log10(chi)
    # log10 E||d a^L / d a^l||^2 = log10 n_L + sum_{k = l+1}^{L} log10 chi^[k]:
    # entry j (l = j + 1) sums log_chi[j:], a reversed cumulative sum.
    log_backprop = np.log10(widths[-1]) + np.cumsum(log_chi[:, ::-1], axis=-1)[:, ::-1]
    shape = (*q1.shape, -1)
    return MeanFieldPrediction(
        layer=np.arange(2, len(widths) + 1),
        q=q.reshape(shape),
        chi=chi.reshape(shape),
        log10_mean_sq_backprop=log_backprop.reshape(shape),
        q1=q1,
        output_dim=widths[-1],
        p=p.reshape(shape),
    )


def predict(x: Array, widths: Sequence[int], **options: Any) -> MeanFieldPrediction:
    """Mean-field q^[l], chi^[l] and mean squared backprop norms for input(s) x.

    Parameters
    ----------
    x : ndarray, shape (n_1,) or (..., n_1)
        The input(s) a^[1]; only q^[1] = ||x||^2 / n_1 enters the theory.
    widths : sequence of int
        ``[n_1, ..., n_L]`` (depth L = ``len(widths)``, counting the input).
    **options
        The keyword arguments of :func:`predict_from_q1` (``activation``,
        ``sigma_w``, ``sigma_b``, ``output_activation``, ``init``,
        ``architecture``, ``branch_scale``, ``norm``), described there.

    Returns
    -------
    MeanFieldPrediction
        Arrays over layers, with the leading shape of ``x`` less its last axis.

    Notes
    -----
    Length map: q^[2] = s_2^2 q^[1] + sigma_b^2, q^[l] = s_l^2 E[phi(u)^2] +
    sigma_b^2, u ~ N(0, q^[l-1]) (see :func:`length_map`).

    Backprop norms. Write g^[l] = d a^[L] / d a^[l] (n_L x n_l); the chain rule
    (Higham & Higham (3.2), (5.2)) gives g^[l-1] = g^[l] D^[l] W^[l],
    D^[l] = diag(phi_l'(z^[l])). For any A with n_l columns that is independent
    of W^[l], whose entries are zero-mean and uncorrelated (every scheme of
    :mod:`depthlab.initializers`),

    E ||A W^[l]||_F^2 = sum_{r,j} sum_i A_ri^2 Var(W_ij)
                      = n_{l-1} Var(W_ij) ||A||_F^2 = s_l^2 ||A||_F^2.

    Take A = g^[l] D^[l]. It is not independent of W^[l] (z^[l] = W^[l] a^[l-1]
    + b^[l]), but the dependence is O(1/n_{l-1}); the gradient-independence
    assumption of mean-field theory (Schoenholz et al. 2017) neglects it and
    treats z_i^[l] ~ N(0, q^[l]) as independent of g^[l]. Then

    E ||g^[l-1]||^2 = s_l^2 E sum_{r,i} (g^[l]_ri)^2 phi_l'(z_i^[l])^2
                    = s_l^2 E[phi_l'(u)^2] E ||g^[l]||^2 = chi^[l] E ||g^[l]||^2,

    and with g^[L] = I_{n_L}, ||g^[L]||_F^2 = n_L:

    E || d a^[L] / d a^[l] ||^2 = n_L prod_{k = l+1}^{L} chi^[k],  l = 1..L-1.

    The product is summed in log10, so that depth 400 neither over- nor
    underflows. This is a mean of squares; the typical squared norm of one
    finite-width network (exp of the mean of log ||g||^2) grows by a smaller
    factor per layer (tanh, sigma_w = 4, width 200: 3.5% below chi_1;
    sigma_w = 8, width 256: 6% below).

    References
    ----------
    B. Poole et al., "Exponential expressivity in deep neural networks through
    transient chaos", NeurIPS 2016.
    S. S. Schoenholz et al., "Deep Information Propagation", ICLR 2017.
    J. Pennington, S. Schoenholz, S. Ganguli, "Resurrecting the sigmoid in deep
    learning through dynamical isometry", NeurIPS 2017.
    C. F. Higham, D. J. Higham, "Deep Learning: An Introduction for Applied
    Mathematicians", SIAM Review 61 (2019).

    Examples
    --------
    >>> import numpy as np
    >>> p = predict(np.ones(4), [4, 50, 50, 1], activation="relu",
    ...             sigma_w=np.sqrt(2), sigma_b=0.0)
    >>> p.q.round(12).tolist(), p.chi.round(12).tolist()
    ([2.0, 2.0, 2.0], [1.0, 1.0, 1.0])
    >>> p.log10_mean_sq_backprop.round(12).tolist()
    [0.0, 0.0, 0.0]
    """
    return predict_from_q1(input_q1(x), widths, **options)
