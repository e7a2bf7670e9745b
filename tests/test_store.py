"""The shared store in-process: the file lock, owners, claims, faults, pending."""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from depthlab import tracking
from depthlab.tracking import pending, store, template

_TRY_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    sys.exit(3)
"""


def _other_process_can_lock(path: Path) -> bool:
    out = subprocess.run([sys.executable, "-c", _TRY_LOCK, str(path)], timeout=30)
    return out.returncode == 0


def test_lock_beside_the_database_excludes_other_processes(tmp_path: Path) -> None:
    uri = tracking.default_uri(tmp_path)
    lock = store.lock_path(uri)
    assert lock == tmp_path / "mlflow.db.lock"
    with store.store_lock(uri):
        with store.store_lock(uri):  # re-entrant in one thread
            assert not _other_process_can_lock(lock)
        assert not _other_process_can_lock(lock)
    assert _other_process_can_lock(lock)
    assert store.lock_path("http://127.0.0.1:5000") is None


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_owner_alive_dead_reused_and_remote() -> None:
    me = store.this_process()
    assert me.alive() is True and me.start
    assert store.Owner.from_tags(me.tags()) == me
    assert store.Owner(me.host, _dead_pid(), me.start).alive() is False
    # The same pid with another start time: the pid was reused by a new process.
    parent = os.getppid()
    assert store.Owner(me.host, parent, store.process_start(parent)).alive() is True
    assert store.Owner(me.host, parent, "0:0").alive() is False
    assert store.Owner("another-host", 1, "").alive() is None
    assert store.Owner.from_tags({"other": "1"}) is None


def test_claims_by_config_hash(tmp_path: Path) -> None:
    uri = tracking.default_uri(tmp_path)
    assert tracking.open_store(uri, "t") == 0
    parent = tracking.start_sweep(uri, "t", run_name="sweep", params={})
    first = tracking.claim_job(uri, "t", parent, "L=2", "h1")
    run = tracking._client(uri).get_run(first)
    assert run.info.status == "RUNNING"
    assert run.data.tags[store.PID_TAG] == str(os.getpid())
    # A live claim (this process) stops a second claim of the same hash.
    with pytest.raises(tracking.JobTaken) as info:
        tracking.claim_job(uri, "t", parent, "L=2", "h1")
    assert not info.value.finished and info.value.run_id == first
    # Another hash is free.
    other = tracking.claim_job(uri, "t", parent, "L=3", "h2")
    tracking._client(uri).set_terminated(other, "FINISHED")
    with pytest.raises(tracking.JobTaken) as info:
        tracking.claim_job(uri, "t", parent, "L=3", "h2")
    assert info.value.finished
    # force=true claims a FINISHED job again.
    forced = tracking.claim_job(uri, "t", parent, "L=3", "h2", force=True)
    assert forced != other


@dataclasses.dataclass
class JobStore:
    """An open store ``t``: its URI, client and job experiment."""

    uri: str
    client: Any
    exp_id: str

    def job_run(
        self,
        owner: store.Owner,
        config_hash: str = "",
        run_name: str | None = None,
        **tags: str,
    ) -> str:
        """A RUNNING job run owned by ``owner`` (tagged with ``config_hash``
        unless it is ''); ``tags``: more tags."""
        tags = {tracking.KIND_TAG: "job", **owner.tags(), **tags}
        if config_hash:
            tags[tracking.HASH_TAG] = config_hash
        run = self.client.create_run(self.exp_id, run_name=run_name, tags=tags)
        return run.info.run_id


@pytest.fixture
def job_store(tmp_path: Path) -> JobStore:
    uri = tracking.default_uri(tmp_path)
    tracking.open_store(uri, "t")
    return JobStore(uri, tracking._client(uri), tracking._job_experiment_id(uri, "t"))


def _dead_owner() -> store.Owner:
    """An owner on this host whose process is gone."""
    me = store.this_process()
    return store.Owner(me.host, _dead_pid(), me.start)


_REMOTE = store.Owner("another-host", 1, "")


def test_a_dead_claim_is_ended_and_claimable_again(job_store: JobStore) -> None:
    uri, client = job_store.uri, job_store.client
    dead = _dead_owner()
    orphan = job_store.job_run(dead, "h1", "L=2")
    kept = job_store.job_run(_REMOTE)
    assert tracking.claim_job(uri, "t", None, "L=2", "h1") != orphan
    run = client.get_run(orphan)
    assert run.info.status == "KILLED"
    assert f"({dead}) is gone" in run.data.tags[store.END_REASON_TAG]
    # open_store ends the other dead runs of this host, not another host's.
    orphan2 = job_store.job_run(dead)
    assert tracking.open_store(uri, "t") == 1
    assert client.get_run(orphan2).info.status == "KILLED"
    assert client.get_run(kept).info.status == "RUNNING"


def test_a_run_its_process_finished_is_not_ended_as_dead(job_store: JobStore) -> None:
    """The race of three identical sweeps at once: process A ends its run
    FINISHED and exits; process B, holding A's run as RUNNING from an earlier
    search, finds A gone. B reads the run again under the store's lock (which A
    held to end it) and leaves it FINISHED; it used to end it KILLED and compute
    the job again."""
    uri, client = job_store.uri, job_store.client
    run_id = job_store.job_run(_dead_owner(), "h1", "L=2")
    stale = client.get_run(run_id)  # what B's search saw: RUNNING
    client.set_terminated(run_id, status="FINISHED")  # A's end, then A exits
    assert not tracking._end_if_dead(client, uri, stale)
    assert client.get_run(run_id).info.status == "FINISHED"
    with pytest.raises(tracking.JobTaken) as taken:
        tracking.claim_job(uri, "t", None, "L=2", "h1")
    assert taken.value.finished


def test_a_remote_claim_is_ended_when_its_heartbeat_is_stale(
    job_store: JobStore,
) -> None:
    uri, client = job_store.uri, job_store.client
    now = time.time()

    def remote_claim(config_hash: str, beat: float) -> str:
        heartbeat = {store.HEARTBEAT_TAG: f"{beat:.0f}"}
        return job_store.job_run(_REMOTE, config_hash, **heartbeat)

    fresh = remote_claim("h1", now - store.HEARTBEAT_S)
    stale = remote_claim("h2", now - store.STALE_S - 60)
    with pytest.raises(tracking.JobTaken, match="another-host"):
        tracking.claim_job(uri, "t", None, "L=2", "h1")
    tracking.claim_job(uri, "t", None, "L=3", "h2")
    assert client.get_run(fresh).info.status == "RUNNING"
    run = client.get_run(stale)
    assert run.info.status == "KILLED"
    assert "sent no heartbeat for" in run.data.tags[store.END_REASON_TAG]


@pytest.mark.parametrize("with_template", [True, False])
def test_experiment_is_created_once_by_concurrent_processes(
    tmp_path: Path, store_template: Path, with_template: bool
) -> None:
    """Three processes on a new store at once, with the session's store template
    (the first copies it) and with an empty cache (the first migrates)."""
    code = (
        "import sys; from depthlab import tracking; "
        "print(tracking.open_store(tracking.default_uri(sys.argv[1]), 'e'))"
    )
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if not with_template:
        env[template.CACHE_ENV] = str(tmp_path / "cache")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    with sqlite3.connect(tmp_path / "mlflow.db") as con:
        names = con.execute("select name from experiments").fetchall()
    assert sorted(names) == [("Default",), ("e",)]
    assert (tmp_path / "cache").exists() is not with_template


def _sqlite_error(statements: list[str], db: Path, **connect) -> sqlite3.Error:
    try:
        with sqlite3.connect(db, **connect) as con:
            for s in statements:
                con.execute(s)
    except sqlite3.Error as err:
        return err
    raise AssertionError("no error")


def test_real_sqlite_errors_are_classified(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    err = _sqlite_error(["select * from sqlite_master"], garbage)
    assert store.classify(err) == store.NOT_A_DATABASE

    full = tmp_path / "full.db"
    err = _sqlite_error(
        [
            "PRAGMA max_page_count = 3",
            "create table t (x)",
            "insert into t values (zeroblob(100000))",
        ],
        full,
    )
    assert store.classify(err) == store.DISK_FULL

    locked = tmp_path / "locked.db"
    holder = sqlite3.connect(locked, isolation_level=None)
    holder.execute("create table t (x)")
    holder.execute("begin exclusive")
    try:
        err = _sqlite_error(["insert into t values (1)"], locked, timeout=0)
    finally:
        holder.execute("rollback")
        holder.close()
    assert store.classify(err) == store.LOCKED

    err = _sqlite_error(
        ["insert into t values (1)"], f"file:{locked}?mode=ro", uri=True
    )
    assert store.classify(err) == store.PERMISSION
    assert store.classify(ValueError("a bug")) is None
    assert store.classify(OSError(28, "No space left on device")) == store.DISK_FULL


def test_a_dead_server_is_one_line_after_one_retry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    for key in tracking.HTTP_LIMITS:
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(store.StoreFault) as info:
        tracking.finished_runs(uri, "t")
    # One retry after 1 s; MLflow's defaults (7 retries, backoff 2) take minutes.
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "1"
    assert info.value.cause == store.UNREACHABLE
    line = info.value.line("3 of 9 jobs finished and are kept")
    assert line == (
        f"tracking store {uri} does not answer (server unreachable); 3 of 9 jobs "
        f"finished and are kept; start the server and run the same command to resume"
    )


def test_a_truncated_or_foreign_file_is_not_a_database(tmp_path: Path) -> None:
    uri = tracking.default_uri(tmp_path)
    tracking.open_store(uri, "t")
    tracking._client.cache_clear()
    db = tmp_path / "mlflow.db"
    for ext in ("-wal", "-shm"):
        db.with_name(db.name + ext).unlink(missing_ok=True)
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])
    with pytest.raises(store.StoreFault) as info:
        store.check_database_file(uri)
    assert info.value.cause == store.NOT_A_DATABASE
    assert info.value.line().startswith(f"tracking store {db} is not an SQLite")
    db.write_bytes(b"\x00" * 4096)
    with pytest.raises(store.StoreFault):
        tracking.open_store(uri, "t")


def test_pending_record_round_trip(tmp_path: Path) -> None:
    record = tracking.JobRecord(
        run_name="L=2",
        params={"depth": 2, "output_activation": None, "hidden_widths": [3, 4]},
        config_hash="abc",
        summary={"g": -math.inf, "b": 0.5, "n": math.nan},
        per_layer=pd.DataFrame({"layer": [1, 2], "chi": [0.5, 1.5]}),
        tables={"samples": pd.DataFrame({"net": [0, 1], "g": [1.0, 2.0]})},
        config_yaml="depth: 2\n",
        extra_metrics=[("loss", 0.25, 10)],
    )
    folder = pending.save(tmp_path, record, "median 1.0")
    assert folder == tmp_path / "pending" / "abc"
    assert pending.find([tmp_path / "x", tmp_path], ["abc", "zzz"]) == {"abc": folder}
    back, line = pending.load(folder)
    assert line == "median 1.0"
    assert back.params == record.params
    assert back.summary["g"] == -math.inf and math.isnan(back.summary["n"])
    assert back.extra_metrics == [("loss", 0.25, 10)]
    pd.testing.assert_frame_equal(back.per_layer, record.per_layer)
    pd.testing.assert_frame_equal(back.tables["samples"], record.tables["samples"])
    pending.remove(folder)
    assert not (tmp_path / "pending").exists()


def test_a_computed_job_goes_to_the_fallback_when_the_sweep_folder_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from depthlab.sweep.app import _keep_computed

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    not_a_folder = tmp_path / "sweep"
    not_a_folder.write_text("a file where the sweep folder should be")
    record = tracking.JobRecord(
        run_name="L=2",
        params={"depth": 2},
        config_hash="abc",
        summary={"g": 1.0},
        per_layer=None,
        tables={},
        config_yaml="",
    )
    uri = tracking.default_uri(tmp_path)
    fault = store.StoreFault(uri, store.DISK_FULL)
    _keep_computed(fault, not_a_folder, uri, record, "line")
    fallback = pending.fallback_dir(uri)
    assert fallback.parent == tmp_path / "tmp"
    assert fault.saved == [str(fallback / "pending" / "abc")] and not fault.unsaved
    assert pending.find([not_a_folder, fallback], ["abc"])
    # Neither folder can be written: the line says what was lost and why.
    monkeypatch.setattr(tempfile, "tempdir", str(not_a_folder))
    fault = store.StoreFault(uri, store.DISK_FULL)
    _keep_computed(fault, not_a_folder, uri, record, "line")
    assert not fault.saved and "Not a directory" in fault.unsaved[0]


def test_heartbeat_is_renewed_while_a_job_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The heartbeat runs for tracking servers only; here it runs on SQLite.
    monkeypatch.setattr(tracking, "store_lock_is_file", lambda uri: False)
    monkeypatch.setattr(tracking, "HEARTBEAT_S", 0.05)
    uri = tracking.default_uri(tmp_path)
    client = tracking._client(uri)
    with tracking.job_run(uri, "t", None, "L=2", "h1") as run_id:
        deadline = time.time() + 30
        while store.HEARTBEAT_TAG not in client.get_run(run_id).data.tags:
            assert time.time() < deadline, "no heartbeat"
            time.sleep(0.05)
    beat = float(client.get_run(run_id).data.tags[store.HEARTBEAT_TAG])
    assert abs(beat - time.time()) < 60
    assert client.get_run(run_id).info.status == "FINISHED"


def test_an_exited_unreaped_process_is_gone() -> None:
    # A zombie still has /proc/<pid>/stat; it must not count as its runs' owner.
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    owner = store.Owner(
        socket.gethostname(), child.pid, store.process_start(child.pid) or ""
    )
    deadline = time.time() + 30
    while store.process_start(child.pid) is not None and time.time() < deadline:
        time.sleep(0.05)  # exits; not waited for yet: a zombie
    assert Path(f"/proc/{child.pid}/stat").exists()
    assert owner.alive() is False
    child.wait()


def test_a_store_opened_by_another_process_is_opened_without_the_lock(
    tmp_path: Path,
) -> None:
    """(tracking.opened_before.) A new store, or one whose write-ahead log is
    gone (no process has it open), is opened under the lock; one open in WAL
    mode with its Default experiment is not, and the check creates no file."""
    db = tmp_path / "mlflow.db"
    assert not tracking.opened_before(db)  # no file
    uri = f"sqlite:///{db}"
    tracking.open_store(uri, "t")  # this process keeps it open
    assert tracking.opened_before(db)
    files = sorted(p.name for p in tmp_path.iterdir())
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    other = tmp_path / "copy.db"
    other.write_bytes(db.read_bytes())  # no -wal, no -shm beside it
    assert not tracking.opened_before(other)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*files, "copy.db"])
    # A damaged file beside a log is not taken for an opened store.
    bad = tmp_path / "bad.db"
    bad.write_bytes(db.read_bytes()[:100] + b"\0" * 4000)
    for ext in ("-wal", "-shm"):
        (tmp_path / f"bad.db{ext}").write_bytes(b"")
    assert not tracking.opened_before(bad)
