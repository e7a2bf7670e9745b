"""Computed results that could not be logged, kept in the sweep's folder.

When the store fails after a job computed its numbers, the job's
:class:`~depthlab.tracking.JobRecord` (the same params, metrics and tables it
would have logged) goes to ``<sweep folder>/pending/<config hash>/``:
``record.json`` (run name, params, summary metrics, extra metrics, the config,
the job's one-line result) and one parquet file per table (``per_layer.parquet``
and ``tables/<name>.parquet``). The next run of the sweep logs them instead of
computing the job again, then removes the folder.

If the sweep folder cannot be written (it is full, or read-only), the record
goes to :func:`fallback_dir` instead, a folder per store under the system's
temporary directory, which the next run searches too.

A folder is written under a temporary name and renamed when complete, so a
half-written one is never read back.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from depthlab.tracking import JobRecord

FOLDER = "pending"
RECORD_FILE = "record.json"


def _encode(value: float) -> Any:
    # JSON has no inf or nan: keep them as strings.
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def _decode(value: Any) -> Any:
    if value in ("inf", "-inf", "nan"):
        return float(value)
    return value


def fallback_dir(uri: str) -> Path:
    """Where records go when the sweep folder cannot be written:
    ``<tmp>/depthlab-pending-<hash of the store URI>``."""
    digest = hashlib.sha256(uri.encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"depthlab-pending-{digest}"


def reason(err: OSError) -> str:
    """An OSError in a few words (pyarrow's carry no errno)."""
    if err.strerror:
        return err.strerror
    text = str(err)
    if "no space left" in text.lower():
        return "No space left on device"
    return " ".join(text.split())[:80]


def save(sweep_dir: Path, record: JobRecord, line: str) -> Path:
    """Write ``record`` to ``<sweep_dir>/pending/<config hash>/``.

    Returns
    -------
    Path
        The folder.

    Raises
    ------
    OSError
        The sweep folder cannot be written (full, read-only).
    """
    root = Path(sweep_dir) / FOLDER
    final = root / record.config_hash
    tmp = root / f".{record.config_hash}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "tables").mkdir(parents=True)
    try:
        meta = {
            "run_name": record.run_name,
            "config_hash": record.config_hash,
            "params": {k: _encode(v) for k, v in record.params.items()},
            "summary": {k: _encode(float(v)) for k, v in record.summary.items()},
            "extra_metrics": [
                [k, _encode(float(v)), int(s)] for k, v, s in record.extra_metrics
            ],
            "config_yaml": record.config_yaml,
            "line": line,
        }
        if record.per_layer is not None:
            record.per_layer.to_parquet(tmp / "per_layer.parquet", index=False)
        for name, table in record.tables.items():
            table.to_parquet(tmp / "tables" / f"{name}.parquet", index=False)
        (tmp / RECORD_FILE).write_text(json.dumps(meta))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def load(folder: Path) -> tuple[JobRecord, str]:
    """A saved record and the job's one-line result."""
    meta = json.loads((folder / RECORD_FILE).read_text())
    per_layer_file = folder / "per_layer.parquet"
    record = JobRecord(
        run_name=meta["run_name"],
        params={k: _decode(v) for k, v in meta["params"].items()},
        config_hash=meta["config_hash"],
        summary={k: float(_decode(v)) for k, v in meta["summary"].items()},
        per_layer=pd.read_parquet(per_layer_file) if per_layer_file.exists() else None,
        tables={
            p.stem: pd.read_parquet(p)
            for p in sorted((folder / "tables").glob("*.parquet"))
        },
        config_yaml=meta["config_yaml"],
        extra_metrics=[
            (k, float(_decode(v)), int(s)) for k, v, s in meta["extra_metrics"]
        ],
    )
    return record, meta["line"]


def find(folders: Iterable[Path], hashes: Sequence[str]) -> dict[str, Path]:
    """Config hash -> saved folder, for the hashes saved under any of the
    sweep folders (the first folder wins)."""
    wanted = set(hashes)
    found: dict[str, Path] = {}
    for folder in folders:
        root = Path(folder) / FOLDER
        if not root.is_dir():
            continue
        for h in wanted - found.keys():
            if (root / h / RECORD_FILE).is_file():
                found[h] = root / h
    return found


def remove(folder: Path) -> None:
    """Remove a saved record once it is logged (and its empty parent)."""
    shutil.rmtree(folder, ignore_errors=True)
    try:
        folder.parent.rmdir()
    except OSError:
        pass
