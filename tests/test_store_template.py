"""New SQLite stores copied from a migrated template: the copy is what MLflow
makes; every bad template or cache folder falls back to MLflow's own creation;
a sweep on a copied store finishes its jobs."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import QUIET_ENV, TINY, job_runs, run_cli

from depthlab import tracking
from depthlab.tracking import template

DEFAULT_FIELDS = ("artifact_location", "creation_time", "last_update_time")
"""The Default experiment's fields that depend on the process creating it."""


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache folder of this test's own."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(template.CACHE_ENV, str(folder))
    return folder


@pytest.fixture
def copies(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """What :func:`template.copy_to` returned, call after call, in this process."""
    results: list[bool] = []
    real = template.copy_to

    def spy(db: Path) -> bool:
        results.append(real(db))
        return results[-1]

    monkeypatch.setattr(template, "copy_to", spy)
    return results


def new_store(folder: Path) -> Path:
    """A store created in ``folder`` by :func:`tracking._client`; its file."""
    folder.mkdir(parents=True, exist_ok=True)
    tracking._client(tracking.default_uri(folder))
    return folder / "mlflow.db"


def contents(db: Path) -> tuple[list[Any], dict[str, list[Any]], dict[str, Any]]:
    """The schema (sqlite_master), the rows of every table (sorted) with the
    :data:`DEFAULT_FIELDS` of the Default experiment blanked, and the Default
    experiment's row."""
    con = sqlite3.connect(db)
    try:
        schema = con.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()
        rows: dict[str, list[Any]] = {}
        default: dict[str, Any] = {}
        for kind, name, _, _ in schema:
            if kind != "table":
                continue
            cursor = con.execute(f'SELECT * FROM "{name}"')
            columns = [c[0] for c in cursor.description]
            table = [dict(zip(columns, row, strict=True)) for row in cursor]
            if name == "experiments":
                for row in table:
                    if row["experiment_id"] == 0:
                        default = dict(row)
                        row.update(dict.fromkeys(DEFAULT_FIELDS))
            rows[name] = sorted((sorted(r.items()) for r in table), key=repr)
    finally:
        con.close()
    return schema, rows, default


def test_a_store_from_the_template_is_what_mlflow_makes(
    tmp_path: Path,
    cache: Path,
    copies: list[bool],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
    from mlflow.utils.uri import append_to_uri_path, resolve_uri_if_local

    made = {}
    for name in ("migrated", "copied"):
        folder = tmp_path / name
        folder.mkdir()
        monkeypatch.chdir(folder)  # the Default experiment's artifacts: <cwd>/mlruns/0
        before = int(time.time() * 1000)
        db = new_store(folder)
        after = int(time.time() * 1000) + 1
        expected = append_to_uri_path(
            resolve_uri_if_local(DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH), "0"
        )
        made[name] = (contents(db), expected, before, after)
        if name == "migrated":
            assert template.template_path().parent == cache
            assert template._fault(template.template_path()) is None
    assert copies == [False, True]
    (schema, rows, _), *_ = made["migrated"]
    (copy_schema, copy_rows, _), *_ = made["copied"]
    assert copy_schema == schema
    assert len(schema) > 40
    assert copy_rows == rows  # alembic_version and every table's rows
    assert rows["alembic_version"] == [[("version_num", template.head_revision())]]
    for name, ((_, _, default), expected, before, after) in made.items():
        assert default["artifact_location"] == expected
        assert expected.endswith(f"{name}/mlruns/0")
        assert before <= default["creation_time"] <= after
        assert default["last_update_time"] == default["creation_time"]


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page : 4 * page] = b"\xff" * (3 * page)  # pages 2 to 4: b-tree pages
    path.write_bytes(bytes(data))


def _foreign(path: Path) -> None:
    path.write_bytes(b"not a database\n" * 1000)


def _other_version(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("UPDATE alembic_version SET version_num = '0a8213491aaa'")
    con.commit()
    con.close()


@pytest.mark.parametrize(
    "spoil", [_truncate, _corrupt, _foreign, _other_version, Path.unlink]
)
def test_a_bad_template_falls_back_to_mlflow_and_is_replaced(
    tmp_path: Path, cache: Path, copies: list[bool], spoil: Any
) -> None:
    new_store(tmp_path / "first")
    path = template.template_path()
    spoil(path)
    assert template._fault(path) is not None
    db = new_store(tmp_path / "second")
    assert copies == [False, False]
    uri = tracking.default_uri(db.parent)
    tracking.open_store(uri, "t")
    parent = tracking.start_sweep(uri, "t", run_name="sweep", params={})
    tracking.end_sweep(uri, parent)
    assert template._fault(path) is None  # replaced by the second store
    new_store(tmp_path / "third")
    assert copies == [False, False, True]


def test_a_cache_folder_that_cannot_be_written_falls_back_to_mlflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, copies: list[bool]
) -> None:
    # A folder below a plain file: no process, root included, can create it.
    (tmp_path / "file").write_text("")
    monkeypatch.setenv(template.CACHE_ENV, str(tmp_path / "file" / "cache"))
    for name in ("first", "second"):
        db = new_store(tmp_path / name)
        uri = tracking.default_uri(db.parent)
        tracking.open_store(uri, "t")
    assert copies == [False, False]
    assert not template.template_path().exists()
    assert template.save(db) is False


def test_a_sweep_on_a_copied_store_finishes_its_jobs(
    tmp_path: Path, cache: Path
) -> None:
    new_store(tmp_path / "first")
    path = template.template_path()
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version = 7")  # a mark MLflow's own stores lack
    con.close()
    assert template._fault(path) is None
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    env = {**QUIET_ENV, template.CACHE_ENV: str(cache)}
    out = run_cli(sweep, "depth=2,3", *TINY, env=env)
    assert out.returncode == 0, out.stderr
    con = sqlite3.connect(sweep / "mlflow.db")
    assert con.execute("PRAGMA user_version").fetchone() == (7,)  # a copy
    con.close()
    jobs = job_runs(tracking.default_uri(sweep))
    assert sorted(jobs["params.depth"]) == ["2", "3"]
    assert list(jobs["status"]) == ["FINISHED"] * 2


HEAD_REVISION_SCAN = """
import json
import mlflow.store.db.utils as utils
from alembic.script import ScriptDirectory

from depthlab.tracking import template

scans = []
real = ScriptDirectory.from_config

def counted(config):
    scans.append(1)
    return real(config)

ScriptDirectory.from_config = staticmethod(counted)
first = utils._get_latest_schema_revision()
template.remember_head_revision()
template.remember_head_revision()  # a second call keeps the first cache
found = [utils._get_latest_schema_revision() for _ in range(3)]
print(json.dumps({"first": first, "found": found, "scans": len(scans),
                  "head": template.head_revision(), "after": len(scans)}))
"""


def test_mlflow_s_newest_schema_revision_is_found_once_per_process(
    tmp_path: Path,
) -> None:
    from conftest import run_python_json

    out = run_python_json(tmp_path, HEAD_REVISION_SCAN)
    # Uncached, MLflow scanned its migrations for its own call; cached, the
    # first of the next calls scans once and the others (and head_revision)
    # read the cache: the same revision every time.
    assert out["found"] == [out["first"]] * 3 == [out["head"]] * 3
    assert out["scans"] == 2 and out["after"] == 2


def head_revision_cached() -> int:
    """A forkserver process's target: how many revisions MLflow has cached."""
    import mlflow.store.db.utils as utils

    found = utils._get_latest_schema_revision
    return found.cache_info().currsize if hasattr(found, "cache_info") else -1


def test_the_workers_inherit_the_schema_revision_from_their_forkserver() -> None:
    from concurrent.futures import ProcessPoolExecutor

    from depthlab.sweep import workers

    with ProcessPoolExecutor(1, mp_context=workers._context()) as pool:
        assert pool.submit(head_revision_cached).result(timeout=120) == 1
