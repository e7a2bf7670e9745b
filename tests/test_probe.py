"""The probe job: its configuration (sizes, precision and memory refused before
work) and the tidy-table contract of its results."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from depthlab import input_gradient
from depthlab.activations import get_activation
from depthlab.jobs import engine, memory
from depthlab.jobs.config import Config, ConfigError, config_hash
from depthlab.jobs.probe import ProbeResult, ProbeSpec, run_probe
from depthlab.jobs.schema import CONFIG_COLUMNS
from depthlab.jobs.validate import validate


def _cfg(**probe: object) -> dict:
    d = dataclasses.asdict(Config())
    d["probe"].update(probe)
    return d


def _spec(
    *, sigma_w: float = 1.0, sigma_b: float = 0.0, activation: str = "tanh", **keys
) -> ProbeSpec:
    """The validated spec of the default config with these keys (probe's by their
    short name, the others top-level)."""
    probe = {k: keys.pop(k) for k in list(keys) if k in _cfg()["probe"]}
    d = _cfg(**probe)
    d.update(activation=activation, **keys)
    d["init"].update(sigma_w=sigma_w, sigma_b=sigma_b)
    validate(d)
    return ProbeSpec.from_config(d)


@pytest.mark.parametrize(
    ("probe", "expected"),
    [
        ({"memory_gb": 0}, "probe.memory_gb=0.0 is not allowed"),
        ({"memory_gb": -1.5}, "probe.memory_gb=-1.5 is not allowed"),
        ({"rel_err": 0}, "probe.rel_err=0.0 is not allowed"),
        ({"rel_err": 1.0}, "probe.rel_err=1.0 is not allowed"),
        ({"rel_err": -0.1}, "probe.rel_err=-0.1 is not allowed"),
        ({"rel_err": 0.1, "max_networks": 63}, "probe.max_networks=63 is not"),
        ({"threads": 0}, "probe.threads=0 is not allowed"),
        ({"spectra_layers": [1, 5]}, "probe.spectra_layers=[1, 5] is not allowed"),
        ({"spectra_layers": [11]}, "layers l in 2..10"),
        ({"spectra_layers": []}, "probe.spectra_layers=[] is not allowed"),
    ],
)
def test_bad_probe_keys_are_refused_with_one_line(probe: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(_cfg(**probe))
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_good_probe_keys_pass() -> None:
    validate(_cfg(memory_gb=0.5, rel_err=0.05, max_networks=640, threads=2))
    validate(_cfg(spectra_layers=[2, 10], networks=20_000))  # streaming: fits
    validate(_cfg(max_networks=10))  # unused without rel_err


def test_results_that_cannot_fit_are_refused() -> None:
    """Weights stream, but the exact quantiles keep every network's norms."""
    match = r"probe.networks=1000000000 .* needs about 4.07e\+04 GiB"
    with pytest.raises(ConfigError, match=match):
        validate(_cfg(networks=10**9))


def test_a_network_that_cannot_fit_is_refused() -> None:
    d = _cfg()
    d.update(width=100_000)  # 8 x 10^10 bytes per hidden layer
    with pytest.raises(ConfigError) as err:
        validate(d)
    message = str(err.value)
    assert "\n" not in message and "GiB" in message
    assert "this machine has" in message
    small = _cfg(memory_gb=0.001)
    small.update(width=1024, input_dim=1024, depth=3)  # 8 MB of weights
    with pytest.raises(ConfigError, match=r"probe.memory_gb=0.001 allows 0.001 GiB"):
        validate(small)


def test_the_estimate_bounds_a_measured_job() -> None:
    """The model's one-network part against the arrays of the job itself."""
    spec = _spec(networks=2, inputs=8, spectra=0, depth=12, width=300, input_dim=300)
    chunk = engine.make_chunk(spec, [0])
    weights = sum(
        w.nbytes + b.nbytes
        for w, b in zip(chunk.net.weights, chunk.net.biases, strict=True)
    )
    shape = engine.job_shape(spec)
    assert weights < memory.network_bytes(shape) < 1.5 * weights
    assert run_probe(spec).summary["networks_used"] == 2


def test_memory_and_threads_do_not_change_the_config_hash() -> None:
    base = config_hash(_cfg())
    assert config_hash(_cfg(memory_gb=3.0, threads=7)) == base
    assert config_hash(_cfg(rel_err=0.05)) != base


def test_cli_refuses_a_job_that_cannot_fit_before_any_run(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "depthlab", "width=100000", "report=false"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "GiB" in lines[0], out.stderr
    assert not (tmp_path / "mlflow.db").exists()


# --------------------------------------------------------------------------
# The tidy-table contract of a probe job (depthlab.jobs.probe's module docstring)
# --------------------------------------------------------------------------

IDS = {"samples": ["net", "input"], "layers": ["net", "input", "layer"]}
IDS |= {"spectrum": ["net", "input", "layer", "rank"]}
IDS |= {"theory": ["layer"], "per_layer": ["layer"]}
SPECTRAL = ["sv_max", "sv_min", "sv_median"]
SPECTRAL += ["jac_log10_sv_max", "jac_log10_sv_min", "jac_log10_sv_std"]
THEORY = ["q", "chi", "predicted_log10_mean_sq_backprop", "predicted_jac_log10_rms_sv"]
MEASURED = {
    "samples": ["grad_log10_norm", "output", "input_sq_norm"],
    "layers": ["backprop_log10_norm", *SPECTRAL],
    "spectrum": ["jac_log10_sv"],
    "theory": THEORY,
    "per_layer": [
        *(f"backprop_log10_norm_{s}" for s in ("median", "q25", "q75")),
        "backprop_log10_mean_sq",
        *(f"{c}_median" for c in [*SPECTRAL[:3], "cond", *SPECTRAL[3:]]),
        "predicted_log10_mean_sq_backprop",
        "chi",
        "predicted_jac_log10_rms_sv",
    ],
}


@pytest.fixture(scope="module")
def job() -> tuple[ProbeSpec, ProbeResult]:
    """A small job: 3 tanh networks of depth 5, 4 inputs each, 5 spectra pairs."""
    sizes = {"depth": 5, "width": 6, "input_dim": 4}
    spec = _spec(networks=3, inputs=4, spectra=5, sigma_w=1.3, sigma_b=0.2, **sizes)
    return spec, run_probe(spec)


@pytest.mark.parametrize("name", list(IDS))
def test_each_table_has_its_documented_columns_and_dtypes(job, name: str) -> None:
    spec, result = job
    table = result.tables()[name]
    assert list(table.columns) == [*CONFIG_COLUMNS, *IDS[name], *MEASURED[name]]
    for column, value in spec.config_columns().items():
        assert (table[column] == value).all(), column
    for column in IDS[name]:
        dtype = table[column].dtype
        assert pd.api.types.is_integer_dtype(dtype), (column, dtype)
    for column in MEASURED[name]:
        assert table[column].dtype == np.float64, (column, table[column].dtype)


def test_each_table_has_one_row_per_observation(job) -> None:
    spec, result = job
    k, b, depth = spec.networks, spec.inputs, spec.depth
    layers = engine.spectra_layers(spec)
    pairs = len(engine.spectra_pairs(spec)[0])
    ranks = [min(n, spec.widths[0]) for n in spec.widths[1:]]  # l = 2..L
    rows = {
        "samples": k * b,
        "layers": k * b * depth,
        "spectrum": pairs * sum(ranks[layer - 2] for layer in layers),
        "theory": depth,
        "per_layer": depth,
    }
    for name, table in result.tables().items():
        assert len(table) == rows[name], name
        assert not table.duplicated(IDS[name]).any(), name
    grid = result.samples[["net", "input"]].to_numpy()
    assert {tuple(r) for r in grid} == {(n, i) for n in range(k) for i in range(b)}
    for name in ("theory", "per_layer"):
        assert result.tables()[name]["layer"].tolist() == list(range(1, depth + 1))
    spectrum = result.spectrum.groupby(["net", "input", "layer"])["rank"]
    assert (spectrum.min() == 1).all() and (spectrum.max() == spectrum.count()).all()


def test_gradient_norms_are_log10_of_the_norm(job) -> None:
    spec, result = job
    chunk = engine.make_chunk(spec, range(spec.networks))
    norms = np.linalg.norm(input_gradient(chunk.net, chunk.X), axis=-1)  # (K, B)
    samples = result.samples.sort_values(["net", "input"])
    got = samples["grad_log10_norm"].to_numpy().reshape(norms.shape)
    np.testing.assert_allclose(got, np.log10(norms), rtol=0, atol=1e-12)
    assert np.ptp(np.log10(norms)) > 0.1  # log10 and ln differ here
    fp = chunk.net.forward(chunk.X)
    np.testing.assert_allclose(
        samples["output"].to_numpy(), fp.activations[-1][..., 0].ravel(), atol=1e-14
    )
    np.testing.assert_allclose(
        samples["input_sq_norm"].to_numpy(), np.mean(chunk.X**2, axis=-1).ravel()
    )
    by_layer = result.layers.set_index(["net", "input", "layer"])
    first = by_layer.xs(1, level="layer").loc[samples.set_index(["net", "input"]).index]
    np.testing.assert_array_equal(first["backprop_log10_norm"], got.ravel())
    assert by_layer.xs(spec.depth, level="layer")["backprop_log10_norm"].isna().all()


def test_jacobian_spectra_are_log10_of_the_singular_values(job) -> None:
    """Against numpy's SVD of the explicit products D^[l] W^[l] ... D^[2] W^[2]."""
    spec, result = job
    chunk = engine.make_chunk(spec, range(spec.networks))
    fp = chunk.net.forward(chunk.X)
    spectrum = result.spectrum.set_index(["net", "input", "layer"]).sort_index()
    layers = result.layers.set_index(["net", "input", "layer"])
    checked = 0
    for net, inp in zip(*engine.spectra_pairs(spec), strict=True):
        jac = np.eye(spec.input_dim)
        for layer in range(2, spec.depth + 1):
            i = layer - 2
            name = spec.activation if layer < spec.depth else spec.output_activation
            d = get_activation(name).derivative(fp.preactivations[i][net, inp])
            step = d[:, None] * chunk.net.weights[i][net]  # J^[l] = D^[l] W^[l]
            jac = step @ jac
            sv = np.linalg.svd(jac, compute_uv=False)[: min(jac.shape)]
            got = spectrum.loc[[(net, inp, layer)]].sort_values("rank")
            np.testing.assert_allclose(
                got["jac_log10_sv"], np.log10(sv), rtol=0, atol=1e-10
            )
            row = layers.loc[(net, inp, layer)]
            layer_sv = np.linalg.svd(step, compute_uv=False)
            np.testing.assert_allclose(
                row[["sv_max", "sv_min"]].to_numpy(float),
                [layer_sv[0], layer_sv[-1]],
                rtol=1e-10,
            )
            np.testing.assert_allclose(
                row[["jac_log10_sv_max", "jac_log10_sv_min"]].to_numpy(float),
                np.log10([sv[0], sv[-1]]),
                rtol=0,
                atol=1e-10,
            )
            checked += 1
    assert checked == len(engine.spectra_pairs(spec)[0]) * (spec.depth - 1)
    assert np.max(np.abs(result.spectrum["jac_log10_sv"])) > 0.1  # ln would differ


def test_a_job_without_spectra_keeps_the_table_dtypes() -> None:
    """``probe.spectra=0``: empty spectral tables with the same columns and dtypes."""
    result = run_probe(
        _spec(depth=4, width=5, input_dim=5, networks=2, inputs=2, spectra=0)
    )
    assert result.spectrum.empty
    for column in ("net", "input", "layer", "rank"):
        assert result.spectrum[column].dtype == np.int64, column
    assert result.spectrum["jac_log10_sv"].dtype == np.float64
    assert result.layers["sv_max"].isna().all()
    assert result.layers["layer"].dtype == np.int64
