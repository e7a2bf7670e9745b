"""Tracking in-process: failed jobs, infinite metrics, URIs; the CLI's sugar."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from depthlab import tracking
from depthlab.sweep.cli import UsageError, expand_range, rewrite_argv


def test_a_job_that_raises_ends_failed_with_its_error(tmp_path: Path) -> None:
    uri = tracking.default_uri(tmp_path)
    parent = tracking.start_sweep(uri, "t", run_name="sweep", params={"jobs": 1})
    with (
        pytest.raises(RuntimeError, match="boom"),
        tracking.job_run(uri, "t", parent, "L=3 bad", "abc") as run_id,
    ):
        raise RuntimeError("boom")
    run = tracking._client(uri).get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags[tracking.ERROR_TAG] == "RuntimeError: boom"
    # A failed job does not count as done: a rerun computes it again.
    assert tracking.finished_runs(uri, "t") == {}


def test_finished_job_is_found_and_infinite_metrics_come_back(tmp_path: Path) -> None:
    uri = tracking.default_uri(tmp_path)
    parent = tracking.start_sweep(uri, "t", run_name="sweep", params={})
    record = tracking.JobRecord(
        run_name="L=2",
        params={"depth": 2, "output_activation": None},
        config_hash="h1",
        summary={"grad_log10_norm_median": -math.inf, "beta": 0.0, "nan": math.nan},
        per_layer=pd.DataFrame(
            {"layer": [1, 2], "cond_median": [0.5, math.nan], "chi": [1.0, 1.0]}
        ),
        tables={"samples": pd.DataFrame({"net": [0], "grad_log10_norm": [-1.0]})},
        config_yaml="depth: 2\n",
    )
    with tracking.job_run(uri, "t", parent, "L=2", "h1") as run_id:
        tracking.log_job(uri, run_id, record)
    tracking.end_sweep(uri, parent)
    assert tracking.finished_runs(uri, "t") == {"h1": run_id}
    sweep = tracking.load_sweep(uri, parent)
    row = sweep.runs.iloc[0]
    assert row["status"] == "FINISHED"
    assert row["grad_log10_norm_median"] == -math.inf
    assert "nan" not in sweep.runs  # NaN summaries are not logged
    assert row["params.output_activation"] == "null"
    assert list(sweep.tables["samples"]["grad_log10_norm"]) == [-1.0]
    assert tracking.latest_sweep_id(uri, "t") == parent
    history = tracking._client(uri).get_metric_history(run_id, "cond_median")
    assert [(m.step, m.value) for m in history] == [(1, 0.5)]
    # Per-layer columns outside PER_LAYER_METRICS stay in the table only.
    assert tracking._client(uri).get_metric_history(run_id, "chi") == []


def test_default_uri_is_absolute_sqlite(tmp_path: Path) -> None:
    assert tracking.default_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert tracking.resolve_uri("http://host:5000") == "http://host:5000"


def test_dead_server_is_named_within_seconds() -> None:
    with pytest.raises(tracking.TrackingError, match=r"127\.0\.0\.1:9"):
        tracking.check_store("http://127.0.0.1:9", timeout=2)


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("depth=2..50", "depth=range(2,51,1)"),
        ("depth=2..50:4", "depth=range(2,51,4)"),
        ("init.sigma_w=1.5", "init.sigma_w=1.5"),
        ("depth=3..3", "depth=range(3,4,1)"),
    ],
)
def test_range_syntax(argument: str, expected: str) -> None:
    assert expand_range(argument) == expected


@pytest.mark.parametrize("argument", ["depth=50..2", "depth=2..x", "depth=2..5:0"])
def test_bad_ranges_are_refused(argument: str) -> None:
    with pytest.raises(UsageError, match="depth="):
        expand_range(argument)


def test_every_invocation_is_a_multirun_except_help_and_cfg() -> None:
    assert rewrite_argv(["depth=2..3"]) == ["--multirun", "depth=range(2,4,1)"]
    assert rewrite_argv([]) == ["--multirun"]
    assert rewrite_argv(["-m", "depth=2"]) == ["-m", "depth=2"]
    assert rewrite_argv(["experiment=vanishing"]) == [
        "--multirun",
        "+experiment=vanishing",
    ]
    assert "--multirun" not in rewrite_argv(["--cfg", "job", "depth=3"])
    assert "--multirun" not in rewrite_argv(["--help"])


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )


def test_exit_now_runs_atexit_and_flushes_buffered_output() -> None:
    out = _python(
        "import atexit, sys\n"
        "from depthlab.sweep.cli import exit_now\n"
        "atexit.register(lambda: print('atexit ran'))\n"
        "print('buffered', end=' ')\n"
        "sys.stderr.write('to stderr')\n"
        "exit_now(3)\n"
    )
    assert out.returncode == 3
    assert out.stdout == "buffered atexit ran\n"
    assert out.stderr == "to stderr"


def test_exit_now_waits_for_a_live_thread_and_prints_text_status() -> None:
    out = _python(
        "import threading, time\n"
        "from depthlab.sweep.cli import exit_now\n"
        "threading.Thread(target=lambda: (time.sleep(0.3), print('thread done')))"
        ".start()\n"
        "exit_now(0)\n"
    )
    assert out.returncode == 0
    assert out.stdout == "thread done\n"
    text = _python("from depthlab.sweep.cli import exit_now\nexit_now('bad news')\n")
    assert text.returncode == 1
    assert text.stderr.strip() == "bad news"


def test_tables_with_run_ids_as_one_assign_per_run_gives() -> None:
    from depthlab.tracking.read import _with_run_ids

    a = pd.DataFrame({"layer": [1, 2], "x": [0.5, 1.5]})
    b = pd.DataFrame({"layer": [1], "x": [2.5], "extra": ["e"]})
    c = pd.DataFrame({"layer": pd.Series([], dtype=int), "x": []})
    parts = [("r1", a), ("r2", b), ("r3", c), ("r4", a)]
    expected = pd.concat([t.assign(run_id=r) for r, t in parts], ignore_index=True)
    got = _with_run_ids(parts)
    pd.testing.assert_frame_equal(got, expected)
    assert list(got.columns) == ["layer", "x", "run_id", "extra"]
    # A run_id column already there keeps its place and takes the run's id.
    d = pd.DataFrame({"run_id": ["old"], "layer": [3]})
    expected = pd.concat(
        [t.assign(run_id=r) for r, t in [("r5", d), ("r6", a)]], ignore_index=True
    )
    pd.testing.assert_frame_equal(_with_run_ids([("r5", d), ("r6", a)]), expected)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("file:///tmp/a%20b/run/artifacts", "/tmp/a b/run/artifacts"),
        ("/tmp/run/artifacts", "/tmp/run/artifacts"),
        ("mlflow-artifacts:/0/abc/artifacts", None),  # a server's proxied store
        ("s3://bucket/run/artifacts", None),
        ("", None),
    ],
)
def test_only_a_local_artifact_store_is_written_in_place(
    uri: str, expected: str | None
) -> None:
    found = tracking.local_artifact_dir(uri)
    assert (None if found is None else str(found)) == expected


def test_a_job_run_s_artifacts_are_written_in_the_store_s_folder(
    tmp_path: Path,
) -> None:
    """A job's tables go straight into its run's artifact folder (no copy
    through a temporary folder), where MLflow lists and reads them."""
    uri = tracking.default_uri(tmp_path)
    parent = tracking.start_sweep(uri, "t", run_name="sweep", params={})
    record = tracking.JobRecord(
        run_name="L=2",
        params={"depth": 2},
        config_hash="h9",
        summary={"beta": 0.0},
        per_layer=None,
        tables={"samples": pd.DataFrame({"net": [0], "grad_log10_norm": [-1.0]})},
        config_yaml="depth: 2\n",
    )
    with tracking.job_run(uri, "t", parent, "L=2", "h9") as run_id:
        tracking.log_job(uri, run_id, record)
    client = tracking._client(uri)
    folder = tracking.local_artifact_dir(client.get_run(run_id).info.artifact_uri)
    assert folder is not None and (folder / "tables" / "samples.parquet").is_file()
    listed = {a.path for a in client.list_artifacts(run_id, "tables")}
    assert listed == {"tables/samples.parquet"}
    assert (folder / "config.yaml").read_text() == "depth: 2\n"
    assert run_id not in tracking._artifact_uris  # forgotten once logged
