"""The cluster path: Hydra's submitit (local executor) and Ray launchers against
a real ``mlflow server`` on 127.0.0.1, started by the test and always stopped.

``hydra/launcher=submitit_local`` runs every job in its own process through
submitit, the code path of ``submitit_slurm`` without the scheduler;
``hydra/launcher=ray`` runs the jobs as Ray tasks on a local Ray
(``ray.init()`` on this machine). Every job must end FINISHED exactly once,
under the sweep's one parent run. Both are slow (a server, Ray's start).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_sweep import TINY, run_cli, search_runs

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """``mlflow server`` on a free port of 127.0.0.1 with a SQLite store."""
    port = _free_port()
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
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the server and its workers: one process group
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(uri + "/health", timeout=1):
                    break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    pytest.fail(f"mlflow server on port {port} did not start")
                time.sleep(0.5)
        yield uri
    finally:
        with _suppress_lookup():
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with _suppress_lookup():
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()


class _suppress_lookup:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, value: object, tb: object) -> bool:
        return kind is ProcessLookupError


def _assert_each_job_finished_once(uri: str, depths: list[int]) -> None:
    runs = search_runs(uri)
    sweeps = runs[runs["tags.depthlab.kind"] == "sweep"]
    jobs = runs[runs["tags.depthlab.kind"] == "job"]
    assert len(sweeps) == 1 and list(sweeps["status"]) == ["FINISHED"]
    assert len(jobs) == len(depths)
    assert set(jobs["status"]) == {"FINISHED"}
    assert set(jobs["tags.mlflow.parentRunId"]) == {sweeps["run_id"].iloc[0]}
    assert sorted(jobs["params.depth"].astype(int)) == depths
    assert jobs["tags.depthlab.config_hash"].is_unique


def test_submitit_local_against_a_tracking_server(
    tmp_path: Path, mlflow_server: str
) -> None:
    out = run_cli(
        tmp_path,
        "depth=2..4",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        f"tracking.uri={mlflow_server}",
        *TINY,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    _assert_each_job_finished_once(mlflow_server, [2, 3, 4])
    assert not (tmp_path / "mlflow.db").exists()
    # submitit kept each job's own log folder and result.
    assert list((tmp_path / "multirun").rglob("*_result.pkl"))


def test_ray_launcher_on_a_local_ray(tmp_path: Path, mlflow_server: str) -> None:
    pytest.importorskip("ray", reason="pip install 'depthlab[ray]' (see README)")
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    out = run_cli(
        tmp_path,
        "depth=2..4",
        "hydra/launcher=ray",
        "+hydra.launcher.ray.init.num_cpus=2",
        "+hydra.launcher.ray.init.include_dashboard=false",
        f"tracking.uri={mlflow_server}",
        *TINY,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    _assert_each_job_finished_once(mlflow_server, [2, 3, 4])
