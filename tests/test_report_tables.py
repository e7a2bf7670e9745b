"""The tables a job returns to its sweep are the tables it logged, so that the
sweep's report can use them instead of reading them back from the store."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import TINY, TINY_JOB, run_cli
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from depthlab import tracking
from depthlab.sweep import app
from depthlab.tracking.read import REPORT_TABLES

TRAIN_JOB = [
    "task=train",
    "depth=3",
    "train.dataset=higham_example",
    "train.steps=2",
    "train.eval_every=1",
    "train.seeds=1",
    "hidden_widths=[2]",
    "input_dim=2",
    "output_dim=2",
]


@pytest.mark.parametrize("task", ["probe", "train"])
def test_returned_tables_equal_the_logged_ones(tmp_path: Path, task: str) -> None:
    uri = tracking.default_uri(tmp_path)
    parent = tracking.start_sweep(uri, "t", run_name="sweep", params={"jobs": 1})
    job = [*TINY_JOB, "depth=3"] if task == "probe" else TRAIN_JOB
    with initialize_config_dir(config_dir=app.CONFIG_PATH, version_base="1.3"):
        cfg = compose("config", overrides=job)
    with open_dict(cfg):
        cfg.tracking.uri = uri
        cfg.tracking.experiment = "t"
        cfg.tracking.parent_run_id = parent
    summary = app.run_job(cfg)
    returned = summary["tables"]
    assert returned and set(returned) <= set(REPORT_TABLES)
    read = tracking.load_sweep(uri, parent, tables=REPORT_TABLES).tables
    assert set(read) == set(returned)
    for name, table in returned.items():
        pd.testing.assert_frame_equal(
            table.assign(run_id=summary["run_id"]), read[name], check_exact=True
        )
    # load_sweep with the returned tables gives the same Sweep as a full read.
    known = tracking.load_sweep(
        uri, parent, tables=REPORT_TABLES, known_tables={summary["run_id"]: returned}
    )
    for name, table in read.items():
        pd.testing.assert_frame_equal(known.tables[name], table, check_exact=True)
    pd.testing.assert_frame_equal(known.runs, tracking.load_sweep(uri, parent).runs)


def test_no_tables_are_returned_without_a_report(tmp_path: Path) -> None:
    uri = tracking.default_uri(tmp_path)
    parent = tracking.start_sweep(uri, "t", run_name="sweep", params={"jobs": 1})
    with initialize_config_dir(config_dir=app.CONFIG_PATH, version_base="1.3"):
        cfg = compose("config", overrides=[*TINY_JOB, "depth=3", "report=false"])
    with open_dict(cfg):
        cfg.tracking.uri = uri
        cfg.tracking.experiment = "t"
        cfg.tracking.parent_run_id = parent
    assert "tables" not in app.run_job(cfg)


def test_a_resumed_sweep_reports_its_reused_and_new_jobs(tmp_path: Path) -> None:
    """The report of a sweep that reuses finished jobs reads those back from the
    store and takes the new ones' tables from the jobs: every job is in it."""
    first = run_cli(tmp_path, "depth=2,3", "n_jobs=1", *TINY)
    assert first.returncode == 0, first.stderr
    out = run_cli(tmp_path, "depth=2..4", "n_jobs=1", *TINY_JOB)
    assert out.returncode == 0, out.stderr
    assert "skipping 2 of 3" in out.stdout
    report = next(tmp_path.glob("multirun/*/*/report.html")).read_text()
    for depth in (2, 3, 4):
        assert f"L={depth} " in report
    uri = tracking.default_uri(tmp_path)
    sweep = tracking.load_sweep(uri, tracking.latest_sweep_id(uri, "depthlab"))
    assert sorted(sweep.tables["per_layer"]["depth"].unique()) == [2, 3, 4]


def test_a_worker_hands_its_tables_over_in_a_file(tmp_path: Path) -> None:
    """A worker puts a job's returned tables into a file of the sweep's folder
    (a ~1 MB result waited in the pipe for the sweep's process); the sweep
    reads the same frames back, and the file is gone after."""
    from hydra.core.utils import JobReturn, JobStatus

    from depthlab.sweep import workers

    tables = {"samples": pd.DataFrame({"net": [0, 1], "x": [0.5, -1.0]})}
    ret = JobReturn()
    ret.working_dir = str(tmp_path)
    ret.status = JobStatus.COMPLETED
    ret.return_value = {"run_id": "r1", "tables": tables}
    workers._spill_tables(ret)
    assert "tables" not in ret.return_value
    path = Path(ret.return_value["tables_file"])
    assert path.parent == tmp_path / workers.SPILL_DIR and path.exists()
    back = workers.returned_tables(ret.return_value["tables_file"])
    pd.testing.assert_frame_equal(back["samples"], tables["samples"], check_exact=True)
    assert not path.exists()


def test_a_parallel_sweep_reports_from_its_workers_tables(tmp_path: Path) -> None:
    out = run_cli(tmp_path, "depth=2..5", "n_jobs=2", *TINY_JOB)
    assert out.returncode == 0, out.stderr
    assert "on 2 workers" in out.stdout and "report failed" not in out.stderr
    (sweep_dir,) = (tmp_path / "multirun").glob("*/*")
    assert (sweep_dir / "report.html").exists()
    assert not (sweep_dir / ".depthlab-tables").exists()


def test_the_report_reads_the_spectra_of_the_deepest_runs_alone(
    tmp_path: Path,
) -> None:
    """A job returns no spectra (DEEPEST_TABLES): the report reads those of
    the deepest run of each config from the store, the same rows a full read
    has for those runs, and draws the same figure as from a full read."""
    from depthlab.report import build_report, prepare
    from depthlab.tracking.read import DEEPEST_TABLES

    out = run_cli(tmp_path, "depth=2..4", "init.sigma_w=1.0,1.5", "n_jobs=1", *TINY)
    assert out.returncode == 0, out.stderr
    uri = tracking.default_uri(tmp_path)
    parent = tracking.latest_sweep_id(uri, "depthlab")
    full = tracking.load_sweep(uri, parent)
    some = tracking.load_sweep(uri, parent, tables=REPORT_TABLES)
    assert "spectrum" in DEEPEST_TABLES and "spectrum" not in some.tables
    deepest = prepare(some).deepest()
    assert sorted(deepest["depth"]) == [4, 4]
    spectrum = full.tables["spectrum"]
    expected = spectrum[spectrum["run_id"].isin(deepest["run_id"])]
    assert 0 < len(expected) < len(spectrum)
    for sweep in (some, full):  # read from the store, or from what was loaded
        got = sweep.read_table("spectrum", deepest["run_id"])
        pd.testing.assert_frame_equal(
            got, expected.reset_index(drop=True), check_exact=True
        )
    assert some.read_table("spectrum", []) is None
    figures = {}
    for name, sweep in (("some", some), ("full", full)):
        report = build_report(sweep, tmp_path / name)
        figures[name] = (report.parent / "jacobian_spectrum.png").read_bytes()
    assert figures["some"] == figures["full"]
