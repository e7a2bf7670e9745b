"""The tracking store shared safely: its file lock, process identity, and faults.

Three small things every depthlab process that opens a store needs, none of
which imports mlflow:

- :func:`store_lock`: an exclusive ``fcntl.flock`` on ``<db>.lock`` beside a
  SQLite database, held while the store is created or migrated, the experiment
  created, dead runs ended, and a job claimed. A tracking server (``http://``)
  has no file to lock: the server's own database serializes its writes, and
  job claims there are settled after the fact (see :mod:`depthlab.tracking`).
- :class:`Owner`: the process that created a run (host, pid, and the process's
  start time, so that a reused pid is not taken for the run's owner), stored in
  the run's tags, and :meth:`Owner.alive` to tell whether it still runs.
- :func:`classify` and :class:`StoreFault`: any error that comes out of the
  store turned into the cause in words (not a database, locked, disk full,
  server unreachable, permission denied) for a one-line message.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

HOST_TAG = "depthlab.owner.host"
PID_TAG = "depthlab.owner.pid"
START_TAG = "depthlab.owner.start"
END_REASON_TAG = "depthlab.end_reason"
HEARTBEAT_TAG = "depthlab.heartbeat"
HEARTBEAT_S = 30.0
"""How often a job run on a tracking server renews its heartbeat (seconds)."""
STALE_S = 300.0
"""A heartbeat older than this marks its run's process as gone (seconds)."""

# ---------------------------------------------------------------------------
# The file lock


def db_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, or None for other stores."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///"))
    return None


def lock_path(uri: str) -> Path | None:
    """``<db>.lock`` beside a SQLite database; None for a tracking server."""
    db = db_path(uri)
    return None if db is None else db.with_name(db.name + ".lock")


class _Held(threading.local):
    depth: int = 0


_held: dict[str, _Held] = {}
_guard = threading.Lock()
_thread_locks: dict[str, threading.RLock] = {}


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Hold the store's file lock (re-entrant within a thread).

    ``flock`` locks belong to an open file description, so threads of one
    process would share it; a per-path ``threading.RLock`` serializes them
    first. The lock is released when the block ends or the process dies (the
    kernel drops it with the file descriptor), so a SIGKILL never leaves a
    store locked.
    """
    path = lock_path(uri)
    if path is None:
        yield
        return
    key = str(path)
    with _guard:
        rlock = _thread_locks.setdefault(key, threading.RLock())
        held = _held.setdefault(key, _Held())
    with rlock:
        if held.depth:
            held.depth += 1
            try:
                yield
            finally:
                held.depth -= 1
            return
        import fcntl

        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            raise StoreFault(uri, cause_of_os_error(err), str(err)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held.depth = 1
            try:
                yield
            finally:
                held.depth = 0
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


# ---------------------------------------------------------------------------
# Process identity


@cache
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_start(pid: int) -> str | None:
    """When process ``pid`` started, as ``<boot id>:<clock ticks since boot>``.

    Read from ``/proc/<pid>/stat`` (field 22); None where there is no /proc
    or no such process, or the process has exited and waits to be reaped (a
    zombie: in a container whose init does not reap, an exited worker stays
    one). Two processes with the same pid never share it.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # field 3, the state: exited
        return None
    return f"{_boot_id()}:{fields[19]}"


@dataclass(frozen=True)
class Owner:
    """The process that created a run."""

    host: str
    pid: int
    start: str
    """:func:`process_start` of ``pid``, or empty where unknown."""

    def tags(self) -> dict[str, str]:
        """The run tags that record this owner."""
        return {HOST_TAG: self.host, PID_TAG: str(self.pid), START_TAG: self.start}

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> Owner | None:
        """The owner recorded in a run's tags, or None for runs without one."""
        if HOST_TAG not in tags or PID_TAG not in tags:
            return None
        try:
            pid = int(tags[PID_TAG])
        except ValueError:
            return None
        return cls(tags[HOST_TAG], pid, tags.get(START_TAG, ""))

    def alive(self) -> bool | None:
        """True if the process still runs, False if it is gone, None if unknown
        (it ran on another host)."""
        if self.host != socket.gethostname():
            return None
        if self.pid == os.getpid():
            return True
        start = process_start(self.pid)
        if start is not None:
            return not self.start or start == self.start
        if Path("/proc/self/stat").exists():
            return False  # no such process, or it exited (a zombie)
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}"


def why_dead(tags: Mapping[str, str], now: float) -> str | None:
    """Why a RUNNING run's process is known to be gone, or None if it may live.

    On this host the process itself is looked up (:meth:`Owner.alive`); a run
    of another host counts as gone when its heartbeat (``depthlab.heartbeat``,
    Unix seconds, renewed every :data:`HEARTBEAT_S` by runs on a tracking
    server) is older than :data:`STALE_S`. A run of another host without a
    heartbeat may live.
    """
    owner = Owner.from_tags(tags)
    if owner is None:
        return None
    alive = owner.alive()
    if alive is False:
        return f"its process ({owner}) is gone"
    if alive is None and HEARTBEAT_TAG in tags:
        try:
            age = now - float(tags[HEARTBEAT_TAG])
        except ValueError:
            return None
        if age > STALE_S:
            return f"its process ({owner}) sent no heartbeat for {age:.0f} s"
    return None


def this_process() -> Owner:
    """The :class:`Owner` of runs this process creates."""
    pid = os.getpid()
    return Owner(socket.gethostname(), pid, process_start(pid) or "")


# ---------------------------------------------------------------------------
# Faults

NOT_A_DATABASE = "is not an SQLite database (corrupted or truncated)"
LOCKED = "is locked by another process"
DISK_FULL = "is full (no space left on its disk)"
UNREACHABLE = "does not answer (server unreachable)"
PERMISSION = "cannot be written (permission denied)"

_ADVICE = {
    NOT_A_DATABASE: (
        "move the file away (or restore a backup) and run the same command, "
        "or set tracking.uri"
    ),
    LOCKED: "stop the other process or wait, then run the same command to resume",
    DISK_FULL: "free space and run the same command to resume",
    UNREACHABLE: "start the server and run the same command to resume",
    PERMISSION: "make it writable or set tracking.uri, then run the same command",
}

_PATTERNS = (
    (NOT_A_DATABASE, ("file is not a database", "malformed", "not a database")),
    (DISK_FULL, ("database or disk is full", "no space left", "disk quota")),
    (LOCKED, ("database is locked", "database table is locked")),
    (
        PERMISSION,
        ("readonly database", "read-only file system", "permission denied"),
    ),
    (
        UNREACHABLE,
        (
            "max retries exceeded",
            "connection refused",
            "failed to establish a new connection",
            "connection aborted",
            "remote end closed connection",
            "read timed out",
            "connect timeout",
            "name or service not known",
            "bad gateway",
            "service unavailable",
        ),
    ),
)


def cause_of_os_error(err: OSError) -> str:
    """The cause in words of a file-system error."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return DISK_FULL
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PERMISSION
    return f"cannot be used ({err.strerror or err})"


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo = [err]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        for nxt in (e.__cause__, e.__context__, getattr(e, "orig", None)):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


def classify(err: BaseException) -> str | None:
    """The cause in words of an error raised by the store, or None if the
    error does not come from the store (a bug, a bad argument)."""
    if isinstance(err, StoreFault):
        return err.cause
    chain = list(_chain(err))
    texts = " ".join(str(e) for e in chain).lower()
    for cause, patterns in _PATTERNS:
        if any(p in texts for p in patterns):
            return cause
    for e in chain:
        if isinstance(e, OSError) and e.errno is not None:
            return cause_of_os_error(e)
    names = {type(e).__module__.split(".")[0] for e in chain}
    kinds = {type(e).__name__ for e in chain}
    if "requests" in names or "urllib3" in names or "ConnectionError" in kinds:
        return UNREACHABLE
    if "unable to open database file" in texts:
        return PERMISSION
    if "sqlalchemy" in names or "sqlite3" in names or "alembic" in names:
        return f"failed ({_short(chain[-1])})"
    return None


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:160]


class StoreFault(BaseException):
    """The tracking store failed; :meth:`line` says so in one line.

    A BaseException, like KeyboardInterrupt, so that Hydra's job wrapper (which
    records an ``Exception`` as a failed job and goes on to the next) stops the
    sweep instead of failing every remaining job against a dead store.
    """

    def __init__(self, uri: str, cause: str, detail: str = "") -> None:
        super().__init__(f"tracking store {uri} {cause}")
        self.uri = uri
        self.cause = cause
        self.detail = detail
        self.saved: list[str] = []
        """Folders where computed jobs that could not be logged were kept."""
        self.unsaved: list[str] = []
        """Folders where keeping them failed too (with the reason)."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled from a worker process to the sweep's (BaseException's own
        # reduce would call __init__ with the message alone).
        return (type(self), (self.uri, self.cause, self.detail), self.__dict__)

    def where(self) -> str:
        """The store: its file, or its URI."""
        db = db_path(self.uri)
        return str(db) if db is not None else self.uri

    def advice(self) -> str:
        """What to do about it."""
        return _ADVICE.get(self.cause, "run the same command to resume")

    def line(self, kept: str = "") -> str:
        """``tracking store <where> <cause>; <kept>; <advice>``."""
        parts = [f"tracking store {self.where()} {self.cause}"]
        if kept:
            parts.append(kept)
        parts.append(self.advice())
        return "; ".join(parts)


def fault_from(uri: str, err: BaseException) -> StoreFault | None:
    """``err`` as a :class:`StoreFault`, or None if it is not a store fault."""
    if isinstance(err, StoreFault):
        return err
    cause = classify(err)
    if cause is None:
        return None
    return StoreFault(uri, cause, _short(err))


@contextlib.contextmanager
def faults(uri: str) -> Iterator[None]:
    """Turn errors of the store raised in the block into :class:`StoreFault`."""
    try:
        yield
    except (StoreFault, KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except Exception as err:
        fault = fault_from(uri, err)
        if fault is None:
            raise
        raise fault from None


def journal_mode(db: Path) -> str | None:
    """The journal mode an SQLite file's header records: ``"wal"``,
    ``"rollback"``, or None (too short, or neither).

    Raises
    ------
    OSError
        If the file cannot be read.
    """
    with open(db, "rb") as f:
        header = f.read(20)
    return {b"\x01\x01": "rollback", b"\x02\x02": "wal"}.get(header[18:20])


def check_database_file(uri: str) -> None:
    """Fail fast on a SQLite file that is not a database, before SQLAlchemy
    opens it (SQLite answers a truncated file only on its first read, deep in
    a migration): the header must be SQLite's and the file as long as the
    header says. Reads 100 bytes: no scan of the database (a page damaged
    inside is reported, as "malformed", when it is read).

    Raises
    ------
    StoreFault
    """
    db = db_path(uri)
    if db is None or not db.exists():
        return
    try:
        size = db.stat().st_size
        with open(db, "rb") as f:
            header = f.read(100)
    except OSError as err:
        raise StoreFault(uri, cause_of_os_error(err), str(err)) from None
    if size == 0:
        return  # SQLite treats an empty file as an empty database
    if not header.startswith(b"SQLite format 3\x00") or len(header) < 100:
        raise StoreFault(uri, NOT_A_DATABASE, "bad header")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    wal = db.with_name(db.name + "-wal")
    if pages and size < pages * page_size and not wal.exists():
        raise StoreFault(
            uri, NOT_A_DATABASE, f"{size} bytes, header says {pages * page_size}"
        )
