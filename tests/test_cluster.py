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
    TINY_JOB,
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


def test_a_report_reads_the_tables_it_needs_from_a_tracking_server(
    tmp_path: Path, mlflow_server: str
) -> None:
    """Through the server (artifacts downloaded, not read in place): the
    sweep's report is built, and the tables a report reads (each run's
    REPORT_TABLES, the deepest runs' spectra) are the rows of a full read."""
    import pandas as pd

    from depthlab import tracking
    from depthlab.report import prepare
    from depthlab.tracking.read import REPORT_TABLES

    out = run_cli(
        tmp_path,
        "depth=2..4",
        "n_jobs=1",
        f"tracking.uri={mlflow_server}",
        *TINY_JOB,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert "report failed" not in out.stderr
    assert "Downloading artifacts" not in out.stderr  # no progress bars
    assert list((tmp_path / "multirun").rglob("jacobian_spectrum.png"))
    parent = tracking.latest_sweep_id(mlflow_server, "depthlab")
    full = tracking.load_sweep(mlflow_server, parent)
    some = tracking.load_sweep(mlflow_server, parent, tables=REPORT_TABLES)
    assert set(some.tables) == set(REPORT_TABLES) & set(full.tables)
    for name, table in some.tables.items():
        pd.testing.assert_frame_equal(table, full.tables[name], check_exact=True)
    deepest = prepare(some).deepest()["run_id"]
    spectrum = full.tables["spectrum"]
    expected = spectrum[spectrum["run_id"].isin(deepest)].reset_index(drop=True)
    assert len(expected) > 0
    pd.testing.assert_frame_equal(
        some.read_table("spectrum", deepest), expected, check_exact=True
    )
