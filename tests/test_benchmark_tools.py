"""The benchmark's bookkeeping: the timed sweep sees every part, README updates."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
from conftest import TINY, run_python

BENCHMARK = Path(__file__).resolve().parent.parent / "experiments" / "benchmark"


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCHMARK / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_timed_sweep_attributes_time_to_every_part(tmp_path: Path) -> None:
    out = tmp_path / "timings.json"
    script = str(BENCHMARK / "timed_sweep.py")
    done = run_python(tmp_path, script, str(out), "depth=2..4", *TINY, timeout=300)
    assert done.returncode == 0, done.stderr
    timings = json.loads(out.read_text())
    spent, calls = timings["spent"], timings["calls"]
    assert calls["compose_to_validate"] == 1
    assert calls["run_probe"] == calls["job_total"] == calls["log_job"] == 3
    for part in ("compose_to_validate", "launch", "job_total", "run_probe", "main"):
        assert spent[part] > 0, part
    # The parts nest: jobs run inside the launch, the computation inside a job.
    assert spent["launch"] > spent["job_total"] > spent["run_probe"]
    assert spent["main"] > spent["launch"] + spent["compose_to_validate"]
    assert timings["mlflow_calls"]["create_run"] > 0


def test_update_of_some_sections_keeps_the_others() -> None:
    run = _module("run")
    block = (
        "Command: `run.py`\n\n### Kernel\n\nold kernel\n\n### Sweep\n\nold sweep\n\n"
        "Whole run: 9 s.\n"
    )
    out = run.replace_sections(block, {"Sweep": "new sweep"}, "*alone*")
    assert "old kernel" in out and "old sweep" not in out
    assert out.index("### Sweep") < out.index("*alone*") < out.index("new sweep")
    assert out.rstrip().endswith("Whole run: 9 s.")
    added = run.replace_sections(block, {"Scaling": "fits"}, "*alone*")
    assert added.index("old sweep") < added.index("### Scaling") < added.index("fits")
    assert added.rstrip().endswith("Whole run: 9 s.")


def test_sweep_processes_times_every_process_of_a_parallel_sweep(
    tmp_path: Path,
) -> None:
    """Each worker's jobs, the tracker and the sweep's process are seen, and
    the job spans add up to the sweep's jobs."""
    script = str(BENCHMARK / "sweep_processes.py")
    done = run_python(tmp_path, script, "depth=2..5", *TINY, "n_jobs=2", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].endswith("; exit 0")
    assert "first job at" in lines[1] and "last job ended at" in lines[1]
    roles = {
        line.split("|")[1].strip(): line for line in lines if line.startswith("| ")
    }
    assert {"sweep", "tracker", "worker", "forkserver"} <= set(roles)
    assert roles["worker"].split("|")[2].strip() == "2"  # two worker processes
    jobs = [
        int(line.split(": ")[1].split()[0])
        for line in lines
        if line.startswith("worker ")
    ]
    assert sum(jobs) == 4


def test_compare_trees_runs_each_tree_s_own_depthlab(tmp_path: Path) -> None:
    """Each tree's sweep imports that tree's depthlab (PYTHONPATH first): a
    tree whose depthlab says so in its version is seen by its runs."""
    import shutil

    repo = BENCHMARK.parents[1]
    other = tmp_path / "other"
    shutil.copytree(repo / "depthlab", other / "depthlab")
    init = other / "depthlab" / "__init__.py"
    init.write_text(init.read_text() + "\nraise SystemExit('tree B ran')\n")
    script = str(BENCHMARK / "compare_trees.py")
    args = ["--rounds", "1", "--cores", "1", str(repo), str(other), "depth=2,3"]
    done = run_python(tmp_path, script, *args, *TINY, timeout=300)
    assert done.returncode != 0 and "tree B ran" in done.stderr
    same = run_python(tmp_path, script, *args[:-2], str(repo), "depth=2,3", *TINY)
    assert same.returncode == 0, same.stderr
    assert "1 core(s): B / A = " in same.stdout
    assert same.stdout.count(" on 1 core(s): ") == 2


def test_machine_share_runs_one_sweep_alone_then_one_per_core(tmp_path: Path) -> None:
    import os

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 CPUs")
    script = str(BENCHMARK / "machine_share.py")
    args = ["--rounds", "1", "depth=2,3", *TINY]
    done = run_python(tmp_path, script, *args, timeout=300)
    assert done.returncode == 0, done.stderr
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("round 1:")]
    # "round 1: alone A s; together B s and C s"
    words = line.removeprefix("round 1:").replace(";", " ").split()
    numbers = [float(w) for w in words if w[0].isdigit()]
    assert len(numbers) == 3 and min(numbers) > 0
    alone, together = numbers[0], numbers[1:]
    share = float(done.stdout.split("share = 2 * alone / together = ")[1].split()[0])
    # The printed walls are rounded to 10 ms.
    assert share == pytest.approx(2 * alone / max(together), rel=0.02)


def test_machine_share_says_a_failed_sweep_s_error(tmp_path: Path) -> None:
    import os

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 CPUs")
    script = str(BENCHMARK / "machine_share.py")
    done = run_python(tmp_path, script, "--rounds", "1", "deptth=3", timeout=300)
    assert done.returncode != 0 and "deptth" in done.stderr
