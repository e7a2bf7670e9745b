"""The report's tasks on forked processes: the same results, in order, with the
tasks' warnings and errors; one process where forking is not safe."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from conftest import run_python

from depthlab.report.parallel import processes, run_tasks

FORKED = """
import json, os, warnings
from depthlab.report.parallel import processes, run_tasks

def task(i):
    if i == 2:
        warnings.warn(f"task {i}", UserWarning)
    return i, os.getpid()

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    out = run_tasks(task, 4, order=[3, 2, 1, 0], workers=2)
assert [i for i, _ in out] == [0, 1, 2, 3], out
assert all(pid != os.getpid() for _, pid in out), out
assert [str(w.message) for w in caught] == ["task 2"], caught

warnings.simplefilter("error")  # raised in the worker, raised here
try:
    run_tasks(task, 4, workers=2)
except UserWarning as err:
    assert str(err) == "task 2"
else:
    raise SystemExit("the worker's warning was not raised")

def bad(i):
    raise ValueError(f"bad {i}")

try:
    run_tasks(bad, 2, workers=2)
except ValueError as err:
    assert str(err) == "bad 0", err
else:
    raise SystemExit("the worker's error was not raised")
print(json.dumps([processes(6), len(os.sched_getaffinity(0))]))
"""


def test_forked_tasks_give_results_in_order_warnings_and_errors(
    tmp_path: Path,
) -> None:
    out = run_python(tmp_path, "-c", FORKED, env=None)
    assert out.returncode == 0, out.stderr
    usable, cpus = (int(x) for x in out.stdout.strip("[]\n").split(","))
    # A single-threaded process: one process per CPU, at most one per task.
    assert usable == min(cpus, 6)


def test_one_process_while_another_thread_runs() -> None:
    release = threading.Event()
    thread = threading.Thread(target=release.wait, daemon=True)
    thread.start()
    try:
        assert processes(6) == 1
    finally:
        release.set()
        thread.join()
    assert processes(1) == processes(0) == 1


def test_serial_tasks_run_here_in_order() -> None:
    seen: list[int] = []

    def task(i: int) -> int:
        seen.append(i)
        return i * i

    assert run_tasks(task, 4, order=[3, 1, 2, 0], workers=1) == [0, 1, 4, 9]
    assert seen == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="permutation"):
        run_tasks(task, 3, order=[0, 0, 1], workers=2)
