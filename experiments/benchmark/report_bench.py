"""What the report at the end of a sweep costs: code trees against each other.

``python experiments/benchmark/report_bench.py [--trees NAME=PATH,...]
[--jobs 49,196] [--rounds 5] [--cpus 2,1] [--stores DIR]``

Each store is made once (``python -m depthlab depth=2..50 report=false``, and
``activation=tanh,relu,sigmoid,erf`` for 196 jobs) in ``--stores`` (default:
a temporary folder), then every round runs each candidate, a (code tree, CPUs)
pair, once, in a fresh process (the order reversed every other round, so that
load from other processes hits all candidates alike): with ``PYTHONPATH`` set
to the tree, the process's affinity set to the first ``cpus`` CPUs, matplotlib
and seaborn imported first (the sweep imports them while its jobs run), the
job's tables passed in memory (``known_tables``, as the sweep does), it times
``depthlab.report.build_report_from_mlflow(..., log_to_parent=True)``: its
first call (what a sweep pays) and the median of three more. The result is
each candidate's median over the rounds. A tree is any checkout of depthlab,
e.g. ``git archive <commit> | tar -x -C /tmp/before`` for the code before a
change (default: this checkout alone).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SWEEPS = {
    49: ["depth=2..50"],
    196: ["depth=2..50", "activation=tanh,relu,sigmoid,erf"],
}
"""The sweeps of issue 12, by their number of jobs."""


def make_store(directory: Path, jobs: int) -> Path:
    """``directory/jobs<N>``, holding the sweep of ``jobs`` jobs (made if absent)."""
    store = directory / f"jobs{jobs}"
    if not (store / "mlflow.db").exists():
        store.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "depthlab", *SWEEPS[jobs], "report=false"]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        subprocess.run(cmd, cwd=store, env=env, check=True, capture_output=True)
    return store


def child(store: str, calls: int) -> dict[str, Any]:
    """In a candidate's process: the first and the later report builds, s."""
    import matplotlib.figure  # noqa: F401  (the sweep imports them meanwhile)
    import seaborn  # noqa: F401

    from depthlab import tracking
    from depthlab.report import build_report_from_mlflow
    from depthlab.tracking.read import REPORT_TABLES

    uri = tracking.default_uri(store)
    parent = tracking.latest_sweep_id(uri, "depthlab")
    sweep = tracking.load_sweep(uri, parent, tables=REPORT_TABLES)
    known: dict[str, dict[str, Any]] = {}
    for name, table in sweep.tables.items():
        for run_id, rows in table.groupby("run_id", sort=False):
            frame = rows.drop(columns="run_id").reset_index(drop=True)
            known.setdefault(str(run_id), {})[name] = frame
    times, cpu = [], []
    with tempfile.TemporaryDirectory(prefix="depthlab-report-") as out:
        for _ in range(calls + 1):
            tic, cpu0 = time.perf_counter(), _cpu_seconds()
            build_report_from_mlflow(
                uri, parent, out_dir=out, log_to_parent=True, known_tables=known
            )
            times.append(time.perf_counter() - tic)
            cpu.append(_cpu_seconds() - cpu0)
    return {
        "first": times[0],
        "later": statistics.median(times[1:]),
        "first_cpu": cpu[0],
    }


def _cpu_seconds() -> float:
    """CPU time of this process and of its ended children (forked workers)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_candidate(tree: Path, cpus: int, store: Path, calls: int) -> dict[str, Any]:
    """One fresh process of a candidate (``tree`` on ``cpus`` CPUs)."""
    every = sorted(os.sched_getaffinity(0))
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, __file__, "--child", str(store), "--calls", str(calls)]
    out = subprocess.run(
        cmd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=lambda: os.sched_setaffinity(0, every[:cpus]),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print a markdown table of the medians."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trees", default=f"this={REPO}", help="NAME=PATH,...")
    p.add_argument("--jobs", default="49,196", help="sweeps, by their jobs: 49,196")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--cpus", default="2", help="CPU counts to pin to, e.g. 2,1")
    p.add_argument("--calls", type=int, default=3, help="later calls per process")
    p.add_argument("--stores", type=Path, default=None, help="folder of the stores")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.calls)))
        return 0
    trees = dict(item.split("=", 1) for item in args.trees.split(","))
    cpus = [int(c) for c in args.cpus.split(",")]
    stores = args.stores or Path(tempfile.mkdtemp(prefix="depthlab-stores-"))
    rows = []
    for jobs in (int(j) for j in args.jobs.split(",")):
        store = make_store(stores, jobs)
        names = [(t, c) for t in trees for c in cpus]
        runs: dict[tuple[str, int], list[dict[str, Any]]] = {n: [] for n in names}
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                tree = Path(trees[name[0]])
                runs[name].append(run_candidate(tree, name[1], store, args.calls))
        for (tree, c), results in runs.items():
            first = statistics.median(x["first"] for x in results)
            later = statistics.median(x["later"] for x in results)
            cpu = statistics.median(x["first_cpu"] for x in results)
            reference = runs[(next(iter(trees)), c)]
            ratio = statistics.median(x["first"] for x in reference) / first
            rows.append((jobs, tree, c, first, later, cpu, ratio))
    print(f"load average at the end: {os.getloadavg()[0]:.1f}\n")
    print(
        "| jobs | tree | CPUs | first build, s | its CPU time, s | later builds, s "
        f"| first build: {next(iter(trees))} / this |"
    )
    print("| ---: | :--- | ---: | ---: | ---: | ---: | ---: |")
    for jobs, tree, c, first, later, cpu, ratio in rows:
        print(
            f"| {jobs} | {tree} | {c} | {first:.3f} | {cpu:.3f} | {later:.3f} "
            f"| {ratio:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
