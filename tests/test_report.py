"""The report, built from a tiny real sweep and rebuilt from MLflow alone."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_JOB, run_python, run_python_json

from depthlab import tracking
from depthlab.report import FIGURE_NAMES, build_report
from depthlab.report.__main__ import main as report_main
from depthlab.report.data import palette, prepare, thin
from depthlab.report.plotting import bin_edges
from depthlab.report.text import regime, usable_depth

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _run(cwd: Path, module: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m module args`` in ``cwd``, as a user runs it; must succeed."""
    out = run_python(cwd, "-m", module, *args)
    assert out.returncode == 0, out.stderr
    return out


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A sweep over depth and sigma_w (4 jobs) in a fresh store, as a user runs
    it (the report at its end included): its directory and its output."""
    cwd = tmp_path_factory.mktemp("sweep")
    out = _run(cwd, "depthlab", "depth=2..4:2", "init.sigma_w=0.8,1.5", *TINY_JOB)
    return cwd, out.stdout


@pytest.fixture(scope="module")
def sweep_dir(sweep_run: tuple[Path, str]) -> Path:
    return sweep_run[0]


@pytest.fixture(scope="module")
def uri(sweep_dir: Path) -> str:
    return tracking.default_uri(sweep_dir)


@pytest.fixture(scope="module")
def parent(uri: str) -> str:
    return tracking.latest_sweep_id(uri, "depthlab")


@pytest.fixture(scope="module")
def sweep(uri: str, parent: str) -> tracking.Sweep:
    return tracking.load_sweep(uri, parent)


@pytest.fixture(scope="module")
def built(sweep: tracking.Sweep, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report built in-process from the sweep read back from MLflow."""
    return build_without_warnings(sweep, tmp_path_factory.mktemp("report"))


def build_without_warnings(sweep: tracking.Sweep, out: Path) -> Path:
    """Build in-process and fail on any warning raised while building."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = build_report(sweep, out)
    assert not caught, [f"{w.category.__name__}: {w.message}" for w in caught]
    return report


def figure_names(directory: Path) -> set[str]:
    return {p.stem for p in directory.glob("*.png")}


def assert_valid_png(path: Path) -> None:
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_report_holds_every_figure_the_data_supports(built: Path) -> None:
    directory = built.parent
    assert built.name == "report.html"
    # depth and sigma_w were swept, spectra computed: every figure is drawn.
    assert figure_names(directory) == set(FIGURE_NAMES)
    for name in FIGURE_NAMES:
        assert_valid_png(directory / f"{name}.png")
    html = built.read_text(encoding="utf-8")
    # Self-contained: every figure embedded, nothing fetched from elsewhere.
    assert html.count('src="data:image/png;base64,') == len(FIGURE_NAMES)
    assert not re.search(r'src="(?!data:)', html)
    assert "Figures left out" not in html
    assert "error while drawing" not in html
    # Generated text: what was swept, the per-config table, the regimes.
    assert "Swept: depth = 2, 4; sigma_w = 0.8, 1.5." in html
    assert "4 job run(s): 4 finished." in html
    assert "usable depth" in html
    assert re.search(r"vanishing|near-critical|exploding", html)


def test_sweep_ends_with_its_report_logged_to_the_parent_run(
    sweep_run: tuple[Path, str], uri: str, parent: str
) -> None:
    from mlflow.tracking import MlflowClient

    stdout = sweep_run[1]
    match = re.search(r"depthlab: report (\S+report\.html)", stdout)
    assert match, stdout
    assert figure_names(Path(match.group(1)).parent) == set(FIGURE_NAMES)
    logged = {a.path for a in MlflowClient(uri).list_artifacts(parent, "report")}
    assert {"report/report.html", *(f"report/{n}.png" for n in FIGURE_NAMES)} <= (
        logged
    )


def test_rebuilt_from_mlflow_alone_same_figures_names_escaped(
    built: Path, sweep_dir: Path, uri: str, parent: str, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    script = "<script>alert(1)</script>"
    child = tracking.load_sweep(uri, parent).runs["run_id"].iloc[0]
    client.set_tag(child, "mlflow.runName", script)
    client.set_tag(parent, "mlflow.runName", f"sweep {script}")
    rebuilt = tmp_path / "rebuilt"
    out = _run(sweep_dir, "depthlab.report", "--run", parent, "--out", str(rebuilt))
    assert out.stdout.strip() == str((rebuilt / "report.html").resolve())
    assert figure_names(rebuilt) == figure_names(built.parent) == set(FIGURE_NAMES)
    html = (rebuilt / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


SERIAL_AND_FORKED = """
import sys
from depthlab import tracking
from depthlab.report import FIGURE_NAMES, prepare
from depthlab.report.figures import draw_all

data = prepare(tracking.load_sweep(sys.argv[1], sys.argv[2]))
serial, forked = draw_all(data, workers=1), draw_all(data, workers=2)
assert [d.name for d in serial] == [d.name for d in forked] == list(FIGURE_NAMES)
for a, b in zip(serial, forked):
    assert a.png is not None and a.png == b.png, a.name
    assert (a.title, a.caption, a.reason) == (b.title, b.caption, b.reason), a.name
print("same")
"""


def test_figures_drawn_by_forked_processes_are_the_same_bytes(
    uri: str, parent: str, tmp_path: Path
) -> None:
    out = run_python(tmp_path, "-c", SERIAL_AND_FORKED, uri, parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "same"


DIGESTS = """
import hashlib, sys
from depthlab import tracking
from depthlab.report import prepare, plotting
from depthlab.report.figures import draw_all

data = prepare(tracking.load_sweep(sys.argv[1], sys.argv[2]))
if sys.argv[3] == "warm":
    plotting.warm_up()
for d in draw_all(data, workers=1):
    print(d.name, hashlib.sha256(d.png or b"").hexdigest())
"""


def test_the_warm_up_changes_no_figure(uri: str, parent: str, tmp_path: Path) -> None:
    # Each in a fresh process: its first figure drawn cold, or after the
    # warm-up that the tracker draws while the jobs run.
    cold, warm = (
        run_python(tmp_path, "-c", DIGESTS, uri, parent, how)
        for how in ("cold", "warm")
    )
    assert cold.returncode == 0 and warm.returncode == 0, cold.stderr + warm.stderr
    assert cold.stdout == warm.stdout and len(cold.stdout.splitlines()) >= 5


def test_a_sweep_with_less_data_lists_what_is_left_out(
    sweep: tracking.Sweep, built: Path, tmp_path: Path
) -> None:
    # One sigma_w, no Jacobian spectra, the depth-2 run FAILED: one run is left.
    samples = sweep.tables["samples"]
    keep = set(samples.loc[samples["sigma_w"] == 0.8, "run_id"])
    tables = {
        name: table[table["run_id"].isin(keep)]
        for name, table in sweep.tables.items()
        if name != "spectrum"
    }
    runs = sweep.runs[sweep.runs["run_id"].isin(keep)].copy()
    failed = runs.index[runs["params.depth"] == "2"][0]
    runs.loc[failed, "status"] = "FAILED"
    # No artifacts to read the spectra of the deepest runs from, either.
    partial = dataclasses.replace(sweep, runs=runs, tables=tables, artifact_uris={})
    # Figures of an earlier report in the same directory must not linger.
    shutil.copytree(built.parent, tmp_path, dirs_exist_ok=True)
    report = build_without_warnings(partial, tmp_path)
    left = {"heatmap", "jacobian_spectrum", "grad_norm_vs_depth", "fluctuations"}
    assert figure_names(tmp_path) == set(FIGURE_NAMES) - left
    html = report.read_text(encoding="utf-8")
    section = html.split('id="left-out"', 1)[1].split("</section>", 1)[0]
    assert "sigma_w and width were not swept" in section
    assert "no Jacobian spectra were computed" in section
    assert "depth was not swept" in section
    assert "2 job run(s): 1 finished, 1 failed." in html
    assert "Runs that did not finish" in html
    assert str(runs.loc[failed, "run_name"]) in html


def test_cli_errors_are_one_line(
    uri: str, sweep_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "out")
    missing = tmp_path / "nowhere" / "mlflow.db"
    assert report_main(["--tracking-uri", f"sqlite:///{missing}", "--out", out]) == 2
    assert not missing.exists()
    assert report_main(["--tracking-uri", uri, "--experiment", "nope"]) == 2
    assert report_main(["--tracking-uri", uri, "--run", "0123abcd", "--out", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3
    assert all(line.startswith("depthlab.report: error: ") for line in err)
    assert "no tracking store" in err[0]
    assert "'nope'" in err[1]
    assert "0123abcd" in err[2]


def test_helpers() -> None:
    assert usable_depth(np.array([2, 10, 20]), np.array([-1.0, -5.0, -9.0])) == (
        10,
        False,
    )
    assert usable_depth(np.array([2, 10]), np.array([-1.0, -5.0])) == (10, True)
    assert usable_depth(np.array([2, 10]), np.array([-7.0, -9.0])) == (None, False)
    assert [regime(c) for c in (0.5, 1.0, 1.2, float("nan"))] == [
        "vanishing",
        "near-critical",
        "exploding",
        "unknown",
    ]
    assert thin(list(range(10)), 4) == [0, 3, 6, 9]
    np.testing.assert_allclose(
        bin_edges(np.array([1.0, 2.0, 4.0]), log=False), [0.5, 1.5, 3.0, 5.0]
    )
    np.testing.assert_allclose(
        bin_edges(np.array([2.0, 8.0]), log=True), [1.0, 4.0, 16.0]
    )
    # Three or more ordered levels: sequential; two, or unordered: categorical.
    assert palette(3, ordered=True) != palette(3, ordered=False)
    assert palette(2, ordered=True) == palette(2, ordered=False)


def test_one_colour_per_config_in_every_figure(sweep: tracking.Sweep) -> None:
    data = prepare(sweep)
    assert data.hue_keys == ["sigma_w"] and data.facet_keys == []
    assert list(data.colors) == data.hue_order == ["sigma_w=0.8", "sigma_w=1.5"]
    assert len(set(data.colors.values())) == 2


WARM_UP = """
import json
import matplotlib as mpl
from matplotlib.mathtext import MathTextParser

from depthlab.report import plotting

before = dict(mpl.rcParams)
built_before = MathTextParser._parser is not None
plotting.warm_up()
print(json.dumps({
    "built_before": built_before,
    "built": MathTextParser._parser is not None,
    "cached": plotting._mathtext()._parse_cached.cache_info().currsize,
    "rc_kept": dict(mpl.rcParams) == before,
}))
"""


def test_the_warm_up_builds_the_mathtext_parser_and_changes_no_setting(
    tmp_path: Path,
) -> None:
    out = run_python_json(tmp_path, WARM_UP)
    # What a process's first log axis pays (the grammar) is paid, the log
    # tick labels are in the shared parser's cache, and the report's style
    # was only borrowed.
    assert out == {
        "built_before": False,
        "built": True,
        "cached": out["cached"],
        "rc_kept": True,
    }
    assert out["cached"] >= 2
