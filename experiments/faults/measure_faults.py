"""Measure issue 13's fault table: what a user sees when the store fails.

Usage (as root, for the tmpfs; from the repository root)::

    python experiments/faults/measure_faults.py [CODE_ROOT [SCENARIO,...]]

CODE_ROOT (default: this checkout) is put first on PYTHONPATH, so that the same
script measures another checkout (e.g. the code before issue 13). For each fault
it prints: exit status, seconds from the fault to the exit, whether a traceback
was printed, the last stderr line, runs left RUNNING after the resume, and how
many jobs the resumed sweep computed against how many it had to.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

CODE = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parents[2]).resolve()
ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(CODE)}
JOB = ["width=48", "input_dim=16", "probe.networks=16", "probe.spectra=2"]
LONG_JOB = ["width=128", "input_dim=32", "probe.networks=64", "probe.spectra=2"]
"""Jobs of about a second, so that the server dies inside one."""
JOB_LINE = re.compile(r"^\[\s*\d+/\d+\] .*\d s$")


def popen(cwd: Path, args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "depthlab", *args, "report=false"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def finished(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute(
                "select count(*) from runs r join tags t on r.run_uuid = t.run_uuid "
                "where r.status = 'FINISHED' and t.key = 'depthlab.kind' "
                "and t.value = 'job'"
            ).fetchone()[0]
    except sqlite3.Error:
        return 0


def statuses(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as con:
        return dict(con.execute("select status, count(*) from runs group by status"))


def row(name: str, proc: subprocess.Popen, fault_at: float, extra: str) -> None:
    _, err = proc.communicate(timeout=900)
    seconds = time.time() - fault_at
    lines = [line for line in err.splitlines() if line.strip()]
    print(
        f"| {name} | {proc.returncode} | {seconds:.1f} | "
        f"{'yes' if 'Traceback' in err else 'no'} | "
        f"{(lines[-1] if lines else '')[:300]} | {extra}",
        flush=True,
    )


def resume(cwd: Path, args: list[str], db: Path, total: int, done: int) -> str:
    p = popen(cwd, args)
    out, _ = p.communicate(timeout=900)
    computed = sum(
        bool(JOB_LINE.match(line)) and "recovered" not in line
        for line in out.splitlines()
    )
    recovered = sum("recovered from" in line for line in out.splitlines())
    s = statuses(db)
    return (
        f"resume exit {p.returncode}; {finished(db)} of {total} FINISHED; "
        f"RUNNING left: {s.get('RUNNING', 0)}; computed {computed} "
        f"(needed {total - done}), recovered {recovered}"
    )


def corrupted(tmp: Path) -> None:
    (tmp / "mlflow.db").write_bytes(b"not a database\n" * 1000)
    tic = time.time()
    p = popen(tmp, ["depth=2..4", *JOB])
    row("corrupted store", p, tic, "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server(tmp: Path, port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp / 'server.db'}",
         "--artifacts-destination", str(tmp / "artifacts")],
        cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, env=ENV,
    )  # fmt: skip
    for _ in range(180):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return server
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("server did not start")


def server_dies(tmp: Path) -> None:
    port = _free_port()
    args = ["depth=2..30", f"tracking.uri=http://127.0.0.1:{port}", *LONG_JOB]
    server = _server(tmp, port)
    p = popen(tmp, args)
    while finished(tmp / "server.db") < 8 and p.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)  # into the 9th job's computation
    tic = time.time()
    os.killpg(server.pid, signal.SIGKILL)
    server.wait()
    row("server dies after 8 of 29", p, tic, "")
    done = finished(tmp / "server.db")
    server = _server(tmp, port)
    try:
        print(f"|   | | | | | {resume(tmp, args, tmp / 'server.db', 29, done)}")
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


@contextlib.contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (mount's spelling: 9m, 200k) mounted on a new
    ``folder`` while the block runs."""
    folder.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]
    subprocess.run(mount, check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def disk_full(tmp: Path) -> None:
    with tmpfs(tmp / "disk", "9m") as disk:
        args = ["depth=2..40", *JOB]
        p = popen(disk, args)
        db = disk / "mlflow.db"
        p.wait(timeout=900)
        tic = time.time()  # the moment of the fault is not seen: "s to exit" is 0
        done = finished(db)
        row("disk full (9 MB tmpfs)", p, tic, f"{done} of 39 FINISHED")
        subprocess.run(["mount", "-o", "remount,size=400m", str(disk)], check=True)
        print(f"|   | | | | | {resume(disk, args, db, 39, done)}")


def no_room_for_the_store(tmp: Path) -> None:
    with tmpfs(tmp / "disk", "200k") as disk:
        tic = time.time()
        row("no room to create the store (200 kB)", popen(disk, ["depth=2"]), tic, "")


if __name__ == "__main__":
    print(f"code: {CODE}")
    print("| fault | exit | s to exit | traceback | last stderr line | notes |")
    scenarios = [corrupted, server_dies, disk_full, no_room_for_the_store]
    if len(sys.argv) > 2:
        scenarios = [s for s in scenarios if s.__name__ in sys.argv[2].split(",")]
    for scenario in scenarios:
        with tempfile.TemporaryDirectory(prefix="depthlab-faults-") as d:
            scenario(Path(d))
