"""Shared fixtures and helpers: a seeded generator; a small probe job; the CLI
run as a user runs it; a real mlflow server; the runs of a store.

Test modules import the helpers directly (``from conftest import run_cli``):
pytest puts this folder on ``sys.path`` (tests/ is not a package).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from depthlab.jobs.probe import ProbeSpec
from depthlab.network import Network, init_network

TINY_JOB = [
    "width=8",
    "input_dim=4",
    "probe.networks=2",
    "probe.inputs=3",
    "probe.spectra=1",
]
"""Overrides that make a probe job take milliseconds."""
TINY = [*TINY_JOB, "report=false"]
"""The same, without the report at the end of the sweep."""
INTERRUPTIBLE = [
    "depth=2..16",
    "width=32",
    "input_dim=8",
    "probe.networks=8",
    "probe.inputs=8",
    "probe.spectra=2",
    "report=false",
]
"""A sweep of short jobs, enough of them to be stopped in the middle."""
INTERRUPTIBLE_JOBS = 15
"""The jobs of :data:`INTERRUPTIBLE`."""
CACHE_DIR = Path(tempfile.mkdtemp(prefix="depthlab-test-cache-"))
"""depthlab's cache folder for the whole test session (this process and every
subprocess it starts), so that no test reads or writes the user's real cache;
removed when the session ends (:func:`pytest_unconfigure`)."""
os.environ["DEPTHLAB_CACHE_DIR"] = str(CACHE_DIR)
QUIET_ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}
"""The environment of a subprocess: this one, less Python's warnings."""
SPEC = ProbeSpec(
    depth=6,
    width=12,
    input_dim=5,
    output_dim=1,
    activation="tanh",
    output_activation="tanh",
    init="gaussian",
    sigma_w=1.5,
    sigma_b=0.2,
    networks=7,
    inputs=3,
    spectra=5,
)
"""A probe job of milliseconds: 7 tanh networks of depth 6 and width 12 at
sigma_w = 1.5, sigma_b = 0.2; 3 inputs of dimension 5; 5 spectra."""


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove :data:`CACHE_DIR` (in xdist's controller and in each worker)."""
    shutil.rmtree(CACHE_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The migrated store template in :data:`CACHE_DIR`, made now if absent, so
    that new stores of the session's subprocesses are copies of it."""
    from depthlab import tracking
    from depthlab.tracking import template

    path = template.template_path()
    if not path.is_file():
        tracking._client(tracking.default_uri(tmp_path_factory.mktemp("template")))
    assert path.is_file()
    return path


@pytest.fixture(scope="module")
def hydra_config() -> Iterator[None]:
    """Hydra initialized on depthlab's config folder, for ``hydra.compose``."""
    from hydra import initialize_config_dir

    from depthlab.sweep import app

    with initialize_config_dir(config_dir=app.CONFIG_PATH, version_base="1.3"):
        yield


@pytest.fixture
def big_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The validator's memory check sees a machine of 16 GiB."""
    from depthlab.jobs import validate

    monkeypatch.setattr(validate, "machine_bytes", lambda: 16 * 2**30)


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """A generator seeded from the test's name: reproducible and per-test."""
    seed = sum(ord(c) * (i + 1) for i, c in enumerate(request.node.nodeid))
    return np.random.default_rng(seed)


def probe_spec(**changes: Any) -> ProbeSpec:
    """:data:`SPEC` with the fields ``changes`` names replaced."""
    return dataclasses.replace(SPEC, **changes)


def _python(cwd: Path, argv: list[str], env: dict[str, str] | None) -> dict[str, Any]:
    """The keywords of :func:`subprocess.run` and :class:`subprocess.Popen` for
    ``python ARGV`` in ``cwd``: text output, ``env`` or :data:`QUIET_ENV`."""
    env = QUIET_ENV if env is None else env
    return {"args": [sys.executable, *argv], "cwd": cwd, "text": True, "env": env}


def run_python(
    cwd: Path, *argv: str, timeout: float = 180, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``python ARGV`` in ``cwd`` (output captured, text), as a user runs it."""
    return subprocess.run(
        **_python(cwd, list(argv), env), capture_output=True, timeout=timeout
    )


def run_python_json(cwd: Path, code: str, *args: str) -> Any:
    """The JSON object that ``python -c CODE ARGS`` prints last (it must exit 0)."""
    import json

    done = run_python(cwd, "-c", code, *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def run_cli(
    cwd: Path, *args: str, timeout: float = 240, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``python -m depthlab ARGS`` in ``cwd``."""
    return run_python(cwd, "-m", "depthlab", *args, timeout=timeout, env=env)


def popen_cli(cwd: Path, *args: str, **popen: Any) -> subprocess.Popen:
    """``python -m depthlab ARGS`` in ``cwd``, started and not waited for (its
    output in pipes; ``popen``: more keywords of :class:`subprocess.Popen`)."""
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    argv = ["-m", "depthlab", *args]
    return subprocess.Popen(**_python(cwd, argv, None), **pipes, **popen)


def sqlite_uri(cwd: Path) -> str:
    """The tracking URI of the default store of a sweep run in ``cwd``."""
    return f"sqlite:///{cwd / 'mlflow.db'}"


def search_runs(uri: str, experiment: str = "depthlab"):
    """Every run of ``experiment`` in the store ``uri`` (mlflow.search_runs)."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[experiment], max_results=10000)


def job_runs(uri: str, experiment: str = "depthlab"):
    """The job runs (tag depthlab.kind=job) of :func:`search_runs`."""
    runs = search_runs(uri, experiment)
    return runs[runs["tags.depthlab.kind"] == "job"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow_server(folder: Path, port: int) -> subprocess.Popen:
    """A real ``mlflow server`` on ``port``, its store and artifacts in ``folder``,
    returned once it answers /health (a test failure if it does not in 90 s).

    It runs in a session of its own: :func:`stop_server` kills its workers too.
    """
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{folder / 'server.db'}",
            "--artifacts-destination",
            str(folder / "artifacts"),
        ],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 90
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return server
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                stop_server(server)
                pytest.fail(f"mlflow server on port {port} did not start")
            time.sleep(0.5)


def finished_jobs(db: Path) -> int:
    """How many job runs of the SQLite store ``db`` are FINISHED (0 while it
    cannot be read: absent, locked, or being written)."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as con:
            row = con.execute(
                "select count(*) from runs r join tags t on r.run_uuid = t.run_uuid "
                "where r.status = 'FINISHED' and t.key = 'depthlab.kind' "
                "and t.value = 'job'"
            ).fetchone()
        return int(row[0])
    except sqlite3.Error:
        return 0


def stop_server(server: subprocess.Popen) -> None:
    """Kill a server of :func:`start_mlflow_server` and its workers; wait for it."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=30)


def make_net(
    widths: list[int],
    rng: np.random.Generator | int,
    *,
    activation: str = "tanh",
    init: str = "gaussian",
    sigma_w: float = 1.0,
    sigma_b: float = 0.1,
    **options: Any,
) -> Network:
    """:func:`depthlab.init_network` with a test network's defaults; ``rng`` may be
    a seed (then ``np.random.default_rng(rng)``). ``options``: its other keywords."""
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    return init_network(
        widths,
        activation=activation,
        init=init,
        sigma_w=sigma_w,
        sigma_b=sigma_b,
        rng=rng,
        **options,
    )


def assert_unknown_name(lookup: Any, bad: Any, what: str, valid: Any) -> None:
    """``lookup(bad)`` raises one line "unknown <what>" naming ``bad`` and every
    name in ``valid``."""
    with pytest.raises(ValueError, match=f"unknown {what}") as info:
        lookup(bad)
    message = str(info.value)
    assert "\n" not in message and repr(bad) in message
    assert all(name in message for name in valid)
