"""The probe engine: chunking, threads, random streams, memory, adaptive precision."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import probe_spec
from scipy import stats

from depthlab import spectra
from depthlab.gradient import backprop_log10_norms
from depthlab.initializers import INITIALIZER_NAMES, sample_layer
from depthlab.jobs import engine, memory
from depthlab.jobs.probe import ProbeSpec, run_probe

SPEC = probe_spec()


def _chunked(spec: ProbeSpec, size: int):
    k = spec.networks
    parts = [
        engine.measure_chunk(engine.make_chunk(spec, range(a, min(a + size, k))), spec)
        for a in range(0, k, size)
    ]
    return engine.reduce(parts, spec)


def _assert_same(a, b) -> None:
    for name, table in a.tables().items():
        other = b.tables()[name]
        assert table.equals(other), name
    assert json.dumps(a.summary) == json.dumps(b.summary)


@pytest.mark.parametrize("size", [1, 3, 7])
def test_chunk_size_gives_bitwise_equal_results(size: int) -> None:
    _assert_same(_chunked(SPEC, size), run_probe(SPEC))


def test_threads_give_bitwise_equal_results() -> None:
    one = run_probe(dataclasses.replace(SPEC, threads=1))
    two_spec = dataclasses.replace(SPEC, threads=2, memory_gb=1.0)
    assert memory.plan_chunks(engine.job_shape(two_spec), 7, 2, 1.0) == (4, 2)
    _assert_same(one, run_probe(two_spec))


def test_float32_chunks_are_bitwise_equal() -> None:
    spec = dataclasses.replace(SPEC, dtype="float32")
    result = run_probe(spec)
    assert result.layers.sv_max.dtype == np.float32
    _assert_same(_chunked(spec, 1), result)


def test_chunks_match_the_whole_stack_computed_at_once() -> None:
    """The reduced tables against the stack of all networks, measured directly."""
    whole = engine.make_chunk(SPEC, range(SPEC.networks))
    norms = backprop_log10_norms(whole.net, whole.X)
    result = run_probe(SPEC)
    grad = result.samples.grad_log10_norm.to_numpy().reshape(SPEC.networks, -1)
    np.testing.assert_array_equal(grad, norms[..., 0])
    # Spectra pairs: j -> (j mod 5, j div 5) for 5 pairs over 7 networks.
    jac = spectra.jacobian_log_singular_values(whole.net, whole.X)
    rows = result.layers.dropna(subset=["jac_log10_sv_max"])
    assert sorted(set(zip(rows.net, rows.input, strict=True))) == [
        (j, 0) for j in range(5)
    ]
    for r in rows.itertuples():
        expected = jac[r.layer - 2][r.net, r.input] / np.log(10.0)
        assert r.jac_log10_sv_max == pytest.approx(expected[0], rel=0, abs=1e-13)
        assert r.jac_log10_sv_min == pytest.approx(expected[-1], rel=0, abs=1e-13)
    layer_sv = spectra.layer_singular_values(whole.net, whole.X)
    for r in rows.itertuples():
        expected = layer_sv[r.layer - 2][r.net, r.input]
        assert r.sv_max == pytest.approx(expected[0], rel=1e-13)
        assert r.sv_min == pytest.approx(expected[-1], rel=1e-13)


def test_streams_are_per_network_and_shared_across_depths() -> None:
    """Network k's first layers are the same in a deeper job (common random
    numbers), and a job's network k does not depend on how many it samples."""
    short = engine.make_chunk(SPEC, [2, 3])
    deep = engine.make_chunk(dataclasses.replace(SPEC, depth=9, networks=40), [3])
    np.testing.assert_array_equal(short.net.weights[0][1], deep.net.weights[0][0])
    np.testing.assert_array_equal(short.net.weights[3][1], deep.net.weights[3][0])
    np.testing.assert_array_equal(short.X[1], deep.X[0])
    assert not np.array_equal(short.net.weights[0][0], short.net.weights[0][1])
    other_seed = engine.make_chunk(dataclasses.replace(SPEC, seed=1), [2])
    assert not np.array_equal(other_seed.X[0], short.X[0])


def test_weights_have_the_scheme_variance() -> None:
    """Drawn through the per-network streams, W^[l] has Var sigma_w^2 / n_in."""
    spec = dataclasses.replace(SPEC, width=200, input_dim=200, networks=4)
    w = engine.make_chunk(spec, range(4)).net.weights[1]
    assert np.var(w) * 200 / 1.5**2 == pytest.approx(1.0, abs=0.02)


def test_spectra_layers_default_and_explicit() -> None:
    assert engine.spectra_layers(SPEC) == (2, 3, 4, 5, 6)
    wide = dataclasses.replace(SPEC, depth=100, width=512)
    layers = engine.spectra_layers(wide)
    assert layers[0] == 2 and layers[-2:] == (99, 100) and len(layers) <= 10
    explicit = dataclasses.replace(SPEC, spectra_layers=(6, 3))
    result = run_probe(explicit)
    assert sorted(result.spectrum.layer.unique()) == [3, 6]
    jac = result.layers.groupby("layer").jac_log10_sv_max.count()
    assert jac[3] == jac[6] == 5 and jac[[1, 2, 4, 5]].sum() == 0
    full = run_probe(SPEC)
    both = full.layers[full.layers.layer.isin([3, 6])]
    np.testing.assert_array_equal(
        both.jac_log10_sv_std.to_numpy(),
        result.layers[result.layers.layer.isin([3, 6])].jac_log10_sv_std.to_numpy(),
    )


def test_plan_keeps_to_the_budget_and_gives_every_core_work() -> None:
    shape = engine.job_shape(dataclasses.replace(SPEC, width=256, depth=20))
    per_net = memory.network_bytes(shape)
    size, workers = memory.plan_chunks(shape, 64, 4, memory_gb=None)
    assert size == 16 and workers == 4
    budget = 0.05
    size, workers = memory.plan_chunks(shape, 64, 4, memory_gb=budget)
    assert workers * size * per_net <= budget * memory.GIB
    assert size >= 1 and workers >= 1
    # One network larger than the budget: one worker, one network.
    assert memory.plan_chunks(shape, 64, 4, memory_gb=1e-4) == (1, 1)


def test_adaptive_precision_follows_the_inverse_square_root_law() -> None:
    """A depth-2 linear network: ||grad|| = ||w|| ~ (sigma_w/sqrt(n)) chi_n,
    equal at every input of a network. The standard error of the median of K
    draws is 1/(2 f(m) sqrt(K)), relative: c / sqrt(K), c = 1/(2 f(m) m)."""
    n = 4
    linear = probe_spec(
        depth=2, input_dim=n, activation="linear", output_activation="linear"
    )
    spec = dataclasses.replace(
        linear, networks=16, spectra=0, rel_err=0.04, max_networks=10_000
    )
    m = stats.chi(n).median()
    c = 1.0 / (2.0 * stats.chi(n).pdf(m) * m)
    needed = (c / spec.rel_err) ** 2  # ~ 145 networks
    s = run_probe(spec).summary
    assert s["grad_norm_median_rel_err"] <= spec.rel_err
    assert 0.6 * needed <= s["networks_used"] <= 2.0 * needed
    # The error reached is the law's at the networks used (bootstrap noise).
    law = c / np.sqrt(s["networks_used"])
    assert s["grad_norm_median_rel_err"] == pytest.approx(law, rel=0.3)
    fixed = run_probe(dataclasses.replace(spec, rel_err=None)).summary
    assert fixed["networks_used"] == 16
    assert fixed["grad_norm_median_rel_err"] == pytest.approx(c / 4, rel=0.4)


def test_adaptive_precision_stops_at_max_networks() -> None:
    spec = dataclasses.replace(SPEC, rel_err=1e-3, max_networks=20, spectra=0)
    s = run_probe(spec).summary
    assert s["networks_used"] == 20
    assert s["grad_norm_median_rel_err"] > 1e-3


def test_reduce_needs_all_chunks_in_order() -> None:
    parts = [engine.measure_chunk(engine.make_chunk(SPEC, [k]), SPEC) for k in (1, 0)]
    with pytest.raises(ValueError, match="in order"):
        engine.reduce(parts, SPEC)


_PEAK = textwrap.dedent(
    """
    import resource, sys
    from depthlab.jobs.probe import ProbeSpec, run_probe
    spec = ProbeSpec(depth=20, width=256, input_dim=256, output_dim=1,
                     activation="tanh", output_activation="tanh", init="gaussian",
                     sigma_w=1.0, sigma_b=0.0, networks=int(sys.argv[1]),
                     inputs=8, spectra=0, memory_gb=0.05, threads=2)
    run_probe(spec)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """
)


def _peak_kib(networks: int) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _PEAK, str(networks)],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.split()[-1])


def test_peak_memory_does_not_grow_with_networks() -> None:
    """Width 256, depth 20: 8 vs 64 networks (9.4 MB each, 600 MB all at once)."""
    few, many = _peak_kib(8), _peak_kib(64)
    assert many - few < 20 * 1024, (few, many)  # KiB: less than 20 MB more


def test_chunk_ranges_put_spectra_networks_alone_and_cover_once() -> None:
    parts = engine.chunk_ranges(range(0, 20), 6, alone=3)
    assert parts[:3] == [range(0, 1), range(1, 2), range(2, 3)]
    assert [k for p in parts for k in p] == list(range(20))
    assert max(len(p) for p in parts) == 6
    later = engine.chunk_ranges(range(64, 100), 16, alone=3)
    assert later == [range(64, 80), range(80, 96), range(96, 100)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", INITIALIZER_NAMES)
def test_layers_drawn_into_the_stack_are_the_same_numbers(name, dtype):
    """make_chunk draws each layer into its stack slice (sample_layer(out=)):
    bitwise the numbers sample_layer returns on its own, for every scheme."""
    args = dict(sigma_w=1.3, sigma_b=0.4, dtype=dtype)
    W, b = sample_layer(name, 7, 5, rng=engine.network_rng(3, 1, 2), **args)
    stack_w, stack_b = np.full((2, 7, 5), np.nan, dtype), np.full((2, 7), np.nan, dtype)
    got = sample_layer(
        name,
        7,
        5,
        rng=engine.network_rng(3, 1, 2),
        out=(stack_w[1], stack_b[1]),
        **args,
    )
    assert np.shares_memory(got[0], stack_w) and np.shares_memory(got[1], stack_b)
    np.testing.assert_array_equal(stack_w[1], W)
    np.testing.assert_array_equal(stack_b[1], b)
    assert np.isnan(stack_w[0]).all() and np.isnan(stack_b[0]).all()


def test_sample_layer_out_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"out\[0\] must be .* shape \(3, 2\)"):
        sample_layer(
            "gaussian",
            3,
            2,
            sigma_w=1.0,
            sigma_b=0.0,
            rng=np.random.default_rng(0),
            out=(np.empty((2, 3)), np.empty(3)),
        )
