"""The probe job's configuration: sizes, precision and memory refused before work."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from depthlab.jobs import memory
from depthlab.jobs.config import Config, ConfigError, config_hash
from depthlab.jobs.probe import ProbeSpec, run_probe
from depthlab.jobs.validate import validate


def _cfg(**probe: object) -> dict:
    d = dataclasses.asdict(Config())
    d["probe"].update(probe)
    return d


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
    spec = ProbeSpec(
        depth=12,
        width=300,
        input_dim=300,
        output_dim=1,
        activation="tanh",
        output_activation="tanh",
        init="gaussian",
        sigma_w=1.0,
        sigma_b=0.0,
        networks=2,
        inputs=8,
        spectra=0,
    )
    from depthlab.jobs import engine

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
