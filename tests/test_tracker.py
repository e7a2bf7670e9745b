"""The tracker process (store calls and the report of a sweep on workers) and
the workers' cores."""

from __future__ import annotations

import os
import pickle
import textwrap
from pathlib import Path

import pytest
from conftest import TINY_JOB, job_runs, run_python, search_runs, sqlite_uri

from depthlab import tracking
from depthlab.sweep import tracker as tracker_module
from depthlab.sweep import workers
from depthlab.sweep.tracker import Tracker

_kept: list[str] = []


def remember(value: str) -> None:
    """Keep ``value`` in this process (a tracker's call_soon target)."""
    _kept.append(value)


def kept() -> list[str]:
    """What :func:`remember` kept in this process."""
    return list(_kept)


def affinity_of_this_worker(_: int) -> tuple[int, list[int]]:
    """This process's pid and cores (run on a worker)."""
    import time

    time.sleep(0.05)  # so that every worker takes some of the tasks
    return os.getpid(), sorted(os.sched_getaffinity(0))


@pytest.fixture
def tracker() -> Tracker:
    started = Tracker()
    yield started
    started.close()


def test_a_call_runs_in_the_tracker_and_returns_its_value(tracker: Tracker) -> None:
    assert tracker.call(os.getpid) != os.getpid()
    assert tracker.call(sorted, [3, 1, 2]) == [1, 2, 3]
    assert tracker.call(sorted, [3, 1], reverse=True) == [3, 1]


def test_what_a_call_raises_is_raised_here(tracker: Tracker, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    uri = f"sqlite:///{tmp_path / 'file' / 'mlflow.db'}"  # under a file
    with pytest.raises(tracking.TrackingError, match="cannot create") as caught:
        tracker.call(tracking.check_store, uri)
    with pytest.raises(tracking.TrackingError) as here:
        tracking.check_store(uri)
    assert str(caught.value) == str(here.value)
    with pytest.raises(ValueError, match="invalid literal"):
        tracker.call(int, "x")
    assert tracker.call(os.getpid) != os.getpid()  # it still serves


def test_an_oserror_of_the_call_is_not_taken_for_a_gone_tracker(
    tracker: Tracker, tmp_path: Path
) -> None:
    """The call raised it: raised here, not run again here, the tracker kept."""
    missing = str(tmp_path / "missing")
    for call in (tracker.call, tracker.call_now):
        with pytest.raises(FileNotFoundError) as caught:
            call(os.stat, missing)
        assert caught.value.filename == missing
        assert tracker.alive
    assert tracker.call(os.getpid) != os.getpid()


def test_calls_without_an_answer_keep_their_order(tracker: Tracker) -> None:
    for value in ("a", "b", "c"):
        assert tracker.call_soon(remember, value)
    assert tracker.call(kept) == ["a", "b", "c"]
    assert kept() == []  # not here


def test_calls_run_here_once_the_tracker_is_gone(tracker: Tracker) -> None:
    assert tracker.call(os.getpid) != os.getpid()
    tracker.kill()
    assert tracker.call(os.getpid) == os.getpid()
    assert not tracker.call_soon(remember, "x")
    assert kept() == []


def test_store_sends_the_tracking_functions_to_the_tracker() -> None:
    assert tracker_module.store() is tracking  # no tracker: this process
    tracker_module.start()
    try:
        remote = tracker_module.store()
        assert remote.TrackingError is tracking.TrackingError  # classes as they are
        assert remote.resolve_uri("sqlite:///x.db") == "sqlite:///x.db"
        assert tracker_module.run(os.getpid) != os.getpid()
    finally:
        tracker_module.close()
    assert tracker_module.current() is None
    assert tracker_module.run(os.getpid) == os.getpid()


def test_keep_tables_reads_a_jobs_file_and_removes_it(tmp_path: Path) -> None:
    import pandas as pd

    table = pd.DataFrame({"layer": [2, 3], "value": [0.5, 0.25]})
    path = tmp_path / "r1.pickle"
    path.write_bytes(pickle.dumps({"per_layer": table}))
    tracker_module.keep_tables("r1", str(path))
    assert not path.exists()  # read, then removed
    assert list(tracker_module._tables) == ["r1"]
    pd.testing.assert_frame_equal(tracker_module._tables.pop("r1")["per_layer"], table)


def frozen_after_keeping(path: str) -> tuple[bool, bool]:
    """In the tracker: whether it knows it is the tracker, and whether keeping
    a job's tables froze more objects (it never unfreezes)."""
    import gc

    before = gc.get_freeze_count()
    tracker_module.keep_tables("r2", path)
    tracker_module._tables.clear()
    return tracker_module._in_tracker(), gc.get_freeze_count() > before


def test_only_the_tracker_freezes_the_tables_it_keeps(
    tracker: Tracker, tmp_path: Path
) -> None:
    import gc

    import pandas as pd

    tables = pickle.dumps({"per_layer": pd.DataFrame({"layer": [2]})})
    there = tmp_path / "there.pickle"
    there.write_bytes(tables)
    assert tracker.call(frozen_after_keeping, str(there)) == (True, True)
    here = tmp_path / "here.pickle"
    here.write_bytes(tables)
    before = gc.get_freeze_count()
    assert frozen_after_keeping(str(here))[0] is False
    assert gc.get_freeze_count() == before  # this process: nothing frozen


def test_a_sweep_on_workers_imports_neither_mlflow_nor_matplotlib(
    tmp_path: Path,
) -> None:
    """Its store calls and its report run in the tracker; the report is the
    one a sweep in one process writes, and it is logged to the sweep run."""
    script = tmp_path / "sweep.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            import depthlab.sweep.cli as cli

            exit_now = cli.exit_now

            def checked(status=0):
                loaded = [m for m in ("mlflow", "matplotlib") if m in sys.modules]
                print("loaded here:", loaded, flush=True)
                exit_now(status)

            cli.exit_now = checked
            if __name__ == "__main__":
                sys.argv = ["depthlab", *sys.argv[1:]]
                cli.run()
            """
        )
    )
    args = ["depth=2..4", *TINY_JOB]
    out = run_python(tmp_path, str(script), *args, "n_jobs=2")
    assert out.returncode == 0, out.stderr
    assert "on 2 workers" in out.stdout
    assert "loaded here: []" in out.stdout
    assert "depthlab: report " in out.stdout and out.stderr.count("Traceback") == 0
    runs = search_runs(sqlite_uri(tmp_path))
    sweep = runs[runs["tags.depthlab.kind"] == "sweep"]
    assert list(sweep["status"]) == ["FINISHED"]
    assert len(job_runs(sqlite_uri(tmp_path))) == 3
    reports = list(tmp_path.glob("multirun/*/*/report.html"))
    assert len(reports) == 1
    # The same sweep in one process writes the same figures.
    one = tmp_path / "one"
    one.mkdir()
    same = run_python(one, str(script), *args, "n_jobs=1")
    assert same.returncode == 0, same.stderr
    assert "loaded here: ['mlflow', 'matplotlib']" in same.stdout
    (other,) = one.glob("multirun/*/*/report.html")
    names = sorted(p.name for p in reports[0].parent.glob("*.png"))
    assert names == sorted(p.name for p in other.parent.glob("*.png")) and names


def test_workers_that_cover_the_cores_are_pinned_each_to_its_own() -> None:
    cpus = workers._affinity()
    if len(cpus) < 2 or not hasattr(os, "sched_setaffinity"):
        pytest.skip("needs two cores and sched_setaffinity")
    n, threads = (2, len(cpus) // 2) if len(cpus) % 2 == 0 else (len(cpus), 1)
    pool = workers.Pool(n, threads, None)
    pool.start()
    with pool:
        seen = [
            pool.submit(w, affinity_of_this_worker, 0).result(timeout=60)[1]
            for w in range(n)
        ]
    assert [list(c) for c in seen] == workers.core_sets(n, threads, cpus)
    cores = sorted(tuple(c) for c in seen)
    assert sorted(c for group in cores for c in group) == cpus  # disjoint, all


def test_workers_that_leave_cores_free_are_not_pinned() -> None:
    assert workers.core_sets(2, 1, [0, 1, 2]) is None
    assert workers.core_sets(1, 4, [0, 1, 2, 3]) is None
    assert workers.core_sets(3, 1, [0, 1]) is None  # more workers than cores
    assert workers.core_sets(2, 2, [5, 1, 3, 7]) == [[1, 3], [5, 7]]


def test_a_sweep_on_workers_says_nothing_on_stderr(tmp_path: Path) -> None:
    """Nor when it resumes, every job skipped and the report read back from
    the store: no progress bar
    of MLflow's downloads, no warning of multiprocessing's resource tracker."""
    args = ["depth=2..3", *TINY_JOB, "n_jobs=2"]
    first = run_python(tmp_path, "-m", "depthlab", *args)
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""
    again = run_python(tmp_path, "-m", "depthlab", *args)
    assert again.returncode == 0, again.stderr
    assert "skipping 2 of 2" in again.stdout and "depthlab: report " in again.stdout
    assert again.stderr == ""
