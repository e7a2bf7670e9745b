"""Sweeps on depthlab's worker processes: the same runs and numbers as one
process, every job once, readable output; the thread budget; the progress line."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY, job_runs, run_cli, sqlite_uri

from depthlab.sweep import progress, workers
from depthlab.tracking.store import PID_TAG

_LINE = re.compile(r"^\[\s*(\d+)/(\d+)\] L=(\d+) ")


@pytest.mark.parametrize(
    ("n_jobs", "jobs", "cpus", "expected"),
    [
        (None, 49, 2, (2, 1)),
        (None, 49, 16, (16, 1)),
        (4, 49, 16, (4, 4)),
        (1, 49, 16, (1, 16)),
        (None, 3, 16, (3, 5)),
        (None, 1, 16, (1, 16)),
        (8, 49, 2, (8, 1)),
        (None, 0, 2, (1, 2)),
    ],
)
def test_plan_shares_the_cores(
    n_jobs: int | None, jobs: int, cpus: int, expected: tuple[int, int]
) -> None:
    assert workers.plan(n_jobs, jobs, cpus=cpus) == expected


def test_job_threads_reads_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(workers.THREADS_ENV, "3")
    assert workers.job_threads() == 3
    monkeypatch.delenv(workers.THREADS_ENV)
    assert workers.job_threads() == workers.cpu_count()


def test_parallel_sweep_matches_one_process(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    args = ["depth=2..4", "init.sigma_w=1.0,1.5", *TINY]
    a = run_cli(one, *args, "n_jobs=1")
    b = run_cli(two, *args, "n_jobs=2")
    assert a.returncode == 0, a.stderr
    assert b.returncode == 0, b.stderr
    assert "on 2 workers" in b.stdout and "workers" not in a.stdout
    # One line per job, each with its index in the sweep, each index once.
    lines = {
        int(m.group(1)): line.split("] ", 1)[1].split("  ")[0]
        for line in b.stdout.splitlines()
        if (m := _LINE.match(line))
    }
    assert sorted(lines) == list(range(1, 7))
    assert len(set(lines.values())) == 6

    # The summary lists the jobs in sweep order, as the single process does.
    def summary(stdout: str) -> list[str]:
        rows = stdout.split("sweep done:")[1].splitlines()[1:7]
        return [row.strip().split("  ")[0] for row in rows]

    assert summary(b.stdout) == [lines[i] for i in range(1, 7)] == summary(a.stdout)
    ra, rb = job_runs(sqlite_uri(one)), job_runs(sqlite_uri(two))
    assert len(rb) == 6 and set(rb["status"]) == {"FINISHED"}
    assert rb["tags.depthlab.config_hash"].is_unique
    key = "tags.depthlab.config_hash"
    metrics = [c for c in ra.columns if c.startswith("metrics.")]
    left = ra.set_index(key)[metrics].sort_index()
    right = rb.set_index(key)[metrics].sort_index()
    # Same seeds on other processes: the same numbers, bit for bit.
    assert left.equals(right)
    # Each worker runs one chain (depth 2, 3, ... of one sigma_w): the first
    # worker is handed the first two jobs of its chain at once, the second
    # worker the first of the other chain (then one at a time, near the end).
    pid = {
        (row["params.depth"], row["params.sigma_w"]): row[f"tags.{PID_TAG}"]
        for _, row in rb.iterrows()
    }
    assert pid["2", "1.0"] == pid["3", "1.0"] != pid["2", "1.5"]
    # n_jobs does not change what a job computes: the second sweep resumes.
    again = run_cli(two, *args, "n_jobs=1")
    assert again.returncode == 0, again.stderr
    assert "skipping 6 of 6" in again.stdout


def test_n_jobs_must_be_positive(tmp_path: Path) -> None:
    out = run_cli(tmp_path, "depth=2,3", "n_jobs=0", *TINY)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "depthlab: error: n_jobs=0 is not allowed; n_jobs must be an integer >= 1"
    )
    assert not (tmp_path / "mlflow.db").exists()


def test_train_jobs_run_on_workers(tmp_path: Path) -> None:
    out = run_cli(
        tmp_path,
        "depth=3",
        "seed=0,1",
        "n_jobs=2",
        "task=train",
        "train.dataset=higham_example",
        "train.steps=1",
        "train.eval_every=1",
        "train.seeds=1",
        "hidden_widths=[2]",
        "input_dim=2",
        "output_dim=2",
        "report=false",
    )
    assert out.returncode == 0, out.stderr
    assert set(job_runs(sqlite_uri(tmp_path))["status"]) == {"FINISHED"}


def test_progress_without_a_terminal_prints_one_line_per_job() -> None:
    out = io.StringIO()
    with progress.Progress(3, 12, skipped=9, stream=out) as p:
        assert not p.live
        p.job_done(10, "L=12 a")
        p.job_failed(9, "ValueError: x")
        p.job_done(11, "L=13 b")
    assert out.getvalue().splitlines() == [
        "[11/12] L=12 a",
        "[10/12] FAILED ValueError: x",
        "[12/12] L=13 b",
    ]


def test_progress_on_a_terminal_shows_one_live_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(progress, "LIVE_AFTER_S", 0.0)
    monkeypatch.setattr(progress, "REFRESH_S", 0.0)
    out = io.StringIO()
    with progress.Progress(4, 6, skipped=2, stream=out, live=True) as p:
        p.job_done(2, "L=4 a")
        p.job_failed(3, "boom")
        text = out.getvalue()
    assert "L=4 a" not in text and "boom" not in text  # no per-job lines
    assert "depthlab: 1/4 jobs done, 1 failed, 2 skipped" in text
    assert re.search(r"\[\d\d:\d\d<", text)  # elapsed < ETA


def test_a_second_signal_in_a_worker_is_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import signal

    from depthlab import interrupts

    raised = []
    monkeypatch.setattr(workers, "_worker", workers._Worker(in_job=True))
    monkeypatch.setattr(interrupts, "_on_signal", lambda s, f: raised.append(s))
    workers._on_signal(signal.SIGINT, None)
    workers._on_signal(signal.SIGTERM, None)
    assert raised == [signal.SIGINT]
    assert workers._worker.stop == signal.SIGINT
    with pytest.raises(KeyboardInterrupt, match="SIGINT"):
        workers._run(None)


def test_an_idle_worker_only_stops_taking_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    from depthlab import interrupts

    raised = []
    monkeypatch.setattr(workers, "_worker", workers._Worker(in_job=False))
    monkeypatch.setattr(interrupts, "_on_signal", lambda s, f: raised.append(s))
    workers._on_signal(signal.SIGTERM, None)
    assert raised == []
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        workers._run(None)


def test_default_threads_takes_the_worker_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from depthlab.jobs import engine

    monkeypatch.delenv(workers.THREADS_ENV, raising=False)
    assert engine.default_threads() == workers.cpu_count()
    monkeypatch.setenv(workers.THREADS_ENV, "3")
    assert engine.default_threads() == 3 == workers.job_threads()


def test_a_store_fault_pickles_with_what_it_kept() -> None:
    import pickle

    from depthlab.tracking.store import DISK_FULL, StoreFault

    fault = StoreFault("sqlite:///w/mlflow.db", DISK_FULL, "database or disk is full")
    fault.saved.append("/w/multirun/pending/abc")
    fault.unsaved.append("/tmp/x (disk full)")
    back = pickle.loads(pickle.dumps(fault))
    assert type(back) is StoreFault
    assert (back.uri, back.cause, back.detail) == (fault.uri, DISK_FULL, fault.detail)
    assert back.saved == fault.saved and back.unsaved == fault.unsaved
    assert back.line("1 of 3 jobs finished and are kept") == fault.line(
        "1 of 3 jobs finished and are kept"
    )


def _configs(*changes: dict) -> list[dict]:
    from depthlab.jobs import schema

    out = []
    for change in changes:
        d = schema.defaults()
        for key, value in change.items():
            node = d
            *parents, leaf = key.split(".")
            for p in parents:
                node = node[p]
            node[leaf] = value
        out.append(d)
    return out


def test_run_names_lead_with_what_varies_and_stay_unique() -> None:
    from depthlab.sweep import app

    configs = _configs(
        *({"depth": L, "init.sigma_w": sw} for L in (20, 30) for sw in (0.5, 1.0))
    )
    names = app.sweep_run_names(configs)
    assert names == [
        "L=20 sw=0.5 sigmoid gaussian n=64",
        "L=20 sw=1 sigmoid gaussian n=64",
        "L=30 sw=0.5 sigmoid gaussian n=64",
        "L=30 sw=1 sigmoid gaussian n=64",
    ]
    # Only sigma_w varies: it comes first, ahead of the depth.
    names = app.sweep_run_names(_configs({"init.sigma_w": 0.5}, {"init.sigma_w": 2.0}))
    assert names == [
        "sw=0.5 L=10 sigmoid gaussian n=64",
        "sw=2 L=10 sigmoid gaussian n=64",
    ]
    # A key the names do not show: the names stay unique.
    names = app.sweep_run_names(_configs({"probe.inputs": 4}, {"probe.inputs": 8}))
    assert names == [
        "L=10 sigmoid gaussian sw=1 n=64 #1",
        "L=10 sigmoid gaussian sw=1 n=64 #2",
    ]
    # A key not shown by default (sb) is shown when it varies, at its default too.
    names = app.sweep_run_names(_configs({"init.sigma_b": 0.0}, {"init.sigma_b": 0.1}))
    assert names[0].startswith("sb=0 ") and names[1].startswith("sb=0.1 ")


def test_the_sweep_run_is_named_by_its_ranges() -> None:
    from depthlab.sweep import app

    configs = _configs(
        *({"depth": L, "activation": a} for a in ("tanh", "relu") for L in range(2, 51))
    )
    assert app.sweep_title(configs) == "depth=2..50 activation=tanh,relu (98 jobs)"
    assert app.sweep_title(_configs({"depth": 4})) == (
        "L=4 sigmoid gaussian sw=1 n=64 (1 job)"
    )
    title = app.sweep_title(_configs(*({"init.sigma_w": 0.5 + i} for i in range(80))))
    assert len(title) <= 200 and title.endswith("… (80 jobs)")


def test_the_wait_on_jobs_raises_a_signal_only_between_waits() -> None:
    """SIGINT while the sweep's process waits on its jobs: KeyboardInterrupt
    comes out of the iteration, and the executor (whose thread sets results
    under the futures' locks) still finishes every job and shuts down."""
    import concurrent.futures as cf
    import os
    import signal
    import threading
    import time

    from depthlab import interrupts
    from depthlab.sweep.workers import _as_completed

    previous = {s: signal.getsignal(s) for s in interrupts.SIGNALS}
    interrupts.install()
    executor = cf.ThreadPoolExecutor(max_workers=2)
    try:
        futures = [executor.submit(time.sleep, 0.4) for _ in range(4)]
        timer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        seen = []
        with pytest.raises(KeyboardInterrupt, match="SIGINT") as caught:
            seen.extend(_as_completed(futures))
        timer.join()
        # Raised where the deferred wait ends, not inside the wait's locks.
        assert Path(caught.traceback[-1].path).name == "interrupts.py"
        assert len(seen) < 4
        _, left = cf.wait(futures, timeout=10)
        assert not left  # the executor was not left hanging on a lock
        assert list(_as_completed(futures)) and set(_as_completed(futures)) == set(
            futures
        )
        # With a timeout, the iteration stops quietly when it runs out.
        slow = executor.submit(time.sleep, 2)
        start = time.monotonic()
        assert list(_as_completed([slow], timeout=0.3)) == []
        assert time.monotonic() - start < 1.5
    finally:
        executor.shutdown(wait=True)
        for s, handler in previous.items():
            signal.signal(s, handler)


def test_stop_forkserver_ends_it_at_once() -> None:
    """The forkserver would tear itself down for most of a second after the
    sweep's process ends, holding its standard streams: it is ended first."""
    code = (
        "import os\n"
        "from multiprocessing import forkserver\n"
        "from depthlab.sweep import workers\n"
        "workers.warm_up()\n"
        "pid = forkserver._forkserver._forkserver_pid\n"
        "os.kill(pid, 0)\n"
        "workers.stop_forkserver()\n"
        "try:\n"
        "    os.kill(pid, 0)\n"
        "except ProcessLookupError:\n"
        "    print('gone')\n"
        "workers.stop_forkserver()  # again: nothing to do\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "gone"


@pytest.mark.parametrize(
    ("argv", "cpus", "expected"),
    [
        (["depth=2..50"], 2, True),
        (["depth=range(2,51)"], 2, True),
        (["-m", "depth=2,3", "activation=tanh"], 4, True),
        (["depth=choice(2,3)"], 2, True),
        (["depth=2..50"], 1, False),  # one core
        (["depth=3", "activation=tanh"], 2, False),  # one job
        (["hidden_widths=[2,3]"], 2, False),  # a list, not a sweep
        (["hidden_widths=[2,3],[4,5]"], 2, True),  # a sweep over lists
        (["tracking.experiment='a,b'"], 2, False),  # a quoted comma
        (["depth=2,3", "n_jobs=1"], 2, False),
        (["depth=2,3", "hydra/launcher=joblib"], 2, False),
        (["depth=2,3", "hydra/launcher=basic"], 2, True),
        (["--cfg", "job", "depth=2,3"], 2, False),  # runs no job
    ],
)
def test_the_forkserver_starts_early_only_for_parallel_sweeps(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], cpus: int, expected: bool
) -> None:
    from depthlab.sweep import cli

    monkeypatch.setattr(workers, "cpu_count", lambda: cpus)
    assert cli.likely_parallel(argv) is expected


def test_a_prestarted_pool_is_taken_only_for_the_same_plan() -> None:
    """:func:`workers.prestart` forks the workers ahead of the jobs; a plan of
    other workers or threads gets a new pool and the prestarted one is shut
    down, as it is when no sweep takes it."""
    workers.prestart(2, 1, None)
    assert workers._take_prestarted(2, 2) is None  # other threads: shut down
    assert workers._prestarted == []
    workers.prestart(2, 1, None)
    pool = workers._take_prestarted(2, 1)
    assert pool is not None and len(pool.processes()) == 2
    with pool:  # its workers run jobs' functions (here the no-op of start)
        assert pool.submit(1, workers._started).result(timeout=60) is None
    workers.prestart(1, 1, None)
    workers.discard_prestarted()
    assert workers._prestarted == [] and workers._starting == []


def frozen_objects(_: int) -> int:
    """How many objects the garbage collector leaves alone here (a worker's task)."""
    import gc

    return gc.get_freeze_count()


def test_a_worker_leaves_what_the_forkserver_imported_to_no_collection() -> None:
    """(depthlab.garbage: the forkserver's preload freezes it, and so does a
    worker's set-up.)"""
    pool = workers.Pool(1, 1, None)
    with pool:
        assert pool.submit(0, frozen_objects, 0).result(timeout=60) > 10_000
