"""The process's cache of drawn layers: a job gets bitwise the layers it would
draw, whatever ran before it in the process; the cache stays within its bound."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from conftest import probe_spec

from depthlab.jobs import engine, layer_cache
from depthlab.jobs.probe import ProbeSpec, run_probe

SPEC = probe_spec(networks=6, inputs=3, spectra=2, threads=1)
"""conftest's tiny probe job, on one thread, with 2 spectra pairs."""


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch) -> layer_cache.LayerCache:
    fresh = layer_cache.LayerCache()
    monkeypatch.setattr(layer_cache, "CACHE", fresh)
    monkeypatch.setattr(layer_cache, "SPECTRA", layer_cache.LayerCache())
    monkeypatch.setattr(layer_cache, "FORWARD", layer_cache.LayerCache())
    return fresh


def _chunk(spec: ProbeSpec) -> engine.Chunk:
    return engine.make_chunk(spec, range(spec.networks))


def _assert_same(a: engine.Chunk, b: engine.Chunk) -> None:
    for x, y in zip(
        a.net.weights + a.net.biases, b.net.weights + b.net.biases, strict=True
    ):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.X, b.X)


@pytest.mark.parametrize("init", ["gaussian", "orthogonal", "xavier_uniform"])
def test_layers_from_the_cache_are_the_drawn_ones(
    cache: layer_cache.LayerCache, init: str
) -> None:
    spec = dataclasses.replace(SPEC, init=init)
    cache.max_bytes = 0  # bypass: every layer drawn
    drawn = _chunk(spec)
    cache.max_bytes = layer_cache.MAX_BYTES
    _chunk(dataclasses.replace(spec, depth=9))  # a deeper job fills the cache
    misses = cache.misses
    again = _chunk(spec)
    # The hidden layers 2..5 come from the cache; the output layer (1 x 12)
    # was not drawn by the deeper job (its layer 6 is 12 x 12). An entry is
    # one layer of the chunk's networks, stacked.
    assert cache.misses - misses == 1
    assert cache.hits == 4
    _assert_same(again, drawn)
    with pytest.raises(ValueError, match="read-only"):
        again.net.weights[0][0, 0, 0] = 1.0  # shared with later jobs


def test_a_chunk_of_other_networks_draws_its_own_layers(
    cache: layer_cache.LayerCache,
) -> None:
    whole = _chunk(SPEC)
    part = engine.make_chunk(SPEC, range(2, 4))  # networks 2 and 3 alone
    assert cache.hits == 0  # another chunk: nothing taken from the first
    for w_part, w_whole in zip(part.net.weights, whole.net.weights, strict=True):
        np.testing.assert_array_equal(w_part, w_whole[2:4])


@pytest.mark.parametrize(
    "arch",
    [
        {},
        {"arch": "resnet", "depth_power": 0.5},  # alpha depends on the depth
        {"arch": "resnet", "norm": "layer"},
        {"norm": "layer", "activation": "relu", "dtype": "float32"},
    ],
    ids=["mlp", "resnet-depth-scaled", "resnet-ln", "mlp-ln-relu-f32"],
)
def test_a_job_gives_the_same_numbers_after_other_jobs(
    cache: layer_cache.LayerCache, arch: dict
) -> None:
    """Every table of a job, fresh against after jobs of other depths, other
    numbers and other architectures have filled both caches (layers and the
    spectra of hidden layers)."""
    spec = dataclasses.replace(SPEC, **arch)
    first = run_probe(spec)
    layer_cache.CACHE.clear()
    layer_cache.SPECTRA.clear()
    layer_cache.FORWARD.clear()
    for depth in (3, 8, 5):
        run_probe(dataclasses.replace(spec, depth=depth))
    run_probe(dataclasses.replace(spec, sigma_w=0.7))  # other numbers, other keys
    run_probe(dataclasses.replace(SPEC, depth=7))  # another architecture
    hits = layer_cache.SPECTRA.hits
    again = run_probe(spec)
    # A depth-scaled branch (alpha = c / blocks^p) differs at every depth: its
    # hidden layers' spectra are not shared; the others reuse layers 2..L-1,
    # and the pass to the output layer resumes from the graded factor that the
    # depth-5 job left at its last hidden layer, 4 (one more hit).
    shared = 0 if spec.depth_power else spec.depth - 2 + 1
    assert cache.hits > 0 and layer_cache.SPECTRA.hits - hits == shared
    for name, table in first.tables().items():
        pd.testing.assert_frame_equal(table, again.tables()[name], check_exact=True)


def test_the_cache_stays_within_its_bound() -> None:
    cache = layer_cache.LayerCache(max_bytes=3 * (16 + 4) * 8)
    draws = []

    def fill(key: int) -> np.ndarray:
        found = cache.get(key)
        if found is None:
            draws.append(key)
            found = (np.full((4, 4), key), np.full(4, -key))
            cache.put(key, found)
        return found[0]

    for key in (1, 2, 3, 1, 4):  # 1 is used again, so 2 goes when 4 comes
        assert (fill(key) == key).all()
    assert cache.nbytes == cache.max_bytes
    assert draws == [1, 2, 3, 4]
    assert (fill(2) == 2).all() and draws[-1] == 2  # evicted: drawn again
    assert (fill(1) == 1).all() and draws[-1] == 2  # kept
    assert (cache.hits, cache.misses) == (2, 5)


def test_a_job_too_large_for_the_cache_bypasses_it(
    cache: layer_cache.LayerCache,
) -> None:
    cache.max_bytes = 1000
    _chunk(SPEC)
    assert cache.hits == cache.misses == 0
    assert cache.nbytes == 0


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_a_forward_pass_resumed_from_an_earlier_job_is_the_whole_pass(
    cache: layer_cache.LayerCache, activation: str
) -> None:
    """Jobs of a stack large enough for the layer-by-layer kernel (20 networks
    x 4 inputs x width 64: more than gradient._SMALL_LAYER numbers a layer)
    resume their forward pass from the shallower job's last hidden layer; every
    table is bitwise the fresh job's."""
    spec = probe_spec(
        width=64,
        networks=20,
        inputs=4,
        spectra=2,
        depth=9,
        activation=activation,
        threads=1,
    )
    fresh = {
        depth: run_probe(dataclasses.replace(spec, depth=depth)) for depth in (7, 9)
    }
    for c in (layer_cache.CACHE, layer_cache.SPECTRA, layer_cache.FORWARD):
        c.clear()
    hits = layer_cache.FORWARD.hits
    run_probe(dataclasses.replace(spec, depth=5))  # leaves layers 2..4
    resumed = run_probe(dataclasses.replace(spec, depth=7))  # from 4: 5, 6, 7
    assert layer_cache.FORWARD.hits - hits == 1
    again = run_probe(spec)  # from 6: layers 7, 8, 9
    assert layer_cache.FORWARD.hits - hits == 2
    for depth, result in ((7, resumed), (9, again)):
        for name, table in fresh[depth].tables().items():
            pd.testing.assert_frame_equal(
                table, result.tables()[name], check_exact=True
            )
