"""Faults of the store and of the file system, with real components, as a user
meets them: a corrupted or truncated mlflow.db, a full database (SQLite's
max_page_count), a real ``mlflow server`` killed mid-sweep, a sweep killed with
SIGKILL, two identical sweeps at once on a fresh store, a report folder that
cannot be written. Each checks the one line, the exit status, the final status
of every run (none RUNNING), and that the resumed sweep computed nothing twice.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from conftest import (
    QUIET_ENV,
    TINY,
    TINY_JOB,
    finished_jobs,
    free_port,
    popen_cli,
    run_cli,
    search_runs,
    start_mlflow_server,
    stop_server,
)

from depthlab.sweep import workers

SLOWER = [  # jobs long enough that a fault lands inside one
    "width=48",
    "input_dim=16",
    "probe.networks=16",
    "probe.inputs=8",
    "probe.spectra=2",
    "report=false",
]
JOB_LINE = re.compile(r"^\[\s*\d+/\d+\] .*\d s$")


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("depthlab: error: tracking store "), stderr
    return lines[0]


def assert_all_finished_once(uri: str, total: int) -> None:
    runs = search_runs(uri)
    assert "RUNNING" not in set(runs["status"])
    jobs = runs[runs["tags.depthlab.kind"] == "job"]
    finished = jobs[jobs["status"] == "FINISHED"]
    assert finished["tags.depthlab.config_hash"].is_unique
    assert len(finished) == total


def computed_and_recovered(stdout: str) -> tuple[int, int]:
    lines = [line for line in stdout.splitlines() if line.startswith("[")]
    recovered = sum("recovered from" in line for line in lines)
    computed = sum(
        bool(JOB_LINE.match(line)) and "recovered from" not in line for line in lines
    )
    return computed, recovered


def full_store_line(
    out: subprocess.CompletedProcess, db: Path, total: int
) -> tuple[str, int]:
    """The one line of a sweep of ``total`` jobs stopped with exit status 2 by
    its full store ``db``, and the jobs that finished there (the line says how
    many)."""
    assert out.returncode == 2, out.stderr
    line = one_error_line(out.stderr)
    assert f"tracking store {db} is full" in line
    finished = finished_jobs(db)
    assert f"{finished} of {total} jobs finished and are kept" in line
    return line, finished


def assert_resumed(
    again: subprocess.CompletedProcess, uri: str, total: int, left: int, recovered: int
) -> None:
    """The same sweep run again ended well: it took ``recovered`` jobs from
    where they were kept, computed the rest of the ``left`` that had not
    finished, and every one of the ``total`` jobs is FINISHED once."""
    assert again.returncode == 0, again.stderr
    computed, got = computed_and_recovered(again.stdout)
    assert got == recovered
    assert computed == left - recovered
    assert_all_finished_once(uri, total)


def wait_until(predicate, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline or proc.poll() is not None:
            return
        time.sleep(0.05)


def pending_folders(root: Path) -> list[Path]:
    return [
        p for p in root.glob("multirun/*/*/pending/*") if not p.name.startswith(".")
    ]


@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_corrupted_store_is_one_line(tmp_path: Path, how: str) -> None:
    db = tmp_path / "mlflow.db"
    if how == "garbage":
        db.write_bytes(b"this is not a database\n" * 1000)
    else:
        assert run_cli(tmp_path, "depth=2,3", "n_jobs=1", *TINY).returncode == 0
        for ext in ("-wal", "-shm"):
            db.with_name(db.name + ext).unlink(missing_ok=True)
        data = db.read_bytes()
        db.write_bytes(data[: len(data) // 3])
    out = run_cli(tmp_path, "depth=2..4", *TINY, timeout=60)
    assert out.returncode == 2
    line = one_error_line(out.stderr)
    assert line.startswith(
        f"depthlab: error: tracking store {db} is not an SQLite database"
    )
    assert "no job was started" in line and "move the file away" in line


_FULL_DATABASE = """
import os
if os.environ.get("DEPTHLAB_TEST_MAX_PAGES"):
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _limit(connection, record):
        pages = os.environ["DEPTHLAB_TEST_MAX_PAGES"]
        connection.execute(f"PRAGMA max_page_count = {pages}")
"""


def full_database_cli(
    tmp_path: Path, pages: int, *args: str
) -> subprocess.CompletedProcess:
    """The CLI with every SQLite connection limited to ``pages`` pages, in the
    sweep's process and in its workers (a sitecustomize module: the workers are
    forked from a forkserver that starts Python afresh)."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_FULL_DATABASE)
    path = os.pathsep.join(p for p in (str(site), QUIET_ENV.get("PYTHONPATH")) if p)
    env = {**QUIET_ENV, "PYTHONPATH": path, "DEPTHLAB_TEST_MAX_PAGES": str(pages)}
    return run_cli(tmp_path, *args, env=env)


def _pages(db: Path) -> int:
    with sqlite3.connect(db) as con:
        return int(con.execute("PRAGMA page_count").fetchone()[0])


@pytest.mark.slow
def test_full_database_mid_sweep_then_resume(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    assert run_cli(tmp_path, "depth=2", *TINY).returncode == 0
    before = _pages(db)
    assert run_cli(tmp_path, "depth=3", *TINY).returncode == 0
    per_job = _pages(db) - before  # one job and one sweep run
    args = ["depth=2..14", *TINY]
    limit = _pages(db) + 4 * per_job
    out = full_database_cli(tmp_path, limit, *args)  # on the default workers
    line, finished = full_store_line(out, db, 13)
    assert 3 <= finished < 13
    assert line.endswith("free space and run the same command to resume")
    saved = len(pending_folders(tmp_path))

    assert_resumed(run_cli(tmp_path, *args), uri, 13, 13 - finished, saved)
    assert not pending_folders(tmp_path)


@pytest.mark.slow
def test_server_killed_mid_sweep_then_resume(tmp_path: Path) -> None:
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    args = ["depth=2..16", f"tracking.uri={uri}", *SLOWER]
    server = start_mlflow_server(tmp_path, port)
    try:
        sweep = popen_cli(tmp_path, *args)
        try:
            wait_until(lambda: finished_jobs(tmp_path / "server.db") >= 4, 180, sweep)
            stop_server(server)
            # Within a minute: MLflow's own retries would take minutes.
            _, err = sweep.communicate(timeout=60)
        finally:
            if sweep.poll() is None:
                sweep.kill()
                sweep.communicate()
        assert sweep.returncode == 2, err
        line = one_error_line(err)
        assert f"tracking store {uri} does not answer" in line
        assert line.endswith("start the server and run the same command to resume")
        finished = finished_jobs(tmp_path / "server.db")
        assert 4 <= finished < 15
        kept = int(re.search(r"(\d+) of 15 jobs finished and are kept", line)[1])
        # The last write of each worker may reach the server while its answer
        # is lost: then the job is FINISHED in the store and also kept in the
        # sweep folder.
        n_workers, _ = workers.plan(None, 15)
        assert finished - n_workers <= kept <= finished
        saved = len(pending_folders(tmp_path))
        assert 0 <= saved <= n_workers
        assert (saved >= 1) == ("kept in" in line)
        assert saved >= finished - kept

        server = start_mlflow_server(tmp_path, port)
        again = run_cli(tmp_path, *args)
        assert_resumed(again, uri, 15, 15 - finished, saved - (finished - kept))
        assert not pending_folders(tmp_path)
    finally:
        stop_server(server)


@pytest.mark.slow
def test_sigkill_leaves_no_run_running_after_resume(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    args = ["depth=2..20", *SLOWER]
    sweep = popen_cli(tmp_path, *args)
    try:
        wait_until(lambda: finished_jobs(db) >= 3, 180, sweep)
        sweep.kill()
        sweep.communicate(timeout=30)
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.communicate()
    runs = search_runs(uri)
    running = set(runs[runs["status"] == "RUNNING"]["run_id"])
    # The sweep run, and the jobs in flight on its workers (killed with it).
    assert 1 <= len(running) <= 1 + workers.plan(None, 19)[0]
    finished = finished_jobs(db)

    again = run_cli(tmp_path, *args)
    assert again.returncode == 0, again.stderr
    assert f"ended {len(running)} RUNNING run(s) whose process is gone" in again.stdout
    runs = search_runs(uri).set_index("run_id")
    for run_id in running:
        assert runs.loc[run_id, "status"] == "KILLED"
        assert "is gone" in runs.loc[run_id, "tags.depthlab.end_reason"]
    computed, _ = computed_and_recovered(again.stdout)
    assert computed == 19 - finished
    assert_all_finished_once(uri, 19)


@pytest.mark.slow
def test_identical_sweeps_at_once_on_a_fresh_store(
    tmp_path: Path, store_template: Path
) -> None:
    """Three identical sweeps at once on a new store, which the first copies
    from the store template (the sweeps' cache folder holds one)."""
    args = ["depth=2..9", *TINY]
    sweeps = [popen_cli(tmp_path, *args) for _ in range(3)]
    outs = [s.communicate(timeout=300) for s in sweeps]
    for s, (_, err) in zip(sweeps, outs, strict=True):
        assert s.returncode == 0, err
        assert "Traceback" not in err
    assert_all_finished_once(f"sqlite:///{tmp_path / 'mlflow.db'}", 8)
    ran = [int(re.search(r"sweep done: (\d+) ran", out).group(1)) for out, _ in outs]
    assert sum(ran) == 8  # every job computed once, by one of the sweeps
    runs = search_runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parents = runs[runs["tags.depthlab.kind"] == "sweep"]
    assert list(parents["status"]) == ["FINISHED"] * 3


@pytest.mark.slow
def test_report_folder_that_cannot_be_written(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sw"
    (sweep_dir / "report.html").mkdir(parents=True)  # a file cannot go there
    out = run_cli(
        tmp_path, "depth=2,3", *TINY_JOB, "report=true", f"hydra.sweep.dir={sweep_dir}"
    )
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("depthlab: report not written: cannot write ")
    assert str(sweep_dir) in lines[0] and "the runs are kept in sqlite:///" in lines[0]
    assert_all_finished_once(f"sqlite:///{tmp_path / 'mlflow.db'}", 2)


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 9 MB tmpfs (needs root, as in CI); skipped where mounting is refused."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=9m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.slow
def test_full_disk_mid_sweep_then_resume(small_disk: Path, tmp_path: Path) -> None:
    # The store, its artifacts and the sweep folder all on one 9 MB disk:
    # the computed job cannot be kept there and goes to the temporary folder.
    db = small_disk / "mlflow.db"
    args = ["depth=2..40", "width=48", "input_dim=16", "probe.networks=16"]
    env = {**QUIET_ENV, "TMPDIR": str(tmp_path)}
    out = run_cli(small_disk, *args, "report=false", timeout=600, env=env)
    line, finished = full_store_line(out, db, 39)
    assert 1 <= finished < 39
    kept = list(tmp_path.glob("depthlab-pending-*/pending/*"))
    # At most one computed job per worker meets the full disk.
    assert len(kept) <= workers.plan(None, 39)[0]
    assert (len(kept) >= 1) == ("kept in" in line)

    subprocess.run(["mount", "-o", "remount,size=400m", str(small_disk)], check=True)
    again = run_cli(small_disk, *args, "report=false", timeout=600, env=env)
    assert_resumed(again, f"sqlite:///{db}", 39, 39 - finished, len(kept))
    assert not list(tmp_path.glob("depthlab-pending-*/pending/*"))
