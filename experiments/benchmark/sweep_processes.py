"""Where a parallel sweep's time goes, process by process.

Usage::

    python experiments/benchmark/sweep_processes.py [--cpus 0,1] [depthlab arguments]

e.g. ``--cpus 0,1 depth=2..50 activation=tanh,relu,sigmoid,erf`` (the 196-job
sweep of the ``baseline`` section). Runs ``python -m depthlab ARGS`` in a fresh
temporary folder (a fresh store), with its CPU affinity set to ``--cpus`` (all
by default), and prints:

- the wall time, when the first job started and the last one ended, and when
  the report's line came (seconds from the start);
- per process role (the sweep's process, the forkserver, each worker, the
  tracker, the report's figure processes and the rest): CPU seconds, from
  ``/proc`` sampled every 50 ms, and the seconds its garbage collections took
  (``gc.callbacks``, for the processes ``sweep_probe.py`` reaches);
- each worker's jobs, its busy seconds and the gaps between its jobs.

The timers cost a little themselves (a file written per job); compare runs of
this script with each other, not with the benchmark's wall times.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
HZ = os.sysconf("SC_CLK_TCK")

RUNNER = """
import sys
import sweep_probe
import depthlab.sweep.cli as cli
import depthlab.sweep.workers as workers

workers.PRELOAD = (*workers.PRELOAD, "sweep_probe")
exit_now = cli.exit_now

def probed_exit(status=0):
    sweep_probe.write("sweep")
    exit_now(status)

cli.exit_now = probed_exit
sys.argv = ["depthlab", *sys.argv[1:]]
cli.run()
"""


def _tree(root: int) -> dict[int, tuple[str, float]]:
    """CPU seconds and command line of ``root`` and its descendants now."""
    stats: dict[int, tuple[int, float]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            text = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2 :].split()
        stats[int(name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / HZ)
    tree, grew = {root}, True
    while grew:
        grew = False
        for pid, (parent, _) in stats.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    out = {}
    for pid in tree:
        if pid in stats:
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                cmd = b""
            out[pid] = (cmd.decode(errors="replace"), stats[pid][1])
    return out


def main(argv: list[str]) -> int:
    cpus = None
    if argv[:1] == ["--cpus"]:
        cpus = {int(c) for c in argv[1].split(",")}
        argv = argv[2:]
    work = Path(tempfile.mkdtemp(prefix="depthlab-processes-"))
    probe = work / "probe"
    probe.mkdir()
    env = {
        **os.environ,
        "SWEEP_PROBE_DIR": str(probe),
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    start = time.time()
    child = subprocess.Popen(
        [sys.executable, "-c", RUNNER, *argv],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
    )
    os.set_blocking(child.stdout.fileno(), False)
    seen: dict[int, tuple[str, float]] = {}
    report_at = None
    while True:
        for pid, (cmd, cpu) in _tree(child.pid).items():
            # The last command line that is not empty: an ending process's
            # reads empty, and a new one's is its parent's until it execs.
            seen[pid] = (cmd or seen.get(pid, ("", 0.0))[0], cpu)
        chunk = child.stdout.read() or b""
        if b"depthlab: report " in chunk and report_at is None:
            report_at = time.time() - start
        if child.poll() is not None:
            break
        time.sleep(0.05)
    wall = time.time() - start
    records = {int(p.stem): json.loads(p.read_text()) for p in probe.glob("*.json")}
    roles: dict[str, list[int]] = {}
    # Not probed: the forkserver (the first of its command line), the report's
    # figure processes (forked from the tracker: the same command line), and
    # multiprocessing's resource tracker.
    forked = sorted(
        p
        for p, (cmd, _) in seen.items()
        if p not in records and "forkserver import main" in cmd
    )
    for pid in seen:
        role = records.get(pid, {}).get("role")
        if role is None:
            role = "other"
            if forked and pid == forked[0]:
                role = "forkserver"
            elif pid in forked:
                role = "report figures"
        roles.setdefault(role, []).append(pid)
    spans = [tuple(s) for r in records.values() for s in r.get("jobs", [])]
    print(f"command: python -m depthlab {' '.join(argv)}; exit {child.returncode}")
    print(f"wall {wall:.2f} s", end="")
    if spans:
        first = min(s for s, _ in spans) - start
        last = max(e for _, e in spans) - start
        print(f"; first job at {first:.2f} s, last job ended at {last:.2f} s", end="")
    if report_at is not None:
        print(f"; report line at {report_at:.2f} s", end="")
    print()
    print("| role | processes | CPU s | garbage collections s |")
    print("| :--- | ---: | ---: | ---: |")
    for role, pids in sorted(roles.items()):
        cpu = sum(seen[p][1] for p in pids)
        gcs = [records[p]["gc"]["seconds"] for p in pids if p in records]
        gc_text = " + ".join(f"{g:.2f}" for g in gcs) if gcs else "-"
        print(f"| {role} | {len(pids)} | {cpu:.2f} | {gc_text} |")
    for pid, record in sorted(records.items()):
        jobs = record.get("jobs", [])
        if jobs:
            busy = sum(e - s for s, e in jobs)
            gaps = sum(jobs[i + 1][0] - jobs[i][1] for i in range(len(jobs) - 1))
            print(
                f"worker {pid}: {len(jobs)} jobs, busy {busy:.2f} s, "
                f"gaps {gaps:.2f} s, CPU {seen.get(pid, ('', 0))[1]:.2f} s"
            )
    return child.returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
