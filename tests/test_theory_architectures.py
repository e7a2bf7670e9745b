"""Mean-field theory of residual networks and layer normalization.

Exact cases (closed forms of piecewise-linear activations, the ReLU resnet at
He initialization that doubles E||g||^2 per block, the 1/sqrt(blocks) branch
scaling that bounds it by e) and Monte Carlo over sampled networks of width 512.

Monte Carlo. The measured per-block factor is F = (E||g^[2]||^2 /
E||g^[L-1]||^2)^(1/B) over B blocks (or B LN layers), g^[l] = d a^[L] / d a^[l],
the means taken over K networks x inputs; its standard error comes from the
delta method over the K per-network means (inputs of one network are
correlated). The issue's target is agreement within 3% at width 512; the test
asserts it, and asserts that the standard error is at most 3% / 4, so that a 3%
bias would be a 4-sigma failure (measured: SE 0.2-0.5% with K = 48).
"""

import numpy as np
import pytest
from scipy import special

from depthlab.gradient import backprop_log10_norms
from depthlab.network import LN_EPS, init_network
from depthlab.theory import predict, predict_from_q1

_SQRT2 = float(np.sqrt(2.0))


def _widths(blocks: int, width: int = 64, n_in: int = 10) -> list[int]:
    return [n_in] + [width] * (blocks + 1) + [1]


def _resnet(**kwargs):
    base = {
        "activation": "relu",
        "sigma_w": _SQRT2,
        "sigma_b": 0.0,
        "architecture": "resnet",
        "output_activation": "linear",
    }
    return {**base, **kwargs}


def test_relu_resnet_at_he_init_doubles_per_block():
    p = predict_from_q1(1.0, _widths(6), **_resnet(branch_scale=1.0))
    np.testing.assert_array_equal(p.chi[1:-1], 2.0)
    np.testing.assert_allclose(p.p[:-1], 2.0 ** np.arange(1, 8), rtol=1e-15)
    # log10 E||grad||^2 = log10(s_2^2 * 2^6 * s_L^2) with s^2 = 2 (linear readout).
    assert p.log10_mean_sq_grad == pytest.approx(np.log10(2.0**8), abs=1e-12)


@pytest.mark.parametrize("blocks", [1, 10, 100, 1000])
def test_depth_scaled_branches_keep_the_gradient_bounded(blocks):
    """alpha = 1/sqrt(B): prod_blocks (1 + 1/B) = (1 + 1/B)^B -> e, from below."""
    p = predict_from_q1(1.0, _widths(blocks), **_resnet(branch_scale=blocks**-0.5))
    total = np.prod(p.chi[1:-1])
    assert total == pytest.approx((1.0 + 1.0 / blocks) ** blocks, rel=1e-12)
    assert total < np.e
    # The stream grows by the same factor: p^[L-1] = 2 (1 + 1/B)^B.
    assert p.p[-2] == pytest.approx(2.0 * total, rel=1e-12)
    assert p.log10_mean_sq_grad < np.log10(4 * np.e)


@pytest.mark.parametrize("norm", [None, "layer"])
def test_linear_resnet_closed_form(norm):
    s, sb, alpha = 1.3, 0.4, 0.7
    p = predict_from_q1(
        2.0,
        _widths(5),
        activation="linear",
        sigma_w=s,
        sigma_b=sb,
        architecture="resnet",
        branch_scale=alpha,
        norm=norm,
    )
    stream = s**2 * 2.0 + sb**2
    assert p.q[0] == pytest.approx(stream) and p.chi[0] == pytest.approx(s**2)
    for j in range(1, 6):
        v = stream / (stream + LN_EPS) if norm else stream
        branch = s**2 * v + sb**2
        chi = 1 + alpha**2 * s**2 / ((stream + LN_EPS) if norm else 1.0)
        assert p.q[j] == pytest.approx(branch, rel=1e-14)
        assert p.chi[j] == pytest.approx(chi, rel=1e-14)
        stream = stream + alpha**2 * branch
        assert p.p[j] == pytest.approx(stream, rel=1e-14)
    assert p.q[-1] == pytest.approx(s**2 * stream + sb**2, rel=1e-14)
    assert p.chi[-1] == pytest.approx(s**2)


def test_relu_mlp_with_layer_norm_closed_form():
    """h = LN(z) has mean square r = q/(q + eps): E[relu(h)^2] = r/2 = E[relu'^2] r."""
    s, sb = 1.7, 0.3
    p = predict_from_q1(
        3.0, _widths(4), activation="relu", sigma_w=s, sigma_b=sb, norm="layer"
    )
    q = s**2 * 3.0 + sb**2
    for j in range(5):
        r = q / (q + LN_EPS)
        assert p.q[j] == pytest.approx(q, rel=1e-14)
        assert p.chi[j] == pytest.approx(s**2 * 0.5 / (q + LN_EPS), rel=1e-14)
        assert p.p[j] == pytest.approx(r / 2, rel=1e-14)
        q = s**2 * r / 2 + sb**2
    assert p.chi[-1] == pytest.approx(s**2 * 0.5)  # the output layer has no LN


def test_hard_tanh_resnet_uses_the_closed_form():
    """E[hard_tanh'(v)^2] = P(|v| < 1) = erf(1 / sqrt(2 p)), v ~ N(0, p)."""
    p = predict_from_q1(
        1.0,
        _widths(3),
        **_resnet(activation="hard_tanh", sigma_w=1.2, branch_scale=0.5),
    )
    for j in range(1, 4):
        expected = 1 + 0.25 * 1.44 * special.erf(1 / np.sqrt(2 * p.p[j - 1]))
        assert p.chi[j] == pytest.approx(expected, rel=1e-14)


def test_pre_ln_branches_see_unit_variance_at_any_stream_length():
    p = predict_from_q1(
        1.0, _widths(40), **_resnet(activation="tanh", sigma_w=1.0, norm="layer")
    )
    # q of every branch is E[tanh(v)^2] at v ~ N(0, r), r ~ 1: constant in depth.
    np.testing.assert_allclose(p.q[1:-1], p.q[1], rtol=1e-4)
    # chi - 1 = E[tanh'^2] / (p + eps): decays like 1 / p as the stream grows.
    np.testing.assert_allclose(
        (p.chi[2:-1] - 1) * (p.p[1:-2] + LN_EPS),
        (p.chi[1] - 1) * (p.p[0] + LN_EPS),
        rtol=1e-4,
    )


def test_zero_branch_scale_is_the_identity():
    p = predict_from_q1(1.0, _widths(5), **_resnet(branch_scale=0.0))
    np.testing.assert_array_equal(p.chi[1:-1], 1.0)
    np.testing.assert_allclose(p.p[:-1], 2.0, rtol=1e-15)


def test_defaults_are_the_mlp_and_predict_passes_keywords():
    x = np.full(10, 1.0)
    kw = {"activation": "tanh", "sigma_w": 1.2, "sigma_b": 0.1}
    mlp = predict(x, _widths(3), **kw)
    same = predict(x, _widths(3), architecture="mlp", branch_scale=1.0, norm=None, **kw)
    np.testing.assert_array_equal(mlp.chi, same.chi)
    # p^[l] = E[phi(z^[l])^2] = (q^[l+1] - sigma_b^2) / s^2 for l < L.
    np.testing.assert_allclose(mlp.p[:-1], (mlp.q[1:] - 0.01) / 1.44, rtol=1e-13)
    res = predict(x, _widths(3), architecture="resnet", norm="layer", **kw)
    ref = predict_from_q1(1.0, _widths(3), architecture="resnet", norm="layer", **kw)
    np.testing.assert_array_equal(res.chi, ref.chi)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"architecture": "densenet"}, "unknown architecture"),
        ({"norm": "batch"}, "unknown norm"),
        ({"architecture": "resnet", "branch_scale": -0.1}, "branch_scale"),
    ],
)
def test_bad_architectures_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        predict_from_q1(
            1.0, _widths(2), activation="tanh", sigma_w=1.0, sigma_b=0.0, **kwargs
        )
    with pytest.raises(ValueError, match="depth >= 3"):
        predict_from_q1(
            1.0,
            [3, 1],
            activation="tanh",
            sigma_w=1.0,
            sigma_b=0.0,
            architecture="resnet",
        )


# --------------------------------------------------------------------------
# Against sampled networks
# --------------------------------------------------------------------------


def sampled_per_block_factor(
    architecture: str,
    norm: str | None,
    activation: str,
    rng: np.random.Generator,
    *,
    blocks: int = 4,
    networks: int = 48,
    inputs: int = 8,
) -> dict[str, float]:
    """Measured and predicted per-block factor of E||g||^2, and the stream's p.

    Networks of width 512 (``networks`` of them, drawn 4 at a time) at He
    (relu, sigma_w = sqrt 2) or critical (tanh, sigma_w = 1) initialization,
    sigma_b = 0, branch_scale 1, a linear readout, inputs with q^[1] = 1.
    """
    sigma_w = _SQRT2 if activation == "relu" else 1.0
    widths = [16] + [512] * (blocks + 1) + [1]
    chunk = 4
    kw = {
        "activation": activation,
        "output_activation": "linear",
        "sigma_w": sigma_w,
        "sigma_b": 0.0,
        "architecture": architecture,
        "branch_scale": 1.0,
        "norm": norm,
    }
    first, last, p_sq = [], [], []
    for _ in range(0, networks, chunk):
        net = init_network(widths, init="gaussian", rng=rng, num_networks=chunk, **kw)
        X = rng.standard_normal((chunk, inputs, widths[0]))
        X /= np.sqrt(np.mean(X * X, axis=-1, keepdims=True))
        sq = 10.0 ** (2.0 * backprop_log10_norms(net, X))
        first.append(sq[..., 1].mean(axis=-1))  # || d a^[L] / d a^[2] ||^2
        last.append(sq[..., -1].mean(axis=-1))  # || d a^[L] / d a^[L-1] ||^2
        p_sq.append(np.mean(net.forward(X).activations[-2] ** 2))
    m1, m2 = np.concatenate(first), np.concatenate(last)
    ratio = m1.mean() / m2.mean()
    se_ratio = np.sqrt(np.var(m1 - ratio * m2, ddof=1) / m1.size) / m2.mean()
    theory = predict_from_q1(1.0, widths, **kw)
    return {
        "measured": ratio ** (1 / blocks),
        "se": ratio ** (1 / blocks) * se_ratio / (ratio * blocks),
        "predicted": float(np.prod(theory.chi[1:-1]) ** (1 / blocks)),
        "p_measured": float(np.mean(p_sq)),
        "p_predicted": float(theory.p[-2]),
    }


_TARGET = 0.03


@pytest.mark.slow
@pytest.mark.parametrize(
    ("architecture", "norm"), [("resnet", None), ("resnet", "layer"), ("mlp", "layer")]
)
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_per_block_factor_matches_sampled_networks_at_width_512(
    architecture, norm, activation, rng
):
    r = sampled_per_block_factor(architecture, norm, activation, rng)
    assert r["se"] <= _TARGET / 4 * r["predicted"]
    assert r["measured"] == pytest.approx(r["predicted"], rel=_TARGET)
    assert r["p_measured"] == pytest.approx(r["p_predicted"], rel=_TARGET)


def test_pre_ln_resnet_matches_a_few_sampled_networks(rng):
    """A quick version: 8 networks x 64 inputs, 3 blocks (SE about 0.7%)."""
    r = sampled_per_block_factor(
        "resnet", "layer", "tanh", rng, networks=8, inputs=64, blocks=3
    )
    assert r["se"] <= 0.015 * r["predicted"]
    assert abs(r["measured"] - r["predicted"]) <= 4 * r["se"]
    assert r["p_measured"] == pytest.approx(r["p_predicted"], rel=_TARGET)
