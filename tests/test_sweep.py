"""Real sweeps at tiny sizes, run as a user runs them, read back from MLflow."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from conftest import (
    TINY,
    free_port,
    job_runs,
    run_cli,
    run_python,
    search_runs,
    sqlite_uri,
    start_mlflow_server,
    stop_server,
)


def test_depth_range_lands_in_mlflow(tmp_path: Path) -> None:
    out = run_cli(tmp_path, "depth=2..4", *TINY)
    assert out.returncode == 0, out.stderr
    assert "[3/3]" in out.stdout and "mlflow ui --backend-store-uri" in out.stdout
    runs = search_runs(sqlite_uri(tmp_path))
    parents = runs[runs["tags.depthlab.kind"] == "sweep"]
    jobs = runs[runs["tags.depthlab.kind"] == "job"]
    assert len(parents) == 1 and len(jobs) == 3
    assert set(jobs["status"]) == {"FINISHED"}
    assert set(parents["status"]) == {"FINISHED"}
    assert set(jobs["tags.mlflow.parentRunId"]) == {parents["run_id"].iloc[0]}
    assert sorted(jobs["params.depth"].astype(int)) == [2, 3, 4]
    assert set(jobs["tags.mlflow.runName"]) == {
        f"L={d} sigmoid gaussian sw=1 n=8" for d in (2, 3, 4)
    }
    assert jobs["tags.depthlab.config_hash"].nunique() == 3
    assert jobs["metrics.grad_log10_norm_median"].notna().all()
    # Per-layer medians are metrics with step = layer index.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(sqlite_uri(tmp_path))
    deepest = jobs[jobs["params.depth"] == "4"]["run_id"].iloc[0]
    history = client.get_metric_history(deepest, "backprop_log10_norm_median")
    assert sorted(m.step for m in history) == [1, 2, 3]
    artifacts = {a.path for a in client.list_artifacts(deepest, "tables")}
    assert {"tables/samples.parquet", "tables/layers.parquet"} <= artifacts


def test_two_key_sweep_and_resume(tmp_path: Path) -> None:
    # In the sweep's process (n_jobs=1): test_parallel.py resumes a two-key
    # sweep run on workers.
    args = ["depth=2,3", "activation=tanh,relu", "n_jobs=1", *TINY]
    out = run_cli(tmp_path, *args)
    assert out.returncode == 0, out.stderr
    first = job_runs(sqlite_uri(tmp_path))
    assert len(first) == 4
    assert set(first["params.activation"]) == {"tanh", "relu"}
    # Running the same sweep again computes nothing new.
    again = run_cli(tmp_path, *args)
    assert again.returncode == 0, again.stderr
    assert "skipping 4 of 4" in again.stdout
    assert len(job_runs(sqlite_uri(tmp_path))) == 4
    # force=true recomputes.
    forced = run_cli(tmp_path, "depth=2", "activation=tanh", "force=true", *TINY)
    assert forced.returncode == 0, forced.stderr
    assert len(job_runs(sqlite_uri(tmp_path))) == 5


def test_experiment_preset(tmp_path: Path) -> None:
    out = run_cli(tmp_path, "+experiment=vanishing", "depth=2,3", "n_jobs=1", *TINY)
    assert out.returncode == 0, out.stderr
    jobs = job_runs(sqlite_uri(tmp_path), "vanishing")
    # The preset sweeps init over gaussian and higham.
    assert len(jobs) == 4
    assert set(jobs["params.init"]) == {"gaussian", "higham"}
    assert set(jobs["params.activation"]) == {"sigmoid"}


# SIGTERM sent from inside the sweep right after its Nth SQL write to a table,
# i.e. while SQLite's write lock is held: the moment a scheduler's signal hung
# the sweep for minutes before depthlab.interrupts held signals out of writes.
_SIGNAL_DURING_WRITE = """
import os, signal, sys
from sqlalchemy import event
from sqlalchemy.engine import Engine
TABLE, N = sys.argv.pop(1).upper(), int(sys.argv.pop(1))
seen = [0]
@event.listens_for(Engine, "after_cursor_execute")
def _after(conn, cursor, statement, parameters, context, executemany):
    if statement.lstrip().upper().startswith("INSERT INTO " + TABLE + " "):
        seen[0] += 1
        if seen[0] == N:
            os.kill(os.getpid(), signal.SIGTERM)
from depthlab.sweep.cli import main
main()
"""


@pytest.mark.parametrize(
    ("table", "nth"), [("runs", 3), ("latest_metrics", 2), ("params", 3)]
)
def test_signal_inside_a_tracking_write_stops_cleanly(
    tmp_path: Path, table: str, nth: int
) -> None:
    # n_jobs=1: the jobs' writes happen in this process, where the listener is
    # (tests/test_parallel.py stops a sweep on workers).
    args = ["depth=2..5", "n_jobs=1", *TINY]
    out = run_python(
        tmp_path, "-c", _SIGNAL_DURING_WRITE, table, str(nth), *args, timeout=120
    )
    assert out.returncode == 128 + signal.SIGTERM, out.stderr
    assert (
        out.stderr.strip()
        .splitlines()[-1]
        .startswith("depthlab: interrupted by SIGTERM")
    ), out.stderr
    runs = search_runs(sqlite_uri(tmp_path))
    jobs = runs[runs["tags.depthlab.kind"] == "job"]
    sweep_run = runs[runs["tags.depthlab.kind"] == "sweep"]
    assert list(sweep_run["status"]) == ["KILLED"]
    assert "RUNNING" not in set(jobs["status"])
    finished = set(jobs[jobs["status"] == "FINISHED"]["run_id"])
    assert len(finished) < 4

    again = run_cli(tmp_path, *args)
    assert again.returncode == 0, again.stderr
    after = job_runs(sqlite_uri(tmp_path))
    assert (after["status"] == "FINISHED").sum() == 4
    assert finished <= set(after["run_id"])


def test_joblib_launcher_on_fresh_database(tmp_path: Path) -> None:
    out = run_cli(
        tmp_path,
        "depth=2,3",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        *TINY,
    )
    assert out.returncode == 0, out.stderr
    jobs = job_runs(sqlite_uri(tmp_path))
    assert len(jobs) == 2 and set(jobs["status"]) == {"FINISHED"}


def test_tracking_server(tmp_path: Path) -> None:
    port = free_port()
    server = start_mlflow_server(tmp_path, port)
    try:
        uri = f"http://127.0.0.1:{port}"
        out = run_cli(tmp_path, "depth=2,3", f"tracking.uri={uri}", *TINY)
        assert out.returncode == 0, out.stderr
        jobs = job_runs(uri)
        assert len(jobs) == 2 and set(jobs["status"]) == {"FINISHED"}
        assert not (tmp_path / "mlflow.db").exists()
    finally:
        stop_server(server)


# Each value check is tested in process (test_validate.py); here, one case per
# place that refuses, for what only a subprocess shows: exit status 2, one line
# on stderr, no store.
BAD_INPUTS = [
    ("init.sigma_w=nan", "init.sigma_w=nan is not allowed"),  # the CLI's precheck
    # the sweep's memory check:
    ("width=100000", "width=100000 input_dim=4 probe.networks=2"),
    ("tracking.uri=ftp://nowhere", "allowed: a directory path"),
    ("tracking.uri=http://127.0.0.1:9", "http://127.0.0.1:9"),  # the store check
    ("hydra.sweep.dir=/proc/depthlab", "/proc/depthlab"),
]


@pytest.mark.parametrize(("override", "expected"), BAD_INPUTS)
def test_bad_input_fails_fast_with_one_line(
    tmp_path: Path, override: str, expected: str
) -> None:
    tic = time.perf_counter()
    out = run_cli(tmp_path, *TINY, override, timeout=60)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("depthlab: error:") and expected in lines[0]
    assert not (tmp_path / "mlflow.db").exists()
    assert time.perf_counter() - tic < 30  # a dead server must not hang the CLI


def test_help_explains_definitions(tmp_path: Path) -> None:
    out = run_cli(tmp_path, "--help")
    assert out.returncode == 0
    assert "depth L counts layers INCLUDING the input layer" in out.stdout
    assert "depth=2..50" in out.stdout


def test_cfg_job_prints_config(tmp_path: Path) -> None:
    out = run_cli(tmp_path, "--cfg", "job", "depth=7")
    assert out.returncode == 0, out.stderr
    assert "depth: 7" in out.stdout
    assert not (tmp_path / "mlflow.db").exists()


def test_a_bad_value_in_a_users_preset_sweep_fails_fast(tmp_path: Path) -> None:
    """The sweep checks the preset's sweeper params, which the CLI never sees."""
    presets = tmp_path / "presets" / "experiment"
    presets.mkdir(parents=True)
    (presets / "mine.yaml").write_text(
        "# @package _global_\nhydra:\n  sweeper:\n    params:\n"
        "      init.sigma_w: 1.0,nan\n"
    )
    out = run_cli(
        tmp_path,
        *TINY,
        f"hydra.searchpath=[file://{tmp_path / 'presets'}]",
        "+experiment=mine",
        timeout=60,
    )
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines == [
        "depthlab: error: init.sigma_w=nan is not allowed; init.sigma_w must be a "
        "finite number in [0, 100] (a standard deviation; beyond 100 the forward "
        "pass and the theory overflow)"
    ]
    assert not (tmp_path / "mlflow.db").exists()


def test_number_jobs_gives_each_config_its_number_folder_and_totals() -> None:
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    import depthlab.sweep.app  # noqa: F401  (launch is imported through it)
    from depthlab.sweep.launch import number_jobs

    sweeper = SimpleNamespace(
        config=OmegaConf.create({"hydra": {"sweep": {"dir": "multirun/a"}}})
    )
    composed = []
    for _ in range(3):
        cfg = OmegaConf.create(
            {
                "hydra": {"job": {}, "sweep": {"dir": "${oc.env:NOWHERE,x}"}},
                "tracking": {},
            }
        )
        OmegaConf.set_struct(cfg, True)  # as Hydra composes them
        composed.append(cfg)
    number_jobs(sweeper, composed)
    assert [
        (c.hydra.job.id, c.hydra.job.num, c.tracking.job_index, c.tracking.jobs_total)
        for c in composed
    ] == [(0, 0, 0, 3), (1, 1, 1, 3), (2, 2, 2, 3)]
    # The sweep's folder as the sweep's process resolved it, not an
    # interpolation a worker would resolve again.
    assert {OmegaConf.to_container(c.hydra.sweep)["dir"] for c in composed} == {
        "multirun/a"
    }
