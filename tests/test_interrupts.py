"""Signals are held back out of tracking writes and raised right after them."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import (
    INTERRUPTIBLE,
    INTERRUPTIBLE_JOBS,
    finished_jobs,
    job_runs,
    popen_cli,
    run_cli,
    search_runs,
    sqlite_uri,
)

from depthlab import interrupts, tracking


@pytest.fixture
def handlers() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in interrupts.SIGNALS}
    interrupts.install()
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def _signal_self(signum: int = signal.SIGTERM) -> None:
    # os.kill to our own pid runs the handler before os.kill returns
    # (CPython checks for pending signals right after the call).
    os.kill(os.getpid(), signum)


def test_install_sets_both_handlers(handlers: None) -> None:
    assert interrupts.installed()


def test_signal_outside_a_deferred_block_raises_at_once(handlers: None) -> None:
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        _signal_self()


@pytest.mark.parametrize("signum", interrupts.SIGNALS)
def test_signal_inside_is_raised_when_the_block_ends(
    handlers: None, signum: int
) -> None:
    reached_end_of_block = False
    with pytest.raises(KeyboardInterrupt, match=signal.Signals(signum).name):
        with interrupts.deferred():
            _signal_self(signum)
            assert interrupts.pending() == signum
            reached_end_of_block = True
    assert reached_end_of_block
    assert interrupts.pending() is None


def test_nested_blocks_raise_only_at_the_outermost_end(handlers: None) -> None:
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts.deferred():
            with interrupts.deferred():
                _signal_self()
            steps.append("after inner block")
    assert steps == ["after inner block"]


def test_a_second_signal_while_one_is_pending_raises_at_once(handlers: None) -> None:
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts.deferred():
            _signal_self()
            steps.append("first held back")
            _signal_self()
            steps.append("never reached")
    assert steps == ["first held back"]
    assert interrupts.pending() is None


def test_block_without_a_signal_raises_nothing(handlers: None) -> None:
    with interrupts.deferred():
        pass
    assert interrupts.pending() is None


def test_the_body_error_is_kept_as_context(handlers: None) -> None:
    with pytest.raises(KeyboardInterrupt) as info:
        with interrupts.deferred():
            _signal_self()
            raise ValueError("write failed")
    assert isinstance(info.value.__context__, ValueError)


def test_deferring_decorator_returns_the_value_then_raises(handlers: None) -> None:
    done = []

    @interrupts.deferring
    def write() -> int:
        _signal_self()
        done.append(True)
        return 3

    with pytest.raises(KeyboardInterrupt):
        write()
    assert done == [True]
    assert write.__name__ == "write"


def test_deferred_in_a_worker_thread_does_not_hold_back_the_main_thread(
    handlers: None,
) -> None:
    entered, release = threading.Event(), threading.Event()

    def worker() -> None:
        with interrupts.deferred():
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=worker)
    thread.start()
    entered.wait(10)
    try:
        with pytest.raises(KeyboardInterrupt):
            _signal_self()
    finally:
        release.set()
        thread.join()


# --- tracking writes: a signal inside an MLflow call never leaves a run RUNNING ---


def _signal_inside(
    monkeypatch: pytest.MonkeyPatch, method: str, *, call: int = 1
) -> list[int]:
    """Make the ``call``-th MlflowClient.``method`` call signal SIGTERM mid-call."""
    from mlflow.tracking import MlflowClient

    original = getattr(MlflowClient, method)
    calls = [0]

    def patched(self: object, *args: object, **kwargs: object) -> object:
        calls[0] += 1
        if calls[0] == call:
            _signal_self()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, method, patched)
    return calls


@pytest.fixture
def sweep(tmp_path: Path) -> tuple[str, str]:
    """A fresh store's URI and a RUNNING sweep run in experiment ``t``."""
    uri = tracking.default_uri(tmp_path)
    return uri, tracking.start_sweep(uri, "t", run_name="sweep", params={})


def _statuses(uri: str) -> dict[str, str]:
    client = tracking._client(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return {r.info.run_name: r.info.status for r in runs}


def _record() -> object:
    import pandas as pd

    return tracking.JobRecord(
        run_name="L=2",
        params={"depth": 2},
        config_hash="h",
        summary={"grad_log10_norm_median": -1.5},
        per_layer=None,
        tables={"samples": pd.DataFrame({"net": [0]})},
        config_yaml="depth: 2\n",
    )


def test_signal_while_creating_a_job_run_marks_it_failed(
    handlers: None, sweep: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, parent = sweep
    _signal_inside(monkeypatch, "create_run")
    body = []
    with pytest.raises(KeyboardInterrupt):
        with tracking.job_run(uri, "t", parent, "L=2", "h"):
            body.append("ran")
    assert body == []
    run = tracking._client(uri).search_runs(
        [tracking._client(uri).get_experiment_by_name("t").experiment_id],
        filter_string="attributes.run_name = 'L=2'",
    )[0]
    assert run.info.status == "FAILED"
    assert run.data.tags[tracking.ERROR_TAG] == "KeyboardInterrupt: signal SIGTERM"


def _interrupted_job(
    uri: str, parent: str, body: Callable[[str], object] | None = None
) -> str:
    """Job "L=2" of experiment "t", ``body(run_id)`` inside it; the signal of
    :func:`_signal_inside` must interrupt it. Its run id."""
    with pytest.raises(KeyboardInterrupt):
        with tracking.job_run(uri, "t", parent, "L=2", "h") as run_id:
            if body is not None:
                body(run_id)
    return run_id


def test_signal_while_logging_keeps_the_log_and_marks_the_run_failed(
    handlers: None, sweep: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, parent = sweep
    _signal_inside(monkeypatch, "log_batch")
    run_id = _interrupted_job(
        uri, parent, lambda run_id: tracking.log_job(uri, run_id, _record())
    )
    run = tracking._client(uri).get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.metrics == {"grad_log10_norm_median": -1.5}
    # The artifacts after the interrupted batch were written too.
    assert {f.path for f in tracking._client(uri).list_artifacts(run_id)} >= {
        "config.yaml"
    }
    assert tracking.finished_runs(uri, "t") == {}


def test_signal_while_finishing_keeps_the_run_finished(
    handlers: None, sweep: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, parent = sweep
    _signal_inside(monkeypatch, "set_terminated")
    run_id = _interrupted_job(uri, parent)
    assert tracking._client(uri).get_run(run_id).info.status == "FINISHED"
    assert tracking.finished_runs(uri, "t") == {"h": run_id}


def test_signal_while_starting_a_sweep_marks_it_killed(
    handlers: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = tracking.default_uri(tmp_path)
    _signal_inside(monkeypatch, "log_batch")
    with pytest.raises(KeyboardInterrupt):
        tracking.start_sweep(uri, "t", run_name="sweep", params={"jobs": 3})
    assert _statuses(uri) == {"sweep": "KILLED"}


# --- a sweep on worker processes (depthlab.sweep.workers) stopped from outside ---


@pytest.mark.parametrize(
    ("signum", "to_group"),
    [
        (signal.SIGTERM, False),  # a scheduler cancels the sweep's process
        pytest.param(signal.SIGINT, True, marks=pytest.mark.slow),  # Ctrl-C
    ],
)
def test_parallel_sweep_stops_cleanly_and_resumes(
    tmp_path: Path, signum: int, to_group: bool
) -> None:
    # The default n_jobs: one worker per core.
    args, total = INTERRUPTIBLE, INTERRUPTIBLE_JOBS
    # Its own process group, as a terminal's job.
    proc = popen_cli(tmp_path, *args, start_new_session=True)
    try:
        deadline = time.time() + 120
        while (
            finished_jobs(tmp_path / "mlflow.db") < 3
            and time.time() < deadline
            and proc.poll() is None
        ):
            time.sleep(0.05)
        if to_group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        # The jobs in flight are marked FAILED within a second or so; a minute
        # means an interrupt landed inside a tracking write and hung on a
        # locked database (see depthlab.interrupts).
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err, err
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith(f"depthlab: interrupted by {signal.Signals(signum).name}")
    ), err
    # The workers, the forkserver and multiprocessing's resource tracker end
    # with the sweep (the forkserver when it sees the sweep's process gone).
    deadline = time.time() + 30
    with pytest.raises(ProcessLookupError):
        while time.time() < deadline:
            os.killpg(proc.pid, 0)
            time.sleep(0.2)
    uri = sqlite_uri(tmp_path)
    runs = search_runs(uri)
    assert "RUNNING" not in set(runs["status"])
    assert list(runs[runs["tags.depthlab.kind"] == "sweep"]["status"]) == ["KILLED"]
    jobs = job_runs(uri)
    kept = set(jobs[jobs["status"] == "FINISHED"]["run_id"])
    assert 3 <= len(kept) < total

    again = run_cli(tmp_path, *args)
    assert again.returncode == 0, again.stderr
    assert f"skipping {len(kept)} of {total}" in again.stdout
    after = job_runs(uri)
    finished = after[after["status"] == "FINISHED"]
    # Exactly one FINISHED run per config, and the earlier ones were kept.
    assert len(finished) == total and finished["tags.depthlab.config_hash"].is_unique
    assert kept <= set(finished["run_id"])
