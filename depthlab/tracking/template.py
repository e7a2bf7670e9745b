"""Fresh SQLite stores copied from a migrated template instead of migrated.

MLflow creates a new SQLite store by replaying its ~70 alembic migrations
(0.5-0.8 s, on the critical path before a sweep's first job); an existing store
opens in a few hundredths of a second. So the first store this machine creates
with a given MLflow is migrated by MLflow as before, and a consistent copy of it
is kept as the template (:func:`save`); every later new store is that file
copied into place (:func:`copy_to`), which MLflow then opens without migrating.

The template holds MLflow's schema, its alembic version and every row its
migrations insert, but not the Default experiment (id 0): that row depends on the
creating process (its artifact location is ``<cwd>/mlruns/0``, its times the
creation's), so MLflow itself inserts it when it opens the copy, as it does
right after migrating a new store. A store made from the template is then what
MLflow would have made (``tests/test_store_template.py`` compares the two).

The template lives in :func:`cache_dir`, one file per MLflow and SQLAlchemy
version (:func:`template_path`). Nothing here ever makes a store worse than
MLflow's own creation: a cache folder that cannot be written, a missing
template, or one that is not a database, is damaged or is of another schema
version, and the store is created by MLflow (a bad template is deleted, and the
new store replaces it). The caller holds the store's lock
(:func:`depthlab.tracking.store.store_lock`) around both functions.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import sqlite3
from pathlib import Path

from depthlab.tracking.store import StoreFault, check_database_file, journal_mode

CACHE_ENV = "DEPTHLAB_CACHE_DIR"
"""The environment variable that names depthlab's cache folder."""


def cache_dir() -> Path:
    """depthlab's cache folder: ``$DEPTHLAB_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/depthlab``, else ``~/.cache/depthlab``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "depthlab"


def template_path() -> Path:
    """The template for the installed MLflow and SQLAlchemy:
    ``<cache>/store-template-mlflow-<version>-sqlalchemy-<version>.db``."""
    import mlflow
    import sqlalchemy

    versions = f"mlflow-{mlflow.__version__}-sqlalchemy-{sqlalchemy.__version__}"
    return cache_dir() / f"store-template-{versions}.db"


def is_new(db: Path) -> bool:
    """Whether ``db`` is a store not yet created: no file, or an empty one,
    and no write-ahead log beside it."""
    if db.with_name(db.name + "-wal").exists():
        return False
    try:
        return db.stat().st_size == 0
    except FileNotFoundError:
        return True
    except OSError:
        return False


def head_revision() -> str:
    """MLflow's newest schema revision (what it checks every store against)."""
    remember_head_revision()
    from mlflow.store.db import utils

    return utils._get_latest_schema_revision()


def remember_head_revision() -> None:
    """Have MLflow find its newest schema revision once per process.

    MLflow's ``_get_latest_schema_revision`` loads all of its alembic
    migration scripts (over a hundred) each time it is called, twice for
    every store a process opens (its engine and its read engine): on the
    tracker's way to a sweep's first job, and in each worker's first job.
    The answer depends only on the installed MLflow, so it is cached
    (``functools.cache``); found in the workers' forkserver
    (:mod:`depthlab.sweep.preload`), it is inherited by every process forked
    from it. Safe to call more than once.
    """
    from mlflow.store.db import utils

    found = utils._get_latest_schema_revision
    if not hasattr(found, "cache_info"):
        utils._get_latest_schema_revision = functools.cache(found)


def _fault(db: Path) -> str | None:
    """Why ``db`` cannot serve as a template (None if it can): the header and
    length (:func:`depthlab.tracking.store.check_database_file`), SQLite's
    ``quick_check``, one rollback-journal file, MLflow's newest schema revision,
    and no Default experiment."""
    try:
        if db.stat().st_size == 0:
            return "empty"
        check_database_file(f"sqlite:///{db}")
        if journal_mode(db) != "rollback":
            return "not in rollback-journal mode"
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            if con.execute("PRAGMA quick_check").fetchall() != [("ok",)]:
                return "damaged"
            versions = con.execute("SELECT version_num FROM alembic_version").fetchall()
            default = con.execute(
                "SELECT count(*) FROM experiments WHERE experiment_id = 0"
            ).fetchone()
        finally:
            con.close()
    except StoreFault as err:
        return err.cause
    except (OSError, sqlite3.Error) as err:
        return str(err)
    if versions != [(head_revision(),)]:
        return f"schema {versions}"
    if default != (0,):
        return "holds a Default experiment"
    return None


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _temp_beside(path: Path) -> Path:
    """A new file's name in ``path``'s folder (hidden, unique)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def copy_to(db: Path) -> bool:
    """Put a copy of the template at ``db``, a new store (see :func:`is_new`).

    The copy is written beside ``db``, checked (:func:`_fault`), then moved
    into place with ``os.replace``, so that ``db`` is never a partial file.

    Returns
    -------
    bool
        True if ``db`` is now the template's copy; False if there is no usable
        template (a bad one is deleted) or the copy failed, and ``db`` is
        untouched: MLflow creates the store.
    """
    try:
        template = template_path()
        if not template.is_file():
            return False
    except OSError:
        return False
    temp = _temp_beside(db)
    try:
        # 0o644 less the umask: the mode SQLite gives the files it creates.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as out, open(template, "rb") as src:
            shutil.copyfileobj(src, out)
        if _fault(temp) is not None:
            _unlink(template)
            return False
        os.replace(temp, db)
    except OSError:
        return False
    finally:
        _unlink(temp)
    return True


def save(db: Path) -> bool:
    """Keep the store ``db``, just created and migrated by MLflow, as the
    template (unless a good one is already there).

    SQLite's backup API takes a consistent copy of the store (which runs in WAL
    mode), into a temporary file in the cache folder; the Default experiment is
    deleted from it, it is put in rollback-journal mode (one self-contained
    file) and checked, then moved into place with ``os.replace``, so that
    processes saving at once never leave a partial template.

    Returns
    -------
    bool
        Whether the template was written. Any failure (a cache folder that
        cannot be written, a full disk) leaves no template and no error.
    """
    try:
        template = template_path()
        if template.is_file() and _fault(template) is None:
            return False
        template.parent.mkdir(parents=True, exist_ok=True)
        temp = _temp_beside(template)
    except (OSError, sqlite3.Error):
        return False
    try:
        src = sqlite3.connect(db)
        try:
            dst = sqlite3.connect(temp)
            try:
                src.backup(dst)
                dst.execute("DELETE FROM experiments WHERE experiment_id = 0")
                dst.commit()
                dst.execute("PRAGMA journal_mode=DELETE")
            finally:
                dst.close()
        finally:
            src.close()
        if _fault(temp) is not None:
            return False
        os.replace(temp, template)
    except (OSError, sqlite3.Error):
        return False
    finally:
        for suffix in ("", "-journal", "-wal", "-shm"):
            _unlink(temp.with_name(temp.name + suffix))
    return True
