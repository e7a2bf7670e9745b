"""The cluster path: Hydra's submitit (local executor) and Ray launchers against
a real ``mlflow server`` on 127.0.0.1, started by the test and always stopped.

``hydra/launcher=submitit_local`` runs every job in its own process through
submitit, the code path of ``submitit_slurm`` without the scheduler;
``hydra/launcher=ray`` runs the jobs as Ray tasks on a local Ray
(``ray.init()`` on this machine). Every job must end FINISHED exactly once,
under the sweep's one parent run. Both are slow (a server, Ray's start).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    TINY,
    free_port,
    run_cli,
    search_runs,
    start_mlflow_server,
    stop_server,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """``mlflow server`` on a free port of 127.0.0.1 with a SQLite store."""
    port = free_port()
    server = start_mlflow_server(tmp_path, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(server)


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


LAUNCHERS = {
    "submitit_local": ["hydra.launcher.timeout_min=10"],
    "ray": [
        "+hydra.launcher.ray.init.num_cpus=2",
        "+hydra.launcher.ray.init.include_dashboard=false",
    ],
}
"""Each launcher's own overrides."""


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_a_launcher_against_a_tracking_server(
    tmp_path: Path, mlflow_server: str, launcher: str
) -> None:
    if launcher == "ray":
        pytest.importorskip("ray", reason="pip install 'depthlab[ray]' (see README)")
        pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    out = run_cli(
        tmp_path,
        "depth=2..4",
        f"hydra/launcher={launcher}",
        *LAUNCHERS[launcher],
        f"tracking.uri={mlflow_server}",
        *TINY,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    _assert_each_job_finished_once(mlflow_server, [2, 3, 4])
    assert not (tmp_path / "mlflow.db").exists()
    if launcher == "submitit_local":
        # submitit kept each job's own log folder and result.
        assert list((tmp_path / "multirun").rglob("*_result.pkl"))
